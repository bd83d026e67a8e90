"""Prototypical Networks: classify by squared Euclidean distance to class means.

Snell, Swersky, Zemel, "Prototypical Networks for Few-shot Learning", 2017,
arXiv:1703.05175; reproduces the Omniglot rows of Table 1 (Conv-4, 28x28,
Vinyals split with rotations; 5/20-way, 1/5-shot; 98.8 / 99.7 / 96.0 / 98.9).

Every learner in this area has the same interface, so `train.py` and
`evaluate.py` serve all of them:
  `init(key) -> (params, stats)`             trainable pytree, BatchNorm stats
  `episode_loss(params, stats, episodes, n_way) -> (loss, (metrics, stats))`
  `predict(params, stats, episodes, n_way) -> (E, N*Q, N) logits`
where `episodes` is an `episodes.Episode` with a leading meta-batch axis (E,).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from metalearn import embeddings
from metalearn.episodes import Episode


def prototypes(support: jax.Array, support_y: jax.Array, n_way: int) -> jax.Array:
    """Class means (N, D) of support embeddings (S, D) with labels (S,) in 0..N-1.

    Written as a one-hot average, so the order of the support set does not matter.
    """
    one_hot = jax.nn.one_hot(support_y, n_way, dtype=support.dtype)  # (S, N)
    return (one_hot.T @ support) / one_hot.sum(axis=0)[:, None]


def squared_distances(query: jax.Array, centers: jax.Array) -> jax.Array:
    """(Q, D), (N, D) -> (Q, N) squared Euclidean distances."""
    return (
        jnp.sum(query**2, axis=-1, keepdims=True)
        - 2.0 * query @ centers.T
        + jnp.sum(centers**2, axis=-1)[None, :]
    )


def episode_logits(support, support_y, query, n_way: int) -> jax.Array:
    """One episode's logits: minus squared distances to the prototypes, (Q, N)."""
    return -squared_distances(query, prototypes(support, support_y, n_way))


def cross_entropy_metrics(logits: jax.Array, labels: jax.Array):
    """Mean cross-entropy and accuracy over (E, Q, N) logits and (E, Q) labels."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = (logits.argmax(-1) == labels).mean()
    return loss, accuracy


@dataclasses.dataclass(frozen=True)
class ProtoNet:
    """ProtoNet learner over a Conv-4 embedding.

    Attributes:
      hidden: filters per conv block (64).
      depth: conv blocks (4).
      in_channels: image channels.
      test_bn: BatchNorm mode in `predict` (`running` as in Snell's code, or
        `transductive`).
      chunk: conv batch chunk size, 0 = none (a CPU speed knob).
      conv_impl: `auto`, `xla`, `winograd` or `matmul` (`embeddings.CONV_IMPLS`,
        a CPU speed knob).
    """

    hidden: int = 64
    depth: int = 4
    in_channels: int = 1
    test_bn: str = "running"
    chunk: int = 0
    conv_impl: str = "auto"

    def init(self, key: jax.Array):
        return embeddings.init(key, self.in_channels, self.hidden, self.depth)

    def logits(self, params, stats, episodes: Episode, n_way: int, mode: str):
        support, query, stats = embeddings.embed_episodes(
            params,
            stats,
            episodes,
            mode=mode,
            chunk=self.chunk,
            conv_impl=self.conv_impl,
        )
        logits = jax.vmap(episode_logits, in_axes=(0, 0, 0, None))(
            support, episodes.support_y, query, n_way
        )
        return logits, stats

    def episode_loss(self, params, stats, episodes: Episode, n_way: int):
        logits, stats = self.logits(params, stats, episodes, n_way, "batch")
        loss, accuracy = cross_entropy_metrics(logits, episodes.query_y)
        return loss, ({"loss": loss, "accuracy": accuracy}, stats)

    def predict(self, params, stats, episodes: Episode, n_way: int) -> jax.Array:
        return self.logits(params, stats, episodes, n_way, self.test_bn)[0]
