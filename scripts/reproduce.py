r"""Runs every area's experiments of a preset and writes a report against the papers.

    python -m scripts.reproduce --preset=demo --workdir=workdirs/reproduce_demo
    python -m scripts.reproduce --preset=quick --workdir=DIR --only=snn,nas
    python -m scripts.reproduce --preset=demo --workdir=DIR --check   # exit 1 if OUT
    python -m scripts.reproduce --ledger=DIR/results.json             # check only

Each experiment and seed runs through `scripts.train.run` in its own workdir
`DIR/<area>/<name>/seed_<k>`, so a rerun of the same command resumes the
interrupted experiment from its checkpoint and skips finished ones. After every
experiment the ledger `DIR/results.json` is rewritten; `DIR/report.md` is written
at the end and when interrupted (reporting what finished). Presets, published
numbers and `--check` bands: `scripts/presets.py`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import sys
import time

from absl import app, flags, logging

from scripts import cli
from scripts import ledger as ledger_lib
from scripts import presets as presets_lib
from scripts import report as report_lib
from shared import heap
from shared import workdir as workdir_lib
from shared.errors import ConfigError, Interrupted, UserError

_PRESET = flags.DEFINE_enum(
    "preset", "demo", sorted(presets_lib.PRESETS), "Which experiments to run."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Root of all experiment workdirs.")
_ONLY = flags.DEFINE_list(
    "only", list(presets_lib.AREAS), "Areas to run, comma-separated."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data_dir for every experiment; unset: embedded data."
)
_CHECK = flags.DEFINE_bool(
    "check", False, "After running, exit 1 naming each record outside its band."
)
_LEDGER = flags.DEFINE_string(
    "ledger", None, "Only check this results.json against its preset's bands."
)
_HEAP = heap.define_flag()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str, overrides: dict, seed: int, data_dir: str | None):
    """`path.py:variant` (relative to the repo) -> its ConfigDict, overridden."""
    path, _, variant = spec.partition(":")
    full = os.path.join(ROOT, path)
    if not os.path.exists(full):
        raise ConfigError(f"preset config file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location("_preset_config", full)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(variant) if variant else module.get_config()
    with config.unlocked():
        for name, value in {**overrides, "seed": seed}.items():
            config[name] = value
        if data_dir is not None:
            config.data_dir = data_dir
    return config


def config_hash(config) -> str:
    text = json.dumps(json.loads(config.to_json_best_effort()), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def device_name() -> str:
    import jax  # noqa: PLC0415 (`--ledger` checks run without loading JAX)

    kind = jax.devices()[0].device_kind
    if jax.default_backend() == "cpu":
        return f"CPU ({os.cpu_count()} cores)"
    return f"{jax.device_count()} x {kind}"


def run_experiment(experiment, seed, workdir, data_dir):
    """Runs, resumes or (when finished) skips one seed -> (summary, info, skipped).

    `run_info.json` records the config and its hash before the run starts, so a
    resumed run of a different config is refused, and sums the wall time of
    every invocation that worked on this run.
    """
    config = load_config(experiment.config, experiment.overrides, seed, data_dir)
    spec = experiment.config + "".join(
        f" --config.{k}={v}" for k, v in experiment.overrides.items()
    )
    info = {"config": spec, "config_hash": config_hash(config), "wall_seconds": 0.0}
    if os.path.exists(os.path.join(workdir, "run_info.json")):
        old = workdir_lib.read_json(workdir, "run_info.json")
        if old["config_hash"] != info["config_hash"]:
            raise ConfigError(
                f"{workdir} holds a run of another config ({old['config']}, hash "
                f"{old['config_hash']} != {info['config_hash']}); use another "
                "--workdir or delete that folder"
            )
        if os.path.exists(os.path.join(workdir, "summary.json")):
            return workdir_lib.read_json(workdir, "summary.json"), old, True
        info = old
    info["device"] = device_name()
    workdir_lib.write_json(workdir, "run_info.json", info)
    start = time.time()
    try:
        summary = cli.run(config, workdir)
    finally:
        info["wall_seconds"] += time.time() - start
        workdir_lib.write_json(workdir, "run_info.json", info)
    return summary, info, False


def reproduce(preset, workdir, only, data_dir, command) -> dict:
    """Runs the preset's experiments in order; returns the ledger."""
    chosen = presets_lib.experiments(preset, tuple(only))
    total = sum(len(e.seeds) for e in chosen)
    ledger = {"preset": preset, "only": list(only), "device": device_name()}
    ledger["records"] = []
    kept = _other_areas(preset, workdir, only)
    if kept:  # areas an earlier `--only` ran in this workdir stay in the ledger
        areas = set(only) | {r["area"] for r in kept}
        ledger["only"] = [a for a in presets_lib.AREAS if a in areas]
    start, index = time.time(), 0
    finished: list[str] = []
    try:
        for experiment in chosen:
            runs = []
            for seed in experiment.seeds:
                index += 1
                name = f"{experiment.area}/{experiment.name}"
                print(f"[{index}/{total}] {name} seed {seed}: {experiment.config}")
                sys.stdout.flush()
                run_dir = os.path.join(workdir, name, f"seed_{seed}")
                summary, info, skipped = run_experiment(
                    experiment, seed, run_dir, data_dir
                )
                runs.append((seed, summary, info))
                first = experiment.metrics[0]
                print(
                    f"[{index}/{total}] {name} seed {seed}: "
                    f"{'already finished' if skipped else 'done'}, "
                    f"{first.key}={ledger_lib.number(summary[first.key]):.4g} "
                    f"({report_lib.clock(info['wall_seconds'])})"
                )
                finished.append(f"{name} seed {seed}")
            for metric in experiment.metrics:
                if metric.key not in runs[0][1]:
                    raise ConfigError(
                        f"{experiment.config} wrote no {metric.key!r} in summary.json;"
                        " fix the metric key in scripts/presets.py"
                    )
                ledger["records"].append(
                    ledger_lib.make_record(preset, experiment, metric, runs)
                )
            _write(ledger, workdir, kept)
    except (Interrupted, KeyboardInterrupt) as stop:
        _write(ledger, workdir, kept)
        report_lib.write(ledger, workdir, command, time.time() - start)
        print(
            f"\ngicho: interrupted ({stop}). Finished: "
            f"{', '.join(finished) or 'nothing'}. The running experiment saved a "
            f"checkpoint; resume with the same command:\n  {command}",
            file=sys.stderr,
        )
        signum = getattr(stop, "signum", 2)
        sys.exit(128 + signum)
    _write(ledger, workdir, kept)
    report_lib.write(ledger, workdir, command, time.time() - start)
    return ledger


