"""Linear quantile regression (R's ``rq``): exact LP fits, R's inference, tidy results.

Inference as R's ``summary.rq``: rank-inversion intervals ("rank", R's default below 1,001 rows),
"iid", "nid" (R's default from 1,001 rows), "ker" and the bootstrap ("boot": xy-pair resampling
by default, or "wxy" exponential weights; seeded). :func:`anova` is R's ``anova.rq`` for one
formula fitted at several levels: the joint Wald test that the slopes are equal across levels.
"""
from __future__ import annotations

import itertools
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
from .errors import DataError, SolverError
from .formula import FormulaSpec, NAReport, design_newdata, model_frames
from .scoring import validate_levels
from .levels import quantile_column
from .summary import Summary, SummaryMixin, format_pval

__all__ = ["rq", "RQResults", "rq_fit", "rq_se", "rq_boot", "rq_rank_ci", "anova", "AnovaRQ",
           "bandwidth", "check_loss", "NonPositiveFisWarning"]

SE = Literal["rank", "iid", "nid", "ker", "boot"]
BootMethod = Literal["xy", "wxy"]


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


def _equilibrate(Xw: np.ndarray, yw: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
    """A scale-free version of the problem: an orthonormal basis ``Q`` of the columns and the
    least-squares residual of the response divided by its largest size.

    Quantile regression is equivariant under ``X -> X T`` and ``y -> s y + X c``, so the
    vertex (its ``d`` basic rows) is the same, while the solvers' absolute tolerances now
    meet unit-scale data whatever the units (y x 1e-7 .. 1e9, x + 1e7). Returns ``Q (n, d)``,
    the scaled response, the scale it was divided by and the rank, judged on unit-norm columns.
    """
    norms = np.linalg.norm(Xw, axis=0)
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


def _sandwich(X: np.ndarray, f: np.ndarray, tau: float) -> np.ndarray:
    """``tau (1 - tau) H^-1 X'X H^-1`` with ``H = X' diag(f) X`` (R's QR route)."""
    Hinv = _hinv(X, f)
    return tau * (1 - tau) * Hinv @ (X.T @ X) @ Hinv


def _nid_h(tau: float, n: int, hs: bool) -> float:
    h = bandwidth(tau, n, hs)
    while tau - h < 0 or tau + h > 1:
        h /= 2
    return h


def _nid_density(X: np.ndarray, y: np.ndarray, tau: float, hs: bool) -> tuple[np.ndarray, int]:
    """R's "nid" local densities ``f (n,)`` and the count of non-positive fitted differences."""
    eps = np.finfo(float).eps ** 0.5
    h = _nid_h(tau, X.shape[0], hs)
    bhi = rq_fit(X, y, tau + h)[0]
    blo = rq_fit(X, y, tau - h)[0]
    dyhat = X @ (bhi - blo)
    return np.maximum(0.0, (2 * h) / (dyhat - eps)), int(np.sum(dyhat <= 0))


def _hinv(X: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``(X' diag(f) X)^-1`` through the QR of ``sqrt(f) X`` (R's route)."""
    R = np.linalg.qr(np.sqrt(f)[:, None] * X, mode="r")
    Rinv = np.linalg.solve(R, np.eye(X.shape[1]))
    return Rinv @ Rinv.T


def rq_boot(X: np.ndarray, y: np.ndarray, tau: float, replications: int = 200,
            method: BootMethod = "xy", weights: Optional[np.ndarray] = None,
            seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Bootstrap coefficients ``(replications, d)`` as R's ``boot.rq``.

    Parameters
    ----------
    X, y, tau
        Design ``(n, d)``, response ``(n,)`` and level.
    replications : int
        R's ``R`` (default 200).
    method : {"xy", "wxy"}
        "xy": resample rows with replacement (R's default ``bsmethod``); "wxy": weight every row
        by an independent standard exponential draw (R's weighted bootstrap).
    weights : (n,) array, optional
        Observation weights, carried with their rows.
    seed : int or SeedSequence
        Seed of the resampling (results are reproducible for a given seed).

    Returns
    -------
    (replications, d) array; R's ``se = "boot"`` takes the standard deviation of each column.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.column_stack([np.ones(100), rng.uniform(size=100)])
    >>> y = X @ [1.0, 2.0] + rng.standard_normal(100)
    >>> rq_boot(X, y, 0.5, replications=20, seed=1).shape
    (20, 2)
    """
    if method not in ("xy", "wxy"):
        raise DataError(f"rq_boot: method must be 'xy' or 'wxy', got {method!r}")
    if not isinstance(replications, (int, np.integer)) or replications < 2:
        raise DataError(f"rq_boot: replications must be an integer >= 2, got {replications!r}")
    rng = np.random.default_rng(seed)
    n, d = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.empty((replications, d))
    k = tries = 0
    while k < replications:
        tries += 1
        if tries > 10 * replications + 100:
            raise SolverError(f"rq_boot: resamples keep giving singular designs at tau={tau:g} "
                              "(a rare factor level?); use se='nid' or 'rank'")
        if method == "xy":
            rows = rng.integers(0, n, n)
            Xb, yb, wb = X[rows], y[rows], w[rows]
        else:
            Xb, yb, wb = X, y, w * rng.exponential(1.0, n)
        try:
            out[k] = rq_fit(Xb, yb, tau, None if weights is None and method == "xy" else wb)[0]
        except DataError:
            # a resample without some factor level is singular; R stops, we draw again
            continue
        k += 1
    return out


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
        :func:`rq_boot`.)
    weights : (n,) array, optional
        Observation weights (rows scaled as in R).
    hs : bool
        Hall–Sheather bandwidth (R's default) or Bofinger.

    Returns
    -------
    (d,) array

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.column_stack([np.ones(200), rng.uniform(size=200)])
    >>> y = X @ [1.0, 2.0] + rng.standard_normal(200)
    >>> beta, _ = rq_fit(X, y, 0.5)
    >>> rq_se(X, y, 0.5, beta, "iid").shape
    (2,)
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    resid = y - X @ beta
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        resid, X, y = resid * w, X * w[:, None], y * w
    eps = np.finfo(float).eps ** 0.5
    if se == "iid":
        R = np.linalg.qr(X, mode="r")
        Rinv = np.linalg.solve(R, np.eye(p))
        xxinv = Rinv @ Rinv.T
        pz = int(np.sum(np.abs(resid) < eps))
        h = max(p + 1, int(np.ceil(n * bandwidth(tau, n, hs))))
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
                          stacklevel=2)
        cov = _sandwich(X, f, tau)
    elif se == "ker":
        h = _nid_h(tau, n, hs)
        uhat = y - X @ beta
        q75, q25 = np.quantile(uhat, [0.75, 0.25])
        h = (norm.ppf(tau + h) - norm.ppf(tau - h)) * min(np.std(uhat, ddof=1), (q75 - q25) / 1.34)
        f = norm.pdf(uhat / h) / h
        cov = _sandwich(X, f, tau)
    else:
        raise DataError(f"rq_se: se must be 'iid', 'nid' or 'ker' (or 'rank' in rq), got {se!r}")
    return np.sqrt(np.diag(cov))


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
    cutoff = t_dist.ppf(1 - alpha / 2, n - p)
    qn = 1.0 / np.diag(np.linalg.inv(X.T @ X))
    # duplicated rows would make every kink they reach degenerate: merge them with a count
    rows, w = np.unique(np.column_stack([X, y]), axis=0, return_counts=True)
    Xu, yu = rows[:, :p], rows[:, p]
    out = np.empty((p, 2))
    for j in range(p):
        scale = np.sqrt(qn[j] * tau * (1 - tau))
        out[j] = [_rank_walk(Xu, yu, w.astype(float), tau, j, beta, s, cutoff, scale) for s in (-1, 1)]
    return out


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

    def summary(self, se: Optional[SE] = None) -> Summary:
        """Coefficient tables per level, laid out like R's ``summary.rq``.

        ``se`` recomputes the standard errors with another method (same data, same seed for
        "boot"); by default those chosen in :func:`rq` are shown.
        """
        coef = self.coef
        used = self.se
        if se is not None and se != self.se:
            coef = pd.concat([_inference(self._data, float(t), self.params.iloc[:, j].to_numpy(),
                                         se, self.level, self._boot, j, [])
                              for j, t in enumerate(self.taus)], ignore_index=True)
            coef.insert(0, "tau", np.repeat(self.taus, self.params.shape[0]))
            used = se
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

    def anova(self, *reduced: "RQResults", joint: bool = True) -> "AnovaRQ":
        """R's ``anova(fit)``: equal slopes across levels, or ``anova(fit, smaller)`` for nested
        models at one level. See :func:`anova`."""
        return anova(self, *reduced, joint=joint)

    def predict(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """Fitted quantiles for ``newdata``: one column per level (``q0.1``, ``q0.5``, ...).

        Rows with a missing predictor get NaN; a missing column or an unseen level raise
        DataError. Spline inputs outside the training range are extrapolated with a warning
        (listed in ``.attrs["notes"]`` of the result) unless ``rq(extrapolate="error")``.
        """
        X, ok = design_newdata({"m": self.spec}, newdata)
        out = np.full((newdata.shape[0], self.taus.size), np.nan)
        off = self.spec.offset_of(newdata.iloc[np.flatnonzero(ok)]) if self.spec.offsets else 0.0
        out[ok] = X["m"] @ self.params.to_numpy() + np.reshape(off, (-1, 1))
        frame = pd.DataFrame(out, index=newdata.index, columns=list(self.params.columns))
        frame.attrs["notes"] = list(self.spec.notes)
        return frame


def _r5(v: float) -> str:
    """A number as R's ``format(round(x, 5))`` shows it in ``summary.rq``."""
    return "NaN" if not np.isfinite(v) else f"{round(float(v), 5):.5f}"


def _inference(data: dict, tau: float, beta: np.ndarray, se: str, level: float, boot: dict,
               k: int, notes: list[str]) -> pd.DataFrame:
    """Tidy inference rows (term, estimate, std_error, t_value, p_value, lower, upper) at one level."""
    X, y, w = data["X"], data["y"], data["w"]
    n, d = X.shape
    if se == "rank":
        ci = rq_rank_ci(data["Xw"], data["yw"], tau, beta, alpha=1 - level)
        serr = tval = pval = np.full(d, np.nan)
        lower, upper = ci[:, 0], ci[:, 1]
    else:
        if se == "boot":
            B = rq_boot(data["Xw"] if w is not None and boot["method"] == "xy" else X,
                        data["yw"] if w is not None and boot["method"] == "xy" else y, tau,
                        boot["replications"], boot["method"], None if boot["method"] == "xy" else w,
                        seed=np.random.SeedSequence([boot["seed"], k]))
            serr = np.std(B, axis=0, ddof=1)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NonPositiveFisWarning)
                serr = rq_se(X, y, tau, beta, se, weights=w)
            for c in caught:
                if issubclass(c.category, NonPositiveFisWarning):
                    notes.append(f"{c.message} (R's warning; those rows get zero density)")
                    warnings.warn(str(c.message), NonPositiveFisWarning, stacklevel=4)
                else:
                    warnings.warn_explicit(c.message, c.category, c.filename, c.lineno)
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

    norms = np.linalg.norm(X, axis=0)
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
    bsmethod : {"xy", "wxy"}
        R's ``bsmethod``: xy-pair resampling (default) or exponential-weight bootstrap.
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
    if bsmethod not in ("xy", "wxy"):
        raise DataError(f"rq: bsmethod must be 'xy' or 'wxy', got {bsmethod!r}")
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


def anova(fit: RQResults, *reduced: RQResults, joint: bool = True, hs: bool = True) -> AnovaRQ:
    """Wald tests of R's ``anova.rq``: equal slopes across levels, or nested models at one level.

    With ``reduced`` fits (``anova(full, small)``, R's ``anova(f1, f0)``): each smaller model,
    fitted on the same rows at the same level, is tested against ``fit`` by the Wald test of
    the coefficients it leaves out (F with ``q`` and ``n - p`` df, "nid" covariance of ``fit``).

    Otherwise, R's ``anova(rq(y ~ x, tau = c(.25, .5, .75)))``: with ``p`` coefficients at ``m`` levels,
    the slopes (all but the intercept) are tested equal at every level jointly (F with
    ``(p - 1)(m - 1)`` and ``n m - (p - 1)(m - 1)`` df), or one slope at a time with
    ``joint=False``. The covariance across levels is the "nid" sandwich,
    ``(min(tau_i, tau_j) - tau_i tau_j) H_i^-1 X'X H_j^-1``.

    Parameters
    ----------
    fit : RQResults
        One formula at two or more levels, with an intercept.
    joint : bool
        One joint test (R's default) or one test per slope.
    hs : bool
        Hall–Sheather bandwidth for the local densities (R's default).

    Returns
    -------
    AnovaRQ

    Examples
    --------
    >>> import qaggstats as qa
    >>> fit = rq("foodexp ~ income", qa.datasets.load("engel"), tau=[0.25, 0.5, 0.75])
    >>> a = fit.anova()
    >>> a.table.round(4)
       Df  Resid Df  F value  Pr(>F)
    1   2       703  15.5567     0.0
    """
    if not isinstance(fit, RQResults):
        raise DataError(f"anova: expected the RQResults of rq(), got {type(fit).__name__}")
    if reduced:
        return _anova_nested(fit, list(reduced), hs)
    taus = fit.taus
    m = taus.size
    if m < 2:
        raise DataError("anova: the fit has one level; refit with rq(..., tau=[...]) at two or more")
    names = list(fit.params.index)
    if names[0] != "(Intercept)":
        raise DataError("anova: the test of equal slopes needs an intercept (as in R); "
                        f"the formula {fit.spec.expanded!r} has none")
    X, y = fit._data["Xw"], fit._data["yw"]
    n, p = X.shape
    if p < 2:
        raise DataError("anova: the formula has no slope to test")
    J = X.T @ X
    H = []
    for t in taus:
        f, _ = _nid_density(X, y, float(t), hs)
        H.append(_hinv(X, f))
    omega = np.minimum.outer(taus, taus) - np.outer(taus, taus)
    W = np.block([[omega[i, j] * H[i] @ J @ H[j] for j in range(m)] for i in range(m)])
    coef = fit.params.to_numpy().T.ravel()  # level by level, as R's unlist
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


def _anova_nested(fit: RQResults, reduced: list, hs: bool) -> AnovaRQ:
    """R's ``anova.rqlist`` Wald test of nested models at one common level."""
    for other in reduced:
        if not isinstance(other, RQResults):
            raise DataError(f"anova: expected RQResults, got {type(other).__name__}")
    fits = sorted([fit, *reduced], key=lambda f: -f.params.shape[0])  # largest first, as R
    big = fits[0]
    if any(f.taus.size != 1 for f in fits) or len({float(f.taus[0]) for f in fits}) != 1:
        raise DataError("anova: nested models must each be fitted at the same single level tau")
    if len({f.n for f in fits}) != 1 or any(f.spec.response != big.spec.response for f in fits):
        raise DataError("anova: nested models must share the response and the rows used")
    tau = float(big.taus[0])
    X, y = big._data["Xw"], big._data["yw"]
    n, p = X.shape
    f, _ = _nid_density(X, y, tau, hs)
    cov = _sandwich(X, f, tau)
    beta = big.params.iloc[:, 0].to_numpy()
    names = list(big.params.index)
    rows = []
    for small in fits[1:]:
        missing = [t for t in small.params.index if t not in names]
        if missing:
            raise DataError(f"anova: models are not nested: {missing} of {small.spec.expanded!r} "
                            f"are not in {big.spec.expanded!r}")
        null = np.array([t not in set(small.params.index) for t in names])
        ndf = int(null.sum())
        b = beta[null]
        Tn = float(b @ np.linalg.solve(cov[np.ix_(null, null)], b)) / ndf
        rows.append({"Df": ndf, "Resid Df": n - p, "F value": Tn, "Pr(>F)": f_dist.sf(Tn, ndf, n - p)})
    table = pd.DataFrame(rows, index=range(2, len(fits) + 1))
    heading = "\n".join(f"Model {k}: {g.spec.expanded}" for k, g in enumerate(fits, 1))
    return AnovaRQ(table, heading)
