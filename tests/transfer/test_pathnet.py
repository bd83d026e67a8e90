"""PathNet forward, frozen-module masks and path validation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transfer import pathnet

SPEC = pathnet.PathNetSpec(
    num_layers=3, num_modules=4, modules_per_layer=2, units=8, input_shape=(12,)
)
# Jitted once per spec: eager mode would compile every primitive separately.
init_params = jax.jit(pathnet.init_params, static_argnums=1)
apply = jax.jit(pathnet.apply, static_argnums=3)


def numpy_forward(params, path, x, last_layer_mean=False):
    """Reference: loop over the DISTINCT modules of each layer, sum their ReLUs."""
    params = jax.tree.map(np.asarray, params)
    h = np.asarray(x, np.float64)
    for index, layer in enumerate(params["layers"]):
        chosen = sorted(set(int(m) for m in path[index]))
        out = sum(np.maximum(h @ layer["w"][m] + layer["b"][m], 0.0) for m in chosen)
        if last_layer_mean and index == len(params["layers"]) - 1:
            out = out / len(chosen)
        h = out
    return h @ params["head"]["w"] + params["head"]["b"]


@pytest.mark.parametrize("last_layer_mean", [False, True])
def test_forward_matches_numpy_sum_of_selected_modules(key, last_layer_mean):
    spec = pathnet.PathNetSpec(**{**SPEC.__dict__, "last_layer_mean": last_layer_mean})
    params = init_params(key, spec)
    x = jax.random.uniform(jax.random.key(1), (5, 12))
    path = np.array([[0, 3], [2, 2], [1, 0]])  # layer 1 names module 2 twice
    logits = apply(params, jnp.asarray(path), x, spec)
    chex.assert_shape(logits, (5, 2))
    want = numpy_forward(params, path, x, last_layer_mean)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_conv_modules_match_per_module_convolutions(key):
    spec = pathnet.PathNetSpec(
        num_layers=2,
        num_modules=3,
        modules_per_layer=2,
        units=4,
        input_shape=(8, 8, 1),
        module="conv",
    )
    params = init_params(key, spec)
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
    path = jnp.array([[0, 2], [1, 1]])
    logits = apply(params, path, x, spec)

    @jax.jit
    def reference(params, h):
        for layer, row in zip(params["layers"], [[0, 2], [1]], strict=True):
            h = sum(
                jax.nn.relu(
                    jax.lax.conv_general_dilated(
                        h,
                        layer["w"][m],
                        (2, 2),
                        "SAME",
                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                    )
                    + layer["b"][m]
                )
                for m in row
            )
        return h.reshape(2, -1) @ params["head"]["w"] + params["head"]["b"]

    assert spec.feature_size == 2 * 2 * 4
    want = reference(params, x)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_gradient_is_zero_exactly_off_the_path(key):
    params = init_params(key, SPEC)
    x = jax.random.uniform(jax.random.key(1), (4, 12))
    path = jnp.array([[0, 1], [2, 2], [3, 0]])
    grads = jax.jit(jax.grad(lambda p: pathnet.apply(p, path, x, SPEC).sum()))(params)
    on = np.asarray(pathnet.active_modules(path, SPEC.num_modules))
    for index, layer in enumerate(grads["layers"]):
        norms = np.abs(np.asarray(layer["w"])).sum(axis=(1, 2))
        assert np.all(norms[~on[index]] == 0.0)
        assert np.all(norms[on[index]] > 0.0)


def test_frozen_modules_bit_identical_under_adam_while_others_change(key):
    params = init_params(key, SPEC)
    frozen = jnp.array([[True, False, False, True]] * 3)
    optimizer = optax.adam(0.1)
    opt_state = optimizer.init(params)
    path = jnp.array([[0, 1], [0, 3], [1, 3]])  # uses frozen and free modules
    x = jax.random.uniform(jax.random.key(1), (4, 12))
    start = params

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(lambda p: pathnet.apply(p, path, x, SPEC).sum())(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, pathnet.mask_updates(updates, frozen)), (
            opt_state
        )

    for _ in range(3):
        params, opt_state = step(params, opt_state)
    for index, (old, new) in enumerate(
        zip(start["layers"], params["layers"], strict=True)
    ):
        for m in range(SPEC.num_modules):
            same = np.array_equal(old["w"][m], new["w"][m])
            used = bool(np.any(np.asarray(path[index]) == m))
            assert same == (bool(frozen[index, m]) or not used), (index, m)
    assert not np.array_equal(start["head"]["w"], params["head"]["w"])


def test_reinit_unfrozen_keeps_only_frozen_modules(key):
    params = init_params(key, SPEC)
    frozen = jnp.zeros((3, 4), bool).at[1, 2].set(True)
    reinit = jax.jit(pathnet.reinit_unfrozen, static_argnums=3)
    fresh = reinit(jax.random.key(5), params, frozen, SPEC)
    layer_old, layer_new = params["layers"][1], fresh["layers"][1]
    np.testing.assert_array_equal(layer_old["w"][2], layer_new["w"][2])
    assert not np.array_equal(layer_old["w"][1], layer_new["w"][1])
    assert not np.array_equal(params["layers"][0]["b"][2], fresh["layers"][0]["b"][2])


@pytest.mark.parametrize(
    "path, message",
    [
        (np.array([[0, 1], [2, 4], [0, 0]]), r"entry \(1, 1\) = 4"),
        (np.array([[0, -1], [2, 3], [0, 0]]), r"entry \(0, 1\) = -1"),
        (np.zeros((3, 3), int), "must end in"),
        (np.zeros((3, 2), float), "dtype"),
    ],
)
def test_bad_paths_raise_a_clear_error(path, message):
    with pytest.raises(pathnet.PathError, match=message):
        pathnet.check_paths(path, SPEC)


def test_good_population_passes():
    paths = np.random.default_rng(0).integers(0, 4, (8, 3, 2))
    out = pathnet.check_paths(paths, SPEC)
    assert out.dtype == np.int32 and out.shape == (8, 3, 2)
