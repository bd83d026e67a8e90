"""scripts.reproduce: ledger schema, --check, report tables and figures, resume."""

import copy
import json
import os
import subprocess
import sys

import pytest

from scripts import ledger as ledger_lib
from scripts import presets as presets_lib
from scripts import reproduce
from shared import config as config_lib
from shared.errors import ConfigError

FAKE = "tests/scripts/fake_experiment.py"


def fake_preset():
    """One fast experiment per area; two seeds for metalearn (a CI over seeds)."""
    out = []
    for i, area in enumerate(presets_lib.AREAS):
        metric = presets_lib.Metric(
            "score",
            "score",
            ci_key="score_ci95",
            published=0.9,
            source="A paper, Table 1",
            band=(0.5, None),
        )
        out.append(
            presets_lib.Experiment(
                area,
                f"exp{i}",
                f"{FAKE}:0.{6 + i}",
                f"fake {area}",
                (metric,),
                seeds=(0, 1) if area == "metalearn" else (0,),
            )
        )
    return out


def run_fake(monkeypatch, workdir, interrupt_area="-", only=presets_lib.AREAS):
    monkeypatch.setenv("FAKE_INTERRUPT_AREA", interrupt_area)
    monkeypatch.setitem(presets_lib.PRESETS, "smoke", fake_preset())
    return reproduce.reproduce("smoke", str(workdir), list(only), None, "python -m x")


def test_run_writes_ledger_report_tables_figures_and_rerun_skips(tmp_path, monkeypatch):
    ledger = run_fake(monkeypatch, tmp_path)
    on_disk = ledger_lib.read(str(tmp_path))
    assert on_disk == json.loads(json.dumps(ledger))
    assert [r["experiment"] for r in ledger["records"]] == [
        "snn/exp0",
        "metalearn/exp1",
        "nas/exp2",
        "transfer/exp3",
    ]
    snn, meta = ledger["records"][:2]
    assert snn["value"] == pytest.approx(0.6)
    assert (snn["ci_low"], snn["ci_high"]) == pytest.approx((0.58, 0.62))  # run's CI
    # Two seeds: 0.7 and 0.71 -> mean 0.705, CI over seeds 1.96 * 0.00707 / sqrt 2.
    assert meta["per_seed"] == pytest.approx([0.7, 0.71])
    assert meta["ci_high"] - meta["value"] == pytest.approx(1.96 * 0.005, rel=1e-6)
    report = (tmp_path / "report.md").read_text()
    for title in ("Spiking", "Meta-learning", "architecture search", "PathNet"):
        assert title in report
    assert report.count("| experiment | metric |") == 4
    assert "0.7050 [" in report or "0.705 [" in report
    figures = sorted(os.listdir(tmp_path / "figures"))
    assert "summary.png" in figures
    for name in ("snn", "metalearn", "nas", "transfer"):
        assert any(
            f.startswith(f"{name}_") and f.endswith("curve.png") for f in figures
        )
        assert any(
            f.startswith(f"{name}_") and f.endswith("_curves.png") for f in figures
        )
    for figure in figures:
        assert f"figures/{figure}" in report
    again = run_fake(monkeypatch, tmp_path)
    assert again["records"] == ledger["records"]
    runs = list(tmp_path.glob("*/*/seed_*/runs.txt"))
    assert len(runs) == 5
    for path in runs:
        assert path.read_text().count("\n") == 1  # trained once, then skipped


