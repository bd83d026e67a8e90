"""Kendall tau against a brute-force pair count and known values."""

import itertools

import numpy as np
import pytest

from nas.diagnostics import kendall_tau


def brute_force_tau_b(x, y):
    concordant = discordant = ties_x = ties_y = 0
    for a, b in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[a] - x[b]), np.sign(y[a] - y[b])
        if sx == 0 and sy == 0:
            continue
        if sx == 0:
            ties_x += 1
        elif sy == 0:
            ties_y += 1
        elif sx == sy:
            concordant += 1
        else:
            discordant += 1
    n_x = concordant + discordant + ties_y  # pairs not tied in x
    n_y = concordant + discordant + ties_x
    return (concordant - discordant) / np.sqrt(n_x * n_y)


def test_kendall_tau_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 4, size=9)
        y = rng.integers(0, 4, size=9)
        np.testing.assert_allclose(kendall_tau(x, y), brute_force_tau_b(x, y))


def test_kendall_tau_extremes_and_errors():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal length"):
        kendall_tau([1, 2], [1, 2, 3])
