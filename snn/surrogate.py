"""Surrogate spike functions: a Heaviside forward with a smooth backward.

A spiking neuron emits a spike when its membrane crosses the threshold, so the
output is a Heaviside step of `x = membrane - threshold` whose derivative is a
Dirac delta (zero almost everywhere). Surrogate-gradient learning keeps the
exact step in the forward pass and replaces its derivative in the backward pass
by a smooth pseudo-derivative (Neftci, Mostafa & Zenke 2019, "Surrogate Gradient
Learning in Spiking Neural Networks", arXiv:1901.09948).

Pseudo-derivatives `dS/dx` (each with a `scale` that sets its sharpness):
  fast_sigmoid      1 / (1 + scale |x|)^2          SuperSpike (Zenke & Ganguli
                                                    2018, arXiv:1705.11146); the
                                                    snnTorch `fast_sigmoid` with
                                                    `slope=scale`
  arctan            (scale/2) / (1 + (pi/2 scale x)^2)   Fang et al. 2021,
                                                    arXiv:2007.05785 (snnTorch
                                                    `atan` with `alpha=scale`)
  sigmoid           scale s (1 - s), s = sigmoid(scale x)
  triangle          scale max(0, 1 - scale |x|)     (Esser et al. 2016,
                                                    arXiv:1603.08270)
  straight_through  scale (constant: the gradient passes straight through;
                                                    Bengio et al. 2013,
                                                    arXiv:1308.3432)

The forward spikes where `x > 0` (as snnTorch does), in the input's dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from shared.errors import ConfigError

SpikeFn = Callable[[jax.Array], jax.Array]


def fast_sigmoid_grad(x: jax.Array, scale: float) -> jax.Array:
    return 1.0 / (1.0 + scale * jnp.abs(x)) ** 2


def arctan_grad(x: jax.Array, scale: float) -> jax.Array:
    return (scale / 2.0) / (1.0 + (math.pi / 2.0 * scale * x) ** 2)


def sigmoid_grad(x: jax.Array, scale: float) -> jax.Array:
    s = jax.nn.sigmoid(scale * x)
    return scale * s * (1.0 - s)


def triangle_grad(x: jax.Array, scale: float) -> jax.Array:
    return scale * jnp.maximum(0.0, 1.0 - scale * jnp.abs(x))


def straight_through_grad(x: jax.Array, scale: float) -> jax.Array:
    return jnp.full_like(x, scale)


# name -> (pseudo-derivative, default scale). The defaults are the usual ones
# (snnTorch's fast_sigmoid slope 25, atan alpha 2).
SURROGATES: dict[str, tuple[Callable[[jax.Array, float], jax.Array], float]] = {
    "fast_sigmoid": (fast_sigmoid_grad, 25.0),
    "arctan": (arctan_grad, 2.0),
    "sigmoid": (sigmoid_grad, 5.0),
    "triangle": (triangle_grad, 1.0),
    "straight_through": (straight_through_grad, 1.0),
}


def heaviside(x: jax.Array) -> jax.Array:
    """The spike: 1 where `x > 0`, else 0, in `x`'s dtype."""
    return (x > 0).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _spike(grad_fn, scale, x):
    return heaviside(x)


def _spike_fwd(grad_fn, scale, x):
    return heaviside(x), x


def _spike_bwd(grad_fn, scale, x, g):
    return (g * grad_fn(x, scale).astype(g.dtype),)


_spike.defvjp(_spike_fwd, _spike_bwd)


@functools.cache
def get(name: str, scale: float | None = None) -> SpikeFn:
    """The spike function `x -> heaviside(x)` with surrogate `name`'s backward.

    Args:
      name: a key of `SURROGATES`.
      scale: sharpness; None uses the surrogate's default.

    Returns:
      `spike(x)` for any array `x = membrane - threshold`.

    Raises:
      ConfigError: unknown name or a non-positive scale.
    """
    if name not in SURROGATES:
        raise ConfigError(
            f"unknown surrogate {name!r}; set --config.surrogate to one of "
            f"{sorted(SURROGATES)}."
        )
    grad_fn, default = SURROGATES[name]
    scale = default if scale is None else float(scale)
    if not scale > 0:
        raise ConfigError(
            f"surrogate scale {scale} must be > 0; set --config.surrogate_scale."
        )
    return functools.partial(_spike, grad_fn, scale)
