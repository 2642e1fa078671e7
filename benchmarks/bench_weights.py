"""Benchmark of the weight fit: every family with and without non-crossing, by n.

Simulated data: p = 5 base models of different bias and spread, r = 19 levels 0.05..0.95,
each model's quantiles sorted. For each (n, family, non-crossing) the default route
(``solver="auto"``: structured HiGHS path for global/quantile/grouped/qra/fqra, cvxpy with
Clarabel otherwise) is timed, with cvxpy's compile time, solver time and the peak of traced
Python/NumPy memory (tracemalloc; solver-internal C++ buffers are not traced). Up to
``--max-generic-n`` rows, the same problem is also solved by generic cvxpy + Clarabel and,
for the per-level family, by HiGHS IPM on hand-built sparse matrices (scipy linprog
"highs-ipm"); every answer's objective is checked against the default route (1e-6 relative).
Target rows: per-level + non-crossing at n = 45,000 with r = 9 and r = 99.

``--flexible`` times the issue-13 targets instead: "local" (basis b = 10: the default
LocalBasis spread columns plus x, x², x³) and "fine" through the structured path at
n = 45,000 (r = 9, and local at r = 99), and at n = 20,000, r = 19 local and fine as a ratio
to the per-level ("quantile") family fitted in the same run, next to a yardstick: one
single-threaded scikit-learn HistGradientBoostingRegressor(loss="quantile") fit on the same
rows. ``--real`` cross-fits the default learners on 20,000 rows of the UCI protein data with
a factor (x0 binned into 8 labelled classes), caches the out-of-fold and test predictions
(``--cache``), and reports the test pinball loss of quantile, local (default basis, penalty
chosen by inner validation), fine and "auto".

Usage::

    python benchmarks/bench_weights.py --quick        # n = 1000, all but "fine" (< 3 min)
    python benchmarks/bench_weights.py --sizes 1000 10000 50000 200000
    python benchmarks/bench_weights.py --flexible [--no-r99]
    python benchmarks/bench_weights.py --real --cache /tmp/protein.npz
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qaggstats.aggregate import fit_weights  # noqa: E402

FAMILIES = ("global", "quantile", "grouped", "qra", "fqra", "local", "fine")


def simulate(n: int, p: int = 5, r: int = 19, seed: int = 0):
    """y, sorted base quantiles Q (n, p, r), levels, and a local basis (n, 3)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = 2 * x + (1 + 0.5 * x) * rng.standard_normal(n)
    taus = np.linspace(0.05, 0.95, r)
    z = norm.ppf(taus)
    Q = np.empty((n, p, r))
    for j in range(p):
        spread = (0.7 + 0.15 * j) * (1 + 0.3 * x[:, None] * (j - 2))
        Q[:, j, :] = 2 * x[:, None] * (1 - 0.1 * j) + rng.normal(0, 0.3 + 0.1 * j, n)[:, None] + spread * z
    return y, np.sort(Q, axis=2), taus, np.column_stack([np.ones(n), x, x**2])


