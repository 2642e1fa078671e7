"""The comparison of Fakoor et al. (JMLR 2023, Section 6) under the paper's own protocol.

Protocol (``--protocol paper``, the default): 99 levels 0.01..0.99; 5 random splits with 10 %
test; X and y standardised on the training part (WIS is therefore in units of the training
standard deviation of y); aggregation weights fitted on 5-fold out-of-fold predictions of the
training part; test predictions from the base models refitted on all of it. ``--quick`` is the
CI-sized variant: ≤ 800 rows per data set, 7 levels 0.05..0.95, one split, smaller learners.

The script works on the library's array-level pieces, in three resumable stages:

1. ``crossfit`` — per (data set, split): :func:`qaggstats.crossfit.crossfit` of the base
   learners, then test predictions of the refits and of the K fold models (for CV+). Everything
   an aggregator needs is cached in ``benchmarks/results/cache/<protocol>/<data>_split<k>.npz``
   (git-ignored, NumPy arrays only), so every family reuses one cross-fit.
2. ``aggregate`` — per cached split: :func:`qaggstats.aggregate.fit_weights` for each family,
   WIS of the raw / sorted / isotonic / min-max post-processed test quantiles
   (:func:`qaggstats.monotone.postprocess`), 80 % coverage and length, and split CQR and CV+
   (:mod:`qaggstats.conformal`) for the ``--conformal-families``. Rows are appended to
   ``benchmarks/results/paper_<protocol>.csv`` per (data set, split); rows already there are
   not recomputed, so a run cut short continues where it stopped, and families added later
   (e.g. by a newer ``qaggstats.aggregate``) are appended to the same file.
3. ``report`` — table of means ± standard errors over splits, average ranks, and the figure
   ``benchmarks/results/paper_<protocol>.png``; ``--write`` puts it into BENCHMARKS.md.

Usage::

    python benchmarks/paper.py --quick                       # CI-sized, all stages, minutes
    nice -n 10 python benchmarks/paper.py --stage crossfit   # the expensive, family-free part
    python benchmarks/paper.py --stage aggregate --families mean,median,qra,fqra,global,quantile,grouped
    python benchmarks/paper.py --stage report --write
"""
from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

# Import this checkout's qaggstats (not an editable install elsewhere), unless PYTHONPATH names
# another checkout on purpose, e.g. one with newer aggregation code: PYTHONPATH entries come
# right after the script's folder in sys.path, so the checkout goes after them.
sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, load_uci, machine, replace_section, today  # noqa: E402

import qaggstats  # noqa: E402
from qaggstats import aggregate, conformal, learners, monotone, scoring  # noqa: E402
from qaggstats.basis import LocalBasis  # noqa: E402
from qaggstats.crossfit import crossfit, crossfit_pairs  # noqa: E402

PAPER_SETS = ("bostonHousing", "concrete", "energy", "kin8nm", "naval-propulsion-plant",
              "power-plant", "protein-tertiary-structure", "yacht")
FAMILIES = ("mean", "median", "qra", "fqra", "global", "quantile", "grouped", "fine", "local", "dqa", "auto")
POSTPROCESS = ("none", "sort", "isotonic", "minmax")
# Training parts above 2,000 rows are subsampled to 2,000 for the base models and the weights
# (seeded per split; the test part is kept whole). Measured here: with ~8 other jobs on the 2
# cores one kin8nm split at 4,000 rows took 394 s wall (99 linear-QR LPs and 99 LightGBM
# boosters per fit, 6 fits), which would not fit 20 large splits into the 90-minute budget.
BIG_SETS = ("kin8nm", "naval-propulsion-plant", "power-plant", "protein-tertiary-structure")
CACHE = RESULTS / "cache"


@dataclass(frozen=True)
class Protocol:
    name: str
    taus: np.ndarray
    splits: int
    test_frac: float
    cv: int
    max_rows: Optional[int]          # subsample each data set first (quick mode)
    max_train: dict                  # data set -> cap on training rows for the base models
    n_trees: int                     # forest trees and boosting rounds
    groups: int                      # contiguous level groups of the "grouped" family
    tune_iter: int = 0               # random-search configurations per tuned learner (0: none)
    neural: bool = False             # add the quantile neural network (extra [deep])


def protocol(kind: str) -> Protocol:
    """"quick" (CI-sized), "paper" (training parts capped at 2,000 rows, untuned learners) or
    "full" (issue 23: no cap below 10,000 rows, the quantile network, every learner but linear
    QR and location-scale tuned by a 20-configuration random search)."""
    if kind == "quick":
        return Protocol("quick", np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]), 1, 0.1, 5,
                        800, {}, 60, 3)
    levels = np.round(np.arange(1, 100) / 100, 2)
    if kind == "full":
        # kin8nm and power-plant train on all of their 90 % (7,373 and 8,611 rows)
        return Protocol("full", levels, 5, 0.1, 5, None,
                        {"naval-propulsion-plant": 10_000, "protein-tertiary-structure": 10_000}, 100, 11,
                        tune_iter=20, neural=True)
    return Protocol("paper", levels, 5, 0.1, 5, None, {name: 2000 for name in BIG_SETS}, 100, 11)


