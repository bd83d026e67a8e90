"""Diehl & Cook (2015) unsupervised STDP network on MNIST.

    python -m scripts.train --config=snn/configs/stdp_mnist.py:quick \
        --workdir=workdirs/snn_stdp_mnist

Variants: `smoke` (8 neurons, 16 images of 100 ms, dt 1 ms: seconds), `quick` (100
neurons, 2,000 training images: minutes on CPU, far below the paper's budget),
`paper` (100 neurons, 1 epoch of 60,000; `--config.num_neurons=400
--config.num_epochs=3` for the 400-neuron row; paper: 82.9% / 87.0%).
Labels are assigned from training images only.
"""

import ml_collections

from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.area = "snn"
    config.trainer = "snn.stdp_train"
    config.variant = variant
    config.seed = 0
    config.num_devices = 0  # 0 = every device
    config.dataset = "mnist"
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.num_neurons = 100
    config.dt = 0.5  # ms
    config.presentation_ms = 350.0
    # the authors' Brian 1 `dtimer/dt = 100.0 : ms` (SI: 100 s per s), so the
    # timer re-enables firing 0.05 ms after a spike: only the 5 ms refractory
    config.timer_rate = 100.0
    config.tau_theta = 1e7  # ms, threshold decay while learning
    config.conductance_decay = "euler"  # Brian 1's integration; or "exact"
    config.input_delay_ms = 10.0  # the authors' 0-10 ms input delays; 0 = none
    # "triplet": the authors' script; "power_law": the paper's Eq. 3
    # (w += nu_post * (pre - 0.4) * (1 - w) ** 0.2 at post spikes only);
    # "pair": BindsNET's PostPre (no post2 factor). Both far worse at 2,000
    # images; power_law 73.2 / 77.6% at 6,000 (seeds 0 / 1; snn/README.md)
    config.stdp_rule = "triplet"
    config.num_epochs = 1
    config.train_examples = 0  # 0 = all 60,000
    config.label_examples = 10000  # first training images, for neuron labels
    config.test_examples = 0  # 0 = all 10,000
    config.images_per_step = 50  # images per fit step (shown one at a time)
    config.eval_batch_size = 500
    config.log_every = 10
    config.checkpoint_every = 20
    if variant == "smoke":
        config.num_devices = 1  # one device: a smaller compile in tests
        config.num_neurons = 8
        config.dt = 1.0
        config.presentation_ms = 100.0
        config.train_examples = 16
        config.label_examples = 40
        config.test_examples = 40
        config.images_per_step = 8
        config.eval_batch_size = 40
        config.log_every = 1
    elif variant == "quick":
        config.train_examples = 2000
        config.label_examples = 2000
        config.test_examples = 2000
    elif variant == "paper":
        # the paper's stated rule (Eq. 3): 82.92% after one 60,000-image epoch
        # (seed 0, labels from 10,000 training images, all 10,000 test images);
        # the authors' script's triplet rule stayed near 62-66% (snn/README.md)
        config.stdp_rule = "power_law"
    else:
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    return config
