"""nas.rnn_cell / nas.rnn_lm: supernet == standalone child == a NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas import rnn_cell, rnn_lm, rnn_plot
from nas import search_space as space_lib
from shared.errors import ConfigError

OFFICIAL_ARC = "0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1"  # ptb_final.sh
H, B, N = 4, 3, 5
ACTS = [
    np.tanh,
    lambda v: np.maximum(v, 0),
    lambda v: v,
    lambda v: 1 / (1 + np.exp(-v)),
]


def _numpy_cell(params, arch, x, h_prev, x_mask, h_mask):
    """Independent reference: Pham et al. Sec. 2.1 written out in NumPy, with
    the official `ptb_ops.batch_norm` (training mode, eps 1) when present."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    normed = "bn_scale" in p

    def bn(v, scale, offset):
        return scale * (v - v.mean(0)) / np.sqrt(1.0 + v.var(0)) + offset

    node_bn = lambda v, i: bn(v, p["bn_scale"][i], p["bn_offset"][i]) if normed else v

    def highway(pre, base, f):
        return base + ACTS[3](pre[:, H:]) * (ACTS[f](pre[:, :H]) - base)

    pre = node_bn(np.concatenate([x * x_mask, h_prev * h_mask], -1) @ p["w_prev"], 0)
    nodes = [highway(pre, h_prev, arch[0])]
    for i in range(1, (len(arch) + 1) // 2):
        prev, f = arch[2 * i - 1], arch[2 * i]
        pre = node_bn((nodes[prev] * h_mask) @ p["w_nodes"][i * (i - 1) // 2 + prev], i)
        nodes.append(highway(pre, nodes[prev], f))
    loose = [n for i, n in enumerate(nodes) if i not in set(arch[1::2])]
    out = sum(loose) / len(loose)
    return bn(out, *p["bn_out"]) if normed else out


@pytest.fixture(scope="module")
def inputs():
    keys = jax.random.split(jax.random.key(1), 4)
    x, h = (jax.random.normal(k, (B, H)) for k in keys[:2])
    x_mask = jax.random.bernoulli(keys[2], 0.5, (B, H)) / 0.5
    h_mask = jax.random.bernoulli(keys[3], 0.7, (B, H)) / 0.7
    return x, h, x_mask, h_mask


def test_supernet_matches_numpy_and_standalone_child(key, inputs):
    space = space_lib.rnn_space(N)
    plain = jax.tree.map(lambda w: w * 8, rnn_cell.init(key, N, H))  # nonlinear
    keys = jax.random.split(jax.random.fold_in(key, 2), 3)
    normed = {
        **plain,  # non-trivial learned scale and offset
        "bn_scale": jax.random.uniform(keys[0], (N, 2 * H), minval=0.5, maxval=2),
        "bn_offset": jax.random.normal(keys[1], (N, 2 * H)),
        "bn_out": jax.random.normal(keys[2], (2, H)) + jnp.array([[2.0], [0.0]]),
    }
    archs = [space_lib.random_arch(jax.random.fold_in(key, i), space) for i in range(3)]
    archs.append(jnp.array([3, 0, 2, 1, 1, 0, 0, 2, 3], jnp.int32))  # all four f
    archs = np.stack(archs)

    @jax.jit  # one compile for every child: the supernet's arch is data (vmap)
    def cells(plain, normed, traced):
        step = lambda p, a: rnn_cell.supernet_step(p, a, *inputs)
        supernet = jax.vmap(step, (None, 0))
        alone = [  # the retrained child: extracted weights, wiring fixed at trace
            rnn_cell.standalone_step(rnn_cell.extract(plain, a), a, *inputs)
            for a in map(tuple, archs.tolist())
        ]
        return supernet(plain, traced), supernet(normed, traced), jnp.stack(alone)

    got, got_bn, alone = cells(plain, normed, jnp.asarray(archs))
    for i, arch in enumerate(archs):
        want = _numpy_cell(plain, arch, *map(np.asarray, inputs))
        np.testing.assert_allclose(got[i], want, rtol=2e-5, atol=2e-5)
        want_bn = _numpy_cell(normed, arch, *map(np.asarray, inputs))
        np.testing.assert_allclose(got_bn[i], want_bn, rtol=2e-5, atol=2e-5)
        assert not np.allclose(want, want_bn, atol=1e-3)  # batch norm is on
        np.testing.assert_allclose(alone[i], want, rtol=2e-5, atol=2e-5)


def test_batch_norm_keeps_an_exploding_cell_bounded(key):
    """The divergence of `ptb_search:quick` in miniature. Gates at 0.5 and
    W_h = 1.5 I make every identity node scale its input by 1.25, so a chain
    of N identity nodes has recurrent gain 1.25^N ~ 3 and ||h_t|| explodes.
    With batch norm every feature of h_t has batch variance var / (1 + var)
    < 1 (eps 1), so ||h_t||^2 < B H at every step, whatever the weights."""
    arch = jnp.array([2, 0, 2, 1, 2, 2, 2, 3, 2], jnp.int32)  # identity chain
    eye = jnp.eye(H)
    params = rnn_cell.init(key, N, H, batch_norm=True)  # bn scale 1, offset 0
    params["w_prev"] = jnp.zeros((2 * H, 2 * H)).at[:H, :H].set(0.5 * eye)
    params["w_prev"] = params["w_prev"].at[H:, :H].set(1.5 * eye)
    params["w_nodes"] = jnp.zeros((rnn_cell.num_pairs(N), H, 2 * H))
    params["w_nodes"] = params["w_nodes"].at[:, :, :H].set(1.5 * eye)
    plain = {k: v for k, v in params.items() if k.startswith("w_")}
    xs = jax.random.normal(jax.random.fold_in(key, 1), (10, B, H))

    def norms(p):
        step = lambda h, x: (rnn_cell.supernet_step(p, arch, x, h),) * 2
        hs = jax.lax.scan(step, jnp.zeros((B, H)), xs)[1]
        return jnp.sqrt((hs**2).sum((1, 2)))

    grown, bounded = jax.jit(lambda: (norms(plain), norms(params)))()
    assert grown[-1] > 1e3 * grown[0]
    assert np.all(bounded**2 < B * H) and bounded[-1] > 0.1


def test_language_model_supernet_equals_standalone_over_time(key):
    space = space_lib.rnn_space(N)
    arch = np.asarray(space_lib.random_arch(jax.random.fold_in(key, 9), space))
    config = rnn_lm.LMConfig(
        vocab_size=11,
        hidden=H,
        num_nodes=N,
        embed_keep=0.8,
        input_keep=0.5,
        hidden_keep=0.75,
        slowness=1e-3,
    )
    params = rnn_lm.init(key, config)
    child = {
        "embedding": params["embedding"],
        "cell": rnn_cell.extract(params["cell"], arch),
    }
    tokens = jax.random.randint(jax.random.fold_in(key, 1), (B, 6), 0, 11)
    batch = {"x": tokens, "y": jnp.roll(tokens, -1, axis=1)}
    h0 = jax.random.normal(jax.random.fold_in(key, 2), (B, H))
    drop = jax.random.fold_in(key, 3)
    supernet = lambda c, *a: rnn_cell.selected_step(c, jnp.asarray(arch), *a)
    standalone = lambda c, *a: rnn_cell.standalone_step(c, arch, *a)

    def view(p):  # the training path: the child's matrices gathered once
        cell = rnn_cell.select(p["cell"], jnp.asarray(arch))
        return {"embedding": p["embedding"], "cell": cell}

    def grad(cell, to_view, p):
        loss = lambda p: rnn_lm.loss(cell, to_view(p), config, batch, h0, drop)
        return jax.value_and_grad(loss, has_aux=True)(p)

    @jax.jit  # one compile for both
    def both(params, child):
        return grad(supernet, view, params), grad(standalone, lambda p: p, child)

    ((a, (xa, ha)), grad_super), ((b, (xb, hb)), grad_alone) = both(params, child)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(ha, hb, rtol=1e-5, atol=1e-6)
    # the child's gradient is the supernet's gradient at the rows it uses
    rows = [rnn_cell.pair_index(i, int(p)) for i, p in enumerate(arch[1::2], start=1)]
    np.testing.assert_allclose(
        grad_super["cell"]["w_nodes"][np.array(rows)],
        grad_alone["cell"]["w_nodes"],
        rtol=1e-4,
        atol=1e-7,
    )
    unused = np.setdiff1d(np.arange(rnn_cell.num_pairs(N)), rows)
    assert not np.any(grad_super["cell"]["w_nodes"][unused])


def test_dropout_masks_are_per_word_type_and_scaled(key):
    config = rnn_lm.LMConfig(vocab_size=5, hidden=4, embed_keep=0.5, input_keep=0.25)
    tokens = jnp.array([[1, 2, 1, 1, 3, 2]] * 200)
    masks = rnn_lm.draw_masks(key, config, tokens)
    embed = np.asarray(masks["embed"][..., 0])
    np.testing.assert_array_equal(embed[:, 0], embed[:, 2])  # same word, same mask
    np.testing.assert_array_equal(embed[:, 1], embed[:, 5])
    assert set(np.unique(embed)) == {0.0, 2.0}
    assert set(np.unique(masks["x"])) == {0.0, 4.0}
    assert masks["h"] is None  # keep 1: no mask
    np.testing.assert_allclose(embed.mean(), 1.0, atol=0.15)


def test_windows_are_row_major_like_the_official_producer():
    x, y = rnn_lm.windows(np.arange(23), batch_size=2, bptt=3)
    # rows of length (23 - 1) // 2 = 11: [0..10], [11..21]; 3 windows of 3
    assert x.shape == (3, 2, 3)
    np.testing.assert_array_equal(x[0], [[0, 1, 2], [11, 12, 13]])
    np.testing.assert_array_equal(x[2], [[6, 7, 8], [17, 18, 19]])
    np.testing.assert_array_equal(y[2], [[7, 8, 9], [18, 19, 20]])
    with pytest.raises(ConfigError, match="config.bptt"):
        rnn_lm.windows(np.arange(30), batch_size=20, bptt=35)


def test_evaluate_carries_state_and_equals_one_long_unroll(key):
    config = rnn_lm.LMConfig(vocab_size=9, hidden=4, num_nodes=3)
    params = rnn_lm.init(key, config, standalone=True)
    arch = np.array([0, 0, 1, 1, 3])
    cell = lambda c, *a: rnn_cell.standalone_step(c, arch, *a)
    stream = np.asarray(jax.random.randint(key, (41,), 0, 9))
    xw, yw = rnn_lm.windows(stream, 2, 4)  # 5 windows of 4 per row of 20
    x_all = np.concatenate(list(xw), axis=1)
    y_all = np.concatenate(list(yw), axis=1)

    @jax.jit  # one compile for both
    def both(p):
        hs, _ = rnn_lm.unroll(cell, p, x_all, jnp.zeros((2, 4)))
        return rnn_lm.evaluate(cell, p, xw, yw), rnn_lm.token_xent(p, hs, y_all).mean()

    got, want = both(params)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_cell_picture_layout_matches_the_official_cell(tmp_path):
    arch = [int(v) for v in OFFICIAL_ARC.split()]
    positions, prev, loose = rnn_plot.layout(arch)
    assert prev == [0, 1, 2, 2, 2, 5, 1, 6, 8, 8, 8]  # node i reads prev[i - 1]
    assert loose == [3, 4, 7, 9, 10, 11]  # averaged into h_t
    assert len(set(positions)) == 12 and positions[8][0] == 5.0  # 0-1-2-5-6-8: 5 hops
    rnn_plot.draw(arch, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000
