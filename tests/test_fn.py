"""Frisch–Newton interior point (qaggstats._fn) and the certified vertex snap of rq_fit."""
import numpy as np
import pytest
from scipy.optimize import linprog

from qaggstats._fn import fn_solve
from qaggstats.datasets import load
from qaggstats.quantreg import _vertex, check_loss, rq_fit


def _lp_objective(X, y, tau):
    """The LP optimum by HiGHS on R's br dual (the reference path), as a check loss."""
    res = linprog(-y, A_eq=X.T, b_eq=(1 - tau) * X.sum(axis=0), bounds=(0, 1), method="highs-ds")
    assert res.status == 0
    return check_loss(y - X @ (-res.eqlin.marginals), tau)


def _engel():
    df = load("engel")
    return np.column_stack([np.ones(len(df)), df["income"]]), df["foodexp"].to_numpy()


def _synthetic(n=600, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, d - 1))])
    return X, X @ rng.standard_normal(d) + rng.standard_t(3, n)


@pytest.mark.parametrize("tau", [0.05, 0.25, 0.5, 0.75, 0.95])
@pytest.mark.parametrize("data", [_engel, _synthetic])
def test_fn_reaches_the_lp_optimum_and_the_snap_is_exact(data, tau):
    X, y = data()
    ref = _lp_objective(X, y, tau)
    fit = fn_solve(X, y, tau)
    assert fit.converged and fit.iterations < 50
    assert check_loss(y - X @ fit.beta, tau) == pytest.approx(ref, rel=1e-7)
    beta, obj = rq_fit(X, y, tau)
    assert obj == pytest.approx(ref, rel=1e-12)
    # a vertex: d observations interpolated exactly
    assert np.sum(np.abs(y - X @ beta) <= 1e-9 * np.abs(y).max()) >= X.shape[1]


def test_vertex_refuses_a_point_that_is_not_optimal():
    X, y = _synthetic()
    ols = np.linalg.lstsq(X, y, rcond=None)[0]
    # the d rows nearest the least-squares fit give a vertex, but not the 0.9 optimum
    assert _vertex(X, y, 0.9, ols) is None


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_ties_and_duplicated_rows_still_give_the_optimum(tau):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 400).astype(float)            # few distinct rows: heavy degeneracy
    y = np.round(x + rng.standard_normal(400))            # integer response: many ties
    X = np.column_stack([np.ones(400), x])
    X, y = np.vstack([X, X[:50]]), np.concatenate([y, y[:50]])
    _, obj = rq_fit(X, y, tau)
    assert obj == pytest.approx(_lp_objective(X, y, tau), rel=1e-12)


def test_zero_weights_equal_dropping_the_rows():
    X, y = _synthetic(300, 3, seed=5)
    w = np.ones(300)
    w[::7] = 0.0
    b_w, o_w = rq_fit(X, y, 0.3, w)
    b_d, o_d = rq_fit(X[w > 0], y[w > 0], 0.3)
    np.testing.assert_allclose(b_w, b_d, rtol=1e-10, atol=1e-12)
    assert o_w == pytest.approx(o_d, rel=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.02, 0.1])
def test_a_start_gives_the_same_optimum(shift):
    X, y = _synthetic(3000, 4, seed=7)
    b0, _ = rq_fit(X, y, 0.5)
    beta, obj = rq_fit(X, y, 0.5 + shift, start=b0)
    ref_beta, ref = rq_fit(X, y, 0.5 + shift)
    assert obj == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(beta, ref_beta, rtol=1e-9, atol=1e-12)


def test_the_band_is_used_and_certified_near_the_start():
    from qaggstats.quantreg import _banded_vertex, _equilibrate
    X, y = _synthetic(3000, 4, seed=8)
    b0, _ = rq_fit(X, y, 0.5)
    Q, ys, size, _ = _equilibrate(X, y)
    h = _banded_vertex(Q, ys, 0.52, (y - X @ b0) / size)
    assert h is not None                                     # the small problem sufficed
    beta = np.linalg.solve(X[h], y[h])
    assert check_loss(y - X @ beta, 0.52) == pytest.approx(_lp_objective(X, y, 0.52), rel=1e-12)
    # a start far from the answer: the band misses it, the certificate refuses
    far = np.linalg.lstsq(X, y, rcond=None)[0] + 5.0
    assert _banded_vertex(Q, ys, 0.95, (y - X @ far) / size) is None


def test_linear_learner_warm_starts_close_levels_to_the_same_fits():
    from qaggstats.learners import LinearQR
    X, y = _synthetic(2000, 3, seed=9)
    taus = np.arange(1, 20) / 20
    fit = LinearQR().fit(X, y, taus)
    for k, tau in enumerate(taus):
        assert fit.objective_[k] == pytest.approx(_lp_objective(X, y, tau), rel=1e-12)
