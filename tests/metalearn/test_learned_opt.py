"""The coordinatewise LSTM optimizer: preprocessing, shapes, meta-gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from metalearn import l2l_tasks, learned_opt, train_learned_opt
from metalearn.configs import learned_opt as learned_opt_config
from shared import config as config_lib
from shared.errors import ConfigError


def test_preprocess_matches_hand_values():
    grad = jnp.array([1.0, -np.exp(-5.0), 1e-6, 0.0, -2e-5])
    got = learned_opt.preprocess(grad, p=10.0)
    e10 = np.exp(10.0)
    want = [
        [0.0, 1.0],  # log(1) / 10, sign
        [-0.5, -1.0],  # log(e^-5) / 10
        [-1.0, 1e-6 * e10],  # |g| < e^-10: (-1, e^p g)
        [-1.0, 0.0],
        [-1.0, -2e-5 * e10],
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_update_shapes_and_coordinatewise():
    phi = jax.jit(learned_opt.init, static_argnums=1)(jax.random.key(0), 8)
    grad = np.random.default_rng(1).standard_normal(7).astype(np.float32)
    state = learned_opt.init_state(7, hidden=8)
    update = jax.jit(learned_opt.update)
    delta, new = update(phi, grad, state)
    chex.assert_shape(delta, (7,))
    chex.assert_shape([new.h, new.c], (2, 7, 8))
    assert np.abs(delta).max() < 0.05  # output scale 0.01 on a bounded LSTM
    # one LSTM shared by all coordinates: permuting them permutes the updates
    order = np.random.default_rng(0).permutation(7)
    shuffled, _ = update(phi, grad[order], state)
    np.testing.assert_allclose(shuffled, delta[order], rtol=1e-5, atol=1e-7)


def _tiny_problem():
    family = l2l_tasks.Quadratic(dims=3, batch=2)
    task, theta = family.sample(jax.random.key(2), {})
    return family, task, theta


def test_meta_gradient_matches_finite_differences():
    family, task, theta = _tiny_problem()
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        phi = to64(learned_opt.init(jax.random.key(3), hidden=3))
        task, theta = to64(task), to64(theta)
        keys = jax.random.split(jax.random.key(4), 3)

        def loss(phi, drop):
            state = to64(learned_opt.init_state(theta.shape[0], hidden=3))
            loss_fn = lambda th, key: family.loss(task, {}, th, key)
            return learned_opt.meta_loss(phi, loss_fn, theta, state, keys, drop)[0]

        full_loss = jax.jit(lambda p: loss(p, False))  # one compile for all probes
        check_grads(full_loss, (phi,), order=1, modes=["rev"], eps=1e-6)
        full = jax.jit(jax.grad(loss), static_argnums=1)(phi, False)
        dropped = jax.jit(jax.grad(loss), static_argnums=1)(phi, True)
        # the paper's simplification drops small second-order terms (scaled by
        # the 0.01 output twice): different, but close
        diff = np.abs(full["out"]["w"] - dropped["out"]["w"]).max()
        assert 1e-12 < diff < 1e-2 * np.abs(full["out"]["w"]).max()
        chex.assert_tree_all_finite(dropped)


def test_few_meta_steps_lower_the_meta_loss_on_quadratics():
    family = l2l_tasks.Quadratic(dims=4, batch=8)
    task, theta0 = family.sample(jax.random.key(5), {})
    keys = jax.random.split(jax.random.key(6), 5)
    loss_fn = lambda th, key: family.loss(task, {}, th, key)
    optimizer = optax.adam(1e-2)

    @jax.jit
    def meta_step(phi, opt_state):
        state = learned_opt.init_state(theta0.shape[0], hidden=8)
        (loss, _), grads = jax.value_and_grad(learned_opt.meta_loss, has_aux=True)(
            phi, loss_fn, theta0, state, keys
        )
        updates, opt_state = optimizer.update(grads, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, loss

    phi = jax.jit(learned_opt.init, static_argnums=1)(jax.random.key(7), 8)
    opt_state = optimizer.init(phi)
    losses = []
    for _ in range(15):
        phi, opt_state, loss = meta_step(phi, opt_state)
        losses.append(float(loss))
    # the 0.01 output scale moves theta slowly: a small but steady descent
    assert np.all(np.diff(losses) < 0) and losses[-1] < 0.99 * losses[0], losses


def test_smoke_config_end_to_end(tmp_path):
    # quadratics: the MNIST family differs only in its loss (MnistMLP below)
    config = learned_opt_config.get_config("smoke_quadratic")
    config_lib.validate(config)
    summary = train_learned_opt.train_and_evaluate(config, str(tmp_path))
    for name in ("learned", "adam"):
        assert np.isfinite(summary[f"{name}_loss_12_steps"])
    assert summary["adam_learning_rate"] in config.lr_grid
    assert "quadratics" in summary["data_source"]
    assert (tmp_path / "loss_curves.png").stat().st_size > 0


def test_meta_rate_schedule_and_its_config_check():
    config = learned_opt_config.get_config("smoke")
    config.learning_rate, config.lr_decay_horizon = 0.01, 100
    rate = train_learned_opt.meta_rate(config)
    # cosine from the rate to a tenth of it over the horizon, then constant
    np.testing.assert_allclose(
        [rate(0), rate(50), rate(100), rate(1000)],
        [0.01, 0.01 * (0.1 + 0.9 * 0.5), 0.001, 0.001],
        rtol=1e-5,
    )
    config.lr_decay_horizon = 0
    assert train_learned_opt.meta_rate(config) == 0.01
    config.lr_decay_horizon = -1
    with pytest.raises(ConfigError, match="lr_decay_horizon"):
        train_learned_opt.validate_config(config)


def test_mnist_mlp_family_matches_numpy():
    family = l2l_tasks.MnistMLP(hidden=3, batch=4, eval_examples=5)
    rng = np.random.default_rng(0)
    data = {
        "images": rng.integers(0, 256, (6, 784), np.uint8),
        "labels": rng.integers(0, 10, 6).astype(np.int32),
    }
    assert family.num_params == 784 * 3 + 3 + 3 * 10 + 10
    theta = rng.standard_normal(family.num_params).astype(np.float32) * 0.1
    got = jax.jit(lambda th: family.full_loss({}, data, th))(theta)
    w1, b1, w2, b2 = np.split(theta, np.cumsum([784 * 3, 3, 30]))
    x = data["images"][:5] / 255.0
    logits = (1 / (1 + np.exp(-(x @ w1.reshape(784, 3) + b1)))) @ w2.reshape(3, 10) + b2
    logits -= logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -log_probs[np.arange(5), data["labels"][:5]].mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)
