"""Base quantile learners behind one small protocol.

Every learner has ``formula`` (str or None), ``fit(X (n, d), y (n,), taus (r,)) -> self`` and
``predict(X (m, d)) -> (m, r)``; see :class:`QuantileLearner`. Provided: ``LinearQR``
(linear quantile regression), ``QuantileForest``, ``GradientBoosting``, ``KNN``,
``LocationScale``, ``LightGBMQuantile`` (optional LightGBM), ``QuantileNN`` (a quantile neural
network, extra ``[deep]``) and ``SklearnQuantile`` (wrap any scikit-learn regressor);
``RandomSearch`` tunes any of them on out-of-fold WIS.

Examples
--------
>>> import numpy as np
>>> from qaggstats import learners
>>> X = np.arange(10.0).reshape(-1, 1); y = np.arange(10.0)
>>> learners.KNN(k=3).fit(X, y, [0.5]).predict([[4.2]])
array([[4.]])
"""
from __future__ import annotations

from .base import (LearnerTypeError, QuantileLearner, check_learner, check_predictions)
from .boosting import GradientBoosting
from .forest import QuantileForest
from .knn import KNN
from .lightgbm import LightGBMQuantile
from .linear import LinearQR
from .locscale import LocationScale
from .neural import QuantileNN
from .sklearn import SklearnQuantile
from .tuning import RandomSearch

__all__ = [
    "QuantileLearner",
    "LearnerTypeError",
    "check_learner",
    "check_predictions",
    "LinearQR",
    "QuantileForest",
    "GradientBoosting",
    "KNN",
    "LightGBMQuantile",
    "LocationScale",
    "SklearnQuantile",
    "QuantileNN",
    "RandomSearch",
]
