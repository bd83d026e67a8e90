"""Shared test helpers for tests/transfer."""

import functools

import jax
import numpy as np

from transfer import pathnet


def init_params(key, spec, seed=0):
    """Random float32 params of `spec`'s shapes, drawn in NumPy (no compile)."""
    shapes = jax.eval_shape(functools.partial(pathnet.init_params, spec=spec), key)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: rng.uniform(-0.5, 0.5, leaf.shape).astype(np.float32), shapes
    )
