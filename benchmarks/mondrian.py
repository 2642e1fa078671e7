"""Per-group coverage of marginal split CQR against Mondrian CQR on UCI data the tests never see.

For each data set, a grouping column (a discrete feature, or the quartiles of a numeric one,
cut on the whole data: the groups depend on x only) and seeded 80/20 splits: fit the same
learners with ``conformal="cqr"`` and with ``conformal="cqr", conformal_groups=<column>`` and
record the test coverage of the 80 % and 90 % intervals within each group. Mondrian CQR
promises [1 - alpha, 1 - alpha + 1/(n_g + 1)] within each group (mean over splits); marginal
CQR promises it only on average over the groups.

Usage::

    QAGG_DATA=/work/shared/data python benchmarks/mondrian.py --reps 20 --write
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

# data set -> (feature, cut into quartiles?)
GROUPS = {"energy": ("x6", False), "concrete": ("x7", True)}
TAUS = (0.05, 0.1, 0.5, 0.9, 0.95)


def grouped(name: str) -> pd.DataFrame:
    df = load_uci(name)
    col, cut = GROUPS[name]
    labels = pd.qcut(df[col], 4, duplicates="drop").astype(str) if cut else df[col].astype(str)
    return df.assign(group=labels.to_numpy())


def run(name: str, reps: int) -> pd.DataFrame:
    df = grouped(name)
    rows = []
    for rep in range(reps):
        test_mask = np.random.default_rng([rep, 7]).random(len(df)) < 0.2
        train, test = df[~test_mask], df[test_mask]
        models = {"linear": qa.learners.LinearQR(), "forest": qa.learners.QuantileForest(n_estimators=50,
                                                                                          random_state=rep),
                  "knn": qa.learners.KNN(k=20), "locscale": qa.learners.LocationScale()}
        formula = "y ~ " + " + ".join(c for c in df.columns if c not in ("y", "group"))
        for method, groups in (("marginal CQR", None), ("Mondrian CQR", "group")):
            fit = qa.qagg(formula, train, models=models, taus=TAUS, conformal="cqr", conformal_groups=groups,
                          cv=5, seed=rep)
            q = fit.predict(test)
            for g, part in test.groupby("group"):
                for lo, hi, pct in (("q0.1", "q0.9", 80), ("q0.05", "q0.95", 90)):
                    inside = (q.loc[part.index, lo] <= part["y"]) & (part["y"] <= q.loc[part.index, hi])
                    rows.append({"dataset": name, "rep": rep, "method": method, "group": g, "nominal": pct,
                                 "n_test": len(part), "coverage": float(inside.mean())})
        print(f"{name} rep {rep} done", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame) -> str:
    lines = ["| data | group | method | cov 80 (± se) | cov 90 (± se) | test rows / split |",
             "|---|---|---|---:|---:|---:|"]
    for (d, g, m), part in results.groupby(["dataset", "group", "method"], sort=True):
        cells = []
        for pct in (80, 90):
            c = part[part.nominal == pct]["coverage"]
            cells.append(f"{c.mean():.3f} ± {c.std(ddof=1) / np.sqrt(c.size):.3f}")
        lines.append(f"| {d} | {g} | {m} | {cells[0]} | {cells[1]} | {part.n_test.mean():.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(GROUPS))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    results = pd.concat([run(n, args.reps) for n in args.datasets.split(",")], ignore_index=True)
    groups = "; ".join(f"{d}: {c}{' quartiles' if cut else ''}" for d, (c, cut) in GROUPS.items()
                       if d in args.datasets.split(","))
    body = (f"## Mondrian calibration\n\n{today()} on {machine()}; `python benchmarks/mondrian.py --datasets "
            f"{args.datasets} --reps {args.reps}` ({time.perf_counter() - start:.0f} s). Test coverage within each "
            f"group ({groups}), mean ± standard error over {args.reps} seeded 80/20 splits; linear QR, forest, "
            "k-NN and location-scale learners, quantile weights, 25 % of the fitting rows for calibration "
            "(stratified by group for Mondrian).\n\n" + markdown(results) + "\n")
    print(body)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "mondrian", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
