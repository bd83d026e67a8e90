"""ENAS micro (cell) search -> derive -> retrain (Pham et al. 2018, Table 1 ENAS rows).

    python -m scripts.train --config=nas/configs/micro_search.py:quick \
        --workdir=workdirs/nas_micro_quick
    python -m scripts.train --config=nas/configs/micro_search.py:paper \
        --workdir=workdirs/nas_micro_paper --data_dir=TFDS_DIR

Variants:
  smoke  embedded MNIST average-pooled to 14x14x1, B=1 node per cell, 1 layer
         (3 cells: R R N), width 4, 8 search steps, 8 final steps,
         controller LSTM of 8 units,
         random-search control; for tests.
  quick  minutes on 2 CPU cores: embedded MNIST average-pooled to 14x14x1
         (1000 train / 500 held-out validation from the end of train / 10000
         test), B=5 nodes (the paper's cell), 3 layers (N R N R N), width 8;
         2 search epochs, derive best of 8, 2-epoch final, Kendall tau over 3
         candidates (1-epoch retraining each), random search at the same budget;
         the final networks run on the supernet with the arch as data (one
         compile for the 2 finals and 3 Kendall retrains, not 5 standalone).
  paper  the official micro search (scripts/cifar10_micro_search.sh: 6 layers,
         20 channels, B=5, 150 epochs, batch 160, l2 1e-4, controller lr 0.0035,
         tanh 1.10, op tanh reduce 2.5, 30 controller steps x 10 samples per
         epoch) on `cifar10`; the final network (cifar10_micro_final.sh) has 15
         layers at 36 channels, batch 144, 630 epochs, l2 2e-4, lr 0.05 ->
         0.0001, plus cutout 16. On this machine only `cifar10_jpeg` exists
         (--config.dataset=cifar10_jpeg; JPEG re-encoded, not bit-exact).
         Not implemented here (stated in reports): auxiliary head, drop-path
         (keep 0.6) and dropout (keep 0.9 / 0.8) before the classifier.
"""

import ml_collections

from nas.configs import macro_search
from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    if variant not in ("smoke", "quick", "paper"):
        raise ConfigError(
            f"unknown config variant {variant!r}; use :smoke, :quick or :paper"
        )
    # Data, child optimizer, diagnostics, derive and Kendall as macro's variant.
    config = macro_search.get_config(variant)
    config.variant = variant
    config.space = "micro"
    config.num_cells = (
        5  # B computed nodes per cell (the paper's "B=7" counts 2 inputs)
    )
    config.num_layers = 3  # official num_layers: num_layers + 2 cells, 2 reductions
    config.final_num_layers = 3
    # Controller: the official micro-search values.
    config.tanh_constant = 1.10
    config.op_tanh_reduce = 2.5
    config.controller_lr = 0.0035
    config.num_aggregate = 4
    config.skip_weight = 0.0  # no skip penalty in the micro space
    config.l2 = 0.0001
    if variant == "smoke":  # macro's smoke sizes, the smallest micro network
        config.num_cells = 1
        config.num_layers = 1
        config.final_num_layers = 1
        config.width = 4
        config.final_width = 4
    elif variant == "quick":
        config.width = 8
        config.final_width = 8
        config.train_examples = 1000  # 3000: search alone took 6.4 min on 2 cores
        config.valid_examples = 500
        config.eval_examples = 500
        config.search_epochs = 2
        config.log_every = 10
        config.final_network = "supernet"  # one compile for every retrained arch
    else:  # paper: macro's 45000 / 5000 CIFAR split and diagnostics
        config.num_layers = 6
        config.width = 20
        config.batch_size = 160
        config.search_epochs = 150
        config.num_aggregate = 10
        config.controller_every = 9  # 281 child steps / 30 controller steps
        config.valid_batch_size = 160
        config.final_width = 36
        config.final_num_layers = 15
        config.final_epochs = 630
        config.final_lr_min = 0.0001
        config.final_network = "standalone"
    return config
