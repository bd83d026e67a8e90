"""The PathNet transfer protocol for one (A, B) task pair on binary MNIST.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.3 and figure 3:

  task A      GA from a fresh bank until a tournament winner reaches the fitness
              threshold (99.8% training accuracy) or `max_generations`;
  pathnet     fix the modules on A's best path, re-initialise every other module,
              new readout and population, GA on task B;
  finetune    keep the whole bank trained on A (nothing fixed, nothing re-initialised),
              new readout and population, GA on task B;
  scratch     independent learning: a fresh bank, same GA, on task B.

The three B runs share the population initialisation and the minibatch stream
(common random numbers), so their generation counts are paired. A run that never
reaches the threshold counts `max_generations` and is flagged `censored`. Every GA
phase is one `shared.train_loop.fit` call in `pair_XXX/<phase>/` (resumable). The
round, the initialisers and the report's accuracy are built once per setting
(`programs`), so `fit` compiles one round for all phases and pairs, and a phase ends
at the first log step after it is solved (`stop_fn`). The runner over many pairs is
`transfer.train`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shared import mesh as mesh_lib
from shared import train_loop
from transfer import bank_updates, genetic, pathnet, tasks

METHODS = ("pathnet", "finetune", "scratch")


def make_spec(config) -> pathnet.PathNetSpec:
    return pathnet.PathNetSpec(
        num_layers=config.num_layers,
        num_modules=config.num_modules,
        modules_per_layer=config.modules_per_layer,
        units=config.units,
        input_shape=(784,),
        num_classes=2,
        module="linear",
        last_layer_mean=config.last_layer_mean,
        init=config.init,
    )


def make_ga(config) -> genetic.GAConfig:
    return genetic.GAConfig(
        population_size=config.population_size,
        tournaments_per_round=config.tournaments_per_round,
        schedule=config.schedule,
        fitness_threshold=config.fitness_threshold,
        tournament=config.tournament,
    )


@dataclasses.dataclass(frozen=True)
class Programs:
    """The jitted pieces of a run, shared by every phase and pair of a setting.

    Attributes:
      step: the GA round, one object per setting, so `fit` (which caches its
        jitted step per step function) compiles it once.
      init_params: `key -> params`.
      init_state: `(key, params, frozen (L, M)) -> GAState`.
      keep_frozen: `(params, fresh, frozen) -> params` (`bank_updates.keep_frozen`).
      accuracy: `(params, path, images uint8, labels) -> accuracy` (reports only).
    """

    step: object
    init_params: object
    init_state: object
    keep_frozen: object
    accuracy: object


@functools.cache
def _programs(spec, ga, optimizer: str, learning_rate: float) -> Programs:
    opt = getattr(optax, optimizer)(learning_rate)

    def accuracy(params, path, images, labels):
        logits = pathnet.apply(params, path, images.astype(jnp.float32) / 255.0, spec)
        return (logits.argmax(-1) == labels).mean()

    return Programs(
        step=genetic.make_round(
            spec, ga, opt, learning_rate if optimizer == "sgd" else None
        ),
        init_params=jax.jit(functools.partial(pathnet.init_params, spec=spec)),
        init_state=jax.jit(
            lambda key, params, frozen: genetic.init_state(
                key, params, opt, spec, ga, frozen
            )
        ),
        keep_frozen=jax.jit(bank_updates.keep_frozen),
        accuracy=jax.jit(accuracy),
    )


def programs(config) -> Programs:
    return _programs(
        make_spec(config), make_ga(config), config.optimizer, config.learning_rate
    )


def make_mesh(config) -> jax.sharding.Mesh:
    """Synchronous rounds shard their 2K path slots over devices; serial ones don't."""
    slots = 2 * config.tournaments_per_round
    if config.schedule == "serial":
        return mesh_lib.make_mesh(1)
    return mesh_lib.make_mesh(math.gcd(slots, jax.device_count()))


def make_test_eval(task: tasks.BinaryTask, accuracy):
    """`state -> {"test_accuracy"}` of the best path: reporting only, never fitness."""

    def evaluate(state):
        acc = accuracy(
            state.params, state.best_path, task.test_images, task.test_labels
        )
        return {"test_accuracy": float(acc)}

    return evaluate


