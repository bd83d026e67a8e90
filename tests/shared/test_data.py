"""shared.data: embedded datasets, TFDS loading and every error path."""

import os
import shutil

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds

from shared import data
from shared.errors import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_embedded_mnist_is_the_real_dataset():
    train = data.load("mnist", "train")
    test = data.load("mnist", "test")
    chex.assert_shape(train.images, (60000, 28, 28, 1))
    chex.assert_shape(test.images, (10000, 28, 28, 1))
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    assert np.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert train.images.mean() == pytest.approx(33.318421449829934)
    assert train.source.startswith("embedded:mnist/train")


def test_embedded_omniglot_layout():
    background = data.load("omniglot", "train")
    evaluation = data.load("omniglot", "test")
    chex.assert_shape(background.images, (964 * 20, 28, 28, 1))
    chex.assert_shape(evaluation.images, (659 * 20, 28, 28, 1))
    # Labels are TFDS labels: global character ids, disjoint between the sets.
    assert background.labels.min() == 0 and background.labels.max() == 963
    assert evaluation.labels.min() == 964 and evaluation.labels.max() == 1622
    assert np.all(np.bincount(background.labels) == 20)
    # 30 background and 20 evaluation alphabets, each constant per character.
    assert len(np.unique(background.extras["alphabet"])) == 30
    assert len(np.unique(evaluation.extras["alphabet"])) == 20
    per_char = background.extras["alphabet"].reshape(964, 20)
    assert np.all(per_char == per_char[:, :1])
    # Korean occupies character ids 643..682 (TFDS labels 642..681).
    korean = background.extras["alphabet"][background.labels == 642][0]
    assert np.all(background.extras["alphabet"][background.labels == 681] == korean)
    assert background.extras["drawer"][:20].tolist() == list(range(20))
    # Paper is white (255), strokes are dark.
    assert np.median(background.images) == 255


def test_checksum_mismatch_names_the_file_and_the_fix(tmp_path, monkeypatch):
    copy = tmp_path / "embedded"
    shutil.copytree(data.EMBEDDED_DIR, copy)
    path = copy / "mnist" / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0xFF
    path.write_bytes(bytes(payload))
    monkeypatch.setattr(data, "EMBEDDED_DIR", copy)
    with pytest.raises(DataError, match="checksum mismatch.*t10k-labels.*git checkout"):
        data.load("mnist", "test")


def test_missing_embedded_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "EMBEDDED_DIR", tmp_path)
    with pytest.raises(DataError, match="missing.*git checkout"):
        data.load("mnist", "train")


def test_missing_split_lists_the_available_ones():
    with pytest.raises(DataError, match="no split 'validation'.*test, train"):
        data.load("mnist", "validation")


def test_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'no_such_set'"):
        data.load("no_such_set", "train", data_dir=str(tmp_path))


def test_dataset_not_prepared_names_where_and_the_command(tmp_path):
    with pytest.raises(DataError, match=r"not prepared in .*tfds build mnist"):
        data.load("mnist", "train", data_dir=str(tmp_path))


def test_missing_data_dir(tmp_path):
    missing = os.path.join(tmp_path, "nope")
    with pytest.raises(DataError, match="--data_dir .*nope does not exist"):
        data.load("mnist", "train", data_dir=missing)


def test_mock_data_through_load(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.load("cifar10", "train", data_dir=str(tmp_path))
    chex.assert_shape(dataset.images, (12, 32, 32, 3))
    assert dataset.labels.dtype == np.int32
    assert dataset.num_classes == 10
    assert dataset.source.startswith("tfds:")


def test_take():
    test = data.load("mnist", "test")
    head = test.take(100)
    assert len(head) == 100 and "[:100]" in head.source
    np.testing.assert_array_equal(head.labels, test.labels[:100])
    assert test.take(0) is test


def test_tfds_mnist_equals_embedded(tfds_dir):
    """The machine's TFDS build holds the same test images as the embedded copy."""
    from_tfds = data.load("mnist", "test", data_dir=tfds_dir)
    embedded = data.load("mnist", "test")
    assert from_tfds.source.startswith("tfds:")
    assert np.bincount(from_tfds.labels).tolist() == MNIST_TEST_COUNTS

    def fingerprint(dataset):
        flat = dataset.images.reshape(len(dataset), -1)
        rows = np.concatenate([flat, dataset.labels[:, None].astype(np.uint8)], 1)
        return np.sort(rows.view(np.dtype((np.void, rows.shape[1]))).ravel())

    np.testing.assert_array_equal(fingerprint(from_tfds), fingerprint(embedded))


def test_tfds_omniglot_has_alphabet_extra(tfds_dir):
    small = data.load("omniglot", "small1", data_dir=tfds_dir)
    assert len(small) == 2720
    chex.assert_shape(small.images, (2720, 105, 105, 3))
    assert "alphabet" in small.extras and small.num_classes == 1623


def test_load_train_test_cuts_both_splits():
    from shared.configs import mnist_classifier

    config = mnist_classifier.get_config("smoke")  # 512 train, 500 test examples
    train, test = data.load_train_test(config)
    assert (len(train), len(test)) == (512, 500)
    assert train.source.endswith("[:512]") and test.source.startswith("embedded:")
