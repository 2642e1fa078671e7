"""Any scikit-learn regressor as a quantile learner, one fitted model per level."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..errors import DataError, FitError
from .base import PerLevelLearner

__all__ = ["SklearnQuantile"]


class SklearnQuantile(PerLevelLearner):
    """Quantile learner built from a factory of scikit-learn regressors, one per level.

    For each level ``tau`` the factory is called as ``factory(tau)`` and must return an
    unfitted regressor (anything with ``fit(X, y)`` and ``predict(X)``) that targets that
    quantile, e.g. ``GradientBoostingRegressor(loss="quantile", alpha=tau)`` or
    ``QuantileRegressor(quantile=tau, alpha=0)``. Levels are fitted independently.

    To save a fitted pipeline with pickle, the factory must be picklable: a module-level
    function or a :func:`functools.partial`, not a lambda.

    Parameters
    ----------
    factory : callable
        ``factory(tau: float) -> regressor``.
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import GradientBoostingRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, (200, 1)); y = X[:, 0] + rng.normal(0, 0.1, 200)
    >>> gbr = SklearnQuantile(lambda t: GradientBoostingRegressor(loss="quantile", alpha=t,
    ...                                                           n_estimators=20))
    >>> gbr.fit(X, y, [0.1, 0.9]).predict(X[:2]).shape
    (2, 2)
    """

    def __init__(self, factory: Callable[[float], Any], formula: Optional[str] = None) -> None:
        self.factory = factory
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        if not callable(self.factory):
            raise DataError(
                f"SklearnQuantile: factory must be a callable tau -> regressor, got "
                f"{type(self.factory).__name__}"
            )

    def _make(self, tau: float) -> Any:
        model = self.factory(tau)
        if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
            raise FitError(
                f"SklearnQuantile: factory({tau:g}) returned {type(model).__name__}, which has no "
                f"fit(X, y) and predict(X)"
            )
        return model
