"""Exception types users catch.

Every error raised on purpose by qaggstats derives from :class:`QaggError`, and its message
names the culprit (the column, level, learner, solver or path at fault).

Examples
--------
>>> import qaggstats as qa
>>> try:
...     qa.rq("y ~ x", data=qa.datasets.load("engel"))
... except qa.errors.FormulaError as err:
...     print(type(err).__name__)
FormulaError
"""
from __future__ import annotations

__all__ = [
    "QaggError",
    "FormulaError",
    "DataError",
    "FitError",
    "LearnerTypeError",
    "SolverError",
    "CalibrationError",
    "SaveError",
    "DependencyError",
]


class QaggError(Exception):
    """Base class of every error qaggstats raises on purpose."""


class FormulaError(QaggError, ValueError):
    """A formula that cannot be parsed or names something the data do not have."""


class DataError(QaggError, ValueError):
    """Input data that cannot be used: wrong type, missing column, unseen level, NaN, inf."""


class FitError(QaggError, RuntimeError):
    """A base learner failed; the message names the learner (and the fold)."""


class LearnerTypeError(FitError, TypeError):
    """An object used as a base learner does not follow the learner protocol.

    Also a ``TypeError``, because the object has the wrong type for the job.
    """


class SolverError(QaggError, RuntimeError):
    """Every solver tried for an optimisation problem failed; the message gives their statuses."""


class CalibrationError(QaggError, ValueError):
    """Conformal calibration impossible as requested (e.g. too few calibration points)."""


class SaveError(QaggError, OSError):
    """A saved fit or report path that cannot be read or written."""


class DependencyError(QaggError, ImportError):
    """An optional dependency a requested method needs is missing; the message names the extra."""
