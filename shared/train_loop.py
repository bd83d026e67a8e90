"""`fit`: the one jitted training driver every area uses.

    state = fit(step_fn, state, workdir=..., num_steps=..., key=..., batches=...)

What it does, in order, each step `s` (1-based after the update):
  1. takes the next host batch (if any), shards it over the mesh's `data` axis;
  2. runs the jitted, state-donating step with key `fold_in(key, s - 1)`;
  3. every `log_every` steps: fetches the window's metrics, stops on the first
     non-finite one (naming step and metric), writes their mean;
  4. every `eval_every` steps: runs `eval_fn(state)` and writes `eval/...`;
  5. every `checkpoint_every` steps, at the end, and on SIGTERM/SIGINT: saves
     (state, iterator position, unlogged metrics) atomically.

On start it restores the latest checkpoint in `workdir`, cuts `metrics.jsonl` back
to that step and continues, so a killed-and-resumed run writes the same rows and
ends in the same state as an uninterrupted one. Metrics stay on the device until
a log step: no per-step host sync.

For multi-phase experiments (search then retrain, pair after pair, seed after seed):
  * `constants`: large fixed arrays (an image bank, a task's data) passed to the
    step as an argument, `step_fn(state, batch, key, constants)`, instead of
    closed over. They are placed on the mesh once, never donated or saved.
  * compiled steps are reused: the jitted step is cached per `step_fn` object
    (held weakly), so the next `fit` call with the same function and shapes
    compiles nothing. Keep data out of the closure (pass it as `constants`)
    so that one function object serves every phase.
  * `stop_fn(step, metrics) -> bool`, asked after each log step with the train
    (and latest eval) metrics, ends a run early; the stop is checkpointed, so
    a rerun of a stopped run does no more work.

The step and `eval_fn` run under `jax.set_mesh(mesh)`: a jitted function an
area also calls outside `fit` (final evaluation, figures) reuses fit's compiled
code only when called under the same mesh (`with jax.set_mesh(mesh)`). Weakly
typed state leaves (a Python scalar through `jnp.asarray`) are made strong on
entry: the step's outputs are strongly typed, so a weak input would make the
second step compile again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from shared import mesh as mesh_lib
from shared import workdir as workdir_lib
from shared.checkpoint import Checkpointer
from shared.errors import ConfigError, Interrupted, NonFiniteError
from shared.metrics import MetricWriter, read_metrics
from shared.progress import Progress
from shared.types import EvalFn, Key, PyTree, StepFn


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
      state: the final state (replicated over the mesh).
      train_metrics: the last logged window mean of the step metrics.
      eval_metrics: the last `eval_fn` result (with `eval/` names), or {}.
      steps_per_second: this invocation's steps after the first (compile) one,
        per wall-clock second, including in-loop logging, evaluation and
        checkpoints; nan when fewer than two steps ran (e.g. a finished run).
      start_step: the step this invocation started from (> 0 when resumed).
      final_step: the last step of the run (< num_steps if `stop_fn` ended it).
      stopped_early: whether `stop_fn` ended the run.
    """

    state: PyTree
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    steps_per_second: float
    start_step: int
    final_step: int = 0
    stopped_early: bool = False


