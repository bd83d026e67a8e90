"""How paths change the PathNet bank: gathered sub-networks and frozen modules.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.1 (only the modules on a path are
trained; after task A the best path's modules are fixed and the rest of the
network is re-initialised) and section 2.3 (binary MNIST transfer).

Gathered sub-network (the serial GA's fast form). `pathnet.apply` runs all M
modules of a layer and masks the ones off the path: one big GEMM, right under a
`vmap` over many paths. A serial tournament trains ONE path at a time, so there
is no big GEMM to win; instead `gather_path` copies the path's N modules per
layer side by side, (in, N*units), once per path; `apply_path` runs them (the
same values as `pathnet.apply`, M/N times less arithmetic); after the path's T
minibatches `scatter_path` adds their change back into the bank.
`first_occurrence` masks the second copy of a repeated gene (a module named
twice counts once) and `gathered_trainable` says which gathered columns may move.

Frozen modules are a boolean (L, M) array. `mask_updates` zeroes their optimizer
updates (with `where`, so they stay bit-identical however they are used);
`keep_frozen` / `reinit_unfrozen` build task B's start: task A's fixed modules,
every other module and the readout head drawn afresh.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shared.types import Key, PyTree
from transfer import pathnet


def first_occurrence(path: jax.Array) -> jax.Array:
    """(L, N) path -> (L, N) bool: gene n is the first naming its module in row l.

    A module named twice counts once: the later copies are masked out.
    """
    same = path[..., :, None] == path[..., None, :]
    return ~jnp.tril(same, k=-1).any(axis=-1)


def gather_path(layers: tuple[dict, ...], path: jax.Array) -> tuple[dict, ...]:
    """The path's own modules, side by side in GEMM layout.

    Layer l becomes {"w": (*kernel, in_l, N*units), "b": (N*units,)}: the N
    modules of row l of `path` (repeats included, see `first_occurrence`). The
    serial GA trains a path on this small copy for its T minibatches, then
    `scatter_path` writes it back: one gather per path, not per minibatch, and
    each step's matmul is (B, in) x (in, N*units), M/N times less arithmetic than
    the dense forward of `pathnet.features`.
    """
    out = []
    for layer, ids in zip(layers, path, strict=True):
        w = layer["w"][ids]  # (N, *kernel, in, units)
        out.append(
            {
                "w": jnp.moveaxis(w, 0, -2).reshape(*w.shape[1:-1], -1),
                "b": layer["b"][ids].reshape(-1),
            }
        )
    return tuple(out)


def scatter_path(
    layers: tuple[dict, ...], path: jax.Array, new: tuple[dict, ...], old
) -> tuple[dict, ...]:
    """Adds the change `new - old` of gathered modules back into the bank.

    Adding the change (not setting the value) keeps a repeated gene exact: its
    masked copy has changed by exactly zero.
    """
    out = []
    for layer, ids, after, before in zip(layers, path, new, old, strict=True):
        num, units = len(ids), layer["b"].shape[-1]
        delta_w = (after["w"] - before["w"]).reshape(*after["w"].shape[:-1], num, units)
        delta_b = (after["b"] - before["b"]).reshape(num, units)
        out.append(
            {
                "w": layer["w"].at[ids].add(jnp.moveaxis(delta_w, -2, 0)),
                "b": layer["b"].at[ids].add(delta_b),
            }
        )
    return tuple(out)


def path_features(
    gathered: tuple[dict, ...], keep: jax.Array, x: jax.Array, spec: pathnet.PathNetSpec
) -> jax.Array:
    """`pathnet.features` computed from `gather_path`'s modules (the same values).

    Args:
      gathered: `gather_path(layers, path)`.
      keep: (L, N) `first_occurrence(path)`.
      x: (B, *input_shape).

    Returns:
      (B, feature_size).
    """
    h = x
    for index, layer in enumerate(gathered):
        out = pathnet.side_by_side(layer["w"], layer["b"], h, spec)
        h = combine_modules(out, keep[index], spec, index == len(gathered) - 1)
    return h.reshape(h.shape[0], -1)


def combine_modules(
    pre: jax.Array, keep_row: jax.Array, spec: pathnet.PathNetSpec, last: bool
) -> jax.Array:
    """One layer's output from its N gathered modules' pre-activations.

    Args:
      pre: (B, ..., N, units) pre-ReLU outputs of the path's N modules.
      keep_row: (N,) bool, `first_occurrence(path)[l]`: a repeat counts once.
      last: whether this is the last layer (`spec.last_layer_mean` averages it).

    Returns:
      (B, ..., units): the sum (or, at the last layer, optionally the mean) of
      the kept modules' ReLU outputs.
    """
    keep_row = keep_row.astype(pre.dtype)
    h = (jax.nn.relu(pre) * keep_row[:, None]).sum(axis=-2)
    if spec.last_layer_mean and last:
        h = h / keep_row.sum()
    return h


def apply_path(sub: dict, keep: jax.Array, x: jax.Array, spec: pathnet.PathNetSpec):
    """Logits from {"layers": gather_path(...), "head"}: equals `pathnet.apply`'s."""
    h = path_features(sub["layers"], keep, x, spec)
    return h @ sub["head"]["w"] + sub["head"]["b"]


