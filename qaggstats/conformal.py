"""Conformal calibration of central quantile intervals (CQR and its CV+ variant).

For every central pair of levels ``(tau, 1 - tau)`` in ``taus`` (miscoverage ``alpha = 2 tau``):

* **Split CQR** (Romano, Patterson & Candès 2019). On calibration rows the conformity score is
  ``E_i = max(q_lo(x_i) - y_i, y_i - q_hi(x_i))`` and the correction ``c`` is the
  ``ceil((n_cal + 1)(1 - alpha))``-th smallest score, i.e. the empirical quantile at level
  ``ceil((n_cal + 1)(1 - alpha)) / n_cal``; the interval is ``[q_lo - c, q_hi + c]``. It needs
  ``n_cal >= 1/alpha - 1``. Marginal coverage lies in ``[1 - alpha, 1 - alpha + 1/(n_cal+1)]``
  (the upper end needs continuous scores).
* **Asymmetric split CQR** (Romano et al., Thm 2): separate corrections from
  ``q_lo - y`` and ``y - q_hi``, each at miscoverage ``alpha / 2``; coverage in
  ``[1 - alpha, 1 - alpha + 2/(n_cal+1)]``; needs ``n_cal >= 2/alpha - 1``.
* **Nested CV+** (Barber, Candès, Ramdas & Tibshirani 2021; for aggregation, Fakoor et al.
  2023, Section 5). Each of the K fold models is the *whole* aggregate fitted without fold
  ``k``: its base learners are fitted without fold ``k``, and its weights are fitted on
  out-of-fold base predictions of the other rows that never saw fold ``k`` either (the base
  learners refitted without folds ``k`` and ``j`` predict fold ``j``: nested cross-fitting,
  see :func:`qaggstats.crossfit.crossfit_pairs`). :func:`nested_cv_plus` runs that loop. The
  score ``R_i`` of a row of fold ``k(i)`` comes from fold model ``k(i)``; for a new ``x`` the
  interval is ``[ floor(alpha (n+1))-th smallest of q_lo^{-k(i)}(x) - R_i ,
  ceil((1 - alpha)(n+1))-th smallest of q_hi^{-k(i)}(x) + R_i ]``. Because every fold model
  is a function of the data outside its fold, Barber et al. (2021, Theorem 4) apply exactly:
  coverage is at least ``1 - 2 alpha - min{2 (1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1)}``
  (about ``1 - 2 alpha``; stated for equal folds of size ``n/K``), and in practice it is
  typically at least ``1 - alpha``. With ``K = n`` folds (``cv=n``) this is the jackknife+
  (Theorem 1 there: at least ``1 - 2 alpha``), at ``n (n - 1) / 2`` leave-two-out fits per
  learner, so only for small ``n``. :class:`CVPlusCQR` holds the scores and applies the rule
  to any fold models; a CV+ whose weights were fitted once on every row would reuse each
  scored row in its own fold model, which the theorem does not cover.

Non-paired levels (the median, or a level without partner) are not corrected. After the
corrections the quantiles are made non-crossing and the intervals nested by the min-max
envelope of :func:`qaggstats.monotone.minmax_sweep`: from the level nearest 0.5 outwards, lower
levels take the cumulative minimum and upper levels the cumulative maximum. This only moves
lower ends down and upper ends up, so each interval only widens and every coverage guarantee
above is kept (the upper ends of the bands may then be exceeded slightly).

Array functions (:func:`cqr_corrections`, :func:`apply_cqr`) broadcast over leading axes so
that simulations can calibrate many replications at once; the classes wrap them for one data
set.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=200)
>>> q = np.tile([-1.0, 0.0, 1.0], (200, 1))      # a too narrow 80% interval for N(0, 1)
>>> cal = SplitCQR.fit(y, q, [0.1, 0.5, 0.9])
>>> bool(cal.corrections[0] > 0)
True
>>> cal.apply(q[:1]).round(3)
array([[-1.304,  0.   ,  1.304]])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from .errors import CalibrationError, DataError
from .monotone import minmax_sweep
from .scoring import central_pairs, validate_levels

__all__ = [
    "min_calibration_size",
    "conformity_scores",
    "cqr_corrections",
    "apply_cqr",
    "cv_plus_bound",
    "SplitCQR",
    "CVPlusCQR",
    "fit_cqr",
    "fit_cvplus",
    "nested_cv_plus",
    "MondrianCQR",
    "group_labels",
    "validity_statement",
    "guarantees",
    "MARGINAL_PROMISE",
]

# Guards the ceil/floor of (n + 1) * alpha against representation error: (n+1) * 0.1 can be
# 10.000000000000002 where the exact value is an integer.
_EPS = 1e-9


def _upper_rank(n: int, alpha: float) -> int:
    """``ceil((n + 1)(1 - alpha))``: rank of the finite-sample (1 - alpha) quantile."""
    return int(math.ceil((n + 1) * (1.0 - alpha) - _EPS))


def _lower_rank(n: int, alpha: float) -> int:
    """``floor((n + 1) alpha)`` (rank of the CV+ lower end, and ``l`` of the Beta law)."""
    return int(math.floor((n + 1) * alpha + _EPS))


def min_calibration_size(alpha: float) -> int:
    """Smallest ``n`` with ``ceil((n + 1)(1 - alpha)) <= n``, i.e. ``n >= 1/alpha - 1``.

    Parameters
    ----------
    alpha : float
        Miscoverage in (0, 1).

    Returns
    -------
    int

    Examples
    --------
    >>> min_calibration_size(0.1), min_calibration_size(0.2), min_calibration_size(0.05)
    (9, 4, 19)
    """
    return max(1, int(math.ceil(1.0 / alpha - 1.0 - _EPS)))


def conformity_scores(y: np.ndarray, q_lo: np.ndarray, q_hi: np.ndarray) -> np.ndarray:
    """CQR scores ``max(q_lo - y, y - q_hi)``; negative inside the interval.

    Parameters
    ----------
    y, q_lo, q_hi : numpy.ndarray
        Broadcastable arrays (typically ``(..., n)``).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> conformity_scores(np.array([0.0, 3.0]), np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    array([-1.,  2.])
    """
    return np.maximum(q_lo - y, y - q_hi)


def _kth_smallest(a: np.ndarray, k: int) -> np.ndarray:
    """k-th smallest (1-based) along the last axis."""
    return np.partition(a, k - 1, axis=-1)[..., k - 1]


def _describe(taus: np.ndarray, lo: int, hi: int) -> str:
    return f"the {100 * (taus[hi] - taus[lo]):g}% interval (levels {taus[lo]:g}, {taus[hi]:g})"


def _pairs_alphas(taus: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    pairs = central_pairs(taus)
    if not pairs:
        listed = ", ".join(f"{t:g}" for t in taus)
        raise CalibrationError(
            f"no central interval to calibrate: levels {listed} contain no pair (tau, 1 - tau)"
        )
    alphas = np.array([1.0 - (taus[hi] - taus[lo]) for lo, hi in pairs])
    return pairs, alphas


def _check_n(n: int, taus: np.ndarray, pairs, alphas, method: str, per_side: bool) -> None:
    for (lo, hi), a in zip(pairs, alphas):
        need = min_calibration_size(a / 2 if per_side else a)
        if n < need:
            raise CalibrationError(
                f"{method} needs at least {need} calibration points for {_describe(taus, lo, hi)}; "
                f"got n_cal = {n}. Give it more calibration rows (more data, or a larger cal_size= in "
                "qagg), use conformal=\"cv+\" (it calibrates on every row through the folds), or "
                "calibrate only levels nearer the median"
            )


def _check_yq(y: object, q: object, taus: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y_a = np.asarray(y, dtype=float)
    q_a = np.asarray(q, dtype=float)
    if q_a.ndim < 2 or q_a.shape[-1] != taus.size or y_a.shape != q_a.shape[:-1]:
        raise DataError(
            f"{what}: expected y (..., n) and q (..., n, {taus.size}); got y {y_a.shape} and "
            f"q {q_a.shape}"
        )
    if not (np.all(np.isfinite(y_a)) and np.all(np.isfinite(q_a))):
        raise DataError(f"{what}: y and q must be finite (drop or impute missing rows first)")
    return y_a, q_a


def cqr_corrections(y: object, q: object, taus: object, asymmetric: bool = False) -> np.ndarray:
    """Split-CQR corrections for every central pair, vectorised over leading axes.

    Parameters
    ----------
    y : array_like, shape (..., n)
        Calibration outcomes.
    q : array_like, shape (..., n, r)
        Calibration quantiles from models fitted without these rows.
    taus : array_like, shape (r,)
    asymmetric : bool, default False
        Separate lower and upper corrections at ``alpha / 2`` each.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., k)`` for ``k`` pairs (outermost first), or ``(..., k, 2)`` with
        ``[..., 0]`` the lower and ``[..., 1]`` the upper correction when asymmetric. A positive
        correction widens the interval.

    Raises
    ------
    CalibrationError
        When ``n`` is below the minimum for some pair (the message states the minimum).

    Examples
    --------
    >>> y = np.arange(10.0)
    >>> q = np.tile([4.0, 5.0], (10, 1))
    >>> cqr_corrections(y, q, [0.1, 0.9])   # 9th smallest of max(4 - y, y - 5), alpha 0.2
    array([4.])
    """
    t = validate_levels(taus)
    y_a, q_a = _check_yq(y, q, t, "cqr_corrections")
    pairs, alphas = _pairs_alphas(t)
    n = y_a.shape[-1]
    method = "asymmetric split CQR" if asymmetric else "split CQR"
    _check_n(n, t, pairs, alphas, method, per_side=asymmetric)
    out = []
    for (lo, hi), a in zip(pairs, alphas):
        if asymmetric:
            k = _upper_rank(n, a / 2)
            c_lo = _kth_smallest(q_a[..., lo] - y_a, k)
            c_hi = _kth_smallest(y_a - q_a[..., hi], k)
            out.append(np.stack([c_lo, c_hi], axis=-1))
        else:
            scores = conformity_scores(y_a, q_a[..., lo], q_a[..., hi])
            out.append(_kth_smallest(scores, _upper_rank(n, a)))
    return np.stack(out, axis=-2 if asymmetric else -1)


def _envelope(q: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Min-max envelope over the last axis for any leading shape."""
    flat = q.reshape(-1, taus.size)
    return minmax_sweep(flat, taus).reshape(q.shape)


