"""qaggstats: quantile regression with formulas, aggregation, non-crossing and conformal intervals.

The public names load lazily (PEP 562), so ``import qaggstats`` and the command line start fast
and a submodule's heavy dependencies (cvxpy, matplotlib, scikit-learn) load on first use.

Examples
--------
>>> import qaggstats as qa
>>> df = qa.datasets.load("engel")
>>> m = qa.rq("foodexp ~ income", data=df, tau=0.5)
>>> round(float(m.coef.query("term == 'income'")["estimate"].iloc[0]), 6)
0.560181
"""
from __future__ import annotations

import importlib
from typing import Any

from . import errors
from ._version import __version__

_SUBMODULES = (
    "aggregate", "basis", "comparison", "conformal", "crossfit", "datasets", "diagnostics", "distributed", "estimator",
    "files", "formula", "learners", "levels", "monotone", "options", "pipeline", "plots", "predictor",
    "quantreg", "report", "results", "scoring",
)
_FUNCTIONS = {
    "rq": ("quantreg", "rq"),
    "compare": ("comparison", "compare"),
    "qagg": ("pipeline", "qagg"),
    "load": ("results", "load"),
    "Predictor": ("predictor", "Predictor"),
    "QaggResults": ("results", "QaggResults"),
    "RQResults": ("quantreg", "RQResults"),
    "QuantileAggregator": ("estimator", "QuantileAggregator"),
}

__all__ = ["__version__", "errors", *_SUBMODULES, *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        module, attr = _FUNCTIONS[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'qaggstats' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
