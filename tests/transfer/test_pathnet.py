"""PathNet forward, frozen-module masks and path validation."""

import functools

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
apply = jax.jit(pathnet.apply, static_argnums=3)


def init_params(key, spec, seed=0):
    """Random float32 params of `spec`'s shapes, drawn in NumPy (no compile)."""
    shapes = jax.eval_shape(functools.partial(pathnet.init_params, spec=spec), key)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: rng.uniform(-0.5, 0.5, leaf.shape).astype(np.float32), shapes
    )


def numpy_conv(h, w):
    """3x3, stride 2, SAME (pad 0 before, 1 after on even sizes), NHWC x HWIO."""
    batch, height, width, _ = h.shape
    out_h, out_w = -(-height // 2), -(-width // 2)
    pad_h = max((out_h - 1) * 2 + 3 - height, 0)
    pad_w = max((out_w - 1) * 2 + 3 - width, 0)
    padded = np.pad(
        h,
        (
            (0, 0),
            (pad_h // 2, pad_h - pad_h // 2),
            (pad_w // 2, pad_w - pad_w // 2),
            (0, 0),
        ),
    )
    out = np.zeros((batch, out_h, out_w, w.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, w)
    return out


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
    x = np.random.default_rng(1).uniform(size=(5, 12)).astype(np.float32)
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
    x = np.random.default_rng(1).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    logits = apply(params, jnp.array([[0, 2], [1, 1]]), x, spec)
    h = x.astype(np.float64)
    for layer, row in zip(params["layers"], [[0, 2], [1]], strict=True):
        h = sum(
            np.maximum(numpy_conv(h, layer["w"][m]) + layer["b"][m], 0.0) for m in row
        )
    want = h.reshape(2, -1) @ params["head"]["w"] + params["head"]["b"]
    assert spec.feature_size == 2 * 2 * 4
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_vmapped_paths_match_the_numpy_reference_per_path(key):
    """Under vmap over paths the dense forward is one GEMM; values stay per path."""
    params = init_params(key, SPEC)
    rng = np.random.default_rng(2)
    paths = rng.integers(0, SPEC.num_modules, (5, 3, 2))
    x = rng.uniform(size=(5, 4, 12)).astype(np.float32)
    batched = jax.jit(
        jax.vmap(pathnet.apply, in_axes=(None, 0, 0, None)), static_argnums=3
    )
    logits = batched(params, jnp.asarray(paths), x, SPEC)
    chex.assert_shape(logits, (5, 4, 2))
    for p in range(5):
        want = numpy_forward(params, paths[p], x[p])
        np.testing.assert_allclose(logits[p], want, rtol=1e-5, atol=1e-5)


def test_gradient_is_zero_exactly_off_the_path(key):
    params = init_params(key, SPEC)
    x = np.random.default_rng(1).uniform(size=(4, 12)).astype(np.float32)
    path = jnp.array([[0, 1], [2, 2], [3, 0]])
    grads = jax.jit(jax.grad(lambda p: pathnet.apply(p, path, x, SPEC).sum()))(params)
    grads = jax.device_get(grads)
    on = np.zeros((3, SPEC.num_modules), bool)
    on[np.arange(3)[:, None], np.asarray(path)] = True
    for index, layer in enumerate(grads["layers"]):
        norms = np.abs(np.asarray(layer["w"])).sum(axis=(1, 2))
        assert np.all(norms[~on[index]] == 0.0)
        assert np.all(norms[on[index]] > 0.0)


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
        return optax.apply_updates(params, pathnet.mask_updates(updates, frozen)), (
            opt_state
        )

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
    out = jax.device_get(jax.jit(pathnet.keep_frozen)(params, fresh, frozen))
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
        gathered = {"layers": pathnet.gather_path(params["layers"], path)}
        gathered["head"] = params["head"]
        keep = pathnet.first_occurrence(path)
        return pathnet.apply_path(gathered, keep, x, spec), pathnet.apply(
            params, path, x, spec
        )

    fast, dense = both(params, path, x)
    np.testing.assert_allclose(fast, dense, rtol=1e-5, atol=1e-6)


def test_scatter_path_adds_each_modules_change_once(key):
    params = init_params(key, SPEC)
    path = jnp.array([[0, 3], [2, 2], [1, 0]])

    @jax.jit
    def roundtrip(layers, path):
        old = pathnet.gather_path(layers, path)
        # change every gathered column, except the repeat's copy (as training does)
        new = jax.tree.map(lambda a: a + 1.0, old)
        keep = pathnet.first_occurrence(path)
        row = jnp.repeat(keep[1], SPEC.units)
        new[1]["w"] = jnp.where(row, new[1]["w"], old[1]["w"])
        new[1]["b"] = jnp.where(row, new[1]["b"], old[1]["b"])
        return pathnet.scatter_path(layers, path, new, old), keep

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
        jax.jit(pathnet.gathered_trainable, static_argnums=2)(path, frozen, 2)
    )
    want = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(got, want)


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
