"""The option sets of the public API, defined once as ``Literal`` types and checked in one place.

Every function that takes one of these options calls :func:`check_option`, so an unknown value
always gets the same error, naming the argument, the value and the choices.

Examples
--------
>>> check_option("family", "quantile")
'quantile'
>>> check_option("postprocess", "sorted")
Traceback (most recent call last):
...
qaggstats.errors.DataError: unknown postprocess 'sorted' (postprocess=); choose one of 'none', 'sort', 'isotonic', 'rearrange', 'minmax'
"""
from __future__ import annotations

from typing import Any, Literal, Optional, get_args

from .errors import DataError

__all__ = ["Family", "Constraint", "Postprocess", "Conformal", "OnError", "NAPolicy", "OPTIONS",
           "REWEIGHT_SETTINGS", "check_option"]

Family = Literal["mean", "median", "global", "quantile", "grouped", "local", "fine", "qra", "fqra", "dqa", "single", "auto"]
Constraint = Literal["simplex", "nonneg", "free"]
Postprocess = Literal["none", "sort", "isotonic", "rearrange", "minmax"]
Conformal = Optional[Literal["cqr", "cqr-asymmetric", "cv+"]]
OnError = Literal["raise", "drop"]
NAPolicy = Literal["drop", "raise"]

OPTIONS: dict[str, tuple[Any, ...]] = {
    "family": get_args(Family),
    "constraint": get_args(Constraint),
    "postprocess": get_args(Postprocess),
    "conformal": (None, *get_args(get_args(Conformal)[0])),
    "on_error": get_args(OnError),
    "na": get_args(NAPolicy),
}


# The settings of the aggregation stage: what QaggResults.reweight may change without a refit.
REWEIGHT_SETTINGS = ("constraint", "noncrossing", "postprocess", "groups", "local_formula", "penalty", "smooth",
                     "obs_weights", "min_gap", "noncrossing_at", "weight_rows", "solver", "dqa", "candidates")

_LABELS = {"family": "weight family", "conformal": "conformal method", "na": "na policy"}


def check_option(name: str, value: Any) -> Any:
    """Return ``value`` if it is one of the choices of option ``name``, else raise a DataError."""
    choices = OPTIONS[name]
    if isinstance(value, bool) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise DataError(f"unknown {_LABELS.get(name, name)} {value!r} ({name}=); choose one of {listed}")
    return value
