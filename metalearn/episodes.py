"""N-way K-shot episodes sampled in pure JAX from a class-indexed image array.

An episode is `(support_x, support_y, query_x, query_y)`: `n_way` distinct
classes drawn at random, `k_shot` support and `n_query` query images per class
(distinct drawers), labels `0..n_way-1` in the order the classes were drawn.
A meta-batch is `jax.vmap(sample_episode)` over `jax.random.split(key, E)`.

Omniglot splits (28x28, embedded, ink = 1.0 after `to_float`):
  `vinyals`  1200 training / 423 test characters from background + evaluation,
             as in Vinyals et al. 2016 ("Matching Networks for One Shot
             Learning", arXiv:1606.04080) and Snell et al. 2017 (arXiv:1703.05175).
             The rule: characters with global id 1..1200 train, 1201..1623 test.
             This is exactly the set in Snell's `splits/vinyals/{train,val}.txt`
             (train+val) and `test.txt` (Gurmukhi characters 42-45 and the 12
             evaluation alphabets after it), so no seed is involved.
  `official` background (964 characters) / evaluation (659), Lake et al. 2015.
Rotations by 0/90/180/270 degrees make four classes of each character (both
sides of the split, as Vinyals and Snell do); rotation `r` of base class `c` is
class `r * C + c`. Images are rotated when sampled, so the array on the device
holds each character once: (C, 20, 28, 28, 1) uint8.
"""

from __future__ import annotations

from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from shared import data as data_lib
from shared.errors import ConfigError

VINYALS_NUM_TRAIN = 1200  # global character ids 1..1200 (labels 0..1199) train
SPLITS = ("vinyals", "official")


class Episode(NamedTuple):
    """One episode (or a meta-batch of them, with a leading (E,) axis).

    Attributes:
      support_x: (N*K, H, W, 1) float32 images, class-major (class 0's K first).
      support_y: (N*K,) int32 labels in 0..N-1.
      query_x: (N*Q, H, W, 1) float32 images, class-major.
      query_y: (N*Q,) int32 labels in 0..N-1.
    """

    support_x: jax.Array
    support_y: jax.Array
    query_x: jax.Array
    query_y: jax.Array


@flax.struct.dataclass
class ClassImages:
    """The class-indexed image array of one split.

    Attributes:
      images: (C, S, H, W, 1) uint8, S examples (drawers) per base class; may be
        padded with extra classes that are never sampled (see `pad_classes`).
      num_base: C, the real number of base classes (static).
      rotations: 1, or 4 for rotations by multiples of 90 degrees (static).
    """

    images: jax.Array
    num_base: int = flax.struct.field(pytree_node=False)
    rotations: int = flax.struct.field(pytree_node=False, default=1)

    @property
    def num_classes(self) -> int:
        return self.num_base * self.rotations

    @property
    def examples_per_class(self) -> int:
        return self.images.shape[1]


def load_omniglot(
    split: str, part: str, data_dir: str | None = None
) -> tuple[np.ndarray, str]:
    """Omniglot characters of one side of a split as a class-indexed array.

    Args:
      split: `vinyals` or `official`.
      part: `train` or `test`.
      data_dir: a TFDS data_dir, or None for the embedded copy.

    Returns:
      ((C, 20, 28, 28, 1) uint8 with ink = 255, source string).
    """
    if split not in SPLITS:
        raise ConfigError(f"config.split={split!r}; use one of {SPLITS}.")
    if part not in ("train", "test"):
        raise ValueError(f"part={part!r}; use 'train' or 'test'")
    if split == "official":
        sets = [data_lib.load("omniglot", part, data_dir)]
    else:
        sets = [data_lib.load("omniglot", name, data_dir) for name in ("train", "test")]
    labels = np.concatenate([s.labels for s in sets])
    images = np.concatenate([s.images for s in sets])
    if split == "vinyals":
        is_train = labels < VINYALS_NUM_TRAIN
        keep = is_train if part == "train" else ~is_train
        labels, images = labels[keep], images[keep]
    order = np.argsort(labels, kind="stable")
    classes = np.unique(labels)
    per_class = len(labels) // len(classes)
    if per_class * len(classes) != len(labels):
        raise ValueError("Omniglot classes have unequal example counts")
    array = images[order].reshape(len(classes), per_class, *images.shape[1:])
    source = " + ".join(s.source for s in sets) + f" split={split}/{part}"
    return 255 - array, source  # ink = 255, paper = 0


