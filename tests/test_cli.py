"""The ``qaggstats`` command, run as a user runs it: in a subprocess, with real files.

One small fit on the Engel data (two fast learners) is shared by the tests that need a fit;
the demo runs once with ``--fast --no-pdf``.
"""
from __future__ import annotations

import io
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qaggstats import cli, datasets
from qaggstats.results import load

# One OpenMP thread per process: on a shared, loaded machine histogram boosting's default of
# one thread per core oversubscribes the CPUs and runs several times slower. The subprocess
# imports the package these tests import: a relative PYTHONPATH (".") would not follow cwd.
_ROOT = str(Path(cli.__file__).resolve().parents[1])
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]
QCOLS = [f"q{t:g}" for t in LEVELS]


def run(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``python -m qaggstats.cli ARGS`` with pipes (so stderr is not a terminal)."""
    return subprocess.run([sys.executable, "-m", "qaggstats.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def assert_one_line_error(proc: subprocess.CompletedProcess, status: int, *needles: str) -> None:
    """Exit ``status``, exactly one line on stderr, no traceback, the culprit named."""
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qaggstats: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A directory with the Engel data as CSV, and new data (Parquet) with one missing predictor."""
    path = tmp_path_factory.mktemp("cli")
    df = datasets.load("engel")
    df.to_csv(path / "engel.csv", index=False)
    new = df.drop(columns="foodexp").iloc[::7].reset_index(drop=True)
    new.loc[3, "income"] = np.nan
    new.to_parquet(path / "new.parquet")
    return path


@pytest.fixture(scope="module")
def fitted(work: Path) -> subprocess.CompletedProcess:
    """``qaggstats fit`` with split CQR, an HTML report and a saved fit."""
    return run(
        "fit", "engel.csv", "-f", "foodexp ~ income", "--models", "linear,knn",
        "--taus", ",".join(map(str, LEVELS)), "--conformal", "cqr", "--cv", "3",
        "--test-size", "0.2", "--report", "out.html", "--save", "fit.qagg", "--quiet", cwd=work)


# ----------------------------------------------------------------------------- fit, predict
def test_fit_prints_summary_and_writes_report_and_fit(fitted, work):
    assert fitted.returncode == 0, fitted.stderr
    assert "Traceback" not in fitted.stderr
    out = fitted.stdout
    assert "Quantile aggregation results" in out
    assert "engel.csv" in out and "foodexp" in out
    assert "cqr" in out
    assert f"wrote {Path('out.html')}" in out and f"wrote {Path('fit.qagg')}" in out
    html = (work / "out.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    for text in ("foodexp", "engel.csv", "knn", "linear", "split CQR"):
        assert text in html, text


def test_saved_fit_predicts_like_the_fit_in_process(fitted, work):
    assert fitted.returncode == 0, fitted.stderr
    proc = run("predict", "fit.qagg", "new.parquet", "-o", "pred.csv", "--interval", "0.9", cwd=work)
    assert proc.returncode == 0, proc.stderr
    new = pd.read_parquet(work / "new.parquet")
    assert f"wrote {len(new)} rows to pred.csv (1 with missing predictors)" in proc.stdout
    pred = pd.read_csv(work / "pred.csv")
    assert list(pred.columns) == ["row"] + QCOLS + ["lower", "upper"]
    assert pred["row"].tolist() == list(range(len(new)))
    pred = pred.drop(columns="row")
    assert len(pred) == len(new)
    assert pred.iloc[3].isna().all() and pred.drop(index=3).notna().all().all()
    expected = load(work / "fit.qagg").predict(new, interval=0.9)
    np.testing.assert_allclose(pred.to_numpy(), expected.to_numpy(), rtol=1e-9, equal_nan=True)  # 10 digits
    # calibrated quantiles stay ordered and the interval is the 0.05 / 0.95 pair
    ok = pred.drop(index=3)
    assert (np.diff(ok[QCOLS].to_numpy(), axis=1) >= 0).all()
    np.testing.assert_array_equal(ok["lower"], ok["q0.05"])
    np.testing.assert_array_equal(ok["upper"], ok["q0.95"])


def test_predict_rejects_an_interval_that_was_not_fitted(fitted, work):
    proc = run("predict", "fit.qagg", "new.parquet", "-o", "p.csv", "--interval", "0.8", cwd=work)
    assert_one_line_error(proc, 2, "0.1", "0.9")
    assert not (work / "p.csv").exists()


def test_predict_rejects_a_file_that_is_not_a_fit(work):
    proc = run("predict", "engel.csv", "new.parquet", "-o", "p.csv", cwd=work)
    assert_one_line_error(proc, 2, "engel.csv", "not a qaggstats saved fit")


# ----------------------------------------------------------------------------- bad input
# The problems users hit most run as real subprocesses; the rest go through the same main()
# in-process, which checks the identical code path without paying an interpreter start each.
BAD_FIT_SUBPROCESS = [
    pytest.param(["-f", "foodexp ~ wealth"], ["wealth"], id="unknown-column"),
    pytest.param(["-f", "foodexp ~ (income"], ["(income"], id="formula-syntax"),
    pytest.param(["-f", "foodexp ~ income", "--taus", "0.1,1.5"], ["1.5"], id="quantile-outside"),
    pytest.param(["-f", "foodexp ~ income", "--models", "linear,svm"], ["svm", "forest"], id="unknown-learner"),
]
BAD_FIT_IN_PROCESS = [
    pytest.param(["-f", "foodexp ~ income", "--taus", "0.1,abc"], ["--taus", "abc"], id="quantile-text"),
    pytest.param(["-f", "foodexp ~ income", "--taus", "0.5,0.5"], ["0.5", "duplicated"], id="quantile-dup"),
    pytest.param(["-f", "foodexp ~ income", "--models", ","], ["--models is empty"], id="no-learner"),
    pytest.param(["-f", "foodexp ~ income", "--family", "magic"], ["magic", "quantile"], id="unknown-family"),
    pytest.param(["-f", "foodexp ~ income", "--conformal", "jackknife"], ["jackknife", "cqr"], id="unknown-conformal"),
    pytest.param(["-f", "foodexp ~ income", "--postprocess", "shuffle"], ["shuffle", "isotonic"], id="unknown-postprocess"),
    pytest.param(["-f", "foodexp ~ income", "--report", "out.docx"], ["out.docx", ".html"], id="report-suffix"),
    pytest.param(["-f", "foodexp ~ income", "--save", "nodir/fit.qagg"], ["nodir"], id="save-dir"),
    pytest.param(["-f", "foodexp ~ income", "--test-size", "1.5"], ["--test-size", "1.5"], id="test-size"),
    pytest.param(["-f", "foodexp ~ income", "--cv", "1"], ["cv"], id="cv"),
    pytest.param(["-f", "foodexp ~ income", "--cv", "two"], ["--cv", "two"], id="cv-text"),
    pytest.param(["-f", "foodexp ~ C(income) + wealth"], ["wealth"], id="unknown-column-in-term"),
]


@pytest.mark.parametrize("extra, needles", BAD_FIT_SUBPROCESS)
def test_bad_fit_input_exits_2_with_one_line(work, extra, needles):
    proc = run("fit", "engel.csv", "--models", "linear", "--quiet", *extra, cwd=work)
    assert_one_line_error(proc, 2, *needles)
    assert proc.stdout == ""


@pytest.mark.parametrize("extra, needles", BAD_FIT_IN_PROCESS)
def test_bad_fit_arguments_exit_2_in_process(work, monkeypatch, capsys, extra, needles):
    monkeypatch.chdir(work)
    status = cli.main(["fit", "engel.csv", "--models", "linear", "--quiet", *extra])
    out, err = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, out, err), 2, *needles)
    assert out == ""