def timed(fn):
    """(result, seconds, peak traced MB)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


def highs_ipm(Q, y, taus, noncross: bool) -> tuple[float, float]:
    """Per-level simplex weight LP on hand-built sparse matrices, HiGHS IPM: (objective, s)."""
    t0 = time.perf_counter()
    n, p, r = Q.shape
    N = n * r
    blocks = sp.block_diag([sp.csr_matrix(Q[:, :, k]) for k in range(r)])
    A_eq = sp.vstack([sp.hstack([blocks, sp.eye(N), -sp.eye(N)]),
                      sp.hstack([sp.kron(sp.eye(r), np.ones((1, p))), sp.csr_matrix((r, 2 * N))])]).tocsr()
    b_eq = np.concatenate([np.tile(y, r), np.ones(r)])
    c = np.concatenate([np.zeros(p * r), np.repeat(taus, n), np.repeat(1 - taus, n)])
    A_ub = b_ub = None
    if noncross:
        D = sp.diags([np.ones(r - 1), -np.ones(r - 1)], [0, 1], shape=(r - 1, r))
        # row (k, i): Q_ik . a_k - Q_i,k+1 . a_k+1 <= 0
        A_ub = sp.hstack([sp.kron(D, sp.eye(n)) @ blocks, sp.csr_matrix((n * (r - 1), 2 * N))]).tocsr()
        b_ub = np.zeros(n * (r - 1))
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs-ipm")
    if res.status != 0:
        raise RuntimeError(res.message)
    return float(res.fun), time.perf_counter() - t0


def kwargs_for(family: str, basis):
    return {"groups": 3} if family == "grouped" else ({"basis": basis} if family == "local" else {})


def row(n, r, family, noncross, y, Q, taus, basis, max_generic_n, p=5):
    kw = kwargs_for(family, basis)
    out = {"n": n, "r": r, "family": family, "noncross": noncross}
    if family in ("local", "fine") and n > max_generic_n:
        out["note"] = f"skipped: cvxpy-only family above n = {max_generic_n}"
        return out
    fit, secs, peak = timed(lambda: fit_weights(Q, y, taus, family=family, noncrossing=noncross, **kw))
    out.update(seconds=secs, compile=fit.compile_seconds, solve=fit.solve_seconds, peak=peak, solver=fit.solver,
               objective=fit.objective, rounds=fit.rounds, cuts=fit.active)
    if n <= max_generic_n and fit.solver == "HIGHS-structured":
        gen, gsecs, _ = timed(lambda: fit_weights(Q, y, taus, family=family, noncrossing=noncross,
                                                  solver="cvxpy", **kw))
        assert abs(gen.objective / fit.objective - 1) < 1e-6, (family, gen.objective, fit.objective)
        out["generic"] = gsecs
    if n <= max_generic_n and family == "quantile":
        obj, isecs = highs_ipm(Q, y, taus, noncross)
        assert abs(obj / fit.objective - 1) < 1e-6, (obj, fit.objective)
        out["ipm"] = isecs
    return out


def fmt(v, spec=".2f"):
    return "–" if v is None else format(v, spec)


def table(rows) -> str:
    lines = ["| n | r | family | non-crossing | solver | total s | compile s | solve s | peak MB | rounds / cuts "
             "| generic cvxpy+Clarabel s (ratio) | HiGHS IPM s (ratio) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in rows:
        if "note" in o:
            lines.append(f"| {o['n']} | {o['r']} | {o['family']} | {'yes' if o['noncross'] else 'no'} | – | "
                         f"{o['note']} | | | | | | |")
            continue
        gen = f"{o['generic']:.2f} ({o['generic'] / o['seconds']:.1f}×)" if "generic" in o else "skipped (size cap)" \
            if o["solver"] == "HIGHS-structured" else "(is the default)"
        ipm = f"{o['ipm']:.2f} ({o['ipm'] / o['seconds']:.1f}×)" if "ipm" in o else "–"
        lines.append(f"| {o['n']} | {o['r']} | {o['family']} | {'yes' if o['noncross'] else 'no'} | {o['solver']} | "
                     f"{o['seconds']:.2f} | {o['compile']:.2f} | {o['solve']:.2f} | {o['peak']:.0f} | "
                     f"{o['rounds']} / {o['cuts']} | {gen} | {ipm} |")
    return "\n".join(lines)


def yardstick(n: int, seed: int = 0) -> float:
    """Seconds of one single-threaded HistGradientBoostingRegressor(loss="quantile") fit on n rows."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = X[:, 0] + rng.normal(size=n)
    t0 = time.perf_counter()
    HistGradientBoostingRegressor(loss="quantile", quantile=0.5, random_state=0).fit(X, y)
    return time.perf_counter() - t0


def flexible_basis(Q):
    """The default local basis: a partition of unity, 4 x 3 hats of location and spread (b = 12)."""
    from qaggstats.basis import LocalBasis

    return LocalBasis().fit(None, Q).transform(None, Q)


