"""Cross-fitting: out-of-fold quantile predictions of every base learner.

Rows are split into K folds; each learner is fitted K times, each time leaving one fold out and
predicting it, which gives the out-of-fold array ``Q (n, p, r)`` that the aggregation weights are
fitted on. Each learner is also refitted on all rows for prediction on new data, and the K fold
models are kept for CV+ conformal intervals.

Every fit is a task of the pure function :func:`fit_task` ``(learner, X_train, y_train, X_test,
taus) -> TaskResult``, run through joblib or, with ``backend="dask"`` or a Client, on a
``dask.distributed`` cluster (:mod:`qaggstats.distributed`); results do not depend on ``n_jobs``
or the backend, because each task gets its own deep copy of the learner with a seed fixed in
advance. By default every core is used (``n_jobs=-1``); inside a task, BLAS/OpenMP pools and
nested joblib calls are held to one thread, so parallel tasks do not oversubscribe the cores
(and a learner's result does not depend on how many threads its libraries happened to get).

Examples
--------
>>> import numpy as np
>>> from qaggstats.learners import KNN, LocationScale
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(0, 1, (100, 1)); y = x[:, 0] + rng.normal(0, 0.1, 100)
>>> cf = crossfit({"knn": KNN(k=10), "ls": LocationScale()}, {"knn": x, "ls": x}, y,
...               [0.1, 0.5, 0.9], cv=5, seed=1)
>>> cf.Q.shape, cf.models, np.bincount(cf.folds).tolist()
((100, 2, 3), ['knn', 'ls'], [20, 20, 20, 20, 20])
>>> cf.predict({"knn": x[:4], "ls": x[:4]}).shape
(4, 2, 3)
"""
from __future__ import annotations

import contextlib
import copy
import pickle
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator, Mapping, Optional

import numpy as np
from joblib import Parallel, delayed, parallel_config
from threadpoolctl import threadpool_limits

from . import distributed
from .errors import DataError, FitError, QaggError
from .learners.base import check_learner, check_predictions, check_taus
from .progress import ProgressFn, as_progress

__all__ = ["make_folds", "crossfit", "crossfit_pairs", "CrossFit", "fit_task", "TaskResult", "BACKENDS", "one_thread"]

BACKENDS = ("loky", "threading")  # joblib's; "dask" or a Client go to qaggstats.distributed
STAGE = "cross-fitting"


def make_folds(n: int, cv: int, seed: int) -> np.ndarray:
    """Balanced random fold ids ``(n,)`` in ``0..cv-1`` (fold sizes differ by at most one).

    Parameters
    ----------
    n : int
        Number of rows.
    cv : int
        Number of folds, at least 2 and at most ``n``.
    seed : int
        Seed of the ``numpy.random.Generator`` that permutes the fold labels.

    Raises
    ------
    DataError
        ``cv`` not an integer >= 2, or fewer rows than folds.

    Examples
    --------
    >>> make_folds(7, 3, seed=0).tolist()
    [2, 1, 0, 0, 2, 0, 1]
    """
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise DataError(f"cv must be an integer number of folds >= 2, got {cv!r}")
    if n < cv:
        raise DataError(f"cannot cross-fit {n} rows with cv={cv} folds: fewer rows than folds")
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % cv).astype(np.int64)


def predict_learner(learner: Any, X: np.ndarray, name: str, r: int, where: str, n_jobs: Optional[int]) -> np.ndarray:
    """A fitted learner's quantiles ``(m, r)`` at ``X (m, d)``, checked; ``n_jobs`` is the joblib
    context its prediction may use. A failure that is not a qaggstats error becomes a
    :class:`~qaggstats.errors.FitError` naming the learner and ``where``.

    Examples
    --------
    >>> class Broken:
    ...     def predict(self, X): raise ValueError("no")
    >>> predict_learner(Broken(), np.zeros((2, 1)), "b", 3, " on new data", 1)
    Traceback (most recent call last):
    ...
    qaggstats.errors.FitError: learner 'b' failed to predict on new data: ValueError: no
    """
    try:
        with parallel_config(n_jobs=n_jobs):
            pred = learner.predict(X)
    except QaggError:
        raise
    except Exception as err:
        raise FitError(f"learner {name!r} failed to predict{where}: {type(err).__name__}: {err}") from err
    return check_predictions(pred, X.shape[0], r, name, where)


@dataclass
class TaskResult:
    """Outcome of one fit: predictions on the test rows, the fitted learner, time, or an error."""

    pred: Optional[np.ndarray]
    learner: Any
    seconds: float
    error: Optional[BaseException] = None
    error_text: str = ""


