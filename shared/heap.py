"""glibc heap settings for XLA:CPU: reuse freed memory instead of mapping it anew.

XLA:CPU allocates each call's temporary buffer (one block holding every
intermediate of the step: 242 MB for the SNN-CONV training step) with
`malloc` and frees it when the call returns. glibc serves a block that large
with a fresh `mmap` (its dynamic threshold stops at 32 MiB) and gives it back
with `munmap`, so every call touches brand-new pages: the kernel zero-fills
each 4 KiB page on its first write, ~59k page faults per SNN-CONV step. With
`M_MMAP_MAX = 0` glibc takes large blocks from the heap instead, and with a
high `M_TRIM_THRESHOLD` it keeps the freed top of the heap, so the next call
reuses pages that are already mapped. Measured on the 2-core CPU (README,
"CPU heap"): SNN-CONV 137.9 -> 208.7 samples/s; a jitted pair of 3000x3000
matmuls 843,849 -> 19,357 page faults per call.

`configure` makes these settings with `mallopt(3)` at run time (the same
knobs as the `MALLOC_MMAP_MAX_` / `MALLOC_TRIM_THRESHOLD_` / `MALLOC_ARENA_MAX`
environment variables, which glibc reads only at process start). The entry
points (`scripts/train.py`, the benchmarks) call it with their `--heap` flag:

- `auto` (default): tune when the run is one of the areas where it was
  measured faster (`TUNED_AREAS`: `snn`), on the CPU (`JAX_PLATFORMS` starts
  with `cpu`, or names nothing and no GPU/TPU plugin is installed), with
  glibc; a setting whose environment variable the user exported is left
  alone. Elsewhere `auto` changes nothing: the same settings made ProtoNet's
  step ~10% slower (idle A/Bs, `--heap=auto` tuned vs `system`: 7.30 / 6.63
  vs 7.83 / 7.51 episodes/s), likely the one arena's lock.
- `tuned`: tune whatever the backend (still glibc only).
- `system`: change nothing.

`M_ARENA_MAX = 1` matters as much as the other two: a worker thread's own
arena grows in heaps of at most 64 MiB, so a larger block there is mapped
whatever `M_MMAP_MAX` says. A thread keeps the arena it first allocated
from, so `configure` must run before JAX starts its backend (it does not
initialise JAX itself): with the same settings made after the first jitted
call, a 64 MiB temp buffer still faulted ~32,770 pages on every call.

Cost: freed memory stays in the process, and the heap grows for the first
few calls before it holds (XLA's threads interleave small allocations with
the big ones): a 64 MiB intermediate settled after ~10 calls at 1,050 MB of
RSS against 410 MB with the system heap, after which no call faulted a
page; SNN-CONV peaks at 1.39 GiB against 1.03. All threads share one
arena's lock. Use `--heap=system` where memory is tighter than time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os

MODES = ("auto", "tuned", "system")
TUNED_AREAS = ("snn",)  # where `auto` tunes: measured faster there
HELP = (
    "glibc heap for XLA:CPU's per-call temp buffers: auto (tune CPU runs of snn), "
    "tuned (always), system (leave malloc as it is). See shared/heap.py."
)

# mallopt(3) parameter numbers (glibc's malloc.h), their environment
# variables, and the values set.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = (
    ("MALLOC_MMAP_MAX_", _M_MMAP_MAX, 0),
    ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, 2**31 - 1),  # the int maximum
    ("MALLOC_ARENA_MAX", _M_ARENA_MAX, 1),
)
ENV_NAMES = tuple(name for name, _, _ in _SETTINGS)


def _glibc():
    """The loaded C library if it is glibc, else None (musl, macOS, Windows)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (AttributeError, ValueError, OSError):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def _cpu_run() -> bool:
    """Whether JAX will run on the CPU, decided without initialising JAX."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    plugins = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")
    return not any(importlib.util.find_spec(name) for name in plugins)


def configure(
    mode: str = "auto", area: str | None = None, cpu: bool | None = None
) -> dict[str, int]:
    """Applies `mode` (one of `MODES`); returns the settings made, by env name.

    Call it first thing in an entry point, before any JAX computation.

    Args:
      mode: `auto`, `tuned` or `system` (see the module docstring).
      area: the run's area (`config.area`); `auto` tunes `TUNED_AREAS` only.
      cpu: for `auto`, whether the run is on the CPU; None guesses it from
        `JAX_PLATFORMS` and the installed plugins.

    Raises:
      ValueError: an unknown mode, naming the `--heap` flag.
    """
    if mode not in MODES:
        raise ValueError(f"--heap={mode!r} is not one of {', '.join(MODES)}.")
    if mode == "system":
        return {}
    if mode == "auto" and (
        area not in TUNED_AREAS or not (_cpu_run() if cpu is None else cpu)
    ):
        return {}
    libc = _glibc()
    if libc is None:
        return {}
    made = {}
    for env_name, param, value in _SETTINGS:
        if env_name in os.environ:  # the user's own setting wins
            continue
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            made[env_name] = value
    return made


def define_flag():
    """Defines the entry points' `--heap` flag (default `auto`)."""
    from absl import flags

    return flags.DEFINE_enum("heap", "auto", list(MODES), HELP)
