"""The smoke configs end to end through `train_and_evaluate`, and resume."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalearn import episodes as episodes_lib
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


def test_cpu_dots_option_keeps_ynnpack_off_the_step_matmuls():
    """`cpu_dots=eigen` compiles the step with no YNNPACK dot (reductions may
    stay), `ynn` with XLA's default (YNNPACK dots), and both take the same
    step; a bad value is a ConfigError naming the flag."""
    config = omniglot_protonet.get_config("smoke")
    config.num_devices = 1
    learner = train.make_learner(config)
    optimizer = train.make_optimizer(config)
    params, stats = jax.jit(learner.init)(jax.random.key(0))
    state = train.TrainState(
        params, stats, optimizer.init(params), jnp.zeros((), jnp.int32)
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 20, 28, 28, 1), dtype=np.uint8)
    data = episodes_lib.make_class_images(images, rotations=False)
    step = train.make_step(learner, optimizer, data.num_base, data.rotations, config)
    batch = {"images": data.images}
    results, dots = {}, {}
    for name in ("eigen", "ynn"):
        config.cpu_dots = name
        compiled = (
            jax.jit(step, compiler_options=train.compiler_options(config))
            .lower(state, batch, jax.random.key(1))
            .compile()
        )
        lines = compiled.as_text().splitlines()
        dots[name] = sum("__ynn_fusion" in x and "dot_general" in x for x in lines)
        results[name] = compiled(state, batch, jax.random.key(1))
    assert dots["eigen"] == 0 and dots["ynn"] > 0
    # the same step up to float32 summation order (gradient entries near zero
    # differ by ~1e-5 of the largest)
    chex.assert_trees_all_close(results["eigen"], results["ynn"], rtol=1e-4, atol=1e-5)
    config.cpu_dots = "mkl"
    with pytest.raises(ConfigError, match="config.cpu_dots"):
        train.validate_config(config)


def test_sinusoid_smoke_end_to_end(tmp_path):
    config = sinusoid_maml.get_config("smoke")
    config.num_devices = 1
    config_lib.validate(config)
    summary = train_sinusoid.train_and_evaluate(config, str(tmp_path))
    for phase in ("maml", "pretrained"):
        assert summary[f"{phase}_mse_0_steps"] > 0
        assert np.isfinite(summary[f"{phase}_mse_1_steps"])
