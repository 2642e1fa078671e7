"""Self-contained HTML and PDF reports of a fitted quantile aggregate.

The report is built in two pure steps and one write:

1. :func:`build_context` reads only the attributes of ``QaggResults`` listed in
   ``docs/ARCHITECTURE.md``, formats every number once (so the HTML, the PDF and the tests
   see the same strings) and draws the figures as inline SVG (the fan chart, whose points
   grow with n, as a PNG data URI).
2. :func:`render_html` renders the jinja2 templates shipped as ``qaggstats.templates`` (or a
   user's ``template_dir``, which may override any single file) with autoescaping on and
   ``StrictUndefined``, so a hostile column name is shown as text and a template typo fails
   loudly instead of printing nothing.
3. :func:`write_report` writes HTML, or a PDF made from the same context, atomically (the
   PDF's HTML holds each SVG figure as an image, which WeasyPrint draws without styling
   every SVG node: 40 % faster, same text and layout).

Why WeasyPrint for PDF: it works offline and needs no browser (a report is a library call,
also on a headless server); it implements CSS paged media, so the one stylesheet gives A4
pages, ``Page N of M`` footers, table headers repeated after a page break and figures kept
whole; and it renders the same HTML and inline SVG as the browser, keeping figure text as
text, so the PDF is searchable and matches the HTML report.

Examples
--------
>>> import qaggstats as qa                                          # doctest: +SKIP
>>> fit = qa.qagg("foodexp ~ income", qa.datasets.load("engel"))   # doctest: +SKIP
>>> write_report(fit, "engel.pdf")                                  # doctest: +SKIP
PosixPath('engel.pdf')
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from . import conformal as conformal_mod
from . import plots
from .errors import QaggError, SaveError
from .files import atomic_write
from .quantreg import NonPositiveFisWarning
from .scoring import central_pairs
from .summary import format_weight

__all__ = ["build_context", "render_html", "write_report", "write_reports"]

_FORMATS = {".html": "html", ".htm": "html", ".pdf": "pdf"}
_TEMPLATE = "report.html"


# --------------------------------------------------------------------------- formatting
def fmt_num(value: float, decimals: int) -> str:
    """A number with fixed decimals, thousands separators, a true minus sign, and an em dash
    for missing values.

    Examples
    --------
    >>> fmt_num(-0.5, 2), fmt_num(28810.4, 0), fmt_num(float("nan"), 2)
    ('−0.50', '28,810', '—')
    """
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:,.{decimals}f}".replace("-", "−")


def decimals_for(values: Iterable[float], significant: int = 4) -> int:
    """Decimals that give the largest |value| ``significant`` digits (shared by a column).

    Large values get no decimals (all their integer digits are kept: 28,810, not 2.881e+04).

    Examples
    --------
    >>> decimals_for([83.1, 1.2]), decimals_for([0.0123]), decimals_for([12345.0])
    (2, 5, 0)
    """
    finite = [abs(v) for v in values if v is not None and np.isfinite(v) and v != 0]
    if not finite:
        return 2
    return max(0, significant - 1 - math.floor(math.log10(max(finite))))


def fmt_pct(value: float, decimals: int = 1) -> str:
    """A proportion as a percentage.

    Examples
    --------
    >>> fmt_pct(0.90333)
    '90.3%'
    """
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.{decimals}f}%"


def fmt_signed_pct(value: float) -> str:
    """A relative change such as ``−2.9%`` (a true minus sign; plus shown).

    Examples
    --------
    >>> fmt_signed_pct(-0.0291), fmt_signed_pct(0.1)
    ('−2.9%', '+10.0%')
    """
    return f"{100 * value:+.1f}%".replace("-", "−")


def fmt_level(tau: float) -> str:
    """A quantile level without trailing zeros.

    Examples
    --------
    >>> fmt_level(0.050)
    '0.05'
    """
    return f"{tau:g}"


# --------------------------------------------------------------------------- tables
class _Numbering:
    """Figure and table numbers in order of appearance."""

    def __init__(self) -> None:
        self.figures = 0
        self.tables = 0

    def figure(self) -> int:
        self.figures += 1
        return self.figures

    def table(self) -> int:
        self.tables += 1
        return self.tables


def _cell(text: object, cls: str = "") -> dict[str, str]:
    return {"text": str(text), "cls": cls}


def _table(columns: Sequence[tuple[str, bool]], rows: list[list[dict]], caption: str, number: int,
           row_classes: Sequence[str] | None = None, note: str = "") -> dict[str, Any]:
    """A table for the template: columns are (label, numeric); cells are preformatted text."""
    return {
        "columns": [{"label": label, "numeric": numeric} for label, numeric in columns],
        "rows": [{"cells": cells, "cls": (row_classes[i] if row_classes else "")} for i, cells in enumerate(rows)],
        "caption": caption, "number": number, "note": note,
    }


def _score_rows(scores: pd.DataFrame, columns: Sequence[str], models: Sequence[str],
                percent: Sequence[str] = ()) -> tuple[list[list[dict]], list[str]]:
    """Formatted rows of a score table; the lowest WIS / pinball loss of each column is bold.

    Only proper scores get a winner: a narrower interval or a smaller dispersion is not better
    by itself.
    """
    rows, classes = [], []
    decimals = {c: decimals_for(scores[c].to_numpy(dtype=float)) for c in columns if c not in percent}
    lowest = {c: scores[c].astype(float).idxmin() for c in columns
              if (c == "wis" or c.startswith("pinball_")) and scores[c].notna().any()}
    for name in scores.index:
        cells = [_cell(name, "label")]
        for c in columns:
            v = float(scores.loc[name, c])
            text = fmt_pct(v) if c in percent else fmt_num(v, decimals[c])
            cells.append(_cell(text, "best" if lowest.get(c) == name else ""))
        rows.append(cells)
        classes.append("highlight" if name == "aggregate" else ("ensemble" if name not in models else ""))
    return rows, classes


def _interval_columns(scores: pd.DataFrame) -> list[tuple[str, str]]:
    """(coverage column, width column) per central interval, widest first."""
    pcts = [c.split("_", 1)[1] for c in scores.columns if c.startswith("coverage_")]
    pcts.sort(key=float, reverse=True)
    return [(f"coverage_{p}", f"width_{p}") for p in pcts if f"width_{p}" in scores.columns]


def _accuracy_table(scores: pd.DataFrame, models: Sequence[str], caption: str, number: int) -> dict:
    intervals = _interval_columns(scores)[:2]
    cols = ["wis", "dispersion", "overprediction", "underprediction"]
    cols += [c for pair in intervals for c in pair] + ["crossing_rate"]
    cols = [c for c in cols if c in scores.columns]
    labels = {"wis": "WIS", "dispersion": "Dispersion", "overprediction": "Over-pred.",
              "underprediction": "Under-pred.", "crossing_rate": "Crossing"}
    for cov, width in intervals:
        pct = cov.split("_", 1)[1]
        labels[cov], labels[width] = f"Cover. {pct}%", f"Width {pct}%"
    percent = [c for c in cols if c.startswith("coverage_") or c == "crossing_rate"]
    rows, classes = _score_rows(scores, cols, models, percent=percent)
    return _table([("Model", False)] + [(labels[c], True) for c in cols], rows, caption, number, classes)


# --------------------------------------------------------------------------- figures
def _svg_figure(fig, caption: str, number: int, alt: str) -> dict[str, Any]:
    # Markup: matplotlib escapes every text it writes into the SVG, so it is safe to inline.
    return {"svg": Markup(plots.figure_to_svg(fig)), "png": None, "caption": caption, "number": number,
            "alt": alt}


def _png_figure(fig, caption: str, number: int, alt: str) -> dict[str, Any]:
    return {"svg": None, "png": plots.figure_to_png_base64(fig), "caption": caption, "number": number,
            "alt": alt}


def formula_columns(formula: str, columns: Iterable[object], response: object) -> list[str]:
    """Columns the right-hand side of ``formula`` names, by exact (whole-token) match.

    A column counts only when its full name stands alone in the formula (``income`` is not
    found in ``log_income`` and ``e`` is not found in ``income``); ``.`` means every column
    but the response.

    Examples
    --------
    >>> formula_columns("y ~ np.log(income) + C(group)", ["y", "e", "income", "group"], "y")
    ['income', 'group']
    >>> formula_columns("y ~ .", ["y", "a", "b"], "y")
    ['a', 'b']
    """
    rhs = str(formula).split("~", 1)[-1]
    names = [str(c) for c in columns if str(c) != str(response)]
    if re.search(r"(?<![\w.])\.(?![\w.])", rhs):
        return names
    return [c for c in names if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", rhs)]


def _single_feature(results) -> tuple[str | None, np.ndarray | None]:
    """The predictor to draw along when the default formula has exactly one, and it is numeric.

    A model of several predictors has no single axis to show its quantiles along (drawn
    against one covariate they zigzag with the others); the figures then order rows by the
    predicted median instead (``(None, None)``).
    """
    frame = results.frame
    if not isinstance(frame, pd.DataFrame) or len(frame) != len(results.y):
        return None, None
    used = formula_columns(results.formula, frame.columns, results.response)
    if len(used) != 1 or not pd.api.types.is_numeric_dtype(frame[used[0]]):
        return None, None
    return used[0], frame[used[0]].to_numpy(dtype=float)


def _outer_pair(taus: np.ndarray) -> tuple[int, int] | None:
    pairs = central_pairs(taus)
    return pairs[0] if pairs else None


# --------------------------------------------------------------------------- context
def build_context(results) -> dict[str, Any]:
    """Everything the report template shows, formatted, from a fitted aggregate.

    Parameters
    ----------
    results : QaggResults
        Only the attributes listed in ``docs/ARCHITECTURE.md`` are read.

    Returns
    -------
    dict
        Plain values, preformatted strings, table dicts (``columns``, ``rows``, ``caption``,
        ``number``) and figure dicts (``svg`` or ``png``, ``caption``, ``number``). The key
        numbers are in ``context["key"]`` (e.g. ``key["aggregate_wis"]``).

    Examples
    --------
    >>> ctx = build_context(fit)                     # doctest: +SKIP
    >>> ctx["key"]["aggregate_wis"]                  # doctest: +SKIP
    '83.11'
    """
    r = results
    taus = np.asarray(r.taus, dtype=float)
    models = list(r.models)
    num = _Numbering()
    scores = r.oof_scores
    wis_dec = decimals_for(scores["wis"].to_numpy(dtype=float))
    pair = _outer_pair(taus)
    ctx: dict[str, Any] = {
        "title": "Quantile aggregation report",
        "data_name": str(r.data_name),
        "response": str(r.response),
        "created": str(r.created),
        "levels": ", ".join(fmt_level(t) for t in taus),
    }
    ctx["key"] = _key_numbers(r, models, wis_dec, pair)

    # 1 data and formulas
    ctx["data_rows"] = _data_rows(r)
    na = [(str(c), int(v)) for c, v in dict(r.na.by_column).items()]
    ctx["na_table"] = _table(
        [("Column", False), ("Missing values", True)],
        [[_cell(c, "label"), _cell(v)] for c, v in na], "Missing values per column in the input data.",
        num.table(), note=f"{r.na.n_dropped} of {r.na.n_input} rows were dropped (missing value in a used column).",
    ) if na else None

    # 2 base models
    ctx["models_table"] = _table(
        [("Model", False), ("Learner", False), ("Formula", False)],
        [[_cell(m, "label"), _cell(r.learners.get(m, "—"), "mono"), _cell(r.formulas.get(m, r.formula), "mono")]
         for m in models],
        "Base models: learner and model formula.", num.table())
    pin_cols = [f"pinball_{fmt_level(t)}" for t in taus if f"pinball_{fmt_level(t)}" in scores.columns]
    rows, classes = _score_rows(scores, pin_cols, models)
    ctx["pinball_table"] = _table(
        [("Model", False)] + [(f"τ = {c.split('_', 1)[1]}", True) for c in pin_cols], rows,
        f"Out-of-fold pinball loss by level ({r.cv}-fold cross-fitting; lowest per level in bold).",
        num.table(), classes)

    ctx["fig_coef"] = _coef_figure(r, num)

    # 3 weights
    ctx["weights_table"] = _weights_table(r.weights, num.table())
    ctx["fig_weights"] = _svg_figure(
        plots.weights_heatmap(r.weights), f"Aggregation weights by model and level ({r.family} family, "
        f"{r.constraint} constraint).", num.figure(), "Heat map of aggregation weights")

    # 4 accuracy
    ctx["scores_table"] = _accuracy_table(
        scores, models, "Out-of-fold scores. WIS = dispersion + over- + under-prediction; lower is better. "
        "Coverage and width of central intervals; crossing = share of rows with crossed quantiles.", num.table())
    ctx["test_scores_table"] = None if r.test_scores is None else _accuracy_table(
        r.test_scores, models, "Scores on the held-out test data.", num.table())
    ctx["comparison_table"] = _comparison_table(scores, models, wis_dec, num.table())
    ctx["fig_wis"] = _svg_figure(plots.wis_decomposition(scores), "Out-of-fold WIS decomposed into dispersion, "
                                 "overprediction and underprediction.", num.figure(), "WIS decomposition bars")

    # 5 calibration
    ctx["coverage_table"] = _coverage_table(r.coverage, num.table())
    ctx["mondrian_table"] = _mondrian_table(r.calibration, num)
    ctx["conditional_table"], ctx["worst_slab"] = _conditional_table(r.conditional_coverage, num)
    ctx["guarantees"] = conformal_mod.guarantees(r.calibration, r.taus)
    ctx["fig_conditional"] = _conditional_figure(r, taus, pair, num)
    ctx["fig_reliability"] = _svg_figure(
        plots.reliability_diagram(r.y, {"aggregate": r.q_oof}, taus),
        "Reliability: share of outcomes at or below each out-of-fold quantile, with the 95% binomial band "
        "of a calibrated forecast.", num.figure(), "Reliability diagram")
    ctx["fig_pit"] = _svg_figure(
        plots.pit_histogram(r.y, r.q_oof, taus),
        "PIT histogram of the out-of-fold aggregate (bins between levels); flat means calibrated.", num.figure(),
        "PIT histogram")

    # 6 monotonicity
    ctx["monotone_table"] = _monotone_table(r.monotone, r.postprocess, len(r.y), num.table(), wis_dec)
    ctx["fig_crossing"] = _svg_figure(plots.crossing_plot(r.monotone),
                                      "Crossed rows and out-of-fold WIS before and after each post-processing step.",
                                      num.figure(), "Crossing counts and WIS by post-processing step")

    # 7 diagnostics
    ctx["diagnostics"] = [
        {"claim": str(d.claim), "source": str(d.source), "observed": str(d.observed),
         "verdict": {True: "held", False: "failed", None: "n/a"}[d.held]} for d in r.diagnostics]

    # 8 predictions
    ctx["fig_fan"] = _fan_figure(r, taus, num)
    ctx["fig_partial"] = _partial_figure(r, taus, num)

    # footer
    ctx["reproducibility"] = [
        ("Seed", str(r.seed)), ("Folds", str(r.cv)), ("Solver", f"{r.solver} ({r.weight_fit.status})"),
        ("Created", str(r.created)),
    ]
    ctx["versions"] = [(str(k), str(v)) for k, v in dict(r.versions).items()]
    return ctx


def _key_numbers(r, models: list[str], wis_dec: int, pair) -> dict[str, str]:
    scores = r.oof_scores
    best = str(scores.loc[models, "wis"].astype(float).idxmin())
    agg = float(scores.loc["aggregate", "wis"])
    key = {
        "aggregate_wis": fmt_num(agg, wis_dec),
        "best_model": best,
        "best_wis": fmt_num(float(scores.loc[best, "wis"]), wis_dec),
        "vs_best": fmt_signed_pct(agg / float(scores.loc[best, "wis"]) - 1),
        "crossing_after": fmt_pct(float(scores.loc["aggregate", "crossing_rate"])),
    }
    if pair is not None:
        pct = f"{round(100 * (r.taus[pair[1]] - r.taus[pair[0]]), 8):g}"
        key["interval"] = f"{pct}%"
        key["coverage"] = fmt_pct(float(scores.loc["aggregate", f"coverage_{pct}"]))
    return key


def _data_rows(r) -> list[tuple[str, str]]:
    calib = {None: "none", "cqr": "split CQR", "cqr-asymmetric": "split CQR (asymmetric)",
             "cv+": "nested CV+ (cross-fitted CQR, aggregation refitted without each fold)"}.get(r.conformal, str(r.conformal))
    rows = [
        ("Data", str(r.data_name)),
        ("Response", str(r.response)),
        ("Default formula", str(r.formula)),
        ("Rows", f"{r.na.n_used} used of {r.na.n_input} ({r.na.n_dropped} dropped for missing values)"),
        ("Training / calibration rows", f"{r.n_train} / {r.n_cal}"),
        ("Quantile levels", ", ".join(fmt_level(t) for t in r.taus)),
        ("Weights", f"{r.family} family, {r.constraint} constraint"
                    + (", non-crossing constraints" if r.noncrossing else "")),
        ("Post-processing", str(r.postprocess)),
        ("Conformal calibration", calib),
        ("Cross-fitting", f"{r.cv} folds, seed {r.seed}"),
    ]
    return rows


def _weights_table(weights: pd.DataFrame, number: int) -> dict:
    local = "coef" in weights.columns and "weight" not in weights.columns
    index, value = (["model", "basis"], "coef") if local else (["model"], "weight")
    wide = weights.pivot_table(index=index, columns="tau", values=value, sort=False)
    wide = wide.reindex(sorted(wide.columns), axis=1)
    rows = []
    for key, vals in wide.iterrows():
        label = " · ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        rows.append([_cell(label, "label")] + [_cell(format_weight(float(v), minus="−")) for v in vals])
    caption = ("Local weight coefficients per basis function and level." if local
               else "Aggregation weights per level (each column sums to one under the simplex constraint).")
    return _table([("Model", False)] + [(f"τ = {fmt_level(t)}", True) for t in wide.columns], rows, caption, number)


def _comparison_table(scores: pd.DataFrame, models: list[str], dec: int, number: int) -> dict:
    agg = float(scores.loc["aggregate", "wis"])
    best = str(scores.loc[models, "wis"].astype(float).idxmin())
    refs = [(f"best single model ({best})", best)]
    refs += [(f"{k} ensemble", k) for k in ("mean", "median") if k in scores.index]
    rows = []
    for label, key in refs:
        other = float(scores.loc[key, "wis"])
        change = agg / other - 1
        rows.append([_cell(label, "label"), _cell(fmt_num(other, dec)), _cell(fmt_num(agg, dec)),
                     _cell(fmt_signed_pct(change), "good" if change < 0 else "bad")])
    return _table([("Reference", False), ("Reference WIS", True), ("Aggregate WIS", True), ("Change", True)],
                  rows, "Out-of-fold WIS of the aggregate against the best single model and simple ensembles "
                  "(negative change = aggregate better).", number)


def _coverage_table(coverage: pd.DataFrame, number: int) -> dict:
    rows = []
    for _, c in coverage.iterrows():
        inside = bool(c["inside"])
        rows.append([_cell(c["set"], "label"), _cell(fmt_pct(float(c["nominal"]), 0)),
                     _cell(fmt_pct(float(c["observed"]))),
                     _cell(f"{fmt_pct(float(c['band_low']))} – {fmt_pct(float(c['band_high']))}"),
                     _cell(int(c["n"])), _cell("yes" if inside else "no", "good" if inside else "bad")])
    return _table([("Data", False), ("Nominal", True), ("Observed", True), ("95% band", True), ("n", True),
                   ("Inside", True)], rows,
                  "Coverage of central intervals with the 95% band expected for the nominal level.", number)


def fmt_change(change: float, scale: float) -> str:
    """A WIS change with two significant digits and its sign; ``0`` for none (below 1e-9 of the
    WIS ``scale``: rounding, as a sort swapping equal values).

    Examples
    --------
    >>> fmt_change(-0.000312, 45.9), fmt_change(4e-15, 45.9), fmt_change(0.25, 45.9)
    ('−0.00031', '0', '+0.25')
    """
    if not np.isfinite(change):
        return "—"
    if abs(change) <= 1e-9 * abs(scale):
        return "0"
    return f"{change:+,.{decimals_for([change], significant=2)}f}".replace("-", "−")


def _mondrian_table(calibration: Any, num: _Numbering) -> dict | None:
    """Per-group corrections and guaranteed bands of a Mondrian calibration (None otherwise)."""
    if getattr(calibration, "column", None) is None:
        return None
    t = calibration.table()
    rows = [[_cell(str(v), "label" if j == 0 else "") for j, v in enumerate(row)] for row in t.itertuples(index=False)]
    return _table([(str(c), j > 0) for j, c in enumerate(t.columns)], rows,
                  f"Group-conditional (Mondrian) calibration by {calibration.column!r}: each group's correction "
                  "comes from its own calibration rows, so coverage is guaranteed within each group.", num.table())


def _conditional_table(table: pd.DataFrame | None, num: _Numbering) -> tuple[dict | None, str]:
    """Test coverage in bins of the top features and of the predicted width, and the worst-slab sentence."""
    if table is None or not len(table):
        return None, ""
    rows, classes = [], []
    for _, c in table.iterrows():
        inside = bool(c["inside"])
        rows.append([_cell(c["variable"], "label"), _cell(c["bin"]), _cell(int(c["n"])),
                     _cell(fmt_pct(float(c["observed"]))),
                     _cell(f"{fmt_pct(float(c['band_low']))} – {fmt_pct(float(c['band_high']))}"),
                     _cell("yes" if inside else "no", "good" if inside else "bad")])
        classes.append("highlight" if c["worst"] else "")
    nominal = float(table["nominal"].iloc[0])
    w = table[table["worst"]].iloc[0]
    worst = (f"Worst slab: {w['variable']} in {w['bin']}, coverage {fmt_pct(float(w['observed']))} on "
             f"{int(w['n'])} test rows (band {fmt_pct(float(w['band_low']))} – {fmt_pct(float(w['band_high']))}, "
             f"{'inside' if w['inside'] else 'outside'}).")
    return _table([("Variable", False), ("Bin", False), ("n", True), ("Observed", True), ("95% band", True),
                   ("Inside", True)], rows,
                  f"Conditional coverage of the {nominal:.0%} interval on the test data, in equal-count bins of the "
                  "features the interval width varies with most and of the predicted width; the band is where a "
                  "bin's coverage should fall if coverage held within it.", num.table(), row_classes=classes), worst


def _monotone_table(monotone: pd.DataFrame, chosen: str, n: int, number: int, dec: int) -> dict:
    """The post-processing steps; WIS with the decimals ``dec`` of every WIS in the report."""
    scale = float(np.max(np.abs(monotone["wis_before"].to_numpy(float)), initial=0.0))
    rows, classes = [], []
    for _, m in monotone.iterrows():
        change = float(m["wis_after"]) - float(m["wis_before"])
        rows.append([_cell(m["step"], "label"), _cell(fmt_num(float(m["wis_before"]), dec)),
                     _cell(fmt_num(float(m["wis_after"]), dec)),
                     _cell(fmt_change(change, scale), "bad" if change > 1e-9 * scale else ""),
                     _cell(f"{int(m['rows_crossing_before'])} / {n}"), _cell(f"{int(m['rows_crossing_after'])} / {n}")])
        classes.append("highlight" if str(m["step"]) == str(chosen) else "")
    return _table([("Step", False), ("WIS before", True), ("WIS after", True), ("Change", True),
                   ("Crossed rows before", True), ("Crossed rows after", True)], rows,
                  f"Monotone post-processing of the out-of-fold aggregate (the fit uses “{chosen}”, highlighted).",
                  number, classes)


def _coef_figure(r, num: _Numbering) -> dict | None:
    """Coefficients across levels of the first linear base model, when the fit has one.

    Needs ``QaggResults.plot`` (beyond the attribute contract); a stand-in without it, or a
    fit without a LinearQR model, gets no figure.
    """
    if not callable(getattr(r, "plot", None)):
        return None
    try:
        # "nid" as the caption says: the rank-inversion bands (R's default below 1,001 rows)
        # cost seconds per level and would dominate the report's time. R's "non-positive fis"
        # warnings belong to an rq() a user runs, not to a figure of the report.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonPositiveFisWarning)
            fig = r.plot("coef", se="nid", ncols=3)  # three panels a row: wide enough to read
    except QaggError:
        return None
    return _svg_figure(fig, "Coefficients of the linear base model across levels (refitted on the training rows) "
                       "with 90% confidence bands (R's summary.rq, se = \"nid\") and the least-squares line and band, "
                       "as R's plot(summary(rqs)).", num.figure(),
                       "Coefficients across quantile levels")


def _median_index(taus: np.ndarray) -> int:
    return int(np.argmin(np.abs(taus - 0.5)))


def _fan_figure(r, taus: np.ndarray, num: _Numbering) -> dict:
    name, x = _single_feature(r)
    fan = plots.fan_chart(x, r.q_oof, taus, y=r.y, xlabel=name, ylabel=str(r.response))
    if name is None:
        level = fmt_level(taus[_median_index(taus)])
        window = plots.fan_window(len(r.y), by_prediction=True)
        along = (f"rows ordered by their predicted {level} quantile (the model has several predictors, so no "
                 f"single one is an axis); interval edges are running medians over {window} neighbouring rows")
    else:
        along = f"along {name}"
    return _png_figure(fan, "Out-of-fold aggregated quantiles (shaded central intervals, median line) and "
                       f"observations, {along}.", num.figure(), "Fan chart of predicted quantiles")


def _typical_row(frame: pd.DataFrame) -> pd.DataFrame:
    """One row of observed values: the lower median of each numeric column, the most frequent
    value of any other (observed values, so a number used as a category stays a known level)."""
    row = {}
    for c in frame.columns:
        v = frame[c].dropna()
        if v.empty:
            row[c] = frame[c].iloc[0]
        elif pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v):
            row[c] = np.sort(v.to_numpy())[(len(v) - 1) // 2]
        else:
            row[c] = v.mode().iloc[0]
    return pd.DataFrame([row]).astype(frame.dtypes.to_dict())


def _grid(values: pd.Series, points: int = 41) -> np.ndarray:
    """The central 95 % of a predictor's training values: its observed values when few, else a grid."""
    v = values.dropna().to_numpy(dtype=float)
    lo, hi = np.quantile(v, [0.025, 0.975])
    seen = np.unique(v[(v >= lo) & (v <= hi)])
    return seen if seen.size <= points else np.linspace(lo, hi, points)


