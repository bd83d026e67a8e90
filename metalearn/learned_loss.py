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

The authors' own setting (facebookresearch/LearningToLearn, `ml3/`) is built
from switches here, not a copy: `init_loss_net(variant="paper")` (inputs
(prediction, target), no biases, Xavier-uniform weights, the whole loss with
`base="none"`), `make_task_sampler(score_on="support")` (the meta-objective
and the test score on the training points themselves), `meta_loss(task_key=)`
(the same task(s) every meta-step, fresh regressor initialisations) and
`init_regressor(init="xavier" | "torch")` (their meta-training reset and
PyTorch's default `nn.Linear` init, which their test regressors keep).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from metalearn import sinusoid
from metalearn.episodes import Episode


def _dense(key: jax.Array, n_in: int, n_out: int, scale: float) -> dict:
    # drawn flat: XLA:CPU compiles a 2-d normal sampler much slower
    w = jax.random.normal(key, (n_in * n_out,)).reshape(n_in, n_out)
    return {"w": w * scale / jnp.sqrt(n_in), "b": jnp.zeros((n_out,))}


def _uniform(key: jax.Array, shape: tuple, bound) -> jax.Array:
    # drawn flat, as in `_dense`
    flat = jax.random.uniform(key, (math.prod(shape),), minval=-bound, maxval=bound)
    return flat.reshape(shape)


def _xavier(key: jax.Array, n_in: int, n_out: int) -> jax.Array:
    """Glorot & Bengio 2010 uniform weights, gain 1 (`nn.init.xavier_uniform_`)."""
    return _uniform(key, (n_in, n_out), math.sqrt(6.0 / (n_in + n_out)))


def _affine(layer: dict, h: jax.Array) -> jax.Array:
    # a layer without "b" is bias-free (the ML3 code's loss network)
    return h @ layer["w"] + layer["b"] if "b" in layer else h @ layer["w"]


LOSS_BASES = ("none", "mse")
LOSS_NETS = ("residual", "paper")
REGRESSOR_INITS = ("lecun", "xavier", "torch")
SCORE_ON = ("query", "support")


def init_loss_net(
    key: jax.Array,
    hidden: int = 50,
    out_bias: float = 0.0,
    variant: str = "residual",
) -> list:
    """The meta-loss network M_phi: a 2-hidden-layer ReLU MLP -> softplus.

    `variant="residual"` (ours): inputs (prediction, target, prediction -
    target), He-scaled normal weights, biases, the output bias started at
    `out_bias` (a low one makes the learned term small and flat at first).
    `variant="paper"` (the ML3 code's `ML3_SineRegressionLoss`): inputs
    (prediction, target), no biases, Xavier-uniform weights; `out_bias` must
    be 0 (there is no bias to start).
    """
    if variant not in LOSS_NETS:
        raise ValueError(
            f"variant={variant!r}; set config.loss_net to one of {LOSS_NETS}"
        )
    n_inputs = 3 if variant == "residual" else 2
    sizes = (n_inputs, hidden, hidden, 1)
    keys = jax.random.split(key, len(sizes) - 1)
    pairs = zip(keys, sizes[:-1], sizes[1:], strict=True)
    if variant == "paper":
        if out_bias != 0:
            raise ValueError(
                f"out_bias={out_bias} with a bias-free loss network; set "
                "config.loss_out_bias=0 (or config.loss_net='residual')"
            )
        return [{"w": _xavier(k, n_in, n_out)} for k, n_in, n_out in pairs]
    layers = [_dense(k, n_in, n_out, jnp.sqrt(2.0)) for k, n_in, n_out in pairs]
    layers[-1]["b"] = layers[-1]["b"] + out_bias
    return layers


def learned_loss(
    phi: list, prediction: jax.Array, target: jax.Array, base: str = "none"
) -> jax.Array:
    """Mean over points of softplus(M_phi(prediction, target)): (B, 1) -> scalar;
    plus the MSE when `base="mse"` (a learned correction to the MSE).

    The softplus keeps the loss bounded below, so descending it cannot run off
    to minus infinity. The residual is a third input when `phi` has three
    input rows (`variant="residual"`): from (prediction, target) alone a ReLU
    net, piecewise linear, rarely found a minimum at prediction = target in
    our protocol (meta-training collapsed to a loss with ~0 gradient); the
    paper's network (two input rows) sees only (prediction, target).
    """
    if base not in LOSS_BASES:
        raise ValueError(f"base={base!r}; set config.loss_base to one of {LOSS_BASES}")
    inputs = [prediction, target]
    if phi[0]["w"].shape[0] == 3:
        inputs.append(prediction - target)
    h = jnp.concatenate(inputs, axis=-1)
    for layer in phi[:-1]:
        h = jax.nn.relu(_affine(layer, h))
    value = jax.nn.softplus(_affine(phi[-1], h)).mean()
    if base == "mse":
        value = value + mse_loss(phi, prediction, target)
    return value


def mse_loss(phi, prediction: jax.Array, target: jax.Array) -> jax.Array:
    del phi
    return jnp.mean((prediction - target) ** 2)


def init_regressor(key: jax.Array, sizes=(1, 40, 40, 1), init: str = "lecun") -> list:
    """A fresh ReLU regressor, 1-40-40-1 by default (`sinusoid.mlp` applies it).

    `init`: "lecun" (ours) normal weights of variance 1/fan_in, zero biases,
    keeping the initial outputs near the targets' scale on x in [-5, 5];
    "xavier": Xavier-uniform weights, zero biases (the ML3 code's
    `SineModel.reset`, used at every meta-step); "torch": weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's `nn.Linear` default, which
    the ML3 code's test regressors keep (they are never reset).
    """
    if init not in REGRESSOR_INITS:
        raise ValueError(
            f"init={init!r}; set config.regressor_init / config.test_regressor_init "
            f"to one of {REGRESSOR_INITS}"
        )
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        if init == "lecun":
            layers.append(_dense(k, n_in, n_out, 1.0))
        elif init == "xavier":
            layers.append({"w": _xavier(k, n_in, n_out), "b": jnp.zeros((n_out,))})
        else:
            key_w, key_b = jax.random.split(k)
            bound = 1.0 / math.sqrt(n_in)
            layers.append(
                {
                    "w": _uniform(key_w, (n_in, n_out), bound),
                    "b": _uniform(key_b, (n_out,), bound),
                }
            )
    return layers


def make_task_sampler(
    k_shot: int,
    n_query: int,
    amplitudes=sinusoid.AMPLITUDE,
    phases=sinusoid.PHASE,
    inputs=sinusoid.INPUT_RANGE,
    score_on: str = "query",
):
    """`key -> Episode` of sine tasks drawn from the given uniform ranges.

    `score_on="query"` (ours): K support points to train on, `n_query` new
    points to score on. `score_on="support"` (the ML3 code): the query IS the
    support (`n_query` unused), so the meta-objective and the test score are
    the MSE on the training points themselves.
    """
    if score_on not in SCORE_ON:
        raise ValueError(
            f"score_on={score_on!r}; set config.score_on to one of {SCORE_ON}"
        )

    def sample(key: jax.Array) -> Episode:
        if score_on == "query":
            return sinusoid.sample_task(
                key, k_shot, n_query, amplitudes, phases, inputs
            )
        task = sinusoid.sample_task(key, k_shot, 0, amplitudes, phases, inputs)
        return Episode(task.support_x, task.support_y, task.support_x, task.support_y)

    return sample


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
    sample,
    meta_batch: int,
    base: str = "none",
    clip_norm: float | None = None,
    init_params=init_regressor,
    task_key: jax.Array | None = None,
) -> jax.Array:
    """Mean query MSE after `steps` inner steps on the learned loss (with
    `base`, inner gradients clipped to `clip_norm`), over `meta_batch` tasks
    from `sample` (a `make_task_sampler`), each with a fresh regressor from
    `init_params(key)`.

    Tasks are new every call (drawn from `key`), or, given `task_key`, the
    same `meta_batch` tasks every call (the ML3 code meta-trains on one fixed
    task); the regressor initialisations always come from `key`.
    """
    loss_fn = functools.partial(learned_loss, base=base)

    def one(key_task, key_init):
        task = sample(key_task)
        params = init_params(key_init)
        _, curve = train_regressor(loss_fn, phi, params, task, lr, steps, clip_norm)
        return curve[-1]

    pairs = jax.vmap(jax.random.split)(jax.random.split(key, meta_batch))
    task_keys, init_keys = pairs[:, 0], pairs[:, 1]
    if task_key is not None:
        task_keys = jax.random.split(task_key, meta_batch)
    return jax.vmap(one)(task_keys, init_keys).mean()
