r"""Steps/s of `shared.train_loop.fit` against a hand-written jitted loop.

    JAX_PLATFORMS=cpu python -m benchmarks.loop_overhead [--steps=600] [--repeats=3]

Both loops run the reference classifier's step (shared/classifier.py) on the same
embedded-MNIST batches, the same donation and the same mesh; `fit` adds metric
logging every 100 steps, a checkpoint at the end and the resume bookkeeping.
Prints one JSON line per repeat and a summary line with the medians, the
overhead in percent and the peak RSS.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import optax
from absl import app, flags, logging

from shared import data as data_lib
from shared import heap, train_loop
from shared import mesh as mesh_lib
from shared.batches import BatchIterator
from shared.classifier import TrainState, make_model, make_step
from shared.configs import mnist_classifier

_HEAP = heap.define_flag()
_STEPS = flags.DEFINE_integer("steps", 600, "Timed steps per loop and repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; medians are reported.")


def _setup():
    config = mnist_classifier.get_config("quick")
    train = data_lib.load("mnist", "train")
    graphdef, params = make_model(config, jax.random.key(0))
    optimizer = optax.adam(config.learning_rate)
    step = make_step(graphdef, optimizer)

    def fresh_state():
        return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def fresh_batches():
        arrays = {"image": train.images, "label": train.labels}
        return BatchIterator(arrays, config.batch_size, seed=0)

    return step, fresh_state, fresh_batches


def hand_loop(step, state, batches, num_steps, mesh) -> float:
    """The baseline: jit + donate + shard, nothing else. Returns steps/s."""
    key = jax.random.key(1)
    jitted = jax.jit(
        lambda s, b, k: step(s, b, jax.random.fold_in(k, s.step)), donate_argnums=0
    )
    state = mesh_lib.replicate(jax.tree.map(jnp.copy, state), mesh)
    with jax.set_mesh(mesh):
        state, metrics = jitted(state, mesh_lib.shard_batch(next(batches), mesh), key)
        jax.block_until_ready(state)
        start = time.perf_counter()
        for _ in range(num_steps):
            batch = mesh_lib.shard_batch(next(batches), mesh)
            state, metrics = jitted(state, batch, key)
        jax.block_until_ready((state, metrics))
    return num_steps / (time.perf_counter() - start)


def fit_loop(step, state, batches, num_steps, mesh) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        result = train_loop.fit(
            step,
            state,
            workdir=workdir,
            num_steps=num_steps + 1,  # fit times from the end of its first step
            key=jax.random.key(1),
            batches=batches,
            log_every=100,
            checkpoint_every=0,
            mesh=mesh,
            progress=False,
        )
    return result.steps_per_second


def main(argv) -> None:
    heap.configure(_HEAP.value, area="shared")  # before JAX starts its threads
    del argv
    logging.set_verbosity(logging.WARNING)
    step, fresh_state, fresh_batches = _setup()
    mesh = mesh_lib.make_mesh()
    rates = {"hand": [], "fit": []}
    for repeat in range(_REPEATS.value):
        for name, loop in (("hand", hand_loop), ("fit", fit_loop)):
            rate = loop(step, fresh_state(), fresh_batches(), _STEPS.value, mesh)
            rates[name].append(rate)
            print(json.dumps({"repeat": repeat, "loop": name, "steps_per_s": rate}))
    hand, fit = statistics.median(rates["hand"]), statistics.median(rates["fit"])
    summary = {
        "benchmark": "loop_overhead",
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "steps": _STEPS.value,
        "repeats": _REPEATS.value,
        "hand_steps_per_s": round(hand, 2),
        "fit_steps_per_s": round(fit, 2),
        "overhead_percent": round(100 * (hand - fit) / hand, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
