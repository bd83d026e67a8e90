"""Layer-by-layer scan == a step-by-step Python loop; remat, truncation, ANN."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snn import network, neurons

T, B = 5, 2
NEURON = neurons.LIF(beta=0.8, threshold=0.5)


def python_loop(net, params, inputs):
    """Every layer advanced one step at a time, as a naive simulator does."""
    states = [
        net.neuron_at(i).init_state((B, *out))
        for i, (_, out) in enumerate(network.layer_shapes(net.layers, net.input_shape))
    ]
    out_spikes, out_membrane = [], []
    for t in range(inputs.shape[0]):
        x = inputs[t]
        for i, layer in enumerate(net.layers):
            current = network._weighted(layer, params["layers"][i], x)
            states[i], x = net.neuron_at(i).step(
                params["neurons"][i], states[i], current
            )
        out_spikes.append(x)
        out_membrane.append(states[-1].membrane)
    return jnp.stack(out_spikes), jnp.stack(out_membrane)


def spikes_in(key, shape):
    return jax.random.bernoulli(key, 0.4, (T, B, *shape)).astype(jnp.float32)


def check_equal_to_loop(net, key):
    params = jax.jit(net.init)(key)
    inputs = spikes_in(jax.random.fold_in(key, 1), net.input_shape)
    out = jax.jit(net.apply)(params, inputs)
    # one jit each: eager dispatch would compile every op separately
    spikes, membrane = jax.jit(python_loop, static_argnums=0)(net, params, inputs)
    chex.assert_shape(out["spikes"], (T, B, net.layers[-1].features))
    np.testing.assert_array_equal(out["spikes"], spikes)
    np.testing.assert_allclose(out["membrane"], membrane, rtol=1e-5, atol=1e-5)
    return out


@pytest.mark.parametrize("dense_in_scan", [True, False])
def test_mlp_scan_equals_python_loop(key, dense_in_scan):
    net = network.Network(
        network.mlp_layers((8, 8), 3), (6,), NEURON, dense_in_scan=dense_in_scan
    )
    out = check_equal_to_loop(net, key)
    assert float(out["layer_inputs"][1].sum()) > 0  # hidden layer spikes


def test_cnn_scan_equals_python_loop(key):
    layers = network.cnn_layers((2, 3), kernel=3, num_classes=3)
    net = network.Network(layers, (14, 14, 1), NEURON, readout="membrane")
    out = check_equal_to_loop(net, key)
    chex.assert_shape(out["layer_inputs"][2], (T, B, 2, 2, 3))


def test_remat_same_gradient_truncate_cuts_it(key):
    net = network.Network(network.mlp_layers((8,), 3), (6,), NEURON)
    params = jax.jit(net.init)(key)
    inputs = spikes_in(jax.random.fold_in(key, 1), (6,))

    @functools.partial(jax.jit, static_argnums=1)
    @jax.grad
    def grad(params, net):
        return net.apply(params, inputs)["spikes"].sum()

    full = grad(params, net)
    remat = grad(params, network.Network(net.layers, (6,), NEURON, remat=True))
    chex.assert_trees_all_close(full, remat, rtol=1e-6)
    cut = grad(params, network.Network(net.layers, (6,), NEURON, truncate=1))
    assert not np.allclose(full["layers"][0]["w"], cut["layers"][0]["w"])

    # truncate=1: the last step's spikes get no gradient from earlier currents
    def last(currents, truncate):
        return network.run_neuron(NEURON, {}, currents, truncate=truncate)[0][-1].sum()

    currents = jnp.full((T, 3), 0.4)
    assert float(jnp.abs(jax.grad(last)(currents, 1)[:-1]).sum()) == 0.0
    assert float(jnp.abs(jax.grad(last)(currents, 0)[:-1]).sum()) > 0.0


def test_ann_twin_is_a_relu_network(key):
    net = network.Network(network.mlp_layers((8,), 3), (6,), spiking=False)
    params = jax.jit(net.init)(key)
    x = np.random.default_rng(0).random((B, 6), np.float32)
    (l1, l2) = jax.tree.map(np.asarray, params["layers"])
    expected = np.maximum(x @ l1["w"] + l1["b"], 0) @ l2["w"] + l2["b"]
    logits = jax.jit(net.apply)(params, x)["logits"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
