"""Figures: each function returns a Figure that shows the numbers it was given."""
from __future__ import annotations

import base64

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib._pylab_helpers import Gcf
from matplotlib.figure import Figure

from conftest import TAUS, pinball
from qaggstats import plots
from qaggstats.errors import DataError


@pytest.fixture(autouse=True)
def no_global_state():
    """No pyplot figure is created and rcParams are left as found."""
    before = dict(mpl.rcParams)
    yield
    assert Gcf.get_all_fig_managers() == []
    assert dict(mpl.rcParams) == before


def _q(synthetic_results):
    r = synthetic_results
    return r.y, r.q_oof, r.taus


def test_fan_chart_sorted_by_x_with_one_band_per_interval(synthetic_results):
    r = synthetic_results
    x = r.frame["income"].to_numpy()
    fig = plots.fan_chart(x, r.q_oof, r.taus, y=r.y, xlabel="income")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    median = ax.get_lines()[0]
    order = np.argsort(x, kind="stable")
    np.testing.assert_allclose(median.get_xdata(), x[order])
    np.testing.assert_allclose(median.get_ydata(), r.q_oof[order, 3])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["90% interval", "80% interval", "50% interval"]
    assert ax.get_xlabel() == "income"


def test_fan_chart_without_x_orders_by_median(synthetic_results):
    y, q, taus = _q(synthetic_results)
    fig = plots.fan_chart(None, q, taus, y=y)
    line = fig.axes[0].get_lines()[0]
    assert np.all(np.diff(line.get_xdata()) >= 0)
    assert "0.5 quantile" in fig.axes[0].get_xlabel()


def test_fan_chart_rejects_mismatched_shapes(synthetic_results):
    y, q, taus = _q(synthetic_results)
    with pytest.raises(DataError, match="x has 3 rows"):
        plots.fan_chart(np.arange(3.0), q, taus)
    with pytest.raises(DataError, match="taus has 2 levels"):
        plots.fan_chart(None, q, [0.1, 0.9])


def test_coef_plot_matches_quantreg_estimates():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 10, 250)
    y = 1.0 + 0.5 * x + (0.2 + 0.1 * x) * rng.normal(size=250)
    X = sm.add_constant(x)
    rows = []
    for t in (0.1, 0.25, 0.5, 0.75, 0.9):
        res = sm.QuantReg(y, X).fit(q=t)
        ci = res.conf_int(alpha=0.1)
        for k, term in enumerate(["(Intercept)", "x"]):
            rows.append({"tau": t, "term": term, "estimate": res.params[k], "lower": ci[k, 0], "upper": ci[k, 1]})
    coef = pd.DataFrame(rows)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    ols = pd.DataFrame({"term": ["(Intercept)", "x"], "estimate": beta})
    fig = plots.coef_plot(coef, ols=ols)
    assert [ax.get_title() for ax in fig.axes] == ["(Intercept)", "x"]
    slope_line = fig.axes[1].get_lines()[0]
    np.testing.assert_allclose(slope_line.get_ydata(), coef.query("term == 'x'")["estimate"])
    # the slope grows across levels (heteroscedastic data): the plot shows what quantreg found
    assert slope_line.get_ydata()[-1] > slope_line.get_ydata()[0] + 0.1
    ols_line = [ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "--"][0]
    assert ols_line.get_ydata()[0] == pytest.approx(beta[1])


def test_coef_plot_names_missing_columns():
    with pytest.raises(DataError, match="lower, upper"):
        plots.coef_plot(pd.DataFrame({"tau": [0.5], "term": ["x"], "estimate": [1.0]}))