def fit_task(learner: Any, X_train: np.ndarray, y_train: np.ndarray, X_test: Optional[np.ndarray],
             taus: np.ndarray) -> TaskResult:
    """Fit a deep copy of ``learner`` and predict ``X_test (m, d)`` (None: no prediction).

    A pure function of its arguments (the learner passed in is not modified), so it can run in
    any worker. Errors are returned, not raised, so that other tasks can finish and the caller
    decides (raise or drop the learner).

    Examples
    --------
    >>> from qaggstats.learners import KNN
    >>> X = np.arange(6.0).reshape(-1, 1); y = np.arange(6.0)
    >>> res = fit_task(KNN(k=2), X[:4], y[:4], X[4:], np.array([0.5]))
    >>> res.pred.tolist(), res.error
    ([[2.5], [2.5]], None)
    """
    start = time.perf_counter()
    model = copy.deepcopy(learner)
    try:
        with one_thread():
            model.fit(X_train, y_train, taus)
            pred = None if X_test is None else model.predict(X_test)
    except Exception as err:  # any learner failure becomes a FitError (or a drop) upstream
        text = f"{type(err).__name__}: {err}"
        return TaskResult(None, None, time.perf_counter() - start, _portable(err, text), text)
    return TaskResult(pred, model, time.perf_counter() - start)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Hold BLAS/OpenMP pools and joblib calls that leave ``n_jobs`` unset to one thread.

    Tasks already run in parallel, one per core; threads inside a task would oversubscribe
    (scikit-learn's OpenMP boosting ran ~10x slower that way on a busy 2-core machine).
    """
    with threadpool_limits(limits=1), parallel_config(n_jobs=1):
        yield


def _portable(err: BaseException, text: str) -> BaseException:
    """``err`` if it survives pickling (results travel back from worker processes), else a
    RuntimeError carrying its text; an unpicklable exception would break the whole pool."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(text)
    return err


def _learner_seed(seed: int, j: int) -> int:
    """Seed for the j-th learner: its own stream, independent of the fold assignment."""
    return int(np.random.SeedSequence([seed, 2, j]).generate_state(1)[0])


def _seeded(learner: Any, seed: int) -> Any:
    """A deep copy whose ``random_state`` is ``seed`` when it was None."""
    clone = copy.deepcopy(learner)
    if hasattr(clone, "random_state") and clone.random_state is None:
        clone.random_state = seed
    return clone


@dataclass
class CrossFit:
    """Out-of-fold predictions and the fitted learners.

    Attributes
    ----------
    Q : (n, p, r) ndarray
        Out-of-fold quantile predictions, models in the order of ``models``.
    folds : (n,) int ndarray
        Fold id of each row.
    models : list of str
        Names of the learners kept (those not dropped), in input order.
    taus : (r,) ndarray
        Quantile levels.
    fitted : dict name -> learner
        Each learner refitted on all rows (used by :meth:`predict`).
    fold_models : dict name -> list of learner
        The K learners fitted without fold k (used by :meth:`predict_folds` and CV+).
    seconds : dict name -> float
        Fitting time of each learner, summed over its K fold fits and the refit.
    dropped : dict name -> str
        Learners dropped with ``on_error="drop"`` and why.
    n_jobs : int
        Threads for prediction on new data (joblib's ``n_jobs``, -1: all cores), used by
        learners that leave their own ``n_jobs`` unset (e.g. the forest's tree traversal).
    """

    Q: np.ndarray
    folds: np.ndarray
    models: list[str]
    taus: np.ndarray
    fitted: dict[str, Any]
    fold_models: dict[str, list[Any]]
    seconds: dict[str, float]
    dropped: dict[str, str] = field(default_factory=dict)
    n_jobs: int = -1

    @property
    def cv(self) -> int:
        """Number of folds K."""
        return len(next(iter(self.fold_models.values())))

    def _designs(self, X_new: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [name for name in self.models if name not in X_new]
        if missing:
            raise DataError(f"no design matrix given for model {missing[0]!r}")
        designs = {name: np.asarray(X_new[name], dtype=np.float64) for name in self.models}
        rows = {name: X.shape[0] for name, X in designs.items()}
        if len(set(rows.values())) != 1:
            raise DataError(f"design matrices have different numbers of rows: {rows}")
        return designs

    def _predict_with(self, learners: Mapping[str, Any], designs: Mapping[str, np.ndarray],
                      where: str) -> np.ndarray:
        m = next(iter(designs.values())).shape[0]
        r = self.taus.size
        if m == 0:  # e.g. every new row had a missing predictor; some learners reject 0 rows
            return np.empty((0, len(self.models), r))
        return np.stack([predict_learner(learners[name], designs[name], name, r, where, self.n_jobs)
                         for name in self.models], axis=1)

    def predict(self, X_new: Mapping[str, Any]) -> np.ndarray:
        """Quantiles ``(m, p, r)`` from the learners refitted on all rows.

        Parameters
        ----------
        X_new : mapping name -> (m, d_name) ndarray
            The design of each model for the same m new rows.
        """
        return self._predict_with(self.fitted, self._designs(X_new), " on new data")

    def predict_folds(self, X_new: Mapping[str, Any]) -> np.ndarray:
        """Quantiles ``(K, m, p, r)`` from each of the K fold models (for CV+)."""
        designs = self._designs(X_new)
        return np.stack([
            self._predict_with({name: self.fold_models[name][k] for name in self.models}, designs,
                               f" (fold model {k + 1} of {self.cv}) on new data")
            for k in range(self.cv)
        ])


def _check_inputs(learners: Mapping[str, Any], X: Mapping[str, Any], y: Any, taus: Any,
                  on_error: str, backend: Any, n_jobs: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    if not isinstance(learners, Mapping) or not learners:
        raise DataError("learners must be a non-empty mapping name -> learner")
    if on_error not in ("raise", "drop"):
        raise DataError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    if not (_is_joblib(backend) or _is_dask(backend) or distributed.is_client(backend)):
        raise DataError(f"backend {backend!r} is not supported; choose from {', '.join(BACKENDS)}, "
                        "'dask' or a dask.distributed Client")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise DataError(f"n_jobs must be a non-zero integer (-1: all cores), got {n_jobs!r}")
    y_a = np.asarray(y, dtype=np.float64)
    if y_a.ndim != 1 or not np.all(np.isfinite(y_a)):
        raise DataError(f"y must be a finite 1-d array, got shape {y_a.shape}")
    designs = {}
    for name, learner in learners.items():
        check_learner(learner, name)
        if name not in X:
            raise DataError(f"no design matrix given for model {name!r}")
        Xj = np.asarray(X[name], dtype=np.float64)
        if Xj.ndim != 2 or Xj.shape[0] != y_a.size:
            raise DataError(
                f"design of model {name!r} has shape {Xj.shape}; expected ({y_a.size}, d) to match y"
            )
        designs[name] = Xj
    return designs, y_a, check_taus(taus, "crossfit")


def _is_joblib(backend: Any) -> bool:
    return isinstance(backend, str) and backend in BACKENDS


def _is_dask(backend: Any) -> bool:
    return isinstance(backend, str) and backend == "dask"


def _run(calls: list[tuple], n_jobs: int, backend: Any) -> Generator[TaskResult, None, None]:
    """Results of ``fit_task(*args)`` for each argument tuple, in order, as they complete.

    The one place that knows about the execution backend: joblib here, or a Dask Client
    (resolved now, so a missing Client fails before any work) that maps :func:`fit_task`
    over ``calls`` and yields the results in order.
    """
    if _is_joblib(backend):
        return _run_joblib(calls, n_jobs, backend)
    return distributed.run_tasks(distributed.resolve_client(backend), fit_task, calls)


def _run_joblib(calls: list[tuple], n_jobs: int, backend: str) -> Generator[TaskResult, None, None]:
    runner = Parallel(n_jobs=int(n_jobs), backend=backend, return_as="generator")
    results = runner(delayed(fit_task)(*args) for args in calls)
    try:
        # not ``yield from``: that would close ``results`` before the warning filter is set
        for res in results:
            yield res
    finally:
        with warnings.catch_warnings():
            # a caller that stops early (a failure) abandons queued tasks on purpose
            warnings.filterwarnings("ignore", category=UserWarning, module=r"joblib\.parallel")
            results.close()


def _tasks(learners: Mapping[str, Any], designs: Mapping[str, np.ndarray], y: np.ndarray,
           folds: np.ndarray, cv: int, taus: np.ndarray, seed: int) -> Iterator[tuple]:
    """(name, k, arguments of fit_task); k = cv is the refit on all rows."""
    for j, (name, learner) in enumerate(learners.items()):
        seeded = _seeded(learner, _learner_seed(seed, j))
        Xj = designs[name]
        for k in range(cv):
            test = folds == k
            yield name, k, (seeded, Xj[~test], y[~test], Xj[test], taus)
        yield name, cv, (seeded, Xj, y, None, taus)


def crossfit(learners: Mapping[str, Any], X: Mapping[str, Any], y: Any, taus: Any, cv: int = 5,
             seed: int = 0, n_jobs: int = -1, progress: Optional[ProgressFn] = None,
             on_error: str = "raise", backend: Any = "loky") -> CrossFit:
    """K-fold out-of-fold predictions of every learner, plus refits on all rows.

    Parameters
    ----------
    learners : mapping name -> learner
        Base learners (see :class:`qaggstats.learners.QuantileLearner`); not modified: each fit
        uses a deep copy, whose ``random_state`` (if it has one and it is None) is set from
        ``seed``.
    X : mapping name -> (n, d_name) ndarray
        Design matrix of each learner (same rows).
    y : (n,) ndarray
        Response.
    taus : (r,) array-like
        Quantile levels, strictly increasing in (0, 1).
    cv : int, default 5
        Number of folds (>= 2, <= n).
    seed : int, default 0
        Seed of the fold assignment and of learners whose ``random_state`` is None.
    n_jobs : int, default -1
        Parallel joblib workers (-1: all cores, -2: all but one, 1: sequential). Each task
        runs single-threaded inside (see :func:`one_thread`). Results are bitwise identical
        for every value.
        Ignored by the Dask backend, where the cluster's workers decide.
    progress : callable, optional
        ``progress("cross-fitting", done, total)`` after each task; total is
        ``p * (cv + 1)`` (K fold fits and one refit per learner).
    on_error : {"raise", "drop"}, default "raise"
        What to do when a learner fails (raises, or predicts a wrong shape or non-finite
        values): raise :class:`~qaggstats.errors.FitError`, or drop the learner, record why in
        ``CrossFit.dropped`` and continue.
    backend : {"loky", "threading", "dask"} or dask.distributed.Client, default "loky"
        joblib backend (processes or threads); ``"dask"`` runs the tasks on the current
        ``dask.distributed`` Client and a Client instance on that Client (Dask is optional:
        ``pip install 'qaggstats[dask]'``). Results are bitwise identical on every backend.

    Returns
    -------
    CrossFit

    Raises
    ------
    DataError
        Bad inputs, fewer rows than folds, or ``backend="dask"`` without a running Client or
        without Dask installed.
    FitError
        A learner failed (message names the learner, the fold and the original error), or every
        learner was dropped.

    Examples
    --------
    >>> from qaggstats.learners import KNN
    >>> X = np.arange(20.0).reshape(-1, 1); y = np.arange(20.0)
    >>> cf = crossfit({"knn": KNN(k=3)}, {"knn": X}, y, [0.5], cv=4, seed=0)
    >>> cf.Q.shape, cf.cv, cf.dropped
    ((20, 1, 1), 4, {})
    """
    designs, y_a, t = _check_inputs(learners, X, y, taus, on_error, backend, n_jobs)
    folds = make_folds(y_a.size, cv, seed)
    report = as_progress(progress)
    tasks = list(_tasks(learners, designs, y_a, folds, cv, t, seed))
    total = len(tasks)
    report(STAGE, 0, total)
    results = _run([args for _, _, args in tasks], n_jobs, backend)

    n, r = y_a.size, t.size
    oof = {name: np.empty((n, r)) for name in learners}
    fold_models: dict[str, list[Any]] = {name: [None] * cv for name in learners}
    fitted: dict[str, Any] = {}
    seconds = dict.fromkeys(learners, 0.0)
    dropped: dict[str, str] = {}
    for done, ((name, k, _), res) in enumerate(zip(tasks, results), start=1):
        report(STAGE, done, total)
        if name in dropped:
            continue
        where = f" in fold {k + 1} of {cv}" if k < cv else " when refitted on all rows"
        seconds[name] += res.seconds
        try:
            if res.error is not None:
                raise FitError(f"learner {name!r} failed{where}: {res.error_text}") from res.error
            if k < cv:
                oof[name][folds == k] = check_predictions(res.pred, int(np.sum(folds == k)), r, name, where)
        except FitError as err:
            if on_error == "raise":
                results.close()  # stop the queued tasks
                raise
            dropped[name] = str(err)
            continue
        if k < cv:
            fold_models[name][k] = res.learner
        else:
            fitted[name] = res.learner

    kept = [name for name in learners if name not in dropped]
    if not kept:
        raise FitError("every learner failed and was dropped: " + "; ".join(dropped.values()))
    return CrossFit(
        Q=np.stack([oof[name] for name in kept], axis=1),
        folds=folds,
        models=kept,
        taus=t,
        fitted={name: fitted[name] for name in kept},
        fold_models={name: fold_models[name] for name in kept},
        seconds={name: seconds[name] for name in kept},
        dropped=dropped,
        n_jobs=int(n_jobs),
    )


def crossfit_pairs(learners: Mapping[str, Any], X: Mapping[str, Any], y: Any, taus: Any, folds: np.ndarray,
                   models: list[str], seed: int = 0, n_jobs: int = -1, progress: Optional[ProgressFn] = None,
                   backend: Any = "loky") -> np.ndarray:
    """Leave-two-folds-out predictions, the inner out-of-fold arrays of nested CV+.

    For every pair of folds ``j < k`` each learner is fitted without both and predicts the rows
    of both; ``Q_pairs[k][i]`` (for ``i`` outside fold ``k``) is then the prediction at row ``i``
    of the model fitted without folds ``k`` and ``fold(i)``: exactly the out-of-fold array that
    the aggregation refitted without fold ``k`` is trained on (Fakoor et al. 2023, nested
    conformal). ``K (K - 1) / 2`` fits per learner, each on ``(K - 2) / K`` of the rows.

    Parameters
    ----------
    learners : mapping name -> learner
        The learners given to :func:`crossfit` (same order: it fixes each learner's seed).
    X, y, taus, seed, n_jobs, progress, backend
        As for :func:`crossfit`.
    folds : (n,) int ndarray
        The fold ids of the cross-fit (``CrossFit.folds``), ``K >= 3`` folds.
    models : list of str
        The learners to fit (``CrossFit.models``: those not dropped).

    Returns
    -------
    (K, n, p, r) ndarray
        NaN on the rows of fold ``k`` of ``Q_pairs[k]``; models in the order of ``models``.

    Raises
    ------
    DataError
        Fewer than 3 folds (two left out would leave nothing to train on).
    FitError
        A learner failed on a pair of folds (message names the learner and the folds).

    Examples
    --------
    >>> from qaggstats.learners import KNN
    >>> X = np.arange(30.0).reshape(-1, 1); y = np.arange(30.0)
    >>> folds = make_folds(30, 3, seed=0)
    >>> Qp = crossfit_pairs({"knn": KNN(k=3)}, {"knn": X}, y, [0.5], folds, ["knn"])
    >>> Qp.shape, bool(np.isnan(Qp[0][folds == 0]).all()), bool(np.isfinite(Qp[0][folds != 0]).all())
    ((3, 30, 1, 1), True, True)
    """
    designs, y_a, t = _check_inputs(learners, X, y, taus, "raise", backend, n_jobs)
    f = np.asarray(folds)
    cv = int(f.max()) + 1
    if cv < 3:
        raise DataError(f"nested CV+ leaves two folds out of every inner fit and needs cv >= 3 folds, got cv={cv}")
    report = as_progress(progress)
    tasks = []
    for j, (name, learner) in enumerate(learners.items()):
        if name not in models:
            continue
        seeded = _seeded(learner, _learner_seed(seed, j))
        Xj = designs[name]
        for a in range(cv):
            for b in range(a + 1, cv):
                out = (f == a) | (f == b)
                tasks.append((name, a, b, (seeded, Xj[~out], y_a[~out], Xj[out], t)))
    stage = "cross-fitting (nested CV+)"
    report(stage, 0, len(tasks))
    results = _run([args for *_, args in tasks], n_jobs, backend)
    Q = np.full((cv, y_a.size, len(models), t.size), np.nan)
    for done, ((name, a, b, _), res) in enumerate(zip(tasks, results), start=1):
        report(stage, done, len(tasks))
        where = f" without folds {a + 1} and {b + 1} of {cv} (nested CV+)"
        if res.error is not None:
            results.close()
            raise FitError(f"learner {name!r} failed{where}: {res.error_text}; drop it or use "
                           "conformal='cqr'") from res.error
        out = (f == a) | (f == b)
        pred = check_predictions(res.pred, int(out.sum()), t.size, name, where)
        m, in_b = models.index(name), f[out] == b
        Q[a, np.flatnonzero(out)[in_b], m] = pred[in_b]    # rows of fold b, model without a (and b)
        Q[b, np.flatnonzero(out)[~in_b], m] = pred[~in_b]  # rows of fold a, model without b (and a)
    return Q
