"""The ENAS macro supernet: every op at every layer, one set of shared weights.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.3 (Figure 5, macro search; Table 2's macro rows),
following the official `general_child.py` (github.com/melodyguan/enas):

  stem: conv3x3 + BN; nodes = [stem]
  layer i: out = op_i(nodes[-1]) + sum_j skip_ij * nodes[j]; out = BN(out)
           (node 0 is the stem, node j the output of layer j-1: official indexing)
  conv ops: conv1x1-BN-ReLU then conv kxk (or depthwise kxk + pointwise) -BN-ReLU
  pool ops: conv1x1-BN-ReLU then 3x3 stride-1 avg/max pool
  at layers L//3-1 and 2L//3-1 every node is halved by factorized reduction
  head: global average pool, dense.

`apply(params, arch, x)` takes the architecture as a traced int array, so one
compiled function serves every sampled child. Ways to pick a layer's op
(benchmarks/nas_throughput.py defaults: 6 layers, width 16, batch 64 of
28x28, forward + backward + SGD, 2 CPU cores, one process, same run):

  select="switch" (default): the input 1x1 conv with gathered weights, then
      `lax.switch` on the rest (`nas/macro_switch.py`: a hand-written VJP that
      saves one activation per layer and uses canonical convs only). Same-run
      supernet vs fixed child, s/step (this VM's timings drift 1.5x between
      runs; another job was running during some): 0.243 vs 0.129 and 0.247 vs
      0.159; with per-shift weight-gradient matmuls instead of one batched
      einsum 0.219 vs 0.187 (but the macro smoke test compiled 15 s longer).
      Autodiff through a plain `lax.switch` took 3.99 s (4 layers: XLA:CPU runs
      transposed convs slowly inside a conditional).
  select="kernel": gather the chosen op's weights into one 5x5 dense kernel
      (a 3x3 kernel zero-padded and a separable conv's depthwise x pointwise
      product are exactly the same conv), so a layer costs one 1x1 conv, one
      5x5 conv and two pools whatever the child: 0.290 vs 0.176, 0.297 vs
      0.180 (switch 0.255 in that run), 0.216 vs 0.171.
  select="mask": all six ops, keep one (1.02 s vs kernel 0.73 s, 4 layers).

`derive` cuts the supernet down to one arch and `apply_standalone` runs it as
a fixed network (static Python control flow).

Simplifications (stated in reports): BN has no affine parameters and always
normalizes with the batch's statistics (no moving averages), in search and in
evaluation, so a child's output does not depend on other children's history.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nas import convs, macro_switch
from nas import search_space as space_lib

Params = dict


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    space: space_lib.SearchSpace
    width: int  # channels of every layer (official `out_filters`)
    in_channels: int
    num_classes: int

    @property
    def pool_layers(self) -> tuple[int, ...]:
        distance = self.space.size // 3
        return tuple(layer for layer in (distance - 1, 2 * distance - 1) if layer >= 0)


def _shapes(config: SupernetConfig) -> Params:
    """The parameter tree with shapes (tuples) as leaves."""
    width, names = config.width, config.space.op_names

    def op(name):
        shapes = {"inp": (1, 1, width, width)}
        if name.startswith("conv"):
            size = int(name[4])
            shapes["w"] = (size, size, width, width)
        elif name.startswith("sep_conv"):
            size = int(name[8])
            shapes["depth"] = (size, size, 1, width)
            shapes["point"] = (1, 1, width, width)
        return shapes

    half = (1, 1, width, width // 2)
    return {
        "stem": (3, 3, config.in_channels, width),
        "layers": [{name: op(name) for name in names}] * config.space.size,
        "head": {"w": (width, config.num_classes), "b": (config.num_classes,)},
        "reduce": {
            str(layer): [{"a": half, "b": half}] * (layer + 2)
            for layer in config.pool_layers
        },
    }


def init(key: jax.Array, config: SupernetConfig) -> Params:
    """Shared weights: every op of every layer, the reductions and the head.

    He-normal weights and a zero head bias, cut on the host from one flat
    normal draw: one small compiled op, where eager per-shape draws compiled
    one op per distinct weight shape (and a jitted init took longer still).
    Not traceable (call it outside `jit`).
    """
    shapes, treedef = jax.tree.flatten(
        _shapes(config), is_leaf=lambda x: isinstance(x, tuple)
    )
    sizes = [int(np.prod(shape)) for shape in shapes]
    flat = np.asarray(jax.random.normal(key, (sum(sizes),)))
    leaves, offset = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        fan_in = int(np.prod(shape[:-1]))
        scale = 0.0 if len(shape) == 1 else np.sqrt(2.0 / fan_in)  # bias: zeros
        leaves.append(
            jax.device_put(flat[offset : offset + size].reshape(shape) * scale)
        )
        offset += size
    return jax.tree.unflatten(treedef, leaves)


def batch_norm(x, eps: float = 1e-5):
    """Normalizes (B, H, W, C) with the batch's per-channel statistics."""
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + eps)


