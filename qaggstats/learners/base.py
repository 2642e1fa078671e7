"""The base-learner protocol and the checks every learner and its outputs go through.

A base quantile learner is any object with

- ``formula``: a formula string, or None to use the pipeline's default formula;
- ``fit(X (n, d), y (n,), taus (r,)) -> self``;
- ``predict(X (m, d)) -> (m, r)`` quantiles, column k for level ``taus[k]``.

Cross-fitting clones learners with :func:`copy.deepcopy` before each fit, so a learner must be
deep-copyable; random learners take ``random_state``.

Examples
--------
>>> import numpy as np
>>> from qaggstats.learners import KNN
>>> isinstance(KNN(), QuantileLearner)
True
>>> check_learner(KNN(), "knn")
>>> check_predictions(np.zeros((3, 2)), 3, 2, "knn").shape
(3, 2)
"""
from __future__ import annotations

import inspect
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from ..errors import DataError, FitError, LearnerTypeError

__all__ = [
    "QuantileLearner",
    "LearnerTypeError",
    "check_learner",
    "check_predictions",
    "check_fit_data",
    "check_predict_data",
    "check_taus",
    "LearnerBase",
]


@runtime_checkable
class QuantileLearner(Protocol):
    """What the pipeline needs from a base quantile learner."""

    formula: Optional[str]

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "QuantileLearner":
        """Fit to ``X (n, d)``, ``y (n,)`` for the levels ``taus (r,)``; return self."""
        ...

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` at the rows of ``X (m, d)``."""
        ...


def check_learner(obj: Any, name: str) -> None:
    """Raise :class:`LearnerTypeError` naming ``name`` unless ``obj`` looks like a learner.

    Checks that ``fit`` and ``predict`` are callable and that ``formula``, when present, is a
    string or None. (A missing ``formula`` attribute is allowed: it means "default formula".)

    Examples
    --------
    >>> check_learner(object(), "mine")
    Traceback (most recent call last):
    ...
    qaggstats.errors.LearnerTypeError: learner 'mine' (object) has no fit method; ...
    """
    kind = type(obj).__name__
    for method, signature in (("fit", "fit(X, y, taus)"), ("predict", "predict(X)")):
        if not callable(getattr(obj, method, None)):
            raise LearnerTypeError(
                f"learner {name!r} ({kind}) has no {method} method; a base learner needs "
                f"{signature} (see qaggstats.learners.QuantileLearner)"
            )
    formula = getattr(obj, "formula", None)
    if formula is not None and not isinstance(formula, str):
        raise LearnerTypeError(
            f"learner {name!r} ({kind}) has formula={formula!r}; it must be a string or None"
        )


def check_predictions(pred: Any, m: int, r: int, name: str, where: str = "") -> np.ndarray:
    """Validate a learner's predictions: shape ``(m, r)``, finite; return them as float64.

    Parameters
    ----------
    pred : array-like
        What ``predict`` returned.
    m, r : int
        Expected number of rows and of quantile levels.
    name : str
        The learner's name, used in the message.
    where : str
        Extra context for the message, e.g. ``" in fold 2 of 5"``.

    Raises
    ------
    FitError
        Wrong shape, non-numeric or non-finite values; the message names the learner.

    Examples
    --------
    >>> check_predictions([[1.0, np.nan]], 1, 2, "forest")
    Traceback (most recent call last):
    ...
    qaggstats.errors.FitError: learner 'forest' predicted 1 non-finite value(s) ...
    """
    try:
        arr = np.asarray(pred, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise FitError(f"learner {name!r} returned non-numeric predictions{where}: {err}") from err
    if arr.shape != (m, r):
        raise FitError(
            f"learner {name!r} returned predictions of shape {arr.shape}{where}; "
            f"expected ({m}, {r}) = (rows, quantile levels)"
        )
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise FitError(f"learner {name!r} predicted {bad} non-finite value(s){where} (NaN or inf)")
    return arr


def check_taus(taus: Any, name: str) -> np.ndarray:
    """Quantile levels as a float64 vector, strictly increasing inside (0, 1).

    Examples
    --------
    >>> check_taus([0.1, 0.9], "knn")
    array([0.1, 0.9])
    """
    t = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if t.ndim != 1 or t.size == 0:
        raise DataError(f"{name}: taus must be a non-empty 1-d array of levels, got shape {t.shape}")
    if not np.all((t > 0) & (t < 1)):
        raise DataError(f"{name}: quantile levels must lie strictly inside (0, 1), got {t.tolist()}")
    if np.any(np.diff(t) <= 0):
        raise DataError(f"{name}: quantile levels must be strictly increasing, got {t.tolist()}")
    return t


def _as_matrix(X: Any, name: str, what: str) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: {what} must be numeric: {err}") from err
    if arr.ndim != 2:
        raise DataError(f"{name}: {what} must be a 2-d array (rows, columns), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: {what} contains NaN or inf")
    return arr


def check_fit_data(X: Any, y: Any, taus: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the arguments of ``fit``: ``X (n, d)``, ``y (n,)`` finite, ``taus`` valid.

    Examples
    --------
    >>> X, y, t = check_fit_data([[1.0], [2.0]], [3.0, 4.0], 0.5, "knn")
    >>> X.shape, y.shape, t
    ((2, 1), (2,), array([0.5]))
    """
    Xa = _as_matrix(X, name, "X")
    ya = np.asarray(y, dtype=np.float64)
    if ya.ndim != 1 or ya.shape[0] != Xa.shape[0]:
        raise DataError(f"{name}: y must have shape ({Xa.shape[0]},) to match X, got {ya.shape}")
    if not np.all(np.isfinite(ya)):
        raise DataError(f"{name}: y contains NaN or inf")
    if Xa.shape[0] == 0:
        raise DataError(f"{name}: cannot fit on 0 rows")
    return Xa, ya, check_taus(taus, name)


def check_predict_data(X: Any, d: int, name: str) -> np.ndarray:
    """Validate the argument of ``predict``: a finite ``(m, d)`` matrix with the training ``d``.

    Examples
    --------
    >>> check_predict_data([[1.0, 2.0]], 2, "knn").shape
    (1, 2)
    """
    Xa = _as_matrix(X, name, "X")
    if Xa.shape[1] != d:
        raise DataError(f"{name}: X has {Xa.shape[1]} columns but the learner was fitted on {d}")
    return Xa


class LearnerBase:
    """Shared plumbing: ``get_params``/``set_params`` from the constructor signature, a repr,
    and the "fitted yet?" check.

    Subclasses store every constructor argument under its own name and implement
    ``_validate()`` (raise :class:`~qaggstats.errors.DataError` on bad parameters), which runs
    at construction, in ``set_params`` and at the start of ``fit``.
    """

    formula: Optional[str] = None

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor parameters and their current values (as in scikit-learn)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> "LearnerBase":
        """Set constructor parameters; unknown names raise DataError. Returns self."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise DataError(
                    f"{type(self).__name__} has no parameter {key!r}; valid: {', '.join(valid)}"
                )
            setattr(self, key, value)
        self._validate()
        return self

    def _validate(self) -> None:
        if self.formula is not None and not isinstance(self.formula, str):
            raise DataError(f"{type(self).__name__}: formula must be a string or None, got {self.formula!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "taus_"):
            raise FitError(f"{type(self).__name__} is not fitted yet; call fit(X, y, taus) first")

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        # like scikit-learn, show only what differs from the defaults
        shown = [
            f"{k}={v!r}" for k, v in self.get_params().items()
            if sig.parameters[k].default is inspect.Parameter.empty
            or not _equal(v, sig.parameters[k].default)
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


class PerLevelLearner(LearnerBase):
    """A learner fitting one regressor per level; subclasses define ``_make(tau)``."""

    def _make(self, tau: float) -> Any:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "PerLevelLearner":
        """Fit ``_make(tau)`` on ``X (n, d)``, ``y (n,)`` for each level ``taus (r,)``."""
        self._validate()
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        self.models_ = [self._make(float(t)).fit(X, y) for t in taus]
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` at the rows of ``X (m, d)``."""
        self._check_fitted()
        X = check_predict_data(X, self.n_features_, type(self).__name__)
        return predict_per_level(self.models_, X)


def predict_per_level(models: list, X: np.ndarray) -> np.ndarray:
    """Stack the predictions of one fitted regressor per level into ``(m, r)`` float64.

    Examples
    --------
    >>> class Const:
    ...     def __init__(self, c): self.c = c
    ...     def predict(self, X): return np.full(len(X), self.c)
    >>> predict_per_level([Const(1.0), Const(2.0)], np.zeros((2, 1)))
    array([[1., 2.],
           [1., 2.]])
    """
    cols = [np.asarray(m.predict(X), dtype=np.float64).reshape(X.shape[0]) for m in models]
    return np.column_stack(cols) if cols else np.empty((X.shape[0], 0))


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _check_int(value: Any, name: str, learner: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{learner}: {name} must be an integer >= {low}, got {value!r}")


def _check_float(value: Any, name: str, learner: str, low: float = 0.0, low_open: bool = True,
                 high: Optional[float] = None) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise DataError(f"{learner}: {name} must be a number {bound}, got {value!r}")


def _check_random_state(value: Any, learner: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        raise DataError(f"{learner}: random_state must be an int or None, got {value!r}")
