"""Trains the Diehl & Cook (2015) STDP network and reports its test accuracy.

    python -m scripts.train --config=snn/configs/stdp_mnist.py:quick \
        --workdir=workdirs/snn_stdp_mnist

Phase 1 (fit, resumable): images are shown one at a time with learning on; a
fit step is a chunk of `images_per_step` images in one `lax.scan`.
Phase 2: with learning off, each neuron is labelled from its responses to
`label_examples` training images (never test images); the test accuracy is
then read from the responses to the test set.
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
from absl import logging

from shared import data as data_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.batches import BatchIterator, iterate_once
from shared.errors import ConfigError
from snn import diehl_cook


def validate_config(config: ml_collections.ConfigDict) -> None:
    if config.num_neurons < 1:
        raise ConfigError("config.num_neurons must be >= 1.")
    if config.dt <= 0:
        raise ConfigError(f"config.dt={config.dt} must be > 0 (ms).")
    if config.timer_rate <= 0:
        raise ConfigError(
            f"config.timer_rate={config.timer_rate} must be > 0 (100 = the authors' "
            "Brian 1 code, 0.1 = the 50 ms lockout of Brian 2 ports)."
        )
    if not 0 <= config.input_delay_ms <= 1000:
        raise ConfigError(
            f"config.input_delay_ms={config.input_delay_ms} must be in [0, 1000] "
            "(10 = the authors' 0-10 ms input delays, 0 = none)."
        )
    if config.stdp_rule not in ("triplet", "power_law", "pair"):
        raise ConfigError(
            f"config.stdp_rule={config.stdp_rule!r}; use 'triplet' (the authors' "
            "script), 'power_law' (the paper's Eq. 3) or 'pair' (BindsNET)."
        )
    if config.conductance_decay not in ("exact", "euler"):
        raise ConfigError(
            f"config.conductance_decay={config.conductance_decay!r}; use 'exact' "
            "or 'euler'."
        )


def counts_for(responses, state, key, images, batch_size) -> np.ndarray:
    """Spike counts (B, N) of `images`, learning off, in batches of `batch_size`."""
    out = []
    for index, batch in enumerate(iterate_once({"x": images}, batch_size)):
        key_batch = jax.random.fold_in(key, index)
        out.append(
            np.asarray(
                responses(
                    state.weights, state.theta, state.delays, key_batch, batch["x"]
                )
            )
        )
    return np.concatenate(out)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    train = data_lib.load(config.dataset, "train", config.get("data_dir"))
    test = data_lib.load(config.dataset, "test", config.get("data_dir"))
    labelled = train.take(config.label_examples)
    train = train.take(config.train_examples)
    test = test.take(config.test_examples)
    workdir_lib.write_json(
        workdir, "data.json", {"train": train.source, "test": test.source}
    )
    model = diehl_cook.DiehlCook(
        num_neurons=config.num_neurons,
        dt=config.dt,
        presentation_ms=config.presentation_ms,
        timer_rate=config.timer_rate,
        tau_theta=config.tau_theta,
        conductance_decay=config.conductance_decay,
        input_delay_ms=config.input_delay_ms,
        stdp_rule=config.stdp_rule,
    )
    key_init, key_train, key_label, key_test = jax.random.split(
        jax.random.key(config.seed), 4
    )
    batches = BatchIterator(
        {"image": train.images}, config.images_per_step, config.seed
    )
    num_steps = config.num_epochs * batches.batches_per_epoch
    start = time.time()
    result = train_loop.fit(
        diehl_cook.make_train_step(model),
        jax.jit(diehl_cook.init, static_argnums=0)(model, key_init),
        workdir=workdir,
        num_steps=num_steps,
        key=key_train,
        batches=batches,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
    )
    train_seconds = time.time() - start
    state = result.state
    responses = diehl_cook.make_responses(model)  # one compile for both sets
    label_counts = counts_for(
        responses, state, key_label, labelled.images, config.eval_batch_size
    )
    neuron_labels = diehl_cook.assign_labels(label_counts, labelled.labels)
    test_counts = counts_for(
        responses, state, key_test, test.images, config.eval_batch_size
    )
    predictions = np.asarray(diehl_cook.predict(test_counts, neuron_labels))
    summary = {
        "test_accuracy": float((predictions == test.labels).mean()),
        "num_neurons": config.num_neurons,
        "train_images_seen": num_steps * config.images_per_step,
        "label_examples": len(labelled.labels),
        "labels_from": "training set",
        "classes_covered_by_neurons": len(
            set(np.asarray(neuron_labels).tolist()) - {-1}
        ),
        "unassigned_neurons": int((np.asarray(neuron_labels) < 0).sum()),
        "mean_test_spikes_per_image": float(test_counts.sum(1).mean()),
        "mean_label_spikes_per_image": float(label_counts.sum(1).mean()),
        "theta_mean_max": [float(state.theta.mean()), float(state.theta.max())],
        "border_neurons": int(diehl_cook.border_neurons(state.weights)),
        "train_images_per_second": num_steps * config.images_per_step / train_seconds,
        "timer_rate": model.timer_rate,
        "tau_theta_ms": model.tau_theta,
        "conductance_decay": model.conductance_decay,
        "input_delay_ms": model.input_delay_ms,
        "stdp_rule": model.stdp_rule,
        "mean_largest_weight": float(state.weights.max(0).mean()),
        "train_seconds_this_run": train_seconds,
        "wall_seconds_this_run": time.time() - start,
        "simplifications": (
            f"at most {model.max_repeats} repeats per image; labelling and "
            "test images each start from rest"
        ),
        "seed": config.seed,
        "data_source": train.source,
        "device": jax.devices()[0].device_kind,
    }
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
