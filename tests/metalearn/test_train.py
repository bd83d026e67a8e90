"""The smoke configs end to end through `train_and_evaluate`, and resume."""

import json
import os

import numpy as np
import pytest

from metalearn import matching, protonets, train, train_sinusoid
from metalearn.configs import (
    omniglot_maml,
    omniglot_matching,
    omniglot_protonet,
    sinusoid_maml,
)
from shared import config as config_lib
from shared.errors import ConfigError


# Matching Nets share this loop and evaluator with ProtoNets (only the learner
# differs, compiled in test_learners.py), so its smoke config is checked by
# `test_configs_build_their_learners` instead of a third end-to-end compile.
@pytest.mark.parametrize("module", [omniglot_protonet, omniglot_maml])
def test_smoke_config_end_to_end(module, tmp_path):
    config = module.get_config("smoke")
    config.num_devices = 1  # conftest simulates 4 devices; 1 keeps the test cheap
    config_lib.validate(config)
    workdir = str(tmp_path)
    summary = train.train_and_evaluate(config, workdir)
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["test_episodes"] == config.test_episodes
    assert summary["test_setting"] == "3-way 1-shot"
    assert "vinyals" in summary["data_source"]
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["test_accuracy"] == summary["test_accuracy"]
    if module is omniglot_protonet:  # a finished run resumes and reports again
        again = train.train_and_evaluate(config, workdir)
        assert again["resumed_from_step"] == config.num_steps
        assert again["test_accuracy"] == summary["test_accuracy"]


def test_configs_build_their_learners():
    config = omniglot_matching.get_config("smoke")
    config_lib.validate(config)
    learner = train.make_learner(config)
    assert isinstance(learner, matching.MatchingNet)
    assert (learner.hidden, learner.depth, learner.fce) == (8, 2, False)
    assert learner.similarity == config.similarity == "support_normalized"
    config.similarity = "l2"  # the field reaches the learner
    assert train.make_learner(config).similarity == "l2"
    config = omniglot_maml.get_config("paper_20w5s")
    learner = train.make_learner(config)
    assert (learner.n_way, learner.inner_lr, learner.train_steps) == (20, 0.1, 5)
    assert isinstance(
        train.make_learner(omniglot_protonet.get_config("smoke")), protonets.ProtoNet
    )


def test_variants_and_validation():
    config = omniglot_protonet.get_config("paper_20w5s")
    assert (config.test_way, config.test_shot, config.train_way) == (20, 5, 60)
    assert config.test_episodes == 1000
    with pytest.raises(ConfigError, match="variant"):
        omniglot_protonet.get_config("paper_7w1s")
    demo = omniglot_protonet.get_config("demo")
    assert (demo.test_way, demo.test_shot, demo.test_episodes) == (5, 1, 600)
    assert demo.num_steps == omniglot_protonet.DEMO_STEPS and demo.eval_every == 0
    with pytest.raises(ConfigError, match="demo"):
        omniglot_maml.get_config("demo")
    config.train_query = 16
    with pytest.raises(ConfigError, match="train_query"):
        train.validate_config(config)
    config.train_query = 5
    config.episode_loop = "fori"
    with pytest.raises(ConfigError, match="config.episode_loop"):
        train.validate_config(config)


def test_sinusoid_smoke_end_to_end(tmp_path):
    config = sinusoid_maml.get_config("smoke")
    config.num_devices = 1
    config_lib.validate(config)
    summary = train_sinusoid.train_and_evaluate(config, str(tmp_path))
    for phase in ("maml", "pretrained"):
        assert summary[f"{phase}_mse_0_steps"] > 0
        assert np.isfinite(summary[f"{phase}_mse_1_steps"])
