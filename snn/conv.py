"""VALID conv + 2x2 max-pool kernels that beat XLA:CPU's own convolutions.

`snn.layers.weighted` calls `conv_pool` for conv layers. With `impl="lax"` it
is `lax.conv_general_dilated` and a max-pool by reshape; with `impl="matmul"`
(the default on CPU, `Network.conv`) two kernels that compute the same
numbers up to float summation order, in shapes XLA:CPU runs well
(measurements in snn/README.md). Max-pool ties: the wide kernel splits the
gradient equally, as `max` does; the thin one routes it to the first maximal
placement (PyTorch's rule), which gives the same weight gradient whenever
tied placements hold the same patch (all-zero windows of a spike image: the
common tie) and differs only in the input gradient, which an SNN's encoded
input does not need. A tie between two identical patches may also come out
one rounding apart, which moves the gradient between them the same way.

- thin input (a 1-channel image, conv1 of 12C5-MP2-64C5-MP2): XLA's conv of a
  1-channel input is slow (5 GFLOP/s here), and so is the pool after it on
  a 12-channel map 4x larger than the pooled one. The pool is folded into the
  conv instead: each pooled output reads one 6x6 window at stride 2, and the
  four 5x5 placements of the kernel in that window are 4 x 12 = 48 output
  channels, so conv + pool is (window patches, one gather) x (48-column
  kernel), one matmul, then a max over the 4 placements. A `custom_vjp`
  keeps the patches and the winning placement (int8) for the backward pass:
  the weight gradient is patches^T x (output gradient at the winners).
- wide input (conv2): XLA's forward conv is fast, its input gradient is not
  (2.5x the forward), so a `custom_vjp` computes the input gradient as
  im2col in reverse: (output gradient) x W^T, one matmul, then the patch
  gradients added back into the image (col2im).

im2col itself ("patches x matmul", Chellapilla, Puri & Simard 2006, "High
Performance Convolutional Neural Networks for Document Processing") is the
textbook lowering; folding the pool into the patch windows is space-to-depth
(Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
Efficient Sub-Pixel Convolutional Neural Network", arXiv:1609.05158) read
backwards.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

IMPLS = ("lax", "matmul")
THIN_CHANNELS = 4  # input channels up to which conv + pool is folded (timed: 1)


def lax_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """VALID stride-1 conv, NHWC x HWIO -> NHWC."""
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def max_pool(x: jax.Array, size: int) -> jax.Array:
    """Max-pool by reshape and max (its backward is 1.5x faster on XLA:CPU than
    `reduce_window`'s select-and-scatter, ../shared/PERF-NOTES.md)."""
    if size == 1:
        return x
    n, h, w, c = x.shape
    return x.reshape(n, h // size, size, w // size, size, c).max(axis=(2, 4))


def conv_pool(
    x: jax.Array, w: jax.Array, b: jax.Array, pool: int, impl: str = "lax"
) -> jax.Array:
    """max_pool(conv(x, w) + b): (N, H, W, C) -> (N, H', W', O)."""
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; expected one of {IMPLS}")
    if impl == "lax":
        return max_pool(lax_conv(x, w) + b, pool)
    foldable = w.shape[0] % 2 == 1 and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0
    if pool == 2 and foldable and x.shape[-1] <= THIN_CHANNELS:
        return folded_conv_pool(x, w, b)
    return max_pool(conv_fast_input_grad(x, w) + b, pool)


# -- thin input: 2x2 pool folded into a window matmul ----------------------


@functools.cache
def _window_index(h: int, w: int, k: int) -> np.ndarray:
    """Flat pixel indices of the (k+1)^2 window at stride 2 under each pooled
    output, (H'*W'*(k+1)^2,), rows of the window before columns."""
    rows = 2 * np.arange((h - k + 1) // 2)[:, None, None, None]
    cols = 2 * np.arange((w - k + 1) // 2)[None, :, None, None]
    window = np.arange(k + 1)
    return ((rows + window[:, None]) * w + cols + window).reshape(-1)


def _window_patches(x, k):
    """(N, H, W, C) -> (N*H'*W', (k+1)^2*C): one row per pooled output.

    One gather: 48 ms of op time per SNN-CONV training step here, where the
    same patches cut as 9 slices of the space-to-depth image took 87 ms.
    """
    n, h, w, c = x.shape
    index = _window_index(h, w, k)
    patches = jnp.take(x.reshape(n, h * w, c), index, axis=1, mode="clip")
    return patches.reshape(-1, (k + 1) ** 2 * c)


def _window_kernel(w):
    """(k, k, C, O) -> ((k+1)^2*C, 4*O): the 4 placements (row shift, col
    shift) of the kernel in a (k+1)^2 window, as matmul columns."""
    k, _, c, o = w.shape
    placed = [
        jnp.pad(w, ((dr, 1 - dr), (dc, 1 - dc), (0, 0), (0, 0)))
        for dr in (0, 1)
        for dc in (0, 1)
    ]
    return jnp.stack(placed, axis=3).reshape((k + 1) ** 2 * c, 4 * o)


@jax.custom_vjp
def folded_conv_pool(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """max_pool(conv(x, w) + b, 2) for a thin x (see the module docstring)."""
    return _folded_fwd(x, w, b)[0]


def _folded_fwd(x, w, b):
    n, h, width, _ = x.shape
    k, o = w.shape[0], w.shape[-1]
    patches = _window_patches(x, k)
    z = (patches @ _window_kernel(w)).reshape(n, (h - k + 1) // 2, -1, 4, o)
    pooled = z.max(axis=3)
    # the first maximal placement (PyTorch's max-pool rule), as int8; a chain
    # of selects fuses with the max (`argmax`, a variadic reduce, took 3x longer)
    first = jnp.full(pooled.shape, 3, jnp.int8)
    for placement in (2, 1, 0):
        first = jnp.where(z[:, :, :, placement] == pooled, placement, first)
    # the bias is the same for all 4 placements: add it after the max
    return pooled + b, (x, w, patches, first)


def _folded_bwd(residuals, grad):
    x, w, patches, first = residuals
    placements = jnp.arange(4, dtype=jnp.int8)[:, None]
    grad_z = jnp.where(first[:, :, :, None] == placements, grad[:, :, :, None], 0)
    grad_z = grad_z.reshape(patches.shape[0], -1)
    kernel, kernel_vjp = jax.vjp(_window_kernel, w)
    (grad_w,) = kernel_vjp(patches.T @ grad_z)
    # the input gradient (a scatter-add) is dropped by XLA when unused, as for
    # an SNN's encoded input
    _, patches_vjp = jax.vjp(functools.partial(_window_patches, k=w.shape[0]), x)
    (grad_x,) = patches_vjp(grad_z @ kernel.T)
    return grad_x, grad_w, grad.sum(axis=(0, 1, 2))


folded_conv_pool.defvjp(_folded_fwd, _folded_bwd)


# -- wide input: XLA's forward, input gradient by reverse im2col -----------


@jax.custom_vjp
def conv_fast_input_grad(x: jax.Array, w: jax.Array) -> jax.Array:
    """`lax_conv(x, w)` whose input gradient is a matmul + col2im."""
    return lax_conv(x, w)


def _wide_fwd(x, w):
    return lax_conv(x, w), (x, w)


def _wide_bwd(residuals, grad):
    x, w = residuals
    (grad_w,) = jax.vjp(functools.partial(lax_conv, x), w)[1](grad)
    k, _, _, o = w.shape
    n, h, width, _ = grad.shape
    patch_grads = grad.reshape(-1, o) @ w.reshape(-1, o).T
    patch_grads = patch_grads.reshape(n, h, width, k, k, -1)
    # col2im as a sum of padded slabs, which XLA fuses into one loop (25
    # `.at[].add` updates per chunk: SNN-CONV step compile 74 s, this 65 s)
    grad_x = sum(
        jnp.pad(
            patch_grads[:, :, :, r, c],
            ((0, 0), (r, k - 1 - r), (c, k - 1 - c), (0, 0)),
        )
        for r in range(k)
        for c in range(k)
    )
    return grad_x, grad_w


conv_fast_input_grad.defvjp(_wide_fwd, _wide_bwd)
