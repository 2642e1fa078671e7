"""Tests of qaggstats.scoring: hand-computed values, identities and properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from qaggstats.errors import DataError
from qaggstats.scoring import (
    central_pairs,
    crossing_count,
    crossing_rate,
    crps_quantile,
    interval_coverage,
    interval_width,
    pinball_loss,
    score_table,
    validate_levels,
    wis,
    wis_decomposition,
)

TAUS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


# ---------------------------------------------------------------- hand-computed values

def test_pinball_hand_values():
    # y - q = -1 at tau .25 -> 0.75; y - q = +1 -> 0.25; mean 0.5
    assert pinball_loss([0.0, 2.0], [[1.0], [1.0]], [0.25]) == pytest.approx([0.5], abs=1e-15)
    # two levels, one row: y=3, q=(1, 4) at (0.2, 0.8): 0.2*2 = 0.4 and 0.2*1 = 0.2
    got = pinball_loss([3.0], [[1.0, 4.0]], [0.2, 0.8])
    np.testing.assert_allclose(got, [0.4, 0.2], rtol=0, atol=1e-15)


def test_pinball_weighted_mean():
    # row losses at tau .5: |0-1|/2 = .5 and |2-1|/2 = .5 -> .5; tau .9 with y=5,q=1: 3.6
    y = np.array([0.0, 5.0])
    q = np.array([[1.0], [1.0]])
    got = pinball_loss(y, q, [0.9], weights=[3.0, 1.0])
    # row 1: (0-1)*(0.9-1) = 0.1; row 2: 4*0.9 = 3.6; weighted (3*0.1 + 3.6)/4 = 0.975
    assert got == pytest.approx([0.975], abs=1e-15)


def test_wis_hand_value_and_bracher_formula():
    # y = 3, quantiles 0, 1, 2 at .25, .5, .75: pinballs .75, 1, .75 -> WIS = 2/3 * 2.5
    assert wis([3.0], [[0.0, 1.0, 2.0]], [0.25, 0.5, 0.75]) == pytest.approx(5 / 3, abs=1e-14)
    # Bracher et al. (2021): 1/(K+1/2) * (|y-m|/2 + a/2 * IS_a), a = 0.5, IS = (u-l) + 2/a*(y-u)
    interval_score = (2.0 - 0.0) + 2 / 0.5 * (3.0 - 2.0)
    bracher = 1 / 1.5 * (abs(3.0 - 1.0) / 2 + 0.5 / 2 * interval_score)
    assert bracher == pytest.approx(5 / 3, abs=1e-14)


def test_decomposition_hand_values():
    d = wis_decomposition([3.0], [[0.0, 1.0, 2.0]], [0.25, 0.5, 0.75])
    assert d["dispersion"] == pytest.approx(2 / 3 * 0.25 * 2.0, abs=1e-14)
    assert d["overprediction"] == 0.0
    assert d["underprediction"] == pytest.approx(2 / 3 * (1.0 + 0.5 * 2.0), abs=1e-14)
    d = wis_decomposition([-1.0], [[0.0, 1.0, 2.0]], [0.25, 0.5, 0.75])
    assert d["overprediction"] == pytest.approx(2 / 3 * (1.0 + 0.5 * 2.0), abs=1e-14)
    assert d["underprediction"] == 0.0


def test_decomposition_without_median_and_crossing_pair():
    # pair crosses (l=2 > u=1): dispersion negative, identity still exact
    y, q, taus = [1.5], [[2.0, 1.0]], [0.1, 0.9]
    d = wis_decomposition(y, q, taus)
    assert d["dispersion"] == pytest.approx(2 / 2 * 0.1 * (1.0 - 2.0), abs=1e-14)
    assert d["wis"] == pytest.approx(wis(y, q, taus), abs=1e-14)


def test_decomposition_rejects_unpaired_levels():
    with pytest.raises(DataError, match=r"unpaired level\(s\): 0.3, 0.8"):
        wis_decomposition([0.0], [[0.0, 0.0, 0.0, 0.0]], [0.1, 0.3, 0.8, 0.9])


def test_central_pairs_coverage_width():
    assert central_pairs(TAUS) == [(0, 6), (1, 5), (2, 4)]
    assert central_pairs([0.1, 0.5, 0.8]) == []
    y = np.array([0.0, 1.0, 5.0, -3.0])
    q = np.tile([-2.0, -1.0, 1.0, 2.0], (4, 1))
    taus = [0.05, 0.1, 0.9, 0.95]
    assert interval_coverage(y, q, taus) == {0.9: 0.5, 0.8: 0.5}
    assert interval_width(q, taus) == {0.9: 4.0, 0.8: 2.0}
    # closed intervals: boundary points count as covered
    assert interval_coverage([1.0, -1.0], [[-1.0, 1.0]] * 2, [0.1, 0.9]) == {0.8: 1.0}


def test_crossing_rate_and_count():
    q = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    assert crossing_rate(q) == 0.5
    assert crossing_count(q) == 3
    assert crossing_rate(np.array([[0.0, -1e-12]]), tol=1e-9) == 0.0


def test_crps_quantile_matches_normal_closed_form():
    # CRPS(N(0, s^2), y) = s * (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = y / s
    r = 400
    taus = (np.arange(r) + 0.5) / r
    s = 2.0
    y = np.array([-3.0, 0.0, 0.7, 4.0])
    q = np.tile(stats.norm.ppf(taus, scale=s), (y.size, 1))
    z = y / s
    exact = s * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    # midpoint rule error for r = 400 is well under 1e-3 relative
    assert crps_quantile(y, q, taus) == pytest.approx(exact.mean(), rel=1e-3)


def test_crps_rejects_uneven_grid():
    with pytest.raises(DataError, match="evenly spaced"):
        crps_quantile([0.0], [[0.0, 0.0, 0.0]], [0.1, 0.5, 0.6])


# ---------------------------------------------------------------- validation messages

@pytest.mark.parametrize(
    "taus, message",
    [
        ([0.1, 1.2], r"level 1.2 \(position 1\) is outside \(0, 1\)"),
        ([0.0, 0.5, 1.0], r"levels 0 \(position 0\), 1 \(position 2\) are outside"),
        ([0.1, 0.5, 0.5, 0.9], r"duplicated: 0.5"),
        ([0.5, 0.1], r"0.5 \(position 0\) is followed by 0.1"),
        ([], r"non-empty"),
    ],
)
def test_level_validation(taus, message):
    with pytest.raises(DataError, match=message):
        validate_levels(taus)


def test_shape_and_value_validation():
    with pytest.raises(DataError, match=r"shape \(2, 2\) but y has 3 rows"):
        wis([0.0, 1.0, 2.0], np.zeros((2, 2)), [0.1, 0.9])
    with pytest.raises(DataError, match=r"first at row 1, level 0.9"):
        wis([0.0, 1.0], [[0.0, 0.0], [0.0, np.nan]], [0.1, 0.9])
    with pytest.raises(DataError, match="y has 1 non-finite"):
        wis([np.inf, 1.0], np.zeros((2, 2)), [0.1, 0.9])
    with pytest.raises(DataError, match="weights must have shape"):
        pinball_loss([0.0], [[0.0]], [0.5], weights=[1.0, 2.0])
    with pytest.raises(DataError, match="prediction 'b'"):
        score_table([0.0], {"a": [[0.0]], "b": [[0.0, 1.0]]}, [0.5])


# ---------------------------------------------------------------- score_table

def test_score_table_columns_and_values():
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    base = np.sort(rng.normal(size=(50, TAUS.size)), axis=1)
    tab = score_table(y, {"a": base, "b": base + 1.0}, TAUS)
    assert list(tab.index) == ["a", "b"] and tab.index.name == "model"
    assert list(tab.columns) == (
        ["wis", "dispersion", "overprediction", "underprediction"]
        + [f"pinball_{t:g}" for t in TAUS]
        + ["coverage_90", "width_90", "coverage_80", "width_80", "coverage_50", "width_50",
           "crossing_rate"]
    )
    assert tab.loc["a", "wis"] == pytest.approx(wis(y, base, TAUS), abs=1e-14)
    assert tab.loc["b", "coverage_80"] == interval_coverage(y, base + 1.0, TAUS)[0.8]
    parts = tab[["dispersion", "overprediction", "underprediction"]].sum(axis=1)
    np.testing.assert_allclose(parts, tab["wis"], rtol=1e-12)
    assert tab.loc["a", "crossing_rate"] == 0.0


def test_score_table_asymmetric_levels_gives_nan_decomposition():
    tab = score_table([0.0, 1.0], {"m": [[0.0, 1.0, 2.0]] * 2}, [0.1, 0.5, 0.8])
    assert np.isnan(tab.loc["m", "dispersion"])
    assert not any(c.startswith("coverage_") for c in tab.columns)


# ---------------------------------------------------------------- properties

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def symmetric_problem(draw):
    """Outcomes, quantiles (possibly crossing) and a symmetric level set with the median."""
    k = draw(st.integers(1, 4))
    lows = draw(st.lists(st.floats(0.01, 0.49), min_size=k, max_size=k, unique=True))
    lows = sorted(set(round(t, 3) for t in lows if round(t, 3) < 0.5))
    taus = np.array(lows + [0.5] + [1 - t for t in reversed(lows)])
    n = draw(st.integers(1, 6))
    y = draw(hnp.arrays(float, n, elements=finite))
    q = draw(hnp.arrays(float, (n, taus.size), elements=finite))
    return y, q, taus


@settings(max_examples=150, deadline=None)
@given(symmetric_problem())
def test_wis_is_two_over_l_sum_of_pinball(problem):
    y, q, taus = problem
    expected = 2.0 / taus.size * pinball_loss(y, q, taus).sum()
    assert wis(y, q, taus) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(symmetric_problem())
def test_decomposition_sums_to_wis(problem):
    y, q, taus = problem
    d = wis_decomposition(y, q, taus)
    total = d["dispersion"] + d["overprediction"] + d["underprediction"]
    scale = 1.0 + np.abs(q).max() + np.abs(y).max()
    assert total == pytest.approx(wis(y, q, taus), abs=1e-12 * scale)
    assert d["overprediction"] >= 0 and d["underprediction"] >= 0


@settings(max_examples=150, deadline=None)
@given(symmetric_problem())
def test_scores_nonnegative(problem):
    y, q, taus = problem
    assert np.all(pinball_loss(y, q, taus) >= 0)
    assert wis(y, q, taus) >= 0
    q_sorted = np.sort(q, axis=1)
    assert wis_decomposition(y, q_sorted, taus)["dispersion"] >= 0


@settings(max_examples=150, deadline=None)
@given(symmetric_problem(), st.data())
def test_wis_zero_iff_all_quantiles_equal_outcome(problem, data):
    y, q, taus = problem
    exact = np.repeat(y[:, None], taus.size, axis=1)
    assert wis(y, exact, taus) == 0.0
    # perturb one entry: WIS becomes strictly positive
    i = data.draw(st.integers(0, y.size - 1))
    k = data.draw(st.integers(0, taus.size - 1))
    shift = data.draw(st.sampled_from([-1.0, 1.0])) * data.draw(st.floats(1e-3, 10.0))
    moved = exact.copy()
    moved[i, k] += shift
    assert wis(y, moved, taus) > 0.0
    # and WIS == 0 on arbitrary quantiles happens only when they all equal y
    if wis(y, q, taus) == 0.0:
        np.testing.assert_array_equal(q, exact)
