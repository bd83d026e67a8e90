"""REINFORCE for the ENAS controller, with a moving-average baseline.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.2 (Eq. 1, Williams 1992 REINFORCE) and the official
`general_controller.build_trainer` (github.com/melodyguan/enas).

For each sampled architecture m with reward R_m (validation-minibatch accuracy
of the child with shared weights, plus `entropy_weight * H(m)`):
    b <- b - (1 - decay) * (b - R_m)         (updated before use, as official)
    loss_m = -log p(m) * (R_m - b) + skip_weight * KL_skip(m)
and Adam steps on the mean loss over the aggregated samples. `update` takes the
gradient through the sampling pass itself (actions are integers, so only the
log-probabilities carry gradient): equal to `loss` on the sampled archs, with
one rollout in the compiled graph instead of a sampling and a scoring one.

Where the paper and the official code differ, and what is followed here:

| point        | paper            | official code             | here              |
|--------------|------------------|---------------------------|-------------------|
| optimizer    | Adam, lr 3.5e-4  | Adam lr 1e-3 (macro),     | official          |
|              |                  | beta1 = 0, eps = 1e-3     |                   |
| baseline     | moving average   | decay 0.99, starts at 0,  | official, scanned |
|              |                  | updated before use        | over the samples  |
| entropy      | "entropy term"   | -log p(a) * p(a) per      | exact entropy per |
|              |                  | decision (one sample)     | decision          |
| skip penalty | KL to 0.4, w 0.8 | KL of sigmoid([-q, q])    | KL of the sampled |
|              |                  | (not the sampled probs)   | softmax([-q, q])  |
| samples/step | not stated       | 20, gradients averaged    | `num_aggregate`   |
| schedule     | after each child | 50 steps after each child | one update every  |
|              | epoch            | epoch                     | `controller_every`|
|              |                  |                           | child steps       |
"""

from __future__ import annotations

from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import optax

from nas import controller as controller_lib


@flax.struct.dataclass
class ControllerState:
    params: dict[str, jax.Array]
    opt_state: optax.OptState
    baseline: jax.Array  # () float32


def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam with the official controller settings (beta1 = 0, eps = 1e-3)."""
    return optax.adam(learning_rate, b1=0.0, eps=1e-3)


def init_state(
    key: jax.Array,
    config: controller_lib.ControllerConfig,
    optimizer: optax.GradientTransformation,
) -> ControllerState:
    params = controller_lib.init(key, config)
    return ControllerState(params, optimizer.init(params), jnp.zeros((), jnp.float32))


def advantages(
    rewards: jax.Array, baseline: jax.Array, decay: float
) -> tuple[jax.Array, jax.Array]:
    """(num,) advantages R_m - b_m with b updated before each use; final b."""

    def step(b, reward):
        b = b - (1.0 - decay) * (b - reward)
        return b, reward - b

    baseline, advantage = jax.lax.scan(step, baseline, rewards)
    return advantage, baseline


def loss(
    params: dict[str, jax.Array],
    config: controller_lib.ControllerConfig,
    archs: jax.Array,
    advantage: jax.Array,
    skip_weight: float,
) -> jax.Array:
    """Mean over samples of -log p(arch) * advantage + skip_weight * KL_skip."""
    scored = controller_lib.score(params, config, archs)
    policy = -(scored.log_prob * jax.lax.stop_gradient(advantage)).mean()
    return policy + skip_weight * scored.skip_penalty.mean()


def update(
    state: ControllerState,
    key: jax.Array,
    config: controller_lib.ControllerConfig,
    optimizer: optax.GradientTransformation,
    reward_fn: Callable[[jax.Array], jax.Array],
    *,
    num_samples: int,
    entropy_weight: float,
    baseline_decay: float,
    skip_weight: float,
) -> tuple[ControllerState, dict[str, jax.Array]]:
    """One controller step: sample, reward, baseline, policy gradient, Adam.

    Args:
      reward_fn: (num_samples, length) int32 archs -> (num_samples,) rewards.
    """

    def sampled_loss(params):
        # Sampling inside the differentiated function: the rollout's log-prob is
        # differentiable in `params` and its integer actions are not, so this
        # equals `loss` on the sampled archs without a second (scoring) rollout.
        rollouts = controller_lib.sample(params, config, key, num_samples)
        archs = rollouts.arch
        accuracy = jax.lax.stop_gradient(reward_fn(archs))
        entropy = jax.lax.stop_gradient(rollouts.entropy)
        rewards = accuracy + entropy_weight * entropy
        advantage, baseline = advantages(rewards, state.baseline, baseline_decay)
        policy = -(rollouts.log_prob * advantage).mean()
        value = policy + skip_weight * rollouts.skip_penalty.mean()
        return value, (rollouts, accuracy, rewards, baseline)

    (value, aux), grads = jax.value_and_grad(sampled_loss, has_aux=True)(state.params)
    rollouts, accuracy, rewards, baseline = aux
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "controller/loss": value,
        "controller/reward": rewards.mean(),
        "controller/valid_accuracy": accuracy.mean(),
        "controller/baseline": baseline,
        "controller/entropy": rollouts.entropy.mean(),
        "controller/log_prob": rollouts.log_prob.mean(),
        "controller/skip_rate": rollouts.skip_count.mean()
        / max(1, config.space.size * (config.space.size - 1) // 2),
    }
    return ControllerState(params, opt_state, baseline), metrics
