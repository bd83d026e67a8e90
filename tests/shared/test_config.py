"""shared.config: generic field checks and trainer lookup."""

import ml_collections
import pytest

from shared import config as config_lib
from shared.configs import mnist_classifier
from shared.errors import ConfigError


def test_reference_configs_validate():
    for variant in ("smoke", "quick", "paper"):
        config_lib.validate(mnist_classifier.get_config(variant))


def test_num_devices_zero_means_all():
    config = mnist_classifier.get_config("smoke")
    config.num_devices = 0
    config_lib.validate(config)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("batch_size", 0, "batch_size=0 must be >= 1"),
        ("learning_rate", -0.1, "learning_rate=-0.1 must be a finite number > 0"),
        ("learning_rate", float("nan"), "learning_rate=nan"),
        ("num_epochs", 0, "num_epochs=0 must be >= 1"),
        ("log_every", -1, "log_every=-1 must be >= 0"),
        ("seed", -3, "seed=-3 must be an int >= 0"),
        ("num_devices", -1, "num_devices=-1 must be >= 0"),
    ],
)
def test_impossible_values_name_the_field(field, value, message):
    config = mnist_classifier.get_config("smoke")
    config[field] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_lib.validate(config)


def test_nested_fields_are_checked():
    config = mnist_classifier.get_config("smoke")
    config.inner = ml_collections.ConfigDict({"meta_batch_size": 0})
    with pytest.raises(ConfigError, match="inner.meta_batch_size"):
        config_lib.validate(config)


def test_unknown_area():
    config = ml_collections.ConfigDict({"area": "alchemy", "seed": 0})
    with pytest.raises(ConfigError, match="area='alchemy' is unknown"):
        config_lib.validate(config)


def test_unknown_variant():
    with pytest.raises(ConfigError, match="unknown config variant 'fast'"):
        mnist_classifier.get_config("fast")
