"""The LSTM optimizer of Andrychowicz et al. 2016 (arXiv:1606.04474, Figure 2).

    python -m scripts.train --config=metalearn/configs/learned_opt.py:quick \
        --workdir=workdirs/learned_opt_mnist
    python -m scripts.train --config=metalearn/configs/learned_opt.py:quick_quadratic \
        --workdir=workdirs/learned_opt_quadratic

Variants `<budget>` (the MNIST MLP) or `<budget>_quadratic` (batches of random
10-d quadratics), budget `smoke` / `quick` / `paper`. As in the paper and its
code: 2 x 20 LSTM units, log/sign preprocessing p = 10 (the code: 5), output
scale 0.01, unroll 20, optimizee horizon 100 steps (5 truncations per task),
gradients of the optimizee treated as constants; Adam on phi at 1e-3 (`paper`,
quadratics) or, for MNIST `quick`'s 40x smaller budget, 1e-2 decayed. Test:
200 steps on held-out tasks (MNIST's test split), against SGD, RMSProp and
Adam at the best rate of `lr_grid` (tuned at 100 steps on training tasks).
"""

import ml_collections

from shared.errors import ConfigError

BUDGETS = ("smoke", "quick", "paper")


def get_config(variant: str = "quick") -> ml_collections.ConfigDict:
    budget, _, task = variant.partition("_")
    task = task or "mnist"
    if budget not in BUDGETS or task not in ("mnist", "quadratic"):
        raise ConfigError(
            f"unknown config variant {variant!r}; use smoke, quick or paper, "
            "optionally with _quadratic (e.g. :quick_quadratic)"
        )
    config = ml_collections.ConfigDict()
    config.area = "metalearn"
    config.trainer = "metalearn.train_learned_opt"
    config.variant = variant
    config.seed = 0
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.task = task
    config.dims = 10  # quadratic
    config.hidden = 20  # MNIST MLP hidden units
    config.task_batch = 128  # quadratics per task / MNIST minibatch
    config.eval_examples = 1000  # MNIST examples of full_loss
    config.lstm_hidden = 20
    config.unroll = 20
    config.horizon = 100
    config.drop_hessian = True
    # Adam on phi. The paper's code: 1e-3 for 10,000 optimizees (50,000
    # meta-steps). MNIST `quick` can afford ~2,000 meta-steps on 2 CPU cores
    # (~1.5 s each: 15910 coordinates x 20 unrolled LSTM steps), so it starts
    # at 1e-2 and decays (cosine) to a tenth over `lr_decay_horizon`: at 1e-3 it
    # was still far behind Adam after 150 meta-steps, at 1e-2 it halved the
    # gap in 125 (README). 0 = constant rate.
    config.learning_rate = 1e-2 if (task == "mnist" and budget != "paper") else 1e-3
    config.clip_norm = 1.0
    quick = 2000 if task == "mnist" else 500
    config.num_steps = {"smoke": 4, "quick": quick, "paper": 50000}[budget]
    config.lr_decay_horizon = config.num_steps if config.learning_rate > 1e-3 else 0
    config.baselines = ("sgd", "rmsprop", "adam")
    # half-decades, finer near the optima found before (Adam and RMSProp
    # 0.03, SGD 3.0 at the old grid's top edge)
    config.lr_grid = (
        1e-3,
        3e-3,
        1e-2,
        2e-2,
        3e-2,
        5e-2,
        0.1,
        0.3,
        1.0,
        2.0,
        3.0,
        5.0,
        10.0,
    )
    config.test_tasks = 16 if budget != "paper" else 64
    config.test_steps = 200
    config.test_seed = 1234
    config.log_every = 50
    config.checkpoint_every = 100
    if budget == "smoke":
        config.hidden = 4
        config.task_batch = 8
        config.eval_examples = 64
        config.lstm_hidden = 8
        config.unroll = 3
        config.horizon = 6
        config.lr_grid = (0.01, 0.1)
        config.baselines = ("adam",)  # each baseline is one more compile
        config.test_tasks = 3
        config.test_steps = 12
        config.log_every = config.checkpoint_every = 2
    return config
