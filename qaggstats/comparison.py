"""One table over several fits (``qa.compare``), like pyfixest's ``etable`` or R's ``texreg``.

Linear quantile regressions (:func:`qaggstats.rq`) contribute one column per level: the
coefficients with significance stars and their standard errors (or rank-inversion intervals)
underneath, then rows used, standard-error method, objective and Koenker–Machado R1.
Aggregations (:func:`qaggstats.qagg`) contribute one column each: weight family, the largest
mean weights, rows, and their scores on test data (WIS, coverage and width of each central
interval) when ``test=`` was given to ``qagg`` or to :func:`compare`. Every column ends with
its fitting time.

(The module is ``comparison``, not ``compare``: importing a submodule sets the package
attribute of its name, which would hide the function ``qa.compare``.)

Examples
--------
>>> import qaggstats as qa
>>> engel = qa.datasets.load("engel")
>>> a = qa.rq("foodexp ~ income", engel, tau=[0.25, 0.75], se="nid")
>>> b = qa.rq("foodexp ~ income + I(income^2)", engel, tau=0.5, se="nid")
>>> table = compare(a, b, names=["linear", "quadratic"])
>>> list(table.table.columns)
['linear q0.25', 'linear q0.75', 'quadratic q0.5']
>>> table.table.loc["income", "linear q0.25"]
'0.4741***'
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from .errors import DataError
from .quantreg import RQResults
from .results import QaggResults, fmt_sig
from .scoring import score_table
from .summary import Summary, SummaryMixin

__all__ = ["compare", "Comparison"]

# R's significance codes
_STARS = ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."))
_TIDY = ["model", "kind", "tau", "term", "estimate", "std_error", "p_value", "lower", "upper", "text"]


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return next((s for cut, s in _STARS if p < cut), "")


def _num(value: float, digits: int) -> str:
    return fmt_sig(float(value), digits)


def _scored_rq(fit: RQResults, test: pd.DataFrame) -> pd.Series:
    """Scores of an rq fit's levels on ``test`` (rows with a missing value left out)."""
    order = np.argsort(fit.taus)
    q = fit.predict(test).to_numpy()[:, order]
    y = np.asarray(fit.spec.response_of(test), dtype=np.float64)
    ok = np.all(np.isfinite(q), axis=1) & np.isfinite(y)
    if not ok.any():
        raise DataError(f"compare: no row of test has every value {fit.spec.expanded!r} needs")
    row = score_table(y[ok], {"rq": q[ok]}, fit.taus[order]).iloc[0]
    row["n"] = int(ok.sum())
    return row


class Comparison(SummaryMixin):
    """Several fits side by side (returned by :func:`compare`).

    Attributes
    ----------
    table : DataFrame
        The displayed table (strings): coefficient rows (each followed by its standard error
        in parentheses, or ``[lower, upper]`` for rank intervals), then statistics rows; one
        column per rq level and per aggregation.
    names : list of str
        The fits' names, in the order given.

    Methods ``to_frame()`` (tidy numbers), ``summary()``, and printing (text in a console,
    HTML in a notebook).
    """

    def __init__(self, table: pd.DataFrame, tidy: pd.DataFrame, names: list[str], notes: list[str]) -> None:
        self.table = table
        self.names = names
        self._tidy = tidy
        self._notes = notes

    def to_frame(self) -> pd.DataFrame:
        """Tidy numbers: one row per column and term or statistic.

        Columns ``model`` (column label), ``kind`` ("rq" or "qagg"), ``tau`` (NaN for a whole
        aggregation), ``term`` (coefficient or statistic), ``estimate`` (its value), ``std_error``,
        ``p_value``, ``lower``, ``upper`` and ``text`` (non-numeric statistics: family, weights).
        """
        return self._tidy.copy()

    def summary(self) -> Summary:
        """The table with R's significance codes as the footer."""
        width = max(78, max((len(line) for line in self.table.to_string().splitlines()), default=0))
        footer = ["Signif. codes: 0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1",
                  "Standard errors in parentheses; [lower, upper]: rank-inversion intervals (se='rank')",
                  *self._notes]
        return Summary([("Fits", ", ".join(self.names))], [("", self.table)], footer,
                       title="Model comparison", width=width)

    def __repr__(self) -> str:
        return self.summary().as_text()


