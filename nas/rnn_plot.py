"""A picture of an ENAS recurrent cell (Pham et al. 2018, Figure 2 style).

Each node i reads node p_i (node 0 reads x_t and h_{t-1}) and applies its
activation inside a highway connection (`nas.rnn_cell`); the loose ends (nodes
no later node reads) are averaged into h_t. Nodes sit on a grid by depth (the
number of hops from node 0) so the branching of the cell is visible.

    python -m nas.rnn_plot --arc="0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1" \
        --out=/tmp/cell.png
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nas import search_space as space_lib  # noqa: E402

COLOURS = {"tanh": "#8dd3c7", "relu": "#fb8072", "identity": "#d9d9d9"}
COLOURS["sigmoid"] = "#80b1d3"


def layout(arch) -> tuple[list[tuple[float, float]], list[int], list[int]]:
    """((x, y) per node, the input of each node 1..N-1, the loose-end nodes)."""
    arch = np.asarray(arch)
    prev = [int(p) for p in arch[1::2]]
    depth = [0]
    for p in prev:
        depth.append(depth[p] + 1)
    slots: dict[int, int] = {}
    positions = []
    for d in depth:
        positions.append((float(d), -float(slots.get(d, 0))))
        slots[d] = slots.get(d, 0) + 1
    loose = [i for i in range(len(depth)) if i not in set(prev)]
    return positions, prev, loose


def draw(arch, path: str, title: str = "") -> str:
    """Writes the cell `arch` (rnn_space layout) as an image to `path`."""
    arch = np.asarray(arch)
    positions, prev, loose = layout(arch)
    funcs = [int(arch[0])] + [int(f) for f in arch[2::2]]
    names = [space_lib.RNN_ACTIVATIONS[f] for f in funcs]
    width = max(x for x, _ in positions) + 3
    height = max(1.0 - min(y for _, y in positions), 2.0)
    fig, ax = plt.subplots(figsize=(1.4 * width + 1, 1.1 * height + 1))
    x_in, h_in = (-1.2, 0.4), (-1.2, -0.4)
    out = (width - 1.0, -0.5 * (height - 1))
    arrow = dict(arrowstyle="-|>", color="0.4", lw=1, shrinkA=16, shrinkB=16)
    for src in (x_in, h_in):
        ax.annotate("", positions[0], src, arrowprops=arrow)
    for node, p in enumerate(prev, start=1):
        ax.annotate("", positions[node], positions[p], arrowprops=arrow)
    for node in loose:
        ax.annotate(
            "",
            out,
            positions[node],
            arrowprops=dict(arrow, ls="--", connectionstyle="arc3,rad=0.15"),
        )
    for node, ((x, y), name) in enumerate(zip(positions, names, strict=True)):
        box = dict(boxstyle="round", fc=COLOURS[name], ec="0.3")
        ax.text(x, y, f"{node}\n{name}", ha="center", va="center", bbox=box)
    for (x, y), label in ((x_in, "$x_t$"), (h_in, "$h_{t-1}$"), (out, "avg\n$h_t$")):
        ax.text(x, y, label, ha="center", va="center", bbox=dict(fc="w", ec="0.3"))
    ax.set_xlim(-1.8, width - 0.4)
    ax.set_ylim(min(y for _, y in positions) - 0.8, 1.0)
    ax.axis("off")
    ax.set_title(title or " ".join(str(int(a)) for a in arch), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arc", required=True, help="fixed_arc string")
    parser.add_argument("--out", required=True, help="image path (.png / .pdf)")
    args = parser.parse_args()
    values = [int(v) for v in args.arc.split()]
    space = space_lib.rnn_space((len(values) + 1) // 2)
    draw(space_lib.from_fixed_arc(space, args.arc), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
