"""ENAS search spaces: architectures as integer arrays in the official layout.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268), Sections 2.2-2.4. An architecture is a flat int32 array laid
out exactly like the official code's `fixed_arc` string (github.com/melodyguan/
enas), so `to_fixed_arc(arch)` is the string the official scripts take:

  macro (L layers)   for layer i: `op_i` then i skip bits `s_i,0 .. s_i,i-1`
                     (s_i,j = 1: layer j's output is added to layer i's);
                     length L + L(L-1)/2. Ops in official branch order:
                     conv3x3, sep_conv3x3, conv5x5, sep_conv5x5, avg_pool, max_pool.
  micro (B nodes)    normal cell then reduction cell; per node n (inputs are the
                     two previous cells, ids 0 and 1, then nodes 2..n+1):
                     `x_id x_op y_id y_op`; length 2 * 4B. Ops: sep_conv3x3,
                     sep_conv5x5, avg_pool, max_pool, identity. The paper's
                     "B=7 nodes" counts the two inputs: B=5 computed nodes.
  rnn (N nodes)      `f_0` then for node i >= 1: `prev_i f_i` (prev_i < i);
                     length 2N - 1. Activations: tanh, relu, identity, sigmoid.

Every position has its own number of choices (`space.num_choices`), so one range
check validates any space, and uniform random search is one `randint`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from shared.errors import UserError

MACRO_OPS = (
    "conv3x3",
    "sep_conv3x3",
    "conv5x5",
    "sep_conv5x5",
    "avg_pool",
    "max_pool",
)
MICRO_OPS = ("sep_conv3x3", "sep_conv5x5", "avg_pool", "max_pool", "identity")
RNN_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")


class ArchitectureError(UserError):
    """An architecture (array or fixed_arc string) does not fit its search space."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A search space: one categorical decision per position of the flat arch.

    Attributes:
      name: "macro", "micro" or "rnn".
      size: L layers (macro), B computed nodes per cell (micro), N nodes (rnn).
      num_choices: per position, the number of allowed values (0 .. n-1).
      kinds: per position, "op", "skip", "input" or "activation".
      op_names: names of the values of "op"/"activation" positions.
    """

    name: str
    size: int
    num_choices: tuple[int, ...]
    kinds: tuple[str, ...]
    op_names: tuple[str, ...]

    @property
    def length(self) -> int:
        return len(self.num_choices)

    def positions(self, kind: str) -> np.ndarray:
        """Indices of the positions of one kind, e.g. every op decision."""
        return np.array([i for i, k in enumerate(self.kinds) if k == kind], np.int32)


def macro_space(num_layers: int, num_ops: int = 6) -> SearchSpace:
    choices, kinds = [], []
    for layer in range(num_layers):
        choices += [num_ops] + [2] * layer
        kinds += ["op"] + ["skip"] * layer
    return SearchSpace("macro", num_layers, tuple(choices), tuple(kinds), MACRO_OPS)


def micro_space(num_nodes: int = 5) -> SearchSpace:
    choices, kinds = [], []
    for _ in range(2):  # normal cell, reduction cell
        for node in range(num_nodes):
            choices += [node + 2, len(MICRO_OPS)] * 2
            kinds += ["input", "op"] * 2
    return SearchSpace("micro", num_nodes, tuple(choices), tuple(kinds), MICRO_OPS)


def rnn_space(num_nodes: int = 12) -> SearchSpace:
    choices, kinds = [len(RNN_ACTIVATIONS)], ["activation"]
    for node in range(1, num_nodes):
        choices += [node, len(RNN_ACTIVATIONS)]
        kinds += ["input", "activation"]
    return SearchSpace("rnn", num_nodes, tuple(choices), tuple(kinds), RNN_ACTIVATIONS)


def make_space(name: str, size: int) -> SearchSpace:
    makers = {"macro": macro_space, "micro": micro_space, "rnn": rnn_space}
    if name not in makers:
        raise ArchitectureError(
            f"unknown search space {name!r}; use one of {sorted(makers)}"
        )
    return makers[name](size)


def validate(space: SearchSpace, arch) -> np.ndarray:
    """Returns `arch` as int32 (length,) or raises ArchitectureError saying why."""
    array = np.asarray(arch)
    if array.ndim != 1 or array.shape[0] != space.length:
        raise ArchitectureError(
            f"a {space.name} architecture of size {space.size} has {space.length} "
            f"integers, got shape {array.shape}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ArchitectureError(f"architecture must be integers, got {array.dtype}")
    limits = np.asarray(space.num_choices)
    bad = np.flatnonzero((array < 0) | (array >= limits))
    if bad.size:
        i = int(bad[0])
        raise ArchitectureError(
            f"{space.name} architecture position {i} ({space.kinds[i]}) is "
            f"{int(array[i])}; it must be in [0, {limits[i] - 1}]"
        )
    return array.astype(np.int32)


def to_fixed_arc(space: SearchSpace, arch) -> str:
    """The official `--child_fixed_arc` string (space-separated integers)."""
    return " ".join(str(int(v)) for v in validate(space, arch))


def from_fixed_arc(space: SearchSpace, text: str) -> np.ndarray:
    """Parses an official fixed_arc string; raises ArchitectureError if malformed."""
    try:
        values = [int(token) for token in text.split()]
    except ValueError:
        raise ArchitectureError(
            f"fixed_arc must be space-separated integers, got {text[:60]!r}"
        ) from None
    return validate(space, np.array(values, dtype=np.int64))


def random_arch(key: jax.Array, space: SearchSpace) -> jax.Array:
    """One uniformly random architecture (the random-search control), (length,)."""
    limits = jnp.asarray(space.num_choices, jnp.int32)
    return jax.random.randint(key, (space.length,), 0, limits, dtype=jnp.int32)


def macro_ops(space: SearchSpace, arch: jax.Array) -> jax.Array:
    """(..., L) op index of each layer of macro `arch` (..., length)."""
    return arch[..., space.positions("op")]


def macro_skips(space: SearchSpace, arch: jax.Array) -> jax.Array:
    """(..., L, L) skips: [i, j] = 1 adds node j (0: stem, j: layer j-1) to layer i."""
    num_layers = space.size
    rows, cols = np.tril_indices(num_layers, k=-1)
    if isinstance(arch, np.ndarray):  # host arrays stay on the host (static use)
        skips = np.zeros(arch.shape[:-1] + (num_layers, num_layers), arch.dtype)
        skips[..., rows, cols] = arch[..., space.positions("skip")]
        return skips
    skips = jnp.zeros(arch.shape[:-1] + (num_layers, num_layers), arch.dtype)
    return skips.at[..., rows, cols].set(arch[..., space.positions("skip")])


def op_share(space: SearchSpace, archs) -> dict[str, float]:
    """Share of each op (and the skip density) over a batch of archs (K, length).

    The collapse diagnostic: weight sharing drifting toward pooling, identity or
    skip-heavy children shows up here epoch by epoch.
    """
    archs = np.asarray(archs)
    ops = archs[:, space.positions("op" if space.name != "rnn" else "activation")]
    share = {
        f"op_share/{name}": float(np.mean(ops == i))
        for i, name in enumerate(space.op_names)
    }
    if space.name == "macro" and space.size > 1:
        share["op_share/skip_density"] = float(archs[:, space.positions("skip")].mean())
    return share
