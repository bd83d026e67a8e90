"""Diehl & Cook (2015) learning trajectories, image by image, for side-by-sides.

    # the shared start: our initial weights, delays, theta, the images
    JAX_PLATFORMS=cpu python -m benchmarks.snn_stdp_trajectory --export=DIR
    # our network on the first --train images, one JSON line per image
    JAX_PLATFORMS=cpu python -m benchmarks.snn_stdp_trajectory --data=DIR \
        --out=OUT --train=500
    # score saved weights/theta (ours, or Brian 2's from
    # benchmarks/peers/snn_stdp_brian2.py) with our labelling and test
    JAX_PLATFORMS=cpu python -m benchmarks.snn_stdp_trajectory --data=DIR \
        --score=OUT/weights_500.npy,OUT/theta_500.npy

The trajectory loop is `diehl_cook.show` unrolled in Python (normalise,
present, retry while fewer than 5 spikes up to `--max_repeats`), so that
repeats are seen; its per-image fields match the Brian 2 script's: spikes
of the accepted presentation, repeats, active neurons, theta mean / max
(mV), mean of each neuron's largest weight, fraction of weights above 0.5
and at 0, `border_neurons`.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from shared import data as data_lib
from shared import heap
from snn import diehl_cook

_HEAP = heap.define_flag()
_EXPORT = flags.DEFINE_string("export", None, "Write the shared start to this dir.")
_DATA = flags.DEFINE_string("data", None, "A dir written by --export.")
_OUT = flags.DEFINE_string("out", None, "Trajectory output dir.")
_TRAIN = flags.DEFINE_integer("train", 200, "Training images shown.")
_SCORE = flags.DEFINE_list("score", None, "weights.npy,theta.npy pairs to score.")
_LABEL = flags.DEFINE_integer("label", 1000, "Training images for neuron labels.")
_TEST = flags.DEFINE_integer("test", 1000, "Test images scored.")
_MAX_REPEATS = flags.DEFINE_integer("max_repeats", 5, "Presentations per image.")
_SNAPSHOT = flags.DEFINE_integer("snapshot_every", 500, "Save weights every n.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (init as snn/stdp_train.py).")
_IMAGES = flags.DEFINE_integer("export_images", 12000, "Training images exported.")


def model_and_init():
    model = diehl_cook.DiehlCook()  # the stdp_mnist config's defaults
    key_init = jax.random.split(jax.random.key(_SEED.value), 4)[0]
    return model, jax.jit(diehl_cook.init, static_argnums=0)(model, key_init)


def export(path: pathlib.Path):
    path.mkdir(parents=True, exist_ok=True)
    _, state = model_and_init()
    train = data_lib.load("mnist", "train").take(_IMAGES.value)
    test = data_lib.load("mnist", "test")
    arrays = dict(
        weights=state.weights, delays=state.delays, theta=state.theta,
        train_images=train.images.reshape(len(train), -1), train_labels=train.labels,
        test_images=test.images.reshape(len(test), -1), test_labels=test.labels,
    )  # fmt: skip
    for name, value in arrays.items():
        np.save(path / f"{name}.npy", np.asarray(value))


def stats(weights, theta):
    w, th = np.asarray(weights), np.asarray(theta)
    return dict(
        theta_mean=float(th.mean()), theta_max=float(th.max()),
        w_colmax_mean=float(w.max(0).mean()),
        w_frac_above_half=float((w > 0.5).mean()), w_frac_zero=float((w == 0).mean()),
        border=int(diehl_cook.border_neurons(jnp.asarray(w))),
    )  # fmt: skip


def trajectory(data: pathlib.Path, out: pathlib.Path):
    out.mkdir(parents=True, exist_ok=True)
    model, state = model_and_init()
    images = np.load(data / "train_images.npy").astype(np.float32)
    present = jax.jit(diehl_cook.present, static_argnums=(0, 8))
    normalize = jax.jit(diehl_cook.normalize, static_argnums=0)
    net, weights, theta = state.net, state.weights, state.theta
    key = jax.random.key(1000 + _SEED.value)
    log, start = open(out / "trajectory.jsonl", "a"), time.time()
    for index in range(_TRAIN.value):
        repeats = 0
        while True:
            weights = normalize(model, weights)
            net, weights, theta, counts = present(
                model, net, weights, theta, state.delays,
                jax.random.fold_in(key, index * 64 + repeats),
                images[index], 2.0 + repeats, True,
            )  # fmt: skip
            repeats += 1
            counts = np.asarray(counts)
            if counts.sum() >= model.min_spikes or repeats >= _MAX_REPEATS.value:
                break
        row = dict(
            image=index, spikes=int(counts.sum()), repeats=repeats,
            active=int((counts > 0).sum()), **stats(weights, theta),
            seconds=time.time() - start,
        )  # fmt: skip
        log.write(json.dumps(row) + "\n")
        log.flush()
        if (index + 1) % _SNAPSHOT.value == 0 or index + 1 == _TRAIN.value:
            np.save(out / f"weights_{index + 1}.npy", np.asarray(weights))
            np.save(out / f"theta_{index + 1}.npy", np.asarray(theta))


def score(data: pathlib.Path, weights_path: str, theta_path: str, responses) -> dict:
    _, state = model_and_init()
    weights = jnp.asarray(np.load(weights_path), jnp.float32)
    theta = jnp.asarray(np.load(theta_path), jnp.float32)

    def counts(images, key):
        return np.concatenate(
            [
                np.asarray(responses(weights, theta, state.delays, k, chunk))
                for k, chunk in zip(
                    jax.random.split(key, -(-len(images) // 500)),
                    np.array_split(images, -(-len(images) // 500)),
                    strict=True,
                )
            ]
        )

    train_images = np.load(data / "train_images.npy")[: _LABEL.value]
    train_labels = np.load(data / "train_labels.npy")[: _LABEL.value]
    test_images = np.load(data / "test_images.npy")[: _TEST.value]
    test_labels = np.load(data / "test_labels.npy")[: _TEST.value]
    label_counts = counts(train_images.astype(np.float32), jax.random.key(1))
    test_counts = counts(test_images.astype(np.float32), jax.random.key(2))
    neuron_labels = diehl_cook.assign_labels(label_counts, train_labels)
    predictions = np.asarray(diehl_cook.predict(test_counts, neuron_labels))
    silent_as_zero = jnp.maximum(neuron_labels, 0)  # the rule before 2026-11-27
    old_predictions = np.asarray(diehl_cook.predict(test_counts, silent_as_zero))
    return dict(
        weights=weights_path, accuracy=float((predictions == test_labels).mean()),
        accuracy_silent_as_class_0=float((old_predictions == test_labels).mean()),
        unassigned=int((np.asarray(neuron_labels) < 0).sum()),
        label=_LABEL.value, test=_TEST.value,
        test_spikes=float(test_counts.sum(1).mean()),
        test_below_5=float((test_counts.sum(1) < 5).mean()),
        classes=len(set(np.asarray(neuron_labels).tolist()) - {-1}),
        **stats(weights, theta),
    )  # fmt: skip


def main(argv):
    heap.configure(_HEAP.value, area="snn")  # before JAX starts its threads
    del argv
    if _EXPORT.value:
        export(pathlib.Path(_EXPORT.value))
    elif _DATA.value and _SCORE.value:
        paths = _SCORE.value
        if len(paths) % 2:
            raise app.UsageError("--score takes pairs weights.npy,theta.npy,...")
        responses = diehl_cook.make_responses(model_and_init()[0])
        for weights, theta in zip(paths[::2], paths[1::2], strict=True):
            result = score(pathlib.Path(_DATA.value), weights, theta, responses)
            print(json.dumps(result), flush=True)
    elif _DATA.value and _OUT.value:
        trajectory(pathlib.Path(_DATA.value), pathlib.Path(_OUT.value))
    else:
        raise app.UsageError("use --export=DIR, or --data=DIR with --out or --score")


if __name__ == "__main__":
    app.run(main)
