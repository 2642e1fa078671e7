"""The ``qaggstats`` command: demo, fit, predict, datasets.

Bad arguments and bad data exit with status 2 and a one-line error naming the problem;
anything unexpected exits with status 1 and a one-line message. A traceback is printed only
with ``--debug``. Progress bars appear only when stderr is a terminal and never with
``--quiet``.

Outputs never replace an input (the data file, the saved fit), and never replace an existing
file that qaggstats did not write (a saved fit, a report, a predictions table, the demo's
summary, recognised by their content) unless ``--force`` is given.

Examples
--------
.. code-block:: sh

    qaggstats demo --out demo/
    qaggstats fit data.csv -f "y ~ ." --taus 0.1,0.5,0.9 --report out.html --save fit.qagg
    qaggstats predict fit.qagg new.csv -o predictions.csv --interval 0.8
    qaggstats predict fit.qagg new.csv --precision 6 | head
    qaggstats datasets
    qaggstats datasets engel
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import traceback
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ._version import __version__
from .errors import DataError, QaggError, SaveError

__all__ = ["main", "build_parser", "LEARNER_CHOICES"]

LEARNER_CHOICES = ("linear", "forest", "boost", "knn", "locscale")
REPORT_SUFFIXES = (".html", ".pdf")
TABLE_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")
# Fewer trees and boosting rounds for ``demo --fast`` (the test suite and slow machines);
# the weights, calibration and reports are computed exactly as in the full demo.
FAST_FOREST_TREES = 25  # of the default 50
FAST_BOOSTING_ROUNDS = 10  # of the default 30
# Predictions are estimates whose sampling error is far above 1e-10 of their value: ten
# significant digits lose nothing a reader can use, where repr's 17 digits show noise.
DEFAULT_PRECISION = 10


class _ArgumentError(Exception):
    """An argparse usage problem, sent down the same one-line exit-2 path as data errors."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing the usage and exiting."""

    def error(self, message: str):  # argparse's default prints a multi-line usage block
        raise _ArgumentError(message)


def _floats(text: str) -> list[float]:
    """Parse ``"0.1,0.5,0.9"`` into floats (argparse ``type``)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _fraction(text: str) -> float:
    """Parse a number strictly between 0 and 1 (argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text}")
    return value


