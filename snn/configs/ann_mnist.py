"""The ANN twin of the spiking MLP/CNN (same layers, ReLU, no time), for the
operations comparison in `snn.ops` (dense MACs vs synaptic operations).

    python -m scripts.train --config=snn/configs/ann_mnist.py:quick \
        --workdir=workdirs/snn_ann_mnist

Variants: `smoke` (784-16-10, seconds), `quick` (784-256-10, 12 epochs,
cosine Adam 1e-3: the twin of mnist_mlp:quick), `paper` (784-800-10, 30 epochs,
the twin of mnist_mlp:paper). `--config.model=conv` gives the twin of mnist_conv.
"""

import ml_collections

from shared.errors import ConfigError
from snn.configs import base


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = base.base_config()
    config.variant = variant
    config.spiking = False
    if variant == "smoke":
        config = base.smoke(config)
        config.hidden = (16,)
    elif variant == "quick":
        config.hidden = (256,)
        config.num_epochs = 12
        config.cosine_decay = True
    elif variant == "paper":
        config.hidden = (800,)
        config.num_epochs = 30
    else:
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    return config
