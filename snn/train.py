"""Trains spiking (and twin ANN) classifiers on MNIST with surrogate-gradient BPTT.

    python -m scripts.train --config=snn/configs/mnist_mlp.py:quick --workdir=DIR

`fit_and_evaluate` trains one model with `shared.train_loop.fit` (the step is
`snn.supervised.make_step`) and evaluates it on the test set
(`snn.evaluation`: accuracy, loss and per-sample operation counts). With
`config.ann_twin` the ANN with the same layers is trained next; with
`config.figures` the run writes a spike raster and membrane trace of one test
sample and the accuracy-vs-operations sweep (`snn.figures`).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from shared import data as data_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.batches import BatchIterator
from snn.evaluation import make_eval
from snn.supervised import (
    TrainState,
    make_network,
    make_step,
    validate_config,  # noqa: F401 (shared.config calls it)
)


def _keys(seed: int) -> jax.Array:
    """(init, train, eval) keys of a run."""
    return jax.random.split(jax.random.key(seed), 3)


def fit_and_evaluate(config, workdir: str, train, test) -> tuple[dict, dict]:
    """One model: `fit` in `workdir`, then the test set. Returns (summary, params)."""
    net = make_network(config)
    key_init, key_train, key_eval = _keys(config.seed)
    params = jax.jit(net.init)(key_init)  # one compile, not one per eager op
    batches = BatchIterator(
        {"image": train.images, "label": train.labels}, config.batch_size, config.seed
    )
    num_steps = config.num_epochs * batches.batches_per_epoch
    learning_rate = config.learning_rate
    if config.cosine_decay:
        learning_rate = optax.cosine_decay_schedule(learning_rate, num_steps)
    optimizer = optax.adam(learning_rate)
    state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    evaluate = make_eval(config, net, test.images, test.labels, key_eval)
    start = time.time()
    result = train_loop.fit(
        make_step(config, net, optimizer),
        state,
        workdir=workdir,
        num_steps=num_steps,
        key=key_train,
        batches=batches,
        eval_fn=lambda state: evaluate(state.params),
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
    )
    summary = {
        "test_accuracy": result.eval_metrics["eval/accuracy"],
        "test_loss": result.eval_metrics["eval/loss"],
        **{k: v for k, v in result.eval_metrics.items() if k.startswith("ops/")},
        "model": f"{'snn' if config.spiking else 'ann'}-{config.model}",
        "time_steps": config.time_steps if config.spiking else 0,
        "steps": num_steps,
        "steps_per_second": result.steps_per_second,
        "train_samples_per_second": result.steps_per_second * config.batch_size,
        "wall_seconds_this_run": time.time() - start,
        "resumed_from_step": result.start_step,
    }
    return summary, result.state.params


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains, evaluates on the test set, writes `summary.json`, returns it.

    With `config.ann_twin` (a spiking config) the ANN with the same layers is
    trained next in `workdir/ann` (its own resumable phase): its accuracy is
    `ann_test_accuracy`, and on the sweep's test images `ann_sweep_accuracy`,
    the point drawn on the operations figure.
    """
    start = time.time()
    train, test = data_lib.load_train_test(config)
    workdir_lib.write_json(
        workdir, "data.json", {"train": train.source, "test": test.source}
    )
    summary, params = fit_and_evaluate(config, workdir, train, test)
    key_eval = _keys(config.seed)[2]
    count = min(config.sweep_examples, len(test.labels))
    ann_accuracy = config.get("ann_accuracy")  # given: on the whole test set
    if config.get("ann_twin") and config.spiking:
        ann_config = config.copy_and_resolve_references()
        ann_config.spiking = False
        ann_dir = os.path.join(workdir, "ann")
        ann, ann_params = fit_and_evaluate(ann_config, ann_dir, train, test)
        ann_accuracy = make_eval(
            ann_config,
            make_network(ann_config),
            test.images[:count],
            test.labels[:count],
            key_eval,
        )(ann_params)["accuracy"]
        summary.update(
            ann_test_accuracy=ann["test_accuracy"],
            ann_sweep_accuracy=ann_accuracy,
            ann_wall_seconds=ann["wall_seconds_this_run"],
        )
    summary.update(
        seed=config.seed,
        data_source=train.source,
        device=jax.devices()[0].device_kind,
    )
    if config.figures and config.spiking:
        from snn import figures  # matplotlib only when asked

        net = make_network(config)
        # fit's mesh: the sweep point at the trained T reuses fit's eval compile
        with jax.set_mesh(mesh_lib.make_mesh(config.num_devices)):
            written = figures.write_all(
                config, net, params, test, key_eval, workdir, ann_accuracy
            )
        summary.update(written)
    summary["wall_seconds_total"] = time.time() - start
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
