"""`report.md` and its figures from a reproduction ledger and its workdirs.

The report has one table per area (ours with 95% CI, published number and
source, setting, seeds, wall time, device, band), then that area's figures:
every PNG its runs wrote (spike rasters, accuracy vs operations, ENAS entropy
and op shares, PathNet paths and speedups, ...) copied into `figures/`, and
learning curves drawn here from each run's `metrics.jsonl`. `summary.png`
shows every record against its published number.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scripts import ledger as ledger_lib  # noqa: E402

TITLES = {
    "snn": "Spiking neural networks",
    "metalearn": "Meta-learning (few-shot)",
    "nas": "Neural architecture search (ENAS)",
    "transfer": "Transfer learning (PathNet)",
}


def write(ledger: dict, workdir: str, command: str, wall_seconds: float) -> str:
    """Writes `workdir/report.md` (+ figures/); returns the report's path."""
    figures = os.path.join(workdir, "figures")
    os.makedirs(figures, exist_ok=True)
    records = ledger["records"]
    lines = [
        f"# gicho reproduction: preset `{ledger['preset']}`",
        "",
        f"Command: `{command}`  ",
        f"Device: {ledger['device']}; wall time {clock(wall_seconds)} "
        "(this invocation; per-experiment times below include earlier runs)",
        "",
        "Ours: mean over seeds with a 95% CI (over seeds when several ran, else the",
        "interval the run reports, e.g. over test episodes or task pairs).",
        "Band: the range `--check` accepts for this preset; ok / OUT / - (no band).",
        "",
        "![summary](figures/summary.png)",
    ]
    _summary_figure(records, os.path.join(figures, "summary.png"))
    for area in ledger["only"]:
        rows = [r for r in records if r["area"] == area]
        lines += ["", f"## {TITLES.get(area, area)}", ""]
        if not rows:
            lines.append("Not run in this invocation.")
            continue
        lines += [
            "| experiment | metric | ours (95% CI) | published | setting | seeds "
            "| wall | band |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            ok = ledger_lib.in_band(ledger["preset"], r)
            band = "-" if ok is None else ("ok" if ok else "OUT")
            published = (
                f"{r['published']:.4g} ({r['source']})" if r["published"] else "-"
            )
            lines.append(
                f"| {r['experiment']} | {r['label']} | {format_value(r)} | "
                f"{published} | {r['setting']} | {r['seeds']} | "
                f"{clock(r['wall_seconds'])} | {band} |"
            )
        lines.append("")
        lines.append(f"Data: {rows[0]['data_source']}; device: {rows[0]['device']}.")
        for name in sorted({r["experiment"] for r in rows}):
            for figure in _area_figures(workdir, name, figures):
                lines += ["", f"![{figure}](figures/{figure})"]
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def format_value(record: dict) -> str:
    value, low, high = record["value"], record["ci_low"], record["ci_high"]
    if low is None or high is None:
        return f"{value:.4g}"
    return f"{value:.4g} [{low:.4g}, {high:.4g}]"


def summary_table(ledger: dict) -> str:
    """The plain-text table printed at the end of a reproduction."""
    rows = [("experiment", "metric", "ours (95% CI)", "published", "band")]
    for r in ledger["records"]:
        ok = ledger_lib.in_band(ledger["preset"], r)
        rows.append(
            (
                r["experiment"],
                r["metric"],
                format_value(r),
                f"{r['published']:.4g}" if r["published"] else "-",
                "-" if ok is None else ("ok" if ok else "OUT"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _area_figures(workdir: str, experiment: str, figures: str) -> list[str]:
    """Copies the experiment's PNGs into figures/ and draws its learning curves."""
    root = os.path.join(workdir, experiment)
    names = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.png"), recursive=True)):
        relative = os.path.relpath(path, workdir).replace(os.sep, "_")
        shutil.copyfile(path, os.path.join(figures, relative))
        names.append(relative)
    curves = experiment.replace("/", "_") + "_curves.png"
    if _learning_curves(root, os.path.join(figures, curves)):
        names.append(curves)
    return names


def _learning_curves(root: str, path: str) -> bool:
    """One panel per metrics.jsonl under `root`: its loss and accuracy curves."""
    files = sorted(glob.glob(os.path.join(root, "**", "metrics.jsonl"), recursive=True))
    panels = []
    for file in files:
        with open(file) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        keys = sorted({k for r in rows for k in r if "loss" in k or "accuracy" in k})
        if rows and keys:
            panels.append((os.path.relpath(os.path.dirname(file), root), rows, keys))
    if not panels:
        return False
    panels = panels[:6]
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (title, rows, keys) in zip(axes.flat, panels, strict=False):
        for key in keys[:4]:
            points = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot(
                *zip(*points, strict=True),
                label=key,
                marker="." if len(points) < 20 else None,
            )
        ax.set_title(title or ".", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def _summary_figure(records: list[dict], path: str) -> None:
    """Each record as a point with its CI, and the published number as a cross."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(records) + 1.2))
    for i, r in enumerate(records):
        low, high = r["ci_low"], r["ci_high"]
        if low is not None and high is not None:
            ax.plot([low, high], [i, i], color="tab:blue")
        ax.plot(r["value"], i, "o", color="tab:blue")
        if r["published"]:
            ax.plot(r["published"], i, "x", color="tab:red", markersize=9)
    ax.set_yticks(range(len(records)))
    ax.set_yticklabels(
        [f"{r['experiment']} {r['metric']}" for r in records], fontsize=7
    )
    ax.invert_yaxis()
    ax.set_title("ours (o, 95% CI) vs published (x)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
