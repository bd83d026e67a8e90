"""Runs the seed's pretrain -> {retrain all, retrain top, scratch} comparison.

Yosinski et al., "How transferable are features in deep neural networks?", 2014,
arXiv:1411.1792; the methods are described in `transfer.finetune`. Phases, each one
`shared.train_loop.fit` call in its own sub-workdir (resumable):

  pretrain     the MLP on the source task (MNIST digits 0-4);
  similar      every (method, fraction, seed) member on MNIST digits 5-9;
  dissimilar   the same on Omniglot characters (background set; drawers 0-14
               train, 15-19 test; inverted to MNIST's white-on-black).

Writes summary.json (accuracy per target, method and fraction; trainable
parameters and training FLOPs per method) and two figures: accuracy against the
target-data fraction, and against training compute (full data).
"""

from __future__ import annotations

import functools
import os
import time

import jax
import ml_collections
import numpy as np
import optax

from shared import data as data_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.errors import ConfigError
from shared.metrics import read_metrics
from transfer import finetune, plots

TARGETS = ("similar", "dissimilar")


def validate_config(config: ml_collections.ConfigDict) -> None:
    if not config.fractions or any(not 0.0 < f <= 1.0 for f in config.fractions):
        raise ConfigError(
            f"config.fractions={tuple(config.fractions)} must be non-empty, each in "
            "(0, 1]; e.g. --config.fractions='(0.01, 0.05, 0.2, 1.0)'."
        )
    if len(set(config.source_digits) | set(config.target_digits)) != 2 * len(
        config.source_digits
    ) or len(config.source_digits) != len(config.target_digits):
        raise ConfigError(
            "config.source_digits and config.target_digits must be disjoint and of "
            "equal length (the similar target reuses the classifier's width)."
        )
    if config.omniglot_characters < 2:
        raise ConfigError("config.omniglot_characters must be >= 2.")


def _digits(dataset, digits, limit):
    keep = np.flatnonzero(np.isin(dataset.labels, digits))
    keep = keep[:limit] if limit else keep
    lookup = np.full(dataset.num_classes, -1)
    lookup[list(digits)] = np.arange(len(digits))
    return dataset.images[keep].reshape(len(keep), -1), lookup[dataset.labels[keep]]


def load_tasks(config) -> dict:
    """{"source", "similar", "dissimilar"} -> (train_x, train_y, test_x, test_y)."""
    mnist = {
        s: data_lib.load("mnist", s, config.get("data_dir")) for s in ("train", "test")
    }
    out = {}
    for name, digits in (
        ("source", config.source_digits),
        ("similar", config.target_digits),
    ):
        out[name] = (
            *_digits(mnist["train"], digits, config.train_examples),
            *_digits(mnist["test"], digits, config.test_examples),
        )
    omniglot = data_lib.load("omniglot", "train", config.get("data_dir"))
    keep = omniglot.labels < config.omniglot_characters  # background ids 0..963
    images = 255 - omniglot.images[keep].reshape(int(keep.sum()), -1)  # ink = 255
    labels, drawer = omniglot.labels[keep], omniglot.extras["drawer"][keep]
    train, test = drawer < 15, drawer >= 15
    out["dissimilar"] = (images[train], labels[train], images[test], labels[test])
    sources = {"mnist": mnist["train"].source, "omniglot": omniglot.source}
    return {k: tuple(np.asarray(a) for a in v) for k, v in out.items()}, sources


@functools.cache
def _programs(optimizer: str, learning_rate: float):
    """(step, jitted optimizer init), one object each per setting: `fit` caches
    its compiled step per step object, so phases of equal shapes compile once."""
    opt = getattr(optax, optimizer)(learning_rate)
    return finetune.make_step(opt), jax.jit(opt.init)


_accuracy = jax.jit(finetune.member_accuracy)
_init_members = jax.jit(finetune.init_members, static_argnums=4)
_init_stack = jax.jit(finetune.init_stack, static_argnums=(1, 2))


