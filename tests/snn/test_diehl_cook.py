"""Diehl & Cook network: labelling by hand, learning on/off, smoke run."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shared import config as config_lib
from shared.errors import ConfigError
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
    # one presentation (enough spikes), then the decay over 350 + 150 ms
    decay = np.exp(-500.0 / 1e7)
    np.testing.assert_allclose(
        theta, (state.theta + model.theta_plus * counts) * decay, rtol=1e-6
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


def numpy_reference(model, weights, theta, pre_spikes):
    """The dense per-step rule (every weight updated and clipped each step)."""
    n, dt = model.num_neurons, model.dt
    decay = {k: np.exp(-dt / getattr(model, k)) for k in ("tau_ge", "tau_gi")}
    trace = {k: np.exp(-dt / getattr(model, k)) for k in ("tau_pre", "tau_post1")}
    trace["tau_post2"] = np.exp(-dt / model.tau_post2)
    w, theta = np.array(weights, np.float64), np.array(theta, np.float64)
    v_e, v_i = np.full(n, model.v_rest_e), np.full(n, model.v_rest_i)
    ge_e, gi_e, ge_i, rest_e, rest_i = (np.zeros(n) for _ in range(5))
    timer = np.full(n, model.timer_rate * 150.0)  # `timer` after the 150 ms rest
    pre, post1, post2, count = np.zeros(len(w)), np.zeros(n), np.zeros(n), np.zeros(n)
    for spiked in np.asarray(pre_spikes, np.float64):
        ge_e = ge_e + spiked @ w
        i_e = ge_e * -v_e + gi_e * (-100.0 - v_e)
        on_e, on_i = rest_e <= 0, rest_i <= 0
        v_e = np.where(on_e, v_e + dt * (model.v_rest_e - v_e + i_e) / model.tau_e, v_e)
        timer = timer + model.timer_rate * dt
        s_e = (v_e > model.v_thresh_e + theta - model.offset_e) & on_e & (timer > 5)
        v_e[s_e] = model.v_reset_e
        timer[s_e] = 0.0
        ge_i = ge_i + model.w_ei * s_e
        v_i = np.where(
            on_i, v_i + dt * (model.v_rest_i - v_i - ge_i * v_i) / model.tau_i, v_i
        )
        s_i = (v_i > model.v_thresh_i) & on_i
        v_i[s_i] = model.v_reset_i
        gi_e = gi_e + model.w_ie * (s_i.sum() - s_i)  # all but itself
        pre, post1, post2 = (
            pre * trace["tau_pre"],
            post1 * trace["tau_post1"],
            post2 * trace["tau_post2"],
        )
        w = w - model.nu_pre * np.outer(spiked, post1)
        pre[spiked > 0] = 1.0
        w = np.clip(w + model.nu_post * np.outer(pre, s_e * post2), 0.0, model.w_max)
        post1[s_e], post2[s_e] = 1.0, 1.0
        theta = theta + model.theta_plus * s_e
        ge_e, gi_e, ge_i = (
            ge_e * decay["tau_ge"],
            gi_e * decay["tau_gi"],
            ge_i * decay["tau_ge"],
        )
        rest_e = np.where(s_e, model.refrac_e, rest_e - dt)
        rest_i = np.where(s_i, model.refrac_i, rest_i - dt)
        count += s_e
    return w, theta, count


def test_event_driven_stdp_equals_dense_numpy_loop(key):
    """Sparse rows (<= 2 input spikes) and the dense fallback (more) both
    reproduce the dense per-step rule of the paper."""
    model = diehl_cook.DiehlCook(num_neurons=4, num_inputs=16, dt=1.0)
    key_w, key_s = jax.random.split(key)
    weights = 1.2 * jax.random.uniform(key_w, (16, 4))  # some above w_max
    theta = jnp.full((4,), model.theta_init)
    pre_spikes = jax.random.bernoulli(key_s, 0.15, (120, 16))
    simulate = jax.jit(diehl_cook.simulate, static_argnums=(0, 4, 5))
    w, th, counts = simulate(model, weights, theta, pre_spikes, True, 2)
    ref_w, ref_theta, ref_counts = numpy_reference(model, weights, theta, pre_spikes)
    assert ref_counts.sum() >= 3  # neurons fired, so both rules acted
    steps = np.asarray(pre_spikes).sum(1)
    assert (steps <= 2).any() and (steps > 2).any()  # both paths taken
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(th, ref_theta, rtol=1e-6)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)


def test_refractory_period_is_5_ms_not_a_50_ms_lockout():
    """One neuron driven to cross threshold in one step (+52 mV) fires as
    soon as its 5 ms refractory period ends: at steps 0, 11, 22, ..., 198 of
    a 200-step (100 ms) run at dt 0.5 ms, 19 spikes. The authors' Brian 1
    `timer` (100 ms per ms) gates nothing more; read as 0.1 ms per ms (Brian 2
    ports) it is a 50 ms lockout: spikes at steps 0 and 101 only."""
    model = diehl_cook.DiehlCook(num_neurons=1, num_inputs=16)
    weights, theta = jnp.full((16, 1), 10.0), jnp.full((1,), model.theta_init)
    pre_spikes = jnp.ones((200, 16), bool)
    lockout = dataclasses.replace(model, timer_rate=0.1)

    @jax.jit
    def counts():
        return [
            diehl_cook.simulate(m, weights, theta, pre_spikes, False)[2]
            for m in (model, lockout)
        ]

    brian1, brian2_port = counts()
    np.testing.assert_array_equal(brian1, [19.0])
    np.testing.assert_array_equal(brian2_port, [2.0])


def test_bad_timer_rate_or_conductance_decay_names_the_field():
    for field, value in (("timer_rate", 0.0), ("conductance_decay", "rk4")):
        config = stdp_mnist.get_config("smoke")
        config[field] = value
        with pytest.raises(ConfigError, match=f"config.{field}"):
            stdp_train.validate_config(config)