def flexible(r99: bool) -> list[dict]:
    """The issue-13 timing targets: rows of (what, n, r, seconds, ratio, note)."""
    rows = []
    yard = yardstick(45000)
    rows.append(dict(what="yardstick: HGB quantile fit", n=45000, r=1, seconds=yard, cpu=float("nan"), ratio=float("nan"),
                     note=""))
    print(rows[-1], flush=True)
    # at 99 levels the weights are fitted without non-crossing constraints and sorted afterwards
    # (the paper's practice; sorting never raises WIS): with them at every one of the 45,000
    # training points the local LP has tens of thousands of binding cuts
    for n, r, families, noncrossing in ((20000, 19, ("quantile", "fine", "local"), True),
                                        (45000, 9, ("quantile", "fine", "local"), True)) + \
            (((45000, 99, ("quantile", "local"), False),) if r99 else ()):
        y, Q, taus, basis3 = simulate(n, r=r)
        phi = flexible_basis(Q)
        base = None
        for fam in families:
            kw = {"basis": phi} if fam == "local" else {}
            cpu0 = time.process_time()
            fit, secs, _ = timed(lambda: fit_weights(Q, y, taus, family=fam, noncrossing=noncrossing, **kw))
            cpu = time.process_time() - cpu0
            base = cpu if fam == "quantile" else base
            rows.append(dict(what=f"{fam} (b = {phi.shape[1]})" if fam == "local" else fam, n=n, r=r, seconds=secs,
                             cpu=cpu, ratio=cpu / base, note=f"{'' if noncrossing else 'no non-crossing, '}"
                                                             f"{fit.solver}, {fit.rounds} rounds, {fit.active} cuts"))
            print(rows[-1], flush=True)
    return rows


def flexible_table(rows) -> str:
    lines = ["| fit | n | r | wall s | CPU s | CPU × per-level family | notes |", "|---|---|---|---|---|---|---|"]
    for o in rows:
        lines.append(f"| {o['what']} | {o['n']:,} | {o['r']} | {o['seconds']:.2f} | {o['cpu']:.2f} | {o['ratio']:.1f} | "
                     f"{o['note']} |")
    return "\n".join(lines)


def real_crossfit(cache: Path):
    """Out-of-fold and test predictions of the default learners on protein with a factor (cached)."""
    if cache.exists():
        return dict(np.load(cache, allow_pickle=False))
    import pandas as pd

    from _common import load_uci
    from qaggstats.formula import design_newdata
    from qaggstats.pipeline import fit_base
    from qaggstats.predictor import sort_base

    df = load_uci("protein-tertiary-structure")
    idx = np.random.default_rng(0).permutation(len(df))
    df["grp"] = pd.cut(df["x0"], np.quantile(df["x0"], np.linspace(0, 1, 9)), include_lowest=True,
                       labels=[f"g{i}" for i in range(8)]).astype(str)
    df = df.drop(columns=["x0"])
    train, test = df.iloc[idx[:20000]].reset_index(drop=True), df.iloc[idx[20000:30000]].reset_index(drop=True)
    taus = np.round(np.linspace(0.05, 0.95, 19), 2)
    base = fit_base("y ~ .", train, taus=taus, cv=5, seed=0)
    specs = {m: base.frames.specs[m] for m in base.crossfit.models}
    X, ok = design_newdata(specs, test)
    out = dict(Q=base.Q, y=base.frames.y[base.split.train], folds=base.crossfit.folds,
               Qt=sort_base(base.crossfit.predict({m: X[m] for m in base.crossfit.models})),
               yt=test["y"].to_numpy()[ok], taus=taus)
    np.savez(cache, **out)
    return out