def _phase(config, workdir, name, params, members, task, steps, batch_size):
    """One fit call training the stacked `params` of `members` on `task`."""
    train_x, train_y, test_x, test_y = task
    step, init_optimizer = _programs(config.optimizer, config.learning_rate)
    state = finetune.MembersState(
        params=params, opt_state=init_optimizer(params), step=np.zeros((), np.int32)
    )
    last = {}
    labels = [
        f"{finetune.METHODS[m]}/{_pct(f)}"
        for m, f in zip(members.method, members.fraction, strict=True)
    ]

    def evaluate(state):
        acc = last["accuracy"] = np.asarray(_accuracy(state.params, test_x, test_y))
        return {
            f"eval/{k}": float(np.mean(acc[np.array(labels) == k]))
            for k in dict.fromkeys(labels)
        }

    result = train_loop.fit(
        step,
        state,
        workdir=os.path.join(workdir, name),
        num_steps=steps,
        key=jax.random.key(config.seed),
        batches=finetune.MemberBatches(members, batch_size, config.seed),
        eval_fn=evaluate,
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(1),
        progress=False,
        constants={
            "images": train_x,
            "labels": train_y.astype(np.int32),
            "train_body": members.train_body,
        },
    )
    return jax.device_get(result.state.params), last["accuracy"]  # final eval


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g}pct"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Pretrains, runs both targets, writes summary.json and the figures."""
    validate_config(config)
    start = time.time()
    tasks, sources = load_tasks(config)
    key = jax.random.key(config.seed)
    spec = finetune.NetSpec(
        hidden=tuple(config.hidden), top=config.top, classes=len(config.source_digits)
    )
    source = finetune.make_members((1.0,), 1, len(tasks["source"][0]), config.seed)
    source = _only_first(source)
    params = _init_stack(jax.random.fold_in(key, 0), spec, 1)
    pretrained, source_acc = _phase(
        config,
        workdir,
        "pretrain",
        params,
        source,
        tasks["source"],
        config.pretrain_steps,
        config.batch_size,
    )
    pretrained = jax.tree.map(lambda a: a[0], pretrained)
    summary = {"source/test_accuracy": float(source_acc[0])}
    results = {}
    for index, target in enumerate(TARGETS):
        task = tasks[target]
        classes = len(np.unique(task[1]))
        target_spec = finetune.NetSpec(spec.inputs, spec.hidden, spec.top, classes)
        members = finetune.make_members(
            config.fractions, config.num_seeds, len(task[0]), config.seed
        )
        params = _init_members(
            jax.random.fold_in(key, 1 + index),
            pretrained,
            members.method,
            members.seed,
            target_spec,
        )
        _, accuracy = _phase(
            config,
            workdir,
            target,
            params,
            members,
            task,
            config.target_steps,
            config.batch_size,
        )
        results[target] = (members, accuracy)
        for m, method in enumerate(finetune.METHODS):
            for fraction in config.fractions:
                picked = accuracy[
                    (members.method == m) & (members.fraction == fraction)
                ]
                name = f"{target}/{method}/accuracy_{_pct(fraction)}"
                summary[name] = float(picked.mean())
                summary[f"{name}_std"] = float(picked.std())
    examples = config.target_steps * config.batch_size
    for method in finetune.METHODS:
        summary[f"{method}/trainable_params"] = finetune.trainable_params(spec, method)
        summary[f"{method}/train_gflops"] = (
            examples * finetune.train_flops_per_example(spec, method) / 1e9
        )
    if jax.process_index() == 0:
        plots.finetune_fractions(
            results, config.fractions, os.path.join(workdir, "finetune_fractions.png")
        )
        curves = {t: read_metrics(os.path.join(workdir, t)) for t in TARGETS}
        flops = {
            m: config.batch_size * finetune.train_flops_per_example(spec, m)
            for m in finetune.METHODS
        }
        plots.finetune_compute(
            curves,
            flops,
            _pct(max(config.fractions)),
            os.path.join(workdir, "finetune_compute.png"),
        )
    summary.update(
        {
            "data_source": "; ".join(f"{k}: {v}" for k, v in sources.items()),
            "wall_seconds_this_run": time.time() - start,
            "device": jax.devices()[0].device_kind,
        }
    )
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary


def _only_first(members: finetune.Members) -> finetune.Members:
    """The single retrain_all member of a 1-fraction, 1-seed grid (pretraining)."""
    return finetune.Members(
        *(
            getattr(members, f)[:1]
            for f in (
                "method",
                "fraction",
                "seed",
                "train_body",
                "subset_size",
                "order",
            )
        )
    )
