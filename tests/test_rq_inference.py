"""rq inference as R's summary.rq / anova.rq / boot.rq (references: tests/data/rsyntax/rsyntax.R)."""
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import DataError
from qaggstats.quantreg import NonPositiveFisWarning, anova, rq_boot

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def engel():
    return pd.read_csv(DATA / "quantreg" / "engel.csv")


@pytest.fixture(scope="module")
def sim():
    return pd.read_csv(DATA / "rsyntax" / "data.csv")


@pytest.fixture(scope="module")
def ref_anova():
    return pd.read_csv(DATA / "rsyntax" / "anova.csv")


def test_anova_equal_slopes_matches_r(engel, sim, ref_anova):
    fit = qa.rq("foodexp ~ income", engel, tau=[0.25, 0.5, 0.75])
    cases = {"engel_joint": fit.anova(), "engel_distinct": anova(fit, joint=False)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonPositiveFisWarning)
        cases["sim_joint"] = qa.rq("y ~ x + z + g", sim, tau=[0.1, 0.5, 0.9]).anova()
    for case, got in cases.items():
        want = ref_anova[ref_anova.case == case].iloc[0]
        row = got.table.iloc[0]
        assert (row["Df"], row["Resid Df"]) == (want.ndf, want.ddf), case
        assert row["F value"] == pytest.approx(want.Tn, rel=1e-6), case
        assert row["Pr(>F)"] == pytest.approx(want.pvalue, rel=1e-5), case
    text = repr(cases["engel_joint"])
    assert "Quantile Regression Analysis of Deviance Table" in text
    assert "Joint Test of Equality of Slopes: tau in { 0.25 0.5 0.75 }" in text and "2.45e-07" in text
    assert list(cases["engel_distinct"].table.index) == ["income"]
    with pytest.raises(DataError, match="one level"):
        qa.rq("foodexp ~ income", engel, tau=0.5).anova()
    with pytest.raises(DataError, match="intercept"):
        qa.rq("foodexp ~ 0 + income", engel, tau=[0.25, 0.75]).anova()


def test_bootstrap_se_within_monte_carlo_error_of_r(engel):
    # R's reference uses 20,000 replications (its own Monte Carlo error is ~0.5 %). Ours uses
    # R = 300: the relative standard deviation of a bootstrap SE is about 1/sqrt(2R) = 4.1 %;
    # the tolerance is 4 of those (16 %).
    ref = pd.read_csv(DATA / "rsyntax" / "boot.csv")
    reps = 300
    tol = 4 / np.sqrt(2 * reps)
    for method in ("xy", "wxy"):
        fit = qa.rq("foodexp ~ income", engel, tau=0.5, se="boot", replications=reps,
                    bsmethod=method, seed=11)
        want = ref[(ref.tau == 0.5) & (ref.bsmethod == method)].std_error.to_numpy()
        got = fit.std_errors.iloc[:, 0].to_numpy()
        np.testing.assert_allclose(got, want, rtol=tol, err_msg=method)


def test_bootstrap_is_seeded(engel):
    X = np.column_stack([np.ones(len(engel)), engel.income])
    y = engel.foodexp.to_numpy()
    a = rq_boot(X, y, 0.5, replications=30, seed=5)
    assert a.tobytes() == rq_boot(X, y, 0.5, replications=30, seed=5).tobytes()
    assert not np.array_equal(a, rq_boot(X, y, 0.5, replications=30, seed=6))
    with pytest.raises(DataError, match="seed"):
        qa.rq("foodexp ~ income", engel, se="boot", seed=-1)
    with pytest.raises(DataError, match="replications"):
        rq_boot(X, y, 0.5, replications=1)


def test_default_se_is_r_choice(engel):
    assert qa.rq("foodexp ~ income", engel).se == "rank"
    rng = np.random.default_rng(0)
    big = pd.DataFrame({"x": rng.uniform(size=1001)})
    big["y"] = big.x + rng.normal(size=1001)
    assert qa.rq("y ~ x", big).se == "nid"
    assert qa.rq("y ~ x", big.iloc[:1000]).se == "rank"


def test_nid_warns_non_positive_fis_like_r(sim):
    ref = pd.read_csv(DATA / "rsyntax" / "nid_warning.csv")
    with pytest.warns(NonPositiveFisWarning, match="^" + ref.warning.iloc[0]):
        fit = qa.rq("y ~ factor(k) * g + x", sim, tau=0.9, se="nid")
    assert list(fit.params.index) == ref.term.tolist()
    np.testing.assert_allclose(fit.std_errors.iloc[:, 0], ref.std_error, rtol=1e-6)
    assert any("non-positive fis" in n for n in fit.notes)


