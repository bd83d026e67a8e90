"""What the entry points share: run one experiment, and one-line flag errors."""

from __future__ import annotations

import json
import os
import re
import sys

from absl import flags, logging

from shared import config as config_lib
from shared import workdir as workdir_lib
from shared.errors import UserError


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


def fail(message: str) -> None:
    print(f"gicho: error: {message}", file=sys.stderr)
    sys.exit(2)


def flag_error(error: Exception) -> str:
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
        fail(f"{error} (see --helpshort)")
    except UserError as error:
        fail(str(error))
    except (KeyError, AttributeError, OSError, ValueError, TypeError) as error:
        fail(flag_error(error))
