"""REINFORCE: baseline arithmetic, gradient sign, skip-penalty term, a toy bandit."""

import jax
import jax.numpy as jnp
import numpy as np

from nas import controller as controller_lib
from nas import reinforce
from nas import search_space as space_lib

CONFIG = controller_lib.ControllerConfig(space_lib.macro_space(2), lstm_size=8)


def test_baseline_is_updated_before_each_advantage():
    rewards = jnp.array([1.0, 0.0, 0.5])
    advantage, baseline = reinforce.advantages(rewards, jnp.float32(0.2), 0.9)
    b, expected = 0.2, []
    for r in [1.0, 0.0, 0.5]:
        b = b - 0.1 * (b - r)
        expected.append(r - b)
    np.testing.assert_allclose(advantage, expected, rtol=1e-6)
    np.testing.assert_allclose(baseline, b, rtol=1e-6)


def test_gradient_sign_and_skip_penalty_term():
    params = controller_lib.init(jax.random.key(0), CONFIG)
    archs = jnp.array([[3, 3, 0], [3, 3, 1]], jnp.int32)  # op 3 at both layers

    @jax.jit  # one compiled graph for every quantity of this test
    def quantities(params):
        grad = jax.grad(reinforce.loss)
        up = grad(params, CONFIG, archs, jnp.ones(2), 0.0)["b_soft"]
        down = grad(params, CONFIG, archs, -jnp.ones(2), 0.0)["b_soft"]
        scored = controller_lib.score(params, CONFIG, archs)
        with_penalty = reinforce.loss(params, CONFIG, archs, jnp.ones(2), 0.8)
        without = reinforce.loss(params, CONFIG, archs, jnp.ones(2), 0.0)
        penalty = (with_penalty - without, 0.8 * scored.skip_penalty.mean())
        return up, down, penalty

    up, down, penalty = quantities(params)
    # a positive advantage lowers the loss by raising op 3's logit, and only it
    assert up[3] < 0 and (np.delete(np.asarray(up), 3) > 0).all()
    np.testing.assert_allclose(down, -up, rtol=1e-5)
    np.testing.assert_allclose(*penalty, rtol=1e-5)


def test_toy_bandit_learns_the_rewarded_op():
    optimizer = reinforce.make_optimizer(0.05)
    state = reinforce.init_state(jax.random.key(0), CONFIG, optimizer)

    def reward_fn(archs):  # reward 1 when layer 0 uses op 3 (sep_conv5x5)
        return (archs[:, 0] == 3).astype(jnp.float32)

    update = jax.jit(
        lambda s, k: reinforce.update(
            s,
            k,
            CONFIG,
            optimizer,
            reward_fn,
            num_samples=16,
            entropy_weight=1e-4,
            baseline_decay=0.9,
            skip_weight=0.8,
        )
    )
    rewards = []
    for i in range(40):
        state, metrics = update(state, jax.random.key(i + 1))
        rewards.append(float(metrics["controller/valid_accuracy"]))
    assert np.mean(rewards[:5]) < 0.4 and np.mean(rewards[-5:]) > 0.6, rewards
    assert 0.0 < float(state.baseline) <= 1.0
