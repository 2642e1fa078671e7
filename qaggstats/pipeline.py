"""The aggregation pipeline: formulas → cross-fitting → weights → monotone → conformal.

:func:`qagg` is the one user-facing entry; every stage is a pure function of arrays in its own
module, and this module only wires them together and records what each stage did.

Examples
--------
>>> import qaggstats as qa
>>> df = qa.datasets.load("engel")
>>> fit = qa.qagg("foodexp ~ income", data=df, taus=[0.1, 0.5, 0.9],
...               models={"linear": qa.learners.LinearQR(), "knn": qa.learners.KNN(k=20)},
...               cv=3, seed=0)
>>> fit.predict(df.head(2)).shape[0]
2
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from . import _deep
from . import conformal as conformal_mod
from . import learners as learners_mod
from .aggregate import fit_weights
from .basis import LocalBasis, local_formula_with_response
from .crossfit import CrossFit, crossfit, crossfit_pairs
from .errors import CalibrationError, DataError, SolverError
from .formula import design_newdata, model_frames
from .levels import validate_levels
from .options import Conformal, Constraint, Family, NAPolicy, OnError, Postprocess, check_option
from .predictor import Predictor, needed_models, sort_base
from .monotone import postprocess as monotone_postprocess
from .progress import ProgressFn, as_progress
from .results import QaggResults

__all__ = ["qagg", "fit_base", "fit_aggregate", "BaseFit", "DEFAULT_TAUS", "default_models"]

DEFAULT_TAUS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def default_models(seed: int = 0) -> dict[str, Any]:
    """The default base learners: linear QR, quantile forest, boosting, k-NN, location-scale.

    Examples
    --------
    >>> sorted(default_models())
    ['boost', 'forest', 'knn', 'linear', 'locscale']
    """
    return {
        "linear": learners_mod.LinearQR(),
        "forest": learners_mod.QuantileForest(random_state=seed),
        "boost": learners_mod.GradientBoosting(random_state=seed),
        "knn": learners_mod.KNN(),
        "locscale": learners_mod.LocationScale(),
    }


@dataclass(frozen=True)
class _Split:
    """Row positions (into the used rows) for proper training and calibration."""

    train: np.ndarray
    cal: np.ndarray


def _split_rows(n: int, conformal: Optional[str], cal_size: float, seed: int,
                groups: Optional[list] = None) -> _Split:
    if conformal not in ("cqr", "cqr-asymmetric"):
        return _Split(np.arange(n), np.arange(0))
    if not 0.0 < cal_size < 1.0:
        raise DataError(f"cal_size must be a fraction in (0, 1), got {cal_size!r}")
    rng = np.random.default_rng([seed, 1])  # a stream separate from the fold assignment
    if groups is not None:  # Mondrian: every group gives cal_size of its rows to calibration
        codes = pd.factorize(pd.Series(groups, dtype=object))[0]
        cal = np.concatenate([rng.permutation(np.flatnonzero(codes == c))[:int(round(cal_size * np.sum(codes == c)))]
                              for c in range(codes.max() + 1)])
        if n - cal.size < 2:
            raise CalibrationError(
                f"cannot split {n} rows into training and calibration sets with cal_size={cal_size}")
        return _Split(np.setdiff1d(np.arange(n), cal), np.sort(cal))
    perm = rng.permutation(n)
    n_cal = int(round(cal_size * n))
    if n_cal < 1 or n - n_cal < 2:
        raise CalibrationError(
            f"cannot split {n} rows into training and calibration sets with cal_size={cal_size}"
        )
    return _Split(np.sort(perm[n_cal:]), np.sort(perm[:n_cal]))


def _resolve_models(models, seed: int) -> dict[str, Any]:
    if models is None:
        return default_models(seed)
    if isinstance(models, Mapping):
        resolved = dict(models)
    else:
        resolved = {}
        for obj in models:
            name = type(obj).__name__.lower()
            k = 2
            while name in resolved:
                name, k = f"{type(obj).__name__.lower()}{k}", k + 1
            resolved[name] = obj
    if not resolved:
        raise DataError("models is empty: give at least one base learner")
    for name, obj in resolved.items():
        if not isinstance(name, str) or not name:
            raise DataError(f"model names must be non-empty strings, got {name!r}")
        learners_mod.check_learner(obj, name)
    return resolved


def _learner_formula(learner: Any, default: str) -> str:
    own = getattr(learner, "formula", None)
    return own if own else default


@dataclass
class BaseFit:
    """Everything that does not depend on the weight fit: frames, split, cross-fitted models.

    :func:`fit_aggregate` turns it into results; ``QaggResults.reweight`` reuses it to try
    another weight family without refitting the base learners.
    """

    formula: str
    formulas: dict[str, str]
    frames: Any
    data_used: pd.DataFrame
    split: _Split
    taus: np.ndarray
    notes: list[str]
    learners: dict[str, Any]
    crossfit: CrossFit
    Q: np.ndarray
    conformal: Optional[str]
    cal_size: float
    cv: int
    seed: int
    n_jobs: int
    timings: dict[str, float]
    test: Optional[pd.DataFrame]
    data_name: Optional[str]
    Q_pairs: Optional[np.ndarray] = None  # (K, n, p, r) leave-two-folds-out predictions, nested CV+ only
    conformal_groups: Optional[str] = None  # Mondrian calibration: the group column
    group_labels: Optional[list] = None  # and the label of every used row


def qagg(
    formula: str,
    data: pd.DataFrame,
    models: Mapping[str, Any] | Sequence[Any] | None = None,
    taus: Sequence[float] = DEFAULT_TAUS,
    family: Family = "quantile",
    *,
    constraint: Constraint = "simplex",
    noncrossing: bool = True,
    postprocess: Postprocess = "sort",
    conformal: Conformal = None,
    conformal_groups: Optional[str] = None,
    cal_size: float = 0.25,
    cv: int = 5,
    seed: int = 0,
    n_jobs: int = -1,
    na: NAPolicy = "drop",
    groups: Any = None,
    local_formula: Optional[str] = None,
    penalty: float | str = "auto",
    smooth: float = 0.0,
    obs_weights: Any = None,
    min_gap: float = 0.0,
    noncrossing_at: Optional[pd.DataFrame] = None,
    weight_rows: Optional[int] = 200_000,
    solver: str = "auto",
    test: Optional[pd.DataFrame] = None,
    on_error: OnError = "raise",
    backend: Any = "local",
    data_name: Optional[str] = None,
    dqa: Optional[Mapping[str, Any]] = None,
    candidates: Optional[Sequence[str]] = None,
    progress: Optional[ProgressFn] = None,
):
    """Fit base quantile models, aggregate them, make them monotone, and calibrate.

    Parameters
    ----------
    formula : str
        Default formula (``"y ~ x1 + bs(x2, df=5) + C(g)"``, ``"y ~ ."``) for every model
        without its own.
    data : DataFrame
        Training data. Rows with missing values in used columns are dropped and counted
        (``na="raise"`` makes that an error).
    models : mapping name -> learner, sequence of learners, or None
        Base learners following the protocol ``fit(X, y, taus)`` / ``predict(X)``; None uses
        :func:`default_models`.
    taus : sequence of float
        Quantile levels in (0, 1); unsorted levels are sorted (with a note), duplicates are an
        error.
    family : str
        Weight family: "mean", "median", "single", "global", "quantile", "grouped", "local",
        "fine", "qra", "fqra", "dqa" or "auto" (see :func:`qaggstats.aggregate.fit_weights`).
        "dqa" is the paper's deep quantile aggregation (a network from the features of
        ``local_formula``, by default the formula's predictors, to weights over models and
        nearby levels; needs ``pip install "qaggstats[deep]"``). "auto" compares every family
        and constraint (see ``candidates``) by held-out out-of-fold WIS on the cross-fitting
        folds, keeps the simplest within one standard error of the best, and never one worse
        than the best single model; the summary shows the comparison.
    constraint : {"simplex", "nonneg", "free"}
    noncrossing : bool
        Impose q̂_k ≤ q̂_k+1 at the training points in the weight fit.
    postprocess : {"sort", "isotonic", "rearrange", "minmax", "none"}
        Monotone post-processing applied to every prediction; "sort" and "isotonic" can only
        lower WIS (Fakoor et al. 2023).
    conformal : {None, "cqr", "cqr-asymmetric", "cv+"}
        Conformal calibration of the central intervals. "cqr" variants hold out ``cal_size``
        of the rows (split CQR: marginal coverage in ``[1 - alpha, 1 - alpha + 1/(n_cal + 1)]``).
        "cv+" is the paper's nested CV+ (Fakoor et al. 2023; Barber et al. 2021): no rows held
        out; each of the K fold models is the whole aggregate fitted without fold k (base
        learners without fold k, weights on base predictions made without folds k and j), so
        coverage is guaranteed at least ``1 - 2 alpha`` up to a small K-fold term and is
        typically at least ``1 - alpha``. It costs ``K (K - 1) / 2`` extra fits per learner and
        K extra weight fits, and needs ``cv >= 3``; ``cv=n`` gives the jackknife+ (affordable for
        small n only). The fold aggregations keep every setting except ``noncrossing_at``.
    conformal_groups : str, optional
        Group-conditional (Mondrian) calibration with ``conformal="cqr"`` or
        ``"cqr-asymmetric"``: a column of ``data`` (a factor; strings, integers or booleans)
        whose every group gets its own correction from its own calibration rows, so coverage
        holds within each group (``[1 - alpha, 1 - alpha + 1/(n_g + 1)]`` for a group with
        ``n_g`` calibration rows), not only on average. The calibration split is stratified by
        group; a group with fewer than ``1/alpha - 1`` calibration rows is an error naming it,
        and so is predicting for a group not seen in calibration. The column need not be in
        the formula.
    cal_size : float
        Fraction of rows held out for split conformal calibration.
    cv, seed, n_jobs : int
        Folds, seed (fold assignment, calibration split, random learners) and parallel jobs
        (-1: every core; results are identical for any value).
    groups : sequence of int or int, optional
        Level groups for ``family="grouped"``.
    local_formula : str, optional
        Right-hand side (``"~ x1 + x2"``, factors allowed): its design gives the basis φ(x)
        of ``family="local"`` (an additive partition of unity, 4 hats per column at its
        training quantiles, so the weights are on the simplex at every x) and the input of ``family="dqa"`` (whose default is the
        design of ``formula``). Default: a partition of unity (4 × 3 hat functions)
        over the base models' own out-of-fold predicted location and spread
        (:class:`qaggstats.basis.LocalBasis`), which needs no formula and keeps the local
        weights on the simplex at every x.
    penalty : float or "auto"
        ``family="local"``: L1 penalty shrinking local weights towards weights constant in x
        (on the default basis: each prototype weight's deviation from its mean over the basis;
        on a formula's basis: the coefficients beyond the constant); "auto" (default) chooses
        it by inner validation on the cross-fitting folds.
    smooth : float
        Penalty λ·Σ|α_k+1 − α_k| across adjacent levels.
    obs_weights : str or array, optional
        Observation weights w_i of the weight fit's pinball loss: a column of ``data`` or an
        array with one non-negative value per row of ``data``.
    min_gap : float
        Minimum gap between adjacent aggregated quantiles under the non-crossing constraints.
    noncrossing_at : DataFrame, optional
        Extra points (e.g. the rows you will predict) where the non-crossing constraints
        (and, for local weights, the simplex) must also hold.
    weight_rows : int or None
        Fit the weights on a subsample of at most this many training rows, stratified on
        the response's deciles (None: always all rows). The weights are a handful of
        numbers: at n = 1e6 a 1e5-row subsample gave the same test WIS to 5 digits
        (BENCHMARKS.md, Scaling) in 4 % of the time and memory.
    solver : str
        "auto", "fast", "cvxpy" or a cvxpy solver name.
    test : DataFrame, optional
        Held-out data to score the fit on (``results.test_scores``).
    on_error : {"raise", "drop"}
        What to do when a base learner raises.
    backend : "local", "dask" or a dask.distributed Client
        Where the cross-fitting tasks run.
    data_name : str, optional
        Name of the data set shown in summaries and reports.
    dqa : dict, optional
        Settings of ``family="dqa"`` (``variant`` "fine"/"medium"/"coarse", ``hidden``,
        ``window``, ``crossing``, ``max_epochs``, ...; see :func:`qaggstats.dqa.fit_dqa`).
    candidates : sequence of str, optional
        ``family="auto"``: what to compare, simplest first, as "family" or "family:constraint"
        (default :func:`qaggstats.selection.default_candidates`).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    QaggResults

    Examples
    --------
    >>> import qaggstats as qa
    >>> df = qa.datasets.load("engel")
    >>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
    ...               taus=[0.25, 0.5, 0.75], cv=3)
    >>> fit.weights["weight"].round(6).tolist()
    [1.0, 1.0, 1.0]
    """
    check_option("family", family)
    check_option("postprocess", postprocess)
    base = fit_base(formula, data, models=models, taus=taus, conformal=conformal,
                    conformal_groups=conformal_groups, cal_size=cal_size, cv=cv, seed=seed, n_jobs=n_jobs, na=na, test=test,
                    on_error=on_error, backend=backend, data_name=data_name, progress=progress)
    return fit_aggregate(base, family=family, constraint=constraint, noncrossing=noncrossing,
                         postprocess=postprocess, groups=groups, local_formula=local_formula,
                         penalty=penalty, smooth=smooth, obs_weights=obs_weights, min_gap=min_gap,
                         noncrossing_at=noncrossing_at, weight_rows=weight_rows, solver=solver,
                         dqa=dqa, candidates=candidates, progress=progress)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DataError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def fit_base(formula: str, data: pd.DataFrame, *, models=None, taus: Sequence[float] = DEFAULT_TAUS,
             conformal: Conformal = None, conformal_groups: Optional[str] = None, cal_size: float = 0.25,
             cv: int = 5, seed: int = 0, n_jobs: int = -1, na: NAPolicy = "drop", test: Optional[pd.DataFrame] = None,
             on_error: OnError = "raise", backend: Any = "local", data_name: Optional[str] = None,
             progress: Optional[ProgressFn] = None) -> BaseFit:
    """Model frames, the calibration split and the cross-fitted base learners (see :func:`qagg`)."""
    taus, notes = validate_levels(taus, sort=True)
    check_option("conformal", conformal)
    check_option("on_error", on_error)
    seed = _check_seed(seed)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if not isinstance(cv, (int, np.integer)) or isinstance(cv, bool) or cv < 2:
        raise DataError(f"cv must be an integer of at least 2 folds, got {cv!r}")
    if test is not None and not isinstance(test, pd.DataFrame):
        raise DataError(f"test must be a pandas DataFrame, got {type(test).__name__}")

    learners = _resolve_models(models, seed)
    formulas = {name: _learner_formula(obj, formula) for name, obj in learners.items()}
    frames = model_frames(formulas, data, na=na)
    labels = _conformal_groups(conformal_groups, conformal, data, frames, test)
    split = _split_rows(frames.y.shape[0], conformal, cal_size, seed, labels)
    if split.train.size < cv:
        raise DataError(f"{split.train.size} training rows are fewer than cv={cv} folds")
    if conformal == "cv+" and cv < 3:
        raise CalibrationError(f"conformal='cv+' (nested CV+) fits the base learners without two folds at a time "
                               f"and needs cv >= 3 folds; got cv={cv}")
    _check_identified(learners, frames, split, int(cv), left_out=2 if conformal == "cv+" else 1)
    if test is not None:  # now, not at the first summary(): an unseen level is the likeliest problem
        for name, spec in frames.specs.items():
            try:
                spec.check_newdata(test)
            except DataError as err:
                raise DataError(f"test= (model {name!r}): {err}; drop or recode those rows of the test data") from None
    t0 = time.perf_counter()
    X_train = {name: frames.X[name][split.train] for name in learners}
    on_backend = {} if backend == "local" else {"backend": backend}
    cf = crossfit(learners, X_train, frames.y[split.train], taus, cv=cv, seed=seed, n_jobs=n_jobs,
                  progress=as_progress(progress), on_error=on_error, **on_backend)
    Q_pairs = None
    if conformal == "cv+":  # the inner out-of-fold arrays of the aggregations refitted without each fold
        Q_pairs = sort_base(crossfit_pairs(learners, X_train, frames.y[split.train], taus, cf.folds, cf.models,
                                           seed=seed, n_jobs=n_jobs, progress=as_progress(progress), **on_backend))
    return BaseFit(
        formula=formula, formulas=formulas, frames=frames, data_used=used_rows(data, frames),
        split=split, taus=taus, notes=notes, learners=learners, crossfit=cf, Q=sort_base(cf.Q),
        conformal=conformal, cal_size=cal_size, cv=int(cv), seed=seed, n_jobs=n_jobs,
        timings={"cross-fitting": time.perf_counter() - t0}, test=test, data_name=data_name, Q_pairs=Q_pairs,
        conformal_groups=conformal_groups, group_labels=labels,
    )


def _conformal_groups(column: Optional[str], conformal: Optional[str], data: pd.DataFrame, frames,
                      test: Optional[pd.DataFrame]) -> Optional[list]:
    """The group label of every used row for Mondrian calibration (None without ``conformal_groups``)."""
    if column is None:
        return None
    if conformal not in ("cqr", "cqr-asymmetric"):
        raise DataError(f"conformal_groups={column!r} (group-conditional calibration) needs conformal='cqr' or "
                        f"'cqr-asymmetric'; got conformal={conformal!r}")
    if not isinstance(column, str) or column not in data.columns:
        raise DataError(f"conformal_groups={column!r} is not a column of the data")
    labels = conformal_mod.group_labels(used_rows(data, frames)[column], column)
    if test is not None:
        if column not in test.columns:
            raise DataError(f"test= has no conformal_groups column {column!r}")
        seen = set(labels)
        unseen = [v for v in dict.fromkeys(conformal_mod.group_labels(test[column].dropna(), column)) if v not in seen]
        if unseen:
            raise DataError(f"test= holds group(s) {', '.join(map(repr, unseen[:5]))} of conformal_groups column "
                            f"{column!r} that the training data lack; drop or recode those rows of the test data")
    return labels


def _check_identified(learners: Mapping[str, Any], frames, split: _Split, cv: int, left_out: int = 1) -> None:
    """Refuse a linear learner with as many independent design columns as cross-fitting gives it
    rows (``left_out`` folds held out: 2 for nested CV+): its quantile fits would pass through
    every point (zero-width intervals)."""
    n = split.train.size
    rows = n - left_out * -(-n // cv)  # the training part beside the largest fold(s)
    for name, obj in learners.items():
        linear = isinstance(obj, learners_mod.LinearQR) or (
            isinstance(obj, learners_mod.LocationScale) and obj.mean_model is None)
        X = frames.X[name]
        if not linear or X.shape[1] < rows:
            continue
        rank = int(np.linalg.matrix_rank(X[split.train]))
        if rank >= rows:
            raise DataError(
                f"model {name!r} ({type(obj).__name__}): its design ({frames.specs[name].expanded!r}) has {rank} "
                f"independent columns, but cross-fitting trains it on {rows} of the {n} training rows (cv={cv}): "
                "a linear quantile fit with as many parameters as rows passes through every point, so its "
                "intervals have zero width. Use fewer terms, more rows, or drop the linear learner(s)")


def fit_aggregate(base: BaseFit, *, family: Family = "quantile", constraint: Constraint = "simplex",
                  noncrossing: bool = True, postprocess: Postprocess = "sort", groups: Any = None,
                  local_formula: Optional[str] = None, penalty: float | str = "auto", smooth: float = 0.0,
                  obs_weights: Any = None, min_gap: float = 0.0, noncrossing_at: Optional[pd.DataFrame] = None,
                  weight_rows: Optional[int] = 200_000, solver: str = "auto",
                  dqa: Optional[Mapping[str, Any]] = None, candidates: Optional[Sequence[str]] = None,
                  progress: Optional[ProgressFn] = None) -> QaggResults:
    """Weights, monotone post-processing and calibration on a :class:`BaseFit` (see :func:`qagg`)."""
    check_option("family", family)
    check_option("postprocess", postprocess)
    report = as_progress(progress)
    taus, split, y, cf = base.taus, base.split, base.frames.y, base.crossfit
    timings = dict(base.timings)

    # The local basis and the DQA features (also for "auto", which may choose either): each a
    # representation of the rows, learnt on the rows a weight fit sees (all training rows, or for
    # nested CV+ those outside one fold)
    reps: dict[str, _Rows] = {}
    if family in ("local", "auto"):
        reps["local"] = _local_rows(base, local_formula)
    if family == "dqa" or (family == "auto" and _deep.available()):
        reps["dqa"] = _dqa_rows(base, local_formula)
    extra, notes = None, []
    if noncrossing_at is not None:
        extra, skipped = _extra_points(base, noncrossing_at, reps["local"].spec if "local" in reps else None)
        if skipped:
            notes.append(f"noncrossing_at: {skipped:,} of {len(noncrossing_at):,} rows have missing predictors "
                         "and carry no non-crossing constraint")
    w_obs = None if obs_weights is None else _observation_weights(obs_weights, base)
    settings = dict(family=family, constraint=constraint, noncrossing=noncrossing, groups=groups, penalty=penalty,
                    smooth=smooth, obs_weights=w_obs, min_gap=min_gap, weight_rows=weight_rows,
                    solver=solver, dqa=dqa, candidates=candidates)

    report("weight fit", 0, 1)
    t0 = time.perf_counter()
    wfit, bases, rows = _fit_aggregation(base, reps, base.Q, np.arange(split.train.size), cf.folds, extra,
                                         **settings)
    timings["weight fit"] = time.perf_counter() - t0
    report("weight fit", 1, 1)

    fold_aggs = None
    t0 = time.perf_counter()
    if base.conformal == "cv+":
            calibration, fold_aggs = _nested_cv_plus(base, reps, lambda q: monotone_postprocess(q, taus, postprocess),
                                                 settings)
    # the rows' representation the chosen family needs at predict time (none for most families)
    rep = reps.get(wfit.family)
    basis_spec = rep.spec if rep is not None else None
    local = bases.get(wfit.family)
    basis = None if local is None else local.transform(None if rep.X is None else rep.X[split.train], base.Q)
    # a basis built from the models' predictions needs every model at predict time; so do the fold
    # aggregates of nested CV+ whose weights use models the full fit does not
    used = needed_models(wfit, list(cf.models), uses_all=local is not None and local.kind != "design")
    for w_k, lb_k, _ in fold_aggs or ():
        more = needed_models(w_k, list(cf.models), uses_all=lb_k is not None and lb_k.kind != "design")
        used = [m for m in cf.models if m in used or m in more]
    predictor = Predictor(taus=taus, models=tuple(cf.models),
                          specs={m: base.frames.specs[m] for m in used},
                          learners={m: cf.fitted[m] for m in used}, weights=wfit,
                          postprocess=postprocess, basis_spec=basis_spec, basis=local)
    q_oof_raw = predictor.combine(base.Q, basis)
    q_oof = predictor.finish(q_oof_raw)

    if base.conformal in ("cqr", "cqr-asymmetric"):
        cal = {m: base.frames.X[m][split.cal] for m in used}
        if basis_spec is not None:
            cal[_BASIS] = rep.X[split.cal]
        Q_cal = predictor.base_quantiles(cal, where=" on calibration rows")
        q_cal = predictor.finish(predictor.combine(Q_cal, predictor.basis_rows(cal.get(_BASIS), Q_cal)))
        method = "asymmetric" if base.conformal == "cqr-asymmetric" else "symmetric"
        if base.conformal_groups is None:
            calibration = conformal_mod.fit_cqr(q_cal, y[split.cal], taus, method=method)
        else:
            calibration = conformal_mod.MondrianCQR.fit(
                y[split.cal], q_cal, [base.group_labels[i] for i in split.cal], taus,
                column=base.conformal_groups, asymmetric=method == "asymmetric")
        predictor = predictor.with_calibration(calibration)
    elif base.conformal == "cv+":
        fold_specs = {fam: reps[fam].spec for _, _, fam in fold_aggs if fam is not None and reps[fam].spec is not None}
        predictor = predictor.with_calibration(
            calibration, fold_learners={m: list(cf.fold_models[m]) for m in used},
            fold_aggregates=tuple(fold_aggs), fold_basis_specs=fold_specs)
    timings["calibration"] = time.perf_counter() - t0

    return QaggResults(
        base=base, predictor=predictor, q_oof_raw=q_oof_raw, q_oof=q_oof, timings=timings, refit=fit_aggregate,
        settings=dict(family=family, constraint=constraint, noncrossing=noncrossing,
                      postprocess=postprocess, groups=groups, local_formula=local_formula, penalty=penalty,
                      smooth=smooth, obs_weights=obs_weights, min_gap=min_gap,
                      noncrossing_at=noncrossing_at, weight_rows=weight_rows, solver=solver, dqa=dqa,
                      candidates=candidates),
        weight_fit_rows=None if rows is None else int(rows.size), notes=notes,
    )


_BASIS = "__basis__"


@dataclass(frozen=True)
class _Rows:
    """A representation of the rows for local weights or DQA: a LocalBasis ``kind`` learnt on the
    rows a weight fit sees, from a formula's design (``spec``, ``X`` on every used row) or, with
    no formula, from the base models' own predictions."""

    kind: str
    spec: Any = None
    X: Optional[np.ndarray] = None

    def fit(self, X_rows: Optional[np.ndarray], Q: np.ndarray) -> LocalBasis:
        names = None if self.spec is None else self.spec.column_names
        return LocalBasis(kind=self.kind).fit(X_rows, None if self.X is not None else Q, column_names=names)