# Search spaces of the tuned learners (the paper tuned 20 configurations per learner on
# validation data). The forest's "random" splitter is extremely randomized trees (ExtraTrees
# quantiles); "best" is Breiman's forest.
SPACES = {
    "boost": {"n_estimators": [50, 100, 200, 400], "num_leaves": [7, 15, 31, 63],
              "learning_rate": [0.03, 0.1, 0.3], "min_child_samples": [5, 10, 20, 40]},
    "forest": {"min_samples_leaf": [1, 3, 5, 10, 20], "max_features": [0.33, 0.66, 1.0],
               "splitter": ["random", "best"]},
    "knn": {"k": [5, 10, 15, 20, 30, 50, 80, 120]},
    "nn": {"hidden": [(32,), (64,), (64, 64), (128, 128), (64, 64, 64)], "lr": [3e-4, 1e-3, 3e-3],
           "weight_decay": [0.0, 1e-4, 1e-3]},
}
# Levels the search scores on: every fifth of the 99 (tuning cost / 5, the same WIS shape).
TUNE_TAUS = np.round(np.arange(5, 100, 5) / 100, 2)


def base_learners(proto: Protocol, seed: int) -> dict:
    """The base learners; LightGBM for boosting when installed (the paper's choice)."""
    try:
        import lightgbm  # noqa: F401
        boost = learners.LightGBMQuantile(n_estimators=proto.n_trees, num_leaves=15, random_state=seed)
    except ImportError:
        boost = learners.GradientBoosting(max_iter=proto.n_trees, max_leaf_nodes=15, learning_rate=0.1,
                                          random_state=seed)
    out = {
        "linear": learners.LinearQR(),
        "forest": learners.QuantileForest(n_estimators=proto.n_trees, random_state=seed),
        "boost": boost,
        "knn": learners.KNN(k=30),
        "locscale": learners.LocationScale(),
    }
    if proto.neural:
        out["nn"] = learners.QuantileNN(random_state=seed)
    return out


def tuning_path(proto: Protocol) -> Path:
    return RESULTS / f"tuning_{proto.name}.jsonl"


def tune_learners(proto: Protocol, name: str, rep: int, models: dict, X: np.ndarray, y: np.ndarray) -> dict:
    """Each tunable learner set to its random-search choice on this split's training part.

    The search (:class:`qaggstats.learners.RandomSearch`, 3 inner folds, scored at
    ``TUNE_TAUS``) runs once per split and learner, before the cross-fit, as the paper tuned on
    validation data; each result is appended to ``tuning_<protocol>.jsonl`` as it finishes and
    reused from there, so a run cut short loses at most one learner's search.
    """
    import json

    path = tuning_path(proto)
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            done[(rec["dataset"], rec["split"], rec["learner"])] = rec
    out = dict(models)
    for m, space in SPACES.items():
        # (scikit-learn's boosting stands in when LightGBM is missing: its names differ, untuned)
        if m not in models or not set(space) <= set(models[m].get_params()):
            continue
        rec = done.get((name, rep, m))
        if rec is None:
            t0 = time.perf_counter()
            rs = learners.RandomSearch(models[m], space, n_iter=proto.tune_iter, cv=3, random_state=rep)
            rs.fit(X, y, TUNE_TAUS)
            best = {k: (list(v) if isinstance(v, tuple) else v) for k, v in rs.best_params_.items()}
            rec = {"dataset": name, "split": rep, "learner": m, "params": best,
                   "heldout_wis": float(rs.results_["heldout_wis"].min()),
                   "default_wis": float(rs.results_["heldout_wis"].iloc[0]),
                   "configurations": int(len(rs.results_)), "seconds": time.perf_counter() - t0,
                   "code": code_version()}
            with path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{name} split {rep}: tuned {m} in {rec['seconds']:.0f} s: {best} "
                  f"(held-out WIS {rec['heldout_wis']:.4f}, default {rec['default_wis']:.4f})",
                  file=sys.stderr, flush=True)
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in rec["params"].items()}
        out[m] = models[m].set_params(**params)
    return out


def code_version() -> str:
    """Git commit of the qaggstats actually imported (it may come from another worktree)."""
    where = Path(qaggstats.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head or "unknown") + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------- stage 1
