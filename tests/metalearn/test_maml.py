"""MAML's inner loop on a tiny tanh net, the sinusoid tasks and the Conv-4 learner."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from metalearn import maml, sinusoid
from metalearn.episodes import Episode

LR = 0.3


def tiny_loss(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] - y) ** 2)


def tiny_setup():
    rng = np.random.default_rng(0)  # NumPy draws: no compiled samplers
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
    params = {"w1": normal(2, 3), "b1": normal(3) * 0.1, "w2": normal(3, 1)}
    x, y = normal(6, 2), normal(6, 1)
    return params, x[:3], y[:3], x[3:], y[3:]


def meta_loss(params, support_x, support_y, query_x, query_y, **kwargs):
    adapted = maml.adapt(
        tiny_loss, params, support_x, support_y, optimizer=optax.sgd(LR), **kwargs
    )
    return tiny_loss(adapted, query_x, query_y)


def test_zero_steps_returns_init_and_one_step_is_sgd():
    params, sx, sy, _, _ = tiny_setup()
    rates = jax.tree.map(lambda p: jnp.full_like(p, 0.05), params)

    @jax.jit
    def run(params):
        sgd = optax.sgd(LR)
        return (
            maml.adapt(tiny_loss, params, sx, sy, steps=0, optimizer=sgd),
            maml.adapt(tiny_loss, params, sx, sy, steps=1, optimizer=sgd),
            maml.adapt(tiny_loss, params, sx, sy, steps=1, rates=rates),
            jax.grad(tiny_loss)(params, sx, sy),
        )

    same, one, meta_sgd, grads = run(params)
    chex.assert_trees_all_equal(same, params)
    manual = jax.tree.map(lambda p, g: p - LR * g, params, grads)
    chex.assert_trees_all_close(one, manual, rtol=1e-6)
    manual = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
    chex.assert_trees_all_close(meta_sgd, manual, rtol=1e-6)


def test_second_order_meta_gradient_matches_finite_differences():
    params, *data = tiny_setup()
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        data64 = [jnp.asarray(a, jnp.float64) for a in data]
        check_grads(
            jax.jit(lambda p: meta_loss(p, *data64, steps=2)),  # compiled once
            (params64,),
            order=1,
            modes=["rev"],
            eps=1e-5,
        )


def test_first_order_drops_second_order_terms():
    params, sx, sy, qx, qy = tiny_setup()

    @jax.jit  # one compile for the four gradients
    def run(params):
        grad = functools.partial(jax.grad(meta_loss), params, sx, sy, qx, qy, steps=1)
        adapted = maml.adapt(
            tiny_loss, params, sx, sy, steps=1, optimizer=optax.sgd(LR)
        )
        return (
            grad(),
            grad(first_order=True),
            grad(remat=True),
            jax.grad(tiny_loss)(adapted, qx, qy),
        )

    second, first, remat, query_grad = run(params)
    # FOMAML's meta-gradient is the query gradient at the adapted parameters
    chex.assert_trees_all_close(first, query_grad, rtol=1e-5)
    assert not np.allclose(first["w1"], second["w1"], rtol=1e-3)
    chex.assert_trees_all_close(remat, second, rtol=1e-5)


def test_sinusoid_task():
    task = jax.jit(sinusoid.sample_task, static_argnums=(1, 2))(jax.random.key(0), 5, 7)
    chex.assert_shape([task.support_x, task.support_y], (5, 1))
    chex.assert_shape([task.query_x, task.query_y], (7, 1))
    x = np.concatenate([task.support_x, task.query_x])[:, 0]
    y = np.concatenate([task.support_y, task.query_y])[:, 0]
    assert np.all(np.abs(x) <= 5.0) and np.all(np.abs(y) <= 5.0)
    # one amplitude and phase explain every point: fit a sin + b cos exactly
    design = np.stack([np.sin(x), np.cos(x)], 1)
    coef, residual, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose(design @ coef, y, atol=1e-4)
    params = sinusoid.init_mlp(jax.random.key(1))
    chex.assert_shape(sinusoid.mlp(params, task.query_x), (7, 1))


def test_maml_conv_learner_unroll_equals_vmap():
    kwargs = dict(n_way=3, hidden=4, depth=1, image_size=4, test_steps=1)
    unroll = maml.MAML(**kwargs)
    batched = maml.MAML(task_loop="vmap", **kwargs)
    params, stats = jax.jit(unroll.init)(jax.random.key(0))
    rng = np.random.default_rng(1)
    episodes = Episode(
        rng.random((2, 3, 4, 4, 1), np.float32),
        jnp.tile(jnp.arange(3), (2, 1)),
        rng.random((2, 6, 4, 4, 1), np.float32),
        jnp.tile(jnp.repeat(jnp.arange(3), 2), (2, 1)),
    )
    a = jax.jit(unroll.predict, static_argnums=3)(params, stats, episodes, 3)
    b = jax.jit(batched.predict, static_argnums=3)(params, stats, episodes, 3)
    chex.assert_shape(a, (2, 6, 3))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("first_order", [False, True])
def test_block_vjp_meta_gradient_equals_autodiff(first_order):
    """The hand-written block backward on the forwards differentiated once
    (the query's; the support's too under first order) gives autodiff's
    meta-gradient, on ink-like images with tied pool windows."""
    kwargs = dict(n_way=3, hidden=4, depth=2, image_size=6, conv_impl="matmul")
    kwargs.update(first_order=first_order)
    learner = maml.MAML(block_vjp=True, **kwargs)
    reference = maml.MAML(block_vjp=False, **kwargs)
    params, stats = jax.jit(learner.init)(jax.random.key(0))
    rng = np.random.default_rng(2)
    ink = lambda *shape: np.maximum(rng.standard_normal(shape) - 0.5, 0).astype("f4")
    episodes = Episode(
        ink(1, 3, 6, 6, 1),
        jnp.arange(3)[None],
        ink(1, 6, 6, 6, 1),
        jnp.repeat(jnp.arange(3), 2)[None],
    )

    def grads(model):
        loss = lambda p: model.episode_loss(p, stats, episodes, 3)[0]
        blocks = str(jax.make_jaxpr(jax.grad(loss))(params)).count("custom_vjp_call")
        return jax.jit(jax.grad(loss))(params), blocks

    (got, blocks), (want, reference_blocks) = grads(learner), grads(reference)
    assert blocks > reference_blocks  # the block backward is in use
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
