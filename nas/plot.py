"""A picture of a derived macro architecture, titled with its fixed_arc string.

Layers are boxes from the stem (bottom) up, labelled with their op; each skip
connection is an arc on the right from node j (0 = stem) to the layer it feeds.
"""

from __future__ import annotations

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
