"""The issue-23 check on data the tests never see: protein, 20,000 rows, 19 levels, 3 learners.

Times ``reweight("local", local_formula="~ x0 + x1 + x2")`` (x-aware local weights on the
additive partition basis) against the per-level refit ``reweight("quantile")`` (CPU seconds,
the machine is shared), and scores on 5,000 test rows: quantile, local, dqa, auto and the best
single model (chosen on out-of-fold WIS). Appends one JSON line to results/local_x.jsonl.

Usage: QAGG_DATA=/path/to/data python benchmarks/bench_local_x.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_uci, machine, today  # noqa: E402

import qaggstats as qa  # noqa: E402


def cpu_timed(f):
    c0, t0 = time.process_time(), time.perf_counter()
    out = f()
    return out, time.process_time() - c0, time.perf_counter() - t0


def main() -> int:
    df = load_uci("protein-tertiary-structure").sample(frac=1.0, random_state=0)
    train, test = df.iloc[:20_000], df.iloc[20_000:25_000]
    taus = np.round(np.arange(1, 20) / 20, 2)
    models = {"linear": qa.learners.LinearQR(), "forest": qa.learners.QuantileForest(n_estimators=50),
              "boost": qa.learners.GradientBoosting()}
    base, cpu_base, wall_base = cpu_timed(lambda: qa.qagg("y ~ .", train, models=models, taus=taus, seed=0,
                                                          family="single", test=test))
    out = {"date": today(), "machine": machine(), "n": len(train), "levels": taus.size,
           "crossfit_wall": wall_base}
    scores = {}
    for name, kw in {"single": {}, "quantile": {}, "local": {"local_formula": "~ x0 + x1 + x2"},
                     "dqa": {}, "auto": {}}.items():
        fit, cpu, wall = cpu_timed(lambda: base.reweight(name, **kw) if name != "single" else base)
        ts = fit.test_scores
        scores[name] = {"test_wis": float(ts.loc["aggregate", "wis"]), "cpu": cpu, "wall": wall,
                        "family": fit.family}
        print(name, scores[name], flush=True)
    oof = base.oof_scores
    best = min(base.models, key=lambda m: oof.loc[m, "wis"])
    scores["best_single_oof"] = {"model": best, "test_wis": float(base.test_scores.loc[best, "wis"])}
    out["scores"] = scores
    out["local_vs_per_level_cpu"] = scores["local"]["cpu"] / scores["quantile"]["cpu"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "local_x.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
