"""Matching Networks' attention readouts (`matching.similarity`): values against
NumPy, support-order invariance, the cosine bound, the learned scale."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import episodes as episodes_lib
from metalearn import matching
from metalearn.configs import omniglot_matching
from shared.errors import ConfigError

LABELS = np.array([0, 1, 2, 0, 1])  # 3-way, classes 0 and 1 with two shots
LOG_SCALE = math.log(3.0)


def _inputs():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(4, 6)).astype(np.float32)
    support = rng.normal(size=(5, 6)).astype(np.float32)
    return query, support


def _numpy_logits(query, support, kind):
    unit_q = query / np.linalg.norm(query, axis=1, keepdims=True)
    unit_s = support / np.linalg.norm(support, axis=1, keepdims=True)
    if kind == "cosine":
        return unit_q @ unit_s.T
    if kind == "cosine_scaled":
        return 3.0 * unit_q @ unit_s.T
    if kind == "support_normalized":
        return query @ unit_s.T
    # "l2": minus the squared distance, pair by pair
    return -np.array([[np.sum((q - s) ** 2) for s in support] for q in query])


@jax.jit  # one compile for every kind and both support orders
def _all_log_probs(query, support, labels):
    return {
        kind: (
            matching.similarity(query, support, kind, LOG_SCALE),
            matching.episode_log_probs(support, labels, query, 3, kind, LOG_SCALE),
        )
        for kind in matching.SIMILARITIES
    }


def test_similarities_match_numpy():
    query, support = _inputs()
    got = _all_log_probs(query, support, LABELS)
    for kind in matching.SIMILARITIES:
        logits, log_probs = got[kind]
        want = _numpy_logits(query, support, kind)
        np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5, err_msg=kind)
        # P(y = c | x, S): the softmax attention summed over the shots of c
        attention = np.exp(want - want.max(1, keepdims=True))
        attention /= attention.sum(1, keepdims=True)
        probs = np.stack([attention[:, LABELS == c].sum(1) for c in range(3)], 1)
        np.testing.assert_allclose(
            np.exp(log_probs), probs, rtol=1e-5, atol=1e-6, err_msg=kind
        )
        np.testing.assert_allclose(np.exp(log_probs).sum(1), 1.0, rtol=1e-5)


def test_similarities_invariant_to_support_order():
    query, support = _inputs()
    order = np.array([3, 0, 4, 2, 1])
    a = _all_log_probs(query, support, LABELS)
    b = _all_log_probs(query, support[order], LABELS[order])
    for kind in matching.SIMILARITIES:
        np.testing.assert_allclose(a[kind][1], b[kind][1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[kind][0][:, order], b[kind][0], rtol=1e-5)


def test_cosine_bound_on_non_negative_embeddings():
    """The paper's cosine softmax caps P(correct) at e / (e + N - 1) on a
    perfect non-negative (post-ReLU) embedding; the other readouts do not."""
    n = 5
    support = np.eye(n, 8, dtype=np.float32)  # orthogonal one-hot classes
    query = 4.0 * support  # each query exactly on its class's direction
    labels = np.arange(n)
    correct = {}
    for kind in matching.SIMILARITIES:
        log_probs = matching.episode_log_probs(
            support, labels, query, n, kind, math.log(10.0)
        )
        correct[kind] = float(np.exp(np.diag(np.asarray(log_probs))).mean())
    e = math.e
    np.testing.assert_allclose(correct["cosine"], e / (e + n - 1), rtol=1e-5)
    assert correct["cosine"] < 0.41
    want_scaled = math.exp(10) / (math.exp(10) + n - 1)
    np.testing.assert_allclose(correct["cosine_scaled"], want_scaled, rtol=1e-5)
    # |f(x)| = 4 is the inverse temperature: e^4 / (e^4 + N - 1)
    want_support = math.exp(4) / (math.exp(4) + n - 1)
    np.testing.assert_allclose(correct["support_normalized"], want_support, rtol=1e-5)
    # squared distances 9 (own class) and 17 (others): 1 / (1 + 4 e^-8)
    np.testing.assert_allclose(correct["l2"], 1 / (1 + 4 * math.exp(-8)), rtol=1e-5)


def test_scaled_cosine_gradient_matches_finite_differences():
    query, support = _inputs()
    targets = np.array([0, 1, 2, 1])

    @jax.jit
    def loss(log_scale):
        log_probs = matching.episode_log_probs(
            support, LABELS, query, 3, "cosine_scaled", log_scale
        )
        return -jnp.take_along_axis(log_probs, targets[:, None], 1).mean()

    for log_scale in (0.0, LOG_SCALE):
        grad = jax.jit(jax.grad(loss))(jnp.float32(log_scale))
        h = 1e-2
        numeric = (loss(log_scale + h) - loss(log_scale - h)) / (2 * h)
        assert abs(float(grad)) > 1e-3  # the scale is not a dead parameter
        np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=1e-5)


def test_learner_trains_the_scale_and_keeps_support_order():
    """Through the whole learner: `log_scale` is a parameter with a gradient,
    and the plain (non-FCE) readout ignores the order of the support."""
    rng = np.random.default_rng(1)
    data = episodes_lib.ClassImages(
        jnp.asarray(rng.integers(0, 256, (6, 20, 8, 8, 1), np.uint8)), 6, 1
    )
    episodes = jax.jit(episodes_lib.sample_meta_batch, static_argnums=(2, 3, 4, 5))(
        jax.random.key(2), data, 2, 3, 2, 2
    )
    learner = matching.MatchingNet(
        hidden=8, depth=2, similarity="cosine_scaled", test_bn="transductive"
    )
    params, stats = jax.jit(learner.init)(jax.random.key(0))
    np.testing.assert_allclose(params["log_scale"], math.log(10.0), rtol=1e-6)
    order = np.array([5, 2, 0, 3, 1, 4])
    shuffled = episodes._replace(
        support_x=episodes.support_x[:, order], support_y=episodes.support_y[:, order]
    )

    @jax.jit
    def run(params, stats, episodes, shuffled):
        grads = jax.grad(lambda p: learner.episode_loss(p, stats, episodes, 3)[0])(
            params
        )
        a = learner.predict(params, stats, episodes, 3)
        return grads, a, learner.predict(params, stats, shuffled, 3)

    grads, a, b = run(params, stats, episodes, shuffled)
    assert np.isfinite(grads["log_scale"]) and abs(float(grads["log_scale"])) > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    plain = matching.MatchingNet(hidden=8, depth=2)
    assert "log_scale" not in jax.eval_shape(plain.init, jax.random.key(0))[0]


def test_similarity_config_and_errors():
    for variant in ("smoke", "quick", "paper", "paper_20w1s"):
        config = omniglot_matching.get_config(variant)
        # the configs and the learner agree on the default readout
        assert config.similarity == matching.MatchingNet().similarity
    with pytest.raises(ConfigError, match="config.similarity"):
        matching.MatchingNet(similarity="dot")
    with pytest.raises(ConfigError, match="config.similarity"):
        matching.similarity(np.ones((1, 2)), np.ones((1, 2)), "dot")
