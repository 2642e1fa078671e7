"""The fitted aggregate: summary, prediction, scores, diagnostics, plots, reports, save/load.

:class:`QaggResults` is built by :func:`qaggstats.qagg`; its attributes are listed in
``docs/ARCHITECTURE.md`` and are the only thing plots and reports read.

Examples
--------
>>> import qaggstats as qa
>>> df = qa.datasets.load("engel")
>>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
...               quantiles=[0.1, 0.5, 0.9], cv=3)
>>> list(fit.predict(df.head(1)).columns)
['q0.1', 'q0.5', 'q0.9']
"""
from __future__ import annotations

import datetime as _dt
import html
import io
import os
import pickle
import platform
import tempfile
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from . import scoring
from ._version import __version__
from .distributed import is_dask_dataframe, predict_dask
from .errors import DataError, SaveError
from .formula import design_newdata
from .monotone import monotone_effect
from .monotone import postprocess as monotone_postprocess
from .basis import apply_basis
from .pipeline import combine, sort_base
from .quantreg import quantile_column
from .summary import SummaryMixin

__all__ = ["QaggResults", "Diagnostic", "load", "quantile_column"]

_FILE_MAGIC = "qaggstats-fit"


@dataclass(frozen=True)
class Diagnostic:
    """A theoretical claim, its source, what was observed on this fit, and whether it held."""

    claim: str
    source: str
    observed: str
    held: Optional[bool]

    @property
    def verdict(self) -> str:
        return {True: "held", False: "failed", None: "n/a"}[self.held]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "qaggstats": __version__}
    for pkg in ("numpy", "scipy", "pandas", "statsmodels", "patsy", "cvxpy", "clarabel",
                "highspy", "scikit-learn", "quantile-forest", "matplotlib", "jinja2", "weasyprint"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _describe_learner(obj: Any) -> str:
    params = getattr(obj, "get_params", None)
    if callable(params):
        try:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params().items()) if k != "formula")
            return f"{type(obj).__name__}({shown})"
        except TypeError:
            pass
    return repr(obj) if type(obj).__repr__ is not object.__repr__ else type(obj).__name__