def _digits(text: str) -> int:
    """Parse a number of significant digits, 1 to 17 (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of digits (1-17), got {text!r}") from None
    if not 1 <= value <= 17:
        raise argparse.ArgumentTypeError(f"expected 1 to 17 significant digits, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``qaggstats`` command.

    Returns
    -------
    argparse.ArgumentParser
        Its ``error`` raises instead of exiting, so :func:`main` can report one line.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress output")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--force", action="store_true",
                        help="overwrite existing output files that qaggstats did not write "
                             "(an input file is never overwritten)")

    parser = _Parser(prog="qaggstats",
                     description="Aggregated, non-crossing, calibrated quantile regression.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=False, parser_class=_Parser,
                                metavar="{demo,fit,predict,datasets}")

    demo = sub.add_parser("demo", parents=[common, writes],
                          help="fit, aggregate and calibrate on embedded data; write reports")
    demo.add_argument("--out", default="qaggstats-demo", help="output directory (default: %(default)s)")
    demo.add_argument("--dataset", default="concrete", help="embedded data set (default: %(default)s)")
    demo.add_argument("--no-pdf", action="store_true", help="write only the HTML report")
    demo.add_argument("--fast", action="store_true",
                      help=f"fewer trees ({FAST_FOREST_TREES}) and boosting rounds "
                           f"({FAST_BOOSTING_ROUNDS}): a quicker, slightly weaker demo")
    # One process by default: the embedded data sets (at most 1,030 rows) cross-fit in about
    # 1.5 s on one core, less than worker processes take to start and import the stack.
    demo.add_argument("--n-jobs", type=int, default=1,
                      help="parallel jobs for cross-fitting; -1 uses every core (default: %(default)s: "
                           "the embedded data fit faster in one process than workers start)")

    fit = sub.add_parser("fit", parents=[common, writes], help="fit an aggregate on a CSV or Parquet file")
    fit.add_argument("data", help="CSV or Parquet file")
    fit.add_argument("-f", "--formula", required=True,
                     help='R-style formula, e.g. "y ~ x1 + bs(x2, df=5)" or "y ~ ."')
    fit.add_argument("--models", default=",".join(LEARNER_CHOICES),
                     help=f"comma-separated learners from {', '.join(LEARNER_CHOICES)} (default: all)")
    fit.add_argument("--taus", type=_floats, default=None,
                     help="comma-separated levels in (0, 1) (default: 0.05,0.1,0.25,0.5,0.75,0.9,0.95)")
    # Choices are checked by qaggstats.options (check_option), not by argparse, so every
    # interface gives the same message.
    fit.add_argument("--family", default="quantile",
                     help="weight family: quantile, global, mean, median, single, grouped, local, fine, qra, "
                          "fqra, dqa (needs qaggstats[deep]), auto (default: %(default)s)")
    fit.add_argument("--conformal", default=None,
                     help="conformal calibration: cqr, cqr-asymmetric or cv+ (default: none)")
    fit.add_argument("--postprocess", default="sort",
                     help="monotone post-processing: sort, isotonic, rearrange, minmax, none "
                          "(default: %(default)s)")
    fit.add_argument("--cv", type=int, default=5, help="cross-fitting folds (default: %(default)s)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    fit.add_argument("--n-jobs", type=int, default=-1,
                     help="parallel jobs; -1 uses every core (default: %(default)s)")
    fit.add_argument("--test-size", type=_fraction, default=None,
                     help="fraction of rows held out to score the fit (default: none)")
    fit.add_argument("--report", default=None, help="write a report (.html or .pdf)")
    fit.add_argument("--save", default=None, help="save the fit (e.g. fit.qagg)")

    pred = sub.add_parser("predict", parents=[common, writes], help="predict quantiles for new data with a saved fit")
    pred.add_argument("fit", help="saved fit file")
    pred.add_argument("data", help="CSV or Parquet file with the predictors")
    pred.add_argument("-o", "--output", default="-",
                      help="output CSV; '-' (the default) writes to standard output")
    pred.add_argument("--precision", type=_digits, default=DEFAULT_PRECISION,
                      help="significant digits of the predicted quantiles (default: %(default)s; "
                           "17 round-trips every double exactly)")
    pred.add_argument("--interval", type=_fraction, default=None,
                      help="add lower/upper of this central interval, e.g. 0.9")
    pred.add_argument("--id", default=None, dest="id_column",
                      help="column of the data to write first, identifying each row "
                           "(default: 'row', the row's position in the data file, from 0)")
    pred.add_argument("--keep", default=None,
                      help="comma-separated input columns to copy into the output, or 'all'")

    data = sub.add_parser("datasets", parents=[common], help="list the embedded data sets, or describe one")
    data.add_argument("name", nargs="?", default=None, help="a data set to describe in full")
    return parser


# ----------------------------------------------------------------------------- inputs, outputs
def _read_table(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; every failure becomes a DataError naming the file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise DataError(f"data file {path} does not exist")
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {p.suffix or '(none)'!r}; use .csv or .parquet")
    try:
        df = pd.read_parquet(p) if suffix in (".parquet", ".pq") else pd.read_csv(p)
    except Exception as err:  # pandas and pyarrow raise many types for unreadable files
        raise DataError(f"cannot read {path}: {err}") from err
    if df.empty:
        raise DataError(f"{path} has no data rows")
    if df.shape[1] == 1:
        header = str(df.columns[0])
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header:
                raise DataError(f"{path} was read as one column named {header[:60]!r}: it looks {name}-separated; "
                                "qaggstats reads comma-separated CSV (re-save it with commas, or as Parquet)")
    return df


def _check_output(path: str, suffixes: Optional[Sequence[str]] = None, what: str = "output", *,
                  force: bool = False, inputs: Sequence[tuple[str, str]] = ()) -> Path:
    """Fail before a long fit if an output path cannot or must not be written.

    Refused: a wrong suffix, a missing directory, a directory, one of ``inputs`` (pairs of
    description and path; even with ``force``), and an existing file qaggstats did not write
    (see :func:`_written_by_qaggstats`) unless ``force``.
    """
    p = Path(path)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise DataError(f"{what} {path} must end in {' or '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {what} {path}: directory {parent} does not exist")
    if p.is_dir():
        raise DataError(f"cannot write {what} {path}: it is a directory")
    if not p.exists():
        return p
    for name, source in inputs:
        if Path(source).exists() and os.path.samefile(p, source):
            raise SaveError(f"{what} {path} is the {name} this command reads; write the {what} to another file")
    if not force and not _written_by_qaggstats(p):
        raise SaveError(f"{what} {path} already exists and was not written by qaggstats; choose another "
                        "file, or pass --force to overwrite it")
    return p


_HEAD = 4096  # bytes read to recognise a file by its first lines
_PDF_LIMIT = 64 << 20  # a report PDF is far smaller; a larger file is not one
_PREDICTION_HEADER = re.compile(r"q[0-9.e+-]+")


def _written_by_qaggstats(path: Path) -> bool:
    """Whether ``path`` holds a file qaggstats writes, recognised by its content: a saved fit
    (its magic line), an HTML or PDF report (``generator`` / ``Creator`` "qaggstats"), a
    predictions table (a header ending in the ``q<tau>`` columns, then ``lower, upper``) or
    the demo's summary."""
    from .persist import MAGIC

    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            if head.startswith(b"%PDF-"):
                size = os.fstat(fh.fileno()).st_size
                return size <= _PDF_LIMIT and _pdf_creator_is_qaggstats(head + fh.read())
    except OSError:
        return False
    if head.startswith(MAGIC) or b'<meta name="generator" content="qaggstats">' in head:
        return True
    text = head.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0].strip()
    if first == "Quantile aggregation results":
        return True
    fields = next(csv.reader(io.StringIO(first)), [])
    if fields[-2:] == ["lower", "upper"]:
        fields = fields[:-2]
    quantiles = 0
    for name in reversed(fields):
        if not _PREDICTION_HEADER.fullmatch(name):
            break
        quantiles += 1
    return quantiles > 0 and quantiles < len(fields)  # the id column comes first


