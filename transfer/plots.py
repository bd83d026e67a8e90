"""Figures for PathNet runs: the path diagram and generation curves.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734: the path diagram draws the L x M module grid,
marks task A's fixed modules and overlays task B's best path (the seed's figure 7,
the paper's figure 1); the curves are the best tournament fitness per generation.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def path_diagram(frozen, path_a, path_b, filename: str, title: str = "") -> str:
    """Draws the module grid, A's frozen modules and both paths; returns filename.

    Args:
      frozen: bool (L, M) modules fixed after task A.
      path_a, path_b: int (L, N) best paths of task A and task B.
    """
    frozen = np.asarray(frozen, bool)
    num_layers, num_modules = frozen.shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * num_modules, 1.0 + 1.1 * num_layers))
    for layer in range(num_layers):
        for module in range(num_modules):
            ax.scatter(
                module,
                layer,
                s=180,
                c="tab:red" if frozen[layer, module] else "white",
                edgecolors="black",
                zorder=3,
            )
    for path, color, offset, label in (
        (path_a, "tab:red", -0.06, "task A best path (frozen)"),
        (path_b, "tab:blue", 0.06, "task B best path"),
    ):
        path = np.asarray(path)
        for layer in range(num_layers - 1):
            for low in set(path[layer].tolist()):
                for high in set(path[layer + 1].tolist()):
                    ax.plot(
                        [low + offset, high + offset],
                        [layer, layer + 1],
                        color=color,
                        alpha=0.7,
                        lw=1.5,
                        zorder=2,
                    )
        ax.plot([], [], color=color, label=label)
    ax.set_xticks(range(num_modules))
    ax.set_yticks(range(num_layers), [f"layer {i}" for i in range(num_layers)])
    ax.set_xlabel("module")
    ax.set_title(title or "PathNet paths (filled = frozen after task A)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)
    return filename


def fitness_curve(rows: list[dict]) -> tuple[list[float], list[float]]:
    """(generations, best fitness) from metric rows, up to the first solving row.

    Rows after the solving round repeat it (the GA idles until the cap), so they
    are left out of the curve.
    """
    rows = [r for r in rows if "train/generations" in r]
    last = next((i for i, r in enumerate(rows) if r["train/solved"] >= 1), None)
    rows = rows if last is None else rows[: last + 1]
    return [r["train/generations"] for r in rows], [
        r["train/best_fitness"] for r in rows
    ]


def generation_curves(pair_dir: str, phases, filename: str) -> str:
    """Best tournament fitness against generations for each phase's metrics.jsonl."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for phase in phases:
        path = os.path.join(pair_dir, phase, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            generations, fitness = fitness_curve([json.loads(line) for line in f])
        ax.plot(generations, fitness, label=phase)
    ax.set_xlabel("generations (binary tournaments)")
    ax.set_ylabel("best fitness (training accuracy)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)
    return filename


def speedup_histogram(speedups: dict, filename: str) -> str:
    """Histogram of per-pair speedups (generations scratch / method) per method."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = [np.asarray(v, float) for v in speedups.values()]
    bins = np.linspace(0, max(2.0, max(v.max() for v in values)), 25)
    for name, ratios in speedups.items():  # every method, default color cycle
        ratios = np.asarray(ratios, float)
        ax.hist(ratios, bins, alpha=0.6, label=f"{name} (mean {ratios.mean():.2f})")
    ax.axvline(1.0, color="black", lw=1, ls="--")
    ax.set_xlabel("speedup = generations(scratch) / generations(method)")
    ax.set_ylabel("task pairs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)
    return filename


def finetune_fractions(results: dict, fractions, filename: str) -> str:
    """Accuracy against target-data fraction, one panel per target.

    Args:
      results: target -> (finetune.Members, accuracy (K,)) per member.
      fractions: the fractions of the run (x axis, log scale).
    """
    from transfer.finetune import METHODS  # noqa: PLC0415 (plots stays light)

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
    for ax, (target, (members, accuracy)) in zip(
        np.atleast_1d(axes), results.items(), strict=True
    ):
        for m, method in enumerate(METHODS):
            picks = [
                accuracy[(members.method == m) & (members.fraction == f)]
                for f in fractions
            ]
            ax.errorbar(
                np.asarray(fractions) * 100,
                [p.mean() for p in picks],
                yerr=[p.std() for p in picks],
                marker="o",
                capsize=3,
                label=method,
            )
        ax.set_xscale("log")
        ax.set_xlabel("target training data (%)")
        ax.set_ylabel("target test accuracy")
        ax.set_title(target)
        ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)
    return filename


def finetune_compute(curves: dict, flops_per_step: dict, column: str, filename: str):
    """Test accuracy against training GFLOPs (from the eval rows of each target).

    Args:
      curves: target -> metric rows (metrics.jsonl) with `eval/<method>/<column>`.
      flops_per_step: method -> training FLOPs of one step of one member.
      column: which fraction's curve to draw, e.g. "100pct".
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6))
    for ax, (target, rows) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for method, flops in flops_per_step.items():
            name = f"eval/{method}/{column}"
            points = [(r["step"] * flops / 1e9, r[name]) for r in rows if name in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=method)
        ax.set_xlabel("training compute (GFLOPs, analytic)")
        ax.set_ylabel(f"target test accuracy ({column} data)")
        ax.set_title(target)
        ax.legend()
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)
    return filename
