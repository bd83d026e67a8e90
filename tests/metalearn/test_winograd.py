"""Winograd F(2x2, 3x3) / F(4x4, 3x3) convolutions against `lax.conv`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import embeddings, train, winograd
from metalearn.configs import omniglot_protonet
from shared.errors import ConfigError


def reference_conv(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def random_case(key, n, h, w, c_in, c_out):
    key_x, key_k = jax.random.split(key)
    x = jax.random.normal(key_x, (n, h, w, c_in))
    kernel = jax.random.normal(key_k, (3, 3, c_in, c_out)) / 3.0
    return x, kernel


CASES = [  # (transform, (N, H, W, C_in, C_out), tolerance): odd and tiny sizes
    ("winograd", (2, 7, 6, 3, 4), 1e-5),
    ("winograd", (1, 1, 1, 2, 3), 1e-5),
    ("winograd4", (1, 7, 5, 3, 2), 1e-4),
]


@pytest.mark.parametrize("name, shape, tol", CASES)
def test_equals_lax_conv_incl_odd_sizes(key, name, shape, tol):
    x, kernel = random_case(key, *shape)
    transform = winograd.TRANSFORMS[name]
    # one compile per case instead of op-by-op dispatch of every primitive
    out, want = jax.jit(
        lambda x, k: (winograd.conv3x3(x, k, transform), reference_conv(x, k))
    )(x, kernel)
    assert out.shape == shape[:3] + (shape[4],)
    np.testing.assert_allclose(out, want, atol=tol, rtol=tol)


def test_one_dimensional_minimal_filtering_by_hand():
    # F(2, 3): A^T [(G g) * (B^T d)] = [d0 g0 + d1 g1 + d2 g2, d1 g0 + d2 g1 + d3 g2]
    d, g = np.array([1.0, 2.0, -3.0, 5.0]), np.array([2.0, -1.0, 4.0])
    t = winograd.F2X2
    out = t.a_t @ ((t.g @ g) * (t.b_t @ d))
    np.testing.assert_allclose(out, [2 - 2 - 12, 4 + 3 + 20], rtol=1e-6)


def test_patches_equals_lax_conv(key):
    x, kernel = random_case(key, 2, 5, 6, 1, 4)
    np.testing.assert_allclose(
        winograd.conv3x3_patches(x, kernel), reference_conv(x, kernel), atol=1e-5
    )


def test_gradients_equal_lax_conv(key):
    x, kernel = random_case(key, 2, 7, 6, 3, 4)
    cotangent = jax.random.normal(jax.random.fold_in(key, 1), (2, 7, 6, 4))

    def loss(conv, x, kernel):
        return jnp.sum(conv(x, kernel) * cotangent)

    grads = jax.jit(
        lambda *a: (
            jax.grad(lambda *b: loss(winograd.conv3x3, *b), argnums=(0, 1))(*a),
            jax.grad(lambda *b: loss(reference_conv, *b), argnums=(0, 1))(*a),
        )
    )
    got, want = grads(x, kernel)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)


def test_second_order_meta_gradient_equals_lax_conv(key):
    """grad of (loss after one inner SGD step), as second-order MAML takes it."""
    x, kernel = random_case(key, 2, 5, 5, 2, 3)
    target = jax.random.normal(jax.random.fold_in(key, 1), (2, 5, 5, 3))

    def meta_loss(conv, kernel, first_order=False):
        inner = jax.grad(lambda k: jnp.mean(jnp.square(conv(x, k) - target)))
        step = 0.4 * inner(kernel)
        if first_order:
            step = jax.lax.stop_gradient(step)
        return jnp.mean(jnp.tanh(conv(x, kernel - step)))

    got = jax.jit(jax.grad(lambda k: meta_loss(winograd.conv3x3, k)))(kernel)
    want = jax.jit(jax.grad(lambda k: meta_loss(reference_conv, k)))(kernel)
    stopped = jax.jit(jax.grad(lambda k: meta_loss(winograd.conv3x3, k, True)))(kernel)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    assert not np.allclose(got, stopped, atol=1e-5)  # second-order terms matter


def test_conv4_winograd_equals_xla_and_validates(key):
    params, stats = embeddings.init(key, hidden=4, depth=2)
    x = jax.random.uniform(jax.random.fold_in(key, 1), (2, 3, 16, 16, 1))

    def features_and_grads(conv_impl):
        def total(params):
            out, _ = embeddings.apply(params, stats, x, conv_impl=conv_impl)
            return out.sum(), out

        return jax.jit(jax.value_and_grad(total, has_aux=True))(params)

    (_, got), got_grads = features_and_grads("winograd")
    (_, want), want_grads = features_and_grads("xla")
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    leaves = zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True)
    for g, w in leaves:
        np.testing.assert_allclose(g, w, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="conv_impl"):
        embeddings.apply(params, stats, x, conv_impl="fft")
    config = omniglot_protonet.get_config("smoke")
    config.conv_impl = "fft"
    with pytest.raises(ConfigError, match="conv_impl"):
        train.validate_config(config)
