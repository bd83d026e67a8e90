"""Optimizee task families of Andrychowicz et al. 2016 and hand-designed baselines.

arXiv:1606.04474, section 3.1 and 3.2 (Figure 2):
  `Quadratic`  f(theta) = ||W theta - y||^2 with 10x10 W and 10-d y, i.i.d.
               N(0, 1) entries; a task is a batch of such functions optimized
               together (their code trains on 128 at once), loss = the mean.
  `MnistMLP`   one hidden layer of 20 sigmoid units on MNIST (784-20-10),
               cross-entropy on minibatches of 128; a task is a random
               initialisation plus its own sequence of minibatches.

Every family works on a flat parameter vector `theta` (n,), takes the dataset
as an argument (`data`, a dict of arrays or {}), never closing over it, and
offers `sample(key, data) -> (task, theta0)`, `loss(task, data, theta, key)`
(the minibatch loss the optimizer sees) and `full_loss(task, data, theta)` (a
deterministic score: the whole quadratic, or a fixed set of examples).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Quadratic:
    dims: int = 10
    batch: int = 128

    @property
    def num_params(self) -> int:
        return self.dims * self.batch

    def sample(self, key: jax.Array, data: dict):
        del data
        key_w, key_y, key_theta = jax.random.split(key, 3)
        # drawn flat: XLA:CPU compiles n-d normal samplers much slower
        size = self.batch * self.dims
        task = {
            "w": jax.random.normal(key_w, (size * self.dims,)).reshape(
                self.batch, self.dims, self.dims
            ),
            "y": jax.random.normal(key_y, (size,)).reshape(self.batch, self.dims),
        }
        return task, jax.random.normal(key_theta, (self.num_params,))

    def full_loss(self, task: dict, data: dict, theta: jax.Array) -> jax.Array:
        del data
        theta = theta.reshape(self.batch, self.dims)
        residual = jnp.einsum("bij,bj->bi", task["w"], theta) - task["y"]
        return jnp.sum(residual**2, axis=-1).mean()

    def loss(self, task: dict, data: dict, theta: jax.Array, key: jax.Array):
        del key  # deterministic
        return self.full_loss(task, data, theta)


@dataclasses.dataclass(frozen=True)
class MnistMLP:
    """`data` = {"images": (N, 784) uint8, "labels": (N,) int32}."""

    hidden: int = 20
    batch: int = 128
    eval_examples: int = 1000  # full_loss: the first examples of `data`
    # N(0, 0.1^2) weights and biases; the paper's code draws N(0, 0.01^2)
    init_scale: float = 0.1

    @property
    def shapes(self):
        return [(784, self.hidden), (self.hidden,), (self.hidden, 10), (10,)]

    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def unflatten(self, theta: jax.Array):
        out, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(theta[start : start + size].reshape(shape))
            start += size
        return out

    def sample(self, key: jax.Array, data: dict):
        del data
        theta = jax.random.normal(key, (self.num_params,)) * self.init_scale
        return {}, theta

    def _cross_entropy(self, theta, images, labels):
        w1, b1, w2, b2 = self.unflatten(theta)
        x = images.astype(jnp.float32) / 255.0
        logits = jax.nn.sigmoid(x @ w1 + b1) @ w2 + b2
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def loss(self, task: dict, data: dict, theta: jax.Array, key: jax.Array):
        del task
        index = jax.random.randint(key, (self.batch,), 0, data["labels"].shape[0])
        return self._cross_entropy(theta, data["images"][index], data["labels"][index])

    def full_loss(self, task: dict, data: dict, theta: jax.Array) -> jax.Array:
        del task
        count = self.eval_examples
        return self._cross_entropy(
            theta, data["images"][:count], data["labels"][:count]
        )


BASELINES = {
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "adam": optax.adam,
}


def make_baseline(name: str, learning_rate) -> optax.GradientTransformation:
    return optax.inject_hyperparams(BASELINES[name])(learning_rate=learning_rate)


def run_baseline(optimizer, opt_state, family, task, data, theta, keys):
    """Trains `theta` with an optax baseline, one step per key (`lax.scan`).

    Returns:
      (theta and optimizer state after len(keys) steps, minibatch losses
      f_t(theta_t) (T,) for t = 0..T-1, before each step).
    """

    def body(carry, key):
        theta, opt_state = carry
        loss, grad = jax.value_and_grad(family.loss, argnums=2)(task, data, theta, key)
        updates, opt_state = optimizer.update(grad, opt_state, theta)
        return (theta + updates, opt_state), loss

    (theta, opt_state), losses = jax.lax.scan(body, (theta, opt_state), keys)
    return theta, opt_state, losses
