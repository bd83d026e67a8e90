"""Diehl & Cook (2015) STDP network throughput and peak memory, JSON lines out.

    JAX_PLATFORMS=cpu python -m benchmarks.snn_stdp_throughput --seconds=10 --repeats=3
    ... --num_neurons=100,400 --stdp_rule=power_law   # the `paper` preset's rule

Two rows per neuron count, on embedded MNIST training images (the real spike
statistics: about 3 input spikes per 0.5 ms step):
  learn    the training step (`diehl_cook.make_train_step`, jitted):
           `--images_per_step` images shown one after another with STDP,
           theta adaptation, retries and the carried 150 ms rest; every call
           starts from the same state, trained on `--warm_images` images
           first (the first images, from random weights, spike far more than
           later ones), so that repeats do equal work;
  respond  labelling / testing (`diehl_cook.make_responses`): `--eval_batch`
           images, each from rest, learning off.
Per row: one warm-up call (compile), then calls for `--seconds`, `--repeats`
times; the median images/s, the compile + first call seconds and the process's
peak RSS so far.
"""

from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from shared import data as data_lib
from shared import heap
from snn import diehl_cook

_HEAP = heap.define_flag()
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Timed seconds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats (median reported).")
_NEURONS = flags.DEFINE_list("num_neurons", ["100"], "Excitatory neuron counts.")
_ROWS = flags.DEFINE_list("rows", ["learn", "respond"], "learn, respond.")
_IMAGES_PER_STEP = flags.DEFINE_integer("images_per_step", 10, "Images per step.")
_EVAL_BATCH = flags.DEFINE_integer("eval_batch", 20, "Images per respond call.")
_STDP_RULE = flags.DEFINE_string(
    "stdp_rule", "triplet", "triplet (the script's) or power_law (Eq. 3, `paper`)."
)
_WARM_IMAGES = flags.DEFINE_integer(
    "warm_images", 100, "Images learned before timing (state then fixed)."
)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _time(call, images_per_call: int) -> tuple[list[float], float]:
    start = time.perf_counter()
    jax.block_until_ready(call(0))
    first = time.perf_counter() - start
    rates, index = [], 1
    for _ in range(_REPEATS.value):
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < _SECONDS.value:
            jax.block_until_ready(call(index))
            index, images = index + 1, images + images_per_call
        rates.append(images / (time.perf_counter() - start))
    return rates, first


def main(argv):
    heap.configure(_HEAP.value, area="snn")  # before JAX starts its threads
    del argv
    train = data_lib.load("mnist", "train")
    pool = np.asarray(train.images[:2000], np.float32).reshape(2000, -1)
    for neurons in map(int, _NEURONS.value):
        model = diehl_cook.DiehlCook(num_neurons=neurons, stdp_rule=_STDP_RULE.value)
        key = jax.random.key(0)
        for row in _ROWS.value:
            if row == "learn":
                k = _IMAGES_PER_STEP.value
                step = jax.jit(diehl_cook.make_train_step(model))
                state = jax.jit(diehl_cook.init, static_argnums=0)(model, key)
                warm = _WARM_IMAGES.value
                if warm:
                    warm_step = jax.jit(diehl_cook.make_train_step(model))
                    batch = {"image": pool[-warm:]}
                    state = warm_step(state, batch, jax.random.key(-1))[0]

                def call(i, k=k, step=step, state=state, warm=warm):
                    start = (i * k) % (len(pool) - warm - k)
                    batch = {"image": pool[start : start + k]}
                    return step(state, batch, jax.random.key(i))

            elif row == "respond":
                k = _EVAL_BATCH.value
                responses = diehl_cook.make_responses(model)
                state = jax.jit(diehl_cook.init, static_argnums=0)(model, key)

                def call(i, k=k, responses=responses, state=state):
                    start = (i * k) % (len(pool) - k)
                    return responses(
                        state.weights, state.theta, state.delays,
                        jax.random.key(i), pool[start : start + k],
                    )  # fmt: skip

            else:
                raise app.UsageError(f"--rows: unknown {row!r}; use learn, respond.")
            rates, first = _time(call, k)
            print(
                json.dumps(
                    {
                        "benchmark": "snn_stdp",
                        "row": row,
                        "num_neurons": neurons,
                        "stdp_rule": model.stdp_rule,
                        "images_per_call": k,
                        "images_per_s": round(statistics.median(rates), 2),
                        "repeats": [round(r, 2) for r in rates],
                        "compile_and_first_call_s": round(first, 2),
                        "peak_rss_gib": round(_peak_rss_gib(), 3),
                        "backend": jax.default_backend(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
