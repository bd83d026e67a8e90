"""MAML on sinusoid regression (Finn et al. 2017, section 5.1, Figure 2).

    python -m scripts.train --config=metalearn/configs/sinusoid_maml.py:quick \
        --workdir=workdirs/sinusoid_maml

Tasks y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5];
K = 10 support points, MLP 1-40-40-1, inner SGD lr 0.01 with 1 step in
training, meta-batch 25, Adam 1e-3 (all as in the paper). The test reports the
query MSE on 100 points of 600 fixed tasks after 0, 1 and 10 inner steps, for
MAML and for a regressor pretrained on all tasks. Variants: `smoke`, `quick`
(10k meta-steps), `paper` (70k). `--config.meta_sgd=True` for Meta-SGD.
"""

import ml_collections

from metalearn.configs.fewshot import parse_variant
from shared.errors import ConfigError


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    budget, _, _ = parse_variant(variant)
    if budget == "demo":
        raise ConfigError(
            "no demo variant for sinusoid MAML; use smoke, quick or paper"
        )
    config = ml_collections.ConfigDict()
    config.area = "metalearn"
    config.trainer = "metalearn.train_sinusoid"
    config.variant = variant
    config.seed = 0
    config.data_dir = ml_collections.config_dict.placeholder(str)  # unused
    config.num_devices = ml_collections.config_dict.placeholder(int)
    config.k_shot = 10
    config.n_query = 10
    config.test_query = 100
    config.meta_batch = 25
    config.inner_lr = 0.01
    config.inner_steps = 1
    config.test_inner_steps = 10
    config.first_order = False
    config.meta_sgd = False
    config.remat = False
    config.learning_rate = 1e-3
    config.num_steps = {"smoke": 6, "quick": 10000, "paper": 70000}[budget]
    config.test_tasks = 8 if budget == "smoke" else 600
    if budget == "smoke":
        config.meta_batch = 4
        config.test_inner_steps = 1
    config.test_seed = 1234
    config.log_every = 3 if budget == "smoke" else 500
    config.checkpoint_every = 6 if budget == "smoke" else 5000
    return config
