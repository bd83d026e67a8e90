"""Penn Treebank (Mikolov's language-modelling text) as a TFDS builder `ptb`.

Mikolov et al., "Recurrent neural network based language model" (2010): the
`ptb.{train,valid,test}.txt` files, already lower-cased with numbers as `N` and
rare words as `<unk>`. Words are split on whitespace and `<eos>` ends every
line; the vocabulary is every word type of the train split plus `<eos>`
(10,000 types on the real text), ordered by falling train count, then
alphabetically. Token counts with `<eos>`: 929,589 / 73,760 / 82,430.

TFDS has no PTB builder, so the project defines one. The text is research-use
licensed and never downloaded: it is read from a manual directory
(`config.ptb_dir`, TFDS's `manual_dir`) and prepared once into a TFDS data_dir
(`config.data_dir`, the `--data_dir` flag) in the `array_record` format, which
TFDS 4.9 writes and reads without TensorFlow (`tfds.data_source`). One example
per line (`ids`: int32 word ids with the line's `<eos>`), in file order
(`disable_shuffling`), and the vocabulary in the dataset's `metadata.json`.

    streams, vocab, source = ptb.load("ptb", ptb_dir="/path/to/ptb", data_dir=DIR)
"""

from __future__ import annotations

import collections
import os

import numpy as np
import tensorflow_datasets as tfds

from shared.errors import DataError

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
UNK = "<unk>"


def read_words(path) -> list[list[str]]:
    """Lines of whitespace-split words, each ending with `<eos>`."""
    with open(path) as f:
        return [line.split() + [EOS] for line in f]


def build_vocab(lines: list[list[str]]) -> list[str]:
    """Word types by falling count, ties alphabetical (deterministic)."""
    counts = collections.Counter(word for line in lines for word in line)
    return sorted(counts, key=lambda word: (-counts[word], word))


class Ptb(tfds.core.GeneratorBasedBuilder):
    """Mikolov's Penn Treebank text, one example per line, as word ids."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Mikolov's text, `<eos>` per line, train vocab."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put Mikolov's ptb.train.txt, ptb.valid.txt and ptb.test.txt (from "
        "simple-examples.tgz) in one directory and pass it as --config.ptb_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"ids": tfds.features.Tensor(shape=(None,), dtype=np.int32)}
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[1],
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # a language model reads the text in order
            homepage="https://www.fit.vutbr.cz/~imikolov/rnnlm/",
        )

    def _split_generators(self, dl_manager):
        text = {
            split: read_words(_text_path(dl_manager.manual_dir, split))
            for split in SPLITS
        }
        vocab = build_vocab(text["train"])
        self.info.metadata["vocab"] = vocab
        index = {word: i for i, word in enumerate(vocab)}
        return {split: self._generate_examples(text[split], index) for split in SPLITS}

    def _generate_examples(self, lines, index):
        unk = index.get(UNK)
        for number, line in enumerate(lines):
            ids = [index.get(word, unk) for word in line]
            if unk is None and None in ids:
                word = line[ids.index(None)]
                raise DataError(
                    f"word {word!r} is not in the train vocabulary and the train "
                    f"text has no {UNK!r}; check the files in --config.ptb_dir."
                )
            yield number, {"ids": np.asarray(ids, np.int32)}


def _text_path(manual_dir, split: str):
    path = os.path.join(str(manual_dir), f"ptb.{split}.txt")
    if not os.path.isfile(path):
        raise DataError(
            f"Penn Treebank text {path} is missing. Set --config.ptb_dir to the "
            "directory holding ptb.train.txt, ptb.valid.txt and ptb.test.txt "
            "(Mikolov's simple-examples/data; on the gicho machine "
            "/work/shared/data/ptb), or --data_dir to a TFDS data_dir where `ptb` "
            "is already prepared."
        )
    return path


def prepare(ptb_dir: str | None, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The `ptb` builder, prepared in `data_dir` from `ptb_dir` if not yet done."""
    builder = Ptb(data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
        return builder
    if ptb_dir is None:
        raise DataError(
            f"dataset 'ptb' is not prepared in {builder.data_dir} and "
            "config.ptb_dir is unset. Set --config.ptb_dir=DIR (the directory "
            "with ptb.{train,valid,test}.txt; on the gicho machine "
            "/work/shared/data/ptb) to prepare it there, or --data_dir to a "
            "TFDS data_dir that holds it."
        )
    _text_path(ptb_dir, "train")  # a clear error before TFDS's own
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=ptb_dir)
        )
    except PermissionError as error:
        raise DataError(
            f"cannot write the prepared 'ptb' to {builder.data_dir} ({error}); set "
            "--data_dir to a writable TFDS data_dir."
        ) from None
    return builder


def load(
    ptb_dir: str | None, data_dir: str | None
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Every split as one int32 stream of word ids, through `tfds.data_source`.

    Args:
      ptb_dir: directory of the text files (TFDS manual_dir); only read when
        `ptb` is not prepared in `data_dir` yet.
      data_dir: TFDS data_dir (None: TFDS's default, ~/tensorflow_datasets).

    Returns:
      ({split: (num_tokens,) int32}, vocabulary list, source description).
    """
    builder = prepare(ptb_dir, data_dir)
    vocab = list(builder.info.metadata["vocab"])
    streams = {}
    for split in SPLITS:
        source = tfds.data_source("ptb", split=split, data_dir=data_dir)
        records = source.__getitems__(list(range(len(source))))
        streams[split] = np.concatenate([r["ids"] for r in records]).astype(np.int32)
    return streams, vocab, f"tfds:{builder.data_dir}"


def write_synthetic_text(directory: str, seed: int = 0, words: int = 40) -> str:
    """A tiny PTB-like corpus (a fixed random Markov chain) for smoke runs.

    Each word has 3 likely successors, so a working language model gets well
    below the `words + 1` perplexity of guessing. Returns `directory`.
    """
    rng = np.random.default_rng(seed)
    names = [f"w{i}" for i in range(words - 1)] + [UNK]
    successors = rng.integers(0, words, (words, 3))
    os.makedirs(directory, exist_ok=True)
    for split, num_lines in zip(SPLITS, (300, 40, 40), strict=True):
        lines = []
        for _ in range(num_lines):
            word, line = int(rng.integers(words)), []
            for _ in range(int(rng.integers(4, 12))):
                line.append(names[word])
                word = int(successors[word, rng.integers(3)])
            lines.append(" " + " ".join(line) + " \n")
        with open(os.path.join(directory, f"ptb.{split}.txt"), "w") as f:
            f.writelines(lines)
    return directory
