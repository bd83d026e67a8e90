"""The ENAS controller: an LSTM policy that writes a macro or micro architecture.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.3 and Figure 5 (macro search), following the
official `general_controller.py` (github.com/melodyguan/enas): one LSTM layer of
64 units without bias, all weights uniform in [-0.1, 0.1]. For layer i the LSTM
first emits the op (softmax over `w_soft`), then, fed the op's embedding, emits
its hidden state `h_i`; skip j -> i is a binary choice with logits `[-q, q]`,
`q = v . tanh(W1 h_j + W2 h_i)` (attention over earlier anchors); the next input
is the mean of the chosen anchors. Logits are divided by `temperature`, then
squashed to `tanh_constant * tanh(.)` (ops use `tanh_constant / op_tanh_reduce`).

Micro search (Section 2.3, Figure 4; official `micro_controller.py`): the same
LSTM writes the normal cell, then (continuing from its state) the reduction
cell. Each cell starts with two LSTM steps on `g_emb` for its two inputs (zero
anchors, as official); node n then picks two inputs by attention over the
anchors of the n + 2 earlier nodes (`v . tanh(W1 h_j + W2 h)`, logits
`tanh_constant * tanh(. / temperature)`; the next LSTM input is the chosen
anchor), then two ops (op logits use `tanh_constant / op_tanh_reduce`, plus the
fixed `normal_op_bias` in the normal cell only); one more LSTM step on the
second op's embedding gives the node's anchor.

`rollout(params, config, key)` samples one architecture with its log-probability,
entropy (exact, per decision) and skip penalty; `rollout(..., arch=a)` scores a
given one (teacher forcing). `sample` is one vmapped call over many keys.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nas import search_space as space_lib
from shared import draws


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Static controller hyperparameters (official macro-search values)."""

    space: space_lib.SearchSpace
    lstm_size: int = 64
    tanh_constant: float | None = 1.5
    op_tanh_reduce: float = 1.0  # general_controller.py does not reduce op logits
    temperature: float | None = None
    skip_target: float = 0.4
    op_bias_init: tuple[float, ...] | None = None  # None: zeros (official macro)
    # Micro only: a constant added to the normal cell's op logits after the
    # tanh (official `b_soft_no_learn`: (0.25, 0.25, -0.25, -0.25, -0.25)).
    normal_op_bias: tuple[float, ...] | None = None


def micro_config(space: space_lib.SearchSpace, **overrides) -> ControllerConfig:
    """The official micro-search controller (scripts/cifar10_micro_search.sh).

    tanh constant 1.10, op tanh reduce 2.5, no temperature, `b_soft` initialized
    to (10, 10, 0, 0, 0) (favouring the separable convs) and the fixed normal
    cell bias (0.25, 0.25, -0.25, -0.25, -0.25).
    """
    values = {
        "tanh_constant": 1.10,
        "op_tanh_reduce": 2.5,
        "temperature": None,
        "op_bias_init": (10.0, 10.0, 0.0, 0.0, 0.0),
        "normal_op_bias": (0.25, 0.25, -0.25, -0.25, -0.25),
    }
    values.update(overrides)
    return ControllerConfig(space, **values)


class Rollout(NamedTuple):
    """One architecture and its statistics (leading axes added by vmap)."""

    arch: jax.Array  # (length,) int32
    log_prob: jax.Array  # () sum of per-decision log-probabilities
    entropy: jax.Array  # () sum of per-decision entropies
    skip_penalty: jax.Array  # () mean over layers of KL(p_skip || skip_target)
    skip_count: jax.Array  # () number of skips taken


def init(key: jax.Array, config: ControllerConfig) -> dict[str, jax.Array]:
    """Controller parameters, uniform in [-0.1, 0.1] as the official code.

    Not traceable (call it outside `jit`).
    """
    size, num_ops = config.lstm_size, len(config.space.op_names)
    shapes = {
        "w_lstm": (2 * size, 4 * size),
        "g_emb": (size,),
        "w_emb": (num_ops, size),
        "w_soft": (size, num_ops),
        "w_attn_1": (size, size),
        "w_attn_2": (size, size),
        "v_attn": (size,),
    }
    # One flat draw cut on the host: one compiled op, not one per weight shape.
    sizes = [int(np.prod(shape)) for shape in shapes.values()]
    flat = np.asarray(jax.random.uniform(key, (sum(sizes),), minval=-0.1, maxval=0.1))
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    params = {
        name: jax.device_put(piece.reshape(shape))
        for piece, (name, shape) in zip(pieces, shapes.items(), strict=True)
    }
    bias = config.op_bias_init or (0.0,) * num_ops
    params["b_soft"] = jnp.asarray(bias, jnp.float32)
    return params


