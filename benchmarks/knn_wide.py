"""KNN on wide designs (issue 25: a many-level factor): k-d tree against the blocked brute force.

Times one ``KNN(k=30)`` fit + predict of 1,000 query rows against 4,000 training rows, both
search paths, on (a) Gaussian columns (where the two are equal: ``BRUTE_FORCE_COLUMNS``) and
(b) a continuous column plus a one-hot factor of 50-2,500 levels (the design qagg builds for
``y ~ x + g``), one thread; then ``qagg("y ~ x + g", models={"knn": KNN(k=30)})`` on 5,000
rows at 500 levels (the ``MAX_FACTOR_LEVELS`` limit). Appends one JSON line to
results/knn_wide.jsonl.

Usage: OMP_NUM_THREADS=1 python benchmarks/knn_wide.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, today  # noqa: E402

import qaggstats as qa  # noqa: E402
from qaggstats.learners import knn  # noqa: E402

TAUS = [0.1, 0.5, 0.9]


def timed_both(X: np.ndarray, y: np.ndarray, n: int) -> dict[str, float]:
    """Seconds of fit + predict with each search path (the threshold moved to force it)."""
    out, saved = {}, knn.BRUTE_FORCE_COLUMNS
    try:
        for path, threshold in (("tree", 10**9), ("brute", 1)):
            knn.BRUTE_FORCE_COLUMNS = threshold
            t0 = time.perf_counter()
            pred = knn.KNN(k=30, n_jobs=1).fit(X[:n], y[:n], TAUS).predict(X[n:])
            out[path] = round(time.perf_counter() - t0, 3)
            out[f"{path}_pred"] = pred
    finally:
        knn.BRUTE_FORCE_COLUMNS = saved
    # same neighbour sets up to ties in distance: the quantiles agree closely on continuous data
    out["max_abs_diff"] = float(np.max(np.abs(out.pop("tree_pred") - out.pop("brute_pred"))))
    return out


def main() -> int:
    rng = np.random.default_rng(0)
    n, m = 4000, 1000
    gaussian = {}
    for d in (5, 10, 20, 40, 80, 200, 500):
        X = rng.normal(size=(n + m, d))
        gaussian[d] = timed_both(X, X[:, 0] + rng.normal(size=n + m), n)
        print("gaussian", d, gaussian[d], flush=True)
    factor = {}
    for levels in (50, 500, 999, 2500):
        g = rng.integers(0, levels, n + m)
        X = np.zeros((n + m, levels))
        X[:, 0] = rng.normal(size=n + m)
        X[np.arange(n + m), g] = np.where(g > 0, 1.0, 0.0)  # level 0 is the reference
        factor[levels] = timed_both(X, X[:, 0] + rng.normal(size=n + m), n)
        print("factor", levels, factor[levels], flush=True)
    df = pd.DataFrame({"g": [f"g{v}" for v in rng.integers(0, 500, 5000)], "x": rng.normal(size=5000)})
    df["y"] = df["x"] + rng.normal(size=5000)
    t0 = time.perf_counter()
    fit = qa.qagg("y ~ x + g", df, models={"knn": qa.learners.KNN(k=30)}, n_jobs=1)
    qagg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit.predict(df)
    predict_s = time.perf_counter() - t0
    out = {"date": today(), "machine": machine(), "rows": n, "queries": m, "gaussian": gaussian,
           "factor": factor, "qagg_500_levels_5000_rows_s": round(qagg_s, 2),
           "predict_5000_rows_s": round(predict_s, 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "knn_wide.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
