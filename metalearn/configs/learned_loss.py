"""ML3, a learned loss for sine regression (Bechtle et al. 2021, arXiv:1906.05374).

    python -m scripts.train --config=metalearn/configs/learned_loss.py:quick \
        --workdir=workdirs/learned_loss
    python -m scripts.train --config=metalearn/configs/learned_loss.py:paper \
        --workdir=workdirs/ml3_paper_s0 [--config.seed=S] [--config.test_tasks=200]

Variants `smoke`, `quick` (our harder protocol) and `paper` (the authors'
protocol, facebookresearch/LearningToLearn `ml3/sine_regression_task.py` and
`ml3/experiments/run_sine_regression_exp.py`).

`quick`: tasks y = A sin(x - phase) as in MAML (A in [0.1, 5], phase in
[0, pi], x in [-5, 5]); K = 20 support points; a fresh 1-40-40-1 ReLU
regressor per task; `inner_steps` SGD steps at `inner_lr` on the learned loss
during meta-training (every inner step, learned or MSE, clipped to gradient
norm `inner_clip_norm`), scored on new query points; the loss network is
2 x 50 ReLU units with a softplus output on (prediction, target, residual),
added to the MSE, meta-trained with Adam 1e-3 on a clipped meta-gradient.
Test: fresh regressors trained `test_steps` steps; out-of-distribution tasks
have A in [5, 10] and phase in [pi, 2 pi].

`paper`: the loss network sees (prediction, target) only, has no biases,
Xavier init, and is the whole loss; meta-training uses ONE fixed task (A = 1,
phase pi, 100 points x in [-2, 2]), fresh Xavier-initialised 1-100-10-1
regressors, ONE inner SGD step at 0.001, meta-objective = the MSE on the same
100 points after that step, Adam 1e-3 for 500 steps, nothing clipped. Test:
10 tasks (A in [0.2, 5], phase in [-pi, pi], 100 points x in [-5, 5]), fresh
regressors with PyTorch's default init, 100 SGD steps at 0.001, scored on the
training points. Out of distribution here: A in [5, 10].
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
    # the loss network: "residual" (ours) or "paper" (see the docstring)
    config.loss_net = "residual"
    # score the meta-objective and the test on new "query" points (ours) or
    # on the training points themselves ("support", the ML3 code)
    config.score_on = "query"
    # False: new tasks every meta-step; True: the same meta_batch tasks
    # every meta-step (the ML3 code: one task)
    config.fixed_meta_tasks = False
    config.train_amplitude = (0.1, 5.0)  # = sinusoid.AMPLITUDE etc.
    config.train_phase = (0.0, math.pi)
    config.train_inputs = (-5.0, 5.0)
    config.test_amplitude = (0.1, 5.0)
    config.test_phase = (0.0, math.pi)
    config.test_inputs = (-5.0, 5.0)
    config.regressor_hidden = (40, 40)
    # "lecun", "xavier" (ML3 code, meta-training) or "torch" (its test)
    config.regressor_init = "lecun"
    config.test_regressor_init = "lecun"
    config.k_shot = 20
    config.n_query = 20
    config.test_query = 100
    config.loss_hidden = 50
    # "mse": learn a correction MSE + softplus(M_phi), M_phi's output bias
    # started at loss_out_bias (small at first); "none": a loss from scratch
    config.loss_base = "mse"
    config.loss_out_bias = -4.0
    config.inner_lr = 0.01
    # every inner SGD step (learned loss and MSE alike) clips its gradient to
    # this global norm (0: off). Unclipped, the MSE's first steps at 0.01
    # overshoot 10x on amplitude-5 tasks and a learned loss tipped 2 tasks in
    # 10,000 into overflow: NaN meta-loss (seed 1 at meta-step 734). The MSE
    # barely minds: tuned query MSE 3.97 / 3.52 at 30 / 100 steps with it,
    # 3.93 / 3.57 without (200 tuning tasks)
    config.inner_clip_norm = 10.0
    # meta-training horizon: 30 SGD steps (10 gave smaller gains at 100 test
    # steps); second order through all of them
    config.inner_steps = 30
    config.meta_batch = 32
    # Adam 1e-3 (the ML3 code's outer rate) with the meta-gradient clipped:
    # at 1e-2 unclipped the learned term died within 250 meta-steps (its
    # slope in the prediction fell from 0.02 to 3e-5, so it got no
    # meta-gradient and tied the MSE exactly) or blew up to NaN (other init)
    config.learning_rate = 1e-3
    config.clip_norm = 1.0
    config.num_steps = {"smoke": 4, "quick": 1000, "paper": 500}[variant]
    config.test_steps = 100
    config.test_tasks = 8 if variant == "smoke" else 200
    config.test_seed = 1234
    config.ood_amplitude = (5.0, 10.0)
    config.ood_phase = (math.pi, 2 * math.pi)
    # clipped, 0.03 no longer diverges; 0.05 is past the best rate
    config.lr_grid = (0.001, 0.003, 0.01, 0.02, 0.03, 0.05)
    config.log_every = 2 if variant == "smoke" else 250
    config.checkpoint_every = 4 if variant == "smoke" else 1000
    if variant == "paper":
        config.loss_net = "paper"
        config.loss_base = "none"
        config.loss_out_bias = 0.0
        config.score_on = "support"
        config.fixed_meta_tasks = True
        config.meta_batch = 1
        config.k_shot = 100
        config.n_query = 0
        config.test_query = 0
        config.train_amplitude = (1.0, 1.0)
        config.train_phase = (math.pi, math.pi)
        config.train_inputs = (-2.0, 2.0)
        config.test_amplitude = (0.2, 5.0)
        config.test_phase = (-math.pi, math.pi)
        config.ood_phase = (-math.pi, math.pi)
        config.regressor_hidden = (100, 10)
        config.regressor_init = "xavier"
        config.test_regressor_init = "torch"
        config.inner_steps = 1
        config.inner_lr = 0.001
        config.inner_clip_norm = 0.0
        config.clip_norm = 0.0
        config.test_tasks = 10
        config.lr_grid = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
        config.log_every = 50
        config.checkpoint_every = 500
    if variant == "smoke":
        config.loss_hidden = 8
        config.inner_steps = 1
        config.meta_batch = 2
        config.test_steps = 3
        config.test_query = 10
        config.lr_grid = (0.01, 0.1)
    return config
