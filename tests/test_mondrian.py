"""Group-conditional (Mondrian) split CQR: per-group coverage by simulation, and the qagg option.

Simulation: two groups, A (70 %) with noise sd 0.5 and B (30 %) with sd 2; the base interval
is the same homoscedastic one everywhere (too wide for A, too narrow for B). Marginal split CQR
then reaches 1 - alpha on average but under-covers B; Mondrian CQR covers each group.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import qaggstats as qa
from qaggstats.conformal import MondrianCQR, SplitCQR
from qaggstats.errors import CalibrationError, DataError

TAUS = np.array([0.1, 0.5, 0.9])
SD = {"A": 0.5, "B": 2.0}


def draw(rng, n):
    g = np.where(rng.uniform(size=n) < 0.7, "A", "B")
    y = np.where(g == "A", SD["A"], SD["B"]) * rng.standard_normal(n)
    q = np.tile(stats.norm.ppf(TAUS), (n, 1))  # the base model: N(0, 1) quantiles for everyone
    return y, q, g


def test_mondrian_covers_each_group_over_2000_partitions():
    rng = np.random.default_rng(42)
    reps, n_cal, n_test, alpha = 2000, 100, 100, 0.2
    cov = {"A": [], "B": []}
    marginal = {"A": [], "B": []}
    upper = {"A": [], "B": []}
    for _ in range(reps):
        y, q, g = draw(rng, n_cal)
        yt, qt, gt = draw(rng, n_test)
        cal = MondrianCQR.fit(y, q, g, TAUS, column="g")
        q_m = cal.apply(qt, gt)
        q_s = SplitCQR.fit(y, q, TAUS).apply(qt)
        for grp in ("A", "B"):
            sel = gt == grp
            if sel.any():
                cov[grp].append(np.mean((q_m[sel, 0] <= yt[sel]) & (yt[sel] <= q_m[sel, 2])))
                marginal[grp].append(np.mean((q_s[sel, 0] <= yt[sel]) & (yt[sel] <= q_s[sel, 2])))
                upper[grp].append(cal.coverage_band(alpha, grp)[1])
    for grp in ("A", "B"):
        c = np.asarray(cov[grp])
        mean, se = c.mean(), c.std(ddof=1) / np.sqrt(c.size)
        m_mean = np.mean(marginal[grp])
        print(f"group {grp}: Mondrian coverage {mean:.4f} ± {se:.4f} (guaranteed [0.8, {np.mean(upper[grp]):.4f}]), "
              f"marginal CQR {m_mean:.4f}")
        # within the group's band [1 - alpha, 1 - alpha + 1/(n_g + 1)] (averaged over partitions)
        assert mean + 3 * se >= 1 - alpha
        assert mean - 3 * se <= np.mean(upper[grp])
    assert np.mean(marginal["B"]) < 1 - alpha - 0.1   # the marginal method fails group B here
    assert np.mean(marginal["A"]) > 1 - alpha + 0.05


def test_marginal_band_of_the_mixture_holds():
    """The pooled band (moment-matched Beta of the group mixture) holds about 95 % of the time."""
    rng = np.random.default_rng(7)
    inside = []
    for _ in range(500):
        y, q, g = draw(rng, 200)
        yt, qt, gt = draw(rng, 200)
        cal = MondrianCQR.fit(y, q, g, TAUS, column="g")
        q_m = cal.apply(qt, gt)
        observed = np.mean((q_m[:, 0] <= yt) & (yt <= q_m[:, 2]))
        low, high = cal.binomial_band(0.2, 200)
        inside.append(low <= observed <= high)
    assert 0.91 <= np.mean(inside) <= 0.99  # binomial SE of the share over 500 draws: 0.01


# ----------------------------------------------------------------------------- inside qagg
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 700
    g = rng.choice(["calm", "wild"], n, p=[0.7, 0.3])
    x = rng.uniform(0, 3, n)
    y = 1 + x + np.where(g == "wild", 3.0, 0.5) * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _fit(df, **kw):
    args = dict(models={"lin": qa.learners.LinearQR()}, taus=TAUS, conformal="cqr", conformal_groups="g", cv=3, n_jobs=1)
    args.update(kw)
    return qa.qagg("y ~ x", df, **args)


def test_qagg_mondrian_corrections_are_per_group(data, tmp_path):
    fit = _fit(data.iloc[:500], test=data.iloc[500:])
    cal = fit.calibration
    assert isinstance(cal, MondrianCQR) and set(cal.groups) == {"calm", "wild"}
    # the split is stratified: each group gives cal_size (0.25) of its rows to calibration
    counts = data.iloc[:500]["g"].value_counts()
    assert dict(zip(cal.groups, cal.n_groups)) == {g: round(0.25 * counts[g]) for g in cal.groups}
    wide = cal.corrections[cal.groups.index("wild"), 0]
    narrow = cal.corrections[cal.groups.index("calm"), 0]
    assert wide > 0 > narrow  # the wild group's interval is widened, the calm one's narrowed
    rows = fit.coverage[fit.coverage["set"].str.startswith("test, g = ")]
    assert sorted(rows["set"]) == ["test, g = calm", "test, g = wild"] and rows["inside"].all()
    text = str(fit.summary())
    assert "Group-conditional (Mondrian) calibration by 'g'" in text and "guaranteed 80%" in text
    assert any(d.claim.startswith("Mondrian CQR, group g = wild") for d in fit.diagnostics)
    new = data.iloc[500:510].copy()
    new.loc[new.index[0], "g"] = None  # a missing group label is a missing predictor: NaN row
    pred = fit.predict(new)
    assert pred.iloc[0].isna().all() and pred.iloc[1:].notna().all().all()
    back = qa.load(fit.save(tmp_path / "mondrian.qagg"))
    assert back.predict(new).equals(pred)


def test_qagg_mondrian_errors(data):
    tiny = data.iloc[:200].copy()
    tiny.loc[tiny.index[:6], "g"] = "rare"  # 6 rows: 2 calibration rows, 4 needed at 80 %
    with pytest.raises(CalibrationError, match=r"group 'rare' of conformal_groups column 'g' has 2 calibration"):
        _fit(tiny)
    fit = _fit(data.iloc[:300])
    with pytest.raises(DataError, match=r"group\(s\) 'other' were not in the calibration data"):
        fit.predict(data.iloc[:3].assign(g="other"))
    with pytest.raises(DataError, match="newdata has no column 'g'"):
        fit.predict(data.iloc[:3].drop(columns="g"))
    assert fit.predict(data.iloc[:3].drop(columns="g"), calibrated=False).notna().all().all()
    with pytest.raises(DataError, match="needs conformal='cqr' or 'cqr-asymmetric'"):
        _fit(data.iloc[:300], conformal="cv+")
    with pytest.raises(DataError, match="has 1 missing value"):
        _fit(data.iloc[:300].assign(g=[None] + ["a"] * 299))
    with pytest.raises(DataError, match="test= holds group\\(s\\) 'new'"):
        _fit(data.iloc[:300], test=data.iloc[300:310].assign(g="new"))
