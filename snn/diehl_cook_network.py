"""The Diehl & Cook (2015) network, step by step, in the authors' Brian 1 order.

Diehl & Cook, "Unsupervised learning of digit recognition using
spike-timing-dependent plasticity", Front. Comput. Neurosci. 9:99 (2015); the
schedule and STDP bookkeeping follow their Brian 1 script
(peter-u-diehl/stdp-mnist, `Diehl&Cook_spiking_MNIST.py`) and Brian 1's
`Network.update` and C STDP for delayed connections. One 0.5 ms step:

1. groups: every neuron integrates from the previous step's state (forward
   Euler, as Brian 1 does for these nonlinear equations; conductances decay
   by `1 - dt / tau`, or exactly with `conductance_decay="exact"`); then the
   thresholds give this step's excitatory and inhibitory spikes. An input
   spike therefore moves the membrane one step after it arrives, and an
   excitatory spike inhibits the others two steps later (E -> I this step,
   I fires next step, I -> E the step after).
2. connections: input spikes are scheduled into a ring buffer at their
   synapse's fixed random delay (0-10 ms, drawn at `init`, `input_delay_ms`),
   this step's arrivals are added to `ge`; E -> I and I -> E add their fixed
   weights. STDP (Brian 1's C STDP on a delayed connection): a pre spike sets
   its trace `pre = 1` at once, and `max_delay` later depresses its row by
   `nu_pre * post1`, `post1` read at the arrival time of each synapse; a post
   spike potentiates its column by `nu_post * pre * post2before`, `pre` read
   `delay` ago (the trace as the synapse saw it). Weights touched are clipped.
3. resets: spiking excitatory neurons go to `v_reset`, theta += theta_plus,
   timer = 0; a refractory neuron (fewer than `refrac / dt` steps since its
   spike) is held at its reset value. Brian 1 only clamps `v` then, so a
   one-step jump over threshold (ge >= 40, never reached here) could still
   fire; here a refractory neuron cannot fire.

The state (a `rest_state` dict) carries over from image to image: the 150 ms rest is
simulated (no input), its first `rest_explicit_ms` step by step (in-flight
delayed spikes and their depression), the rest as the closed-form decay of a
silent network (`rest_decay`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from snn.diehl_cook_synapses import (
    deliver,
    depress,
    for_chunks,
    num_delay_slots,
    potentiate,
)

MAX_ACTIVE = 8  # input spikes per pass (~3 per step on MNIST at intensity 2)
MAX_FIRED = 2  # excitatory spikes per potentiation pass
LONG_AGO = 1 << 20  # steps since a spike, for neurons that have not fired


def refractory_steps(model):
    return round(model.refrac_e / model.dt), round(model.refrac_i / model.dt)


def draw_delays(model, key: jax.Array) -> jax.Array:
    """Input -> excitatory delays in steps, uniform on [0, input_delay_ms)."""
    shape = (model.num_inputs, model.num_neurons)
    steps = jax.random.uniform(key, shape) * model.input_delay_ms / model.dt
    return jnp.minimum(steps.astype(jnp.int32), num_delay_slots(model) - 1)


def rest_state(model, v_e=None, v_i=None) -> dict:
    """A network at rest (as after a long pause): `(N,)` / `(784,)` arrays."""
    n, slots = model.num_neurons, num_delay_slots(model)
    zeros = jnp.zeros(n)
    long_ago = jnp.full(n, LONG_AGO, jnp.int32)
    return dict(
        v_e=jnp.full(n, model.v_rest_e if v_e is None else v_e),
        v_i=jnp.full(n, model.v_rest_i if v_i is None else v_i),
        ge_e=zeros, gi_e=zeros, ge_i=zeros, since_e=long_ago, since_i=long_ago,
        timer_e=jnp.full(n, model.timer_rate * model.rest_ms),
        pre=jnp.zeros(model.num_inputs), post1=zeros, post2=zeros,
        arrivals=jnp.zeros((slots, n)),  # ge increments due at step t (slot t % D)
        pre_hist=jnp.zeros((slots, model.num_inputs)),  # pre at the end of step t
        post1_hist=jnp.zeros((slots, n)),
        spiked_hist=jnp.zeros((slots, model.num_inputs), bool),
        t=jnp.zeros((), jnp.int32),
    )  # fmt: skip


def decays(model) -> dict:
    dt = model.dt
    out = {
        name: jnp.exp(-dt / getattr(model, name))
        for name in ("tau_ge", "tau_gi", "tau_pre", "tau_post1", "tau_post2")
    }
    if model.conductance_decay == "euler":
        out.update(tau_ge=1 - dt / model.tau_ge, tau_gi=1 - dt / model.tau_gi)
    return out


def simulate(
    model,
    net,
    weights,
    theta,
    delays,
    pre_spikes,
    learn,
    max_active=MAX_ACTIVE,
    max_fired=MAX_FIRED,
):
    """Runs the network from state `net` on a bool input spike train (T, 784).

    Args:
      net: a `rest_state`-shaped dict (carried from image to image).
      weights, theta, delays: `(784, N)`, `(N,)`, `(784, N)` int steps.
      learn: STDP and theta adaptation on (static).

    Returns:
      (net, weights, theta, spike counts (N,)). Event-driven: a step touches
      only the rows of inputs that spiked (delivery, depression) and the
      columns of neurons that fired (potentiation), `max_active` rows and
      `max_fired` columns per pass (`for_chunks`: one pass in the usual step,
      more in a burst), exactly the dense rule. Every update of the (784, N)
      weights is in place: no `cond` returns them and each pass gathers its
      rows once before scattering (XLA copied the matrix twice per step
      otherwise; `test_weights_are_not_copied_inside_the_time_loop`).
    """
    dt, slots, n = model.dt, num_delay_slots(model), model.num_neurons
    inputs = model.num_inputs
    power_law = model.stdp_rule == "power_law"
    decay = decays(model)
    refrac_e, refrac_i = refractory_steps(model)
    # the barrier keeps XLA from sinking the transpose into the loop body
    delays_t = jax.lax.optimization_barrier(delays.T)

    def deliver_only(w, spiked, arrivals, t):
        def update(rows, arrivals):
            vals = w.at[rows].get(mode="fill", fill_value=0.0)
            return deliver(model, vals, arrivals, delays, t, rows)

        return for_chunks(spiked, max_active, update, arrivals)

    def body(c, spiked):
        c = dict(c)
        t, w = c["t"], c["weights"]
        slot = t % slots
        # 1. groups: Euler from the previous state, then thresholds
        v_e, v_i = c["v_e"], c["v_i"]
        i_e = c["ge_e"] * (-v_e) + c["gi_e"] * (-100.0 - v_e)
        v_e = v_e + dt * ((model.v_rest_e - v_e) + i_e) / model.tau_e
        v_i = v_i + dt * ((model.v_rest_i - v_i) - c["ge_i"] * v_i) / model.tau_i
        ge_e, gi_e = c["ge_e"] * decay["tau_ge"], c["gi_e"] * decay["tau_gi"]
        ge_i = c["ge_i"] * decay["tau_ge"]
        since_e = jnp.minimum(c["since_e"] + 1, LONG_AGO)
        since_i = jnp.minimum(c["since_i"] + 1, LONG_AGO)
        timer_e = c["timer_e"] + model.timer_rate * dt
        threshold = model.v_thresh_e + c["theta"] - model.offset_e
        may_fire = (since_e >= refrac_e) & (timer_e > model.refrac_e)
        spikes_e = (v_e > threshold) & may_fire
        spikes_i = (v_i > model.v_thresh_i) & (since_i >= refrac_i)
        fired_e = spikes_e.astype(jnp.float32)
        # 2. connections: deliver input at its delay, E -> I, I -> E, STDP
        pre = c["pre"] * decay["tau_pre"]
        if learn:
            # the paper's Eq. 3 trace adds 1 per spike, the script's is set to 1
            pre = pre + spiked if power_law else jnp.where(spiked, 1.0, pre)
            c["pre_hist"] = c["pre_hist"].at[slot].set(pre)
            if power_law:  # Eq. 3 changes w at post spikes only

                def deliver_in_place(rows, carry):
                    w, arrivals = carry
                    vals = w.at[rows].get(mode="fill", fill_value=0.0)
                    arrivals = deliver(model, vals, arrivals, delays, t, rows)
                    # writes one gathered value back: w, read-only here, is
                    # copied twice per step (1.25 MB at 400 neurons) if no
                    # loop updates it before potentiation does
                    w = w.at[rows[0], 0].set(vals[0, 0], mode="drop")
                    return w, arrivals

                w, arrivals = for_chunks(
                    spiked, max_active, deliver_in_place, (w, c["arrivals"])
                )
            else:
                # this step's input spikes, then those of step t - D (depression)
                both = jnp.concatenate([spiked, c["spiked_hist"][slot]])

                def deliver_then_depress(indices, carry):
                    w, arrivals = carry
                    new = jnp.where(indices < inputs, indices, inputs)  # pad: dropped
                    old = jnp.where(indices >= inputs, indices - inputs, inputs)
                    # one gather for both, so that it precedes the in-place
                    # scatter (two gathers make XLA copy w)
                    rows = w.at[jnp.concatenate([new, old])].get(
                        mode="fill", fill_value=0.0
                    )
                    arrivals = deliver(
                        model, rows[: len(new)], arrivals, delays, t, new
                    )
                    w = depress(
                        model, w, rows[len(new) :], delays, t, old, c["post1_hist"]
                    )
                    return w, arrivals

                w, arrivals = for_chunks(
                    both, max_active, deliver_then_depress, (w, c["arrivals"])
                )
            post2_before = c["post2"] * decay["tau_post2"]
            w = for_chunks(
                spikes_e, max_fired,
                lambda ks, w: potentiate(
                    model, w, delays_t, t, ks, c["pre_hist"], post2_before
                ),
                w,
            )  # fmt: skip
            c["spiked_hist"] = c["spiked_hist"].at[slot].set(spiked)
        else:
            arrivals = deliver_only(w, spiked, c["arrivals"], t)
        ge_e = ge_e + arrivals[slot]
        ge_i = ge_i + model.w_ei * fired_e
        # I -> E onto all but its own E neuron: w_ie * (spiking others), an
        # integer count times 17 (exact, so equal to the (N, N) matvec it
        # replaces, which cost ~10 us per step at 400 neurons)
        fired_i = spikes_i.astype(jnp.float32)
        gi_e = gi_e + model.w_ie * (fired_i.sum() - fired_i)
        post1 = c["post1"] * decay["tau_post1"]
        post2 = c["post2"] * decay["tau_post2"]
        # 3. resets and refractory clamps
        post1 = jnp.where(spikes_e, 1.0, post1)
        post2 = jnp.where(spikes_e, 1.0, post2)
        since_e = jnp.where(spikes_e, 0, since_e)
        since_i = jnp.where(spikes_i, 0, since_i)
        c.update(
            v_e=jnp.where(since_e < refrac_e, model.v_reset_e, v_e),
            v_i=jnp.where(since_i < refrac_i, model.v_reset_i, v_i),
            ge_e=ge_e, gi_e=gi_e, ge_i=ge_i, since_e=since_e, since_i=since_i,
            timer_e=jnp.where(spikes_e, 0.0, timer_e), pre=pre, post1=post1,
            post2=post2, arrivals=arrivals.at[slot].set(0.0), t=t + 1, weights=w,
            theta=c["theta"] + (model.theta_plus * fired_e if learn else 0.0),
            count=c["count"] + fired_e,
        )  # fmt: skip
        if learn:
            c["post1_hist"] = c["post1_hist"].at[slot].set(post1)
        return c, None

    carry = dict(net, weights=weights, theta=theta, count=jnp.zeros(n))
    carry, _ = jax.lax.scan(body, carry, pre_spikes)
    weights, theta = carry.pop("weights"), carry.pop("theta")
    counts = carry.pop("count")
    return carry, weights, theta, counts


def rest_decay(model, net, num_steps: int) -> dict:
    """`num_steps` steps of a silent network in closed form: Euler membranes
    relax to rest, conductances and traces decay, histories age (rolled so
    slot t % D still holds step t). Exact when no spike falls in them and no
    delayed spike is in flight, and up to residual conductance (simulate a
    few tau_gi of rest first)."""
    dt, roll = model.dt, num_steps % num_delay_slots(model)
    decay = decays(model)
    relax_e = (1 - dt / model.tau_e) ** num_steps
    relax_i = (1 - dt / model.tau_i) ** num_steps
    trace = {k: decay[k] ** num_steps for k in ("tau_pre", "tau_post1", "tau_post2")}
    return dict(
        net,
        v_e=model.v_rest_e + (net["v_e"] - model.v_rest_e) * relax_e,
        v_i=model.v_rest_i + (net["v_i"] - model.v_rest_i) * relax_i,
        ge_e=net["ge_e"] * decay["tau_ge"] ** num_steps,
        gi_e=net["gi_e"] * decay["tau_gi"] ** num_steps,
        ge_i=net["ge_i"] * decay["tau_ge"] ** num_steps,
        since_e=jnp.minimum(net["since_e"] + num_steps, LONG_AGO),
        since_i=jnp.minimum(net["since_i"] + num_steps, LONG_AGO),
        timer_e=net["timer_e"] + model.timer_rate * dt * num_steps,
        pre=net["pre"] * trace["tau_pre"], post1=net["post1"] * trace["tau_post1"],
        post2=net["post2"] * trace["tau_post2"],
        arrivals=jnp.roll(net["arrivals"], roll, 0),
        pre_hist=jnp.roll(net["pre_hist"], roll, 0) * trace["tau_pre"],
        post1_hist=jnp.roll(net["post1_hist"], roll, 0) * trace["tau_post1"],
        spiked_hist=jnp.roll(net["spiked_hist"], roll, 0),
        t=net["t"] + num_steps,
    )  # fmt: skip
