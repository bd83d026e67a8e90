"""Micro space: controller against a NumPy reference, supernet against the child."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nas import controller as controller_lib
from nas import micro_ops, micro_supernet, micro_switch, networks
from nas import search_space as space_lib
from nas import supernet as macro_supernet

SPACE = space_lib.micro_space(2)  # B=2 nodes keeps the compiles short
CTRL = controller_lib.micro_config(SPACE, lstm_size=8, temperature=5.0)
NUM = 16
# 3 layers: cells N R N R N at widths 4, 8, 8, 16, 16 on 8x8 -> 4x4 -> 2x2
NET = micro_supernet.MicroConfig(SPACE, 4, 3, 5, num_layers=3)
ARCHS = [  # every op, repeated inputs, one or two unused nodes
    np.array([0, 0, 1, 4, 2, 1, 0, 2] + [1, 2, 1, 3, 2, 4, 0, 0]),
    np.array([1, 3, 1, 3, 0, 4, 2, 1] + [0, 0, 1, 1, 1, 2, 1, 0]),
]


def _normal(seed, shape):
    """Test data from NumPy: each jax.random shape would be its own compile."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@functools.cache
def _controller_outputs():
    params = controller_lib.init(jax.random.key(1), CTRL)

    @jax.jit
    def run(params, key):  # one compile for every controller test
        batch = controller_lib.sample(params, CTRL, key, NUM)
        given = jnp.concatenate([batch.arch, jnp.asarray(np.stack(ARCHS))])
        scored = controller_lib.score(params, CTRL, given)
        single = controller_lib.rollout(params, CTRL, jax.random.split(key, NUM)[5])
        return batch, scored, single

    return params, run(params, jax.random.key(2))


