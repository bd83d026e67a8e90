"""ENAS RNN cell: supernet train step vs the same child as a standalone cell.

One truncated-BPTT SGD step of the PTB language model (`nas.rnn_lm.loss`, tied
softmax, variational dropout) with (a) the shared-weight supernet and the arch
as data (`rnn_cell.select` once per window, then `selected_step`: one compile
for every child) and (b) the
same arch fixed at trace time (`rnn_cell.standalone_step`); the supernet has
the search-time batch norm unless `--nobatch_norm`. Issue 5's target:
(a) within 1.3x of (b). Also the controller: sampling 1000 archs.

    python benchmarks/nas_rnn_throughput.py --hidden=64 --seconds=10     # CPU
    python benchmarks/nas_rnn_throughput.py --hidden=720 --batch=20      # GPU

Warm-up (compile) first, then timed steps for `--seconds`, median of `--repeats`;
one JSON line per variant with peak RSS.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from nas import rnn_cell, rnn_lm
from nas import rnn_controller as ctrl_lib
from nas import search_space as space_lib
from shared import heap

_HEAP = heap.define_flag()
_HIDDEN = flags.DEFINE_integer("hidden", 64, "hidden = embedding size")
_BATCH = flags.DEFINE_integer("batch", 20, "sequences per step")
_BPTT = flags.DEFINE_integer("bptt", 35, "steps per BPTT window")
_VOCAB = flags.DEFINE_integer("vocab", 10000, "vocabulary size")
_NODES = flags.DEFINE_integer("nodes", 12, "cell nodes")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "timed seconds per repeat")
_REPEATS = flags.DEFINE_integer("repeats", 3, "repeats (median reported)")
_BATCH_NORM = flags.DEFINE_boolean(
    "batch_norm", True, "search-time batch norm in the supernet (as configs search)"
)
ARC = "0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1"  # official ptb_final.sh


def _time(fn, state):
    state = jax.block_until_ready(fn(state))  # compile
    rates = []
    for _ in range(_REPEATS.value):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < _SECONDS.value:
            state = fn(state)
            steps += 1
        jax.block_until_ready(state)
        rates.append(steps / (time.perf_counter() - start))
    return float(np.median(rates))


def main(argv):
    heap.configure(_HEAP.value, area="nas")  # before JAX starts its threads
    del argv
    space = space_lib.rnn_space(_NODES.value)
    arch = (
        space_lib.from_fixed_arc(space, ARC)
        if _NODES.value == 12
        else np.asarray(space_lib.random_arch(jax.random.key(1), space))
    )
    lm = rnn_lm.LMConfig(
        _VOCAB.value, _HIDDEN.value, _NODES.value, 0.75, 0.25, 0.75, 1e-3
    )
    # bn_* parameters are what turn the cell's batch norm on
    search_lm = dataclasses.replace(lm, batch_norm=_BATCH_NORM.value)
    key = jax.random.key(0)
    tokens = jax.random.randint(key, (_BATCH.value, _BPTT.value + 1), 0, _VOCAB.value)
    batch = {"x": tokens[:, :-1], "y": tokens[:, 1:]}
    optimizer = optax.chain(optax.clip_by_global_norm(0.25), optax.sgd(20.0))
    common = {
        "device": jax.devices()[0].device_kind,
        "hidden": _HIDDEN.value,
        "batch": _BATCH.value,
        "bptt": _BPTT.value,
        "vocab": _VOCAB.value,
        "supernet_batch_norm": _BATCH_NORM.value,
    }

    def make(cell, params, view=lambda p: p):
        @jax.jit
        def step(state):
            params, opt_state, h, key = state
            key, key_drop = jax.random.split(key)
            grads, (_, h) = jax.grad(
                lambda p: rnn_lm.loss(cell, view(p), lm, batch, h, key_drop),
                has_aux=True,
            )(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, h, key

        h0 = jnp.zeros((_BATCH.value, _HIDDEN.value))
        return step, (params, optimizer.init(params), h0, key)

    supernet_params = rnn_lm.init(key, search_lm)
    child_params = {
        "embedding": supernet_params["embedding"],
        "cell": rnn_cell.extract(supernet_params["cell"], arch),
    }
    arch_data = jnp.asarray(arch)
    variants = {
        "supernet": make(
            lambda c, *a: rnn_cell.selected_step(c, arch_data, *a),
            supernet_params,
            lambda p: {
                "embedding": p["embedding"],
                "cell": rnn_cell.select(p["cell"], arch_data),
            },
        ),
        "standalone": make(
            lambda c, *a: rnn_cell.standalone_step(c, arch, *a), child_params
        ),
    }
    rates = {}
    for name, (step, state) in variants.items():
        rates[name] = _time(step, state)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "variant": name,
                    "steps_per_s": rates[name],
                    "tokens_per_s": rates[name] * _BATCH.value * _BPTT.value,
                    "peak_rss_mib": rss,
                    **common,
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "variant": "ratio",
                "supernet_step_over_standalone": rates["standalone"]
                / rates["supernet"],
                **common,
            }
        ),
        flush=True,
    )

    ctrl_config = ctrl_lib.RnnControllerConfig(space)
    ctrl_params = ctrl_lib.init(key, ctrl_config)
    sample = jax.jit(lambda k: ctrl_lib.sample(ctrl_params, ctrl_config, k, 1000))
    jax.block_until_ready(sample(key))
    times = []
    for i in range(5):
        start = time.perf_counter()
        jax.block_until_ready(sample(jax.random.fold_in(key, i)))
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "variant": "controller_sample_1000",
                "seconds": float(np.median(times)),
                **common,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    app.run(main)
