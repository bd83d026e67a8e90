"""The reproduction ledger `results.json`: records, their schema and `--check`.

    {"preset": "demo", "only": ["snn", ...], "device": "...", "records": [
       {"experiment": "snn/lif_mlp", "metric": "test_accuracy", "value": 0.97,
        "ci_low": 0.96, "ci_high": 0.98, "seeds": [0], "per_seed": [0.97], ...}]}

One record per (experiment, metric). The CI is a 95% interval: over seeds
(mean +- 1.96 std / sqrt(n), std with ddof=1) when more than one seed ran,
else the one the run itself reports (e.g. over >= 600 test episodes), else none.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from scripts import presets as presets_lib

FIELDS = {
    "experiment": str,
    "area": str,
    "metric": str,
    "label": str,
    "value": float,
    "ci_low": (float, type(None)),
    "ci_high": (float, type(None)),
    "seeds": list,
    "per_seed": list,
    "preset": str,
    "config": str,
    "config_hash": str,
    "setting": str,
    "data_source": str,
    "device": str,
    "wall_seconds": float,
    "published": (float, type(None)),
    "source": str,
}


def number(value) -> float:
    """A summary value as a float; null (how summary.json stores NaN) is NaN."""
    return math.nan if value is None else float(value)


def make_record(preset, experiment, metric, runs) -> dict:
    """A ledger record from `runs`: [(seed, summary, run_info)] of one experiment."""
    values = [number(summary[metric.key]) for _, summary, _ in runs]
    value = float(np.mean(values))
    ci_low = ci_high = None
    if len(values) > 1:
        half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(len(values))
        ci_low, ci_high = value - half, value + half
    elif metric.ci_key and metric.ci_key in runs[0][1]:
        half = number(runs[0][1][metric.ci_key])
        ci_low, ci_high = value - half, value + half
    elif metric.ci_keys and all(k in runs[0][1] for k in metric.ci_keys):
        ci_low, ci_high = (number(runs[0][1][k]) for k in metric.ci_keys)
    info = runs[0][2]
    return {
        "experiment": f"{experiment.area}/{experiment.name}",
        "area": experiment.area,
        "metric": metric.key,
        "label": metric.label,
        "value": value,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "seeds": [seed for seed, _, _ in runs],
        "per_seed": values,
        "preset": preset,
        "config": info["config"],
        "config_hash": info["config_hash"],
        "setting": experiment.setting,
        "data_source": str(runs[0][1].get("data_source", "unknown")),
        "device": str(runs[0][1].get("device", info["device"])),
        "wall_seconds": float(sum(i["wall_seconds"] for _, _, i in runs)),
        "published": metric.published,
        "source": metric.source,
    }


def validate(ledger: dict, path: str = "results.json") -> None:
    """Raises ValueError naming the first field that breaks the schema."""
    for name in ("preset", "only", "records"):
        if name not in ledger:
            raise ValueError(f"{path}: no top-level field {name!r}; rerun reproduce")
    if ledger["preset"] not in presets_lib.PRESETS:
        raise ValueError(
            f"{path}: unknown preset {ledger['preset']!r}; "
            f"use one of {sorted(presets_lib.PRESETS)}"
        )
    for index, record in enumerate(ledger["records"]):
        for name, kind in FIELDS.items():
            if name not in record:
                raise ValueError(f"{path}: record {index} has no field {name!r}")
            value = record[name]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind):
                raise ValueError(
                    f"{path}: record {index} field {name!r}={value!r} "
                    f"is not {getattr(kind, '__name__', kind)}"
                )
        if not math.isfinite(record["value"]):
            raise ValueError(f"{path}: record {index} value is {record['value']}")


def check(ledger: dict) -> list[str]:
    """Problems of the ledger against its preset's bands (empty: all in band).

    Every metric of every experiment the preset runs for the ledger's areas must
    be present; a value outside its band, or a missing record, is a problem.
    """
    records = {(r["experiment"], r["metric"]): r for r in ledger["records"]}
    problems = []
    for experiment in presets_lib.experiments(ledger["preset"], tuple(ledger["only"])):
        name = f"{experiment.area}/{experiment.name}"
        for metric in experiment.metrics:
            record = records.get((name, metric.key))
            if record is None:
                problems.append(f"{name} {metric.key}: missing from the ledger")
                continue
            low, high = metric.band
            value = record["value"]
            if (low is not None and value < low) or (high is not None and value > high):
                problems.append(
                    f"{name} {metric.key}={value:.4g} outside its band "
                    f"[{_bound(low, '-inf')}, {_bound(high, 'inf')}]"
                )
    return problems


def in_band(preset: str, record: dict) -> bool | None:
    """Whether `record` is inside its band; None when the metric has no band."""
    for experiment in presets_lib.PRESETS[preset]:
        if f"{experiment.area}/{experiment.name}" != record["experiment"]:
            continue
        for metric in experiment.metrics:
            if metric.key == record["metric"]:
                low, high = metric.band
                if low is None and high is None:
                    return None
                value = record["value"]
                return (low is None or value >= low) and (high is None or value <= high)
    return None


def _bound(value, open_end: str) -> str:
    return open_end if value is None else f"{value:g}"


def read(path: str) -> dict:
    """Loads and validates a ledger; ValueError with the path on any problem."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    try:
        with open(path) as f:
            ledger = json.load(f)
    except FileNotFoundError as error:
        raise ValueError(
            f"no ledger at {path}; run `python -m scripts.reproduce` first"
        ) from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    validate(ledger, path)
    return ledger
