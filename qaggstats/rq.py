"""Linear quantile regression (R's ``rq``): exact LP fits, R's standard errors, tidy results."""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.optimize import linprog

from .errors import DataError, SolverError

__all__ = ["rq_fit", "check_loss"]


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


def _vertex(X: np.ndarray, y: np.ndarray, tau: float, beta: np.ndarray) -> np.ndarray:
    """Snap ``beta`` to the LP vertex through the d rows it (nearly) interpolates.

    The dual marginals give beta to solver tolerance only; R's simplex returns the basic
    solution, which interpolates d observations exactly, so re-solving on those rows
    reproduces it to rounding. Kept only if the check loss does not get worse.
    """
    d = X.shape[1]
    h = np.argsort(np.abs(y - X @ beta), kind="stable")[:d]
    Xh = X[h]
    if np.linalg.matrix_rank(Xh) < d:
        return beta
    exact = np.linalg.solve(Xh, y[h])
    before = check_loss(y - X @ beta, tau)
    after = check_loss(y - X @ exact, tau)
    return exact if after <= before + 1e-12 * max(1.0, abs(before)) else beta


def rq_fit(X: np.ndarray, y: np.ndarray, tau: float,
           weights: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
    """Linear quantile regression at level ``tau`` by an exact LP solve (HiGHS dual simplex).

    Solves R's ``br`` dual, ``max y'a  s.t.  X'a = (1 - tau) X'1, 0 <= a <= 1``; the
    coefficients are the multipliers of its equality constraints, snapped to the vertex
    that interpolates ``d`` observations.

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

    Returns
    -------
    beta : (d,) array
    objective : float
        ``sum w_i rho_tau(y_i - x_i' beta)``.

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
        Xw, yw = X * w[:, None], y * w
    rank = np.linalg.matrix_rank(Xw)
    if rank < X.shape[1]:
        raise DataError(
            f"rq_fit: singular design matrix (rank {rank} < {X.shape[1]} columns); "
            "drop collinear terms"
        )
    res = linprog(-yw, A_eq=Xw.T, b_eq=(1.0 - tau) * Xw.sum(axis=0), bounds=(0.0, 1.0),
                  method="highs-ds")
    if res.status != 0:
        raise SolverError(f"rq_fit: HiGHS failed at tau={tau:g}: {res.message}")
    # linprog minimises -y'a, so the equality multipliers are -beta
    beta = _vertex(Xw, yw, tau, -np.asarray(res.eqlin.marginals))
    return beta, check_loss(y - X @ beta, tau, w)
