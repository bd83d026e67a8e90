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
from snn import train
from snn.configs import ann_mnist, mnist_conv, mnist_mlp


def test_mnist_mlp_smoke_end_to_end(tmp_path):
    config = mnist_mlp.get_config("smoke")
    config.figures = True
    config_lib.validate(config)
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["ops/synops"] > 0 and summary["ops/ann_macs"] == 784 * 16 + 160
    assert read_json(str(tmp_path), "summary.json")["steps"] == 8
    for name in ("raster.png", "accuracy_vs_ops.png"):
        assert (tmp_path / name).exists(), name


def test_bad_fields_are_named():
    config = mnist_mlp.get_config("smoke")
    config.loss = "hinge"
    with pytest.raises(ConfigError, match="config.loss"):
        config_lib.validate(config)
    with pytest.raises(ConfigError, match="unknown config variant"):
        mnist_mlp.get_config("big")


@pytest.mark.parametrize("module", [mnist_mlp, ann_mnist, mnist_conv])
def test_smoke_step_is_deterministic_and_learns(module, key):
    """Each config's smoke step (fit itself is the spine's, tested there)."""
    config = module.get_config("smoke")
    config_lib.validate(config)
    net = train.make_network(config)
    params = jax.jit(net.init)(key)
    optimizer = optax.adam(1e-2)
    step = jax.jit(train.make_step(config, net, optimizer))
    state = train.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
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
