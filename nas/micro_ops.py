"""The ops of the ENAS micro cell, and one node input selected by traced index.

Pham et al. 2018 (arXiv:1802.03268), Section 2.3: a node's input applies one of
sep_conv3x3, sep_conv5x5 (twice ReLU-depthwise-pointwise-BN), 3x3 avg pool, 3x3
max pool or identity (`search_space.MICRO_OPS` order) to one earlier node.
`branch` picks that node (one-hot sum) and the op's weights by the traced
index, then selects the op one of three ways (`nas/micro_supernet.py` measures
them):

  switch  `micro_switch.switch_op`: `lax.switch` on the op runs only the
          chosen op, forward and backward, with a hand-written VJP.
  kernel  both separable convs as one gathered dense 5x5 kernel, both pools,
          then a select.
  mask    every op, then a select.
"""

import jax
import jax.numpy as jnp

from nas import convs, micro_switch
from nas import supernet as macro

CONV_OPS = ("sep_conv3x3", "sep_conv5x5")


def pools(x):
    return macro._pool(x, "avg_pool"), macro._pool(x, "max_pool")


def sep_conv(weights, x):
    """Twice ReLU - depthwise - pointwise - BN; weights (2, ...) per stack."""
    with jax.named_scope("sep_conv"):
        for stack in range(2):
            depth, point = weights["depth"][stack], weights["point"][stack]
            x = convs.depthwise_conv(jax.nn.relu(x), depth)
            x = macro.batch_norm(convs.conv(x, point[None, None]))
    return x


def _dense_kernel(depth, point, size: int = 5):
    kernel = depth[:, :, 0, :, None] * point  # (k, k, C, C)
    pad = (size - kernel.shape[0]) // 2
    return jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0)))


def branch(weights, nodes, index, op, select):
    """One node input: gather the input and its weights by traced index, apply op.

    "switch": `lax.switch` on the (unbatched) op runs only the chosen op,
    forward and backward; "kernel": both separable convs as one dense 5x5
    kernel, both pools, select; "mask": every op, select.
    """
    # a one-hot sum: exact (x * 1 + y * 0 = x), cheaper than a gather from the
    # stacked nodes, whose backward scatters into zeros of every node
    onehot = jax.nn.one_hot(index, len(nodes), dtype=nodes[0].dtype)
    x = sum(w * node for w, node in zip(onehot, nodes, strict=True))
    picked = {n: jax.tree.map(lambda w: w[index], weights[n]) for n in CONV_OPS}
    if select == "switch":
        return micro_switch.switch_op(op, picked, x)
    if select == "kernel":
        conv = x
        for stack in range(2):
            k3, k5 = (
                _dense_kernel(picked[n]["depth"][stack], picked[n]["point"][stack])
                for n in CONV_OPS
            )
            kernel = jnp.where(op == 0, k3, k5)
            conv = macro.batch_norm(convs.conv(jax.nn.relu(conv), kernel))
    else:
        sep3, sep5 = (sep_conv(picked[n], x) for n in CONV_OPS)
        conv = jnp.where(op == 0, sep3, sep5)
    avg, top = pools(x)
    return jnp.where(op < 2, conv, jnp.where(op == 2, avg, jnp.where(op == 3, top, x)))