def test_weights_heatmap_annotates_each_weight(synthetic_results):
    w = synthetic_results.weights
    fig = plots.weights_heatmap(w)
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    # the weights' one format, as in the summary and the report's table
    assert texts == sorted("0" if v == 0 else f"{v:.3f}" for v in w["weight"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["linear", "forest", "knn"]


def test_weights_heatmap_local_and_bad_frames():
    local = pd.DataFrame({"model": ["a", "a", "b", "b"], "tau": [0.5] * 4, "basis": [0, 1, 0, 1],
                          "coef": [0.3, -0.2, 0.7, 0.2]})
    fig = plots.weights_heatmap(local)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a · 0", "a · 1", "b · 0", "b · 1"]
    with pytest.raises(DataError, match="model, tau, weight"):
        plots.weights_heatmap(pd.DataFrame({"x": [1]}))


def test_local_weights_draws_alpha_along_x():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=80)
    a1 = np.clip(x, 0, 1)[:, None].repeat(TAUS.size, axis=1)
    alpha = np.stack([a1, 1 - a1], axis=1)
    fig = plots.local_weights(x, alpha, TAUS, models=["lin", "forest"], levels=[0.1, 0.9])
    assert [ax.get_title() for ax in fig.axes] == ["τ = 0.1", "τ = 0.9"]
    line = fig.axes[0].get_lines()[1]
    np.testing.assert_allclose(line.get_ydata(), 1 - np.sort(x))
    with pytest.raises(DataError, match="level 0.3 is not among"):
        plots.local_weights(x, alpha, TAUS, levels=[0.3])


def test_reliability_diagram_shows_observed_shares(synthetic_results):
    y, q, taus = _q(synthetic_results)
    fig = plots.reliability_diagram(y, {"aggregate": q, "knn": synthetic_results.Q[:, 2]}, taus)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in ("aggregate", "knn")]
    np.testing.assert_allclose(lines[0].get_ydata(), [np.mean(y <= q[:, k]) for k in range(taus.size)])
    # kNN's intervals are too narrow: more than 5% of outcomes fall below its 5% quantile
    assert lines[1].get_ydata()[0] > 0.05


def test_pit_values_interpolate_and_count_between_quantiles(synthetic_results):
    assert plots.pit_values([1.5], [[0.0, 1.0, 2.0]], [0.1, 0.5, 0.9])[0] == pytest.approx(0.7)
    y, q, taus = _q(synthetic_results)
    pit = plots.pit_values(y, q, taus)
    assert np.all((pit >= 0) & (pit <= 1))
    # share of PIT values below tau_k equals the share of outcomes below q_k (monotone q)
    for k, t in enumerate(taus):
        assert np.mean(pit < t) == pytest.approx(np.mean(y < q[:, k]))


def test_pit_histogram_bins_between_levels(synthetic_results):
    y, q, taus = _q(synthetic_results)
    fig = plots.pit_histogram(y, q, taus)
    bars = list(fig.axes[0].containers[0])
    assert len(bars) == taus.size + 1
    heights = np.array([b.get_height() for b in bars])
    widths = np.diff(np.r_[0, taus, 1])
    expected = np.histogram(plots.pit_values(y, q, taus), bins=np.r_[0, taus, 1])[0] / (y.size * widths)
    np.testing.assert_allclose(heights, expected)
    assert len(plots.pit_histogram(y, q, taus, bins=10).axes[0].containers[0]) == 10


def test_conditional_coverage_by_bins(synthetic_results):
    r = synthetic_results
    x = r.frame["income"].to_numpy()
    fig = plots.conditional_coverage(x, r.y, r.q_oof[:, 0], r.q_oof[:, -1], bins=6, nominal=0.9)
    ax = fig.axes[0]
    points = [ln for ln in ax.get_lines() if ln.get_marker() == "o"][0]
    order = np.argsort(x, kind="stable")
    groups = np.array_split(order, 6)
    covered = (r.y >= r.q_oof[:, 0]) & (r.y <= r.q_oof[:, -1])
    np.testing.assert_allclose(points.get_ydata(), [covered[g].mean() for g in groups])
    assert sorted(t.get_text() for t in ax.texts) == ["n=50"] * 6


def test_wilson_interval_known_value():
    lo, hi = plots.wilson_interval(np.array([0]), np.array([20]))
    assert lo[0] == pytest.approx(0.0, abs=1e-12)
    assert hi[0] == pytest.approx(0.1611, abs=1e-4)


