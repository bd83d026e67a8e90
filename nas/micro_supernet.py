"""The ENAS micro supernet: every op at every node of both cells, shared weights.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Section 2.3 (Figures 4 and 6; Table 1's ENAS micro rows),
following the official `micro_child.py` in search mode (github.com/melodyguan/
enas):

  stem: conv3x3 to 3 * width channels, BN; the first cell sees (stem, stem)
  cells: `num_layers + 2` of them; cells d and 2d + 1 (d = num_layers // 3) are
         reduction cells, the others normal ones, so there are d normal cells
         before the first reduction. Each cell takes the two previous outputs
         (h[-2], h[-1]) and first calibrates them: a 1x1 conv (ReLU-conv-BN)
         where channels differ, a factorized reduction where sizes differ.
  reduction: width doubles; the cell's inputs are (h[-1], FR(h[-1])), so the
         calibration halves h[-1]'s side too, and the cell's ops run at stride 1
         on the halved inputs (the official search-mode reduction).
  node n: out = op_x(in[x_id]) + op_y(in[y_id]); ops: sep_conv3x3 and
         sep_conv5x5 (twice ReLU-depthwise-pointwise-BN), 3x3 avg and max pool
         (stride 1), identity. Like the official code, each conv has its own
         weights per (cell, node, branch x / y, input index).
  output: every node no other node uses (inputs included) is concatenated,
         ReLU, 1x1 conv back to `width`, BN.
  head: ReLU, global average pool, dense.

`apply(params, config, arch, x)` takes the architecture as a traced int array:
one compile serves every child. Each branch picks its input node by a one-hot
sum and its weights by the traced index; with `select="switch"` (default)
`micro_switch.switch_op` runs only the chosen op, forward and backward: a
`lax.switch` with a hand-written VJP that saves two activations per separable
conv (autodiff's switch saved 13 and made every pool / identity branch write
and copy 13 arrays of zeros) and uses canonical convs only (XLA:CPU runs
autodiff's transposed convs 10-30x slower inside a conditional).
`select="kernel"` gathers the chosen conv as one dense 5x5 kernel and computes
both pools every branch; `select="mask"` runs every op and keeps one.
benchmarks/nas_throughput.py (3 layers, B=5, width 8, batch 64 of 14x14,
forward + backward + SGD, 2 CPU cores), s/step, supernet vs fixed child, same
run: autodiff switch + stacked-node gather 0.389 vs 0.237 (1.64x); one-hot
input alone 0.353 vs gather 0.374 (separate runs); `switch_op` + one-hot
0.301 vs 0.231 (1.30x) and, final weight gradients, 0.328 vs 0.246 (1.33x);
kernel 1.08-1.19 s. With the depthwise weight gradient as fused product-sums
(`convs._weight_grad`, 2026-11-27; the supernet and the child timed on the
same 2 archs, alternating): 0.452 vs 0.401 (1.13x; 1.34x before, same
process) and 0.423 vs 0.362 (1.17x), with other jobs on the 2 cores (nas/README.md).
`derive` cuts the weights down to one arch and `apply_standalone` runs it as a
fixed network.

Simplifications (stated in reports): BN without affine parameters, always with
batch statistics (as `nas/supernet.py`); no auxiliary head, drop-path or
dropout before the classifier; the standalone network keeps the search-mode
reduction (factorized reduction, then stride-1 ops) where the official final
network applies its reduction cell's ops at stride 2.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from nas import convs, micro_ops
from nas import search_space as space_lib
from nas import supernet as macro

Params = dict


@dataclasses.dataclass(frozen=True)
class MicroConfig:
    space: space_lib.SearchSpace
    width: int  # official `out_filters`: channels of the first cells
    in_channels: int
    num_classes: int
    num_layers: int = 6  # official `num_layers`: num_layers + 2 cells in all

    @property
    def pool_layers(self) -> tuple[int, ...]:
        distance = self.num_layers // 3
        return (distance, 2 * distance + 1)

    def plan(self) -> list[dict]:
        """Static per-cell shapes: reduction?, channels in/out, calibrations."""
        cells, width = [], self.width
        channels = [3 * width, 3 * width]  # of (h[-2], h[-1])
        reduced = [False, False]  # does input 0 have twice input 1's side?
        for layer in range(self.num_layers + 2):
            reduce = layer in self.pool_layers
            if reduce:
                width *= 2
                inputs, reduced = [channels[1], width], [True, False]
            else:
                inputs = channels
            cells.append(
                {
                    "reduce": reduce,
                    "width": width,
                    "prev": channels[1],  # channels of h[-1] (FR input)
                    "calib_x": "fr" if reduced[0] else inputs[0] != width,
                    "calib_y": inputs[1] != width,
                    "in_x": inputs[0],
                    "in_y": inputs[1],
                }
            )
            channels, reduced = [width if reduce else inputs[1], width], [False, False]
        return cells


def _shapes(config: MicroConfig) -> Params:
    """Parameter tree; leaves are (shape, fan_in) for He-normal init."""
    num_nodes = config.space.size
    layers = []
    for cell in config.plan():
        width = cell["width"]
        layer = {}
        if cell["reduce"]:
            half = ((1, 1, cell["prev"], width // 2), cell["prev"])
            layer["reduce"] = {"a": half, "b": half}
        if cell["calib_x"] == "fr":
            half = ((1, 1, cell["in_x"], width // 2), cell["in_x"])
            layer["calib_x"] = {"a": half, "b": half}
        elif cell["calib_x"]:
            layer["calib_x"] = ((1, 1, cell["in_x"], width), cell["in_x"])
        if cell["calib_y"]:
            layer["calib_y"] = ((1, 1, cell["in_y"], width), cell["in_y"])

        def branch(num_inputs, width=width):
            return {
                name: {
                    "depth": ((num_inputs, 2, size, size, 1, width), size * size),
                    "point": ((num_inputs, 2, width, width), width),
                }
                for name, size in zip(micro_ops.CONV_OPS, (3, 5), strict=True)
            }

        layer["nodes"] = [
            {"x": branch(node + 2), "y": branch(node + 2)} for node in range(num_nodes)
        ]
        layer["out"] = ((num_nodes + 2, width, width), 2 * width)
        layers.append(layer)
    last = config.plan()[-1]["width"]
    return {
        "stem": ((3, 3, config.in_channels, 3 * config.width), 9 * config.in_channels),
        "layers": layers,
        "head": {
            "w": ((last, config.num_classes), last),
            "b": ((config.num_classes,), 0),
        },
    }


def init(key: jax.Array, config: MicroConfig) -> Params:
    """He-normal shared weights (zero head bias), cut from one flat host draw."""
    is_leaf = lambda x: isinstance(x, tuple) and isinstance(x[0], tuple)  # noqa: E731
    leaves, treedef = jax.tree.flatten(_shapes(config), is_leaf=is_leaf)
    sizes = [int(np.prod(shape)) for shape, _ in leaves]
    flat = np.asarray(jax.random.normal(key, (sum(sizes),)))
    out, offset = [], 0
    for (shape, fan_in), size in zip(leaves, sizes, strict=True):
        scale = np.sqrt(2.0 / fan_in) if fan_in else 0.0
        out.append(jax.device_put(flat[offset : offset + size].reshape(shape) * scale))
        offset += size
    return jax.tree.unflatten(treedef, out)


def _relu_conv_bn(x, w):
    return macro.batch_norm(convs.conv(jax.nn.relu(x), w))


def _calibrate(p, x, y):
    if isinstance(p.get("calib_x"), dict):
        x = macro._factorized_reduction(p["calib_x"], jax.nn.relu(x))
    elif "calib_x" in p:
        x = _relu_conv_bn(x, p["calib_x"])
    if "calib_y" in p:
        y = _relu_conv_bn(y, p["calib_y"])
    return x, y


def _forward(params, config: MicroConfig, x, cells, run_cell):
    """Stem, the stack of cells (`run_cell(p, x, y, cell_arch)`) and the head."""
    stem = macro.batch_norm(convs.conv(x, params["stem"]))
    prev = [stem, stem]
    for p, cell in zip(params["layers"], config.plan(), strict=True):
        if cell["reduce"]:
            prev = [prev[1], macro._factorized_reduction(p["reduce"], prev[1])]
        out = run_cell(p, *_calibrate(p, *prev), cells[int(cell["reduce"])])
        prev = [prev[1], out]
    features = jax.nn.relu(prev[1]).mean(axis=(1, 2))
    return features @ params["head"]["w"] + params["head"]["b"]


def _output(p_out, nodes, unused):
    """ReLU, concat the unused nodes (as a 0/1 mask on the 1x1 weights), BN."""
    stacked = jax.nn.relu(jnp.concatenate(nodes, axis=-1))
    w = (p_out * unused[:, None, None]).reshape(-1, p_out.shape[-1])
    return macro.batch_norm(convs.conv(stacked, w[None, None]))


def apply(
    params: Params,
    config: MicroConfig,
    arch: jax.Array,
    x: jax.Array,
    select: str = "switch",
) -> jax.Array:
    """Logits (B, classes) of child `arch` (length,) int32 on images (B, H, W, C)."""
    num_nodes = config.space.size
    cells = jnp.asarray(arch).reshape(2, num_nodes, 4)

    def run_cell(p, x, y, cell):
        nodes = [x, y]
        used = jnp.zeros(num_nodes + 2, x.dtype)
        for node in range(num_nodes):
            x_id, x_op, y_id, y_op = (cell[node, i] for i in range(4))
            weights = p["nodes"][node]
            out = micro_ops.branch(weights["x"], nodes, x_id, x_op, select)
            out = out + micro_ops.branch(weights["y"], nodes, y_id, y_op, select)
            nodes.append(out)
            used = used.at[x_id].set(1.0).at[y_id].set(1.0)
        return _output(p["out"], nodes, 1.0 - used)

    return _forward(params, config, x, cells, run_cell)


def _cells(config: MicroConfig, arch) -> np.ndarray:
    return space_lib.validate(config.space, arch).reshape(2, config.space.size, 4)


def _unused(cell) -> np.ndarray:
    used = np.zeros(len(cell) + 2, bool)
    used[cell[:, 0]] = used[cell[:, 2]] = True
    return np.flatnonzero(~used)


def derive(params: Params, config: MicroConfig, arch) -> Params:
    """The standalone child's parameters: each branch's chosen conv at its input."""
    cells, names = _cells(config, arch), config.space.op_names
    layers = []
    for p, plan in zip(params["layers"], config.plan(), strict=True):
        cell = cells[int(plan["reduce"])]
        nodes = []
        for node, (x_id, x_op, y_id, y_op) in enumerate(cell):
            kept = {}
            for side, index, op in (("x", x_id, x_op), ("y", y_id, y_op)):
                weights = p["nodes"][node][side]
                if names[op] in micro_ops.CONV_OPS:
                    kept[side] = jax.tree.map(
                        lambda w, i=index: w[i], weights[names[op]]
                    )
            nodes.append(kept)
        layers.append(dict(p, nodes=nodes, out=p["out"][_unused(cell)]))
    return dict(params, layers=layers)


def apply_standalone(params: Params, config: MicroConfig, arch, x: jax.Array):
    """Logits of the fixed network `arch` (a host array: static control flow)."""
    cells, names = _cells(config, arch), config.space.op_names

    def run_cell(p, x, y, cell):
        nodes = [x, y]
        for node, (x_id, x_op, y_id, y_op) in enumerate(cell):
            out = 0.0
            for side, index, op in (("x", x_id, x_op), ("y", y_id, y_op)):
                inputs = nodes[index]
                if names[op] in micro_ops.CONV_OPS:
                    weights = p["nodes"][node][side]
                    out = out + micro_ops.sep_conv(weights, inputs)
                elif names[op] == "identity":
                    out = out + inputs
                else:
                    out = out + micro_ops.pools(inputs)[names[op] == "max_pool"]
            nodes.append(out)
        kept = [nodes[i] for i in _unused(cell)]
        stacked = jax.nn.relu(jnp.concatenate(kept, axis=-1))
        w = p["out"].reshape(-1, p["out"].shape[-1])
        return macro.batch_norm(convs.conv(stacked, w[None, None]))

    return _forward(params, config, x, cells, run_cell)


def init_standalone(key: jax.Array, config: MicroConfig, arch) -> Params:
    """Fresh weights for the derived network (retraining from scratch)."""
    return derive(init(key, config), config, arch)
