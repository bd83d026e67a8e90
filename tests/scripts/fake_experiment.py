"""A fast stand-in experiment for the reproduce tests: config and trainer in one.

It writes what a real area run writes (metrics.jsonl, a PNG, summary.json) in
milliseconds, counts its runs in `runs.txt`, and is interrupted (as by SIGTERM)
when its workdir is in the area named by $FAKE_INTERRUPT_AREA.
"""

import os

import matplotlib
import ml_collections

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared import workdir as workdir_lib  # noqa: E402
from shared.errors import Interrupted  # noqa: E402
from shared.metrics import MetricWriter  # noqa: E402


def get_config(variant="quick"):
    config = ml_collections.ConfigDict()
    config.area = "shared"
    config.trainer = "tests.scripts.fake_experiment"
    config.seed = 0
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.value = float(variant) if variant else 0.5
    return config


def train_and_evaluate(config, workdir):
    with open(os.path.join(workdir, "runs.txt"), "a") as f:
        f.write(f"{workdir}\n")
    if os.sep + os.environ.get("FAKE_INTERRUPT_AREA", "-") + os.sep in workdir:
        raise Interrupted(3, 15)
    writer = MetricWriter(workdir)
    for step in (1, 2, 3):
        writer.write(step, {"train/loss": 1.0 / step, "train/accuracy": 0.3 * step})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, config.value])
    fig.savefig(os.path.join(workdir, "curve.png"))
    plt.close(fig)
    summary = {
        "score": config.value + 0.01 * config.seed,
        "score_ci95": 0.02,
        "data_source": "made by the test",
        "device": "cpu",
    }
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