def apply_cqr(q: object, taus: object, corrections: object, asymmetric: bool = False) -> np.ndarray:
    """Widen (or narrow) each central interval by its corrections, then take the envelope.

    Parameters
    ----------
    q : array_like, shape (..., m, r)
    taus : array_like, shape (r,)
    corrections : array_like, shape (..., k) or (..., k, 2)
        As returned by :func:`cqr_corrections` (leading axes must match ``q``'s).
    asymmetric : bool, default False

    Returns
    -------
    numpy.ndarray, shape (..., m, r)
        Non-crossing across levels, intervals nested.

    Examples
    --------
    >>> apply_cqr([[-1.0, 0.0, 1.0]], [0.1, 0.5, 0.9], [0.5])
    array([[-1.5,  0. ,  1.5]])
    """
    t = validate_levels(taus)
    out = np.array(q, dtype=float)
    if out.ndim < 2 or out.shape[-1] != t.size:
        raise DataError(f"quantiles must have shape (..., m, {t.size}); got {out.shape}")
    pairs = central_pairs(t)
    c = np.asarray(corrections, dtype=float)
    expected = (len(pairs), 2) if asymmetric else (len(pairs),)
    if c.shape[c.ndim - len(expected):] != expected:
        raise DataError(f"corrections must end in shape {expected}; got {c.shape}")
    for j, (lo, hi) in enumerate(pairs):
        if asymmetric:
            c_lo, c_hi = c[..., j, 0], c[..., j, 1]
        else:
            c_lo = c_hi = c[..., j]
        # corrections are per data set: broadcast over the m rows
        out[..., lo] -= np.asarray(c_lo)[..., None]
        out[..., hi] += np.asarray(c_hi)[..., None]
    return _envelope(out, t)


