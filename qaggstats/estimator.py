"""A scikit-learn estimator around :func:`qaggstats.qagg`, for arrays, pipelines and searches.

:class:`QuantileAggregator` fits the whole qaggstats chain (cross-fitted base learners, convex
aggregation, monotone post-processing, optional conformal calibration) on ``X (n, d)`` and
``y (n,)`` and predicts an ``(m, r)`` array of quantiles, one column per level. Its ``score`` is
minus the weighted interval score, so "greater is better" holds for model selection.

Examples
--------
>>> import numpy as np
>>> import qaggstats as qa
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(80, 2)); y = X[:, 0] + rng.normal(size=80)
>>> est = qa.QuantileAggregator(taus=[0.1, 0.5, 0.9], cv=3,
...                             models={"linear": qa.learners.LinearQR()})
>>> est.fit(X, y).predict(X[:2]).shape
(2, 3)
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .errors import DataError
from .scoring import wis

__all__ = ["QuantileAggregator", "SKLEARN_EXPECTED_FAILED_CHECKS"]

# The response column of the frame handed to qagg; features are x0, ..., x{d-1}. Fixed names
# (not the caller's column names) keep every formula valid, whatever the feature names are.
_RESPONSE = "y"

# scikit-learn's estimator checks that cannot pass by design, with the reason. scikit-learn 1.6+
# takes these as ``check_estimator(est, expected_failed_checks=...)`` or
# ``parametrize_with_checks([est], expected_failed_checks=lambda est: ...)`` (the old
# ``_xfail_checks`` tag is gone).
SKLEARN_EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_regressors_train": (
        "predict returns one column per quantile level, shape (n, levels), while the check "
        "requires predictions shaped like y (n,)"
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "weights are not equivalent to repeated rows: repeating a row changes the cross-fitting "
        "folds and sample_weight weights only the aggregation step, not the base learners; "
        "the check also sets cv to a list of splits, and cv is a number of folds"
    ),
}


def _checked(validate: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a scikit-learn validator, re-raising its ValueError as a DataError (same message).

    DataError is a ValueError, so scikit-learn's conventions still hold for callers that catch
    ValueError; qaggstats callers catch QaggError as everywhere else in the package.
    """
    try:
        return validate(*args, **kwargs)
    except DataError:
        raise
    except ValueError as err:
        raise DataError(str(err)) from err


def _feature_columns(d: int) -> list[str]:
    return [f"x{j}" for j in range(d)]


def _call_qagg(formula: str, data: pd.DataFrame, family: str, **kwargs: Any):
    """``qagg(formula, data, family=family, **kwargs)``, importing the pipeline on first fit."""
    from .pipeline import qagg  # the pipeline loads cvxpy: import it on first fit, not on import

    return qagg(formula, data, family=family, **kwargs)


