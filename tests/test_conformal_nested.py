"""Nested CV+ (the paper's conformal scheme for an aggregate) by simulation.

Each replication draws a fresh training set and test set (a fresh partition): x ~ U(-2, 2),
y = x + (1 + |x|) * eps with eps ~ t_3. Two cheap base learners, both mis-specified: a
homoscedastic Gaussian linear fit and the unconditional empirical quantiles. The aggregation
is a convex weight between them, one per level, picked from a grid by pinball loss on the
out-of-fold base predictions: data-dependent, so leaking a scored row into its own fold
model matters. The nested scheme refits the base learners without two folds and the weights
without one, as :func:`qaggstats.conformal.nested_cv_plus` and
:func:`qaggstats.crossfit.crossfit_pairs` do inside ``qagg(conformal="cv+")``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import qaggstats as qa
from qaggstats.conformal import cv_plus_bound, nested_cv_plus
from qaggstats.errors import CalibrationError

TAUS = np.array([0.05, 0.1, 0.5, 0.9, 0.95])
Z = stats.norm.ppf(TAUS)
GRID = np.linspace(0.0, 1.0, 6)
K = 5


def base_fit(x, y, keep):
    """Both base learners fitted on the rows ``keep`` (reps, n) of each replication."""
    w = keep.astype(float)
    cnt = w.sum(-1)
    mx, my = (w * x).sum(-1) / cnt, (w * y).sum(-1) / cnt
    b = (w * (x - mx[:, None]) * (y - my[:, None])).sum(-1) / (w * (x - mx[:, None]) ** 2).sum(-1)
    a = my - b * mx
    s = np.sqrt((w * (y - a[:, None] - b[:, None] * x) ** 2).sum(-1) / (cnt - 2))
    marg = np.nanquantile(np.where(keep, y, np.nan), TAUS, axis=-1).T  # (reps, r)
    return a, b, s, marg


def base_predict(params, x):
    """Base quantiles (reps, m, p=2, r)."""
    a, b, s, marg = params
    lin = (a[:, None] + b[:, None] * x)[..., None] + s[:, None, None] * Z
    return np.stack([lin, np.broadcast_to(marg[:, None, :], lin.shape)], axis=2)


def pinball(y, q):
    u = y[..., None] - q
    return np.mean(np.maximum(TAUS * u, (TAUS - 1) * u), axis=-2)


def fit_weights(Q, y):
    """Per-level convex weight of model 0, from GRID, minimising the pinball loss: (r,)."""
    losses = np.stack([pinball(y, g * Q[:, 0] + (1 - g) * Q[:, 1]) for g in GRID])
    return GRID[np.argmin(losses, axis=0)]


def combine(w, Q):
    return np.sort(w * Q[..., 0, :] + (1 - w) * Q[..., 1, :], axis=-1)


def test_nested_cv_plus_guarantee_over_1000_partitions():
    rng = np.random.default_rng(2026)
    reps, n, m = 1000, 100, 100
    x = rng.uniform(-2, 2, (reps, n + m))
    y = x + (1 + np.abs(x)) * rng.standard_t(3, (reps, n + m))
    x_tr, y_tr, x_te, y_te = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    folds = np.arange(n) % K
    # base learners without fold k (outer) and without folds {k, j} (inner), vectorised over reps
    outer = [base_fit(x_tr, y_tr, np.broadcast_to(folds != k, x_tr.shape)) for k in range(K)]
    Q_oof = np.empty((reps, n, 2, TAUS.size))
    Q_pairs = np.full((reps, K, n, 2, TAUS.size), np.nan)
    for k in range(K):
        Q_oof[:, folds == k] = base_predict(outer[k], x_tr[:, folds == k])
        for j in range(K):
            if j != k:
                pair = base_fit(x_tr, y_tr, np.broadcast_to((folds != k) & (folds != j), x_tr.shape))
                Q_pairs[:, k, folds == j] = base_predict(pair, x_tr[:, folds == j])
    Q_test = np.stack([base_predict(outer[k], x_te) for k in range(K)], axis=1)  # (reps, K, m, 2, r)
    Q_full = base_predict(base_fit(x_tr, y_tr, np.ones_like(x_tr, dtype=bool)), x_te)

    covered = {(0, 4): [], (1, 3): []}
    raw = {(0, 4): [], (1, 3): []}
    for i in range(reps):
        seen = []

        def fit(k, train, inner):
            assert not np.isin(train, np.flatnonzero(folds == k)).any()
            assert inner.max() == K - 2 and np.array_equal(np.unique(inner), np.arange(K - 1))
            seen.append(k)
            return fit_weights(Q_pairs[i, k, train], y_tr[i, train])

        def predict(w, k, rows):
            return combine(w, Q_oof[i, rows])

        cal, weights = nested_cv_plus(y_tr[i], folds, TAUS, fit, predict)
        assert seen == list(range(K))
        q = cal.apply(np.stack([combine(weights[k], Q_test[i, k]) for k in range(K)]))
        q_raw = combine(fit_weights(Q_oof[i], y_tr[i]), Q_full[i])
        for lo, hi in covered:
            covered[(lo, hi)].append(np.mean((q[:, lo] <= y_te[i]) & (y_te[i] <= q[:, hi])))
            raw[(lo, hi)].append(np.mean((q_raw[:, lo] <= y_te[i]) & (y_te[i] <= q_raw[:, hi])))
    for (lo, hi), cov in covered.items():
        alpha = 2 * TAUS[lo]
        cov = np.asarray(cov)
        mean, se = cov.mean(), cov.std(ddof=1) / np.sqrt(reps)
        mean_raw = np.mean(raw[(lo, hi)])
        bound = cv_plus_bound(alpha, n, K)
        print(f"nested CV+ {1 - alpha:.0%}: coverage {mean:.4f} ± {se:.4f}, guaranteed >= {bound:.4f}, "
              f"raw aggregate {mean_raw:.4f}")
        assert mean - 3 * se >= bound          # the theorem: >= 1 - 2 alpha - O(K/n)
        assert mean + 3 * se >= 1 - alpha      # typically >= 1 - alpha
        assert mean - 3 * se <= 1 - alpha + 0.04  # and not vacuous: near the nominal level
        # and nearer the nominal level than the uncalibrated aggregate
        assert abs(mean - (1 - alpha)) < abs(mean_raw - (1 - alpha))


# ----------------------------------------------------------------------------- inside qagg

@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(5)
    n = 240
    x = rng.uniform(0, 3, n)
    return pd.DataFrame({"y": 1 + x + (0.3 + x) * rng.standard_normal(n), "x": x})


def _models():
    return {"linear": qa.learners.LinearQR(), "knn": qa.learners.KNN(k=15)}


@pytest.mark.parametrize("family", ["quantile", "local"])
def test_fold_aggregate_never_sees_its_fold(frame, family, tmp_path):
    """Changing the responses of fold 0 leaves fold model 0 (base learners, weights, basis) and
    its predictions unchanged, and changes the full-data weights: the fold aggregate is fitted
    without its fold, as nested CV+ requires."""
    taus = [0.1, 0.5, 0.9]
    fit = qa.qagg("y ~ x", frame, models=_models(), taus=taus, family=family, conformal="cv+", cv=3, seed=1, n_jobs=1)
    folds = fit._base.crossfit.folds
    moved = frame.copy()
    moved.loc[folds == 0, "y"] += np.random.default_rng(0).normal(0, 5, int((folds == 0).sum()))
    fit2 = qa.qagg("y ~ x", moved, models=_models(), taus=taus, family=family, conformal="cv+", cv=3, seed=1, n_jobs=1)
    assert np.array_equal(fit2._base.crossfit.folds, folds)
    new = frame.head(20)
    X, _ = fit.predictor.designs(new)
    X2, _ = fit2.predictor.designs(new)
    f1, f2 = fit.predictor._fold_predictions(X), fit2.predictor._fold_predictions(X2)
    assert len(f1) == 3
    np.testing.assert_array_equal(f1[0], f2[0])
    assert not np.allclose(f1[1], f2[1])  # folds 1 and 2 were trained on the moved rows
    assert not np.allclose(fit.weight_fit.alpha, fit2.weight_fit.alpha)
    # and the saved fit predicts the same nested intervals
    back = qa.load(fit.save(tmp_path / "nested.qagg"))
    assert back.predict(new).equals(fit.predict(new))


def test_nested_cv_plus_needs_three_folds(frame):
    with pytest.raises(CalibrationError, match="cv >= 3"):
        qa.qagg("y ~ x", frame, models=_models(), taus=[0.1, 0.5, 0.9], conformal="cv+", cv=2)


def test_n_folds_is_the_jackknife_plus():
    """With one row per fold, nested CV+ gives Barber et al.'s jackknife+ interval, written out
    here directly: leave-one-out models, residuals R_i, and the floor(alpha (n+1))-th smallest /
    ceil((1 - alpha)(n+1))-th smallest of mu_{-i}(x) -/+ R_i."""
    rng = np.random.default_rng(0)
    n, alpha = 24, 0.2
    y = rng.normal(size=n)
    taus = [0.1, 0.5, 0.9]

    def loo_model(train):  # the "aggregate": the training rows' empirical quantiles
        return np.quantile(y[train], taus)

    def fit(k, train, inner):
        assert train.size == n - 1 and inner.max() == n - 2
        return loo_model(train)

    cal, models = nested_cv_plus(y, np.arange(n), taus, fit, lambda m, k, rows: np.tile(m, (rows.size, 1)))
    x_pred = np.stack([np.tile(m, (1, 1)) for m in models])  # every fold model at one new point
    got = cal.apply(x_pred)[0]
    mu = np.array([loo_model(np.delete(np.arange(n), i)) for i in range(n)])
    R = np.maximum(mu[:, 0] - y, y - mu[:, 2])
    lo = np.sort(mu[:, 0] - R)[int(np.floor(alpha * (n + 1))) - 1]
    hi = np.sort(mu[:, 2] + R)[int(np.ceil((1 - alpha) * (n + 1))) - 1]
    assert got[0] == pytest.approx(lo) and got[2] == pytest.approx(hi)
    assert cv_plus_bound(alpha, n, n) == pytest.approx(1 - 2 * alpha)  # Barber et al., Theorem 1
