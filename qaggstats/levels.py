"""Quantile levels: the one validator every entry point uses.

Examples
--------
>>> validate_levels([0.1, 0.5, 0.9])
array([0.1, 0.5, 0.9])
>>> taus, notes = validate_levels([0.9, 0.1, 0.5], sort=True)
>>> taus.tolist(), notes
([0.1, 0.5, 0.9], ['quantile levels were not increasing; sorted to 0.1, 0.5, 0.9'])
>>> validate_levels([0.5, 0.5, 0.25])
Traceback (most recent call last):
...
qaggstats.errors.DataError: quantile levels are duplicated: 0.5
"""
from __future__ import annotations

from typing import Literal, Union, overload

import numpy as np

from .errors import DataError

__all__ = ["validate_levels", "quantile_column"]


@overload
def validate_levels(taus: object, sort: Literal[False] = ...) -> np.ndarray: ...


@overload
def validate_levels(taus: object, sort: Literal[True]) -> tuple[np.ndarray, list[str]]: ...


def validate_levels(taus: object, sort: bool = False) -> Union[np.ndarray, tuple[np.ndarray, list[str]]]:
    """Check quantile levels: finite numbers strictly inside (0, 1), unique and increasing.

    Parameters
    ----------
    taus : float or array_like, shape (r,)
    sort : bool
        False: levels out of order are an error (array-level functions, where positions matter).
        True: they are sorted and a note says so (user-facing entry points); the notes are
        returned alongside.

    Returns
    -------
    (r,) float array, or ``(array, notes)`` when ``sort=True``.

    Raises
    ------
    DataError
        Naming non-numeric levels, levels outside (0, 1), duplicated levels, or (``sort=False``)
        the first out-of-order pair.
    """
    try:
        arr = np.asarray(taus, dtype=float)
    except (TypeError, ValueError) as err:
        raise DataError(f"quantile levels must be numbers in (0, 1), got {taus!r}") from err
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"quantile levels must be a non-empty 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~((arr > 0) & (arr < 1)))
    if bad.size:
        listed = ", ".join(f"{arr[i]:g} (position {i})" for i in bad)
        noun, verb = ("level", "is") if bad.size == 1 else ("levels", "are")
        raise DataError(f"quantile {noun} {listed} {verb} outside (0, 1)")
    values, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise DataError("quantile levels are duplicated: " + ", ".join(f"{v:g}" for v in values[counts > 1]))
    steps = np.flatnonzero(np.diff(arr) <= 0)
    if not sort:
        if steps.size:
            i = int(steps[0])
            raise DataError(f"quantile levels must be strictly increasing; {arr[i]:g} (position {i}) is "
                            f"followed by {arr[i + 1]:g}")
        return arr
    notes = []
    if steps.size:
        notes.append("quantile levels were not increasing; sorted to " + ", ".join(f"{t:g}" for t in values))
    return values, notes


def quantile_column(tau: float) -> str:
    """Column name of level ``tau`` in prediction frames (``rq`` and ``qagg`` alike).

    Examples
    --------
    >>> quantile_column(0.5), quantile_column(0.025)
    ('q0.5', 'q0.025')
    """
    return f"q{float(tau):g}"