def cv_plus_bound(alpha: float, n: int, k_folds: int) -> float:
    """Barber et al. (2021, Thm 4) lower bound on CV+ coverage with K folds of size n/K.

    ``1 - 2 alpha - min{2 (1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1)}``.

    Parameters
    ----------
    alpha : float
    n : int
        Training rows.
    k_folds : int

    Returns
    -------
    float

    Examples
    --------
    >>> round(cv_plus_bound(0.1, 200, 5), 4)
    0.761
    """
    slack = min(2.0 * (1.0 - 1.0 / k_folds) / (n / k_folds + 1.0),
                (1.0 - k_folds / n) / (k_folds + 1.0))
    return 1.0 - 2.0 * alpha - slack


@dataclass(frozen=True)
class _Calibration:
    """Shared fields and the coverage check; subclasses define ``binomial_band``."""

    taus: np.ndarray
    pairs: list[tuple[int, int]]
    alphas: np.ndarray
    corrections: np.ndarray
    n_cal: int

    def check_coverage(self, y_test: object, q_test: object) -> pd.DataFrame:
        """Observed coverage of each calibrated interval against its expected band.

        Parameters
        ----------
        y_test : array_like, shape (m,)
            Outcomes not used for calibration.
        q_test : array_like, shape (m, r)
            Calibrated quantiles (the output of ``apply``).

        Returns
        -------
        pandas.DataFrame
            One row per interval, outermost first: ``nominal``, ``observed``, ``band_low``,
            ``band_high`` (central 95% band of :meth:`binomial_band`), ``inside``, ``n``.
        """
        y_a, q_a = _check_yq(y_test, q_test, self.taus, "check_coverage")
        if y_a.ndim != 1:
            raise DataError(f"check_coverage: y_test must be 1-D, got shape {y_a.shape}")
        rows = []
        for (lo, hi), a in zip(self.pairs, self.alphas):
            observed = float(np.mean((q_a[:, lo] <= y_a) & (y_a <= q_a[:, hi])))
            low, high = self.binomial_band(a, y_a.size)
            rows.append({
                "nominal": round(1.0 - a, 10), "observed": observed, "band_low": low,
                "band_high": high, "inside": bool(low <= observed <= high), "n": y_a.size,
            })
        return pd.DataFrame(rows)


def _betabinom_band(a: float, b: float, n_test: int, level: float) -> tuple[float, float]:
    dist = stats.betabinom(n_test, a, b)
    tail = (1.0 - level) / 2.0
    return float(dist.ppf(tail) / n_test), float(dist.ppf(1.0 - tail) / n_test)