def split_rows(n: int, rep: int, test_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split: (train indices, test indices)."""
    perm = np.random.default_rng([rep, 18]).permutation(n)
    n_test = int(round(test_frac * n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def cache_path(proto: Protocol, name: str, rep: int) -> Path:
    return CACHE / proto.name / f"{name}_split{rep}.npz"


def yardstick_seconds(X: np.ndarray, y: np.ndarray) -> float:
    """One single-threaded HistGradientBoostingRegressor(loss="quantile") fit on these rows."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        t0 = time.perf_counter()
        HistGradientBoostingRegressor(loss="quantile", quantile=0.5, max_iter=100,
                                      early_stopping=False).fit(X, y)
        return time.perf_counter() - t0


def crossfit_split(proto: Protocol, name: str, df: pd.DataFrame, rep: int) -> Path:
    """Cross-fit one split and cache everything the aggregators need; returns the cache path."""
    path = cache_path(proto, name, rep)
    if path.exists():
        return path
    X_all = df.drop(columns="y").to_numpy(float)
    y_all = df["y"].to_numpy(float)
    train, test = split_rows(len(df), rep, proto.test_frac)
    n_train_full = train.size
    cap = proto.max_train.get(name)
    if cap is not None and train.size > cap:
        train = np.sort(np.random.default_rng([rep, 19]).choice(train, cap, replace=False))
    # standardise X and y on the training part (constant columns keep scale 1)
    mx, sx = X_all[train].mean(0), X_all[train].std(0)
    sx[sx == 0] = 1.0
    my, sy = y_all[train].mean(), y_all[train].std()
    Xtr, Xte = (X_all[train] - mx) / sx, (X_all[test] - mx) / sx
    ytr, yte = (y_all[train] - my) / sy, (y_all[test] - my) / sy

    models = base_learners(proto, rep)
    # the design of formula "y ~ .": an intercept column, then the features (linear QR needs
    # the intercept; the other learners ignore constant columns)
    Dtr, Dte = (np.column_stack([np.ones(len(Z)), Z]) for Z in (Xtr, Xte))
    if proto.tune_iter:
        models = tune_learners(proto, name, rep, models, Dtr, ytr)
    t0 = time.perf_counter()
    # a learner that fails (seen: HiGHS ending an rq LP with status "Unknown" on naval split 3)
    # is dropped from this split only, and said so, rather than losing the split
    cf = crossfit(models, {m: Dtr for m in models}, ytr, proto.taus, cv=proto.cv, seed=rep, on_error="drop")
    for learner, why in cf.dropped.items():
        print(f"{name} split {rep}: learner {learner!r} dropped: {why}", file=sys.stderr, flush=True)
    designs = {m: Dte for m in cf.models}
    Q_test = cf.predict(designs)
    Q_test_folds = cf.predict_folds(designs)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, Q=cf.Q, folds=cf.folds, y=ytr, X=Xtr, Q_test=Q_test, Q_test_folds=Q_test_folds,
             y_test=yte, X_test=Xte, taus=proto.taus, models=np.array(cf.models),
             model_seconds=np.array([cf.seconds[m] for m in cf.models]),
             crossfit_seconds=seconds, yardstick_seconds=yardstick_seconds(Xtr, ytr),
             n_train_full=n_train_full, y_sd=sy)
    os.replace(tmp, path)
    return path


