"""The weighted (stateless) layers of `snn.network`: dense, conv, max-pool.

A `Layer` is "dense" or "conv" (VALID, stride 1) followed by a `pool`; the
neuron that follows it lives in `snn.network`, which applies these on all T*B
frames at once (the layer schedule) or per time step. Speed notes measured on
this CPU (../shared/PERF-NOTES.md): `chunked` splits the frames into unrolled
pieces for cache blocking; `pool` max-pools by reshape (its backward is 1.5x
faster than `reduce_window`'s).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from snn import conv as conv_lib


@dataclasses.dataclass(frozen=True)
class Layer:
    """A weighted layer: `kind` "dense" or "conv" (VALID, stride 1), then `pool`."""

    kind: str
    features: int
    kernel: int = 0
    pool: int = 1


def mlp_layers(hidden: tuple[int, ...], num_classes: int = 10) -> tuple[Layer, ...]:
    return tuple(Layer("dense", n) for n in (*hidden, num_classes))


def cnn_layers(
    channels: tuple[int, ...] = (12, 64), kernel: int = 5, num_classes: int = 10
) -> tuple[Layer, ...]:
    convs = tuple(Layer("conv", c, kernel, pool=2) for c in channels)
    return (*convs, Layer("dense", num_classes))


def layer_shapes(layers, input_shape) -> list[tuple[tuple[int, ...], tuple]]:
    """[(input shape, output shape)] per layer, without batch/time axes."""
    shapes, shape = [], tuple(input_shape)
    for layer in layers:
        if layer.kind == "dense":
            out = (layer.features,)
        else:
            h, w, _ = shape
            k, p = layer.kernel, layer.pool
            out = ((h - k + 1) // p, (w - k + 1) // p, layer.features)
        shapes.append((shape, out))
        shape = out
    return shapes


def chunked(fn, x: jax.Array, size: int) -> jax.Array:
    """`fn(x)` as unrolled calls on pieces of `size` rows (0 = one call).

    `fn` must treat rows independently (a layer on a batch). `jnp.split`'s
    transpose is a concatenate, so the backward pass is chunked too.
    """
    n = x.shape[0]
    if not size or size >= n:
        return fn(x)
    return jnp.concatenate([fn(p) for p in jnp.split(x, list(range(size, n, size)))])


def weighted(layer: Layer, params: dict, x: jax.Array, conv: str = "lax") -> jax.Array:
    """The stateless part of a layer on a batch (N, ...); `conv` picks the
    convolution kernels (`snn.conv.IMPLS`, same numbers)."""
    if layer.kind == "dense":
        return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]
    return conv_lib.conv_pool(x, params["w"], params["b"], layer.pool, conv)


def pool(layer: Layer, x: jax.Array) -> jax.Array:
    """`layer`'s max-pool (`snn.conv.max_pool`)."""
    return conv_lib.max_pool(x, layer.pool)
