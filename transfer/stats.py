"""Speedup ratios and the statistics of a many-pair transfer experiment (numpy only).

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, figure 3: the speedup of a method on task B is
generations(independent learning from scratch) / generations(method), reported as a
mean over task pairs (PathNet about 1.18, fine-tuning about 0.85 in the paper).
"""

from __future__ import annotations

import numpy as np


def speedup(scratch_generations, method_generations) -> np.ndarray:
    """Per-pair ratio generations(scratch) / generations(method)."""
    scratch = np.asarray(scratch_generations, np.float64)
    method = np.asarray(method_generations, np.float64)
    if np.any(method <= 0) or np.any(scratch <= 0):
        raise ValueError("generation counts must be positive to form a ratio.")
    return scratch / method


def bootstrap_ci(values, level: float = 0.95, draws: int = 10_000, seed: int = 0):
    """(low, high) percentile bootstrap interval of the mean of `values`."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    means = rng.choice(values, (draws, len(values)), replace=True).mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def paired_permutation_test(a, b, draws: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value that paired samples `a` and `b` have equal means.

    Sign-flip permutation test on the differences `a - b` (exact enumeration when
    there are at most 16 pairs, Monte Carlo otherwise); no normality assumption,
    which matters for heavy-tailed generation counts.
    """
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    observed = abs(diff.mean())
    if len(diff) <= 16:
        grid = np.array(np.meshgrid(*[[-1.0, 1.0]] * len(diff))).reshape(len(diff), -1)
        null = np.abs((grid.T * diff).mean(axis=1))
        return float(np.mean(null >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], (draws, len(diff)))
    null = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(null >= observed - 1e-12) + 1) / (draws + 1))


def summarize(scratch, method, name: str) -> dict[str, float]:
    """Mean speedup with CI and the paired tests of `method` vs scratch.

    The speedup ratio is skewed (a ratio of two noisy first-passage times), so
    besides the arithmetic mean the summary gives the geometric mean
    exp(mean log ratio) with its CI and the sign-flip test on the paired LOG
    generations, log(scratch) - log(method) (`p_value_log`, the primary test:
    symmetric under the null, and not dominated by a few long runs as the test
    on raw generation differences, `p_value_vs_scratch`, is).
    """
    ratios = speedup(scratch, method)
    low, high = bootstrap_ci(ratios)
    log_ratios = np.log(ratios)
    log_low, log_high = bootstrap_ci(log_ratios)
    return {
        f"{name}/speedup_geomean": float(np.exp(log_ratios.mean())),
        f"{name}/speedup_geomean_ci_low": float(np.exp(log_low)),
        f"{name}/speedup_geomean_ci_high": float(np.exp(log_high)),
        f"{name}/p_value_log": paired_permutation_test(
            np.log(np.asarray(scratch, np.float64)),
            np.log(np.asarray(method, np.float64)),
        ),
        f"{name}/speedup_mean": float(ratios.mean()),
        f"{name}/speedup_ci_low": low,
        f"{name}/speedup_ci_high": high,
        f"{name}/speedup_of_mean_generations": float(
            np.mean(scratch) / np.mean(method)
        ),
        f"{name}/generations_mean": float(np.mean(method)),
        f"{name}/p_value_vs_scratch": paired_permutation_test(scratch, method),
    }


def summarize_pairs(results: list[dict], methods=("pathnet", "finetune", "scratch")):
    """Per-pair result dicts -> mean generations, censoring, test accuracy, and
    every non-scratch method's speedup over scratch with CI and p-value."""
    generations = {
        m: np.array([r[m]["generations"] for r in results], np.float64)
        for m in ("task_a_result", *methods)
    }
    summary = {"task_a/generations_mean": float(generations["task_a_result"].mean())}
    for method in methods:
        summary[f"{method}/censored_runs"] = int(
            sum(r[method]["censored"] for r in results)
        )
        summary[f"{method}/test_accuracy_mean"] = float(
            np.mean([r[method]["test_accuracy"] for r in results])
        )
    for method in methods:
        if method != "scratch":
            summary.update(
                summarize(generations["scratch"], generations[method], method)
            )
    summary["scratch/generations_mean"] = float(generations["scratch"].mean())
    if results and "frozen" in results[0]:
        summary.update(frozen_reuse(results))
    return summary


def frozen_reuse(results: list[dict]) -> dict[str, float]:
    """How much B's best PathNet path re-uses A's frozen modules.

    `pathnet/frozen_share_of_path`: mean fraction of the distinct modules on B's
    best path that are frozen; `pathnet/frozen_share_of_bank`: the fraction of
    the bank that is frozen (what a path ignoring them would show on average).
    """
    on_path, in_bank = [], []
    for result in results:
        frozen = np.asarray(result["frozen"], bool)
        path = np.asarray(result["pathnet"]["best_path"])
        used = [(layer, m) for layer in range(len(path)) for m in set(path[layer])]
        on_path.append(np.mean([frozen[layer, m] for layer, m in used]))
        in_bank.append(frozen.mean())
    return {
        "pathnet/frozen_share_of_path": float(np.mean(on_path)),
        "pathnet/frozen_share_of_bank": float(np.mean(in_bank)),
    }