def _pdf_creator_is_qaggstats(raw: bytes) -> bool:
    """Whether a PDF's metadata names qaggstats as its creator (WeasyPrint writes the report's
    ``generator`` there, inside a compressed object stream)."""
    needle = b"/Creator (qaggstats)"
    if needle in raw:
        return True
    for m in re.finditer(rb"stream\r?\n", raw):
        try:
            if needle in zlib.decompressobj().decompress(raw[m.end():]):
                return True
        except zlib.error:
            continue
    return False


def _progress(args: argparse.Namespace):
    """A terminal progress bar, or None (silence) with --quiet; the bar itself is TTY-only."""
    from .progress import TerminalProgress

    return None if args.quiet else TerminalProgress()


def _holdout(df: pd.DataFrame, test_size: Optional[float], seed: int
             ) -> tuple[pd.DataFrame, Optional[pd.DataFrame]]:
    """Split off a random test set (a stream separate from the pipeline's own seeds)."""
    if not test_size:
        return df, None
    rng = np.random.default_rng([seed, 2])
    test = rng.random(len(df)) < test_size
    if test.all() or not test.any():
        raise DataError(f"--test-size {test_size} leaves no training or no test rows out of {len(df)}")
    return df[~test], df[test]


def _models(spec: str, seed: int) -> dict[str, Any]:
    """The learners named in ``--models`` (comma-separated), in the order given."""
    from .pipeline import default_models

    available = default_models(seed)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DataError(f"unknown learner {unknown[0]!r}; choose from {', '.join(LEARNER_CHOICES)}")
    if not names:
        raise DataError(f"--models is empty; choose from {', '.join(LEARNER_CHOICES)}")
    if len(set(names)) < len(names):
        raise DataError(f"--models names a learner twice: {spec}")
    return {n: available[n] for n in names}


