"""Fine and local weights through the structured HiGHS path, the local basis, penalty and "auto".

Tolerances: objectives 1e-6 relative against generic cvxpy (the issue's bar for exact paths);
constraints (simplex, positivity of local weights, non-crossing) 1e-8.
"""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from qaggstats.aggregate import fit_weights, pinball_sums
from qaggstats.basis import LocalBasis
from qaggstats.errors import DataError
from qaggstats.selection import PENALTY_GRID, penalty_scale, select_family


def regional(n=400, r=5, seed=0):
    """Two models, each good in one half of x (the paper's case for local weights)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = x + rng.normal(size=n) * 0.3
    z = np.quantile(rng.normal(size=20000), np.linspace(0.1, 0.9, r)) * 0.3
    good = x[:, None] + z
    A = np.where((x < 0)[:, None], good, good + 1.5)  # good left, biased right
    B = np.where((x < 0)[:, None], good - 1.5, good)  # good right, biased left
    Q = np.sort(np.stack([A, B, x[:, None] * 0 + z * 4], axis=1), axis=2)
    return Q, y, np.linspace(0.1, 0.9, r), x


OPTIONS = [dict(constraint=c, noncrossing=nc) for c in ("simplex", "nonneg", "free") for nc in (False, True)]


@pytest.mark.parametrize("opts", OPTIONS)
def test_fine_structured_equals_cvxpy(opts):
    Q, y, taus, x = regional(n=250, seed=1)
    Qx, _, _, _ = regional(n=40, seed=2)
    Qx = Qx + np.linspace(-2, 2, 40)[:, None, None] * np.linspace(0, 1, taus.size)[::-1]
    fast = fit_weights(Q, y, taus, family="fine", extra={"Q": Qx}, min_gap=0.01, solver="fast", **opts)
    ref = fit_weights(Q, y, taus, family="fine", extra={"Q": Qx}, min_gap=0.01, solver="cvxpy", **opts)
    assert fast.solver == "HIGHS-structured"
    assert fast.objective == pytest.approx(ref.objective, rel=1e-6)
    if opts["constraint"] == "simplex":
        assert fast.alpha.min() >= -1e-10 and np.abs(fast.alpha.sum(axis=(0, 1)) - 1).max() < 1e-8
    if opts["noncrossing"]:
        for Qm in (Q, np.sort(Qx, axis=2)):
            assert np.diff(fast.combine(Qm), axis=1).min() >= 0.01 - 1e-8


@pytest.mark.parametrize("penalty", [0.0, 3.0])
@pytest.mark.parametrize("opts", OPTIONS)
def test_local_structured_equals_cvxpy(opts, penalty):
    Q, y, taus, x = regional(n=250, seed=3)
    Qx, _, _, xx = regional(n=40, seed=4)
    basis = np.column_stack([np.ones_like(x), x, np.maximum(x, 0)])
    bx = np.column_stack([np.ones_like(xx), xx * 1.5, np.maximum(xx * 1.5, 0)])  # beyond the training range
    kw = dict(family="local", basis=basis, extra={"Q": Qx, "basis": bx}, penalty=penalty, **opts)
    fast = fit_weights(Q, y, taus, solver="fast", **kw)
    ref = fit_weights(Q, y, taus, solver="cvxpy", **kw)
    assert fast.solver == "HIGHS-structured" and fast.penalty == penalty
    assert fast.objective == pytest.approx(ref.objective, rel=1e-6)
    if opts["constraint"] != "free":
        for b in (basis, bx):
            a = fast.weights_at(b)
            assert a.min() >= -1e-8
            if opts["constraint"] == "simplex":
                assert np.abs(a.sum(axis=1) - 1).max() < 1e-8
    if opts["noncrossing"]:
        assert np.diff(fast.combine(Q, basis=basis), axis=1).min() >= -1e-8


def test_local_structured_large_n_uses_reduced_band():
    # n > 2000: the structured path fixes far points' dual columns and must still be exact
    Q, y, taus, x = regional(n=3000, r=5, seed=5)
    basis = np.column_stack([np.ones_like(x), x])
    fast = fit_weights(Q, y, taus, family="local", basis=basis, solver="fast")
    ref = fit_weights(Q, y, taus, family="local", basis=basis, solver="cvxpy")
    assert fast.objective == pytest.approx(ref.objective, rel=1e-6)


def test_local_wins_where_models_split_the_regions():
    Q, y, taus, x = regional(n=600, seed=6)
    X = np.column_stack([x, x > 0])  # a design in which the regions are visible
    basis = LocalBasis("design").fit(X, Q).transform(X, Q)
    local = fit_weights(Q, y, taus, family="local", basis=basis)
    per_level = fit_weights(Q, y, taus, family="quantile")
    oracle = pinball_sums(y, np.where((x < 0)[:, None], Q[:, 0], Q[:, 1]), taus).sum()
    assert local.loss <= oracle * 1.01 and per_level.loss > 1.1 * oracle
    a = local.weights_at(basis)  # (n, p, r): model A on the left, B on the right
    assert a[x < -0.5, 0].mean() > 0.7 and a[x > 0.5, 1].mean() > a[x < -0.5, 1].mean() + 0.3


def test_penalty_shrinks_local_towards_constant_weights():
    Q, y, taus, x = regional(n=300, seed=7)
    basis = np.column_stack([np.ones_like(x), x])
    heavy = fit_weights(Q, y, taus, family="local", basis=basis, penalty=1e6, noncrossing=False)
    per_level = fit_weights(Q, y, taus, family="quantile", noncrossing=False)
    assert np.abs(heavy.alpha[:, :, 1]).max() < 1e-8
    assert heavy.loss == pytest.approx(per_level.loss, rel=1e-6)


def test_spread_basis_is_linear_and_data_only():
    Q, y, taus, x = regional(n=300, seed=8)
    lb = LocalBasis("spread").fit(None, Q)
    phi = lb.transform(None, Q)
    assert phi.shape == (300, 1 + 1 + lb.knots + 2) and np.all(phi[:, 0] == 1.0)
    assert np.allclose(phi[:, 1:].mean(axis=0)[[0, -2, -1]], 0.0, atol=1e-10)
    # new rows beyond the training range are clipped to it
    far = lb.transform(None, Q * 10)
    assert far[:, 1:].max() <= phi[:, 1:].max(axis=0).max() + 1e-12
    # state is plain data: numpy arrays, strings, tuples, ints
    for value in vars(lb).values():
        assert value is None or isinstance(value, (np.ndarray, str, tuple, int))
    again = pickle.loads(pickle.dumps(lb))
    assert np.array_equal(again.transform(None, Q), phi)
    both = LocalBasis("both").fit(np.column_stack([x, np.zeros_like(x)]), Q, column_names=["x", "const"])
    assert both.columns[-1] == "x" and both.transform(np.column_stack([x, x]), Q).shape[1] == phi.shape[1] + 1
    with pytest.raises(DataError, match="design has 1 columns; the basis was fitted on 2"):
        both.transform(x[:, None], Q)
    with pytest.raises(DataError, match="needs the base predictions Q"):
        LocalBasis().fit(None, None)
    with pytest.raises(DataError, match="unknown local basis kind 'splines'"):
        LocalBasis("splines").fit(None, Q)


def test_default_basis_is_a_partition_of_unity_everywhere():
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, 300)
    # location and spread both vary with x
    Q = np.sort(x[:, None, None] + (1.2 + x[:, None, None]) * rng.normal(size=(300, 2, 5)), axis=2)
    lb = LocalBasis().fit(None, Q)
    assert lb.kind == "partition" and len(lb.columns) == 12 and lb.columns[0] == "loc1:spread1"
    for Qm in (Q, Q * 10 - 3, Q[:1]):  # training rows, rows far beyond them, a single row
        phi = lb.transform(None, Qm)
        assert phi.shape == (Qm.shape[0], 12) and phi.min() >= 0.0
        assert np.abs(phi.sum(axis=1) - 1.0).max() < 1e-12
    # every prototype is learnt from training rows, though location and spread are correlated
    assert (lb.transform(None, Q).sum(axis=0) > 1.0).all()
    for value in vars(lb).values():
        assert value is None or isinstance(value, (np.ndarray, str, tuple, int))
    assert np.array_equal(pickle.loads(pickle.dumps(lb)).transform(None, Q), lb.transform(None, Q))
    # a location with few distinct values (a factor's levels) merges repeated knots
    flat = np.repeat(np.sort(np.random.default_rng(0).normal(size=(1, 2, 5)), axis=2), 40, axis=0)
    flat[20:] += 1.0
    coarse = LocalBasis().fit(None, flat)
    assert [k.size for k in coarse.hat_knots] == [2, 1] and coarse.transform(None, flat).shape == (40, 2)
    with pytest.raises(DataError, match="grid must be two integers"):
        LocalBasis(grid=(4, 0)).fit(None, Q)


PARTITION_OPTIONS = [dict(constraint=c, noncrossing=nc, penalty=pen)
                     for c in ("simplex", "nonneg", "free") for nc in (False, True) for pen in (0.0, 2.0)]


@pytest.mark.parametrize("opts", PARTITION_OPTIONS)
def test_local_on_a_partition_equals_cvxpy_and_is_simplex_at_every_x(opts):
    Q, y, taus, x = regional(n=250, seed=3)
    Qx, _, _, _ = regional(n=40, seed=4)
    Qx = Qx * 1.5 + 0.5  # extra points beyond the training range
    lb = LocalBasis(grid=(3, 2)).fit(None, Q)
    basis, bx = lb.transform(None, Q), lb.transform(None, Qx)
    kw = dict(family="local", basis=basis, extra={"Q": Qx, "basis": bx}, min_gap=0.01, **opts)
    fast = fit_weights(Q, y, taus, solver="fast", **kw)
    ref = fit_weights(Q, y, taus, solver="cvxpy", **kw)
    assert fast.solver == "HIGHS-structured" and fast.partition and ref.partition
    assert fast.objective == pytest.approx(ref.objective, rel=1e-6)
    if opts["constraint"] != "free":
        assert fast.alpha.min() >= 0.0
        # weights at rows never seen in the fit: convex combinations of the prototypes
        new = lb.transform(None, regional(n=100, seed=11)[0] * 3 - 1)
        a = fast.weights_at(new)
        assert a.min() >= 0.0
        if opts["constraint"] == "simplex":
            assert np.abs(fast.alpha.sum(axis=0) - 1).max() < 1e-8
            assert np.abs(a.sum(axis=1) - 1).max() < 1e-8
    if opts["noncrossing"]:
        assert np.diff(fast.combine(Q, basis=basis), axis=1).min() >= 0.01 - 1e-8
        assert np.diff(fast.combine(np.sort(Qx, axis=2), basis=bx), axis=1).min() >= 0.01 - 1e-8


def test_partition_penalty_shrinks_to_the_per_level_family():
    Q, y, taus, x = regional(n=300, seed=7)
    basis = LocalBasis().fit(None, Q).transform(None, Q)
    heavy = fit_weights(Q, y, taus, family="local", basis=basis, penalty=1e6, noncrossing=False)
    free = fit_weights(Q, y, taus, family="local", basis=basis, noncrossing=False)
    per_level = fit_weights(Q, y, taus, family="quantile", noncrossing=False)
    assert np.abs(heavy.alpha - heavy.alpha.mean(axis=2, keepdims=True)).max() < 1e-8
    assert heavy.loss == pytest.approx(per_level.loss, rel=1e-6)
    # without a penalty the local family can only do better on its own rows (it contains per-level)
    assert free.loss <= per_level.loss * (1 + 1e-9)


def test_partition_local_wins_where_models_split_by_location():
    # model A is right where the outcome is low, B where it is high: visible in the predictions
    Q, y, taus, x = regional(n=800, seed=12)
    basis = LocalBasis().fit(None, Q).transform(None, Q)
    local = fit_weights(Q, y, taus, family="local", basis=basis)
    per_level = fit_weights(Q, y, taus, family="quantile")
    assert local.loss < 0.9 * per_level.loss
    a = local.weights_at(basis)  # (n, p, r): model A on the left, B on the right
    assert a[x < -0.5, 0].mean() > a[x > 0.5, 0].mean() + 0.3
    assert a[x > 0.5, 1].mean() > a[x < -0.5, 1].mean() + 0.3


def test_auto_picks_local_when_models_split_the_regions():
    Q, y, taus, x = regional(n=600, seed=9)
    folds = np.arange(600) % 3
    X = np.column_stack([x, x > 0])
    basis = LocalBasis("design").fit(X, Q).transform(X, Q)
    w = fit_weights(Q, y, taus, family="auto", folds=folds, basis=basis)
    sel = w.selection
    assert w.requested == "auto" and w.family == "local"
    assert list(sel.columns) == ["family", "constraint", "penalty", "heldout_wis", "se", "chosen", "why"]
    assert sel["chosen"].sum() == 1 and sel.loc[sel["chosen"], "family"].item() == "local"
    # every family and constraint of the default grid, the single best model first
    assert sel["family"].tolist()[:6] == ["single", "global", "quantile", "quantile", "qra", "fqra"]
    assert len(sel) == 7 + len(PENALTY_GRID)
    chosen = sel.loc[sel["chosen"]].iloc[0]
    assert chosen["heldout_wis"] <= sel["heldout_wis"].min() + chosen["se"] + 1e-12
    assert chosen["heldout_wis"] <= sel.loc[sel["family"] == "single", "heldout_wis"].item()
    # the refit on all rows uses the chosen penalty
    assert w.penalty == pytest.approx(chosen["penalty"] * penalty_scale(np.sort(Q, axis=2)))


def test_auto_prefers_the_simpler_family_when_local_adds_nothing():
    rng = np.random.default_rng(10)
    n, taus = 600, np.array([0.1, 0.5, 0.9])
    y = rng.normal(size=n)
    z = np.array([-1.2816, 0.0, 1.2816])
    Q = np.stack([np.tile(z, (n, 1)), np.tile(z * 2 + 1, (n, 1))], axis=1) + rng.normal(0, 0.01, (n, 2, 3))
    w = select_family(Q, y, taus, np.arange(n) % 3, fit_weights=fit_weights, candidates=("global", "quantile"))
    # the first model is right: nothing beats it by more than noise, so the simplest wins
    assert w.family == "single" and w.selection["chosen"].sum() == 1
    assert w.selection["family"].tolist() == ["single", "global", "quantile"]
    assert (w.selection["why"].str.contains("vs chosen")).sum() == 2
    assert np.array_equal(w.alpha, np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))


def test_the_guard_never_chooses_a_family_worse_than_the_single_best_model():
    from qaggstats.selection import _choose

    rng = np.random.default_rng(0)
    best = rng.uniform(0.5, 1.5, 400)
    single = best + 0.1                                  # worse than the best by 0.1, no noise: SE 0
    noisy = best + 0.15 + rng.normal(0, 5.0, 400)        # within one (large) SE of the best, above single
    per_row = np.stack([single, noisy, best])
    rows = [{"family": f, "constraint": "simplex", "penalty": np.nan, "heldout_wis": float(v.mean())}
            for f, v in zip(["single", "fine", "dqa"], per_row)]
    table, chosen = _choose(rows, per_row, None, rule="se")
    assert table.loc[1, "heldout_wis"] <= table.loc[2, "heldout_wis"] + table.loc[1, "se"]  # the 1-SE rule alone would take it
    assert chosen["family"] == "dqa"
    assert "worse than the best single model" in table.loc[1, "why"]


@pytest.mark.parametrize("seed", range(4))
def test_auto_held_out_wis_is_never_above_the_single_models(seed):
    rng = np.random.default_rng(seed)
    n, taus = 300, np.array([0.1, 0.5, 0.9])
    y = rng.normal(size=n)
    Q = np.sort(rng.normal(size=(n, 3, 3)) * np.array([0.5, 1.0, 2.0])[None, :, None] + rng.normal(size=(n, 1, 1)) * 0.3, axis=2)
    w = select_family(Q, y, taus, np.arange(n) % 3, fit_weights=fit_weights)
    sel = w.selection
    single = sel.loc[sel["family"] == "single", "heldout_wis"].item()
    assert sel.loc[sel["chosen"], "heldout_wis"].item() <= single


def test_candidates_with_constraints_and_errors():
    Q, y, taus, x = regional(n=300, seed=3)
    w = fit_weights(Q, y, taus, family="auto", folds=np.arange(300) % 3, candidates=("quantile:free", "global"))
    assert w.selection["constraint"].tolist() == ["simplex", "free", "simplex"]
    with pytest.raises(DataError, match="unknown candidate family 'best'"):
        fit_weights(Q, y, taus, family="auto", folds=np.arange(300) % 3, candidates=("best",))
    with pytest.raises(DataError, match="unknown constraint 'pos'"):
        fit_weights(Q, y, taus, family="auto", folds=np.arange(300) % 3, candidates=("quantile:pos",))


def test_penalty_auto_and_errors():
    Q, y, taus, x = regional(n=300, seed=11)
    basis = np.column_stack([np.ones_like(x), x])
    w = fit_weights(Q, y, taus, family="local", basis=basis, penalty="auto", folds=np.arange(300) % 3)
    assert w.requested == "local" and set(w.selection["penalty"]) == set(PENALTY_GRID)
    with pytest.raises(DataError, match="needs folds="):
        fit_weights(Q, y, taus, family="auto")
    with pytest.raises(DataError, match="one fold id per out-of-fold row"):
        fit_weights(Q, y, taus, family="auto", folds=np.zeros(5), basis=basis)
    with pytest.raises(DataError, match="candidate 'local' needs basis="):
        fit_weights(Q, y, taus, family="auto", folds=np.arange(300) % 3, candidates=("quantile", "local"))
    with pytest.raises(DataError, match="candidate 'dqa' needs features="):
        fit_weights(Q, y, taus, family="auto", folds=np.arange(300) % 3, candidates=("quantile", "dqa"))
    with pytest.raises(DataError, match="penalty='auto' applies to the 'local' family only"):
        fit_weights(Q, y, taus, family="quantile", penalty="auto", folds=np.arange(300) % 3)


def test_cvxpy_fits_in_threads_do_not_mix_data():
    # the cached cvxpy problem is shared: concurrent fits must each get their own answer
    data = [regional(n=120, seed=20 + i) for i in range(4)]
    alone = [fit_weights(Q, y, t, solver="cvxpy").objective for Q, y, t, _ in data]
    out = [None] * 4

    def run(i):
        Q, y, t, _ = data[i]
        out[i] = fit_weights(Q, y, t, solver="cvxpy").objective

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert out == pytest.approx(alone, rel=1e-6)


@pytest.mark.parametrize("family", ["fine", "local"])
def test_capped_cut_rounds_stay_exact(family, monkeypatch):
    # few cuts per round (as at large n) only adds rounds; the answer is still the full LP's
    from qaggstats import _lp

    monkeypatch.setattr(_lp.FineDesign, "cut_cap", 2)
    monkeypatch.setattr(_lp.LocalDesign, "cut_cap", 2)
    Q, y, taus, x = regional(n=200, seed=12)
    Qx = np.sort(Q[:40] + np.linspace(-2, 2, 40)[:, None, None] * np.linspace(0, 1, taus.size)[::-1], axis=2)
    basis = np.column_stack([np.ones_like(x), x])
    kw = dict(family=family, extra={"Q": Qx, **({"basis": basis[:40]} if family == "local" else {})},
              min_gap=0.3, basis=basis if family == "local" else None)
    fast = fit_weights(Q, y, taus, solver="fast", **kw)
    assert fast.rounds > 3
    assert fast.objective == pytest.approx(fit_weights(Q, y, taus, solver="cvxpy", **kw).objective, rel=1e-6)


def test_penalty_path_equals_one_fit_per_penalty():
    Q, y, taus, x = regional(n=300, seed=13)
    partition = LocalBasis(grid=(3, 2)).fit(None, Q).transform(None, Q)
    linear = np.column_stack([np.ones_like(x), x])
    pens = [0.0, 1.0, 10.0, 100.0]
    for basis in (partition, linear):
        path = fit_weights(Q, y, taus, family="local", basis=basis, penalty=pens)
        assert isinstance(path, list) and [w.penalty for w in path] == pens
        for w, pen in zip(path, pens):
            one = fit_weights(Q, y, taus, family="local", basis=basis, penalty=pen)
            assert w.objective == pytest.approx(one.objective, rel=1e-9)
    # heavier penalties can only raise the check loss along the path
    losses = [w.loss for w in fit_weights(Q, y, taus, family="local", basis=partition, penalty=pens)]
    assert all(b >= a - 1e-9 for a, b in zip(losses, losses[1:]))
    # the generic model takes a path too (one fit per penalty), with the same answers
    generic = fit_weights(Q, y, taus, family="local", basis=partition, penalty=pens[:2], solver="cvxpy")
    assert [w.solver for w in generic] != ["HIGHS-structured"] * 2
    for w, pen in zip(generic, pens):
        assert w.objective == pytest.approx(fit_weights(Q, y, taus, family="local", basis=partition,
                                                        penalty=pen).objective, rel=1e-6)
    with pytest.raises(DataError, match="'local' family only"):
        fit_weights(Q, y, taus, family="quantile", penalty=[0.0, 1.0])
    with pytest.raises(DataError, match="finite numbers >= 0"):
        fit_weights(Q, y, taus, family="local", basis=partition, penalty=[0.0, -1.0])
    with pytest.raises(DataError, match="empty"):
        fit_weights(Q, y, taus, family="local", basis=partition, penalty=[])
