"""nas.train: the smoke config end to end, the lr schedule, config checks."""

import json
import os

import numpy as np
import pytest

from nas import search as search_lib
from nas import search_space as space_lib
from nas import train as train_lib
from nas.configs import macro_search, micro_search
from shared import config as config_lib
from shared.errors import ConfigError


def test_smoke_search_derive_final_and_random_control(tmp_path):
    config = macro_search.get_config("smoke")
    config.num_devices = 1  # compile for one device: the mesh is tested in shared/
    config_lib.validate(config)
    summary = train_lib.train_and_evaluate(config, str(tmp_path))
    for prefix in ("", "random_"):
        # search (shared weights, validation) and final (retrained, test) differ
        assert 0.0 <= summary[f"{prefix}search_valid_accuracy"] <= 1.0
        assert 0.0 <= summary[f"{prefix}final_test_accuracy"] <= 1.0
        space = space_lib.macro_space(config.num_layers)
        space_lib.from_fixed_arc(space, summary[f"{prefix}fixed_arc"])
    shares = [
        v for k, v in summary.items() if k.startswith("op_share/") and "skip" not in k
    ]
    np.testing.assert_allclose(sum(shares), 1.0, rtol=1e-6)
    assert "embedded:mnist" in summary["data_source"]
    for phase in ("search", "final", "random/search", "random/final"):
        assert os.listdir(tmp_path / phase / "checkpoints"), phase
    derived = json.loads((tmp_path / "derive" / "derive.json").read_text())
    assert len(derived["candidates"]) == config.derive_samples
    assert derived["search_valid_accuracy"] == max(
        derived["candidate_valid_accuracies"]
    )
    rows = [json.loads(line) for line in open(tmp_path / "search" / "metrics.jsonl")]
    assert any("eval/op_share/conv3x3" in row for row in rows)
    assert any("controller/baseline" in row for row in rows)
    for figure in ("search_curves.png", "derive/derived.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG", figure


def test_micro_smoke_search_derive_final(tmp_path):
    config = micro_search.get_config("smoke")
    config.num_devices = 1
    config.search_epochs = 1
    # The final retrains a standalone child (the supernet-as-final path is
    # covered by the equality test in test_micro).
    config.final_network = "standalone"
    # The random-search control is the same code for both spaces (tested above
    # on macro); here it would only add a third child compile.
    config.random_search = False
    config_lib.validate(config)
    summary = train_lib.train_and_evaluate(config, str(tmp_path))
    space = space_lib.micro_space(config.num_cells)
    assert 0.0 <= summary["search_valid_accuracy"] <= 1.0
    assert 0.0 <= summary["final_test_accuracy"] <= 1.0
    arch = space_lib.from_fixed_arc(space, summary["fixed_arc"])
    assert len(arch) == 8  # normal + reduction cell, 4 integers per node (B=1)
    assert not any(k.startswith("random_") for k in summary)
    shares = [v for k, v in summary.items() if k.startswith("op_share/")]
    assert len(shares) == 5 and abs(sum(shares) - 1.0) < 1e-6
    assert "op_share/identity" in summary  # collapse share reported as for macro
    rows = [json.loads(line) for line in open(tmp_path / "search" / "metrics.jsonl")]
    assert any("controller/entropy" in row for row in rows)
    assert (tmp_path / "derive" / "derived.png").read_bytes()[:4] == b"\x89PNG"


def test_cosine_restarts_by_hand():
    schedule = search_lib.cosine_restarts(1.0, 0.0, t0=2, t_mul=2, steps_per_epoch=10)
    # cycles: epochs [0, 2), [2, 6), [6, 14)
    np.testing.assert_allclose(schedule(0), 1.0)
    np.testing.assert_allclose(schedule(10), 0.5, atol=1e-6)
    np.testing.assert_allclose(schedule(20), 1.0, atol=1e-6)  # restart
    np.testing.assert_allclose(schedule(40), 0.5, atol=1e-6)
    np.testing.assert_allclose(schedule(60), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("space", "rnn", "macro or micro"),
        ("width", 7, "even"),
        ("num_layers", 2, ">= 3"),
        ("final_network", "fixed", "'standalone'"),
    ],
)
def test_validate_config_names_the_field(field, value, message):
    config = macro_search.get_config("smoke")
    config[field] = value
    with pytest.raises(ConfigError, match=message):
        train_lib.validate_config(config)


def test_unknown_variant():
    with pytest.raises(ConfigError, match="unknown config variant"):
        macro_search.get_config("huge")
    with pytest.raises(ConfigError, match="unknown config variant"):
        micro_search.get_config("huge")


@pytest.mark.parametrize(
    "module, variant",
    [(macro_search, v) for v in ("smoke", "demo", "quick", "paper")]
    + [(micro_search, v) for v in ("smoke", "quick", "paper")],
)
def test_every_variant_validates(module, variant):
    config = module.get_config(variant)
    config_lib.validate(config)
    train_lib.validate_config(config)
    assert config.area == "nas" and "data_dir" in config
