"""The grouped meta-batch gradient, unrolled or scanned, equals the plain one."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import accumulate, maml, protonets
from metalearn.episodes import Episode

N, K, Q, E = 3, 2, 2, 2


def random_episodes(e: int = E) -> Episode:
    rng = np.random.default_rng(3)  # NumPy draws: no compiled samplers
    return Episode(
        jnp.asarray(rng.random((e, N * K, 8, 8, 1)), jnp.float32),
        jnp.tile(jnp.repeat(jnp.arange(N), K), (e, 1)),
        jnp.asarray(rng.random((e, N * Q, 8, 8, 1)), jnp.float32),
        jnp.asarray(rng.integers(0, N, (e, N * Q))),
    )


LEARNERS = {
    # the fast path's knobs (groups of episodes, conv chunks) on tiny shapes
    "protonet": protonets.ProtoNet(hidden=4, depth=2, chunk=5),
    "maml": maml.MAML(n_way=N, hidden=4, depth=2, image_size=8, chunk=5),
}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_grouped_gradient_equals_whole_meta_batch(name):
    learner = LEARNERS[name]
    params, stats = jax.jit(learner.init)(jax.random.key(0))
    stats = jax.tree.map(lambda s: s + 0.5, stats)  # running stats off their init
    episodes = random_episodes()

    @jax.jit  # one compile for both paths
    def run(params, stats, episodes):
        # the plain path: the whole vmapped meta-batch, no conv chunks
        unchunked = dataclasses.replace(learner, chunk=0)
        reference = jax.value_and_grad(unchunked.episode_loss, has_aux=True)(
            params, stats, episodes, N
        )
        # the fast path: one episode at a time, convolutions in chunks, the
        # episodes side by side in the graph or one lax.scan step each
        grouped = {
            loop: accumulate.value_and_grad(
                learner.episode_loss, params, stats, episodes, N, 1, loop
            )
            for loop in accumulate.EPISODE_LOOPS
        }
        return reference, grouped

    reference, grouped = run(params, stats, episodes)
    chex.assert_trees_all_close(grouped["unroll"], reference, rtol=2e-4, atol=1e-5)
    chex.assert_trees_all_close(grouped["scan"], reference, rtol=2e-4, atol=1e-5)
    # the two loops add the same per-episode terms in the same order
    chex.assert_trees_all_close(
        grouped["scan"], grouped["unroll"], rtol=1e-5, atol=1e-6
    )
    ones = grouped["scan"]
    (loss, (metrics, new_stats)), grads = ones
    assert loss > 0 and np.isfinite(loss)
    assert metrics["loss"] == pytest.approx(float(loss), rel=1e-6)
    # gradients are non-trivial in every leaf (a dropped group would shrink them)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
    if name == "protonet":  # running stats moved by the mean batch statistics
        assert not np.allclose(new_stats["mean"][0], stats["mean"][0])


def test_group_must_divide_the_meta_batch_and_the_loop_be_known():
    learner = LEARNERS["protonet"]
    params, stats = jax.jit(learner.init)(jax.random.key(0))

    def shapes(episodes, group, loop):
        return jax.eval_shape(
            lambda p, s, e: accumulate.value_and_grad(
                learner.episode_loss, p, s, e, N, group, loop
            ),
            params,
            stats,
            episodes,
        )

    with pytest.raises(ValueError, match="episode_group"):
        shapes(random_episodes(3), 2, "scan")
    with pytest.raises(ValueError, match="config.episode_loop"):
        shapes(random_episodes(), 1, "while")
    # groups of two episodes in a scan: the same shapes as the whole batch
    (loss, (_, new_stats)), grads = shapes(random_episodes(4), 2, "scan")
    chex.assert_shape(loss, ())
    chex.assert_trees_all_equal_shapes(grads, params)
    chex.assert_trees_all_equal_shapes(new_stats, stats)
