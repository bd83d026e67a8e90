"""Operation counts: synaptic operations of an SNN run vs dense MACs of its ANN.

An SNN layer does work only when a spike arrives: each input spike adds one
weight to every target it fans out to, one accumulate (AC) per synapse. An ANN
layer does one multiply-accumulate (MAC) per weight use, input zero or not. The
comparison behind "an SNN reaches ~98% on MNIST with about a quarter of the
operations" (Tavanaei et al. 2018, "Deep Learning in Spiking Neural Networks",
arXiv:1804.08150) is
  SynOps per sample = sum over layers of sum over input spikes of fan-out,
  MACs per sample   = sum over layers of weights used per forward pass.
For a VALID convolution the fan-out of input pixel (i, j) is the number of
output positions whose window covers it times the output channels, so border
pixels have fewer targets; it is counted exactly.

Energy proxy (Horowitz 2014, "Computing's energy problem (and what we can do
about it)", ISSCC, 45 nm, 32-bit float): add 0.9 pJ, multiply 3.7 pJ, so an AC
costs 0.9 pJ and a MAC 4.6 pJ. Membrane updates (one multiply and add per
neuron per step) are reported separately as `neuron_updates`; neither count
includes memory access, which Horowitz shows dominates both.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from snn import layers as layers_lib
from snn import network as network_lib

ENERGY_PJ = {"add": 0.9, "mult": 3.7}  # Horowitz 2014, 45 nm, fp32
ENERGY_AC_PJ = ENERGY_PJ["add"]
ENERGY_MAC_PJ = ENERGY_PJ["add"] + ENERGY_PJ["mult"]


def fan_out(layer: layers_lib.Layer, shape_in: tuple[int, ...]) -> np.ndarray:
    """Targets of each input unit, shaped like one input sample."""
    if layer.kind == "dense":
        return np.full(shape_in, layer.features, np.int64)
    h, w, c = shape_in
    k = layer.kernel

    def covers(n):  # output windows (0..n-k) that contain position i
        i = np.arange(n)
        return np.minimum(i, n - k) - np.maximum(i - k + 1, 0) + 1

    per_pixel = np.outer(covers(h), covers(w)) * layer.features
    return np.broadcast_to(per_pixel[:, :, None], (h, w, c)).astype(np.int64)


def dense_macs(net: network_lib.Network) -> list[int]:
    """MACs per sample of each layer of the equivalent ANN."""
    out = []
    for layer, (shape_in, _) in zip(
        net.layers, layers_lib.layer_shapes(net.layers, net.input_shape), strict=True
    ):
        if layer.kind == "dense":
            out.append(math.prod(shape_in) * layer.features)
        else:
            h, w, c = shape_in
            positions = (h - layer.kernel + 1) * (w - layer.kernel + 1)
            out.append(positions * layer.kernel**2 * c * layer.features)
    return out


def synaptic_ops(net: network_lib.Network, layer_inputs) -> list[jnp.ndarray]:
    """Mean SynOps per sample of each layer, from `Network.apply`'s layer inputs.

    Args:
      net: the network.
      layer_inputs: [(T, B, *shape_in)] spike trains entering each layer.

    Returns:
      One scalar per layer: mean over the batch of sum(spikes * fan_out).
    """
    out = []
    shapes = layers_lib.layer_shapes(net.layers, net.input_shape)
    for layer, (shape_in, _), spikes in zip(
        net.layers, shapes, layer_inputs, strict=True
    ):
        targets = jnp.asarray(fan_out(layer, shape_in), jnp.float32)
        counts = jnp.abs(spikes).sum(0).reshape(-1, *shape_in)  # (B, *shape_in)
        out.append((counts * targets).sum() / counts.shape[0])
    return out


def neuron_updates(net: network_lib.Network, num_steps: int) -> int:
    """Membrane updates per sample: every neuron, every step."""
    shapes = layers_lib.layer_shapes(net.layers, net.input_shape)
    return num_steps * sum(math.prod(out) for _, out in shapes)


def summary(net: network_lib.Network, synops: list[float], num_steps: int) -> dict:
    """SynOps vs MACs and the energy proxy, per sample (flat dict of floats)."""
    macs = dense_macs(net)
    total_synops = float(sum(synops))
    result = {f"ops/synops_layer{i}": float(s) for i, s in enumerate(synops)}
    result.update(
        {
            "ops/synops": total_synops,
            "ops/ann_macs": float(sum(macs)),
            "ops/synops_per_mac": total_synops / sum(macs),
            "ops/neuron_updates": float(neuron_updates(net, num_steps)),
            "ops/snn_energy_uj": total_synops * ENERGY_AC_PJ * 1e-6,
            "ops/ann_energy_uj": sum(macs) * ENERGY_MAC_PJ * 1e-6,
        }
    )
    return result
