"""Encoders' statistics and shapes, decoders and losses against hand computations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from snn import encoding

RATE = jax.jit(encoding.rate, static_argnums=2)  # one compile, not one per op


def test_rate_uint8_mean_is_pixel_over_256(key):
    pixels = jnp.arange(256, dtype=jnp.uint8).reshape(1, 16, 16)
    spikes = RATE(key, pixels, 4000)
    chex.assert_shape(spikes, (4000, 1, 16, 16))
    assert set(np.unique(spikes)) <= {0.0, 1.0}
    mean = np.asarray(spikes.mean(0)).ravel()
    assert mean[0] == 0.0
    np.testing.assert_allclose(mean, np.arange(256) / 256, atol=0.035)
    # the estimate of p over all pixels is far tighter than one pixel's
    np.testing.assert_allclose(mean.mean(), 127.5 / 256, atol=2e-3)


def test_rate_odd_sizes_float_input_and_determinism(key):
    pixels = jnp.full((3, 7), 200, jnp.uint8)  # 21 values: not a multiple of 4
    a, b = RATE(key, pixels, 9), RATE(key, pixels, 9)
    chex.assert_shape(a, (9, 3, 7))
    np.testing.assert_array_equal(a, b)
    other = RATE(jax.random.fold_in(key, 1), pixels, 9)
    assert not np.array_equal(a, other)
    floats = RATE(key, np.full((4, 500), 0.3, np.float32), 20)
    np.testing.assert_allclose(floats.mean(), 0.3, atol=0.02)


def test_latency_brighter_is_earlier_one_spike_each():
    x = jnp.array([[1.0, 0.5, 0.2, 0.0]])
    spikes = encoding.latency(x, 11)
    chex.assert_shape(spikes, (11, 1, 4))
    np.testing.assert_array_equal(spikes.sum(0), [[1, 1, 1, 0]])
    first = np.asarray(spikes.argmax(0))[0, :3]
    np.testing.assert_array_equal(first, [0, 5, 8])  # round((1 - x) * 10)


def test_delta_on_and_off_spikes():
    signal = jnp.array([0.0, 0.5, 0.55, 0.2, 0.2]).reshape(5, 1)
    np.testing.assert_array_equal(encoding.delta(signal, 0.1).ravel(), [0, 1, 0, -1, 0])
    np.testing.assert_array_equal(
        encoding.delta(signal, 0.1, off_spikes=False).ravel(), [0, 1, 0, 0, 0]
    )


def test_losses_by_hand():
    spikes = np.zeros((4, 2, 3), np.float32)
    spikes[:, 0, 1], spikes[:2, 1, 2] = 1.0, 1.0
    labels = jnp.array([1, 0])
    counts = np.array([[0, 4, 0], [0, 0, 2]], np.float64)
    logp = counts - np.log(np.exp(counts).sum(1, keepdims=True))
    np.testing.assert_allclose(
        encoding.count_cross_entropy(spikes, labels),
        -(logp[0, 1] + logp[1, 0]) / 2,
        rtol=1e-6,
    )
    target = np.array([[0.2, 0.8, 0.2], [0.8, 0.2, 0.2]]) * 4
    np.testing.assert_allclose(
        encoding.mse_count(spikes, labels), ((counts - target) ** 2).mean(), 1e-6
    )
    membrane = jnp.arange(24.0).reshape(4, 2, 3) % 5
    np.testing.assert_allclose(
        encoding.max_membrane_cross_entropy(membrane, labels),
        optax.softmax_cross_entropy_with_integer_labels(membrane.max(0), labels).mean(),
    )
    np.testing.assert_allclose(
        encoding.final_membrane_cross_entropy(membrane, labels),
        optax.softmax_cross_entropy_with_integer_labels(membrane[3], labels).mean(),
    )
    np.testing.assert_array_equal(
        encoding.decode({"spikes": spikes}, "count_ce"), counts
    )