def _log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def reference(params, config, arch):
    """Teacher-forced log-prob and entropy, one decision at a time (NumPy)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731

    def lstm(x, c, h):
        i, f, o, g = np.split(np.concatenate([x, h]) @ p["w_lstm"], 4)
        c = sig(i) * np.tanh(g) + sig(f) * c
        return c, sig(o) * np.tanh(c)

    def squash(x, reduce=1.0):
        return config.tanh_constant / reduce * np.tanh(x / config.temperature)

    c = h = np.zeros(config.lstm_size)
    decisions = []
    cells = np.asarray(arch).reshape(2, -1, 4)
    for cell_id, cell in enumerate(cells):
        anchors, keys = [], []
        for _ in range(2):
            c, h = lstm(p["g_emb"], c, h)
            anchors.append(np.zeros_like(h))
            keys.append(h @ p["w_attn_1"])
        for x_id, x_op, y_id, y_op in cell:
            inputs = p["g_emb"]
            for index in (x_id, y_id):
                c, h = lstm(inputs, c, h)
                q = [p["v_attn"] @ np.tanh(k + h @ p["w_attn_2"]) for k in keys]
                decisions.append((squash(np.array(q)), index))
                inputs = anchors[index]
            for op in (x_op, y_op):
                c, h = lstm(inputs, c, h)
                logits = squash(h @ p["w_soft"] + p["b_soft"], config.op_tanh_reduce)
                if cell_id == 0:
                    logits = logits + np.array(config.normal_op_bias)
                decisions.append((logits, op))
                inputs = p["w_emb"][op]
            c, h = lstm(inputs, c, h)
            anchors.append(h)
            keys.append(h @ p["w_attn_1"])
    log_prob = sum(_log_softmax(lg)[a] for lg, a in decisions)
    entropy = sum(
        -(np.exp(_log_softmax(lg)) * _log_softmax(lg)).sum() for lg, _ in decisions
    )
    return log_prob, entropy


def test_controller_log_prob_is_the_sum_of_per_decision_log_softmax():
    params, (batch, scored, _) = _controller_outputs()
    for i in range(3):
        log_prob, entropy = reference(params, CTRL, np.asarray(batch.arch[i]))
        np.testing.assert_allclose(batch.log_prob[i], log_prob, rtol=1e-5)
        np.testing.assert_allclose(batch.entropy[i], entropy, rtol=1e-5)
    np.testing.assert_allclose(scored.log_prob[:NUM], batch.log_prob, rtol=1e-5)
    # hand-written archs, never sampled, are scored the same way
    for arch, log_prob in zip(ARCHS, scored.log_prob[NUM:], strict=True):
        np.testing.assert_allclose(
            log_prob, reference(params, CTRL, arch)[0], rtol=1e-5
        )


def test_sampled_micro_archs_are_valid_and_vmap_equals_a_single_rollout():
    params, (batch, _, single) = _controller_outputs()
    archs = np.asarray(batch.arch)
    for arch in archs:
        space_lib.validate(SPACE, arch)
    np.testing.assert_array_equal(single.arch, archs[5])
    assert len({tuple(a) for a in archs}) == NUM  # it does sample
    # the official b_soft init (10, 10, 0, 0, 0) favours separable convs
    ops = archs[:, SPACE.positions("op")]
    assert (ops < 2).mean() > 0.4
    assert set(np.unique(archs[:, SPACE.positions("input")])) == set(
        range(SPACE.size + 1)
    )


@functools.cache
def _supernet_outputs():
    params = micro_supernet.init(jax.random.key(0), NET)
    x = _normal(1, (4, 8, 8, 3))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def apply(params, arch, x):
        return micro_supernet.apply(params, NET, arch, x)

    @jax.jit
    def references(params, x):
        return [
            micro_supernet.apply_standalone(
                micro_supernet.derive(params, NET, arch), NET, arch, x
            )
            for arch in ARCHS
        ]

    shared = [apply(params, jnp.asarray(a), x) for a in ARCHS]
    return params, shared, references(params, x)


def test_micro_supernet_with_a_fixed_arch_equals_the_standalone_child():
    params, shared, alone = _supernet_outputs()
    chex.assert_shape(shared, [(4, 5)] * len(ARCHS))
    assert not np.allclose(shared[0], shared[1])  # the arch matters
    for logits, reference_logits in zip(shared, alone, strict=True):
        np.testing.assert_allclose(logits, reference_logits, rtol=1e-4, atol=1e-4)
    child = micro_supernet.derive(params, NET, ARCHS[0])
    num = lambda t: sum(np.size(v) for v in jax.tree.leaves(t))  # noqa: E731
    assert num(child) < num(params) / 3


def test_every_selection_picks_the_same_op_at_the_same_input():
    # micro_ops.branch with "switch", "kernel" and "mask", every (input, op)
    # pair against the plain op on that input with that input's weights; one
    # compile per selection (lax.map), not a whole supernet per selection
    width, num_inputs = 3, 3
    weights = {
        name: {
            "depth": _normal(k, (num_inputs, 2, k, k, 1, width)),
            "point": _normal(k + 1, (num_inputs, 2, width, width)),
        }
        for name, k in zip(micro_ops.CONV_OPS, (3, 5), strict=True)
    }
    nodes = [_normal(10 + i, (2, 5, 4, width)) for i in range(num_inputs)]
    cases = [(i, op) for i in range(num_inputs) for op in range(5)]

    def plain(weights, nodes, i, op):
        if op < 2:
            picked = jax.tree.map(lambda w: w[i], weights[micro_ops.CONV_OPS[op]])
            return micro_ops.sep_conv(picked, nodes[i])
        return [*micro_ops.pools(nodes[i]), nodes[i]][op - 2]

    @jax.jit
    def run(weights, nodes, traced):
        def select(name):
            return jax.lax.map(
                lambda c: micro_ops.branch(weights, nodes, c[0], c[1], name), traced
            )

        want = jnp.stack([plain(weights, nodes, i, op) for i, op in cases])
        return [select(n) for n in ("switch", "kernel", "mask")], want

    selected, want = run(weights, nodes, jnp.asarray(cases))
    for got in selected:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_micro_plan_matches_the_official_layout():
    plan = NET.plan()
    assert [c["reduce"] for c in plan] == [False, True, False, True, False]
    assert [c["width"] for c in plan] == [4, 8, 8, 16, 16]
    assert plan[0]["calib_x"] and plan[0]["calib_y"]  # stem has 3 * width
    assert plan[1]["calib_x"] == "fr" and not plan[1]["calib_y"]
    assert not plan[2]["calib_x"] and not plan[2]["calib_y"]


def test_networks_dispatches_on_the_space_and_resizes_micro_depth_only():
    micro = networks.make_config(space_lib.micro_space(2), 4, 1, 10, layers=1)
    macro = networks.make_config(space_lib.macro_space(3), 4, 1, 10, layers=1)
    assert networks.module(micro) is micro_supernet
    assert networks.module(macro) is macro_supernet
    bigger = networks.resized(micro, width=8, layers=3)
    assert (bigger.width, bigger.num_layers) == (8, 3)
    wider = networks.resized(macro, width=8, layers=3)
    assert wider.width == 8 and wider == networks.resized(macro, width=8)


def test_switch_op_values_and_gradients_equal_autodiff_of_each_op():
    # micro_switch.switch_op has a hand-written VJP (few residuals); the
    # reference is jax.grad of the plain ops, op by op, all in one compile
    width = 3
    weights = {
        name: {
            "depth": _normal(k, (2, k, k, 1, width)),
            "point": _normal(k + 1, (2, width, width)),
        }
        for name, k in zip(micro_ops.CONV_OPS, (3, 5), strict=True)
    }
    x = _normal(7, (2, 5, 4, width))
    probe = _normal(8, x.shape)
    plain = [
        lambda w, x: micro_ops.sep_conv(w["sep_conv3x3"], x),
        lambda w, x: micro_ops.sep_conv(w["sep_conv5x5"], x),
        lambda w, x: micro_ops.pools(x)[0],
        lambda w, x: micro_ops.pools(x)[1],
        lambda w, x: x,
    ]

    @jax.jit
    def both(weights, x, ops):
        def loss(fn, w, x):
            return jnp.sum(jnp.tanh(fn(w, x)) * probe)

        def mine(op):  # op is a scan slice: a real (unbatched) switch
            switched = lambda w, x: micro_switch.switch_op(op, w, x)  # noqa: E731
            return jax.value_and_grad(loss, argnums=(1, 2))(switched, weights, x)

        reference = [
            jax.value_and_grad(loss, argnums=(1, 2))(fn, weights, x) for fn in plain
        ]
        # one compiled switch serves all 5 ops (lax.map), not one copy per op
        return jax.lax.map(mine, ops), jax.tree.map(lambda *a: jnp.stack(a), *reference)

    mine, reference = both(weights, x, jnp.arange(5))
    chex.assert_trees_all_close(mine, reference, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(mine[1][0]["sep_conv3x3"]["depth"][0]).sum()) > 0
    assert float(jnp.abs(mine[1][0]["sep_conv5x5"]["depth"][0]).sum()) == 0
