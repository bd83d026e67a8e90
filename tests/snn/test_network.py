"""Both schedules == a step-by-step Python loop; gradients, remat, truncation, ANN.

Each test builds everything it compares inside one `jit`: one XLA compile
instead of one per variant.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shared.errors import ConfigError
from snn import encoding, network, neurons
from snn import layers as layers_lib

T, B = 5, 2
NEURON = neurons.LIF(beta=0.8, threshold=0.5)


def python_loop(net, params, inputs):
    """Every layer advanced one step at a time, as a naive simulator does."""
    states = [
        net.neuron_at(i).init_state((B, *out))
        for i, (_, out) in enumerate(
            layers_lib.layer_shapes(net.layers, net.input_shape)
        )
    ]
    out_spikes, out_membrane = [], []
    for t in range(inputs.shape[0]):
        x = inputs[t]
        for i, layer in enumerate(net.layers):
            current = layers_lib.weighted(layer, params["layers"][i], x)
            states[i], x = net.neuron_at(i).step(
                params["neurons"][i], states[i], current
            )
        out_spikes.append(x)
        out_membrane.append(states[-1].membrane)
    return jnp.stack(out_spikes), jnp.stack(out_membrane)


def spikes_in(key, shape):
    return jax.random.bernoulli(key, 0.4, (T, B, *shape)).astype(jnp.float32)


def loss(net, params, inputs):
    """Depends on spikes and membranes, so gradients reach every layer."""
    out = net.apply(params, inputs)
    labels = jnp.arange(B) % out["spikes"].shape[-1]
    return encoding.count_cross_entropy(out["spikes"], labels) + jnp.mean(
        out["membrane"] ** 2
    )


def check_variants(variants, key, grads=True, loop=True):
    """All `variants` (Networks with the same layers) equal the Python loop
    (or, with `loop=False`, the first variant), and their gradients agree."""
    params = jax.jit(variants[0].init)(key)
    inputs = spikes_in(jax.random.fold_in(key, 1), variants[0].input_shape)

    @jax.jit
    def run(params, inputs):
        outs = [net.apply(params, inputs) for net in variants]
        reference = (outs[0]["spikes"], outs[0]["membrane"])
        if loop:
            reference = python_loop(variants[0], params, inputs)
        grad = [jax.grad(loss, argnums=1)(net, params, inputs) for net in variants]
        return reference, outs, grad if grads else None

    (spikes, membrane), outs, grad = run(params, inputs)
    assert float(outs[0]["layer_inputs"][1].sum()) > 0  # hidden layer spikes
    for net, out in zip(variants, outs, strict=True):
        chex.assert_shape(out["spikes"], (T, B, net.layers[-1].features))
        np.testing.assert_array_equal(out["spikes"], spikes)
        np.testing.assert_allclose(out["membrane"], membrane, rtol=1e-5, atol=1e-5)
        for a, b in zip(out["layer_inputs"], outs[0]["layer_inputs"], strict=True):
            np.testing.assert_array_equal(a, b)
    if grads:
        assert float(jnp.abs(grad[0]["layers"][0]["w"]).sum()) > 0
        for other in grad[1:]:
            chex.assert_trees_all_close(other, grad[0], rtol=1e-5, atol=1e-6)
    return outs[0]


def test_mlp_schedules_equal_python_loop(key):
    net = network.Network(layers_lib.mlp_layers((8, 8), 3), (6,), NEURON)
    variants = [
        net,
        dataclasses.replace(net, dense_in_scan=False),
        dataclasses.replace(net, dense_in_scan=False, chunk=4),
        dataclasses.replace(net, schedule="step"),
    ]
    out = check_variants(variants, key, grads=False)
    assert float(out["spikes"].sum()) > 0


def test_cnn_schedules_equal_loop_and_gradients(key):
    """Convs on all T*B frames at once == a conv inside the time scan.

    The step schedule is itself checked against the Python loop on the MLP.
    """
    # conv2 reads 5 channels: snn.conv's wide-input kernel, conv1 its thin one
    layers = layers_lib.cnn_layers((5, 3), kernel=3, num_classes=3)
    net = network.Network(layers, (14, 14, 1), NEURON, readout="membrane", chunk=0)
    step_net = dataclasses.replace(net, schedule="step")
    # T*B = 10 frames in unrolled pieces of 3, 3, 3, 1: same spikes and grads
    chunked = dataclasses.replace(net, chunk=3)
    # XLA's convs instead of snn.conv's matmul kernels (the CPU default)
    lax_conv = dataclasses.replace(net, conv="lax")
    assert net.conv_impl() == "matmul"
    out = check_variants([net, step_net, chunked, lax_conv], key, loop=False)
    chex.assert_shape(out["layer_inputs"][2], (T, B, 2, 2, 3))


def test_remat_same_gradient_truncate_cuts_it(key):
    net = network.Network(layers_lib.mlp_layers((8,), 3), (6,), NEURON)
    params = jax.jit(net.init)(key)
    inputs = spikes_in(jax.random.fold_in(key, 1), (6,))
    variants = {
        "full": net,
        "remat": dataclasses.replace(net, remat=True),
        "step_remat": dataclasses.replace(net, remat=True, schedule="step"),
        "cut2": dataclasses.replace(net, truncate=2),
        "step_cut2": dataclasses.replace(net, truncate=2, schedule="step"),
    }

    # truncate=1: the last step's spikes get no gradient from earlier currents
    def last(currents, truncate):
        return network.run_neuron(NEURON, {}, currents, truncate=truncate)[0][-1].sum()

    @jax.jit
    def run(params, currents):
        grads = {
            name: jax.grad(loss, argnums=1)(variant, params, inputs)
            for name, variant in variants.items()
        }
        return grads, [jax.grad(last)(currents, k) for k in (1, 0)]

    grads, (cut, full) = run(params, jnp.full((T, 3), 0.4))
    chex.assert_trees_all_close(grads["remat"], grads["full"], rtol=1e-6)
    chex.assert_trees_all_close(grads["step_remat"], grads["full"], rtol=1e-5)
    chex.assert_trees_all_close(grads["step_cut2"], grads["cut2"], rtol=1e-5)
    weights = [grads[name]["layers"][0]["w"] for name in ("full", "cut2")]
    assert not np.allclose(*weights)
    assert float(jnp.abs(cut[:-1]).sum()) == 0.0
    assert float(jnp.abs(full[:-1]).sum()) > 0.0


def test_unknown_schedule_is_named():
    with pytest.raises(ConfigError, match="schedule"):
        network.Network(layers_lib.mlp_layers((8,), 3), (6,), schedule="time")


def test_unknown_conv_is_named():
    with pytest.raises(ConfigError, match="config.conv"):
        network.Network(layers_lib.cnn_layers(), (28, 28, 1), conv="fft")


def test_negative_chunk_is_named():
    with pytest.raises(ConfigError, match="config.chunk"):
        network.Network(layers_lib.mlp_layers((8,), 3), (6,), chunk=-1)


def test_chunked_calls_equal_one_call():
    """Pieces of 3 rows (the last one short) concatenate to the whole call."""
    x = np.arange(20.0).reshape(10, 2)
    pieces = []
    out = layers_lib.chunked(lambda p: pieces.append(len(p)) or p * 2.0, x, 3)
    np.testing.assert_array_equal(out, x * 2.0)
    assert pieces == [3, 3, 3, 1]


def test_ann_twin_is_a_relu_network(key):
    net = network.Network(layers_lib.mlp_layers((8,), 3), (6,), spiking=False)
    params = jax.jit(net.init)(key)
    x = np.random.default_rng(0).random((B, 6), np.float32)
    (l1, l2) = jax.tree.map(np.asarray, params["layers"])
    expected = np.maximum(x @ l1["w"] + l1["b"], 0) @ l2["w"] + l2["b"]
    logits = jax.jit(net.apply)(params, x)["logits"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