class QuantileAggregator(RegressorMixin, BaseEstimator):
    """Aggregated quantile regression as a scikit-learn regressor (see :func:`qaggstats.qagg`).

    ``fit(X, y)`` builds a frame with features ``x0, ..., x{d-1}`` and response ``y`` and runs
    :func:`qaggstats.qagg` with the formula ``y ~ x0 + ... + x{d-1}``; ``predict(X)`` returns
    the aggregated (post-processed, and calibrated when ``conformal`` is set) quantiles as an
    array of shape ``(n, len(taus_))``. A learner in ``models`` with its own ``formula``
    must use these names. DataFrames are accepted; their column names are kept as
    ``feature_names_in_`` and checked at predict time, as in scikit-learn.

    Parameters
    ----------
    taus : sequence of float or None, default None
        Levels in (0, 1); None uses qaggstats' default (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95).
        Unsorted levels are sorted: ``taus_`` gives the column order of ``predict``.
    family : str, default "quantile"
        Weight family: "mean", "median", "global", "quantile", "grouped", "local", "fine",
        "qra" or "fqra".
    models : mapping of name to learner, or None, default None
        Base learners (``qaggstats.learners``); None uses qaggstats' defaults. They are
        deep-copied at each fit, so the parameter is never modified.
    constraint : {"simplex", "nonneg", "free"}, default "simplex"
    noncrossing : bool, default True
    postprocess : {"sort", "isotonic", "rearrange", "minmax", "none"}, default "sort"
    conformal : {None, "cqr", "cqr-asymmetric", "cv+"}, default None
    cal_size : float, default 0.25
    cv : int, default 5
        Cross-fitting folds; ``fit`` needs at least this many samples.
    seed : int, default 0
        Seed of the folds, the calibration split and the random learners (qaggstats' name for
        scikit-learn's ``random_state``).
    n_jobs : int, default -1
    groups : int or sequence, optional
        Level groups for ``family="grouped"``.
    smooth : float, default 0.0
        Penalty on weight differences between adjacent levels.

    Attributes
    ----------
    taus_ : ndarray of shape (r,)
        The fitted levels, in the column order of ``predict``.
    fit_ : QaggResults
        The qaggstats fit (``fit_.summary()``, ``fit_.weights``, plots, reports).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame with string column names.

    Notes
    -----
    ``sample_weight`` in ``fit`` weights the aggregation step's pinball loss (qagg's
    ``obs_weights``); the base learners are fitted unweighted. In ``score`` it weights the mean
    WIS over rows.

    scikit-learn's estimator checks pass except those in
    ``qaggstats.estimator.SKLEARN_EXPECTED_FAILED_CHECKS``:

    - ``check_regressors_train`` (three variants): it requires predictions of shape ``(n,)``;
      a quantile regressor returns ``(n, levels)``.
    - ``check_sample_weight_equivalence_on_dense_data``: weighting a row by 2 is not the same as
      repeating it, because repeated rows change the cross-fitting folds and the weights reach
      only the aggregation step (the check also passes ``cv`` as a list of splits; here ``cv``
      is a number of folds).

    The checks run on small data (8 to 30 rows), so they use fast learners with few neighbours
    (as in ``tests/test_estimator.py``); the default learners need more rows than that (the
    default ``KNN(k=30)`` needs 30 training rows in every fold).

    Examples
    --------
    >>> import numpy as np
    >>> import qaggstats as qa
    >>> from sklearn.model_selection import GridSearchCV
    >>> rng = np.random.default_rng(1)
    >>> X = rng.uniform(0, 4, size=(120, 1)); y = X[:, 0] + rng.normal(scale=0.5, size=120)
    >>> est = qa.QuantileAggregator(
    ...     taus=[0.1, 0.5, 0.9], cv=3,
    ...     models={"linear": qa.learners.LinearQR(), "knn": qa.learners.KNN(k=10)})
    >>> search = GridSearchCV(est, {"family": ["global", "quantile"]}, cv=2).fit(X, y)
    >>> search.best_params_["family"] in ("global", "quantile")
    True
    >>> q = search.best_estimator_.predict([[1.0], [3.0]])
    >>> q.shape, bool((q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all())
    ((2, 3), True)
    """

    def __init__(
        self,
        taus: Optional[Sequence[float]] = None,
        family: str = "quantile",
        models: Optional[Mapping[str, Any]] = None,
        *,
        constraint: str = "simplex",
        noncrossing: bool = True,
        postprocess: str = "sort",
        conformal: Optional[str] = None,
        cal_size: float = 0.25,
        cv: int = 5,
        seed: int = 0,
        n_jobs: int = -1,
        groups: Any = None,
        smooth: float = 0.0,
    ) -> None:
        self.taus = taus
        self.family = family
        self.models = models
        self.constraint = constraint
        self.noncrossing = noncrossing
        self.postprocess = postprocess
        self.conformal = conformal
        self.cal_size = cal_size
        self.cv = cv
        self.seed = seed
        self.n_jobs = n_jobs
        self.groups = groups
        self.smooth = smooth

    def _check_params(self, n_samples: int) -> None:
        """Raise a DataError naming a parameter of the wrong type; qagg checks the values."""
        if not isinstance(self.family, str):
            raise DataError(f"family must be a string such as 'quantile', got {self.family!r}")
        if self.models is not None and not isinstance(self.models, Mapping):
            raise DataError(
                f"models must be a mapping of name to qaggstats learner or None, got "
                f"{type(self.models).__name__}"
            )
        if not isinstance(self.noncrossing, (bool, np.bool_)):
            raise DataError(f"noncrossing must be True or False, got {self.noncrossing!r}")
        for name in ("cv", "seed", "n_jobs"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
                scalar = value is None or np.isscalar(value)
                shown = repr(value) if scalar else f"a {type(value).__name__}"
                raise DataError(f"{name} must be an integer, got {shown}")
        if self.cv < 2:
            raise DataError(f"cv must be at least 2 folds, got {self.cv}")
        if n_samples < self.cv:
            noun = "sample" if n_samples == 1 else "samples"
            raise DataError(
                f"QuantileAggregator needs at least cv={self.cv} samples (one per fold), got "
                f"{n_samples} {noun}; lower cv or give more rows"
            )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "QuantileAggregator":
        """Fit the base learners and the aggregation on ``X (n, d)`` and ``y (n,)``.

        Parameters
        ----------
        X : array_like or DataFrame of shape (n, d)
            Numeric features without missing values.
        y : array_like of shape (n,)
        sample_weight : array_like of shape (n,), optional
            Non-negative weights of the aggregation step's pinball loss (see Notes above).

        Returns
        -------
        self
        """
        X, y = _checked(validate_data, self, X, y, y_numeric=True, dtype=np.float64)
        self._check_params(X.shape[0])
        kwargs: dict[str, Any] = dict(
            constraint=self.constraint, noncrossing=bool(self.noncrossing),
            postprocess=self.postprocess, conformal=self.conformal, cal_size=self.cal_size,
            cv=int(self.cv), seed=int(self.seed), n_jobs=int(self.n_jobs), groups=self.groups,
            smooth=self.smooth, na="raise",
        )
        if self.taus is not None:
            kwargs["taus"] = self.taus
        if self.models is not None:
            kwargs["models"] = copy.deepcopy(dict(self.models))
        if sample_weight is not None:
            kwargs["obs_weights"] = _checked(_check_sample_weight, sample_weight, X,
                                             ensure_non_negative=True)
        columns = _feature_columns(X.shape[1])
        data = pd.DataFrame(X, columns=columns)
        data[_RESPONSE] = y
        formula = f"{_RESPONSE} ~ " + " + ".join(columns)
        self.fit_ = _call_qagg(formula, data, self.family, **kwargs)
        self.taus_ = np.asarray(self.fit_.taus, dtype=float).copy()
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted quantiles, one column per level of ``taus_``.

        Parameters
        ----------
        X : array_like or DataFrame of shape (m, d)

        Returns
        -------
        ndarray of shape (m, len(taus_))
        """
        check_is_fitted(self, "fit_")
        X = _checked(validate_data, self, X, reset=False, dtype=np.float64)
        frame = pd.DataFrame(X, columns=_feature_columns(X.shape[1]))
        return self.fit_.predict(frame).to_numpy(dtype=float)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Minus the weighted interval score of the predicted quantiles (greater is better).

        WIS over r levels is ``(2 / r) * sum_k pinball_k``, averaged over rows
        (:func:`qaggstats.scoring.wis`).

        Parameters
        ----------
        X : array_like or DataFrame of shape (m, d)
        y : array_like of shape (m,)
        sample_weight : array_like of shape (m,), optional
            Weights of the mean over rows.

        Returns
        -------
        float
        """
        q = self.predict(X)
        y = np.asarray(y, dtype=float).ravel()
        return -wis(y, q, self.taus_, weights=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # score is minus WIS, not R², so the checks' "R² > 0.5" bar does not apply.
        tags.regressor_tags.poor_score = True
        return tags
