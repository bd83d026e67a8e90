"""The LSTM optimizer of Andrychowicz et al. 2016 (arXiv:1606.04474, Figure 2).

    python -m scripts.train --config=metalearn/configs/learned_opt.py:quick \
        --workdir=workdirs/learned_opt_mnist
    python -m scripts.train --config=metalearn/configs/learned_opt.py:quick_quadratic \
        --workdir=workdirs/learned_opt_quadratic

Variants `<budget>` (the MNIST MLP) or `<budget>_quadratic` (batches of random
10-d quadratics), budget `smoke` / `quick` / `paper`. As in the paper and its
code: 2 x 20 LSTM units, log/sign preprocessing p = 10, output scale 0.01,
unroll 20, optimizee horizon 100 steps (5 truncations per task), Adam meta
learning rate 1e-3, gradients of the optimizee treated as constants. Test:
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
    config.learning_rate = 1e-3
    config.clip_norm = 1.0
    # quick on 2 CPU cores: MNIST ~3-8 s per meta-step (15910 coordinates x
    # 20 unrolled LSTM steps), quadratics ~10x less
    quick = 150 if task == "mnist" else 500
    config.num_steps = {"smoke": 4, "quick": quick, "paper": 50000}[budget]
    config.baselines = ("sgd", "rmsprop", "adam")
    config.lr_grid = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
    config.test_tasks = 16 if budget != "paper" else 64
    config.test_steps = 200
    config.test_seed = 1234
    config.log_every = 50
    config.checkpoint_every = 250
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