def _demo_models(fast: bool, seed: int) -> dict[str, Any]:
    """The default learners; with ``fast``, smaller forests and fewer boosting rounds."""
    from . import learners
    from .pipeline import default_models

    models = default_models(seed)
    if fast:
        models["forest"] = learners.QuantileForest(n_estimators=FAST_FOREST_TREES, random_state=seed)
        models["boost"] = learners.GradientBoosting(max_iter=FAST_BOOSTING_ROUNDS, random_state=seed)
    return models


def _short_summary(fit) -> list[str]:
    """A few lines for the terminal: data, levels, WIS against the base models, coverage."""
    lines = [
        f"data: {fit.data_name} ({fit.na.n_used} rows used; {fit.n_train} training, "
        f"{fit.n_cal} calibration), response {fit.response}",
        f"models: {', '.join(fit.models)}; weights: {fit.family}; levels: "
        + ", ".join(f"{t:g}" for t in fit.taus),
    ]
    if fit.test_scores is not None:
        scores, where, cov = fit.test_scores, "test", fit.coverage[fit.coverage["set"] == "test"]
    else:
        scores, where, cov = fit.oof_scores, "out-of-fold", fit.coverage[fit.coverage["set"] != "test"]
    best = scores.loc[fit.models, "wis"].idxmin()
    lines.append(f"{where} WIS: aggregate {scores.loc['aggregate', 'wis']:.4g}, best single model "
                 f"{best} {scores.loc[best, 'wis']:.4g}, mean of models {scores.loc['mean', 'wis']:.4g}")
    for _, row in cov.iterrows():
        lines.append(f"{row['nominal']:.0%} interval: {where} coverage {row['observed']:.3f} "
                     f"(95% band [{row['band_low']:.3f}, {row['band_high']:.3f}])")
    return lines


