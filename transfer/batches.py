"""Position-seeded batch iterators: batch `r` is a pure function of (seed, r).

`shared.train_loop.fit` checkpoints an iterator's `get_state()` and restores it with
`set_state()`. An iterator whose r-th batch is drawn from
`np.random.default_rng([seed, r])` needs only the position `r` as its state: a run
killed and resumed sees exactly the batches an uninterrupted one would. Both of this
area's samplers (`transfer.tasks.RoundBatches` for PathNet's GA rounds and
`transfer.finetune.MemberBatches` for the fine-tuning grid) are this one iterator
with a different `draw`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class SeededBatches(Iterator[dict[str, np.ndarray]]):
    """Forever iterator: batch `r` = `self.draw(np.random.default_rng([seed, r]))`.

    Subclasses implement `draw(rng) -> dict[str, np.ndarray]`, using only `rng`
    for randomness.
    """

    def __init__(self, seed: int):
        self._seed = seed
        self._position = 0

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def get_state(self) -> dict[str, int]:
        return {"position": self._position}

    def set_state(self, state: Mapping[str, int]) -> None:
        self._position = int(state["position"])

    def __next__(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self._seed, self._position])
        self._position += 1
        return self.draw(rng)
