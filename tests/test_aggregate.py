"""Weight fitting: quantgen reference LPs, direct HiGHS LPs, constraints and the structured path.

Tolerances: objectives 1e-6 relative (the issue's bar); weights 1e-5 absolute against R where
the optimum is unique (checked by two different solvers — a vertex solver and an interior
point method, which lands in the middle of a non-unique optimal face — agreeing to 1e-5);
non-crossing 1e-8; simplex feasibility 1e-8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from qaggstats import _cvxpy_model, aggregate
from qaggstats.aggregate import fit_weights, level_groups, pinball_sums
from qaggstats.errors import DataError, SolverError

REF = Path(__file__).resolve().parent / "data" / "quantgen"

CASES = {
    "global": dict(family="global", noncrossing=False),
    "quantile": dict(family="quantile", noncrossing=False),
    "quantile_noncross": dict(family="quantile", noncrossing=True),
    "grouped_noncross": dict(family="grouped", groups=[1, 1, 1, 2, 2, 2, 3, 3, 3], noncrossing=True),
    "quantile_free": dict(family="quantile", constraint="free", intercept=False, noncrossing=False),
}


@pytest.fixture(scope="module")
def ref():
    d = pd.read_csv(REF / "qarr_long.csv").sort_values(["i", "model", "tau"])
    taus = np.sort(d["tau"].unique())
    Q = d["q"].to_numpy().reshape(d["i"].nunique(), d["model"].nunique(), taus.size)
    y = pd.read_csv(REF / "y.csv").sort_values("i")["y"].to_numpy()
    w = pd.read_csv(REF / "obs_weights.csv").sort_values("i")["w"].to_numpy()
    table = pd.read_csv(REF / "quantile_ensemble.csv")
    return Q, y, taus, w, table


def _settings_of(table: pd.DataFrame, case: str) -> dict:
    row = table[table["case"] == case].iloc[0]
    labels = [int(v) for v in str(row["tau_groups"]).split()]
    return dict(groups=labels, noncross=bool(row["noncross"]), nonneg=bool(row["nonneg"]),
                unit_sum=bool(row["unit_sum"]))


def simulate(n=300, p=3, r=5, seed=0, shift=0.0):
    """Base models of different quality, some crossing-prone after weighting; sorted per model."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = 2 * x + (1 + 0.5 * x) * rng.standard_normal(n) + shift
    z = np.quantile(rng.standard_normal(20000), np.linspace(0.1, 0.9, r))
    Q = np.empty((n, p, r))
    for j in range(p):
        bias = rng.normal(0, 0.3, n)[:, None]
        scale = 0.6 + 0.3 * j
        Q[:, j, :] = 2 * x[:, None] * (1 - 0.2 * j) + bias + scale * z + shift
    return np.sort(Q, axis=2), y, np.linspace(0.1, 0.9, r), x


def direct_lp(Q, y, taus, w=None, noncross=True, simplex=True):
    """The per-level (+ non-crossing) weight LP built by hand and solved by linprog(highs)."""
    n, p, r = Q.shape
    w = np.ones(n) if w is None else w
    N = n * r
    # variables: alpha (p*r, level-major), u+ (N), u- (N); residual rows: q_k . a_k + u+ - u- = y
    blocks = sp.block_diag([sp.csr_matrix(Q[:, :, k]) for k in range(r)])
    A_eq = sp.hstack([blocks, sp.eye(N), -sp.eye(N)]).tocsr()
    b_eq = np.tile(y, r)
    if simplex:
        sums = sp.hstack([sp.kron(sp.eye(r), np.ones((1, p))), sp.csr_matrix((r, 2 * N))])
        A_eq, b_eq = sp.vstack([A_eq, sums]), np.concatenate([b_eq, np.ones(r)])
    c = np.concatenate([np.zeros(p * r), np.kron(taus, w), np.kron(1 - taus, w)])
    A_ub = b_ub = None
    if noncross:
        # q_k - q_k+1 <= 0 at every point
        rows = [sp.hstack([sp.csr_matrix((n, p * k)), sp.csr_matrix(Q[:, :, k]), -sp.csr_matrix(Q[:, :, k + 1]),
                           sp.csr_matrix((n, p * (r - k - 2) + 2 * N))]) for k in range(r - 1)]
        A_ub, b_ub = sp.vstack(rows).tocsr(), np.zeros(n * (r - 1))
    bounds = [(0, None) if simplex else (None, None)] * (p * r) + [(0, None)] * (2 * N)
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return res.fun, res.x[: p * r].reshape(r, p).T


