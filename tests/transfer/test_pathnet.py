"""PathNet forward (dense, masked) and path validation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shared.errors import UserError
from tests.transfer.helpers import init_params
from transfer import pathnet

SPEC = pathnet.PathNetSpec(
    num_layers=3, num_modules=4, modules_per_layer=2, units=8, input_shape=(12,)
)
# Jitted once per spec: eager mode would compile every primitive separately.
apply = jax.jit(pathnet.apply, static_argnums=3)


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


def test_init_schemes_torch_bounds_and_tf_truncated_normal():
    spec = pathnet.PathNetSpec(num_modules=6, units=20, input_shape=(784,))
    tf_spec = pathnet.PathNetSpec(**{**spec.__dict__, "init": "tf"})
    init = jax.jit(pathnet.init_params, static_argnums=1)
    torch, tf = jax.device_get(
        (init(jax.random.key(0), spec), init(jax.random.key(0), tf_spec))
    )
    for index, layer in enumerate(torch["layers"]):  # U(+-1/sqrt(fan_in))
        bound = 1 / np.sqrt(784 if index == 0 else 20)
        for leaf in (layer["w"], layer["b"]):
            assert np.abs(leaf).max() <= bound and np.abs(leaf).max() > 0.9 * bound
    weights = np.concatenate(
        [layer["w"].ravel() for layer in tf["layers"]] + [tf["head"]["w"].ravel()]
    )
    # N(0, 0.1) truncated at +-2 sigma: std 0.1 * 0.8796, no value beyond 0.2.
    assert np.abs(weights).max() <= 0.2 and np.abs(weights).max() > 0.19
    assert abs(weights.std() - 0.08796) < 0.002 and abs(weights.mean()) < 0.002
    for bias in [layer["b"] for layer in tf["layers"]] + [tf["head"]["b"]]:
        np.testing.assert_array_equal(bias, np.float32(0.1))
    with pytest.raises(UserError, match="init"):
        pathnet.PathNetSpec(init="xavier")
