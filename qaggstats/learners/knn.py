"""k-nearest-neighbour quantiles on standardised features."""
from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.neighbors import NearestNeighbors

from ..errors import DataError
from .base import LearnerBase, _check_int, check_fit_data, check_predict_data

__all__ = ["KNN"]


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
    Euclidean (``sklearn.neighbors.NearestNeighbors`` with ``algorithm="auto"``: a tree for
    large n in few dimensions; ties in distance are broken deterministically but arbitrarily).

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
    k : int, default 30
        Number of neighbours; must not exceed the number of training rows.
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(5.0).reshape(-1, 1); y = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    >>> KNN(k=3).fit(X, y, [0.1, 0.5, 0.625]).predict([[0.9]])
    array([[10., 20., 25.]])
    """

    def __init__(self, k: int = 30, formula: Optional[str] = None) -> None:
        self.k = k
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        _check_int(self.k, "k", type(self).__name__)

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "KNN":
        """Store the standardised training rows ``X (n, d)`` and ``y (n,)``."""
        self._validate()
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        if self.k > X.shape[0]:
            raise DataError(f"KNN: k={self.k} exceeds the {X.shape[0]} training rows; lower k")
        self.keep_, self.mean_, self.sd_ = standardizer(X)
        # "auto" picks a k-d or ball tree for large n in low dimension: brute force made one
        # fold at n = 1e6 take ~280 s. Ties at equal distance may then resolve differently
        # than by brute force, but always the same way for the same data.
        self.nn_ = NearestNeighbors(n_neighbors=self.k, algorithm="auto").fit(self._scale(X))
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
        idx = self.nn_.kneighbors(self._scale(X), return_distance=False)
        neighbours = self.y_[idx]  # (m, k)
        return np.quantile(neighbours, self.taus_, axis=1, method="weibull").T.astype(np.float64)