def compare(*fits: Any, names: Optional[Sequence[str]] = None, test: Optional[pd.DataFrame] = None,
            digits: int = 4) -> Comparison:
    """Compare fits of :func:`qaggstats.rq` and :func:`qaggstats.qagg` in one table.

    Parameters
    ----------
    *fits : RQResults or QaggResults
        The fits, or one dict ``{name: fit}``.
    names : sequence of str, optional
        Column names (default ``(1)``, ``(2)``, ...; rq levels add ``q<tau>``).
    test : DataFrame, optional
        Data to score every fit on (WIS, coverage and width of each central interval); without
        it an aggregation shows the scores on its own ``qagg(test=)`` data, if any.
    digits : int
        Significant digits of the numbers shown.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import qaggstats as qa
    >>> fit = qa.rq("foodexp ~ income", qa.datasets.load("engel"), tau=0.5, se="nid")
    >>> compare(fit).table.loc[["(Intercept)", "R1 (Koenker-Machado)"]].iloc[:, 0].tolist()
    ['81.48***', '0.6206']
    """
    if len(fits) == 1 and isinstance(fits[0], dict):
        if names is not None:
            raise DataError("compare: give names either as the dict's keys or as names=, not both")
        names, fits = list(fits[0]), tuple(fits[0].values())
    if not fits:
        raise DataError("compare: give at least one fit, e.g. compare(fit_a, fit_b)")
    for k, f in enumerate(fits):
        if not isinstance(f, (RQResults, QaggResults)):
            raise DataError(f"compare: fit {k + 1} is a {type(f).__name__}; give results of qa.rq or qa.qagg")
    names = [f"({k + 1})" for k in range(len(fits))] if names is None else [str(n) for n in names]
    if len(names) != len(fits) or len(set(names)) != len(names):
        raise DataError(f"compare: names must be {len(fits)} distinct labels, got {names!r}")
    if test is not None and not isinstance(test, pd.DataFrame):
        raise DataError(f"compare: test must be a pandas DataFrame, got {type(test).__name__}")
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 1:
        raise DataError(f"compare: digits must be a positive integer, got {digits!r}")
    tidy: list[dict] = []
    notes: list[str] = []
    for name, f in zip(names, fits):
        if isinstance(f, RQResults):
            _rq_rows(f, name, test, tidy)
            if test is not None and f.taus.size > 1:
                notes.append(f"{name}: the test scores are of its {f.taus.size} levels together, shown in each column")
        else:
            _qagg_rows(f, name, test, tidy, notes)
    frame = pd.DataFrame(tidy, columns=_TIDY)
    return Comparison(_display(frame, digits), frame, names, notes)


def _score_rows(scores: pd.Series, label: str, tau: float, source: str, tidy: list[dict]) -> None:
    base = {"model": label, "kind": None, "tau": tau, "std_error": np.nan, "p_value": np.nan,
            "lower": np.nan, "upper": np.nan, "text": None}
    tidy.append({**base, "term": f"{source} rows", "estimate": float(scores["n"])})
    tidy.append({**base, "term": f"{source} WIS", "estimate": float(scores["wis"])})
    for col in scores.index:
        if col.startswith("coverage_"):
            pct = col.split("_", 1)[1]
            tidy.append({**base, "term": f"{source} coverage {pct}%", "estimate": float(scores[col])})
            tidy.append({**base, "term": f"{source} width {pct}%", "estimate": float(scores[f"width_{pct}"])})


def _rq_rows(f: RQResults, name: str, test: Optional[pd.DataFrame], tidy: list[dict]) -> None:
    r1 = f.r1
    ci = f.coef
    scores = None if test is None else _scored_rq(f, test)
    for j, (q, tau) in enumerate(zip(f.params.columns, f.taus)):
        label = f"{name} {q}"
        rows = ci[ci.tau == tau].set_index("term")
        for term in f.params.index:
            c = rows.loc[term]
            tidy.append({"model": label, "kind": "rq", "tau": float(tau), "term": term,
                         "estimate": float(c.estimate), "std_error": float(c.std_error),
                         "p_value": float(c.p_value), "lower": float(c.lower), "upper": float(c.upper),
                         "text": None})
        base = {"model": label, "kind": "rq", "tau": float(tau), "std_error": np.nan, "p_value": np.nan,
                "lower": np.nan, "upper": np.nan}
        tidy.append({**base, "term": "Rows used", "estimate": float(f.n), "text": None})
        tidy.append({**base, "term": "Std. errors", "estimate": np.nan, "text": f.se})
        tidy.append({**base, "term": "Objective", "estimate": float(f.objective[j]), "text": None})
        tidy.append({**base, "term": "R1 (Koenker-Machado)", "estimate": float(r1.iloc[j]), "text": None})
        if scores is not None:
            start = len(tidy)
            _score_rows(scores, label, float(tau), "Test", tidy)
            for row in tidy[start:]:
                row["kind"] = "rq"
        tidy.append({**base, "term": "Seconds", "estimate": float(f.seconds), "text": None})