def real(cache: Path) -> list[dict]:
    """Test pinball (mean over rows and levels) of each family on the protein cross-fit."""
    from qaggstats.basis import LocalBasis
    from qaggstats.scoring import pinball_loss

    d = real_crossfit(cache)
    Q, y, folds, Qt, yt, taus = d["Q"], d["y"], d["folds"], d["Qt"], d["yt"], d["taus"]
    lb = LocalBasis().fit(None, Q)
    phi, phit = lb.transform(None, Q), lb.transform(None, Qt)
    rows = []
    for label, kw in (("quantile", dict(family="quantile")),
                      ("local, penalty 0", dict(family="local", basis=phi)),
                      ("local, penalty auto", dict(family="local", basis=phi, penalty="auto", folds=folds)),
                      ("fine", dict(family="fine")),
                      ("auto", dict(family="auto", basis=phi, folds=folds))):
        cpu0 = time.process_time()
        fit, secs, _ = timed(lambda: fit_weights(Q, y, taus, **kw))
        cpu = time.process_time() - cpu0
        q = fit.combine(Qt, basis=phit if fit.family == "local" else None)
        note = "" if fit.selection is None else "; ".join(
            f"{r.family}{'' if np.isnan(r.penalty) else f' {r.penalty:g}'}: {r.heldout_wis:.4f}"
            + (" ←" if r.chosen else "") for r in fit.selection.itertuples())
        rows.append(dict(what=label, chosen=fit.family, seconds=secs, cpu=cpu,
                         pinball=float(pinball_loss(yt, q, taus).mean()), note=note))
        print(rows[-1], flush=True)
    ref, ref_cpu = rows[0]["pinball"], rows[0]["cpu"]
    for o in rows:
        o["vs"] = 100 * (o["pinball"] / ref - 1)
        o["times"] = o["cpu"] / ref_cpu
    return rows


def real_table(rows) -> str:
    lines = ["| weights | fitted family | wall s | CPU s | CPU × per-level | test pinball | vs per-level | "
             "inner validation (held-out WIS) |", "|---|---|---|---|---|---|---|---|"]
    for o in rows:
        lines.append(f"| {o['what']} | {o['chosen']} | {o['seconds']:.1f} | {o['cpu']:.1f} | {o['times']:.1f} | "
                     f"{o['pinball']:.4f} | {o['vs']:+.2f}% | {o['note']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 1000 only, no 'fine', no target rows (< 3 min)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000, 200000])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--max-generic-n", type=int, default=10000,
                    help="largest n solved by generic cvxpy / HiGHS IPM (and cvxpy-only families)")
    ap.add_argument("--no-targets", action="store_true", help="skip the n = 45,000 r = 9 / 99 target rows")
    ap.add_argument("--flexible", action="store_true", help="issue-13 timing targets for local and fine")
    ap.add_argument("--no-r99", action="store_true", help="with --flexible: skip local at r = 99")
    ap.add_argument("--real", action="store_true", help="test pinball of the families on protein with a factor")
    ap.add_argument("--cache", type=Path, default=Path(__file__).resolve().parent / "results" / "cache" / "real_protein_factor.npz",
                    help="with --real: cache of the cross-fit predictions")
    args = ap.parse_args(argv)
    if args.flexible or args.real:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import machine

        print(f"# bench_weights {dt.datetime.now().isoformat(timespec='seconds')}, {machine()}", flush=True)
        if args.flexible:
            print(flexible_table(flexible(not args.no_r99)))
        if args.real:
            print(real_table(real(args.cache)))
        return
    sizes = [1000] if args.quick else args.sizes
    if args.quick:
        # fine is cvxpy-only and takes minutes even at n = 1000 (p r^2 weights)
        args.families = [f for f in args.families if f != "fine"]
    print(f"# bench_weights {dt.datetime.now().isoformat(timespec='seconds')}, p = 5, r = 19", flush=True)
    rows = []
    for n in sizes:
        y, Q, taus, basis = simulate(n)
        for family in args.families:
            for noncross in (False, True):
                rows.append(row(n, 19, family, noncross, y, Q, taus, basis, args.max_generic_n))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    if not (args.quick or args.no_targets):
        for r in (9, 99):
            y, Q, taus, basis = simulate(45000, r=r)
            rows.append(row(45000, r, "quantile", True, y, Q, taus, basis, 0))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
