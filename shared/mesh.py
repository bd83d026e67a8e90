"""The device mesh: one `data` axis over all devices; batches split, state replicated.

Data parallelism is the only parallelism the spine provides. Batch-like leaves
(images, episode meta-batches, GA populations, controller samples) are split along
their leading axis over `data`; parameters and optimizer state are replicated;
XLA inserts the gradient all-reduce. Multi-host runs call `initialize_distributed`
before touching any device; every process then feeds its own slice of the global
batch (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from shared.errors import ConfigError
from shared.types import PyTree

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Joins a multi-host job (`--distributed`); call before any device access."""
    jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh named `data` over the first `num_devices` devices (0/None: all)."""
    available = jax.device_count()
    num_devices = num_devices or available  # None or 0: every device
    if not 0 < num_devices <= available:
        raise ConfigError(
            f"num_devices={num_devices} but {available} device(s) are visible; "
            "set --config.num_devices to at most that (0 or unset means all)."
        )
    return jax.make_mesh(
        (num_devices,),
        (DATA_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=jax.devices()[:num_devices],
    )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
    """Places every leaf of `tree` on all devices of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
    """Splits every leaf's leading axis over `data`.

    With several processes, `batch` is this process's slice of the global batch.
    """
    num_shards = mesh.shape[DATA_AXIS]
    sharding = batch_sharded(mesh)

    def put(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if leaf.ndim == 0:
            return jax.device_put(leaf, replicated(mesh))
        if (leaf.shape[0] * jax.process_count()) % num_shards:
            raise ConfigError(
                f"a batch leading dimension of {leaf.shape[0]} does not split over "
                f"{num_shards} devices; make the batch size (or meta-batch, "
                "population) a multiple of the device count."
            )
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        return jax.make_array_from_process_local_data(sharding, leaf)

    return jax.tree.map(put, batch)
