"""qaggstats: quantile regression with formulas, aggregation, non-crossing and conformal intervals.

Examples
--------
>>> import qaggstats as qa
>>> df = qa.datasets.load("engel")
>>> m = qa.rq("foodexp ~ income", data=df, tau=0.5)
>>> round(float(m.coef.query("term == 'income'")["estimate"].iloc[0]), 6)
0.560181
"""
from __future__ import annotations

from . import errors
from ._version import __version__

__all__ = ["__version__", "errors"]
