"""k-nearest-neighbour quantiles on standardised features."""
from __future__ import annotations

from typing import Optional

import numpy as np
from joblib import effective_n_jobs
from scipy.spatial import cKDTree

from ..errors import DataError
from .base import LearnerBase, _check_int, check_fit_data, check_predict_data

__all__ = ["KNN", "default_k"]

# The default k: 30 neighbours where there are rows for it, else half the training rows, so
# that a fold of a small data set still averages over several neighbours instead of failing.
DEFAULT_K = 30


def default_k(n: int) -> int:
    """The number of neighbours ``KNN(k=None)`` uses on ``n`` training rows: ``min(30, max(1, n // 2))``.

    Half the rows keeps the neighbourhoods local (a row's k nearest are at most half the data)
    while averaging enough responses for the outer levels; from 60 rows on it is 30.

    Examples
    --------
    >>> default_k(16), default_k(59), default_k(60), default_k(1)
    (8, 29, 30, 1)
    """
    return min(DEFAULT_K, max(1, n // 2))


def standardizer(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of ``X (n, d)`` that vary, with their mean and standard deviation (ddof=0).

    Constant columns (such as a design's intercept) carry no distance information and would
    divide by zero, so they are left out.

    Examples
    --------
    >>> keep, mean, sd = standardizer(np.array([[1.0, 0.0], [1.0, 2.0]]))
    >>> keep, mean, sd
    (array([1]), array([1.]), array([1.]))
    """
    sd = X.std(axis=0)
    keep = np.flatnonzero(sd > 0)
    return keep, X[:, keep].mean(axis=0), sd[keep]


class KNN(LearnerBase):
    """Empirical quantiles of the responses of the k nearest training rows.

    The non-constant columns of ``X`` are standardised with the training mean and standard
    deviation (ddof=0); constant columns (e.g. the intercept) are ignored. Distances are
    Euclidean, searched exactly in a k-d tree (``scipy.spatial.cKDTree``, built from the stored
    training rows at each ``predict``: milliseconds, against a query 1.7-1.9x faster than
    scikit-learn's tree on 50,000 protein rows), or, from 40 varying columns on (a many-level
    factor), by blocked matrix products, which are faster there; ties in distance are broken
    deterministically but arbitrarily.

    The quantile at level ``tau`` of the k neighbour responses ``y_(1) <= ... <= y_(k)`` is
    the Weibull plotting-position quantile (Hyndman-Fan type 6,
    ``numpy.quantile(method="weibull")``): ``y_(h)`` at position ``h = tau * (k + 1)``,
    interpolating linearly between order statistics and clamped to ``[y_(1), y_(k)]``. Since
    ``E F(y_(j)) = j / (k + 1)`` for k draws from a continuous F, this position makes the
    expected coverage of a new draw equal to ``tau``; the type 1 quantile ``y_(ceil(k tau))``
    would under-cover upper levels by about ``tau / (k + 1)``. A training row is its own
    nearest neighbour when predicting in-sample.

    Parameters
    ----------
    k : int or None, default None
        Number of neighbours; a given k must not exceed the number of training rows. None
        adapts to the rows each fit sees: :func:`default_k` (30, or half the training rows
        when they are fewer than 60); the value used is ``k_`` after ``fit``.
    n_jobs : int or None, default None
        Threads of the neighbour search (-1: all cores); None follows joblib's context: one
        thread inside cross-fitting tasks, every core when a fitted pipeline predicts.
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(5.0).reshape(-1, 1); y = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    >>> KNN(k=3).fit(X, y, [0.1, 0.5, 0.625]).predict([[0.9]])
    array([[10., 20., 25.]])
    >>> KNN().fit(X, y, [0.5]).k_  # the default on 5 rows: half of them
    2
    """

    def __init__(self, k: Optional[int] = None, n_jobs: Optional[int] = None, formula: Optional[str] = None) -> None:
        self.k = k
        self.n_jobs = n_jobs
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        if self.k is not None:
            _check_int(self.k, "k", name)
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool)
                                        or not isinstance(self.n_jobs, (int, np.integer)) or self.n_jobs == 0):
            raise DataError(f"{name}: n_jobs must be None or a non-zero integer (-1: all cores), "
                            f"got {self.n_jobs!r}")

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "KNN":
        """Store the standardised training rows ``X (n, d)`` and ``y (n,)``."""
        self._validate()
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        if self.k is not None and self.k > X.shape[0]:
            raise DataError(f"KNN: k={self.k} exceeds the {X.shape[0]} training rows; lower k "
                            "(or leave it unset: KNN() adapts k to the training rows)")
        self.k_ = default_k(X.shape[0]) if self.k is None else int(self.k)
        self.keep_, self.mean_, self.sd_ = standardizer(X)
        # the rows, not a tree: a saved fit stays plain arrays, and the tree takes milliseconds
        self.points_ = self._scale(X)
        self.y_ = y
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        if self.keep_.size == 0:
            # all columns constant: every row is equally near; one zero column keeps sklearn happy
            return np.zeros((X.shape[0], 1))
        return (X[:, self.keep_] - self.mean_) / self.sd_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` of the k nearest neighbours' responses for each row of ``X``."""
        self._check_fitted()
        X = check_predict_data(X, self.n_features_, type(self).__name__)
        if X.shape[0] == 0:
            return np.empty((0, self.taus_.size))
        queries = self._scale(X)
        if self.points_.shape[1] >= BRUTE_FORCE_COLUMNS:
            idx = _nearest_brute(self.points_, queries, self.k_)
        else:
            # leaves of 64 rows: the fastest of 16-128 for k = 10 and 30 on protein and kin8nm
            tree = cKDTree(self.points_, leafsize=64)
            _, idx = tree.query(queries, k=[*range(1, self.k_ + 1)], workers=effective_n_jobs(self.n_jobs))
        neighbours = self.y_[idx]  # (m, k); the quantiles do not depend on the neighbours' order
        return np.quantile(neighbours, self.taus_, axis=1, method="weibull").T.astype(np.float64)


# From this many varying design columns on, the exact search is a blocked matrix product
# instead of a k-d tree: a tree prunes little in many dimensions and degrades further on the
# ties of one-hot factor columns (a 500-level factor: 3.3 s against 0.17 s per 1,000 queries of
# 4,000 rows; the two are equal near 40 Gaussian columns; benchmarks/knn_wide.py).
BRUTE_FORCE_COLUMNS = 40
_BLOCK_CELLS = 1 << 21  # distances held at once: 16 MB of float64


def _nearest_brute(points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions ``(m, k)`` of the k rows of ``points (n, d)`` nearest to each query, in no order.

    Squared distances as ``|p|^2 - 2 q.p`` (``|q|^2`` is the same for every p of a query),
    ``_BLOCK_CELLS`` at a time so memory stays bounded for any n.

    Examples
    --------
    >>> P = np.array([[0.0], [1.0], [5.0]])
    >>> np.sort(_nearest_brute(P, np.array([[0.9], [4.0]]), 2), axis=1)
    array([[0, 1],
           [1, 2]])
    """
    norms = np.einsum("ij,ij->i", points, points)
    out = np.empty((queries.shape[0], k), dtype=np.intp)
    step = max(1, _BLOCK_CELLS // points.shape[0])
    for start in range(0, queries.shape[0], step):
        d2 = norms[None, :] - 2.0 * (queries[start:start + step] @ points.T)
        out[start:start + step] = np.argpartition(d2, k - 1, axis=1)[:, :k]
    return out