def load_split(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ----------------------------------------------------------------------------- stage 2
def _local_basis(c: dict) -> LocalBasis:
    """The local basis of the benchmark: the default partition of unity over the base models'
    out-of-fold predicted location and spread, learnt on the training part and applied
    unchanged to the test part (what ``qagg(family="local")`` uses)."""
    return LocalBasis().fit(None, c["Q"])


def fit_family(c: dict, family: str, proto: Protocol, noncrossing: bool, rows: Optional[np.ndarray] = None):
    """Weights of one family on the out-of-fold predictions (all rows or ``rows``)."""
    Q, y = c["Q"], c["y"]
    kw = {}
    if family == "grouped":
        kw["groups"] = proto.groups
    if family in ("local", "auto"):
        kw["basis"] = _local_basis(c).transform(None, c["Q"])
    if family in ("dqa", "auto"):
        # DQA's inputs: the standardised features (what qagg gives it from "y ~ ."), its
        # early stopping on the last cross-fitting fold
        kw.update(features=c["X"], folds=c["folds"], seed=0)
    if family == "local":
        # the penalty chosen by inner validation on the cross-fit's folds, as qagg does
        kw["penalty"], kw["folds"], kw["max_folds"] = "auto", c["folds"], 1
    if family == "auto":
        # inner validation on the cross-fit's own folds (qaggstats.selection), three held-out
        # folds as qagg's default: the one-standard-error rule needs the held-out rows (with one
        # fold of yacht's 277 rows it fell back to the single best model on 4 of 5 splits)
        kw["folds"], kw["max_folds"] = c["folds"], 3
    if rows is not None:
        Q, y = Q[rows], y[rows]
        for key in ("basis", "features", "folds"):
            if key in kw:
                kw[key] = kw[key][rows]
    w = aggregate.fit_weights(Q, y, c["taus"], family=family, noncrossing=noncrossing, **kw)
    return w


def combine(w, c: dict, Q: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Aggregate ``Q (m, p, r)`` at rows ``X (m, d)`` (local weights need the basis there)."""
    if w.family == "dqa":
        return w.combine(Q, basis=X)
    if w.family != "local":
        return w.combine(Q)
    return w.combine(Q, basis=_local_basis(c).transform(None, Q))


def interval80(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> tuple[float, float]:
    lo, hi = int(np.argmin(np.abs(taus - 0.1))), int(np.argmin(np.abs(taus - 0.9)))
    return float(np.mean((q[:, lo] <= y) & (y <= q[:, hi]))), float(np.mean(q[:, hi] - q[:, lo]))


def score_rows(c: dict, family: str, q_raw: np.ndarray, seconds: float, extra: dict) -> dict:
    taus, yte = c["taus"], c["y_test"]
    row = {"family": family, "conformal": "none", "fit_seconds": seconds,
           "crossing_raw": scoring.crossing_rate(q_raw, tol=1e-9)}
    for method in POSTPROCESS:
        row[f"wis_{method}"] = scoring.wis(yte, monotone.postprocess(q_raw, taus, method), taus)
    q = monotone.postprocess(q_raw, taus, "sort")
    row["wis"] = row["wis_sort"]
    row["coverage_80"], row["length_80"] = interval80(yte, q, taus)
    row["coverage_80_raw"], row["length_80_raw"] = row["coverage_80"], row["length_80"]
    row.update(extra)
    return row


def conformal_rows(c: dict, family: str, proto: Protocol, noncrossing: bool, w_all, rep: int) -> list[dict]:
    """Split CQR (weights on 75 % of the training rows, calibrated on the other 25 %) and CV+
    (weights on all rows, out-of-fold scores, fold models at the test points), at 80 %."""
    taus, yte = c["taus"], c["y_test"]
    idx = [int(np.argmin(np.abs(taus - t))) for t in (0.1, 0.5, 0.9)]
    t3 = taus[idx]
    out = []
    # split CQR
    n = c["y"].size
    cal = np.zeros(n, bool)
    cal[np.random.default_rng([rep, 20]).choice(n, n // 4, replace=False)] = True
    t0 = time.perf_counter()
    w_fit = fit_family(c, family, proto, noncrossing, rows=np.flatnonzero(~cal))
    q_cal = np.sort(combine(w_fit, c, c["Q"][cal], c["X"][cal]), axis=1)[:, idx]
    q_te = np.sort(combine(w_fit, c, c["Q_test"], c["X_test"]), axis=1)[:, idx]
    cqr = conformal.fit_cqr(q_cal, c["y"][cal], t3)
    q_cqr = cqr.apply(q_te)
    cov_raw, len_raw = interval80(yte, q_te, t3)
    cov, length = interval80(yte, q_cqr, t3)
    out.append({"family": family, "conformal": "cqr", "fit_seconds": time.perf_counter() - t0,
                "coverage_80": cov, "length_80": length, "coverage_80_raw": cov_raw,
                "length_80_raw": len_raw})
    # CV+
    t0 = time.perf_counter()
    q_oof = np.sort(combine(w_all, c, c["Q"], c["X"]), axis=1)[:, idx]
    cvp = conformal.fit_cvplus(q_oof, c["y"], c["folds"], t3)
    q_folds = np.stack([np.sort(combine(w_all, c, Qk, c["X_test"]), axis=1)[:, idx] for Qk in c["Q_test_folds"]])
    q_full = np.sort(combine(w_all, c, c["Q_test"], c["X_test"]), axis=1)[:, idx]
    q_cvp = cvp.apply(q_folds, q_full)
    cov_raw, len_raw = interval80(yte, q_full, t3)
    cov, length = interval80(yte, q_cvp, t3)
    out.append({"family": family, "conformal": "cv+", "fit_seconds": time.perf_counter() - t0,
                "coverage_80": cov, "length_80": length, "coverage_80_raw": cov_raw,
                "length_80_raw": len_raw})
    return out


def pairs_path(proto: Protocol, name: str, rep: int) -> Path:
    return CACHE / proto.name / f"{name}_split{rep}_pairs.npz"


def load_pairs(proto: Protocol, name: str, rep: int, c: dict) -> np.ndarray:
    """Leave-two-folds-out predictions ``(K, n, p, r)`` of the split's base learners (same learners,
    seeds and folds as its cross-fit), computed once and cached beside it."""
    path = pairs_path(proto, name, rep)
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return f["Q_pairs"]
    models = base_learners(proto, rep)
    kept = [str(m) for m in c["models"]]
    D = np.column_stack([np.ones(c["y"].size), c["X"]])
    t0 = time.perf_counter()
    Qp = crossfit_pairs({m: models[m] for m in kept}, {m: D for m in kept}, c["y"], c["taus"], c["folds"], kept,
                        seed=rep)
    print(f"  {name} split {rep}: leave-two-folds-out fits {time.perf_counter() - t0:.1f} s", file=sys.stderr,
          flush=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, Q_pairs=Qp, seconds=time.perf_counter() - t0)
    os.replace(tmp, path)
    return Qp


def nested_row(c: dict, family: str, proto: Protocol, noncrossing: bool, w_all, Q_pairs: np.ndarray) -> dict:
    """The paper's nested CV+ at 80 % (what ``qagg(conformal="cv+")`` does): fold model k is the
    aggregate refitted without fold k, on the base learners' leave-two-folds-out predictions (local
    basis and inner validation folds learnt on those rows too), scored on fold k with the base
    learners fitted without fold k; at the test points, fold model k uses the same base learners."""
    taus, yte = c["taus"], c["y_test"]
    idx = [int(np.argmin(np.abs(taus - t))) for t in (0.1, 0.5, 0.9)]
    t3 = taus[idx]
    t0 = time.perf_counter()

    def fit(k, rows, inner):
        c_k = {"Q": Q_pairs[k][rows], "y": c["y"][rows], "X": c["X"][rows], "folds": inner, "taus": taus}
        return fit_family(c_k, family, proto, noncrossing), c_k

    def predict(agg, k, rows):
        w_k, c_k = agg
        return np.sort(combine(w_k, c_k, c["Q"][rows], c["X"][rows]), axis=1)[:, idx]

    cal, aggs = conformal.nested_cv_plus(c["y"], c["folds"], t3, fit, predict)
    q_folds = np.stack([np.sort(combine(w_k, c_k, c["Q_test_folds"][k], c["X_test"]), axis=1)[:, idx]
                        for k, (w_k, c_k) in enumerate(aggs)])
    q_full = np.sort(combine(w_all, c, c["Q_test"], c["X_test"]), axis=1)[:, idx]
    cov_raw, len_raw = interval80(yte, q_full, t3)
    cov, length = interval80(yte, cal.apply(q_folds, q_full), t3)
    return {"family": family, "conformal": "nested-cv+", "fit_seconds": time.perf_counter() - t0,
            "coverage_80": cov, "length_80": length, "coverage_80_raw": cov_raw, "length_80_raw": len_raw}


def aggregate_split(proto: Protocol, name: str, rep: int, families: list[str], conf_families: list[str],
                    noncrossing: bool, done: set, nested: bool = False) -> list[dict]:
    """Rows for the families of one cached split that are not yet in the CSV (``done``)."""
    c = load_split(cache_path(proto, name, rep))
    taus, yte = c["taus"], c["y_test"]
    models = [str(m) for m in c["models"]]
    oof_wis = {m: scoring.wis(c["y"], np.sort(c["Q"][:, j], axis=1), taus) for j, m in enumerate(models)}
    best = min(oof_wis, key=oof_wis.get)
    test_wis = {m: scoring.wis(yte, np.sort(c["Q_test"][:, j], axis=1), taus) for j, m in enumerate(models)}
    version = code_version()
    # the weight fits' own yardstick: the machine's load changes between the stages
    yard = yardstick_seconds(c["X"], c["y"])
    common = {"dataset": name, "split": rep, "levels": taus.size, "n_train": c["y"].size,
              "n_train_full": int(c["n_train_full"]), "n_test": yte.size,
              "best_model": best, "best_wis": test_wis[best], "code": version,
              "crossfit_seconds": float(c["crossfit_seconds"]),
              "crossfit_yardstick_seconds": float(c["yardstick_seconds"]), "yardstick_seconds": yard,
              "noncrossing": noncrossing}
    rows = []
    # base models (one row each; not aggregators, kept for the reading)
    for j, m in enumerate(models):
        if (f"base:{m}", "none") in done:
            continue
        r = score_rows(c, f"base:{m}", c["Q_test"][:, j], float(c["model_seconds"][j]),
                       {"oof_wis": oof_wis[m]})
        rows.append(r)
    # the reference families are always refitted (cheap) so that ratios exist for every row
    ref = {}
    for family in dict.fromkeys(["mean", "quantile"] + families):
        kinds = ["cqr", "cv+"] + (["nested-cv+"] if nested else [])
        need = any((family, k) not in done for k in ["none"] + (kinds if family in conf_families else []))
        if family not in ("mean", "quantile") and not need:
            continue
        if not offers(family):
            print(f"  {name} split {rep}: family {family!r} is not in this qaggstats.aggregate "
                  f"({version}); skipped", file=sys.stderr, flush=True)
            continue
        t0 = time.perf_counter()
        try:
            w = fit_family(c, family, proto, noncrossing)
        except qaggstats.errors.QaggError as err:
            print(f"  {name} split {rep}: family {family!r} failed: {err}", file=sys.stderr, flush=True)
            continue
        seconds = time.perf_counter() - t0
        q_raw = combine(w, c, c["Q_test"], c["X_test"])
        q_oof = np.sort(combine(w, c, c["Q"], c["X"]), axis=1)
        r = score_rows(c, family, q_raw, seconds, {"oof_wis": scoring.wis(c["y"], q_oof, taus),
                                                    "solver": w.solver, "chosen": w.family})
        ref[family] = r["wis"]
        if (family, "none") not in done:
            rows.append(r)
        if family in conf_families:
            for cr in conformal_rows(c, family, proto, noncrossing, w, rep):
                if (family, cr["conformal"]) not in done:
                    rows.append(cr)
            if nested and (family, "nested-cv+") not in done:
                rows.append(nested_row(c, family, proto, noncrossing, w, load_pairs(proto, name, rep, c)))
        print(f"  {name} split {rep}: {family} {seconds:.1f} s", file=sys.stderr, flush=True)
    for r in rows:
        r.update(common)
        if "wis" in r:
            r["rel_best"] = r["wis"] / common["best_wis"]
            r["rel_mean"] = r["wis"] / ref["mean"] if "mean" in ref else np.nan
            r["rel_quantile"] = r["wis"] / ref["quantile"] if "quantile" in ref else np.nan
    return rows


COLUMNS = ["dataset", "split", "levels", "family", "conformal", "wis", "rel_best", "rel_mean",
           "rel_quantile", "wis_none", "wis_sort", "wis_isotonic", "wis_minmax", "crossing_raw",
           "coverage_80", "length_80", "coverage_80_raw", "length_80_raw", "fit_seconds", "oof_wis",
           "best_model", "best_wis", "solver", "chosen", "noncrossing", "n_train", "n_train_full", "n_test",
           "crossfit_seconds", "crossfit_yardstick_seconds", "yardstick_seconds", "code"]


def offers(family: str) -> bool:
    """Whether the imported qaggstats.aggregate fits this family ("auto" is not in FAMILIES: it
    is a choice among them, offered where fit_weights takes the folds to validate on)."""
    if family == "auto":
        return "folds" in inspect.signature(aggregate.fit_weights).parameters
    return family in aggregate.FAMILIES


def wanted(families: list[str], conf_families: list[str], nested: bool = False) -> set:
    """(family, conformal) rows a split should have, for the families this qaggstats offers."""
    offered = [f for f in families if offers(f)]
    keys = {(f, "none") for f in offered}
    kinds = ("cqr", "cv+") + (("nested-cv+",) if nested else ())
    keys |= {(f, k) for f in offered if f in conf_families for k in kinds}
    return keys


def csv_path(proto: Protocol) -> Path:
    return RESULTS / f"paper_{proto.name}.csv"


def done_keys(path: Path) -> dict:
    """(dataset, split) -> set of (family, conformal) already in the CSV."""
    if not path.exists():
        return {}
    df = pd.read_csv(path, usecols=["dataset", "split", "family", "conformal"])
    out: dict = {}
    for d, s, f, c in df.itertuples(index=False):
        out.setdefault((d, int(s)), set()).add((f, c))
    return out


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append rows; a file written with other columns (an older version of this script) is
    rewritten once with the current columns, its missing values left empty."""
    if not rows:
        return
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    if path.exists() and pd.read_csv(path, nrows=0).columns.tolist() != COLUMNS:
        frame = pd.concat([pd.read_csv(path).reindex(columns=COLUMNS), frame], ignore_index=True)
        frame.to_csv(path, index=False)
        return
    # one write(2) on an O_APPEND descriptor: runs on disjoint data sets may share the file
    data = frame.to_csv(header=not path.exists(), index=False).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- stage 3