def gathered_trainable(path: jax.Array, frozen: jax.Array, units: int) -> jax.Array:
    """(L, N*units) bool: which columns of `gather_path`'s modules may change.

    A gene's columns are trainable when its module is not frozen and the gene is
    the first to name that module (a repeat's copy must stay put).
    """
    on_path_frozen = jnp.take_along_axis(frozen, path, axis=1)
    trainable = first_occurrence(path) & ~on_path_frozen
    return jnp.repeat(trainable, units, axis=1)


def start_path(
    layers: tuple[dict, ...], frozen: jax.Array, path: jax.Array, units: int
):
    """What a serial trainer needs before a path's T steps, from one path.

    Returns (keep, trainable, start): `first_occurrence(path)`,
    `gathered_trainable(path, frozen, units)` and `gather_path(layers, path)`.
    """
    keep = first_occurrence(path)
    return keep, gathered_trainable(path, frozen, units), gather_path(layers, path)


def module_mask_tree(params: dict, frozen: jax.Array) -> PyTree:
    """Per-leaf boolean masks, True where a parameter belongs to a frozen module.

    Args:
      params: {"layers", "head"} as from `pathnet.init_params`.
      frozen: bool (L, M). The head is never frozen (each task gets its own).
    """
    layers = tuple(
        jax.tree.map(
            lambda leaf, row=row: row.reshape((-1,) + (1,) * (leaf.ndim - 1)),
            layer,
        )
        for layer, row in zip(params["layers"], frozen, strict=True)
    )
    head = jax.tree.map(lambda leaf: jnp.zeros((1,) * leaf.ndim, bool), params["head"])
    return {"layers": layers, "head": head}


def mask_updates(updates: dict, frozen: jax.Array) -> dict:
    """Zeroes the updates of frozen modules (exact: `where`, not a multiply)."""
    masks = module_mask_tree(updates, frozen)
    return jax.tree.map(lambda u, m: jnp.where(m, jnp.zeros_like(u), u), updates, masks)


def keep_frozen(params: dict, fresh: dict, frozen: jax.Array) -> dict:
    """`params`' frozen modules, `fresh`'s everything else (head included)."""
    masks = module_mask_tree(params, frozen)
    return jax.tree.map(
        lambda old, new, m: jnp.where(m, old, new), params, fresh, masks
    )


def reinit_unfrozen(
    key: Key, params: dict, frozen: jax.Array, spec: pathnet.PathNetSpec
):
    """Keeps frozen modules, re-initialises every other module and the head."""
    return keep_frozen(params, pathnet.init_params(key, spec), frozen)
