"""PathNet: a bank of L x M modules, a path picks at most N modules per layer.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734 (section 2.1 architecture, 2.3 binary MNIST:
L=3 layers of M=10 linear modules of 20 ReLU units, at most N=3 per layer, a new
two-unit readout per task).

Representation (plain pytrees of arrays, no Module):
  params = {"layers": (layer_0, ..., layer_{L-1}), "head": {"w", "b"}}
  layer_l = {"w": (M, *kernel, in_l, units), "b": (M, units)}
Modules are stacked along a leading M axis in every layer. Layers are a tuple, not
one (L, M, ...) array, because layer 0 reads the 784-pixel input and later layers
read `units` features (stacking them would pad layer 1.. to 784 inputs).

A path is an int array (L, N) of module ids. Layer l's output is the sum of the
ReLU outputs of the modules the path names in row l; a module named twice counts
once (the genotype is a multiset, the network uses the set), and with
`last_layer_mean` the last layer averages instead of summing.

The forward runs ALL M modules of a layer as one matmul, (B, in) x (in, M*units),
and weights their ReLU outputs by the path's 0/1 (L, M) activity mask. That is
M/N times the arithmetic of running only the path's modules, but it is one dense
GEMM with no gather of weights and, in the backward pass, no scatter-add of
gradients into the bank: under `vmap` over P paths it becomes a single
(P*B, in) x (in, M*units) GEMM. Measured on this 2-core CPU (idle, jit, one
gradient of the summed loss of P = 64 paths x 16 images, binary-MNIST modules):
9.6 ms dense vs 21.6 ms gathering each path's modules (a batched
(16, 784) x (784, 60) matmul per path runs at ~13 GFLOP/s here, the dense GEMM at
~80). Modules off the path get exactly zero gradient (their outputs are
multiplied by 0.0).

The serial GA trains a path on its own modules only, and frozen modules are masked
out of every update: both live in `transfer.bank_updates`. `check_paths` validates
paths on the host with a clear error.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from shared.errors import UserError
from shared.types import Key


class PathError(UserError):
    """A path has the wrong shape, dtype or a module id out of range."""


@dataclasses.dataclass(frozen=True)
class PathNetSpec:
    """Static shape of a PathNet (never traced).

    Attributes:
      num_layers: L.
      num_modules: M modules per layer.
      modules_per_layer: N, the genes per layer of a path.
      units: ReLU units (linear) or channels (conv) per module.
      input_shape: one example's shape: (784,) for linear, (H, W, C) for conv.
      num_classes: outputs of each task's readout head.
      module: "linear" or "conv" (3x3, stride 2, SAME).
      last_layer_mean: average (not sum) the active modules of the last layer.
      init: "torch" (U(+-1/sqrt(fan_in)) weights and biases, PyTorch's default,
        as kimhc6028/pathnet-pytorch) or "tf" (weights truncated normal with
        sigma 0.1 cut at 2 sigma, biases 0.1, as jsikyoon/pathnet). The paper
        does not state its initialisation.
    """

    num_layers: int = 3
    num_modules: int = 10
    modules_per_layer: int = 3
    units: int = 20
    input_shape: tuple[int, ...] = (784,)
    num_classes: int = 2
    module: str = "linear"
    last_layer_mean: bool = False
    init: str = "torch"

    def __post_init__(self):
        if self.init not in ("torch", "tf"):
            raise UserError(f"init={self.init!r}; use 'torch' or 'tf'.")
        if self.module not in ("linear", "conv"):
            raise UserError(f"module={self.module!r}; use 'linear' or 'conv'.")
        wanted = 1 if self.module == "linear" else 3
        if len(self.input_shape) != wanted:
            raise UserError(
                f"input_shape={self.input_shape} must have {wanted} dims for "
                f"{self.module} modules."
            )

    @property
    def feature_size(self) -> int:
        """Width of the last layer's output, the readout head's input."""
        if self.module == "linear":
            return self.units
        height, width = self.input_shape[:2]
        for _ in range(self.num_layers):
            height, width = -(-height // 2), -(-width // 2)
        return height * width * self.units


def _init_tree(key: Key, shapes_and_fans, init: str) -> list[jax.Array]:
    """Arrays of the given (shape, fan_in, is_bias) entries, drawn per `init`.

    "torch": U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
    (PyTorch's Linear/Conv default). "tf": weights from a normal with sigma 0.1
    truncated at 2 sigma (TensorFlow's `truncated_normal(stddev=0.1)`), biases
    the constant 0.1. One random draw sliced into every array: on a loaded
    2-core CPU each threefry draw costs seconds of XLA compile time.
    """
    sizes = [math.prod(shape) for shape, _, _ in shapes_and_fans]
    if init == "tf":
        flat = 0.1 * jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),))
    else:
        flat = jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0)
    out, offset = [], 0
    for (shape, fan_in, is_bias), size in zip(shapes_and_fans, sizes, strict=True):
        if init == "tf" and is_bias:
            out.append(jnp.full(shape, 0.1, jnp.float32))
        else:
            scale = 1.0 if init == "tf" else 1.0 / math.sqrt(fan_in)
            out.append(flat[offset : offset + size].reshape(shape) * scale)
        offset += size
    return out


def init_layers(key: Key, spec: PathNetSpec) -> tuple[dict, ...]:
    """A fresh module bank: L dicts of stacked (M, ...) weights and biases."""
    kernel = () if spec.module == "linear" else (3, 3)
    shapes, fan = [], spec.input_shape[-1]
    for _ in range(spec.num_layers):
        fan_in = fan * math.prod(kernel)
        shapes.append(((spec.num_modules, *kernel, fan, spec.units), fan_in, False))
        shapes.append(((spec.num_modules, spec.units), fan_in, True))
        fan = spec.units
    arrays = _init_tree(key, shapes, spec.init)
    return tuple(
        {"w": arrays[2 * i], "b": arrays[2 * i + 1]} for i in range(spec.num_layers)
    )


def init_head(key: Key, spec: PathNetSpec) -> dict:
    """A new task's readout: (feature_size,) -> (num_classes,)."""
    fan_in = spec.feature_size
    w, b = _init_tree(
        key,
        [
            ((fan_in, spec.num_classes), fan_in, False),
            ((spec.num_classes,), fan_in, True),
        ],
        spec.init,
    )
    return {"w": w, "b": b}


def init_params(key: Key, spec: PathNetSpec) -> dict:
    """A fresh bank and readout: {"layers": `init_layers`, "head": `init_head`}."""
    key_layers, key_head = jax.random.split(key)
    return {"layers": init_layers(key_layers, spec), "head": init_head(key_head, spec)}


def active_modules(path: jax.Array, num_modules: int) -> jax.Array:
    """(L, N) path -> (L, M) bool: module m of layer l is on the path."""
    return (path[..., None] == jnp.arange(num_modules)).any(axis=-2)


def side_by_side(kernel, bias, h, spec: PathNetSpec) -> jax.Array:
    """(B, ...) -> (B, ..., K, units): K modules stored side by side, pre-ReLU.

    `kernel` is (*kernel_hw, in, K*units), `bias` (K*units,): one GEMM (one conv)
    runs all K modules (and, under vmap, all paths).
    """
    if spec.module == "linear":
        out = (h.reshape(-1, h.shape[-1]) @ kernel).reshape(*h.shape[:-1], -1)
    else:
        out = jax.lax.conv_general_dilated(
            h, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    out = out + bias
    return out.reshape(*out.shape[:-1], -1, spec.units)


def _modules(layer: dict, h: jax.Array, spec: PathNetSpec) -> jax.Array:
    """(B, ...) -> (B, ..., M, units): all M modules of `layer`, pre-ReLU."""
    w = layer["w"]  # (M, *kernel, in, units)
    kernel = jnp.moveaxis(w, 0, -2).reshape(*w.shape[1:-1], -1)
    return side_by_side(kernel, layer["b"].reshape(-1), h, spec)


def features(
    layers: tuple[dict, ...], path: jax.Array, x: jax.Array, spec: PathNetSpec
) -> jax.Array:
    """The path's last-layer features.

    Runs every module and keeps the path's: layer l's output is
    sum_m active[l, m] * relu(module_m(h)), `active` = `active_modules(path)`, so
    a repeated gene counts once and modules off the path get exactly zero
    gradient.

    Args:
      layers: the module bank.
      path: int (L, N) module ids.
      x: float (B, *input_shape).

    Returns:
      (B, feature_size).
    """
    active = active_modules(path, spec.num_modules).astype(x.dtype)
    h = x
    for index, layer in enumerate(layers):
        out = jax.nn.relu(_modules(layer, h, spec)) * active[index][:, None]
        h = out.sum(axis=-2)
        if spec.last_layer_mean and index == len(layers) - 1:
            h = h / active[index].sum()
    return h.reshape(h.shape[0], -1)


def apply(params: dict, path: jax.Array, x: jax.Array, spec: PathNetSpec):
    """Logits (B, num_classes) of `x` (B, *input_shape) along `path` (L, N)."""
    h = features(params["layers"], path, x, spec)
    return h @ params["head"]["w"] + params["head"]["b"]


def check_paths(paths, spec: PathNetSpec) -> np.ndarray:
    """Validates paths on the host (outside jit) and returns them as int32.

    Args:
      paths: (L, N) or (P, L, N) integers in [0, M).

    Raises:
      PathError: wrong shape, non-integer dtype or an id outside [0, M), naming
        the offending entry.
    """
    paths = np.asarray(paths)
    want = (spec.num_layers, spec.modules_per_layer)
    if paths.ndim not in (2, 3) or paths.shape[-2:] != want:
        raise PathError(
            f"path shape {paths.shape} must end in (L, N) = {want}; build paths "
            "with transfer.genetic.random_population."
        )
    if not np.issubdtype(paths.dtype, np.integer):
        raise PathError(f"path dtype {paths.dtype} must be an integer type.")
    bad = np.argwhere((paths < 0) | (paths >= spec.num_modules))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        raise PathError(
            f"path entry {where} = {int(paths[where])} is not a module id in "
            f"[0, {spec.num_modules}); each layer has M={spec.num_modules} modules."
        )
    return paths.astype(np.int32)
