"""ProtoNets, Matching Networks and the Conv-4 embedding they share."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import embeddings, matching, protonets
from metalearn import episodes as episodes_lib

N, K, Q, E = 3, 2, 2, 2


@pytest.fixture(scope="module")
def batch():
    """A meta-batch of E episodes of random 8x8 images."""
    # NumPy draws: test inputs need no compiled samplers
    rng = np.random.default_rng(1)
    data = episodes_lib.ClassImages(
        jnp.asarray(rng.integers(0, 256, (6, 20, 8, 8, 1), np.uint8)),
        num_base=6,
        rotations=1,
    )
    sample = jax.jit(episodes_lib.sample_meta_batch, static_argnums=(2, 3, 4, 5))
    return sample(jax.random.key(2), data, E, N, K, Q)


def test_output_dim():
    assert embeddings.output_dim(28) == 64
    assert embeddings.output_dim(84) == 1600
    assert embeddings.output_dim(16, hidden=8) == 8


def test_max_pool_matches_reduce_window():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 7, 7, 3)), jnp.float32)
    want = jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
    )
    np.testing.assert_array_equal(embeddings.max_pool_2x2(x), want)


def test_pool_first_equals_relu_then_pool():
    rng = np.random.default_rng(4)
    h = jnp.asarray(rng.standard_normal((2, 3, 5, 7, 4)), jnp.float32)  # odd sizes
    scale = jnp.asarray([[-1.5, -0.2, 0.3, 2.0]], jnp.float32)  # both signs
    shift = jnp.asarray([0.1, -0.3, 0.2, 0.0], jnp.float32)

    def reference(h, scale, shift):
        out = embeddings.max_pool_2x2(
            jax.nn.relu(h * scale + shift).reshape(6, 5, 7, 4)
        )
        return out.reshape(2, 3, 2, 3, 4)

    run = jax.jit(  # values and both VJPs in one compile
        lambda f, *args: (
            jax.vjp(f, *args)[1](jnp.cos(jnp.arange(144.0)).reshape(2, 3, 2, 3, 4))
            + (f(*args),)
        ),
        static_argnums=0,
    )
    got, want = (
        run(embeddings.affine_relu_pool, h, scale, shift),
        run(reference, h, scale, shift),
    )
    chex.assert_shape(got[-1], (2, 3, 2, 3, 4))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_prototypes_and_logits_match_numpy():
    rng = np.random.default_rng(0)
    support = rng.normal(size=(N * K, 5)).astype(np.float32)
    labels = rng.permutation(np.repeat(np.arange(N), K))
    query = rng.normal(size=(4, 5)).astype(np.float32)
    centers = np.stack([support[labels == c].mean(0) for c in range(N)])
    want = -((query[:, None, :] - centers[None]) ** 2).sum(-1)
    run = jax.jit(  # one compile, not one per eager op
        lambda s, y, q: (
            protonets.episode_logits(s, y, q, N),
            protonets.prototypes(s, y, N),
        )
    )
    got, prototypes = run(support, labels, query)
    np.testing.assert_allclose(prototypes, centers, rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


LEARNERS = {
    # two conv blocks on 8x8 images keep the compiled graphs small
    "protonet": protonets.ProtoNet(hidden=8, depth=2, test_bn="transductive"),
    "matching": matching.MatchingNet(hidden=8, depth=2, test_bn="transductive"),
    "matching_fce": matching.MatchingNet(
        hidden=8, depth=2, image_size=8, fce=True, fce_steps=2, test_bn="transductive"
    ),
}


@pytest.fixture(scope="module", params=list(LEARNERS))
def learner_and_fns(request):
    learner = LEARNERS[request.param]
    predict = jax.jit(learner.predict, static_argnums=3)
    loss = jax.jit(learner.episode_loss, static_argnums=3)
    init = jax.jit(learner.init)(jax.random.key(0))
    return request.param, learner, init, predict, loss


def test_predict_shape_and_folded_episodes_independent(batch, learner_and_fns):
    _, _, (params, stats), predict, loss = learner_and_fns
    logits = predict(params, stats, batch, N)
    chex.assert_shape(logits, (E, N * Q, N))
    chex.assert_tree_all_finite(logits)
    total, (metrics, new_stats) = loss(params, stats, batch, N)
    # Per-episode BatchNorm: an episode's logits do not depend on the other
    # episodes folded into the same conv batch. Replacing episode 1 by a copy
    # of episode 0 (same shapes, no recompile) leaves episode 0's logits alone
    # and gives episode 1 the same ones; pooled statistics would move both.
    copied = jax.tree.map(lambda x: x.at[1].set(x[0]), batch)
    both = predict(params, stats, copied, N)
    np.testing.assert_allclose(both[0], logits[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(both[1], logits[0], rtol=1e-4, atol=1e-4)
    # the training loss (batch-statistics mode) is the mean query cross-entropy
    log_softmax = logits - jax.scipy.special.logsumexp(logits, -1, keepdims=True)
    picked = np.take_along_axis(np.asarray(log_softmax), batch.query_y[..., None], -1)
    np.testing.assert_allclose(total, -picked.mean(), rtol=1e-4)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    # running statistics moved towards the batch statistics
    assert not np.allclose(new_stats["mean"][0], stats["mean"][0])


def test_invariant_to_support_order(batch, learner_and_fns):
    name, _, (params, stats), predict, _ = learner_and_fns
    order = np.random.default_rng(0).permutation(N * K)
    shuffled = batch._replace(
        support_x=batch.support_x[:, order], support_y=batch.support_y[:, order]
    )
    a = predict(params, stats, batch, N)
    b = predict(params, stats, shuffled, N)
    if name == "matching_fce":  # the BiLSTM reads the support as a sequence
        assert not np.allclose(a, b, atol=1e-6)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_cosine_attention_sums_to_one_and_matches_numpy():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(4, 6)).astype(np.float32)
    support = rng.normal(size=(5, 6)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1])
    run = jax.jit(  # one compile, not one per eager op
        lambda q, s, y: (
            matching.cosine_attention(q, s),
            matching.episode_log_probs(s, y, q, 3),
        )
    )
    attention, log_probs = run(query, support, labels)
    np.testing.assert_allclose(attention.sum(-1), np.ones(4), rtol=1e-6)
    cos = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        support / np.linalg.norm(support, axis=1, keepdims=True)
    ).T
    want = np.exp(cos) / np.exp(cos).sum(1, keepdims=True)
    np.testing.assert_allclose(attention, want, rtol=1e-5)
    want_probs = np.stack([want[:, labels == c].sum(1) for c in range(3)], 1)
    np.testing.assert_allclose(np.exp(log_probs), want_probs, rtol=1e-5, atol=1e-6)


def test_batchnorm_modes():
    params, stats = jax.jit(embeddings.init, static_argnums=(1, 2, 3))(
        jax.random.key(0), 1, 4, 2
    )
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8, 1)).astype(np.float32)

    @jax.jit  # one compile for all four modes
    def run(params, stats, x):
        a, new = embeddings.apply(params, stats, x, mode="batch")
        b, same = embeddings.apply(params, stats, x, mode="transductive")
        c, _ = embeddings.apply(params, new, x, mode="running")
        # 6 = 4 + 2 images per conv call
        chunked, _ = embeddings.apply(params, stats, x, mode="transductive", chunk=4)
        return a, b, c, chunked, same

    a, b, c, chunked, same = run(params, stats, x)
    np.testing.assert_allclose(a, b)
    chex.assert_trees_all_equal(same, stats)
    chex.assert_shape(a, (2, 3, 4 * 2 * 2))
    assert not np.allclose(a, c)
    np.testing.assert_allclose(chunked, b, rtol=1e-5, atol=1e-6)
