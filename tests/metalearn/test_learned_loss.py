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

        sample = learned_loss.make_task_sampler(5, 5)

        @jax.jit
        def probe(phi, direction):
            def loss(phi):
                return learned_loss.meta_loss(
                    phi, jax.random.key(1), 0.05, 2, sample, 2, "mse"
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
    sample = learned_loss.make_task_sampler(5, 5)

    @jax.jit
    def run(key):
        phi = learned_loss.init_loss_net(key, 4, 0.0)
        phi[-1]["w"] = phi[-1]["w"] * 1e3  # a learned term of slope ~1e3
        loss = lambda phi, clip: learned_loss.meta_loss(
            phi, jax.random.key(1), 0.05, 10, sample, 2, "mse", clip
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


@pytest.mark.parametrize(
    "field, value",
    [
        ("loss_net", "bias_free"),
        ("score_on", "test"),
        ("regressor_init", "he"),
        ("test_regressor_init", "he"),
        ("clip_norm", -1.0),
        ("loss_out_bias", -4.0),  # the paper's net has no bias to start
    ],
)
def test_bad_config_values_name_their_flag(field, value):
    config = learned_loss_config.get_config("paper")
    train_learned_loss.validate_config(config)
    config[field] = value
    with pytest.raises(ConfigError, match=f"--config.{field}"):
        config_lib.validate(config)


def test_paper_loss_net_is_bias_free_xavier_and_matches_numpy():
    # the ML3 code's loss network: (prediction, target) -> 2 x H ReLU, no
    # biases -> softplus, mean over points; Xavier-uniform weights
    phi = jax.jit(learned_loss.init_loss_net, static_argnums=(1, 2, 3))(
        jax.random.key(0), 6, 0.0, "paper"
    )
    assert [sorted(layer) for layer in phi] == [["w"], ["w"], ["w"]]
    for layer, (n_in, n_out) in zip(phi, ((2, 6), (6, 6), (6, 1)), strict=True):
        chex.assert_shape(layer["w"], (n_in, n_out))
        bound = np.sqrt(6 / (n_in + n_out))
        assert np.abs(layer["w"]).max() <= bound
    # the spread fills the Xavier range (not a constant or a tiny scale)
    assert np.abs(phi[1]["w"]).max() > 0.8 * np.sqrt(6 / 12)
    prediction = jnp.array([[1.0], [2.0], [-1.5]])
    target = jnp.array([[0.0], [2.0], [1.0]])
    value = learned_loss.learned_loss(phi, prediction, target, "none")
    w = [np.asarray(layer["w"], np.float64) for layer in phi]
    h = np.concatenate([prediction, target], axis=1)
    h = np.maximum(np.maximum(h @ w[0], 0) @ w[1], 0) @ w[2]
    np.testing.assert_allclose(value, np.mean(np.log1p(np.exp(h))), rtol=1e-5)
    with pytest.raises(ValueError, match="loss_out_bias"):
        learned_loss.init_loss_net(jax.random.key(0), 6, -4.0, "paper")


INITS = ("xavier", "torch")


def test_regressor_inits_follow_their_definitions():
    sizes = (1, 100, 10, 1)
    xavier, torch_default = jax.jit(
        lambda key: [learned_loss.init_regressor(key, sizes, i) for i in INITS]
    )(jax.random.key(0))
    for n_in, n_out, x_layer, t_layer in zip(
        sizes[:-1], sizes[1:], xavier, torch_default, strict=True
    ):
        chex.assert_shape([x_layer["w"], t_layer["w"]], (n_in, n_out))
        x_bound, t_bound = np.sqrt(6 / (n_in + n_out)), 1 / np.sqrt(n_in)
        assert np.abs(x_layer["w"]).max() <= x_bound
        assert np.all(x_layer["b"] == 0)
        assert np.abs(t_layer["w"]).max() <= t_bound
        assert np.abs(t_layer["b"]).max() <= t_bound
    # 1000 weights in 100x10: the largest is near the bound, and torch's
    # biases are drawn (the ML3 code's test regressors keep them)
    assert np.abs(xavier[1]["w"]).max() > 0.9 * np.sqrt(6 / 110)
    assert np.abs(torch_default[1]["w"]).max() > 0.9 / np.sqrt(100)
    assert np.abs(torch_default[0]["b"]).max() > 0.5
    with pytest.raises(ValueError, match="regressor_init"):
        learned_loss.init_regressor(jax.random.key(0), sizes, "he")


def test_paper_task_sampler_scores_on_its_training_points():
    sample = learned_loss.make_task_sampler(
        100, 0, (1.0, 1.0), (np.pi, np.pi), (-2.0, 2.0), "support"
    )
    sample = jax.jit(sample)
    task = sample(jax.random.key(3))
    chex.assert_shape(task.support_x, (100, 1))
    np.testing.assert_array_equal(task.query_x, task.support_x)
    np.testing.assert_array_equal(task.query_y, task.support_y)
    assert np.all(np.abs(task.support_x) <= 2.0)
    # amplitude 1, phase pi: y = sin(x - pi) = -sin(x)
    np.testing.assert_allclose(task.support_y, -np.sin(task.support_x), atol=1e-5)
    again = sample(jax.random.key(3))
    np.testing.assert_array_equal(again.support_x, task.support_x)


def test_fixed_meta_tasks_ignore_the_step_key():
    # zero inner steps and one fixed initialisation: the meta-loss is the MSE
    # of that regressor on the meta-batch's tasks, so with task_key it cannot
    # depend on the per-step key, and equals the MSE on the task drawn from it
    sample = learned_loss.make_task_sampler(
        20, 0, (0.5, 3.0), (0.0, np.pi), (-2.0, 2.0), "support"
    )
    params = learned_loss.init_regressor(jax.random.key(9), (1, 8, 1))
    fixed = lambda key: params
    phi = learned_loss.init_loss_net(jax.random.key(0), 4, 0.0, "paper")

    @jax.jit
    def losses(task_key):
        return [
            learned_loss.meta_loss(
                phi, key, 0.1, 0, sample, 1, init_params=fixed, task_key=task_key
            )
            for key in (jax.random.key(1), jax.random.key(2))
        ]

    task_key = jax.random.key(5)
    fixed_a, fixed_b = losses(task_key)
    assert fixed_a == fixed_b
    task = jax.jit(sample)(jax.random.split(task_key, 1)[0])
    np.testing.assert_allclose(
        fixed_a, sinusoid.mse(params, task.support_x, task.support_y), rtol=1e-6
    )


def test_paper_config_end_to_end(tmp_path):
    # the authors' protocol, shrunk: one fixed task, one inner step, the
    # bias-free loss, scored on the training points, nothing clipped
    config = learned_loss_config.get_config("paper")
    config_lib.validate(config)
    assert (config.loss_net, config.score_on) == ("paper", "support")
    assert config.fixed_meta_tasks and config.meta_batch == 1
    assert (config.clip_norm, config.inner_clip_norm) == (0.0, 0.0)
    config.num_steps, config.test_tasks, config.test_steps = 3, 3, 2
    config.regressor_hidden = (8, 4)
    config.lr_grid = (0.001, 0.01)
    summary = train_learned_loss.train_and_evaluate(config, str(tmp_path))
    assert summary["scored_on"] == "support"
    for split in ("test", "ood"):
        for steps in (1, 2):
            diff = summary[f"{split}_learned_minus_mse_{steps}_steps"]
            np.testing.assert_allclose(
                diff,
                summary[f"{split}_learned_mse_{steps}_steps"]
                - summary[f"{split}_mse_mse_{steps}_steps"],
                rtol=1e-4,
                atol=1e-6,
            )
            # three meta-steps of Adam 1e-3 leave a loss that differs from
            # the MSE (a dead or unused learned loss would tie exactly)
            assert diff != 0.0
