"""Figures a run writes: a spike raster with membrane traces, and accuracy vs ops.

The accuracy-vs-operations curve is the seed's comparison (Tavanaei et al. 2018,
"Deep Learning in Spiking Neural Networks", arXiv:1804.08150: an SNN reaching
~98% on MNIST with a fraction of an ANN's operations) drawn as a curve: one
trained SNN evaluated with fewer or more time steps T and with its threshold
scaled, each point (synaptic operations per sample, test accuracy), against the
dense MACs of the same layers as an ANN. Points use `config.sweep_examples` test
examples (the first ones, fixed key), so they are estimates.
"""

from __future__ import annotations

import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared import workdir as workdir_lib  # noqa: E402
from snn import evaluation, supervised  # noqa: E402


def raster(config, net, params, test, key, path) -> None:
    """Input/hidden/output rasters and output membranes of test sample 0."""
    encode = supervised.make_encoder(config, net)
    outputs = jax.jit(lambda p, x: net.apply(p, encode(key, x)))(
        params, test.images[:1]
    )
    layers = [*outputs["layer_inputs"], outputs["spikes"]]
    fig, axes = plt.subplots(len(layers) + 1, 1, figsize=(7, 2 + 2 * len(layers)))
    names = ["input"] + [f"layer {i + 1}" for i in range(len(layers) - 1)]
    for ax, name, spikes in zip(axes[:-1], names, layers, strict=True):
        times, units = jax.device_get(
            spikes[:, 0].reshape(spikes.shape[0], -1)
        ).nonzero()
        ax.scatter(times, units, s=2, marker="|", color="k")
        ax.set_ylabel(f"{name}\nunit")
        ax.set_xlim(-0.5, spikes.shape[0] - 0.5)
        ax.set_ylim(-0.5, spikes[0, 0].size - 0.5)
    membrane = jax.device_get(outputs["membrane"][:, 0])
    for c in range(membrane.shape[1]):
        width = 2.0 if c == int(test.labels[0]) else 0.7
        axes[-1].plot(membrane[:, c], lw=width, label=str(c))
    axes[-1].set_ylabel("output\nmembrane")
    axes[-1].set_xlabel("time step")
    axes[-1].legend(ncol=5, fontsize=6)
    axes[0].set_title(f"test sample 0 (label {int(test.labels[0])})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep(config, net, params, test, key) -> list[dict]:
    """(T, threshold) -> accuracy and SynOps on the first test examples.

    The threshold is scaled through the parameters (`evaluation.with_thresholds`),
    so each T compiles once for all thresholds.
    """
    count = min(config.sweep_examples, len(test.labels))
    images, labels = test.images[:count], test.labels[:count]
    rows = []
    for steps in sorted(set(config.sweep_time_steps)):
        evaluate = evaluation.make_eval(config, net, images, labels, key, steps)
        for factor in config.sweep_thresholds:  # multiples of the trained one
            metrics = evaluate(params, factor)
            rows.append(
                {
                    "time_steps": steps,
                    "threshold": net.neuron.threshold * factor,
                    "accuracy": metrics["accuracy"],
                    "synops": metrics["ops/synops"],
                    "ann_macs": metrics["ops/ann_macs"],
                }
            )
    return rows


def plot_sweep(rows, path, ann_accuracy=None) -> None:
    """Accuracy vs operations: all points (left) and the top of the range (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax in axes:
        for threshold in sorted({r["threshold"] for r in rows}):
            points = [r for r in rows if r["threshold"] == threshold]
            ax.plot(
                [r["synops"] for r in points],
                [100 * r["accuracy"] for r in points],
                "o-",
                label=f"SNN, threshold {threshold:g} (labels: T)",
            )
            for r in points:
                ax.annotate(
                    f"T={r['time_steps']}",
                    (r["synops"], 100 * r["accuracy"]),
                    fontsize=6,
                )
        ax.axvline(rows[0]["ann_macs"], color="k", ls="--", label="ANN dense MACs")
        if ann_accuracy is not None:
            ax.plot(rows[0]["ann_macs"], 100 * ann_accuracy, "k*", ms=10, label="ANN")
        ax.set_xscale("log")
        ax.set_xlabel("operations per sample (SNN: SynOps/ACs, ANN: MACs)")
        ax.set_ylabel("test accuracy (%)")
    best = max([r["accuracy"] for r in rows] + [ann_accuracy or 0.0])
    axes[1].set_ylim(100 * best - 8, 100 * best + 1)
    axes[1].set_title("top of the range")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(config, net, params, test, key, workdir, ann_accuracy=None) -> dict:
    """Writes raster.png, accuracy_vs_ops.png and sweep.json; returns their names.

    `ann_accuracy`: the ANN twin's test accuracy, drawn at its MACs if given.
    """
    raster(config, net, params, test, key, os.path.join(workdir, "raster.png"))
    rows = sweep(config, net, params, test, key)
    workdir_lib.write_json(workdir, "sweep.json", rows)
    path = os.path.join(workdir, "accuracy_vs_ops.png")
    plot_sweep(rows, path, ann_accuracy)
    return {"figures": "raster.png accuracy_vs_ops.png sweep.json"}
