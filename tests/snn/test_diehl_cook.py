"""Diehl & Cook network: labelling by hand, learning on/off, smoke run."""

import jax
import jax.numpy as jnp
import numpy as np

from shared import config as config_lib
from snn import diehl_cook, stdp_train
from snn.configs import stdp_mnist


def test_assign_labels_and_predict_by_hand():
    # 3 neurons; neuron 0 fires for class 0, neurons 1 and 2 for class 1
    counts = jnp.array([[5.0, 0, 1], [4, 1, 0], [0, 3, 2], [1, 2, 4]])
    labels = jnp.array([0, 0, 1, 1])
    neuron_labels = diehl_cook.assign_labels(counts, labels, num_classes=2)
    np.testing.assert_array_equal(neuron_labels, [0, 1, 1])
    test = jnp.array([[3.0, 0, 0], [1, 1, 2], [2, 2, 2]])
    # class means: [3, 0], [1, 1.5], [2, 2] (tie -> class 0)
    np.testing.assert_array_equal(diehl_cook.predict(test, neuron_labels, 2), [0, 1, 0])


def test_learning_off_keeps_weights_on_changes_them(key):
    model = diehl_cook.DiehlCook(num_neurons=4, num_inputs=16, dt=1.0)
    image = jnp.full((16,), 255.0)

    @jax.jit  # one compile for init and both modes
    def show_both(key):
        state = diehl_cook.init(model, key)
        shown = [
            diehl_cook.show(model, state.weights, state.theta, key, image, learn)
            for learn in (False, True)
        ]
        return state, shown

    state, ((w, theta, counts), learned) = show_both(key)
    np.testing.assert_array_equal(w, state.weights)
    np.testing.assert_array_equal(theta, state.theta)
    assert counts.sum() >= model.min_spikes
    w, theta, counts = learned
    np.testing.assert_allclose(
        theta - state.theta, model.theta_plus * counts, atol=1e-4
    )
    assert not np.allclose(w, diehl_cook.normalize(model, state.weights))
    assert float(w.min()) >= 0.0 and float(w.max()) <= model.w_max
    np.testing.assert_allclose(
        diehl_cook.normalize(model, w).sum(0), model.weight_sum, rtol=1e-5
    )


def test_stdp_mnist_smoke_end_to_end(tmp_path):
    config = stdp_mnist.get_config("smoke")
    config_lib.validate(config)
    summary = stdp_train.train_and_evaluate(config, str(tmp_path))
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["labels_from"] == "training set"
    assert summary["train_images_seen"] == 16
    assert jax.numpy.isfinite(summary["mean_test_spikes_per_image"])
