"""REINFORCE for the ENAS controller, with a moving-average baseline.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.2 (Eq. 1, Williams 1992 REINFORCE) and the official
`general_controller.build_trainer` (github.com/melodyguan/enas).

For each sampled architecture m with reward R_m (validation-minibatch accuracy
of the child with shared weights, plus `entropy_weight * H(m)`):
    b <- b - (1 - decay) * (b - R_m)         (updated before use, as official)
    loss_m = -log p(m) * (R_m - b) + skip_weight * KL_skip(m)
and Adam steps on the mean loss over the aggregated samples.

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
    rollouts = controller_lib.sample(state.params, config, key, num_samples)
    accuracy = reward_fn(rollouts.arch)
    rewards = accuracy + entropy_weight * rollouts.entropy
    advantage, baseline = advantages(rewards, state.baseline, baseline_decay)
    value, grads = jax.value_and_grad(loss)(
        state.params, config, rollouts.arch, advantage, skip_weight
    )
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
