"""R parity round 2 (issue 27) and rq edge cases (issue 25), against R outputs made by
tests/data/quantreg2/make_quantreg2.R (R 4.2.2, quantreg 5.94)."""
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import DataError, FitError, SolverError
from qaggstats.quantreg import (NonPositiveFisWarning, _hat_values, _percentile_bounds, akj_density, anova,
                                rearrange, rq_boot, rq_fit)

DATA = Path(__file__).resolve().parent / "data"
REF = DATA / "quantreg2"
ND = pd.DataFrame({"income": [300.0, 600.0, 1000.0, 2000.0, 5000.0]})


@pytest.fixture(scope="module")
def engel():
    return pd.read_csv(DATA / "quantreg" / "engel.csv")


@pytest.fixture(scope="module")
def sim():
    return pd.read_csv(DATA / "rsyntax" / "data.csv"), pd.read_csv(DATA / "rsyntax" / "newdata.csv")


def _engel_xy(engel):
    return np.column_stack([np.ones(len(engel)), engel.income]), engel.foodexp.to_numpy()


def test_predict_confidence_intervals_match_r(engel, sim):
    # predict.rq(interval = "confidence") = fit -+ t_{n-p} sqrt(x' V x): V from the same sandwich
    # as summary.rq, so the match is to rounding (1e-9)
    ref = pd.read_csv(REF / "predict.csv")
    w = pd.read_csv(REF / "weights.csv").w.to_numpy()
    data, new = sim
    for (case, tau, se, level), want in ref.groupby(["case", "tau", "se", "level"]):
        if case == "sim":
            fit, rows = qa.rq("y ~ x + z + g", data, tau=tau, se="nid"), new
        else:
            fit = qa.rq("foodexp ~ income", engel, tau=tau, weights=w if case == "engel_weighted" else None,
                        se="nid" if case == "engel_weighted" else None)
            rows = ND
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonPositiveFisWarning)
            got = fit.predict(rows, interval="confidence", level=level, se=None if se == "default" else se)
        assert list(got.columns) == ["fit", "lower", "higher"]
        np.testing.assert_allclose(got.to_numpy(), want[["fit", "lower", "higher"]].to_numpy(), rtol=1e-9,
                                   err_msg=f"{case} tau={tau} se={se} level={level}")


def test_predict_interval_forms(engel):
    fit = qa.rq("foodexp ~ income", engel, tau=[0.25, 0.75], se="iid")
    plain = fit.predict(ND)
    got = fit.predict(ND.assign(income=[300.0, np.nan, 1000.0, 2000.0, 5000.0]), interval="confidence")
    assert got.columns.tolist() == [(q, c) for q in ("q0.25", "q0.75") for c in ("fit", "lower", "higher")]
    assert got.iloc[1].isna().all() and got.drop(index=1).notna().all().all()
    np.testing.assert_allclose(got[("q0.75", "fit")].drop(index=1), plain["q0.75"].drop(index=1))
    assert (got.xs("lower", axis=1, level=1) < got.xs("fit", axis=1, level=1)).drop(index=1).all().all()
    # no newdata: the training rows (R's predict(fit))
    assert fit.predict(interval="confidence").shape == (235, 6)
    np.testing.assert_allclose(fit.predict()["q0.25"], fit.fitted["q0.25"])
    with pytest.raises(DataError, match="percentile.*requires se='boot'"):
        fit.predict(ND, interval="confidence", type="percentile")
    with pytest.raises(DataError, match="direct"):
        fit.predict(ND, interval="confidence", type="direct")
    with pytest.raises(DataError, match="rank inversion gives no covariance"):
        fit.predict(ND, interval="confidence", se="rank")
    with pytest.raises(DataError, match="interval must be 'none' or 'confidence'"):
        fit.predict(ND, interval="prediction")


def test_predict_percentile_interval_matches_r_given_its_draws(engel):
    # R's predict(type = "percentile", se = "boot", R = 50) after set.seed(7); its xy draws are
    # saved, so the bootstrap coefficients and the type-7 quantiles of x'B' must match exactly
    want = pd.read_csv(REF / "predict_percentile.csv")
    draws = pd.read_csv(REF / "percentile_draws.csv")["index"].to_numpy().reshape(50, 235)
    X, y = _engel_xy(engel)
    B = rq_boot(X, y, 0.5, method="xy", draws=draws)
    lo, hi = _percentile_bounds(np.column_stack([np.ones(5), ND.income]), B, 0.95)
    np.testing.assert_allclose(lo, want.lower, rtol=1e-9)
    np.testing.assert_allclose(hi, want.higher, rtol=1e-9)
    # through predict: seeded draws of our own, bounds around the fit
    fit = qa.rq("foodexp ~ income", engel, tau=0.5, se="boot", replications=50, seed=1)
    got = fit.predict(ND, interval="confidence", type="percentile")
    np.testing.assert_allclose(got["fit"], want.fit, rtol=1e-9)
    assert ((got.lower < got.fit) & (got.fit < got.higher)).all()