def test_interrupt_reports_what_finished_and_resumes(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        run_fake(monkeypatch, tmp_path, interrupt_area="nas")
    assert stop.value.code == 128 + 15
    error = capsys.readouterr().err
    assert "snn/exp0 seed 0, metalearn/exp1 seed 0, metalearn/exp1 seed 1" in error
    assert "resume with the same command" in error
    partial = ledger_lib.read(str(tmp_path))
    assert [r["experiment"] for r in partial["records"]] == [
        "snn/exp0",
        "metalearn/exp1",
    ]
    done = run_fake(monkeypatch, tmp_path)
    assert len(done["records"]) == 4
    assert (tmp_path / "snn/exp0/seed_0/runs.txt").read_text().count("\n") == 1


def test_changed_config_in_the_same_workdir_is_refused(tmp_path, monkeypatch):
    run_fake(monkeypatch, tmp_path, only=["snn"])
    changed = fake_preset()
    changed[0] = presets_lib.Experiment(
        "snn", "exp0", f"{FAKE}:0.99", "fake", changed[0].metrics
    )
    monkeypatch.setitem(presets_lib.PRESETS, "smoke", changed)
    with pytest.raises(ConfigError, match="holds a run of another config"):
        reproduce.reproduce("smoke", str(tmp_path), ["snn"], None, "x")


def demo_ledger(shift=0.0):
    """A ledger of the demo preset with every value at its band's lower end."""
    records = []
    for experiment in presets_lib.PRESETS["demo"]:
        for metric in experiment.metrics:
            low = metric.band[0] if metric.band[0] is not None else 0.0
            records.append(
                {
                    "experiment": f"{experiment.area}/{experiment.name}",
                    "area": experiment.area,
                    "metric": metric.key,
                    "label": metric.label,
                    "value": low + shift,
                    "ci_low": None,
                    "ci_high": None,
                    "seeds": [0],
                    "per_seed": [low + shift],
                    "preset": "demo",
                    "config": experiment.config,
                    "config_hash": "0" * 16,
                    "setting": experiment.setting,
                    "data_source": "embedded",
                    "device": "cpu",
                    "wall_seconds": 1.0,
                    "published": metric.published,
                    "source": metric.source,
                }
            )
    return {"preset": "demo", "only": list(presets_lib.AREAS), "records": records}


def test_check_passes_in_band_and_names_each_record_out_of_band():
    ledger = demo_ledger()
    ledger_lib.validate(ledger)
    assert ledger_lib.check(ledger) == []
    low = copy.deepcopy(ledger)
    low["records"][0]["value"] -= 0.01
    problems = ledger_lib.check(low)
    assert len(problems) == 1 and problems[0].startswith("snn/lif_mlp test_accuracy")
    missing = copy.deepcopy(ledger)
    del missing["records"][-1]
    assert "missing from the ledger" in ledger_lib.check(missing)[0]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ledger: ledger.pop("records"), "no top-level field 'records'"),
        (lambda ledger: ledger.update(preset="huge"), "unknown preset 'huge'"),
        (lambda ledger: ledger["records"][0].pop("device"), "has no field 'device'"),
        (
            lambda ledger: ledger["records"][0].update(value="high"),
            "field 'value'='high'",
        ),
        (
            lambda ledger: ledger["records"][0].update(value=float("nan")),
            "value is nan",
        ),
    ],
)
def test_schema_errors_name_the_field(edit, message):
    ledger = demo_ledger()
    edit(ledger)
    with pytest.raises(ValueError, match=message):
        ledger_lib.validate(ledger)


def test_cli_check_exit_codes(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    bad = demo_ledger(shift=-0.5)
    (tmp_path / "results.json").write_text(json.dumps(bad))
    out = subprocess.run(
        [sys.executable, "-m", "scripts.reproduce", f"--ledger={tmp_path}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 1
    assert (
        "snn/lif_mlp test_accuracy" in out.stderr and "outside its band" in out.stderr
    )
    (tmp_path / "results.json").write_text(json.dumps(demo_ledger(shift=0.001)))
    ok = subprocess.run(
        [sys.executable, "-m", "scripts.reproduce", f"--ledger={tmp_path}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("preset", sorted(presets_lib.PRESETS))
def test_every_preset_config_loads_and_validates(preset):
    for experiment in presets_lib.PRESETS[preset]:
        for seed in experiment.seeds:
            config = reproduce.load_config(
                experiment.config, experiment.overrides, seed, None
            )
            config_lib.validate(config)


def test_only_runs_add_up_in_one_ledger(tmp_path, monkeypatch):
    run_fake(monkeypatch, tmp_path, only=["nas"])
    ledger = run_fake(monkeypatch, tmp_path, only=["snn"])
    assert ledger["only"] == ["snn", "nas"]
    assert [r["experiment"] for r in ledger_lib.read(str(tmp_path))["records"]] == [
        "snn/exp0",
        "nas/exp2",
    ]
    with pytest.raises(ConfigError, match="ledger of preset 'smoke', not 'demo'"):
        reproduce.reproduce("demo", str(tmp_path), ["snn"], None, "x")
