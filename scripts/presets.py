"""The experiments of each `scripts.reproduce` preset, with published numbers and bands.

A preset is a list of `Experiment`s; each runs one config (file, variant and
overrides) for each of its seeds through `scripts.train.run`, then reads one or
more `Metric`s from the run's `summary.json`. Every metric becomes one ledger
record. Its `band` is the range `--check` accepts for this preset: set from what
this preset measured on a 2-core CPU (demo, quick) or from the paper's number
less a stated tolerance (paper), never wider than it needs to be to pass the
run-to-run noise across seeds. `None` bounds are open.

Presets:
  demo   all four areas in <= 10 minutes on 2 CPU cores, offline, embedded data.
  quick  the CPU-scale runs of each area, <= 60 minutes on 2 cores, offline.
  paper  the published settings (GPU/TPU scale; hours to days on a CPU).
  smoke  the `smoke` variants: seconds per area, for tests of this pipeline.
"""

from __future__ import annotations

import dataclasses

AREAS = ("snn", "metalearn", "nas", "transfer")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One number read from `summary.json` and compared with a paper."""

    key: str  # summary.json key of the value
    label: str  # what the report calls it
    ci_key: str | None = None  # key of a 95% CI half-width the run reports
    ci_keys: tuple[str, str] | None = None  # keys of a (low, high) 95% CI
    published: float | None = None  # in the same units as the value
    source: str = ""  # paper, table
    band: tuple[float | None, float | None] = (None, None)


@dataclasses.dataclass(frozen=True)
class Experiment:
    area: str
    name: str
    config: str  # `path.py:variant`
    setting: str  # what is run, in words
    metrics: tuple[Metric, ...]
    overrides: dict = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)


STBP = "Wu et al. 2018 (STBP), MNIST 784-800-10"
DIEHL = "Diehl & Cook 2015, Table 1"
SNELL = "Snell et al. 2017, Table 1"
VINYALS = "Vinyals et al. 2016, Table 1"
FINN = "Finn et al. 2017, Table 1"
PHAM = "Pham et al. 2018, Table 2 (CIFAR-10, macro)"
FERNANDO = "Fernando et al. 2017, binary MNIST (Sec. 3.1)"


SNN_SETTINGS = {
    "smoke": "LIF MLP 784-16-10, T=5, 256 images (pipeline test)",
    "demo": "LIF MLP 784-256-10, T=8, 3 epochs, rate-coded MNIST; ANN twin beside",
    "quick": "LIF MLP 784-256-10, T=10, 12 epochs, rate-coded MNIST",
    "paper": "LIF MLP 784-800-10, T=25, 30 epochs (STBP setting)",
}


def _snn_mlp(variant, band):
    metrics = [
        Metric(
            "test_accuracy", "test accuracy", published=0.9889, source=STBP, band=band
        ),
        Metric("ops/synops_per_mac", "synaptic ops per ANN MAC"),
    ]
    if variant == "demo":  # the demo trains the ANN twin in the same run
        metrics.insert(1, Metric("ann_test_accuracy", "ANN twin test accuracy"))
    return Experiment(
        "snn",
        "lif_mlp",
        f"snn/configs/mnist_mlp.py:{variant}",
        SNN_SETTINGS[variant],
        tuple(metrics),
    )


def _protonet(variant, band, published=0.988, seeds=(0,)):
    budget, _, way_shot = variant.partition("_")
    train = {
        "smoke": "a few episodes (pipeline test)",
        "demo": "250 episodes of 20-way 1-shot",
        "quick": "1200 episodes of 60-way 1-shot",
        "paper": "the published 60-way schedule",
    }[budget]
    return Experiment(
        "metalearn",
        f"protonet_{way_shot or '5w1s'}",
        f"metalearn/configs/omniglot_protonet.py:{variant}",
        f"ProtoNets, Omniglot (Vinyals split, rotations, 28x28), {way_shot or '5w1s'}"
        f" test, trained on {train}",
        (
            Metric(
                "test_accuracy",
                "test accuracy",
                ci_key="test_ci95",
                published=published,
                source=SNELL,
                band=band,
            ),
        ),
        seeds=seeds,
    )


def _enas(variant, final_band, search_band=(None, None)):
    on_cifar = variant == "paper"
    return Experiment(
        "nas",
        "enas_macro",
        f"nas/configs/macro_search.py:{variant}",
        "ENAS macro search -> derive best of K -> retrain; random-search control; "
        + ("CIFAR-10" if on_cifar else "MNIST pooled to 14x14 (the paper: CIFAR-10)"),
        (
            Metric(
                "final_test_accuracy",
                "final (retrained) test accuracy",
                published=0.9577 if on_cifar else None,
                source=PHAM if on_cifar else "",
                band=final_band,
            ),
            Metric(
                "search_valid_accuracy",
                "search (shared-weight) valid accuracy",
                band=search_band,
            ),
            Metric("random_final_test_accuracy", "random-search control, final"),
            Metric("kendall_tau", "Kendall tau, shared vs stand-alone accuracy"),
            Metric("op_share/skip_density", "skip-connection density (collapse)"),
        ),
    )


def _pathnet(variant, band, num_pairs=None):
    pairs = num_pairs or {"smoke": 2, "demo": 6, "quick": 5, "paper": 100}[variant]
    return Experiment(
        "transfer",
        "pathnet_binary_mnist",
        f"transfer/configs/binary_mnist.py:{variant}",
        f"PathNet transfer, {pairs} random binary MNIST task pairs, vs scratch",
        (
            Metric(
                "pathnet/speedup_mean",
                "PathNet speedup over scratch",
                ci_keys=("pathnet/speedup_ci_low", "pathnet/speedup_ci_high"),
                published=1.18,
                source=FERNANDO,
                band=band,
            ),
            Metric(
                "finetune/speedup_mean",
                "fine-tuning speedup over scratch",
                ci_keys=("finetune/speedup_ci_low", "finetune/speedup_ci_high"),
            ),
            Metric(
                "pathnet/speedup_geomean",
                "PathNet geometric-mean speedup",
                ci_keys=(
                    "pathnet/speedup_geomean_ci_low",
                    "pathnet/speedup_geomean_ci_high",
                ),
            ),
            Metric("pathnet/p_value_vs_scratch", "p-value, PathNet vs scratch"),
            Metric("pathnet/p_value_log", "p-value (log generations), vs scratch"),
        ),
        overrides={"num_pairs": num_pairs} if num_pairs else {},
    )


def _finetune(variant):
    metrics = tuple(
        Metric(
            f"{target}/{method}/accuracy_100pct",
            f"{target} target, {method}, all target data",
        )
        for target in ("similar", "dissimilar")
        for method in ("retrain_all", "retrain_top", "scratch")
    )
    return Experiment(
        "transfer",
        "finetune",
        f"transfer/configs/finetune.py:{variant}",
        "pretrained on MNIST 0-4; retrain all vs last layers vs scratch on MNIST "
        "5-9 (similar) and Omniglot characters (dissimilar)",
        metrics,
    )


PRESETS: dict[str, list[Experiment]] = {
    "smoke": [
        _snn_mlp("smoke", (None, None)),
        _protonet("smoke", (None, None)),
        _enas("smoke", (None, None)),
        _pathnet("smoke", (None, None)),
    ],
    # Bands: a little below what one seed measured on the 2-core CPU (the runs
    # are deterministic, so a drop means a change in the code or the data).
    "demo": [
        _snn_mlp("demo", (0.955, None)),
        _protonet("demo", (0.87, None)),
        _enas("demo", (0.75, None)),
        _pathnet("demo", (0.6, None)),
    ],
    "quick": [
        _snn_mlp("quick", (0.975, None)),
        Experiment(
            "snn",
            "ann_twin",
            "snn/configs/ann_mnist.py:quick",
            "the same MLP without spikes (the operations comparison)",
            (Metric("test_accuracy", "test accuracy", band=(0.975, None)),),
        ),
        _protonet("quick", (0.95, None)),
        _enas("quick", (0.90, None)),
        _pathnet("quick", (0.7, None), num_pairs=20),
        _finetune("quick"),
    ],
    "paper": [
        _snn_mlp("paper", (0.983, None)),
        Experiment(
            "snn",
            "lif_cnn",
            "snn/configs/mnist_conv.py:paper",
            "LIF CNN 12C5-MP2-64C5-MP2-FC10, MNIST",
            (
                Metric(
                    "test_accuracy",
                    "test accuracy",
                    published=0.9942,
                    source="Wu et al. 2018 (STBP), MNIST CNN",
                    band=(0.992, None),
                ),
            ),
        ),
        Experiment(
            "snn",
            "diehl_cook_100",
            "snn/configs/stdp_mnist.py:paper",
            "Diehl & Cook unsupervised STDP, 100 excitatory neurons",
            (
                Metric(
                    "test_accuracy",
                    "test accuracy",
                    published=0.829,
                    source=DIEHL,
                    band=(0.82, None),
                ),
            ),
        ),
        Experiment(
            "snn",
            "diehl_cook_400",
            "snn/configs/stdp_mnist.py:paper",
            "Diehl & Cook unsupervised STDP, 400 excitatory neurons, 3 epochs",
            (
                Metric(
                    "test_accuracy",
                    "test accuracy",
                    published=0.870,
                    source=DIEHL,
                    band=(0.86, None),
                ),
            ),
            overrides={"num_neurons": 400, "num_epochs": 3},
        ),
        _protonet("paper", (0.983, None)),
        _protonet("paper_20w1s", (0.95, None), published=0.960),
        Experiment(
            "metalearn",
            "matching_5w1s",
            "metalearn/configs/omniglot_matching.py:paper",
            "Matching Networks with full context embeddings, Omniglot",
            (
                Metric(
                    "test_accuracy",
                    "test accuracy",
                    ci_key="test_ci95",
                    published=0.981,
                    source=VINYALS,
                    band=(0.975, None),
                ),
            ),
        ),
        Experiment(
            "metalearn",
            "matching_20w1s",
            "metalearn/configs/omniglot_matching.py:paper_20w1s",
            "Matching Networks with full context embeddings, Omniglot",
            (
                Metric(
                    "test_accuracy",
                    "test accuracy",
                    ci_key="test_ci95",
                    published=0.938,
                    source=VINYALS,
                    band=(0.925, None),
                ),
            ),
        ),
        Experiment(
            "metalearn",
            "maml_5w1s",
            "metalearn/configs/omniglot_maml.py:paper",
            "MAML, second order, Omniglot",
            (
                Metric(
                    "test_accuracy",
                    "test accuracy",
                    ci_key="test_ci95",
                    published=0.987,
                    source=FINN,
                    band=(0.98, None),
                ),
            ),
        ),
        _enas("paper", (0.95, None)),
        _pathnet("paper", (1.0, None)),
    ],
}


def experiments(preset: str, only: tuple[str, ...] = AREAS) -> list[Experiment]:
    """The preset's experiments of the areas in `only`, in run order."""
    return [e for e in PRESETS[preset] if e.area in only]
