"""Proper scores for quantile forecasts, vectorised over rows and levels.

Shapes: ``y (n,)`` outcomes, ``q (n, r)`` predicted quantiles, ``taus (r,)`` levels that are
strictly increasing and inside (0, 1). Every score is averaged over rows.

The pinball (check) loss at level tau for outcome y and quantile q is
``psi_tau(y - q) = (y - q) * (tau - 1{y < q})``. The weighted interval score (WIS) over L levels
is defined for any level set as ``WIS = (2 / L) * sum_l pinball_l``; for levels that are K
symmetric pairs ``(a/2, 1 - a/2)`` plus the median this equals the normalised WIS of Bracher,
Ray, Gneiting & Reich (2021), ``1 / (K + 1/2) * (|y - m| / 2 + sum_k a_k / 2 * IS_{a_k})``.

Examples
--------
>>> import numpy as np
>>> y = np.array([1.0, 2.0])
>>> q = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
>>> taus = np.array([0.1, 0.5, 0.9])
>>> float(wis(y, q, taus))
0.3
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import binom

from .errors import DataError
from .levels import validate_levels

__all__ = [
    "validate_levels",
    "crossing_tolerance",
    "pinball_loss",
    "wis",
    "wis_decomposition",
    "binomial_band",
    "coverage_by_bins",
    "worst_slab",
    "central_pairs",
    "interval_coverage",
    "interval_width",
    "crossing_rate",
    "crossing_count",
    "crps_quantile",
    "score_table",
]

# Two levels form a central pair when they sum to one within this tolerance; levels typed as
# decimals (0.05 + 0.95) are off by ~1e-16, not by 1e-9.
_PAIR_TOL = 1e-9


def _check(y: object, q: object, taus: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and convert ``y (n,)``, ``q (n, r)`` and ``taus (r,)``."""
    taus_a = validate_levels(taus)
    y_a = np.asarray(y, dtype=float)
    q_a = np.asarray(q, dtype=float)
    if y_a.ndim != 1:
        raise DataError(f"y must be 1-D (n,), got shape {y_a.shape}")
    if q_a.ndim != 2:
        raise DataError(f"quantiles q must be 2-D (n, r), got shape {q_a.shape}")
    if q_a.shape != (y_a.size, taus_a.size):
        raise DataError(
            f"quantiles q have shape {q_a.shape} but y has {y_a.size} rows and there are "
            f"{taus_a.size} levels; expected {(y_a.size, taus_a.size)}"
        )
    if y_a.size == 0:
        raise DataError("cannot score zero rows")
    if not np.all(np.isfinite(y_a)):
        rows = np.flatnonzero(~np.isfinite(y_a))
        raise DataError(f"y has {rows.size} non-finite value(s), first at row {rows[0]}")
    if not np.all(np.isfinite(q_a)):
        rows, cols = np.nonzero(~np.isfinite(q_a))
        raise DataError(
            f"quantiles q have {rows.size} non-finite value(s), first at row {rows[0]}, "
            f"level {taus_a[cols[0]]:g}"
        )
    return y_a, q_a, taus_a


