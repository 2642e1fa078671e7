"""Tests of qaggstats.monotone: exact small cases and hypothesis properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import isotonic_regression

from qaggstats.errors import DataError
from qaggstats.monotone import (
    METHODS,
    isotonic,
    minmax_sweep,
    monotone_effect,
    postprocess,
    rearrange,
    sort_quantiles,
)


def row_pinball_sum(y, q, taus, level_weights=None):
    """Summed pinball loss per row, shape (m,)."""
    u = y[:, None] - q
    loss = u * (taus[None, :] - (u < 0))
    if level_weights is not None:
        loss = loss * level_weights[None, :]
    return loss.sum(axis=1)


# ---------------------------------------------------------------- strategies

values = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, min_r=2, max_r=7):
    """Random quantile rows (possibly crossing), increasing levels and outcomes."""
    r = draw(st.integers(min_r, max_r))
    taus = np.array(sorted(draw(st.sets(st.integers(1, 99), min_size=r, max_size=r)))) / 100
    m = draw(st.integers(1, 8))
    q = draw(hnp.arrays(float, (m, r), elements=values))
    y = draw(hnp.arrays(float, m, elements=values))
    return y, q, taus


def slack(y, q):
    return 1e-12 * (1.0 + np.abs(q).max() + np.abs(y).max()) * q.shape[1]


# ---------------------------------------------------------------- exact cases

def test_isotonic_small_cases():
    np.testing.assert_array_equal(isotonic([[1.0, 3.0, 2.0, 4.0]]), [[1.0, 2.5, 2.5, 4.0]])
    # a long violation pools everything: mean of 4, 3, 2, 1
    np.testing.assert_array_equal(isotonic([[4.0, 3.0, 2.0, 1.0]]), [[2.5] * 4])
    # weighted: (3*3 + 1*2) / 4 = 2.75
    got = isotonic([[1.0, 3.0, 2.0, 4.0]], weights=[1.0, 3.0, 1.0, 1.0])
    np.testing.assert_allclose(got, [[1.0, 2.75, 2.75, 4.0]], atol=1e-15)
    # rows are independent
    got = isotonic([[2.0, 1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(got, [[1.5, 1.5], [1.0, 2.0]])


def test_isotonic_matches_scipy_rowwise():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(500, 9)).cumsum(axis=1) * rng.choice([-1, 1], size=(500, 1))
    w = rng.uniform(0.2, 3.0, size=9)
    expected = np.array([isotonic_regression(row, weights=w).x for row in q])
    np.testing.assert_allclose(isotonic(q, weights=w), expected, rtol=0, atol=1e-12)


def test_rearrange_hand_example():
    # Q rises 0 -> 2 on [.25, .5], falls 2 -> 1 on [.5, .75]. F(y) = 0.375 y on [1, 2], so the
    # rearranged value at 0.5 is 4/3 (sorting would give 1).
    got = rearrange([[0.0, 2.0, 1.0]], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(got, [[0.0, 4 / 3, 2.0]], atol=1e-14)


def test_rearrange_matches_dense_grid():
    rng = np.random.default_rng(5)
    taus = np.array([0.05, 0.1, 0.3, 0.5, 0.6, 0.9, 0.95])
    q = rng.normal(size=(20, taus.size))
    q[:, 3] = q[:, 2]  # a flat segment exercises the jump in F
    u = np.linspace(taus[0], taus[-1], 400_001)
    curve = np.array([np.interp(u, taus, row) for row in q])
    levels = (taus - taus[0]) / (taus[-1] - taus[0])
    dense = np.quantile(curve, levels, axis=1).T
    # grid step (0.9 / 4e5) times the steepest slope bounds the discretisation error
    np.testing.assert_allclose(rearrange(q, taus), dense, atol=2e-3)


def test_minmax_hand_example_raises_wis():
    taus = np.array([0.1, 0.5, 0.9])
    q = np.array([[0.0, 0.0, -10.0]])
    y = np.array([-10.0])
    np.testing.assert_array_equal(minmax_sweep(q, taus), [[0.0, 0.0, 0.0]])
    assert row_pinball_sum(y, q, taus)[0] == pytest.approx(14.0, abs=1e-12)
    assert row_pinball_sum(y, minmax_sweep(q, taus), taus)[0] == pytest.approx(15.0, abs=1e-12)
    assert row_pinball_sum(y, sort_quantiles(q), taus)[0] == pytest.approx(6.0, abs=1e-12)


def test_minmax_without_median_uses_nearest_level():
    # centre is 0.4 (nearest 0.5); 0.1 -> min(5, 1) = 1, 0.9 -> max(0, 1) = 1
    got = minmax_sweep([[5.0, 1.0, 0.0]], [0.1, 0.4, 0.9])
    np.testing.assert_array_equal(got, [[1.0, 1.0, 1.0]])


def test_postprocess_dispatch_and_errors():
    q = np.array([[2.0, 1.0, 3.0]])
    taus = [0.1, 0.5, 0.9]
    np.testing.assert_array_equal(postprocess(q, taus, "none"), q)
    np.testing.assert_array_equal(postprocess(q, taus, "sort"), [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(postprocess(q, taus, "isotonic"), [[1.5, 1.5, 3.0]])
    np.testing.assert_array_equal(postprocess(q, taus, "minmax"), [[1.0, 1.0, 3.0]])
    with pytest.raises(DataError, match="unknown post-processing method 'spline'"):
        postprocess(q, taus, "spline")
    with pytest.raises(DataError, match="3 columns but there are 2 levels"):
        postprocess(q, [0.1, 0.9], "sort")
    with pytest.raises(DataError, match=r"weights must have shape \(3,\)"):
        isotonic(q, weights=[1.0, 2.0])


def test_monotone_effect_counts():
    taus = [0.1, 0.5, 0.9]
    y = np.array([0.0, 1.0, 2.0])
    before = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 2.0], [3.0, 2.0, 1.0]])
    after = sort_quantiles(before)
    eff = monotone_effect(y, before, after, taus)
    assert eff["rows_crossing_before"] == 2 and eff["rows_crossing_after"] == 0
    assert eff["wis_after"] < eff["wis_before"]


# ---------------------------------------------------------------- properties

@settings(max_examples=300, deadline=None)
@given(problems())
def test_sort_and_isotonic_never_raise_pinball_for_any_outcome(problem):
    y, q, taus = problem
    before = row_pinball_sum(y, q, taus)
    tol = slack(y, q)
    assert np.all(row_pinball_sum(y, sort_quantiles(q), taus) <= before + tol)
    assert np.all(row_pinball_sum(y, isotonic(q), taus) <= before + tol)


@settings(max_examples=200, deadline=None)
@given(problems(), st.data())
def test_weighted_isotonic_never_raises_weighted_pinball(problem, data):
    y, q, taus = problem
    w = data.draw(hnp.arrays(float, taus.size, elements=st.floats(0.1, 10.0)))
    after = isotonic(q, weights=w)
    tol = slack(y, q) * w.max()
    assert np.all(row_pinball_sum(y, after, taus, w) <= row_pinball_sum(y, q, taus, w) + tol)


@settings(max_examples=200, deadline=None)
@given(problems())
def test_outputs_monotone(problem):
    _, q, taus = problem
    for method in METHODS[1:]:
        out = postprocess(q, taus, method)
        assert out.shape == q.shape
        assert np.all(np.diff(out, axis=1) >= 0), method


@settings(max_examples=200, deadline=None)
@given(problems())
def test_monotone_inputs_unchanged(problem):
    _, q, taus = problem
    mono = np.sort(q, axis=1)
    for method in ("sort", "isotonic", "minmax"):
        np.testing.assert_array_equal(postprocess(mono, taus, method), mono, err_msg=method)
    scale = 1.0 + np.abs(mono).max()
    np.testing.assert_allclose(rearrange(mono, taus), mono, rtol=0, atol=1e-12 * scale)


@settings(max_examples=200, deadline=None)
@given(problems())
def test_minmax_only_widens_central_intervals(problem):
    _, q, taus = problem
    out = minmax_sweep(q, taus)
    assert np.all(out[:, taus < 0.5] <= q[:, taus < 0.5])
    assert np.all(out[:, taus > 0.5] >= q[:, taus > 0.5])


@settings(max_examples=200, deadline=None)
@given(problems())
def test_rearrange_end_points_are_row_min_and_max(problem):
    _, q, taus = problem
    out = rearrange(q, taus)
    np.testing.assert_allclose(out[:, 0], q.min(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[:, -1], q.max(axis=1), rtol=0, atol=1e-9)


def test_hypothesis_finds_minmax_raising_wis():
    """Existence: some quantile row, levels and outcome where the sweep increases WIS."""

    def raises_wis(problem):
        y, q, taus = problem
        return bool(np.any(row_pinball_sum(y, minmax_sweep(q, taus), taus)
                           > row_pinball_sum(y, q, taus) + 1e-9))

    y, q, taus = find(problems(min_r=3, max_r=5), raises_wis, settings=settings(max_examples=5000))
    assert raises_wis((y, q, taus))
