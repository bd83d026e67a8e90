"""scripts.train: a smoke run, resume after SIGTERM, and every bad-input case."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from shared.metrics import read_metrics
from tests.conftest import REPO_ROOT

CONFIG = "shared/configs/mnist_classifier.py"
# The runs here compile the same smoke step again and again; a JAX persistent
# compilation cache shared by this module's subprocesses compiles it once.
JAX_CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def jax_cache(tmp_path_factory):
    JAX_CACHE["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax"))
    JAX_CACHE["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    yield
    JAX_CACHE.clear()


def train(workdir, *flags, wait=True):
    if not any(f.startswith("--config=") for f in flags):
        flags = (f"--config={CONFIG}:smoke", *flags)  # --config before overrides
    command = [sys.executable, "-m", "scripts.train", f"--workdir={workdir}", *flags]
    env = dict(os.environ, JAX_PLATFORMS="cpu", **JAX_CACHE)
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if not wait:
        return process
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


RESUME_FLAGS = ("--config.num_epochs=2", "--config.checkpoint_every=5")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run that the interrupted ones must reproduce exactly."""
    workdir = tmp_path_factory.mktemp("reference")
    code, stdout, stderr = train(workdir, *RESUME_FLAGS)
    assert code == 0, stderr
    assert "test_accuracy" in stdout and "embedded:mnist" in stdout  # the table
    return workdir


def test_smoke_run_writes_the_workdir(reference_run):
    workdir = reference_run
    for name in ("config.json", "metrics.jsonl", "summary.json", "data.json"):
        assert os.path.exists(workdir / name), name
    config = json.loads((workdir / "config.json").read_text())
    assert config["variant"] == "smoke" and config["checkpoint_every"] == 5
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 32 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["data_source"].startswith("embedded:mnist/train")
    assert os.listdir(workdir / "checkpoints")


def test_sigterm_midway_then_resume_equals_uninterrupted(tmp_path, reference_run):
    flags = RESUME_FLAGS
    process = train(tmp_path / "cut", *flags, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until training is under way
        rows = read_metrics(tmp_path / "cut") if (tmp_path / "cut").exists() else []
        if any(r["step"] >= 12 for r in rows):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "checkpoint saved" in stderr and "resume" in stderr
    code, _, stderr = train(tmp_path / "cut", *flags)
    assert code == 0, stderr
    assert read_metrics(tmp_path / "cut") == read_metrics(reference_run)
    summary_ref = json.loads((reference_run / "summary.json").read_text())
    summary_cut = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary_cut["resumed_from_step"] > 0
    assert summary_cut["test_accuracy"] == summary_ref["test_accuracy"]
    assert summary_cut["test_loss"] == summary_ref["test_loss"]


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ["--config.lerning_rate=0.1"],
            "unknown config field 'lerning_rate'.*did you mean 'learning_rate'",
        ),
        (["--config.batch_size=abc"], "--config.batch_size=abc"),
        (["--config.batch_size=0"], "config.batch_size=0 must be >= 1"),
        (["--config.learning_rate=-0.5"], "learning_rate=-0.5 must be a finite"),
        (["--workdr=/tmp/x"], "Unknown command line flag 'workdr'"),
        ([f"--config={CONFIG}:fast"], "unknown config variant 'fast'"),
        (["--config=shared/configs/nope.py"], "cannot load --config.*nope.py"),
        (["--data_dir=/nonexistent/tfds"], "--data_dir /nonexistent/tfds does not"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, flags, message):
    code, _, stderr = train(tmp_path, *flags)
    assert code == 2
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("gicho: error")]
    assert len(errors) == 1, stderr
    assert __import__("re").search(message, errors[0]), errors[0]


def test_second_run_on_a_live_workdir_is_refused(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from shared import workdir; workdir.lock(sys.argv[1]);"
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, stderr = train(tmp_path)
        assert code == 2 and "in use by a live run" in stderr
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_leaves_a_resumable_workdir(tmp_path, reference_run):
    """SIGKILL gives no chance to save: the run resumes from its last checkpoint."""
    flags = RESUME_FLAGS
    process = train(tmp_path / "cut", *flags, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline:
        rows = read_metrics(tmp_path / "cut") if (tmp_path / "cut").exists() else []
        if any(r["step"] >= 20 for r in rows):
            break
        time.sleep(0.05)
    process.kill()
    process.communicate(timeout=60)
    code, _, stderr = train(tmp_path / "cut", *flags)
    assert code == 0, stderr
    assert read_metrics(tmp_path / "cut") == read_metrics(reference_run)
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert 0 < summary["resumed_from_step"] < 32
