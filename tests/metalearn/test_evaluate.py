import jax
import numpy as np

from metalearn import evaluate, maml, protonets
from tests.metalearn import helpers


def test_confidence_interval_by_hand():
    mean, half = evaluate.confidence_interval([1.0, 0.0, 1.0, 1.0])
    # mean 0.75; sample std sqrt(((0.25^2)*3 + 0.75^2) / 3) = 0.5
    assert mean == 0.75
    np.testing.assert_allclose(half, 1.96 * 0.5 / 2.0)


def test_fixed_test_episodes_are_deterministic():
    learner = protonets.ProtoNet(hidden=8, depth=2, test_bn="transductive")
    params, stats = jax.jit(learner.init)(jax.random.key(0))
    data = helpers.marked_data(rotations=True)
    kwargs = dict(n_way=3, k_shot=1, n_query=2, num_episodes=7, chunk_episodes=4)
    first = evaluate.make_evaluator(learner, data, seed=0, **kwargs)(params, stats)
    again = evaluate.make_evaluator(learner, data, seed=0, **kwargs)(params, stats)
    other = evaluate.make_evaluator(learner, data, seed=1, **kwargs)(params, stats)
    assert first.shape == (7,)
    np.testing.assert_array_equal(first, again)
    assert ((first >= 0) & (first <= 1)).all()
    assert not np.array_equal(first, other)


def test_episodes_one_at_a_time_equal_the_vmapped_chunk():
    data = helpers.marked_data(rotations=True)
    keys = jax.random.split(jax.random.key(3), 5)
    sizes = (data.num_base, data.rotations, 3, 1, 2)
    learners = [
        protonets.ProtoNet(hidden=8, depth=2, test_bn="transductive"),
        maml.MAML(n_way=3, hidden=8, depth=2, image_size=helpers.SIZE, test_steps=2),
    ]
    for learner in learners:
        params, stats = jax.jit(learner.init)(jax.random.key(0))
        args = (learner, sizes, params, stats, data.images, keys)
        one = evaluate._chunk_accuracy(*args, True)
        chunk = evaluate._chunk_accuracy(*args, False)
        assert one.shape == (5,)
        np.testing.assert_array_equal(one, chunk)
