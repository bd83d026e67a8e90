"""Spike encoders (rate, latency, delta) and spike/membrane decoders and losses.

Encoders turn intensities into time-major spike trains `(T, B, ...)`:
  rate     Bernoulli spikes each step with p = intensity (Poisson-like rate
           coding, as in STBP: Wu et al. 2018, "Spatio-Temporal Backpropagation
           for Training High-performance Spiking Neural Networks",
           arXiv:1706.02609).
  latency  one spike per input, brighter = earlier (time-to-first-spike).
  delta    a spike where a signal changes by more than a threshold between
           steps (+1 on, -1 off), as event cameras do.

Decoders/losses on output spikes or membranes `(T, B, C)`: cross-entropy on
spike counts, on the max or final membrane, and MSE of the count to a target
count (snnTorch's `mse_count_loss`, correct/incorrect rates 0.8/0.2).

Speed: for uint8 images, `rate` draws 32-bit random words and bit-casts each
into four uint8 thresholds, ~4x faster than `jax.random.bernoulli` on CPU
(../shared/PERF-NOTES.md). A spike fires where threshold < pixel, so
p = pixel / 256 (not / 255): 255 fires with p = 0.996, 0 never fires.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def rate(
    key: jax.Array, intensities: jax.Array, num_steps: int, dtype=jnp.float32
) -> jax.Array:
    """Bernoulli rate coding.

    Args:
      key: PRNG key.
      intensities: uint8 (B, ...) with p = value / 256, or float (B, ...) in
        [0, 1] with p = value.
      num_steps: T.
      dtype: of the spikes (0/1).

    Returns:
      (T, B, ...) spikes.
    """
    shape = (num_steps, *intensities.shape)
    if intensities.dtype != jnp.uint8:
        return jax.random.bernoulli(key, intensities, shape).astype(dtype)
    size = intensities.size
    words = jax.random.bits(key, (num_steps, -(-size // 4)), jnp.uint32)
    thresholds = jax.lax.bitcast_convert_type(words, jnp.uint8)  # (T, size/4, 4)
    thresholds = thresholds.reshape(num_steps, -1)[:, :size].reshape(shape)
    return (thresholds < intensities).astype(dtype)


def latency(
    intensities: jax.Array, num_steps: int, threshold: float = 0.01, dtype=jnp.float32
) -> jax.Array:
    """Time-to-first-spike coding with a linear code.

    An input of intensity x in [0, 1] spikes once, at step
    round((1 - x) * (T - 1)); inputs with x < threshold never spike.

    Args:
      intensities: float (B, ...) in [0, 1] (uint8 is divided by 255).
      num_steps: T.
      threshold: below it an input stays silent.

    Returns:
      (T, B, ...) spikes, at most one per input.
    """
    x = intensities
    if x.dtype == jnp.uint8:
        x = x.astype(jnp.float32) / 255.0
    fire_at = jnp.round((1.0 - x) * (num_steps - 1)).astype(jnp.int32)
    fire_at = jnp.where(x >= threshold, fire_at, num_steps)  # never
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * x.ndim)
    return (steps == fire_at).astype(dtype)


def delta(
    signal: jax.Array, threshold: float = 0.1, off_spikes: bool = True
) -> jax.Array:
    """Change coding of a time-major signal (T, B, ...).

    A spike +1 where signal[t] - signal[t-1] >= threshold, and (if `off_spikes`)
    -1 where it is <= -threshold; signal[-1] is taken as 0, so the first step
    encodes the signal itself.
    """
    previous = jnp.concatenate([jnp.zeros_like(signal[:1]), signal[:-1]])
    change = signal - previous
    on = (change >= threshold).astype(signal.dtype)
    if not off_spikes:
        return on
    return on - (change <= -threshold).astype(signal.dtype)


def count_cross_entropy(spikes: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of softmax(spike counts). spikes (T, B, C), labels (B,)."""
    return optax.softmax_cross_entropy_with_integer_labels(spikes.sum(0), labels).mean()


def max_membrane_cross_entropy(membrane: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of softmax(max over time of the membrane (T, B, C))."""
    return optax.softmax_cross_entropy_with_integer_labels(
        membrane.max(0), labels
    ).mean()


def final_membrane_cross_entropy(membrane: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of softmax(the last step's membrane (T, B, C))."""
    return optax.softmax_cross_entropy_with_integer_labels(membrane[-1], labels).mean()


def mse_count(
    spikes: jax.Array,
    labels: jax.Array,
    correct_rate: float = 0.8,
    incorrect_rate: float = 0.2,
) -> jax.Array:
    """MSE between spike counts (B, C) and the target counts rate * T."""
    num_steps, _, num_classes = spikes.shape
    target = jnp.where(
        jax.nn.one_hot(labels, num_classes) > 0, correct_rate, incorrect_rate
    )
    return jnp.mean((spikes.sum(0) - target * num_steps) ** 2)


LOSSES = {
    "count_ce": ("spikes", count_cross_entropy),
    "max_membrane_ce": ("membrane", max_membrane_cross_entropy),
    "final_membrane_ce": ("membrane", final_membrane_cross_entropy),
    "mse_count": ("spikes", mse_count),
}


def decode(outputs: dict[str, jax.Array], loss: str) -> jax.Array:
    """Class scores (B, C) the way `loss` reads the outputs (argmax = prediction)."""
    kind, _ = LOSSES[loss]
    if loss == "max_membrane_ce":
        return outputs["membrane"].max(0)
    if loss == "final_membrane_ce":
        return outputs["membrane"][-1]
    return outputs[kind].sum(0)