def test_wilson_interval_contains_the_share_exactly_and_full_bins_draw():
    n = np.arange(1, 300)
    for k in (0 * n, n):  # rounding put the upper end below 1 at k = n = 4, 10, 14, ...
        lo, hi = plots.wilson_interval(k, n)
        assert np.all(lo <= k / n) and np.all(k / n <= hi)
    # every row of 32 covered: 8 bins of 4, each at coverage 1 (the report failed on this)
    x = np.arange(32.0)
    fig = plots.conditional_coverage(x, x, x - 1, x + 1, bins=8, nominal=0.9)
    points = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"][0]
    np.testing.assert_array_equal(points.get_ydata(), np.ones(8))


def test_wis_decomposition_bars_add_up(synthetic_results):
    s = synthetic_results.oof_scores
    fig = plots.wis_decomposition(s)
    ax = fig.axes[0]
    n = len(s)
    widths = np.array([p.get_width() for p in ax.patches]).reshape(3, n)
    np.testing.assert_allclose(widths.sum(axis=0), s["wis"].to_numpy(), rtol=1e-9)
    assert f" {plots.number_text(s.loc['aggregate', 'wis'])}" in [t.get_text() for t in ax.texts]
    bold = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["aggregate"]


def test_crossing_plot_counts_and_wis_change(synthetic_results):
    m = synthetic_results.monotone
    fig = plots.crossing_plot(m)
    ax1, ax2 = fig.axes
    heights = [p.get_height() for p in ax1.patches]
    assert heights == list(m["rows_crossing_before"]) + list(m["rows_crossing_after"])
    np.testing.assert_allclose([p.get_height() for p in ax2.patches], m["wis_after"] - m["wis_before"])


def test_figure_to_svg_keeps_text_and_escapes_it():
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.set_title(plots._label("<script>alert(1)</script> costs $5 and $6"))
    svg = plots.figure_to_svg(fig)
    assert svg.startswith("<svg") and "<?xml" not in svg
    assert 'width="100%"' in svg and "viewBox" in svg
    assert "<script" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt; costs $5 and $6" in svg


def test_figure_to_png_base64_is_png(synthetic_results):
    y, q, taus = _q(synthetic_results)
    raw = base64.b64decode(plots.figure_to_png_base64(plots.reliability_diagram(y, q, taus), dpi=50))
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"


def test_pinball_helper_agrees_with_scores(synthetic_results):
    """The fixture's own pinball (used by the report tests) matches its score table."""
    r = synthetic_results
    got = pinball(r.y, r.q_oof, r.taus)
    want = r.oof_scores.loc["aggregate", [f"pinball_{t:g}" for t in r.taus]].to_numpy(dtype=float)
    np.testing.assert_allclose(got, want)


def test_fan_chart_labels_default_to_series_names(synthetic_results):
    r = synthetic_results
    x = r.frame["income"]
    y = pd.Series(r.y, name="foodexp")
    ax = plots.fan_chart(x, r.q_oof, r.taus, y=y).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("income", "foodexp")
    ax = plots.fan_chart(x, r.q_oof, r.taus, y=y, xlabel="household income", ylabel="food").axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("household income", "food")
    ax = plots.fan_chart(None, r.q_oof, r.taus, y=r.y, ylabel="foodexp").axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted 0.5 quantile", "foodexp")
    cov = plots.conditional_coverage(x, r.y, r.q_oof[:, 0], r.q_oof[:, -1]).axes[0]
    assert cov.get_xlabel() == "income"
    assert plots.conditional_coverage(x, r.y, r.q_oof[:, 0], r.q_oof[:, -1], xlabel="inc").axes[0].get_xlabel() == "inc"


def test_fan_chart_smooths_band_edges_only_when_ordered_by_prediction(synthetic_results):
    y, q, taus = _q(synthetic_results)
    order = np.argsort(q[:, 3], kind="stable")
    ax = plots.fan_chart(None, q, taus, y=y).axes[0]
    window = plots.fan_window(y.size, by_prediction=True)
    assert window > 1 and window % 2 == 1
    assert ax.get_legend().get_title().get_text() == f"intervals: running median of {window} rows"
    band = ax.collections[0].get_paths()[0].vertices  # the 90% band: lower edge, then upper edge
    lower = plots.running_median(q[order], window)[:, 0]
    np.testing.assert_allclose(band[1:1 + y.size, 1], lower)
    # the median line and the points stay the rows' own values
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), q[order, 3])
    assert np.all(lower <= plots.running_median(q[order], window)[:, -1])  # edges keep their order
    raw = plots.fan_chart(None, q, taus, y=y, smooth=1).axes[0]
    assert raw.get_legend().get_title().get_text() == ""
    np.testing.assert_allclose(raw.collections[0].get_paths()[0].vertices[1:1 + y.size, 1], q[order, 0])
    with pytest.raises(DataError, match="smooth must be"):
        plots.fan_chart(None, q, taus, smooth=0)


