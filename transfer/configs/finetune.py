r"""Pretrain on MNIST 0-4, then retrain all / retrain top / scratch on two targets.

    python -m scripts.train --config=transfer/configs/finetune.py:quick \
        --workdir=workdirs/finetune_quick

The seed's transfer-learning vs fine-tuning comparison (Yosinski et al. 2014,
arXiv:1411.1792; see `transfer.finetune`): similar target MNIST 5-9, dissimilar
target Omniglot characters, accuracy against target-data fraction and compute.
Variants:
  smoke   tiny MLP, a few steps, 5 classes everywhere (tests).
  quick   MLP 784-256-256-128, Adam 1e-3, pretrain 1500 steps of 64, targets
          600 steps of 64 for every (method, fraction in 1/5/20/100 %, seed x3),
          100 Omniglot characters. ~11 min on 2 loaded CPU cores (measured).
  paper   longer (pretrain 6000, targets 3000 steps), 5 seeds, all 964
          background Omniglot characters.
"""

import ml_collections

from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.area = "transfer"
    config.trainer = "transfer.train_finetune"
    config.variant = variant
    config.seed = 0
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.source_digits = (0, 1, 2, 3, 4)
    config.target_digits = (5, 6, 7, 8, 9)
    config.omniglot_characters = 100
    config.hidden = (256, 256)
    config.top = 128
    config.optimizer = "adam"
    config.learning_rate = 1e-3
    config.batch_size = 64
    config.pretrain_steps = 1500
    config.target_steps = 600
    config.fractions = (0.01, 0.05, 0.2, 1.0)
    config.num_seeds = 3
    config.train_examples = 0  # per MNIST task, 0 = all
    config.test_examples = 0
    config.log_every = 50
    config.eval_every = 100
    config.checkpoint_every = 500
    if variant == "smoke":
        # 5 Omniglot characters x 15 train / 5 test drawings = the MNIST sizes
        # below, so both targets share one compiled step.
        config.omniglot_characters = 5
        config.train_examples = 75
        config.test_examples = 25
        config.hidden = (16,)
        config.top = 8
        config.batch_size = 8
        config.pretrain_steps = 6
        config.target_steps = 4
        config.fractions = (0.2, 1.0)
        config.num_seeds = 2
        config.log_every = 2
        config.eval_every = 2
        config.checkpoint_every = 4
    elif variant == "paper":
        config.omniglot_characters = 964
        config.pretrain_steps = 6000
        config.target_steps = 3000
        config.num_seeds = 5
        config.eval_every = 250
    elif variant != "quick":
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    return config
