"""Tasks, the transfer protocol end to end, statistics and config checks."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from shared import workdir as workdir_lib
from shared.errors import ConfigError
from transfer import protocol, stats, tasks, train
from transfer.configs import binary_mnist


def test_binary_task_labels_and_pairs():
    task = tasks.make_binary_task((3, 7), train_examples=100, test_examples=50)
    assert task.train_images.shape == (100, 784) and task.train_images.dtype == np.uint8
    assert set(np.unique(task.train_labels)) <= {0, 1}
    pairs = tasks.sample_task_pairs(0, 30)
    assert pairs == tasks.sample_task_pairs(0, 30)
    assert pairs[:5] == tasks.sample_task_pairs(0, 5)
    for task_a, task_b in pairs:
        assert task_a[0] != task_a[1] and task_b[0] != task_b[1]
        assert set(task_a) != set(task_b)


def test_binary_task_matches_mnist_digits():
    from shared import data as data_lib

    mnist = data_lib.load("mnist", "train")
    task = tasks.make_binary_task((3, 7), train_examples=60)
    keep = np.flatnonzero((mnist.labels == 3) | (mnist.labels == 7))[:60]
    np.testing.assert_array_equal(task.train_images, mnist.images[keep].reshape(60, -1))
    np.testing.assert_array_equal(task.train_labels, mnist.labels[keep] == 7)


def test_round_batches_are_deterministic_resumable_and_from_train():
    images = np.arange(50 * 784, dtype=np.int64).reshape(50, 784) % 251
    images = images.astype(np.uint8)
    labels = np.arange(50, dtype=np.int32) % 2
    batches = tasks.RoundBatches(images, labels, 4, 3, 5, seed=1, salt_pepper=0.0)
    first, second = next(batches), next(batches)
    assert first["image"].shape == (4, 3, 5, 784) and first["label"].shape == (4, 3, 5)
    again = tasks.RoundBatches(images, labels, 4, 3, 5, seed=1)
    again.set_state({"position": 1})
    np.testing.assert_array_equal(next(again)["image"], second["image"])
    rows = {bytes(row) for row in images}
    assert all(bytes(row) in rows for row in first["image"].reshape(-1, 784))


def test_noise_once_is_fixed_per_digit_and_leaves_test_data_clean():
    """`salt_pepper_once`: a digit shared by tasks A and B gets the same noisy
    images; about p of the pixels are 0 or 255; labels and test data unchanged."""
    task_a = tasks.make_binary_task((3, 7), train_examples=200, test_examples=20)
    task_b = tasks.make_binary_task((7, 1), train_examples=200, test_examples=20)
    noisy_a = tasks.noise_once(task_a, 0.5, (0, 4))
    noisy_b = tasks.noise_once(task_b, 0.5, (0, 4))
    np.testing.assert_array_equal(noisy_a.train_labels, task_a.train_labels)
    np.testing.assert_array_equal(noisy_a.test_images, task_a.test_images)
    sevens_a = noisy_a.train_images[noisy_a.train_labels == 1]
    sevens_b = noisy_b.train_images[noisy_b.train_labels == 0]
    n = min(len(sevens_a), len(sevens_b))  # the same first sevens of MNIST
    np.testing.assert_array_equal(sevens_a[:n], sevens_b[:n])
    changed = noisy_a.train_images != task_a.train_images
    assert np.all(np.isin(noisy_a.train_images[changed], (0, 255)))
    # a hit pixel keeps its value when it already equals the drawn 0/255
    clean = task_a.train_images
    want = 0.5 * (0.5 * (clean != 0).mean() + 0.5 * (clean != 255).mean())
    assert abs(changed.mean() - want) < 0.01, (changed.mean(), want)
    again = tasks.noise_once(task_a, 0.5, (0, 4))
    np.testing.assert_array_equal(again.train_images, noisy_a.train_images)
    other = tasks.noise_once(task_a, 0.5, (1, 4))
    assert not np.array_equal(other.train_images, noisy_a.train_images)


def test_speedup_and_statistics_arithmetic():
    np.testing.assert_allclose(stats.speedup([200, 100], [100, 125]), [2.0, 0.8])
    # All 5 differences positive: 2 of the 32 sign patterns are as extreme.
    assert stats.paired_permutation_test([5, 6, 7, 8, 9], [1, 1, 1, 1, 1]) == 2 / 32
    assert stats.paired_permutation_test([1, 2, 3], [1, 2, 3]) == 1.0
    low, high = stats.bootstrap_ci([1.0, 1.0, 1.0])
    assert low == high == 1.0
    summary = stats.summarize([200, 100], [100, 125], "pathnet")
    assert summary["pathnet/speedup_mean"] == pytest.approx(1.4)
    assert summary["pathnet/speedup_of_mean_generations"] == pytest.approx(300 / 225)


def test_log_speedup_statistics_and_frozen_reuse():
    scratch, method = [100, 40, 90], [50, 80, 90]  # ratios 2, 0.5, 1
    summary = stats.summarize(scratch, method, "m")
    assert summary["m/speedup_mean"] == pytest.approx(3.5 / 3)
    assert summary["m/speedup_geomean"] == pytest.approx(1.0)  # 2 * 0.5 * 1
    # log differences (log 2, -log 2, 0): 4 of the 8 sign patterns are as extreme
    assert summary["m/p_value_log"] == pytest.approx(1.0)
    skewed = stats.summarize([4, 4, 4, 4, 4], [1, 8, 8, 8, 8], "s")
    # one ratio of 4 makes the arithmetic mean > 1 though 4 of 5 pairs are slower
    assert skewed["s/speedup_mean"] > 1 > skewed["s/speedup_geomean"]
    result = {
        "frozen": [[True, False, False], [False, False, False]],
        "pathnet": {"best_path": [[0, 0], [1, 2]]},
    }
    reuse = stats.frozen_reuse([result])
    assert reuse["pathnet/frozen_share_of_path"] == pytest.approx(1 / 3)
    assert reuse["pathnet/frozen_share_of_bank"] == pytest.approx(1 / 6)


def smoke_config(**overrides):
    config = binary_mnist.get_config("smoke")
    with config.unlocked():
        config.update(overrides)
    return config


def test_fitness_never_touches_test_data(tmp_path):
    """The GA on a task with garbage test data ends in the same state."""
    config = smoke_config(max_generations=4)
    task = tasks.make_binary_task((1, 2), train_examples=200, test_examples=40)
    garbage = dataclasses.replace(task, test_labels=1 - task.test_labels)
    jitted = protocol.programs(config)
    nothing = np.zeros((config.num_layers, config.num_modules), bool)
    state = jitted.init_state(
        jax.random.key(1), jitted.init_params(jax.random.key(0)), nothing
    )
    key = jax.random.key(2)
    ends = []
    for name, variant in (("clean", task), ("garbage", garbage)):
        final, result = protocol.run_ga(
            config, variant, state, str(tmp_path / name), key, 0
        )
        ends.append((final, result))
    (a, result_a), (b, result_b) = ends
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert result_a["generations"] == result_b["generations"]
    # ... and the test data did reach the report (flipped labels flip accuracy).
    assert result_a["test_accuracy"] == pytest.approx(1 - result_b["test_accuracy"])


def test_smoke_run_end_to_end_and_resume(tmp_path):
    config = smoke_config(num_pairs=1)
    workdir = str(tmp_path)
    summary = train.train_and_evaluate(config, workdir)
    assert summary["num_pairs"] == 1
    assert "embedded:mnist" in summary["data_source"]
    saved = workdir_lib.read_json(workdir, "summary.json")
    result = workdir_lib.read_json(os.path.join(workdir, "pair_000"), "result.json")
    assert saved["scratch/generations_mean"] == result["scratch"]["generations"]
    frozen = np.array(result["frozen"])
    best = np.array(result["task_a_result"]["best_path"])
    assert frozen.shape == (3, 4) and frozen.sum() == len(
        {(layer, m) for layer in range(3) for m in best[layer]}
    )
    for method in protocol.METHODS:
        assert 0 < result[method]["generations"] <= config.max_generations
    again = train.train_and_evaluate(config, workdir)  # finished pairs are skipped
    assert again["pathnet/generations_mean"] == summary["pathnet/generations_mean"]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("population_size", 7, "population_size"),
        ("tournaments_per_round", 5, "tournaments_per_round"),
        ("max_generations", 9, "multiple"),
        ("schedule", "async", "schedule"),
        ("optimizer", "lbfgs", "optimizer"),
        ("salt_pepper_once", True, "salt_pepper"),
        ("tournament", "knockout", "tournament"),
        ("tournament", "winner_keeps", "schedule='serial'"),  # smoke: synchronous
        ("init", "xavier", "init"),
    ],
)
def test_bad_config_is_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        train.validate_config(smoke_config(**{field: value}))
    with pytest.raises(ConfigError, match="unknown config variant"):
        binary_mnist.get_config("huge")


@pytest.mark.parametrize("variant", ["smoke", "quick", "demo", "paper"])
def test_every_variant_validates(variant):
    from shared import config as config_lib
    from transfer.configs import finetune

    config_lib.validate(binary_mnist.get_config(variant))
    if variant != "demo":
        config_lib.validate(finetune.get_config(variant))
