"""Weight-sharing diagnostics: does the supernet rank children like training does?

Kendall's tau-b between the shared-weight validation accuracy of a sample of
architectures and their stand-alone accuracy after short retraining, the check
of Yu et al., "Evaluating the Search Phase of Neural Architecture Search" (2020,
arXiv:1902.08142) and Sciuto et al. (2019). Tau near 0 means the supernet's
ranking is no better than chance, which is when random search ties ENAS.
"""

from __future__ import annotations

import numpy as np


def kendall_tau(x, y) -> float:
    """Kendall's tau-b of two equally long sequences (ties handled), O(n^2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(
            f"need two 1-D sequences of equal length >= 2, got {x.shape}, {y.shape}"
        )
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordance = (dx * dy).sum()
    ties_x, ties_y = (dx != 0).sum(), (dy != 0).sum()
    if ties_x == 0 or ties_y == 0:
        return float("nan")
    return float(concordance / np.sqrt(ties_x * ties_y))