def _dqa_rows(base: BaseFit, local_formula: Optional[str]) -> _Rows:
    """The inputs of the DQA network: the standardised design of ``local_formula`` or else of the formula."""
    frames = model_frames({"features": local_formula_with_response(local_formula, base.formula)},
                          base.data_used, na="raise")
    return _Rows("design", frames.specs["features"], frames.X["features"])


def _local_rows(base: BaseFit, local_formula: Optional[str]) -> _Rows:
    """The local-weight basis.

    Without ``local_formula`` the basis is a partition of unity over the base models' own
    out-of-fold predicted location and spread (:class:`LocalBasis` "partition"), so it needs no
    formula, works with factors, and keeps the local weights on the simplex at every x; with
    one, an additive partition of unity over that formula's design columns (hats at their
    training quantiles; simplex at every x).
    """
    if local_formula is None:
        return _Rows("partition")
    frames = model_frames({"basis": local_formula_with_response(local_formula, base.formula)},
                          base.data_used, na="raise")
    # a partition of unity over the formula's columns: simplex weights at every x, and the
    # structured LP needs no positivity cuts (a linear basis of 20,000 rows stalled on them)
    return _Rows("additive", frames.specs["basis"], frames.X["basis"])


def _fit_aggregation(base: BaseFit, reps: Mapping[str, _Rows], Q: np.ndarray, rows: np.ndarray,
                     folds: np.ndarray, extra: Optional[dict], *, family, constraint, noncrossing, groups,
                     penalty, smooth, obs_weights, min_gap, weight_rows, solver, dqa, candidates):
    """The weight fit on training rows ``rows`` (positions into the training rows) with their
    sorted base predictions ``Q (len(rows), p, r)`` and fold ids ``folds`` for inner validation.

    Returns the weights, the representations learnt on these rows (family -> LocalBasis) and
    the weight-fit subsample (None: every row).
    """
    train = base.split.train[rows]
    bases = {fam: rep.fit(None if rep.X is None else rep.X[train], Q) for fam, rep in reps.items()}
    at = {fam: lb.transform(None if reps[fam].X is None else reps[fam].X[train], Q) for fam, lb in bases.items()}
    fit_kwargs: dict[str, Any] = dict(family=family, constraint=constraint, noncrossing=noncrossing,
                                      smooth=smooth, solver=solver)
    if groups is not None:
        fit_kwargs["groups"] = groups
    if "local" in at:
        fit_kwargs["basis"] = at["local"]
    if "dqa" in at:
        fit_kwargs.update(features=at["dqa"], seed=base.seed)
        if dqa is not None:
            fit_kwargs["dqa"] = dict(dqa)
    if candidates is not None:
        if family != "auto":
            raise DataError(f"candidates= applies to family='auto' only; got family {family!r}")
        fit_kwargs["candidates"] = tuple(candidates)
    if family in ("local", "auto", "dqa"):
        # inner validation of the penalty / the family, and DQA's early stopping, on the same folds
        fit_kwargs["folds"] = folds
    if family == "local":
        fit_kwargs["penalty"] = penalty
    if obs_weights is not None:
        fit_kwargs["obs_weights"] = obs_weights[rows]
    if min_gap:
        fit_kwargs["min_gap"] = min_gap
    if extra is not None:
        fit_kwargs["extra"] = {"Q": extra["Q"]}
        if "local" in bases:
            fit_kwargs["extra"]["basis"] = bases["local"].transform(extra["X_basis"], extra["Q"])
    y = base.frames.y[train]
    sub = weight_subsample(y, weight_rows, base.seed)
    if sub is not None:
        for key in ("basis", "features", "obs_weights", "folds"):
            if key in fit_kwargs:
                fit_kwargs[key] = fit_kwargs[key][sub]
    Q_fit, y_fit = (Q, y) if sub is None else (Q[sub], y[sub])
    if constraint == "simplex" and family not in ("qra", "fqra"):
        # convex weights are unchanged when y and every base prediction move by one constant,
        # and centring keeps the LP solvable for a response far from zero (y + 1e12)
        shift = float(np.median(y_fit))
        Q_fit, y_fit = Q_fit - shift, y_fit - shift
        if "extra" in fit_kwargs:
            fit_kwargs["extra"] = {**fit_kwargs["extra"], "Q": fit_kwargs["extra"]["Q"] - shift}
    try:
        wfit = fit_weights(Q_fit, y_fit, base.taus, **fit_kwargs)
    except SolverError as err:
        if min_gap:  # the likeliest cause: no weights can keep adjacent levels min_gap apart
            raise SolverError(f"the weight fit failed with min_gap={min_gap:g}: adjacent aggregated quantiles "
                              f"cannot all be kept {min_gap:g} apart; lower min_gap (solver said: {err})") from err
        raise
    return wfit, bases, sub


