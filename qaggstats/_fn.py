"""Frisch–Newton interior point for linear quantile regression (R's ``rq(method="fn")``).

Portnoy & Koenker (1997), "The Gaussian hare and the Laplacian tortoise"; the algorithm of
quantreg's ``rqfnb`` Fortran: a primal–dual log-barrier method with Mehrotra's
predictor–corrector on the bounded LP

    min c'a  s.t.  A a = b,  0 <= a <= 1,     A = X' (d, n),  c = -y,  b = (1 - tau) X'1,

whose equality multipliers are minus the regression coefficients. Each iteration solves one
``d x d`` system ``A diag(q) A'`` (two with the corrector), so the cost is ``O(n d^2)`` per
iteration and a few dozen iterations, against a simplex whose pivots grow with ``n``.

The interior point stops near, not at, the optimal vertex; :func:`qaggstats.quantreg.rq_fit`
snaps its answer to the vertex through the ``d`` smallest residuals and proves that vertex
optimal (a dual certificate) before using it.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.column_stack([np.ones(500), rng.uniform(size=500)])
>>> y = X @ [1.0, 2.0] + rng.standard_normal(500)
>>> res = fn_solve(X, y, 0.5)
>>> res.converged, res.beta.round(1).tolist()
(True, [1.0, 1.9])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from threadpoolctl import ThreadpoolController

__all__ = ["fn_solve", "FNResult", "one_blas_thread"]

# quantreg's rqfnb: step-length damping beta = 0.99995, at most 50 iterations.
_STEP = 0.99995
_MAX_IT = 50


_CONTROLLER: Optional[ThreadpoolController] = None


def one_blas_thread() -> Any:
    """Context holding BLAS to one thread: the solver's products are ``n x d`` by ``d x d``,
    too small to share, and on a busy machine extra threads only contend (the protein median
    fit took 2.2 s with two threads against 0.40 s with one). The controller is built once
    (inspecting the loaded libraries costs ~20 ms)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


@dataclass
class FNResult:
    """Coefficients ``beta (d,)``, dual point ``a (n,)`` in [0, 1], iterations, duality gap."""

    beta: np.ndarray
    a: np.ndarray
    iterations: int
    gap: float
    converged: bool


def _step(v: np.ndarray, dv: np.ndarray) -> float:
    """Largest ``t <= 1`` keeping ``v + t dv > 0``, damped by ``_STEP``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        longest = float(np.min(np.where(dv < 0, v / -dv, np.inf)))
    return min(1.0, _STEP * longest)


def _normal_solver(X: np.ndarray, q: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``rhs -> (X' diag(q) X)^-1 rhs``, factored once for the predictor and the corrector:
    Cholesky, or least squares when the matrix is numerically singular."""
    M = X.T @ (X * q[:, None])
    try:
        factor = cho_factor(M, check_finite=False)
    except LinAlgError:
        return lambda rhs: np.linalg.lstsq(M, rhs, rcond=None)[0]
    return lambda rhs: cho_solve(factor, rhs, check_finite=False)


def fn_solve(X: np.ndarray, y: np.ndarray, tau: float, tol: float = 1e-10) -> FNResult:
    """Solve ``min_beta sum rho_tau(y - X beta)`` by the Frisch–Newton interior point.

    Parameters
    ----------
    X : (n, d) ndarray
        Design of full column rank, ideally well conditioned (``rq_fit`` passes an
        orthonormal basis of the column space and a unit-scale response).
    y : (n,) ndarray
        Response.
    tau : float
        Quantile level in (0, 1).
    tol : float, default 1e-10
        Stop when the duality gap is below ``tol * (1 + |objective|)``.

    Returns
    -------
    FNResult
        ``beta`` near the optimum (to the gap), ``a`` the dual point, ``converged`` False
        when the iteration limit was reached first.

    Examples
    --------
    >>> X = np.column_stack([np.ones(5), np.arange(5.0)])
    >>> res = fn_solve(X, np.array([0.0, 1.0, 2.0, 3.0, 10.0]), 0.5)
    >>> bool(np.allclose(res.beta, [0.0, 1.0], atol=1e-3))  # near the vertex (0, 1), not at it
    True
    """
    A = X.T
    n = X.shape[0]
    c = -y
    x = np.full(n, 1.0 - tau)          # primal: the dual of the regression, feasible start
    b = A @ x
    s = 1.0 - x
    # dual start from least squares, as rqfnb: r = c - A'v, z - w = r
    v = np.linalg.lstsq(X, c, rcond=None)[0]
    r = c - X @ v
    r = np.where(r == 0.0, 1e-3, r)
    z = np.maximum(r, 0.0)
    w = z - r
    gap = float(c @ x - v @ b + w.sum())
    it = 0
    while gap > tol * (1.0 + abs(float(c @ x))) and it < _MAX_IT:
        it += 1
        # predictor (affine scaling)
        q = 1.0 / (z / x + w / s)
        r = z - w
        solve = _normal_solver(X, q)
        dv = solve(A @ (q * r))
        dx = q * (X @ dv - r)
        ds = -dx
        dz = -z * (dx / x + 1.0)
        dw = -w * (ds / s + 1.0)
        fp = min(_step(x, dx), _step(s, ds))
        fd = min(_step(w, dw), _step(z, dz))
        if min(fp, fd) < 1.0:
            # corrector: centring mu from the predicted complementarity (Mehrotra)
            mu = float(z @ x + w @ s)
            g = float((z + fd * dz) @ (x + fp * dx) + (w + fd * dw) @ (s + fp * ds))
            mu = mu * (g / mu) ** 3 / (2 * n)
            dxdz = dx * dz
            dsdw = ds * dw
            xi = mu * (1.0 / x - 1.0 / s)
            extra = r - xi + dxdz / x - dsdw / s
            dv = solve(A @ (q * extra))
            dx = q * (X @ dv - extra)
            ds = -dx
            dz = (mu - dxdz) / x - z - z * dx / x
            dw = (mu - dsdw) / s - w - w * ds / s
            fp = min(_step(x, dx), _step(s, ds))
            fd = min(_step(w, dw), _step(z, dz))
        x = x + fp * dx
        s = s + fp * ds
        v = v + fd * dv
        z = z + fd * dz
        w = w + fd * dw
        gap = float(c @ x - v @ b + w.sum())
    converged = gap <= tol * (1.0 + abs(float(c @ x)))
    return FNResult(beta=-v, a=x, iterations=it, gap=gap, converged=converged)
