"""STDP and the trace Hebbian rule against hand computations."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from snn import plasticity

T = 8
RULE = plasticity.STDP(a_plus=0.01, a_minus=0.012, tau_plus=10.0, tau_minus=5.0)


def trains(pre_times, post_times):
    pre = np.zeros((T, 1, 1), np.float32)
    post = np.zeros((T, 1, 1), np.float32)
    pre[list(pre_times), 0, 0] = 1
    post[list(post_times), 0, 0] = 1
    return jnp.asarray(pre), jnp.asarray(post)


@pytest.mark.parametrize(
    "pre_times, post_times, expected",
    [
        ([1], [4], 0.01 * math.exp(-3 / 10)),  # pre before post: potentiation
        ([4], [1], -0.012 * math.exp(-3 / 5)),  # post before pre: depression
        ([3], [3], 0.0),  # simultaneous: no pairing
        ([0, 2], [5], 0.01 * (math.exp(-5 / 10) + math.exp(-3 / 10))),
        ([2], [0, 6], 0.01 * math.exp(-4 / 10) - 0.012 * math.exp(-2 / 5)),
    ],
)
def test_stdp_pairs_by_hand(pre_times, post_times, expected):
    change = plasticity.accumulate_stdp(RULE, *trains(pre_times, post_times))
    np.testing.assert_allclose(float(change[0, 0]), expected, rtol=1e-5, atol=1e-9)


def test_stdp_shapes_and_batch_sum(key):
    rng = np.random.default_rng(0)
    pre = jnp.asarray(rng.random((T, 3, 4)) < 0.3, jnp.float32)
    post = jnp.asarray(rng.random((T, 3, 2)) < 0.3, jnp.float32)
    total = plasticity.accumulate_stdp(RULE, pre, post)
    assert total.shape == (4, 2)
    per_sample = sum(
        plasticity.accumulate_stdp(RULE, pre[:, b : b + 1], post[:, b : b + 1])
        for b in range(3)
    )
    np.testing.assert_allclose(total, per_sample, rtol=1e-5, atol=1e-7)


def test_hebbian_matches_numpy_loop():
    rule = plasticity.Hebbian(rate=0.1, tau_pre=4.0, tau_post=2.0, oja=0.5)
    rng = np.random.default_rng(1)
    pre = (rng.random((T, 2, 3)) < 0.4).astype(np.float32)
    post = (rng.random((T, 2, 2)) < 0.4).astype(np.float32)
    weights = rng.normal(size=(3, 2)).astype(np.float32)
    state = rule.init(2, 3, 2)
    x_pre, x_post = np.zeros((2, 3)), np.zeros((2, 2))
    for t in range(T):
        state, change = rule.step(state, pre[t], post[t], weights)
        x_pre = math.exp(-1 / 4) * x_pre + pre[t]
        x_post = math.exp(-1 / 2) * x_post + post[t]
        expected = 0.1 * (x_pre.T @ x_post - 0.5 * (x_post**2).sum(0) * weights)
        np.testing.assert_allclose(change, expected, rtol=1e-5, atol=1e-6)
