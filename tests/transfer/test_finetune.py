"""Retrain-all / retrain-top / scratch: shapes, compute counts, members, freezing."""

import functools
import os

import chex
import jax
import numpy as np
import pytest

from shared import workdir as workdir_lib
from shared.errors import ConfigError
from transfer import finetune, train_finetune
from transfer.configs import finetune as finetune_config

TINY = finetune.NetSpec(inputs=6, hidden=(4, 3), top=2, classes=5)


def test_shapes_parameter_and_flop_counts():
    params = jax.eval_shape(
        functools.partial(finetune.init_params, spec=TINY), jax.random.key(0)
    )
    chex.assert_shape(params["body"][0]["w"], (6, 4))
    chex.assert_shape(params["body"][1]["w"], (4, 3))
    chex.assert_shape(params["top"]["w"], (3, 2))
    chex.assert_shape(params["head"]["b"], (5,))
    logits = jax.eval_shape(finetune.apply, params, np.zeros((7, 6), np.float32))
    chex.assert_shape(logits, (7, 5))
    # weights + biases: 7*4 + 5*3 + 4*2 + 3*5; the top two layers: 4*2 + 3*5
    assert finetune.trainable_params(TINY, "retrain_all") == 28 + 15 + 8 + 15
    assert finetune.trainable_params(TINY, "retrain_top") == 8 + 15
    macs = [24, 12, 6, 10]
    # forward 2*all; weight grads 2*trained; input grads above the lowest trained
    assert finetune.train_flops_per_example(TINY, "scratch") == 2 * 52 + 2 * 52 + 2 * 28
    assert finetune.train_flops_per_example(TINY, "retrain_top") == (
        2 * sum(macs) + 2 * (6 + 10) + 2 * 10
    )


def test_members_grid_subsets_and_paired_minibatches():
    members = finetune.make_members((0.1, 1.0), 2, 50, seed=3)
    assert len(members.method) == 3 * 2 * 2
    np.testing.assert_array_equal(members.subset_size, [5, 5, 50, 50] * 3)
    np.testing.assert_array_equal(members.train_body, [1] * 4 + [0] * 4 + [1] * 4)
    for k in range(12):
        assert sorted(members.order[k]) == list(range(50))
    batches = finetune.MemberBatches(members, 16, seed=0)
    first, second = next(batches)["index"], next(batches)["index"]
    chex.assert_shape(first, (12, 16))
    for k in range(12):  # only the member's own subset
        allowed = set(members.order[k, : members.subset_size[k]])
        assert set(first[k]) <= allowed and set(second[k]) <= allowed
    same = (members.fraction == 0.1) & (members.seed == 1)  # one cell, 3 methods
    assert (first[same] == first[same][0]).all()
    again = finetune.MemberBatches(members, 16, seed=0)
    again.set_state({"position": 1})
    np.testing.assert_array_equal(next(again)["index"], second)


@functools.cache
def smoke():
    """The smoke config and a random 5-class task of its shapes (75 / 25)."""
    config = finetune_config.get_config("smoke")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 784), dtype=np.uint8)
    labels = images[:, :5].argmax(-1).astype(np.int32)
    task = (images[:75], labels[:75], images[75:], labels[75:])
    spec = finetune.NetSpec(hidden=tuple(config.hidden), top=config.top, classes=5)
    members = finetune.make_members(config.fractions, config.num_seeds, 75, 0)
    return config, task, spec, members


def pretrained_params(seed):
    _, _, spec, _ = smoke()
    shapes = jax.eval_shape(
        functools.partial(finetune.init_params, spec=spec), jax.random.key(0)
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.uniform(-0.3, 0.3, s.shape).astype(np.float32), shapes
    )


def train_members(workdir, pretrained):
    """The smoke target phase (same compiled step as the end-to-end run)."""
    config, task, spec, members = smoke()
    start = jax.device_get(
        train_finetune._init_members(
            jax.random.key(1), pretrained, members.method, members.seed, spec
        )
    )
    end, _ = train_finetune._phase(
        config, str(workdir), "t", start, members, task, 4, config.batch_size
    )
    return start, end


def member_tree(params, k):
    return jax.tree.map(lambda a: np.asarray(a[k]), params)


def test_retrain_top_freezes_the_body_and_scratch_ignores_pretraining(tmp_path):
    _, _, _, members = smoke()
    pre_a, pre_b = pretrained_params(1), pretrained_params(2)
    start_a, end_a = train_members(tmp_path / "a", pre_a)
    start_b, end_b = train_members(tmp_path / "b", pre_b)
    _, end_a_again = train_members(tmp_path / "c", pre_a)
    scratch = members.method == finetune.METHODS.index("scratch")
    top_only = members.method == finetune.METHODS.index("retrain_top")
    for k in range(len(members.method)):
        a0, a1, b1 = (member_tree(t, k) for t in (start_a, end_a, end_b))
        if scratch[k]:  # never reads the pretrained weights
            chex.assert_trees_all_equal(a1, b1)
        else:  # starts from them, with a new classifier
            chex.assert_trees_all_equal(a0["body"], pre_a["body"])
            chex.assert_trees_all_equal(a0["top"], pre_a["top"])
        if top_only[k]:  # frozen body: bit-identical; top and head learn
            chex.assert_trees_all_equal(a1["body"], pre_a["body"])
            assert not np.array_equal(a1["top"]["w"], a0["top"]["w"])
            assert not np.array_equal(a1["head"]["w"], a0["head"]["w"])
        else:
            assert not np.array_equal(a1["body"][0]["w"], a0["body"][0]["w"])
    chex.assert_trees_all_equal(end_a, end_a_again)  # deterministic


def test_smoke_run_end_to_end_and_resume(tmp_path):
    config = finetune_config.get_config("smoke")
    summary = train_finetune.train_and_evaluate(config, str(tmp_path))
    saved = workdir_lib.read_json(str(tmp_path), "summary.json")
    for target in train_finetune.TARGETS:
        for method in finetune.METHODS:
            value = saved[f"{target}/{method}/accuracy_100pct"]
            assert 0.0 <= value <= 1.0
    assert "omniglot" in saved["data_source"] and "mnist" in saved["data_source"]
    for name in ("finetune_fractions.png", "finetune_compute.png"):
        assert os.path.getsize(tmp_path / name) > 0
    again = train_finetune.train_and_evaluate(config, str(tmp_path))  # resumes
    assert (
        again["similar/scratch/accuracy_100pct"]
        == (summary["similar/scratch/accuracy_100pct"])
    )
    with pytest.raises(ConfigError, match="fractions"):
        with config.unlocked():
            config.fractions = (0.0, 1.0)
        train_finetune.validate_config(config)
