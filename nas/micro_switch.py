"""One micro-cell op picked by `lax.switch`, with a hand-written VJP.

Pham et al. 2018 (arXiv:1802.03268), Section 2.3: a node input applies one of
sep_conv3x3, sep_conv5x5, avg pool, max pool or identity (`MICRO_OPS` order).
Under autodiff a `lax.switch` returns, from every branch, the union of all
branches' residuals: each separable conv saves 13 activation-sized arrays, so a
pool or identity branch (3 of 5 ops) writes 13 arrays of zeros, and XLA:CPU
adds a copy for each; in the micro benchmark (B=5, 100 conds per step) the
zero-fills and copies took 84 of the 0.35 s per step (profile, 2 CPU cores).

`switch_op` saves only what no cheap op can recompute: the two depthwise
outputs d1, d2 and the per-channel BN mean and 1/std of each stack; the
backward switch recomputes ReLUs, the pointwise matmuls and the BN outputs
from them. A separable conv stack (twice ReLU - depthwise - pointwise - BN):

  a0 = relu(x); d1 = dw(a0, k1); p1 = d1 P1; n1 = BN(p1)
  a1 = relu(n1); d2 = dw(a1, k2); p2 = d2 P2; out = BN(p2)

and with n = (p - mean) / std (batch statistics, over B, H, W):

  dL/dp = (g - mean(g) - n mean(g n)) / std

The depthwise gradients are `convs`' canonical-conv ones (XLA:CPU runs
autodiff's transposed convs 10-30x slower inside a conditional).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nas import convs
from nas import supernet as macro

CONV_OPS = ("sep_conv3x3", "sep_conv5x5")
_AXES = (0, 1, 2)


def _bn_stats(p):
    mean = p.mean(axis=_AXES)
    return mean, jax.lax.rsqrt(p.var(axis=_AXES) + 1e-5)  # as macro.batch_norm


def _sep_fwd(weights, x):
    """Returns out and the residuals (d1, d2, (mean1, rstd1, mean2, rstd2))."""
    depth, point = weights["depth"], weights["point"]
    d1 = convs.depthwise_conv(jax.nn.relu(x), depth[0])
    p1 = d1 @ point[0]
    mean1, rstd1 = _bn_stats(p1)
    d2 = convs.depthwise_conv(jax.nn.relu((p1 - mean1) * rstd1), depth[1])
    p2 = d2 @ point[1]
    mean2, rstd2 = _bn_stats(p2)
    return (p2 - mean2) * rstd2, (d1, d2, jnp.stack([mean1, rstd1, mean2, rstd2]))


def _bn_bwd(g, n, rstd):
    return rstd * (g - g.mean(axis=_AXES) - n * (g * n).mean(axis=_AXES))


def _sep_bwd(weights, x, residuals, g):
    depth, point = weights["depth"], weights["point"]
    d1, d2, (mean1, rstd1, mean2, rstd2) = residuals
    n1 = (d1 @ point[0] - mean1) * rstd1
    a1 = jax.nn.relu(n1)
    g_p2 = _bn_bwd(g, (d2 @ point[1] - mean2) * rstd2, rstd2)
    g_point2 = jnp.einsum("bhwc,bhwd->cd", d2, g_p2)
    g_a1, g_depth2 = convs._depthwise_bwd((a1, depth[1]), g_p2 @ point[1].T)
    g_p1 = _bn_bwd(jnp.where(n1 > 0, g_a1, 0.0), n1, rstd1)
    g_point1 = jnp.einsum("bhwc,bhwd->cd", d1, g_p1)
    g_a0, g_depth1 = convs._depthwise_bwd((jax.nn.relu(x), depth[0]), g_p1 @ point[0].T)
    grads = {
        "depth": jnp.stack([g_depth1, g_depth2]),
        "point": jnp.stack([g_point1, g_point2]),
    }
    return grads, jnp.where(x > 0, g_a0, 0.0)


def _pool(kind):
    return lambda x: macro._pool(x, kind)


_CHEAP = (_pool("avg_pool"), _pool("max_pool"), lambda x: x)


def _zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _forward_branches(weights, x):
    """Each op's (out, residuals); all branches return the same residual shapes."""
    shapes = jax.eval_shape(_sep_fwd, weights[CONV_OPS[0]], x)[1]
    branches = [(lambda w, x, name=name: _sep_fwd(w[name], x)) for name in CONV_OPS]
    branches += [(lambda w, x, op=op: (op(x), _zeros_like(shapes))) for op in _CHEAP]
    return branches


def _backward_branches():
    def sep(name):
        def branch(w, x, residuals, g):
            grads, g_x = _sep_bwd(w[name], x, residuals, g)
            return dict(_zeros_like(w), **{name: grads}), g_x

        return branch

    def cheap(op):
        return lambda w, x, residuals, g: (_zeros_like(w), jax.vjp(op, x)[1](g)[0])

    return [sep(name) for name in CONV_OPS] + [cheap(op) for op in _CHEAP]


@jax.custom_vjp
def switch_op(op: jax.Array, weights, x: jax.Array) -> jax.Array:
    """`MICRO_OPS[op]` on x (B, H, W, C); weights: {sep_conv3x3/5x5: stacks}."""
    return jax.lax.switch(op, _forward_branches(weights, x), weights, x)[0]


def _switch_fwd(op, weights, x):
    out, residuals = jax.lax.switch(op, _forward_branches(weights, x), weights, x)
    return out, (op, weights, x, residuals)


def _switch_bwd(saved, g):
    op, weights, x, residuals = saved
    grads, g_x = jax.lax.switch(op, _backward_branches(), weights, x, residuals, g)
    return None, grads, g_x


switch_op.defvjp(_switch_fwd, _switch_bwd)
