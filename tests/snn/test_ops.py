"""Operation counts against brute-force and hand counts."""

import jax
import numpy as np

from snn import layers as layers_lib
from snn import network, ops

SYNAPTIC_OPS = jax.jit(ops.synaptic_ops, static_argnums=0)  # one compile per net


def test_conv_fan_out_matches_brute_force():
    layer = layers_lib.Layer("conv", 2, kernel=3)
    h, w, c = 5, 4, 3
    brute = np.zeros((h, w, c), np.int64)
    for r in range(h - 2):
        for q in range(w - 2):
            brute[r : r + 3, q : q + 3, :] += 2  # one window, 2 output channels
    np.testing.assert_array_equal(ops.fan_out(layer, (h, w, c)), brute)


def test_synops_by_hand_on_a_tiny_network():
    net = network.Network(layers_lib.mlp_layers((2,), 4), (3,))
    # sample 0: 3 input spikes; sample 1: 1; hidden spikes 2 and 0
    inputs, hidden = np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 2), np.float32)
    inputs[0, 0], inputs[1, 1, 2], hidden[1, 0] = 1.0, 1.0, 1.0
    synops = SYNAPTIC_OPS(net, [inputs, hidden])
    # layer 0: (3 + 1) spikes x 2 targets / 2 samples; layer 1: 2 x 4 / 2
    np.testing.assert_allclose([float(s) for s in synops], [4.0, 4.0])
    assert ops.dense_macs(net) == [3 * 2, 2 * 4]
    summary = ops.summary(net, synops, 2)
    assert summary["ops/synops_per_mac"] == 8.0 / 14.0
    assert summary["ops/neuron_updates"] == 2 * (2 + 4)
    np.testing.assert_allclose(summary["ops/ann_energy_uj"], 14 * 4.6e-6)


def test_synops_equals_counted_accumulates_in_a_real_conv_run():
    """Each spike x fan-out == accumulates a sparse conv actually performs."""
    layers = layers_lib.cnn_layers((2,), kernel=3, num_classes=3)
    net = network.Network(layers, (6, 6, 1))
    rng = np.random.default_rng(0)
    inputs = (rng.random((4, 2, 6, 6, 1)) < 0.3).astype(np.float32)
    synops = SYNAPTIC_OPS(net, [inputs, np.zeros((4, 2, 2, 2, 2), np.float32)])
    spikes, counted = np.asarray(inputs), 0.0
    for window_r in range(4):
        for window_q in range(4):
            window = spikes[:, :, window_r : window_r + 3, window_q : window_q + 3]
            counted += 2 * float(window.sum())
    np.testing.assert_allclose(float(synops[0]), counted / 2, rtol=1e-6)


def test_paper_architectures_mac_counts():
    mlp = network.Network(layers_lib.mlp_layers((800,)), (784,))
    assert ops.dense_macs(mlp) == [784 * 800, 800 * 10]
    cnn = network.Network(layers_lib.cnn_layers(), (28, 28, 1))
    assert ops.dense_macs(cnn) == [24 * 24 * 25 * 12, 8 * 8 * 25 * 12 * 64, 1024 * 10]