def _nested_cv_plus(base: BaseFit, reps: Mapping[str, _Rows], finish, settings: dict):
    """The paper's nested CV+: the aggregation refitted without each fold k on the base models
    fitted without folds k and j (``base.Q_pairs``), scored on fold k with the base models fitted
    without fold k. Returns the calibration and, per fold, (weights, basis or None, family of
    the basis or None). The fold aggregations keep every setting but ``noncrossing_at``."""
    train = base.split.train

    def fit(k, rows, inner):
        w_k, bases_k, _ = _fit_aggregation(base, reps, base.Q_pairs[k][rows], rows, inner, None, **settings)
        fam = w_k.family if w_k.family in bases_k else None
        return w_k, bases_k.get(fam), fam

    def predict(agg, k, rows):
        w_k, lb_k, fam = agg
        Q = base.Q[rows]  # fold k's out-of-fold rows: the base models fitted without fold k
        if lb_k is None:
            return finish(w_k.combine(Q))
        X = reps[fam].X
        return finish(w_k.combine(Q, basis=lb_k.transform(None if X is None else X[train[rows]], Q)))

    return conformal_mod.nested_cv_plus(base.frames.y[train], base.crossfit.folds, base.taus, fit, predict)


def weight_subsample(y: np.ndarray, max_rows: Optional[int], seed: int) -> Optional[np.ndarray]:
    """Sorted row positions of a response-decile-stratified subsample, or None to use all.

    Each decile of ``y`` contributes rows in proportion to its size, so the tails that the
    extreme levels are fitted on keep their share.

    Examples
    --------
    >>> rows = weight_subsample(np.arange(20000.0), 2000, seed=0)
    >>> rows.size, np.histogram(rows, bins=10, range=(0, 20000))[0].tolist()
    (2000, [200, 200, 200, 200, 200, 200, 200, 200, 200, 200])
    >>> weight_subsample(np.arange(10.0), 100, seed=0) is None
    True
    """
    n = y.shape[0]
    if max_rows is None or n <= max_rows:
        return None
    if max_rows < 1000:
        raise DataError(f"weight_rows must be at least 1,000 (or None), got {max_rows}")
    rng = np.random.default_rng([seed, 3])
    strata = np.searchsorted(np.quantile(y, np.linspace(0.1, 0.9, 9)), y, side="right")
    picks = []
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        take = int(round(max_rows * members.size / n))
        picks.append(rng.choice(members, size=min(take, members.size), replace=False))
    return np.sort(np.concatenate(picks))


