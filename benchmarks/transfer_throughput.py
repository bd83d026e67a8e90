r"""PathNet tournaments/s: one jitted round vs a per-path Python loop.

    JAX_PLATFORMS=cpu python -m benchmarks.transfer_throughput [--rounds=3] \
        [--repeats=3] [--population=64] [--minibatches=50]

Binary-MNIST modules (L=3, M=10, N=3, 20 units), T minibatches of 16 per path,
SGD. Three ways to run the same tournaments (P/2 per round):
  loop         what public re-implementations do: a jitted single-minibatch step,
               called from Python for every path and minibatch, selection in numpy;
  serial       transfer.genetic round, schedule "serial" (lax.scan over paths and
               minibatches: the same arithmetic as `loop`, one dispatch per round);
  synchronous  schedule "synchronous" (vmap over the P paths inside the scan over
               minibatches, summed gradients: the parallel-workers variant).
Prints one JSON line per (method, repeat) and a summary line with medians, the
speedups over `loop` and the peak RSS. Time one thing at a time on a quiet machine.
"""

from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from transfer import genetic, pathnet, tasks

_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; medians are reported.")
_POPULATION = flags.DEFINE_integer("population", 64, "Population size P.")
_MINIBATCHES = flags.DEFINE_integer("minibatches", 50, "T minibatches per path.")

SPEC = pathnet.PathNetSpec()  # the paper's binary-MNIST network


def _setup():
    task = tasks.make_binary_task((3, 5))
    population = _POPULATION.value
    batches = tasks.RoundBatches(
        task.train_images, task.train_labels, population, _MINIBATCHES.value, 16, 0
    )
    optimizer = optax.sgd(0.05)
    params = pathnet.init_params(jax.random.key(0), SPEC)
    return batches, optimizer, params


def time_round(schedule: str, batches, optimizer, params) -> float:
    """Tournaments/s of the jitted round with all P/2 tournaments per call."""
    population = _POPULATION.value
    ga = genetic.GAConfig(population, population // 2, schedule, 2.0)  # never solves
    step = jax.jit(genetic.make_round(SPEC, ga, optimizer), donate_argnums=0)
    state = genetic.init_state(jax.random.key(1), params, optimizer, SPEC, ga)
    state = jax.tree.map(jnp.copy, state)
    data = [jax.device_put(next(batches)) for _ in range(_ROUNDS.value + 1)]
    state, _ = step(state, data[0], jax.random.key(0))  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    for index in range(_ROUNDS.value):
        state, _ = step(state, data[index + 1], jax.random.key(index))
    jax.block_until_ready(state)
    return _ROUNDS.value * ga.tournaments_per_round / (time.perf_counter() - start)


def time_loop(batches, optimizer, params) -> float:
    """Tournaments/s of the per-path Python loop (one dispatch per minibatch)."""
    grad_fn = jax.value_and_grad(genetic.make_loss(SPEC), has_aux=True)

    @jax.jit
    def train_step(params, opt_state, path, images, labels):
        (_, accuracy), grads = grad_fn(params, path, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, accuracy

    rng = np.random.default_rng(0)
    population = rng.integers(0, SPEC.num_modules, (_POPULATION.value, 3, 3))
    opt_state = optimizer.init(params)
    data = next(batches)
    train_step(
        params, opt_state, population[0], data["image"][0, 0], data["label"][0, 0]
    )
    tournaments = 0
    start = time.perf_counter()
    for _ in range(_ROUNDS.value):
        data = next(batches)
        order = rng.permutation(len(population))
        for pair in order.reshape(-1, 2):
            fitness = []
            for slot, member in enumerate(pair):
                accuracies = []
                for t in range(_MINIBATCHES.value):
                    params, opt_state, accuracy = train_step(
                        params,
                        opt_state,
                        population[member],
                        data["image"][slot, t],
                        data["label"][slot, t],
                    )
                    accuracies.append(accuracy)
                fitness.append(float(np.mean(accuracies)))
            winner, loser = pair if fitness[0] >= fitness[1] else pair[::-1]
            child = population[winner].copy()
            flip = rng.random(child.shape) < 1 / child.size
            child[flip] = (child[flip] + rng.integers(-2, 3, flip.sum())) % 10
            population[loser] = child
            tournaments += 1
    jax.block_until_ready(params)
    return tournaments / (time.perf_counter() - start)


def main(argv):
    del argv
    batches, optimizer, params = _setup()
    results = {"loop": [], "serial": [], "synchronous": []}
    for repeat in range(_REPEATS.value):
        for method in results:
            if method == "loop":
                rate = time_loop(batches, optimizer, params)
            else:
                rate = time_round(method, batches, optimizer, params)
            results[method].append(rate)
            print(
                json.dumps(
                    {"method": method, "repeat": repeat, "tournaments_per_s": rate}
                )
            )
    medians = {m: statistics.median(v) for m, v in results.items()}
    print(
        json.dumps(
            {
                "summary": medians,
                "speedup_serial_vs_loop": medians["serial"] / medians["loop"],
                "speedup_synchronous_vs_loop": medians["synchronous"] / medians["loop"],
                "population": _POPULATION.value,
                "minibatches": _MINIBATCHES.value,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
                "device": jax.devices()[0].device_kind,
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
