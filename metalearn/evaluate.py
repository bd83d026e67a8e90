"""Few-shot evaluation shared by every learner: accuracy with a 95% CI.

The protocol of Vinyals et al. 2016 and Snell et al. 2017: the mean query
accuracy over a fixed set of test episodes (>= 600; 1000 in `paper` presets),
with the 95% confidence interval 1.96 * std / sqrt(n) over episodes (std with
ddof=1, the unbiased sample estimate that torchnet's meter in Snell's code
uses). Episode i is drawn from the key `split(key(seed), n)[i]`, so every
learner and every checkpoint sees the same episodes.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from metalearn import episodes as episodes_lib


def confidence_interval(accuracies) -> tuple[float, float]:
    """(mean, 95% half-width = 1.96 * std(ddof=1) / sqrt(n)) of per-episode values."""
    values = np.asarray(accuracies, np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(values.size))


def make_evaluator(
    learner,
    data: episodes_lib.ClassImages,
    *,
    n_way: int,
    k_shot: int,
    n_query: int,
    num_episodes: int,
    seed: int,
    chunk_episodes: int = 50,
):
    """Returns `evaluate(params, stats) -> (per-episode accuracies (n,))`.

    Episodes are sampled and classified `chunk_episodes` at a time (one jitted
    call per chunk; the last chunk is padded with repeats and trimmed).
    """
    keys = episodes_lib.fixed_episode_keys(seed, num_episodes)
    chunk = min(chunk_episodes, num_episodes)
    sizes = (data.num_base, data.rotations, n_way, k_shot, n_query)
    one_at_a_time = jax.default_backend() == "cpu"

    def evaluate(params, stats) -> np.ndarray:
        out = []
        for start in range(0, num_episodes, chunk):
            part = keys[start : start + chunk]
            missing = chunk - part.shape[0]
            if missing:
                part = jax.numpy.concatenate([part, keys[:missing]])
            accuracy = _chunk_accuracy(
                learner, sizes, params, stats, data.images, part, one_at_a_time
            )
            out.append(np.asarray(accuracy)[: chunk - missing])
        return np.concatenate(out)

    return evaluate


@functools.partial(jax.jit, static_argnums=(0, 1, 6))
def _chunk_accuracy(learner, sizes, params, stats, images, keys, one_at_a_time):
    """Per-episode query accuracy (E,) of the episodes drawn from `keys` (E,).

    Module-level and keyed on the static (learner, sizes), so the periodic and
    the final evaluator share one compiled program when their shapes agree.
    `one_at_a_time` (the evaluator's choice on CPU) runs the episodes in a
    `lax.map` (each episode's BatchNorm statistics and adaptation are its own,
    so the numbers are the same): one vmapped chunk of 50 episodes unrolled
    `conv_matmul`'s pixel blocks 50 times and took 3 min 16 s to compile in
    the `quick` ProtoNet run (2026-11-27). Otherwise one vmapped call.
    """
    num_base, rotations, n_way, k_shot, n_query = sizes
    data = episodes_lib.ClassImages(images, num_base, rotations)

    def accuracy(keys):
        batch = jax.vmap(
            lambda k: episodes_lib.sample_episode(k, data, n_way, k_shot, n_query)
        )(keys)
        logits = learner.predict(params, stats, batch, n_way)
        return (logits.argmax(-1) == batch.query_y).mean(axis=-1)

    if one_at_a_time:
        return jax.lax.map(lambda key: accuracy(key[None])[0], keys)
    return accuracy(keys)