def test_anova_of_separately_fitted_levels_matches_r(engel, sim):
    ref = pd.read_csv(REF / "anova_list.csv")
    f = {t: qa.rq("foodexp ~ income", engel, tau=t) for t in (0.25, 0.5, 0.75)}
    data, _ = sim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonPositiveFisWarning)
        s1, s2 = qa.rq("y ~ x + z + g", data, tau=0.25), qa.rq("y ~ x + z + g", data, tau=0.75)
        cases = {"engel_2": anova(f[0.25], f[0.75]),
                 "engel_3_distinct": f[0.25].anova(f[0.5], f[0.75], joint=False),
                 "engel_2_ker": anova(f[0.25], f[0.75], se="ker"),
                 "sim_2": anova(s1, s2), "sim_2_distinct": anova(s1, s2, joint=False),
                 "nested_ker": anova(qa.rq("y ~ x + z + g", data, tau=0.5), qa.rq("y ~ x", data, tau=0.5), se="ker")}
    for case, got in cases.items():
        want = ref[ref.case == case]
        assert got.table["Df"].tolist() == want.ndf.tolist(), case
        assert got.table["Resid Df"].tolist() == want.ddf.tolist(), case
        np.testing.assert_allclose(got.table["F value"], want.Tn, rtol=1e-6, err_msg=case)
        np.testing.assert_allclose(got.table["Pr(>F)"], want.pvalue, rtol=1e-5, err_msg=case)
    assert list(cases["sim_2_distinct"].table.index) == ref[ref.case == "sim_2_distinct"].term.tolist()
    # the separately fitted levels give the test of the fit at several levels
    joint = qa.rq("foodexp ~ income", engel, tau=[0.25, 0.75]).anova()
    assert joint.statistic[0] == pytest.approx(cases["engel_2"].statistic[0], rel=1e-12)
    assert "tau in { 0.25 0.75 }" in repr(cases["engel_2"])


def test_anova_unsupported_forms_say_what_to_do(engel, sim):
    data, _ = sim
    f25 = qa.rq("foodexp ~ income", engel, tau=0.25)
    with pytest.raises(DataError, match=r"anova\(fit25, fit75\)"):
        f25.anova()
    other = qa.rq("foodexp ~ income + I(income^2)", engel, tau=0.75)
    with pytest.raises(DataError, match=r"cannot compare .*tau=\[0\.25, 0\.75\]\)\.anova\(\)"):
        anova(f25, other)
    with pytest.raises(DataError, match="cannot compare"):
        anova(f25, qa.rq("foodexp ~ income", engel, tau=[0.25, 0.5]))
    with pytest.raises(DataError, match="same rows"):
        anova(f25, qa.rq("foodexp ~ income", engel.iloc[:200], tau=0.75))
    with pytest.raises(DataError, match="se must be 'nid' or 'ker'"):
        anova(f25, qa.rq("foodexp ~ income", engel, tau=0.75), se="iid")


@pytest.mark.parametrize("method", ["xy", "wxy", "pwy", "wild", "mcmb"])
def test_boot_methods_reproduce_r_from_its_draws(engel, method):
    # R's boot.rq(U = ...) draws are saved (pwy as 1{U < tau}, turned back into uniforms
    # below/above tau; mcmb as the rows its C chain drew); the coefficients are LP vertices or
    # weighted quantiles of the same numbers: equal to rounding. The wild bootstrap goes through
    # quantreg's akj density, which we match to 1e-9 (its Fortran sums in another order), hence 1e-7.
    n = len(engel)
    X, y = _engel_xy(engel)
    draws = pd.read_csv(REF / "boot_draws.csv").query("method == @method").value.to_numpy()
    if method == "mcmb":
        draws = draws.reshape(10, 2, n).astype(int)
    elif method == "pwy":
        draws = (1.0 - draws).reshape(10, n)
    else:
        draws = draws.reshape(10, n)
    want = pd.read_csv(REF / "boot_coef.csv").query("method == @method")[["b0", "b1"]].to_numpy()
    np.testing.assert_allclose(rq_boot(X, y, 0.5, method=method, draws=draws), want,
                               rtol=1e-7 if method == "wild" else 1e-10)