# ----------------------------------------------------------------------------- quantgen reference
@pytest.mark.parametrize("case", list(CASES))
def test_reference_objective_and_weights(ref, case):
    Q, y, taus, _, table = ref
    kw = CASES[case]
    s = _settings_of(table, case)
    # our settings reproduce the case's own settings columns
    assert kw["noncrossing"] == s["noncross"]
    assert (kw.get("constraint", "simplex") == "simplex") == (s["nonneg"] and s["unit_sum"])
    assert np.array_equal(level_groups(kw.get("groups"), taus.size, kw["family"]) if kw["family"] != "quantile"
                          else np.arange(taus.size), level_groups(s["groups"], taus.size, "grouped"))
    rows = table[table["case"] == case]
    target = float(rows["objective"].iloc[0])
    alpha_r = rows.pivot(index="model", columns="tau", values="alpha").to_numpy()
    fast = fit_weights(Q, y, taus, solver="auto", **kw)
    ipm = fit_weights(Q, y, taus, solver="cvxpy", **kw)
    assert fast.solver == "HIGHS-structured" and ipm.solver == "CLARABEL"
    for fit in (fast, ipm):
        assert fit.objective == pytest.approx(target, rel=1e-6)
        assert fit.loss == pytest.approx(pinball_sums(y, fit.combine(Q), taus).sum(), rel=1e-12)
    # A vertex (simplex) and an interior-point answer agree only if the optimum is unique.
    unique = np.abs(fast.alpha - ipm.alpha).max() < 1e-5
    assert unique, f"{case}: optimum not unique, weights are not comparable"
    np.testing.assert_allclose(fast.alpha, alpha_r, atol=1e-5)
    np.testing.assert_allclose(ipm.alpha, alpha_r, atol=1e-5)


def test_reference_weighted_against_linprog(ref):
    Q, y, taus, w, _ = ref
    obj, alpha = direct_lp(Q, y, taus, w=w, noncross=True)
    for solver in ("auto", "cvxpy"):
        fit = fit_weights(Q, y, taus, family="quantile", obs_weights=w, solver=solver)
        assert fit.objective == pytest.approx(obj, rel=1e-6)
        assert fit.loss == pytest.approx(pinball_sums(y, fit.combine(Q), taus, w).sum(), rel=1e-12)
    np.testing.assert_allclose(fit_weights(Q, y, taus, obs_weights=w).alpha, alpha, atol=1e-6)
    unweighted = fit_weights(Q, y, taus, solver="auto").objective
    assert abs(unweighted - fit.objective) > 1.0  # the weights change the problem


def test_free_weights_against_linprog(ref):
    Q, y, taus, _, _ = ref
    obj, alpha = direct_lp(Q, y, taus, noncross=False, simplex=False)
    fit = fit_weights(Q, y, taus, family="quantile", constraint="free", intercept=False, noncrossing=False)
    assert fit.objective == pytest.approx(obj, rel=1e-6)


# ----------------------------------------------------------------------------- structure & constraints
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantile_never_worse_than_best_model(seed):
    Q, y, taus, _ = simulate(seed=seed, shift=-5.0)  # negative predictions on purpose
    fit = fit_weights(Q, y, taus, family="quantile", noncrossing=True)
    best = fit.model_losses.sum(axis=1).min()
    assert fit.loss <= best * (1 + 1e-9)
    # without non-crossing each level on its own beats every model at that level
    sep = fit_weights(Q, y, taus, family="quantile", noncrossing=False)
    assert np.all(sep.aggregate_losses <= sep.model_losses.min(axis=0) * (1 + 1e-9) + 1e-9)


