"""Type aliases shared by every area."""

from collections.abc import Callable, Mapping
from typing import Any

import jax

PyTree = Any
Key = jax.Array  # a typed PRNG key from jax.random.key
Metrics = Mapping[str, jax.Array | float]
Batch = Mapping[str, Any]

# step_fn(state, batch, key) -> (state, metrics); pure, no I/O.
StepFn = Callable[[PyTree, Batch, Key], tuple[PyTree, Metrics]]
# eval_fn(state) -> metrics; may run on the host and loop over a test set.
EvalFn = Callable[[PyTree], Mapping[str, float]]
