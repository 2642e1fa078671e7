"""Monotone post-processing of quantile predictions (non-crossing across levels).

Every function maps ``q (m, r)`` (columns in increasing level order) to a new ``(m, r)`` array
and works on all rows at once; Python loops run over the ``r`` levels only.

Which methods can only help? For each outcome ``y`` the summed pinball loss
``sum_k psi_{tau_k}(y - q_k)`` (hence WIS) never increases under :func:`sort_quantiles` or
:func:`isotonic` (Fakoor et al. 2023): write ``psi_tau(y - q) = tau (y - q) + (q - y)_+``; the
second sum is permutation invariant and convex, so it does not grow under sorting or block
averaging, and ``-sum_k tau_k q_k`` is smallest for sorted ``q`` (rearrangement inequality) and
does not grow under PAVA averaging because every prefix of a PAVA block has a mean at least the
block mean. :func:`minmax_sweep` has no such guarantee (see its docstring) and
:func:`rearrange` is justified by a different result (closeness to the true monotone curve).

Examples
--------
>>> import numpy as np
>>> q = np.array([[0.0, 2.0, 1.0]])
>>> postprocess(q, [0.25, 0.5, 0.75], "isotonic")
array([[0. , 1.5, 1.5]])
"""
from __future__ import annotations

import numpy as np

from .errors import DataError
from .scoring import crossing_rate, crossing_tolerance, validate_levels, wis

__all__ = [
    "METHODS",
    "sort_quantiles",
    "isotonic",
    "rearrange",
    "minmax_sweep",
    "postprocess",
    "monotone_effect",
]

METHODS = ("none", "sort", "isotonic", "rearrange", "minmax")


def _as_q(q: object) -> np.ndarray:
    arr = np.asarray(q, dtype=float)
    if arr.ndim != 2:
        raise DataError(f"quantiles q must be 2-D (m, r), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        rows = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        raise DataError(
            f"quantiles q have non-finite values in {rows.size} row(s), first row {rows[0]}"
        )
    return arr


def _as_q_taus(q: object, taus: object) -> tuple[np.ndarray, np.ndarray]:
    arr = _as_q(q)
    t = validate_levels(taus)
    if arr.shape[1] != t.size:
        raise DataError(f"quantiles q have {arr.shape[1]} columns but there are {t.size} levels")
    return arr, t


def sort_quantiles(q: object) -> np.ndarray:
    """Sort each row (Chernozhukov et al.'s rearrangement with a step-function curve).

    Parameters
    ----------
    q : array_like, shape (m, r)

    Returns
    -------
    numpy.ndarray, shape (m, r)

    Examples
    --------
    >>> sort_quantiles([[3.0, 1.0, 2.0]])
    array([[1., 2., 3.]])
    """
    return np.sort(_as_q(q), axis=1)


def isotonic(q: object, weights: object | None = None) -> np.ndarray:
    """Least-squares projection of each row onto non-decreasing vectors (PAVA).

    Minimises ``sum_k w_k (q_k - z_k)^2`` over ``z_1 <= ... <= z_r`` separately for every row.
    ``scipy.optimize.isotonic_regression`` handles one vector per call; here the
    pool-adjacent-violators stack runs for all rows at once (one stack per row held in arrays),
    so the loop is over levels and merges, never over rows. Already monotone rows are returned
    bit-for-bit unchanged.

    With level weights ``w`` the guarantee in the module docstring holds for the weighted
    pinball sum ``sum_k w_k psi_{tau_k}``; with equal weights (default) for the plain sum/WIS.

    Parameters
    ----------
    q : array_like, shape (m, r)
    weights : array_like, shape (r,) or (m, r), optional
        Positive weights per level (or per row and level).

    Returns
    -------
    numpy.ndarray, shape (m, r)

    Examples
    --------
    >>> isotonic([[1.0, 3.0, 2.0, 4.0]])
    array([[1. , 2.5, 2.5, 4. ]])
    >>> isotonic([[1.0, 3.0, 2.0, 4.0]], weights=[1.0, 3.0, 1.0, 1.0])
    array([[1.  , 2.75, 2.75, 4.  ]])
    """
    arr = _as_q(q)
    m, r = arr.shape
    if weights is None:
        w = np.ones((m, r))
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape not in ((r,), (m, r)):
            raise DataError(f"isotonic weights must have shape ({r},) or ({m}, {r}), got {w.shape}")
        w = np.broadcast_to(w, (m, r))
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise DataError("isotonic weights must be finite and positive")
    # Stack of blocks per row: value (weighted mean), total weight, number of levels.
    val = np.zeros((m, r))
    wt = np.zeros((m, r))
    size = np.zeros((m, r), dtype=np.int64)
    top = np.full(m, -1)
    rows = np.arange(m)
    for k in range(r):
        top += 1
        val[rows, top] = arr[:, k]
        wt[rows, top] = w[:, k]
        size[rows, top] = 1
        # Merge the top two blocks wherever they violate order; repeat until no row violates.
        while True:
            viol = np.flatnonzero((top > 0) & (val[rows, np.maximum(top - 1, 0)] > val[rows, top]))
            if viol.size == 0:
                break
            t = top[viol]
            w_new = wt[viol, t - 1] + wt[viol, t]
            val[viol, t - 1] = (
                wt[viol, t - 1] * val[viol, t - 1] + wt[viol, t] * val[viol, t]
            ) / w_new
            wt[viol, t - 1] = w_new
            size[viol, t - 1] += size[viol, t]
            size[viol, t] = 0
            top[viol] = t - 1
    # Row-major repeat of each block's value by its size rebuilds every row (sizes sum to r);
    # rows without merges get their original values back exactly.
    return np.repeat(val.ravel(), size.ravel()).reshape(m, r)


