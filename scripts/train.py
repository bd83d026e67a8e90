r"""Trains any area's experiment from a config file.

    python -m scripts.train --config=shared/configs/mnist_classifier.py:quick \
        --workdir=workdirs/mnist [--config.seed=1] [--data_dir=DIR]

The config names its area; this script validates it, writes `config.json` into
the workdir and calls `<area>.train.train_and_evaluate(config, workdir)`. A rerun
with the same workdir resumes from the last checkpoint. Bad input exits with one
line naming the flag or field and the fix (exit code 2).
"""

from __future__ import annotations

import json
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from shared import config as config_lib
from shared import workdir as workdir_lib
from shared.errors import Interrupted, UserError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, `path.py[:variant]`.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for config.json, metrics, checkpoints, summary."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data_dir; unset uses embedded data where available."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (multi-host runs)."
)
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str) -> dict:
    """Validates, records and runs one experiment; returns its summary."""
    config_lib.validate(config)
    workdir_lib.lock(workdir)
    path = os.path.join(workdir, "config.json")
    new = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        old = workdir_lib.read_json(workdir, "config.json")
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            logging.warning(
                "resuming %s with changed config fields %s", workdir, changed
            )
    workdir_lib.write_json(workdir, "config.json", new)
    return config_lib.trainer_module(config).train_and_evaluate(config, workdir)


def print_summary(summary: dict) -> None:
    width = max(len(k) for k in summary)
    print("\n" + "-" * (width + 24))
    for name, value in summary.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {text}")
    print("-" * (width + 24))


def _fail(message: str) -> None:
    print(f"gicho: error: {message}", file=sys.stderr)
    sys.exit(2)


def _flag_error(error: Exception) -> str:
    """One line for an error raised while parsing --config and its overrides."""
    text = " ".join(str(error).split())
    if isinstance(error, (KeyError, AttributeError)):
        field = re.search(r"(\w+)", text)
        hint = re.search(r'Did you mean \\?"(\w+)', text)
        return (
            f"unknown config field {field.group(1) if field else text!r} in a "
            "--config.FIELD=VALUE flag"
            + (f"; did you mean {hint.group(1)!r}?" if hint else "")
        )
    if isinstance(error, OSError):
        return f"cannot load --config: {text}"
    return text


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that turns every bad flag into one line and exit 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(f"{error} (see --helpshort)")
    except UserError as error:
        _fail(str(error))
    except (KeyError, AttributeError, OSError, ValueError, TypeError) as error:
        _fail(_flag_error(error))


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; use --flag=value")
    if _DISTRIBUTED.value:
        from shared import mesh

        mesh.initialize_distributed()
    try:
        config = _CONFIG.value
        config.keys()  # the flag loads lazily: force any deferred load error here
    except UserError as error:
        _fail(str(error))
    except (KeyError, AttributeError, OSError, ValueError, TypeError) as error:
        _fail(_flag_error(error))
    if _DATA_DIR.value is not None:
        with config.unlocked():
            config.data_dir = _DATA_DIR.value
    try:
        summary = run(config, _WORKDIR.value)
    except Interrupted as stop:
        print(f"gicho: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except UserError as error:
        _fail(str(error))
    print_summary(summary)
    print(f"workdir: {_WORKDIR.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