def fit(
    step_fn: StepFn,
    state: PyTree,
    *,
    workdir: str,
    num_steps: int,
    key: Key,
    batches: Iterator[Mapping[str, np.ndarray]] | None = None,
    eval_fn: EvalFn | None = None,
    log_every: int = 100,
    eval_every: int = 0,
    checkpoint_every: int = 1000,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool | None = None,
    constants: PyTree = None,
    stop_fn: Callable[[int, dict[str, float]], bool] | None = None,
    compiler_options: Mapping[str, Any] | None = None,
) -> FitResult:
    """Trains `state` with `step_fn` for `num_steps` steps, resuming from `workdir`.

    Args:
      step_fn: pure `(state, batch, key) -> (state, metrics)`; `state` has an
        integer `step` field; `metrics` is a flat dict of scalars.
      state: the initial state (used as the restore target when resuming).
      workdir: where metrics.jsonl and checkpoints/ live; locked while running.
      num_steps: total steps (not steps of this invocation).
      key: base PRNG key; step `s` gets `fold_in(key, s)`.
      batches: host iterator of dict batches, with `get_state`/`set_state` to
        save its position; None when `step_fn` draws its own data from the key.
      eval_fn: `state -> metrics` run every `eval_every` steps and at the end.
      log_every, eval_every, checkpoint_every: intervals in steps (0 = never,
        except that the final step always logs, evaluates and checkpoints).
      mesh: the device mesh (default: all devices on one `data` axis).
      progress: show a progress bar (default: only on a terminal).
      constants: fixed arrays passed as the step's fourth argument (then
        `step_fn(state, batch, key, constants)`); replicated over the mesh once.
      stop_fn: `(step, metrics) -> bool`, asked after each log step; True ends
        the run there (checkpointed, so a rerun of a stopped run does no work).

    Returns:
      A `FitResult`.

    Raises:
      NonFiniteError: a metric became NaN/Inf; the last checkpoint is left intact.
      Interrupted: SIGTERM/SIGINT arrived; a checkpoint was saved first.
    """
    for name, value in [("num_steps", num_steps), ("log_every", log_every)]:
        if value < 1:
            raise ConfigError(f"{name}={value} must be >= 1; set --config.{name}.")
    workdir_lib.lock(workdir)
    mesh = mesh or mesh_lib.make_mesh()
    writer = MetricWriter(workdir)
    checkpointer = Checkpointer(workdir)
    # A private, strongly typed copy: donation must not invalidate the caller's
    # arrays, and weak types would recompile the step once.
    state = mesh_lib.replicate(jax.tree.map(_strong_copy, state), mesh)
    pending: list[tuple[int, dict[str, Any]]] = []
    stopped = False
    restored = checkpointer.restore(state)
    if restored is not None:
        state, host = restored
        if batches is not None and "batches" in host:
            batches.set_state(host["batches"])
        pending = [(int(step), dict(row)) for step, row in host.get("pending", [])]
        stopped = bool(host.get("stopped", False))
        writer.truncate_after(int(state.step))
        logging.info("resumed from checkpoint at step %d", int(state.step))
    start_step = int(state.step)
    last_step = start_step if stopped else num_steps
    if constants is not None:
        constants = mesh_lib.replicate(constants, mesh)
    jitted = _jitted_step(step_fn, constants is not None, compiler_options)
    bar = Progress(num_steps, start_step, progress)
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    timer_start, timer_step, step = None, start_step, start_step

    def save(step):
        host_pending = _to_host(pending)
        checkpointer.save(
            step,
            state,
            {
                "batches": batches.get_state() if hasattr(batches, "get_state") else {},
                "pending": [[s, row] for s, row in host_pending],
                "stopped": stopped,
            },
        )

    with jax.set_mesh(mesh), _signals_to_flag() as stop:
        for step in range(start_step + 1, last_step + 1):
            batch = next(batches) if batches is not None else None
            batch = mesh_lib.shard_batch(batch, mesh) if batch is not None else None
            state, metrics = jitted(state, batch, key, constants)
            pending.append((step, metrics))
            last = step == num_steps
            if step == start_step + 1:
                jax.block_until_ready(state)
                timer_start, timer_step = time.perf_counter(), step
            logged = step % log_every == 0 or last
            if logged:
                train_metrics = _mean(_to_host(pending))
                writer.write(step, train_metrics)
                pending = []
            evaluated = eval_fn is not None and (
                (eval_every and step % eval_every == 0) or last
            )
            if evaluated:
                eval_metrics = _prefixed(eval_fn(state))
                writer.write(step, eval_metrics)
            if logged and stop_fn is not None and not last:
                stopped = bool(stop_fn(step, {**train_metrics, **eval_metrics}))
                if stopped and eval_fn is not None and not evaluated:
                    eval_metrics = _prefixed(eval_fn(state))
                    writer.write(step, eval_metrics)
            if (checkpoint_every and step % checkpoint_every == 0) or last or stopped:
                save(step)
            bar.update(step)
            if stopped:
                logging.info("stop_fn ended the run at step %d", step)
                break
            if stop.signum is not None:
                save(step)
                bar.close(step)
                raise Interrupted(step, stop.signum)
        if restored is not None and start_step == last_step:  # a finished run
            train_metrics = _last_train_row(workdir)
            if eval_fn is not None:
                eval_metrics = _prefixed(eval_fn(state))
        bar.close(num_steps)
    jax.block_until_ready(state)
    done = step - timer_step
    rate = (
        done / (time.perf_counter() - timer_start)
        if timer_start and done > 0
        else math.nan
    )
    checkpointer.close()
    return FitResult(
        state, train_metrics, eval_metrics, rate, start_step, int(state.step), stopped
    )


_JITTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jitted_step(
    step_fn: StepFn, with_constants: bool, options: Mapping[str, Any] | None = None
):
    """One jitted, state-donating step per (step_fn, with_constants, options),
    cached.

    The cache holds `step_fn` weakly (and the jitted wrapper reaches it only
    through a weak reference), so a phase's closure and its compiled code die
    together.
    """
    try:
        cache = _JITTED.setdefault(step_fn, {})
        ref = weakref.ref(step_fn)
    except TypeError:  # not weakly referenceable: compile per call
        cache, ref = {}, lambda: step_fn
    slot = (with_constants, tuple(sorted((options or {}).items())))
    if slot not in cache:

        def wrapped(state, batch, base_key, constants):
            key = jax.random.fold_in(base_key, state.step)
            if with_constants:
                return ref()(state, batch, key, constants)
            return ref()(state, batch, key)

        cache[slot] = jax.jit(
            wrapped, donate_argnums=0, compiler_options=dict(options or {}) or None
        )
    return cache[slot]


def _strong_copy(leaf):
    """A copy of `leaf` with the same dtype but never weakly typed."""
    return jnp.array(leaf, dtype=jnp.asarray(leaf).dtype, copy=True)


def _to_host(pending):
    """Fetches pending metrics and raises on the first non-finite value."""
    rows = jax.device_get(pending)
    out = []
    for step, row in rows:
        host = {name: float(value) for name, value in row.items()}
        for name, value in host.items():
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"metric {name} is {value} at step {step}; stopping. The last "
                    "checkpoint (before this step) is intact. Lower the learning "
                    "rate or check the data, then rerun to resume."
                )
        out.append((step, host))
    return out


def _mean(rows) -> dict[str, float]:
    names = rows[-1][1].keys()
    return {name: float(np.mean([row[name] for _, row in rows])) for name in names}


def _last_train_row(workdir: str) -> dict[str, float]:
    """The last logged train metrics of a finished run, from metrics.jsonl."""
    rows = [{k: v for k, v in r.items() if k != "step"} for r in read_metrics(workdir)]
    train = [r for r in rows if r and not any(k.startswith("eval/") for k in r)]
    return train[-1] if train else {}


def _prefixed(metrics: Mapping[str, float]) -> dict[str, float]:
    return {(k if "/" in k else f"eval/{k}"): float(v) for k, v in metrics.items()}


class _StopFlag:
    signum: int | None = None


@contextlib.contextmanager
def _signals_to_flag():
    """SIGTERM/SIGINT set a flag the loop checks after each step."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        del frame
        flag.signum = signum

    previous = {
        signum: signal.signal(signum, handler)
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
