r"""Trains any area's experiment from a config file.

    python -m scripts.train --config=shared/configs/mnist_classifier.py:quick \
        --workdir=workdirs/mnist [--config.seed=1] [--data_dir=DIR] [--heap=auto]

The config names its area; this script validates it, writes `config.json` into
the workdir and calls `<area>.train.train_and_evaluate(config, workdir)`. A rerun
with the same workdir resumes from the last checkpoint. Bad input exits with one
line naming the flag or field and the fix (exit code 2).
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from scripts.cli import fail, flag_error, parse_flags, print_summary, run
from shared import heap
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
_HEAP = heap.define_flag()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; use --flag=value")
    try:
        config = _CONFIG.value
        config.keys()  # the flag loads lazily: force any deferred load error here
    except UserError as error:
        fail(str(error))
    except (KeyError, AttributeError, OSError, ValueError, TypeError) as error:
        fail(flag_error(error))
    # before JAX starts its threads
    heap.configure(_HEAP.value, area=config.get("area"))
    if _DISTRIBUTED.value:
        from shared import mesh

        mesh.initialize_distributed()
    if _DATA_DIR.value is not None:
        with config.unlocked():
            config.data_dir = _DATA_DIR.value
    try:
        summary = run(config, _WORKDIR.value)
    except Interrupted as stop:
        print(f"gicho: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except UserError as error:
        fail(str(error))
    print_summary(summary)
    print(f"workdir: {_WORKDIR.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
