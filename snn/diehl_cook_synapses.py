"""Input synapses of the Diehl & Cook (2015) network: delays and delayed STDP.

Diehl & Cook, "Unsupervised learning of digit recognition using
spike-timing-dependent plasticity", Front. Comput. Neurosci. 9:99 (2015),
as run by their Brian 1 script (peter-u-diehl/stdp-mnist): each input ->
excitatory synapse has a fixed random delay of 0-10 ms, and Brian 1's C STDP
for delayed connections reads each trace as the synapse saw it. Here the
delays are a ring buffer of D slots (`arrivals[(t + d) % D]`), and every
update is event-driven: only the rows of inputs that spiked (delivery,
depression) and the columns of neurons that fired (potentiation) are touched,
a few at a time (`for_chunks`), exactly the dense rule. `diehl_cook_network`
calls these from its step (it explains the order within one step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def num_delay_slots(model) -> int:
    """Ring-buffer length D: delays are 0..D-1 steps (D = 1: no delays)."""
    return max(1, round(model.input_delay_ms / model.dt))


def first_set(mask, size):
    """Indices of the first `size` set entries of `mask`, ascending, padded
    with `len(mask)`. `lax.top_k` breaks ties by the lower index, so the set
    entries come out in order; on CPU it costs ~3 us for 784 entries where
    `jnp.nonzero` (a cumsum and a scatter) costs ~13 us, at every 0.5 ms
    step."""
    size = min(size, len(mask))
    values, indices = jax.lax.top_k(mask.astype(jnp.float32), size)
    return jnp.where(values > 0, indices, len(mask))


def for_chunks(mask, size, update, carry):
    """`carry = update(indices, carry)` for the set entries of `mask` (in
    order), `size` at a time (padded with `len(mask)`, which the updates
    drop): one pass for the usual few spikes, more in a burst. The carry
    goes through a `while_loop`, whose buffers XLA updates in place."""

    def body(loop):
        mask, carry = loop
        indices = first_set(mask, size)
        return mask.at[indices].set(False, mode="drop"), update(indices, carry)

    return jax.lax.while_loop(lambda loop: loop[0].any(), body, (mask, carry))[1]


def deliver(model, vals, arrivals, delays, t, rows):
    """Schedules `vals` (K, N), the weight rows of input spikes `rows` (K,),
    onto slot (t + delay) % D."""
    slots, cols = num_delay_slots(model), jnp.arange(model.num_neurons)
    d = delays.at[rows].get(mode="fill", fill_value=0)
    return arrivals.at[(t + d) % slots, cols].add(vals, mode="drop")


def depress(model, w, w_rows, delays, t, rows, post1_hist):
    """Brian 1's delayed depression for the input spikes `rows` of step t - D:
    that spike reached synapse (i, k) at t - D + d_ik, where w -= nu_pre *
    post1_k (slot t % D of the histories still holds step t - D: read before
    this step overwrites it). Touched weights are clipped."""
    slots, n = num_delay_slots(model), model.num_neurons
    d = delays.at[rows].get(mode="fill", fill_value=0)
    post1 = post1_hist[(t - slots + d) % slots, jnp.arange(n)]
    new = w_rows - model.nu_pre * post1  # w_rows = w[rows]
    return w.at[rows].set(jnp.clip(new, 0.0, model.w_max), mode="drop")


def potentiate(model, w, delays_t, t, ks, pre_hist, post2_before):
    """Potentiation of the columns `ks` of neurons that fired at step t:
    w[:, k] += nu_post * pre_i(t - d_ik) * post2before_k, `pre` as the synapse
    saw it (`pre_hist` (D, 784) at the end of each recent step). Clipped."""
    slots, inputs = num_delay_slots(model), jnp.arange(model.num_inputs)
    d = delays_t.at[ks].get(mode="fill", fill_value=0)  # (K, 784)
    pre = pre_hist.reshape(-1)[((t - d) % slots) * model.num_inputs + inputs]
    cols = w.at[:, ks].get(mode="fill", fill_value=0.0)
    if model.stdp_rule == "power_law":  # the paper's Eq. 3
        # normalisation can lift a weight above w_max: no growth room left
        room = jnp.maximum(model.w_max - cols, 0.0)
        change = (pre.T - model.x_tar) * room**model.mu
        new = cols + model.nu_post * change
    else:
        gain = model.nu_post * post2_before.at[ks].get(mode="fill", fill_value=0.0)
        if model.stdp_rule == "pair":  # BindsNET's PostPre: no post2 factor
            gain = jnp.full_like(gain, model.nu_post)
        new = cols + pre.T * gain
    return w.at[:, ks].set(jnp.clip(new, 0.0, model.w_max), mode="drop")
