"""Supernet: one compile serves every child, equals the standalone child."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nas import convs, macro_switch
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
    return supernet_lib.apply(params, CONFIG, arch, x, "kernel")


@functools.cache
def _references():
    """Standalone children, switch / mask selections, gradients: one compile."""
    params, x = _inputs()

    @jax.jit
    def references(params, x, archs):  # traced archs: no constant-folded switch
        standalone = [
            supernet_lib.apply_standalone(
                supernet_lib.derive(params, CONFIG, arch), CONFIG, arch, x
            )
            for arch in ARCHS[:2]
        ]
        arch = archs[1]  # sep_conv5x5, conv5x5 and avg_pool layers
        switch = supernet_lib.apply(params, CONFIG, arch, x, "switch")
        mask = supernet_lib.apply(params, CONFIG, arch, x, "mask")

        probe = jax.random.normal(jax.random.key(2), (6, 5))

        def loss(p, select):  # a random projection: every logit matters
            return (supernet_lib.apply(p, CONFIG, archs[0], x, select) * probe).sum()

        def loss_alone(p):
            return (supernet_lib.apply_standalone(p, CONFIG, ARCHS[0], x) * probe).sum()

        child = supernet_lib.derive(params, CONFIG, ARCHS[0])
        grads = {s: jax.grad(loss)(params, s) for s in ("switch", "kernel")}
        return standalone, switch, mask, grads, jax.grad(loss_alone)(child)

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


def test_kernel_and_masked_selection_equal_switch():
    params, x = _inputs()
    kernel = apply_kernel(params, jnp.asarray(ARCHS[1]), x)
    _, switch, mask, *_ = _references()
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


def test_supernet_gradients_equal_the_standalone_childs():
    *_, grads, alone = _references()  # of ARCHS[0]: layer 0 uses conv3x3
    for select, grad in grads.items():
        assert float(jnp.abs(grad["layers"][0]["conv3x3"]["w"]).sum()) > 0, select
        assert float(jnp.abs(grad["layers"][0]["sep_conv5x5"]["depth"]).sum()) == 0
        mine = supernet_lib.derive(grad, CONFIG, ARCHS[0])
        chex.assert_trees_all_close(mine, alone, rtol=1e-4, atol=1e-5)


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
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3))

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

    ws = [jax.random.normal(jax.random.key(i + 1), c[2]) for i, c in enumerate(cases)]
    for got, want in both(x, ws):
        chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_switch_op_values_and_gradients_equal_autodiff_of_each_op():
    # macro_switch.switch_op has a hand-written VJP (one saved activation);
    # the reference is jax.grad of apply_op after its input conv, op by op
    names = SPACE.op_names
    layer = supernet_lib.init(jax.random.key(3), CONFIG)["layers"][0]
    weights = {n: {k: v for k, v in layer[n].items() if k != "inp"} for n in names}
    h = jax.random.normal(jax.random.key(4), (2, 5, 4, CONFIG.width))
    probe = jax.random.normal(jax.random.key(5), h.shape)
    pools = (supernet_lib._avg_pool, supernet_lib._max_pool)

    def hidden(h):  # apply_op after an identity input conv
        return jax.nn.relu(supernet_lib.batch_norm(h))

    def plain(name, w, h):
        p = dict(w.get(name, {}), inp=jnp.eye(CONFIG.width)[None, None])
        return supernet_lib.apply_op(name, p, h)  # identity input conv, BN, ReLU

    @jax.jit
    def both(weights, h, ops):
        def loss(fn, w, h):
            return jnp.sum(jnp.tanh(fn(w, h)) * probe)

        conv_weights = {n: weights[n] for n in names[:4]}
        mine = [
            jax.value_and_grad(loss, argnums=(1, 2))(
                lambda w, h, op=op: macro_switch.switch_op(pools, op, w, hidden(h)),
                conv_weights,
                h,
            )
            for op in ops
        ]
        reference = [
            jax.value_and_grad(loss, argnums=(1, 2))(
                lambda w, h, name=name: plain(name, w, h), conv_weights, h
            )
            for name in names
        ]
        return mine, reference

    mine, reference = both(weights, h, jnp.arange(len(names)))
    chex.assert_trees_all_close(mine, reference, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(mine[0][1][0]["conv3x3"]["w"]).sum()) > 0
