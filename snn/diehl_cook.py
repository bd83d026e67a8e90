"""Unsupervised digit recognition with STDP (Diehl & Cook 2015).

Diehl & Cook, "Unsupervised learning of digit recognition using
spike-timing-dependent plasticity", Front. Comput. Neurosci. 9:99 (2015),
doi:10.3389/fncom.2015.00099 (Table 1: 82.9% with 100, 87.0% with 400
excitatory neurons, 1 and 3 epochs).

Poisson inputs (rate = pixel / 4 Hz, 350 ms per image) drive conductance-based
excitatory LIF neurons through plastic weights; each excitatory neuron excites
one inhibitory neuron that inhibits all other excitatory ones (winner-take-all).
Excitatory thresholds adapt (+theta_plus per spike, decaying with a 1e7 ms time
constant while learning), and before each image each neuron's input weights are
rescaled to sum to 78. An excitatory neuron is refractory (membrane held at
reset, no spike) for 5 ms after a spike. The authors' Brian 1 code also gates
the threshold with a `timer` (`dtimer/dt = 100.0 : ms`, reset to 0 at a spike,
`timer > refrac_e`); it runs with `brian_no_units`, so the timer grows 100 s
per s and re-enables firing 0.05 ms (one step) after a spike: the gate adds
nothing to the 5 ms refractory period. (Brian 2 ports that write
`dtimer/dt = 0.1 : second`, e.g. Brian 2's own `Diehl_Cook_2015.py` example,
turn it into a 50 ms lockout, which weakens the potentiation below: post2 has
decayed below 0.29 by a neuron's next spike.) `timer_rate` keeps both readings
selectable. Conductances decay exactly per step by default;
`conductance_decay="euler"` uses Brian 1's forward Euler (ge *= 1 - dt/tau).
Learning is the paper's
nearest-spike STDP with a second post trace: on a pre spike w -= nu_pre * post1;
on a post spike w += nu_post * pre * post2 (value before the spike). If an image
gives fewer than 5 excitatory spikes it is shown again 32 Hz brighter. After
training, learning is off: each neuron is labelled with the class it fires most
for on training images (per-class mean), and a test image gets the class whose
neurons fire most on average. Constants are those of the authors' Brian code.

Simplifications (stated in every summary): the 150 ms rest between images is
replaced by resetting the state (the timer starts at its post-rest value, and
theta decays for the rest once per presentation), the input synapses have no
0-10 ms delays, and an image is repeated at most `max_repeats` times.
`dt` = 0.5 ms as in the paper.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class DiehlCook:
    num_neurons: int = 100
    num_inputs: int = 784
    dt: float = 0.5  # ms
    presentation_ms: float = 350.0
    input_hz_per_intensity: float = 255.0 / 8.0  # intensity 2 -> 63.75 Hz max
    v_rest_e: float = -65.0
    v_reset_e: float = -65.0
    v_thresh_e: float = -52.0
    offset_e: float = 20.0
    tau_e: float = 100.0
    refrac_e: float = 5.0
    # the authors' `dtimer/dt = 100.0` (ms per ms): lockout refrac_e / 100
    timer_rate: float = 100.0
    v_rest_i: float = -60.0
    v_reset_i: float = -45.0
    v_thresh_i: float = -40.0
    tau_i: float = 10.0
    refrac_i: float = 2.0
    tau_ge: float = 1.0
    tau_gi: float = 2.0
    conductance_decay: str = "exact"  # or "euler": ge *= 1 - dt / tau (Brian 1)
    w_ei: float = 10.4
    w_ie: float = 17.0
    theta_plus: float = 0.05
    theta_init: float = 20.0
    tau_theta: float = 1e7  # ms, training only
    rest_ms: float = 150.0
    tau_pre: float = 20.0
    tau_post1: float = 20.0
    tau_post2: float = 40.0
    nu_pre: float = 1e-4
    nu_post: float = 1e-2
    w_max: float = 1.0
    weight_sum: float = 78.0
    min_spikes: int = 5
    max_repeats: int = 5


MAX_ACTIVE = 32  # input spikes per step on the sparse path (~3 on MNIST)


@flax.struct.dataclass
class DiehlCookState:
    weights: jax.Array  # (784, N)
    theta: jax.Array  # (N,)
    step: jax.Array


def init(model: DiehlCook, key: jax.Array) -> DiehlCookState:
    weights = 0.3 * jax.random.uniform(key, (model.num_inputs, model.num_neurons))
    theta = jnp.full((model.num_neurons,), model.theta_init, jnp.float32)  # not weak
    return DiehlCookState(weights, theta, jnp.zeros((), jnp.int32))


def present(model, weights, theta, key, image, intensity, learn):
    """Shows one image (784,) in [0, 255] for 350 ms.

    Returns (weights, theta, spike counts (N,)); weights/theta change only if
    `learn`. The Poisson input of all steps is drawn at once (one RNG call, not
    one per step), then `simulate` runs the network on it. While learning,
    theta decays (tau_theta = 1e7 ms) over the presentation and the rest after
    it in one factor: within one image the decay moves a threshold by < 0.001
    mV, and a per-step factor exp(-dt / 1e7) is not representable in float32.
    """
    num_steps = round(model.presentation_ms / model.dt)
    prob = image * intensity * model.input_hz_per_intensity / 255.0 * model.dt * 1e-3
    pre_spikes = jax.random.uniform(key, (num_steps, *prob.shape)) < prob
    weights, theta, counts = simulate(model, weights, theta, pre_spikes, learn)
    if learn:
        elapsed = model.presentation_ms + model.rest_ms
        theta = theta * jnp.exp(-elapsed / model.tau_theta)
    return weights, theta, counts


def simulate(model, weights, theta, pre_spikes, learn, max_active=MAX_ACTIVE):
    """Runs the network on a bool input spike train (T, 784) from rest.

    Exact event-driven learning (the dense formulas touch only these entries):
    a step's input current is the sum of the rows of the <= `max_active` inputs
    that spiked, depression changes only those rows and potentiation only the
    columns of neurons that spiked, so only those entries are clipped. The
    first step (which clips every weight, e.g. after `normalize`) and steps
    with more than `max_active` input spikes take the dense path.
    """
    n, dt = model.num_neurons, model.dt
    decay = {
        name: jnp.exp(-dt / getattr(model, name))
        for name in ("tau_ge", "tau_gi", "tau_pre", "tau_post1", "tau_post2")
    }
    if model.conductance_decay == "euler":
        decay.update(tau_ge=1 - dt / model.tau_ge, tau_gi=1 - dt / model.tau_gi)
    lateral = model.w_ie * (1.0 - jnp.eye(n))
    zeros = jnp.zeros(n)
    carry = dict(
        v_e=jnp.full(n, model.v_rest_e), v_i=jnp.full(n, model.v_rest_i),
        ge_e=zeros, gi_e=zeros, ge_i=zeros,
        rest_e=zeros, rest_i=zeros, pre=jnp.zeros(model.num_inputs),
        timer_e=jnp.full(n, model.timer_rate * model.rest_ms),  # as after a rest
        post1=zeros, post2=zeros, weights=weights, theta=theta, count=zeros,
    )  # fmt: skip
    num_inputs = model.num_inputs

    def body(c, inputs):
        step, spiked = inputs
        pre_spikes = spiked.astype(jnp.float32)
        w = c["weights"]
        current = pre_spikes @ w  # under `vmap` (evaluation): one batched matmul
        if learn:
            # indices of the inputs that spiked, padded with an out-of-range one
            (rows,) = jnp.nonzero(spiked, size=max_active, fill_value=num_inputs)
            # step 0 is dense: it clips every weight, as the dense rule does
            sparse = (spiked.sum() <= max_active) & (step > 0)
            current = jax.lax.cond(
                sparse,
                lambda: w.at[rows].get(mode="fill", fill_value=0.0).sum(0),
                lambda: pre_spikes @ w,
            )
        ge_e = c["ge_e"] + current
        i_e = ge_e * (-c["v_e"]) + c["gi_e"] * (-100.0 - c["v_e"])
        active_e = c["rest_e"] <= 0
        v_e = jnp.where(
            active_e, c["v_e"] + dt * ((model.v_rest_e - c["v_e"]) + i_e) / model.tau_e,
            c["v_e"],
        )  # fmt: skip
        threshold = model.v_thresh_e + c["theta"] - model.offset_e
        timer_e = c["timer_e"] + model.timer_rate * dt
        may_fire = active_e & (timer_e > model.refrac_e)
        spikes_e = ((v_e > threshold) & may_fire).astype(jnp.float32)
        v_e = jnp.where(spikes_e > 0, model.v_reset_e, v_e)
        ge_i = c["ge_i"] + model.w_ei * spikes_e
        i_i = ge_i * (-c["v_i"])  # no inhibition onto inhibitory neurons
        active_i = c["rest_i"] <= 0
        v_i = jnp.where(
            active_i, c["v_i"] + dt * ((model.v_rest_i - c["v_i"]) + i_i) / model.tau_i,
            c["v_i"],
        )  # fmt: skip
        spikes_i = ((v_i > model.v_thresh_i) & active_i).astype(jnp.float32)
        v_i = jnp.where(spikes_i > 0, model.v_reset_i, v_i)
        gi_e = c["gi_e"] + spikes_i @ lateral
        pre = c["pre"] * decay["tau_pre"]
        post1 = c["post1"] * decay["tau_post1"]
        post2 = c["post2"] * decay["tau_post2"]
        if learn:
            pre = jnp.where(spiked, 1.0, pre)
            fired = spikes_e.sum() > 0

            def sparse_rule(w):
                # pre spike: w -= nu_pre * post1 on its row; clip those rows
                w = w.at[rows].add(-model.nu_pre * post1, mode="drop")
                w = jax.lax.cond(fired, potentiate, lambda w: w, w)
                clipped = jnp.clip(w.at[rows].get(mode="fill", fill_value=0.0), 0.0)
                return w.at[rows].set(clipped, mode="drop")

            def potentiate(w):
                # post spike: w += nu_post * pre * post2 on its column, clipped
                w = w + model.nu_post * jnp.outer(pre, spikes_e * post2)
                return jnp.clip(w, 0.0, model.w_max)

            def dense_rule(w):
                w = w - model.nu_pre * jnp.outer(pre_spikes, post1)
                w = w + model.nu_post * jnp.outer(pre, spikes_e * post2)
                return jnp.clip(w, 0.0, model.w_max)

            w = jax.lax.cond(sparse, sparse_rule, dense_rule, w)
        post1 = jnp.where(spikes_e > 0, 1.0, post1)
        post2 = jnp.where(spikes_e > 0, 1.0, post2)
        theta = c["theta"] + (model.theta_plus * spikes_e if learn else 0.0)
        return dict(
            v_e=v_e, v_i=v_i, ge_e=ge_e * decay["tau_ge"], gi_e=gi_e * decay["tau_gi"],
            ge_i=ge_i * decay["tau_ge"],
            rest_e=jnp.where(spikes_e > 0, model.refrac_e, c["rest_e"] - dt),
            rest_i=jnp.where(spikes_i > 0, model.refrac_i, c["rest_i"] - dt),
            timer_e=jnp.where(spikes_e > 0, 0.0, timer_e),
            pre=pre, post1=post1, post2=post2, weights=w, theta=theta,
            count=c["count"] + spikes_e,
        ), None  # fmt: skip

    steps = jnp.arange(len(pre_spikes))
    carry, _ = jax.lax.scan(body, carry, (steps, pre_spikes))
    return carry["weights"], carry["theta"], carry["count"]


def normalize(model: DiehlCook, weights: jax.Array) -> jax.Array:
    return weights * (model.weight_sum / weights.sum(0, keepdims=True))


def show(model, weights, theta, key, image, learn):
    """`present` with the paper's retry: brighter until >= min_spikes spikes."""
    if learn:
        weights = normalize(model, weights)

    def cond(carry):
        _, _, counts, repeat = carry
        return (counts.sum() < model.min_spikes) & (repeat < model.max_repeats)

    def body(carry):
        weights, theta, _, repeat = carry
        key_repeat = jax.random.fold_in(key, repeat)
        intensity = 2.0 + repeat  # +32 Hz at the brightest pixel per retry
        out = present(model, weights, theta, key_repeat, image, intensity, learn)
        return (*out, repeat + 1)

    start = (weights, theta, jnp.zeros(model.num_neurons), jnp.int32(0))
    weights_out, theta_out, counts, _ = jax.lax.while_loop(cond, body, start)
    return weights_out, theta_out, counts


