"""Diehl & Cook network: labelling by hand, learning on/off, smoke run."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shared import config as config_lib
from shared.errors import ConfigError
from snn import diehl_cook, stdp_train
from snn import diehl_cook_network as network
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


def test_silent_neurons_stay_unassigned_and_do_not_vote():
    # Diehl&Cook_MNIST_evaluation.py starts every assignment at -1 and only a
    # class rate > 0 replaces it: neuron 2 never fires on the labelling images
    counts = jnp.array([[4.0, 0, 0], [2, 1, 0], [0, 3, 0], [1, 2, 0]])
    labels = jnp.array([0, 0, 1, 1])
    neuron_labels = diehl_cook.assign_labels(counts, labels, num_classes=2)
    np.testing.assert_array_equal(neuron_labels, [0, 1, -1])
    # class 0's mean is neuron 0's 2.0 (it was (2 + 0) / 2 = 1 with neuron 2
    # labelled 0, which then lost to class 1's 1.5)
    test = jnp.array([[2.0, 1.5, 0], [0, 1, 0]])
    np.testing.assert_array_equal(diehl_cook.predict(test, neuron_labels, 2), [0, 1])


def test_learning_off_keeps_weights_on_changes_them(key):
    model = diehl_cook.DiehlCook(num_neurons=4, num_inputs=16, dt=1.0)
    image = jnp.full((16,), 255.0)

    @jax.jit  # one compile for init and both modes
    def show_both(key):
        state = diehl_cook.init(model, key)
        shown = [
            diehl_cook.show(
                model, state.net, state.weights, state.theta, state.delays, key,
                image, learn,
            )[1:]
            for learn in (False, True)
        ]  # fmt: skip
        return state, shown

    state, ((w, theta, counts), learned) = show_both(key)
    np.testing.assert_array_equal(w, state.weights)
    np.testing.assert_array_equal(theta, state.theta)
    assert counts.sum() >= model.min_spikes
    w, theta, counts = learned
    # one presentation (enough spikes), then the decay over 350 + 150 ms; the
    # rest's spikes (delayed input still arriving) raise theta but not counts
    decay = np.exp(-500.0 / 1e7)
    spikes = (np.asarray(theta) / decay - np.asarray(state.theta)) / model.theta_plus
    np.testing.assert_allclose(spikes, np.round(spikes), atol=1e-3)
    assert (np.round(spikes) >= np.asarray(counts)).all() and counts.sum() > 0
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


def numpy_reference(model, weights, theta, delays, pre_spikes):
    """The authors' Brian 1 step, written densely with absolute times: every
    step integrates (Euler), thresholds, propagates (delayed input, E -> I,
    I -> E, STDP) and resets; depression waits D steps (Brian's max_delay)
    and reads post1 at each synapse's arrival, potentiation reads pre
    `delay` ago; only touched weights are clipped. `stdp_rule="power_law"`
    (Eq. 3): pre += 1 per spike, no depression, potentiation
    nu_post * (pre - x_tar) * (w_max - w) ** mu."""
    power_law = model.stdp_rule == "power_law"
    n, dt, slots = model.num_neurons, model.dt, network.num_delay_slots(model)
    ge_decay, gi_decay = 1 - dt / model.tau_ge, 1 - dt / model.tau_gi
    trace = {k: np.exp(-dt / getattr(model, k)) for k in ("tau_pre", "tau_post1")}
    trace["tau_post2"] = np.exp(-dt / model.tau_post2)
    refrac_e, refrac_i = round(model.refrac_e / dt), round(model.refrac_i / dt)
    w, theta = np.array(weights, np.float64), np.array(theta, np.float64)
    delays, pre_spikes = np.asarray(delays), np.asarray(pre_spikes)
    v_e, v_i = np.full(n, model.v_rest_e), np.full(n, model.v_rest_i)
    ge_e, gi_e, ge_i = np.zeros(n), np.zeros(n), np.zeros(n)
    since_e, since_i = np.full(n, 10**6), np.full(n, 10**6)
    timer = np.full(n, model.timer_rate * model.rest_ms)
    pre, post1, post2, count = np.zeros(len(w)), np.zeros(n), np.zeros(n), np.zeros(n)
    arrivals = np.zeros((len(pre_spikes) + slots, n))
    pre_at, post1_at = {}, {}  # absolute step -> trace at the end of it
    for t, spiked in enumerate(pre_spikes):
        i_e = ge_e * -v_e + gi_e * (-100.0 - v_e)
        v_e = v_e + dt * (model.v_rest_e - v_e + i_e) / model.tau_e
        v_i = v_i + dt * (model.v_rest_i - v_i - ge_i * v_i) / model.tau_i
        ge_e, gi_e, ge_i = ge_e * ge_decay, gi_e * gi_decay, ge_i * ge_decay
        since_e, since_i, timer = since_e + 1, since_i + 1, timer + 100.0 * dt
        s_e = (v_e > model.v_thresh_e + theta - model.offset_e) & (since_e >= refrac_e)
        s_e &= timer > model.refrac_e
        s_i = (v_i > model.v_thresh_i) & (since_i >= refrac_i)
        for i in np.flatnonzero(spiked):
            arrivals[t + delays[i], np.arange(n)] += w[i]
        ge_e = ge_e + arrivals[t]
        ge_i = ge_i + model.w_ei * s_e
        gi_e = gi_e + model.w_ie * (s_i.sum() - s_i)  # all but itself
        pre, post1 = pre * trace["tau_pre"], post1 * trace["tau_post1"]
        post2 = post2 * trace["tau_post2"]
        if power_law:
            pre[spiked] += 1.0
        else:
            pre[spiked] = 1.0
        if t >= slots and not power_law:
            for i in np.flatnonzero(pre_spikes[t - slots]):
                for k in range(n):
                    p1 = post1_at[t - slots + delays[i, k]][k]
                    w[i, k] = np.clip(w[i, k] - model.nu_pre * p1, 0.0, model.w_max)
        pre_at[t] = pre.copy()
        for k in np.flatnonzero(s_e):
            for i in range(len(w)):
                p = pre_at[t - delays[i, k]][i] if t >= delays[i, k] else 0.0
                if power_law:
                    room = max(model.w_max - w[i, k], 0.0)
                    change = model.nu_post * (p - model.x_tar) * room**model.mu
                else:
                    change = model.nu_post * p * post2[k]
                w[i, k] = np.clip(w[i, k] + change, 0, model.w_max)
        post1[s_e], post2[s_e], since_e[s_e], since_i[s_i] = 1.0, 1.0, 0, 0
        v_e = np.where(since_e < refrac_e, model.v_reset_e, v_e)
        v_i = np.where(since_i < refrac_i, model.v_reset_i, v_i)
        timer[s_e] = 0.0
        theta = theta + model.theta_plus * s_e
        count += s_e
        post1_at[t] = post1.copy()
    return w, theta, count


@pytest.mark.parametrize("rule", ["triplet", "power_law"])
def test_event_driven_stdp_equals_dense_numpy_loop(key, rule):
    """Delayed delivery, delayed depression and delayed-pre potentiation,
    event-driven in passes of 2 rows (one pass for <= 2 input spikes, several
    for more), reproduce the dense per-step Brian 1 rule; with the paper's
    Eq. 3 too (its own delivery loop, which must read w before this step's
    potentiation, and the count-based I -> E inhibition)."""
    model = diehl_cook.DiehlCook(
        num_neurons=4, num_inputs=16, input_delay_ms=2.0, stdp_rule=rule
    )
    key_w, key_s, key_d = jax.random.split(key, 3)
    weights = 1.2 * jax.random.uniform(key_w, (16, 4))  # some above w_max
    theta = jnp.full((4,), model.theta_init)
    delays = network.draw_delays(model, key_d)
    pre_spikes = jax.random.bernoulli(key_s, 0.15, (200, 16))
    net = network.rest_state(model)

    @jax.jit
    def run():
        return network.simulate(model, net, weights, theta, delays, pre_spikes, True, 2)

    _, w, th, counts = run()
    ref_w, ref_theta, ref_counts = numpy_reference(
        model, weights, theta, delays, pre_spikes
    )
    assert ref_counts.sum() >= 3  # neurons fired, so both rules acted
    assert set(np.unique(delays)) == {0, 1, 2, 3}
    steps = np.asarray(pre_spikes).sum(1)
    assert (steps <= 2).any() and (steps > 2).any()  # one pass and several
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(th, ref_theta, rtol=1e-6)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)


def test_pass_size_does_not_change_a_bit(key):
    """Passes of 1, 3 or 64 input rows (and of 1 or 2 fired neurons) give
    bit-identical weights, thresholds and state: rows and columns are
    independent and the order of every sum is kept."""
    model = diehl_cook.DiehlCook(num_neurons=4, num_inputs=16, input_delay_ms=2.0)
    key_w, key_s, key_d = jax.random.split(key, 3)
    weights = jax.random.uniform(key_w, (16, 4))
    theta = jnp.full((4,), model.theta_init)
    delays = network.draw_delays(model, key_d)
    pre_spikes = jax.random.bernoulli(key_s, 0.3, (80, 16))
    net = network.rest_state(model)
    simulate = jax.jit(network.simulate, static_argnums=(0, 6, 7, 8))

    def run(max_active, max_fired):
        args = (model, net, weights, theta, delays, pre_spikes, True)
        return simulate(*args, max_active, max_fired)

    reference = run(64, 4)
    assert float(reference[3].sum()) >= 3  # neurons fired: potentiation acted
    for max_active, max_fired in ((1, 1), (3, 2)):
        out = run(max_active, max_fired)
        for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(out), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", ["triplet", "power_law"])
def test_weights_are_not_copied_inside_the_time_loop(rule):
    """The compiled learning step updates the weights in place: the only copy
    of the (784, N) matrix is the one of the (undonated) argument at entry.
    Two gathers of w around its in-place scatter, or a `cond` returning it,
    made XLA copy it twice per 0.5 ms step (3.5x slower training); so did a
    delivery loop that only reads w (Eq. 3 has no depression)."""
    model = diehl_cook.DiehlCook(
        num_neurons=4, num_inputs=16, input_delay_ms=2.0, stdp_rule=rule
    )
    state = diehl_cook.init(model, jax.random.key(0))
    spikes = jnp.zeros((8, 16), bool)
    text = (
        jax.jit(network.simulate, static_argnums=(0, 6))
        .lower(model, state.net, state.weights, state.theta, state.delays, spikes, True)
        .compile()
        .as_text()
    )
    copies = [line for line in text.splitlines() if "f32[16,4]{1,0} copy(" in line]
    assert len(copies) <= 1, copies


def test_brian1_order_input_latency_and_two_step_inhibition():
    """Hand trace, dt 0.5 ms. Input 0 spikes at step 0 through a 3-step delay
    (weight 0.5) onto neuron 1: ge arrives at step 3 and first moves v at
    step 4 (Euler, from step 3's state). Input 1 (weight 100, no delay) makes
    neuron 0 fire at step 1; its inhibitory neuron fires at step 2 and
    neuron 1 feels gi = 17 at step 3: v -= 0.5 * 17 * 35 / 100 = 2.975 mV."""
    model = diehl_cook.DiehlCook(num_neurons=2, num_inputs=2)
    weights = jnp.array([[0.0, 0.5], [100.0, 0.0]])
    delays = jnp.array([[0, 3], [0, 0]], jnp.int32)
    theta = jnp.full((2,), model.theta_init)
    inputs = jnp.zeros((5, 2), bool).at[0, :].set(True)
    run = jax.jit(network.simulate, static_argnums=(0, 6))
    nets = [
        run(model, network.rest_state(model), weights, theta, delays, inputs[:k], False)
        for k in (1, 2, 3, 4, 5)
    ]
    ge, gi = [np.asarray(m[0]["ge_e"]) for m in nets], [m[0]["gi_e"] for m in nets]
    v_e, v_i = [np.asarray(m[0]["v_e"]) for m in nets], [m[0]["v_i"] for m in nets]
    np.testing.assert_allclose(ge[0], [100.0, 0.0])  # step 0: delivered, v unmoved
    np.testing.assert_allclose(v_e[0], [-65.0, -65.0])
    np.testing.assert_array_equal(nets[1][3], [1.0, 0.0])  # neuron 0 fires at step 1
    np.testing.assert_allclose(v_i[1], [-60.0, -60.0])  # E -> I: ge_i 10.4, not yet v
    np.testing.assert_allclose(v_i[2], [-45.0, -60.0])  # I fires at step 2, reset
    np.testing.assert_allclose(gi[2], [0.0, 17.0])  # I -> E at step 2
    np.testing.assert_allclose(v_e[2][1], -65.0)
    np.testing.assert_allclose(ge[3][1], 0.5)  # the delayed input arrives at step 3
    np.testing.assert_allclose(v_e[3][1], -65.0 - 2.975, rtol=1e-6)
    expected = -67.975 + 0.5 * (-(-67.975 - -65.0) + 0.5 * 67.975) / 100.0
    expected += 0.5 * (12.75 * (-100.0 + 67.975)) / 100.0  # gi decayed by 0.75
    np.testing.assert_allclose(v_e[4][1], expected, rtol=1e-6)


def test_rest_in_closed_form_equals_silent_steps(key):
    """`rest_decay` over 7 steps (not a multiple of D = 4, so the histories
    roll) equals simulating 7 silent steps of a network with no spikes due."""
    model = diehl_cook.DiehlCook(num_neurons=3, num_inputs=5, input_delay_ms=2.0)
    keys = jax.random.split(key, 4)
    net = network.rest_state(model, -58.0, -50.0)
    net.update(
        pre=jax.random.uniform(keys[0], (5,)), post1=jax.random.uniform(keys[1], (3,)),
        post2=jax.random.uniform(keys[2], (3,)), since_e=jnp.array([30, 40, 50]),
    )  # fmt: skip
    weights = jax.random.uniform(keys[3], (5, 3))
    theta = jnp.full((3,), model.theta_init)
    delays = jnp.zeros((5, 3), jnp.int32)
    silent = jnp.zeros((4 + 7, 5), bool)
    run = jax.jit(network.simulate, static_argnums=(0, 6))
    start = run(model, net, weights, theta, delays, silent[:4], True)[0]  # histories
    stepped = run(model, start, weights, theta, delays, silent[4:], True)[0]
    closed = network.rest_decay(model, start, 7)
    for name, value in stepped.items():
        np.testing.assert_allclose(
            np.asarray(closed[name], float), np.asarray(value, float), rtol=1e-5,
            err_msg=name,
        )  # fmt: skip


def test_delays_uniform_whole_steps(key):
    model = diehl_cook.DiehlCook()
    delays = np.asarray(network.draw_delays(model, key))
    assert delays.shape == (784, 100)
    np.testing.assert_array_equal(np.unique(delays), np.arange(20))  # 0..9.5 ms
    assert abs(delays.mean() - 9.5) < 0.1


def test_border_neurons_by_hand():
    weights = np.full((28, 28, 3), 0.1)
    weights[4:24, 4:24, 1] = 0.0  # all on the border
    weights[:, :, 2] = 0.0
    weights[0, 0, 2], weights[14, 14, 2] = 1.0, 0.9  # 53% on the border
    assert int(diehl_cook.border_neurons(jnp.asarray(weights.reshape(784, 3)))) == 2


def test_refractory_period_is_5_ms_not_a_50_ms_lockout():
    """One neuron driven to cross threshold in one step (delivery at step 0,
    first spike at step 1) fires again as soon as its 5 ms (10-step)
    refractory period ends: steps 1, 11, ..., 191 of a 200-step run, 20
    spikes. The authors' Brian 1 `timer` (100 ms per ms) gates nothing more;
    read as 0.1 ms per ms (Brian 2 ports) it is a 50 ms lockout: 2 spikes."""
    model = diehl_cook.DiehlCook(num_neurons=1, num_inputs=16, input_delay_ms=0.0)
    weights, theta = jnp.full((16, 1), 10.0), jnp.full((1,), model.theta_init)
    delays = jnp.zeros((16, 1), jnp.int32)
    pre_spikes = jnp.ones((200, 16), bool)
    lockout = dataclasses.replace(model, timer_rate=0.1)

    @jax.jit
    def counts():
        return [
            network.simulate(
                m, network.rest_state(m), weights, theta, delays, pre_spikes, False
            )[3]
            for m in (model, lockout)
        ]

    brian1, brian2_port = counts()
    np.testing.assert_array_equal(brian1, [20.0])
    np.testing.assert_array_equal(brian2_port, [2.0])


def test_bad_timer_rate_or_conductance_decay_names_the_field():
    bad = (
        ("timer_rate", 0.0), ("conductance_decay", "rk4"), ("input_delay_ms", -1),
        ("stdp_rule", "nearest"),
    )  # fmt: skip
    for field, value in bad:
        config = stdp_mnist.get_config("smoke")
        config[field] = value
        with pytest.raises(ConfigError, match=f"config.{field}"):
            stdp_train.validate_config(config)


def test_stdp_rules_by_hand():
    """`stdp_rule`, the paper's Eq. 3 (`"power_law"`): at a post spike every
    input weight moves by nu_post * (x_pre - x_tar) * (w_max - w) ** mu, with
    x_pre +1 per input spike (not set to 1), and pre spikes do not depress.
    No delays, dt 0.5 ms: inputs A (40, w 0.9) spike at steps 0 and 1, B (8,
    w 0.9) at step 0, C (16, w 0.5) never; ge = 48 * 0.9 from step 0 lifts v
    by 0.5 * 43.2 * 65 / 100 = 14.04 mV, so the neuron fires at step 1 (and
    only then). Input 0 starts at 1.2, above w_max (normalisation can do
    that): no growth room, (w_max - w) ** mu is not NaN, it is clipped to 1.
    The authors' script (`"triplet"`) changes nothing but that clip here:
    post2before is 0 at a first spike and depression waits one step;
    BindsNET's `"pair"` rule has no post2 factor."""
    base = diehl_cook.DiehlCook(num_neurons=1, num_inputs=64, input_delay_ms=0.0)
    weights = jnp.concatenate([jnp.full((48, 1), 0.9), jnp.full((16, 1), 0.5)])
    weights = weights.at[0, 0].set(1.2)
    spikes = np.zeros((2, 64), bool)
    spikes[:, :40], spikes[0, 40:48] = True, True
    delays = jnp.zeros((64, 1), jnp.int32)
    theta = jnp.full((1,), base.theta_init)
    rules = ("power_law", "triplet", "pair")
    models = [dataclasses.replace(base, stdp_rule=r) for r in rules]

    @jax.jit
    def run():
        return [
            network.simulate(
                m, network.rest_state(m), weights, theta, delays, spikes, True
            )
            for m in models
        ]

    (_, w, _, counts), (_, w_triplet, _, counts_t), (_, w_pair, _, _) = run()
    np.testing.assert_array_equal(counts, [1.0])
    np.testing.assert_array_equal(counts_t, [1.0])
    decay, m = np.exp(-0.5 / 20.0), base
    expected = np.concatenate([
        np.full(40, 0.9 + m.nu_post * (1 + decay - m.x_tar) * 0.1**m.mu),
        np.full(8, 0.9 + m.nu_post * (decay - m.x_tar) * 0.1**m.mu),
        np.full(16, 0.5 - m.nu_post * m.x_tar * 0.5**m.mu),
    ])  # fmt: skip
    expected[0] = 1.0
    np.testing.assert_allclose(np.asarray(w)[:, 0], expected, rtol=1e-6)
    np.testing.assert_array_equal(w_triplet, np.minimum(weights, 1.0))
    # BindsNET's pair rule: + nu_post * pre (set to 1, not added) at any spike
    pair = np.concatenate([
        np.full(40, 0.9 + m.nu_post), np.full(8, 0.9 + m.nu_post * decay),
        np.full(16, 0.5),
    ])  # fmt: skip
    pair[0] = 1.0
    np.testing.assert_allclose(np.asarray(w_pair)[:, 0], pair, rtol=1e-6)
