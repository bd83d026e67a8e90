"""The supervised SNN training step: config -> network, encoder, loss, step.

The step draws the rate-coded input from its key (`encoding.rate`), runs the
network time-major with full BPTT (or checkpointed / truncated, see
`network.Network`), reads the loss off the output spikes or membrane
(`encoding.LOSSES`) and applies the optimizer: surrogate-gradient BPTT as in
Neftci, Mostafa & Zenke 2019 ("Surrogate Gradient Learning in Spiking Neural
Networks", arXiv:1901.09948).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from shared.errors import ConfigError
from snn import encoding
from snn import layers as layers_lib
from snn import network as network_lib
from snn import neurons as neurons_lib

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
        layers = layers_lib.mlp_layers(tuple(config.hidden), config.num_classes)
        input_shape = (784,)
    else:
        layers = layers_lib.cnn_layers(tuple(config.channels), 5, config.num_classes)
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
        chunk=config.chunk,
        conv=config.conv,
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
