"""Transfer learning vs fine-tuning vs training from scratch, as one vmapped run.

The seed's comparison for a network pretrained on a source task, as in Yosinski
et al., "How transferable are features in deep neural networks?", 2014,
arXiv:1411.1792 (transferred layers retrained or kept fixed) and the fine-tuning
control of Fernando et al. 2017, arXiv:1701.08734. Three ways to learn a target:

  retrain_all   (a) "transfer learning": start from the pretrained body and last
                fully connected layer, new classifier, retrain every weight;
  retrain_top   (b) "fine-tuning": same start, only the last fully connected layer
                and the classifier learn (the body is frozen: its updates are
                masked, so it stays bit-identical);
  scratch       (c) a fresh network of the same shape, every weight trained.

The network is an MLP: `body` (dense ReLU layers, standing in for a CNN's feature
layers), `top` (the last fully connected layer, ReLU) and `head` (the classifier).
Every (method, data fraction, seed) combination is a MEMBER; members' parameters
are stacked on a leading axis and trained together in one jitted step (the loss is
the sum of the members' losses, so each member gets exactly its own gradient, and
Adam is elementwise). A member trains on the first `fraction x N` examples of a
per-seed permutation of the target's training set; the three methods of one
(fraction, seed) share that subset, the new classifier's initial weights and the
minibatch stream (common random numbers), so method differences are paired.

Compute is counted analytically (`train_flops_per_example`), not measured: the
step computes every member's full backward pass and masks the frozen updates, while
a dedicated fine-tuning run would only backpropagate through `top` and `head`.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from shared import draws
from shared.types import Key
from transfer import batches

METHODS = ("retrain_all", "retrain_top", "scratch")


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """Static MLP shape: inputs -> body (hidden ReLU) -> top (ReLU) -> classes."""

    inputs: int = 784
    hidden: tuple[int, ...] = (256, 256)
    top: int = 128
    classes: int = 5

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.inputs, *self.hidden, self.top, self.classes)


def init_stack(key: Key, spec: NetSpec, count: int) -> dict:
    """`count` fresh networks stacked on a leading axis, from ONE uniform draw.

    PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)). One draw
    sliced into every array (a vmapped or per-layer draw cost seconds to tens of
    seconds of XLA compile time on this CPU).

    Returns:
      {"body": (dense, ...), "top": dense, "head": dense}, dense = {"w": (count,
      fan_in, fan_out), "b": (count, fan_out)}.
    """
    widths = spec.widths
    sizes = [(a + 1) * b for a, b in zip(widths, widths[1:], strict=False)]
    flat = draws.flat(
        jax.random.uniform, key, (count, sum(sizes)), minval=-1.0, maxval=1.0
    )
    layers, offset = [], 0
    for fan_in, fan_out, size in zip(widths, widths[1:], sizes, strict=False):
        block = flat[:, offset : offset + size].reshape(count, fan_in + 1, fan_out)
        block = block / np.sqrt(fan_in)
        layers.append({"w": block[:, :-1], "b": block[:, -1]})
        offset += size
    return {"body": tuple(layers[:-2]), "top": layers[-2], "head": layers[-1]}


def init_params(key: Key, spec: NetSpec) -> dict:
    """One fresh network (`init_stack` without the leading axis)."""
    return jax.tree.map(lambda a: a[0], init_stack(key, spec, 1))


def apply(params: dict, x: jax.Array) -> jax.Array:
    """Logits (B, classes) of float inputs (B, inputs)."""
    for layer in (*params["body"], params["top"]):
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params["head"]["w"] + params["head"]["b"]


def trainable_params(spec: NetSpec, method: str) -> int:
    """Number of weights `method` updates."""
    widths = spec.widths
    sizes = [(a + 1) * b for a, b in zip(widths, widths[1:], strict=False)]
    return sum(sizes[-2:]) if method == "retrain_top" else sum(sizes)


def train_flops_per_example(spec: NetSpec, method: str) -> int:
    """Forward + backward FLOPs (2 per multiply-add) of one training example.

    Forward: every layer. Backward: a weight gradient for every trained layer and
    an input gradient for every layer above the lowest trained one.
    """
    macs = [a * b for a, b in zip(spec.widths, spec.widths[1:], strict=False)]
    lowest = len(macs) - 2 if method == "retrain_top" else 0
    return 2 * sum(macs) + 2 * sum(macs[lowest:]) + 2 * sum(macs[lowest + 1 :])


@dataclasses.dataclass(frozen=True)
class Members:
    """The (method, fraction, seed) grid, flattened method-major.

    Attributes:
      method: int (K,) index into METHODS.
      fraction: float (K,) share of the target training set.
      seed: int (K,) seed index.
      train_body: bool (K,) whether the body learns (False for retrain_top).
      subset_size: int (K,) examples the member may draw from.
      order: int32 (K, N) the member's permutation of the training set; it draws
        from the first `subset_size` entries.
    """

    method: np.ndarray
    fraction: np.ndarray
    seed: np.ndarray
    train_body: np.ndarray
    subset_size: np.ndarray
    order: np.ndarray


def make_members(fractions, num_seeds: int, num_train: int, seed: int) -> Members:
    grid = np.array(
        [
            (m, f, s)
            for m in range(len(METHODS))
            for f in range(len(fractions))
            for s in range(num_seeds)
        ]
    )
    permutations = np.stack(
        [
            np.random.default_rng([seed, s]).permutation(num_train)
            for s in range(num_seeds)
        ]
    ).astype(np.int32)
    fraction = np.asarray(fractions, np.float64)[grid[:, 1]]
    return Members(
        method=grid[:, 0],
        fraction=fraction,
        seed=grid[:, 2],
        train_body=grid[:, 0] != METHODS.index("retrain_top"),
        subset_size=np.maximum(1, np.round(fraction * num_train)).astype(np.int32),
        order=permutations[grid[:, 2]],
    )


def init_members(key: Key, pretrained: dict, method, seed, spec: NetSpec) -> dict:
    """Stacked (K, ...) start parameters: pretrained or fresh per the method.

    Every member of seed `s` draws the same fresh network (its head is the new
    classifier of retrain_all / retrain_top, all of it is scratch's start), so
    only the method differs within a (fraction, seed). `scratch` members never
    read `pretrained`.
    """
    # Row s of the stack is seed s's network (K >= seeds rows, one draw).
    fresh = jax.tree.map(lambda a: a[seed], init_stack(key, spec, len(seed)))
    use_pretrained = method != METHODS.index("scratch")

    def pick(pre, new):
        mask = use_pretrained.reshape((-1,) + (1,) * (new.ndim - 1))
        return jnp.where(mask, pre[None], new)

    start = {
        part: jax.tree.map(pick, pretrained[part], fresh[part])
        for part in ("body", "top")
    }
    return {**start, "head": fresh["head"]}


@flax.struct.dataclass
class MembersState:
    """params: stacked (K, ...) member networks; opt_state; step."""

    params: dict
    opt_state: optax.OptState
    step: jax.Array


def make_step(optimizer: optax.GradientTransformation):
    """The fit step `(state, batch, key, constants) -> (state, metrics)`.

    `batch["index"]` int (K, B): the members' example ids; `constants` holds the
    target's `images` uint8 (N, inputs), `labels` (N,) and the members'
    `train_body` bool (K,).
    """

    def member_loss(params, images, labels):
        logits = apply(params, images.astype(jnp.float32) / 255.0)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return loss.mean(), (logits.argmax(-1) == labels).mean()

    def total_loss(params, images, labels):
        loss, acc = jax.vmap(member_loss)(params, images, labels)
        return loss.sum(), (loss, acc)

    def step(state: MembersState, batch, key, constants):
        del key  # minibatches come from the host sampler
        images = constants["images"][batch["index"]]
        labels = constants["labels"][batch["index"]]
        grads, (loss, acc) = jax.grad(total_loss, has_aux=True)(
            state.params, images, labels
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        train_body = constants["train_body"]
        updates["body"] = jax.tree.map(
            lambda u: jnp.where(
                train_body.reshape((-1,) + (1,) * (u.ndim - 1)), u, jnp.zeros_like(u)
            ),
            updates["body"],
        )
        new = state.replace(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            step=state.step + 1,
        )
        return new, {"train/loss": loss.mean(), "train/accuracy": acc.mean()}

    return step


def member_accuracy(params: dict, images, labels) -> jax.Array:
    """(K,) accuracy of every stacked member on uint8 `images` (N, inputs)."""
    x = images.astype(jnp.float32) / 255.0
    logits = jax.vmap(apply, in_axes=(0, None))(params, x)
    return (logits.argmax(-1) == labels).mean(axis=-1)


class MemberBatches(batches.SeededBatches):
    """Per-member minibatch ids `index` (K, B), forever; resumable by position.

    Member k draws uniformly with replacement from `order[k, :subset_size[k]]`;
    step `r`'s draw is a pure function of `(seed, r)`, and every member of one
    (fraction, seed) uses the same uniforms, so their minibatches coincide.
    See `transfer.batches` for the position seeding.
    """

    def __init__(self, members: Members, batch_size: int, seed: int):
        super().__init__(seed)
        self._members, self._batch_size = members, batch_size

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        uniforms = rng.random((self._members.seed.max() + 1, self._batch_size))
        draws = uniforms[self._members.seed]  # (K, B), shared within a seed
        take = (draws * self._members.subset_size[:, None]).astype(np.int64)
        index = np.take_along_axis(self._members.order, take, axis=1)
        return {"index": index.astype(np.int32)}
