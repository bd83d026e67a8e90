"""PathNet transfer on binary MNIST over many random (A, B) task pairs.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.3 and figure 3 (the speedup of learning
task B after task A, over independent learning and fine-tuning). The per-pair
protocol (task A, then pathnet / finetune / scratch on task B) is
`transfer.protocol.run_pair`. This runner samples `num_pairs` pairs from the seed,
runs each in `workdir/pair_XXX/` (a finished pair writes `result.json` and is
skipped on rerun, so the experiment resumes), and writes `summary.json` (speedup
mean, bootstrap CI and paired permutation test per method, `transfer.stats`) and
the figures.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from shared import workdir as workdir_lib
from shared.errors import ConfigError
from transfer import plots, protocol, stats, tasks


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
    protocol.make_ga(config)  # GAConfig checks config.tournament against the schedule
    if config.init not in ("torch", "tf"):
        raise ConfigError(f"config.init={config.init!r}; use 'torch' or 'tf'.")
    if config.optimizer not in ("sgd", "adam", "rmsprop"):
        raise ConfigError(
            f"config.optimizer={config.optimizer!r}; use 'sgd', 'adam' or 'rmsprop'."
        )
    if not 0.0 < config.fitness_threshold <= 1.0:
        raise ConfigError("config.fitness_threshold must be in (0, 1].")
    if config.modules_per_layer > config.num_modules:
        raise ConfigError("config.modules_per_layer must be <= num_modules.")
    if config.get("salt_pepper_once", False) and not config.salt_pepper:
        raise ConfigError(
            "config.salt_pepper_once=True noises the training set once with "
            "probability config.salt_pepper, which is 0; set e.g. "
            "--config.salt_pepper=0.5."
        )


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
        result = protocol.run_pair(config, index, digits_a, digits_b, pair_dir)
        _pair_figures(result, pair_dir)
        workdir_lib.write_json(pair_dir, "result.json", result)
        results.append(result)
        logging.info(
            "pair %d %s->%s generations: %s",
            index,
            digits_a,
            digits_b,
            {m: result[m]["generations"] for m in ("task_a_result", *protocol.METHODS)},
        )
    summary = stats.summarize_pairs(results, protocol.METHODS)
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
        pair_dir, ("task_a", *protocol.METHODS), os.path.join(pair_dir, "curves.png")
    )
