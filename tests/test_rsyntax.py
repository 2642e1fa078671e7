"""R idioms in formulas against stored R outputs (tests/data/rsyntax/rsyntax.R, R 4.2.2,
quantreg 5.94, splines): R's formula strings are used verbatim; coefficients carry R's labels in
R's order; predictions inside and outside the training range match to 1e-6."""
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import DataError, FormulaError
from qaggstats.formula import ExtrapolationWarning, FormulaSpec, model_frames

REF = Path(__file__).resolve().parent / "data" / "rsyntax"


@pytest.fixture(scope="module")
def ref():
    return {name: pd.read_csv(REF / f"{name}.csv")
            for name in ("data", "newdata", "coef", "predict", "basis", "offset")}


def _fits(ref):
    for (model, formula), rows in ref["coef"].groupby(["model", "formula"], sort=False):
        yield model, formula, rows


def _tie(fit, j, tau, r_estimate) -> bool:
    """R's coefficients are another optimum of the same LP (a degenerate, non-unique solution).

    A quantile regression LP can have a face of optima; R's simplex ("br") and our interior
    point + vertex snap may stop at different vertices of it. Then the objectives agree to
    rounding and the coefficients need not.
    """
    from qaggstats.quantreg import check_loss

    X, y = fit._data["X"], fit._data["y"]
    ours = check_loss(y - X @ fit.params.iloc[:, j].to_numpy(), tau)
    theirs = check_loss(y - X @ np.asarray(r_estimate), tau)
    return abs(ours - theirs) <= 1e-12 * max(1.0, abs(theirs))


def test_coefficients_labels_and_order_match_r(ref):
    ties = []
    for model, formula, rows in _fits(ref):
        taus = sorted(rows.tau.unique())
        fit = qa.rq(formula, ref["data"], tau=taus, se="iid")
        for j, tau in enumerate(taus):
            want = rows[rows.tau == tau]
            assert list(fit.params.index) == want.term.tolist(), model
            got = fit.params.iloc[:, j].to_numpy()
            if not np.allclose(got, want.estimate.to_numpy(), rtol=1e-6, atol=1e-6):
                assert _tie(fit, j, tau, want.estimate.to_numpy()), f"{model} at tau={tau}: not R's optimum"
                ties.append((model, tau))
    assert len(ties) <= 1, ties  # the one degenerate case of these data (logy at 0.5), no more


def test_predictions_inside_and_outside_range_match_r(ref):
    new = ref["newdata"]
    for model, formula, rows in _fits(ref):
        taus = sorted(rows.tau.unique())
        fit = qa.rq(formula, ref["data"], tau=taus, se="iid")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = fit.predict(new)
        splines = model in ("ns", "bs")
        assert any(issubclass(c.category, ExtrapolationWarning) for c in caught) == splines, model
        assert bool(pred.attrs["notes"]) == splines
        for j, tau in enumerate(taus):
            want = ref["predict"].query("model == @model and tau == @tau").sort_values("row")
            r_coef = ref["coef"].query("model == @model and tau == @tau").estimate.to_numpy()
            if not np.allclose(fit.params.iloc[:, j].to_numpy(), r_coef, rtol=1e-6, atol=1e-6):
                assert _tie(fit, j, tau, r_coef)  # another optimum: its predictions differ too
                continue
            np.testing.assert_allclose(pred.iloc[:, j].to_numpy(), want.pred.to_numpy(),
                                       rtol=1e-6, atol=1e-6, err_msg=f"{model} at tau={tau}")


def test_bases_on_new_rows_match_r(ref):
    train, new = ref["data"], ref["newdata"]
    want = ref["basis"]
    spec = FormulaSpec.from_data("y ~ 0 + ns(x, df = 3) + bs(x, df = 4) + poly(x, 2)", train)
    with pytest.warns(ExtrapolationWarning, match=r"'x'.*3 new value"):
        X = spec.design(new)
    cols = [f"ns{i}" for i in (1, 2, 3)] + [f"bs{i}" for i in (1, 2, 3, 4)] + ["poly1", "poly2"]
    np.testing.assert_allclose(X, want[cols].to_numpy(), rtol=1e-9, atol=1e-10)
    # the transform state is the training one, even after a pickle round trip
    back = pickle.loads(pickle.dumps(spec))
    with pytest.warns(ExtrapolationWarning):
        assert back.design(new).tobytes() == X.tobytes()
    strict = FormulaSpec.from_data("y ~ ns(x, df = 3)", train, extrapolate="error")
    with pytest.raises(DataError, match=r"'x'.*outside the training range.*extrapolate='warn'"):
        strict.design(new)


