"""Linear quantile regression (R's ``rq``): exact LP fits, R's inference, tidy results.

Inference as R's ``summary.rq``: rank-inversion intervals ("rank", R's default below 1,001 rows),
"iid", "nid" (R's default from 1,001 rows), "ker" and the bootstrap ("boot": xy-pair resampling
by default, or "wxy" exponential weights; seeded). :func:`anova` is R's ``anova.rq`` for one
formula fitted at several levels: the joint Wald test that the slopes are equal across levels.
"""
from __future__ import annotations

import itertools
import math
import time
import warnings
from typing import Literal, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.linalg import qr as qr_decomp
from scipy.optimize import linprog
from scipy.stats import f as f_dist
from scipy.stats import norm
from scipy.stats import t as t_dist

from ._fn import fn_solve, one_blas_thread
from .errors import DataError, FitError, SolverError
from .formula import FormulaSpec, NAReport, design_newdata, model_frames
from .scoring import validate_levels
from .levels import quantile_column
from .summary import Summary, SummaryMixin, format_pval

__all__ = ["rq", "RQResults", "rq_fit", "rq_se", "rq_boot", "rq_rank_ci", "anova", "AnovaRQ", "rearrange",
           "akj_density", "bandwidth", "check_loss", "NonPositiveFisWarning"]

SE = Literal["rank", "iid", "nid", "ker", "boot"]
BootMethod = Literal["xy", "wxy", "pwy", "mcmb", "wild"]
BOOT_METHODS = ("xy", "wxy", "pwy", "mcmb", "wild")


# bases among tied zero residuals the rank walk may try at one kink before giving up
_MAX_TIED_BASES = 5000


class NonPositiveFisWarning(UserWarning):
    """R's "N non-positive fis": the "nid" sparsity estimate is not positive at N rows.

    Those rows get zero density in the sandwich (as in R); the fits at ``tau ± h`` cross there.
    """


def check_loss(resid: np.ndarray, tau: float, weights: Optional[np.ndarray] = None) -> float:
    """Sum of check losses ``sum w_i rho_tau(r_i)``, ``rho_tau(u) = u (tau - 1{u < 0})``.

    Examples
    --------
    >>> check_loss(np.array([1.0, -2.0]), 0.25)
    1.75
    """
    loss = resid * (tau - (resid < 0))
    if weights is not None:
        loss = loss * weights
    return float(np.sum(loss))


def _vertex(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray) -> Optional[np.ndarray]:
    """The ``d`` rows of the optimal LP vertex near ``beta``, or None when not proven optimal.

    An interior point or the dual marginals give ``beta`` to solver tolerance only; R's
    simplex returns the basic solution, which interpolates ``d`` observations exactly. The
    candidate basis is ``d`` independent rows among the smallest residuals of ``beta``; it is
    returned only with a dual certificate, the LP's optimality conditions: multipliers
    ``a_i = 1{r_i > 0}`` off the basis and ``a`` in ``[0, 1]`` on the basis and on the other
    zero residuals (ties, e.g. duplicated rows) with ``X'a = (1 - tau) X'1``. Without ties
    ``a_h`` is one ``d x d`` solve; with ties a small feasibility LP over the tied rows.
    Call it on a well-scaled problem (unit-norm columns, unit-scale response).
    """
    n, d = X.shape
    h = _basis(X, np.abs(y - X @ beta))
    if h is None:
        return None
    Xh = X[h]
    exact = np.linalg.solve(Xh, y[h])
    r = y - X @ exact
    off = np.ones(n, dtype=bool)
    off[h] = False
    tie = off & (np.abs(r) <= 1e-10 * (1.0 + np.abs(y).max()))
    pos = off & ~tie & (r > 0)
    rhs = (1.0 - tau) * X.sum(axis=0) - X[pos].sum(axis=0)
    slack = 1e-9
    if not np.any(tie):
        a_h = np.linalg.solve(Xh.T, rhs)
        return h if np.all(a_h >= -slack) and np.all(a_h <= 1.0 + slack) else None
    free = np.concatenate([h, np.flatnonzero(tie)])
    if free.size > 4 * d + 50:  # a hugely degenerate vertex: leave it to the simplex
        return None
    res = linprog(np.zeros(free.size), A_eq=X[free].T, b_eq=rhs, bounds=(0.0, 1.0), method="highs")
    return h if res.status == 0 else None


def _basis(X: np.ndarray, size: np.ndarray) -> Optional[np.ndarray]:
    """Sorted indices of ``d`` linearly independent rows of ``X`` with the smallest ``size``
    (duplicated rows make the ``d`` smallest dependent), or None."""
    n, d = X.shape
    if n <= d:
        return np.arange(n) if n == d and np.linalg.matrix_rank(X) == d else None
    m = min(n, 2 * d + 10)
    near = np.argpartition(size, m - 1)[:m] if m < n else np.arange(n)
    near = near[np.argsort(size[near], kind="stable")]
    if np.linalg.matrix_rank(X[near[:d]]) == d:
        return np.sort(near[:d])
    chosen: list[int] = []
    for i in near:  # greedy: keep a row when it adds a direction
        if np.linalg.matrix_rank(X[chosen + [i]]) == len(chosen) + 1:
            chosen.append(int(i))
            if len(chosen) == d:
                return np.sort(np.array(chosen))
    return None


