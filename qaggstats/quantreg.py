"""Linear quantile regression (R's ``rq``): exact LP fits, R's standard errors, tidy results."""
from __future__ import annotations

import itertools
import time
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy.linalg import qr as qr_decomp
from scipy.optimize import linprog
from scipy.stats import norm
from scipy.stats import t as t_dist

from ._fn import fn_solve, one_blas_thread
from .errors import DataError, SolverError
from .formula import FormulaSpec, NAReport, design_newdata, model_frames
from .summary import Summary, SummaryMixin

__all__ = ["rq", "RQResults", "rq_fit", "rq_se", "rq_rank_ci", "bandwidth", "check_loss"]


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
    R = np.linalg.qr(np.sqrt(f)[:, None] * X, mode="r")
    Rinv = np.linalg.solve(R, np.eye(X.shape[1]))
    Hinv = Rinv @ Rinv.T
    return tau * (1 - tau) * Hinv @ (X.T @ X) @ Hinv


def _nid_h(tau: float, n: int, hs: bool) -> float:
    h = bandwidth(tau, n, hs)
    while tau - h < 0 or tau + h > 1:
        h /= 2
    return h


def rq_se(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray, se: str = "nid",
          weights: Optional[np.ndarray] = None, hs: bool = True) -> np.ndarray:
    """Standard errors of ``rq_fit`` coefficients as R's ``summary.rq(se=...)``.

    Parameters
    ----------
    X, y, tau, beta
        Design ``(n, d)``, response ``(n,)``, level and fitted coefficients ``(d,)``.
    se : {"iid", "nid", "ker"}
        "iid": Koenker–Bassett with a difference-quotient sparsity estimate; "nid": Huber
        sandwich with local sparsity from fits at ``tau ± h``; "ker": Powell's kernel
        sandwich. (Rank-inversion intervals: :func:`rq_rank_ci`.)
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
        h = _nid_h(tau, n, hs)
        bhi = rq_fit(X, y, tau + h)[0]
        blo = rq_fit(X, y, tau - h)[0]
        dyhat = X @ (bhi - blo)
        f = np.maximum(0.0, (2 * h) / (dyhat - eps))
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


def quantile_column(tau: float) -> str:
    """Column name of level ``tau`` in prediction frames (``rq`` and ``qagg`` alike).

    Examples
    --------
    >>> quantile_column(0.05)
    'q0.05'
    """
    return f"q{tau:g}"


class RQResults(SummaryMixin):
    """Linear quantile regression fits at one or more levels (returned by :func:`rq`).

    Attributes
    ----------
    formula : str
    taus : (r,) array
    params : DataFrame (d, r)
        Coefficients, one column per level (``q0.5`` style), rows named by design column.
    objective : (r,) array
        Sum of check losses at each level.
    coef : DataFrame
        Tidy: tau, term, estimate, std_error, t_value, p_value, lower, upper.
    se, level : str, float
    na : NAReport
    spec : FormulaSpec
    n, seconds, notes
    """

    def __init__(self, *, formula: str, spec: FormulaSpec, taus: np.ndarray, params: pd.DataFrame,
                 objective: np.ndarray, coef: pd.DataFrame, se: str, level: float, na: NAReport,
                 n: int, seconds: float, notes: list[str]) -> None:
        self.formula, self.spec, self.taus, self.params = formula, spec, taus, params
        self.objective, self.coef, self.se, self.level, self.na = objective, coef, se, level, na
        self.n, self.seconds, self.notes = n, seconds, notes

    def summary(self, se: Optional[str] = None) -> Summary:
        """Coefficient tables per level, laid out like R's ``summary.rq``.

        ``se`` is informational here: standard errors were computed by :func:`rq` with the
        method it was given; pass ``se`` to check which one is shown.
        """
        if se is not None and se != self.se:
            raise DataError(f"these results carry se={self.se!r}; refit with rq(..., se={se!r})")
        header = [("Call", f"rq({self.spec.expanded})"),
                  ("Rows used", f"{self.na.n_used} of {self.na.n_input} (dropped {self.na.n_dropped})"),
                  ("Standard errors", self.se)]
        tables = []
        for tau, obj in zip(self.taus, self.objective):
            c = self.coef[self.coef["tau"] == tau].set_index("term")
            if self.se == "rank":
                table = pd.DataFrame({"coefficients": c["estimate"], "lower bd": c["lower"],
                                      "upper bd": c["upper"]})
            else:
                table = pd.DataFrame({"Value": c["estimate"], "Std. Error": c["std_error"],
                                      "t value": c["t_value"], "Pr(>|t|)": c["p_value"]})
            table.index.name = None
            tables.append((f"tau: [1] {tau:g}   (objective {obj:.6g})", table))
        footer = [f"Note: {n}" for n in self.notes]
        return Summary(header, tables, footer)

    def predict(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """Fitted quantiles for ``newdata``: one column per level (``q0.1``, ``q0.5``, ...).

        Rows with a missing predictor get NaN; a missing column, an unseen level or a spline
        input outside the training range raise DataError.
        """
        X, ok = design_newdata({"m": self.spec}, newdata)
        out = np.full((newdata.shape[0], self.taus.size), np.nan)
        out[ok] = X["m"] @ self.params.to_numpy()
        return pd.DataFrame(out, index=newdata.index, columns=list(self.params.columns))


def rq(formula: str, data: pd.DataFrame, tau: float | Sequence[float] = 0.5, se: str = "nid",
       level: float = 0.9, na: str = "drop", weights: Optional[np.ndarray] = None) -> RQResults:
    """Linear quantile regression from an R-style formula, like R's ``rq`` + ``summary.rq``.

    Parameters
    ----------
    formula : str
        patsy/R formula, e.g. ``"foodexp ~ income"``, ``"y ~ ."``, ``"y ~ bs(x, df=5) + C(g)"``.
    data : DataFrame
    tau : float or sequence of float
        Quantile level(s) in (0, 1).
    se : {"nid", "iid", "ker", "rank"}
        Standard-error method of R's ``summary.rq``; "rank" gives rank-inversion intervals
        (no standard errors).
    level : float
        Confidence level of ``lower``/``upper`` (R's rank default is 0.9); for "iid", "nid",
        "ker" the bounds are ``estimate ± t_{n-d} · std_error``.
    na : {"drop", "raise"}
        Rows with missing values in used columns are dropped and counted, or raise DataError.
    weights : (n,) array, optional
        Observation weights over the rows of ``data`` (rows dropped for NA are dropped here too).

    Returns
    -------
    RQResults

    Examples
    --------
    >>> import qaggstats as qa
    >>> m = rq("foodexp ~ income", qa.datasets.load("engel"), tau=[0.25, 0.5])
    >>> m.params.round(4)
                 q0.25     q0.5
    Intercept  95.4835  81.4822
    income      0.4741   0.5602
    >>> m.predict(pd.DataFrame({"income": [1000.0]})).round(2)
        q0.25    q0.5
    0  569.59  641.66
    """
    t0 = time.perf_counter()
    taus = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if taus.ndim != 1 or taus.size == 0 or not np.all((taus > 0) & (taus < 1)):
        raise DataError(f"rq: tau must be level(s) strictly inside (0, 1), got {tau!r}")
    if se not in ("iid", "nid", "ker", "rank"):
        raise DataError(f"rq: se must be 'iid', 'nid', 'ker' or 'rank', got {se!r}")
    if not 0 < level < 1:
        raise DataError(f"rq: level must lie in (0, 1), got {level!r}")
    frames = model_frames({"rq": formula}, data, na=na)
    X, y, spec = frames.X["rq"], frames.y, frames.specs["rq"]
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (data.shape[0],):
            raise DataError(f"rq: weights must have one value per row of data ({data.shape[0]}), got {w.shape}")
        w = w[frames.positions]
    n, d = X.shape
    if n <= d:
        raise DataError(f"rq: {n} rows for {d} design columns; need more rows than columns")
    crit = t_dist.ppf(0.5 + level / 2, n - d)
    rows, betas, objs = [], [], []
    for t in taus:
        beta, obj = rq_fit(X, y, float(t), w)
        betas.append(beta)
        objs.append(obj)
        if se == "rank":
            Xw, yw = (X, y) if w is None else (X * w[:, None], y * w)
            ci = rq_rank_ci(Xw, yw, float(t), beta, alpha=1 - level)
            serr = tval = pval = np.full(d, np.nan)
            lower, upper = ci[:, 0], ci[:, 1]
        else:
            serr = rq_se(X, y, float(t), beta, se, weights=w)
            tval = beta / serr
            pval = 2 * t_dist.sf(np.abs(tval), n - d)
            lower, upper = beta - crit * serr, beta + crit * serr
        rows.append(pd.DataFrame({"tau": t, "term": spec.column_names, "estimate": beta,
                                  "std_error": serr, "t_value": tval, "p_value": pval,
                                  "lower": lower, "upper": upper}))
    params = pd.DataFrame(np.column_stack(betas), index=spec.column_names,
                          columns=[quantile_column(t) for t in taus])
    return RQResults(formula=formula, spec=spec, taus=taus, params=params, objective=np.array(objs),
                     coef=pd.concat(rows, ignore_index=True), se=se, level=level, na=frames.na,
                     n=n, seconds=time.perf_counter() - t0, notes=list(frames.notes))
