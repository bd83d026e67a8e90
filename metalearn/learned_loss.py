"""ML3: a loss function meta-learned so that gradient descent on it learns fast.

Bechtle, Molchanov, Chebotar, Grefenstette, Righetti, Sukhatme, Meier,
"Meta-Learning via Learned Loss", 2021 (ICPR), arXiv:1906.05374; reproduces the
sine-regression experiment of section V-A / Figure 2: a loss network
`M_phi(prediction, target)` is meta-trained so that a regressor trained on it
for a few plain gradient steps has a low task loss (MSE); then fresh
regressors trained with the learned loss are compared with ones trained on
the MSE itself, on held-out and on out-of-distribution sine tasks.

The inner loop is `lax.scan` over SGD steps on the learned loss (support
points), the meta-objective is the MSE of the trained regressor on query
points of the same task, and its gradient flows through every inner step
(second order; the regressor is small). Tasks of a meta-batch are `vmap`ped.

Inner steps have their gradient norm clipped (`clip_norm`, the same for the
learned loss and the MSE baselines): at the inner rate the MSE's first steps
already overshoot (query MSE 14 -> 150 on an amplitude-5 task, then back), so
a learned loss that adds a little slope tips a rare task (2 in 10,000 with
the loss of seed 1's meta-step 734) into exponential growth, inf, and a NaN
meta-loss. A clipped step moves the regressor at most `lr * clip_norm`, so no
run can overflow within its horizon.

`base="mse"` learns a correction to the MSE instead of a loss from scratch:
`MSE + softplus(M_phi)`, with `M_phi`'s output bias started low
(`init_loss_net(..., out_bias=-4)`) so the first learned loss is the MSE plus
a near-constant: fresh regressors train as on the MSE from the first
meta-step. A loss from scratch (`base="none"`) usually moved the regressors the
wrong way at first, and meta-training collapsed to a loss with ~0 gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from metalearn import sinusoid
from metalearn.episodes import Episode


def _dense(key: jax.Array, n_in: int, n_out: int, scale: float) -> dict:
    # drawn flat: XLA:CPU compiles a 2-d normal sampler much slower
    w = jax.random.normal(key, (n_in * n_out,)).reshape(n_in, n_out)
    return {"w": w * scale / jnp.sqrt(n_in), "b": jnp.zeros((n_out,))}


LOSS_BASES = ("none", "mse")


def init_loss_net(key: jax.Array, hidden: int = 50, out_bias: float = 0.0) -> list:
    """The meta-loss network: (prediction, target, prediction - target) ->
    2-hidden-layer ReLU MLP -> softplus; `out_bias` starts the output layer's
    bias (a low one makes the learned term small and flat at first)."""
    sizes = (3, hidden, hidden, 1)
    keys = jax.random.split(key, len(sizes) - 1)
    layers = [
        _dense(k, n_in, n_out, jnp.sqrt(2.0))
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    layers[-1]["b"] = layers[-1]["b"] + out_bias
    return layers


def learned_loss(
    phi: list, prediction: jax.Array, target: jax.Array, base: str = "none"
) -> jax.Array:
    """Mean over points of softplus(M_phi(prediction, target)): (B, 1) -> scalar;
    plus the MSE when `base="mse"` (a learned correction to the MSE).

    The softplus keeps the loss bounded below, so descending it cannot run off
    to minus infinity. The residual is a third input: from (prediction,
    target) alone a ReLU net, piecewise linear, rarely found a minimum at
    prediction = target (meta-training collapsed to a loss with ~0 gradient).
    """
    if base not in LOSS_BASES:
        raise ValueError(f"base={base!r}; set config.loss_base to one of {LOSS_BASES}")
    h = jnp.concatenate([prediction, target, prediction - target], axis=-1)
    for layer in phi[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    value = jax.nn.softplus(h @ phi[-1]["w"] + phi[-1]["b"]).mean()
    if base == "mse":
        value = value + mse_loss(phi, prediction, target)
    return value


def mse_loss(phi, prediction: jax.Array, target: jax.Array) -> jax.Array:
    del phi
    return jnp.mean((prediction - target) ** 2)


def init_regressor(key: jax.Array, sizes=(1, 40, 40, 1)) -> list:
    """A fresh 1-40-40-1 ReLU regressor (`sinusoid.mlp` applies it); LeCun-normal
    weights keep the initial outputs near the targets' scale on x in [-5, 5]."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        _dense(k, n_in, n_out, 1.0)
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def clip_by_norm(grads, clip_norm: float | None):
    """Scales `grads` to global norm at most `clip_norm` (None: unchanged).

    `clip / max(norm, clip)` rather than a select between two branches: the
    meta-gradient flows through the scale, and no unused branch can feed it
    0 * inf.
    """
    if clip_norm is None:
        return grads
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    scale = clip_norm / jnp.maximum(norm, clip_norm)
    return jax.tree.map(lambda g: g * scale, grads)


def train_regressor(
    loss_fn,
    phi,
    params,
    task: Episode,
    lr: float,
    steps: int,
    clip_norm: float | None = None,
):
    """`steps` SGD steps on `loss_fn(phi, f(support_x), support_y)` (`lax.scan`),
    each gradient clipped to global norm `clip_norm` (None: plain SGD).

    Returns:
      (trained params, query MSE before each step and after the last (steps+1,)).
    """

    def query_mse(params):
        return jnp.mean((sinusoid.mlp(params, task.query_x) - task.query_y) ** 2)

    def inner(params):
        return loss_fn(phi, sinusoid.mlp(params, task.support_x), task.support_y)

    def body(params, _):
        grads = clip_by_norm(jax.grad(inner)(params), clip_norm)
        new = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return new, query_mse(params)

    params, curve = jax.lax.scan(body, params, None, length=steps)
    return params, jnp.concatenate([curve, query_mse(params)[None]])


def meta_loss(
    phi,
    key: jax.Array,
    lr: float,
    steps: int,
    k_shot: int,
    n_query: int,
    meta_batch: int,
    base: str = "none",
    clip_norm: float | None = None,
) -> jax.Array:
    """Mean query MSE after `steps` inner steps on the learned loss (with
    `base`, inner gradients clipped to `clip_norm`), over `meta_batch` tasks,
    each with a fresh regressor initialisation."""
    loss_fn = functools.partial(learned_loss, base=base)

    def one(key):
        key_task, key_init = jax.random.split(key)
        task = sinusoid.sample_task(key_task, k_shot, n_query)
        params = init_regressor(key_init)
        _, curve = train_regressor(loss_fn, phi, params, task, lr, steps, clip_norm)
        return curve[-1]

    return jax.vmap(one)(jax.random.split(key, meta_batch)).mean()
