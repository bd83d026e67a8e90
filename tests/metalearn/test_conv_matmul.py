"""Patches x matmul convolutions and the mask max-pool against `lax` references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import conv_matmul, embeddings


def reference_conv(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def reference_pool(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def random_case(key, n, h, w, c_in, c_out):
    key_x, key_k = jax.random.split(key)
    x = jax.random.normal(key_x, (n, h, w, c_in))
    kernel = jax.random.normal(key_k, (3, 3, c_in, c_out)) / 3.0
    return x, kernel


# (N, H, W, C_in, C_out, block_rows): thin inputs (the custom-VJP path), a wide
# one split into blocks of 2 images with a remainder, odd sizes, one-pixel
# rows and columns (every row tap but the centre falls off the map)
CASES = [
    (2, 5, 4, 1, 3, 0),
    (1, 3, 4, 3, 2, 0),
    (5, 3, 5, 9, 4, 30),
    (3, 1, 1, 8, 5, 0),
    (2, 1, 3, 8, 2, 3),
]


@pytest.mark.parametrize("n, h, w, c_in, c_out, rows", CASES)
def test_conv_and_gradients_equal_lax(key, n, h, w, c_in, c_out, rows):
    x, kernel = random_case(key, n, h, w, c_in, c_out)
    cotangent = jax.random.normal(jax.random.fold_in(key, 1), (n, h, w, c_out))

    def outputs(x, kernel):
        def loss(conv, x, kernel):
            return jnp.sum(conv(x, kernel) * cotangent)

        def ours(x, k):
            return conv_matmul.conv3x3(x, k, rows)

        return (
            ours(x, kernel),
            reference_conv(x, kernel),
            jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1))(x, kernel),
            jax.grad(lambda *a: loss(reference_conv, *a), argnums=(0, 1))(x, kernel),
        )

    out, want, grads, want_grads = jax.jit(outputs)(x, kernel)
    assert out.shape == (n, h, w, c_out)
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)
    for got, ref in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    # the hand-written backward (conv_block's) gives autodiff's gradients
    backward = jax.jit(conv_matmul.conv3x3_backward, static_argnums=3)
    for got, ref in zip(backward(x, kernel, cotangent, rows), want_grads, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)


def test_second_order_meta_gradient_equals_lax(key):
    """grad of (loss after one inner SGD step) through a thin conv, a wide conv
    and the pools, as second-order MAML takes it; first order differs."""
    x, kernel_1 = random_case(key, 2, 4, 4, 1, 8)
    _, kernel_2 = random_case(jax.random.fold_in(key, 1), 2, 2, 2, 8, 3)

    def net(conv, pool, kernels):
        h = pool(jnp.tanh(conv(x, kernels[0])))
        return pool(conv(h, kernels[1]))

    def meta_loss(conv, pool, kernels, first_order=False):
        inner = jax.grad(lambda k: jnp.mean(jnp.square(net(conv, pool, k) - 0.5)))
        step = jax.tree.map(lambda g: 0.4 * g, inner(kernels))
        if first_order:
            step = jax.lax.stop_gradient(step)
        adapted = jax.tree.map(jnp.subtract, kernels, step)
        return jnp.mean(jnp.sin(net(conv, pool, adapted)))

    def all_grads(kernels):
        def ours(x, k):
            return conv_matmul.conv3x3(x, k, 4)

        return (
            jax.grad(lambda k: meta_loss(ours, conv_matmul.max_pool_2x2, k))(kernels),
            jax.grad(lambda k: meta_loss(reference_conv, reference_pool, k))(kernels),
            jax.grad(lambda k: meta_loss(ours, conv_matmul.max_pool_2x2, k, True))(
                kernels
            ),
        )

    got, want, stopped = jax.jit(all_grads)((kernel_1, kernel_2))
    for g, w, s in zip(got, want, stopped, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)
        assert not np.allclose(g, s, atol=1e-5)  # second-order terms matter


def test_pool_gradient_goes_to_the_first_maximum(key):
    x = jax.random.normal(key, (2, 4, 6, 3))
    # a tie in the window of pooled pixel (0, 0, 1, 0): positions (0, 3), (1, 2)
    x = x.at[0, 0, 3, 0].set(9.0).at[0, 1, 2, 0].set(9.0)
    cotangent = jax.random.normal(jax.random.fold_in(key, 1), (2, 2, 3, 3))

    def pooled_and_grads(x):
        def loss(pool):
            return jnp.sum(pool(x) * cotangent)

        return (
            conv_matmul.max_pool_2x2(x),
            jax.grad(lambda x: jnp.sum(conv_matmul.max_pool_2x2(x) * cotangent))(x),
            jax.grad(lambda x: jnp.sum(reference_pool(x) * cotangent))(x),
        )

    out, grad, want = jax.jit(pooled_and_grads)(x)
    np.testing.assert_array_equal(out, reference_pool(x))
    g = cotangent[0, 0, 1, 0]
    # the first maximum (row-major) takes it all; jnp.max splits it
    assert grad[0, 0, 3, 0] == g and grad[0, 1, 2, 0] == 0
    np.testing.assert_allclose(want[0, 0, 3, 0], g / 2, rtol=1e-6)
    # everywhere else (no ties) the same as jnp.max's gradient
    tie = np.zeros(x.shape, bool)
    tie[0, 0:2, 2:4, 0] = True
    np.testing.assert_array_equal(np.where(tie, 0, grad), np.where(tie, 0, want))
    with pytest.raises(ValueError, match="even sizes"):
        conv_matmul.max_pool_2x2(jnp.zeros((1, 3, 4, 1)))


def test_conv4_matmul_equals_xla_and_auto_picks_it(key):
    params, stats = embeddings.init(key, hidden=8, depth=3)
    params["scale"][1] = -params["scale"][1]  # a negative BN scale: min-pooling
    x = jax.random.uniform(jax.random.fold_in(key, 1), (2, 3, 9, 9, 1))

    def features_and_grads(params):
        def one(conv_impl):
            def total(params):
                out, _ = embeddings.apply(params, stats, x, conv_impl=conv_impl)
                return jnp.sum(jnp.sin(out)), out

            return jax.value_and_grad(total, has_aux=True)(params)

        return one("matmul"), one("xla")

    ((_, got), got_grads), ((_, want), want_grads) = jax.jit(features_and_grads)(params)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    leaves = zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True)
    for g, w in leaves:
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)
    assert embeddings.resolve_conv_impl("auto") == "matmul"  # tests run on CPU
    with pytest.raises(ValueError, match="conv_impl"):
        embeddings.resolve_conv_impl("fft")
