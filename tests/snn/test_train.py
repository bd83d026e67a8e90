"""mnist_mlp smoke end to end, every config's smoke step, config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shared import config as config_lib
from shared.errors import ConfigError
from shared.workdir import read_json
from snn import supervised, train
from snn.configs import ann_mnist, mnist_conv, mnist_mlp


def test_mnist_mlp_smoke_end_to_end_with_ann_twin(tmp_path):
    """SNN, then its ANN twin in workdir/ann, then the figures and the sweep."""
    config = mnist_mlp.get_config("smoke")
    config.figures = True
    config.ann_twin = True
    config.sweep_thresholds = (1.0, 2.0)
    config.sweep_examples = config.test_examples
    config_lib.validate(config)
    summary = train.train_and_evaluate(config, str(tmp_path))
    # 8 steps learn: chance is 0.1 (+-0.02 on 200 images); seed 0 gives 0.225
    # (SNN) and 0.6 (ANN). The step's determinism is tested below (conv).
    assert 0.17 < summary["test_accuracy"] <= 1.0
    assert 0.4 < summary["ann_test_accuracy"] <= 1.0
    assert summary["ops/synops"] > 0 and summary["ops/ann_macs"] == 784 * 16 + 160
    assert read_json(str(tmp_path), "summary.json")["steps"] == 8
    assert (tmp_path / "ann" / "metrics.jsonl").exists()
    for name in ("raster.png", "accuracy_vs_ops.png"):
        assert (tmp_path / name).exists(), name
    rows = read_json(str(tmp_path), "sweep.json")
    assert [(r["time_steps"], r["threshold"]) for r in rows] == [(5, 1.0), (5, 2.0)]
    # the sweep point at the trained T and threshold is the final evaluation
    assert rows[0]["accuracy"] == summary["test_accuracy"]
    assert rows[1]["synops"] < rows[0]["synops"]  # a higher threshold, fewer spikes


def test_bad_fields_are_named():
    config = mnist_mlp.get_config("smoke")
    config.loss = "hinge"
    with pytest.raises(ConfigError, match="config.loss"):
        config_lib.validate(config)
    for module in (mnist_mlp, ann_mnist, mnist_conv):
        with pytest.raises(ConfigError, match="unknown config variant"):
            module.get_config("big")
    config = mnist_mlp.get_config("smoke")
    config.schedule = "time"
    with pytest.raises(ConfigError, match="config.schedule"):
        config_lib.validate(config)


def test_conv_smoke_step_is_deterministic_and_learns(key):
    """The MLP and its ANN twin train in the end-to-end test."""
    config = mnist_conv.get_config("smoke")
    config_lib.validate(config)
    net = supervised.make_network(config)
    params = jax.jit(net.init)(key)
    optimizer = optax.adam(1e-2)
    step = jax.jit(supervised.make_step(config, net, optimizer))
    state = supervised.TrainState(
        params, optimizer.init(params), jnp.zeros((), jnp.int32)
    )
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),
        "label": np.arange(8, dtype=np.int32) % 3,
    }
    a, metrics_a = step(state, batch, key)
    b, metrics_b = step(state, batch, key)
    chex.assert_trees_all_equal(a.params, b.params)
    assert float(metrics_a["train/loss"]) == float(metrics_b["train/loss"])
    for _ in range(10):
        a, metrics = step(a, batch, key)
    assert int(a.step) == 11
    assert float(metrics["train/loss"]) < float(metrics_a["train/loss"])
