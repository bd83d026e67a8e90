"""The ops of the ENAS micro cell, and one node input selected by traced index.

Pham et al. 2018 (arXiv:1802.03268), Section 2.3: a node's input applies one of
sep_conv3x3, sep_conv5x5 (twice ReLU-depthwise-pointwise-BN), 3x3 avg pool, 3x3
max pool or identity (`search_space.MICRO_OPS` order) to one earlier node.
`branch` gathers that node and the op's weights by the traced index, then
selects the op one of three ways (`nas/micro_supernet.py` measures them):

  switch  `lax.switch` on the op runs only the chosen op, forward and backward.
          Inside a switch branch XLA:CPU does not canonicalize autodiff's
          transposed convs (it does in the entry computation) and runs them
          10-30x slower, so `depthwise` has a hand-written VJP made of
          canonical (NHWC, HWIO) convs and the pointwise conv is a matmul.
  kernel  both separable convs as one gathered dense 5x5 kernel, both pools,
          then a select.
  mask    every op, then a select.
"""

import jax
import jax.numpy as jnp

from nas import supernet as macro

CONV_OPS = ("sep_conv3x3", "sep_conv5x5")


def pools(x):
    return macro._pool(x, "avg_pool"), macro._pool(x, "max_pool")


@jax.custom_vjp
def depthwise(x: jax.Array, depth: jax.Array) -> jax.Array:
    """Depthwise kxk "SAME" conv of (B, H, W, C) with depth (k, k, 1, C).

    Its gradient is written by hand so that it holds only canonical
    (NHWC, HWIO) convs and reductions: inside a `lax.switch` branch XLA:CPU
    leaves autodiff's transposed convs (kernel "01oi", weight gradient
    "f01b_i01o") uncanonicalized and runs them 10-30x slower than in the
    entry computation, where it rewrites them.
    """
    return macro.depthwise_conv(x, depth)


def _depthwise_fwd(x, depth):
    return depthwise(x, depth), (x, depth)


def _depthwise_bwd(residuals, grad):
    x, depth = residuals
    # dx: the same "SAME" conv with the kernel flipped (odd k)
    grad_x = macro.depthwise_conv(grad, depth[::-1, ::-1])
    # d depth[i, j, c] = sum_bhw x_pad[b, h + i, w + j, c] grad[b, h, w, c]: a
    # canonical VALID conv with C as the batch and B as the features gives
    # every (c_in, c_out) pair; the depthwise gradient is its diagonal.
    pad = depth.shape[0] // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    full = jax.lax.conv_general_dilated(
        padded.transpose(3, 1, 2, 0),  # (C, H + 2p, W + 2p, B)
        grad.transpose(1, 2, 0, 3),  # (H, W, B, C)
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # (C, k, k, C)
    grad_depth = jnp.diagonal(full, axis1=0, axis2=3)  # (k, k, C)
    return grad_x, grad_depth.reshape(depth.shape)


depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def sep_conv(weights, x, in_switch: bool = True):
    """Twice ReLU - depthwise - pointwise - BN; weights (2, ...) per stack.

    In a switch branch: the hand-written depthwise VJP and the pointwise conv
    as a matmul (whose transposes are matmuls); outside (the standalone
    child), autodiff's convs, which XLA:CPU canonicalizes in the entry
    computation and runs faster. Both compute the same function.
    """
    with jax.named_scope("sep_conv"):
        for stack in range(2):
            x = jax.nn.relu(x)
            depth, point = weights["depth"][stack], weights["point"][stack]
            if in_switch:
                x = jnp.einsum("bhwc,cd->bhwd", depthwise(x, depth), point)
            else:
                x = macro._conv(macro.depthwise_conv(x, depth), point[None, None])
            x = macro.batch_norm(x)
    return x


def _dense_kernel(depth, point, size: int = 5):
    kernel = depth[:, :, 0, :, None] * point  # (k, k, C, C)
    pad = (size - kernel.shape[0]) // 2
    return jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0)))


OPS = (  # in `search_space.MICRO_OPS` order
    lambda p, x: sep_conv(p["sep_conv3x3"], x),
    lambda p, x: sep_conv(p["sep_conv5x5"], x),
    lambda p, x: macro._pool(x, "avg_pool"),
    lambda p, x: macro._pool(x, "max_pool"),
    lambda p, x: x,
)


def branch(weights, nodes, index, op, select):
    """One node input: gather the input and its weights by traced index, apply op.

    "switch": `lax.switch` on the (unbatched) op runs only the chosen op,
    forward and backward; "kernel": both separable convs as one dense 5x5
    kernel, both pools, select; "mask": every op, select.
    """
    x = jnp.stack(nodes)[index]
    picked = {n: jax.tree.map(lambda w: w[index], weights[n]) for n in CONV_OPS}
    if select == "switch":
        return jax.lax.switch(op, OPS, picked, x)
    if select == "kernel":
        conv = x
        for stack in range(2):
            k3, k5 = (
                _dense_kernel(picked[n]["depth"][stack], picked[n]["point"][stack])
                for n in CONV_OPS
            )
            kernel = jnp.where(op == 0, k3, k5)
            conv = macro.batch_norm(macro._conv(jax.nn.relu(conv), kernel))
    else:
        sep3, sep5 = (sep_conv(picked[n], x) for n in CONV_OPS)
        conv = jnp.where(op == 0, sep3, sep5)
    avg, top = pools(x)
    return jnp.where(op < 2, conv, jnp.where(op == 2, avg, jnp.where(op == 3, top, x)))
