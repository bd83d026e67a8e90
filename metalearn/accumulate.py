"""The meta-batch gradient, computed a few episodes at a time inside one `jit`.

A learner's `episode_loss` takes a whole vmapped meta-batch `(E, ...)`, and its
gradient is the mean of the per-episode gradients. Differentiating the whole
meta-batch at once keeps every episode's activations alive until the backward
pass (about 1 MB per 28x28 image in Conv-4: 2.5 GB for 32 episodes of 80
images) and runs each convolution over E*B images, a batch far past what a
CPU cache holds (shared/PERF-NOTES.md: per-image speed falls past ~16-32
images). `value_and_grad` here splits the meta-batch into groups of `group`
episodes, differentiates `episode_loss` on each group (the same function, on a
smaller meta-batch) and averages, as PyTorch's per-task loop accumulates
`.backward()` calls. The groups are unrolled in Python inside the same graph
(convolutions in `lax.scan`/`lax.map` bodies ran 5-30x slower on XLA:CPU:
9x here), and group g+1's images are made to depend on group g's gradient
(`images + 0 * sum(grads)`, which XLA keeps: `x * 0` is not folded for
floats), so XLA runs the groups one after another and reuses one group's
activation memory. (`lax.optimization_barrier` did not do it: the compiled
program had no barrier left and the same temp memory, 365 vs 368 MB.)
Measured on 4 ProtoNet episodes, 5-way 1-shot 15-query, Conv-4: XLA temp
memory 368 -> 93 MB and 2.7 -> 5.2 episodes/s (the smaller working set stays
in cache).

Averaging is exact for every learner here: the loss and accuracy are means
over episodes, and BatchNorm's running statistics move by the mean of the
per-episode batch statistics (the same old statistics in every group).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def value_and_grad(loss_fn: Callable, params, stats, episodes, n_way: int, group: int):
    """`jax.value_and_grad(loss_fn, has_aux=True)`, `group` episodes at a time.

    Args:
      loss_fn: a learner's `episode_loss(params, stats, episodes, n_way) ->
        (loss, (metrics, stats))`, a mean over the meta-batch.
      params, stats: the learner's parameters and BatchNorm statistics.
      episodes: an `Episode` with a leading meta-batch axis (E,).
      n_way: classes per episode.
      group: episodes per group; 0 (or >= E) differentiates all E at once.

    Returns:
      `((loss, (metrics, new_stats)), grads)`, as `jax.value_and_grad` gives
      for the whole meta-batch (up to float rounding).
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    num_episodes = episodes.support_x.shape[0]
    if group <= 0 or group >= num_episodes:
        return grad_fn(params, stats, episodes, n_way)
    if num_episodes % group:
        raise ValueError(
            f"meta-batch {num_episodes} is not a multiple of group={group}; set "
            "config.episode_group to a divisor of config.meta_batch (or 0)."
        )
    total = None
    for start in range(0, num_episodes, group):
        part = jax.tree.map(lambda x, i=start: x[i : i + group], episodes)
        if total is not None:
            part = _after(part, total[-1])
        (loss, (metrics, new_stats)), grads = grad_fn(params, stats, part, n_way)
        out = (loss, metrics, new_stats, grads)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    groups = num_episodes // group
    loss, metrics, new_stats, grads = jax.tree.map(lambda x: x / groups, total)
    return (loss, (metrics, new_stats)), grads


def _after(episodes, grads):
    """`episodes` with images that XLA can compute only once `grads` are done.

    Adds `0 * sum(grads)` to the images: the same values (a non-finite
    gradient makes them NaN, and the step's loss non-finite, which `fit`
    reports). The cost is one pass over each group's images.
    """
    done = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(grads))
    zero = 0.0 * done
    return episodes._replace(
        support_x=episodes.support_x + zero, query_x=episodes.query_x + zero
    )
