"""Tests of qaggstats.conformal: exact small cases, errors, nesting, coverage simulations.

Simulation model: x ~ U(-2, 2), y = x + (1 + |x|) * eps with eps ~ t_3 (heteroscedastic,
heavy-ish tails). The base quantile model is mis-specified on purpose: a homoscedastic
Gaussian linear fit, q_tau(x) = a + b x + s * z_tau, with a, b by least squares and s the
residual standard deviation. Replications are stacked on a leading axis and calibrated in one
call of the array functions.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qaggstats.conformal import (
    CVPlusCQR,
    SplitCQR,
    apply_cqr,
    conformity_scores,
    cqr_corrections,
    cv_plus_bound,
    fit_cqr,
    fit_cvplus,
    min_calibration_size,
)
from qaggstats.errors import CalibrationError, DataError

TAUS = np.array([0.05, 0.1, 0.5, 0.9, 0.95])  # 90% and 80% intervals plus the median
Z = stats.norm.ppf(TAUS)


def simulate(rng, reps, n):
    x = rng.uniform(-2, 2, size=(reps, n))
    y = x + (1 + np.abs(x)) * rng.standard_t(3, size=(reps, n))
    return x, y


def fit_gaussian_linear(x, y, mask=None):
    """Per-replication least squares on rows where mask is True; returns (a, b, s), each (reps,)."""
    w = np.ones_like(x) if mask is None else mask.astype(float)
    cnt = w.sum(axis=-1)
    mx = (w * x).sum(axis=-1) / cnt
    my = (w * y).sum(axis=-1) / cnt
    dx = x - mx[..., None]
    b = (w * dx * (y - my[..., None])).sum(axis=-1) / (w * dx**2).sum(axis=-1)
    a = my - b * mx
    resid = y - a[..., None] - b[..., None] * x
    s = np.sqrt((w * resid**2).sum(axis=-1) / (cnt - 2))
    return a, b, s


def predict(a, b, s, x):
    """Quantiles (..., m, r) of the homoscedastic Gaussian linear model."""
    return (a[..., None] + b[..., None] * x)[..., None] + s[..., None, None] * Z


def coverage(y, q, lo, hi):
    return np.mean((q[..., lo] <= y) & (y <= q[..., hi]), axis=-1)


# ---------------------------------------------------------------- exact small cases

def test_corrections_hand_values():
    y = np.arange(10.0)
    q = np.tile([4.0, 5.0], (10, 1))
    # scores max(4 - y, y - 5) = 4,3,2,1,0,0,1,2,3,4; alpha = .2 -> rank ceil(11 * .8) = 9 -> 4
    assert cqr_corrections(y, q, [0.1, 0.9]).tolist() == [4.0]
    # asymmetric: alpha/2 = .1 -> rank ceil(11 * .9) = 10; lower 4 - y max 4, upper y - 5 max 4
    assert cqr_corrections(y, q, [0.1, 0.9], asymmetric=True).tolist() == [[4.0, 4.0]]
    np.testing.assert_array_equal(conformity_scores(y, 4.0, 5.0)[:3], [4.0, 3.0, 2.0])


def test_rank_and_minimum_size():
    for a in np.linspace(0.01, 0.99, 197):
        n = min_calibration_size(a)
        assert np.ceil((n + 1) * (1 - a) - 1e-9) <= n
        if n > 1:
            assert np.ceil(n * (1 - a) - 1e-9) > n - 1
    assert [min_calibration_size(a) for a in (0.1, 0.2, 0.05)] == [9, 4, 19]


def test_too_few_calibration_points():
    # alpha = 0.1 needs n_cal >= 1/alpha - 1 = 9; per side (asymmetric) 1/0.05 - 1 = 19
    q = np.tile([-1.0, 0.0, 1.0], (8, 1))
    with pytest.raises(CalibrationError, match=r"at least 9 calibration points for the 90% "
                                               r"interval \(levels 0.05, 0.95\); got n_cal = 8\. .*larger cal_size=.*"
                                               r"conformal=\"cv\+\""):
        SplitCQR.fit(np.zeros(8), q, [0.05, 0.5, 0.95])
    cal = SplitCQR.fit(np.arange(9.0), np.tile([-1.0, 0.0, 1.0], (9, 1)), [0.05, 0.5, 0.95])
    assert cal.corrections.tolist() == [7.0]  # rank ceil(10 * 0.9) = 9: the largest score
    with pytest.raises(CalibrationError, match=r"asymmetric split CQR needs at least 19"):
        SplitCQR.fit(np.zeros(18), np.tile([-1.0, 1.0], (18, 1)), [0.05, 0.95], asymmetric=True)
    with pytest.raises(CalibrationError, match="CV\\+ CQR needs at least 9"):
        CVPlusCQR.fit(np.zeros(8), np.zeros((8, 2)), np.arange(8) % 2, [0.05, 0.95])
    with pytest.raises(CalibrationError, match="no pair"):
        SplitCQR.fit(np.zeros(50), np.zeros((50, 2)), [0.1, 0.5])


def test_input_errors():
    with pytest.raises(DataError, match="expected y"):
        SplitCQR.fit(np.zeros(20), np.zeros((20, 3)), [0.1, 0.9])
    with pytest.raises(DataError, match="fold ids must be 0 .. K-1"):
        CVPlusCQR.fit(np.zeros(20), np.zeros((20, 2)), np.arange(20) % 3 + 1, [0.1, 0.9])
    cal = CVPlusCQR.fit(np.zeros(20), np.zeros((20, 2)), np.arange(20) % 4, [0.1, 0.9])
    with pytest.raises(DataError, match=r"q_folds must have shape \(4, m, 2\)"):
        cal.apply(np.zeros((3, 5, 2)))


def test_cv_plus_hand_values():
    # two folds, constant fold models; scores R = max(-1 - y, y - 1)
    y = np.array([0.0, 0.5, 2.0, -3.0, 1.5, 0.0, -0.5, 3.0, 0.2, -1.2])
    folds = np.arange(10) % 2
    q_oof = np.tile([-1.0, 1.0], (10, 1))
    cal = CVPlusCQR.fit(y, q_oof, folds, [0.1, 0.9])
    r = np.maximum(-1 - y, y - 1)
    np.testing.assert_allclose(cal.scores[0], r)
    # fold model k predicts (-1 + k, 1 + k) for the one new point
    q_folds = np.array([[[-1.0, 1.0]], [[0.0, 2.0]]])
    out = cal.apply(q_folds)
    alpha = 0.2  # ranks: floor(.2 * 11) = 2, ceil(.8 * 11) = 9
    lows = q_folds[folds, 0, 0] - r
    highs = q_folds[folds, 0, 1] + r
    assert out[0, 0] == np.sort(lows)[1] and out[0, 1] == np.sort(highs)[8]
    assert cal.coverage_band(alpha)[0] == pytest.approx(cv_plus_bound(alpha, 10, 2))


# ---------------------------------------------------------------- nesting and non-crossing

def test_nesting_and_noncrossing_after_calibration():
    rng = np.random.default_rng(7)
    n, m = 300, 400
    taus = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    x = rng.uniform(-2, 2, n + m)
    y = x + (1 + np.abs(x)) * rng.standard_t(3, n + m)
    # base quantiles that cross: the 90% and 50% intervals are too narrow, the 80% too wide
    width = np.array([-0.5, -3.0, -0.4, 0.0, 0.4, 3.0, 0.5])
    q = x[:, None] + width + rng.normal(scale=1.0, size=(n + m, taus.size))
    for asymmetric in (False, True):
        cal = SplitCQR.fit(y[:n], q[:n], taus, asymmetric=asymmetric)
        out = cal.apply(q[n:])
        assert np.all(np.diff(out, axis=1) >= 0)
        # the envelope only widens: compare with the corrected bounds before the envelope
        corrected = q[n:].copy()
        c = cal.corrections
        for j, (lo, hi) in enumerate(cal.pairs):
            c_lo, c_hi = (c[j, 0], c[j, 1]) if asymmetric else (c[j], c[j])
            corrected[:, lo] -= c_lo
            corrected[:, hi] += c_hi
        # without the envelope about half the rows would cross (measured 0.51 / 0.47)
        assert np.mean(np.any(np.diff(corrected, axis=1) < 0, axis=1)) > 0.3
        lower, upper = taus < 0.5, taus > 0.5
        assert np.all(out[:, lower] <= corrected[:, lower])
        assert np.all(out[:, upper] >= corrected[:, upper])
        # nested: each outer interval contains the inner one
        for (lo_out, hi_out), (lo_in, hi_in) in zip(cal.pairs, cal.pairs[1:]):
            assert np.all((out[:, lo_out] <= out[:, lo_in]) & (out[:, hi_in] <= out[:, hi_out]))
    # the median is the envelope's centre and is never corrected
    np.testing.assert_array_equal(out[:, 3], q[n:, 3])


# ---------------------------------------------------------------- coverage simulations

REPS, N_TRAIN, N_CAL, N_TEST = 400, 200, 105, 500


@pytest.fixture(scope="module")
def split_sim():
    rng = np.random.default_rng(20240601)
    x, y = simulate(rng, REPS, N_TRAIN + N_CAL + N_TEST)
    tr, ca, te = np.split(np.arange(x.shape[1]), [N_TRAIN, N_TRAIN + N_CAL])
    a, b, s = fit_gaussian_linear(x[:, tr], y[:, tr])
    return y[:, ca], predict(a, b, s, x[:, ca]), y[:, te], predict(a, b, s, x[:, te])


def mean_and_se(cov):
    return cov.mean(), cov.std(ddof=1) / np.sqrt(cov.size)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_split_cqr_coverage_in_band(split_sim, asymmetric):
    y_cal, q_cal, y_te, q_te = split_sim
    corr = cqr_corrections(y_cal, q_cal, TAUS, asymmetric=asymmetric)     # (reps, k[, 2])
    q_cqr = apply_cqr(q_te, TAUS, corr, asymmetric=asymmetric)            # (reps, m, r)
    one = SplitCQR.fit(y_cal[0], q_cal[0], TAUS, asymmetric=asymmetric)
    np.testing.assert_array_equal(one.apply(q_te[0]), q_cqr[0])
    for lo, hi in [(0, 4), (1, 3)]:
        alpha = 2 * TAUS[lo]
        low, high = one.coverage_band(alpha)
        mean_cal, se_cal = mean_and_se(coverage(y_te, q_cqr, lo, hi))
        mean_raw, se_raw = mean_and_se(coverage(y_te, q_te, lo, hi))
        print(f"asym={asymmetric} nominal={1 - alpha:.2f} band=[{low:.4f}, {high:.4f}] "
              f"calibrated={mean_cal:.4f}±{se_cal:.4f} raw={mean_raw:.4f}±{se_raw:.4f}")
        assert low - 3 * se_cal <= mean_cal <= high + 3 * se_cal
        assert not (low - 3 * se_raw <= mean_raw <= high + 3 * se_raw)


def test_split_cqr_conditional_coverage_spread_matches_beta(split_sim):
    # Across replications the test coverage should spread like the beta-binomial band.
    y_cal, q_cal, y_te, q_te = split_sim
    q_cqr = apply_cqr(q_te, TAUS, cqr_corrections(y_cal, q_cal, TAUS))
    cal = SplitCQR.fit(y_cal[0], q_cal[0], TAUS)
    for lo, hi in [(0, 4), (1, 3)]:
        alpha = 2 * TAUS[lo]
        low, high = cal.binomial_band(alpha, N_TEST)
        share = np.mean((coverage(y_te, q_cqr, lo, hi) >= low)
                        & (coverage(y_te, q_cqr, lo, hi) <= high))
        print(f"nominal={1 - alpha:.2f} beta-binomial band=[{low:.3f}, {high:.3f}] "
              f"share inside={share:.3f}")
        # 95% band; binomial SE of the share over 400 reps is about 0.011
        assert 0.95 - 0.035 <= share <= 1.0
    report = cal.check_coverage(y_te[0], q_cqr[0])
    assert list(report.columns) == ["nominal", "observed", "band_low", "band_high", "inside", "n"]
    assert report["nominal"].tolist() == [0.9, 0.8] and report["n"].tolist() == [N_TEST] * 2


def test_cv_plus_coverage_above_bound():
    rng = np.random.default_rng(99)
    reps, n, m, k = 200, 200, 300, 5
    x, y = simulate(rng, reps, n + m)
    x_tr, y_tr, x_te, y_te = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    folds = np.arange(n) % k
    q_oof = np.empty((reps, n, TAUS.size))
    q_folds = np.empty((reps, k, m, TAUS.size))
    for f in range(k):
        a, b, s = fit_gaussian_linear(x_tr, y_tr, mask=np.broadcast_to(folds != f, x_tr.shape))
        q_oof[:, folds == f] = predict(a, b, s, x_tr[:, folds == f])
        q_folds[:, f] = predict(a, b, s, x_te)
    cals = [CVPlusCQR.fit(y_tr[i], q_oof[i], folds, TAUS) for i in range(reps)]
    q_cv = np.stack([cal.apply(q_folds[i]) for i, cal in enumerate(cals)])
    report = cals[0].check_coverage(y_te[0], q_cv[0])
    assert report["band_high"].tolist() == [1.0, 1.0] and report["inside"].all()
    assert np.all(np.diff(q_cv, axis=-1) >= 0)
    for lo, hi in [(0, 4), (1, 3)]:
        alpha = 2 * TAUS[lo]
        bound = cv_plus_bound(alpha, n, k)
        mean_cv, se_cv = mean_and_se(coverage(y_te, q_cv, lo, hi))
        mean_raw, _ = mean_and_se(coverage(y_te, q_folds.mean(axis=1), lo, hi))
        print(f"CV+ nominal={1 - alpha:.2f} bound={bound:.4f} coverage={mean_cv:.4f}±{se_cv:.4f} "
              f"raw={mean_raw:.4f}")
        assert mean_cv - 3 * se_cv >= bound
        # in practice CV+ sits near the nominal level, much nearer than the raw model
        assert abs(mean_cv - (1 - alpha)) < abs(mean_raw - (1 - alpha))


def test_pipeline_spellings_match_classes():
    rng = np.random.default_rng(3)
    y = rng.normal(size=60)
    q = np.tile([-1.0, 0.0, 1.0], (60, 1)) + rng.normal(scale=0.1, size=(60, 3))
    taus = [0.1, 0.5, 0.9]
    for method, asym in (("symmetric", False), ("asymmetric", True)):
        np.testing.assert_array_equal(fit_cqr(q, y, taus, method=method).corrections,
                                      SplitCQR.fit(y, q, taus, asymmetric=asym).corrections)
    with pytest.raises(CalibrationError, match="unknown CQR method 'both'"):
        fit_cqr(q, y, taus, method="both")
    folds = np.arange(60) % 3
    cal = fit_cvplus(q, y, folds, taus)
    assert cal.coverage_bound(0.2) == pytest.approx(cv_plus_bound(0.2, 60, 3))
    np.testing.assert_array_equal(cal.scores, CVPlusCQR.fit(y, q, folds, taus).scores)
