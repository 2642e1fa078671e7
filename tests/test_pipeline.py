"""End-to-end tests of qa.qagg and the results object on real and simulated data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import CalibrationError, DataError, QaggError, SaveError

TAUS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]


@pytest.fixture(scope="module")
def hetero():
    """Heteroscedastic data with a categorical column: y = 2 + x + g-effect + (0.5 + x)·ε."""
    rng = np.random.default_rng(11)
    n = 600
    x = rng.uniform(0, 3, n)
    g = rng.choice(["a", "b", "c"], n)
    y = 2 + x + (g == "b") * 1.0 + (0.5 + x) * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


@pytest.fixture(scope="module")
def small_models():
    return {
        "linear": qa.learners.LinearQR(),
        "knn": qa.learners.KNN(k=25),
        "locscale": qa.learners.LocationScale(),
    }


@pytest.fixture(scope="module")
def fit(hetero, small_models):
    train, test = hetero.iloc[:450], hetero.iloc[450:]
    return qa.qagg("y ~ x + C(g)", train, models=small_models, taus=TAUS, family="quantile",
                   conformal="cqr", cv=5, seed=3, test=test, data_name="hetero")


def test_single_linear_model_reproduces_rq():
    """With one model and simplex weights the aggregate is that model refit on all rows."""
    df = qa.datasets.load("engel")
    fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
                  taus=[0.25, 0.5, 0.75], cv=3, postprocess="none")
    np.testing.assert_allclose(fit.weights["weight"], 1.0, atol=1e-7)
    rq = qa.rq("foodexp ~ income", df, tau=[0.25, 0.5, 0.75])
    np.testing.assert_allclose(fit.predict(df).to_numpy(), rq.predict(df).to_numpy(), rtol=1e-6)


def test_aggregate_not_worse_than_best_single_model_out_of_fold(fit):
    raw = qa.scoring.wis(fit.y, fit.q_oof_raw, fit.taus)
    best = fit.oof_scores.loc[fit.models, "wis"].min()
    assert raw <= best * (1 + 1e-6)
    # sorting after aggregation can only lower it further (Fakoor et al. 2023)
    assert fit.oof_scores.loc["aggregate", "wis"] <= raw + 1e-12


def test_weights_are_on_the_simplex_per_level(fit):
    w = fit.weights.pivot_table(index="model", columns="tau", values="weight")
    assert (w.to_numpy() >= -1e-8).all()
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-7)


def test_predictions_are_non_crossing_and_nested(fit, hetero):
    pred = fit.predict(hetero.iloc[450:], interval=0.8)
    q = pred[[f"q{t:g}" for t in TAUS]].to_numpy()
    assert (np.diff(q, axis=1) >= -1e-9).all()
    np.testing.assert_allclose(pred["lower"], pred["q0.1"])
    np.testing.assert_allclose(pred["upper"], pred["q0.9"])


def test_summary_names_the_essentials(fit):
    text = str(fit.summary())
    for needle in ("hetero", "quantile", "cqr", "linear", "knn", "locscale", "Diagnostics", "Coverage"):
        assert needle in text, needle
    assert "<table>" in fit._repr_html_()


def test_test_coverage_recorded_with_bands(fit):
    test = fit.coverage[fit.coverage["set"] == "test"]
    assert set(np.round(test["nominal"], 6)) == {0.9, 0.8, 0.5}
    assert (test["band_low"] < test["nominal"]).all() and (test["band_high"] > test["nominal"]).all()
    assert (test["n"] == 150).all()


def test_diagnostics_state_sorting_theorem(fit):
    sort_claims = [d for d in fit.diagnostics if d.claim.startswith("Sorting")]
    assert sort_claims and sort_claims[0].held is True
    assert "Fakoor" in sort_claims[0].source


def test_save_load_round_trip_identical(fit, hetero, tmp_path):
    path = fit.save(tmp_path / "fit.qagg")
    again = qa.load(path)
    pd.testing.assert_frame_equal(fit.predict(hetero), again.predict(hetero))


def test_load_rejects_foreign_file(tmp_path):
    bad = tmp_path / "x.qagg"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(SaveError, match="not a qaggstats saved fit"):
        qa.load(bad)


def test_na_rows_counted_and_predicted_as_nan(hetero, small_models):
    df = hetero.iloc[:300].copy()
    df.loc[df.index[:7], "x"] = np.nan
    fit = qa.qagg("y ~ x + C(g)", df, models={"linear": small_models["linear"]},
                  taus=[0.1, 0.5, 0.9], cv=3)
    assert fit.na.n_dropped == 7 and fit.na.n_used == 293
    assert "7 dropped for missing values" in str(fit.summary())
    pred = fit.predict(df.iloc[:10])
    assert pred.iloc[:7].isna().all().all() and pred.iloc[7:].notna().all().all()


def test_unseen_level_in_newdata_names_column_and_level(fit, hetero):
    new = hetero.iloc[:3].copy()
    new["g"] = ["a", "zz", "b"]
    with pytest.raises(DataError, match=r"(?s)g.*zz"):
        fit.predict(new)


def test_unknown_interval_and_level_errors(fit, hetero):
    with pytest.raises(DataError, match="0.7"):
        fit.predict(hetero.head(), interval=0.7)
    with pytest.raises(DataError, match="0.33"):
        fit.predict(hetero.head(), taus=[0.33])


def test_calibration_set_too_small_is_a_clear_error(hetero, small_models):
    with pytest.raises(CalibrationError, match="n_cal"):
        qa.qagg("y ~ x", hetero.iloc[:40], models={"linear": small_models["linear"]},
                taus=[0.05, 0.5, 0.95], conformal="cqr", cal_size=0.2, cv=3)


@pytest.mark.parametrize("family", ["mean", "median", "global", "grouped", "local"])
def test_weight_families_run_end_to_end(hetero, small_models, family):
    kw = {"groups": [0, 0, 0, 1, 1, 1, 1]} if family == "grouped" else {}
    fit = qa.qagg("y ~ x + C(g)", hetero.iloc[:300], models=small_models, taus=TAUS,
                  family=family, cv=3, **kw)
    pred = fit.predict(hetero.iloc[300:340])
    assert pred.shape == (40, len(TAUS)) and np.isfinite(pred.to_numpy()).all()
    assert (np.diff(pred.to_numpy(), axis=1) >= -1e-9).all()


def test_cv_plus_runs_and_is_nested(hetero, small_models):
    fit = qa.qagg("y ~ x + C(g)", hetero.iloc[:300], models=small_models, taus=TAUS,
                  conformal="cv+", cv=4, test=hetero.iloc[300:])
    pred = fit.predict(hetero.iloc[300:])
    q = pred.to_numpy()
    assert (np.diff(q, axis=1) >= -1e-9).all()
    assert any("CV+" in d.claim for d in fit.diagnostics)


def test_bad_arguments_are_qagg_errors(hetero):
    with pytest.raises(DataError, match="1.5"):
        qa.qagg("y ~ x", hetero, taus=[0.5, 1.5])
    with pytest.raises(DataError, match="0.5"):
        qa.qagg("y ~ x", hetero, taus=[0.5, 0.5])
    with pytest.raises(DataError, match="weight family"):
        qa.qagg("y ~ x", hetero, family="nope")
    with pytest.raises(QaggError):
        qa.qagg("y ~ nosuchcolumn", hetero, models={"l": qa.learners.LinearQR()})


def test_observation_weights_select_rows_of_the_weight_fit(hetero, small_models):
    """Weights 0/1 give the same weight fit as fitting on the rows with weight 1 only."""
    df = hetero.iloc[:300]
    w = (np.arange(len(df)) % 3 != 0).astype(float)
    fit = qa.qagg("y ~ x + C(g)", df, models=small_models, taus=[0.1, 0.5, 0.9],
                  noncrossing=False, obs_weights=w, cv=3)
    keep = w[fit._base.frames.positions] > 0
    direct = qa.aggregate.fit_weights(fit.Q[keep], fit.y[keep], fit.taus, family="quantile",
                                      noncrossing=False)
    np.testing.assert_allclose(fit.weight_fit.combine(fit.Q), direct.combine(fit.Q), atol=1e-6)
    with pytest.raises(DataError, match="obs_weights"):
        qa.qagg("y ~ x", df, models={"l": small_models["linear"]}, obs_weights=w[:10], cv=3)


def test_noncrossing_holds_at_extra_points(hetero, small_models):
    df, new = hetero.iloc[:300], hetero.iloc[300:400]
    fit = qa.qagg("y ~ x + C(g)", df, models=small_models, taus=TAUS, postprocess="none",
                  noncrossing_at=new, min_gap=0.01, cv=3)
    raw = fit.predictor.predict_parts(new, calibrated=False).raw
    assert (np.diff(raw, axis=1) >= 0.01 - 1e-8).all()
    assert (np.diff(fit.q_oof_raw, axis=1) >= 0.01 - 1e-8).all()


def test_plot_kinds_return_figures(fit, hetero, small_models):
    from matplotlib.figure import Figure

    for kind in ("fan", "weights", "calibration", "pit", "coverage", "wis", "crossing", "coef"):
        assert isinstance(fit.plot(kind), Figure), kind
    coef = fit.plot("coef")
    assert [ax.get_title() for ax in coef.axes][:2] == ["(Intercept)", "x"]
    assert isinstance(fit.plot("coverage", x="x"), Figure)
    local = qa.qagg("y ~ x", hetero.iloc[:200], models=small_models, taus=[0.1, 0.5, 0.9],
                    family="local", cv=3)
    assert isinstance(local.plot("local_weights", x="x"), Figure)
    with pytest.raises(DataError, match="local"):
        fit.plot("local_weights")
    with pytest.raises(DataError, match="unknown plot kind"):
        fit.plot("nope")


def test_reweight_equals_a_fresh_fit_with_that_family(hetero, small_models):
    """Reusing the cross-fit gives exactly what qagg gives for the other family."""
    df = hetero.iloc[:300]
    base = qa.qagg("y ~ x + C(g)", df, models=small_models, taus=TAUS, cv=3, seed=1)
    fresh = qa.qagg("y ~ x + C(g)", df, models=small_models, taus=TAUS, cv=3, seed=1,
                    family="global")
    again = base.reweight("global")
    assert again.family == "global" and base.family == "quantile"
    pd.testing.assert_frame_equal(again.predict(hetero.iloc[300:]), fresh.predict(hetero.iloc[300:]))
    with pytest.raises(DataError, match="cv"):
        base.reweight("global", cv=10)


def test_scores_on_new_data_count_dropped_rows(fit, hetero):
    new = hetero.iloc[450:].copy()
    new.loc[new.index[:5], "y"] = np.nan
    table = fit.scores(new)
    assert table.attrs["n"] == 145 and table.attrs["n_dropped"] == 5
    assert {"linear", "knn", "locscale", "mean", "median", "aggregate (raw)", "aggregate"} == set(table.index)
    # the aggregate's WIS is the mean WIS of its own predictions on those rows
    pred = fit.predict(new.iloc[5:]).to_numpy()
    np.testing.assert_allclose(table.loc["aggregate", "wis"],
                               qa.scoring.wis(new["y"].to_numpy()[5:], pred, fit.taus), rtol=1e-12)


def test_weight_rows_fits_weights_on_a_stratified_subsample(small_models):
    rng = np.random.default_rng(2)
    n = 3000
    x = rng.uniform(0, 3, n)
    df = pd.DataFrame({"x": x, "y": x + (0.5 + x) * rng.standard_normal(n)})
    fit = qa.qagg("y ~ x", df, models={"linear": small_models["linear"], "ls": small_models["locscale"]},
                  taus=[0.1, 0.5, 0.9], cv=3, weight_rows=1000)
    assert any("subsample of 1,000 of the 3,000" in note for note in fit.notes)
    rows = qa.pipeline.weight_subsample(fit.y, 1000, fit.seed)
    direct = qa.aggregate.fit_weights(fit.Q[rows], fit.y[rows], fit.taus)
    np.testing.assert_allclose(fit.weight_fit.combine(fit.Q), direct.combine(fit.Q), atol=1e-7)
    # every response decile keeps its share of rows
    deciles = np.searchsorted(np.quantile(fit.y, np.linspace(0.1, 0.9, 9)), fit.y[rows], side="right")
    assert np.bincount(deciles, minlength=10).tolist() == [100] * 10
    with pytest.raises(DataError, match="weight_rows"):
        qa.qagg("y ~ x", df, models={"l": small_models["linear"]}, weight_rows=10, cv=3)


def test_report_shows_linear_coefficients_when_a_linear_model_is_fitted(fit, tmp_path):
    page = fit.report(tmp_path / "r.html").read_text()
    assert "Coefficients of the linear base model across levels" in page
    assert "C(g)b" in page  # a panel title of the figure (SVG text stays text)
