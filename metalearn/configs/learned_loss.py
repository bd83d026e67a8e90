"""ML3, a learned loss for sine regression (Bechtle et al. 2021, arXiv:1906.05374).

    python -m scripts.train --config=metalearn/configs/learned_loss.py:quick \
        --workdir=workdirs/learned_loss

Variants `smoke`, `quick`, `paper`. Tasks y = A sin(x - phase) as in MAML
(A in [0.1, 5], phase in [0, pi], x in [-5, 5]); K = 20 support points; a
fresh 1-40-40-1 ReLU regressor per task; `inner_steps` SGD steps at
`inner_lr` on the learned loss during meta-training; the loss network is
2 x 50 ReLU units with a softplus output, meta-trained with Adam 1e-2. Test:
fresh regressors trained `test_steps` steps; out-of-distribution tasks have
A in [5, 10] and phase in [pi, 2 pi].
"""

import math

import ml_collections

from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    if variant not in ("smoke", "quick", "paper"):
        raise ConfigError(
            f"unknown config variant {variant!r}; use smoke, quick or paper"
        )
    config = ml_collections.ConfigDict()
    config.area = "metalearn"
    config.trainer = "metalearn.train_learned_loss"
    config.variant = variant
    config.seed = 0
    config.data_dir = ml_collections.config_dict.placeholder(str)  # unused
    config.k_shot = 20
    config.n_query = 20
    config.test_query = 100
    config.loss_hidden = 50
    # "mse": learn a correction MSE + softplus(M_phi), M_phi's output bias
    # started at loss_out_bias (small at first); "none": a loss from scratch
    config.loss_base = "mse"
    config.loss_out_bias = -4.0
    config.inner_lr = 0.01
    config.inner_steps = 10
    config.meta_batch = 16
    config.learning_rate = 1e-2  # 1e-3 barely moved the meta-loss in 2000 steps
    config.num_steps = {"smoke": 4, "quick": 2000, "paper": 20000}[variant]
    config.test_steps = 100
    config.test_tasks = 8 if variant == "smoke" else 200
    config.test_seed = 1234
    config.ood_amplitude = (5.0, 10.0)
    config.ood_phase = (math.pi, 2 * math.pi)
    config.lr_grid = (0.003, 0.01, 0.03, 0.1)
    config.log_every = 2 if variant == "smoke" else 250
    config.checkpoint_every = 4 if variant == "smoke" else 1000
    if variant == "smoke":
        config.loss_hidden = 8
        config.inner_steps = 1
        config.meta_batch = 2
        config.test_steps = 3
        config.test_query = 10
        config.lr_grid = (0.01, 0.1)
    return config