@pytest.mark.parametrize("solver", ["auto", "cvxpy"])
@pytest.mark.parametrize("family,kw", [("quantile", {}), ("grouped", {"groups": 2}),
                                       ("qra", {}), ("fine", {}), ("local", {})])
def test_noncrossing_on_training_and_extra_points(family, kw, solver):
    Q, y, taus, x = simulate(n=200, seed=4)
    Qx, yx, _, xx = simulate(n=60, seed=5)
    Qx = Qx + np.linspace(-3, 3, 60)[:, None, None] * np.linspace(0, 1, taus.size)[::-1]  # crossing-prone
    basis, bx = np.column_stack([np.ones_like(x), x]), np.column_stack([np.ones_like(xx), xx])
    extra = {"Q": Qx, **({"basis": bx} if family == "local" else {})}
    fit = fit_weights(Q, y, taus, family=family, extra=extra, min_gap=0.01, solver=solver,
                      basis=basis if family == "local" else None, **kw)
    for Qm, bm in ((Q, basis), (np.sort(Qx, axis=2), bx)):
        q = fit.combine(Qm, basis=bm if family == "local" else None)
        assert np.diff(q, axis=1).min() >= 0.01 - 1e-8
    free = fit_weights(Q, y, taus, family=family, noncrossing=False, solver="cvxpy",
                       basis=basis if family == "local" else None, **kw)
    assert free.objective <= fit.objective * (1 + 1e-7)


def test_structured_matches_full_lp_with_cuts():
    Q, y, taus, _ = simulate(n=400, p=4, r=7, seed=7)
    Qx, _, _, _ = simulate(n=50, p=4, r=7, seed=8)
    for kw in (dict(family="quantile"), dict(family="grouped", groups=[0, 0, 1, 1, 1, 2, 2]),
               dict(family="quantile", constraint="nonneg"), dict(family="qra"),
               dict(family="quantile", constraint="free", min_gap=0.05)):
        fast = fit_weights(Q, y, taus, extra={"Q": Qx}, solver="fast", **kw)
        full = fit_weights(Q, y, taus, extra={"Q": Qx}, solver="CLARABEL", **kw)
        assert fast.objective == pytest.approx(full.objective, rel=1e-6), kw
    assert fit_weights(Q, y, taus, family="qra", solver="fast").rounds >= 0


def test_structured_band_reduction_matches_full_lp():
    # n > 2000 puts the structured path on its reduced LP (fixed-sign "globs"), weighted
    Q, y, taus, _ = simulate(n=3000, p=3, r=5, seed=21)
    w = np.random.default_rng(3).uniform(0.2, 2.0, 3000)
    fast = fit_weights(Q, y, taus, obs_weights=w, solver="fast")
    obj, _ = direct_lp(Q, y, taus, w=w, noncross=True)
    assert fast.objective == pytest.approx(obj, rel=1e-6)
    assert np.diff(fast.combine(Q), axis=1).min() >= -1e-8


def test_constraint_feasibility():
    Q, y, taus, x = simulate(n=150, seed=9, shift=-3.0)
    basis = np.column_stack([np.ones_like(x), x, x**2])
    simplex = fit_weights(Q, y, taus, family="quantile")
    assert simplex.alpha.min() >= -1e-8 and np.abs(simplex.alpha.sum(axis=0) - 1).max() < 1e-8
    nonneg = fit_weights(Q, y, taus, family="quantile", constraint="nonneg", solver="cvxpy")
    assert nonneg.alpha.min() >= -1e-8 and nonneg.intercept is None
    fine = fit_weights(Q, y, taus, family="fine")
    assert fine.alpha.shape == (3, 5, 5) and np.abs(fine.alpha.sum(axis=(0, 1)) - 1).max() < 1e-7
    local = fit_weights(Q, y, taus, family="local", basis=basis)
    a = local.weights_at(basis)
    assert a.shape == (150, 3, 5) and a.min() >= -1e-7 and np.abs(a.sum(axis=1) - 1).max() < 1e-7
    g = fit_weights(Q, y, taus, family="global")
    assert np.ptp(g.alpha, axis=1).max() == 0.0


