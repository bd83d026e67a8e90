"""Event-driven delayed synapses (snn/diehl_cook_synapses.py) against dense NumPy."""

import types

import jax.numpy as jnp
import numpy as np

from snn import diehl_cook_synapses as synapses

MODEL = types.SimpleNamespace(
    input_delay_ms=2.0, dt=0.5, num_neurons=3, num_inputs=5, nu_pre=0.1,
    nu_post=0.2, w_max=1.0, x_tar=0.4, mu=0.2, stdp_rule="power_law",
)  # fmt: skip
SLOTS = 4  # 2 ms / 0.5 ms


def test_num_delay_slots():
    assert synapses.num_delay_slots(MODEL) == SLOTS
    assert (
        synapses.num_delay_slots(types.SimpleNamespace(input_delay_ms=0.0, dt=0.5)) == 1
    )


def test_for_chunks_visits_every_set_entry_once_in_order():
    mask = jnp.array([0, 1, 1, 0, 1, 1, 1], bool)

    def update(indices, seen):  # padding indices (== len(mask)) are dropped
        return seen.at[indices].add(1, mode="drop")

    seen = synapses.for_chunks(mask, 2, update, jnp.zeros(7, jnp.int32))
    np.testing.assert_array_equal(seen, np.asarray(mask, int))


def test_first_set_equals_flatnonzero_in_order():
    """`first_set` (`lax.top_k` on the mask) gives the first set indices in
    ascending order, padded with len(mask), as `jnp.nonzero(size=...)` did:
    the order of the scatter-adds, so of the float sums, depends on it."""
    rng = np.random.default_rng(0)
    for length, size, rate in ((784, 8, 0.004), (784, 8, 0.05), (16, 64, 0.5)):
        for _ in range(3):
            mask = rng.random(length) < rate
            got = np.asarray(synapses.first_set(jnp.asarray(mask), size))
            expected = np.flatnonzero(mask)[: min(size, length)]
            padded = np.full(min(size, length), length)
            padded[: len(expected)] = expected
            np.testing.assert_array_equal(got, padded)


def test_deliver_and_depress_equal_the_dense_rule():
    rng = np.random.default_rng(0)
    delays = rng.integers(0, SLOTS, (MODEL.num_inputs, MODEL.num_neurons))
    w = rng.uniform(0, 1, (MODEL.num_inputs, MODEL.num_neurons)).astype(np.float32)
    rows, t = np.array([1, 3]), 6
    arrivals = synapses.deliver(
        MODEL, jnp.asarray(w[rows]), jnp.zeros((SLOTS, 3)), jnp.asarray(delays), t,
        jnp.asarray(rows),
    )  # fmt: skip
    expected = np.zeros((SLOTS, 3), np.float32)
    for i in rows:
        for k in range(3):
            expected[(t + delays[i, k]) % SLOTS, k] += w[i, k]
    np.testing.assert_allclose(arrivals, expected, rtol=1e-6)

    post1_hist = rng.uniform(0, 5, (SLOTS, 3)).astype(np.float32)
    new = synapses.depress(
        MODEL, jnp.asarray(w), jnp.asarray(w[rows]), jnp.asarray(delays), t,
        jnp.asarray(rows), jnp.asarray(post1_hist),
    )  # fmt: skip
    dense = w.copy()
    for i in rows:
        for k in range(3):
            post1 = post1_hist[(t - SLOTS + delays[i, k]) % SLOTS, k]
            dense[i, k] = np.clip(w[i, k] - MODEL.nu_pre * post1, 0, MODEL.w_max)
    np.testing.assert_allclose(new, dense, rtol=1e-6)


def test_power_law_potentiation_equals_eq3_on_fired_columns_only():
    rng = np.random.default_rng(1)
    delays_t = rng.integers(0, SLOTS, (MODEL.num_neurons, MODEL.num_inputs))
    w = rng.uniform(0, 1, (MODEL.num_inputs, MODEL.num_neurons)).astype(np.float32)
    pre_hist = rng.uniform(0, 1, (SLOTS, MODEL.num_inputs)).astype(np.float32)
    ks, t = np.array([2]), 9
    new = synapses.potentiate(
        MODEL, jnp.asarray(w), jnp.asarray(delays_t), t, jnp.asarray(ks),
        jnp.asarray(pre_hist), jnp.zeros(3),
    )  # fmt: skip
    dense = w.copy()
    for i in range(MODEL.num_inputs):
        pre = pre_hist[(t - delays_t[2, i]) % SLOTS, i]
        change = (pre - MODEL.x_tar) * (MODEL.w_max - w[i, 2]) ** MODEL.mu
        dense[i, 2] = np.clip(w[i, 2] + MODEL.nu_post * change, 0, MODEL.w_max)
    np.testing.assert_allclose(new, dense, rtol=1e-5)