def test_wild_bootstrap_pieces_match_r(engel):
    X, y = _engel_xy(engel)
    want = pd.read_csv(REF / "wild_pieces.csv").iloc[0]
    r = y - X @ rq_fit(X, y, 0.5)[0]
    assert akj_density(r, np.zeros(1))[0] == pytest.approx(want.akj0, rel=1e-8)
    assert _hat_values(X)[0] == pytest.approx(want.hat1, rel=1e-12)


@pytest.mark.parametrize("method", ["pwy", "wild", "mcmb"])
def test_boot_se_within_monte_carlo_error_of_r(engel, method):
    # R: 10,000 replications (its Monte Carlo error ~0.7 %). pwy and wild: 300 replications,
    # relative sd of a bootstrap SE ~ 1/sqrt(2R) = 4.1 %, tolerance 4 of those (16 %). mcmb is a
    # Markov chain (correlated draws): 3,000 replications, whose SEs spread by ~3 % across seeds
    # (measured over 6 seeds), tolerance 4 x 3 % = 12 %.
    ref = pd.read_csv(REF / "boot_se.csv")
    reps, tol = (3000, 0.12) if method == "mcmb" else (300, 4 / np.sqrt(2 * 300))
    for tau in (0.25, 0.5):
        fit = qa.rq("foodexp ~ income", engel, tau=tau, se="boot", bsmethod=method, replications=reps, seed=5)
        want = ref[(ref.tau == tau) & (ref.bsmethod == method)].std_error.to_numpy()
        np.testing.assert_allclose(fit.std_errors.iloc[:, 0], want, rtol=tol, err_msg=f"{method} tau={tau}")


def test_boot_method_choice_and_draw_checks(engel):
    fit = qa.rq("foodexp ~ income", engel, tau=0.5, se="nid")
    text = fit.summary(se="boot", bsmethod="wild", replications=50).as_text()
    assert "Standard errors: boot (wild, 50 replications)" in text
    with pytest.raises(DataError, match="bsmethod must be one of"):
        qa.rq("foodexp ~ income", engel, se="boot", bsmethod="jack")
    with pytest.raises(DataError, match=r"draws for method 'mcmb' must have shape \(R, 2, 235\)"):
        rq_boot(*_engel_xy(engel), 0.5, method="mcmb", draws=np.zeros((3, 235), dtype=int))
    a = rq_boot(*_engel_xy(engel), 0.5, method="pwy", replications=5, seed=2)
    assert a.tobytes() == rq_boot(*_engel_xy(engel), 0.5, method="pwy", replications=5, seed=2).tobytes()


def test_rearrange_matches_r(sim):
    # rearrange(predict(rq(tau = taus), newdata, stepfun = TRUE)) on a fit whose lines cross
    # on 3 of the 7 new rows, evaluated on a grid (step functions: exact up to rounding)
    data, new = sim
    ref = pd.read_csv(REF / "rearrange.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonPositiveFisWarning)
        fit = qa.rq("y ~ x + z + g", data, tau=[0.05, 0.1, 0.3, 0.5, 0.55, 0.9], se="nid")
    q = fit.predict(new).to_numpy()
    assert (np.diff(q, axis=1) < 0).any(axis=1).sum() == 3
    at = np.sort(ref["at"].unique())
    got = fit.rearrange(new, at=at)
    want = ref.pivot(index="row", columns="at", values="value")
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-12)
    assert (np.diff(got.to_numpy(), axis=1) >= 0).all()
    # monotone rows are unchanged at the levels
    ok = ~(np.diff(q, axis=1) < 0).any(axis=1)
    np.testing.assert_allclose(rearrange(fit, new).to_numpy()[ok], q[ok])
    with pytest.raises(DataError, match="one level"):
        qa.rq("y ~ x", data, tau=0.5).rearrange()


