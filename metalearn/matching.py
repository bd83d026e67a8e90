"""Matching Networks: a softmax over cosine similarities to the support set.

Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra, "Matching Networks for One
Shot Learning", 2016, arXiv:1606.04080; reproduces the Omniglot rows of Table 1
(Conv-4, 28x28, rotations; 5/20-way 1/5-shot: 98.1 / 98.9 / 93.8 / 98.5).

    P(y | x, S) = sum_i a(x, x_i) y_i,   a = softmax_i cos(f(x), g(x_i))

Full context embeddings (FCE, paper section 2.1.2, switch `fce=True`):
  g(x_i) = h_fwd_i + h_bwd_i + g'(x_i), a bidirectional LSTM over the support
  embeddings g' in the order they are given;
  f(x) = h_K after K steps of an attention LSTM that reads the support:
    h^_k, c_k = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1}),  h_k = h^_k + f'(x),
    r_k = sum_i softmax_i(h_k . g(x_i)) g(x_i).
The learner interface is the one documented in `protonets.py`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metalearn import embeddings
from metalearn.episodes import Episode
from metalearn.protonets import cross_entropy_metrics

_LOG_EPSILON = 1e-8


def cosine_attention(query: jax.Array, support: jax.Array) -> jax.Array:
    """(Q, D), (S, D) -> (Q, S) softmax over the support of cosine similarities."""
    unit_q = query / jnp.maximum(jnp.linalg.norm(query, axis=-1, keepdims=True), 1e-8)
    unit_s = support / jnp.maximum(
        jnp.linalg.norm(support, axis=-1, keepdims=True), 1e-8
    )
    return jax.nn.softmax(unit_q @ unit_s.T, axis=-1)


def episode_log_probs(support, support_y, query, n_way: int) -> jax.Array:
    """log P(y | x, S), (Q, N), from the attention-weighted support labels."""
    attention = cosine_attention(query, support)
    probs = attention @ jax.nn.one_hot(support_y, n_way, dtype=attention.dtype)
    return jnp.log(probs + _LOG_EPSILON)


def init_lstm(key: jax.Array, inputs: int, recurrent: int, hidden: int):
    """LSTM cell weights; the forget-gate bias starts at 1."""
    key_x, key_h = jax.random.split(key)
    glorot = jax.nn.initializers.glorot_uniform()
    bias = jnp.zeros((4 * hidden,)).at[hidden : 2 * hidden].set(1.0)
    return {
        "wx": glorot(key_x, (inputs, 4 * hidden)),
        "wh": glorot(key_h, (recurrent, 4 * hidden)),
        "b": bias,
    }


def lstm_cell(params, x, recurrent, cell):
    """One LSTM step; gates ordered input, forget, candidate, output."""
    gates = x @ params["wx"] + recurrent @ params["wh"] + params["b"]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    cell = jax.nn.sigmoid(f) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(cell), cell


def _run_lstm(params, sequence):
    """(S, D) -> (S, H) hidden states of a single-direction LSTM."""
    hidden = params["wh"].shape[0]

    def step(carry, x):
        h, c = lstm_cell(params, x, *carry)
        return (h, c), h

    zeros = jnp.zeros((hidden,), sequence.dtype)
    return jax.lax.scan(step, (zeros, zeros), sequence)[1]


def context_support(params, support: jax.Array) -> jax.Array:
    """g(x_i) = h_fwd + h_bwd + g'(x_i) over the support sequence (S, D)."""
    forward = _run_lstm(params["fwd"], support)
    backward = _run_lstm(params["bwd"], support[::-1])[::-1]
    return support + forward + backward


def context_query(params, query: jax.Array, support: jax.Array, steps: int):
    """f(x) after `steps` attention-LSTM reads of the support, (Q, D)."""
    h = jnp.zeros_like(query)
    readout = jnp.zeros_like(query)
    cell = jnp.zeros_like(query)

    def step(carry, _):
        h, readout, cell = carry
        h_hat, cell = lstm_cell(params, query, jnp.concatenate([h, readout], -1), cell)
        h = h_hat + query
        readout = jax.nn.softmax(h @ support.T, axis=-1) @ support
        return (h, readout, cell), None

    return jax.lax.scan(step, (h, readout, cell), None, length=steps)[0][0]


@dataclasses.dataclass(frozen=True)
class MatchingNet:
    """Matching Networks learner over a Conv-4 embedding.

    Attributes:
      hidden, depth, in_channels, image_size: Conv-4 shape (image_size sets
        the embedding size the FCE LSTMs read).
      fce: use full context embeddings (BiLSTM + attention LSTM).
      fce_steps: K, the attention-LSTM read steps.
      test_bn: BatchNorm mode in `predict` (`running` or `transductive`).
      chunk: conv batch chunk size, 0 = none.
    """

    hidden: int = 64
    depth: int = 4
    in_channels: int = 1
    image_size: int = 28
    fce: bool = False
    fce_steps: int = 5
    test_bn: str = "running"
    chunk: int = 0

    def init(self, key: jax.Array):
        key_conv, key_fwd, key_bwd, key_att = jax.random.split(key, 4)
        params, stats = embeddings.init(
            key_conv, self.in_channels, self.hidden, self.depth
        )
        if self.fce:
            dim = embeddings.output_dim(self.image_size, self.hidden, self.depth)
            params = dict(params)
            params["fce"] = {
                "fwd": init_lstm(key_fwd, dim, dim, dim),
                "bwd": init_lstm(key_bwd, dim, dim, dim),
                "att": init_lstm(key_att, dim, 2 * dim, dim),
            }
        return params, stats

    def logits(self, params, stats, episodes: Episode, n_way: int, mode: str):
        conv_params = {k: v for k, v in params.items() if k != "fce"}
        support, query, stats = embeddings.embed_episodes(
            conv_params, stats, episodes, mode=mode, chunk=self.chunk
        )

        def one(support, support_y, query):
            if self.fce:
                support = context_support(params["fce"], support)
                query = context_query(
                    params["fce"]["att"], query, support, self.fce_steps
                )
            return episode_log_probs(support, support_y, query, n_way)

        return jax.vmap(one)(support, episodes.support_y, query), stats

    def episode_loss(self, params, stats, episodes: Episode, n_way: int):
        log_probs, stats = self.logits(params, stats, episodes, n_way, "batch")
        loss, accuracy = cross_entropy_metrics(log_probs, episodes.query_y)
        return loss, ({"loss": loss, "accuracy": accuracy}, stats)

    def predict(self, params, stats, episodes: Episode, n_way: int) -> jax.Array:
        return self.logits(params, stats, episodes, n_way, self.test_bn)[0]
