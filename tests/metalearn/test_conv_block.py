"""The hand-written block backward (`conv_block.py`) against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import embeddings


def setup(key, size, depth, hidden=8):
    """Two episodes of 3 images with ink-like ties (many exact zeros) and a
    negative BN scale, so the pool takes window minima for some channels."""
    key_x, key_p = jax.random.split(key)
    x = jax.nn.relu(jax.random.normal(key_x, (2, 3, size, size, 1)) - 0.5)
    params, stats = embeddings.init(key_p, 1, hidden, depth)
    params["scale"] = [s.at[:3].set(-0.7) for s in params["scale"]]
    params["shift"] = [s + 0.1 for s in params["shift"]]
    target = jax.random.normal(
        jax.random.fold_in(key, 1), (2, 3, embeddings.output_dim(size, hidden, depth))
    )
    return x, params, stats, target


def test_block_vjp_equals_autodiff(key):
    """Odd maps the pool crops (12-6-3-1), the wide layers' conv in blocks of 3
    images (one per episode), two episodes' statistics."""
    chunk = 3
    x, params, stats, target = setup(key, 12, 3)

    def run(block_vjp):
        def loss(params, x):
            features, new_stats = embeddings.apply(
                params,
                stats,
                x,
                mode="batch",
                chunk=chunk,
                conv_impl="matmul",
                block_vjp=block_vjp,
            )
            return jnp.sum(jnp.sin(features * target)), (features, new_stats)

        return jax.grad(loss, argnums=(0, 1), has_aux=True)(params, x)

    (grads, grad_x), aux = jax.jit(lambda: run(True))()
    (want, want_x), want_aux = jax.jit(lambda: run(False))()
    for got, ref in zip(
        jax.tree.leaves((grads, grad_x, aux)),
        jax.tree.leaves((want, want_x, want_aux)),
        strict=True,
    ):
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=2e-5)


def test_block_vjp_second_order_equals_autodiff(key):
    """grad of (loss after one inner SGD step), outside `lax.scan`: the
    backward is itself differentiated as autodiff's is."""
    x, params, stats, target = setup(key, 8, 2)

    def meta_grad(block_vjp):
        def embed(p):
            return embeddings.apply(
                p, stats, x, mode="batch", conv_impl="matmul", block_vjp=block_vjp
            )[0]

        def outer(p):
            inner = jax.grad(lambda q: jnp.mean(jnp.square(embed(q) - target)))(p)
            adapted = jax.tree.map(lambda a, g: a - 0.4 * g, p, inner)
            return jnp.mean(jnp.sin(embed(adapted) * target))

        return jax.grad(outer)(params)

    got, want = jax.jit(lambda: meta_grad(True))(), jax.jit(lambda: meta_grad(False))()
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, atol=2e-5, rtol=2e-4)


def test_block_vjp_rejects_running_statistics(key):
    x, params, stats, _ = setup(key, 8, 2)
    with pytest.raises(ValueError, match="block_vjp"):
        embeddings.apply(params, stats, x, mode="running", block_vjp=True)
