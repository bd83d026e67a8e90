"""`shared.heap`: the glibc settings keep XLA:CPU's temp buffer mapped between calls."""

import json
import os
import subprocess
import sys

import pytest

from shared import heap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One process per mode: a thread keeps the arena it first allocated from, so
# the settings must be made before JAX starts (as the entry points do).
_PROBE = """
import json, resource, sys
from shared import heap
made = heap.configure(sys.argv[1], area=sys.argv[2])
import jax, jax.numpy as jnp

@jax.jit
def f(x):  # a 64 MiB intermediate: past glibc's largest mmap threshold (32 MiB)
    y = jax.lax.optimization_barrier(jnp.tanh(x))
    return jnp.sum(y * y[::-1])

x = jnp.ones((4096, 4096))
for _ in range(16):  # the heap grows for the first ~10 calls, then holds
    f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    f(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
print(json.dumps({"made": made, "faults": faults}))
"""


def _probe(mode, area="snn", **env):
    environ = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO_ROOT, **env}
    for name in heap.ENV_NAMES:
        if name not in env:
            environ.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, area],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unknown_mode_names_the_flag():
    with pytest.raises(ValueError, match="--heap='fast'"):
        heap.configure("fast")


def test_system_accelerator_and_untuned_areas_change_nothing():
    assert heap.configure("system", area="snn") == {}
    assert heap.configure("auto", area="snn", cpu=False) == {}
    # measured slower with the settings (ProtoNet), so auto leaves it alone
    assert heap.configure("auto", area="metalearn", cpu=True) == {}
    assert heap.configure("auto", area=None, cpu=True) == {}


@pytest.mark.parametrize(
    "platforms, expected", [("cpu", True), ("cuda", False), ("tpu,cpu", False)]
)
def test_cpu_run_follows_jax_platforms(monkeypatch, platforms, expected):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert heap._cpu_run() is expected


@pytest.mark.skipif(heap._glibc() is None, reason="mallopt is glibc's")
def test_tuned_heap_reuses_the_temp_buffer():
    system = _probe("system")
    tuned = _probe("auto")
    assert system["made"] == {}
    assert set(tuned["made"]) == {
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_MAX_",
        "MALLOC_TRIM_THRESHOLD_",
    }
    # default glibc maps the 64 MiB buffer afresh each call: ~16k pages of it
    # fault in; kept in the heap, they are already there
    assert system["faults"] > 12_000
    assert tuned["faults"] < system["faults"] / 3


@pytest.mark.skipif(heap._glibc() is None, reason="mallopt is glibc's")
def test_an_exported_setting_is_left_to_the_user():
    made = _probe("tuned", MALLOC_ARENA_MAX="2")["made"]
    assert "MALLOC_ARENA_MAX" not in made
    assert set(made) == {"MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"}