def _solved(step: int, metrics: dict) -> bool:
    """fit's stop_fn: the phase ends at the first log step after solving.

    `train/solved` is the window's mean of a flag that stays 1 once set, so any
    positive value means solved (the exact generation is in `solved_at`).
    """
    del step
    return metrics.get("train/solved", 0.0) > 0.0


def run_ga(config, task, state, workdir: str, key, batch_seed: int):
    """One GA phase on `task` through `fit`; returns (final state, result dict)."""
    ga, jitted = make_ga(config), programs(config)
    batches = tasks.RoundBatches(
        task.train_images,
        task.train_labels,
        2 * ga.tournaments_per_round,
        config.num_minibatches,
        config.batch_size,
        batch_seed,
        0.0 if config.get("salt_pepper_once", False) else config.salt_pepper,
    )
    result = train_loop.fit(
        jitted.step,
        state,
        workdir=workdir,
        num_steps=config.max_generations // ga.tournaments_per_round,
        key=key,
        batches=batches,
        eval_fn=make_test_eval(task, jitted.accuracy),
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        mesh=make_mesh(config),
        progress=False,
        stop_fn=_solved,
    )
    final = result.state
    solved_at = int(final.solved_at)
    return final, {
        "generations": solved_at if solved_at >= 0 else config.max_generations,
        "censored": solved_at < 0,
        "best_fitness": float(final.best_fitness),
        "test_accuracy": result.eval_metrics["eval/test_accuracy"],
        "best_path": np.asarray(final.best_path).tolist(),
    }


def run_pair(config, index: int, digits_a, digits_b, workdir: str) -> dict:
    """Task A then the three task-B runs of pair `index`."""
    spec, jitted = make_spec(config), programs(config)
    load = dict(
        dataset=config.dataset,
        data_dir=config.get("data_dir"),
        train_examples=config.train_examples,
        test_examples=config.test_examples,
    )
    task_a = tasks.make_binary_task(digits_a, **load)
    task_b = tasks.make_binary_task(digits_b, **load)
    if config.salt_pepper and config.get("salt_pepper_once", False):
        task_a = tasks.noise_once(task_a, config.salt_pepper, (config.seed, index))
        task_b = tasks.noise_once(task_b, config.salt_pepper, (config.seed, index))
    keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), index), 8)
    seed_a, seed_b = [config.seed * 100_003 + index * 2 + i for i in (0, 1)]

    nothing = np.zeros((spec.num_layers, spec.num_modules), bool)
    state_a = jitted.init_state(keys[1], jitted.init_params(keys[0]), nothing)
    state_a, result_a = run_ga(
        config, task_a, state_a, os.path.join(workdir, "task_a"), keys[2], seed_a
    )
    # On the host, so the initialisers see the same input placement as for task A
    # (fit returns mesh-replicated arrays) and compile once.
    params_a = jax.device_get(state_a.params)
    frozen = np.asarray(state_a.best_path)[..., None] == np.arange(spec.num_modules)
    frozen = frozen.any(axis=-2)  # (L, M): the modules on A's best path
    starts = {
        "pathnet": (  # = bank_updates.reinit_unfrozen(keys[3], params_a, frozen, spec)
            jitted.keep_frozen(params_a, jitted.init_params(keys[3]), frozen),
            frozen,
        ),
        "finetune": (
            {
                "layers": params_a["layers"],
                "head": jitted.init_params(keys[4])["head"],
            },
            nothing,
        ),
        "scratch": (jitted.init_params(keys[5]), nothing),
    }
    out = {"index": index, "task_a": list(digits_a), "task_b": list(digits_b)}
    out["task_a_result"] = result_a
    for method, (params, frozen_b) in starts.items():
        state = jitted.init_state(keys[6], params, frozen_b)
        _, out[method] = run_ga(
            config, task_b, state, os.path.join(workdir, method), keys[7], seed_b
        )
    out["frozen"] = np.asarray(frozen).tolist()
    return out
