"""MAML and Meta-SGD: learn an initialisation that adapts in a few gradient steps.

Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", 2017, arXiv:1703.03400 (Table 1 Omniglot rows, Figure 2 sinusoids);
Li, Zhou, Chen, Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot
Learning", 2017, arXiv:1707.09835 (learned per-parameter inner rates).

`adapt` is the inner loop for any `loss_fn(params, x, y)`: a `lax.scan` over
steps of an optax inner optimizer (or Meta-SGD rates), second order by default
(the meta-gradient flows through the inner gradients), `first_order=True` stops
it there (FOMAML), `remat=True` wraps each step in `jax.checkpoint` so the
backward pass recomputes the step instead of storing its activations.

`MAML` is the Omniglot learner over Conv-4 (+ a linear N-way head) with the
interface of `protonets.py`. BatchNorm always uses each task's batch statistics
(transductive, as Finn et al.'s code does). Tasks have their own adapted
weights, so they cannot share one convolution batch; `task_loop="unroll"` runs
them as a Python loop inside the jitted step, `"vmap"` batches them (grouped
convolutions: far slower on XLA:CPU, see shared/PERF-NOTES.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from metalearn import embeddings
from metalearn.episodes import Episode
from metalearn.protonets import cross_entropy_metrics


def adapt(
    loss_fn: Callable,
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    rates=None,
    first_order: bool = False,
    remat: bool = False,
):
    """Adapts `params` to (x, y) with `steps` inner steps.

    Args:
      loss_fn: `(params, x, y) -> scalar` support loss.
      params: the initialisation (a pytree).
      x, y: the support set.
      steps: inner steps (0 returns `params`).
      optimizer: the optax inner optimizer; used when `rates` is None.
      rates: Meta-SGD per-parameter rates (a pytree like `params`): each step is
        `params - rates * grad`.
      first_order: drop the second-order terms of the meta-gradient.
      remat: `jax.checkpoint` each inner step (memory for recomputation).

    Returns:
      The adapted parameters.
    """
    if rates is None and optimizer is None:
        raise ValueError("adapt needs an optax `optimizer` or Meta-SGD `rates`")
    grad_fn = jax.grad(loss_fn)

    def step(carry, _):
        current, opt_state = carry
        grads = grad_fn(current, x, y)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        if rates is not None:
            updates = jax.tree.map(lambda rate, g: -rate * g, rates, grads)
        else:
            updates, opt_state = optimizer.update(grads, opt_state, current)
        return (optax.apply_updates(current, updates), opt_state), None

    if remat:
        step = jax.checkpoint(step)
    opt_state = optimizer.init(params) if rates is None else ()
    (adapted, _), _ = jax.lax.scan(step, (params, opt_state), None, length=steps)
    return adapted


@dataclasses.dataclass(frozen=True)
class MAML:
    """MAML / Meta-SGD learner over Conv-4 with an `n_way` linear head.

    Attributes:
      n_way: classes of every episode (train and test ways must agree).
      hidden, depth, in_channels, image_size: Conv-4 shape.
      inner_lr: inner SGD rate (and the Meta-SGD rates' initial value).
      train_steps, test_steps: inner steps when meta-training / evaluating.
      first_order: FOMAML.
      meta_sgd: learn per-parameter inner rates (`params["rates"]`).
      remat: `jax.checkpoint` each inner step.
      task_loop: `unroll` (Python loop over tasks) or `vmap`.
      chunk: conv batch chunk size, 0 = none (a CPU speed knob).
      conv_impl: `auto`, `xla`, `winograd` or `matmul` (`embeddings.CONV_IMPLS`,
        a CPU speed knob).
      block_vjp: with the matmul conv, give every forward that is
        differentiated only once the hand-written block backward
        (`conv_block.py`): the query forward, and the support forward under
        `first_order`. The support forward of second-order MAML keeps
        autodiff's backward, which the meta-gradient differentiates again.
    """

    n_way: int = 5
    hidden: int = 64
    depth: int = 4
    in_channels: int = 1
    image_size: int = 28
    inner_lr: float = 0.4
    train_steps: int = 1
    test_steps: int = 3
    first_order: bool = False
    meta_sgd: bool = False
    remat: bool = False
    task_loop: str = "unroll"
    chunk: int = 0
    conv_impl: str = "auto"
    block_vjp: bool = True

    def init(self, key: jax.Array):
        key_conv, key_head = jax.random.split(key)
        conv, stats = embeddings.init(
            key_conv, self.in_channels, self.hidden, self.depth
        )
        dim = embeddings.output_dim(self.image_size, self.hidden, self.depth)
        head = {
            "w": embeddings.normal(key_head, (dim, self.n_way)) / jnp.sqrt(dim),
            "b": jnp.zeros((self.n_way,)),
        }
        params = {"net": {"conv": conv, "head": head}}
        if self.meta_sgd:
            params["rates"] = jax.tree.map(
                lambda p: jnp.full_like(p, self.inner_lr), params["net"]
            )
        return params, stats

    def forward(self, net, stats, x: jax.Array, once: bool = False) -> jax.Array:
        """(B, H, W, C) images of one task -> (B, n_way) logits.

        `once`: this forward is differentiated at most once, so it may use the
        hand-written block backward (`block_vjp`)."""
        conv_impl = embeddings.resolve_conv_impl(self.conv_impl)
        features, _ = embeddings.apply(
            net["conv"],
            stats,
            x[None],
            mode="transductive",
            chunk=self.chunk,
            conv_impl=conv_impl,
            block_vjp=once and self.block_vjp and conv_impl == "matmul",
        )
        return features[0] @ net["head"]["w"] + net["head"]["b"]

    def _adapt(self, params, stats, support_x, support_y, steps: int):
        def loss_fn(net, x, y):
            logits = self.forward(net, stats, x, once=self.first_order)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return adapt(
            loss_fn,
            params["net"],
            support_x,
            support_y,
            steps=steps,
            optimizer=optax.sgd(self.inner_lr),
            rates=params.get("rates"),
            first_order=self.first_order,
            remat=self.remat,
        )

    def _logits(self, params, stats, episodes: Episode, steps: int) -> jax.Array:
        def one(support_x, support_y, query_x):
            net = self._adapt(params, stats, support_x, support_y, steps)
            return self.forward(net, stats, query_x, once=True)

        if self.task_loop == "vmap":
            return jax.vmap(one)(
                episodes.support_x, episodes.support_y, episodes.query_x
            )
        tasks = episodes.support_x.shape[0]
        return jnp.stack(
            [
                one(episodes.support_x[i], episodes.support_y[i], episodes.query_x[i])
                for i in range(tasks)
            ]
        )

    def episode_loss(self, params, stats, episodes: Episode, n_way: int):
        self._check_way(n_way)
        logits = self._logits(params, stats, episodes, self.train_steps)
        loss, accuracy = cross_entropy_metrics(logits, episodes.query_y)
        return loss, ({"loss": loss, "accuracy": accuracy}, stats)

    def predict(self, params, stats, episodes: Episode, n_way: int) -> jax.Array:
        self._check_way(n_way)
        return self._logits(params, stats, episodes, self.test_steps)

    def _check_way(self, n_way: int) -> None:
        if n_way != self.n_way:
            raise ValueError(
                f"this MAML head has {self.n_way} outputs but episodes are "
                f"{n_way}-way; set train_way = test_way."
            )
