"""The sinusoid regression task family of MAML, generated on the fly (no data).

Finn, Abbeel, Levine 2017, arXiv:1703.03400, section 5.1 and Figure 2: a task
is y = A sin(x - phase) with amplitude A ~ U[0.1, 5.0], phase ~ U[0, pi] and
inputs x ~ U[-5, 5]; K support points, MSE loss; the regressor is an MLP with
two hidden layers of 40 ReLU units. A task comes as an `episodes.Episode` with
(K, 1) float inputs and targets, so `maml.adapt` and the evaluation code see
the same structure as for images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metalearn.episodes import Episode

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, jnp.pi)
INPUT_RANGE = (-5.0, 5.0)


def sample_task(
    key: jax.Array,
    k_shot: int,
    n_query: int,
    amplitudes: tuple[float, float] = AMPLITUDE,
    phases: tuple[float, float] = PHASE,
    inputs: tuple[float, float] = INPUT_RANGE,
) -> Episode:
    """One sinusoid task: (K, 1) support and (Q, 1) query inputs and targets.

    `amplitudes`, `phases` and `inputs` are the uniform ranges (wider ones make
    out-of-distribution tasks; a range (a, a) fixes the value, as ML3's code
    does for its single training task).
    """
    key_amp, key_phase, key_x = jax.random.split(key, 3)
    amplitude = jax.random.uniform(
        key_amp, (), minval=amplitudes[0], maxval=amplitudes[1]
    )
    phase = jax.random.uniform(key_phase, (), minval=phases[0], maxval=phases[1])
    x = jax.random.uniform(
        key_x, (k_shot + n_query, 1), minval=inputs[0], maxval=inputs[1]
    )
    y = amplitude * jnp.sin(x - phase)
    return Episode(x[:k_shot], y[:k_shot], x[k_shot:], y[k_shot:])


def init_mlp(key: jax.Array, sizes=(1, 40, 40, 1)):
    """A list of {"w", "b"} layers; weights N(0, 0.01^2) as in Finn et al.'s code
    (He-scaled weights make one inner step of lr 0.01 diverge)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            # drawn flat: XLA:CPU compiles a 2-d normal sampler much slower
            "w": jax.random.normal(k, (n_in * n_out,)).reshape(n_in, n_out) * 0.01,
            "b": jnp.zeros((n_out,)),
        }
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params, x: jax.Array) -> jax.Array:
    """(B, 1) -> (B, 1), ReLU between layers."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def mse(params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((mlp(params, x) - y) ** 2)
