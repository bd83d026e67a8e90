"""Config checks shared by every area: one clear line per bad field.

Generic rules by field name (so every area's config gets them for free):
  `seed`                                  int >= 0
  `*batch_size`, `num_*`, `*_steps`       int >= 1 (`*_steps` ending in
                                          `inner_steps` may be 0: zero-step MAML)
  `*_every`, `num_devices`                int >= 0 (0 = never / all devices)
  `*learning_rate*`, `*_lr`               finite float > 0
Then the trainer module's own `validate_config(config)`, if it defines one.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import ml_collections

from shared.errors import ConfigError

REQUIRED = ("area", "seed")
TRAINERS = {
    "shared": "shared.classifier",
    "snn": "snn.train",
    "metalearn": "metalearn.train",
    "nas": "nas.train",
    "transfer": "transfer.train",
}


def trainer_module(config: ml_collections.ConfigDict) -> ModuleType:
    """The module with `train_and_evaluate(config, workdir)` for this config."""
    name = config.get("trainer") or TRAINERS.get(config.area)
    if name is None:
        raise ConfigError(
            f"config.area={config.area!r} is unknown; use one of {sorted(TRAINERS)}."
        )
    return importlib.import_module(name)


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first bad field and the fix."""
    for name in REQUIRED:
        if name not in config:
            raise ConfigError(
                f"config has no field {name!r}; add it to the config file"
            )
    for path, value in _flatten(config):
        _check_field(path, value)
    module = trainer_module(config)
    if hasattr(module, "validate_config"):
        module.validate_config(config)


def _flatten(config, prefix=""):
    for name, value in config.items():
        path = f"{prefix}{name}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field(path: str, value) -> None:
    name = path.rsplit(".", 1)[-1]
    if value is None:
        return
    fix = f"set --config.{path}"
    if name == "seed":
        if not _is_int(value) or value < 0:
            raise ConfigError(f"config.{path}={value!r} must be an int >= 0; {fix}")
    elif name == "num_devices":
        if _is_int(value) and value < 0:
            raise ConfigError(f"config.{path}={value!r} must be >= 0 (0 = all); {fix}")
    elif (
        name.endswith("batch_size")
        or name.startswith("num_")
        or (name.endswith("_steps") and not name.endswith("inner_steps"))
    ):
        if _is_int(value) and value < 1:
            raise ConfigError(f"config.{path}={value!r} must be >= 1; {fix}")
    elif name.endswith("_every") or name.endswith("inner_steps"):
        if _is_int(value) and value < 0:
            raise ConfigError(f"config.{path}={value!r} must be >= 0; {fix}")
    elif "learning_rate" in name or name.endswith("_lr"):
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"config.{path}={value!r} must be a finite number > 0; {fix}"
            )
