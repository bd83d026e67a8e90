"""nas.train_rnn: ptb_search:smoke end to end (generated text), config checks."""

import json
import os

import numpy as np
import pytest

from nas import search_space as space_lib
from nas import train_rnn
from nas.configs import ptb_search
from shared import config as config_lib
from shared.errors import ConfigError


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run (search, derive, final, random control) for the module."""
    config = ptb_search.get_config("smoke")
    config.num_devices = 1
    config_lib.validate(config)
    workdir = tmp_path_factory.mktemp("ptb_smoke")
    return config, workdir, train_rnn.train_and_evaluate(config, str(workdir))


def test_smoke_reports_search_and_final_apart(smoke):
    config, workdir, summary = smoke
    space = space_lib.rnn_space(config.num_nodes)
    vocab = summary["vocab_size"]
    assert vocab == 41 and "synthetic" in summary["data_source"]  # 40 + <eos>
    for prefix in ("", "random_"):
        # search (shared weights, valid) and final (retrained, valid/test) apart
        for name in ("search_valid_ppl", "final_valid_ppl", "final_test_ppl"):
            assert 1.0 < summary[prefix + name] < 2 * vocab, (prefix, name)
        space_lib.from_fixed_arc(space, summary[prefix + "fixed_arc"])
    shares = [v for k, v in summary.items() if k.startswith("op_share/")]
    np.testing.assert_allclose(sum(shares), 1.0, rtol=1e-6)
    for phase in ("search", "final", "random/search", "random/final"):
        assert os.listdir(workdir / phase / "checkpoints"), phase
    derived = json.loads((workdir / "derive" / "derive.json").read_text())
    assert len(derived["candidates"]) == config.derive_samples
    assert derived["search_valid_ppl"] == min(derived["candidate_valid_ppls"])
    assert (workdir / "derived_cell.txt").read_text().strip() == summary["fixed_arc"]
    assert (workdir / "derived_cell.png").stat().st_size > 1000


def test_smoke_controller_learns_only_in_enas_mode(smoke):
    _, workdir, _ = smoke
    read = lambda path: [
        json.loads(r) for r in (workdir / path).read_text().splitlines()
    ]
    enas = read("search/metrics.jsonl")
    assert any(row.get("controller/baseline", 0) != 0 for row in enas)
    control = read("random/search/metrics.jsonl")
    assert all(row.get("controller/baseline", 0) == 0 for row in control)
    losses = [row["train/xent"] for row in enas if "train/xent" in row]
    assert losses[-1] < losses[0]  # the shared weights learn the Markov text


def test_smoke_rerun_resumes_with_the_same_numbers(smoke):
    config, workdir, summary = smoke
    again = train_rnn.train_and_evaluate(config, str(workdir))
    for name in ("search_valid_ppl", "final_test_ppl", "fixed_arc"):
        assert again[name] == summary[name], name


@pytest.mark.parametrize("variant", ["quick", "paper"])
def test_quick_and_paper_presets_validate(variant):
    config = ptb_search.get_config(variant)
    config_lib.validate(config)
    assert config.batch_norm and config.corpus == "ptb"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("space", "macro", "needs 'rnn'"),
        ("corpus", "wiki", "ptb_dir"),
        ("final_input_keep", 0.0, "final_input_keep"),
        ("baseline_decay", 1.0, "baseline_decay"),
        ("tau_archs", 1, "tau_archs"),
    ],
)
def test_bad_config_names_the_field(field, value, message):
    config = ptb_search.get_config("smoke")
    config[field] = value
    with pytest.raises(ConfigError, match=message):
        config_lib.validate(config)