@dataclass(frozen=True, kw_only=True)
class SplitCQR(_Calibration):
    """Split conformalized quantile regression, fitted on a calibration set.

    Attributes
    ----------
    taus : numpy.ndarray, shape (r,)
    pairs : list of (lo, hi)
        Column indices of the central pairs, outermost first.
    alphas : numpy.ndarray, shape (k,)
        Miscoverage of each pair.
    corrections : numpy.ndarray, shape (k,) or (k, 2)
        Per pair; ``(k, 2)`` columns lower/upper for the asymmetric variant.
    n_cal : int
    asymmetric : bool

    Examples
    --------
    >>> y = np.arange(10.0)
    >>> cal = SplitCQR.fit(y, np.tile([4.0, 5.0], (10, 1)), [0.1, 0.9])
    >>> cal.corrections, [round(b, 4) for b in cal.coverage_band(0.2)]
    (array([4.]), [0.8, 0.8909])
    """

    asymmetric: bool = False

    @classmethod
    def fit(cls, y_cal: object, q_cal: object, taus: object, asymmetric: bool = False) -> SplitCQR:
        """Compute corrections from calibration outcomes ``(n_cal,)`` and quantiles ``(n_cal, r)``.

        Raises
        ------
        CalibrationError
            When there is no central pair or ``n_cal`` is too small (message gives the minimum).
        """
        t = validate_levels(taus)
        y_a, q_a = _check_yq(y_cal, q_cal, t, "SplitCQR.fit")
        if y_a.ndim != 1:
            raise DataError(f"SplitCQR.fit: y_cal must be 1-D, got shape {y_a.shape}")
        pairs, alphas = _pairs_alphas(t)
        corr = cqr_corrections(y_a, q_a, t, asymmetric=asymmetric)
        return cls(t, pairs, alphas, corr, y_a.size, asymmetric=asymmetric)

    def apply(self, q: object) -> np.ndarray:
        """Calibrated quantiles ``(m, r)`` from model quantiles ``(m, r)``."""
        q_a = np.asarray(q, dtype=float)
        if q_a.ndim != 2:
            raise DataError(f"apply: q must be 2-D (m, {self.taus.size}), got shape {q_a.shape}")
        return apply_cqr(q_a, self.taus, self.corrections, self.asymmetric)

    def coverage_band(self, alpha: float) -> tuple[float, float]:
        """Theoretical marginal coverage band.

        ``[1 - alpha, 1 - alpha + 1/(n_cal + 1)]``, or ``+ 2/(n_cal + 1)`` for the asymmetric
        variant (upper ends assume continuous scores).
        """
        extra = (2.0 if self.asymmetric else 1.0) / (self.n_cal + 1)
        return 1.0 - alpha, 1.0 - alpha + extra

    def binomial_band(self, alpha: float, n_test: int, level: float = 0.95) -> tuple[float, float]:
        """Central ``level`` band for observed coverage on ``n_test`` fresh points.

        Given the calibration set, coverage is ``Beta(n_cal + 1 - l, l)`` with
        ``l = floor((n_cal + 1) alpha)`` (continuous scores), so the count covered among
        ``n_test`` exchangeable test points is beta-binomial. For the asymmetric variant each
        side misses with ``Beta(l_s, n_cal + 1 - l_s)``, ``l_s = floor((n_cal + 1) alpha/2)``;
        their sum is approximated by ``Beta(2 l_s, n_cal + 1 - 2 l_s)`` (same mean, the
        Dirichlet-type law of two disjoint tails).
        """
        n1 = self.n_cal + 1
        if self.asymmetric:
            miss = 2 * _lower_rank(self.n_cal, alpha / 2)
        else:
            miss = _lower_rank(self.n_cal, alpha)
        if miss < 1:
            return 1.0, 1.0
        return _betabinom_band(n1 - miss, miss, n_test, level)


