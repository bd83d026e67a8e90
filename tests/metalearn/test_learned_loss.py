"""ML3: the learned loss, the inner training loop, and the smoke config.

Its meta-gradient is `jax.grad` through a `lax.scan` of SGD steps, the same
second-order pattern that test_maml.py checks against finite differences
(a float64 check here cost ~18 s of CPU, a quarter of the area's budget).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import learned_loss, sinusoid, train_learned_loss
from metalearn.configs import learned_loss as learned_loss_config
from shared import config as config_lib
from shared.errors import ConfigError


def test_loss_net_shape_positive_and_mse_by_hand():
    phi = jax.jit(learned_loss.init_loss_net, static_argnums=1)(jax.random.key(0), 4)
    chex.assert_shape(phi[0]["w"], (3, 4))
    prediction = jnp.array([[1.0], [2.0], [-1.0]])
    target = jnp.array([[0.0], [2.0], [1.0]])
    value = jax.jit(learned_loss.learned_loss)(phi, prediction, target)
    chex.assert_shape(value, ())
    assert value > 0  # softplus
    np.testing.assert_allclose(
        learned_loss.mse_loss(phi, prediction, target), (1 + 0 + 4) / 3, rtol=1e-6
    )


def test_mse_based_loss_starts_as_the_mse():
    @jax.jit
    def run(prediction, target):
        phi = learned_loss.init_loss_net(jax.random.key(0), 4, -8.0)
        values = [
            learned_loss.learned_loss(phi, prediction, target, base)
            for base in ("none", "mse")
        ]
        grad = jax.grad(learned_loss.learned_loss, argnums=1)
        return values, grad(phi, prediction, target, "mse")

    prediction = jnp.array([[1.0], [2.0], [-1.0]])
    target = jnp.array([[0.0], [2.0], [1.0]])
    (alone, with_mse), grad = run(prediction, target)
    # the learned term rides on the MSE, and a low output bias makes it tiny
    np.testing.assert_allclose(with_mse, alone + 5 / 3, rtol=1e-6)
    assert 0 < alone < 1e-2
    np.testing.assert_allclose(grad, 2 * (prediction - target) / 3, atol=1e-3)


def test_train_regressor_one_step_is_sgd_on_the_loss():
    @jax.jit
    def run(key):
        keys = jax.random.split(key, 3)
        task = sinusoid.sample_task(keys[0], 5, 7)
        params = learned_loss.init_regressor(keys[1], sizes=(1, 6, 1))
        phi = learned_loss.init_loss_net(keys[2], hidden=4)
        trained, curve = learned_loss.train_regressor(
            learned_loss.learned_loss, phi, params, task, 0.1, 1
        )
        grads = jax.grad(
            lambda p: learned_loss.learned_loss(
                phi, sinusoid.mlp(p, task.support_x), task.support_y
            )
        )(params)
        return task, params, trained, curve, grads

    task, params, trained, curve, grads = run(jax.random.key(1))
    chex.assert_trees_all_close(
        trained, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), rtol=1e-5
    )

    def query(layers):  # the regressor in NumPy
        x = np.asarray(task.query_x)
        for layer in layers[:-1]:
            x = np.maximum(x @ np.asarray(layer["w"]) + np.asarray(layer["b"]), 0)
        x = x @ np.asarray(layers[-1]["w"]) + np.asarray(layers[-1]["b"])
        return np.mean((x - np.asarray(task.query_y)) ** 2)

    np.testing.assert_allclose(curve, [query(params), query(trained)], rtol=1e-5)


def test_meta_gradient_reaches_phi_through_the_inner_steps():
    # the meta-gradient of the query MSE after 2 inner SGD steps on
    # MSE + softplus(M_phi) against a central difference along one direction,
    # at the config's low output bias: the README's "exact tie with the MSE"
    # was a learned term whose slope, and so meta-gradient, had died
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        phi = to64(learned_loss.init_loss_net(jax.random.key(0), 4, -4.0))
        direction = jax.tree.map(
            lambda a: jnp.asarray(np.random.default_rng(0).standard_normal(a.shape)),
            phi,
        )

        @jax.jit
        def probe(phi, direction):
            def loss(phi):
                return learned_loss.meta_loss(
                    phi, jax.random.key(1), 0.05, 2, 5, 5, 2, "mse"
                )

            grad = jax.grad(loss)(phi)
            eps = 1e-5
            shift = lambda sign: jax.tree.map(
                lambda p, d: p + sign * eps * d, phi, direction
            )
            numeric = (loss(shift(1.0)) - loss(shift(-1.0))) / (2 * eps)
            analytic = sum(
                jnp.vdot(g, d)
                for g, d in zip(
                    jax.tree.leaves(grad), jax.tree.leaves(direction), strict=True
                )
            )
            return numeric, analytic, grad

        numeric, analytic, grad = probe(phi, direction)
        assert abs(float(analytic)) > 1e-6  # the learned term is alive
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4)
        # every layer of the loss network gets a gradient
        assert all(float(jnp.abs(layer["w"]).max()) > 0 for layer in grad)


def test_smoke_config_end_to_end(tmp_path):
    config = learned_loss_config.get_config("smoke")
    config_lib.validate(config)
    summary = train_learned_loss.train_and_evaluate(config, str(tmp_path))
    for split in ("test", "ood"):
        for steps in (config.inner_steps, config.test_steps):
            for name in ("learned", "mse", "mse_tuned"):
                assert np.isfinite(summary[f"{split}_{name}_mse_{steps}_steps"])
            # paired over the same tasks: mean difference = difference of means
            for name in ("mse", "mse_tuned"):
                np.testing.assert_allclose(
                    summary[f"{split}_learned_minus_{name}_{steps}_steps"],
                    summary[f"{split}_learned_mse_{steps}_steps"]
                    - summary[f"{split}_{name}_mse_{steps}_steps"],
                    rtol=1e-4,
                    atol=1e-6,
                )
    for steps in (config.inner_steps, config.test_steps):
        assert summary[f"mse_tuned_learning_rate_{steps}_steps"] in config.lr_grid
    assert (tmp_path / "loss_curves.png").stat().st_size > 0


def test_clip_by_norm_by_hand():
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}  # norm 5
    clipped = learned_loss.clip_by_norm(grads, 1.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], [[0.8]], rtol=1e-6)
    chex.assert_trees_all_close(learned_loss.clip_by_norm(grads, 10.0), grads)
    assert learned_loss.clip_by_norm(grads, None) is grads


def test_clipped_inner_steps_stay_bounded_where_plain_sgd_overflows():
    # a loss 1e4 x the MSE stands for a learned loss with a steep slope: plain
    # SGD overflows (the old behaviour behind the NaN meta-losses); clipped,
    # every step moves the regressor by at most lr * clip_norm
    def steep(phi, prediction, target):
        return 1e4 * learned_loss.mse_loss(phi, prediction, target)

    @jax.jit
    def run(key):
        keys = jax.random.split(key)
        task = sinusoid.sample_task(keys[0], 5, 7)
        params = learned_loss.init_regressor(keys[1], sizes=(1, 6, 1))
        plain = learned_loss.train_regressor(steep, None, params, task, 0.1, 12)
        clipped = [params]
        for _ in range(12):  # one clipped step at a time
            step, _ = learned_loss.train_regressor(
                steep, None, clipped[-1], task, 0.1, 1, clip_norm=1.0
            )
            clipped.append(step)
        return plain, clipped

    (_, plain_curve), clipped = run(jax.random.key(3))
    assert not np.all(np.isfinite(plain_curve))
    for before, after in zip(clipped[:-1], clipped[1:], strict=True):
        moved = jax.tree.map(lambda a, b: a - b, after, before)
        norm = np.sqrt(sum(float(jnp.sum(m * m)) for m in jax.tree.leaves(moved)))
        assert norm <= 0.1 * 1.0 * (1 + 1e-5)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(clipped[-1]))


def test_meta_loss_finite_for_a_steep_learned_loss_only_when_clipped():
    @jax.jit
    def run(key):
        phi = learned_loss.init_loss_net(key, 4, 0.0)
        phi[-1]["w"] = phi[-1]["w"] * 1e3  # a learned term of slope ~1e3
        loss = lambda phi, clip: learned_loss.meta_loss(
            phi, jax.random.key(1), 0.05, 10, 5, 5, 2, "mse", clip
        )
        return loss(phi, None), jax.value_and_grad(loss)(phi, 10.0)

    plain, (clipped, grad) = run(jax.random.key(0))
    assert not np.isfinite(plain)
    assert np.isfinite(clipped)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grad))


def test_inner_clip_config_zero_is_off_and_negative_is_refused():
    config = learned_loss_config.get_config("smoke")
    assert train_learned_loss.inner_clip(config) == config.inner_clip_norm
    config.inner_clip_norm = 0.0
    assert train_learned_loss.inner_clip(config) is None
    config.inner_clip_norm = -1.0
    with pytest.raises(ConfigError, match="inner_clip_norm"):
        train_learned_loss.inner_clip(config)
