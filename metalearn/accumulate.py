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
`.backward()` calls. Measured on 4 ProtoNet episodes, 5-way 1-shot 15-query,
Conv-4: XLA temp memory 368 -> 93 MB and 2.7 -> 5.2 episodes/s (the smaller
working set stays in cache).

Two loops over the groups (`loop`, `config.episode_loop`):
  `unroll`  the groups side by side in one graph, group g+1's images made to
            depend on group g's gradient (`images + 0 * sum(grads)`, which
            XLA keeps: `x * 0` is not folded for floats), so XLA runs them one
            after another and reuses one group's activation memory
            (`lax.optimization_barrier` did not do it: the compiled program
            had no barrier left and the same temp memory, 365 vs 368 MB).
            Compiling 32 copies of the episode graph takes minutes and most
            of the process's peak memory (second-order MAML: 295 s, 4.2 GB).
  `scan`    one `lax.scan` step per group: one copy to compile (10-16x less
            compile time, 2.5-4.1x less peak RSS at meta-batch 32, measured
            2026-11-27). With `lax.conv` a scan over episodes ran 9x slower;
            with `conv_impl=matmul` the body runs about as fast as an
            unrolled episode (-6% to +8% in alternating A/Bs) once the group
            comes in through the carry (`_scan_groups`).
Whole-step numbers: README.md, "Speed and memory".

Averaging is exact for every learner here: the loss and accuracy are means
over episodes, and BatchNorm's running statistics move by the mean of the
per-episode batch statistics (the same old statistics in every group).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

EPISODE_LOOPS = ("scan", "unroll")


def value_and_grad(
    loss_fn: Callable,
    params,
    stats,
    episodes,
    n_way: int,
    group: int,
    loop: str = "scan",
):
    """`jax.value_and_grad(loss_fn, has_aux=True)`, `group` episodes at a time.

    Args:
      loss_fn: a learner's `episode_loss(params, stats, episodes, n_way) ->
        (loss, (metrics, stats))`, a mean over the meta-batch.
      params, stats: the learner's parameters and BatchNorm statistics.
      episodes: an `Episode` with a leading meta-batch axis (E,).
      n_way: classes per episode.
      group: episodes per group; 0 (or >= E) differentiates all E at once.
      loop: `"scan"` (one `lax.scan` step per group: one group's graph to
        compile) or `"unroll"` (the groups side by side in the graph).

    Returns:
      `((loss, (metrics, new_stats)), grads)`, as `jax.value_and_grad` gives
      for the whole meta-batch (up to float rounding).
    """
    if loop not in EPISODE_LOOPS:
        raise ValueError(
            f"episode loop {loop!r}; set config.episode_loop to one of {EPISODE_LOOPS}."
        )
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    num_episodes = episodes.support_x.shape[0]
    if group <= 0 or group >= num_episodes:
        return grad_fn(params, stats, episodes, n_way)
    if num_episodes % group:
        raise ValueError(
            f"meta-batch {num_episodes} is not a multiple of group={group}; set "
            "config.episode_group to a divisor of config.meta_batch (or 0)."
        )
    groups = num_episodes // group
    if loop == "scan":
        total = _scan_groups(grad_fn, params, stats, episodes, n_way, groups)
    else:
        total = _unrolled_groups(grad_fn, params, stats, episodes, n_way, group)
    loss, metrics, new_stats, grads = jax.tree.map(lambda x: x / groups, total)
    return (loss, (metrics, new_stats)), grads


def _scan_groups(grad_fn, params, stats, episodes, n_way: int, groups: int):
    """Sum over groups of `(loss, metrics, new_stats, grads)`, one scan step each.

    The group a step differentiates rides in the carry, and the step's `xs`
    is the group after it (the last step's is unused): read from `xs`, the
    images reach the step as a dynamic slice, which XLA fuses into every loop
    that reads them, and the first layer's backward fusion (which recomputes
    that layer's 9-tap convolution) ran 5.8x slower for it (67 vs 11.6 ms per
    MAML task; README.md, "Speed and memory"). A loop-carried group is a plain
    buffer; carrying it costs one copy of a group's images per step.
    """
    parts = jax.tree.map(lambda x: x.reshape(groups, -1, *x.shape[1:]), episodes)

    def one(part):
        (loss, (metrics, new_stats)), grads = grad_fn(params, stats, part, n_way)
        return loss, metrics, new_stats, grads

    def body(carry, following):
        total, part = carry
        return (jax.tree.map(jnp.add, total, one(part)), following), None

    first = jax.tree.map(lambda x: x[0], parts)
    following = jax.tree.map(lambda x: jnp.roll(x, -1, axis=0), parts)
    zeros = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(one, first)
    )
    (total, _), _ = jax.lax.scan(body, (zeros, first), following)
    return total


def _unrolled_groups(grad_fn, params, stats, episodes, n_way: int, group: int):
    """Sum over groups of `(loss, metrics, new_stats, grads)`, side by side,
    each group's images made to wait for the previous group's gradient."""
    num_episodes = episodes.support_x.shape[0]
    total = None
    for start in range(0, num_episodes, group):
        part = jax.tree.map(lambda x, i=start: x[i : i + group], episodes)
        if total is not None:
            part = _after(part, total[-1])
        (loss, (metrics, new_stats)), grads = grad_fn(params, stats, part, n_way)
        out = (loss, metrics, new_stats, grads)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    return total


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
