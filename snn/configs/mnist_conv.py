"""Spiking CNN 12C5-MP2-LIF-64C5-MP2-LIF-FC10-LIF on MNIST, rate-coded input.

    python -m scripts.train --config=snn/configs/mnist_conv.py:quick \
        --workdir=workdirs/snn_mnist_conv

Target (issue 3): >= 99.2% (STBP, Wu et al. 2018, arXiv:1706.02609, reports
99.42% for its CNN). Convolutions run on all T frames at once (`snn.network`).

Variants: `smoke` (channels 4/8, T=5, seconds), `quick` (T=10, 1 epoch: minutes
on a 2-core CPU, not the target), `paper` (T=25, 15 epochs, Adam 1e-3
cosine-decayed to 0; GPU). Measured: 99.28% test accuracy (seed 0, one H200,
60 s of training, run with --config.figures=False).
"""

import ml_collections

from shared.errors import ConfigError
from snn.configs import base


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = base.base_config()
    config.variant = variant
    config.model = "conv"
    config.batch_size = 64
    config.eval_batch_size = 500
    if variant == "smoke":
        config = base.smoke(config)
        config.channels = (4, 8)
    elif variant == "quick":
        config.time_steps = 10
        config.num_epochs = 1
    elif variant == "paper":
        config.num_epochs = 15
        config.cosine_decay = True
        config.eval_every = 1876
        config.figures = True
        config.chunk = 0  # a GPU runs one conv over all T*B frames fastest
    else:
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    return config