def _column_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean column norms without underflow or overflow: each column is divided by its
    largest size first (``np.linalg.norm`` squares, so a column of 1e-300 has norm 0)."""
    top = np.abs(X).max(axis=0, initial=0.0)
    safe = np.where(top > 0, top, 1.0)
    return top * np.linalg.norm(X / safe, axis=0)


def _pow2_scale(y: np.ndarray) -> float:
    """1 for a response of ordinary size, else the power of two nearest its largest size.

    R's inference has absolute tolerances (``eps^(1/2)`` in the sparsity estimates, ties in
    the rank walk) which swamp a response of size 1e-300 and vanish beside 1e300. Dividing by
    a power of two is exact, so inference computed on ``y / s`` and scaled back is the
    unit-scale answer; between 2^-20 and 2^40 (1e-6 .. 1e12) nothing is rescaled and the
    arithmetic is R's own.
    """
    top = float(np.abs(y).max(initial=0.0))
    if top == 0 or not np.isfinite(top) or 2.0 ** -20 <= top <= 2.0 ** 40:
        return 1.0
    return float(2.0 ** np.round(np.log2(top)))


def _equilibrate(Xw: np.ndarray, yw: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
    """A scale-free version of the problem: an orthonormal basis ``Q`` of the columns and the
    least-squares residual of the response divided by its largest size.

    Quantile regression is equivariant under ``X -> X T`` and ``y -> s y + X c``, so the
    vertex (its ``d`` basic rows) is the same, while the solvers' absolute tolerances now
    meet unit-scale data whatever the units (y x 1e-7 .. 1e9, x + 1e7). Returns ``Q (n, d)``,
    the scaled response, the scale it was divided by and the rank, judged on unit-norm columns.
    """
    norms = _column_norms(Xw)
    safe = np.where(norms > 0, norms, 1.0)
    Q, R = qr_decomp(Xw / safe, mode="economic", overwrite_a=True, check_finite=False)
    sv = np.linalg.svd(R, compute_uv=False)
    rank = int(np.sum(sv > sv.max(initial=0.0) * max(Xw.shape) * np.finfo(float).eps))
    if np.any(norms == 0):
        rank = min(rank, int(np.sum(norms > 0)))
    resid = yw - Q @ (Q.T @ yw)
    size = float(np.abs(resid).max(initial=0.0))
    size = size if size > 0 else 1.0
    return Q, resid / size, size, rank


def rq_fit(X: np.ndarray, y: np.ndarray, tau: float,
           weights: Optional[np.ndarray] = None,
           start: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
    """Linear quantile regression at level ``tau``: the exact LP optimum (a vertex).

    Solves ``min_beta sum w_i rho_tau(y_i - x_i' beta)`` by the Frisch–Newton interior point
    (R's ``method="fn"``, :mod:`qaggstats._fn`) on an equilibrated problem (orthonormal
    columns, unit-scale response: the answer does not depend on the units of ``X`` or ``y``),
    then snaps to the vertex through ``d`` observations and proves it optimal by a dual
    certificate, so the coefficients are R's ``"br"`` simplex solution to rounding. When the
    certificate fails (a degenerate vertex: ties), HiGHS' dual simplex solves R's ``br``
    dual ``max y'a  s.t.  X'a = (1 - tau) X'1, 0 <= a <= 1`` on the same equilibrated data.

    Parameters
    ----------
    X : (n, d) array
        Design matrix (with the intercept column when wanted).
    y : (n,) array
        Response.
    tau : float
        Quantile level in (0, 1).
    weights : (n,) array, optional
        Non-negative observation weights (as R's ``rq(weights=)``: rows of X and y scaled).
    start : (d,) array, optional
        Coefficients near the answer, e.g. the fit at an adjacent level or at ``tau`` for
        ``tau +- h``. The interior point then runs on the band of rows with the smallest
        residuals at ``start`` (Portnoy & Koenker's preprocessing), the others entering as
        two pseudo-observations by residual sign; the answer is kept only if the dual
        certificate holds on all rows, else the full problem is solved. The result is the
        same optimum, with or without ``start``.

    Returns
    -------
    beta : (d,) array
    objective : float
        ``sum w_i rho_tau(y_i - x_i' beta)``.

    Raises
    ------
    DataError
        Bad inputs or a singular design (rank judged on unit-norm columns, so a column's
        units never make it look aliased).
    SolverError
        Both solvers failed.

    Examples
    --------
    >>> X = np.column_stack([np.ones(5), np.arange(5.0)])
    >>> beta, obj = rq_fit(X, np.array([0.0, 1.0, 2.0, 3.0, 10.0]), 0.5)
    >>> np.round(beta, 12).tolist(), round(obj, 12)
    ([0.0, 1.0], 3.0)
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not 0.0 < tau < 1.0:
        raise DataError(f"rq_fit: tau must lie strictly inside (0, 1), got {tau!r}")
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise DataError(f"rq_fit: X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if X.shape[0] == 0:
        raise DataError("rq_fit: cannot fit on 0 rows")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise DataError("rq_fit: X and y must be finite (no NaN or inf)")
    w = None
    Xw, yw = X, y
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != y.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
            raise DataError("rq_fit: weights must be finite, non-negative and of shape (n,)")
        # zero-weight rows are zero residuals whatever beta: they would only make ties
        used = w > 0
        Xw, yw = X[used] * w[used, None], y[used] * w[used]
    with one_blas_thread():
        Q, ys, size, rank = _equilibrate(Xw, yw)
        if rank < X.shape[1]:
            raise DataError(
                f"rq_fit: singular design matrix (rank {rank} < {X.shape[1]} columns); "
                "drop collinear terms"
            )
        h = None
        if start is not None:
            if np.shape(start) != (X.shape[1],) or not np.all(np.isfinite(start)):
                raise DataError(f"rq_fit: start must be {X.shape[1]} finite coefficients, got shape {np.shape(start)}")
            h = _banded_vertex(Q, ys, tau, (yw - Xw @ np.asarray(start, dtype=np.float64)) / size)
        if h is None:
            h = _vertex(Q, ys, tau, fn_solve(Q, ys, tau).beta)
        if h is None:
            h, fitted = _highs_vertex(Q, ys, tau)
            if h is None:
                # degenerate optimum: the simplex point as it is, back in the original units
                beta = np.linalg.lstsq(Xw, yw - size * (ys - fitted), rcond=None)[0]
                return beta, check_loss(y - X @ beta, tau, w)
        beta = np.linalg.solve(Xw[h], yw[h])
    return beta, check_loss(y - X @ beta, tau, w)


def _banded_vertex(Q: np.ndarray, ys: np.ndarray, tau: float, resid: np.ndarray) -> Optional[np.ndarray]:
    """The certified optimal vertex from an interior point on the rows near a starting fit.

    Portnoy & Koenker (1997): keep the ``m ~ sqrt(d) n^(2/3)`` rows with the smallest
    residuals ``resid`` at the start, merge the rows above (below) into one pseudo-observation
    whose response is high (low) enough to keep its sign, solve that small problem, and
    accept its vertex only with the certificate of :func:`_vertex` on all rows (None
    otherwise, and the caller solves the full problem).
    """
    n, d = Q.shape
    m = int(2 * np.sqrt(d) * n ** (2 / 3))
    if m + 2 >= n // 2:  # too small to gain
        return None
    band = np.argpartition(np.abs(resid), m - 1)[:m]
    cut = np.abs(resid[band]).max()
    above, below = resid > cut, resid < -cut
    fitted = ys - resid
    # far beyond any fitted value the pseudo-rows can reach near the start
    far = 10.0 * (np.abs(fitted).sum() + np.abs(ys).sum() + 1.0)
    Xb = np.vstack([Q[band], Q[above].sum(axis=0), Q[below].sum(axis=0)])
    yb = np.concatenate([ys[band], [far, -far]])
    gamma = fn_solve(Xb, yb, tau).beta
    return _vertex(Q, ys, tau, gamma)


def _highs_vertex(Q: np.ndarray, ys: np.ndarray, tau: float) -> tuple[Optional[np.ndarray], np.ndarray]:
    """HiGHS' dual simplex on R's ``br`` dual (equilibrated data): the basic rows of the
    optimum, or None with the simplex fitted values ``Q gamma``.

    A degenerate optimum (ties) can defeat the certificate of :func:`_vertex`; the ``d``
    rows the simplex point nearly interpolates are then used if they are no worse.
    """
    res = linprog(-ys, A_eq=Q.T, b_eq=(1.0 - tau) * Q.sum(axis=0), bounds=(0.0, 1.0),
                  method="highs-ds")
    if res.status != 0:
        raise SolverError(f"rq_fit: HiGHS failed at tau={tau:g}: {res.message}")
    # linprog minimises -y'a, so the equality multipliers are -gamma
    gamma = -np.asarray(res.eqlin.marginals)
    fitted = Q @ gamma
    h = _vertex(Q, ys, tau, gamma)
    if h is not None:
        return h, fitted
    d = Q.shape[1]
    h = np.sort(np.argsort(np.abs(ys - fitted), kind="stable")[:d])
    if np.linalg.matrix_rank(Q[h]) == d:
        snapped = Q @ np.linalg.solve(Q[h], ys[h])
        before = check_loss(ys - fitted, tau)
        if check_loss(ys - snapped, tau) <= before + 1e-12 * max(1.0, abs(before)):
            return h, fitted
    return None, fitted


def bandwidth(tau: float, n: int, hs: bool = True, alpha: float = 0.05) -> float:
    """Sparsity bandwidth of R's ``bandwidth.rq``: Hall–Sheather (default) or Bofinger.

    Examples
    --------
    >>> round(float(bandwidth(0.5, 235)), 6)
    0.157439
    """
    x0 = norm.ppf(tau)
    f0 = norm.pdf(x0)
    if hs:
        return n ** (-1 / 3) * norm.ppf(1 - alpha / 2) ** (2 / 3) * (
            (1.5 * f0**2) / (2 * x0**2 + 1)) ** (1 / 3)
    return n ** -0.2 * ((4.5 * f0**4) / (2 * x0**2 + 1) ** 2) ** 0.2


def _sandwich(X: np.ndarray, f: np.ndarray, tau: float, what: str = "nid") -> tuple[np.ndarray, np.ndarray]:
    """``tau (1 - tau) H^-1 X'X H^-1`` with ``H = X' diag(f) X`` (R's QR route) and ``H^-1``."""
    Hinv = _hinv(X, f, what)
    return tau * (1 - tau) * Hinv @ (X.T @ X) @ Hinv, Hinv


def _nid_h(tau: float, n: int, hs: bool) -> float:
    h = bandwidth(tau, n, hs)
    while tau - h < 0 or tau + h > 1:
        h /= 2
    return h


def _nid_density(X: np.ndarray, y: np.ndarray, tau: float, hs: bool) -> tuple[np.ndarray, int]:
    """R's "nid" local densities ``f (n,)`` and the count of non-positive fitted differences.

    Call it on a unit-scale response (R's ``eps^(1/2)`` offset is absolute)."""
    eps = np.finfo(float).eps ** 0.5
    h = _nid_h(tau, X.shape[0], hs)
    bhi = rq_fit(X, y, tau + h)[0]
    blo = rq_fit(X, y, tau - h)[0]
    dyhat = X @ (bhi - blo)
    return np.maximum(0.0, (2 * h) / (dyhat - eps)), int(np.sum(dyhat <= 0))


def _hinv(X: np.ndarray, f: np.ndarray, what: str = "nid") -> np.ndarray:
    """``(X' diag(f) X)^-1`` through the QR of ``sqrt(f) X`` (R's route).

    Raises FitError when fewer rows than columns have a positive density (an exact or
    near-exact fit: R stops with "singular matrix in 'backsolve'")."""
    good = np.isfinite(f) & (f > 0)
    if not np.all(np.isfinite(f)) or good.sum() < X.shape[1] or np.linalg.matrix_rank(X[good]) < X.shape[1]:
        raise FitError(
            f"se={what!r}: the local densities are positive at only {int(good.sum())} of {f.size} rows "
            f"(fewer than the {X.shape[1]} design columns can use), so the sandwich is singular; the fit is "
            "exact or nearly so (many zero residuals). Use se='rank' or se='boot'")
    R = np.linalg.qr(np.sqrt(f)[:, None] * X, mode="r")
    Rinv = np.linalg.solve(R, np.eye(X.shape[1]))
    return Rinv @ Rinv.T


def akj_density(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Silverman's adaptive Gaussian kernel density of ``x`` at ``z``, as quantreg's ``akj``.

    quantreg's defaults (Fortran ``sakj``): pilot bandwidth ``0.9 min(sd, IQR / 1.34) n^(-1/5)``
    (the quartiles as its cumulative-weight loop picks them), local factors with ``alpha = 0.5``,
    and its ``pi = 3.141593``. Used by the wild bootstrap for the density of residuals at 0.

    Examples
    --------
    >>> round(float(akj_density(np.array([-1.0, 0.0, 0.5, 2.0]), np.array([0.0]))[0]), 6)  # R: 0.3329639
    0.332964
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    n = x.size
    pw = np.full(n, 1.0 / n)
    sd = np.sqrt(np.sum(x * x * pw) - np.sum(x * pw) ** 2)
    cum = np.cumsum(pw[:-1])
    lo = x[int(np.argmax(cum >= 0.25))] if np.any(cum >= 0.25) else x[0]
    # the upper quartile: the first row from the top where 1 - (mass above and at it) <= .75
    rest = 1.0 - np.cumsum(pw[::-1])
    hi = x[::-1][int(np.argmax(rest <= 0.75))]
    # 1.34 is a single-precision literal in the Fortran
    h = 0.9 * min(sd, (hi - lo) / float(np.float32(1.34))) / n ** 0.2
    con = 1.0 / np.sqrt(2.0 * 3.141593)
    pilot = con * np.sum(pw * np.exp(-0.5 * ((x[:, None] - x[None, :]) / h) ** 2) / h, axis=1)
    g = np.exp(np.sum(pw * np.log(pilot)))
    lam = (1.0 / h) / (pilot / g) ** -0.5
    u = (z[:, None] - x[None, :]) * lam
    return con * np.sum(pw * np.exp(-0.5 * u * u) * lam, axis=1)


def _hat_values(X: np.ndarray) -> np.ndarray:
    """Diagonal of ``X (X'X)^-1 X'`` (R's ``hat(x, intercept = FALSE)``)."""
    Q = np.linalg.qr(X, mode="reduced")[0]
    return np.sum(Q * Q, axis=1)


def _mcmb(X: np.ndarray, y: np.ndarray, tau: float, draws: np.ndarray) -> np.ndarray:
    """Markov chain marginal bootstrap (He & Hu 2002; Kocherginsky, He & Mu 2005), as
    quantreg's C ``bootnp``: in the coordinates ``theta = A^-1 beta`` (``A = V D^-1 V'`` from the
    SVD of X), each step resamples the score of every coordinate and solves the marginal
    equation of one coordinate at a time as a weighted quantile. ``draws (R, d, n)`` are the row
    indices of the resampled scores (R's ``floor(n * unif_rand())``)."""
    n, d = X.shape
    beta, _ = rq_fit(X, y, tau)
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    A = vt.T @ np.diag(1.0 / sv) @ vt
    theta = vt.T @ np.diag(sv) @ vt @ beta
    r = y - X @ beta
    psi = np.where(r > 0, tau, np.where(r < 0, tau - 1.0, 0.0))
    x = X @ A
    if np.any(np.abs(x) <= 1e-15):
        raise FitError("bsmethod='mcmb': a transformed design value is zero (as quantreg's C code, "
                       "which stops there); use bsmethod='xy' or 'pwy'")
    zt = x * psi[:, None]
    colsum, abssum = x.sum(axis=0), np.abs(x).sum(axis=0)
    scale = np.sqrt(n) / np.sqrt(n - d)
    out = np.empty((draws.shape[0], d))
    for k in range(draws.shape[0]):
        s = scale * zt[draws[k], np.arange(d)[:, None]].sum(axis=1)
        for j in range(d):
            xn = -s[j] / tau                     # the pseudo-observation of the marginal equation
            total = abssum[j] + abs(xn)
            zj = (y - x @ theta + theta[j] * x[:, j]) / x[:, j]
            vals = np.append(zj, 1e17 * np.sign(xn))
            wts = np.append(np.abs(x[:, j]), abs(xn)) / total
            star = (tau - 0.5) * (colsum[j] + xn) / total + 0.5
            o = np.argsort(vals, kind="stable")
            cum = np.cumsum(wts[o])[:n]          # the C loop stops at the n-th of n + 1 values
            pick = int(np.argmax(cum > star)) if np.any(cum > star) else n - 1
            if abs(vals[o][pick]) > 1e16:
                raise FitError("bsmethod='mcmb': the chain picked the pseudo-observation (quantreg "
                               "stops with 'Picked infinity'); use bsmethod='xy' or 'pwy'")
            theta[j] = vals[o][pick]
        out[k] = A @ theta
    return out


def rq_boot(X: np.ndarray, y: np.ndarray, tau: float, replications: int = 200,
            method: BootMethod = "xy", weights: Optional[np.ndarray] = None,
            seed: int | np.random.SeedSequence = 0, draws: Optional[np.ndarray] = None) -> np.ndarray:
    """Bootstrap coefficients ``(replications, d)`` as R's ``boot.rq``.

    Parameters
    ----------
    X, y, tau
        Design ``(n, d)``, response ``(n,)`` and level.
    replications : int
        R's ``R`` (default 200).
    method : {"xy", "wxy", "pwy", "mcmb", "wild"}
        "xy": resample rows with replacement (R's default ``bsmethod``); "wxy": weight every row
        by an independent standard exponential draw (R's weighted bootstrap); "pwy": Parzen, Wei
        & Ying's resampling of the score ``X'(1{U < tau} - tau)`` (one LP per replicate with a
        pseudo-observation, as R); "mcmb": He & Hu's Markov chain marginal bootstrap (``d``
        one-dimensional weighted quantiles per replicate, no LP); "wild": Feng, He & Hu's wild
        bootstrap (two-point weights ``-2 tau`` / ``2 (1 - tau)`` on the residuals, adjusted by the
        hat values and the ``akj`` density at 0).
    weights : (n,) array, optional
        Observation weights, carried with their rows ("xy") or multiplied into the exponential
        weights ("wxy"); for the other methods pass the weighted ``X * w`` and ``y * w`` as R does.
    seed : int or SeedSequence
        Seed of the resampling (results are reproducible for a given seed).
    draws : array, optional
        The random draws themselves (R's ``U``), to reproduce a run exactly: ``(R, n)`` 0-based
        row indices ("xy"), exponential weights ("wxy"), uniforms ("pwy"), the two-point
        weights ("wild"), or ``(R, d, n)`` 0-based indices ("mcmb", R's
        ``floor(n * unif_rand())`` in the order the C code draws them). ``replications`` and
        ``seed`` are then ignored.

    Returns
    -------
    (replications, d) array; R's ``se = "boot"`` takes the standard deviation of each column.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.column_stack([np.ones(100), rng.uniform(size=100)])
    >>> y = X @ [1.0, 2.0] + rng.standard_normal(100)
    >>> [rq_boot(X, y, 0.5, replications=20, seed=1, method=m).shape for m in ("xy", "pwy", "mcmb")]
    [(20, 2), (20, 2), (20, 2)]
    """
    if method not in BOOT_METHODS:
        raise DataError(f"rq_boot: method must be one of {', '.join(map(repr, BOOT_METHODS))}, got {method!r}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    if draws is None:
        if isinstance(replications, bool) or not isinstance(replications, (int, np.integer)) or replications < 2:
            raise DataError(f"rq_boot: replications must be an integer >= 2, got {replications!r}")
        rng = np.random.default_rng(seed)
    else:
        draws = np.asarray(draws)
        want = (d, n) if method == "mcmb" else (n,)
        if draws.ndim != len(want) + 1 or draws.shape[1:] != want:
            raise DataError(f"rq_boot: draws for method {method!r} must have shape (R, {', '.join(map(str, want))}), "
                            f"got {draws.shape}")
        if method in ("xy", "mcmb") and (np.any(draws < 0) or np.any(draws >= n) or np.any(draws % 1)):
            raise DataError(f"rq_boot: draws for method {method!r} are 0-based row indices in [0, {n})")
        replications = draws.shape[0]
    if method == "mcmb":
        idx = rng.integers(0, n, (replications, d, n)) if draws is None else draws.astype(np.intp)
        return _mcmb(X, y, tau, idx)
    if method == "pwy":
        u = rng.uniform(size=(replications, n)) if draws is None else draws
        # R's boot.rq.pwy: the score X'(1{U < tau} - tau) enters as one pseudo-row x = W / tau
        # whose response n * max|y| keeps its residual positive, i.e. the objective gains -W'b
        W = ((u < tau) - tau) @ X
        big = n * np.abs(y).max()
        return np.array([rq_fit(np.vstack([X, w / tau]), np.append(y, big), tau)[0] for w in W])
    if method == "wild":
        if draws is None:
            draws = rng.choice([-2 * tau, 2 * (1 - tau)], p=[tau, 1 - tau], size=(replications, n))
        beta, _ = rq_fit(X, y, tau)
        fitted = X @ beta
        r = y - fitted
        r = r + _hat_values(X) * (tau - (r < 0)) / akj_density(r, np.zeros(1))[0]
        return np.array([rq_fit(X, fitted + s * np.abs(r), tau)[0] for s in draws])
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.empty((replications, d))
    k = tries = 0
    while k < replications:
        tries += 1
        if tries > 10 * replications + 100:
            raise SolverError(f"rq_boot: resamples keep giving singular designs at tau={tau:g} "
                              "(a rare factor level?); use se='nid' or 'rank'")
        if method == "xy":
            rows = rng.integers(0, n, n) if draws is None else draws[k].astype(np.intp)
            Xb, yb, wb = X[rows], y[rows], w[rows]
        else:
            Xb, yb, wb = X, y, w * (rng.exponential(1.0, n) if draws is None else draws[k])
        try:
            out[k] = rq_fit(Xb, yb, tau, None if weights is None and method == "xy" else wb)[0]
        except DataError:
            if draws is not None:
                raise DataError(f"rq_boot: the resample of draws[{k}] has a singular design") from None
            # a resample without some factor level is singular; R stops, we draw again
            continue
        k += 1
    return out


def _exact_fit(resid: np.ndarray, y: np.ndarray) -> bool:
    """Every residual zero to rounding: the response is a linear function of the design."""
    return bool(np.all(np.abs(resid) <= 1e-10 * max(float(np.abs(y).max(initial=0.0)), np.finfo(float).tiny)))


def _rq_cov(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray, se: str,
            weights: Optional[np.ndarray] = None,
            hs: bool = True) -> tuple[np.ndarray, Optional[np.ndarray], float]:
    """Covariance ``(d, d)`` of the coefficients as R's ``summary.rq(se, covariance = TRUE)``, its
    ``Hinv`` ("nid", "ker"; None for "iid") and the response scale ``s``: both are those of
    ``y / s`` (see :func:`_pow2_scale`), so the covariance in the units of ``y`` is
    ``cov * s**2`` (kept apart: ``s**2`` under- or overflows at 1e-300 / 1e300)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    resid = y - X @ beta
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        resid, X, y = resid * w, X * w[:, None], y * w
    s = _pow2_scale(y)
    y, resid = y / s, resid / s
    if _exact_fit(resid, y):
        raise FitError(f"se={se!r}: exact fit at tau={tau:g} (all {n} residuals are zero), so the sparsity "
                       "cannot be estimated and there are no standard errors (R stops here too); se='rank' "
                       "gives R's answer, intervals collapsed to the estimates")
    eps = np.finfo(float).eps ** 0.5
    hinv = None
    if se == "iid":
        R = np.linalg.qr(X, mode="r")
        Rinv = np.linalg.solve(R, np.eye(p))
        xxinv = Rinv @ Rinv.T
        pz = int(np.sum(np.abs(resid) < eps))
        h = max(p + 1, int(np.ceil(n * bandwidth(tau, n, hs))))
        if h + pz + 1 > n:
            raise FitError(f"se='iid': {pz} of {n} residuals are zero at tau={tau:g}, too few non-zero ones "
                           f"for the sparsity estimate (it needs {h + 1}); use se='rank' or se='boot'")
        ir = np.arange(pz + 1, h + pz + 2)  # R's 1-based (pz+1):(h+pz+1)
        ord_resid = np.sort(resid[np.argsort(np.abs(resid), kind="stable")][ir - 1])
        xt = ir / (n - p)
        # sparsity: slope of a median regression of the ordered residuals on their ranks
        sparsity = rq_fit(np.column_stack([np.ones(xt.size), xt]), ord_resid, 0.5)[0][1]
        cov = sparsity**2 * xxinv * tau * (1 - tau)
    elif se == "nid":
        f, n_bad = _nid_density(X, y, tau, hs)
        if n_bad:
            warnings.warn(f"{n_bad} non-positive fis (tau = {tau:g})", NonPositiveFisWarning,
                          stacklevel=3)
        cov, hinv = _sandwich(X, f, tau, se)
    elif se == "ker":
        h = _nid_h(tau, n, hs)
        uhat = y - X @ (beta / s)
        q75, q25 = np.quantile(uhat, [0.75, 0.25])
        h = (norm.ppf(tau + h) - norm.ppf(tau - h)) * min(np.std(uhat, ddof=1), (q75 - q25) / 1.34)
        f = norm.pdf(uhat / h) / h
        cov, hinv = _sandwich(X, f, tau, se)
    else:
        raise DataError(f"rq_se: se must be 'iid', 'nid' or 'ker' (or 'rank' in rq), got {se!r}")
    return cov, hinv, s


def rq_se(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray, se: str = "nid",
          weights: Optional[np.ndarray] = None, hs: bool = True) -> np.ndarray:
    """Standard errors of ``rq_fit`` coefficients as R's ``summary.rq(se=...)``.

    Parameters
    ----------
    X, y, tau, beta
        Design ``(n, d)``, response ``(n,)``, level and fitted coefficients ``(d,)``.
    se : {"iid", "nid", "ker"}
        "iid": Koenker–Bassett with a difference-quotient sparsity estimate; "nid": Huber
        sandwich with local sparsity from fits at ``tau ± h`` (warns, as R, when some of the
        local densities are not positive: :class:`NonPositiveFisWarning`); "ker": Powell's
        kernel sandwich. (Rank-inversion intervals: :func:`rq_rank_ci`; bootstrap:
        :func:`rq_boot`.) The answer does not depend on the units of ``y``.
    weights : (n,) array, optional
        Observation weights (rows scaled as in R).
    hs : bool
        Hall–Sheather bandwidth (R's default) or Bofinger.

    Returns
    -------
    (d,) array

    Raises
    ------
    FitError
        An exact or near-exact fit (too many zero residuals for the sparsity estimate; R stops
        with an error there too).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.column_stack([np.ones(200), rng.uniform(size=200)])
    >>> y = X @ [1.0, 2.0] + rng.standard_normal(200)
    >>> beta, _ = rq_fit(X, y, 0.5)
    >>> rq_se(X, y, 0.5, beta, "iid").shape
    (2,)
    """
    cov, _, s = _rq_cov(X, y, tau, beta, se, weights, hs)
    return np.sqrt(np.diag(cov)) * s


def _rank_walk(X: np.ndarray, y: np.ndarray, w: np.ndarray, tau: float, j: int, beta: np.ndarray,
               step: int, cutoff: float, scale: float) -> float:
    """One end of the rank-inversion interval for coefficient ``j`` (R's rqbr, interpolated).

    Walks the kinks of ``b -> min_g sum rho(y - b x_j - X_{-j} g)`` from ``beta[j]`` in
    direction ``step`` (+1/-1). On each piece the restricted dual solution ``a`` is constant
    and the rank statistic is ``T = x_j'(a - (1 - tau)) / scale``; the walk stops at the first
    piece with ``|T| >= cutoff`` and interpolates linearly between the last two kinks.
    Rows are distinct, with multiplicities ``w`` (a duplicated row's dual lies in [0, w]).
    """
    xj, Z = X[:, j], np.delete(X, j, axis=1)
    n, q = Z.shape
    b, T_prev, b_prev = beta[j], 0.0, beta[j]
    r = y - X @ beta
    tol = 1e-11 * (1.0 + np.abs(y).max() + np.abs(b * xj).max())
    for _ in range(4 * n + 10):
        zero = np.flatnonzero(np.abs(r) <= tol)
        piece = None
        if math.comb(zero.size, q) > _MAX_TIED_BASES:
            # a near-exact fit: trying every basis among the tied rows would not finish
            raise SolverError(
                f"rank inversion: {zero.size} rows have a zero residual for coefficient {j} at tau={tau:g} "
                f"(a near-exact fit), too many tied bases to try; use se='boot'")
        # several rows can reach zero at once (ties): try every basis among them
        for B in map(list, itertools.combinations(zero, q)):
            ZB = Z[B]
            if np.linalg.matrix_rank(ZB) < q:
                continue
            g1 = np.linalg.solve(ZB, xj[B])
            slope = -xj + Z @ g1                     # d r / d b on this piece
            side = np.where(np.isin(np.arange(n), zero), step * slope, r)
            a = w * (side > 0)
            N = np.setdiff1d(np.arange(n), B)
            aB = np.linalg.solve(ZB.T, (1 - tau) * Z.T @ w - Z[N].T @ a[N])
            if np.all(aB >= -1e-9) and np.all(aB <= w[B] + 1e-9):
                a[B] = aB
                piece = (B, slope, a)
                break
        if piece is None:
            raise SolverError(f"rank inversion: no feasible pivot for coefficient {j} at tau={tau:g}")
        B, slope, a = piece
        T = float(xj @ (a - (1 - tau) * w)) / scale
        if abs(T) >= cutoff:
            return b_prev + step * abs(b - b_prev) * (cutoff - abs(T_prev)) / abs(T - T_prev)
        b_prev, T_prev = b, T
        # next kink: the first non-zero residual to reach zero in the walking direction
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = -r / (step * slope)
        dist[zero] = np.inf
        dist[~(dist > 0)] = np.inf
        nxt = int(np.argmin(dist))
        if not np.isfinite(dist[nxt]):
            return step * np.inf
        b = b + step * dist[nxt]
        # fresh residuals from the piece's basis, so rounding does not build up along the walk
        r = y - b * xj - Z @ np.linalg.solve(Z[B], y[B] - b * xj[B])
        r[B + [nxt]] = 0.0
    raise SolverError(f"rank inversion did not terminate for coefficient {j} at tau={tau:g}")


def rq_rank_ci(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray,
               alpha: float = 0.1) -> np.ndarray:
    """Rank-inversion confidence intervals as R's ``summary.rq(se="rank")`` (iid rank test).

    Inverts the regression rank-score test of Gutenbrunner, Jurečková, Koenker and Portnoy
    with R's defaults (``iid=TRUE``, t critical value with ``n - d`` df, interpolation
    between the kinks bracketing the critical value).

    Parameters
    ----------
    X, y, tau, beta
        Design ``(n, d)``, response ``(n,)``, level, fitted coefficients ``(d,)`` (a vertex
        of the LP, as returned by :func:`rq_fit`).
    alpha : float
        1 - confidence level (R's default 0.1: 90 % intervals).

    Returns
    -------
    (d, 2) array of lower and upper bounds (infinite when the test never rejects).

    Examples
    --------
    >>> X = np.column_stack([np.ones(8), np.arange(8.0)])
    >>> y = np.array([0.1, 1.3, 1.9, 3.2, 4.1, 4.8, 6.2, 7.0])
    >>> beta, _ = rq_fit(X, y, 0.5)
    >>> ci = rq_rank_ci(X, y, 0.5, beta)
    >>> bool(ci[1, 0] <= beta[1] <= ci[1, 1])
    True
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    if p == 1:
        raise DataError("rq_rank_ci: rank inversion needs at least two design columns (as in R)")
    # the walk's tie tolerance is absolute: work on the unit-scale response (exact: a power of 2)
    scale_y = _pow2_scale(y)
    y, beta = y / scale_y, np.asarray(beta, dtype=np.float64) / scale_y
    if _exact_fit(y - X @ beta, y):
        # R's answer ("Solution may be nonunique"): no move of a coefficient keeps the rank test
        # quiet when every point lies on the fitted plane, so the intervals are the estimates
        return np.column_stack([beta, beta]) * scale_y
    cutoff = t_dist.ppf(1 - alpha / 2, n - p)
    qn = 1.0 / np.diag(np.linalg.inv(X.T @ X))
    # duplicated rows would make every kink they reach degenerate: merge them with a count
    rows, w = np.unique(np.column_stack([X, y]), axis=0, return_counts=True)
    Xu, yu = rows[:, :p], rows[:, p]
    out = np.empty((p, 2))
    for j in range(p):
        scale = np.sqrt(qn[j] * tau * (1 - tau))
        out[j] = [_rank_walk(Xu, yu, w.astype(float), tau, j, beta, s, cutoff, scale) for s in (-1, 1)]
    return out * scale_y


class RQResults(SummaryMixin):
    """Linear quantile regression fits at one or more levels (returned by :func:`rq`).

    Attributes
    ----------
    formula : str
    taus : (r,) array
    params : DataFrame (d, r)
        Coefficients, one column per level (``q0.5`` style), rows named by R's labels in R's
        order (``(Intercept)``, ``x``, ``factor(g)b``, ``poly(x, 2)1``, ...).
    objective : (r,) array
        Sum of check losses at each level.
    coef : DataFrame
        Tidy: tau, term, estimate, std_error, t_value, p_value, lower, upper.
    se, level : str, float
        Standard-error method used (R's default choice resolved) and confidence level.
    na : NAReport
    spec : FormulaSpec
    n, seconds, notes

    Read-only properties (linearmodels style): ``std_errors``, ``tvalues``, ``pvalues`` (each
    ``(d, r)`` like ``params``), ``fitted`` and ``resid`` (``(n, r)`` over the rows used), ``r1``
    (Koenker–Machado R1 per level); methods ``conf_int(level)``, ``summary(se)``, ``anova()``,
    ``predict(newdata)``.
    """

    def __init__(self, *, formula: str, spec: FormulaSpec, taus: np.ndarray, params: pd.DataFrame,
                 objective: np.ndarray, coef: pd.DataFrame, se: str, level: float, na: NAReport,
                 n: int, seconds: float, notes: list[str], data: dict, boot: dict) -> None:
        self.formula, self.spec, self.taus, self.params = formula, spec, taus, params
        self.objective, self.coef, self.se, self.level, self.na = objective, coef, se, level, na
        self.n, self.seconds, self.notes = n, seconds, notes
        # design, response, offset, weights and row labels of the fit: for fitted values,
        # other standard errors, other levels of confidence and anova
        self._data = data
        self._boot = boot

    def _wide(self, column: str) -> pd.DataFrame:
        wide = self.coef.pivot(index="term", columns="tau", values=column)
        wide = wide.loc[list(self.params.index), list(self.taus)]
        wide.columns = list(self.params.columns)
        wide.index.name = None
        return wide

    @property
    def std_errors(self) -> pd.DataFrame:
        """Standard errors ``(d, r)`` (NaN with se="rank", which gives intervals only)."""
        return self._wide("std_error")

    @property
    def tvalues(self) -> pd.DataFrame:
        """t statistics ``(d, r)``."""
        return self._wide("t_value")

    @property
    def pvalues(self) -> pd.DataFrame:
        """Two-sided p-values ``(d, r)`` from Student's t with ``n - d`` df (as R)."""
        return self._wide("p_value")

    @property
    def fitted(self) -> pd.DataFrame:
        """Fitted quantiles ``(n, r)`` on the rows used (offset included)."""
        X, off = self._data["X"], self._data["offset"]
        return pd.DataFrame(X @ self.params.to_numpy() + off[:, None], index=self._data["index"],
                            columns=list(self.params.columns))

    @property
    def resid(self) -> pd.DataFrame:
        """Residuals ``y - fitted`` ``(n, r)`` on the rows used."""
        fitted = self.fitted
        return pd.DataFrame(self._data["y"][:, None] + self._data["offset"][:, None] - fitted.to_numpy(),
                            index=fitted.index, columns=fitted.columns)

    @property
    def r1(self) -> pd.Series:
        """Koenker–Machado R1 per level: ``1 - V(tau) / V0(tau)``.

        ``V`` is the fit's weighted sum of check losses, ``V0`` that of the intercept-only fit
        (the weighted tau-quantile of the response, offset removed).
        """
        X, y, w = self._data["X"], self._data["y"], self._data["w"]
        ones = np.ones((X.shape[0], 1))
        v0 = np.array([rq_fit(ones, y, float(t), w)[1] for t in self.taus])
        with np.errstate(divide="ignore", invalid="ignore"):
            return pd.Series(1.0 - self.objective / v0, index=list(self.params.columns), name="R1")

    def conf_int(self, level: Optional[float] = None) -> pd.DataFrame:
        """Confidence intervals: columns ``lower``, ``upper`` (one level) or ``(q, lower/upper)``.

        ``level`` defaults to the fit's; with se="rank" a new level re-inverts the rank test,
        otherwise bounds are ``estimate ± t_{n-d} · std_error``.
        """
        level = self.level if level is None else level
        if not 0 < level < 1:
            raise DataError(f"conf_int: level must lie in (0, 1), got {level!r}")
        lo, hi = self._wide("lower"), self._wide("upper")
        if level != self.level:
            if self.se == "rank":
                for j, t in enumerate(self.taus):
                    ci = rq_rank_ci(self._data["Xw"], self._data["yw"], float(t),
                                    self.params.iloc[:, j].to_numpy(), alpha=1 - level)
                    lo.iloc[:, j], hi.iloc[:, j] = ci[:, 0], ci[:, 1]
            else:
                crit = t_dist.ppf(0.5 + level / 2, self.n - self.params.shape[0])
                lo, hi = self.params - crit * self.std_errors, self.params + crit * self.std_errors
        if self.taus.size == 1:
            return pd.DataFrame({"lower": lo.iloc[:, 0], "upper": hi.iloc[:, 0]})
        return pd.concat({q: pd.DataFrame({"lower": lo[q], "upper": hi[q]}) for q in lo.columns}, axis=1)

    def _call(self) -> str:
        tau = f"{self.taus[0]:g}" if self.taus.size == 1 else \
            "c(" + ", ".join(f"{t:g}" for t in self.taus) + ")"
        return f"rq(formula = {self.spec.expanded}, tau = {tau})"

    def _boot_settings(self, bsmethod: Optional[str], replications: Optional[int]) -> dict:
        """The fit's bootstrap settings with R's ``bsmethod`` / ``R`` overrides, checked."""
        boot = dict(self._boot)
        if bsmethod is not None:
            if bsmethod not in BOOT_METHODS:
                raise DataError(f"bsmethod must be one of {', '.join(map(repr, BOOT_METHODS))}, got {bsmethod!r}")
            boot["method"] = bsmethod
        if replications is not None:
            if isinstance(replications, bool) or not isinstance(replications, (int, np.integer)) or replications < 2:
                raise DataError(f"replications must be an integer >= 2, got {replications!r}")
            boot["replications"] = int(replications)
        return boot

    def summary(self, se: Optional[SE] = None, bsmethod: Optional[BootMethod] = None,
                replications: Optional[int] = None) -> Summary:
        """Coefficient tables per level, laid out like R's ``summary.rq``.

        ``se`` recomputes the standard errors with another method (same data, same seed for
        "boot"); by default those chosen in :func:`rq` are shown. ``bsmethod`` and
        ``replications`` (R's ``summary(fit, se = "boot", bsmethod = "pwy", R = 500)``) change
        the bootstrap's.
        """
        coef = self.coef
        used = self.se
        boot = self._boot_settings(bsmethod, replications)
        if se is not None and se not in ("iid", "nid", "ker", "rank", "boot"):
            raise DataError(f"summary: se must be None, 'rank', 'iid', 'nid', 'ker' or 'boot', got {se!r}")
        if (se is not None and se != self.se) or (boot != self._boot and (se or self.se) == "boot"):
            used = se or self.se
            coef = pd.concat([_inference(self._data, float(t), self.params.iloc[:, j].to_numpy(),
                                         used, self.level, boot, j, [])
                              for j, t in enumerate(self.taus)], ignore_index=True)
            coef.insert(0, "tau", np.repeat(self.taus, self.params.shape[0]))
        if used == "boot":
            used = f"boot ({boot['method']}, {boot['replications']} replications)"
        header = [("Call", self._call()),
                  ("Rows used", f"{self.na.n_used} of {self.na.n_input} (dropped {self.na.n_dropped})"),
                  ("Standard errors", used)]
        tables = []
        r1 = self.r1
        for j, (tau, obj) in enumerate(zip(self.taus, self.objective)):
            c = coef[coef["tau"] == tau].set_index("term")
            if used == "rank":
                table = pd.DataFrame({"coefficients": c["estimate"].map(_r5),
                                      "lower bd": c["lower"].map(_r5), "upper bd": c["upper"].map(_r5)})
            else:
                table = pd.DataFrame({"Value": c["estimate"].map(_r5), "Std. Error": c["std_error"].map(_r5),
                                      "t value": c["t_value"].map(_r5),
                                      "Pr(>|t|)": c["p_value"].map(format_pval)})
            table.index.name = None
            title = (f"tau: [1] {tau:g}   (objective {obj:.6g}, R1 {r1.iloc[j]:.4f})\n\nCoefficients:")
            tables.append((title, table))
        footer = [f"Note: {n}" for n in self.notes]
        return Summary(header, tables, footer)

    def __repr__(self) -> str:
        taus = ", ".join(f"{t:g}" for t in self.taus)
        return (f"<RQResults {self.spec.expanded!r}, tau = [{taus}], n = {self.n}, "
                f"se = {self.se!r}>\n" + self.params.round(6).to_string())

    def ols(self, level: Optional[float] = None) -> pd.DataFrame:
        """Least-squares fit of the same design as R's ``plot(summary(rqs))`` draws it.

        Columns ``term``, ``estimate``, ``std_error``, ``lower``, ``upper``; bounds are
        ``estimate ± z · std_error`` with the normal quantile of ``level`` (default: the fit's),
        and, as in R, the least-squares fit ignores observation weights.
        """
        level = self.level if level is None else level
        X, y = self._data["X"], self._data["y"]
        n, d = X.shape
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        sigma2 = float(resid @ resid) / (n - d)
        serr = np.sqrt(np.diag(sigma2 * np.linalg.inv(X.T @ X)))
        z = norm.ppf(0.5 + level / 2)
        return pd.DataFrame({"term": self._data["terms"], "estimate": beta, "std_error": serr,
                             "lower": beta - z * serr, "upper": beta + z * serr})

    def plot(self, level: Optional[float] = None, ols: bool = True, ncols: int = 3):
        """Coefficients across levels with confidence bands and the least-squares line and band,
        like R's ``plot(summary(rqs))`` (see :func:`qaggstats.plots.coef_plot`)."""
        from .plots import coef_plot

        level = self.level if level is None else level
        ci = self.conf_int(level)
        rows = []
        for j, (q, tau) in enumerate(zip(self.params.columns, self.taus)):
            lo, hi = (ci["lower"], ci["upper"]) if self.taus.size == 1 else (ci[(q, "lower")], ci[(q, "upper")])
            rows.append(pd.DataFrame({"tau": tau, "term": self.params.index, "estimate": self.params[q].to_numpy(),
                                      "lower": lo.to_numpy(), "upper": hi.to_numpy()}))
        return coef_plot(pd.concat(rows, ignore_index=True), ols=self.ols(level) if ols else None, ncols=ncols)

    def anova(self, *others: "RQResults", joint: bool = True, se: Literal["nid", "ker"] = "nid") -> "AnovaRQ":
        """R's ``anova(fit)``: equal slopes across levels; ``anova(fit, smaller)`` for nested
        models at one level; ``anova(fit25, fit75)`` for one formula fitted separately at
        several levels. See :func:`anova`."""
        return anova(self, *others, joint=joint, se=se)

    def _design(self, newdata: Optional[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Index]:
        """Design ``(m_ok, d)``, offset ``(m_ok,)``, kept-row mask ``(m,)`` and index of
        ``newdata`` (the training rows when None, as R's ``predict`` without ``newdata``)."""
        if newdata is None:
            X = self._data["X"]
            return X, self._data["offset"], np.ones(X.shape[0], dtype=bool), self._data["index"]
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"predict: newdata must be a pandas DataFrame, got {type(newdata).__name__}")
        X, ok = design_newdata({"m": self.spec}, newdata)
        off = self.spec.offset_of(newdata.iloc[np.flatnonzero(ok)]) if self.spec.offsets else np.zeros(int(ok.sum()))
        return X["m"], np.broadcast_to(np.asarray(off, dtype=np.float64), (int(ok.sum()),)), ok, newdata.index

    def predict(self, newdata: Optional[pd.DataFrame] = None,
                interval: Literal["none", "confidence"] = "none", level: float = 0.95,
                se: Optional[Literal["iid", "nid", "ker", "boot"]] = None,
                type: Literal["none", "percentile"] = "none",
                bsmethod: Optional[BootMethod] = None, replications: Optional[int] = None) -> pd.DataFrame:
        """Fitted quantiles for ``newdata``, with R's ``predict.rq`` confidence intervals.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict; the training rows when omitted (R's ``predict(fit)``).
        interval : {"none", "confidence"}
            "confidence" adds intervals for the conditional quantile ``x' beta(tau)``.
        level : float
            Confidence level (R's default 0.95).
        se : {None, "iid", "nid", "ker", "boot"}
            Covariance behind the intervals, as R's ``summary(fit, se, covariance = TRUE)``.
            None: the fit's ``se`` when it has a covariance, else "nid" (R's default; rank
            inversion gives intervals for coefficients, not a covariance).
        type : {"none", "percentile"}
            R's ``type``: "none" gives ``x' beta ± t_{n-d} sqrt(x' V x)``; "percentile" (needs
            ``se="boot"``) the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
            bootstrap predictions ``x' beta*``. R's ``type="direct"`` (from the whole quantile
            process) is not available.
        bsmethod, replications : optional
            Bootstrap method and replications for se="boot" (default: the fit's).

        Returns
        -------
        DataFrame
            Without intervals one column per level (``q0.1``, ``q0.5``, ...). With
            ``interval="confidence"`` R's columns ``fit``, ``lower``, ``higher``; with several
            levels those under each level (columns ``(q0.25, "fit")``, ...). Rows with a missing
            predictor are NaN; a missing column or an unseen level raise DataError. Spline
            inputs outside the training range are extrapolated with a warning (listed in
            ``.attrs["notes"]``) unless ``rq(extrapolate="error")``.

        Examples
        --------
        >>> import qaggstats as qa
        >>> fit = qa.rq("foodexp ~ income", qa.datasets.load("engel"), tau=0.5)
        >>> fit.predict(pd.DataFrame({"income": [1000.0]}), interval="confidence").round(2)
              fit   lower  higher
        0  641.66  619.73  663.59
        """
        if interval not in ("none", "confidence"):
            raise DataError(f"predict: interval must be 'none' or 'confidence' (R's predict.rq), got {interval!r}")
        if type == "direct":
            raise DataError("predict: R's type='direct' needs the whole quantile process, which qaggstats does "
                            "not compute; use type='none' (covariance) or type='percentile' with se='boot'")
        if type not in ("none", "percentile"):
            raise DataError(f"predict: type must be 'none' or 'percentile', got {type!r}")
        if se is not None and se not in ("iid", "nid", "ker", "boot"):
            hint = "; rank inversion gives no covariance" if se == "rank" else ""
            raise DataError(f"predict: se must be None, 'iid', 'nid', 'ker' or 'boot', got {se!r}{hint}")
        if not 0 < level < 1:
            raise DataError(f"predict: level must lie in (0, 1), got {level!r}")
        X, off, ok, index = self._design(newdata)
        fit = X @ self.params.to_numpy() + off[:, None]
        cols = list(self.params.columns)
        notes = list(self.spec.notes)
        if interval == "none":
            out = np.full((ok.size, self.taus.size), np.nan)
            out[ok] = fit
            frame = pd.DataFrame(out, index=index, columns=cols)
            frame.attrs["notes"] = notes
            return frame
        se = se or (self.se if self.se in ("iid", "nid", "ker", "boot") else "nid")
        if type == "percentile" and se != "boot":
            raise DataError("predict: type='percentile' requires se='boot' (as R)")
        boot = self._boot_settings(bsmethod, replications)
        rdf = self.n - self.params.shape[0]
        parts = {}
        for j, tau in enumerate(self.taus):
            beta = self.params.iloc[:, j].to_numpy()
            cov, B, s = _covariance(self._data, float(tau), beta, se, boot, j, notes)
            if type == "percentile":
                lower, higher = _percentile_bounds(X, B, level)
                lower, higher = lower + off, higher + off
            else:
                half = -t_dist.ppf((1 - level) / 2, rdf) * np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X)) * s
                lower, higher = fit[:, j] - half, fit[:, j] + half
            block = np.full((ok.size, 3), np.nan)
            block[ok] = np.column_stack([fit[:, j], lower, higher])
            parts[cols[j]] = pd.DataFrame(block, index=index, columns=["fit", "lower", "higher"])
        frame = parts[cols[0]] if self.taus.size == 1 else pd.concat(parts, axis=1)
        frame.attrs["notes"] = notes
        return frame

    def rearrange(self, newdata: Optional[pd.DataFrame] = None,
                  at: Optional[Sequence[float]] = None) -> pd.DataFrame:
        """R's ``rearrange(predict(fit, newdata, stepfun = TRUE))`` evaluated at levels ``at``.

        See :func:`rearrange`.
        """
        return rearrange(self, newdata, at)


def _r5(v: float) -> str:
    """A number as R's ``format(round(x, 5))`` shows it in ``summary.rq``."""
    return "NaN" if not np.isfinite(v) else f"{round(float(v), 5):.5f}"


def _boot_coefs(data: dict, tau: float, boot: dict, k: int) -> np.ndarray:
    """Bootstrap coefficients of level number ``k`` with the fit's settings (R's summary.rq passes
    the weighted rows ``x * w``, ``y * w``; "wxy" multiplies the weights into its own)."""
    wxy = boot["method"] == "wxy"
    return rq_boot(data["X"] if wxy else data["Xw"], data["y"] if wxy else data["yw"], tau,
                   boot["replications"], boot["method"], data["w"] if wxy else None,
                   seed=np.random.SeedSequence([boot["seed"], k]))


def _covariance(data: dict, tau: float, beta: np.ndarray, se: str, boot: dict, k: int,
                notes: list[str]) -> tuple[np.ndarray, Optional[np.ndarray], float]:
    """Coefficient covariance as R's ``summary.rq(se, covariance = TRUE)``, in units of ``s``
    (the covariance is ``cov * s**2``), and the bootstrap coefficients behind it (None unless
    se="boot")."""
    if se == "boot":
        B = _boot_coefs(data, tau, boot, k)
        s = _pow2_scale(data["yw"])
        return np.atleast_2d(np.cov(B / s, rowvar=False, ddof=1)), B, s
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonPositiveFisWarning)
        cov, _, s = _rq_cov(data["X"], data["y"], tau, beta, se, weights=data["w"])
    for c in caught:
        if issubclass(c.category, NonPositiveFisWarning):
            notes.append(f"{c.message} (R's warning; those rows get zero density)")
            warnings.warn(str(c.message), NonPositiveFisWarning, stacklevel=5)
        else:
            warnings.warn_explicit(c.message, c.category, c.filename, c.lineno)
    return cov, None, s


def _inference(data: dict, tau: float, beta: np.ndarray, se: str, level: float, boot: dict,
               k: int, notes: list[str]) -> pd.DataFrame:
    """Tidy inference rows (term, estimate, std_error, t_value, p_value, lower, upper) at one level."""
    X, y = data["X"], data["y"]
    n, d = X.shape
    if se == "rank":
        ci = rq_rank_ci(data["Xw"], data["yw"], tau, beta, alpha=1 - level)
        if _exact_fit(y - X @ beta, y):
            notes.append(f"exact fit at tau={tau:g}: every residual is zero, so the rank intervals are the "
                         "estimates themselves (R's answer, with its 'Solution may be nonunique')")
        serr = tval = pval = np.full(d, np.nan)
        lower, upper = ci[:, 0], ci[:, 1]
    else:
        cov, _, s = _covariance(data, tau, beta, se, boot, k, notes)
        serr = np.sqrt(np.diag(cov)) * s
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero bootstrap SE (exact fit): R's Inf
            tval = beta / serr
        pval = 2 * t_dist.sf(np.abs(tval), n - d)
        crit = t_dist.ppf(0.5 + level / 2, n - d)
        lower, upper = beta - crit * serr, beta + crit * serr
    return pd.DataFrame({"term": data["terms"], "estimate": beta, "std_error": serr, "t_value": tval,
                         "p_value": pval, "lower": lower, "upper": upper})


def _check_collinear(X: np.ndarray, names: list[str]) -> None:
    """Raise a DataError naming the design columns that are linear combinations of earlier ones.

    Columns are scaled to unit norm first (so units do not decide), then a pivoted QR finds the
    rank; the columns left out, in formula order, are named (as R's ``lm`` would alias them).
    """
    from scipy.linalg import qr

    norms = _column_norms(X)
    Z = X / np.where(norms > 0, norms, 1.0)
    _, R, piv = qr(Z, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int((diag > diag.max() * max(X.shape) * np.finfo(float).eps).sum()) if diag.size else 0
    if rank == X.shape[1] and (norms > 0).all():
        return
    # greedy in formula order: a column is aliased if it adds nothing to those kept before it
    kept: list[int] = []
    aliased = []
    for j in range(X.shape[1]):
        trial = Z[:, kept + [j]]
        if norms[j] == 0 or np.linalg.matrix_rank(trial, tol=max(X.shape) * np.finfo(float).eps * 10) <= len(kept):
            aliased.append(names[j])
        else:
            kept.append(j)
    raise DataError(f"rq: design column(s) {', '.join(repr(a) for a in aliased)} are collinear with earlier "
                    f"terms (rank {len(kept)} < {X.shape[1]} columns); drop them from the formula")


def rq(formula: str, data: pd.DataFrame, tau: float | Sequence[float] = 0.5,
       se: Optional[SE] = None, level: float = 0.9, na: str = "drop",
       weights: Optional[np.ndarray] = None, replications: int = 200, bsmethod: BootMethod = "xy",
       seed: int = 0, extrapolate: Literal["warn", "error"] = "warn") -> RQResults:
    """Linear quantile regression from an R-style formula, like R's ``rq`` + ``summary.rq``.

    Parameters
    ----------
    formula : str
        R formula, e.g. ``"foodexp ~ income"``, ``"log(wage) ~ exper + I(exper^2) + educ"``,
        ``"y ~ poly(x, 2) + factor(g)"``, ``"y ~ ns(x, df = 3) + offset(z)"``, ``"y ~ ."``
        (see :mod:`qaggstats.formula` for everything a formula may contain).
    data : DataFrame
    tau : float or sequence of float
        Quantile level(s) in (0, 1), distinct (kept in the order given, as R).
    se : {None, "rank", "iid", "nid", "ker", "boot"}
        Inference of R's ``summary.rq``. None (R's default): "rank" below 1,001 rows, else
        "nid". "rank" gives rank-inversion intervals (no standard errors); "boot" the bootstrap
        standard deviation of the coefficients (``replications``, ``bsmethod``, ``seed``).
    level : float
        Confidence level of ``lower``/``upper`` (R's rank default is 0.9); for the other methods
        the bounds are ``estimate ± t_{n-d} · std_error``.
    na : {"drop", "raise"}
        Rows with missing values in used columns are dropped and counted, or raise DataError.
    weights : (n,) array, optional
        Observation weights over the rows of ``data`` (rows dropped for NA are dropped here too).
    replications : int
        Bootstrap replications (R's ``R``, default 200).
    bsmethod : {"xy", "wxy", "pwy", "mcmb", "wild"}
        R's ``bsmethod`` (see :func:`rq_boot`): xy-pair resampling (default), exponential
        weights, Parzen–Wei–Ying score resampling, the Markov chain marginal bootstrap, or the
        wild bootstrap.
    seed : int
        Seed of the bootstrap (non-negative integer).
    extrapolate : {"warn", "error"}
        Spline inputs of ``predict`` outside the training range: extrapolate as R (warning and a
        note) or raise DataError.

    Returns
    -------
    RQResults

    Examples
    --------
    >>> import qaggstats as qa
    >>> m = rq("foodexp ~ income", qa.datasets.load("engel"), tau=[0.25, 0.5])
    >>> m.params.round(4)
                   q0.25     q0.5
    (Intercept)  95.4835  81.4822
    income        0.4741   0.5602
    >>> m.se, m.predict(pd.DataFrame({"income": [1000.0]})).round(2)
    ('rank',     q0.25    q0.5
    0  569.59  641.66)
    """
    t0 = time.perf_counter()
    try:
        taus = np.atleast_1d(np.asarray(tau, dtype=np.float64))
        validate_levels(np.sort(taus))
    except (DataError, ValueError, TypeError) as err:
        raise DataError(f"rq: tau must be distinct level(s) strictly inside (0, 1), got {tau!r}: "
                        f"{err}") from None
    if se is not None and se not in ("iid", "nid", "ker", "rank", "boot"):
        raise DataError(f"rq: se must be None, 'rank', 'iid', 'nid', 'ker' or 'boot', got {se!r}")
    if not 0 < level < 1:
        raise DataError(f"rq: level must lie in (0, 1), got {level!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"rq: seed must be a non-negative integer, got {seed!r}")
    if bsmethod not in BOOT_METHODS:
        raise DataError(f"rq: bsmethod must be one of {', '.join(map(repr, BOOT_METHODS))}, got {bsmethod!r}")
    frames = model_frames({"rq": formula}, data, na=na, extrapolate=extrapolate, allow_offset=True)
    X, spec = frames.X["rq"], frames.specs["rq"]
    kept = data.iloc[frames.positions]
    offset = spec.offset_of(kept)
    y = frames.y - offset
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (data.shape[0],):
            raise DataError(f"rq: weights must have one value per row of data ({data.shape[0]}), got {w.shape}")
        w = w[frames.positions]
    n, d = X.shape
    if n <= d:
        raise DataError(f"rq: {n} rows for {d} design columns; need more rows than columns")
    _check_collinear(X, list(spec.column_names))
    notes = list(frames.notes)
    if se is None:
        # R's summary.rq: rank inversion below 1,001 rows, else the Huber sandwich
        se = "rank" if n < 1001 and d > 1 else "nid"
    elif se == "rank" and d == 1:
        raise DataError("rq: se='rank' needs at least two design columns (as in R); use 'nid'")
    Xw, yw = (X, y) if w is None else (X * w[:, None], y * w)
    fit_data = {"X": X, "y": y, "w": w, "Xw": Xw, "yw": yw, "offset": offset,
                "index": frames.index, "terms": list(spec.column_names)}
    boot = {"replications": replications, "method": bsmethod, "seed": int(seed)}
    rows, betas, objs = [], [], []
    for k, t in enumerate(taus):
        beta, obj = rq_fit(X, y, float(t), w)
        betas.append(beta)
        objs.append(obj)
        table = _inference(fit_data, float(t), beta, se, level, boot, k, notes)
        table.insert(0, "tau", t)
        rows.append(table)
    params = pd.DataFrame(np.column_stack(betas), index=spec.column_names,
                          columns=[quantile_column(t) for t in taus])
    return RQResults(formula=formula, spec=spec, taus=taus, params=params, objective=np.array(objs),
                     coef=pd.concat(rows, ignore_index=True), se=se, level=level, na=frames.na,
                     n=n, seconds=time.perf_counter() - t0, notes=notes, data=fit_data, boot=boot)


class AnovaRQ:
    """R's ``anova.rq`` table: ``table`` (Df, Resid Df, F value, Pr(>F)) and ``heading``.

    Printing gives R's layout ("Quantile Regression Analysis of Deviance Table").
    """

    def __init__(self, table: pd.DataFrame, heading: str) -> None:
        self.table = table
        self.heading = heading

    @property
    def statistic(self) -> np.ndarray:
        """F statistics (one per row of ``table``)."""
        return self.table["F value"].to_numpy()

    @property
    def pvalue(self) -> np.ndarray:
        """p-values (one per row of ``table``)."""
        return self.table["Pr(>F)"].to_numpy()

    def __repr__(self) -> str:
        shown = self.table.copy()
        shown["F value"] = shown["F value"].map(lambda v: f"{v:.4f}")
        shown["Pr(>F)"] = shown["Pr(>F)"].map(format_pval)
        return "Quantile Regression Analysis of Deviance Table\n\n" + self.heading + "\n" + shown.to_string()

    __str__ = __repr__


def anova(fit: RQResults, *others: RQResults, joint: bool = True, se: Literal["nid", "ker"] = "nid",
          hs: bool = True) -> AnovaRQ:
    """Wald tests of R's ``anova.rq``: equal slopes across levels, or nested models at one level.

    The forms of R's ``anova``:

    - ``anova(fit)`` with ``fit = rq(y ~ x, tau=[.25, .5, .75])`` (R's ``anova.rqs``), or
      ``anova(fit25, fit50, fit75)`` with one formula fitted separately at each level (R's
      ``anova.rqlist`` with distinct taus; fits at several levels each are taken level by
      level): with ``p`` coefficients at ``m`` levels, the slopes (all but the intercept) are
      tested equal at every level jointly (F with ``(p - 1)(m - 1)`` and ``n m - (p - 1)(m - 1)``
      df), or one slope at a time with ``joint=False`` (``m - 1`` and ``n m - (m - 1)`` df).
      The covariance across levels is ``(min(tau_i, tau_j) - tau_i tau_j) H_i^-1 X'X H_j^-1``.
    - ``anova(full, small, ...)`` with every model fitted at the same single level on the same
      rows (R's ``anova(f1, f0)``): the Wald test of the coefficients each smaller model leaves
      out (F with ``q`` and ``n - p`` df, covariance of ``full``).

    Parameters
    ----------
    fit : RQResults
    *others : RQResults
        The other fits of the R form ``anova(f1, f2, ...)``.
    joint : bool
        One joint test of the slopes (R's default) or one test per slope.
    se : {"nid", "ker"}
        Sandwich behind the Wald statistics (R's ``se``, default "nid").
    hs : bool
        Hall–Sheather bandwidth for the local densities (R's default).

    Returns
    -------
    AnovaRQ

    Raises
    ------
    DataError
        A combination R does not test (levels and formulas both differing, repeated levels, fits
        on different rows); the message says which form to use instead.

    Examples
    --------
    >>> import qaggstats as qa
    >>> engel = qa.datasets.load("engel")
    >>> a = rq("foodexp ~ income", engel, tau=[0.25, 0.5, 0.75]).anova()
    >>> a.table.round(4)
       Df  Resid Df  F value  Pr(>F)
    1   2       703  15.5567     0.0
    >>> f25, f75 = rq("foodexp ~ income", engel, tau=0.25), rq("foodexp ~ income", engel, tau=0.75)
    >>> round(float(anova(f25, f75).statistic[0]), 4)
    30.8906
    """
    fits = [fit, *others]
    for f in fits:
        if not isinstance(f, RQResults):
            raise DataError(f"anova: expected the RQResults of rq(), got {type(f).__name__}")
    if se not in ("nid", "ker"):
        raise DataError(f"anova: se must be 'nid' or 'ker' (the sandwiches R's Wald tests use), got {se!r}")
    if len(fits) == 1:
        if fit.taus.size < 2:
            raise DataError("anova: the fit has one level; fit the formula at several, "
                            "rq(formula, data, tau=[0.25, 0.5, 0.75]).anova(), or pass the fits at the "
                            "other levels: anova(fit25, fit75), or a smaller model: anova(fit, smaller)")
        return _anova_slopes(fit, list(fit.taus), [fit.params.iloc[:, j].to_numpy() for j in range(fit.taus.size)],
                             joint, se, hs)
    pieces = [(f, j) for f in fits for j in range(f.taus.size)]
    taus = [float(f.taus[j]) for f, j in pieces]
    if all(f.taus.size == 1 for f in fits) and len(set(taus)) == 1:
        return _anova_nested(fits, se, hs)
    forms = {f.spec.expanded for f in fits}
    if len(set(taus)) != len(taus) or len(forms) > 1:
        listing = ", ".join(f"{f.spec.expanded!r} at tau={', '.join(f'{t:g}' for t in f.taus)}" for f in fits)
        raise DataError(
            f"anova: cannot compare {listing}. R's anova tests nested formulas fitted at one common level "
            "(anova(rq(full, tau=0.5), rq(small, tau=0.5))) or one formula across distinct levels: "
            "rq(formula, data, tau=[0.25, 0.75]).anova(), or anova(fit25, fit75)")
    for f in fits[1:]:
        same = (f.n == fit.n and f.spec.response == fit.spec.response
                and np.array_equal(f._data["Xw"], fit._data["Xw"]) and np.array_equal(f._data["yw"], fit._data["yw"]))
        if not same:
            raise DataError(f"anova: the fits of {fit.spec.expanded!r} at different levels must use the same rows and "
                            "weights; fit them together with rq(formula, data, tau=[...]) and call .anova()")
    return _anova_slopes(fit, taus, [f.params.iloc[:, j].to_numpy() for f, j in pieces], joint, se, hs)


def _level_hinv(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray, se: str,
                hs: bool) -> tuple[np.ndarray, float]:
    """``H^-1`` of R's ``summary.rq(se, covariance = TRUE)`` ("nid" or "ker") for ``y / s`` and
    ``s``, warnings kept quiet (the coefficient tables already reported them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonPositiveFisWarning)
        _, hinv, s = _rq_cov(X, y, tau, beta, se, hs=hs)
    return hinv, s


def _anova_slopes(fit: RQResults, taus: list, coefs: list, joint: bool, se: str, hs: bool) -> AnovaRQ:
    """R's test of equal slopes across levels (``anova.rqlist`` with distinct taus)."""
    m = len(taus)
    names = list(fit.params.index)
    if names[0] != "(Intercept)":
        raise DataError("anova: the test of equal slopes needs an intercept (as in R); "
                        f"the formula {fit.spec.expanded!r} has none")
    X, y = fit._data["Xw"], fit._data["yw"]
    n, p = X.shape
    if p < 2:
        raise DataError("anova: the formula has no slope to test")
    J = X.T @ X
    H, scales = zip(*[_level_hinv(X, y, float(t), b, se, hs) for t, b in zip(taus, coefs)])
    t_arr = np.asarray(taus)
    omega = np.minimum.outer(t_arr, t_arr) - np.outer(t_arr, t_arr)
    W = np.block([[omega[i, j] * H[i] @ J @ H[j] for j in range(m)] for i in range(m)])
    coef = np.concatenate(coefs) / scales[0]  # level by level, as R's unlist; in the units of H
    diff = np.diff(np.eye(m), axis=0)
    if joint:
        D = np.kron(diff, np.hstack([np.zeros((p - 1, 1)), np.eye(p - 1)]))
        ndf = (p - 1) * (m - 1)
        Dc = D @ coef
        Tn = float(Dc @ np.linalg.solve(D @ W @ D.T, Dc)) / ndf
        ddf = n * m - ndf
        table = pd.DataFrame({"Df": [ndf], "Resid Df": [ddf], "F value": [Tn],
                              "Pr(>F)": [f_dist.sf(Tn, ndf, ddf)]}, index=[1])
        what = "Joint Test of Equality of Slopes"
    else:
        rows = {}
        ndf, ddf = m - 1, n * m - (m - 1)
        for i in range(1, p):
            E = np.zeros((1, p))
            E[0, i] = 1.0
            D = np.kron(diff, E)
            Dc = D @ coef
            Tn = float(Dc @ np.linalg.solve(D @ W @ D.T, Dc)) / ndf
            rows[names[i]] = {"Df": ndf, "Resid Df": ddf, "F value": Tn, "Pr(>F)": f_dist.sf(Tn, ndf, ddf)}
        table = pd.DataFrame.from_dict(rows, orient="index")
        what = "Tests of Equality of Distinct Slopes"
    heading = (f"Model: {fit.spec.expanded}\n{what}: tau in {{ "
               + " ".join(f"{t:g}" for t in taus) + " }")
    return AnovaRQ(table, heading)


def _anova_nested(fits: list, se: str, hs: bool) -> AnovaRQ:
    """R's ``anova.rqlist`` Wald test of nested models at one common level."""
    fits = sorted(fits, key=lambda f: -f.params.shape[0])  # largest first, as R
    big = fits[0]
    if len({f.n for f in fits}) != 1 or any(f.spec.response != big.spec.response for f in fits):
        raise DataError("anova: nested models must share the response and the rows used")
    tau = float(big.taus[0])
    X, y = big._data["Xw"], big._data["yw"]
    n, p = X.shape
    beta = big.params.iloc[:, 0].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonPositiveFisWarning)
        cov, _, s = _rq_cov(X, y, tau, beta, se, hs=hs)
    beta = beta / s  # in the units of cov
    names = list(big.params.index)
    rows = []
    for small in fits[1:]:
        missing = [t for t in small.params.index if t not in names]
        if missing:
            raise DataError(f"anova: models are not nested: {missing} of {small.spec.expanded!r} "
                            f"are not in {big.spec.expanded!r}")
        null = np.array([t not in set(small.params.index) for t in names])
        ndf = int(null.sum())
        if ndf == 0:
            raise DataError(f"anova: {small.spec.expanded!r} has the same terms as {big.spec.expanded!r}; "
                            "nothing to test")
        b = beta[null]
        Tn = float(b @ np.linalg.solve(cov[np.ix_(null, null)], b)) / ndf
        rows.append({"Df": ndf, "Resid Df": n - p, "F value": Tn, "Pr(>F)": f_dist.sf(Tn, ndf, n - p)})
    table = pd.DataFrame(rows, index=range(2, len(fits) + 1))
    heading = "\n".join(f"Model {k}: {g.spec.expanded}" for k, g in enumerate(fits, 1))
    return AnovaRQ(table, heading)


def _percentile_bounds(X: np.ndarray, B: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """R's percentile intervals: the ``(1 -+ level) / 2`` quantiles (R's type 7) of ``X B'``."""
    lo, hi = np.quantile(X @ B.T, [(1 - level) / 2, 1 - (1 - level) / 2], axis=1)
    return lo, hi


def _rearranged_steps(Q: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """quantreg's ``rearrange`` of the step functions ``predict(rqs, stepfun = TRUE)`` builds.

    Row ``i`` is the right-continuous step function with value ``Q[i, k]`` on
    ``[tau_k, tau_{k+1})`` (``Q[i, 0]`` before ``tau_1``, ``Q[i, -1]`` from ``tau_r`` on). Its
    rearrangement sorts the pieces by value, keeping their widths (R's stable ``order``), so
    it is the quantile function of the values weighted by the level gaps. Returns knots
    ``(m, r + 2)`` and values ``(m, r + 3)`` of R's ``stepfun(knots, values)``.
    """
    m, r = Q.shape
    pieces = np.column_stack([Q[:, 0], Q])
    widths = np.concatenate([[0.0], np.diff(taus), [0.0]])
    o = np.argsort(pieces, axis=1, kind="stable")
    knots = np.cumsum(np.column_stack([np.full(m, taus[0]), widths[o]]), axis=1)
    sorted_ = np.take_along_axis(pieces, o, axis=1)
    return knots, np.column_stack([sorted_[:, 0], sorted_, sorted_.max(axis=1)])


def rearrange(fit: RQResults, newdata: Optional[pd.DataFrame] = None,
              at: Optional[Sequence[float]] = None) -> pd.DataFrame:
    """Monotone rearrangement of the fitted quantile process (Chernozhukov, Fernández-Val &
    Galichon 2010), as quantreg's ``rearrange(predict(fit, newdata, stepfun = TRUE))``.

    For each row of ``newdata`` the predicted quantiles at the fit's levels form a step
    function of ``tau``; the rearranged function is its monotone version (the values sorted,
    each keeping the width of its level gap), so it never crosses and is closer to a monotone
    truth in every ``L^p`` norm. Evaluated at ``at`` (default: the fit's levels) as R's
    ``stepfun`` is: right-continuous, the lowest value below ``tau_1`` and the largest from
    ``tau_r`` on. (:func:`qaggstats.monotone.rearrange` rearranges the piecewise-linear curve
    instead, as ``qagg(postprocess="rearrange")`` uses.)

    Parameters
    ----------
    fit : RQResults
        A fit at two or more levels.
    newdata : DataFrame, optional
        Rows to predict (the training rows when omitted).
    at : sequence of float, optional
        Levels at which to evaluate the rearranged step functions.

    Returns
    -------
    DataFrame (m, len(at))
        Columns ``q<at>``; rows with a missing predictor are NaN.

    Examples
    --------
    >>> import qaggstats as qa
    >>> fit = qa.rq("foodexp ~ income", qa.datasets.load("engel"), tau=[0.1, 0.5, 0.9])
    >>> new = pd.DataFrame({"income": [0.0]})  # far below the data: the lines cross
    >>> fit.predict(new).round(2)
         q0.1   q0.5   q0.9
    0  110.14  81.48  67.35
    >>> fit.rearrange(new).round(2)  # R: rearrange(predict(fit, new, stepfun = TRUE))
        q0.1    q0.5    q0.9
    0  81.48  110.14  110.14
    """
    if not isinstance(fit, RQResults):
        raise DataError(f"rearrange: expected the RQResults of rq(), got {type(fit).__name__}")
    if fit.taus.size < 2:
        raise DataError("rearrange: the fit has one level; fit several, rq(formula, data, tau=[0.1, 0.5, 0.9])")
    order = np.argsort(fit.taus)
    taus = fit.taus[order]
    grid = taus if at is None else np.atleast_1d(np.asarray(at, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise DataError(f"rearrange: at must be finite levels, got {at!r}")
    pred = fit.predict(newdata)
    Q = pred.to_numpy()[:, order]
    ok = np.all(np.isfinite(Q), axis=1)
    out = np.full((Q.shape[0], grid.size), np.nan)
    knots, values = _rearranged_steps(Q[ok], taus)
    pos = (knots[:, :, None] <= grid[None, None, :]).sum(axis=1)
    out[ok] = np.take_along_axis(values, pos, axis=1)
    frame = pd.DataFrame(out, index=pred.index, columns=[quantile_column(t) for t in grid])
    frame.attrs["notes"] = pred.attrs.get("notes", [])
    return frame