# ----------------------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    from . import datasets
    from .pipeline import qagg

    df = datasets.load(args.dataset)  # first: an unknown name is the likeliest mistake
    formula = datasets.suggested_formula(args.dataset)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create output directory {out}: {err.strerror}") from err
    names = ["report.html"] + ([] if args.no_pdf else ["report.pdf"]) + ["fit.qagg", "summary.txt"]
    for name in names:
        _check_output(str(out / name), force=args.force)
    train, test = _holdout(df, 0.2, 0)
    fit = qagg(formula, train, models=_demo_models(args.fast, 0), family="quantile",
               conformal="cqr", cv=5, seed=0, n_jobs=args.n_jobs, test=test, data_name=args.dataset,
               progress=_progress(args))
    from .report import write_reports

    # one report context for both formats: the figures and tables are built once
    written = write_reports(fit, [out / "report.html"] + ([] if args.no_pdf else [out / "report.pdf"]))
    written.append(fit.save(out / "fit.qagg"))
    (out / "summary.txt").write_text(str(fit.summary()) + "\n", encoding="utf-8")
    written.append(out / "summary.txt")
    print(f"qaggstats demo: {formula}")
    for line in _short_summary(fit):
        print(f"  {line}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .levels import validate_levels
    from .options import check_option
    from .pipeline import DEFAULT_TAUS, qagg

    # Everything that can be checked without fitting is checked first, so a typo does not
    # cost a full cross-fit.
    taus = args.taus if args.taus is not None else DEFAULT_TAUS
    validate_levels(taus, sort=True)
    check_option("family", args.family)
    check_option("postprocess", args.postprocess)
    check_option("conformal", args.conformal)
    models = _models(args.models, args.seed)
    data = [("data file", args.data)]
    if args.report:
        _check_output(args.report, REPORT_SUFFIXES, "report", force=args.force, inputs=data)
    if args.save:
        _check_output(args.save, what="saved fit", force=args.force, inputs=data)
    if args.report and args.save and Path(args.report).resolve() == Path(args.save).resolve():
        raise DataError(f"--report and --save name the same file {args.save}; give each its own")
    df = _read_table(args.data)
    train, test = _holdout(df, args.test_size, args.seed)
    fit = qagg(args.formula, train, models=models, taus=taus,
               family=args.family, conformal=args.conformal, postprocess=args.postprocess,
               cv=args.cv, seed=args.seed, n_jobs=args.n_jobs, test=test,
               data_name=Path(args.data).name, progress=_progress(args))
    print(fit.summary())
    if args.report:
        print(f"wrote {fit.report(args.report)}")
    if args.save:
        print(f"wrote {fit.save(args.save)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .files import atomic_write
    from .results import load

    to_stdout = args.output == "-"
    if not to_stdout:
        _check_output(args.output, (".csv",), "predictions", force=args.force,
                      inputs=[("data file", args.data), ("saved fit", args.fit)])
    fit = load(args.fit)
    data = _read_table(args.data)
    pred = fit.predict(data, interval=args.interval)
    first = pd.DataFrame(index=data.index)
    if args.id_column is None:
        first["row"] = np.arange(len(data))
    elif args.id_column not in data.columns:
        raise DataError(f"--id column {args.id_column!r} is not in {args.data}")
    else:
        first[args.id_column] = data[args.id_column]
    if args.keep:
        keep = list(data.columns) if args.keep == "all" else [c.strip() for c in args.keep.split(",") if c.strip()]
        missing = [c for c in keep if c not in data.columns]
        if missing:
            raise DataError(f"--keep column(s) {missing} are not in {args.data}")
        first = first.join(data[[c for c in keep if c not in first.columns]])
    clash = [c for c in first.columns if c in pred.columns]
    if clash:
        raise DataError(f"input column(s) {clash} have the names of prediction columns; rename them or drop them from --keep")
    # the predictions get --precision digits; copied input columns keep every digit they had
    first = first.apply(lambda col: col.map(lambda v: repr(float(v))).where(col.notna(), "")
                        if pd.api.types.is_float_dtype(col) else col)
    text = pd.concat([first, pred], axis=1).to_csv(index=False, float_format=f"%.{args.precision}g")
    missing = int(pred.isna().any(axis=1).sum())
    done = f" ({missing} with missing predictors)" if missing else ""
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
        if not args.quiet:  # stdout holds the table: the message goes to stderr
            print(f"wrote {len(pred)} rows to standard output{done}", file=sys.stderr)
        return 0
    # atomic: an interrupted write never leaves a partial file where the old one was
    out = atomic_write(args.output, text.encode("utf-8"))
    print(f"wrote {len(pred)} rows to {out}{done}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from . import datasets

    if args.name is not None:
        print(datasets.describe(args.name))
        return 0
    table = datasets.describe()
    width = max(map(len, table["name"]))
    for row in table.itertuples():
        print(f"{row.name:<{width}}  {row.rows:>5} rows  {row.title}")
        print(f"{'':<{width}}  formula: {row.formula}")
    print("\n`qaggstats datasets NAME` describes one (columns, source, licence).")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _cmd_demo, "fit": _cmd_fit, "predict": _cmd_predict, "datasets": _cmd_datasets,
}


# ----------------------------------------------------------------------------- entry point
def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (pandas and patsy messages may span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one ``qaggstats: warning:`` line, without source location."""
    print(f"qaggstats: warning: {_one_line(message if isinstance(message, Warning) else Warning(message))}",
          file=sys.stderr if file is None else file)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for bad arguments or data (one line on stderr), 1 for an unexpected
        error (one line on stderr; the traceback with ``--debug``), 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    saved_showwarning = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            print(f"qaggstats {__version__}")
            return 0
        if args.command is None:
            raise _ArgumentError("choose a command: demo, fit, predict or datasets (see qaggstats --help)")
        return _COMMANDS[args.command](args)
    except (_ArgumentError, QaggError) as err:
        if debug:
            traceback.print_exc()
        print(f"qaggstats: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qaggstats: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, and keep Python from
        # complaining again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:  # the last resort: one line, the traceback only on request
        if debug:
            traceback.print_exc()
        print(f"qaggstats: unexpected error: {type(err).__name__}: {_one_line(err)}"
              + ("" if debug else " (run again with --debug for the traceback)"), file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = saved_showwarning


if __name__ == "__main__":
    sys.exit(main())
