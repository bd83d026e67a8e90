"""Checkpoints: the only module that imports orbax.

A checkpoint holds the training state pytree and a JSON dict of host state (the
batch iterator position, metrics not yet logged). Orbax writes each step into a
temporary directory and renames it when complete, so a crash at any moment, even
`kill -9`, leaves the previous checkpoint intact and resumable.

Restoring checks the saved tree against the target (structure, shapes, dtypes)
first: a checkpoint from another config is refused with a message, never
half-loaded.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from shared.errors import CheckpointError
from shared.types import PyTree


class _QuietOrbax(logging.Filter):
    """Orbax logs a dozen INFO lines per save; keep its warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


logging.getLogger("absl").addFilter(_QuietOrbax())


class Checkpointer:
    """Saves and restores (state, host_state) under `workdir/checkpoints`."""

    def __init__(self, workdir: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self._manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "host": ocp.JsonCheckpointHandler(),
            },
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=False,
                create=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: PyTree, host_state: dict[str, Any]) -> None:
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                host=ocp.args.JsonSave(host_state),
            ),
        )
        self._manager.wait_until_finished()

    def restore(self, target: PyTree, step: int | None = None):
        """Restores the latest (or given) checkpoint into the shape of `target`.

        Args:
          target: a state pytree (arrays or `jax.ShapeDtypeStruct`s with shardings)
            giving the structure, shapes, dtypes and placement to restore into.
          step: which step; default the latest.

        Returns:
          (state, host_state), or None when there is no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(_abstract, target)
        self._check_compatible(step, abstract)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract),
                    host=ocp.args.JsonRestore(),
                ),
            )
        except Exception as error:  # orbax raises many types for unreadable files
            raise CheckpointError(
                f"cannot read checkpoint step {step} in {self.directory}: {error}. "
                "Delete that step directory to fall back to an earlier one, or start "
                "a fresh --workdir."
            ) from error
        return restored["state"], dict(restored["host"])

    def _check_compatible(self, step: int, abstract: PyTree) -> None:
        try:
            saved = self._manager.item_metadata(step)["state"]
        except Exception as error:
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} has no readable "
                f"metadata ({error}); delete it or start a fresh --workdir."
            ) from error
        saved_leaves = _flatten_with_names(saved)
        target_leaves = _flatten_with_names(abstract)
        if saved_leaves.keys() != target_leaves.keys():
            missing = sorted(target_leaves.keys() - saved_leaves.keys())[:3]
            extra = sorted(saved_leaves.keys() - target_leaves.keys())[:3]
            raise CheckpointError(
                f"checkpoint in {self.directory} was written by another model/config "
                f"(missing {missing}, unexpected {extra}). Use a fresh --workdir or "
                "the config that wrote it."
            )
        for name, leaf in target_leaves.items():
            old = saved_leaves[name]
            old_shape = tuple(getattr(old, "shape", ()))
            old_dtype = getattr(old, "dtype", None)
            if old_shape != tuple(leaf.shape) or (
                old_dtype is not None and np.dtype(old_dtype) != np.dtype(leaf.dtype)
            ):
                raise CheckpointError(
                    f"checkpoint in {self.directory} does not match this config at "
                    f"{name}: saved {old_shape} {old_dtype}, expected "
                    f"{tuple(leaf.shape)} {leaf.dtype}. Use a fresh --workdir or the "
                    "config that wrote it."
                )

    def close(self) -> None:
        self._manager.close()


def _abstract(leaf):
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    leaf = jax.numpy.asarray(leaf) if not hasattr(leaf, "shape") else leaf
    return jax.ShapeDtypeStruct(
        leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None)
    )


def _flatten_with_names(tree: PyTree) -> dict[str, Any]:
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    )[0]
    # nnx Variables appear as `.../value` in saved metadata but not in live trees.
    return {_path_name(path).removesuffix("/value"): leaf for path, leaf in leaves}


def _path_name(path) -> str:
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)