def test_highs_negative_predictions():
    # cvxpy 1.9.3 made HiGHS/SciPy report "infeasible" here unless weights had bounds [0, 1]
    Q, y, taus, _ = simulate(n=200, seed=11, shift=-50.0)
    assert Q.max() < 0
    ref = fit_weights(Q, y, taus, solver="CLARABEL")
    for name in ("HIGHS", "SCIPY"):
        fit = fit_weights(Q, y, taus, solver=name)
        assert fit.solver == name and fit.attempts == {name: "optimal"}
        assert fit.objective == pytest.approx(ref.objective, rel=1e-6)


def test_fqra_with_all_components_is_qra():
    Q, y, taus, _ = simulate(n=250, seed=12)
    qra = fit_weights(Q, y, taus, family="qra")
    fq = fit_weights(Q, y, taus, family="fqra", n_components=3)
    assert fq.objective == pytest.approx(qra.objective, rel=1e-6)
    one = fit_weights(Q, y, taus, family="fqra", n_components=1)
    assert one.objective >= qra.objective * (1 - 1e-9)
    assert fq.constraint == "free" and fq.intercept.shape == (5,)


def test_smoothness_penalty_and_objective():
    Q, y, taus, _ = simulate(n=250, seed=13)
    plain = fit_weights(Q, y, taus, family="quantile", solver="cvxpy")
    smooth = fit_weights(Q, y, taus, family="quantile", smooth=50.0)
    assert smooth.solver == "CLARABEL"  # smoothing leaves the structured path
    rough = lambda f: np.abs(np.diff(f.alpha, axis=1)).sum()  # noqa: E731
    assert rough(smooth) < rough(plain) - 1e-3
    assert smooth.objective == pytest.approx(smooth.loss + 50.0 * rough(smooth), rel=1e-9)
    assert smooth.loss >= plain.loss * (1 - 1e-7)


def test_mean_median_combine_and_frames():
    Q, y, taus, x = simulate(n=50, seed=14)
    mean = fit_weights(Q, y, taus, family="mean")
    np.testing.assert_allclose(mean.combine(Q), Q.mean(axis=1))
    med = fit_weights(Q, y, taus, family="median")
    np.testing.assert_allclose(med.combine(Q), np.median(Q, axis=1))
    assert med.loss == pytest.approx(pinball_sums(y, np.median(Q, axis=1), taus).sum())
    qra = fit_weights(Q, y, taus, family="qra")
    frame = qra.to_frame(["a", "b", "c"])
    assert list(frame.columns) == ["model", "tau", "weight"] and len(frame) == 3 * 5 + 5
    local = fit_weights(Q, y, taus, family="local", basis=np.column_stack([np.ones_like(x), x]))
    assert list(local.to_frame(["a", "b", "c"]).columns) == ["model", "tau", "basis", "coef"]
    assert local.combine(Q, basis=np.column_stack([np.ones_like(x), x])).shape == (50, 5)
    fine = fit_weights(Q, y, taus, family="fine", noncrossing=False)
    assert len(fine.to_frame(["a", "b", "c"])) == 3 * 5 * 5


def test_dpp_refit_reuses_the_compiled_problem():
    Q, y, taus, _ = simulate(n=300, seed=15)
    _cvxpy_model._CACHE.clear()
    first = fit_weights(Q, y, taus, solver="cvxpy")
    cached = list(_cvxpy_model._CACHE.values())[0][0]
    Q2, y2, _, _ = simulate(n=300, seed=16)
    second = fit_weights(Q2, y2, taus, solver="cvxpy")
    assert list(_cvxpy_model._CACHE.values())[0][0] is cached
    assert second.compile_seconds < first.compile_seconds
    assert second.objective == pytest.approx(fit_weights(Q2, y2, taus).objective, rel=1e-6)


