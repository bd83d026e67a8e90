"""nas.ptb: the TFDS builder on a tiny hand-written text (never the real PTB)."""

import numpy as np
import pytest

from nas import ptb
from shared.errors import DataError

TRAIN = " the cat sat \n the dog sat on the cat \n"
VALID = " the bird sat \n"  # `bird` is not in train: it becomes <unk>
TEST = " dog \n <unk> cat \n"


def _write(directory, train=TRAIN):
    directory.mkdir()
    for split, text in zip(ptb.SPLITS, (train, VALID, TEST), strict=True):
        (directory / f"ptb.{split}.txt").write_text(text)
    return str(directory)


def test_builder_vocab_eos_counts_and_order(tmp_path):
    text_dir = _write(tmp_path / "text", TRAIN + " <unk> \n")
    streams, vocab, source = ptb.load(text_dir, str(tmp_path / "tfds"))
    # train counts: the 3, <eos> 3, cat 2, sat 2, <unk> 1, dog 1, on 1
    assert vocab == ["<eos>", "the", "cat", "sat", "<unk>", "dog", "on"]
    words = lambda split: [vocab[i] for i in streams[split]]
    assert words("train") == (
        "the cat sat <eos> the dog sat on the cat <eos> <unk> <eos>".split()
    )
    assert words("valid") == "the <unk> sat <eos>".split()
    assert words("test") == "dog <eos> <unk> cat <eos>".split()
    assert {k: len(v) for k, v in streams.items()} == {
        "train": 13,
        "valid": 4,
        "test": 5,
    }
    assert streams["train"].dtype == np.int32
    assert "tfds:" in source and "ptb/1.0.0" in source
    # prepared once: a reload needs no text directory
    again, vocab_again, _ = ptb.load(None, str(tmp_path / "tfds"))
    assert vocab_again == vocab
    np.testing.assert_array_equal(again["test"], streams["test"])


def test_unknown_word_without_unk_in_train_is_refused(tmp_path):
    text_dir = _write(tmp_path / "text")  # train has no <unk>, valid has `bird`
    with pytest.raises(DataError, match="bird"):
        ptb.load(text_dir, str(tmp_path / "tfds"))


def test_missing_text_names_the_config_field(tmp_path):
    with pytest.raises(DataError, match="config.ptb_dir"):
        ptb.load(None, str(tmp_path / "tfds"))
    with pytest.raises(DataError, match=r"ptb\.train\.txt is missing.*ptb_dir"):
        ptb.load(str(tmp_path / "nothing"), str(tmp_path / "tfds"))


def test_synthetic_text_is_deterministic(tmp_path):
    first = ptb.write_synthetic_text(str(tmp_path / "a"), seed=3)
    second = ptb.write_synthetic_text(str(tmp_path / "b"), seed=3)
    for split in ptb.SPLITS:
        a = (tmp_path / "a" / f"ptb.{split}.txt").read_text()
        assert a == (tmp_path / "b" / f"ptb.{split}.txt").read_text()
        assert a.count("\n") == {"train": 300, "valid": 40, "test": 40}[split]
    assert first.endswith("a") and second.endswith("b")
