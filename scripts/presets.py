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


def _snn_mlp(variant, band):
    return Experiment(
        "snn",
        "lif_mlp",
        f"snn/configs/mnist_mlp.py:{variant}",
        "LIF MLP, rate-coded MNIST, surrogate-gradient BPTT",
        (
            Metric(
                "test_accuracy",
                "test accuracy",
                published=0.9889,
                source=STBP,
                band=band,
            ),
        ),
    )


def _protonet(variant, band, published=0.988, seeds=(0,)):
    return Experiment(
        "metalearn",
        f"protonet_{variant.partition('_')[2] or '5w1s'}",
        f"metalearn/configs/omniglot_protonet.py:{variant}",
        "Prototypical Networks, Omniglot (Vinyals split, rotations, 28x28)",
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
    return Experiment(
        "nas",
        "enas_macro",
        f"nas/configs/macro_search.py:{variant}",
        "ENAS macro search -> derive -> retrain, with random-search control",
        (
            Metric(
                "final_test_accuracy",
                "final (retrained) test accuracy",
                published=0.9577,
                source=PHAM,
                band=final_band,
            ),
            Metric(
                "search_valid_accuracy",
                "search (shared-weight) valid accuracy",
                band=search_band,
            ),
            Metric("random_final_test_accuracy", "random-search control, final"),
        ),
    )


def _pathnet(variant, band):
    return Experiment(
        "transfer",
        "pathnet_binary_mnist",
        f"transfer/configs/binary_mnist.py:{variant}",
        "PathNet transfer between random binary MNIST tasks, vs scratch",
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
        ),
    )


PRESETS: dict[str, list[Experiment]] = {
    "smoke": [
        _snn_mlp("smoke", (None, None)),
        _protonet("smoke", (None, None)),
        _enas("smoke", (None, None)),
        _pathnet("smoke", (None, None)),
    ],
    "demo": [
        _snn_mlp("demo", (0.95, None)),
        _protonet("demo", (0.85, None)),
        _enas("demo", (0.80, None)),
        _pathnet("demo", (0.5, None)),
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
        _pathnet("quick", (0.7, None)),
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