class QaggSummary:
    """Text and HTML rendering of a :class:`QaggResults` (``print(fit.summary())``)."""

    def __init__(self, results: "QaggResults") -> None:
        self.results = results

    def _blocks(self) -> list[tuple[str, Any]]:
        r = self.results
        calib = "none"
        if r.conformal in ("cqr", "cqr-asymmetric"):
            calib = f"{r.conformal} (n_cal = {r.n_cal})"
        elif r.conformal == "cv+":
            calib = f"cv+ ({r.cv} folds)"
        header = [
            ("Data", r.data_name), ("Response", r.response),
            ("Rows used", f"{r.na.n_used} of {r.na.n_input} (dropped {r.na.n_dropped})"),
            ("Training / calibration", f"{r.n_train} / {r.n_cal}"),
            ("Levels", ", ".join(f"{t:g}" for t in r.taus)),
            ("Weight family", r.family), ("Constraint", r.constraint + (", non-crossing" if r.noncrossing else "")),
            ("Post-processing", r.postprocess), ("Conformal", calib),
            ("Folds / seed", f"{r.cv} / {r.seed}"),
            ("Solver", f"{r.weight_fit.solver} ({r.weight_fit.status}, {r.weight_fit.seconds:.2f} s)"),
        ]
        if r.na.n_dropped:
            header.append(("NA by column", ", ".join(f"{k}: {v}" for k, v in r.na.by_column.items() if v)))
        models = pd.DataFrame(
            {"learner": [r.learners[m] for m in r.models], "formula": [r.formulas[m] for m in r.models]},
            index=pd.Index(r.models, name="model"),
        )
        if r.family == "local":
            weights = r.weights.pivot_table(index=["model", "basis"], columns="tau", values="coef", sort=False)
        elif "model" in r.weights and "weight" in r.weights:
            weights = r.weights.pivot_table(index="model", columns="tau", values="weight", sort=False)
        else:
            weights = r.weights
        score_cols = [c for c in r.oof_scores.columns if c in ("wis", "dispersion", "overprediction", "underprediction", "crossing_rate") or c.startswith("coverage_")]
        short = {"wis": "WIS", "dispersion": "disp", "overprediction": "over",
                 "underprediction": "under", "crossing_rate": "crossing"}

        def scores(table: pd.DataFrame) -> pd.DataFrame:
            # short headers keep the table within 78 columns
            return table[score_cols].rename(columns=lambda c: short.get(c, c.replace("coverage_", "cov")))

        blocks: list[tuple[str, Any]] = [
            ("header", header), ("Base models", models), ("Weights", weights),
            ("Out-of-fold scores", scores(r.oof_scores)),
        ]
        if r.test_scores is not None:
            blocks.append(("Test scores", scores(r.test_scores)))
        blocks.append(("Monotone post-processing (out-of-fold)", r.monotone))
        if len(r.coverage):
            blocks.append(("Coverage", r.coverage))
        blocks.append(("Diagnostics", [f"[{d.verdict}] {d.claim} ({d.source}): {d.observed}" for d in r.diagnostics]))
        if r.notes:
            blocks.append(("Notes", list(r.notes)))
        return blocks

    def as_text(self) -> str:
        width = 78
        lines = ["Quantile aggregation results".center(width), "=" * width]
        for title, body in self._blocks():
            if title == "header":
                lines += [f"{k + ':':<24}{v}" for k, v in body]
                continue
            lines += ["-" * width, title]
            if title == "Base models":  # long learner reprs and formulas: wrapped, not a wide table
                for name, row in body.iterrows():
                    lines += textwrap.wrap(f"{name}: {row['learner']}", width, subsequent_indent="    ")
                    lines += textwrap.wrap(f"formula: {row['formula']}", width, initial_indent="    ",
                                           subsequent_indent="      ")
            elif isinstance(body, pd.DataFrame):
                with pd.option_context("display.width", width, "display.max_columns", 50,
                                       "display.float_format", lambda v: f"{v:.4g}"):
                    lines.append(body.to_string(index=not isinstance(body.index, pd.RangeIndex)))
            else:
                for line in body:
                    lines += textwrap.wrap(line, width, initial_indent="  ", subsequent_indent="      ")
        lines.append("=" * width)
        return "\n".join(lines)

    def as_html(self) -> str:
        parts = ['<div class="qagg-summary"><h4>Quantile aggregation results</h4>']
        for title, body in self._blocks():
            if title == "header":
                rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in body)
                parts.append(f"<table>{rows}</table>")
            elif isinstance(body, pd.DataFrame):
                parts.append(f"<h5>{html.escape(title)}</h5>" + body.to_html(float_format=lambda v: f"{v:.4g}", escape=True))
            else:
                items = "".join(f"<li>{html.escape(line)}</li>" for line in body)
                parts.append(f"<h5>{html.escape(title)}</h5><ul>{items}</ul>")
        parts.append("</div>")
        return "".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.as_html()


