"""Supernet: one compile serves every child, equals the standalone child."""

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


def test_supernet_equals_standalone_child_and_compiles_once():
    params, x = _inputs()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(params, arch, x):
        return supernet_lib.apply(params, CONFIG, arch, x)

    outputs = [apply(params, jnp.asarray(a), x) for a in ARCHS]
    chex.assert_shape(outputs, [(6, 5)] * len(ARCHS))
    assert not np.allclose(outputs[0], outputs[1])  # the arch matters
    for arch, logits in zip(ARCHS[:2], outputs[:2], strict=True):
        child = supernet_lib.derive(params, CONFIG, arch)
        assert len(jax.tree.leaves(child)) < len(jax.tree.leaves(params))
        standalone = jax.jit(
            lambda p, x, a=arch: supernet_lib.apply_standalone(p, CONFIG, a, x)
        )
        np.testing.assert_allclose(logits, standalone(child, x), rtol=1e-4, atol=1e-5)


def test_kernel_and_masked_selection_equal_switch():
    params, x = _inputs()
    arch = jnp.asarray(ARCHS[1])  # sep_conv5x5, conv5x5 and avg_pool layers
    switch = jax.jit(lambda p, a, x: supernet_lib.apply(p, CONFIG, a, x, "switch"))
    mask = jax.jit(lambda p, a, x: supernet_lib.apply(p, CONFIG, a, x, "mask"))
    kernel = jax.jit(lambda p, a, x: supernet_lib.apply(p, CONFIG, a, x, "kernel"))
    np.testing.assert_allclose(
        switch(params, arch, x), kernel(params, arch, x), atol=1e-5
    )
    np.testing.assert_allclose(
        switch(params, arch, x), mask(params, arch, x), atol=1e-5
    )


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
    params, x = _inputs()
    arch = jnp.asarray(ARCHS[0])  # layer 0 uses conv3x3, never sep_conv5x5

    def loss(p):
        return supernet_lib.apply(p, CONFIG, arch, x).sum()

    grads = jax.jit(jax.grad(loss))(params)
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