def make_train_step(model: DiehlCook):
    """fit step: a chunk of images (K, 784) shown one after another, learning on."""

    def step(state: DiehlCookState, batch, key):
        def one(carry, inputs):
            weights, theta = carry
            image, index = inputs
            weights, theta, counts = show(
                model, weights, theta, jax.random.fold_in(key, index), image, True
            )
            return (weights, theta), counts.sum()

        images = batch["image"].reshape(-1, model.num_inputs).astype(jnp.float32)
        (weights, theta), spikes = jax.lax.scan(
            one, (state.weights, state.theta), (images, jnp.arange(len(images)))
        )
        metrics = {
            "train/mean_theta": theta.mean(),
            "train/max_theta": theta.max(),
            "train/mean_weight": weights.mean(),
            "train/spikes_per_image": spikes.mean(),  # of the last presentation
        }
        return DiehlCookState(weights, theta, state.step + 1), metrics

    return step


def make_responses(model: DiehlCook):
    """`(weights, theta, key, images (B, 784)) -> spike counts (B, N)`, no learning."""

    @jax.jit
    def responses(weights, theta, key, images):
        keys = jax.random.split(key, images.shape[0])
        images = images.reshape(images.shape[0], -1).astype(jnp.float32)
        counts = jax.vmap(lambda k, x: show(model, weights, theta, k, x, False)[2])
        return counts(keys, images)

    return responses


def assign_labels(counts: jax.Array, labels: jax.Array, num_classes: int = 10):
    """Each neuron's class: argmax over classes of its mean count. counts (B, N)."""
    onehot = jax.nn.one_hot(labels, num_classes)  # (B, C)
    per_class = onehot.T @ counts / jnp.maximum(onehot.sum(0)[:, None], 1.0)
    return per_class.argmax(0)  # (N,)


def predict(counts: jax.Array, neuron_labels: jax.Array, num_classes: int = 10):
    """Class with the highest mean count over its neurons. counts (B, N) -> (B,)."""
    onehot = jax.nn.one_hot(neuron_labels, num_classes)  # (N, C)
    mean = counts @ onehot / jnp.maximum(onehot.sum(0), 1.0)
    return mean.argmax(-1)
