"""The ``qaggstats`` command: demo, fit, predict, datasets.

Bad arguments and bad data exit with status 2 and a one-line error naming the problem (a
traceback only with ``--debug``); progress bars appear only on a terminal and never with
``--quiet``.

Examples
--------
.. code-block:: sh

    qaggstats demo --out demo/
    qaggstats fit data.csv -f "y ~ ." --quantiles 0.1,0.5,0.9 --report out.html --save fit.qagg
    qaggstats predict fit.qagg new.csv -o predictions.csv --interval 0.8
    qaggstats datasets
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .errors import DataError, QaggError

__all__ = ["main", "build_parser"]

LEARNER_CHOICES = ("linear", "forest", "boost", "knn", "locscale")


class _ArgumentError(Exception):
    """argparse usage problems, turned into the same one-line exit-2 path as data errors."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit; we want one line
        raise _ArgumentError(message)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``qaggstats`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress output")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    parser = _Parser(prog="qaggstats", description="Aggregated, non-crossing, calibrated quantile regression.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", parents=[common], help="fit, aggregate and calibrate on embedded data; write reports")
    demo.add_argument("--out", default="qaggstats-demo", help="output directory (default: %(default)s)")
    demo.add_argument("--dataset", default="concrete", help="embedded data set (default: %(default)s)")
    demo.add_argument("--no-pdf", action="store_true", help="write only the HTML report")

    fit = sub.add_parser("fit", parents=[common], help="fit an aggregate on a CSV or Parquet file")
    fit.add_argument("data", help="CSV or Parquet file")
    fit.add_argument("-f", "--formula", required=True, help='R-style formula, e.g. "y ~ x1 + bs(x2, df=5)" or "y ~ ."')
    fit.add_argument("--models", default=",".join(LEARNER_CHOICES),
                     help=f"comma-separated learners from {', '.join(LEARNER_CHOICES)} (default: all)")
    fit.add_argument("--quantiles", type=_floats, default=None, help="comma-separated levels in (0, 1)")
    fit.add_argument("--weights", default="quantile", help="weight family (default: %(default)s)")
    fit.add_argument("--conformal", default=None, choices=["cqr", "cqr-asymmetric", "cv+"])
    fit.add_argument("--postprocess", default="sort", choices=["sort", "isotonic", "rearrange", "minmax", "none"])
    fit.add_argument("--cv", type=int, default=5)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--n-jobs", type=int, default=1)
    fit.add_argument("--test-size", type=float, default=0.0, help="fraction held out to score the fit (default 0)")
    fit.add_argument("--report", default=None, help="write a report (.html or .pdf)")
    fit.add_argument("--save", default=None, help="save the fit (e.g. fit.qagg)")

    pred = sub.add_parser("predict", parents=[common], help="predict quantiles for new data with a saved fit")
    pred.add_argument("fit", help="saved fit file")
    pred.add_argument("data", help="CSV or Parquet file with the predictors")
    pred.add_argument("-o", "--output", required=True, help="output CSV")
    pred.add_argument("--interval", type=float, default=None, help="central interval coverage, e.g. 0.9")

    sub.add_parser("datasets", parents=[common], help="list the embedded data sets")
    return parser


def _read_table(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if p.suffix.lower() in (".csv", ".txt"):
            return pd.read_csv(p)
    except Exception as err:  # pandas raises many types for unreadable files
        raise DataError(f"cannot read {path}: {err}") from err
    raise DataError(f"{path}: unsupported file type {p.suffix!r}; use .csv or .parquet")


def _progress(args):
    from .progress import TerminalProgress

    return None if args.quiet else TerminalProgress()


def _holdout(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, Optional[pd.DataFrame]]:
    if test_size <= 0:
        return df, None
    if test_size >= 1:
        raise DataError(f"--test-size must be below 1, got {test_size}")
    rng = np.random.default_rng([seed, 2])
    test = rng.random(len(df)) < test_size
    return df[~test], df[test]


def _models(spec: str, seed: int) -> dict:
    from .pipeline import default_models

    available = default_models(seed)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise DataError(f"unknown learner {unknown[0] if unknown else spec!r}; choose from {', '.join(LEARNER_CHOICES)}")
    return {n: available[n] for n in names}


def _cmd_demo(args) -> int:
    from . import datasets
    from .pipeline import qagg

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = datasets.load(args.dataset)
    meta = datasets.describe(args.dataset)
    formula = meta["formula"] if isinstance(meta, dict) else datasets.suggested_formula(args.dataset)
    train, test = _holdout(df, 0.2, 0)
    fit = qagg(formula, train, weights="quantile", conformal="cqr", cv=5, seed=0, test=test,
               data_name=args.dataset, progress=_progress(args))
    print(fit.summary())
    written = [fit.report(out / "report.html")]
    if not args.no_pdf:
        written.append(fit.report(out / "report.pdf"))
    fit.save(out / "fit.qagg")
    for path in written:
        print(f"wrote {path}")
    return 0


def _cmd_fit(args) -> int:
    from .pipeline import DEFAULT_QUANTILES, qagg

    df = _read_table(args.data)
    train, test = _holdout(df, args.test_size, args.seed)
    fit = qagg(args.formula, train, models=_models(args.models, args.seed),
               quantiles=args.quantiles or DEFAULT_QUANTILES, weights=args.weights,
               conformal=args.conformal, postprocess=args.postprocess, cv=args.cv, seed=args.seed,
               n_jobs=args.n_jobs, test=test, data_name=Path(args.data).name, progress=_progress(args))
    print(fit.summary())
    if args.report:
        print(f"wrote {fit.report(args.report)}")
    if args.save:
        print(f"wrote {fit.save(args.save)}")
    return 0


def _cmd_predict(args) -> int:
    from .results import load

    fit = load(args.fit)
    pred = fit.predict(_read_table(args.data), interval=args.interval)
    try:
        pred.to_csv(args.output, index=False)
    except OSError as err:
        raise DataError(f"cannot write {args.output}: {err.strerror}") from err
    missing = int(pred.isna().any(axis=1).sum())
    print(f"wrote {len(pred)} rows to {args.output}" + (f" ({missing} with missing predictors)" if missing else ""))
    return 0


def _cmd_datasets(args) -> int:
    from . import datasets

    table = datasets.describe()
    print(table.to_string() if isinstance(table, pd.DataFrame) else table)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 unexpected)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        handler = {"demo": _cmd_demo, "fit": _cmd_fit, "predict": _cmd_predict, "datasets": _cmd_datasets}
        return handler[args.command](args)
    except (_ArgumentError, QaggError) as err:
        if debug:
            traceback.print_exc()
        print(f"qaggstats: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qaggstats: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
