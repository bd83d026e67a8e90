import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import episodes as episodes_lib
from tests.metalearn import helpers

N, K, Q = 3, 2, 3


@pytest.fixture(scope="module")
def sample():
    return jax.jit(episodes_lib.sample_episode, static_argnums=(2, 3, 4))


def test_shapes_dtypes_and_labels(sample):
    data = helpers.marked_data(rotations=True)
    episode = sample(jax.random.key(0), data, N, K, Q)
    size = helpers.SIZE
    chex.assert_shape(episode.support_x, (N * K, size, size, 1))
    chex.assert_shape(episode.query_x, (N * Q, size, size, 1))
    chex.assert_type([episode.support_x, episode.query_x], jnp.float32)
    np.testing.assert_array_equal(episode.support_y, np.repeat(np.arange(N), K))
    np.testing.assert_array_equal(episode.query_y, np.repeat(np.arange(N), Q))


@pytest.mark.parametrize("rotations", [False, True])
def test_classes_distinct_and_support_query_disjoint(sample, rotations):
    data = helpers.marked_data(rotations)
    seen_rotation = False
    for seed in range(8):
        episode = sample(jax.random.key(seed), data, N, K, Q)
        support = [helpers.decode(x) for x in episode.support_x]
        query = [helpers.decode(x) for x in episode.query_x]
        classes = {}
        for (cls, _, turns), label in zip(
            support + query,
            np.concatenate([episode.support_y, episode.query_y]),
            strict=True,
        ):
            classes.setdefault(int(label), set()).add(cls)
            seen_rotation |= turns > 0
            assert cls < data.num_classes
        one_class_per_label = [next(iter(v)) for v in classes.values()]
        assert all(len(v) == 1 for v in classes.values())
        assert len(set(one_class_per_label)) == N  # distinct classes
        for label in range(N):
            s = {
                d
                for (c, d, _), y in zip(support, episode.support_y, strict=True)
                if y == label
            }
            q = {
                d
                for (c, d, _), y in zip(query, episode.query_y, strict=True)
                if y == label
            }
            assert len(s) == K and len(q) == Q and not s & q
    assert seen_rotation == rotations


def test_deterministic_from_key(sample):
    data = helpers.marked_data(rotations=True)
    a = sample(jax.random.key(3), data, N, K, Q)
    b = sample(jax.random.key(3), data, N, K, Q)
    c = sample(jax.random.key(4), data, N, K, Q)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a.support_x, c.support_x)


def test_meta_batch_vmap_equals_python_loop(sample):
    data = helpers.marked_data(rotations=True)
    key = jax.random.key(7)
    meta = jax.jit(episodes_lib.sample_meta_batch, static_argnums=(2, 3, 4, 5))
    batch = meta(key, data, 4, N, K, Q)
    chex.assert_shape(batch.query_x, (4, N * Q, helpers.SIZE, helpers.SIZE, 1))
    for i, episode_key in enumerate(jax.random.split(key, 4)):
        single = sample(episode_key, data, N, K, Q)
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], batch), single)


def test_rotate_matches_numpy():
    images = np.random.default_rng(0).random((4, 5, 5, 1), np.float32)
    turns = jnp.array([0, 1, 2, 3])
    rotated = jax.jit(episodes_lib._rotate)(images, turns)
    for i in range(4):
        want = np.rot90(np.asarray(images[i]), i, axes=(0, 1))
        np.testing.assert_array_equal(rotated[i], want)


def test_fixed_episode_keys_are_fixed():
    a = episodes_lib.fixed_episode_keys(5, 3)
    b = episodes_lib.fixed_episode_keys(5, 3)
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))


def test_omniglot_splits():
    train, _ = episodes_lib.load_omniglot("vinyals", "train")
    test, source = episodes_lib.load_omniglot("vinyals", "test")
    assert train.shape == (1200, 20, 28, 28, 1) and test.shape == (423, 20, 28, 28, 1)
    assert train.dtype == np.uint8 and "vinyals/test" in source
    # ink = 255: strokes are a minority of pixels
    assert (train > 127).mean() < 0.3
    background, _ = episodes_lib.load_omniglot("official", "train")
    evaluation, _ = episodes_lib.load_omniglot("official", "test")
    assert background.shape[0] == 964 and evaluation.shape[0] == 659
    np.testing.assert_array_equal(train[:964], background)
    np.testing.assert_array_equal(test, evaluation[-423:])