def make_class_images(
    images: np.ndarray, rotations: bool, pad_classes: int = 1
) -> ClassImages:
    """Puts a (C, S, H, W, 1) uint8 array on the device.

    `pad_classes`: pad C up to a multiple of this (zeros, never sampled) so the
    array can be split over a mesh axis.
    """
    num_base = images.shape[0]
    padded = -num_base % pad_classes
    if padded:
        pad = np.zeros((padded, *images.shape[1:]), images.dtype)
        images = np.concatenate([images, pad])
    return ClassImages(jnp.asarray(images), num_base, 4 if rotations else 1)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 ink=255 -> float32 in [0, 1], ink = 1."""
    return images.astype(jnp.float32) / 255.0


def _rotate(images: jax.Array, quarter_turns: jax.Array) -> jax.Array:
    """Rotates each (M, H, W, 1) image by its own `quarter_turns` (M,) * 90 deg."""
    options = jnp.stack([jnp.rot90(images, k, axes=(1, 2)) for k in range(4)])
    return options[quarter_turns, jnp.arange(images.shape[0])]


def sample_episode(
    key: jax.Array, data: ClassImages, n_way: int, k_shot: int, n_query: int
) -> Episode:
    """Samples one N-way K-shot episode (pure; jit- and vmap-able).

    Args:
      key: a typed PRNG key.
      data: the split's class-indexed images.
      n_way, k_shot, n_query: static episode sizes.

    Returns:
      An `Episode` with float32 images (ink = 1) of shape (N*K, H, W, 1) and
      (N*Q, H, W, 1); labels are positions in the random class draw.
    """
    per_class = k_shot + n_query
    if n_way > data.num_classes or per_class > data.examples_per_class:
        raise ConfigError(
            f"{n_way}-way with {k_shot}+{n_query} examples per class needs at most "
            f"{data.num_classes} classes and {data.examples_per_class} examples "
            "per class; lower n_way, k_shot or n_query."
        )
    key_classes, key_examples = jax.random.split(key)
    # The indices of the k largest of i.i.d. uniforms are a uniform random
    # k-subset in random order; top_k compiles 2x faster than `choice`.
    classes = jax.lax.top_k(
        jax.random.uniform(key_classes, (data.num_classes,)), n_way
    )[1]
    base, turns = classes % data.num_base, classes // data.num_base
    scores = jax.random.uniform(key_examples, (n_way, data.examples_per_class))
    draws = jax.lax.top_k(scores, per_class)[1]  # (N, K+Q) distinct drawers
    images = data.images[base[:, None], draws]  # (N, K+Q, H, W, 1)
    flat = images.reshape(n_way * per_class, *images.shape[2:])
    flat = _rotate(flat, jnp.repeat(turns, per_class)).reshape(images.shape)
    images = to_float(flat)
    labels = jnp.arange(n_way, dtype=jnp.int32)
    shape = images.shape[2:]
    return Episode(
        support_x=images[:, :k_shot].reshape(n_way * k_shot, *shape),
        support_y=jnp.repeat(labels, k_shot),
        query_x=images[:, k_shot:].reshape(n_way * n_query, *shape),
        query_y=jnp.repeat(labels, n_query),
    )


def sample_meta_batch(
    key: jax.Array,
    data: ClassImages,
    meta_batch: int,
    n_way: int,
    k_shot: int,
    n_query: int,
) -> Episode:
    """`meta_batch` independent episodes: `vmap(sample_episode)` over split keys."""
    keys = jax.random.split(key, meta_batch)
    return jax.vmap(lambda k: sample_episode(k, data, n_way, k_shot, n_query))(keys)


def fixed_episode_keys(seed: int, num_episodes: int) -> jax.Array:
    """The fixed keys of the test episodes: episode i is always the same."""
    return jax.random.split(jax.random.key(seed), num_episodes)