# The 3x3 stride-1 max pool: "window" is `lax.reduce_window`, whose backward
# (select-and-scatter) is slow on XLA:CPU; "shifted" is the max of the 9
# shifted copies of the -inf padded input (same values; ties send the gradient
# to one copy). Read at trace time; benchmarks/nas_throughput.py --max_pool.
MAX_POOL = "window"


def _pool(x, kind: str):
    window, pad = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    if kind == "max_pool" and MAX_POOL == "shifted":
        h, w = x.shape[1:3]
        padded = jnp.pad(x, pad, constant_values=-jnp.inf)
        shifts = [padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)]
        return functools.reduce(jnp.maximum, shifts)
    if kind == "max_pool":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, (1,) * 4, pad)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1,) * 4, pad)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, (1,) * 4, pad)
    return total / count  # TF "SAME" average: padding is not counted


def apply_op(name: str, params: Params, x: jax.Array) -> jax.Array:
    """One macro op on (B, H, W, C) -> (B, H, W, C)."""
    x = jax.nn.relu(batch_norm(convs.conv(x, params["inp"])))
    if name.startswith("conv"):
        return jax.nn.relu(batch_norm(convs.conv(x, params["w"])))
    if name.startswith("sep_conv"):
        x = convs.conv(convs.depthwise_conv(x, params["depth"]), params["point"])
        return jax.nn.relu(batch_norm(x))
    return _pool(x, name)


def _factorized_reduction(params: Params, x: jax.Array) -> jax.Array:
    """Halves H and W: two shifted stride-2 1x1 convs, concatenated, BN."""
    path_a = convs.conv(x[:, ::2, ::2], params["a"])
    shifted = jnp.pad(x[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))  # official
    path_b = convs.conv(shifted[:, ::2, ::2], params["b"])
    return batch_norm(jnp.concatenate([path_a, path_b], axis=-1))


def _forward(params, config, x, ops, skips, run_op):
    nodes = [batch_norm(convs.conv(x, params["stem"]))]
    for layer in range(config.space.size):
        out = run_op(layer, ops[layer], nodes[-1])
        for j in range(layer):
            out = out + skips[layer][j] * nodes[j]
        nodes.append(batch_norm(out))
        if layer in config.pool_layers:
            reduce = params["reduce"][str(layer)]
            nodes = [
                _factorized_reduction(p, n) for p, n in zip(reduce, nodes, strict=True)
            ]
    features = nodes[-1].mean(axis=(1, 2))
    return features @ params["head"]["w"] + params["head"]["b"]


def apply(
    params: Params,
    config: SupernetConfig,
    arch: jax.Array,
    x: jax.Array,
    select: str = "switch",
) -> jax.Array:
    """Logits (B, classes) of child `arch` (length,) int32 on images (B, H, W, C)."""
    names = config.space.op_names
    ops = space_lib.macro_ops(config.space, arch)
    skips = space_lib.macro_skips(config.space, arch).astype(x.dtype)

    if select not in SELECT_OPS:
        raise ValueError(f"select={select!r}; use one of {sorted(SELECT_OPS)}")

    def run_op(layer, op, inputs):
        return SELECT_OPS[select](params["layers"][layer], names, op, inputs)

    return _forward(params, config, x, ops, skips, run_op)


