"""One macro-layer op picked by `lax.switch`, with a hand-written VJP.

Pham et al. 2018 (arXiv:1802.03268), Section 2.3, macro search: after its
1x1 input conv (computed outside the switch with gathered weights), a layer
applies conv3x3 / conv5x5 (conv - BN - ReLU), sep_conv3x3 / sep_conv5x5
(depthwise - pointwise - BN - ReLU), or a 3x3 avg / max pool
(`search_space.MACRO_OPS` order). Under autodiff a `lax.switch` returns the
union of every branch's residuals and each branch fills the others' with
zeros (which XLA:CPU then copies); inside a branch XLA:CPU also runs
autodiff's transposed convs 10-30x slower (see `nas/convs.py`).

`switch_op` saves one activation per layer whatever the op, r = the conv (or
depthwise) output, and the BN mean and 1/std; the backward switch recomputes
the pointwise matmul, the BN output n and the ReLU mask from them:

  conv:  p = conv(h, w)            sep:  r = dw(h, k); p = r P
  out = relu(n), n = (p - mean(p)) / std(p)   (batch statistics over B, H, W)
  dL/dp = (g' - mean(g') - n mean(g' n)) / std,  g' = g [n > 0]

Pools save nothing: their backward branch recomputes them (cheap) under
`jax.vjp`. The gradients are exactly autodiff's up to float rounding
(tests/nas/test_supernet.py compares them op by op and against the fixed
child).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nas import convs

CONV_OPS = ("conv3x3", "sep_conv3x3", "conv5x5", "sep_conv5x5")  # MACRO_OPS order
_AXES = (0, 1, 2)


def _bn_stats(p):
    return p.mean(axis=_AXES), jax.lax.rsqrt(p.var(axis=_AXES) + 1e-5)


def _bn_bwd(g, n, rstd):
    return rstd * (g - g.mean(axis=_AXES) - n * (g * n).mean(axis=_AXES))


def _conv_fwd(name, params, h):
    if name.startswith("conv"):
        r = convs.conv(h, params["w"])
        p = r
    else:
        r = convs.depthwise_conv(h, params["depth"])
        p = r @ params["point"][0, 0]
    mean, rstd = _bn_stats(p)
    return jax.nn.relu((p - mean) * rstd), (r, jnp.stack([mean, rstd]))


def _conv_bwd(name, params, h, residuals, g):
    r, (mean, rstd) = residuals
    sep = name.startswith("sep")
    n = ((r @ params["point"][0, 0] if sep else r) - mean) * rstd
    g_p = _bn_bwd(jnp.where(n > 0, g, 0.0), n, rstd)
    if not sep:
        g_h, g_w = convs._conv_bwd((h, params["w"]), g_p)
        return {"w": g_w}, g_h
    g_point = jnp.einsum("bhwc,bhwd->cd", r, g_p)[None, None]
    g_h, g_depth = convs._depthwise_bwd(
        (h, params["depth"]), g_p @ params["point"][0, 0].T
    )
    return {"depth": g_depth, "point": g_point}, g_h


def _forward_branches(pools, weights, h):
    first = functools.partial(_conv_fwd, CONV_OPS[0])
    shapes = jax.eval_shape(first, weights[CONV_OPS[0]], h)[1]
    branches = [
        (lambda w, h, name=name: _conv_fwd(name, w[name], h)) for name in CONV_OPS
    ]
    zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731
    branches += [(lambda w, h, pool=pool: (pool(h), zeros())) for pool in pools]
    return branches


def _backward_branches(pools):
    zeros = lambda w: jax.tree.map(jnp.zeros_like, w)  # noqa: E731

    def conv(name):
        def branch(w, h, residuals, g):
            grads, g_h = _conv_bwd(name, w[name], h, residuals, g)
            return dict(zeros(w), **{name: grads}), g_h

        return branch

    def pool(fn):
        return lambda w, h, residuals, g: (zeros(w), jax.vjp(fn, h)[1](g)[0])

    return [conv(name) for name in CONV_OPS] + [pool(fn) for fn in pools]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def switch_op(pools, op: jax.Array, weights, h: jax.Array) -> jax.Array:
    """`MACRO_OPS[op]` after the input conv; pools: (avg, max) on (B, H, W, C).

    weights: {name: params} for the four conv ops (without "inp").
    """
    branches = _forward_branches(pools, weights, h)
    return jax.lax.switch(op, branches, weights, h)[0]


def _switch_fwd(pools, op, weights, h):
    out, residuals = jax.lax.switch(
        op, _forward_branches(pools, weights, h), weights, h
    )
    return out, (op, weights, h, residuals)


def _switch_bwd(pools, saved, g):
    op, weights, h, residuals = saved
    branches = _backward_branches(pools)
    grads, g_h = jax.lax.switch(op, branches, weights, h, residuals, g)
    return None, grads, g_h


switch_op.defvjp(_switch_fwd, _switch_bwd)