def _check_weights(weights: object, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise DataError(f"observation weights must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise DataError("observation weights must be finite, non-negative and not all zero")
    return w


def _pinball_matrix(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Pinball loss per row and level, shape (n, r)."""
    u = y[:, None] - q
    return u * (taus[None, :] - (u < 0))


def pinball_loss(y: object, q: object, taus: object, weights: object | None = None) -> np.ndarray:
    """Mean pinball (check) loss per level.

    Parameters
    ----------
    y : array_like, shape (n,)
        Outcomes.
    q : array_like, shape (n, r)
        Predicted quantiles, column k at level ``taus[k]``.
    taus : array_like, shape (r,)
        Quantile levels.
    weights : array_like, shape (n,), optional
        Non-negative observation weights; the mean over rows becomes a weighted mean.

    Returns
    -------
    numpy.ndarray, shape (r,)
        ``mean_i psi_tau(y_i - q_ik)`` for each level.

    Examples
    --------
    >>> pinball_loss([0.0, 2.0], [[1.0], [1.0]], [0.25])
    array([0.5])
    """
    y_a, q_a, taus_a = _check(y, q, taus)
    loss = _pinball_matrix(y_a, q_a, taus_a)
    if weights is None:
        return loss.mean(axis=0)
    w = _check_weights(weights, y_a.size)
    return w @ loss / w.sum()


def wis(y: object, q: object, taus: object, weights: object | None = None) -> float:
    """Weighted interval score, ``(2 / L) * sum_l pinball_l`` averaged over rows.

    Equals the normalised WIS of Bracher et al. (2021) when the levels are symmetric pairs plus
    the median; for other level sets it is the same quantile-score average.

    Parameters
    ----------
    y : array_like, shape (n,)
    q : array_like, shape (n, r)
    taus : array_like, shape (r,)
    weights : array_like, shape (n,), optional
        Observation weights for the mean over rows.

    Returns
    -------
    float

    Examples
    --------
    >>> wis([0.0], [[-1.0, 0.0, 1.0]], [0.25, 0.5, 0.75])
    0.3333333333333333
    """
    loss = pinball_loss(y, q, taus, weights)
    return float(2.0 * loss.sum() / loss.size)


def central_pairs(taus: object) -> list[tuple[int, int]]:
    """Index pairs ``(lo, hi)`` of levels with ``taus[lo] + taus[hi] == 1``, outermost first.

    The median is not a pair. Levels without a partner are ignored here; see
    :func:`wis_decomposition` for the strict check.

    Parameters
    ----------
    taus : array_like, shape (r,)

    Returns
    -------
    list of tuple of int
        Sorted by ``lo``, so nominal coverage ``1 - 2 * taus[lo]`` decreases along the list.

    Examples
    --------
    >>> central_pairs([0.05, 0.1, 0.5, 0.9, 0.95])
    [(0, 4), (1, 3)]
    """
    t = validate_levels(taus)
    pairs = []
    for lo in np.flatnonzero(t < 0.5 - _PAIR_TOL):
        hit = np.flatnonzero(np.abs(t + t[lo] - 1.0) <= _PAIR_TOL)
        if hit.size:
            pairs.append((int(lo), int(hit[0])))
    return pairs


def binomial_band(p: np.ndarray | float, n: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` band of the observed proportion of ``n`` Bernoulli(``p``) draws.

    What the observed coverage of an interval with true coverage ``p`` should look like.

    Examples
    --------
    >>> lo, hi = binomial_band(0.5, 100)
    >>> float(lo), float(hi)
    (0.4, 0.6)
    """
    tail = (1.0 - level) / 2.0
    p = np.asarray(p, dtype=float)
    return binom.ppf(tail, n, p) / n, binom.ppf(1.0 - tail, n, p) / n


def _unpaired(taus: np.ndarray) -> np.ndarray:
    paired = np.zeros(taus.size, dtype=bool)
    for lo, hi in central_pairs(taus):
        paired[[lo, hi]] = True
    paired |= np.abs(taus - 0.5) <= _PAIR_TOL
    return taus[~paired]


def _nominal(taus: np.ndarray, lo: int, hi: int) -> float:
    # Rounded so that 1 - 2 * 0.05 reads as 0.9, not 0.8999999999999999.
    return round(float(taus[hi] - taus[lo]), 10)


def wis_decomposition(y: object, q: object, taus: object,
                      weights: object | None = None) -> dict[str, float]:
    """Split WIS into dispersion, overprediction and underprediction (Bracher et al. 2021).

    For each central pair ``(a/2, 1 - a/2)`` with bounds ``l <= u`` the pair's two pinball
    losses equal ``a/2 * (u - l) + (l - y)_+ + (y - u)_+``: the first term is dispersion, the
    second overprediction (outcome below the interval), the third underprediction. The median's
    ``|y - m| / 2`` goes to overprediction when ``m > y`` and to underprediction otherwise. Each
    component carries the factor ``2 / L``, so the three sum to :func:`wis` (up to rounding).
    If quantiles cross (``l > u``) the identity still holds and dispersion is negative for that
    pair.

    Parameters
    ----------
    y : array_like, shape (n,)
    q : array_like, shape (n, r)
    taus : array_like, shape (r,)
        Symmetric pairs, optionally with the median 0.5.
    weights : array_like, shape (n,), optional

    Returns
    -------
    dict
        Keys ``dispersion``, ``overprediction``, ``underprediction``, ``wis``.

    Raises
    ------
    DataError
        Naming the levels that have no symmetric partner.

    Examples
    --------
    >>> d = wis_decomposition([3.0], [[0.0, 1.0, 2.0]], [0.25, 0.5, 0.75])
    >>> {k: round(v, 6) for k, v in d.items()}
    {'dispersion': 0.333333, 'overprediction': 0.0, 'underprediction': 1.333333, 'wis': 1.666667}
    """
    y_a, q_a, taus_a = _check(y, q, taus)
    lonely = _unpaired(taus_a)
    if lonely.size:
        listed = ", ".join(f"{t:g}" for t in lonely)
        raise DataError(
            f"WIS decomposition needs symmetric level pairs (tau, 1 - tau) plus optionally the "
            f"median; unpaired level(s): {listed}"
        )
    n, r = q_a.shape
    disp = np.zeros(n)
    over = np.zeros(n)
    under = np.zeros(n)
    for lo, hi in central_pairs(taus_a):
        low, up = q_a[:, lo], q_a[:, hi]
        disp += taus_a[lo] * (up - low)
        over += np.maximum(low - y_a, 0.0)
        under += np.maximum(y_a - up, 0.0)
    med = np.flatnonzero(np.abs(taus_a - 0.5) <= _PAIR_TOL)
    if med.size:
        m = q_a[:, med[0]]
        over += 0.5 * np.maximum(m - y_a, 0.0)
        under += 0.5 * np.maximum(y_a - m, 0.0)
    if weights is None:
        w = np.full(n, 1.0 / n)
    else:
        w = _check_weights(weights, n)
        w = w / w.sum()
    scale = 2.0 / r
    out = {
        "dispersion": float(scale * (w @ disp)),
        "overprediction": float(scale * (w @ over)),
        "underprediction": float(scale * (w @ under)),
    }
    out["wis"] = out["dispersion"] + out["overprediction"] + out["underprediction"]
    return out


def interval_coverage(y: object, q: object, taus: object) -> dict[float, float]:
    """Share of outcomes inside each central interval ``[q_lo, q_hi]`` (closed).

    Parameters
    ----------
    y : array_like, shape (n,)
    q : array_like, shape (n, r)
    taus : array_like, shape (r,)

    Returns
    -------
    dict
        Nominal level ``tau_hi - tau_lo`` (e.g. 0.8) -> observed coverage, outermost first.

    Examples
    --------
    >>> interval_coverage([0.0, 5.0], [[-1.0, 1.0], [-1.0, 1.0]], [0.1, 0.9])
    {0.8: 0.5}
    """
    y_a, q_a, taus_a = _check(y, q, taus)
    return {
        _nominal(taus_a, lo, hi): float(np.mean((q_a[:, lo] <= y_a) & (y_a <= q_a[:, hi])))
        for lo, hi in central_pairs(taus_a)
    }


def interval_width(q: object, taus: object) -> dict[float, float]:
    """Mean width ``q_hi - q_lo`` of each central interval.

    Parameters
    ----------
    q : array_like, shape (n, r)
    taus : array_like, shape (r,)

    Returns
    -------
    dict
        Nominal level -> mean width, outermost first.

    Examples
    --------
    >>> interval_width([[-1.0, 1.0], [-2.0, 2.0]], [0.1, 0.9])
    {0.8: 3.0}
    """
    q_a = np.asarray(q, dtype=float)
    _, q_a, taus_a = _check(np.zeros(q_a.shape[0] if q_a.ndim else 0), q_a, taus)
    return {
        _nominal(taus_a, lo, hi): float(np.mean(q_a[:, hi] - q_a[:, lo]))
        for lo, hi in central_pairs(taus_a)
    }


def _check_q(q: object) -> np.ndarray:
    q_a = np.asarray(q, dtype=float)
    if q_a.ndim != 2 or q_a.shape[0] == 0:
        raise DataError(f"quantiles q must be 2-D (n, r) with n > 0, got shape {q_a.shape}")
    if not np.all(np.isfinite(q_a)):
        raise DataError("quantiles q contain non-finite values")
    return q_a


CROSSING_RTOL = 1e-9


def crossing_tolerance(y: object) -> float:
    """Crossings smaller than this are floating-point noise, not crossed quantiles.

    ``CROSSING_RTOL`` (1e-9) times the response's scale (its largest absolute value): LP
    solutions and sums of weighted predictions are exact only to about that relative precision,
    so a gap of -2e-13 between two quantiles of a response in the hundreds is not a crossing.

    Examples
    --------
    >>> float(crossing_tolerance([100.0, -250.0]))  # doctest: +ELLIPSIS
    2.5...e-07
    """
    y_a = np.asarray(y, dtype=float)
    finite = y_a[np.isfinite(y_a)]
    return CROSSING_RTOL * (float(np.abs(finite).max()) if finite.size else 1.0)


def crossing_rate(q: object, tol: float = 0.0) -> float:
    """Share of rows in which some adjacent pair crosses, ``q_k > q_{k+1} + tol``.

    Parameters
    ----------
    q : array_like, shape (n, r)
        Quantiles with columns in increasing level order.
    tol : float, default 0.0
        Crossings of at most ``tol`` are ignored (e.g. solver round-off).

    Returns
    -------
    float

    Examples
    --------
    >>> crossing_rate([[0.0, 1.0, 2.0], [0.0, 2.0, 1.0]])
    0.5
    """
    q_a = _check_q(q)
    return float(np.mean(np.any(q_a[:, :-1] > q_a[:, 1:] + tol, axis=1)))


def crossing_count(q: object, tol: float = 0.0) -> int:
    """Number of adjacent pairs ``(k, k+1)`` with ``q_k > q_{k+1} + tol``, over all rows.

    Parameters
    ----------
    q : array_like, shape (n, r)
    tol : float, default 0.0

    Returns
    -------
    int

    Examples
    --------
    >>> crossing_count([[3.0, 2.0, 1.0], [0.0, 2.0, 1.0]])
    3
    """
    q_a = _check_q(q)
    return int(np.sum(q_a[:, :-1] > q_a[:, 1:] + tol))


def crps_quantile(y: object, q: object, taus: object) -> float:
    """CRPS approximated from quantiles on an evenly spaced level grid.

    Uses ``CRPS(F, y) = 2 * integral_0^1 psi_tau(y - F^{-1}(tau)) dtau`` discretised as
    ``2 * mean_k pinball_{tau_k}``, i.e. equal weight ``1 / r`` per level. On the midpoint grid
    ``tau_k = (k - 1/2) / r`` this is the midpoint rule for the integral; on other evenly spaced
    grids (e.g. 0.1, ..., 0.9) the tails beyond the outer levels are represented only by the
    outer levels, so the value is an approximation that converges as the grid refines.

    Parameters
    ----------
    y : array_like, shape (n,)
    q : array_like, shape (n, r)
    taus : array_like, shape (r,)
        Evenly spaced levels (equal gaps within 1e-9).

    Returns
    -------
    float
        Mean over rows.

    Raises
    ------
    DataError
        If the levels are not evenly spaced (the equal-weight rule would be biased).

    Examples
    --------
    >>> round(crps_quantile([0.0], [[-1.0, 0.0, 1.0]], [1 / 6, 0.5, 5 / 6]), 12)
    0.222222222222
    """
    y_a, q_a, taus_a = _check(y, q, taus)
    gaps = np.diff(taus_a)
    if gaps.size and np.ptp(gaps) > 1e-9:
        raise DataError(
            f"crps_quantile needs evenly spaced levels; gaps range from {gaps.min():g} to "
            f"{gaps.max():g}"
        )
    return float(2.0 * _pinball_matrix(y_a, q_a, taus_a).mean())


def _pct(nominal: float) -> str:
    return f"{round(100.0 * nominal, 8):g}"


def score_table(y: object, predictions: Mapping[str, object], taus: object) -> pd.DataFrame:
    """Scores of several quantile predictions of the same outcomes, one row per name.

    Parameters
    ----------
    y : array_like, shape (n,)
    predictions : mapping of str to array_like, shape (n, r)
    taus : array_like, shape (r,)

    Returns
    -------
    pandas.DataFrame
        Indexed by name (index name ``model``), columns ``wis``, ``dispersion``,
        ``overprediction``, ``underprediction``, ``pinball_<tau:g>`` per level,
        ``coverage_<pct>`` and ``width_<pct>`` per central interval (outermost first, pct like
        ``90``), ``crossing_rate`` (crossings beyond :func:`crossing_tolerance` of ``y``). The decomposition columns are NaN when some level has no
        symmetric partner.

    Examples
    --------
    >>> t = score_table([0.0], {"a": [[-1.0, 0.0, 1.0]]}, [0.1, 0.5, 0.9])
    >>> list(t.columns)  # doctest: +NORMALIZE_WHITESPACE
    ['wis', 'dispersion', 'overprediction', 'underprediction', 'pinball_0.1', 'pinball_0.5',
     'pinball_0.9', 'coverage_80', 'width_80', 'crossing_rate']
    """
    taus_a = validate_levels(taus)
    if len(predictions) == 0:
        raise DataError("score_table needs at least one prediction")
    symmetric = _unpaired(taus_a).size == 0
    rows = {}
    for name, q in predictions.items():
        try:
            y_a, q_a, _ = _check(y, q, taus_a)
        except DataError as err:
            raise DataError(f"prediction {name!r}: {err}") from None
        row: dict[str, float] = {"wis": wis(y_a, q_a, taus_a)}
        if symmetric:
            dec = wis_decomposition(y_a, q_a, taus_a)
            row.update({k: dec[k] for k in ("dispersion", "overprediction", "underprediction")})
        else:
            row.update(dispersion=np.nan, overprediction=np.nan, underprediction=np.nan)
        for t, loss in zip(taus_a, pinball_loss(y_a, q_a, taus_a)):
            row[f"pinball_{t:g}"] = float(loss)
        widths = interval_width(q_a, taus_a)
        for nominal, cov in interval_coverage(y_a, q_a, taus_a).items():
            row[f"coverage_{_pct(nominal)}"] = cov
            row[f"width_{_pct(nominal)}"] = widths[nominal]
        row["crossing_rate"] = crossing_rate(q_a, tol=crossing_tolerance(y_a))
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def coverage_by_bins(y: np.ndarray, lower: np.ndarray, upper: np.ndarray, variables: Mapping[str, object],
                     band, bins: int = 5, min_rows: int = 10) -> pd.DataFrame:
    """Coverage of one interval within bins of each variable (conditional-coverage diagnostic).

    A numeric variable is cut into ``bins`` equal-count (quantile) bins; any other (a factor,
    strings, booleans) into its levels. Each bin gets the band its observed coverage should fall
    in if coverage held *within* the bin at the level the calibration promises on average:
    ``band(n)`` for a bin of ``n`` rows (e.g. a calibration's ``binomial_band``). Bins with fewer
    than ``min_rows`` rows are left out (too few to say anything).

    Parameters
    ----------
    y, lower, upper : (n,) ndarray
        Outcomes and the interval's ends on held-out rows.
    variables : mapping name -> (n,) values
        The variables to bin (features, the predicted width).
    band : callable ``n -> (low, high)``
    bins : int
    min_rows : int

    Returns
    -------
    pandas.DataFrame
        ``variable``, ``bin`` (label), ``n``, ``observed``, ``band_low``, ``band_high``, ``inside``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(size=400); y = rng.normal(scale=1 + 2 * x)
    >>> t = coverage_by_bins(y, -np.ones(400) * 2, np.ones(400) * 2, {"x": x},
    ...                      lambda n: tuple(map(float, binomial_band(0.9, n))), bins=4)
    >>> t["observed"].round(2).tolist(), t["inside"].tolist()
    ([0.86, 0.76, 0.54, 0.48], [True, False, False, False])
    """
    y, lower, upper = (np.asarray(a, dtype=float) for a in (y, lower, upper))
    covered = (lower <= y) & (y <= upper)
    rows = []
    for name, values in variables.items():
        v = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values.to_numpy())
        if pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v) and v.nunique() > bins:
            cut = pd.qcut(v, bins, duplicates="drop")
            labels = cut.astype(str)
            order = list(cut.cat.categories.astype(str))
        else:
            labels = v.astype(str)
            order = list(dict.fromkeys(labels))
        for label in order:
            sel = (labels == label).to_numpy()
            n = int(sel.sum())
            if n < min_rows:
                continue
            observed = float(covered[sel].mean())
            low, high = band(n)
            rows.append({"variable": str(name), "bin": label, "n": n, "observed": observed,
                         "band_low": float(low), "band_high": float(high),
                         "inside": bool(low <= observed <= high)})
    return pd.DataFrame(rows, columns=["variable", "bin", "n", "observed", "band_low", "band_high", "inside"])


def worst_slab(table: pd.DataFrame) -> pd.Series | None:
    """The bin of :func:`coverage_by_bins` with the lowest observed coverage (None if empty).

    Examples
    --------
    >>> t = pd.DataFrame({"variable": ["x", "x"], "bin": ["a", "b"], "observed": [0.9, 0.7]})
    >>> worst_slab(t)["bin"]
    'b'
    """
    if table is None or not len(table):
        return None
    return table.loc[table["observed"].idxmin()]
