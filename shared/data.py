"""Datasets as numpy arrays: embedded copies (no download) or TFDS through a data_dir.

`load(name, split, data_dir)` is the one entry point. Resolution order:

1. `data_dir` given: read the TFDS dataset prepared there with `tfds.data_source`
   (no TensorFlow; images are decoded with Pillow).
2. No `data_dir` and `name` is embedded (`mnist`, `omniglot`): read the copy that
   ships in `shared/embedded/`, after checking its SHA-256.
3. Otherwise: TFDS's default data_dir (`$TFDS_DATA_DIR` or ~/tensorflow_datasets).

A dataset that is not prepared is never downloaded implicitly: the error says
which dataset, where we looked and the command that prepares it.

Embedded data (provenance and licences in `shared/embedded/README.md`):
  mnist     the original IDX files (bit-exact), train 60000 / test 10000.
  omniglot  1623 characters x 20 drawers at 28x28 (Pillow LANCZOS from 105x105,
            255 = paper); split `train` = background (964 characters),
            `test` = evaluation (659). Labels are TFDS labels (char_id - 1, global
            over both sets); extras `alphabet` (0..49, global, alphabetical order)
            and `drawer` (0..19).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import os
import pathlib

import numpy as np
from absl import logging

from shared.errors import DataError

EMBEDDED_DIR = pathlib.Path(__file__).parent / "embedded"

# SHA-256 of the files as stored (see shared/embedded/README.md).
EMBEDDED_SHA256 = {
    "mnist/train-images-idx3-ubyte.gz": (
        "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64"
    ),
    "mnist/train-labels-idx1-ubyte.gz": (
        "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e"
    ),
    "mnist/t10k-images-idx3-ubyte.gz": (
        "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341"
    ),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6"
    ),
    "omniglot/omniglot_28x28.npz": (
        "c4290ef3dfa0d19bd577000ae4fe8acd98c29488499164be23a89036ae2a3a13"
    ),
    "omniglot/omniglot_alphabets.json": (
        "c288b7c006493bd21d103355a47c30f3cfa1f329f09f55a18db8efd0ed82d497"
    ),
}
EMBEDDED_SPLITS = {"mnist": ("train", "test"), "omniglot": ("train", "test")}


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """One split of a dataset, held on the host.

    Attributes:
      images: uint8 (N, H, W, C).
      labels: int32 (N,).
      num_classes: number of label values of the whole dataset (not just this split).
      source: where the arrays came from, e.g. `embedded:mnist/train (sha256 ok)`
        or `tfds:/data/mnist/3.0.1 split=train`; logged and written to workdirs.
      extras: further int32 (N,) features, e.g. `alphabet` for Omniglot.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    source: str
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, count: int) -> ArrayDataset:
        """The first `count` examples; all of them when `count` is 0."""
        if not count or count >= len(self):
            return self
        return ArrayDataset(
            self.images[:count],
            self.labels[:count],
            self.num_classes,
            f"{self.source} [:{count}]",
            {name: value[:count] for name, value in self.extras.items()},
        )


def embedded_names() -> tuple[str, ...]:
    return tuple(EMBEDDED_SPLITS)


def load(name: str, split: str, data_dir: str | None = None) -> ArrayDataset:
    """Loads one split of an image-classification dataset as numpy arrays.

    Args:
      name: `mnist`, `omniglot` (embedded) or any TFDS image-classification name.
      split: a split name (`train`, `test`, ...); TFDS slicing like `train[:10%]`
        is accepted for TFDS sources.
      data_dir: a TFDS data_dir (the `--data_dir` flag). None uses the embedded
        copy when there is one, else TFDS's default data_dir.

    Returns:
      An `ArrayDataset` whose `source` says which copy was read.

    Raises:
      DataError: unknown dataset, missing split, dataset not prepared, or a
        checksum mismatch; the message names the fix.
    """
    if data_dir is None and name in EMBEDDED_SPLITS:
        dataset = _load_embedded(name, split)
    else:
        dataset = _load_tfds(name, split, data_dir)
    logging.info("data: %s (%d examples)", dataset.source, len(dataset))
    return dataset


def load_train_test(config) -> tuple[ArrayDataset, ArrayDataset]:
    """`config.dataset`'s train and test splits, cut to the config's sizes.

    Reads `config.dataset`, `config.data_dir` (the `--data_dir` flag) and the
    optional `config.train_examples` / `config.test_examples` (0 or absent = all).
    """
    data_dir = config.get("data_dir")
    train = load(config.dataset, "train", data_dir)
    test = load(config.dataset, "test", data_dir)
    return (
        train.take(config.get("train_examples", 0)),
        test.take(config.get("test_examples", 0)),
    )


# --- embedded ---------------------------------------------------------------


def _check_sha256(relpath: str) -> pathlib.Path:
    path = EMBEDDED_DIR / relpath
    if not path.exists():
        raise DataError(
            f"embedded data file {path} is missing; restore it with "
            f"`git checkout -- shared/embedded/{relpath}` (or reinstall gicho)."
        )
    digest = _sha256_cached(str(path), path.stat().st_mtime_ns, path.stat().st_size)
    expected = EMBEDDED_SHA256[relpath]
    if digest != expected:
        raise DataError(
            f"checksum mismatch for embedded data file {path}: sha256 {digest}, "
            f"expected {expected}. The file is corrupt or was changed; restore it "
            f"with `git checkout -- shared/embedded/{relpath}`."
        )
    return path


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # cache keys: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_idx(path: pathlib.Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _check_split(name: str, split: str, available, where: str) -> None:
    if split not in available:
        raise DataError(
            f"dataset {name!r} has no split {split!r} in {where}; available splits: "
            f"{', '.join(sorted(available))}. Fix the split name in the config."
        )