def _observation_weights(obs_weights: Any, base: BaseFit) -> np.ndarray:
    """Observation weights of the training rows, from a column name, a Series or a per-row array.

    A Series is aligned by label with the data's index (never by position); a plain array must
    have one value per row of the data, in its order.
    """
    n_input = base.frames.na.n_input
    used = base.data_used
    if isinstance(obs_weights, str):
        if obs_weights not in used.columns:
            raise DataError(f"obs_weights column {obs_weights!r} is not in the data")
        what = f"obs_weights column {obs_weights!r}"
        w = pd.to_numeric(used[obs_weights], errors="coerce").to_numpy(dtype=float)
    elif isinstance(obs_weights, pd.Series):
        what = "obs_weights (a Series aligned by index label)"
        if not obs_weights.index.is_unique or not used.index.is_unique:
            # duplicated labels cannot be matched row by row; only the data's very own index
            # (same labels, same order) says which value belongs to which row
            if not obs_weights.index.equals(_input_index(base.frames)):
                dup = obs_weights.index if not obs_weights.index.is_unique else used.index
                raise DataError(f"{what}: {'its' if dup is obs_weights.index else 'the data'} index has "
                                f"duplicated labels (e.g. {dup[dup.duplicated()].tolist()[0]!r}), so its values cannot "
                                "be matched to the data's rows by label; give the data's own index "
                                "(obs_weights.index = data.index) or a plain array in the data's row order "
                                "(obs_weights.to_numpy())")
            w = pd.to_numeric(obs_weights, errors="coerce").to_numpy(dtype=float)[base.frames.positions]
        else:
            missing = used.index.difference(obs_weights.index)
            if len(missing):
                raise DataError(f"{what} has no value for {len(missing)} row label(s) of the data, e.g. "
                                f"{list(missing[:3])}; index it like the data")
            w = pd.to_numeric(obs_weights.reindex(used.index), errors="coerce").to_numpy(dtype=float)
    else:
        what = "obs_weights"
        w_all = np.asarray(obs_weights, dtype=float).ravel()
        if w_all.size != n_input:
            raise DataError(f"obs_weights has {w_all.size} values for {n_input} rows of data")
        w = w_all[base.frames.positions]
    w = w[base.split.train]
    bad = int((~np.isfinite(w)).sum())
    if bad:
        raise DataError(f"{what} has {bad} missing or non-finite value(s) on the training rows")
    if (w < 0).any():
        raise DataError(f"{what} has {int((w < 0).sum())} negative value(s); weights must be non-negative")
    if not (w > 0).any():
        raise DataError(f"{what} is zero on every training row")
    # the LP solvers work to about 1e-9 relative: larger ratios are not honoured, and weights
    # near the float limit overflow the loss
    largest, smallest = float(w.max()), float(w[w > 0].min())
    if largest > _MAX_OBS_WEIGHT or largest / smallest > _MAX_OBS_WEIGHT_RATIO:
        raise DataError(f"{what} ranges from {smallest:.3g} to {largest:.3g}: the weight fit cannot honour "
                        f"weights above {_MAX_OBS_WEIGHT:.0e} or ratios above {_MAX_OBS_WEIGHT_RATIO:.0e}; "
                        "rescale them (e.g. divide by their mean) and cap extreme ones")
    return w