def load_results(proto: Protocol) -> pd.DataFrame:
    df = pd.read_csv(csv_path(proto))
    # a family recomputed by newer code keeps its latest rows only
    return df.drop_duplicates(["dataset", "split", "family", "conformal"], keep="last")


def mean_se(x: pd.Series, total: int) -> str:
    """"mean ± standard error"; "[k]" when only k of the data set's ``total`` splits have it."""
    x = x.dropna()
    if x.empty:
        return "–"
    se = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else np.nan
    text = f"{x.mean():.3f} ± {se:.3f}" if np.isfinite(se) else f"{x.mean():.3f}"
    return text + (f" [{x.size}]" if x.size < total else "")


def rank_table(agg: pd.DataFrame, fams: list[str], sets: list[str]) -> tuple[pd.Series, int, int]:
    """Average rank (1 = best) of the families' test WIS over data sets, each family compared on
    the same splits: per data set, the mean over the splits where every family in ``fams`` has a
    row; data sets with no such split are left out. Returns ranks, data sets and splits used."""
    wide = agg[agg.family.isin(fams)].pivot_table(index=["dataset", "split"], columns="family",
                                                  values="wis").reindex(columns=fams).dropna()
    wide = wide[wide.index.get_level_values(0).isin(sets)]
    means = wide.groupby(level=0).mean()
    return means.rank(axis=1).mean(), len(means), len(wide)