class QaggResults(SummaryMixin):
    """A fitted quantile aggregate. Build it with :func:`qaggstats.qagg`.

    See ``docs/ARCHITECTURE.md`` for the attributes. The main methods are
    :meth:`summary`, :meth:`predict`, :meth:`scores`, :meth:`plot`, :meth:`report` and
    :meth:`save`.
    """

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pipeline(cls, *, base, weight_fit, q_oof_raw, q_oof, basis_spec, basis_state,
                      calibration, timings, settings, weight_fit_rows=None) -> "QaggResults":
        """Assemble results from the pipeline's stages (see :func:`qaggstats.pipeline.fit_aggregate`)."""
        self = cls.__new__(cls)
        cf = base.crossfit
        self._base = base
        self.formula = base.formula
        self.models = list(cf.models)
        self.formulas = {m: base.frames.specs[m].expanded for m in self.models}  # "y ~ ." spelt out
        self.data_name = base.data_name or "data"
        self.response = base.frames.specs[self.models[0]].response
        self.taus = np.asarray(base.taus, dtype=float)
        self.na = base.frames.na
        self.notes = list(base.notes) + list(base.frames.notes)
        for name, why in cf.dropped.items():
            self.notes.append(f"learner {name!r} was dropped: {why}")
        if weight_fit_rows is not None:
            self.notes.append(f"weights fitted on a response-stratified subsample of {weight_fit_rows:,} "
                              f"of the {base.split.train.size:,} training rows (weight_rows)")
        self.learners = {m: _describe_learner(base.learners[m]) for m in self.models}
        self.n_train = int(base.split.train.size)
        self.n_cal = int(base.split.cal.size)
        self.conformal, self.cal_size, self.cv, self.seed, self.n_jobs = (
            base.conformal, base.cal_size, base.cv, base.seed, base.n_jobs)
        self._settings = dict(settings)
        self.family = settings["family"]
        self.constraint = settings["constraint"]
        self.noncrossing = settings["noncrossing"]
        self.postprocess = settings["postprocess"]
        self.solver = weight_fit.solver
        self.versions = _versions()
        self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.timings = dict(timings)
        self.weight_fit = weight_fit
        self.weights = weight_fit.to_frame(self.models, self.taus)
        self.frame = base.data_used.iloc[base.split.train]
        self.y = base.frames.y[base.split.train]
        self.Q = base.Q
        self.q_oof_raw = q_oof_raw
        self.q_oof = q_oof
        self.calibration = calibration
        self._specs = {m: base.frames.specs[m] for m in self.models}
        self._basis_spec = basis_spec
        self._basis_state = basis_state
        self._crossfit = cf
        self.oof_scores = self._score_oof()
        self.monotone = self._monotone_table()
        self.test_scores = None
        test_cov = None
        if base.test is not None:
            self.test_scores, test_cov = self._score_frame(base.test)
        self.coverage = self._coverage_table(test_cov)
        self.diagnostics = self._diagnostics()
        return self

    def reweight(self, weights: str, **changes: Any) -> "QaggResults":
        """Refit only the aggregation (and calibration) with another weight family or setting.

        The cross-fitted base learners are reused, so comparing families costs one weight fit
        each. ``changes`` may set constraint, noncrossing, postprocess, groups, local_formula,
        smooth and solver; the others keep this fit's values.

        Examples
        --------
        >>> import qaggstats as qa
        >>> df = qa.datasets.load("engel")
        >>> fit = qa.qagg("foodexp ~ income", df, cv=3, quantiles=[0.1, 0.5, 0.9],
        ...               models={"lin": qa.learners.LinearQR(), "knn": qa.learners.KNN(k=20)})
        >>> fit.reweight("global").family
        'global'
        """
        from .pipeline import fit_aggregate

        settings = {**self._settings, **changes, "family": weights}
        unknown = set(settings) - {"family", "constraint", "noncrossing", "postprocess", "groups",
                                   "local_formula", "smooth", "obs_weights", "min_gap",
                                   "noncrossing_at", "weight_rows", "solver"}
        if unknown:
            raise DataError(f"reweight() cannot change {', '.join(sorted(unknown))}; refit with qa.qagg")
        if weights != "grouped":
            settings["groups"] = None if "groups" not in changes else changes["groups"]
        family = settings.pop("family")
        return fit_aggregate(self._base, weights=family, **settings)

    # ------------------------------------------------------------------ scores
    def _baselines(self, Q: np.ndarray) -> dict[str, np.ndarray]:
        preds = {m: Q[:, j, :] for j, m in enumerate(self.models)}
        preds["mean"] = Q.mean(axis=1)
        preds["median"] = np.median(Q, axis=1)
        return preds

    def _score_oof(self) -> pd.DataFrame:
        preds = self._baselines(self.Q)
        preds["aggregate (raw)"] = self.q_oof_raw
        preds["aggregate"] = self.q_oof
        return scoring.score_table(self.y, preds, self.taus)

    def _monotone_table(self) -> pd.DataFrame:
        rows = []
        for step in ("sort", "isotonic", "rearrange", "minmax"):
            after = monotone_postprocess(self.q_oof_raw, self.taus, step)
            eff = monotone_effect(self.y, self.q_oof_raw, after, self.taus)
            rows.append({"step": step, **eff})
        return pd.DataFrame(rows)

    def _predict_arrays(self, newdata: pd.DataFrame, calibrated: bool = True):
        """Base (m_ok, p, r), raw aggregated and final (m_ok, r) predictions, row mask (m,)."""
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
        specs = dict(self._specs)
        if self._basis_spec is not None:
            specs["__basis__"] = self._basis_spec
        X, ok = design_newdata(specs, newdata)
        Xm = {m: X[m] for m in self.models}
        basis = apply_basis(X["__basis__"], self._basis_state) if self._basis_spec is not None else None
        Q = sort_base(self._crossfit.predict(Xm))
        raw = combine(self.weight_fit, Q, basis)
        q = monotone_postprocess(raw, self.taus, self.postprocess)
        if calibrated and self.calibration is not None:
            if self.conformal == "cv+":
                folds = sort_base(self._crossfit.predict_folds(Xm))
                q = self.calibration.apply(np.stack([
                    monotone_postprocess(combine(self.weight_fit, Qk, basis), self.taus, self.postprocess)
                    for Qk in folds]))
            else:
                q = self.calibration.apply(q)
        return Q, raw, q, ok

    def predict(self, newdata: pd.DataFrame, quantiles: Optional[Sequence[float]] = None,
                interval: Optional[float] = None, calibrated: bool = True) -> pd.DataFrame:
        """Predicted quantiles (and an interval) for new data, as a tidy DataFrame.

        Parameters
        ----------
        newdata : DataFrame or dask DataFrame
            Must hold every column the formulas use; categories must be ones seen in training.
            Rows with missing predictors get NaN predictions. A dask DataFrame gives a lazy
            dask DataFrame back, predicted partition by partition.
        quantiles : sequence of float, optional
            A subset of the fitted levels (default: all).
        interval : float, optional
            Central coverage (e.g. 0.9) of an interval to add as ``lower`` / ``upper``; its
            levels ((1 − c)/2, (1 + c)/2) must be among the fitted ones.
        calibrated : bool
            Apply the conformal calibration (when the fit has one).

        Returns
        -------
        DataFrame indexed like ``newdata`` with columns ``q<tau>`` (and ``lower``, ``upper``).

        Examples
        --------
        >>> import qaggstats as qa
        >>> df = qa.datasets.load("engel")
        >>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
        ...               quantiles=[0.05, 0.5, 0.95], cv=3)
        >>> list(fit.predict(df.head(3), interval=0.9).columns)
        ['q0.05', 'q0.5', 'q0.95', 'lower', 'upper']
        """
        if is_dask_dataframe(newdata):  # lazy, chunked: predict() then runs on each pandas partition
            return predict_dask(self, newdata, quantiles=quantiles, interval=interval,
                                calibrated=calibrated)
        cols = self._level_positions(quantiles)
        pair = self._interval_pair(interval) if interval is not None else None
        *_, q, ok = self._predict_arrays(newdata, calibrated=calibrated)
        full = np.full((len(newdata), self.taus.size), np.nan)
        full[ok] = q
        out = pd.DataFrame(full[:, cols], index=newdata.index,
                           columns=[quantile_column(t) for t in self.taus[cols]])
        if pair is not None:
            out["lower"], out["upper"] = full[:, pair[0]], full[:, pair[1]]
        return out

    def _level_positions(self, quantiles) -> np.ndarray:
        if quantiles is None:
            return np.arange(self.taus.size)
        pos = []
        for t in np.atleast_1d(np.asarray(quantiles, dtype=float)):
            hit = np.flatnonzero(np.isclose(self.taus, t, rtol=0, atol=1e-9))
            if hit.size == 0:
                raise DataError(f"quantile level {t:g} was not fitted; fitted levels: "
                                + ", ".join(f"{x:g}" for x in self.taus))
            pos.append(int(hit[0]))
        return np.asarray(pos)

    def _interval_pair(self, interval: float) -> tuple[int, int]:
        if not 0 < interval < 1:
            raise DataError(f"interval must be a coverage in (0, 1), got {interval!r}")
        lo, hi = (1 - interval) / 2, (1 + interval) / 2
        ilo = np.flatnonzero(np.isclose(self.taus, lo, atol=1e-9))
        ihi = np.flatnonzero(np.isclose(self.taus, hi, atol=1e-9))
        if ilo.size == 0 or ihi.size == 0:
            have = [f"{round(1 - 2 * t, 6):g}" for t in self.taus if t < 0.5 and np.isclose(self.taus, 1 - t).any()]
            raise DataError(f"a {interval:g} interval needs levels {lo:g} and {hi:g}, which were not fitted; "
                            f"available intervals: {', '.join(have) or 'none'}")
        return int(ilo[0]), int(ihi[0])

    def _score_frame(self, data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self.response not in data.columns:
            raise DataError(f"data to score has no response column {self.response!r}")
        y_all = pd.to_numeric(data[self.response], errors="coerce").to_numpy(dtype=float)
        Q, raw, q, ok = self._predict_arrays(data)
        keep = np.isfinite(y_all[ok])
        if not keep.any():
            raise DataError(f"no row of the data to score has both predictors and a finite {self.response!r}")
        y = y_all[ok][keep]
        preds = self._baselines(Q[keep])
        preds["aggregate (raw)"] = raw[keep]
        preds["aggregate"] = q[keep]
        table = scoring.score_table(y, preds, self.taus)
        table.attrs["n"] = int(keep.sum())
        table.attrs["n_dropped"] = int(len(data) - keep.sum())
        return table, self._coverage_rows(y, q[keep], "test")

    def scores(self, data: pd.DataFrame) -> pd.DataFrame:
        """Scores of every base model, the mean/median ensembles and the aggregate on ``data``.

        Rows with missing predictors or response are left out; their count is in
        ``table.attrs["n_dropped"]``.
        """
        return self._score_frame(data)[0]

    # ------------------------------------------------------------------ coverage and theory
    def _coverage_rows(self, y: np.ndarray, q: np.ndarray, which: str) -> pd.DataFrame:
        rows = []
        n = y.size
        for i, j in scoring.central_pairs(self.taus):
            alpha = 2 * self.taus[i]
            observed = float(np.mean((y >= q[:, i]) & (y <= q[:, j])))
            if self.calibration is not None and which == "test" and self.conformal != "cv+":
                lo, hi = self.calibration.binomial_band(alpha, n)
            else:
                lo, hi = map(float, scoring.binomial_band(1 - alpha, n))
            rows.append({"set": which, "nominal": 1 - alpha, "observed": observed,
                         "band_low": lo, "band_high": hi, "inside": bool(lo <= observed <= hi), "n": n})
        return pd.DataFrame(rows)

    def _coverage_table(self, test_cov: Optional[pd.DataFrame]) -> pd.DataFrame:
        parts = [self._coverage_rows(self.y, self.q_oof, "out-of-fold (uncalibrated)")]
        if test_cov is not None:
            parts.append(test_cov)
        return pd.concat(parts, ignore_index=True)

    def _diagnostics(self) -> list[Diagnostic]:
        out = []
        mono = self.monotone.set_index("step")
        for step, name in (("sort", "Sorting"), ("isotonic", "Isotonic projection")):
            b, a = mono.loc[step, "wis_before"], mono.loc[step, "wis_after"]
            out.append(Diagnostic(
                f"{name} across levels cannot raise WIS", "Fakoor et al. (2023), sorting and isotonic post-processing",
                f"out-of-fold WIS {b:.4g} → {a:.4g}", bool(a <= b + 1e-9 * max(1.0, abs(b)))))
        b, a = mono.loc["minmax", "wis_before"], mono.loc["minmax", "wis_after"]
        out.append(Diagnostic(
            "The min–max sweep, unlike sorting, can raise WIS", "Fakoor et al. (2023), min–max sweep",
            f"out-of-fold WIS {b:.4g} → {a:.4g} ({'raised' if a > b else 'not raised'} here)", None))
        rb = int(mono.loc[self.postprocess if self.postprocess != "none" else "sort", "rows_crossing_before"])
        ra = int(mono.loc[self.postprocess if self.postprocess != "none" else "sort", "rows_crossing_after"])
        out.append(Diagnostic(
            f"Post-processing ({self.postprocess}) leaves no crossed quantiles",
            "monotone rearrangement (Chernozhukov et al. 2010)",
            f"rows with crossings {rb} → {ra} of {self.y.size}",
            None if self.postprocess == "none" else ra == 0))
        scores = self.oof_scores
        best = scores.loc[self.models, "wis"].idxmin()
        agg_raw = scoring.wis(self.y, self.q_oof_raw, self.taus)
        contains_each = self.family not in ("mean", "median", "fqra")
        out.append(Diagnostic(
            f"The fitted '{self.family}' aggregate is no worse in-sample than the best single model",
            "each base model is a feasible point of the weight LP" if contains_each else "not guaranteed for this family",
            f"out-of-fold WIS {agg_raw:.4g} vs {scores.loc[best, 'wis']:.4g} ({best})",
            bool(agg_raw <= scores.loc[best, "wis"] * (1 + 1e-6) + 1e-12) if contains_each else None))
        if self.calibration is not None:
            test = self.coverage[self.coverage["set"] == "test"]
            for _, row in (test.iterrows() if len(test) else []):
                alpha = 1 - row["nominal"]
                if self.conformal == "cv+":
                    bound = max(0.0, self.calibration.coverage_bound(alpha))
                    claim = (f"CV+ guarantees coverage of the {row['nominal']:.0%} interval of at least {bound:.3f}"
                             + (" (vacuous at this n and K)" if bound == 0 else ""))
                    source = "Barber et al. (2021), CV+; Fakoor et al. (2023)"
                    # consistent with the guarantee: not below what n Bernoulli(bound) draws could give
                    held = bool(row["observed"] >= scoring.binomial_band(bound, int(row["n"]))[0]) if bound > 0 else True
                else:
                    lo, hi = self.calibration.coverage_band(alpha)
                    claim = f"split CQR guarantees coverage in [{lo:.3f}, {hi:.3f}] for n_cal = {self.n_cal}"
                    source = "Romano, Patterson & Candès (2019)"
                    held = bool(row["inside"])
                out.append(Diagnostic(
                    claim, source,
                    f"observed {row['observed']:.3f} on {row['n']} test points; 95% band "
                    f"[{row['band_low']:.3f}, {row['band_high']:.3f}]", held))
            if not len(test):
                out.append(Diagnostic("Conformal coverage guarantee", "Romano et al. (2019)",
                                      "no test data given (pass test=...)", None))
        return out

    # ------------------------------------------------------------------ summary, plots, reports
    def summary(self) -> QaggSummary:
        """A printable summary (text in the console, HTML in a notebook)."""
        return QaggSummary(self)

    def plot(self, kind: str = "fan", **kwargs):
        """Draw one diagnostic figure and return it (a matplotlib Figure).

        kind: "fan", "weights", "calibration" (reliability diagram), "pit", "coverage"
        (conditional coverage; ``x=`` an array or a column name, default the predicted
        median), "wis" (decomposition), "crossing", "coef" (coefficients across τ with
        confidence bands of a linear model, ``model=`` its name) and "local_weights"
        (``x=`` a column name) for local weights.
        """
        from . import plots

        kinds = {
            "fan": lambda: plots.fan_chart(self._column(kwargs.pop("x", None)), self.q_oof, self.taus,
                                           y=self.y, **kwargs),
            "weights": lambda: plots.weights_heatmap(self.weights, **kwargs),
            "calibration": lambda: plots.reliability_diagram(self.y, self.q_oof, self.taus, **kwargs),
            "pit": lambda: plots.pit_histogram(self.y, self.q_oof, self.taus, **kwargs),
            "wis": lambda: plots.wis_decomposition(self.oof_scores, **kwargs),
            "crossing": lambda: plots.crossing_plot(self.monotone, **kwargs),
            "coverage": lambda: self._plot_coverage(plots, **kwargs),
            "coef": lambda: self._plot_coef(plots, **kwargs),
            "local_weights": lambda: self._plot_local(plots, **kwargs),
        }
        if kind not in kinds:
            raise DataError(f"unknown plot kind {kind!r}; choose one of {', '.join(sorted(kinds))}")
        return kinds[kind]()

    def _column(self, x):
        """A column of the training rows by name, or the array given (None passes through)."""
        if isinstance(x, str):
            if x not in self.frame.columns:
                raise DataError(f"column {x!r} is not in the training data")
            return self.frame[x].to_numpy()
        return x

    def _plot_coverage(self, plots, interval=None, x=None, **kwargs):
        i, j = scoring.central_pairs(self.taus)[0] if interval is None else self._interval_pair(interval)
        x = self._column(x)
        x = self.q_oof[:, np.argmin(np.abs(self.taus - 0.5))] if x is None else x
        return plots.conditional_coverage(x, self.y, self.q_oof[:, i], self.q_oof[:, j],
                                          nominal=self.taus[j] - self.taus[i], **kwargs)

    def _plot_coef(self, plots, model=None, se="nid", **kwargs):
        from .learners import LinearQR
        from .quantreg import rq

        linear = [m for m in self.models if isinstance(self._base.learners[m], LinearQR)]
        if not linear:
            raise DataError("plot('coef') needs a LinearQR base model; this fit has none")
        model = linear[0] if model is None else model
        if model not in linear:
            raise DataError(f"model {model!r} is not a LinearQR base model; linear models: {', '.join(linear)}")
        fit = rq(self.formulas[model], self.frame, tau=self.taus, se=se)
        return plots.coef_plot(fit.coef, **kwargs)

    def _plot_local(self, plots, x=None, **kwargs):
        if self.family != "local":
            raise DataError(f"plot('local_weights') needs weights='local'; this fit uses {self.family!r}")
        basis = apply_basis(self._basis_spec.design(self.frame), self._basis_state)
        alpha = self.weight_fit.weights_at(basis)
        x = self._column(x if x is not None else self._basis_spec.columns[0])
        return plots.local_weights(x, alpha, self.taus, models=self.models, **kwargs)

    def report(self, path: str | os.PathLike, template_dir: str | os.PathLike | None = None) -> Path:
        """Write a self-contained HTML or PDF report (by the path's suffix); returns the path."""
        from .report import write_report

        return write_report(self, path, template_dir=template_dir)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save the fit (atomically) so :func:`qaggstats.load` gives identical predictions."""
        path = Path(path)
        payload = pickle.dumps({"magic": _FILE_MAGIC, "version": __version__, "results": self},
                               protocol=pickle.HIGHEST_PROTOCOL)
        _atomic_write(path, payload)
        return path


def _atomic_write(path: Path, payload: bytes) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise SaveError(f"cannot write {path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise SaveError(f"cannot write {path}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        # mkstemp creates the file 0600; give the saved fit the permissions open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise SaveError(f"cannot write {path}: {err.strerror}") from err


def load(path: str | os.PathLike) -> QaggResults:
    """Load a fit saved with :meth:`QaggResults.save`.

    Raises
    ------
    SaveError
        The file is missing, is not a qaggstats fit, or was written by an incompatible version.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SaveError(f"cannot read saved fit {path}: {err.strerror}") from err
    try:
        payload = pickle.load(io.BytesIO(raw))
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise SaveError(f"{path} is not a qaggstats saved fit (could not be read: {type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("magic") != _FILE_MAGIC:
        raise SaveError(f"{path} is not a qaggstats saved fit")
    saved = str(payload.get("version"))
    if saved.split(".")[:2] != __version__.split(".")[:2]:
        raise SaveError(f"{path} was saved by qaggstats {saved}; this is {__version__}. "
                        f"Refit, or install qaggstats=={saved} to load it")
    return payload["results"]
