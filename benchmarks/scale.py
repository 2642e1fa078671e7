"""Scaling benchmark: time and peak memory of each pipeline stage at n = 1e4, 1e5, 1e6.

Synthetic data with a known conditional quantile function,

    y = sin(2 x1) + x2 + (0.3 + 0.5 |x1|) ε,   ε ~ N(0, 1),  x ~ U(-2, 2)^3,

so the true q_τ(x) = sin(2 x1) + x2 + (0.3 + 0.5 |x1|) Φ⁻¹(τ) and the WIS of the oracle is a
floor to compare against. Each n runs in its own subprocess so peak memory (tracemalloc peak
per stage, and the process's maximum resident set) is not polluted by the previous size.

The weight fit at large n is also run on a stratified row subsample (``--weight-rows``) and
its test WIS is compared with the full fit, to show what the subsample costs.

Usage::

    python benchmarks/scale.py                    # n = 1e4, 1e5, 1e6
    python benchmarks/scale.py --sizes 10000 --write
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, replace_section, today  # noqa: E402

TAUS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (n, 3) with an intercept column prepended, response, and true quantiles (n, r)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    loc = np.sin(2 * x[:, 0]) + x[:, 1]
    scale = 0.3 + 0.5 * np.abs(x[:, 0])
    y = loc + scale * rng.standard_normal(n)
    q_true = loc[:, None] + scale[:, None] * norm.ppf(TAUS)[None, :]
    return np.column_stack([np.ones(n), x]), y, q_true


def _stage(name: str, fn, out: dict):
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    value = fn()
    out[f"{name}_s"] = time.perf_counter() - t0
    out[f"{name}_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    return value


def run_size(n: int, weight_rows: int) -> dict:
    """All stages at one n (called in a subprocess)."""
    import qaggstats as qa
    from qaggstats.aggregate import fit_weights
    from qaggstats.crossfit import crossfit
    from qaggstats.monotone import postprocess
    from qaggstats.scoring import wis

    X, y, _ = simulate(n, 0)
    X_test, y_test, q_test_true = simulate(20_000, 1)
    # Learners whose cost grows about linearly in n; the exact-LP LinearQR (HiGHS simplex,
    # superlinear) is left out here: at n = 1e4 it already took most of the cross-fitting time.
    models = {
        "boost": qa.learners.GradientBoosting(max_iter=30, random_state=0),
        "knn": qa.learners.KNN(k=50),
        "locscale": qa.learners.LocationScale(),
    }
    out: dict = {"n": n}
    tracemalloc.start()
    designs = {m: X for m in models}
    cf = _stage("crossfit", lambda: crossfit(models, designs, y, TAUS, cv=5, seed=0), out)
    Q = np.sort(cf.Q, axis=-1)
    w = _stage("weights", lambda: fit_weights(Q, y, TAUS, family="quantile", noncrossing=True), out)
    Q_test = _stage("predict", lambda: np.sort(cf.predict({m: X_test for m in models}), axis=-1), out)
    q_test = _stage("combine", lambda: postprocess(w.combine(Q_test), TAUS, "sort"), out)
    out["solver"] = w.solver
    out["learner_s"] = {m: round(v, 1) for m, v in cf.seconds.items()}
    out["wis_test"] = wis(y_test, q_test, TAUS)
    out["wis_oracle"] = wis(y_test, q_test_true, TAUS)
    out["wis_best_single"] = min(wis(y_test, Q_test[:, j], TAUS) for j in range(Q.shape[1]))
    if weight_rows and n > weight_rows:
        rng = np.random.default_rng(3)
        # stratify on the response's deciles so the subsample keeps the tails
        strata = np.searchsorted(np.quantile(y, np.linspace(0.1, 0.9, 9)), y)
        keep = np.concatenate([rng.choice(np.flatnonzero(strata == s), size=max(1, int(weight_rows * np.mean(strata == s))),
                                          replace=False) for s in np.unique(strata)])
        ws = _stage("weights_sub", lambda: fit_weights(Q[keep], y[keep], TAUS, family="quantile", noncrossing=True), out)
        out["wis_test_sub"] = wis(y_test, postprocess(ws.combine(Q_test), TAUS, "sort"), TAUS)
        out["weight_rows"] = int(keep.size)
    tracemalloc.stop()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| n | cross-fit s (per learner) | weights s | predict s | combine s | peak MB (cross-fit / weights) | max RSS MB | solver | test WIS | best single | oracle | weights on subsample: rows, s, test WIS |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        sub = (f"{r['weight_rows']:,}, {r['weights_sub_s']:.2f}, {r['wis_test_sub']:.4f}" if "weight_rows" in r else "—")
        lines.append(
            f"| {r['n']:,} | {r['crossfit_s']:.1f} ({', '.join(f'{k} {v:g}' for k, v in r['learner_s'].items())}) | {r['weights_s']:.2f} | {r['predict_s']:.2f} | "
            f"{r['combine_s']:.3f} | {r['crossfit_peak_mb']:.0f} / {r['weights_peak_mb']:.0f} | "
            f"{r['max_rss_mb']:.0f} | {r['solver']} | {r['wis_test']:.4f} | {r['wis_best_single']:.4f} | "
            f"{r['wis_oracle']:.4f} | {sub} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time and memory per stage at growing n.")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--weight-rows", type=int, default=100_000,
                    help="also fit the weights on a stratified subsample of this many rows")
    ap.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.single:
        print(json.dumps(run_size(args.single, args.weight_rows)))
        return 0
    rows = []
    for n in (int(float(s)) for s in args.sizes.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--single", str(n), "--weight-rows", str(args.weight_rows)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"n = {n} failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"n = {n:,}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    body = (f"## Scaling\n\n{today()} on {machine()}; `python benchmarks/scale.py`. Learners: "
            "histogram boosting (30 iterations), k-NN (k = 50), location-scale; 5 folds; 7 levels; "
            "quantile weights with non-crossing constraints. Test WIS on 20,000 fresh points "
            "(oracle = the true conditional quantiles).\n\n" + markdown(rows) + "\n")
    print(body)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "scale", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
