"""Gaussian location-scale quantiles: a mean model plus a model of the absolute residual."""
from __future__ import annotations

import copy
from typing import Any, Optional

import numpy as np
from scipy.stats import norm

from ..errors import DataError
from .base import LearnerBase, _check_float, check_fit_data, check_predict_data

__all__ = ["LocationScale", "ols_fit", "ols_predict", "default_min_scale"]

# For e ~ N(0, sigma^2), E|e| = sigma * sqrt(2 / pi); this turns a fitted E|e| into sigma.
_ABS_TO_SD = np.sqrt(np.pi / 2.0)


def ols_fit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``y (n,)`` on an intercept and the non-constant columns of ``X (n, d)``.

    Constant columns are dropped and one intercept added, so a design that already has an
    intercept and a raw feature matrix give the same fit. Rank deficiency is handled by the
    minimum-norm solution (fitted values stay unique).

    Returns
    -------
    keep : (d_keep,) int
        Columns of ``X`` used.
    coef : (1 + d_keep,)
        Intercept first.

    Examples
    --------
    >>> keep, coef = ols_fit(np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]), np.array([1.0, 3.0, 5.0]))
    >>> keep, np.round(coef, 12)
    (array([1]), array([1., 2.]))
    """
    keep = np.flatnonzero(X.std(axis=0) > 0)
    A = np.column_stack([np.ones(X.shape[0]), X[:, keep]])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return keep, coef


def ols_predict(X: np.ndarray, keep: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Fitted values ``(m,)`` of :func:`ols_fit` at the rows of ``X (m, d)``."""
    return coef[0] + X[:, keep] @ coef[1:]


def default_min_scale(y: np.ndarray, abs_resid: np.ndarray) -> float:
    """Default floor on the fitted mean absolute residual: ``max(1e-3 * mean|e|, 1e-8 * max|y|)``.

    The first term keeps a linear scale model that dips below zero from giving zero-width
    quantiles; the second keeps the levels distinct in floating point when the fit is exact
    (residuals at rounding level).

    Examples
    --------
    >>> default_min_scale(np.array([1.0, -3.0]), np.array([0.5, 1.5]))
    0.001
    """
    return max(1e-3 * float(abs_resid.mean()), 1e-8 * max(float(np.abs(y).max()), 1.0))


def _check_regressor(obj: Any, name: str) -> None:
    if obj is not None and not (callable(getattr(obj, "fit", None)) and callable(getattr(obj, "predict", None))):
        raise DataError(
            f"LocationScale: {name} must be None (least squares) or a regressor with fit(X, y) "
            f"and predict(X), got {type(obj).__name__}"
        )


class LocationScale(LearnerBase):
    """Gaussian location-scale quantiles: ``q_tau(x) = mu(x) + sigma(x) * z_tau``.

    Two regressions are fitted on ``X``: the mean ``mu(x)`` (least squares by default) and the
    mean absolute residual ``s(x) = E|y - mu(x)|`` (least squares of the in-sample absolute
    residuals by default), floored at ``min_scale``. If the error is Gaussian,
    ``e ~ N(0, sigma^2)``, then ``E|e| = sigma * sqrt(2 / pi)``, so
    ``sigma(x) = s(x) * sqrt(pi / 2)`` and

        ``q_tau(x) = mu(x) + s(x) * sqrt(pi / 2) * Phi^{-1}(tau)``.

    Modelling ``|e|`` rather than ``e^2`` is robust to outliers and keeps the scale linear in
    ``x`` when the spread grows linearly. The levels never cross (``s(x) > 0``).

    Parameters
    ----------
    mean_model : sklearn-style regressor or None, default None
        Model of the mean; None is ordinary least squares with an intercept. Deep-copied before
        fitting. (A flexible model overfits in-sample, shrinking the residuals the scale
        model sees; prefer smooth models here.)
    scale_model : sklearn-style regressor or None, default None
        Model of the absolute residual; None is least squares with an intercept.
    min_scale : float or None, default None
        Floor on ``s(x)``; None uses :func:`default_min_scale`.
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.0], [1.0], [1.0]]); y = np.array([-1.0, 1.0, 0.0, 4.0])
    >>> q = LocationScale().fit(X, y, [0.5]).predict(X[[0, 2]])
    >>> np.allclose(q, [[0.0], [2.0]])
    True
    """

    def __init__(self, mean_model: Any = None, scale_model: Any = None,
                 min_scale: Optional[float] = None, formula: Optional[str] = None) -> None:
        self.mean_model = mean_model
        self.scale_model = scale_model
        self.min_scale = min_scale
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        _check_regressor(self.mean_model, "mean_model")
        _check_regressor(self.scale_model, "scale_model")
        if self.min_scale is not None:
            _check_float(self.min_scale, "min_scale", type(self).__name__)

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "LocationScale":
        """Fit the mean to ``y (n,)`` and the scale to the absolute residuals, on ``X (n, d)``."""
        self._validate()
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        self.mean_ = self._fit_one(self.mean_model, X, y)
        abs_resid = np.abs(y - self._predict_one(self.mean_, X))
        self.scale_ = self._fit_one(self.scale_model, X, abs_resid)
        self.min_scale_ = float(self.min_scale) if self.min_scale is not None else default_min_scale(y, abs_resid)
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    @staticmethod
    def _fit_one(model: Any, X: np.ndarray, y: np.ndarray) -> Any:
        if model is None:
            return ols_fit(X, y)
        return copy.deepcopy(model).fit(X, y)

    @staticmethod
    def _predict_one(fitted: Any, X: np.ndarray) -> np.ndarray:
        if isinstance(fitted, tuple):
            return ols_predict(X, *fitted)
        return np.asarray(fitted.predict(X), dtype=np.float64).reshape(X.shape[0])

    def predict_location_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean ``mu (m,)`` and the Gaussian standard deviation ``sigma (m,)`` at ``X (m, d)``.

        Examples
        --------
        >>> X = np.array([[0.0], [0.0], [1.0], [1.0]]); y = np.array([-1.0, 1.0, 0.0, 4.0])
        >>> mu, sigma = LocationScale().fit(X, y, [0.5]).predict_location_scale(X[[0, 2]])
        >>> np.allclose(mu, [0.0, 2.0]), np.allclose(sigma / np.sqrt(np.pi / 2), [1.0, 2.0])
        (True, True)
        """
        self._check_fitted()
        X = check_predict_data(X, self.n_features_, type(self).__name__)
        mu = self._predict_one(self.mean_, X)
        s = np.maximum(self._predict_one(self.scale_, X), self.min_scale_)
        return mu, s * _ABS_TO_SD

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)``: ``mu(x) + s(x) * sqrt(pi/2) * Phi^{-1}(tau)``."""
        mu, sigma = self.predict_location_scale(X)
        return mu[:, None] + sigma[:, None] * norm.ppf(self.taus_)[None, :]