def describe(proto: Protocol) -> str:
    """The protocol in words, from the settings actually used."""
    caps = ", ".join(f"{d} {c:,}" for d, c in proto.max_train.items()) or "none"
    t = proto.taus
    return (f"- Levels: {t.size} ({t[0]:g}, ..., {t[-1]:g}); {proto.splits} random split(s) with "
            f"{proto.test_frac:.0%} test; X and y standardised on the training part, so WIS is in "
            "units of the training standard deviation of y.\n"
            f"- Base learners (one cross-fit per split, {proto.cv} folds, refit on the whole training "
            f"part for the test predictions): linear QR (exact LP per level), quantile forest "
            f"({proto.n_trees} trees, leaves of 5 rows, random splits), LightGBM quantile boosting per level "
            f"({proto.n_trees} rounds, 15 leaves), k-NN (k = 30), Gaussian location-scale (OLS mean and "
            "OLS of |residual|).\n"
            + (f"- Tuned (protocol \"{proto.name}\"): {', '.join(SPACES)} by a {proto.tune_iter}-configuration "
               "random search per split on the training part (3 inner folds, WIS at the 19 levels "
               "0.05..0.95; the defaults above are the first configuration; choices in "
               f"`benchmarks/results/tuning_{proto.name}.jsonl`); \"nn\" is the quantile neural network "
               "(qaggstats.learners.QuantileNN).\n" if proto.tune_iter else "")
            + f"- Training rows capped (seeded subsample per split, test part kept whole): {caps}.\n"
            "- Weights fitted on the out-of-fold predictions without non-crossing constraints, then "
            f"sorted; \"grouped\" uses {proto.groups} contiguous level groups; \"local\" weights blend "
            "12 prototype weight vectors over the default partition of unity of the models' predicted "
            "location and spread, with the penalty chosen on one held-out fold. \"WIS\" below is after sorting; the raw, isotonic and "
            "min-max variants are in the CSV.\n"
            "- Conformal (80 % interval): split CQR fits the weights on 75 % of the training rows and "
            "calibrates on the out-of-fold aggregate of the other 25 %; CV+ uses the weights fitted on "
            "all rows, out-of-fold scores and the five fold models at the test points (not the paper's scheme: "
            "each scored row also trained the weights); nested-cv+ (``--nested``, what ``qagg(conformal=\"cv+\")`` "
            "does) refits the weights without each fold on leave-two-folds-out base predictions, so each fold "
            "model never saw its fold (Barber et al.'s guarantee, at least about 1 - 2 alpha). Its raw columns are "
            "the full aggregate of the current code.\n\n")