def _dense_kernel(name: str, params: Params, size: int = 5) -> jax.Array:
    """A conv op's (size, size, C, C) kernel: separable = depthwise x pointwise."""
    if name.startswith("conv"):
        kernel = params["w"]
    else:
        kernel = params["depth"][:, :, 0, :, None] * params["point"][0, 0]
    pad = (size - kernel.shape[0]) // 2
    return jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0)))


def _fused_op(layer_params: Params, names, op: jax.Array, x: jax.Array):
    """Every macro op as one 1x1 conv, one 5x5 conv and two cheap pools.

    The chosen op's weights are gathered (a 3x3 kernel zero-padded to 5x5 and a
    separable conv's depthwise x pointwise product are exactly the same conv),
    so a layer costs about one 5x5 conv whatever the arch. Needs the macro op
    order: four convs, then avg_pool, max_pool.
    """
    w_in = jnp.stack([layer_params[name]["inp"] for name in names])[op]
    hidden = jax.nn.relu(batch_norm(convs.conv(x, w_in)))
    kernels = jnp.stack([_dense_kernel(n, layer_params[n]) for n in names[:4]])
    conv = jax.nn.relu(batch_norm(convs.conv(hidden, kernels[jnp.minimum(op, 3)])))
    avg, top = _pool(hidden, "avg_pool"), _pool(hidden, "max_pool")
    return jnp.where(op < 4, conv, jnp.where(op == 4, avg, top))


def _avg_pool(x):
    return _pool(x, "avg_pool")


def _max_pool(x):
    return _pool(x, "max_pool")


def _switch_op(layer_params: Params, names, op: jax.Array, x: jax.Array):
    """The input 1x1 conv (gathered weights), then `lax.switch` on the rest.

    `macro_switch.switch_op` has a hand-written VJP: one saved activation per
    layer and canonical convs only, which XLA:CPU runs fast inside a switch.
    """
    w_in = jnp.stack([layer_params[name]["inp"] for name in names])[op]
    hidden = jax.nn.relu(batch_norm(convs.conv(x, w_in)))
    weights = {  # the kxk weights of the four conv ops
        name: {k: w for k, w in layer_params[name].items() if k != "inp"}
        for name in macro_switch.CONV_OPS
    }
    return macro_switch.switch_op((_avg_pool, _max_pool), op, weights, hidden)


def _masked_op(layer_params: Params, names, op: jax.Array, x: jax.Array):
    """Every op, then the chosen one kept by a one-hot weighted sum."""
    weights = jax.nn.one_hot(op, len(names), dtype=x.dtype)
    outs = [apply_op(name, layer_params[name], x) for name in names]
    return sum(w * out for w, out in zip(weights, outs, strict=True))


# apply's `select`: (layer_params, names, op, x) -> the layer's op output
SELECT_OPS = {"switch": _switch_op, "kernel": _fused_op, "mask": _masked_op}


def derive(params: Params, config: SupernetConfig, arch) -> Params:
    """The standalone child's parameters: only the chosen op at each layer."""
    ops = space_lib.macro_ops(config.space, np.asarray(arch))
    names = config.space.op_names
    layers = [
        {names[op]: layer[names[op]]}
        for op, layer in zip(ops, params["layers"], strict=True)
    ]
    return dict(params, layers=layers)


def apply_standalone(
    params: Params, config: SupernetConfig, arch, x: jax.Array
) -> jax.Array:
    """Logits of the fixed network `arch` (a host array: static control flow)."""
    arch = space_lib.validate(config.space, arch)
    ops = space_lib.macro_ops(config.space, arch)
    skips = space_lib.macro_skips(config.space, arch).astype(np.float32)
    names = config.space.op_names

    def run_op(layer, op, inputs):
        return apply_op(names[op], params["layers"][layer][names[op]], inputs)

    # Skips known on the host: unused nodes are multiplied by exact zeros, which
    # XLA removes; the arithmetic is the same as the supernet's.
    return _forward(params, config, x, ops, skips, run_op)


def init_standalone(key: jax.Array, config: SupernetConfig, arch) -> Params:
    """Fresh weights for the derived network (retraining from scratch)."""
    return derive(init(key, config), config, arch)


def num_params(params: Params) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))