def test_errors_name_the_culprit():
    Q, y, taus, _ = simulate(n=40, seed=17)
    with pytest.raises(DataError, match="unknown weight family 'best'"):
        fit_weights(Q, y, taus, family="best")
    with pytest.raises(DataError, match="Q has 4 levels, expected 5"):
        fit_weights(Q[:, :, :4], y, taus)
    bad = Q.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(DataError, match="row 3, model 1, level 2"):
        fit_weights(bad, y, taus)
    with pytest.raises(DataError, match="basis"):
        fit_weights(Q, y, taus, family="local")
    with pytest.raises(DataError, match="groups"):
        fit_weights(Q, y, taus, family="grouped")
    with pytest.raises(DataError, match="solver='fast'"):
        fit_weights(Q, y, taus, family="fine", smooth=0.1, solver="fast")
    with pytest.raises(DataError, match="column 0 is not the constant 1"):
        fit_weights(Q, y, taus, family="local", basis=np.column_stack([Q[:, 0, 0], Q[:, 1, 1]]), solver="fast")
    with pytest.raises(DataError, match="penalty= applies to the 'local' family only"):
        fit_weights(Q, y, taus, family="quantile", penalty=1.0)
    # a gap no simplex combination can reach: every solver fails and is named
    with pytest.raises(SolverError, match="CLARABEL: infeasible.*HIGHS: infeasible"):
        fit_weights(Q, y, taus, min_gap=1e3, solver="cvxpy")
    with pytest.raises(SolverError, match="HiGHS"):
        fit_weights(Q, y, taus, min_gap=1e3, solver="fast")


def test_structured_retries_when_highs_stops_without_verdict(monkeypatch):
    # HiGHS sometimes ends a dual simplex solve with status 'Unknown' (seen at n = 1e6 on a
    # subsample LP); the structured path must retry rather than fail over to the generic model,
    # which does not fit in memory at that size. The first two runs of each LP report 'Unknown'.
    import highspy

    from qaggstats import _lp

    Q, y, taus, _ = simulate(n=3000, p=3, r=5, seed=21)
    clean = fit_weights(Q, y, taus, family="quantile", noncrossing=False, solver="fast")
    make, strategies, solvers = _lp._highs, [], []

    class Stubborn:
        def __init__(self, h):
            self._h, self._runs = h, 0
            solvers.append(h)

        def run(self):
            self._runs += 1
            strategies.append(_lp._option(self._h, "simplex_strategy"))
            return self._h.run()

        def getModelStatus(self):
            return highspy.HighsModelStatus.kUnknown if self._runs <= 2 else self._h.getModelStatus()

        def __getattr__(self, name):
            return getattr(self._h, name)

    monkeypatch.setattr(_lp, "_highs", lambda *a: Stubborn(make(*a)))
    fast = fit_weights(Q, y, taus, family="quantile", noncrossing=False, solver="fast")
    assert 4 in strategies  # retried cold with the primal simplex ...
    assert all(_lp._option(h, "simplex_strategy") == 1 for h in solvers)  # ... options restored
    assert fast.objective == pytest.approx(clean.objective, rel=1e-9)
    obj, _ = direct_lp(Q, y, taus, noncross=False)
    assert fast.objective == pytest.approx(obj, rel=1e-6)


def test_no_cvxpy_fallback_for_huge_problems(monkeypatch):
    """Above the size cap a structured-path failure is a clear error, not a memory blow-up."""
    import qaggstats.aggregate as agg
    from qaggstats import _lp
    from qaggstats.errors import SolverError

    def fail(*args, **kwargs):
        raise SolverError("HiGHS (structured dual simplex) stopped with status 'Unknown'")

    monkeypatch.setattr(_lp, "solve_structured", fail)
    monkeypatch.setattr(agg, "_CVXPY_MAX_ENTRIES", 100)
    rng = np.random.default_rng(0)
    Q = np.sort(rng.normal(size=(50, 2, 3)), axis=-1)
    with pytest.raises(SolverError, match=r"not tried at n = 50.*weight_rows"):
        agg.fit_weights(Q, rng.normal(size=50), [0.1, 0.5, 0.9])
