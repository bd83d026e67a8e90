"""Matching Networks: a softmax over similarities to the support set.

Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra, "Matching Networks for One
Shot Learning", 2016, arXiv:1606.04080; reproduces the Omniglot rows of Table 1
(Conv-4, 28x28, rotations; 5/20-way 1/5-shot: 98.1 / 98.9 / 93.8 / 98.5).

    P(y | x, S) = sum_i a(x, x_i) y_i,   a = softmax_i sim(f(x), g(x_i))   (eq. 1-2)

The paper's attention is `sim = cos` ("cosine"). Its softmax is bounded: cos
lies in [-1, 1], so even a perfect embedding gives one query at most
P(correct) = e / (e + (N - 1) e^-1) per N-way episode, and after the Conv-4's
final ReLU (non-negative embeddings, cos in [0, 1]) at most e / (e + N - 1):
0.40 at 5-way, 0.13 at 20-way. The cross-entropy cannot fall below 0.91
(5-way), and a solved query (p <= 0.40) pulls on the embedding about as
hard as a wrong one; on an H100, 20,000 episodes trained to 85.0% (5w1s) /
66.2% (20w1s), far below the paper. `similarity` selects the readout (used
by the plain and the FCE attention alike):

  "cosine"              cos(f, g), the paper's formula (bounded as above).
  "cosine_scaled"       s cos(f, g) with a learned inverse temperature
                        s = exp(log_scale), `init_scale` at the start
                        ("metric scaling", learned as in Oreshkin et al.
                        2018, TADAM; Chen et al. 2019, "A Closer Look at
                        Few-shot Classification", scale the cosine of their
                        Baseline++ classifier the same way).
  "support_normalized"  f . g / |g|: only the support is normalised, so |f(x)|
                        acts as a per-query inverse temperature (what the
                        reference TensorFlow reproduction of Matching Nets,
                        AntreasAntoniou/MatchingNetworks, computes).
  "l2"                  -|f - g|^2 (the few-shot reproduction by O. Knagg,
                        oscarknagg/few-shot, reached the paper only with it;
                        ProtoNets' distance, Snell et al. 2017 eq. 1: at one
                        shot this readout is exactly a ProtoNet's).

Full context embeddings (FCE, paper section 2.1.2, switch `fce=True`):
  g(x_i) = h_fwd_i + h_bwd_i + g'(x_i), a bidirectional LSTM over the support
  embeddings g' in the order they are given;
  f(x) = h_K after K steps of an attention LSTM that reads the support:
    h^_k, c_k = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1}),  h_k = h^_k + f'(x),
    r_k = sum_i softmax_i(h_k . g(x_i)) g(x_i)   (this content attention stays
    the paper's dot product whatever `similarity` is).
The learner interface is the one documented in `protonets.py`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from metalearn import embeddings
from metalearn.episodes import Episode
from metalearn.protonets import cross_entropy_metrics
from shared.errors import ConfigError

SIMILARITIES = ("cosine", "cosine_scaled", "support_normalized", "l2")
_EPSILON = 1e-8


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPSILON)


def similarity(query, support, kind: str = "cosine", log_scale=0.0) -> jax.Array:
    """(Q, D), (S, D) -> (Q, S) attention logits sim(f(x), g(x_i)).

    `log_scale` is the log inverse temperature of "cosine_scaled" (ignored by
    the other kinds).
    """
    if kind == "cosine":
        return _unit(query) @ _unit(support).T
    if kind == "cosine_scaled":
        return jnp.exp(log_scale) * (_unit(query) @ _unit(support).T)
    if kind == "support_normalized":
        return query @ _unit(support).T
    if kind == "l2":
        squared = (
            jnp.sum(query**2, -1, keepdims=True)
            - 2 * query @ support.T
            + jnp.sum(support**2, -1)
        )
        return -jnp.maximum(squared, 0.0)
    raise ConfigError(f"config.similarity={kind!r}; use one of {SIMILARITIES}.")


def cosine_attention(query: jax.Array, support: jax.Array) -> jax.Array:
    """(Q, D), (S, D) -> (Q, S) softmax over the support of cosine similarities."""
    return jax.nn.softmax(similarity(query, support), axis=-1)


def episode_log_probs(
    support, support_y, query, n_way: int, kind: str = "cosine", log_scale=0.0
) -> jax.Array:
    """log P(y | x, S) = log sum_{i: y_i = y} a(x, x_i), (Q, N).

    Computed as a log-sum-exp of the logits within each class minus the one
    over the whole support: stable when the attention is sharp (l2, scaled).
    """
    logits = similarity(query, support, kind, log_scale)
    in_class = jax.nn.one_hot(support_y, n_way, dtype=bool)  # (S, N)
    per_class = jnp.where(in_class, logits[:, :, None], -jnp.inf)
    return jax.nn.logsumexp(per_class, axis=1) - jax.nn.logsumexp(
        logits, axis=-1, keepdims=True
    )


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
      similarity: the attention readout, one of `SIMILARITIES` (module
        docstring); the functions above default to the paper's "cosine",
        the learner to "support_normalized", which trained best (README).
      init_scale: the initial inverse temperature of "cosine_scaled", a
        learned scalar `params["log_scale"]` = log(init_scale).
      test_bn: BatchNorm mode in `predict` (`running` or `transductive`).
      chunk: conv batch chunk size, 0 = none.
      conv_impl: `auto`, `xla`, `winograd` or `matmul` (`embeddings.CONV_IMPLS`).
    """

    hidden: int = 64
    depth: int = 4
    in_channels: int = 1
    image_size: int = 28
    fce: bool = False
    fce_steps: int = 5
    similarity: str = "support_normalized"
    init_scale: float = 10.0
    test_bn: str = "running"
    chunk: int = 0
    conv_impl: str = "auto"

    def __post_init__(self):
        if self.similarity not in SIMILARITIES:
            raise ConfigError(
                f"config.similarity={self.similarity!r}; use one of {SIMILARITIES}."
            )
        if self.init_scale <= 0:
            raise ConfigError(f"init_scale={self.init_scale} must be > 0.")

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
        if self.similarity == "cosine_scaled":
            params = dict(params, log_scale=jnp.asarray(math.log(self.init_scale)))
        return params, stats

    def logits(self, params, stats, episodes: Episode, n_way: int, mode: str):
        conv_params = {k: v for k, v in params.items() if k not in ("fce", "log_scale")}
        log_scale = params.get("log_scale", 0.0)
        support, query, stats = embeddings.embed_episodes(
            conv_params,
            stats,
            episodes,
            mode=mode,
            chunk=self.chunk,
            conv_impl=self.conv_impl,
        )

        def one(support, support_y, query):
            if self.fce:
                support = context_support(params["fce"], support)
                query = context_query(
                    params["fce"]["att"], query, support, self.fce_steps
                )
            return episode_log_probs(
                support, support_y, query, n_way, self.similarity, log_scale
            )

        return jax.vmap(one)(support, episodes.support_y, query), stats

    def episode_loss(self, params, stats, episodes: Episode, n_way: int):
        log_probs, stats = self.logits(params, stats, episodes, n_way, "batch")
        loss, accuracy = cross_entropy_metrics(log_probs, episodes.query_y)
        return loss, ({"loss": loss, "accuracy": accuracy}, stats)

    def predict(self, params, stats, episodes: Episode, n_way: int) -> jax.Array:
        return self.logits(params, stats, episodes, n_way, self.test_bn)[0]
