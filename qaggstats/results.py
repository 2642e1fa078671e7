"""The fitted aggregate: read-only results, prediction, scores, plots, reports, save/load.

:class:`QaggResults` is built by :func:`qaggstats.qagg`. Prediction is delegated to its
:class:`~qaggstats.predictor.Predictor` (``fit.predictor``); scores, the monotone table, the
coverage table and the diagnostics are computed on first use and cached. The attributes are
listed in ``docs/ARCHITECTURE.md`` and are the only thing plots and reports read.

Examples
--------
>>> import qaggstats as qa
>>> df = qa.datasets.load("engel")
>>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
...               taus=[0.1, 0.5, 0.9], cv=3)
>>> list(fit.predict(df.head(1)).columns)
['q0.1', 'q0.5', 'q0.9']
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from . import conformal as conformal_mod
from . import scoring
from ._version import __version__
from .diagnostics import Diagnostic, diagnose
from .distributed import is_dask_dataframe, predict_dask
from .errors import DataError, SaveError
from . import persist
from .levels import quantile_column
from .monotone import monotone_effect
from .options import REWEIGHT_SETTINGS
from .monotone import postprocess as monotone_postprocess
from .formula import design_newdata
from .predictor import Predictor, sort_base
from .summary import Summary, SummaryMixin, format_weight

__all__ = ["QaggResults", "Diagnostic", "fmt_sig", "load", "SAVED_KIND"]

SAVED_KIND = "qaggstats-fit"


def fmt_sig(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits and thousands separators, never in e-notation
    for ordinary magnitudes.

    Examples
    --------
    >>> fmt_sig(28810.4), fmt_sig(2.55219), fmt_sig(0.000123456), fmt_sig(float("nan"))
    ('28,810', '2.552', '0.0001235', 'nan')
    """
    if not np.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = int(np.floor(np.log10(abs(value))))
    if magnitude < -6 or magnitude > 15:
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{round(value, decimals):,.{decimals}f}"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "qaggstats": __version__}
    for pkg in ("numpy", "scipy", "pandas", "statsmodels", "patsy", "cvxpy", "clarabel",
                "highspy", "scikit-learn", "skops", "matplotlib", "jinja2", "weasyprint"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _describe_learner(obj: Any, given: Any = None, seed: Optional[int] = None) -> str:
    """One line naming a learner refitted on all training rows and every parameter it used.

    ``obj`` is the refit, a copy of ``given`` whose ``random_state`` cross-fitting derived from
    ``seed`` when ``given`` left it None: the seed shown is the one used. A parameter left None
    that the learner resolved at fit time (``KNN``'s ``k``, stored as ``k_``) is shown with its
    value and "auto".
    """
    params = getattr(obj, "get_params", None)
    if callable(params):
        try:
            items = sorted(params().items())
        except TypeError:
            items = None
        if items is not None:
            shown = []
            for k, v in items:
                if k == "formula":
                    continue
                resolved = getattr(obj, f"{k}_", None) if v is None else None
                if resolved is not None:
                    shown.append(f"{k}={resolved!r} (auto)")
                elif k == "random_state" and v is not None and getattr(given, k, v) is None:
                    shown.append(f"{k}={v!r} (from seed {seed})")
                else:
                    shown.append(f"{k}={v!r}")
            return f"{type(obj).__name__}({', '.join(shown)})"
    return repr(obj) if type(obj).__repr__ is not object.__repr__ else type(obj).__name__


_TOP_FEATURES = 3


def _association(values: pd.Series, width: np.ndarray) -> float:
    """How much the interval width varies with a column: |Spearman| for numbers, the correlation
    ratio for a factor (NaN for a constant column)."""
    v = values.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v):
        if v.nunique() < 2 or np.ptp(width) == 0:
            return float("nan")
        return abs(float(pd.Series(width).corr(v.astype(float), method="spearman")))
    w = pd.Series(width)
    total = float(((w - w.mean()) ** 2).sum())
    if v.nunique() < 2 or total == 0:
        return float("nan")
    means = w.groupby(v.astype(str)).transform("mean")
    return float(np.sqrt(((means - w.mean()) ** 2).sum() / total))


