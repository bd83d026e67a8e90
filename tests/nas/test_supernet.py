"""Supernet: one compile serves every child, equals the standalone child."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nas import search_space as space_lib
from nas import supernet as supernet_lib

SPACE = space_lib.macro_space(3)  # pools after layers 0 and 1: 8x8 -> 4 -> 2
CONFIG = supernet_lib.SupernetConfig(SPACE, width=4, in_channels=3, num_classes=5)
ARCHS = [
    np.array([0, 1, 1, 5, 0, 1]),
    np.array([3, 2, 0, 4, 1, 1]),
    np.array([1, 0, 1, 2, 1, 0]),
]


def _inputs():
    params = supernet_lib.init(jax.random.key(0), CONFIG)
    x = jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
    return params, x


@jax.jit
@chex.assert_max_traces(n=1)
def apply_kernel(params, arch, x):  # shared by the tests: compiled once
    return supernet_lib.apply(params, CONFIG, arch, x)


@functools.cache
def _references():
    """Standalone children, switch / mask selections, gradients: one compile."""
    params, x = _inputs()

    @jax.jit
    def references(params, x):
        standalone = [
            supernet_lib.apply_standalone(
                supernet_lib.derive(params, CONFIG, arch), CONFIG, arch, x
            )
            for arch in ARCHS[:2]
        ]
        arch = jnp.asarray(ARCHS[1])  # sep_conv5x5, conv5x5 and avg_pool layers
        switch = supernet_lib.apply(params, CONFIG, arch, x, "switch")
        mask = supernet_lib.apply(params, CONFIG, arch, x, "mask")

        def loss(p):
            return supernet_lib.apply(p, CONFIG, jnp.asarray(ARCHS[0]), x).sum()

        return standalone, switch, mask, jax.grad(loss)(params)

    return references(params, x)


def test_supernet_equals_standalone_child_and_compiles_once():
    params, x = _inputs()
    outputs = [apply_kernel(params, jnp.asarray(a), x) for a in ARCHS]
    chex.assert_shape(outputs, [(6, 5)] * len(ARCHS))
    assert not np.allclose(outputs[0], outputs[1])  # the arch matters
    standalone = _references()[0]
    for arch, logits, alone in zip(ARCHS[:2], outputs[:2], standalone, strict=True):
        child = supernet_lib.derive(params, CONFIG, arch)
        assert len(jax.tree.leaves(child)) < len(jax.tree.leaves(params))
        np.testing.assert_allclose(logits, alone, rtol=1e-4, atol=1e-5)


def test_kernel_and_masked_selection_equal_switch():
    params, x = _inputs()
    kernel = apply_kernel(params, jnp.asarray(ARCHS[1]), x)
    _, switch, mask, _ = _references()
    np.testing.assert_allclose(switch, kernel, atol=1e-5)
    np.testing.assert_allclose(switch, mask, atol=1e-5)


def test_ops_against_numpy():
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 1)).astype(np.float32)
    avg = np.asarray(supernet_lib._pool(jnp.asarray(x), "avg_pool"))
    mx = np.asarray(supernet_lib._pool(jnp.asarray(x), "max_pool"))
    # corner: 2x2 neighbourhood (padding not counted); centre (1, 1): full 3x3
    np.testing.assert_allclose(avg[0, 0, 0, 0], x[0, :2, :2, 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(avg[0, 1, 1, 0], x[0, :3, :3, 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(mx[0, 3, 3, 0], x[0, 2:, 2:, 0].max())
    normed = np.asarray(supernet_lib.batch_norm(jnp.asarray(x * 3 + 1)))
    np.testing.assert_allclose(normed.mean(), 0, atol=1e-5)
    np.testing.assert_allclose(normed.std(), 1, atol=1e-3)


def test_gradients_reach_only_the_chosen_ops():
    grads = _references()[3]  # of ARCHS[0]: layer 0 uses conv3x3, not sep_conv5x5
    assert float(jnp.abs(grads["layers"][0]["conv3x3"]["w"]).sum()) > 0
    assert float(jnp.abs(grads["layers"][0]["sep_conv5x5"]["depth"]).sum()) == 0


def test_depthwise_equals_grouped_convolution():
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 1, 3))
    grouped = jax.lax.conv_general_dilated(
        x,
        w,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=3,
    )
    np.testing.assert_allclose(supernet_lib.depthwise_conv(x, w), grouped, atol=1e-5)
