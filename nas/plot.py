"""Figures for NAS reports: the derived architecture and the search curves.

`plot_arch` draws either space. `plot_macro`: layers are boxes from the stem
(bottom) up, labelled with their op; each skip connection is an arc on the
right from node j (0 = stem) to the layer it feeds; the title is the official
fixed_arc string. `plot_micro`: the normal and the reduction cell side by
side, as Figure 4 of Pham et al. (2018): inputs h[k-2], h[k-1], then the
computed nodes left to right, each fed by two arrows labelled with their ops;
the nodes no other node uses feed the output (concatenated). `plot_search`:
controller entropy and reward over the search, and the op shares per epoch
(collapse).
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nas import search_space as space_lib  # noqa: E402


def plot_macro(space: space_lib.SearchSpace, arch, path: str) -> str:
    """Draws macro `arch` to `path` (PNG) and returns the path."""
    arch = space_lib.validate(space, arch)
    ops = space_lib.macro_ops(space, arch)
    skips = space_lib.macro_skips(space, arch)
    num_layers = space.size
    fig, ax = plt.subplots(figsize=(4.5, 0.5 * num_layers + 1.5))
    labels = ["stem"] + [space.op_names[op] for op in ops]
    for node, label in enumerate(labels):
        ax.add_patch(plt.Rectangle((0, node - 0.3), 2, 0.6, fill=False))
        ax.text(1, node, label, ha="center", va="center", fontsize=8)
        if node:
            ax.annotate(
                "", (1, node - 0.3), (1, node - 0.7), arrowprops={"arrowstyle": "->"}
            )
    for layer, j in zip(*np.nonzero(skips), strict=True):
        start, end = j, layer + 1  # node j feeds layer `layer` (node layer + 1)
        bend = 0.15 + 0.05 * (end - start)
        ax.annotate(
            "",
            (2, end),
            (2, start),
            arrowprops={
                "arrowstyle": "->",
                "connectionstyle": f"arc3,rad={-bend}",
                "color": "tab:blue",
                "lw": 0.8,
            },
        )
    ax.set_xlim(-0.5, 4)
    ax.set_ylim(-1, num_layers + 1)
    ax.axis("off")
    text = space_lib.to_fixed_arc(space, arch)
    ax.set_title(
        "\n".join(text[i : i + 60] for i in range(0, len(text), 60)), fontsize=7
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_arch(space: space_lib.SearchSpace, arch, path: str) -> str:
    """The derived architecture's picture (macro network or micro cells)."""
    if space.name == "micro":
        return plot_micro(space, arch, path)
    return plot_macro(space, arch, path)


def _draw_cell(ax, cell, names, title):
    num_nodes = len(cell)
    spots = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for node in range(num_nodes):
        spots[node + 2] = (1.5 * (node + 1), 0.9 * (-1) ** node)
    used = set(cell[:, 0]) | set(cell[:, 2])
    spots["out"] = (1.5 * (num_nodes + 1), 0.0)
    labels = {0: "h[k-2]", 1: "h[k-1]", "out": "concat"}
    for key, (px, py) in spots.items():
        label = labels.get(key, str(key))
        color = "tab:green" if key in (0, 1) else "tab:orange" if key == "out" else "k"
        ax.text(
            px,
            py,
            label,
            ha="center",
            va="center",
            fontsize=7,
            bbox={"boxstyle": "round", "fc": "white", "ec": color},
        )
    for node, (x_id, x_op, y_id, y_op) in enumerate(cell):
        for side, (index, op) in enumerate(((x_id, x_op), (y_id, y_op))):
            start, end = spots[int(index)], spots[node + 2]
            bend = 0.25 if side else -0.25
            ax.annotate(
                "",
                end,
                start,
                arrowprops={
                    "arrowstyle": "->",
                    "lw": 0.7,
                    "shrinkA": 12,
                    "shrinkB": 12,
                    "connectionstyle": f"arc3,rad={bend}",
                },
            )
            mid_x = (start[0] + end[0]) / 2
            mid_y = (start[1] + end[1]) / 2 + (0.35 if side else -0.35)
            ax.text(
                mid_x, mid_y, names[op], fontsize=5.5, ha="center", color="tab:blue"
            )
    for key in [k for k in range(num_nodes + 2) if k not in used]:
        ax.annotate(
            "",
            spots["out"],
            spots[key],
            arrowprops={
                "arrowstyle": "->",
                "lw": 0.5,
                "color": "tab:orange",
                "shrinkA": 12,
                "shrinkB": 12,
                "connectionstyle": "arc3,rad=-0.15",
            },
        )
    ax.set_xlim(-1, 1.5 * (num_nodes + 1) + 1)
    ax.set_ylim(-2, 2)
    ax.axis("off")
    ax.set_title(title, fontsize=9)


def plot_micro(space: space_lib.SearchSpace, arch, path: str) -> str:
    """Draws micro `arch` (normal and reduction cell) to `path`; returns it."""
    cells = space_lib.validate(space, arch).reshape(2, space.size, 4)
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * space.size + 3, 3.4))
    for ax, cell, title in zip(
        axes, cells, ("normal cell", "reduction cell"), strict=True
    ):
        _draw_cell(ax, cell, space.op_names, title)
    text = space_lib.to_fixed_arc(space, arch)
    half = len(text.split()) // 2
    tokens = text.split()
    fig.suptitle(
        "fixed_arc: " + " ".join(tokens[:half]) + "\n" + " ".join(tokens[half:]),
        fontsize=7,
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_search(metrics_path: str, path: str) -> str | None:
    """Controller entropy and reward per step, op shares per epoch, to `path`.

    Reads the search phase's metrics.jsonl; returns None (no file) when it holds
    neither controller nor op-share rows (e.g. a random-search-only run).
    """
    if not os.path.exists(metrics_path):
        return None
    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    ctrl = [r for r in rows if "controller/entropy" in r]
    evals = [r for r in rows if any(k.startswith("eval/op_share/") for k in r)]
    if not ctrl and not evals:
        return None
    fig, (ax_ctrl, ax_share) = plt.subplots(1, 2, figsize=(9, 3.2))
    if ctrl:
        steps = [r["step"] for r in ctrl]
        ax_ctrl.plot(steps, [r["controller/entropy"] for r in ctrl], label="entropy")
        ax_ctrl.set_ylabel("controller entropy (nats / arch)")
        twin = ax_ctrl.twinx()
        twin.plot(
            steps,
            [r["controller/valid_accuracy"] for r in ctrl],
            color="tab:orange",
            label="reward acc.",
        )
        twin.set_ylabel("reward: shared-weight valid acc.", color="tab:orange")
    ax_ctrl.set_xlabel("search step")
    keys = sorted({k for r in evals for k in r if k.startswith("eval/op_share/")})
    epochs = np.arange(1, len(evals) + 1)
    for key in keys:
        style = "--" if key.endswith("skip_density") else "-"
        values = [r.get(key, np.nan) for r in evals]
        ax_share.plot(epochs, values, style, marker="o", label=key.split("/")[-1])
    ax_share.set_xlabel("search epoch")
    ax_share.set_ylabel("share of sampled children")
    ax_share.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