def rearrange(q: object, taus: object) -> np.ndarray:
    """Monotone rearrangement (Chernozhukov, Fernández-Val & Galichon 2010) on a level grid.

    The quantile curve of each row is the piecewise-linear interpolation of ``(taus_k, q_k)``
    on ``[tau_1, tau_r]``. Its rearrangement is the quantile function of ``Q(U)`` with
    ``U ~ Uniform[tau_1, tau_r]``: ``Q*(tau) = inf{y : tau_1 + |{u : Q(u) <= y}| >= tau}``,
    returned at the grid levels. With a step-function curve (each level owning a cell of
    equal mass) the rearrangement reduces to sorting (:func:`sort_quantiles`); with the linear
    interpolation used here the end points are the row minimum and maximum, interior values
    generally differ from the sorted ones, and monotone rows are returned unchanged (up to
    rounding). Cost is ``O(m r^2)``.

    Parameters
    ----------
    q : array_like, shape (m, r)
    taus : array_like, shape (r,)

    Returns
    -------
    numpy.ndarray, shape (m, r)

    Examples
    --------
    >>> rearrange([[0.0, 2.0, 1.0]], [0.25, 0.5, 0.75]).round(6)
    array([[0.      , 1.333333, 2.      ]])
    """
    arr, t = _as_q_taus(q, taus)
    m, r = arr.shape
    if r == 1:
        return arr.copy()
    s = np.sort(arr, axis=1)
    # F(y) = tau_1 + measure{u: Q(u) <= y} and its left limit F(y-) = tau_1 + measure{Q < y},
    # evaluated at the sorted knot values; both are piecewise linear between knots, with jumps
    # only where a segment is flat.
    f_at = np.full((m, r), t[0])
    f_left = np.full((m, r), t[0])
    for k in range(r - 1):
        lo = np.minimum(arr[:, k], arr[:, k + 1])[:, None]
        hi = np.maximum(arr[:, k], arr[:, k + 1])[:, None]
        span = hi - lo
        dt = t[k + 1] - t[k]
        flat = span == 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            frac = np.clip((s - lo) / np.where(flat, 1.0, span), 0.0, 1.0)
        f_at += dt * np.where(flat, s >= lo, frac)
        f_left += dt * np.where(flat, s > lo, frac)
    out = np.empty_like(arr)
    out[:, 0] = s[:, 0]
    rows = np.arange(m)
    for k in range(1, r):
        # First knot j with F(s_j) >= tau_k (the last knot always qualifies: F(s_max) = tau_r).
        reached = f_at >= t[k] - 1e-14
        j = np.argmax(reached, axis=1)
        jm = np.maximum(j - 1, 0)
        s_j, s_prev = s[rows, j], s[rows, jm]
        f_prev, fl_j = f_at[rows, jm], f_left[rows, j]
        inside_jump = (j == 0) | (t[k] >= fl_j)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            interp = s_prev + (t[k] - f_prev) / (fl_j - f_prev) * (s_j - s_prev)
        out[:, k] = np.where(inside_jump, s_j, np.clip(interp, s_prev, s_j))
    return out