def _qagg_rows(f: QaggResults, name: str, test: Optional[pd.DataFrame], tidy: list[dict],
               notes: list[str]) -> None:
    base = {"model": name, "kind": "qagg", "tau": np.nan, "std_error": np.nan, "p_value": np.nan,
            "lower": np.nan, "upper": np.nan}
    tidy.append({**base, "term": "Levels", "estimate": float(len(f.taus)),
                 "text": ", ".join(f"{t:g}" for t in f.taus)})
    tidy.append({**base, "term": "Rows used", "estimate": float(f.n_train + f.n_cal), "text": None})
    family = f.family if f.family == f.family_requested else f"{f.family} (auto)"
    tidy.append({**base, "term": "Weight family", "estimate": np.nan, "text": family})
    w = f.weights
    if "weight" in w.columns and "model" in w.columns:
        mean = w.groupby("model", sort=False)["weight"].mean().sort_values(ascending=False)
        top = ", ".join(f"{m} {fmt_sig(v, 2)}" for m, v in mean.head(3).items() if v > 0)
        tidy.append({**base, "term": "Top weights (mean)", "estimate": float(mean.iloc[0]), "text": top})
    else:
        tidy.append({**base, "term": "Top weights (mean)", "estimate": np.nan,
                     "text": f"{f.family}: coefficients per basis function"})
    scores, source = None, "Test"
    if test is not None:
        table = f.scores(test)
        scores = table.loc["aggregate"].copy()
        scores["n"] = len(test) - int(table.attrs.get("n_dropped", 0))
    elif f.test_scores is not None:
        scores = f.test_scores.loc["aggregate"].copy()
        scores["n"] = f.n_test
    else:
        notes.append(f"{name}: no test data (pass test= to qagg or to compare for test scores)")
    if scores is not None:
        start = len(tidy)
        _score_rows(scores, name, np.nan, source, tidy)
        for row in tidy[start:]:
            row["kind"] = "qagg"
    tidy.append({**base, "term": "Seconds", "estimate": float(sum(f.timings.values())), "text": None})


_ORDER = ["Levels", "Rows used", "Std. errors", "Objective", "R1 (Koenker-Machado)", "Weight family",
          "Top weights (mean)", "Test rows", "Test WIS"]


def _stat_order(term: str) -> tuple:
    """Statistics in a fixed order: fit description, test scores (widest interval first), time."""
    if term in _ORDER:
        return (_ORDER.index(term), 0, "")
    if term == "Seconds":
        return (len(_ORDER) + 1, 0, "")
    pct = float(term.rsplit(" ", 1)[-1].rstrip("%"))
    return (len(_ORDER), -pct, term)


def _display(frame: pd.DataFrame, digits: int) -> pd.DataFrame:
    """The wide table of strings: coefficients (estimate + stars, then the SE or interval row
    labelled ""), then statistics in first-seen order."""
    columns = list(dict.fromkeys(frame.model))
    coef = frame[frame.kind.eq("rq") & (frame.p_value.notna() | frame.lower.notna() | frame.std_error.notna())]
    terms = list(dict.fromkeys(coef.term))
    stats = frame.drop(coef.index)
    stat_terms = sorted(dict.fromkeys(stats.term), key=_stat_order)
    rows: list[tuple[str, dict]] = []
    for term in terms:
        top, under = {}, {}
        for r in coef[coef.term == term].itertuples():
            top[r.model] = _num(r.estimate, digits) + _stars(r.p_value)
            under[r.model] = (f"({_num(r.std_error, digits)})" if np.isfinite(r.std_error)
                              else f"[{_num(r.lower, digits)}, {_num(r.upper, digits)}]")
        rows += [(term, top), ("", under)]
    for term in stat_terms:
        cells = {}
        for r in stats[stats.term == term].itertuples():
            if isinstance(r.text, str):
                cells[r.model] = str(r.text)
            elif term.endswith("rows") or term == "Rows used":
                cells[r.model] = f"{int(r.estimate):,}"
            elif term == "Seconds":
                cells[r.model] = f"{r.estimate:.2f}"
            else:
                cells[r.model] = _num(r.estimate, digits)
        rows.append((term, cells))
    return pd.DataFrame([[cells.get(c, "") for c in columns] for _, cells in rows],
                        index=[label for label, _ in rows], columns=columns)
