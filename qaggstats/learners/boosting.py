"""Gradient-boosted trees on the pinball loss: one model per level, or per level of a grid."""
from __future__ import annotations

import functools
from typing import Optional

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from scipy.stats import norm
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import ThreadpoolController

from ..errors import DataError
from .base import (LearnerBase, _check_float, _check_int, _check_random_state, check_fit_data,
                   check_predict_data)

__all__ = ["GradientBoosting"]


class GradientBoosting(LearnerBase):
    """Histogram gradient boosting with the quantile (pinball) loss, one model per level.

    Each fitted level ``tau`` gets its own
    ``sklearn.ensemble.HistGradientBoostingRegressor(loss="quantile", quantile=tau)``; the
    levels are fitted independently, so they can cross (the pipeline sorts them).
    Early stopping is off by default so that every fold runs the same number of iterations.

    Defaults, measured at 9 levels on five random 75/25 splits of concrete, kin8nm, 20,000
    protein rows and the smooth one-predictor ``y = x + (0.5 + x) e`` (BENCHMARKS.md,
    "Boosting at 9 levels"): 30 trees of 23 leaves at rate 0.3 gave a mean WIS 4.4 %, 4.8 %
    and 2.9 % below the former 100 trees of 15 leaves at rate 0.1 on the real data (lower on
    every split) and 0.7 % above it on the smooth case, in 57 % less fitting time and less
    than half the prediction time (scikit-learn refits every leaf's value to a quantile of its
    residuals in Python, so the cost follows trees x leaves). 31 leaves did better still on
    the real data but 1.1 % worse on the smooth case; early stopping at rate 0.2 was better
    everywhere (-0.8 to -7.4 %) but saved no time on the real data.

    With more requested levels than ``grid``, only ``grid`` boosters are fitted, at levels
    evenly spaced on the normal-score scale ``Phi^-1(tau)`` between the smallest and the
    largest requested level (both included, so the tails get more of them); each row's grid
    quantiles are sorted and interpolated linearly in ``Phi^-1(tau)``, which gives
    non-crossing quantiles at every requested level. 99 levels then cost 15 models, not 99
    (6.7x faster on kin8nm), for a WIS 2.7 % above one model per level on kin8nm and 0.4 %
    below it on concrete (BENCHMARKS.md, default settings; with the former 100 trees of 15
    leaves: +0.9 % and +1.7 %). ``grid=None`` fits one model per level whatever their
    number; up to 15 requested levels (the default 7 or 9) nothing changes.

    Parameters
    ----------
    max_iter : int, default 30
        Boosting iterations (trees) per level (100 before, at rate 0.1 and 15 leaves).
    learning_rate : float, default 0.3
        Shrinkage of each tree, in (0, 1].
    max_leaf_nodes : int, default 23
        Leaves per tree (>= 2).
    min_samples_leaf : int, default 20
        Minimum training rows per leaf.
    max_depth : int or None, default None
        Maximum tree depth (None: limited by ``max_leaf_nodes`` only).
    l2_regularization : float, default 0.0
        L2 penalty on leaf values (>= 0).
    random_state : int or None, default None
        None inside :func:`qaggstats.qagg` takes a seed derived from its ``seed`` (so
        ``qagg(seed=...)`` reaches the learners you build); used alone, None draws fresh
        randomness as in scikit-learn. Used by scikit-learn for binning subsamples of large data.
    grid : int or None, default 15
        Most boosters fitted (>= 2); more requested levels are interpolated (see above).
        None: one booster per requested level.
    early_stopping : bool, default False
        Stop each booster when the pinball loss on a held-out 10 % of the rows has not
        improved for 10 iterations (scikit-learn's early stopping); with ``max_iter=100,
        learning_rate=0.2`` the most accurate setting measured, at twice the default's time.
    n_threads : int, default 1
        OpenMP threads per fit and per level's prediction. One by default because
        cross-fitting already runs folds and models in parallel (``n_jobs``): oversubscribed
        OpenMP threads made each fit about 10× slower on a busy 2-core machine (11.5 s against
        0.8 s for 600 rows). Prediction runs the levels in parallel threads instead, as many
        as joblib's context gives (every core when a fitted pipeline predicts).
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, (300, 1)); y = X[:, 0] + rng.normal(0, 0.1, 300)
    >>> gb = GradientBoosting(max_iter=30).fit(X, y, [0.1, 0.9])
    >>> gb.predict(X[:4]).shape
    (4, 2)
    """

    def __init__(self, max_iter: int = 30, learning_rate: float = 0.3, max_leaf_nodes: int = 23,
                 min_samples_leaf: int = 20, max_depth: Optional[int] = None,
                 l2_regularization: float = 0.0, random_state: Optional[int] = None,
                 grid: Optional[int] = 15, early_stopping: bool = False, n_threads: int = 1,
                 formula: Optional[str] = None) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.l2_regularization = l2_regularization
        self.random_state = random_state
        self.grid = grid
        self.early_stopping = early_stopping
        self.n_threads = n_threads
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        _check_int(self.max_iter, "max_iter", name)
        _check_float(self.learning_rate, "learning_rate", name, 0.0, True, 1.0)
        _check_int(self.max_leaf_nodes, "max_leaf_nodes", name, low=2)
        _check_int(self.min_samples_leaf, "min_samples_leaf", name)
        if self.max_depth is not None:
            _check_int(self.max_depth, "max_depth", name)
        _check_float(self.l2_regularization, "l2_regularization", name, 0.0, False)
        _check_random_state(self.random_state, name)
        if self.grid is not None:
            _check_int(self.grid, "grid", name, low=2)
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise DataError(f"{name}: early_stopping must be True or False, got {self.early_stopping!r}")
        _check_int(self.n_threads, "n_threads", name)

    def _model(self, tau: float) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss="quantile", quantile=tau, max_iter=self.max_iter,
            learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, max_depth=self.max_depth,
            l2_regularization=self.l2_regularization, early_stopping=bool(self.early_stopping),
            random_state=self.random_state,
        )

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "GradientBoosting":
        """Fit one booster per level of ``taus (r,)`` (or of the grid, see ``grid``) on
        ``X (n, d)``, ``y (n,)``; ``fit_levels_`` holds the levels fitted."""
        self._validate()
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        self.fit_levels_ = grid_levels(taus, self.grid)
        with _openmp_limit(self.n_threads):
            self.models_ = [self._model(float(t)).fit(X, y) for t in self.fit_levels_]
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` at the rows of ``X (m, d)``."""
        self._check_fitted()
        X = check_predict_data(X, self.n_features_, type(self).__name__)
        # the levels' boosters in parallel threads as joblib's context allows (one inside
        # cross-fitting tasks, every core when a fitted pipeline predicts), each with its own
        # OpenMP limit: the limit is a per-thread setting
        # (n_jobs resolved here: Parallel(n_jobs=None, prefer="threads") ignores the context)
        columns = Parallel(n_jobs=effective_n_jobs(None), prefer="threads")(
            delayed(_predict_level)(model, X, self.n_threads) for model in self.models_)
        Q = np.column_stack(columns)
        if self.fit_levels_.size == self.taus_.size:
            return Q
        return interpolate_levels(np.sort(Q, axis=1), self.fit_levels_, self.taus_)


@functools.cache
def _controller() -> ThreadpoolController:
    # one scan of the loaded libraries: threadpool_limits() rescans on every call (~9 ms,
    # a fifth of predicting 50,000 rows at one level)
    return ThreadpoolController()


def _openmp_limit(n_threads: int):
    """Hold OpenMP to ``n_threads`` in the calling thread (OpenMP's limit is per thread)."""
    return _controller().limit(limits=n_threads, user_api="openmp")


def _predict_level(model: HistGradientBoostingRegressor, X: np.ndarray, n_threads: int) -> np.ndarray:
    with _openmp_limit(n_threads):
        return np.asarray(model.predict(X), dtype=np.float64)


def grid_levels(taus: np.ndarray, grid: Optional[int]) -> np.ndarray:
    """The levels to fit: ``taus`` itself, or ``grid`` levels evenly spaced in ``Phi^-1(tau)``
    from ``taus[0]`` to ``taus[-1]`` when there are more than ``grid`` of them.

    Examples
    --------
    >>> grid_levels(np.array([0.1, 0.5, 0.9]), 15).tolist()
    [0.1, 0.5, 0.9]
    >>> np.round(grid_levels(np.arange(1, 100) / 100, 5), 3).tolist()
    [0.01, 0.122, 0.5, 0.878, 0.99]
    """
    if grid is None or taus.size <= grid:
        return taus
    levels = norm.cdf(np.linspace(norm.ppf(taus[0]), norm.ppf(taus[-1]), grid))
    levels[0], levels[-1] = taus[0], taus[-1]  # exact ends: no extrapolation
    return levels


def interpolate_levels(Q: np.ndarray, levels: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Quantiles ``(m, r)`` at ``taus`` from ``Q (m, g)`` at increasing ``levels`` (covering
    ``taus``), linear in ``Phi^-1(tau)``; non-decreasing rows stay non-decreasing.

    Examples
    --------
    >>> interpolate_levels(np.array([[0.0, 1.0, 4.0]]), np.array([0.1, 0.5, 0.9]),
    ...                    np.array([0.1, 0.5, 0.7, 0.9])).round(3).tolist()
    [[0.0, 1.0, 2.228, 4.0]]
    """
    z, zt = norm.ppf(levels), norm.ppf(taus)
    j = np.clip(np.searchsorted(z, zt, side="right") - 1, 0, z.size - 2)
    frac = np.clip((zt - z[j]) / (z[j + 1] - z[j]), 0.0, 1.0)
    return Q[:, j] * (1.0 - frac) + Q[:, j + 1] * frac
