"""Conditional-coverage diagnostics: coverage in bins of features and of the predicted width.

Claims tested: when the interval is the true conditional one, each bin's coverage falls in its
95 % band about 95 % of the time; when it is a constant-width interval on heteroscedastic data
(marginally right, conditionally wrong), the worst slab falls outside its band. And the fit's
summary and report show the table, the worst slab and each method's validity statement.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import qaggstats as qa
from qaggstats.conformal import MARGINAL_PROMISE
from qaggstats.scoring import binomial_band, coverage_by_bins, worst_slab


def band80(n):
    return tuple(map(float, binomial_band(0.8, n)))


def test_bins_hold_their_bands_when_coverage_is_conditional():
    rng = np.random.default_rng(1)
    z = stats.norm.ppf(0.9)
    inside = []
    for _ in range(250):
        x = rng.uniform(0, 3, 500)
        sd = 0.2 + x
        y = sd * rng.standard_normal(500)
        t = coverage_by_bins(y, -z * sd, z * sd, {"x": x, "width": 2 * z * sd}, band80)
        inside += t["inside"].tolist()
    assert len(inside) == 250 * 10
    assert 0.93 <= np.mean(inside) <= 0.99


def test_worst_slab_exposes_marginal_only_coverage():
    rng = np.random.default_rng(2)
    outside = 0
    for _ in range(200):
        x = rng.uniform(0, 3, 500)
        y = (0.2 + x) * rng.standard_normal(500)
        half = np.quantile(np.abs(y), 0.8)  # marginal 80 %, constant width
        t = coverage_by_bins(y, -half * np.ones(500), half * np.ones(500), {"x": x}, band80)
        outside += not worst_slab(t)["inside"]
        assert abs(np.mean(np.abs(y) <= half) - 0.8) < 0.01
    assert outside == 200


@pytest.fixture(scope="module")
def hetero():
    rng = np.random.default_rng(4)
    n = 1000
    x = rng.uniform(0, 3, n)
    noise = rng.uniform(0, 1, n)  # a column the width does not depend on
    g = rng.choice(["a", "b"], n)
    y = 1 + x + (0.2 + x) * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "noise": noise, "g": g})


@pytest.mark.parametrize("conformal, groups, phrase", [
    ("cqr", None, "split CQR, marginal: a new point is covered with probability in [0.800, "),
    ("cqr", "g", "Mondrian CQR, per group: within each group g of 'g'"),
    ("cv+", None, "nested CV+, marginal: a new point is covered with probability at least"),
    (None, None, "no calibration: no finite-sample coverage guarantee"),
])
def test_summary_and_report_show_conditional_coverage(hetero, conformal, groups, phrase, tmp_path):
    fit = qa.qagg("y ~ x + noise", hetero.iloc[:600], models={"lin": qa.learners.LinearQR()},
                  taus=[0.05, 0.1, 0.5, 0.9, 0.95], conformal=conformal, conformal_groups=groups, cv=3,
                  n_jobs=1, test=hetero.iloc[600:])
    cond = fit.conditional_coverage
    assert set(cond["variable"]) == {"x", "noise", "predicted width"}
    assert cond["nominal"].eq(0.8).all() and cond["worst"].sum() == 1
    assert cond.loc[cond["worst"], "observed"].item() == cond["observed"].min()
    assert cond.groupby("variable")["n"].sum().eq(400).all()
    # the linear model's width grows with x: x is ranked before noise
    assert list(dict.fromkeys(cond["variable"]))[:2] == ["x", "noise"]
    text = str(fit.summary())
    assert "Worst slab" in text and "What the calibration guarantees" in text
    flat = " ".join(text.split())
    assert phrase in flat
    if conformal is not None:
        assert " ".join(MARGINAL_PROMISE.split()) in flat
    html = fit.report(tmp_path / "r.html").read_text()
    assert "Conditional coverage of the 80% interval" in html and "Worst slab:" in html
    assert phrase.replace("'", "&#39;") in html
