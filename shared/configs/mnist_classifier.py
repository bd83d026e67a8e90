"""Reference classifier on MNIST: the spine's end-to-end consumer.

    python -m scripts.train --config=shared/configs/mnist_classifier.py:quick \
        --workdir=workdirs/mnist_classifier

Variants: `smoke` (a few steps on 512 examples, for tests), `quick` (2 epochs on
embedded MNIST, ~99% test accuracy in a few CPU minutes), `paper` (10 epochs).
"""

import ml_collections

from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.area = "shared"
    config.trainer = "shared.classifier"
    config.variant = variant
    config.seed = 0
    config.dataset = "mnist"
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.num_classes = 10
    config.width = 32
    config.hidden = 128
    config.learning_rate = 1e-3
    config.batch_size = 64
    config.eval_batch_size = 1000
    config.num_epochs = 2
    config.train_examples = 0  # 0 = all
    config.test_examples = 0  # 0 = all
    config.log_every = 100
    config.eval_every = 500
    config.checkpoint_every = 500
    if variant == "smoke":
        config.train_examples = 512
        config.test_examples = 500
        config.batch_size = 32
        config.num_epochs = 1
        config.log_every = 4
        config.eval_every = 8
        config.checkpoint_every = 8
        config.width = 8
        config.hidden = 16
    elif variant == "paper":
        config.num_epochs = 10
    elif variant != "quick":
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    return config
