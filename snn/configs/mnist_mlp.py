"""Spiking MLP on MNIST, rate-coded input, surrogate-gradient BPTT.

    python -m scripts.train --config=snn/configs/mnist_mlp.py:quick \
        --workdir=workdirs/snn_mnist_mlp

Variants:
  smoke  784-16-10, T=5, 256 training examples (seconds; tests).
  quick  784-256-10, T=10, 12 epochs, cosine-decayed Adam 1e-3 (the 2-core
         CPU target: >= 97.5% test accuracy within 10 minutes; measured 98.19%,
         seed 0, 6 min 20 s wall on 2 cores shared with other jobs).
  paper  784-800-10, T=25, 30 epochs: the MLP of STBP (Wu et al. 2018,
         arXiv:1706.02609, Table 2: 98.89%), LIF beta 0.9, subtract reset,
         fast-sigmoid slope 25, cross-entropy on output spike counts, Adam 1e-3.
"""

import ml_collections

from shared.errors import ConfigError
from snn.configs import base


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = base.base_config()
    config.variant = variant
    if variant == "smoke":
        config = base.smoke(config)
        config.hidden = (16,)
    elif variant == "quick":
        config.hidden = (256,)
        config.time_steps = 10
        config.num_epochs = 12
        config.cosine_decay = True
    elif variant == "paper":
        config.hidden = (800,)
        config.num_epochs = 30
        config.eval_every = 2000
        config.figures = True
    else:
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    return config