def test_linearmodels_style_properties(engel):
    fit = qa.rq("foodexp ~ income", engel, tau=[0.25, 0.75], se="nid", level=0.9)
    assert fit.std_errors.shape == fit.params.shape == fit.pvalues.shape == (2, 2)
    row = fit.coef[(fit.coef.tau == 0.75) & (fit.coef.term == "income")].iloc[0]
    assert fit.std_errors.loc["income", "q0.75"] == row.std_error
    assert fit.pvalues.loc["income", "q0.75"] == row.p_value
    ci = fit.conf_int()
    assert ci.loc["income", ("q0.75", "lower")] == pytest.approx(row.lower, rel=1e-12)
    wide = fit.conf_int(0.99)
    assert (wide.xs("lower", axis=1, level=1) < ci.xs("lower", axis=1, level=1)).all().all()
    assert np.allclose((fit.fitted + fit.resid).to_numpy(), engel.foodexp.to_numpy()[:, None])
    assert fit.fitted.shape == (235, 2)
    # R1 against its definition: 1 - V / V0 with V0 from the unconditional tau-quantile
    for j, tau in enumerate(fit.taus):
        y = engel.foodexp.to_numpy()
        v0 = min(np.sum((y - c) * (tau - (y < c))) for c in y)
        assert fit.r1.iloc[j] == pytest.approx(1 - fit.objective[j] / v0, rel=1e-10)
    rank = qa.rq("foodexp ~ income", engel, tau=0.5)
    ci90, ci95 = rank.conf_int(), rank.conf_int(0.95)
    assert list(ci90.columns) == ["lower", "upper"]
    assert (ci95.lower < ci90.lower).all() and (ci95.upper > ci90.upper).all()


def test_taus_validated_and_order_kept(engel):
    with pytest.raises(DataError, match=r"duplicated: 0\.5"):
        qa.rq("foodexp ~ income", engel, tau=[0.5, 0.5, 0.25])
    fit = qa.rq("foodexp ~ income", engel, tau=[0.75, 0.25])
    assert list(fit.params.columns) == ["q0.75", "q0.25"]


def test_print_layout_like_summary_rq(engel):
    fit = qa.rq("foodexp ~ income", engel, tau=0.5, se="nid")
    text = str(fit)
    for piece in ("Call: rq(formula = foodexp ~ income, tau = 0.5)", "tau: [1] 0.5", "Coefficients:",
                  "(Intercept)", "Std. Error", "Pr(>|t|)", "< 2e-16", "81.48225"):
        assert piece in text, piece
    rank = str(qa.rq("foodexp ~ income", engel, tau=0.5))
    assert "lower bd" in rank and "upper bd" in rank
    assert repr(fit).startswith("<RQResults 'foodexp ~ income', tau = [0.5], n = 235, se = 'nid'>")
    other = fit.summary(se="iid").as_text()
    assert "Standard errors: iid" in other


def test_plot_has_ols_line_and_band_like_r(engel):
    import statsmodels.api as sm

    fit = qa.rq("foodexp ~ income", engel, tau=[0.1, 0.25, 0.5, 0.75, 0.9], se="nid")
    ols = sm.OLS(engel.foodexp, sm.add_constant(engel.income)).fit()
    table = fit.ols(0.9)
    np.testing.assert_allclose(table.estimate, ols.params, rtol=1e-10)
    np.testing.assert_allclose(table.std_error, ols.bse, rtol=1e-10)
    # R draws the least-squares band at estimate ± qnorm(0.95) · se
    np.testing.assert_allclose(table.upper - table.estimate, 1.6448536269514722 * ols.bse, rtol=1e-10)
    fig = fit.plot()
    ax = fig.axes[1]
    assert ax.get_title() == "income"
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert dashed[0].get_ydata()[0] == pytest.approx(ols.params["income"])
    dotted = sorted(ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":")
    assert dotted == pytest.approx(sorted([table.lower[1], table.upper[1]]))
    assert len(ax.patches) >= 1  # the shaded least-squares band
    qr_line = ax.get_lines()[0]
    np.testing.assert_allclose(qr_line.get_ydata(), fit.params.loc["income"].to_numpy())


def test_anova_nested_models_matches_r(sim):
    want = pd.read_csv(DATA / "rsyntax" / "anova_nested.csv")
    f1 = qa.rq("y ~ x + z + g", sim, tau=0.5)
    got = f1.anova(qa.rq("y ~ x", sim, tau=0.5), qa.rq("y ~ x + z", sim, tau=0.5))
    assert got.table["Df"].tolist() == want.ndf.tolist()
    assert got.table["Resid Df"].tolist() == want.ddf.tolist()
    np.testing.assert_allclose(got.table["F value"], want.Tn, rtol=1e-6)
    assert "Model 1: y ~ x + z + g" in repr(got)
    with pytest.raises(DataError, match="not nested"):
        qa.rq("y ~ x + z", sim, tau=0.5).anova(qa.rq("y ~ g", sim, tau=0.5))
    with pytest.raises(DataError, match=r"one common level.*tau=\[0\.25, 0\.75\]\)\.anova\(\)"):
        f1.anova(qa.rq("y ~ x", sim, tau=0.25))


def test_collinear_design_names_the_column():
    import numpy as np
    import pandas as pd

    import qaggstats as qa
    from qaggstats.errors import DataError

    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    df = pd.DataFrame({"y": x + rng.normal(size=60), "x": x, "x2": 2 * x, "z": rng.normal(size=60)})
    with pytest.raises(DataError, match=r"'x2' are collinear with earlier terms \(rank 3 < 4"):
        qa.rq("y ~ x + z + x2", df)
