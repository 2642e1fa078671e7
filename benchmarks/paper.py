"""Paper-style benchmark (Fakoor et al. 2023, Section 6) on the UCI data sets.

For each data set and seeded random split (80 % fitting data, 20 % test), the default base
learners are cross-fitted once per conformal setting; every weight family then reuses those
out-of-fold predictions (``fit.reweight``). On the test split we record

* WIS relative to the best single model, chosen by out-of-fold WIS as a user would;
* WIS relative to the mean and median ensembles (the forecast-hub baselines);
* coverage and mean width of the 50 / 80 / 90 % intervals;
* the crossing rate of the aggregate before monotone post-processing;
* seconds per stage.

Output: ``benchmarks/results/paper.csv``, a markdown table (printed, and written into
BENCHMARKS.md with ``--write``) and ``benchmarks/results/paper.png``.

Usage::

    python benchmarks/paper.py --quick            # < 10 minutes on 2 cores
    python benchmarks/paper.py --reps 5 --write   # the full protocol
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, load_uci, machine, replace_section, today, uci_names  # noqa: E402

import qaggstats as qa  # noqa: E402

FAMILIES = ("mean", "median", "global", "quantile", "grouped", "local")
TAUS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def _models(quick: bool, seed: int) -> dict:
    if not quick:
        return qa.pipeline.default_models(seed)
    return {
        "linear": qa.learners.LinearQR(),
        "forest": qa.learners.QuantileForest(n_estimators=60, random_state=seed),
        "boost": qa.learners.GradientBoosting(max_iter=60, random_state=seed),
        "knn": qa.learners.KNN(k=30),
        "locscale": qa.learners.LocationScale(),
    }


def run_one(name: str, df: pd.DataFrame, rep: int, quick: bool) -> list[dict]:
    rng = np.random.default_rng([rep, 7])
    test_mask = rng.random(len(df)) < 0.2
    train, test = df[~test_mask], df[test_mask]
    rows = []
    for conformal in (None, "cqr"):
        t0 = time.perf_counter()
        base = qa.qagg("y ~ .", train, models=_models(quick, rep), quantiles=TAUS,
                       weights="quantile", conformal=conformal, cv=5, seed=rep, test=test,
                       data_name=name)
        base_seconds = time.perf_counter() - t0
        best = base.oof_scores.loc[base.models, "wis"].idxmin()
        for family in FAMILIES:
            kw = {"groups": [0, 0, 1, 1, 1, 2, 2]} if family == "grouped" else {}
            t1 = time.perf_counter()
            fit = base if family == "quantile" else base.reweight(family, **kw)
            reweight_seconds = time.perf_counter() - t1
            ts = fit.test_scores
            agg = ts.loc["aggregate"]
            row = {
                "dataset": name, "n": len(df), "rep": rep, "conformal": conformal or "none",
                "family": family, "best_model": best,
                "wis": agg["wis"],
                "rel_best": agg["wis"] / ts.loc[best, "wis"],
                "rel_mean": agg["wis"] / ts.loc["mean", "wis"],
                "rel_median": agg["wis"] / ts.loc["median", "wis"],
                "crossing_before": ts.loc["aggregate (raw)", "crossing_rate"],
                "seconds_crossfit": base.timings["cross-fitting"],
                "seconds_weights": fit.timings["weight fit"],
                "seconds_calibration": fit.timings.get("calibration", 0.0),
                "seconds_total": base_seconds if family == "quantile" else reweight_seconds,
            }
            for pct in (50, 80, 90):
                row[f"coverage_{pct}"] = agg[f"coverage_{pct}"]
                row[f"width_{pct}"] = agg[f"width_{pct}"]
            rows.append(row)
    return rows


def markdown(results: pd.DataFrame) -> str:
    """Mean over repetitions, one row per data set × conformal × family."""
    cols = ["rel_best", "rel_mean", "rel_median", "coverage_50", "coverage_80", "coverage_90",
            "width_90", "crossing_before", "seconds_weights"]
    table = results.groupby(["dataset", "conformal", "family"], sort=False)[cols].mean().reset_index()
    header = "| data | conformal | family | WIS / best | WIS / mean | WIS / median | cov 50 | cov 80 | cov 90 | width 90 | crossing before | weight fit s |"
    lines = [header, "|" + "---|" * 3 + "---:|" * 9]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.dataset} | {r.conformal} | {r.family} | {r.rel_best:.3f} | {r.rel_mean:.3f} | "
            f"{r.rel_median:.3f} | {r.coverage_50:.3f} | {r.coverage_80:.3f} | {r.coverage_90:.3f} | "
            f"{r.width_90:.3g} | {r.crossing_before:.3f} | {r.seconds_weights:.2f} |")
    return "\n".join(lines)


def plot(results: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    table = results[results.conformal == "none"].groupby(["dataset", "family"])["rel_best"].mean().unstack()
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    table.plot.bar(ax=ax, width=0.8)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel("test WIS / best single model")
    ax.set_title("Aggregation vs the best single model (uncalibrated)")
    ax.legend(ncols=3, fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="subsample to 800 rows, 1 repetition, smaller learners")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--datasets", default=None, help="comma-separated subset of the UCI data sets")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args(argv)

    names = args.datasets.split(",") if args.datasets else uci_names()
    if not names:
        raise SystemExit("no UCI data found beside the checkout (../shared/data/uci)")
    reps = 1 if args.quick else args.reps
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for name in names:
        df = load_uci(name)
        if args.quick and len(df) > 800:
            df = df.sample(800, random_state=0).reset_index(drop=True)
        for rep in range(reps):
            t0 = time.perf_counter()
            rows.extend(run_one(name, df, rep, args.quick))
            print(f"{name} rep {rep}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    results = pd.DataFrame(rows)
    results.to_csv(RESULTS / "paper.csv", index=False)
    plot(results, RESULTS / "paper.png")
    md = markdown(results)
    mode = "quick (≤ 800 rows, 1 repetition, smaller forests/boosting)" if args.quick else f"{reps} repetitions"
    body = (f"## Paper-style benchmark\n\n{today()} on {machine()}; `python benchmarks/paper.py"
            f"{' --quick' if args.quick else ''}`, {mode}, total {time.perf_counter() - start:.0f} s.\n"
            "WIS ratios below 1 mean the aggregate beats the reference on the test split; the best "
            "single model is chosen by out-of-fold WIS.\n\n" + md +
            "\n\n![relative WIS](benchmarks/results/paper.png)\n")
    print(body)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "paper", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
