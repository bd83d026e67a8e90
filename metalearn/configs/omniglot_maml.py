"""MAML (and Meta-SGD, FOMAML) on Omniglot (Finn et al. 2017, Table 1).

    python -m scripts.train --config=metalearn/configs/omniglot_maml.py:quick \
        --workdir=workdirs/maml_quick

Variants (see `fewshot.py`): `smoke`, `quick`, `paper`, each optionally with
`_5w1s` (default), `_5w5s`, `_20w1s`, `_20w5s`. `paper` follows Finn et al.:
Conv-4 with per-task batch statistics, Adam 1e-3, meta-batch 32 (5-way) or 16
(20-way), inner SGD lr 0.4 with 1 step (5-way) or lr 0.1 with 5 steps (20-way),
3 inner steps at test (5-way; 5 for 20-way), 60000 meta-iterations.
Switches: `--config.first_order=True`, `--config.meta_sgd=True`,
`--config.remat=True` (recompute inner steps in the backward pass),
`--config.block_vjp=False` (autodiff's backward everywhere; `maml.MAML`).
"""

from metalearn.configs.fewshot import base_config


def get_config(variant: str = "quick"):
    config, budget = base_config("maml", variant)
    config.test_bn = "transductive"  # MAML always uses the task's batch stats
    config.train_way = config.test_way
    config.train_shot = config.test_shot
    config.train_query = 15 if config.test_way == 5 else 5
    config.inner_lr = 0.4
    config.inner_steps = 1
    config.test_inner_steps = 3
    config.first_order = False
    config.meta_sgd = False
    config.remat = False
    config.block_vjp = True  # hand-written block backward where differentiated once
    config.task_loop = "unroll"  # or "vmap" (grouped convs, slow on CPU)
    config.eval_chunk = 4  # unrolled tasks per evaluation call (compile time)
    config.lr_halve_every = 10**9  # constant meta learning rate
    if budget == "paper":
        config.meta_batch = 32
        config.num_steps = 60000
    if config.test_way == 20:
        config.meta_batch = 16 if budget == "paper" else config.meta_batch
        config.inner_lr = 0.1
        config.inner_steps = config.test_inner_steps = 5
    if budget == "smoke":
        config.train_way = config.test_way = 3
        config.train_query = config.test_query = 2
        config.meta_batch = 1  # tasks are unrolled: keep the smoke graph small
        config.inner_lr = 0.1  # 0.4 diverges on the smoke net (loss 8 at 3-way)
        config.test_inner_steps = 1
        config.eval_chunk = 1  # one unrolled task per evaluation call
        config.test_episodes = config.eval_episodes = 2
    elif budget == "quick":
        config.meta_batch = 4
        config.num_steps = 1000
        config.eval_every = 500
        config.checkpoint_every = 500
    return config
