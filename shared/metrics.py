"""Metric rows to `workdir/metrics.jsonl` and the log; only process 0 writes.

Each line is one JSON object: `{"step": 100, "train/loss": 0.31, ...}`. On resume
the file is cut back to the restored step, so a killed-and-resumed run ends with
exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax
from absl import logging


def is_main_process() -> bool:
    return jax.process_index() == 0


class MetricWriter:
    """Appends metric rows as JSON lines and logs them."""

    def __init__(self, workdir: str, filename: str = "metrics.jsonl"):
        self.path = os.path.join(workdir, filename)
        self._enabled = is_main_process()

    def truncate_after(self, step: int) -> None:
        """Drops rows with a step greater than `step` (left by a killed run)."""
        if not (self._enabled and os.path.exists(self.path)):
            return
        kept = []
        with open(self.path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if row.get("step", 0) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self._enabled:
            return
        row = {"step": int(step), **{k: _to_json(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        logging.info(
            "step %d: %s",
            step,
            ", ".join(f"{k}={_format(v)}" for k, v in sorted(metrics.items())),
        )


def read_metrics(workdir: str, filename: str = "metrics.jsonl") -> list[dict]:
    """All rows of a workdir's metrics file, in order."""
    path = os.path.join(workdir, filename)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _to_json(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _format(value) -> str:
    value = float(value)
    return f"{value:.4g}"
