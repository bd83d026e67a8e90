"""shared.mesh: the data axis, batch sharding, replication and errors."""

import jax
import numpy as np
import pytest

from shared import mesh as mesh_lib
from shared.errors import ConfigError


def test_mesh_spans_all_devices():
    mesh = mesh_lib.make_mesh()
    assert mesh.shape == {"data": 4}


def test_batch_is_split_and_params_replicated():
    mesh = mesh_lib.make_mesh()
    batch = mesh_lib.shard_batch({"x": np.arange(16).reshape(8, 2)}, mesh)
    shards = batch["x"].addressable_shards
    assert len(shards) == 4 and all(s.data.shape == (2, 2) for s in shards)
    np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(16).reshape(8, 2))
    params = mesh_lib.replicate({"w": np.ones(3)}, mesh)
    assert all(s.data.shape == (3,) for s in params["w"].addressable_shards)


def test_indivisible_batch_names_the_fix():
    with pytest.raises(ConfigError, match="multiple of the device count"):
        mesh_lib.shard_batch({"x": np.zeros((6, 2))}, mesh_lib.make_mesh())


def test_too_many_devices():
    with pytest.raises(ConfigError, match="num_devices=9"):
        mesh_lib.make_mesh(9)


def test_sub_mesh():
    assert mesh_lib.make_mesh(2).devices.tolist() == jax.devices()[:2]
