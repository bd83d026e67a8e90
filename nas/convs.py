"""Stride-1 "SAME" convolutions, and versions with hand-written VJPs for switches.

A weight-sharing supernet picks each op with `lax.switch`, so that only the
chosen op runs, forward and backward. Inside a switch branch XLA:CPU does not
canonicalize the transposed convolutions that autodiff emits (input gradient:
kernel layout "01oi"; weight gradient: "f01b_i01o"), which it rewrites in the
entry computation, and runs them 10-30x slower. `conv_vjp` and `depthwise_vjp`
compute the same functions as `conv` and `depthwise_conv` with gradients made
of canonical (NHWC, HWIO) convolutions only:

  y = x * w (correlation, "SAME", odd k, pad p = k // 2)
  dL/dx = g * flip(w) with input and output channels swapped ("SAME")
  dL/dw[i, j, a, b] = sum_{n,h,w} x_pad[n, h + i, w + j, a] g[n, h, w, b]:
          a canonical conv of x as (Ci, H, W, N) with g as an (H, W, N, Co) kernel

and the depthwise weight gradient is its diagonal a = b (a product-sum per
channel and shift). Outside a
switch, autodiff's own gradients of `conv` / `depthwise_conv` are as fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 "SAME" conv of (B, H, W, Ci) with w (k, k, Ci, Co)."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC)


def depthwise_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Depthwise kxk "SAME" conv of (B, H, W, C) with w (k, k, 1, C).

    On CPU as a dense conv with a block-diagonal (k, k, C, C) kernel: for a
    (64, 14, 14, 16) 5x5 layer, forward + backward, XLA:CPU took 0.34 s with the
    grouped conv (`feature_group_count=C`), 0.093 s with this, and 0.094 s as a
    sum of 25 shifted copies, which compiled 5x slower (7.6 s vs 1.5 s; all
    under 4x CPU contention). Elsewhere the grouped conv.
    """
    if jax.default_backend() == "cpu":
        return conv(x, w[:, :, 0, :, None] * jnp.eye(w.shape[-1], dtype=w.dtype))
    return jax.lax.conv_general_dilated(
        x,
        w,
        (1, 1),
        "SAME",
        dimension_numbers=_NHWC,
        feature_group_count=w.shape[-1],
    )


def _shifted_windows(x, size: int, height: int, width: int):
    """The k * k windows x_pad[:, i : i + h, j : j + w] of the "SAME"-padded x."""
    pad = size // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return [
        padded[:, i : i + height, j : j + width]
        for i in range(size)
        for j in range(size)
    ]


def _weight_grad(x, grad, size: int, depthwise: bool = False) -> jax.Array:
    """(k, k, Ci, Co): sum_{n,h,w} x_pad[n, h + i, w + j, a] g[n, h, w, b].

    Dense: the textbook conv with the batch as the contracted feature axis,
    canonicalized by hand: x as (Ci, H, W, N) images, g as an (H, W, N, Co)
    kernel, a "SAME"-padded NHWC / HWIO conv giving (Ci, k, k, Co). It is the
    very conv XLA makes of autodiff's weight gradient outside a switch, where
    its layout pass adds the transposes; inside a branch that pass does not
    run. The same values bit for bit; inside a switch, (64, 28, 28, 16), 2
    cores: 3x3 22 ms, 5x5 45 ms, where the k * k stacked windows' batched
    matmul (before 2026-11-27, session 20) took 61 / 142 ms and autodiff's own
    transposed conv 226 / 505 ms (one-off micro-benchmark).
    Depthwise ((k, k, C)): one product-sum per window, which XLA fuses
    without writing the windows out. The stacked windows' batched
    matrix-vector product (before 2026-11-27) took 3-4x as long inside a
    switch (5x5 on (64, 14, 14, 8): 9.65 vs 2.82 ms; 7x7x16: 7.47 vs 1.88 ms;
    4x4x32: 2.53 vs 0.67 ms; 2 loaded CPU cores) and a quarter of the micro
    supernet's op time (profile: stacks, slices and dots, ~145 of 575 ms per
    step summed over threads). Same sums in another order.
    """
    if depthwise:
        windows = _shifted_windows(x, size, *grad.shape[1:3])
        taps = [jnp.sum(window * grad, axis=(0, 1, 2)) for window in windows]
        return jnp.stack(taps).reshape(size, size, -1)
    pad = size // 2
    out = jax.lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0),  # (Ci, H, W, N): Ci images of N features
        grad.transpose(1, 2, 0, 3),  # (H, W, N, Co): an HxW kernel
        (1, 1),
        ((pad, pad), (pad, pad)),
        dimension_numbers=_NHWC,
    )  # (Ci, k, k, Co)
    return out.transpose(1, 2, 0, 3)


@jax.custom_vjp
def conv_vjp(x: jax.Array, w: jax.Array) -> jax.Array:
    """`conv` with a gradient of canonical convs (for `lax.switch` branches)."""
    return conv(x, w)


def _conv_fwd(x, w):
    return conv(x, w), (x, w)


def _conv_bwd(residuals, grad):
    x, w = residuals
    grad_x = conv(grad, w[::-1, ::-1].swapaxes(2, 3))
    return grad_x, _weight_grad(x, grad, w.shape[0])


conv_vjp.defvjp(_conv_fwd, _conv_bwd)


@jax.custom_vjp
def depthwise_vjp(x: jax.Array, depth: jax.Array) -> jax.Array:
    """`depthwise_conv` with a gradient of canonical convs and a diagonal."""
    return depthwise_conv(x, depth)


def _depthwise_fwd(x, depth):
    return depthwise_conv(x, depth), (x, depth)


def _depthwise_bwd(residuals, grad):
    x, depth = residuals
    grad_x = depthwise_conv(grad, depth[::-1, ::-1])  # depthwise: no channel swap
    grad_depth = _weight_grad(x, grad, depth.shape[0], depthwise=True)  # (k, k, C)
    return grad_x, grad_depth.reshape(depth.shape)


depthwise_vjp.defvjp(_depthwise_fwd, _depthwise_bwd)
