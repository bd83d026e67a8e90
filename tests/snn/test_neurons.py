"""Neurons against NumPy loops, and gradients through a tiny case by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn import neurons, surrogate

T, N = 6, 8


def currents(seed=0):
    return np.random.default_rng(seed).uniform(-0.2, 0.9, (T, 2, N)).astype(np.float32)


def run(neuron, params, inputs):
    state = neuron.init_state(inputs.shape[1:])
    spikes, membranes = [], []
    for current in inputs:
        state, s = neuron.step(params, state, jnp.asarray(current))
        spikes.append(s)
        membranes.append(state.membrane)
    return np.stack(spikes), np.stack(membranes)


def reference_lif(inputs, beta, threshold, reset, alpha=None, rho=None, gamma=0.0):
    v = np.zeros(inputs.shape[1:], np.float64)
    syn = np.zeros_like(v)
    a = np.zeros_like(v)
    spikes, membranes = [], []
    for current in inputs:
        if alpha is not None:
            syn = alpha * syn + current
            current = syn
        thr = threshold + gamma * a
        v = beta * v + current
        s = (v > thr).astype(np.float64)
        v = v - s * thr if reset == "subtract" else v * (1 - s)
        if rho is not None:
            a = rho * a + (1 - rho) * s
        spikes.append(s)
        membranes.append(v)
    return np.stack(spikes), np.stack(membranes)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_matches_numpy(reset):
    inputs = currents()
    neuron = neurons.LIF(beta=0.8, threshold=1.0, reset=reset)
    spikes, membranes = run(neuron, {}, inputs)
    ref_s, ref_v = reference_lif(inputs, 0.8, 1.0, reset)
    assert 0 < ref_s.sum() < ref_s.size  # the test exercises both branches
    np.testing.assert_array_equal(spikes, ref_s)
    np.testing.assert_allclose(membranes, ref_v, rtol=1e-5, atol=1e-6)


def test_synaptic_matches_numpy():
    inputs = currents(1) * 0.5
    neuron = neurons.Synaptic(beta=0.7, alpha=0.6, threshold=1.0)
    spikes, membranes = run(neuron, {}, inputs)
    ref_s, ref_v = reference_lif(inputs, 0.7, 1.0, "subtract", alpha=0.6)
    assert ref_s.sum() > 0
    np.testing.assert_array_equal(spikes, ref_s)
    np.testing.assert_allclose(membranes, ref_v, rtol=1e-5, atol=1e-6)


def test_adaptive_lif_matches_numpy_and_adapts():
    inputs = currents(2) + 0.3
    neuron = neurons.AdaptiveLIF(beta=0.9, rho=0.8, adapt_strength=1.5)
    spikes, membranes = run(neuron, {}, inputs)
    ref_s, ref_v = reference_lif(inputs, 0.9, 1.0, "subtract", rho=0.8, gamma=1.5)
    np.testing.assert_array_equal(spikes, ref_s)
    np.testing.assert_allclose(membranes, ref_v, rtol=1e-5, atol=1e-6)
    plain, _ = run(neurons.LIF(beta=0.9), {}, inputs)
    assert spikes.sum() < plain.sum()  # adaptation lowers the rate


def test_learnable_params_start_at_the_constants():
    neuron = neurons.LIF(beta=0.8, learn_beta=True, learn_threshold=True)
    params = neuron.init_params(N)
    inputs = currents()
    np.testing.assert_array_equal(
        run(neuron, params, inputs)[0], run(neurons.LIF(beta=0.8), {}, inputs)[0]
    )


def test_gradient_through_two_steps_by_hand():
    """u1 = c1, s1 = H(u1 - th), v1 = u1 - s1 th (detached), u2 = b v1 + c2,
    s2 = H(u2 - th): ds2/dc2 = g(u2 - th), ds2/dc1 = b g(u2 - th),
    ds2/dth = -(1 + b s1) g(u2 - th) (s1 is detached, but the reset subtracts
    s1 * th), ds2/db = v1 g(u2 - th)."""
    beta, th, k = 0.5, 1.0, 2.0
    neuron = neurons.LIF(
        beta=beta, threshold=th, scale=k, learn_beta=True, learn_threshold=True
    )

    def s2(c, params):
        state = neuron.init_state(())
        state, _ = neuron.step(params, state, c[0])
        _, s = neuron.step(params, state, c[1])
        return s

    c = jnp.array([1.3, 0.4])
    params = {"beta": jnp.float32(beta), "threshold": jnp.float32(th)}
    v1 = 1.3 - 1.0
    g = 1 / (1 + k * abs(beta * v1 + 0.4 - th)) ** 2
    grad_c, grad_p = jax.grad(s2, argnums=(0, 1))(c, params)
    np.testing.assert_allclose(grad_c, [beta * g, g], rtol=1e-6)
    np.testing.assert_allclose(grad_p["threshold"], -(1 + beta) * g, rtol=1e-6)
    np.testing.assert_allclose(grad_p["beta"], v1 * g, rtol=1e-5)


def test_reset_gradient_when_not_detached():
    spike = surrogate.get("fast_sigmoid", 25.0)
    for detach in (True, False):
        neuron = neurons.LIF(beta=1.0, detach_reset=detach)

        def v1(c, neuron=neuron):
            return neuron.step({}, neuron.init_state(()), c)[0].membrane

        expected = 1.0 if detach else 1.0 - float(jax.grad(spike)(jnp.float32(0.2)))
        np.testing.assert_allclose(jax.grad(v1)(jnp.float32(1.2)), expected, 1e-6)