def _summary(r: "QaggResults") -> Summary:
    """The boxed summary of a fit, rendered by :class:`qaggstats.summary.Summary`."""
    calib = "none"
    if r.conformal in ("cqr", "cqr-asymmetric"):
        calib = f"{r.conformal} (n_cal = {r.n_cal:,})"
        column = getattr(r.calibration, "column", None)
        if column is not None:
            calib += f", per group of {column!r} (Mondrian)"
    elif r.conformal == "cv+":
        calib = f"nested cv+ ({r.cv} folds)"
    rows = f"{r.na.n_input:,} given, {r.na.n_used:,} used"
    if r.na.n_dropped:
        rows += f" ({r.na.n_dropped:,} dropped for missing values)"
    header = [
        ("Data", r.data_name), ("Response", r.response), ("Rows", rows),
        ("Training / calibration", f"{r.n_train:,} / {r.n_cal:,}"),
    ]
    if r.n_test is not None:
        header.append(("Test rows", f"{r.n_test:,} held out (scored, not fitted)"))
    header += [
        ("Levels", ", ".join(f"{t:g}" for t in r.taus)),
        ("Weight family", r.family if r.family == r.family_requested else f"{r.family} (chosen by auto)"),
        ("Constraint", r.constraint + (", non-crossing" if r.noncrossing else "")),
        ("Post-processing", r.postprocess), ("Conformal", calib),
        ("Folds / seed", f"{r.cv} / {r.seed}"),
        ("Solver", f"{r.weight_fit.solver} ({r.weight_fit.status}, {r.weight_fit.seconds:.2f} s)"),
    ]
    if r.na.n_dropped:
        header.append(("NA by column", ", ".join(f"{k}: {v}" for k, v in r.na.by_column.items() if v)))
    models = [f"{m}: {r.learners[m]}; formula: {r.formulas[m]}" for m in r.models]
    if r.family == "local":
        weights = r.weights.pivot_table(index=["model", "basis"], columns="tau", values="coef", sort=False)
    elif "model" in r.weights and "weight" in r.weights:
        weights = r.weights.pivot_table(index="model", columns="tau", values="weight", sort=False)
    else:
        weights = r.weights
    if weights is not r.weights:
        # levels as written (0.05, not 0.05000) and one fixed format for every weight
        weights = weights.apply(lambda col: col.map(format_weight)).rename(columns=lambda t: f"{t:g}")
    keep = ("wis", "dispersion", "overprediction", "underprediction", "crossing_rate")
    score_cols = [c for c in r.oof_scores.columns if c in keep or c.startswith("coverage_")]
    short = {"wis": "WIS", "dispersion": "disp", "overprediction": "over",
             "underprediction": "under", "crossing_rate": "crossing"}

    def scores(table: pd.DataFrame) -> pd.DataFrame:
        # short headers keep the table within 78 columns
        return table[score_cols].rename(columns=lambda c: short.get(c, c.replace("coverage_", "cov")))

    sections: list[tuple[str, Any]] = [("Base models", models), ("Weights", weights)]
    if r.selection is not None:
        sections.append(("Weight family selection (held-out out-of-fold WIS)", r.selection))
    sections.append(("Out-of-fold scores", scores(r.oof_scores)))
    if r.test_scores is not None:
        sections.append(("Test scores", scores(r.test_scores)))
    sections.append(("Monotone post-processing (out-of-fold)", r.monotone))
    if getattr(r.calibration, "column", None) is not None:
        sections.append((f"Group-conditional (Mondrian) calibration by {r.calibration.column!r}: coverage holds "
                         "within each group", r.calibration.table()))
    if len(r.coverage):
        sections.append(("Coverage", r.coverage))
    cond = r.conditional_coverage
    if cond is not None and len(cond):
        sections.append((f"Conditional coverage of the {cond['nominal'].iloc[0]:.0%} interval on the test data "
                         "(bins of the top features and of the predicted width; band: where each bin should fall "
                         "if coverage held within it)", cond.drop(columns=["nominal", "worst"])))
        w = cond[cond["worst"]].iloc[0]
        sections.append(("Worst slab", [
            f"{w['variable']} in {w['bin']}: coverage {w['observed']:.3f} on {w['n']} test rows, band "
            f"[{w['band_low']:.3f}, {w['band_high']:.3f}] — {'inside' if w['inside'] else 'outside'} its band"]))
    sections.append(("What the calibration guarantees", conformal_mod.guarantees(r.calibration, r.taus)))
    sections.append(("Diagnostics", [f"[{d.verdict}] {d.claim} ({d.source}): {d.observed}" for d in r.diagnostics]))
    if r.notes:
        sections.append(("Notes", list(r.notes)))
    return Summary(header, sections, title="Quantile aggregation results", width=78, float_format=fmt_sig)


