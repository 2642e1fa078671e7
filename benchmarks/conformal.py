"""Coverage and width of each conformal variant against the uncalibrated aggregate.

For each data set and seeded split (80 % fitting data, 20 % test), fit the default learners
with ``conformal=None``, ``"cqr"``, ``"cqr-asymmetric"`` and ``"cv+"`` and report, on the test
split, the coverage and mean width of the 50 / 80 / 90 % intervals, averaged over repetitions.

Usage::

    python benchmarks/conformal.py --datasets concrete,power-plant --reps 3 --write
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load_uci, machine, replace_section, today  # noqa: E402

import qaggstats as qa  # noqa: E402

VARIANTS = (None, "cqr", "cqr-asymmetric", "cv+")
TAUS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def _data(name: str, max_rows: int) -> pd.DataFrame:
    df = qa.datasets.load(name) if name in qa.datasets.names() else load_uci(name)
    if len(df) > max_rows:
        df = df.sample(max_rows, random_state=0).reset_index(drop=True)
    return df


def _formula(name: str) -> str:
    return qa.datasets.suggested_formula(name) if name in qa.datasets.names() else "y ~ ."


def run(name: str, reps: int, max_rows: int) -> pd.DataFrame:
    df = _data(name, max_rows)
    rows = []
    for rep in range(reps):
        test_mask = np.random.default_rng([rep, 7]).random(len(df)) < 0.2
        train, test = df[~test_mask], df[test_mask]
        models = {
            "linear": qa.learners.LinearQR(),
            "forest": qa.learners.QuantileForest(n_estimators=100, random_state=rep),
            "boost": qa.learners.GradientBoosting(max_iter=60, random_state=rep),
            "knn": qa.learners.KNN(k=30),
            "locscale": qa.learners.LocationScale(),
        }
        for variant in VARIANTS:
            t0 = time.perf_counter()
            fit = qa.qagg(_formula(name), train, models=models, taus=TAUS, conformal=variant,
                          cv=5, seed=rep, test=test)
            agg = fit.test_scores.loc["aggregate"]
            row = {"dataset": name, "rep": rep, "variant": variant or "none", "n_test": int(test_mask.sum()),
                   "n_cal": fit.n_cal, "wis": agg["wis"], "seconds": time.perf_counter() - t0}
            for pct in (50, 80, 90):
                row[f"coverage_{pct}"] = agg[f"coverage_{pct}"]
                row[f"width_{pct}"] = agg[f"width_{pct}"]
            rows.append(row)
        print(f"{name} rep {rep} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame) -> str:
    cols = ["coverage_50", "coverage_80", "coverage_90", "width_50", "width_80", "width_90", "wis"]
    table = results.groupby(["dataset", "variant"], sort=False)[cols].mean().reset_index()
    lines = ["| data | variant | cov 50 | cov 80 | cov 90 | width 50 | width 80 | width 90 | test WIS |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {r.dataset} | {r.variant} | {r.coverage_50:.3f} | {r.coverage_80:.3f} | "
                     f"{r.coverage_90:.3f} | {r.width_50:.3g} | {r.width_80:.3g} | {r.width_90:.3g} | {r.wis:.4g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="concrete,power-plant")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-rows", type=int, default=3000)
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    results = pd.concat([run(n, args.reps, args.max_rows) for n in args.datasets.split(",")], ignore_index=True)
    body = (f"## Conformal variants\n\n{today()} on {machine()}; `python benchmarks/conformal.py "
            f"--datasets {args.datasets} --reps {args.reps}` ({time.perf_counter() - start:.0f} s). "
            f"Test coverage and mean width of the central intervals, mean over {args.reps} seeded "
            f"80/20 splits (at most {args.max_rows:,} rows per data set); split CQR holds out 25 % of "
            "the fitting rows for calibration, CV+ reuses the 5-fold cross-fit.\n\n" + markdown(results) + "\n")
    print(body)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "conformal", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
