"""Prototypical Networks on Omniglot (Snell et al. 2017, Table 1).

    python -m scripts.train --config=metalearn/configs/omniglot_protonet.py:quick \
        --workdir=workdirs/protonet_quick

Variants (see `fewshot.py`): `smoke`, `quick`, `paper`, each optionally with a
test setting `_5w1s` (default), `_5w5s`, `_20w1s`, `_20w5s`, e.g.
`omniglot_protonet.py:paper_20w1s`. `paper` follows Snell et al.: train 60-way
with the test shot and 5 queries per class, Adam 1e-3 halved every 2000
episodes, one episode per step; test on 1000 episodes with 15 queries.
`demo`: the `quick` recipe cut to DEMO_STEPS episodes, tested on 600 episodes
(headline: `test_accuracy`, `test_ci95` in summary.json).
"""

from metalearn.configs.fewshot import base_config

DEMO_STEPS = 250


def get_config(variant: str = "quick"):
    config, budget = base_config("protonet", variant)
    if budget in ("quick", "paper"):
        config.train_way = 60
    if budget == "demo":  # <= 100 s on 2 idle cores: scripts/reproduce --preset=demo
        config.train_way = 20
        config.num_steps = DEMO_STEPS
        config.eval_every = 0  # only the final test (600 fixed episodes)
        config.checkpoint_every = 0
        config.log_every = 50
    if budget == "quick":  # 95.1% 5w1s in 12.5 CPU-minutes (README)
        config.train_way = 20
        config.num_steps = 1200
        config.eval_every = 400
        config.checkpoint_every = 400
    return config
