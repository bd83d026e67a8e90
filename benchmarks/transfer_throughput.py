r"""PathNet tournaments/s: one jitted round vs a per-path Python loop.

    JAX_PLATFORMS=cpu python -m benchmarks.transfer_throughput [--rounds=3] \
        [--repeats=3] [--population=64] [--minibatches=50] [--methods=serial,...]

Binary-MNIST modules (L=3, M=10, N=3, 20 units), T minibatches of 16 per path,
SGD. Six ways to run the same tournaments (P/2 per round):
  loop_gathered  what public re-implementations do: a jitted single-minibatch
                 training step (params donated) that runs only the path's modules
                 (`gathered_loss`), called from Python for every path and
                 minibatch; one host sync per path for its fitness; selection and
                 mutation in NumPy;
  loop_dense     the same loop around this package's forward (every module,
                 masked), so the baseline gets the faster of the two forwards;
  loop_path      a stronger loop than the public ones: one jitted call per PATH
                 (a lax.scan over its T minibatches, gathered forward), Python
                 loops over paths and tournaments;
  serial_gathered  transfer.genetic round, schedule "serial", generic stateless
                 optimizer: lax.scan over paths, each path's modules gathered ONCE
                 (`bank_updates.gather_path`), a lax.scan over its T minibatches on
                 that small copy, the change scattered back; one dispatch per round;
  serial         the same round told the optimizer is plain SGD (`sgd_rate`):
                 `transfer.serial_sgd`, layer 0's updates deferred over blocks of 5
                 minibatches (one forward GEMM, the strictly lower triangle of the
                 Gram matrix, computed one block ahead, and one update GEMM on
                 transposed weights per block; loss and accuracy from the stored
                 logits after the scan; the same SGD up to float rounding);
  serial_winner_keeps  `serial` with `tournament="winner_keeps"` (both members
                 from the same bank on the same minibatches, the winner's copy kept:
                 `schedules.keep_winners`), same compute per tournament;
  synchronous    schedule "synchronous" (vmap over the P paths inside the scan over
                 minibatches, summed gradients, dense forward: the
                 parallel-workers variant).
Prints one JSON line per (method, repeat) and a summary line with medians, the
speedups over the faster loop and the peak RSS. Time one thing at a time on a quiet
machine.
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

from shared import heap
from transfer import genetic, pathnet, schedules, tasks

_HEAP = heap.define_flag()
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; medians are reported.")
_POPULATION = flags.DEFINE_integer("population", 64, "Population size P.")
_MINIBATCHES = flags.DEFINE_integer("minibatches", 50, "T minibatches per path.")
METHODS = (
    "loop_gathered",
    "loop_dense",
    "loop_path",
    "serial_gathered",
    "serial",
    "serial_winner_keeps",
    "synchronous",
)
_METHODS = flags.DEFINE_list("methods", list(METHODS), f"Subset of {METHODS}.")
LEARNING_RATE = 0.05

SPEC = pathnet.PathNetSpec()  # the paper's binary-MNIST network


def _setup():
    task = tasks.make_binary_task((3, 5))
    population = _POPULATION.value
    batches = tasks.RoundBatches(
        task.train_images, task.train_labels, population, _MINIBATCHES.value, 16, 0
    )
    optimizer = optax.sgd(LEARNING_RATE)
    params = pathnet.init_params(jax.random.key(0), SPEC)
    return batches, optimizer, params


def time_round(schedule: str, batches, optimizer, params) -> float:
    """Tournaments/s of the jitted round with all P/2 tournaments per call."""
    population = _POPULATION.value
    # "serial_gathered": the serial round without the plain-SGD hint.
    sgd_rate = None if schedule == "serial_gathered" else LEARNING_RATE
    tournament = "winner_keeps" if schedule.endswith("_winner_keeps") else "paper"
    schedule = schedule.removesuffix("_gathered").removesuffix("_winner_keeps")
    ga = genetic.GAConfig(  # threshold 2.0: never solves
        population, population // 2, schedule, 2.0, tournament=tournament
    )
    round_fn = genetic.make_round(SPEC, ga, optimizer, sgd_rate)
    step = jax.jit(round_fn, donate_argnums=0)
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


def gathered_loss(params, path, images, labels):
    """One path's loss the way public re-implementations compute it.

    Only the path's N modules per layer run: their weights are gathered (a
    repeated gene is masked so that it counts once, as in `transfer.pathnet`),
    each module's ReLU output is summed, then the task's readout.
    """
    h = images.astype(jnp.float32) / 255.0
    for index, layer in enumerate(params["layers"]):
        ids = path[index]
        repeat = jnp.tril(ids[:, None] == ids[None, :], k=-1).any(axis=1)
        w, b = layer["w"][ids], layer["b"][ids]  # (N, in, units), (N, units)
        out = jax.nn.relu(jnp.einsum("bi,niu->bnu", h, w) + b)
        h = (out * (~repeat)[:, None].astype(h.dtype)).sum(axis=1)
    logits = h @ params["head"]["w"] + params["head"]["b"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits.argmax(-1) == labels).mean()


def _numpy_tournament(rng, population, slots, fitness):
    """Selection and mutation in NumPy, as the public re-implementations do."""
    winner, loser = slots if fitness[0] >= fitness[1] else slots[::-1]
    child = population[winner].copy()
    flip = rng.random(child.shape) < 1 / child.size
    child[flip] = (child[flip] + rng.integers(-2, 3, flip.sum())) % SPEC.num_modules
    population[loser] = child


def time_loop(forward: str, batches, optimizer, params) -> float:
    """Tournaments/s of a per-path Python loop.

    `forward` "gathered" / "dense": the form public re-implementations take
    (kimhc6028/pathnet-pytorch loops over minibatches in Python): a jitted
    single-minibatch training step (parameters donated), called for every path
    and each of its T minibatches; "gathered" runs only the path's modules,
    "dense" this package's forward (every module, masked). `forward` "path": a
    stronger loop, one jitted call per PATH that scans its T minibatches
    (gathered forward). A path's fitness is the mean of its T accuracies (one
    host sync per path); selection and mutation in NumPy.
    """
    loss_fn = gathered_loss if forward != "dense" else schedules.make_loss(SPEC)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(params, opt_state, path, images, labels):
        (_, accuracy), grads = grad_fn(params, path, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, accuracy

    def path_steps(params, opt_state, path, images, labels):
        def body(carry, batch):
            params, opt_state, accuracy = minibatch_step(*carry, path, *batch)
            return (params, opt_state), accuracy

        (params, opt_state), accuracy = jax.lax.scan(
            body, (params, opt_state), (images, labels)
        )
        return params, opt_state, accuracy.mean()

    per_path = forward == "path"
    train = jax.jit(path_steps if per_path else minibatch_step, donate_argnums=(0, 1))
    rng = np.random.default_rng(0)
    population = rng.integers(0, SPEC.num_modules, (_POPULATION.value, 3, 3))
    params = jax.tree.map(jnp.copy, params)
    opt_state = optimizer.init(params)
    data = next(batches)
    warm = (data["image"][0], data["label"][0])
    if not per_path:
        warm = (warm[0][0], warm[1][0])
    params, opt_state, _ = train(params, opt_state, population[0], *warm)
    tournaments = 0
    start = time.perf_counter()
    for _ in range(_ROUNDS.value):
        data = next(batches)  # host arrays, as a data loader gives them
        order = rng.permutation(len(population))
        for slots in order.reshape(-1, 2):
            fitness = []
            for member in slots:
                images, labels = data["image"][member], data["label"][member]
                if per_path:
                    params, opt_state, accuracy = train(
                        params, opt_state, population[member], images, labels
                    )
                    fitness.append(float(accuracy))
                    continue
                accuracies = []
                for t in range(_MINIBATCHES.value):
                    params, opt_state, accuracy = train(
                        params, opt_state, population[member], images[t], labels[t]
                    )
                    accuracies.append(accuracy)
                fitness.append(float(np.mean(accuracies)))
            _numpy_tournament(rng, population, slots, fitness)
            tournaments += 1
    jax.block_until_ready(params)
    return tournaments / (time.perf_counter() - start)


def main(argv):
    heap.configure(_HEAP.value, area="transfer")  # before JAX starts its threads
    del argv
    unknown = set(_METHODS.value) - set(METHODS)
    if unknown:
        raise app.UsageError(f"--methods: unknown {sorted(unknown)}; use {METHODS}.")
    batches, optimizer, params = _setup()
    results = {method: [] for method in METHODS if method in _METHODS.value}
    for repeat in range(_REPEATS.value):
        for method in results:
            if method.startswith("loop_"):
                rate = time_loop(method[5:], batches, optimizer, params)
            else:
                rate = time_round(method, batches, optimizer, params)
            results[method].append(rate)
            print(
                json.dumps(
                    {"method": method, "repeat": repeat, "tournaments_per_s": rate}
                ),
                flush=True,
            )
    medians = {m: statistics.median(v) for m, v in results.items()}
    minibatch_loops = [medians.get(m, 0.0) for m in ("loop_gathered", "loop_dense")]
    loops = {
        "minibatch_loop": max(minibatch_loops),
        "path_loop": medians.get("loop_path", 0.0),
    }
    speedups = {
        f"speedup_{method}_vs_{name}": medians[method] / rate
        for method in (
            "serial",
            "serial_gathered",
            "serial_winner_keeps",
            "synchronous",
        )
        for name, rate in loops.items()
        if method in medians and rate
    }
    print(
        json.dumps(
            {
                "summary": medians,
                **speedups,
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