def _cached(compute: Callable[["QaggResults"], Any]) -> property:
    """A read-only property computed on first use and kept (saved fits keep the value)."""
    name = compute.__name__

    def get(self: "QaggResults") -> Any:
        if name not in self._cache:
            self._cache[name] = compute(self)
        return self._cache[name]

    get.__doc__ = compute.__doc__
    return property(get)


class QaggResults(SummaryMixin):
    """A fitted quantile aggregate. Build it with :func:`qaggstats.qagg`.

    Every attribute is read-only; see ``docs/ARCHITECTURE.md`` for the list. The main methods
    are :meth:`summary`, :meth:`predict`, :meth:`scores`, :meth:`reweight`, :meth:`plot`,
    :meth:`report` and :meth:`save`. Scores, diagnostics and the coverage table are computed
    on first use.
    """

    def __init__(self, *, base, predictor: Predictor, q_oof_raw: np.ndarray, q_oof: np.ndarray,
                 timings: dict, settings: dict, refit: Callable[..., "QaggResults"],
                 weight_fit_rows: Optional[int] = None, notes: Sequence[str] = ()) -> None:
        cf = base.crossfit
        models = list(cf.models)
        notes = list(base.notes) + list(base.frames.notes) + list(notes)
        notes += [f"learner {name!r} was dropped: {why}" for name, why in cf.dropped.items()]
        for name in models:
            aliased = getattr(cf.fitted[name], "aliased_", None)  # design column positions (LinearQR)
            if aliased is not None and len(aliased):
                columns = base.frames.specs[name].column_names
                named = [columns[int(a)] for a in aliased]
                notes.append(f"model {name!r}: aliased (collinear) design column(s) dropped from the fit: "
                             f"{', '.join(named)}")
        unused = [m for m in models if m not in predictor.learners]
        if unused:
            notes.append(f"model(s) {', '.join(unused)} have zero weight at every level and are not needed to predict")
        if weight_fit_rows is not None:
            notes.append(f"weights fitted on a response-stratified subsample of {weight_fit_rows:,} "
                         f"of the {base.split.train.size:,} training rows (weight_rows)")
        wfit = predictor.weights
        self._state: dict[str, Any] = dict(
            formula=base.formula, models=models,
            formulas={m: base.frames.specs[m].expanded for m in models},  # "y ~ ." spelt out
            data_name=base.data_name or f"data frame ({base.frames.na.n_input:,} rows)",
            response=base.frames.specs[models[0]].response, taus=np.asarray(base.taus, dtype=float),
            na=base.frames.na, notes=notes,
            learners={m: _describe_learner(cf.fitted[m], base.learners[m], base.seed) for m in models},
            learner_types={m: type(base.learners[m]).__name__ for m in models},
            n_train=int(base.split.train.size), n_cal=int(base.split.cal.size),
            n_test=None if base.test is None else int(len(base.test)),
            conformal=base.conformal, cal_size=base.cal_size, cv=base.cv, seed=base.seed, n_jobs=base.n_jobs,
            settings=dict(settings), family=wfit.family, family_requested=settings["family"],
            constraint=settings["constraint"], noncrossing=settings["noncrossing"],
            postprocess=settings["postprocess"], solver=wfit.solver, versions=_versions(),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            timings=dict(timings), weight_fit=wfit, weights=wfit.to_frame(
                models, base.taus, basis=predictor.basis.columns if wfit.family == "local" else None),
            selection=getattr(wfit, "selection", None),
            calibration=predictor.calibration,
            frame=base.data_used.iloc[base.split.train], y=base.frames.y[base.split.train],
            Q=base.Q, q_oof_raw=q_oof_raw, q_oof=q_oof,
        )
        self.predictor = predictor
        self._cache: dict[str, Any] = {}
        self._base = base  # in memory only: reweight() and scoring the base models on test data
        self._test = base.test
        self._refit = refit  # pipeline.fit_aggregate, passed in so results never import the pipeline

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_state")
        if state is not None and name in state:
            return state[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name == "predictor":
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"fit results are read-only; {name!r} cannot be set (refit or use reweight())")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._state))

    # ------------------------------------------------------------------ re-aggregation
    def reweight(self, family: str, **changes: Any) -> "QaggResults":
        """Refit only the aggregation (and calibration) with another weight family or setting.

        The cross-fitted base learners are reused, so comparing families costs one weight fit
        each. ``changes`` may set constraint, noncrossing, postprocess, groups, local_formula,
        smooth, obs_weights, min_gap, noncrossing_at, weight_rows and solver; the others keep
        this fit's values. Saved fits do not keep the cross-fitted models: refit to reweight.

        Examples
        --------
        >>> import qaggstats as qa
        >>> df = qa.datasets.load("engel")
        >>> fit = qa.qagg("foodexp ~ income", df, cv=3, taus=[0.1, 0.5, 0.9],
        ...               models={"lin": qa.learners.LinearQR(), "knn": qa.learners.KNN(k=20)})
        >>> fit.reweight("global").family
        'global'
        """
        if self._base is None:
            raise DataError("this fit was loaded from a file, which keeps only what prediction needs; "
                            "refit with qa.qagg to try another weight family")
        unknown = set(changes) - set(REWEIGHT_SETTINGS)
        if unknown:
            raise DataError(f"reweight() cannot change {', '.join(sorted(unknown))}; refit with qa.qagg")
        settings = {**self.settings, **changes}
        settings.pop("family", None)
        if family != "grouped" and "groups" not in changes:
            settings["groups"] = None
        return self._refit(self._base, family=family, **settings)

    # ------------------------------------------------------------------ scores (computed on first use)
    def _baselines(self, Q: np.ndarray) -> dict[str, np.ndarray]:
        preds = {m: Q[:, j, :] for j, m in enumerate(self.models)}
        preds["mean"] = Q.mean(axis=1)
        preds["median"] = np.median(Q, axis=1)
        return preds

    @_cached
    def oof_scores(self) -> pd.DataFrame:
        """Out-of-fold scores of each base model, the mean/median ensembles and the aggregate."""
        preds = self._baselines(self.Q)
        preds["aggregate (raw)"] = self.q_oof_raw
        preds["aggregate"] = self.q_oof
        return scoring.score_table(self.y, preds, self.taus)

    @_cached
    def monotone(self) -> pd.DataFrame:
        """WIS and crossing rows before/after each monotone post-processing step (out-of-fold)."""
        rows = []
        for step in ("sort", "isotonic", "rearrange", "minmax"):
            after = monotone_postprocess(self.q_oof_raw, self.taus, step)
            rows.append({"step": step, **monotone_effect(self.y, self.q_oof_raw, after, self.taus)})
        return pd.DataFrame(rows)

    @_cached
    def _test_tables(self) -> Optional[tuple[pd.DataFrame, pd.DataFrame, Optional[pd.DataFrame]]]:
        return None if self._test is None else self._score_frame(self._test, conditional=True)

    @property
    def conditional_coverage(self) -> Optional[pd.DataFrame]:
        """Test coverage of one central interval (nominal nearest 80 %) in bins of the top features
        and of the predicted width, each with the band it should fall in if coverage held within
        the bin (None without ``test=``); see :func:`qaggstats.scoring.coverage_by_bins`.

        The features are the data columns the formulas use whose values the interval width
        varies with most (|Spearman correlation|, or the correlation ratio for a factor), at
        most three. Columns: ``variable``, ``bin``, ``n``, ``observed``, ``band_low``,
        ``band_high``, ``inside``, ``nominal``, ``worst`` (True on the lowest-coverage bin).
        """
        tables = self._test_tables
        return None if tables is None else tables[2]

    def _band(self, alpha: float, n: int) -> tuple[float, float]:
        """The 95 % band of observed coverage on n fresh rows that the calibration promises."""
        if self.calibration is not None and self.conformal != "cv+":
            return self.calibration.binomial_band(alpha, n)
        return tuple(map(float, scoring.binomial_band(1 - alpha, n)))

    def _conditional_rows(self, rows: pd.DataFrame, y: np.ndarray, q: np.ndarray) -> Optional[pd.DataFrame]:
        pairs = scoring.central_pairs(self.taus)
        if not pairs or y.size < 20:
            return None
        lo, hi = min(pairs, key=lambda p: (abs(1 - 2 * self.taus[p[0]] - 0.8), -p[1]))
        alpha = 2 * self.taus[lo]
        width = q[:, hi] - q[:, lo]
        specs = list(self.predictor.specs.values()) + [self.predictor.basis_spec]
        columns = list(dict.fromkeys(c for spec in specs if spec is not None for c in spec.columns
                                     if c != self.response and c in rows.columns))
        strength = {c: _association(rows[c], width) for c in columns}
        top = sorted((c for c in columns if np.isfinite(strength[c])), key=lambda c: -strength[c])[:_TOP_FEATURES]
        variables = {c: rows[c] for c in top}
        variables["predicted width"] = width
        table = scoring.coverage_by_bins(y, q[:, lo], q[:, hi], variables, lambda n: self._band(alpha, n))
        table["nominal"] = round(1 - alpha, 10)
        worst = scoring.worst_slab(table)
        table["worst"] = table.index == (worst.name if worst is not None else -1)
        return table

    @property
    def test_scores(self) -> Optional[pd.DataFrame]:
        """Scores on the held-out ``test=`` data (None without it)."""
        tables = self._test_tables
        return None if tables is None else tables[0]

    @_cached
    def coverage(self) -> pd.DataFrame:
        """Coverage of each central interval, out-of-fold and on the test data, with 95 % bands."""
        parts = [self._coverage_rows(self.y, self.q_oof, "out-of-fold (uncalibrated)")]
        if self._test_tables is not None:
            parts.append(self._test_tables[1])
        return pd.concat(parts, ignore_index=True)

    @_cached
    def diagnostics(self) -> list[Diagnostic]:
        """Each theoretical claim, its source, what this fit showed and whether it held."""
        return diagnose(y=self.y, taus=self.taus, family=self.family, postprocess=self.postprocess,
                        models=self.models, oof_scores=self.oof_scores, monotone=self.monotone,
                        q_oof_raw=self.q_oof_raw, conformal=self.conformal, calibration=self.calibration,
                        coverage=self.coverage, n_cal=self.n_cal)

    def _score_frame(self, data: pd.DataFrame, conditional: bool = False
                     ) -> tuple[pd.DataFrame, pd.DataFrame, Optional[pd.DataFrame]]:
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data to score must be a pandas DataFrame, got {type(data).__name__}")
        if self.response not in data.columns:
            raise DataError(f"data to score has no response column {self.response!r}")
        y_all = pd.to_numeric(data[self.response], errors="coerce").to_numpy(dtype=float)
        preds: dict[str, np.ndarray] = {}
        column = getattr(self.calibration, "column", None)  # Mondrian: rows need their group label
        if column is not None and column not in data.columns:
            raise DataError(f"data to score has no conformal_groups column {column!r}")
        if self._base is not None:  # every base model and the ensembles (in memory; saved fits keep only used models)
            specs = {m: self._base.frames.specs[m] for m in self.models}
            X, ok = design_newdata(specs, data)
            if column is not None:
                present = data[column].notna().to_numpy()
                X, ok = {m: v[present[ok]] for m, v in X.items()}, ok & present
            parts = self.predictor.predict_parts(data[ok])
            baselines = self._baselines(sort_base(self._base.crossfit.predict(X)))
        else:
            parts = self.predictor.predict_parts(data)
            ok, baselines = parts.ok, {}
        y_ok = y_all[ok]
        keep = np.isfinite(y_ok)
        if not keep.any():
            raise DataError(f"no row of the data to score has both predictors and a finite {self.response!r}")
        y = y_ok[keep]
        preds.update({name: q[keep] for name, q in baselines.items()})
        preds["aggregate (raw)"] = parts.raw[keep]
        preds["aggregate"] = parts.final[keep]
        table = scoring.score_table(y, preds, self.taus)
        table.attrs["n"] = int(keep.sum())
        table.attrs["n_dropped"] = int(len(data) - keep.sum())
        coverage = self._coverage_rows(y, parts.final[keep], "test")
        cond = self._conditional_rows(data[ok][keep], y, parts.final[keep]) if conditional else None
        if column is not None:  # and within each group, against the group's own band
            labels = data[column].to_numpy()[ok][keep]
            by_group = self.calibration.check_coverage(y, parts.final[keep], labels)
            by_group.insert(0, "set", [f"test, {column} = {g}" for g in by_group.pop("group")])
            coverage = pd.concat([coverage, by_group.drop(columns="n_cal")], ignore_index=True)
        return table, coverage, cond

    def scores(self, data: pd.DataFrame) -> pd.DataFrame:
        """Scores of every base model, the mean/median ensembles and the aggregate on ``data``.

        Rows with missing predictors or response are left out; their count is in
        ``table.attrs["n_dropped"]``. A fit loaded from a file scores the aggregate only.
        """
        return self._score_frame(data)[0]

    def _coverage_rows(self, y: np.ndarray, q: np.ndarray, which: str) -> pd.DataFrame:
        rows = []
        n = y.size
        for i, j in scoring.central_pairs(self.taus):
            alpha = 2 * self.taus[i]
            observed = float(np.mean((y >= q[:, i]) & (y <= q[:, j])))
            if which == "test":
                lo, hi = self._band(alpha, n)
            else:
                lo, hi = map(float, scoring.binomial_band(1 - alpha, n))
            rows.append({"set": which, "nominal": 1 - alpha, "observed": observed,
                         "band_low": lo, "band_high": hi, "inside": bool(lo <= observed <= hi), "n": n})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ prediction
    def predict(self, newdata: pd.DataFrame, taus: Optional[Sequence[float]] = None,
                interval: Optional[float] = None, calibrated: bool = True) -> pd.DataFrame:
        """Predicted quantiles (and an interval) for new data, as a tidy DataFrame.

        Parameters
        ----------
        newdata : DataFrame or dask DataFrame
            Must hold every column the formulas use; categories must be ones seen in training.
            Rows with missing predictors get NaN predictions. A dask DataFrame gives a lazy
            dask DataFrame back, predicted partition by partition.
        taus : sequence of float, optional
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
        ...               taus=[0.05, 0.5, 0.95], cv=3)
        >>> list(fit.predict(df.head(3), interval=0.9).columns)
        ['q0.05', 'q0.5', 'q0.95', 'lower', 'upper']
        """
        if is_dask_dataframe(newdata):  # lazy, chunked: predict() then runs on each pandas partition
            return predict_dask(self, newdata, taus=taus, interval=interval, calibrated=calibrated)
        cols = self._level_positions(taus)
        pair = self._interval_pair(interval) if interval is not None else None
        parts = self.predictor.predict_parts(newdata, calibrated=calibrated)
        full = np.full((len(newdata), self.taus.size), np.nan)
        full[parts.ok] = parts.final
        out = pd.DataFrame(full[:, cols], index=newdata.index,
                           columns=[quantile_column(t) for t in self.taus[cols]])
        if pair is not None:
            out["lower"], out["upper"] = full[:, pair[0]], full[:, pair[1]]
        return out

    def _level_positions(self, taus) -> np.ndarray:
        if taus is None:
            return np.arange(self.taus.size)
        pos = []
        for t in np.atleast_1d(np.asarray(taus, dtype=float)):
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

    # ------------------------------------------------------------------ summary, plots, reports
    def summary(self) -> Summary:
        """A printable summary (text in the console, HTML in a notebook)."""
        return _summary(self)

    def __repr__(self) -> str:
        return (f"<QaggResults: {self.response} on {self.n_train:,} rows, {len(self.models)} models, "
                f"family {self.family!r}, levels {', '.join(f'{t:g}' for t in self.taus)}>")

    def _need_training(self, what: str) -> None:
        if self._state.get("y") is None:
            raise DataError(f"{what} needs the training rows, which this saved fit does not keep; "
                            "save with keep_data=True, or refit")

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
            "fan": lambda: self._plot_fan(plots, **kwargs),
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
        if kind not in ("weights", "wis", "crossing"):
            self._need_training(f"plot({kind!r})")
        return kinds[kind]()

    def _column(self, x):
        """A column of the training rows by name, or the array given (None passes through)."""
        if isinstance(x, str):
            if x not in self.frame.columns:
                raise DataError(f"column {x!r} is not in the training data")
            return self.frame[x].to_numpy()
        return x

    def _plot_fan(self, plots, x=None, **kwargs):
        kwargs.setdefault("ylabel", self.response)
        if isinstance(x, str):
            kwargs.setdefault("xlabel", x)
        return plots.fan_chart(self._column(x), self.q_oof, self.taus, y=self.y, **kwargs)

    def _plot_coverage(self, plots, interval=None, x=None, **kwargs):
        i, j = scoring.central_pairs(self.taus)[0] if interval is None else self._interval_pair(interval)
        if isinstance(x, str):
            kwargs.setdefault("xlabel", x)
        xs = self._column(x)
        xs = self.q_oof[:, np.argmin(np.abs(self.taus - 0.5))] if xs is None else xs
        return plots.conditional_coverage(xs, self.y, self.q_oof[:, i], self.q_oof[:, j],
                                          nominal=self.taus[j] - self.taus[i], **kwargs)

    def _plot_coef(self, plots, model=None, se=None, **kwargs):
        from .quantreg import rq

        linear = [m for m in self.models if self.learner_types[m] == "LinearQR"]
        if not linear:
            raise DataError("plot('coef') needs a LinearQR base model; this fit has none")
        model = linear[0] if model is None else model
        if model not in linear:
            raise DataError(f"model {model!r} is not a LinearQR base model; linear models: {', '.join(linear)}")
        # R's plot(summary(rqs)): bands per level and the least-squares line and band
        return rq(self.formulas[model], self.frame, tau=self.taus, se=se).plot(**kwargs)

    def _plot_local(self, plots, x=None, **kwargs):
        if self.family != "local":
            raise DataError(f"plot('local_weights') needs weights='local'; this fit uses {self.family!r}")
        spec = self.predictor.basis_spec
        X_basis = None if spec is None else spec.design(self.frame)
        alpha = self.weight_fit.weights_at(self.predictor.basis_rows(X_basis, self.Q))
        if x is None and spec is None:
            raise DataError("plot('local_weights') needs x=, a column of the data, to draw the weights along")
        name = x if x is not None else spec.columns[0]
        if isinstance(name, str):
            kwargs.setdefault("xlabel", name)
        return plots.local_weights(self._column(name), alpha, self.taus, models=self.models, **kwargs)

    def report(self, path: str | os.PathLike, template_dir: str | os.PathLike | None = None) -> Path:
        """Write a self-contained HTML or PDF report (by the path's suffix); returns the path."""
        from .report import write_report

        self._need_training("report()")
        return write_report(self, path, template_dir=template_dir)

    # ------------------------------------------------------------------ persistence
    def saved_state(self, keep_data: bool = False) -> dict[str, Any]:
        """What :meth:`save` stores: the predictor, the settings and every computed table.

        ``keep_data=False`` leaves out the training rows and out-of-fold arrays (``frame``,
        ``y``, ``Q``, ``q_oof``, ``q_oof_raw``), so the file holds only what prediction and the
        summary need; plots and reports of a loaded fit then ask for a refit.
        """
        tables = {name: getattr(self, name) for name in ("oof_scores", "monotone", "coverage", "diagnostics")}
        tables["_test_tables"] = self._test_tables
        state = dict(self._state)
        if not keep_data:
            for key in ("frame", "y", "Q", "q_oof", "q_oof_raw"):
                state[key] = None
        return {"state": state, "cache": tables, "predictor": self.predictor}

    @classmethod
    def from_saved_state(cls, saved: dict[str, Any]) -> "QaggResults":
        """Rebuild results from :meth:`saved_state` (no cross-fitted models: reweight needs a refit)."""
        self = cls.__new__(cls)
        object.__setattr__(self, "_state", dict(saved["state"]))
        object.__setattr__(self, "_cache", dict(saved["cache"]))
        object.__setattr__(self, "predictor", saved["predictor"])
        object.__setattr__(self, "_base", None)
        object.__setattr__(self, "_test", None)
        object.__setattr__(self, "_refit", None)
        return self

    def save(self, path: str | os.PathLike, keep_data: bool = False) -> Path:
        """Save the fit (atomically) so :func:`qaggstats.load` gives identical predictions.

        Parameters
        ----------
        path : str or PathLike
        keep_data : bool
            Also keep the training rows and out-of-fold arrays (for plots and reports after
            loading). Off by default: a saved fit holds only what prediction needs.
        """
        return persist.save(self.saved_state(keep_data=keep_data), path, kind=SAVED_KIND, version=__version__)


