"""Deterministic test-set evaluation: accuracy, loss and operation counts.

The test set is encoded with a fixed key (batch `i` uses `fold_in(key, i)`),
so two evaluations of the same parameters agree bit for bit. Spiking nets also
report synaptic operations per sample (`snn.ops`), and a threshold factor
scales every threshold through the parameters, so the accuracy-vs-operations
sweep (`snn.figures`) compiles once per T.
"""

from __future__ import annotations

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np

from shared.batches import iterate_once
from snn import network as network_lib
from snn import ops as ops_lib
from snn.supervised import make_encoder, make_loss


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