def _lstm(w, x, c, h):
    """The official bias-free LSTM cell (i, f, o, g gate order)."""
    gates = jnp.concatenate([x, h]) @ w
    i, f, o, g = jnp.split(gates, 4)
    c = jax.nn.sigmoid(i) * jnp.tanh(g) + jax.nn.sigmoid(f) * c
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def _squash(logits, config: ControllerConfig, reduce: float = 1.0):
    if config.temperature is not None:
        logits = logits / config.temperature
    if config.tanh_constant is not None:
        logits = (config.tanh_constant / reduce) * jnp.tanh(logits)
    return logits


def _decide(logits, gumbel, given):
    """Samples (or takes `given`) from `logits` (..., n): action, log p, entropy.

    Sampling is the Gumbel-max trick with noise drawn once per rollout: one
    random-bits op instead of one per decision keeps the compiled graph small.
    """
    log_p = jax.nn.log_softmax(logits)
    action = jnp.argmax(logits + gumbel, axis=-1) if given is None else given
    chosen = jnp.take_along_axis(log_p, action[..., None], axis=-1)[..., 0]
    entropy = -(jnp.exp(log_p) * log_p).sum(-1)
    return action.astype(jnp.int32), chosen, entropy


def rollout(
    params: dict[str, jax.Array],
    config: ControllerConfig,
    key: jax.Array,
    arch: jax.Array | None = None,
) -> Rollout:
    """Samples a macro architecture (or scores `arch`, ignoring `key`).

    The layers are one `lax.scan` (compiled once whatever L): layer i attends
    over a fixed (L,) buffer of anchors and its decisions for j >= i are masked
    out of the arch, the log-probability, the entropy and the penalty.
    """
    space = config.space
    if space.name == "micro":
        return _micro_rollout(params, config, key, arch)
    if space.name != "macro":
        raise NotImplementedError(f"controller for the {space.name} space")
    num_layers, size = space.size, config.lstm_size
    key_op, key_skip = jax.random.split(key)
    num_ops = len(space.op_names)
    noise_op = draws.flat(jax.random.gumbel, key_op, (num_layers, num_ops))
    noise_skip = draws.flat(jax.random.gumbel, key_skip, (num_layers, num_layers, 2))
    teacher = arch is not None
    if teacher:  # official layout -> per-layer op and (L,) skip row (0 for j >= i)
        given_ops = space_lib.macro_ops(space, arch)
        given_skips = space_lib.macro_skips(space, arch)
    else:
        given_ops = jnp.zeros(num_layers, jnp.int32)
        given_skips = jnp.zeros((num_layers, num_layers), jnp.int32)
    target = jnp.array([1.0 - config.skip_target, config.skip_target])

    def layer_step(carry, xs):
        c, h, inputs, anchors, anchors_w1, totals = carry
        layer, n_op, n_skip, g_op, g_skip = xs
        c, h = _lstm(params["w_lstm"], inputs, c, h)
        logits = h @ params["w_soft"] + params["b_soft"]
        logits = _squash(logits, config, config.op_tanh_reduce)
        op, lp_op, ent_op = _decide(logits, n_op, g_op if teacher else None)
        c, h = _lstm(params["w_lstm"], params["w_emb"][op], c, h)
        query = jnp.tanh(anchors_w1 + h @ params["w_attn_2"]) @ params["v_attn"]
        logits = _squash(jnp.stack([-query, query], -1), config)  # (L, 2)
        skip, lp, ent = _decide(logits, n_skip, g_skip if teacher else None)
        mask = jnp.arange(num_layers) < layer  # anchors j < i exist
        skip = jnp.where(mask, skip, 0)
        prob = jax.nn.softmax(logits)  # (L, 2): [p(no skip), p(skip)]
        kl = (prob * jnp.log(prob / target)).sum(-1)
        weights = skip.astype(jnp.float32)
        totals = totals + jnp.stack(
            [
                lp_op + jnp.where(mask, lp, 0.0).sum(),
                ent_op + jnp.where(mask, ent, 0.0).sum(),
                jnp.where(mask, kl, 0.0).sum(),
                weights.sum(),
            ]
        )
        mean_anchor = weights @ anchors / (1.0 + weights.sum())
        inputs = jnp.where(layer > 0, mean_anchor, params["g_emb"])
        anchors = anchors.at[layer].set(h)
        anchors_w1 = anchors_w1.at[layer].set(h @ params["w_attn_1"])
        return (c, h, inputs, anchors, anchors_w1, totals), (op, skip)

    zeros = jnp.zeros((num_layers, size))
    carry = (jnp.zeros(size), jnp.zeros(size), params["g_emb"], zeros, zeros)
    xs = (jnp.arange(num_layers), noise_op, noise_skip, given_ops, given_skips)
    carry, (ops, skips) = jax.lax.scan(layer_step, carry + (jnp.zeros(4),), xs)
    log_prob, entropy, penalty, skip_count = carry[-1]
    rows, cols = np.tril_indices(num_layers, k=-1)
    flat = jnp.zeros(space.length, jnp.int32).at[space.positions("op")].set(ops)
    flat = flat.at[space.positions("skip")].set(skips[rows, cols])
    penalty = penalty / max(1, num_layers - 1)  # mean over layers with skips
    return Rollout(flat, log_prob, entropy, penalty, skip_count)


