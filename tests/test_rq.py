"""rq against R's quantreg reference outputs and a direct primal LP."""
import re

import numpy as np
import pandas as pd
from pathlib import Path

import pytest
from scipy.optimize import linprog

from qaggstats.errors import DataError
from qaggstats.formula import model_frames
from qaggstats.learners.linear import LinearQR
from qaggstats.quantreg import check_loss, rq, rq_fit, rq_rank_ci, rq_se

REF = str(Path(__file__).resolve().parent / "data" / "quantreg")
CONCRETE = "strength ~ cement + slag + ash + water + superplastic + age_group + bs(fine, df = 4)"


@pytest.fixture(scope="module")
def engel():
    d = pd.read_csv(f"{REF}/engel.csv")
    X = np.column_stack([np.ones(len(d)), d["income"]])
    return d, X, d["foodexp"].to_numpy(), pd.read_csv(f"{REF}/engel_rq.csv")


def _ref(ref, tau, method, col):
    return ref[(ref.tau == tau) & (ref.se_method == method)][col].to_numpy()


def test_engel_estimates_and_se_match_r(engel):
    _, X, y, ref = engel
    for tau in sorted(ref.tau.unique()):
        beta, _ = rq_fit(X, y, tau)
        np.testing.assert_allclose(beta, _ref(ref, tau, "iid", "estimate"), rtol=1e-9)
        for se in ("iid", "nid", "ker"):
            np.testing.assert_allclose(rq_se(X, y, tau, beta, se), _ref(ref, tau, se, "std_error"),
                                       rtol=1e-9, err_msg=f"{se} at tau={tau}")


def test_engel_rank_intervals_match_r(engel):
    _, X, y, ref = engel
    for tau in sorted(ref.tau.unique()):
        beta, _ = rq_fit(X, y, tau)
        want = ref[(ref.tau == tau) & (ref.se_method == "rank")][["lower_bd", "upper_bd"]].to_numpy()
        # one degenerate bound at tau=0.05 (intercept, lower) differs by 1.9e-3 relative
        rtol = 2e-3 if tau == 0.05 else 1e-9
        np.testing.assert_allclose(rq_rank_ci(X, y, tau, beta), want, rtol=rtol, err_msg=f"tau={tau}")


def _primal_objective(X, y, tau):
    """min tau 1'u + (1-tau) 1'v  s.t.  X b + u - v = y, u, v >= 0 (HiGHS interior point)."""
    n, d = X.shape
    c = np.concatenate([np.zeros(d), np.full(n, tau), np.full(n, 1 - tau)])
    A = np.hstack([X, np.eye(n), -np.eye(n)])
    bounds = [(None, None)] * d + [(0, None)] * (2 * n)
    return linprog(c, A_eq=A, b_eq=y, bounds=bounds, method="highs-ipm").fun


def _rname(col):
    col = col.replace("Intercept", "(Intercept)")
    col = re.sub(r"age_group\[T\.(\w+)\]", r"age_group\1", col)
    m = re.match(r"bs\(fine, df=4\)\[(\d)\]", col)
    return f"bs(fine, df = 4){int(m.group(1)) + 1}" if m else col


@pytest.fixture(scope="module")
def concrete():
    d = pd.read_csv(f"{REF}/concrete.csv")
    d["age_group"] = pd.Categorical(d["age_group"], categories=["early", "standard", "late"])
    return d, model_frames({"m": CONCRETE}, d), pd.read_csv(f"{REF}/concrete_rq.csv")


def test_concrete_matches_r_and_primal_lp_and_kkt(concrete):
    _, fr, ref = concrete
    X, y = fr.X["m"], fr.y
    names = fr.specs["m"].column_names
    assert names == [_rname(c) for c in fr.specs["m"].patsy_names]
    for tau in (0.1, 0.5, 0.9):
        beta, obj = rq_fit(X, y, tau)
        r = ref[ref.tau == tau].set_index("term")
        assert obj == pytest.approx(r["objective"].iloc[0], rel=1e-9)
        np.testing.assert_allclose(beta, r.loc[names, "estimate"].to_numpy(), rtol=1e-8)
        assert obj == pytest.approx(_primal_objective(X, y, tau), rel=1e-7)
        # KKT: the rows with zero residual take subgradients in [tau-1, tau] balancing the rest
        resid = y - X @ beta
        zero = np.abs(resid) < 1e-8
        assert zero.sum() >= X.shape[1]
        psi = tau - (resid[~zero] < 0)
        kkt = linprog(np.zeros(zero.sum()), A_eq=X[zero].T, b_eq=-X[~zero].T @ psi,
                      bounds=(tau - 1, tau), method="highs")
        assert kkt.status == 0


def test_weights_equal_duplicated_rows(engel):
    _, X, y, _ = engel
    w = np.ones(len(y)); w[:20] = 2.0
    Xd, yd = np.vstack([X, X[:20]]), np.concatenate([y, y[:20]])
    b_w, o_w = rq_fit(X, y, 0.3, w)
    b_d, o_d = rq_fit(Xd, yd, 0.3)
    assert o_w == pytest.approx(o_d, rel=1e-10)
    assert o_w == pytest.approx(check_loss(yd - Xd @ b_w, 0.3), rel=1e-10)


def test_rq_results_tidy_summary_predict(engel):
    d, _, _, ref = engel
    df = d.copy()
    df.loc[3, "income"] = np.nan
    m = rq("foodexp ~ income", df, tau=[0.25, 0.75], se="iid")
    assert m.na.n_dropped == 1 and m.na.by_column == {"income": 1, "foodexp": 0}
    assert list(m.coef.columns) == ["tau", "term", "estimate", "std_error", "t_value", "p_value",
                                    "lower", "upper"]
    assert list(m.params.columns) == ["q0.25", "q0.75"] and m.params.shape == (2, 2)
    row = m.coef[(m.coef.tau == 0.25) & (m.coef.term == "income")].iloc[0]
    assert row.t_value == pytest.approx(row.estimate / row.std_error, rel=1e-12)
    text = m.summary().as_text()
    assert "Pr(>|t|)" in text and "234 of 235 (dropped 1)" in text and "tau: [1] 0.75" in text
    assert "<table" in m._repr_html_()
    pred = m.predict(pd.DataFrame({"income": [1000.0, np.nan]}))
    assert pred.loc[0, "q0.25"] == pytest.approx(m.params.loc["(Intercept)", "q0.25"]
                                                  + 1000 * m.params.loc["income", "q0.25"], rel=1e-12)
    assert np.isnan(pred.loc[1, "q0.75"])
    full = rq("foodexp ~ income", d, tau=0.5, se="rank")
    got = full.coef[["lower", "upper"]].to_numpy()
    want = ref[(ref.tau == 0.5) & (ref.se_method == "rank")][["lower_bd", "upper_bd"]].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_rq_errors(engel):
    d = engel[0]
    with pytest.raises(DataError, match="tau"):
        rq("foodexp ~ income", d, tau=1.2)
    with pytest.raises(DataError, match="se must be"):
        rq("foodexp ~ income", d, se="bootstrap")
    with pytest.raises(DataError, match="singular"):
        rq_fit(np.column_stack([np.ones(5), np.ones(5)]), np.arange(5.0), 0.5)


def test_linear_learner_matches_rq_fit(concrete):
    _, fr, _ = concrete
    X, y = fr.X["m"], fr.y
    lr = LinearQR().fit(X, y, [0.1, 0.9])
    np.testing.assert_allclose(lr.coef_[:, 1], rq_fit(X, y, 0.9)[0], rtol=1e-12)
    assert lr.predict(X[:7]).shape == (7, 2)
