"""transfer.plots: the curve data and that the figures show what they claim."""

import json

import matplotlib.image
import numpy as np

from transfer import plots


def _row(generations, fitness, solved):
    return {
        "step": generations,
        "train/generations": generations,
        "train/best_fitness": fitness,
        "train/solved": solved,
    }


def test_fitness_curve_stops_at_the_solving_round():
    rows = [
        _row(2, 0.5, 0),
        {"step": 2, "eval/accuracy": 0.4},  # eval rows are not part of the curve
        _row(4, 0.9, 0),
        _row(6, 0.999, 1),
        _row(8, 0.999, 1),  # idle rounds after solving
    ]
    assert plots.fitness_curve(rows) == ([2, 4, 6], [0.5, 0.9, 0.999])
    assert plots.fitness_curve(rows[:3]) == ([2, 4], [0.5, 0.9])


def test_generation_curves_reads_each_phase(tmp_path):
    (tmp_path / "task_a").mkdir()
    with open(tmp_path / "task_a" / "metrics.jsonl", "w") as f:
        for row in (_row(2, 0.5, 0), _row(4, 1.0, 1)):
            f.write(json.dumps(row) + "\n")
    out = plots.generation_curves(
        str(tmp_path), ["task_a", "missing"], str(tmp_path / "c.png")
    )
    assert matplotlib.image.imread(out).ndim == 3


def _red_pixels(filename):
    image = matplotlib.image.imread(filename)[..., :3]
    return int(
        np.sum((image[..., 0] > 0.7) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3))
    )


def test_path_diagram_fills_frozen_modules(tmp_path):
    path_a = np.array([[0, 1], [1, 2], [0, 2]])
    path_b = np.array([[2, 3], [0, 3], [1, 3]])
    none = np.zeros((3, 4), bool)
    frozen = none.copy()
    frozen[np.arange(3)[:, None], path_a] = True
    plain = plots.path_diagram(none, path_a, path_b, str(tmp_path / "none.png"))
    filled = plots.path_diagram(frozen, path_a, path_b, str(tmp_path / "frozen.png"))
    assert _red_pixels(filled) > _red_pixels(plain) + 100


def test_speedup_histogram_keeps_every_method(tmp_path):
    two = {"pathnet": [1.0, 1.2], "finetune": [0.9, 1.1]}
    three = {**two, "other": [1.5, 1.9]}  # same bin range: only the bars differ
    image_two = matplotlib.image.imread(
        plots.speedup_histogram(two, str(tmp_path / "two.png"))
    )
    image_three = matplotlib.image.imread(
        plots.speedup_histogram(three, str(tmp_path / "three.png"))
    )
    assert image_two.shape == image_three.shape
    assert not np.array_equal(image_two, image_three)  # a third method is drawn