def _micro_rollout(params, config: ControllerConfig, key, arch) -> Rollout:
    """Normal then reduction cell: a `lax.scan` over the 2 cells, each a scan over
    its B nodes (compiled once whatever B; 5 LSTM steps per node).

    Node n attends over a fixed (B + 2,) buffer of anchors with the slots
    j >= n + 2 (nodes not yet written) masked to -1e30 after the squash, so they
    carry no probability, no entropy and are never sampled. The Gumbel noise is
    drawn once for every decision.
    """
    space, num_nodes, size = config.space, config.space.size, config.lstm_size
    num_ops = len(space.op_names)
    key_input, key_op = jax.random.split(key)
    gumbel = jax.random.gumbel
    noise_input = draws.flat(gumbel, key_input, (2, num_nodes, 2, num_nodes + 2))
    noise_op = draws.flat(gumbel, key_op, (2, num_nodes, 2, num_ops))
    teacher = arch is not None
    given = arch.reshape(2, num_nodes, 4) if teacher else jnp.zeros((2, num_nodes, 4))
    given = given.astype(jnp.int32)
    normal = jnp.asarray(config.normal_op_bias or (0.0,) * num_ops, jnp.float32)
    extra = jnp.stack([normal, jnp.zeros(num_ops)])  # normal cell only

    def node_step(carry, xs):
        c, h, anchors, anchors_w1, totals = carry
        node, n_input, n_op, g, bias = xs  # g: x_id x_op y_id y_op
        inputs, actions = params["g_emb"], []
        for branch in range(2):  # x_id, y_id
            c, h = _lstm(params["w_lstm"], inputs, c, h)
            query = jnp.tanh(anchors_w1 + h @ params["w_attn_2"]) @ params["v_attn"]
            logits = _squash(query, config)
            logits = jnp.where(jnp.arange(num_nodes + 2) < node + 2, logits, -1e30)
            forced = g[2 * branch] if teacher else None
            index, lp, ent = _decide(logits, n_input[branch], forced)
            actions.append(index)
            totals = totals + jnp.stack([lp, ent])
            inputs = anchors[index]
        for branch in range(2):  # x_op, y_op
            c, h = _lstm(params["w_lstm"], inputs, c, h)
            logits = h @ params["w_soft"] + params["b_soft"]
            logits = _squash(logits, config, config.op_tanh_reduce) + bias
            forced = g[2 * branch + 1] if teacher else None
            op, lp, ent = _decide(logits, n_op[branch], forced)
            actions.append(op)
            totals = totals + jnp.stack([lp, ent])
            inputs = params["w_emb"][op]
        c, h = _lstm(params["w_lstm"], inputs, c, h)
        anchors = anchors.at[node + 2].set(h)
        anchors_w1 = anchors_w1.at[node + 2].set(h @ params["w_attn_1"])
        # decided as x_id, y_id, x_op, y_op; the layout is x_id x_op y_id y_op
        out = jnp.stack([actions[0], actions[2], actions[1], actions[3]])
        return (c, h, anchors, anchors_w1, totals), out

    def cell_step(carry, xs):
        c, h, totals = carry
        n_input, n_op, g, bias = xs
        anchors_w1 = jnp.zeros((num_nodes + 2, size))
        for slot in range(2):  # the cell's two inputs: zero anchors
            c, h = _lstm(params["w_lstm"], params["g_emb"], c, h)
            anchors_w1 = anchors_w1.at[slot].set(h @ params["w_attn_1"])
        anchors = jnp.zeros((num_nodes + 2, size))
        biases = jnp.broadcast_to(bias, (num_nodes, num_ops))
        node_xs = (jnp.arange(num_nodes), n_input, n_op, g, biases)
        (c, h, _, _, totals), out = jax.lax.scan(
            node_step, (c, h, anchors, anchors_w1, totals), node_xs
        )
        return (c, h, totals), out

    zeros = jnp.zeros(size)
    carry = (zeros, zeros, jnp.zeros(2))
    xs = (noise_input, noise_op, given, extra)
    (_, _, (log_prob, entropy)), out = jax.lax.scan(cell_step, carry, xs)
    zero = jnp.zeros((), jnp.float32)
    return Rollout(out.reshape(-1).astype(jnp.int32), log_prob, entropy, zero, zero)


def sample(
    params: dict[str, jax.Array], config: ControllerConfig, key: jax.Array, num: int
) -> Rollout:
    """`num` architectures in one vmapped call; fields gain a leading (num,) axis."""
    keys = jax.random.split(key, num)
    return jax.vmap(lambda k: rollout(params, config, k))(keys)


def score(
    params: dict[str, jax.Array], config: ControllerConfig, archs: jax.Array
) -> Rollout:
    """Log-probability, entropy and skip penalty of given archs (num, length)."""
    key = jax.random.key(0)  # unused when the arch is given
    return jax.vmap(lambda a: rollout(params, config, key, a))(archs)
