"""Binary MNIST tasks for PathNet transfer: a task is a pair of digits.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.3 / figure 3 (binary MNIST): task A
and task B are each "tell digit a from digit b" for a random pair of digits; the
experiment counts the generations needed to learn B after A.

Everything here is host-side numpy: tasks are built once per pair from the embedded
MNIST (`shared.data.load`) and the GA's minibatches are drawn by `RoundBatches`, a
deterministic, resumable iterator (the sampled batch of round `r` is a pure function
of `(seed, r)`), so `shared.train_loop.fit` can checkpoint its position.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from shared import data as data_lib
from shared.errors import ConfigError
from transfer import batches


@dataclasses.dataclass(frozen=True)
class BinaryTask:
    """One binary task: label 0 = `digits[0]`, label 1 = `digits[1]`.

    Attributes:
      digits: the two MNIST classes, in label order.
      train_images: uint8 (N, 784) flattened training images.
      train_labels: int32 (N,) in {0, 1}.
      test_images: uint8 (N_test, 784); never used by the GA (fitness is on
        training data only), only by the final report.
      test_labels: int32 (N_test,).
      source: where the images came from (for summary.json).
    """

    digits: tuple[int, int]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def _select(images, labels, digits, limit):
    keep = np.flatnonzero((labels == digits[0]) | (labels == digits[1]))
    if limit:
        keep = keep[:limit]
    flat = images[keep].reshape(len(keep), -1)
    return flat, (labels[keep] == digits[1]).astype(np.int32)


@functools.lru_cache(maxsize=4)
def _load(dataset: str, split: str, data_dir: str | None):
    """One read per split and process: a run builds two tasks per pair."""
    return data_lib.load(dataset, split, data_dir)


def make_binary_task(
    digits: tuple[int, int],
    dataset: str = "mnist",
    data_dir: str | None = None,
    train_examples: int = 0,
    test_examples: int = 0,
) -> BinaryTask:
    """Builds the task "digits[0] vs digits[1]" from MNIST's train and test splits.

    Args:
      digits: two distinct class ids.
      dataset, data_dir: passed to `shared.data.load` (embedded MNIST by default).
      train_examples, test_examples: keep only the first this many examples of
        the pair (0 = all); for smoke runs.
    """
    a, b = int(digits[0]), int(digits[1])
    if a == b:
        raise ConfigError(f"task digits {digits} must differ.")
    train = _load(dataset, "train", data_dir)
    test = _load(dataset, "test", data_dir)
    for d in (a, b):
        if not 0 <= d < train.num_classes:
            raise ConfigError(f"digit {d} is not a class of {dataset}.")
    train_x, train_y = _select(train.images, train.labels, (a, b), train_examples)
    test_x, test_y = _select(test.images, test.labels, (a, b), test_examples)
    return BinaryTask((a, b), train_x, train_y, test_x, test_y, train.source)


def add_salt_pepper(rng: np.random.Generator, images: np.ndarray, prob: float):
    """Each pixel replaced with probability `prob` by 0 or 255 (half each)."""
    hit = rng.random(images.shape) < prob
    salt = rng.random(images.shape) < 0.5
    return np.where(hit, np.where(salt, 255, 0), images).astype(np.uint8)


def noise_once(task: BinaryTask, prob: float, seed: tuple[int, ...]) -> BinaryTask:
    """`task` with salt-and-pepper noise added ONCE to its training images.

    The public re-implementations (kimhc6028/pathnet-pytorch `common.py`,
    jsikyoon/pathnet) corrupt the training set once, before training, so the
    GA sees a fixed noisy dataset it can fit to 99.8%; `RoundBatches`'
    `salt_pepper` instead draws fresh noise for every minibatch. The images of
    digit d are noised by `default_rng([*seed, d])` in dataset order, so a digit
    shared by tasks A and B gets the same noisy images in both. Test images stay
    clean (they are only reported).
    """
    images = task.train_images.copy()
    for label, digit in enumerate(task.digits):
        rows = np.flatnonzero(task.train_labels == label)
        # One (hit, salt) pair of uniforms per pixel, image after image: the
        # first k images of a digit get the same noise however many are kept.
        rng = np.random.default_rng([*seed, digit])
        draw = rng.random((len(rows), 2, images.shape[1]))
        noise = np.where(draw[:, 1] < 0.5, 255, 0)
        images[rows] = np.where(draw[:, 0] < prob, noise, images[rows])
    return dataclasses.replace(task, train_images=images)


def sample_task_pairs(
    seed: int, num_pairs: int, num_classes: int = 10
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """`num_pairs` random (A, B) task pairs; within a pair, B differs from A.

    Each task is an ordered pair of distinct digits drawn uniformly; B is redrawn
    until it is not the same unordered pair as A. Pair `i` depends only on
    `(seed, i)`, so growing `num_pairs` keeps the earlier pairs.
    """
    pairs = []
    for index in range(num_pairs):
        rng = np.random.default_rng([seed, index])
        task_a = tuple(int(d) for d in rng.choice(num_classes, 2, replace=False))
        while True:
            task_b = tuple(int(d) for d in rng.choice(num_classes, 2, replace=False))
            if set(task_b) != set(task_a):
                break
        pairs.append((task_a, task_b))
    return pairs


class RoundBatches(batches.SeededBatches):
    """Training minibatches for one GA round, forever; resumable by position.

    Round `r` yields `image` uint8 (S, T, B, 784) and `label` int32 (S, T, B): for
    each of the S path slots of the round (two per tournament), T minibatches of B
    examples drawn uniformly with replacement from the task's TRAINING split
    (`default_rng([seed, r])`, see `transfer.batches`). Test data is never
    touched. With `salt_pepper` = p > 0, each pixel is independently replaced
    with probability p by 0 or 255 (half each), the noise reportedly used for
    binary MNIST by public PathNet re-implementations (kimhc6028/pathnet-pytorch,
    `--noise-prob 0.5`).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_slots: int,
        num_minibatches: int,
        batch_size: int,
        seed: int,
        salt_pepper: float = 0.0,
    ):
        if not 0.0 <= salt_pepper <= 1.0:
            raise ConfigError(f"salt_pepper={salt_pepper} must be in [0, 1].")
        if len(images) != len(labels) or len(images) == 0:
            raise ConfigError(
                f"a task needs training examples (got {len(images)} images, "
                f"{len(labels)} labels); check --config.train_examples."
            )
        super().__init__(seed)
        self._images, self._labels = images, labels
        self._shape = (num_slots, num_minibatches, batch_size)
        self._salt_pepper = salt_pepper

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        take = rng.integers(0, len(self._labels), size=self._shape)
        images = self._images[take]
        if self._salt_pepper:
            images = add_salt_pepper(rng, images, self._salt_pepper)
        return {"image": images, "label": self._labels[take]}
