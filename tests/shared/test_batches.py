"""shared.batches: deterministic shuffling and exact resume."""

import numpy as np
import pytest

from shared.batches import BatchIterator, iterate_once
from shared.errors import ConfigError


def _arrays(n=10):
    return {"x": np.arange(n) * 10, "y": np.arange(n)}


def test_each_epoch_is_a_permutation_and_epochs_differ():
    iterator = BatchIterator(_arrays(), batch_size=5, seed=3)
    epoch0 = np.concatenate([next(iterator)["y"] for _ in range(2)])
    epoch1 = np.concatenate([next(iterator)["y"] for _ in range(2)])
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert not np.array_equal(epoch0, epoch1)


def test_fields_stay_aligned():
    batch = next(BatchIterator(_arrays(), batch_size=4, seed=0))
    np.testing.assert_array_equal(batch["x"], batch["y"] * 10)


def test_same_seed_same_batches_other_seed_other_batches():
    first = [next(BatchIterator(_arrays(), 4, seed=1))["y"] for _ in range(1)]
    again = [next(BatchIterator(_arrays(), 4, seed=1))["y"] for _ in range(1)]
    other = [next(BatchIterator(_arrays(), 4, seed=2))["y"] for _ in range(1)]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_resume_from_saved_position_replays_the_same_stream():
    reference = BatchIterator(_arrays(13), batch_size=3, seed=7)
    stream = [next(reference)["y"] for _ in range(11)]
    interrupted = BatchIterator(_arrays(13), batch_size=3, seed=7)
    for _ in range(5):
        next(interrupted)
    saved = interrupted.get_state()
    resumed = BatchIterator(_arrays(13), batch_size=3, seed=7)
    resumed.set_state(saved)
    rest = [next(resumed)["y"] for _ in range(6)]
    for got, want in zip(rest, stream[5:], strict=True):
        np.testing.assert_array_equal(got, want)


def test_partial_batch_dropped():
    iterator = BatchIterator(_arrays(10), batch_size=4, seed=0)
    assert iterator.batches_per_epoch == 2
    seen = np.concatenate([next(iterator)["y"] for _ in range(2)])
    assert len(set(seen)) == 8


@pytest.mark.parametrize("batch_size", [0, 11])
def test_bad_batch_size(batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        BatchIterator(_arrays(10), batch_size=batch_size, seed=0)


def test_iterate_once_covers_every_example_in_order():
    batches = list(iterate_once(_arrays(10), 4))
    assert [len(b["y"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in batches]), range(10))
