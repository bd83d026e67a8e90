"""Image data for NAS runs: train / held-out validation / test, and preprocessing.

The child networks of Pham et al. (2018, arXiv:1802.03268) train on 45k CIFAR-10
images and reward the controller on the 5k held out from the end of train; the
same split is taken from any `shared.data` image dataset here, optionally
average-pooled to a smaller side for CPU runs. Augmentation is the official
pad-4 random crop and flip, plus cutout (DeVries & Taylor 2017) in the final
phase.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from shared import data as data_lib
from shared.errors import ConfigError

JPEG_NOTE = "cifar10_jpeg is a JPEG re-encoded CIFAR-10 (not bit-exact)"


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Average-pools (N, H, W, C) uint8 by an integer factor to (N, size, size, C)."""
    factor = images.shape[1] // size
    if size == images.shape[1]:
        return images
    if factor * size != images.shape[1] or images.shape[1] != images.shape[2]:
        raise ConfigError(
            f"config.image_size={size} must divide the image side "
            f"{images.shape[1]}; set --config.image_size=0 (native) or a divisor"
        )
    n, _, _, c = images.shape
    pooled = images.reshape(n, size, factor, size, factor, c).mean(axis=(2, 4))
    return np.round(pooled).astype(np.uint8)


def load_data(config: ml_collections.ConfigDict):
    """Train (first N), validation (last N of train) and test splits, resized.

    Returns:
      (data, (mean, std), source, num_classes): `data` holds uint8 images
      `train_x`, `valid_x`, `test_x` (N, S, S, C) and int labels `*_y`; the
      per-channel statistics are those of `train_x` scaled to [0, 1].
    """
    train = data_lib.load(config.dataset, "train", config.get("data_dir"))
    test = data_lib.load(config.dataset, "test", config.get("data_dir"))
    count = config.valid_examples
    if config.train_examples + count > len(train):
        raise ConfigError(
            f"train_examples + valid_examples = {config.train_examples + count} "
            f"exceeds the {len(train)} training examples; lower them"
        )
    size = config.image_size or train.images.shape[1]
    images, labels = resize(train.images, size), train.labels
    test_count = config.test_examples or None
    data = {
        "train_x": images[: config.train_examples],
        "train_y": labels[: config.train_examples],
        "valid_x": images[len(train) - count :],
        "valid_y": labels[len(train) - count :],
        "test_x": resize(test.images[:test_count], size),
        "test_y": test.labels[:test_count],
    }
    pixels = data["train_x"].astype(np.float32) / 255.0
    stats = (pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)) + 1e-3)
    return data, stats, train.source, train.num_classes


def make_preprocess(mean, std, augment: bool, cutout: int):
    """uint8 (B, H, W, C) -> normalized float; optional crop/flip and cutout.

    The returned `preprocess(images, key=None)` only normalizes when `key` is
    None (evaluation); with a key it applies the random augmentation.
    """
    mean, std = jnp.asarray(mean), jnp.asarray(std)

    def preprocess(images, key=None):
        x = (images.astype(jnp.float32) / 255.0 - mean) / std
        if key is None:
            return x
        b, h, w, _ = x.shape
        key_crop, key_flip, key_cut = jax.random.split(key, 3)
        if augment:
            padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
            offsets = jax.random.randint(key_crop, (b, 2), 0, 9)
            x = jax.vmap(
                lambda img, o: jax.lax.dynamic_slice(
                    img, (o[0], o[1], 0), (h, w, x.shape[3])
                )
            )(padded, offsets)
            flip = jax.random.bernoulli(key_flip, 0.5, (b, 1, 1, 1))
            x = jnp.where(flip, x[:, :, ::-1], x)
        if cutout:
            centre = jax.random.randint(key_cut, (b, 2), 0, jnp.array([h, w]))
            rows = jnp.abs(jnp.arange(h)[None, :] - centre[:, :1]) < (cutout + 1) // 2
            cols = jnp.abs(jnp.arange(w)[None, :] - centre[:, 1:]) < (cutout + 1) // 2
            x = x * ~(rows[:, :, None] & cols[:, None, :])[..., None]
        return x

    return preprocess