def _load_embedded(name: str, split: str) -> ArrayDataset:
    _check_split(name, split, EMBEDDED_SPLITS[name], f"embedded copy {EMBEDDED_DIR}")
    if name == "mnist":
        prefix = "train" if split == "train" else "t10k"
        images = _read_idx(_check_sha256(f"mnist/{prefix}-images-idx3-ubyte.gz"))
        labels = _read_idx(_check_sha256(f"mnist/{prefix}-labels-idx1-ubyte.gz"))
        return ArrayDataset(
            images=images[..., None],
            labels=labels.astype(np.int32),
            num_classes=10,
            source=f"embedded:mnist/{split} (sha256 ok)",
        )
    return _load_embedded_omniglot(split)


def _load_embedded_omniglot(split: str) -> ArrayDataset:
    arrays = np.load(_check_sha256("omniglot/omniglot_28x28.npz"))
    meta_path = _check_sha256("omniglot/omniglot_alphabets.json")
    alphabets = json.loads(meta_path.read_text())["alphabets"]
    which = "background" if split == "train" else "evaluation"
    chars = arrays[f"images_{which}"]  # (C, 20, 28, 28)
    first_id = 1 if which == "background" else 965
    num_chars, num_drawers = chars.shape[:2]
    char_ids = first_id + np.arange(num_chars)
    alphabet_of_char = np.full(num_chars, -1, np.int32)
    for index, entry in enumerate(alphabets):
        lo, hi = entry["first_char_id"], entry["last_char_id"]
        alphabet_of_char[(char_ids >= lo) & (char_ids <= hi)] = index
    if (alphabet_of_char < 0).any():
        raise DataError(f"{meta_path} does not cover every character id; restore it.")
    repeat = lambda a: np.repeat(a, num_drawers).astype(np.int32)
    return ArrayDataset(
        images=chars.reshape(num_chars * num_drawers, 28, 28, 1),
        labels=repeat(char_ids - 1),
        num_classes=1623,
        source=f"embedded:omniglot/{split} ({which}, 28x28, sha256 ok)",
        extras={
            "alphabet": repeat(alphabet_of_char),
            "drawer": np.tile(np.arange(num_drawers, dtype=np.int32), num_chars),
        },
    )


# --- TFDS -------------------------------------------------------------------


def _under_tfds_mock_data(tfds) -> bool:
    """True inside `tfds.testing.mock_data`, which serves unprepared datasets."""
    prepare = tfds.core.DatasetBuilder.download_and_prepare
    return getattr(prepare, "__name__", "") == "mock_download_and_prepare"


def _load_tfds(name: str, split: str, data_dir: str | None) -> ArrayDataset:
    import tensorflow_datasets as tfds  # heavy import, only when needed

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataError(
            f"--data_dir {data_dir} does not exist; pass a TFDS data_dir that holds "
            f"{name!r}, or drop --data_dir to use embedded data ({embedded_names()})."
        )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"unknown dataset {name!r}: neither embedded "
            f"({', '.join(embedded_names())}) nor a TFDS dataset in {where}. "
            "Check the name (`tfds.list_builders()`)."
        ) from None
    mocked = _under_tfds_mock_data(tfds)  # mock data has no files and no splits
    if not (builder.is_prepared() or mocked):
        raise DataError(
            f"dataset {name!r} is not prepared in {builder.data_dir} (looked in the "
            f"TFDS data_dir {where}). Prepare it on a machine with network with "
            f"`tfds build {name} --data_dir=DIR` and pass --data_dir=DIR"
            + (
                f", or drop --data_dir to use the embedded {name!r}."
                if name in EMBEDDED_SPLITS
                else "."
            )
        )
    base_split = split.split("[")[0]
    if not mocked:
        _check_split(name, base_split, builder.info.splits.keys(), builder.data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataError(
            f"dataset {name!r} has features {list(features)}; load() needs an image "
            "classification dataset with `image` and `label`."
        )
    source = tfds.data_source(name, split=split, data_dir=data_dir)
    if len(source) == 0:
        raise DataError(f"split {split!r} of {name!r} in {builder.data_dir} is empty.")
    if mocked:  # the mock's batched __getitems__ is broken in tfds 4.9.10
        records = [source[index] for index in range(len(source))]
    else:
        records = source.__getitems__(list(range(len(source))))
    extras_keys = [
        key
        for key, feature in features.items()
        if key not in ("image", "label")
        and getattr(feature, "shape", None) == ()
        and np.issubdtype(np.dtype(feature.np_dtype), np.integer)
    ]
    return ArrayDataset(
        images=np.stack([np.asarray(r["image"], np.uint8) for r in records]),
        labels=np.array([r["label"] for r in records], np.int32),
        num_classes=int(features["label"].num_classes),
        source=f"tfds:{builder.data_dir} split={split}",
        extras={k: np.array([r[k] for r in records], np.int32) for k in extras_keys},
    )
