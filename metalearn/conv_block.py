r"""One Conv-4 block, conv -> per-episode BatchNorm -> ReLU -> 2x2 max-pool,
with a hand-written backward.

Left to autodiff, the matmul path (`conv_matmul.py` plus `embeddings.
affine_relu_pool`) leaves XLA:CPU a graph of small elementwise pieces that
it fuses by recomputing: one ProtoNet episode's gradient recomputed the first
layer's 9-tap convolution in four fusions, rebuilt the pool's first-maximum
mask in the backward, and fused BatchNorm's backward into the 64 x 3,136
transposes of the weight gradients (README.md, "Speed and memory"). Here the
block's backward is written out once, on stored residuals (the conv output,
the pooled extremes and the mask), so each piece runs once:

  forward   h = conv(x); per-episode mean and variance of h (Ioffe & Szegedy
            2015, arXiv:1502.03167); the pool takes each window's first
            maximum of sign * h (sign of the BN scale, so it is the window
            max or min of h: `affine_relu_pool`); y = relu(BN(extreme)).
  backward  with g = dL/dxhat (nonzero only at the pooled positions), BN's
            input gradient is rstd * (g - mean(g) - xhat * mean(g * xhat)),
            both means over the full map; they are sums over the pooled map
            (g vanishes elsewhere), so the only full-map pass is the one
            that writes dL/dh. The conv's backward is
            `conv_matmul.conv3x3_backward`.

Every op in the backward is differentiable JAX, so a second derivative
through it equals autodiff's (the mask, like `max`'s, is constant almost
everywhere; tests/metalearn/test_conv_block.py). Inside a `lax.scan` (MAML's
inner loop) the second derivative takes a different subgradient at tied
windows (as the older `custom_vjp` pool does, to a smaller degree), so
`embeddings.apply` uses this block by default only with batch statistics
(ProtoNets, Matching Nets), and MAML only on the forwards it differentiates
once (`maml.MAML.block_vjp`). The batch mean and variance
come out as well, for BatchNorm's running averages, and carry no gradient
(`block` stops it).

Measured (2-core CPU, README.md "Speed and memory"): the ProtoNet training
step 7.12 -> 9.27 episodes/s in an in-process A/B; one episode's gradient in
the step's scan 117-121 -> 96-108 ms.

Forward and gradient: the same numbers as `embeddings.apply`'s matmul path
up to float rounding, and the same subgradient at ties (the first maximum, as
PyTorch's `MaxPool2d`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from metalearn import conv_matmul


def block(x, kernel, gamma, beta, episodes: int, block_rows: int, epsilon: float):
    """`pool(relu(BN(conv3x3(x))))` with per-episode batch statistics.

    Args:
      x: (episodes * B, H, W, C_in), episode-major.
      kernel: (3, 3, C_in, C_out) HWIO; gamma, beta: (C_out,) BN affine.
      episodes: how many episodes `x` holds; statistics are per episode.
      block_rows: `conv_matmul.conv3x3`'s output pixels per matmul.
      epsilon: BN's variance epsilon.

    Returns:
      (y (episodes * B, H // 2, W // 2, C_out), mean, var), mean and var of
      shape (episodes, 1, 1, 1, C_out), without gradient.
    """
    y, mean, var = _block(x, kernel, gamma, beta, episodes, block_rows, epsilon)
    return y, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _block(x, kernel, gamma, beta, episodes, block_rows, epsilon):
    return _forward(x, kernel, gamma, beta, episodes, block_rows, epsilon)[0]


def _forward(x, kernel, gamma, beta, episodes, block_rows, epsilon):
    h = conv_matmul.conv3x3(x, kernel, block_rows)
    n, height, width, c = h.shape
    he = h.reshape(episodes, n // episodes, height, width, c)
    mean = he.mean(axis=(1, 2, 3), keepdims=True)
    var = jnp.square(he - mean).mean(axis=(1, 2, 3), keepdims=True)
    rstd = jax.lax.rsqrt(var + epsilon)
    scale = gamma * rstd
    sign = jnp.where(scale >= 0, 1.0, -1.0).astype(h.dtype)
    cropped = (he * sign)[:, :, : height // 2 * 2, : width // 2 * 2]
    flat = cropped.reshape(n, *cropped.shape[2:])
    # the pooled values through the custom-VJP pool, so that second-order
    # MAML differentiates this residual to the first maximum too (`jnp.max`'s
    # derivative would split ties); XLA computes the max once for both
    pooled = conv_matmul.max_pool_2x2(flat)
    first = conv_matmul._pool_forward(flat)[1]
    extreme = sign * pooled.reshape(episodes, -1, *pooled.shape[1:])
    z = extreme * scale + (beta - mean * scale)
    y = jax.nn.relu(z).reshape(pooled.shape)
    residuals = (x, kernel, gamma, h, mean, rstd, extreme, z, first)
    return (y, mean, var), residuals


def _fwd(x, kernel, gamma, beta, episodes, block_rows, epsilon):
    return _forward(x, kernel, gamma, beta, episodes, block_rows, epsilon)


def _bwd(episodes, block_rows, epsilon, residuals, cotangents):
    del epsilon
    x, kernel, gamma, h, mean, rstd, extreme, z, first = residuals
    dy = cotangents[0]  # mean and var leave `block` under stop_gradient
    n, height, width, c = h.shape
    dz = jnp.where(z > 0, dy.reshape(z.shape), 0.0)  # (E, B, H/2, W/2, C)
    xhat_p = (extreme - mean) * rstd
    d_beta = dz.sum(axis=(0, 1, 2, 3))
    d_gamma = (dz * xhat_p).sum(axis=(0, 1, 2, 3))
    g = dz * gamma  # dL/dxhat at the pooled positions
    count = (n // episodes) * height * width
    g_mean = g.sum(axis=(1, 2, 3), keepdims=True) / count
    gx_mean = (g * xhat_p).sum(axis=(1, 2, 3), keepdims=True) / count
    # g at each window's first extreme, zero elsewhere and on cropped edges
    g_full = conv_matmul._pool_backward(first, g.reshape(first.shape))[0]
    pad_h, pad_w = height - g_full.shape[1], width - g_full.shape[2]
    if pad_h or pad_w:
        g_full = jnp.pad(g_full, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    he = h.reshape(episodes, -1, height, width, c)
    g_full = g_full.reshape(he.shape)
    dh = rstd * (g_full - g_mean - (he - mean) * rstd * gx_mean)
    dx, d_kernel = conv_matmul.conv3x3_backward(
        x, kernel, dh.reshape(h.shape), block_rows
    )
    return dx, d_kernel, d_gamma, d_beta


_block.defvjp(_fwd, _bwd)