def _centre(t: np.ndarray) -> int:
    """Index of the level nearest 0.5 (the lower one on ties)."""
    return int(np.argmin(np.abs(t - 0.5)))


def minmax_sweep(q: object, taus: object) -> np.ndarray:
    """Cumulative max upward and cumulative min downward from the median (Fakoor et al. 2023).

    Starting at the level nearest 0.5 (kept as is), each higher level becomes the maximum of
    itself and the levels between it and the centre, each lower level the minimum. Levels
    above 0.5 can only move up and levels below 0.5 only down, so every central interval can
    only widen.

    Unlike sorting and isotonic projection, the sweep can *raise* WIS: with levels
    (0.1, 0.5, 0.9), quantiles (0, 0, -10) and outcome y = -10 the summed pinball loss is
    9 + 5 + 0 = 14 before and 9 + 5 + 1 = 15 after (sorting gives 6). ``tests/test_monotone.py``
    finds such a case with hypothesis.

    Parameters
    ----------
    q : array_like, shape (m, r)
    taus : array_like, shape (r,)

    Returns
    -------
    numpy.ndarray, shape (m, r)

    Examples
    --------
    >>> minmax_sweep([[0.0, 0.0, -10.0]], [0.1, 0.5, 0.9])
    array([[0., 0., 0.]])
    """
    arr, t = _as_q_taus(q, taus)
    c = _centre(t)
    out = arr.copy()
    out[:, c:] = np.maximum.accumulate(arr[:, c:], axis=1)
    out[:, : c + 1] = np.minimum.accumulate(arr[:, c::-1], axis=1)[:, ::-1]
    return out


def postprocess(q: object, taus: object, method: str) -> np.ndarray:
    """Apply one monotone post-processing method by name.

    Parameters
    ----------
    q : array_like, shape (m, r)
    taus : array_like, shape (r,)
    method : {"none", "sort", "isotonic", "rearrange", "minmax"}

    Returns
    -------
    numpy.ndarray, shape (m, r)
        A copy; ``"none"`` returns the input values unchanged.

    Raises
    ------
    DataError
        For an unknown method name.

    Examples
    --------
    >>> postprocess([[2.0, 1.0]], [0.1, 0.9], "sort")
    array([[1., 2.]])
    """
    arr, t = _as_q_taus(q, taus)
    if method == "none":
        return arr.copy()
    if method == "sort":
        return sort_quantiles(arr)
    if method == "isotonic":
        return isotonic(arr)
    if method == "rearrange":
        return rearrange(arr, t)
    if method == "minmax":
        return minmax_sweep(arr, t)
    raise DataError(
        f"unknown post-processing method {method!r}; choose one of {', '.join(METHODS)}"
    )


def monotone_effect(
    y: object, q_before: object, q_after: object, taus: object
) -> dict[str, float | int]:
    """WIS and crossing rows before and after a post-processing step.

    Parameters
    ----------
    y : array_like, shape (n,)
    q_before, q_after : array_like, shape (n, r)
    taus : array_like, shape (r,)

    Returns
    -------
    dict
        ``wis_before``, ``wis_after`` (floats), ``rows_crossing_before``,
        ``rows_crossing_after`` (numbers of rows with some ``q_k > q_{k+1}`` beyond
        :func:`qaggstats.scoring.crossing_tolerance` of ``y``).

    Examples
    --------
    >>> eff = monotone_effect([0.0], [[1.0, -1.0]], [[-1.0, 1.0]], [0.1, 0.9])
    >>> eff["rows_crossing_before"], eff["rows_crossing_after"], round(eff["wis_after"], 6)
    (1, 0, 0.2)
    """
    before = _as_q(q_before)
    after = _as_q(q_after)
    n = before.shape[0]
    tol = crossing_tolerance(y)
    return {
        "wis_before": wis(y, before, taus),
        "wis_after": wis(y, after, taus),
        "rows_crossing_before": int(round(crossing_rate(before, tol) * n)),
        "rows_crossing_after": int(round(crossing_rate(after, tol) * n)),
    }
