"""The PathNet transfer protocol on binary MNIST, over many (A, B) task pairs.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.3 and figure 3. For each pair:

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
phase is one `shared.train_loop.fit` call in `workdir/pair_XXX/<phase>/` (resumable);
each finished pair writes `pair_XXX/result.json` and is skipped on rerun. The
round, the initialisers and the report's accuracy are built once per setting
(`programs`), so `fit` compiles one round for all phases and pairs, and a phase ends
at the first log step after it is solved (`stop_fn`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.errors import ConfigError
from transfer import genetic, pathnet, plots, stats, tasks

METHODS = ("pathnet", "finetune", "scratch")


def validate_config(config: ml_collections.ConfigDict) -> None:
    ga = config.tournaments_per_round
    if config.population_size < 2 or config.population_size % 2:
        raise ConfigError(
            f"config.population_size={config.population_size} must be even and >= 2."
        )
    if not 1 <= ga <= config.population_size // 2:
        raise ConfigError(
            f"config.tournaments_per_round={ga} must be in [1, population_size/2 = "
            f"{config.population_size // 2}]; set --config.tournaments_per_round."
        )
    if config.max_generations % ga:
        raise ConfigError(
            f"config.max_generations={config.max_generations} must be a multiple of "
            f"tournaments_per_round={ga} (a round runs {ga} tournaments)."
        )
    if config.schedule not in ("serial", "synchronous"):
        raise ConfigError(
            f"config.schedule={config.schedule!r}; use 'serial' or 'synchronous'."
        )
    if config.optimizer not in ("sgd", "adam", "rmsprop"):
        raise ConfigError(
            f"config.optimizer={config.optimizer!r}; use 'sgd', 'adam' or 'rmsprop'."
        )
    if not 0.0 < config.fitness_threshold <= 1.0:
        raise ConfigError("config.fitness_threshold must be in (0, 1].")
    if config.modules_per_layer > config.num_modules:
        raise ConfigError("config.modules_per_layer must be <= num_modules.")


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
    )


def make_ga(config) -> genetic.GAConfig:
    return genetic.GAConfig(
        population_size=config.population_size,
        tournaments_per_round=config.tournaments_per_round,
        schedule=config.schedule,
        fitness_threshold=config.fitness_threshold,
    )


@dataclasses.dataclass(frozen=True)
class Programs:
    """The jitted pieces of a run, shared by every phase and pair of a setting.

    Attributes:
      step: the GA round, one object per setting, so `fit` (which caches its
        jitted step per step function) compiles it once.
      init_params: `key -> params`.
      init_state: `(key, params, frozen (L, M)) -> GAState`.
      keep_frozen: `(params, fresh, frozen) -> params` (`pathnet.keep_frozen`).
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
        step=genetic.make_round(spec, ga, opt),
        init_params=jax.jit(functools.partial(pathnet.init_params, spec=spec)),
        init_state=jax.jit(
            lambda key, params, frozen: genetic.init_state(
                key, params, opt, spec, ga, frozen
            )
        ),
        keep_frozen=jax.jit(pathnet.keep_frozen),
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
        config.salt_pepper,
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
        "pathnet": (  # = pathnet.reinit_unfrozen(keys[3], params_a, frozen, spec)
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `num_pairs` pairs (resuming finished ones), writes summary.json."""
    validate_config(config)
    return _run_pairs(config, workdir)


def _run_pairs(config, workdir: str) -> dict:
    start = time.time()
    pairs = tasks.sample_task_pairs(config.seed, config.num_pairs)
    results = []
    for index, (digits_a, digits_b) in enumerate(pairs):
        pair_dir = os.path.join(workdir, f"pair_{index:03d}")
        done = os.path.join(pair_dir, "result.json")
        if os.path.exists(done):
            results.append(workdir_lib.read_json(pair_dir, "result.json"))
            continue
        result = run_pair(config, index, digits_a, digits_b, pair_dir)
        _pair_figures(result, pair_dir)
        workdir_lib.write_json(pair_dir, "result.json", result)
        results.append(result)
        logging.info(
            "pair %d %s->%s generations: %s",
            index,
            digits_a,
            digits_b,
            {m: result[m]["generations"] for m in ("task_a_result", *METHODS)},
        )
    summary = stats.summarize_pairs(results, METHODS)
    if jax.process_index() == 0:
        scratch = np.array([r["scratch"]["generations"] for r in results], float)
        plots.speedup_histogram(
            {
                m: scratch / np.array([r[m]["generations"] for r in results], float)
                for m in ("pathnet", "finetune")
            },
            os.path.join(workdir, "speedups.png"),
        )
    summary.update(
        {
            "num_pairs": len(results),
            "schedule": config.schedule,
            "tournaments_per_round": config.tournaments_per_round,
            "population_size": config.population_size,
            "wall_seconds_this_run": time.time() - start,
            "data_source": tasks.make_binary_task(
                (0, 1), config.dataset, config.get("data_dir"), 1, 1
            ).source,
            "device": jax.devices()[0].device_kind,
        }
    )
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary


def _pair_figures(result: dict, pair_dir: str) -> None:
    if jax.process_index() != 0:
        return
    plots.path_diagram(
        result["frozen"],
        result["task_a_result"]["best_path"],
        result["pathnet"]["best_path"],
        os.path.join(pair_dir, "paths.png"),
        f"task A {result['task_a']} -> task B {result['task_b']}",
    )
    plots.generation_curves(
        pair_dir, ("task_a", *METHODS), os.path.join(pair_dir, "curves.png")
    )
