"""The spine's reference consumer: a small CNN classifier on MNIST.

It exercises the whole path (scripts.train -> shared.data -> fit -> checkpoints
-> metrics) and is the model the spine's tests and loop-overhead benchmark drive.
Architecture: conv 5x5x32 - ReLU - pool 2 - conv 5x5x64 - ReLU - pool 2 -
dense 128 - ReLU - dense 10, Adam. Pooling is reshape-and-max, which is 1.5x
faster than `reduce_window` on XLA:CPU (../shared/PERF-NOTES.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from shared import data as data_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.batches import BatchIterator, iterate_once


class CNN(nnx.Module):
    """(B, 28, 28, 1) float images -> (B, num_classes) logits."""

    def __init__(self, num_classes: int, width: int, hidden: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, width, (5, 5), rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (5, 5), rngs=rngs)
        self.dense1 = nnx.Linear(7 * 7 * 2 * width, hidden, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = max_pool_2x2(jax.nn.relu(self.conv1(x)))
        x = max_pool_2x2(jax.nn.relu(self.conv2(x)))
        x = jax.nn.relu(self.dense1(x.reshape(x.shape[0], -1)))
        return self.dense2(x)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool of (B, H, W, C) with even H, W."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@flax.struct.dataclass
class TrainState:
    params: nnx.State
    opt_state: optax.OptState
    step: jax.Array


def make_model(config: ml_collections.ConfigDict, key: jax.Array):
    model = CNN(config.num_classes, config.width, config.hidden, nnx.Rngs(key))
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, params


def make_step(graphdef, optimizer: optax.GradientTransformation):
    """The pure training step `(state, batch, key) -> (state, metrics)`."""

    def loss_fn(params, images, labels):
        logits = nnx.merge(graphdef, params)(images)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        accuracy = (logits.argmax(-1) == labels).mean()
        return loss, accuracy

    def step(state: TrainState, batch: Mapping[str, jax.Array], key):
        del key  # deterministic model: no dropout
        images = batch["image"].astype(jnp.float32) / 255.0
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, accuracy), grads = grad_fn(state.params, images, batch["label"])
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            params=params, opt_state=opt_state, step=state.step + 1
        )
        return new_state, {"train/loss": loss, "train/accuracy": accuracy}

    return step


def make_eval(graphdef, images: np.ndarray, labels: np.ndarray, batch_size: int):
    """`state -> {"accuracy", "loss"}` over every example of a held-out split."""

    @jax.jit
    def batch_stats(params, images, labels):
        logits = nnx.merge(graphdef, params)(images.astype(jnp.float32) / 255.0)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return losses.sum(), (logits.argmax(-1) == labels).sum()

    def evaluate(state: TrainState) -> dict[str, float]:
        total_loss, correct = 0.0, 0
        for batch in iterate_once({"x": images, "y": labels}, batch_size):
            loss, hits = batch_stats(state.params, batch["x"], batch["y"])
            total_loss += float(loss)
            correct += int(hits)
        return {"accuracy": correct / len(labels), "loss": total_loss / len(labels)}

    return evaluate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the classifier, writes `summary.json`, returns the summary."""
    train, test = data_lib.load_train_test(config)
    workdir_lib.write_json(
        workdir, "data.json", {"train": train.source, "test": test.source}
    )
    key_init, key_train = jax.random.split(jax.random.key(config.seed))
    graphdef, params = make_model(config, key_init)
    optimizer = optax.adam(config.learning_rate)
    state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    batches = BatchIterator(
        {"image": train.images, "label": train.labels}, config.batch_size, config.seed
    )
    num_steps = config.num_epochs * batches.batches_per_epoch
    start = time.time()
    result = train_loop.fit(
        make_step(graphdef, optimizer),
        state,
        workdir=workdir,
        num_steps=num_steps,
        key=key_train,
        batches=batches,
        eval_fn=make_eval(graphdef, test.images, test.labels, config.eval_batch_size),
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
    )
    summary = {
        "test_accuracy": result.eval_metrics["eval/accuracy"],
        "test_loss": result.eval_metrics["eval/loss"],
        "steps": num_steps,
        "steps_per_second": result.steps_per_second,
        "wall_seconds_this_run": time.time() - start,
        "resumed_from_step": result.start_step,
        "data_source": train.source,
        "device": jax.devices()[0].device_kind,
    }
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