_MAX_OBS_WEIGHT = 1e12


def _input_index(frames) -> pd.Index:
    """The index of the data as given: kept rows at their positions, dropped rows in between."""
    labels = np.empty(frames.na.n_input, dtype=object)
    labels[frames.positions] = list(frames.index)
    labels[np.setdiff1d(np.arange(frames.na.n_input), frames.positions)] = list(frames.na.dropped_index)
    return pd.Index(labels)
_MAX_OBS_WEIGHT_RATIO = 1e9


def _extra_points(base: BaseFit, points: pd.DataFrame, basis_spec) -> tuple[dict, int]:
    """Sorted base predictions (and the local basis design) at extra points for the non-crossing
    constraints.

    Returns the arrays and the number of points left out for missing predictors.
    """
    if not isinstance(points, pd.DataFrame):
        raise DataError(f"noncrossing_at must be a pandas DataFrame, got {type(points).__name__}")
    specs = {m: base.frames.specs[m] for m in base.crossfit.models}
    if basis_spec is not None:
        specs[_BASIS] = basis_spec
    X, ok = design_newdata(specs, points)
    extra = {"Q": sort_base(base.crossfit.predict({m: X[m] for m in base.crossfit.models})),
             "X_basis": X.get(_BASIS)}
    return extra, int((~ok).sum())


def used_rows(data: pd.DataFrame, frames) -> pd.DataFrame:
    """The rows of ``data`` the frames kept (NA rows dropped), in the frames' order."""
    return data.iloc[frames.positions] if hasattr(frames, "positions") else data.loc[frames.index]