def _partial_figure(r, taus: np.ndarray, num: _Numbering, panels: int = 3) -> dict | None:
    """Partial curves of the fitted aggregate for a model of several predictors (else None).

    Needs ``QaggResults.predict``; the ``panels`` numeric predictors that move the predicted
    median most are shown. A predictor the fit cannot predict along (say, a number used as a
    category, whose grid points are unseen levels) is left out.
    """
    frame = r.frame
    if not callable(getattr(r, "predict", None)) or not isinstance(frame, pd.DataFrame):
        return None
    used = formula_columns(r.formula, frame.columns, r.response)
    numeric = [c for c in used if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    if len(used) < 2 or not numeric:
        return None  # one predictor: the fan chart already draws the model along it
    base = _typical_row(frame)
    mid = _median_index(taus)
    blocks = {}
    for c in numeric:
        grid = _grid(frame[c])
        rows = base.loc[base.index.repeat(grid.size)].reset_index(drop=True)
        rows[c] = grid.astype(frame[c].dtype) if pd.api.types.is_integer_dtype(frame[c]) else grid
        blocks[c] = rows
    # one prediction for all predictors (a design and a model pass each cost more than the
    # rows); if it fails, each predictor alone, leaving out those that fail
    try:
        q_all = r.predict(pd.concat(blocks.values(), ignore_index=True)).to_numpy(dtype=float)
        ends = np.cumsum([len(rows) for rows in blocks.values()])
        predicted = dict(zip(blocks, np.split(q_all, ends[:-1])))
    except QaggError:
        predicted = {}
        for c, rows in blocks.items():
            try:
                predicted[c] = r.predict(rows).to_numpy(dtype=float)
            except QaggError:
                continue
    curves = {c: (blocks[c][c].to_numpy(dtype=float), q) for c, q in predicted.items() if np.isfinite(q).all()}
    if not curves:
        return None
    effect = {c: float(np.ptp(q[:, mid])) for c, (_, q) in curves.items()}
    chosen = sorted(curves, key=lambda c: -effect[c])[:panels]
    fig = plots.partial_curves({c: curves[c] for c in chosen}, taus, ylabel=str(r.response))
    held = ("the other predictors held at their median (numbers) or most frequent value (categories)")
    calibrated = " (conformally calibrated, as predict() returns them)" if r.conformal else ""
    return _svg_figure(fig, f"Predicted quantiles of the fitted aggregate{calibrated} as one predictor varies over "
                       f"the central 95% of its training values, {held}; the {len(chosen)} of {len(numeric)} numeric "
                       "predictors that move the predicted median most.", num.figure(),
                       "Partial curves of predicted quantiles")


def _conditional_figure(r, taus: np.ndarray, pair, num: _Numbering) -> dict | None:
    if pair is None:
        return None
    lo, hi = pair
    name, x = _single_feature(r)
    if x is None:
        mid = _median_index(taus)
        name, x = f"predicted {fmt_level(taus[mid])} quantile", r.q_oof[:, mid]
    nominal = float(taus[hi] - taus[lo])
    fig = plots.conditional_coverage(x, r.y, r.q_oof[:, lo], r.q_oof[:, hi], bins=8, nominal=nominal, xlabel=name)
    return _svg_figure(fig, f"Conditional coverage of the {nominal:.0%} interval in eight equal-count bins of "
                       f"{name}, with 95% Wilson intervals.", num.figure(), "Conditional coverage by bin")


# --------------------------------------------------------------------------- rendering
def _environment(template_dir: str | os.PathLike | None) -> jinja2.Environment:
    package = files("qaggstats.templates")

    def from_package(name: str) -> str | None:
        resource = package.joinpath(name)
        return resource.read_text(encoding="utf-8") if resource.is_file() else None

    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        if not Path(template_dir).is_dir():
            raise SaveError(f"template directory {template_dir} does not exist")
        loaders.append(jinja2.FileSystemLoader(os.fspath(template_dir)))
    # A user's directory may override any single file; the rest come from the package.
    loaders.append(jinja2.FunctionLoader(from_package))
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(context: dict[str, Any], template_dir: str | os.PathLike | None = None) -> str:
    """Render the report context to one self-contained HTML page.

    Parameters
    ----------
    context : dict
        From :func:`build_context`.
    template_dir : path, optional
        A directory whose ``report.html`` / ``report.css`` replace the packaged ones.

    Returns
    -------
    str
        HTML with inline CSS and figures, no scripts and no network references.

    Examples
    --------
    >>> html = render_html(build_context(fit))       # doctest: +SKIP
    >>> "<script" in html                            # doctest: +SKIP
    False
    """
    return _environment(template_dir).get_template(_TEMPLATE).render(**context)


def _report_format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in ("html", "pdf"):
            raise SaveError(f"cannot write report {path}: format must be 'html' or 'pdf', got {format!r}")
        return format
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise SaveError(f"cannot write report {path}: unknown suffix {path.suffix!r}; use .html or .pdf "
                        "(or pass format=)") from None


def _pdf_context(context: dict[str, Any]) -> dict[str, Any]:
    """The context with each inline SVG figure as an SVG image (see :func:`plots.svg_image_tag`)."""
    def image(value: Any) -> Any:
        if isinstance(value, dict) and value.get("svg") is not None and "caption" in value:
            return {**value, "svg": Markup(plots.svg_image_tag(str(value["svg"]), value["alt"]))}
        return value
    return {key: image(value) for key, value in context.items()}


def html_to_pdf(html: str) -> bytes:
    """PDF bytes of a self-contained HTML page, via WeasyPrint (offline, CSS paged media)."""
    import weasyprint  # imported here: only PDF output needs it, and it loads slowly

    return weasyprint.HTML(string=html).write_pdf()


def _write(path: Path, payload: bytes) -> None:
    """Write a report atomically; a missing or unwritable directory names the report."""
    try:
        atomic_write(path, payload)
    except SaveError as err:
        raise SaveError(str(err).replace("cannot write ", "cannot write report ", 1)) from err


def write_reports(results, paths: Sequence[str | os.PathLike], template_dir: str | os.PathLike | None = None
                  ) -> list[Path]:
    """Write the report in several formats, building its context (scores, figures) once.

    Parameters
    ----------
    results : QaggResults
    paths : sequence of path
        Output files; each suffix (``.html`` or ``.pdf``) picks that file's format. The
        context (scores, figures) is built once and shared by every file.
    template_dir : path, optional
        Directory overriding ``report.html`` and/or ``report.css``.

    Returns
    -------
    list of pathlib.Path
        The paths written, in the order given.

    Raises
    ------
    SaveError
        Naming the path, when a suffix is unknown (checked before anything is built or
        written), its directory is missing or not writable, or it is a directory.

    Examples
    --------
    >>> write_reports(fit, ["fit.html", "fit.pdf"])  # doctest: +SKIP
    [PosixPath('fit.html'), PosixPath('fit.pdf')]
    """
    targets = [Path(p) for p in paths]
    kinds = [_report_format(p, None) for p in targets]
    if not targets:
        return []
    context = build_context(results)
    html = render_html(context, template_dir)
    pdf = html_to_pdf(render_html(_pdf_context(context), template_dir)) if "pdf" in kinds else b""
    for path, kind in zip(targets, kinds):
        _write(path, pdf if kind == "pdf" else html.encode("utf-8"))
    return targets


def write_report(results, path: str | os.PathLike, template_dir: str | os.PathLike | None = None,
                 format: str | None = None) -> Path:
    """Write the report of a fitted aggregate to HTML or PDF.

    Parameters
    ----------
    results : QaggResults
    path : path
        Output file; ``.html`` or ``.pdf`` picks the format unless ``format`` is given.
    template_dir : path, optional
        Directory overriding ``report.html`` and/or ``report.css``.
    format : {"html", "pdf"}, optional

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    SaveError
        Naming the path, when its directory is missing or not writable, the path is a
        directory, or the format is unknown. No partial file is left behind.

    See Also
    --------
    write_reports : HTML and PDF from one context.

    Examples
    --------
    >>> write_report(fit, "engel.html")              # doctest: +SKIP
    PosixPath('engel.html')
    """
    path = Path(path)
    kind = _report_format(path, format)
    context = build_context(results)
    if kind == "pdf":
        payload = html_to_pdf(render_html(_pdf_context(context), template_dir))
    else:
        payload = render_html(context, template_dir).encode("utf-8")
    _write(path, payload)
    return path
