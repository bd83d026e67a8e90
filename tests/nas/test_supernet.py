"""Supernet: one compile serves every child, equals the standalone child."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nas import convs
from nas import search_space as space_lib
from nas import supernet as supernet_lib

SPACE = space_lib.macro_space(3)  # pools after layers 0 and 1: 8x8 -> 4 -> 2
CONFIG = supernet_lib.SupernetConfig(SPACE, width=4, in_channels=3, num_classes=5)
ARCHS = [
    np.array([0, 1, 1, 5, 0, 1]),
    np.array([3, 2, 0, 4, 1, 1]),
    np.array([1, 0, 1, 2, 1, 0]),
]


def _normal(seed, shape):
    """Test data from NumPy: each jax.random shape would be its own compile."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _inputs():
    params = supernet_lib.init(jax.random.key(0), CONFIG)
    x = _normal(1, (6, 8, 8, 3))
    return params, x


@jax.jit
@chex.assert_max_traces(n=1)
def apply_kernel(params, arch, x):  # shared by the tests: compiled once
    return supernet_lib.apply(params, CONFIG, arch, x, "kernel")


@functools.cache
def _references():
    """Standalone children, the switch supernet's loss and gradients: one compile.

    The other selections ("kernel", "mask") differ only in the layer op: they
    are checked op by op below, which compiles far less than a supernet each.
    """
    params, x = _inputs()

    @jax.jit
    def references(params, x, archs):  # traced archs: no constant-folded switch
        standalone = [
            supernet_lib.apply_standalone(
                supernet_lib.derive(params, CONFIG, arch), CONFIG, arch, x
            )
            for arch in ARCHS[:2]
        ]
        probe = _normal(2, (6, 5))

        def loss(p):  # a random projection: every logit matters
            return (supernet_lib.apply(p, CONFIG, archs[0], x) * probe).sum()

        def loss_alone(p):
            return (supernet_lib.apply_standalone(p, CONFIG, ARCHS[0], x) * probe).sum()

        child = supernet_lib.derive(params, CONFIG, ARCHS[0])
        alone = jax.value_and_grad(loss_alone)(child)
        return standalone, jax.value_and_grad(loss)(params), alone

    return references(params, x, jnp.asarray(np.stack(ARCHS)))


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


def test_supernet_loss_and_gradients_equal_the_standalone_childs():
    _, (value, grad), (value_alone, alone) = _references()  # of ARCHS[0] (switch)
    np.testing.assert_allclose(value, value_alone, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(grad["layers"][0]["conv3x3"]["w"]).sum()) > 0
    assert float(jnp.abs(grad["layers"][0]["sep_conv5x5"]["depth"]).sum()) == 0
    mine = supernet_lib.derive(grad, CONFIG, ARCHS[0])
    chex.assert_trees_all_close(mine, alone, rtol=1e-4, atol=1e-5)


def test_depthwise_equals_grouped_convolution():
    x, w = _normal(0, (2, 5, 6, 3)), _normal(1, (3, 3, 1, 3))
    grouped = jax.lax.conv_general_dilated(
        x,
        w,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=3,
    )
    np.testing.assert_allclose(convs.depthwise_conv(x, w), grouped, atol=1e-5)


def test_hand_written_conv_gradients_equal_autodiff():
    # switch branches use these VJPs (canonical convs only); autodiff is the
    # reference, through the dense conv and the grouped depthwise conv
    grouped = functools.partial(
        jax.lax.conv_general_dilated,
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=3,
    )
    cases = [(convs.conv_vjp, convs.conv, (k, k, 3, 4)) for k in (1, 3, 5)]
    cases += [(convs.depthwise_vjp, grouped, (k, k, 1, 3)) for k in (3, 5)]
    x = _normal(0, (2, 6, 5, 3))

    @jax.jit
    def both(x, ws):  # one compile for every case
        out = []
        for (mine, reference, _), w in zip(cases, ws, strict=True):
            probe = jnp.cos(jnp.arange(2 * 6 * 5 * w.shape[-1])).reshape(2, 6, 5, -1)

            def loss(conv, x, w, probe=probe):
                return jnp.sum(jnp.tanh(conv(x, w)) * probe)

            grad = jax.value_and_grad(loss, argnums=(1, 2))
            out.append((grad(mine, x, w), grad(reference, x, w)))
        return out

    ws = [_normal(i + 1, c[2]) for i, c in enumerate(cases)]
    for got, want in both(x, ws):
        chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_every_selection_equals_apply_op_values_and_gradients():
    # each `select`'s layer op (input 1x1 conv with gathered weights, then
    # "switch": macro_switch's hand-written VJP, "kernel": one gathered dense
    # kernel, "mask": every op) against jax.grad of apply_op, op by op, with
    # gradients for every op's weights; one compiled op per select (lax.map)
    names = SPACE.op_names
    layer = _inputs()[0]["layers"][0]
    x = _normal(4, (2, 5, 4, CONFIG.width))
    probe = _normal(5, x.shape)

    def loss(fn, p, x):
        return jnp.sum(jnp.tanh(fn(p, x)) * probe)

    grad = jax.value_and_grad(loss, argnums=(1, 2))

    @jax.jit
    def both(layer, x, ops):
        def mine(select):
            op_fn = supernet_lib.SELECT_OPS[select]
            # op is a scan slice: the switch stays a real (unbatched) switch
            return jax.lax.map(
                lambda op: grad(lambda p, x: op_fn(p, names, op, x), layer, x), ops
            )

        reference = [
            grad(lambda p, x, n=n: supernet_lib.apply_op(n, p[n], x), layer, x)
            for n in names
        ]
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *reference)
        return [mine(s) for s in ("switch", "kernel", "mask")], stacked

    selected, reference = both(layer, x, jnp.arange(len(names)))
    for mine in selected:
        chex.assert_trees_all_close(mine, reference, rtol=1e-4, atol=1e-5)
    switch_grads = selected[0][1][0]
    assert float(jnp.abs(switch_grads["conv3x3"]["w"][0]).sum()) > 0
    assert float(jnp.abs(switch_grads["conv3x3"]["w"][1]).sum()) == 0
    assert float(jnp.abs(switch_grads["conv3x3"]["inp"][1]).sum()) == 0
