"""Bank updates: frozen-module masks, task B's start, gathered sub-networks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.transfer.helpers import init_params
from transfer import bank_updates, pathnet

SPEC = pathnet.PathNetSpec(
    num_layers=3, num_modules=4, modules_per_layer=2, units=8, input_shape=(12,)
)


def test_frozen_modules_bit_identical_under_adam_while_others_change(key):
    params = init_params(key, SPEC)
    frozen = np.array([[True, False, False, True]] * 3)
    optimizer = optax.adam(0.1)
    opt_state = jax.jit(optimizer.init)(params)
    path = jnp.array([[0, 1], [0, 3], [1, 3]])  # uses frozen and free modules
    x = np.random.default_rng(1).uniform(size=(4, 12)).astype(np.float32)
    start = params

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(lambda p: pathnet.apply(p, path, x, SPEC).sum())(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(
            params, bank_updates.mask_updates(updates, frozen)
        ), (opt_state)

    for _ in range(3):
        params, opt_state = step(params, opt_state)
    params = jax.device_get(params)
    for index, (old, new) in enumerate(
        zip(start["layers"], params["layers"], strict=True)
    ):
        for m in range(SPEC.num_modules):
            same = np.array_equal(old["w"][m], new["w"][m])
            used = bool(np.any(np.asarray(path[index]) == m))
            assert same == (bool(frozen[index, m]) or not used), (index, m)
    assert not np.array_equal(start["head"]["w"], params["head"]["w"])


def test_keep_frozen_takes_frozen_modules_from_old_rest_from_fresh(key):
    params, fresh = init_params(key, SPEC), init_params(key, SPEC, seed=1)
    frozen = np.zeros((3, 4), bool)
    frozen[1, 2] = True
    out = jax.device_get(jax.jit(bank_updates.keep_frozen)(params, fresh, frozen))
    for index, layer in enumerate(out["layers"]):
        for m in range(SPEC.num_modules):
            source = params if frozen[index, m] else fresh
            for name in ("w", "b"):
                np.testing.assert_array_equal(
                    layer[name][m], source["layers"][index][name][m]
                )
    np.testing.assert_array_equal(out["head"]["w"], fresh["head"]["w"])


@pytest.mark.parametrize("module", ["linear", "conv"])
def test_gathered_path_forward_equals_dense_forward(key, module):
    """`gather_path` + `apply_path` (the serial GA's fast form) == `apply`."""
    if module == "linear":
        spec = pathnet.PathNetSpec(**{**SPEC.__dict__, "last_layer_mean": True})
        x = np.random.default_rng(1).uniform(size=(5, 12)).astype(np.float32)
    else:
        spec = pathnet.PathNetSpec(
            num_layers=3,
            num_modules=4,
            modules_per_layer=2,
            units=3,
            input_shape=(6, 6, 2),
            module="conv",
        )
        x = np.random.default_rng(1).uniform(size=(2, 6, 6, 2)).astype(np.float32)
    params = init_params(key, spec)
    path = jnp.array([[0, 3], [2, 2], [1, 0]])  # layer 1 repeats module 2

    @jax.jit
    def both(params, path, x):
        gathered = {"layers": bank_updates.gather_path(params["layers"], path)}
        gathered["head"] = params["head"]
        keep = bank_updates.first_occurrence(path)
        return bank_updates.apply_path(gathered, keep, x, spec), pathnet.apply(
            params, path, x, spec
        )

    fast, dense = both(params, path, x)
    np.testing.assert_allclose(fast, dense, rtol=1e-5, atol=1e-6)


def test_scatter_path_adds_each_modules_change_once(key):
    params = init_params(key, SPEC)
    path = jnp.array([[0, 3], [2, 2], [1, 0]])

    @jax.jit
    def roundtrip(layers, path):
        old = bank_updates.gather_path(layers, path)
        # change every gathered column, except the repeat's copy (as training does)
        new = jax.tree.map(lambda a: a + 1.0, old)
        keep = bank_updates.first_occurrence(path)
        row = jnp.repeat(keep[1], SPEC.units)
        new[1]["w"] = jnp.where(row, new[1]["w"], old[1]["w"])
        new[1]["b"] = jnp.where(row, new[1]["b"], old[1]["b"])
        return bank_updates.scatter_path(layers, path, new, old), keep

    out, keep = jax.device_get(roundtrip(params["layers"], path))
    np.testing.assert_array_equal(keep, [[True, True], [True, False], [True, True]])
    for index, (before, after) in enumerate(zip(params["layers"], out, strict=True)):
        for m in range(SPEC.num_modules):
            want = 1.0 if m in np.asarray(path[index]) else 0.0
            np.testing.assert_allclose(after["w"][m] - before["w"][m], want, atol=1e-6)
            np.testing.assert_allclose(after["b"][m] - before["b"][m], want, atol=1e-6)


def test_gathered_trainable_masks_frozen_modules_and_repeats():
    frozen = np.zeros((3, 4), bool)
    frozen[0, 3] = frozen[2, 1] = True
    path = jnp.array([[0, 3], [2, 2], [1, 0]])
    got = np.asarray(
        jax.jit(bank_updates.gathered_trainable, static_argnums=2)(path, frozen, 2)
    )
    want = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(got, want)