def _other_areas(preset, workdir, only) -> list[dict]:
    """Records of areas outside `only` from this workdir's ledger of `preset`."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return []
    old = ledger_lib.read(path)
    if old["preset"] != preset:
        raise ConfigError(
            f"{path} is a ledger of preset {old['preset']!r}, not {preset!r}; "
            "use another --workdir for another preset"
        )
    return [r for r in old["records"] if r["area"] not in only]


def _write(ledger, workdir, kept):
    """The ledger after each experiment, so a crash loses no finished record.

    Records are kept in preset order: earlier `--only` runs' areas merged in.
    """
    records = ledger["records"] + [
        r for r in kept if r["area"] not in {x["area"] for x in ledger["records"]}
    ]
    order = {area: i for i, area in enumerate(presets_lib.AREAS)}
    ledger["records"] = sorted(records, key=lambda r: order[r["area"]])
    ledger_lib.validate(ledger)
    workdir_lib.write_json(workdir, "results.json", ledger)


def _check(ledger) -> None:
    problems = ledger_lib.check(ledger)
    if problems:
        print("gicho: check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"check passed: every {ledger['preset']} record is inside its band")


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; use --flag=value")
    heap.configure(_HEAP.value)  # areas mixed: auto leaves malloc alone
    if _LEDGER.value:
        try:
            _check(ledger_lib.read(_LEDGER.value))
        except ValueError as error:
            cli.fail(str(error))
        return
    if not _WORKDIR.value:
        cli.fail("--workdir is required (or --ledger to only check)")
    unknown = sorted(set(_ONLY.value) - set(presets_lib.AREAS))
    if unknown:
        cli.fail(
            f"--only has unknown areas {unknown}; use some of {list(presets_lib.AREAS)}"
        )
    only = [a for a in presets_lib.AREAS if a in _ONLY.value]
    command = "python -m scripts.reproduce " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    try:
        workdir_lib.lock(_WORKDIR.value)
        ledger = reproduce(
            _PRESET.value, _WORKDIR.value, only, _DATA_DIR.value, command
        )
    except UserError as error:
        cli.fail(str(error))
    print("\n" + report_lib.summary_table(ledger))
    print(f"\nreport: {os.path.join(_WORKDIR.value, 'report.md')}")
    if _CHECK.value:
        _check(ledger)


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main, flags_parser=cli.parse_flags)
