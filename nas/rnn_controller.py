"""The ENAS controller for the RNN-cell space, and its REINFORCE step.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.1 and Figure 1, following the official
`ptb_enas_controller.py` (github.com/melodyguan/enas): an LSTM of 64 units
without bias, weights uniform in [-0.1, 0.1]. For node i it first steps on its
input and keeps its hidden state as anchor a_i; for i >= 1 it picks the
previous node p_i by attention over the anchors a_j, j < i:

    logits_j = C tanh(v . tanh(W1 a_j + W2 a_i) / temperature) - (i - j)^2 / 12

(the official distance bias favours nearby nodes) and is fed a_{p_i} /
(0.1 + i - p_i); a second step emits the activation f_i from
C tanh(h W_soft / temperature) and feeds its embedding to node i + 1. Node 0
starts from the learned g_emb and has no input decision.

`rollout` samples one arch (Gumbel-max, noise drawn once) with its log-prob and
entropy (exact, per decision), or scores a given arch; `sample` is one vmapped
call. `update` is REINFORCE with reward c / valid perplexity (official c = 80)
plus an entropy bonus, the moving-average baseline of `nas.reinforce`
(updated before use) and Adam (beta1 = 0, eps = 1e-3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas import reinforce
from nas import search_space as space_lib
from shared import draws

NEG = -1e9  # logit of an unavailable choice


@dataclasses.dataclass(frozen=True)
class RnnControllerConfig:
    """Static hyperparameters (official PTB search values)."""

    space: space_lib.SearchSpace
    lstm_size: int = 64
    tanh_constant: float | None = 2.5
    temperature: float | None = 5.0
    distance_bias: float = 1.0 / 12.0


class Rollout(NamedTuple):
    arch: jax.Array  # (2N - 1,) int32
    log_prob: jax.Array  # () sum of per-decision log-probabilities
    entropy: jax.Array  # () sum of per-decision entropies


def init(key: jax.Array, config: RnnControllerConfig) -> dict[str, jax.Array]:
    size, num_funcs = config.lstm_size, len(config.space.op_names)
    shapes = {
        "w_lstm": (2 * size, 4 * size),
        "g_emb": (size,),
        "w_emb": (num_funcs, size),
        "w_soft": (size, num_funcs),
        "w_attn_1": (size, size),
        "w_attn_2": (size, size),
        "v_attn": (size,),
    }
    keys = jax.random.split(key, len(shapes))
    return {
        name: draws.flat(
            jax.random.uniform, k, shape, dtype=jnp.float32, minval=-0.1, maxval=0.1
        )
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def lstm(w, x, c, h):
    """The official bias-free LSTM cell (i, f, o, g gate order)."""
    i, f, o, g = jnp.split(jnp.concatenate([x, h]) @ w, 4)
    c = jax.nn.sigmoid(i) * jnp.tanh(g) + jax.nn.sigmoid(f) * c
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def squash(logits, config: RnnControllerConfig):
    if config.temperature is not None:
        logits = logits / config.temperature
    if config.tanh_constant is not None:
        logits = config.tanh_constant * jnp.tanh(logits)
    return logits


def _decide(logits, gumbel, given):
    log_p = jax.nn.log_softmax(logits)
    action = jnp.argmax(logits + gumbel) if given is None else given
    entropy = -(jnp.exp(log_p) * log_p).sum()
    return action.astype(jnp.int32), log_p[action], entropy


def rollout(params, config: RnnControllerConfig, key, arch=None) -> Rollout:
    """Samples an rnn arch (or scores `arch` (2N - 1,), ignoring `key`)."""
    num_nodes, size = config.space.size, config.lstm_size
    num_funcs = len(config.space.op_names)
    key_prev, key_func = jax.random.split(key)
    teacher = arch is not None
    if teacher:
        given_prev = jnp.concatenate([jnp.zeros(1, jnp.int32), arch[1::2]])
        given_func = jnp.concatenate([arch[:1], arch[2::2]])
    else:
        given_prev = given_func = jnp.zeros(num_nodes, jnp.int32)
    xs = (
        jnp.arange(num_nodes),
        draws.flat(jax.random.gumbel, key_prev, (num_nodes, num_nodes)),
        draws.flat(jax.random.gumbel, key_func, (num_nodes, num_funcs)),
        given_prev,
        given_func,
    )
    j = jnp.arange(num_nodes)

    def node_step(carry, x):
        c, h, inputs, anchors, anchors_w1, totals = carry
        node, noise_prev, noise_func, g_prev, g_func = x
        c, h = lstm(params["w_lstm"], inputs, c, h)
        anchors = anchors.at[node].set(h)
        anchors_w1 = anchors_w1.at[node].set(h @ params["w_attn_1"])
        query = jnp.tanh(anchors_w1 + h @ params["w_attn_2"]) @ params["v_attn"]
        logits = squash(query, config) - config.distance_bias * (node - j) ** 2
        logits = jnp.where(j < jnp.maximum(node, 1), logits, NEG)
        prev, lp_prev, ent_prev = _decide(
            logits, noise_prev, g_prev if teacher else None
        )
        has_prev = node > 0
        scale = 0.1 + (node - prev).astype(jnp.float32)
        inputs = jnp.where(has_prev, anchors[prev] / scale, params["g_emb"])
        c, h = lstm(params["w_lstm"], inputs, c, h)
        logits = squash(h @ params["w_soft"], config)
        func, lp_func, ent_func = _decide(
            logits, noise_func, g_func if teacher else None
        )
        totals = totals + jnp.stack(
            [
                lp_func + jnp.where(has_prev, lp_prev, 0.0),
                ent_func + jnp.where(has_prev, ent_prev, 0.0),
            ]
        )
        carry = (c, h, params["w_emb"][func], anchors, anchors_w1, totals)
        return carry, (prev, func)

    zeros = jnp.zeros((num_nodes, size))
    carry = (jnp.zeros(size), jnp.zeros(size), params["g_emb"], zeros, zeros)
    carry, (prevs, funcs) = jax.lax.scan(node_step, carry + (jnp.zeros(2),), xs)
    pairs = jnp.stack([prevs[1:], funcs[1:]], -1).reshape(-1)
    flat = jnp.concatenate([funcs[:1], pairs]).astype(jnp.int32)
    return Rollout(flat, carry[-1][0], carry[-1][1])


def sample(params, config: RnnControllerConfig, key, num: int) -> Rollout:
    """`num` archs in one vmapped call; fields gain a leading (num,) axis."""
    return jax.vmap(lambda k: rollout(params, config, k))(jax.random.split(key, num))


def score(params, config: RnnControllerConfig, archs) -> Rollout:
    """Log-probabilities and entropies of given archs (num, 2N - 1)."""
    key = jax.random.key(0)  # unused when the arch is given
    return jax.vmap(lambda a: rollout(params, config, key, a))(archs)


def update(
    state: reinforce.ControllerState,
    key: jax.Array,
    config: RnnControllerConfig,
    optimizer: optax.GradientTransformation,
    perplexity_fn: Callable[[jax.Array], jax.Array],
    *,
    num_samples: int,
    reward_constant: float,
    entropy_weight: float,
    baseline_decay: float,
) -> tuple[reinforce.ControllerState, dict[str, jax.Array]]:
    """One REINFORCE step on `num_samples` archs; reward c / ppl + w H.

    Args:
      perplexity_fn: (num, 2N - 1) archs -> (num,) validation perplexities.
    """

    def sampled_loss(params):
        rollouts = sample(params, config, key, num_samples)
        ppl = jax.lax.stop_gradient(perplexity_fn(rollouts.arch))
        entropy = jax.lax.stop_gradient(rollouts.entropy)
        rewards = reward_constant / ppl + entropy_weight * entropy
        advantage, baseline = reinforce.advantages(
            rewards, state.baseline, baseline_decay
        )
        value = -(rollouts.log_prob * advantage).mean()
        return value, (rollouts, ppl, rewards, baseline)

    (value, aux), grads = jax.value_and_grad(sampled_loss, has_aux=True)(state.params)
    rollouts, ppl, rewards, baseline = aux
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    metrics = {
        "controller/loss": value,
        "controller/reward": rewards.mean(),
        "controller/valid_ppl": ppl.mean(),
        "controller/baseline": baseline,
        "controller/entropy": rollouts.entropy.mean(),
        "controller/log_prob": rollouts.log_prob.mean(),
    }
    params = optax.apply_updates(state.params, updates)
    return reinforce.ControllerState(params, opt_state, baseline), metrics
