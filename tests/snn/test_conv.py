"""`snn.conv`'s matmul kernels == XLA's conv + max-pool, values and gradients.

Smooth inputs check every gradient, the input one too; a spike image with
pool ties checks the thin kernel's first-winner rule (weight gradient as
`max`'s equal split); the network test compares whole spiking CNNs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn import conv

CASES = {
    "thin": ((2, 12, 12, 1), (5, 5, 1, 4)),  # pool folded into the conv
    "wide": ((2, 8, 8, 6), (3, 3, 6, 5)),  # matmul input gradient
}


def test_matmul_kernels_equal_lax(key):
    def outputs_and_grads(impl, x, w, b):
        def loss(x, w, b):
            out = conv.conv_pool(x, w, b, 2, impl)
            return jnp.sum(jnp.sin(3.0 * out)), out

        grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
        (_, out), grads = grad(x, w, b)
        return out, grads

    inputs = {}
    for name, (x_shape, w_shape) in CASES.items():
        key_x, key_w, key_b = jax.random.split(jax.random.fold_in(key, len(name)), 3)
        inputs[name] = (
            jax.random.normal(key_x, x_shape),
            0.3 * jax.random.normal(key_w, w_shape),
            0.1 * jax.random.normal(key_b, w_shape[-1:]),
        )

    @jax.jit
    def run(inputs):
        return {
            name: [outputs_and_grads(impl, *args) for impl in ("lax", "matmul")]
            for name, args in inputs.items()
        }

    for (want, want_grads), (got, got_grads) in run(inputs).values():
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
            assert float(jnp.abs(want_grad).sum()) > 0
            np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-5)


def test_thin_kernel_ties_keep_the_weight_gradient(key):
    # constant 6x6 blocks of 0 or 1: a pool window inside one block (or over
    # equal blocks) sees the same patch at all 4 placements, a 4-way tie; a
    # kernel that gave every tied placement the whole gradient would count
    # those patches 4 times
    blocks = jax.random.bernoulli(key, 0.5, (3, 4, 4)).astype(jnp.float32)
    x = jnp.repeat(jnp.repeat(blocks, 6, axis=1), 6, axis=2)[..., None]
    w = 0.3 * jax.random.normal(jax.random.fold_in(key, 1), (5, 5, 1, 4))
    b = 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (4,))
    g = jax.random.normal(jax.random.fold_in(key, 3), (3, 10, 10, 4))

    @jax.jit
    def run(x, w, b):
        return [
            jax.value_and_grad(
                lambda w, b, impl=impl: jnp.vdot(conv.conv_pool(x, w, b, 2, impl), g),
                argnums=(0, 1),
            )(w, b)
            for impl in ("lax", "matmul")
        ]

    (want, want_grads), (got, got_grads) = run(x, w, b)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


def test_unknown_impl_is_named():
    x, w = jnp.zeros((1, 6, 6, 1)), jnp.zeros((3, 3, 1, 2))
    with pytest.raises(ValueError, match="matmul"):
        conv.conv_pool(x, w, jnp.zeros(2), 2, "fft")