@pytest.mark.parametrize("se", ["rank", "iid", "nid", "ker"])
@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_extreme_response_scale_gives_the_rescaled_unit_fit(engel, se, scale):
    # issue 25: at y x 1e-300 the rank intervals collapsed to the estimates, "nid" raised
    # LinAlgError and "iid" IndexError (R's absolute eps met a 1e-300 response). Inference now
    # runs on the response divided by a power of two: the unit-scale answer. R's "nid" keeps
    # eps = 1.5e-8 absolute in the density at the unit fit (dyhat ~ 10..100 here) but relative
    # after rescaling, a difference of ~5e-7: tolerance 1e-5 there, 1e-9 elsewhere.
    unit = qa.rq("foodexp ~ income", engel, tau=0.5, se=se)
    far = qa.rq("foodexp ~ income", engel.assign(foodexp=engel.foodexp * scale), tau=0.5, se=se)
    cols = ["estimate", "lower", "upper"] + ([] if se == "rank" else ["std_error"])
    np.testing.assert_allclose(far.coef[cols].to_numpy() / scale, unit.coef[cols].to_numpy(),
                               rtol=1e-5 if se == "nid" else 1e-9)
    assert far.objective[0] / scale == pytest.approx(unit.objective[0], rel=1e-12)
    band = far.predict(ND, interval="confidence", se="iid") / scale
    np.testing.assert_allclose(band.to_numpy(), unit.predict(ND, interval="confidence", se="iid").to_numpy(),
                               rtol=1e-9)


def test_tiny_predictor_and_weight_scales_are_not_singular(engel):
    # column norms were computed by squaring: a column of size 1e-300 looked like zero
    X, y = _engel_xy(engel)
    b1, o1 = rq_fit(X, y, 0.5)
    b, _ = rq_fit(X * [1.0, 1e-300], y, 0.5)
    assert b[1] * 1e-300 == pytest.approx(b1[1], rel=1e-9)
    b, o = rq_fit(X, y, 0.5, weights=np.full(len(y), 1e-300))
    np.testing.assert_allclose(b, b1, rtol=1e-9)
    assert o / 1e-300 == pytest.approx(o1, rel=1e-9)


def test_exact_fit_gives_r_answers_or_typed_errors():
    # R: rank intervals equal to the estimates ("Solution may be nonunique"); iid, nid and ker
    # stop with errors. Before: rank took seconds (67.6 s on a larger case) and ended in a
    # SolverError; nid raised LinAlgError, iid IndexError.
    want = pd.read_csv(REF / "exact_rank.csv")
    d = pd.DataFrame({"x": np.arange(20.0)})
    d["y"] = 1 + 2 * d.x
    fit = qa.rq("y ~ x", d)
    np.testing.assert_allclose(fit.coef.lower, want["lower bd"], rtol=1e-12)
    np.testing.assert_allclose(fit.coef.upper, want["upper bd"], rtol=1e-12)
    assert any("exact fit" in n for n in fit.notes)
    for se in ("iid", "nid", "ker"):
        with pytest.raises(FitError, match=rf"se='{se}': exact fit at tau=0.5 \(all 20 residuals are zero\)"):
            qa.rq("y ~ x", d, se=se)
    rng = np.random.default_rng(0)
    big = pd.DataFrame(rng.normal(size=(900, 3)), columns=["a", "b", "c"])
    big["y"] = 1 + big.a - big.b + 0.5 * big.c
    fit = qa.rq("y ~ a + b + c", big)  # rank by default (< 1,001 rows): immediate
    np.testing.assert_allclose(fit.coef.lower, [1.0, 1.0, -1.0, 0.5], rtol=1e-9)


def test_near_exact_fit_is_refused_quickly_with_the_way_out():
    rng = np.random.default_rng(1)
    d = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    d["y"] = 1 + d.a - d.b + 0.5 * d.c
    d.loc[:49, "y"] += rng.normal(size=50)  # 250 of 300 points on the plane
    with pytest.raises(SolverError, match="250 rows have a zero residual.*use se='boot'"):
        qa.rq("y ~ a + b + c", d)
    with pytest.raises(FitError, match="se='nid': the local densities are positive at only 0 of 300 rows"):
        qa.rq("y ~ a + b + c", d, se="nid")
    assert np.isfinite(qa.rq("y ~ a + b + c", d, se="boot", replications=20).std_errors).all().all()


def test_draw_indices_are_checked(engel):
    with pytest.raises(DataError, match=r"0-based row indices in \[0, 235\)"):
        rq_boot(*_engel_xy(engel), 0.5, method="xy", draws=np.full((2, 235), 235))