def test_number_text_for_figures():
    assert plots.number_text(28810.37) == "28,810"
    assert plots.number_text(2881.04) == "2,881"
    assert plots.number_text(0.012345) == "0.01235"
    assert plots.number_text(-3.5, signed=True) == "−3.5"
    assert plots.number_text(0.0, signed=True) == "0"
    s = pd.DataFrame({"dispersion": [20000.0, 18000.0], "overprediction": [5000.0, 4000.0],
                      "underprediction": [3810.37, 3000.0]}, index=["lin", "aggregate"])
    texts = [t.get_text() for t in plots.wis_decomposition(s).axes[0].texts]
    assert texts == [" 28,810", " 25,000"]


def _monotone(change: float) -> pd.DataFrame:
    return pd.DataFrame({"step": ["sort", "isotonic", "rearrange", "minmax"], "wis_before": [2.392] * 4,
                         "wis_after": [2.392 + change] * 4, "rows_crossing_before": [0] * 4,
                         "rows_crossing_after": [0] * 4})


def _all_text(fig) -> list[str]:
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    fig.canvas.draw()  # tick labels exist once drawn
    texts += [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
    return texts


def test_crossing_plot_without_any_change_says_so():
    # with non-crossing weights nothing crosses: no "+0" labels on a made-up scale
    for noise in (0.0, 4e-16):
        fig = plots.crossing_plot(_monotone(noise))
        ax2 = fig.axes[1]
        assert len(ax2.patches) == 0
        texts = _all_text(fig)
        assert "no step changes the WIS" in texts
        assert not [t for t in texts if t.lstrip("+−-") == "0" and t != "0"], texts
        assert ax2.get_title() == "change in WIS (before: 2.392)"
        # nothing crossed: the left panel says so instead of eight zero-height bars
        ax1 = fig.axes[0]
        assert len(ax1.patches) == 0 and ax1.get_legend() is None
        assert any(t.startswith("no crossings") for t in texts)


def test_crossing_plot_labels_signed_changes():
    fig = plots.crossing_plot(_monotone(-0.0123))
    texts = _all_text(fig)
    assert texts.count("−0.0123") == 4
    assert not any(t in ("+0", "−0", "-0") for t in texts), texts


def test_partial_curves_draw_each_predictor_with_shared_y():
    taus = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    x1, x2 = np.linspace(0, 10, 21), np.array([3.0, 1.0, 2.0])
    q1 = 2 * x1[:, None] + np.linspace(-2, 2, 5)
    q2 = -x2[:, None] + np.linspace(-1, 1, 5)
    fig = plots.partial_curves({"cement": (x1, q1), "water": (x2, q2)}, taus, ylabel="strength")
    ax1, ax2 = fig.axes[:2]
    assert (ax1.get_xlabel(), ax2.get_xlabel(), ax1.get_ylabel()) == ("cement", "water", "strength")
    np.testing.assert_allclose(ax1.get_lines()[0].get_ydata(), q1[:, 2])
    np.testing.assert_allclose(ax2.get_lines()[0].get_xdata(), [1.0, 2.0, 3.0])  # sorted by x
    np.testing.assert_allclose(ax2.get_lines()[0].get_ydata(), [-1.0, -2.0, -3.0])
    assert ax1.get_shared_y_axes().joined(ax1, ax2)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["90% interval", "50% interval", "0.5 quantile"]
    with pytest.raises(DataError, match="curve 'water'"):
        plots.partial_curves({"cement": (x1, q1), "water": (x2, q1)}, taus)
    with pytest.raises(DataError, match="at least one"):
        plots.partial_curves({}, taus)