def test_offset_is_applied_like_lm(ref):
    # quantreg 5.94 ignores offset(); lm/glm semantics: the fit of y - z, offset added back
    d = ref["data"]
    fit = qa.rq("y ~ x + offset(z)", d, tau=0.5, se="iid")
    np.testing.assert_allclose(fit.params.iloc[:, 0], ref["offset"].estimate, rtol=1e-6, atol=1e-8)
    assert list(fit.params.index) == ["(Intercept)", "x"]
    new = ref["newdata"].iloc[1:5]
    want = fit.params.iloc[0, 0] + fit.params.iloc[1, 0] * new.x + new.z
    np.testing.assert_allclose(fit.predict(new).iloc[:, 0], want, rtol=1e-12)
    np.testing.assert_allclose((fit.fitted.iloc[:, 0] + fit.resid.iloc[:, 0]).to_numpy(),
                               d.y.to_numpy(), rtol=1e-12)
    with pytest.raises(FormulaError, match="offset.*rq only"):
        model_frames({"m": "y ~ x + offset(z)"}, d)


def test_cr_beside_intercept_is_not_singular(ref):
    fit = qa.rq("y ~ cr(x, df = 4)", ref["data"], tau=0.5, se="iid")
    assert fit.params.shape == (5, 1)
    assert list(fit.params.index)[1:] == [f"cr(x, df = 4){i}" for i in (1, 2, 3, 4)]


def test_r_idioms_spelled_several_ways(ref):
    d = ref["data"]
    a = qa.rq("y ~ x + I(x^2)", d, se="iid").params.to_numpy()
    b = qa.rq("y ~ x + I(x**2)", d, se="iid").params.to_numpy()
    c = qa.rq("y ~ np.power(x, 1) + I(x * x)", d, se="iid").params.to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(a, c, rtol=1e-9)
    cross = FormulaSpec.from_data("y ~ (x + z + g)^2", d)
    assert cross.column_names == ["(Intercept)", "x", "z", "gb", "gc", "x:z", "x:gb", "x:gc",
                                  "z:gb", "z:gc"]
    spec = FormulaSpec.from_data("y ~ relevel(g, \"b\") + `x` + log(x, 2) + exp(z) + sqrt(x)", d)
    assert spec.column_names == ["(Intercept)", 'relevel(g, "b")a', 'relevel(g, "b")c', "x",
                                 "log(x, 2)", "exp(z)", "sqrt(x)"]
    assert FormulaSpec.from_data('y ~ relevel(factor(k), "2")', d).column_names == [
        "(Intercept)", 'relevel(factor(k), "2")1', 'relevel(factor(k), "2")3']  # as R names them
    with pytest.raises(FormulaError, match=r"reference level 'q'"):
        FormulaSpec.from_data("y ~ relevel(g, 'q')", d)


def test_unknown_functions_point_to_the_supported_one(ref):
    d = ref["data"]
    cases = {"y ~ Poly(x, 2)": r"'Poly'.*contrast.*C\(g, Poly\).*poly\(x, 2\).*R's poly",
             "y ~ s(x)": r"'s'.*cr\(x, df = k\).*mgcv",
             "y ~ as.factor(g)": r"'as\.factor'.*write factor\(x\)",
             "y ~ nss(x, df = 3)": r"'nss'.*did you mean ns\(\).*splines::ns",
             "y ~ lg(x)": r"'lg'.*log"}
    for formula, pattern in cases.items():
        with pytest.raises(FormulaError, match=pattern):
            model_frames({"m": formula}, d)


def test_numeric_factor_levels_unseen_at_predict(ref):
    fit = qa.rq("y ~ factor(k) + x", ref["data"], se="iid")
    with pytest.raises(DataError, match=r"'k'.*\['7'\].*not seen"):
        fit.predict(pd.DataFrame({"k": [7], "x": [2.0]}))


def test_r_idioms_in_qagg_learners_and_local_basis(ref):
    from qaggstats.learners import LinearQR

    d = ref["data"]
    models = {"poly": LinearQR("y ~ poly(x, 2) + factor(k) + g"),
              "ns": LinearQR("y ~ ns(x, df = 3) + z"),
              "square": LinearQR()}
    fit = qa.qagg("y ~ x + I(x^2) + g", d, models=models, taus=[0.25, 0.5, 0.75], cv=3,
                  family="local", local_formula="~ ns(x, df = 2)")
    # a spline model never blocks prediction outside the training range: R's extrapolation
    with pytest.warns(ExtrapolationWarning, match="'x'"):
        pred = fit.predict(ref["newdata"])
    assert pred.shape[0] == len(ref["newdata"]) and np.isfinite(pred.to_numpy()).all()
