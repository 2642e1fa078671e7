"""Issue 14: rq_fit and LinearQR give the unit-scale fit whatever the units of y and x."""
import numpy as np
import pandas as pd
import pytest

from qaggstats.datasets import load
from qaggstats.errors import DataError
from qaggstats.learners import LinearQR
from qaggstats.quantreg import rq_fit

TAUS = [0.1, 0.5, 0.9]


def _engel():
    df = load("engel")
    return df["income"].to_numpy(), df["foodexp"].to_numpy()


@pytest.mark.parametrize("scale", [1e-7, 1e-3, 1e3, 1e9])
@pytest.mark.parametrize("tau", TAUS)
def test_response_scale_gives_the_scaled_unit_fit(scale, tau):
    x, y = _engel()
    X = np.column_stack([np.ones(x.size), x])
    b1, o1 = rq_fit(X, y, tau)
    bs, os_ = rq_fit(X, y * scale, tau)
    np.testing.assert_allclose(bs / scale, b1, rtol=1e-7)
    assert os_ / scale == pytest.approx(o1, rel=1e-7)


@pytest.mark.parametrize("tau", TAUS)
def test_shifted_predictor_gives_the_same_fitted_quantiles(tau):
    x, y = _engel()
    b1, o1 = rq_fit(np.column_stack([np.ones(x.size), x]), y, tau)
    Xs = np.column_stack([np.ones(x.size), x + 1e7])
    bs, os_ = rq_fit(Xs, y, tau)
    assert bs[1] == pytest.approx(b1[1], rel=1e-7)
    assert os_ == pytest.approx(o1, rel=1e-7)
    fitted = np.column_stack([np.ones(x.size), x]) @ b1
    np.testing.assert_allclose(Xs @ bs, fitted, rtol=0, atol=1e-7 * np.ptp(y))


def test_tiny_predictor_scale_is_not_singular():
    x, y = _engel()
    b1, _ = rq_fit(np.column_stack([np.ones(x.size), x]), y, 0.5)
    b, _ = rq_fit(np.column_stack([np.ones(x.size), x * 1e-9]), y, 0.5)
    assert b[1] * 1e-9 == pytest.approx(b1[1], rel=1e-7)


def test_collinear_columns_are_still_refused():
    x, y = _engel()
    with pytest.raises(DataError, match="singular"):
        rq_fit(np.column_stack([np.ones(x.size), x + 1e7, 2 * (x + 1e7)]), y, 0.5)


def test_linear_learner_keeps_the_intercept_beside_a_shifted_predictor():
    x, y = _engel()
    unit = LinearQR().fit(np.column_stack([np.ones(x.size), x]), y, TAUS)
    shifted = LinearQR().fit(np.column_stack([np.ones(x.size), x + 1e7]), y, TAUS)
    assert shifted.aliased_.size == 0 and shifted.aliased_names_ == [] and shifted.notes_ == []
    np.testing.assert_allclose(shifted.predict(np.column_stack([np.ones(3), x[:3] + 1e7])),
                               unit.predict(np.column_stack([np.ones(3), x[:3]])),
                               rtol=0, atol=1e-7 * np.ptp(y))


@pytest.mark.parametrize("scale", [1e-7, 1e9])
def test_linear_learner_at_extreme_response_scales(scale):
    x, y = _engel()
    X = np.column_stack([np.ones(x.size), x])
    unit = LinearQR().fit(X, y, TAUS)
    scaled = LinearQR().fit(X, y * scale, TAUS)
    np.testing.assert_allclose(scaled.coef_ / scale, unit.coef_, rtol=1e-7)


def test_aliased_columns_are_named():
    x, y = _engel()
    X = pd.DataFrame({"Intercept": 1.0, "income": x, "income2": 2 * x, "zero": 0.0})
    fit = LinearQR().fit(X, y, [0.5])
    # unit-norm columns tie income and income2; the pivoting keeps the first
    assert fit.aliased_names_ == ["income2", "zero"]
    assert [n.split("'")[1] for n in fit.notes_] == ["income2", "zero"]
    assert all("aliased" in note for note in fit.notes_)
    anonymous = LinearQR().fit(X.to_numpy(), y, [0.5])
    assert "x3" in anonymous.aliased_names_
