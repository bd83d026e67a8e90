"""Surrogates: forward is the Heaviside step; backward is the analytic derivative."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shared.errors import ConfigError
from snn import surrogate

# Smooth functions whose derivative each surrogate claims to be (written
# independently of snn.surrogate): we check grad == central finite difference.
PRIMITIVES = {
    "fast_sigmoid": lambda x, k: x / (1 + k * np.abs(x)),
    "arctan": lambda x, k: np.arctan(math.pi / 2 * k * x) / math.pi,
    "sigmoid": lambda x, k: 1 / (1 + np.exp(-k * x)),
    "triangle": lambda x, k: (
        np.sign(x) * np.where(np.abs(x) < 1 / k, k * np.abs(x) - k**2 * x**2 / 2, 0.5)
    ),
    "straight_through": lambda x, k: k * x,
}
POINTS = np.array([-2.0, -0.7, -0.31, -0.05, 0.02, 0.13, 0.45, 1.5])


@pytest.mark.parametrize("name", sorted(surrogate.SURROGATES))
@pytest.mark.parametrize("scale", [0.8, 3.0])
def test_forward_is_heaviside_and_grad_is_derivative(name, scale):
    spike = surrogate.get(name, scale)
    x = jnp.asarray(POINTS, jnp.float32)
    np.testing.assert_array_equal(spike(x), (POINTS > 0).astype(np.float32))
    grads = jax.vmap(jax.grad(spike))(x)
    h = 1e-5
    primitive = PRIMITIVES[name]
    expected = (primitive(POINTS + h, scale) - primitive(POINTS - h, scale)) / (2 * h)
    np.testing.assert_allclose(grads, expected, rtol=1e-3, atol=1e-5)


def test_spike_at_zero_is_zero_and_slope_25_is_snntorch():
    spike = surrogate.get("fast_sigmoid", 25.0)
    assert float(spike(jnp.float32(0.0))) == 0.0
    assert float(jax.grad(spike)(jnp.float32(0.0))) == 1.0
    # snnTorch fast_sigmoid: grad = 1 / (slope * |x| + 1)^2
    np.testing.assert_allclose(jax.grad(spike)(jnp.float32(0.1)), 1 / 3.5**2, 1e-6)


def test_unknown_name_and_bad_scale_raise():
    with pytest.raises(ConfigError, match="unknown surrogate"):
        surrogate.get("tanh")
    with pytest.raises(ConfigError, match="must be > 0"):
        surrogate.get("arctan", 0.0)
