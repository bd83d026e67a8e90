"""VALID conv + 2x2 max-pool kernels that beat XLA:CPU's own convolutions.

`snn.layers.weighted` calls `conv_pool` for conv layers. With `impl="lax"` it
is `lax.conv_general_dilated` and a max-pool by reshape; with `impl="matmul"`
(the default on CPU, `Network.conv`) two kernels that compute the same
numbers up to float summation order, in shapes XLA:CPU runs well
(measurements in snn/README.md). Max-pool ties split the gradient equally, as
`max` does; a tie between two identical patches may come out one rounding
apart here, which moves their gradient from one to the other and leaves the
weight gradient unchanged (the network test compares with spike inputs).

- thin input (a 1-channel image, conv1 of 12C5-MP2-64C5-MP2): XLA's conv of a
  1-channel input is slow (5 GFLOP/s here), and so is the pool after it on
  a 12-channel map 4x larger than the pooled one. The pool is folded into the
  conv instead: each pooled output reads one 6x6 window at stride 2, and the
  four 5x5 placements of the kernel in that window are 4 x 12 = 48 output
  channels, so conv + pool is one stride-1 3x3 conv of the space-to-depth
  input (4 channels) with 48 outputs, then a max over the 4 placements.
  The weight gradient of that conv is slow in XLA too, so a `custom_vjp`
  computes it as (window patches)^T x (output gradient), one matmul.
- wide input (conv2): XLA's forward conv is fast, its input gradient is not
  (2.5x the forward), so a `custom_vjp` computes the input gradient as
  im2col in reverse: (output gradient) x W^T, one matmul, then the patch
  gradients added back into the image (col2im).

im2col itself ("patches x matmul", Chellapilla, Puri & Simard 2006, "High
Performance Convolutional Neural Networks for Document Processing") is the
textbook lowering; space-to-depth follows Shi et al. 2016, "Real-Time Single
Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
Neural Network" (arXiv:1609.05158), read backwards.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

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


# -- thin input: 2x2 pool folded into a space-to-depth conv ----------------


def _space_to_depth(x):
    """(N, H, W, C) -> (N, H/2, W/2, 4C), channels ordered (row, col, c)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def _folded_kernel(w):
    """(k, k, C, O) -> (k/2+1, k/2+1, 4C, 4O) for odd k: the 4 placements
    (row shift, col shift) of the kernel in a (k+1)^2 window, laid out for
    the space-to-depth input."""
    k, _, c, o = w.shape
    placed = [
        jnp.pad(w, ((dr, 1 - dr), (dc, 1 - dc), (0, 0), (0, 0)))
        for dr in (0, 1)
        for dc in (0, 1)
    ]
    window = jnp.stack(placed, axis=3).reshape(k + 1, k + 1, c, 4 * o)
    half = (k + 1) // 2
    window = window.reshape(half, 2, half, 2, c, 4 * o).transpose(0, 2, 1, 3, 4, 5)
    return window.reshape(half, half, 4 * c, 4 * o)


def _max_over_placements(z, b):
    n, h, w, _ = z.shape
    return (z.reshape(n, h, w, 4, -1) + b).max(axis=3)


def _folded_by_matmul(x, w):
    """The folded conv as window patches x kernel (used for its gradient)."""
    y = _space_to_depth(x)
    kernel = _folded_kernel(w)
    half = kernel.shape[0]
    n, h, width, _ = y.shape
    h, width = h - half + 1, width - half + 1
    patches = jnp.concatenate(
        [y[:, r : r + h, c : c + width] for r in range(half) for c in range(half)],
        axis=-1,
    )
    return (
        patches.reshape(n * h * width, -1) @ kernel.reshape(-1, kernel.shape[-1])
    ).reshape(n, h, width, -1)


@jax.custom_vjp
def folded_conv_pool(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """max_pool(conv(x, w) + b, 2) for a thin x (see the module docstring)."""
    return _max_over_placements(lax_conv(_space_to_depth(x), _folded_kernel(w)), b)


def _folded_fwd(x, w, b):
    z = lax_conv(_space_to_depth(x), _folded_kernel(w))
    return _max_over_placements(z, b), (x, w, z, b)


def _folded_bwd(residuals, grad):
    x, w, z, b = residuals
    _, pool_vjp = jax.vjp(_max_over_placements, z, b)
    grad_z, grad_b = pool_vjp(grad)
    _, conv_vjp = jax.vjp(_folded_by_matmul, x, w)
    grad_x, grad_w = conv_vjp(grad_z)
    return grad_x, grad_w, grad_b


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
