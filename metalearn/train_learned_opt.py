"""Meta-trains the LSTM optimizer, then races it against tuned baselines.

    python -m scripts.train --config=metalearn/configs/learned_opt.py:quick \
        --workdir=workdirs/learned_opt

Phase 1 (`fit`, workdir `meta/`): each step is one truncation of `unroll`
optimizee steps; a new task (random quadratics, or a fresh MNIST-MLP
initialisation) starts every `horizon / unroll` steps, and in between the
optimizee's parameters and the LSTM memory are carried in the state. The
meta-optimizer is Adam on the mean optimizee loss of the truncation.
Phase 2: SGD, RMSProp and Adam, each at the best learning rate of a grid
(mean `full_loss` after `test_steps / 2` (= `horizon`) steps on `test_tasks`
tasks of the training data), and the learned optimizer, run `test_steps`
steps on `test_tasks` held-out tasks (new seeds; MNIST's test split).
Reported: `full_loss` after `horizon` and `test_steps` steps, mean and 95%
CI over tasks, and a figure of the mean minibatch loss curves (`loss_curves.png`).
"""

from __future__ import annotations

import functools
import os
import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from metalearn import evaluate, l2l_tasks, learned_opt
from shared import data as data_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.errors import ConfigError

TASKS = ("quadratic", "mnist")


@flax.struct.dataclass
class L2LState:
    phi: dict
    opt_state: optax.OptState
    theta: jax.Array  # (n,) the current optimizee
    memory: dict  # {"h", "c"}: the LSTM state of the current optimizee
    task: dict
    truncation: jax.Array  # index of the current truncation within the task
    step: jax.Array


def validate_config(config: ml_collections.ConfigDict) -> None:
    unknown = set(config.baselines) - set(l2l_tasks.BASELINES)
    if unknown:
        raise ConfigError(
            f"config.baselines has {sorted(unknown)}; use {tuple(l2l_tasks.BASELINES)}"
        )
    if config.task not in TASKS:
        raise ConfigError(f"config.task={config.task!r}; use one of {TASKS}.")
    if config.get("lr_decay_horizon", 0) < 0:
        raise ConfigError(
            f"config.lr_decay_horizon={config.lr_decay_horizon}; use 0 (constant "
            "rate) or a positive number of meta-steps."
        )
    if config.horizon % config.unroll:
        raise ConfigError(
            f"config.horizon={config.horizon} is not a multiple of config.unroll="
            f"{config.unroll}; make it one."
        )


def meta_rate(config):
    """Adam's rate on phi: constant, or cosine-decayed to a tenth over
    `config.lr_decay_horizon` (then constant), a function of the step count
    held in the optimizer state, so a resumed run continues the schedule."""
    if not config.get("lr_decay_horizon"):
        return config.learning_rate
    return optax.cosine_decay_schedule(
        config.learning_rate, config.lr_decay_horizon, alpha=0.1
    )


def make_family(config):
    if config.task == "quadratic":
        return l2l_tasks.Quadratic(config.dims, config.task_batch)
    return l2l_tasks.MnistMLP(config.hidden, config.task_batch, config.eval_examples)


def load_data(config, split: str) -> tuple[dict, str]:
    if config.task == "quadratic":
        return {}, "generated: random quadratics (Andrychowicz et al. 2016, 3.1)"
    dataset = data_lib.load("mnist", split, config.get("data_dir"))
    images = dataset.images.reshape(len(dataset), -1)
    data = {"images": jnp.asarray(images), "labels": jnp.asarray(dataset.labels)}
    return data, dataset.source


def make_step(family, optimizer, config):
    truncations = config.horizon // config.unroll

    def step(state: L2LState, batch, key):
        batch = {} if batch is None else batch
        key_task, key_steps = jax.random.split(key)
        task, theta = family.sample(key_task, batch)
        fresh = state.truncation == 0
        pick = functools.partial(jax.tree.map, lambda a, b: jnp.where(fresh, a, b))
        memory = learned_opt.init_state(theta.shape[0], config.lstm_hidden)
        task = pick(task, state.task)
        theta = jnp.where(fresh, theta, state.theta)
        memory = pick(memory._asdict(), state.memory)
        loss_fn = functools.partial(family.loss, task, batch)
        grad_fn = jax.value_and_grad(learned_opt.meta_loss, has_aux=True)
        (meta, (theta, memory)), grads = grad_fn(
            state.phi,
            loss_fn,
            theta,
            learned_opt.LSTMState(**memory),
            jax.random.split(key_steps, config.unroll),
            config.drop_hessian,
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.phi)
        new = state.replace(
            phi=optax.apply_updates(state.phi, updates),
            opt_state=opt_state,
            theta=theta,
            memory=memory._asdict(),
            task=task,
            truncation=(state.truncation + 1) % truncations,
            step=state.step + 1,
        )
        return new, {"train/meta_loss": meta}

    return step


