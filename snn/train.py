"""Trains spiking (and twin ANN) classifiers on MNIST with surrogate-gradient BPTT.

    python -m scripts.train --config=snn/configs/mnist_mlp.py:quick --workdir=DIR

The step draws the rate-coded input from its key (`encoding.rate`), runs the
network time-major with full BPTT (or checkpointed / truncated, see
`network.Network`) and applies Adam. Evaluation encodes the test set with a fixed
key, so it is deterministic, and reports accuracy, loss and per-sample operation
counts (`snn.ops`). With `config.figures` the run writes a spike raster and
membrane trace of one test sample and the accuracy-vs-operations sweep
(`snn.figures`).
"""

from __future__ import annotations

import functools
import os
import time
import types
from collections.abc import Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from shared import data as data_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.batches import BatchIterator, iterate_once
from shared.errors import ConfigError
from snn import encoding
from snn import network as network_lib
from snn import neurons as neurons_lib
from snn import ops as ops_lib

ENCODERS = ("rate", "latency")


@flax.struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    step: jax.Array


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Area rules; raises ConfigError naming the field and the fix."""
    choices = {
        "model": ("mlp", "conv"),
        "encoder": ENCODERS,
        "loss": tuple(encoding.LOSSES),
        "neuron": tuple(neurons_lib.NEURONS),
        "reset": neurons_lib.RESETS,
        "schedule": network_lib.SCHEDULES,
    }
    for field, allowed in choices.items():
        if config[field] not in allowed:
            raise ConfigError(
                f"config.{field}={config[field]!r} is not one of {allowed}; "
                f"set --config.{field}."
            )
    if config.time_steps < 1:
        raise ConfigError("config.time_steps must be >= 1; set --config.time_steps.")
    if not 0.0 < config.beta <= 1.0:
        raise ConfigError(f"config.beta={config.beta} must be in (0, 1].")
    if config.truncate < 0:
        raise ConfigError("config.truncate must be >= 0 (0 = full BPTT).")
    make_network(config)  # surrogate name/scale


def make_network(config: ml_collections.ConfigDict) -> network_lib.Network:
    if config.model == "mlp":
        layers = network_lib.mlp_layers(tuple(config.hidden), config.num_classes)
        input_shape = (784,)
    else:
        layers = network_lib.cnn_layers(tuple(config.channels), 5, config.num_classes)
        input_shape = (28, 28, 1)
    neuron = neurons_lib.make_neuron(
        config.neuron,
        beta=config.beta,
        threshold=config.threshold,
        reset=config.reset,
        surrogate=config.surrogate,
        scale=config.surrogate_scale,
        learn_beta=config.learn_beta,
        learn_threshold=config.learn_threshold,
    )
    readout = encoding.LOSSES[config.loss][0]
    return network_lib.Network(
        layers,
        input_shape,
        neuron,
        readout=readout,
        spiking=config.spiking,
        remat=config.remat,
        truncate=config.truncate,
        schedule=config.schedule,
    )


def make_encoder(config: ml_collections.ConfigDict, net: network_lib.Network):
    """`(key, uint8 images (B, 28, 28, 1)) -> network input` for this config."""

    def encode(key, images, time_steps=config.time_steps):
        images = images.reshape(images.shape[0], *net.input_shape)
        if not net.spiking:
            return images.astype(jnp.float32) / 255.0
        if config.encoder == "rate":
            return encoding.rate(key, images, time_steps)
        return encoding.latency(images, time_steps)

    return encode


def make_loss(config: ml_collections.ConfigDict, net: network_lib.Network):
    """`(params, inputs, labels) -> (loss, (scores, outputs))`."""
    kind, loss_fn = encoding.LOSSES[config.loss]

    def loss(params, inputs, labels):
        outputs = net.apply(params, inputs)
        if not net.spiking:
            logits = outputs["logits"]
            value = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            return value.mean(), (logits, outputs)
        return loss_fn(outputs[kind], labels), (
            encoding.decode(outputs, config.loss),
            outputs,
        )

    return loss


def make_step(config, net, optimizer):
    """The pure training step `(state, batch, key) -> (state, metrics)`."""
    encode, loss_fn = make_encoder(config, net), make_loss(config, net)

    def step(state: TrainState, batch: Mapping[str, jax.Array], key):
        inputs = encode(key, batch["image"])
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (scores, outputs)), grads = grad_fn(state.params, inputs, batch["label"])
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "train/loss": loss,
            "train/accuracy": (scores.argmax(-1) == batch["label"]).mean(),
        }
        if net.spiking and len(net.layers) > 1:
            metrics["train/hidden_spike_rate"] = outputs["layer_inputs"][1].mean()
        new_state = state.replace(
            params=params, opt_state=opt_state, step=state.step + 1
        )
        return new_state, metrics

    return step


def with_thresholds(net: network_lib.Network, params: dict, factor: float = 1.0):
    """`params` with every spiking layer's threshold as an array, times `factor`.

    A threshold held in the parameters is traced, not static, so evaluating
    one net at many thresholds (the accuracy-vs-operations sweep) compiles once.
    """
    if not net.spiking:
        return params
    neurons = []
    for index, neuron_params in enumerate(params["neurons"]):
        neuron = net.neuron_at(index)
        if hasattr(neuron, "threshold"):
            size = net.layers[index].features
            default = jnp.full((size,), neuron.threshold, jnp.float32)
            threshold = neuron_params.get("threshold", default)
            neuron_params = {**neuron_params, "threshold": factor * threshold}
        neurons.append(neuron_params)
    return {**params, "neurons": neurons}


@functools.cache
def _batch_stats(net, encoder: str, loss: str, time_steps: int):
    """Jitted `(params, images, labels, key) -> (loss sum, hits, SynOps sums)`.

    Cached on its static arguments, so the final evaluation and the sweep
    point with the same T share one compile.
    """
    static = types.SimpleNamespace(encoder=encoder, loss=loss, time_steps=time_steps)
    encode, loss_fn = make_encoder(static, net), make_loss(static, net)

    @jax.jit
    def batch_stats(params, images, labels, key):
        inputs = encode(key, images)
        value, (scores, outputs) = loss_fn(params, inputs, labels)
        hits = (scores.argmax(-1) == labels).sum()
        if not net.spiking:
            return value * len(labels), hits, jnp.zeros(len(net.layers))
        synops = ops_lib.synaptic_ops(net, outputs["layer_inputs"])
        return value * len(labels), hits, jnp.stack(synops) * len(labels)

    return batch_stats


def make_eval(config, net, images, labels, key, time_steps=None):
    """`(params, threshold_factor=1) -> {"accuracy", "loss", "ops/..."}`.

    Over every example of `images`; the input spikes of batch `i` use
    `fold_in(key, i)`: deterministic.
    """
    time_steps = time_steps or config.time_steps
    batch_stats = _batch_stats(net, config.encoder, config.loss, time_steps)

    def evaluate(params, threshold_factor: float = 1.0) -> dict[str, float]:
        params = with_thresholds(net, params, threshold_factor)
        total_loss, correct, synops = 0.0, 0, np.zeros(len(net.layers))
        batches = iterate_once({"x": images, "y": labels}, config.eval_batch_size)
        for index, batch in enumerate(batches):
            loss, hits, ops = batch_stats(
                params, batch["x"], batch["y"], jax.random.fold_in(key, index)
            )
            total_loss += float(loss)
            correct += int(hits)
            synops += np.asarray(ops)
        result = {"accuracy": correct / len(labels), "loss": total_loss / len(labels)}
        if net.spiking:
            result.update(ops_lib.summary(net, list(synops / len(labels)), time_steps))
        else:
            result["ops/ann_macs"] = float(sum(ops_lib.dense_macs(net)))
        return result

    return evaluate


def _keys(seed: int) -> jax.Array:
    """(init, train, eval) keys of a run."""
    return jax.random.split(jax.random.key(seed), 3)


def fit_and_evaluate(config, workdir: str, train, test) -> tuple[dict, dict]:
    """One model: `fit` in `workdir`, then the test set. Returns (summary, params)."""
    net = make_network(config)
    key_init, key_train, key_eval = _keys(config.seed)
    params = jax.jit(net.init)(key_init)  # one compile, not one per eager op
    batches = BatchIterator(
        {"image": train.images, "label": train.labels}, config.batch_size, config.seed
    )
    num_steps = config.num_epochs * batches.batches_per_epoch
    learning_rate = config.learning_rate
    if config.cosine_decay:
        learning_rate = optax.cosine_decay_schedule(learning_rate, num_steps)
    optimizer = optax.adam(learning_rate)
    state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    evaluate = make_eval(config, net, test.images, test.labels, key_eval)
    start = time.time()
    result = train_loop.fit(
        make_step(config, net, optimizer),
        state,
        workdir=workdir,
        num_steps=num_steps,
        key=key_train,
        batches=batches,
        eval_fn=lambda state: evaluate(state.params),
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
    )
    summary = {
        "test_accuracy": result.eval_metrics["eval/accuracy"],
        "test_loss": result.eval_metrics["eval/loss"],
        **{k: v for k, v in result.eval_metrics.items() if k.startswith("ops/")},
        "model": f"{'snn' if config.spiking else 'ann'}-{config.model}",
        "time_steps": config.time_steps if config.spiking else 0,
        "steps": num_steps,
        "steps_per_second": result.steps_per_second,
        "train_samples_per_second": result.steps_per_second * config.batch_size,
        "wall_seconds_this_run": time.time() - start,
        "resumed_from_step": result.start_step,
    }
    return summary, result.state.params


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains, evaluates on the test set, writes `summary.json`, returns it.

    With `config.ann_twin` (a spiking config) the ANN with the same layers is
    trained next in `workdir/ann` (its own resumable phase): its accuracy is
    `ann_test_accuracy`, and on the sweep's test images `ann_sweep_accuracy`,
    the point drawn on the operations figure.
    """
    start = time.time()
    train, test = data_lib.load_train_test(config)
    workdir_lib.write_json(
        workdir, "data.json", {"train": train.source, "test": test.source}
    )
    summary, params = fit_and_evaluate(config, workdir, train, test)
    key_eval = _keys(config.seed)[2]
    count = min(config.sweep_examples, len(test.labels))
    ann_accuracy = config.get("ann_accuracy")  # given: on the whole test set
    if config.get("ann_twin") and config.spiking:
        ann_config = config.copy_and_resolve_references()
        ann_config.spiking = False
        ann_dir = os.path.join(workdir, "ann")
        ann, ann_params = fit_and_evaluate(ann_config, ann_dir, train, test)
        ann_accuracy = make_eval(
            ann_config,
            make_network(ann_config),
            test.images[:count],
            test.labels[:count],
            key_eval,
        )(ann_params)["accuracy"]
        summary.update(
            ann_test_accuracy=ann["test_accuracy"],
            ann_sweep_accuracy=ann_accuracy,
            ann_wall_seconds=ann["wall_seconds_this_run"],
        )
    summary.update(
        seed=config.seed,
        data_source=train.source,
        device=jax.devices()[0].device_kind,
    )
    if config.figures and config.spiking:
        from snn import figures  # matplotlib only when asked

        net = make_network(config)
        # fit's mesh: the sweep point at the trained T reuses fit's eval compile
        with jax.set_mesh(mesh_lib.make_mesh(config.num_devices)):
            written = figures.write_all(
                config, net, params, test, key_eval, workdir, ann_accuracy
            )
        summary.update(written)
    summary["wall_seconds_total"] = time.time() - start
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
