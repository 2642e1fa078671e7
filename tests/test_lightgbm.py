"""LightGBMQuantile: the learner protocol, calibration on a known heteroscedastic model,
agreement with a direct LightGBM booster, reproducibility and errors (skipped without LightGBM)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.stats import norm

from qaggstats.crossfit import crossfit
from qaggstats.errors import DataError, FitError, LearnerTypeError
from qaggstats.learners import LightGBMQuantile, QuantileLearner, check_learner

lightgbm = pytest.importorskip("lightgbm")

TAUS = np.array([0.1, 0.5, 0.9])


def hetero(n: int, seed: int):
    """y = x + (0.5 + x)·ε, x ~ U(0, 2): the true τ-quantile is x + (0.5 + x)·Φ⁻¹(τ)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, n)
    return x[:, None], x + (0.5 + x) * rng.standard_normal(n)


def test_protocol_and_shapes():
    learner = LightGBMQuantile(n_estimators=20)
    check_learner(learner, "lgbm")
    assert isinstance(learner, QuantileLearner)
    X, y = hetero(300, 0)
    pred = learner.fit(X, y, TAUS).predict(X[:7])
    assert pred.shape == (7, 3) and np.isfinite(pred).all()


def test_calibrated_on_known_quantiles():
    """Held-out coverage of each level within 0.03 of nominal (n_test = 4000: SE ≤ 0.0075)."""
    X, y = hetero(4000, 1)
    Xt, yt = hetero(4000, 2)
    q = LightGBMQuantile(n_estimators=100, num_leaves=7).fit(X, y, TAUS).predict(Xt)
    cover = (yt[:, None] <= q).mean(axis=0)
    assert np.all(np.abs(cover - TAUS) < 0.03), cover
    # and close to the true conditional quantiles in the bulk of x
    truth = Xt[:, 0][:, None] + (0.5 + Xt[:, 0][:, None]) * norm.ppf(TAUS)
    assert np.median(np.abs(q - truth)) < 0.25


def test_matches_a_direct_lightgbm_booster():
    X, y = hetero(500, 3)
    ours = LightGBMQuantile(n_estimators=30, num_leaves=7, random_state=4).fit(X, y, TAUS)
    for k, tau in enumerate(TAUS):
        direct = lightgbm.LGBMRegressor(objective="quantile", alpha=tau, n_estimators=30, num_leaves=7,
                                        min_child_samples=20, random_state=4, n_jobs=1,
                                        verbose=-1).fit(X, y)
        np.testing.assert_allclose(ours.predict(X[:50])[:, k], direct.predict(X[:50]), rtol=0, atol=1e-12)


def test_one_thread_and_reproducible_with_bagging():
    X, y = hetero(400, 5)
    a = LightGBMQuantile(n_estimators=20, subsample=0.7, random_state=1).fit(X, y, TAUS)
    b = LightGBMQuantile(n_estimators=20, subsample=0.7, random_state=1).fit(X, y, TAUS)
    c = LightGBMQuantile(n_estimators=20, subsample=0.7, random_state=2).fit(X, y, TAUS)
    assert all(m.get_params()["n_jobs"] == 1 for m in a.models_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert not np.array_equal(a.predict(X), c.predict(X))


def test_crossfit_fills_random_state_and_deepcopies():
    X, y = hetero(200, 6)
    learner = LightGBMQuantile(n_estimators=10, random_state=None)
    cf = crossfit({"lgbm": learner}, {"lgbm": X}, y, TAUS, cv=3, seed=7)
    assert cf.Q.shape == (200, 1, 3) and learner.random_state is None
    assert cf.fitted["lgbm"].random_state is not None
    copy.deepcopy(cf.fitted["lgbm"]).predict(X[:2])


@pytest.mark.parametrize("kw, word", [({"n_estimators": 0}, "n_estimators"), ({"num_leaves": 1}, "num_leaves"),
                                      ({"subsample": 1.5}, "subsample"), ({"learning_rate": 0.0}, "learning_rate"),
                                      ({"random_state": 1.5}, "random_state")])
def test_bad_parameters_name_themselves(kw, word):
    with pytest.raises(DataError, match=word):
        LightGBMQuantile(**kw)


def test_errors():
    X, y = hetero(100, 8)
    with pytest.raises(FitError, match="not fitted"):
        LightGBMQuantile().predict(X)
    fitted = LightGBMQuantile(n_estimators=5).fit(X, y, TAUS)
    with pytest.raises(DataError, match="columns"):
        fitted.predict(np.zeros((2, 3)))


def test_missing_lightgbm_gives_install_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_lightgbm(name, *args, **kwargs):
        if name == "lightgbm":
            raise ImportError("no lightgbm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lightgbm)
    X, y = hetero(50, 9)
    with pytest.raises(LearnerTypeError, match=r"pip install 'qaggstats\[lightgbm\]'"):
        LightGBMQuantile(n_estimators=5).fit(X, y, TAUS)
