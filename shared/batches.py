"""A deterministic, resumable host-side batch iterator.

Epoch `e` visits the examples in the order `default_rng([seed, e]).permutation(n)`,
so the batch at any position is a pure function of (seed, position): saving the
position with a checkpoint and restoring it replays exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from shared.errors import ConfigError


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    """Shuffled mini-batches over equally long arrays, forever.

    Args:
      arrays: name -> array with a shared leading dimension N.
      batch_size: examples per batch; the last partial batch of an epoch is
        dropped so every batch has the same shape (one compile).
      seed: shuffling seed.
      shuffle: False visits examples in order (evaluation).
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        seed: int,
        shuffle: bool = True,
    ):
        sizes = {name: len(array) for name, array in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays differ in length: {sizes}")
        self._arrays = dict(arrays)
        self._num_examples = next(iter(sizes.values()))
        if not 0 < batch_size <= self._num_examples:
            raise ConfigError(
                f"batch_size={batch_size} must be in [1, {self._num_examples}] "
                "(the number of training examples); set --config.batch_size."
            )
        self.batch_size = batch_size
        self.batches_per_epoch = self._num_examples // batch_size
        self._seed = seed
        self._shuffle = shuffle
        self._position = 0
        self._epoch_order: tuple[int, np.ndarray] | None = None

    @property
    def position(self) -> int:
        """Batches produced so far (over all epochs)."""
        return self._position

    def get_state(self) -> dict[str, int]:
        return {"position": self._position}

    def set_state(self, state: Mapping[str, int]) -> None:
        self._position = int(state["position"])

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            if self._shuffle:
                rng = np.random.default_rng([self._seed, epoch])
                order = rng.permutation(self._num_examples)
            else:
                order = np.arange(self._num_examples)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1]

    def __next__(self) -> dict[str, np.ndarray]:
        epoch, index = divmod(self._position, self.batches_per_epoch)
        start = index * self.batch_size
        take = self._order(epoch)[start : start + self.batch_size]
        self._position += 1
        return {name: array[take] for name, array in self._arrays.items()}


def iterate_once(
    arrays: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Every example exactly once, in order; the last batch may be smaller."""
    num_examples = len(next(iter(arrays.values())))
    for start in range(0, num_examples, batch_size):
        yield {
            name: array[start : start + batch_size] for name, array in arrays.items()
        }