@dataclass(frozen=True, kw_only=True)
class CVPlusCQR(_Calibration):
    """Cross-fitted CQR (CV+): out-of-fold scores, fold models at prediction time.

    Attributes
    ----------
    taus, pairs, alphas : as for :class:`SplitCQR`
    corrections : numpy.ndarray, shape (k,)
        For reporting only: the ``ceil((1 - alpha)(n + 1))``-th smallest out-of-fold score,
        the correction split CQR would use on these scores. ``apply`` uses the scores
        themselves.
    n_cal : int
        Training rows ``n`` (all of them are scored out of fold).
    k_folds : int
    scores : numpy.ndarray, shape (k, n)
        Out-of-fold conformity scores ``R_i`` per pair.
    folds : numpy.ndarray, shape (n,)
        Fold id of each training row, in ``0 .. K-1``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=40)
    >>> folds = np.arange(40) % 4
    >>> cal = CVPlusCQR.fit(y, np.tile([-1.0, 1.0], (40, 1)), folds, [0.1, 0.9])
    >>> cal.apply(np.tile([-1.0, 1.0], (4, 2, 1))).shape
    (2, 2)
    """

    k_folds: int
    scores: np.ndarray
    folds: np.ndarray

    @classmethod
    def fit(cls, y: object, q_oof: object, folds: object, taus: object) -> CVPlusCQR:
        """Scores from out-of-fold quantiles ``q_oof (n, r)`` with fold ids ``folds (n,)``.

        Raises
        ------
        DataError
            When fold ids are not the integers ``0 .. K-1`` (each used) or shapes disagree.
        CalibrationError
            When ``n < 1/alpha - 1`` for some pair.
        """
        t = validate_levels(taus)
        y_a, q_a = _check_yq(y, q_oof, t, "CVPlusCQR.fit")
        if y_a.ndim != 1:
            raise DataError(f"CVPlusCQR.fit: y must be 1-D, got shape {y_a.shape}")
        f = np.asarray(folds)
        if f.shape != y_a.shape or not np.issubdtype(f.dtype, np.integer):
            raise DataError(
                f"folds must be integer ids of shape {y_a.shape}; got {f.dtype} {f.shape}"
            )
        k_folds = int(f.max()) + 1
        missing = np.setdiff1d(np.arange(k_folds), f)
        if f.min() < 0 or missing.size or k_folds < 2:
            raise DataError(
                f"fold ids must be 0 .. K-1 with K >= 2 and every fold used; got ids "
                f"{np.unique(f).tolist()}"
            )
        pairs, alphas = _pairs_alphas(t)
        n = y_a.size
        _check_n(n, t, pairs, alphas, "CV+ CQR", per_side=False)
        scores = np.stack([conformity_scores(y_a, q_a[:, lo], q_a[:, hi]) for lo, hi in pairs])
        corr = np.array([_kth_smallest(s, _upper_rank(n, a)) for s, a in zip(scores, alphas)])
        return cls(t, pairs, alphas, corr, n, k_folds=k_folds, scores=scores,
                   folds=f.astype(np.intp))

    def apply(self, q_folds: object, q_full: object | None = None) -> np.ndarray:
        """CV+ quantiles for new points.

        Parameters
        ----------
        q_folds : array_like, shape (K, m, r)
            ``q_folds[k]``: predictions of the model fitted without fold ``k``.
        q_full : array_like, shape (m, r), optional
            Values for the non-paired levels (e.g. the median) from the model refit on all
            rows; by default the mean of the fold models.

        Returns
        -------
        numpy.ndarray, shape (m, r)
        """
        qf = np.asarray(q_folds, dtype=float)
        if qf.ndim != 3 or qf.shape[0] != self.k_folds or qf.shape[2] != self.taus.size:
            raise DataError(
                f"q_folds must have shape ({self.k_folds}, m, {self.taus.size}); got {qf.shape}"
            )
        m = qf.shape[1]
        out = qf.mean(axis=0) if q_full is None else np.array(q_full, dtype=float)
        if out.shape != (m, self.taus.size):
            raise DataError(f"q_full must have shape {(m, self.taus.size)}; got {out.shape}")
        n = self.n_cal
        # (m, n) blocks of candidate end points; chunk rows to bound memory near 16 MB each.
        step = max(1, 2_000_000 // n)
        for j, ((lo, hi), a) in enumerate(zip(self.pairs, self.alphas)):
            k_lo, k_hi = _lower_rank(n, a), _upper_rank(n, a)
            r_i = self.scores[j]
            for start in range(0, m, step):
                rows = slice(start, start + step)
                lower = qf[self.folds, rows, lo].T - r_i
                upper = qf[self.folds, rows, hi].T + r_i
                out[rows, lo] = _kth_smallest(lower, k_lo)
                out[rows, hi] = _kth_smallest(upper, k_hi)
        return _envelope(out, self.taus)

    def coverage_bound(self, alpha: float) -> float:
        """Guaranteed minimum coverage, :func:`cv_plus_bound` with this ``n`` and ``K``."""
        return cv_plus_bound(alpha, self.n_cal, self.k_folds)

    def coverage_band(self, alpha: float) -> tuple[float, float]:
        """``(coverage_bound(alpha), 1.0)``: CV+ has a lower guarantee only."""
        return self.coverage_bound(alpha), 1.0

    def binomial_band(self, alpha: float, n_test: int, level: float = 0.95) -> tuple[float, float]:
        """One-sided band: the lower ``(1 - level)/2`` quantile of Binomial(n_test, bound)/n_test.

        Observed coverage below it contradicts the CV+ guarantee; there is no upper limit.
        """
        bound = min(max(cv_plus_bound(alpha, self.n_cal, self.k_folds), 0.0), 1.0)
        low = stats.binom(n_test, bound).ppf((1.0 - level) / 2.0) / n_test
        return float(low), 1.0


def fit_cqr(q_cal: object, y_cal: object, taus: object, method: str = "symmetric") -> SplitCQR:
    """Split CQR from calibration quantiles ``(n_cal, r)`` and outcomes ``(n_cal,)``.

    Pipeline-facing spelling of :meth:`SplitCQR.fit` (quantiles first, variant by name).

    Parameters
    ----------
    q_cal : array_like, shape (n_cal, r)
    y_cal : array_like, shape (n_cal,)
    taus : array_like, shape (r,)
    method : {"symmetric", "asymmetric"}

    Returns
    -------
    SplitCQR

    Examples
    --------
    >>> fit_cqr(np.tile([4.0, 5.0], (10, 1)), np.arange(10.0), [0.1, 0.9]).corrections
    array([4.])
    """
    if method not in ("symmetric", "asymmetric"):
        raise CalibrationError(
            f"unknown CQR method {method!r}; choose 'symmetric' or 'asymmetric'"
        )
    return SplitCQR.fit(y_cal, q_cal, taus, asymmetric=method == "asymmetric")


def fit_cvplus(q_oof: object, y: object, folds: object, taus: object) -> CVPlusCQR:
    """CV+ CQR from out-of-fold quantiles ``(n, r)``, outcomes ``(n,)`` and fold ids ``(n,)``.

    Pipeline-facing spelling of :meth:`CVPlusCQR.fit` (quantiles first).

    Examples
    --------
    >>> cal = fit_cvplus(np.zeros((20, 2)), np.zeros(20), np.arange(20) % 4, [0.1, 0.9])
    >>> cal.k_folds, cal.n_cal
    (4, 20)
    """
    return CVPlusCQR.fit(y, q_oof, folds, taus)


def nested_cv_plus(y: object, folds: object, taus: object,
                   fit: Callable[[int, np.ndarray, np.ndarray], Any],
                   predict: Callable[[Any, int, np.ndarray], np.ndarray]) -> tuple[CVPlusCQR, list]:
    """The paper's nested CV+: refit the aggregation without each fold, score that fold with it.

    For each fold ``k``: ``agg_k = fit(k, train, inner_folds)`` fits the whole aggregation on
    the rows ``train`` (positions of every row outside fold ``k``) from base predictions that
    never saw fold ``k`` (the caller's leave-two-folds-out array), with ``inner_folds`` the
    rows' outer fold ids relabelled ``0 .. K-2`` for any inner validation; then
    ``predict(agg_k, k, rows)`` gives its quantiles ``(m, r)`` at the rows of fold ``k`` from
    the base learners fitted without fold ``k``. The scores of those predictions make a
    :class:`CVPlusCQR`, whose ``apply`` then takes the fold aggregates' predictions at new
    points. Coverage: see the module docstring (at least about ``1 - 2 alpha``, exactly
    Barber et al.'s K-fold bound, :func:`cv_plus_bound`).

    Parameters
    ----------
    y : array_like, shape (n,)
    folds : array_like of int, shape (n,)
        Fold ids ``0 .. K-1``.
    taus : array_like, shape (r,)
    fit : callable ``(k, train (n - n_k,) int, inner_folds (n - n_k,) int) -> aggregate``
    predict : callable ``(aggregate, k, rows (n_k,) int) -> (n_k, r)``

    Returns
    -------
    (CVPlusCQR, list)
        The calibration and the K fold aggregates (``fit``'s return values, in fold order).

    Examples
    --------
    A toy "aggregation": the interval of the training rows' 10% and 90% quantiles.

    >>> y = np.arange(40.0) % 7
    >>> folds = np.arange(40) % 4
    >>> fit = lambda k, train, inner: np.quantile(y[train], [0.1, 0.5, 0.9])
    >>> predict = lambda agg, k, rows: np.tile(agg, (rows.size, 1))
    >>> cal, aggs = nested_cv_plus(y, folds, [0.1, 0.5, 0.9], fit, predict)
    >>> len(aggs), cal.k_folds, cal.apply(np.stack([np.tile(a, (2, 1)) for a in aggs])).shape
    (4, 4, (2, 3))
    """
    t = validate_levels(taus)
    y_a = np.asarray(y, dtype=float)
    f = np.asarray(folds)
    if y_a.ndim != 1 or f.shape != y_a.shape or not np.issubdtype(f.dtype, np.integer):
        raise DataError(f"nested_cv_plus: y (n,) and integer folds (n,) expected; got {y_a.shape} and "
                        f"{f.dtype} {f.shape}")
    k_folds = int(f.max()) + 1
    q = np.full((y_a.size, t.size), np.nan)
    aggregates = []
    for k in range(k_folds):
        train, rows = np.flatnonzero(f != k), np.flatnonzero(f == k)
        inner = f[train] - (f[train] > k)  # outer ids without k, relabelled 0 .. K-2
        agg = fit(k, train, inner)
        q[rows] = np.asarray(predict(agg, k, rows), dtype=float)
        aggregates.append(agg)
    return CVPlusCQR.fit(y_a, q, f, t), aggregates


def group_labels(values: object, column: str) -> list:
    """Plain Python labels of a group column (str, int, float or bool), checked for missing values.

    Parameters
    ----------
    values : array_like or pandas.Series
    column : str
        The column's name, for messages.

    Returns
    -------
    list

    Raises
    ------
    DataError
        Missing values, or labels of another kind (dates, objects).

    Examples
    --------
    >>> group_labels(pd.Series(["a", "b"], dtype="category"), "g"), group_labels(np.array([1, 2]), "g")
    (['a', 'b'], [1, 2])
    """
    arr = np.asarray(values, dtype=object).ravel()
    missing = int(pd.isna(arr).sum())
    if missing:
        raise DataError(f"conformal_groups column {column!r} has {missing} missing value(s); fill them (e.g. a "
                        "level 'unknown') or drop those rows")
    out = [v.item() if isinstance(v, np.generic) else v for v in arr]
    bad = next((v for v in out if not isinstance(v, (str, int, float, bool))), None)
    if bad is not None:
        raise DataError(f"conformal_groups column {column!r} holds {type(bad).__name__} values such as {bad!r}; "
                        "group labels must be strings, integers, floats or booleans (convert the column)")
    return out


@dataclass(frozen=True, kw_only=True)
class MondrianCQR:
    """Group-conditional (Mondrian) split CQR: a separate correction per group of a column.

    Within each group ``g`` the correction is the split-CQR one computed on that group's
    ``n_g`` calibration rows only (Vovk 2012; Romano et al. 2019; Angelopoulos & Bates 2023,
    Section 4.5), so coverage holds *within* every group: for a new point of group ``g``,
    ``P(Y in C(X) | group g)`` lies in ``[1 - alpha, 1 - alpha + 1/(n_g + 1)]`` (asymmetric:
    ``+ 2/(n_g + 1)``; upper ends for continuous scores). Marginal coverage, a mixture of
    these, is at least ``1 - alpha`` too. Each group needs ``n_g >= 1/alpha - 1`` calibration
    rows (``2/alpha - 1`` asymmetric).

    Attributes
    ----------
    taus, pairs, alphas : as for :class:`SplitCQR`
    column : str
        The group column of the data.
    groups : tuple
        Group labels (plain str / int / float / bool), in order of first appearance.
    n_groups : tuple of int
        Calibration rows per group.
    corrections : numpy.ndarray, shape (G, k) or (G, k, 2)
    n_cal : int
    asymmetric : bool

    Examples
    --------
    >>> y = np.r_[np.arange(10.0), 10 * np.arange(10.0)]
    >>> g = ["a"] * 10 + ["b"] * 10
    >>> cal = MondrianCQR.fit(y, np.tile([4.0, 5.0], (20, 1)), g, [0.1, 0.9], column="g")
    >>> cal.corrections.ravel().tolist(), cal.n_groups
    ([4.0, 75.0], (10, 10))
    >>> cal.apply(np.array([[4.0, 5.0], [4.0, 5.0]]), ["b", "a"]).tolist()
    [[-71.0, 80.0], [0.0, 9.0]]
    """

    taus: np.ndarray
    pairs: list[tuple[int, int]]
    alphas: np.ndarray
    column: str
    groups: tuple
    n_groups: tuple
    corrections: np.ndarray
    n_cal: int
    asymmetric: bool = False

    @classmethod
    def fit(cls, y_cal: object, q_cal: object, labels: object, taus: object, *, column: str,
            asymmetric: bool = False) -> MondrianCQR:
        """Per-group corrections from calibration outcomes, quantiles ``(n_cal, r)`` and group labels.

        Raises
        ------
        CalibrationError
            A group with fewer calibration rows than the level needs (names the group, its row
            count and the minimum).
        """
        t = validate_levels(taus)
        y_a, q_a = _check_yq(y_cal, q_cal, t, "MondrianCQR.fit")
        lab = group_labels(labels, column)
        if y_a.ndim != 1 or len(lab) != y_a.size:
            raise DataError(f"MondrianCQR.fit: y_cal (n,) and one group label per row expected; got {y_a.shape} "
                            f"and {len(lab)} labels")
        pairs, alphas = _pairs_alphas(t)
        groups = tuple(dict.fromkeys(lab))
        index = {g: i for i, g in enumerate(groups)}
        codes = np.array([index[v] for v in lab], dtype=np.intp)
        corrections, sizes = [], []
        for i, g in enumerate(groups):
            rows = codes == i
            n_g = int(rows.sum())
            for (lo, hi), a in zip(pairs, alphas):
                need = min_calibration_size(a / 2 if asymmetric else a)
                if n_g < need:
                    raise CalibrationError(
                        f"group {g!r} of conformal_groups column {column!r} has {n_g} calibration row(s); "
                        f"Mondrian CQR needs at least {need} per group for {_describe(t, lo, hi)}. Merge small "
                        "groups, raise cal_size, or calibrate a narrower interval")
            corrections.append(cqr_corrections(y_a[rows], q_a[rows], t, asymmetric=asymmetric))
            sizes.append(n_g)
        return cls(taus=t, pairs=pairs, alphas=alphas, column=column, groups=groups, n_groups=tuple(sizes),
                   corrections=np.stack(corrections), n_cal=y_a.size, asymmetric=asymmetric)

    def codes(self, labels: object) -> np.ndarray:
        """Group index of each label; a label not seen in calibration is a DataError naming it."""
        lab = group_labels(labels, self.column)
        index = {g: i for i, g in enumerate(self.groups)}
        unseen = list(dict.fromkeys(v for v in lab if v not in index))
        if unseen:
            known = ", ".join(repr(g) for g in self.groups)
            raise DataError(f"conformal_groups column {self.column!r}: group(s) {', '.join(map(repr, unseen[:5]))} "
                            f"were not in the calibration data, so they have no correction (known: {known}); "
                            "recode them to a known group or refit with them")
        return np.array([index[v] for v in lab], dtype=np.intp)

    def _position(self, group: object) -> int:
        return int(self.codes([group])[0])

    def apply(self, q: object, labels: object) -> np.ndarray:
        """Calibrated quantiles ``(m, r)`` from model quantiles ``(m, r)`` and each row's group label."""
        q_a = np.asarray(q, dtype=float)
        if q_a.ndim != 2 or q_a.shape[1] != self.taus.size:
            raise DataError(f"apply: q must be 2-D (m, {self.taus.size}), got shape {q_a.shape}")
        codes = self.codes(labels)
        if codes.size != q_a.shape[0]:
            raise DataError(f"apply: {codes.size} group labels for {q_a.shape[0]} rows")
        out = np.empty_like(q_a)
        for i in np.unique(codes):
            rows = codes == i
            out[rows] = apply_cqr(q_a[rows], self.taus, self.corrections[i], self.asymmetric)
        return out

    def coverage_band(self, alpha: float, group: object) -> tuple[float, float]:
        """Coverage band within ``group``: ``[1 - alpha, 1 - alpha + (1 or 2)/(n_g + 1)]``."""
        n_g = self.n_groups[self._position(group)]
        extra = (2.0 if self.asymmetric else 1.0) / (n_g + 1)
        return 1.0 - alpha, 1.0 - alpha + extra

    def _miss(self, alpha: float, n_g: int) -> int:
        return 2 * _lower_rank(n_g, alpha / 2) if self.asymmetric else _lower_rank(n_g, alpha)

    def binomial_band(self, alpha: float, n_test: int, level: float = 0.95,
                      group: object = None) -> tuple[float, float]:
        """Central ``level`` band of observed coverage on ``n_test`` fresh points.

        Within a ``group``: beta-binomial with ``Beta(n_g + 1 - l, l)``, as for
        :meth:`SplitCQR.binomial_band`. Without one (all groups pooled, in their calibration
        shares): the beta-binomial whose Beta law has the mean and variance of the mixture
        ``sum_g (n_g / n_cal) C_g`` of the independent per-group coverages.
        """
        if group is not None:
            n_g = self.n_groups[self._position(group)]
            miss = self._miss(alpha, n_g)
            return (1.0, 1.0) if miss < 1 else _betabinom_band(n_g + 1 - miss, miss, n_test, level)
        share = np.asarray(self.n_groups, dtype=float) / self.n_cal
        mean = var = 0.0
        for p, n_g in zip(share, self.n_groups):
            a, b = n_g + 1 - self._miss(alpha, n_g), self._miss(alpha, n_g)
            if b < 1:
                mean += p
                continue
            mean += p * a / (a + b)
            var += p**2 * a * b / ((a + b) ** 2 * (a + b + 1))
        if var <= 0 or mean >= 1:
            return 1.0, 1.0
        nu = mean * (1 - mean) / var - 1  # a + b of the moment-matched Beta
        return _betabinom_band(mean * nu, (1 - mean) * nu, n_test, level)

    def table(self) -> pd.DataFrame:
        """Per group: calibration rows, the correction of each interval (lower / upper when
        asymmetric) and the coverage band guaranteed within the group.

        Examples
        --------
        >>> cal = MondrianCQR.fit(np.arange(20.0), np.tile([4.0, 5.0], (20, 1)), [0, 1] * 10, [0.1, 0.9],
        ...                       column="g")
        >>> cal.table().columns.tolist()
        ['group', 'n_cal', 'correction 80%', 'guaranteed 80%']
        """
        rows = []
        for i, g in enumerate(self.groups):
            row = {"group": g, "n_cal": self.n_groups[i]}
            for j, a in enumerate(self.alphas):
                pct = f"{100 * (1 - a):g}%"
                c = self.corrections[i, j]
                row[f"correction {pct}"] = (f"{c[0]:.4g} / {c[1]:.4g}" if self.asymmetric else float(c))
                lo, hi = self.coverage_band(a, g)
                row[f"guaranteed {pct}"] = f"[{lo:.3f}, {hi:.3f}]"
            rows.append(row)
        return pd.DataFrame(rows)

    def check_coverage(self, y_test: object, q_test: object, labels: object) -> pd.DataFrame:
        """Observed coverage per group and interval against the group's band.

        Returns
        -------
        pandas.DataFrame
            One row per group and interval: ``group``, ``n_cal``, ``nominal``, ``observed``,
            ``band_low``, ``band_high`` (central 95% beta-binomial band for the group's test
            rows), ``inside``, ``n`` (test rows of the group). Groups absent from the test data
            are left out.
        """
        y_a, q_a = _check_yq(y_test, q_test, self.taus, "check_coverage")
        codes = self.codes(labels)
        rows = []
        for i, g in enumerate(self.groups):
            sel = codes == i
            n = int(sel.sum())
            if not n:
                continue
            for (lo, hi), a in zip(self.pairs, self.alphas):
                observed = float(np.mean((q_a[sel, lo] <= y_a[sel]) & (y_a[sel] <= q_a[sel, hi])))
                low, high = self.binomial_band(a, n, group=g)
                rows.append({"group": g, "n_cal": self.n_groups[i], "nominal": round(1.0 - a, 10),
                             "observed": observed, "band_low": low, "band_high": high,
                             "inside": bool(low <= observed <= high), "n": n})
        return pd.DataFrame(rows)


#: What marginal conformal calibration does and does not promise (summary and report).
MARGINAL_PROMISE = (
    "Conformal calibration promises marginal coverage: the probability that a new point falls in its "
    "interval, averaged over new points x (and over the calibration draw). It does not promise coverage "
    "conditional on x: a slab of x (a bin of a feature, or of the predicted width) may be covered less "
    "often, and no finite-sample method can guarantee conditional coverage in general. Mondrian "
    "calibration (conformal_groups=) extends the promise to each group of its column, not to finer slabs. "
    "With many bins about 5% fall outside their 95% bands by chance alone.")


def validity_statement(calibration: object, alpha: float) -> str:
    """The exact guarantee of a calibration for the interval of miscoverage ``alpha``, in words.

    Parameters
    ----------
    calibration : SplitCQR, MondrianCQR, CVPlusCQR or None
    alpha : float

    Returns
    -------
    str

    Examples
    --------
    >>> cal = SplitCQR.fit(np.arange(10.0), np.tile([4.0, 5.0], (10, 1)), [0.1, 0.9])
    >>> validity_statement(cal, 0.2)
    'split CQR, marginal: a new point is covered with probability in [0.800, 0.891] (averaged over x and the calibration draw; n_cal = 10)'
    >>> validity_statement(None, 0.2)
    'no calibration: no finite-sample coverage guarantee'
    """
    pct = f"{1 - alpha:.0%}"
    if calibration is None:
        return "no calibration: no finite-sample coverage guarantee"
    if isinstance(calibration, MondrianCQR):
        sizes = ", ".join(f"{g!r}: {n}" for g, n in zip(calibration.groups, calibration.n_groups))
        extra = 2 if calibration.asymmetric else 1
        return (f"Mondrian CQR, per group: within each group g of {calibration.column!r} a new point is covered "
                f"with probability in [{1 - alpha:.3f}, {1 - alpha:.3f} + {extra}/(n_g + 1)] (n_g calibration rows: "
                f"{sizes}); marginally at least {1 - alpha:.3f}; nothing finer than the groups")
    if isinstance(calibration, CVPlusCQR):
        bound = max(0.0, calibration.coverage_bound(alpha))
        return (f"nested CV+, marginal: a new point is covered with probability at least {bound:.3f} "
                f"(1 - 2 alpha - min{{2(1 - 1/K)/(n/K + 1), (1 - K/n)/(K + 1)}}, Barber et al. 2021, Thm 4; "
                f"n = {calibration.n_cal}, K = {calibration.k_folds}), typically at least {1 - alpha:.3f} "
                f"for the {pct} interval")
    lo, hi = calibration.coverage_band(alpha)
    name = "asymmetric split CQR" if calibration.asymmetric else "split CQR"
    return (f"{name}, marginal: a new point is covered with probability in [{lo:.3f}, {hi:.3f}] "
            f"(averaged over x and the calibration draw; n_cal = {calibration.n_cal})")


def guarantees(calibration: object, taus: object) -> list[str]:
    """:func:`validity_statement` of every central interval, then :data:`MARGINAL_PROMISE`.

    Examples
    --------
    >>> guarantees(None, [0.1, 0.5, 0.9])
    ['no calibration: no finite-sample coverage guarantee']
    """
    if calibration is None:
        return [validity_statement(None, 0.1)]
    t = validate_levels(taus)
    return [validity_statement(calibration, 2 * t[lo]) for lo, _ in central_pairs(t)] + [MARGINAL_PROMISE]