def report(proto: Protocol, figure: Path) -> str:
    df = load_results(proto)
    agg = df[(df.conformal == "none") & ~df.family.str.startswith("base:")]
    fams = [f for f in FAMILIES if f in set(agg.family)]
    sets = [d for d in PAPER_SETS if d in set(agg.dataset)] + sorted(set(agg.dataset) - set(PAPER_SETS))
    lines = []
    splits = agg.groupby("dataset").split.nunique()
    lines.append("Splits per data set: " + ", ".join(f"{d} {splits[d]}" for d in sets) + ".\n")
    missing = [f for f in FAMILIES if f not in fams]
    if missing:
        lines.append(f"Families with no rows yet: {', '.join(missing)}.\n")

    def table(col: str, title: str) -> None:
        lines.append(f"**{title}** (mean ± standard error over splits)\n")
        lines.append("| data | " + " | ".join(fams) + " |")
        lines.append("|---|" + "---:|" * len(fams))
        for d in sets:
            cells = [mean_se(agg[(agg.dataset == d) & (agg.family == f)][col], splits[d]) for f in fams]
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")

    table("wis", "Test WIS (sorted), standardised y")
    table("rel_best", "Test WIS / best single model (chosen on out-of-fold WIS)")
    table("rel_quantile", "Test WIS / per-level (\"quantile\") family")
    lines.append("A cell marked [k] averages only the k splits where that family has been run; the "
                 "ranks below compare families on common splits only.\n")
    fast = [f for f in fams if f not in ("fine", "local", "auto")]
    groups = [("every family", fams), ("the seven fixed and linear families and local",
                                        fast + [f for f in ("local",) if f in fams]),
              ("the families run on every split", fast)]
    for title, group in groups:
        ranks, n_sets, n_splits = rank_table(agg, group, sets)
        if not n_sets:
            continue
        lines.append(f"**Average rank**, {title} (1 = best; per data set the mean test WIS over the "
                     f"splits where all of them have rows; {n_sets} data sets, {n_splits} splits):\n")
        lines.append("| " + " | ".join(group) + " |")
        lines.append("|" + "---:|" * len(group))
        lines.append("| " + " | ".join(f"{ranks[f]:.2f}" for f in group) + " |\n")
    # post-processing: does sorting / isotonic / min-max ever raise WIS?
    pp = agg.assign(sort_up=agg.wis_sort > agg.wis_none + 1e-12,
                    iso_up=agg.wis_isotonic > agg.wis_none + 1e-12,
                    minmax_up=agg.wis_minmax > agg.wis_none + 1e-12,
                    crossed=agg.crossing_raw > 0)
    lines.append("**Monotone post-processing** (test WIS; rows = data set × split × family):\n")
    lines.append("| rows | rows with crossings | sort raised WIS | isotonic raised WIS | min-max raised WIS | "
                 "largest min-max increase (relative) | mean WIS raw → sort → isotonic → min-max |")
    lines.append("|---:|---:|---:|---:|---:|---:|---|")
    inc = ((pp.wis_minmax - pp.wis_none) / pp.wis_none).max()
    lines.append(f"| {len(pp)} | {int(pp.crossed.sum())} | {int(pp.sort_up.sum())} | {int(pp.iso_up.sum())} | "
                 f"{int(pp.minmax_up.sum())} | {inc:.2e} | {pp.wis_none.mean():.4f} → {pp.wis_sort.mean():.4f} → "
                 f"{pp.wis_isotonic.mean():.4f} → {pp.wis_minmax.mean():.4f} |\n")
    # conformal
    conf = df[df.conformal != "none"]
    if not conf.empty:
        lines.append("**80 % intervals**: coverage and length, raw → calibrated (mean over splits); "
                     "length ratio = calibrated / raw.\n")
        lines.append("| data | family | method | splits | test rows | coverage raw | coverage calibrated | "
                     "length raw | length calibrated | length ratio |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        conf = conf.assign(order=conf.dataset.map({d: i for i, d in enumerate(sets)}))
        g = conf.sort_values(["order", "family", "conformal"]).groupby(["dataset", "family", "conformal"], sort=False)
        for (d, f, m), x in g:
            lines.append(f"| {d} | {f} | {m} | {len(x)} | {x.n_test.mean():.0f} | {x.coverage_80_raw.mean():.3f} | "
                         f"{x.coverage_80.mean():.3f} | "
                         f"{x.length_80_raw.mean():.3f} | {x.length_80.mean():.3f} | "
                         f"{(x.length_80 / x.length_80_raw).mean():.2f} |")
        lines.append("")
    # timings
    t = agg.groupby("family").apply(lambda x: (x.fit_seconds / x.yardstick_seconds).median(),
                                    include_groups=False)
    s = agg.groupby("family").fit_seconds.median()
    lines.append("**Weight-fit time** (median over data sets × splits: seconds, and ratio to one "
                 "single-threaded HistGradientBoostingRegressor(loss=\"quantile\") fit on the same "
                 "training rows):\n")
    lines.append("| " + " | ".join(fams) + " |")
    lines.append("|" + "---:|" * len(fams))
    lines.append("| " + " | ".join(f"{s[f]:.3g} s ({t[f]:.2g}×)" for f in fams) + " |\n")
    plot(agg, fams, sets, figure)
    lines.append(f"![relative WIS per data set]({figure.relative_to(ROOT)})\n")
    return "\n".join(lines)


def plot(agg: pd.DataFrame, fams: list[str], sets: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    rel = agg.groupby(["dataset", "family"]).rel_best.mean().unstack().reindex(index=sets, columns=fams)
    fig = Figure(figsize=(11, 5), layout="constrained")
    ax = fig.subplots()
    rel.plot.bar(ax=ax, width=0.85, legend=False)
    ax.axhline(1.0, color="black", lw=0.8)
    # ratios on a log axis: halving and doubling look alike, and the weak fixed combinations
    # (up to ~8x on yacht) stay on the chart
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator
    ax.yaxis.set_major_locator(FixedLocator([0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2, 3, 4, 6, 8, 12]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter("{x:g}")
    ax.set_ylabel("test WIS / best single model (log scale)")
    ax.set_xlabel("")
    ax.set_title(f"Aggregators relative to the best single model (mean over the splits run, "
                 f"{int(agg.levels.iloc[0])} levels; below 1 = better)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(fams), fontsize=8)
    ax.tick_params(axis="x", labelrotation=15)
    fig.savefig(path, dpi=110)


def boosting_timing(proto: Protocol, name: str = "kin8nm", n: int = 2000) -> str:
    """Seconds of one 99-level fit of scikit-learn's per-level boosting and of LightGBM, with
    the same trees (100 rounds, 15 leaves, 20 rows per leaf), as ratios to the yardstick."""
    df = load_uci(name).sample(n, random_state=0)
    X = df.drop(columns="y").to_numpy(float)
    y = df["y"].to_numpy(float)
    X, y = (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()
    out = [f"| learner ({name}, {n} rows, {proto.taus.size} levels) | seconds | ratio to yardstick |",
           "|---|---:|---:|"]
    yard = yardstick_seconds(X, y)
    for label, learner in (("GradientBoosting (sklearn HistGradientBoostingRegressor per level)",
                            learners.GradientBoosting(max_iter=proto.n_trees, max_leaf_nodes=15,
                                                      learning_rate=0.1)),
                           ("LightGBMQuantile (LightGBM per level)",
                            learners.LightGBMQuantile(n_estimators=proto.n_trees))):
        t0 = time.perf_counter()
        learner.fit(X, y, proto.taus)
        sec = time.perf_counter() - t0
        out.append(f"| {label} | {sec:.1f} | {sec / yard:.0f}× |")
    out.append(f"| yardstick: one HistGradientBoostingRegressor(loss=\"quantile\") fit | {yard:.2f} | 1× |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized: ≤ 800 rows, 7 levels, one split")
    ap.add_argument("--protocol", choices=("paper", "full"), default="paper",
                    help="full: no training cap below 10,000 rows, tuned learners and the quantile network")
    ap.add_argument("--stage", choices=("crossfit", "aggregate", "report", "all", "boosting"), default="all",
                    help="boosting: time scikit-learn's per-level boosting against LightGBM")
    ap.add_argument("--datasets", default=",".join(PAPER_SETS))
    ap.add_argument("--splits", default=None, help="comma-separated split ids (default: all)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--conformal-families", default="quantile,local")
    ap.add_argument("--noncrossing", action="store_true",
                    help="fit weights with non-crossing constraints (default: off, then sort)")
    ap.add_argument("--nested", action="store_true",
                    help="also the paper's nested CV+ (rows 'nested-cv+'; leave-two-folds-out fits cached per split)")
    ap.add_argument("--write", action="store_true", help="write the report into BENCHMARKS.md")
    args = ap.parse_args(argv)

    proto = protocol("quick" if args.quick else args.protocol)
    names = args.datasets.split(",")
    reps = [int(s) for s in args.splits.split(",")] if args.splits else list(range(proto.splits))
    families = args.families.split(",")
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise SystemExit(f"unknown families {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    conf_families = [f for f in args.conformal_families.split(",") if f]
    RESULTS.mkdir(parents=True, exist_ok=True)
    frames: dict = {}

    def data(name: str) -> pd.DataFrame:
        if name not in frames:
            df = load_uci(name)
            if proto.max_rows and len(df) > proto.max_rows:
                df = df.sample(proto.max_rows, random_state=0).reset_index(drop=True)
            frames[name] = df
        return frames[name]

    if args.stage == "boosting":
        print(boosting_timing(proto))
        return 0
    start = time.perf_counter()
    # split-major order: every data set gets split 0 before any gets split 1
    for rep in reps:
        for name in names:
            if args.stage in ("crossfit", "all"):
                t0 = time.perf_counter()
                existed = cache_path(proto, name, rep).exists()
                crossfit_split(proto, name, data(name), rep)
                if not existed:
                    print(f"{name} split {rep}: cross-fit {time.perf_counter() - t0:.1f} s "
                          f"(total {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
            if args.stage in ("aggregate", "all") and cache_path(proto, name, rep).exists():
                path = csv_path(proto)
                done = done_keys(path).get((name, rep), set())
                if wanted(families, conf_families, args.nested) <= done:
                    continue
                rows = aggregate_split(proto, name, rep, families, conf_families, args.noncrossing, done,
                                       nested=args.nested)
                append_rows(path, rows)
    if args.stage in ("report", "all"):
        body = report(proto, RESULTS / f"paper_{proto.name}.png")
        cmd = "python benchmarks/paper.py" + (" --quick" if args.quick else "")
        text = (f"## Paper protocol{' (quick)' if args.quick else ''}\n\n{today()} on {machine()}; "
                f"`{cmd}` (stages crossfit, aggregate, report).\n\n" + describe(proto) + body)
        print(text)
        if args.write:
            replace_section(ROOT / "BENCHMARKS.md", f"paper-{proto.name}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