def load(path: str | os.PathLike) -> QaggResults:
    """Load a fit saved with :meth:`QaggResults.save`.

    Raises
    ------
    SaveError
        The file is missing, is not a qaggstats saved fit, or was written by an incompatible
        version.

    Examples
    --------
    >>> import qaggstats as qa, tempfile, pathlib
    >>> df = qa.datasets.load("engel")
    >>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
    ...               taus=[0.1, 0.5, 0.9], cv=3)
    >>> path = fit.save(pathlib.Path(tempfile.mkdtemp()) / "engel.qagg")
    >>> qa.load(path).predict(df.head(2)).equals(fit.predict(df.head(2)))
    True
    """
    saved = persist.load(path, kind=SAVED_KIND)
    if not isinstance(saved, dict) or set(saved) != {"state", "cache", "predictor"}:
        raise SaveError(f"{path} is a qaggstats file but not a saved fit")
    fit = QaggResults.from_saved_state(saved)
    _check_predicts(fit.predictor, path)
    return fit


def _check_predicts(predictor: Any, path: Any) -> None:
    """Predict a few of the saved training rows once: an array whose shape or values were edited
    (a coefficient matrix reshaped, weights of the wrong size) fails here, as a SaveError, and not
    at the user's first ``predict``."""
    specs = list(getattr(predictor, "specs", {}).values()) + [getattr(predictor, "basis_spec", None)]
    frames = [spec._train.iloc[:3].reset_index(drop=True) for spec in specs if spec is not None]
    probe = pd.concat(frames, axis=1) if frames else pd.DataFrame(index=range(1))
    probe = probe.loc[:, ~probe.columns.duplicated()]
    groups = getattr(getattr(predictor, "calibration", None), "groups", None)
    if groups:  # Mondrian calibration reads its group column
        probe[predictor.calibration.column] = groups[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts = predictor.predict_parts(probe)
        final = np.asarray(parts.final, dtype=float)
        if final.shape != (int(np.sum(parts.ok)), len(predictor.taus)) or not np.isfinite(final).all():
            raise ValueError(f"predictions of shape {final.shape} with non-finite values")
    except Exception as err:  # any failure on the training rows means the file was altered
        raise SaveError(f"{path} is not a qaggstats saved fit, or is corrupt: predicting its own training "
                        f"rows failed ({type(err).__name__}: {err}); qaggstats refuses to load it") from err