def test_missing_data_file_exits_2(work):
    assert_one_line_error(run("fit", "nope.csv", "-f", "y ~ x", cwd=work), 2, "nope.csv", "does not exist")


def test_unreadable_data_file_exits_2(work):
    (work / "broken.parquet").write_bytes(b"not parquet at all")
    assert_one_line_error(run("fit", "broken.parquet", "-f", "y ~ x", cwd=work), 2, "broken.parquet")


@pytest.mark.parametrize("argv, needle", [([], "choose a command"), (["fit", "data.csv"], "--formula"),
                                          (["bogus"], "bogus"), (["predict", "f.qagg"], "data")])
def test_usage_errors_exit_2_with_one_line(capsys, argv, needle):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], status, out, err), 2, needle)


def test_debug_shows_the_traceback(work):
    proc = run("fit", "engel.csv", "-f", "foodexp ~ wealth", "--models", "linear", "--debug", cwd=work)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("qaggstats: error:")


def test_unexpected_errors_exit_1_with_a_hint(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setitem(cli._COMMANDS, "datasets", boom)
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("qaggstats: unexpected error: RuntimeError: disk on fire second line "
                           "(run again with --debug for the traceback)")
    assert cli.main(["datasets", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "--debug for the traceback" not in err


def test_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    def warn(args):
        warnings.warn("levels look odd\nreally", UserWarning)
        return 0

    monkeypatch.setitem(cli._COMMANDS, "datasets", warn)
    assert cli.main(["datasets"]) == 0
    assert capsys.readouterr().err == "qaggstats: warning: levels look odd really\n"


# ----------------------------------------------------------------------------- progress
def _run_on_tty(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; return the status and what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "qaggstats.cli", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=slave, env=ENV)
    os.close(slave)
    shown = b""
    while True:  # drain continuously so a full terminal buffer cannot block the child
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=120), shown.decode("utf-8", "replace")


def test_progress_bar_only_on_a_terminal_and_not_with_quiet(work, fitted):
    args = ["fit", "engel.csv", "-f", "foodexp ~ income", "--models", "linear", "--cv", "2",
            "--taus", "0.25,0.5,0.75"]
    status, shown = _run_on_tty(args, work)
    assert status == 0, shown
    assert "cross-fitting" in shown and "#" * 30 in shown
    status, shown = _run_on_tty([*args, "--quiet"], work)
    assert status == 0 and shown == ""
    # on pipes (the fixture's run) nothing at all goes to stderr
    assert fitted.stderr == ""


# ----------------------------------------------------------------------------- datasets, demo
def test_datasets_lists_and_describes():
    script = shutil.which("qaggstats")
    cmd = [script] if script else [sys.executable, "-m", "qaggstats.cli"]
    proc = subprocess.run([*cmd, "datasets"], capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    for name in datasets.names():
        assert datasets.suggested_formula(name) in proc.stdout
    assert "1030" in proc.stdout  # concrete's row count
    one = run("datasets", "engel")
    assert one.returncode == 0
    assert one.stdout.strip() == datasets.describe("engel")
    assert_one_line_error(run("datasets", "iris"), 2, "iris", "engel")


def test_help_exits_0():
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("demo", "fit", "predict", "datasets"):
        assert command in proc.stdout


def test_demo_fits_calibrates_and_writes_reports(tmp_path):
    proc = run("demo", "--out", "out", "--no-pdf", "--fast", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"report.html", "fit.qagg", "summary.txt"}
    assert f"wrote {Path('out/report.html')}" in proc.stdout
    assert "test WIS: aggregate" in proc.stdout
    assert "90% interval: test coverage" in proc.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    for text in ("concrete", "strength", "split CQR"):
        assert text in html, text
    fit = load(out / "fit.qagg")
    assert fit.conformal == "cqr" and fit.models == list(cli.LEARNER_CHOICES)
    assert "Quantile aggregation results" in (out / "summary.txt").read_text(encoding="utf-8")


def test_demo_n_jobs_is_checked_and_named(tmp_path):
    assert cli.build_parser().parse_args(["demo"]).n_jobs == 1
    assert_one_line_error(run("demo", "--n-jobs", "0", "--out", "o", "--fast", cwd=tmp_path), 2, "n_jobs", "0")


def test_demo_unknown_dataset_exits_2(tmp_path):
    assert_one_line_error(run("demo", "--dataset", "iris", "--out", "o", cwd=tmp_path), 2, "iris")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- what may be overwritten
def test_predict_never_overwrites_its_input(fitted, work, tmp_path):
    assert fitted.returncode == 0, fitted.stderr
    data = tmp_path / "same.csv"
    datasets.load("engel").drop(columns="foodexp").head(5).to_csv(data, index=False)
    before = data.read_bytes()
    for force in ([], ["--force"]):
        proc = run("predict", str(work / "fit.qagg"), "same.csv", "-o", "same.csv", *force, cwd=tmp_path)
        assert_one_line_error(proc, 2, "predictions same.csv is the data file this command reads")
        assert data.read_bytes() == before


def test_outputs_replace_only_files_qaggstats_wrote_unless_forced(fitted, work, monkeypatch, capsys):
    assert fitted.returncode == 0, fitted.stderr
    monkeypatch.chdir(work)
    notes = work / "notes.qagg"
    notes.write_text("my notes\n")
    fit = ["fit", "engel.csv", "-f", "foodexp ~ income", "--models", "linear", "--cv", "3", "--quiet"]
    assert cli.main(fit + ["--save", "notes.qagg"]) == 2
    assert "saved fit notes.qagg already exists and was not written by qaggstats" in capsys.readouterr().err
    assert notes.read_text() == "my notes\n"
    assert cli.main(fit + ["--save", "engel.csv", "--force"]) == 2  # the data: never
    assert "is the data file" in capsys.readouterr().err
    assert cli.main(fit + ["--save", "notes.qagg", "--force"]) == 0
    assert load(notes).models == ["linear"]
    # a saved fit, a report and a predictions table qaggstats wrote are replaced without --force
    assert cli.main(fit + ["--save", "notes.qagg", "--report", "out.html"]) == 0
    pred = ["predict", "fit.qagg", "new.parquet", "-o", "again.csv", "--quiet"]
    assert cli.main(pred) == 0 and cli.main(pred) == 0
    (work / "other.csv").write_text("a,b\n1,2\n")
    assert cli.main(pred[:4] + ["other.csv"]) == 2
    assert (work / "other.csv").read_text() == "a,b\n1,2\n"


def test_a_report_pdf_is_recognised_by_its_creator(tmp_path):
    from qaggstats.report import html_to_pdf

    ours, theirs = tmp_path / "ours.pdf", tmp_path / "theirs.pdf"
    ours.write_bytes(html_to_pdf('<html><head><meta name="generator" content="qaggstats"></head>'
                                 "<body>report</body></html>"))
    theirs.write_bytes(html_to_pdf("<html><body>report</body></html>"))
    assert cli._written_by_qaggstats(ours) and not cli._written_by_qaggstats(theirs)


def test_predict_writes_to_stdout_with_the_precision_asked(fitted, work, monkeypatch, capsys):
    assert fitted.returncode == 0, fitted.stderr
    monkeypatch.chdir(work)
    expected = load(work / "fit.qagg").predict(pd.read_parquet(work / "new.parquet"))
    for argv, digits in ([], 10), (["-o", "-", "--precision", "4"], 4), (["--precision", "17"], 17):
        assert cli.main(["predict", "fit.qagg", "new.parquet", *argv]) == 0
        out, err = capsys.readouterr()
        assert err == f"wrote {len(expected)} rows to standard output (1 with missing predictors)\n"
        table = pd.read_csv(io.StringIO(out)).drop(columns="row")
        cells = [c for c in out.splitlines()[1].split(",")[1:]]
        assert max(len(c.replace(".", "").lstrip("0")) for c in cells) <= digits
        np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), rtol=0.6 * 10.0 ** (1 - digits),
                                   equal_nan=True)
    np.testing.assert_array_equal(table.to_numpy(), expected.to_numpy())  # 17 digits: exact


def test_demo_refuses_to_replace_a_file_it_did_not_write(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.txt").write_text("my own summary\n")
    assert cli.main(["demo", "--out", "out", "--fast", "--no-pdf", "--quiet"]) == 2  # before any fitting
    assert "summary.txt already exists and was not written by qaggstats" in capsys.readouterr().err
    assert (tmp_path / "out" / "summary.txt").read_text() == "my own summary\n"
    assert not (tmp_path / "out" / "report.html").exists()
