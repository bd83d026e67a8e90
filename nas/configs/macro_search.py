"""ENAS macro search -> derive -> retrain (Pham et al. 2018, Table 2, macro rows).

    python -m scripts.train --config=nas/configs/macro_search.py:quick \
        --workdir=workdirs/nas_macro_quick
    python -m scripts.train --config=nas/configs/macro_search.py:paper \
        --workdir=workdirs/nas_macro_paper --data_dir=TFDS_DIR

Variants:
  smoke  embedded MNIST average-pooled 2x2 to 14x14x1, 3 layers, width 8, 8
         search steps, 8 final steps, controller LSTM of 8 units,
         random-search control; for tests.
  demo   <= 100 s on 2 idle CPU cores (scripts/reproduce --preset=demo): quick
         at 4 layers, 3000 train / 1000 validation, 2 search epochs, Kendall
         tau over 3 candidates; retrains run through the supernet with the
         arch as data (`final_network="supernet"`: one compile for all).
  quick  minutes on 2 CPU cores: embedded MNIST average-pooled to 14x14x1
         (6000 train / 2000 held-out validation from the end of train / 10000
         test), 6 layers, width 16; 3 search epochs, derive best of 8, 2-epoch
         final, Kendall tau over 3 candidates (1-epoch retraining each), and the
         random-search control at the same budget.
  paper  the official macro search (12 layers, 36 channels, 310 epochs, batch
         128, controller 50 steps x 20 samples per epoch) on `cifar10`; the
         final retrain uses the derived 12-layer arch at width 96 (the official
         final uses a 24-layer arch). On this machine only `cifar10_jpeg` exists
         (--config.dataset=cifar10_jpeg; JPEG re-encoded, not bit-exact).
"""

import ml_collections

from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.area = "nas"
    config.trainer = "nas.train"
    config.variant = variant
    config.seed = 0
    config.num_devices = 0  # 0 = every device; the batch axis is split over them
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.dataset = "mnist"
    config.train_examples = 6000  # first N of the train split
    config.valid_examples = 2000  # last N of the train split (held out)
    config.test_examples = 0  # 0 = all
    config.image_size = 14  # 0 = native; else average-pool to this side
    config.augment = False  # pad-4 random crop + flip (CIFAR)
    config.cutout = 0  # final phase only
    # Search space and supernet.
    config.space = "macro"
    config.num_layers = 6
    config.width = 16
    # Child (shared weights): official macro search values.
    config.batch_size = 64
    config.search_epochs = 3
    config.lr_max = 0.05
    config.lr_min = 0.0005
    config.lr_t0 = 10
    config.lr_t_mul = 2
    config.l2 = 0.00025
    config.grad_clip = 5.0
    # Controller and REINFORCE: official macro search values.
    config.lstm_size = 64
    config.tanh_constant = 1.5
    config.temperature = ml_collections.config_dict.placeholder(float)
    config.controller_lr = 0.001
    config.num_aggregate = 4
    config.controller_every = 8
    config.valid_batch_size = 64
    config.entropy_weight = 0.0001
    config.baseline_decay = 0.99
    config.skip_target = 0.4
    config.skip_weight = 0.8
    # Diagnostics and derive.
    config.op_share_samples = 100
    config.eval_archs = 4
    config.eval_examples = 1000
    config.eval_batch_size = 500
    config.derive_samples = 8
    config.random_search = True
    config.kendall_archs = 3  # >= 2: retrain that many candidates for Kendall tau
    config.kendall_epochs = 1
    # Final retraining of the derived architecture.
    config.final_width = 16
    config.final_network = "standalone"  # or "supernet": one compile, slower steps
    config.final_epochs = 2
    config.final_lr_max = 0.05
    config.final_lr_min = 0.0005
    config.final_eval_every = 0
    config.log_every = 50
    config.checkpoint_every = 200
    if variant == "smoke":
        config.train_examples = 256
        config.valid_examples = 256
        config.test_examples = 256
        config.num_layers = 3
        config.width = 8
        config.batch_size = 32
        config.search_epochs = 1
        config.lstm_size = 8  # compiles faster (test_controller checks 64)
        config.num_aggregate = 4
        config.controller_every = 4
        config.valid_batch_size = 8
        config.op_share_samples = 16
        config.eval_archs = 2
        config.eval_examples = 128
        config.eval_batch_size = 128
        config.derive_samples = 2
        config.final_width = 8
        config.final_network = "supernet"
        config.final_epochs = 1
        config.kendall_archs = 0
        config.log_every = 4
        config.checkpoint_every = 8
    elif variant == "demo":
        config.train_examples = 3000
        config.valid_examples = 1000
        config.num_layers = 4
        config.search_epochs = 2
        config.op_share_samples = 64
        config.eval_examples = 1000
        config.eval_batch_size = 1000
        config.derive_samples = 8
        config.kendall_archs = 3
        config.final_network = "supernet"
        config.final_epochs = 2
        config.log_every = 10
    elif variant == "paper":
        config.dataset = "cifar10"
        config.image_size = 0
        config.train_examples = 45000
        config.valid_examples = 5000
        config.augment = True
        config.cutout = 16
        config.num_layers = 12
        config.width = 36
        config.batch_size = 128
        config.search_epochs = 310
        config.num_aggregate = 20
        config.controller_every = 7  # 351 child steps / 50 controller steps
        config.valid_batch_size = 128
        config.eval_archs = 10
        config.eval_examples = 5000
        config.derive_samples = 100
        config.kendall_archs = 10
        config.kendall_epochs = 20
        config.final_width = 96
        config.final_epochs = 310
        config.l2 = 0.00025
        config.final_lr_min = 0.001
        config.final_eval_every = 3510
        config.log_every = 100
        config.checkpoint_every = 1000
    elif variant != "quick":
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :demo, :quick or :paper"
        )
    return config