def race(family, data, phi, lrs: dict, num_tasks: int, steps: int, seed: int):
    """Every optimizer on the same `num_tasks` tasks drawn from `seed`.

    Args:
      lrs: {name: [learning rates]} over `l2l_tasks.BASELINES` names, and
        "learned" (rate ignored) to run the LSTM optimizer with `phi`.

    Returns:
      {(name, lr): (full_loss after steps/2 and steps (tasks, 2),
                    mean minibatch loss curve f_t(theta_t) (steps,))}.
    """
    keys = jax.random.split(jax.random.key(seed), num_tasks)
    out = {}
    for name, rates in lrs.items():
        for lr in rates:
            scores, curves = _race_tasks(
                family, name, steps, jnp.float32(lr), keys, data, phi
            )
            out[(name, lr)] = (np.asarray(scores), np.asarray(curves).mean(0))
    return out


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _race_tasks(family, name, steps, lr, keys, data, phi):
    """vmap over task keys; the data and phi are arguments, not constants."""

    def one(key):
        key_task, key_steps = jax.random.split(key)
        task, theta = family.sample(key_task, data)
        loss_fn = functools.partial(family.loss, task, data)
        if name == "learned":
            memory = learned_opt.init_state(
                theta.shape[0], phi["lstm"][0]["b"].shape[0] // 4
            )
        else:
            baseline = l2l_tasks.make_baseline(name, lr)
            opt_state = baseline.init(theta)
        scores, curves = [], []
        for part in jnp.split(jax.random.split(key_steps, steps), 2):
            if name == "learned":
                theta, memory, losses = learned_opt.unroll(
                    phi, loss_fn, theta, memory, part
                )
            else:  # the optimizer state carries over, as the LSTM memory does
                theta, opt_state, losses = l2l_tasks.run_baseline(
                    baseline, opt_state, family, task, data, theta, part
                )
            curves.append(losses)
            scores.append(family.full_loss(task, data, theta))
        return jnp.stack(scores), jnp.concatenate(curves)

    return jax.vmap(one)(keys)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Meta-trains, tunes the baselines, races all; writes summary and figure."""
    validate_config(config)
    start = time.time()
    family = make_family(config)
    train_data, train_source = load_data(config, "train")
    test_data, test_source = load_data(config, "test")
    key_init, key_train = jax.random.split(jax.random.key(config.seed))
    phi = jax.jit(learned_opt.init, static_argnums=1)(key_init, config.lstm_hidden)
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.clip_norm), optax.adam(meta_rate(config))
    )
    task, theta = jax.jit(family.sample)(key_init, train_data)
    memory = learned_opt.init_state(theta.shape[0], config.lstm_hidden)._asdict()
    state = L2LState(
        phi,
        optimizer.init(phi),
        theta,
        memory,
        task,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
    )
    result = train_loop.fit(
        make_step(family, optimizer, config),
        state,
        workdir=os.path.join(workdir, "meta"),
        num_steps=config.num_steps,
        key=key_train,
        batches=_Same(train_data) if train_data else None,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(1),
    )
    # Tuning tasks come from the training data cut to the test data's size, so
    # tuning and test share each optimizer's compiled program.
    size = jax.tree.leaves(test_data)[0].shape[0] if test_data else 0
    tune_data = jax.tree.map(lambda a: a[:size], train_data)
    grid = {name: list(config.lr_grid) for name in config.baselines}
    tuning = race(
        family,
        tune_data,
        result.state.phi,  # unused by the baselines; the same pytree as the test
        grid,
        config.test_tasks,
        config.test_steps,
        config.seed + 1,
    )
    best = {}
    for name in config.baselines:
        means = {lr: np.nanmean(tuning[(name, lr)][0][:, 0]) for lr in grid[name]}
        means = {lr: (m if np.isfinite(m) else np.inf) for lr, m in means.items()}
        best[name] = min(means, key=means.get)
    lrs = {name: [lr] for name, lr in best.items()}
    lrs["learned"] = [0.0]
    test = race(
        family,
        test_data,
        result.state.phi,
        lrs,
        config.test_tasks,
        config.test_steps,
        config.test_seed,
    )
    summary = {"task": config.task}
    curves = {}
    for (name, _), (scores, curve) in test.items():
        curves[name] = curve
        for column, steps in enumerate((config.test_steps // 2, config.test_steps)):
            mean, ci95 = evaluate.confidence_interval(scores[:, column])
            summary[f"{name}_loss_{steps}_steps"] = mean
            summary[f"{name}_loss_{steps}_steps_ci95"] = ci95
    for name, lr in best.items():
        summary[f"{name}_learning_rate"] = lr
    figure = os.path.join(workdir, "loss_curves.png")
    _plot(curves, figure, f"{config.task}: {config.test_tasks} held-out tasks")
    summary.update(
        {
            "meta_steps": config.num_steps,
            "meta_steps_per_second": result.steps_per_second,
            "test_tasks": config.test_tasks,
            "figure": figure,
            "wall_seconds_this_run": time.time() - start,
            "data_source": f"{train_source} | {test_source}",
            "device": jax.devices()[0].device_kind,
        }
    )
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary


class _Same:
    """An endless `batches` iterator yielding the whole (small) dataset."""

    def __init__(self, data: dict):
        self.data = data

    def __iter__(self):
        return self

    def __next__(self):
        return self.data

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        del state


def _plot(curves: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        ax.plot(
            np.arange(len(curve)), curve, label=name, lw=2 if name == "learned" else 1
        )
    ax.set_yscale("log")
    ax.set_xlabel("optimizee step")
    ax.set_ylabel("mean minibatch loss")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
