"""Structured LP solver for the level-separable weight families (HiGHS on the dual).

The weight LP of the linear families (one weight vector ``alpha_g`` per level group g,
optional intercept ``c_g``) is

    min  sum_k sum_i w_i psi_tau_k(y_i - Q_ik . alpha_g(k) - c_g(k))
    s.t. alpha_g in the simplex / >= 0 / free,
         Qpt_i,k+1 . alpha_g(k+1) + c_g(k+1) - Qpt_i,k . alpha_g(k) - c_g(k) >= gap  for s = (i, k) in S.

Its dual has only ``p * G`` rows (plus G intercept rows) and one bounded column per
(point, level) and per non-crossing constraint:

    max  sum_ik y_i d_ik + gap sum_s lam_s + sum_g mu_g
    s.t. sum_{k in g} Q_k' d_k + mu_g 1 + sum_s lam_s a_s,g  <= 0   (= 0 for free weights)
         sum_{k in g} 1' d_k + sum_s lam_s b_s,g              = 0   (intercept)
         w_i (tau_k - 1) <= d_ik <= w_i tau_k,  lam_s >= 0,

so simplex iterations work on a p*G basis however large n is, and the weights are the row
duals. Without non-crossing the LP separates into one small LP per group; non-crossing is
added as cutting planes: solve, collect the crossings (> 1e-9) at the training and extra
points, add their columns to the coupled dual and re-solve warm (HiGHS keeps the basis; new
columns enter non-basic at zero, so the previous basis stays primal feasible), until none is
violated. The answer then solves the full LP, since it is optimal for a relaxation and
feasible for every constraint.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .errors import SolverError

__all__ = ["applicable", "solve_structured", "StructuredResult"]

_FAMILIES = ("global", "quantile", "grouped", "qra", "fqra")
# Crossings within this are solver rounding, not violations.
_VIOL = 1e-9
_MAX_ROUNDS = 50


@dataclass
class StructuredResult:
    """Weights (p, r), intercept (r,) or None, status, solver seconds, rounds, active cuts."""

    alpha: np.ndarray
    intercept: Optional[np.ndarray]
    status: str
    seconds: float
    rounds: int
    active: int


def applicable(family: str, constraint: str, smooth: float, solver: str) -> bool:
    """Whether ``solver`` selects the structured path for this problem.

    Examples
    --------
    >>> applicable("quantile", "simplex", 0.0, "auto"), applicable("local", "simplex", 0.0, "auto")
    (True, False)
    """
    return solver in ("auto", "fast") and family in _FAMILIES and smooth == 0


@contextlib.contextmanager
def _quiet_stdio():
    """Silence file descriptors 1 and 2 while HiGHS is constructed.

    highspy's C++ constructor prints its licence banner before any option can be set, so
    ``output_flag=False`` comes too late; the banner would break progress bars and piped output.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no /dev/null: let the banner through rather than fail
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                continue
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def new_highs():
    """A silent ``highspy.Highs`` instance (no banner, no log)."""
    import highspy

    with _quiet_stdio():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


def _highs(num_rows: int, lower: np.ndarray, upper: np.ndarray):
    import highspy

    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("solver", "simplex")
    # The dual LP is small in rows and large in bounded columns: dual simplex suits it, and
    # presolve would only reshuffle what warm starts reuse.
    h.setOptionValue("simplex_strategy", 1)
    h.setOptionValue("presolve", "off")
    h.setOptionValue("primal_feasibility_tolerance", 1e-10)
    h.setOptionValue("dual_feasibility_tolerance", 1e-10)
    inf = highspy.kHighsInf
    h.addRows(num_rows, np.where(np.isfinite(lower), lower, -inf), np.where(np.isfinite(upper), upper, inf),
              0, np.array([], dtype=np.int32), np.array([], dtype=np.int32), np.array([]))
    return h


def _add_columns(h, cost: np.ndarray, lo: np.ndarray, hi: np.ndarray, mat: sp.csc_matrix) -> None:
    import highspy

    inf = highspy.kHighsInf
    h.addCols(cost.size, cost, np.where(np.isfinite(lo), lo, -inf), np.where(np.isfinite(hi), hi, inf),
              mat.nnz, mat.indptr[:-1].astype(np.int32), mat.indices.astype(np.int32), mat.data)


def _residual_columns(X: np.ndarray, y: np.ndarray, taus: np.ndarray, w: np.ndarray, ii: np.ndarray,
                      kk: np.ndarray, row_of: np.ndarray, p: int, intercept_row: Optional[np.ndarray],
                      num_rows: int):
    """Columns d_ik for the (point, level) pairs (ii, kk): costs, bounds and CSC matrix.

    ``row_of[k]`` is the first constraint row of level k's group; d_ik has Q[i, :, k] in
    rows row_of[k] .. +p-1 and a 1 in ``intercept_row[k]`` when there is an intercept.
    """
    vals = X[ii, :, kk]  # (cols, p)
    rows = row_of[kk][:, None] + np.arange(p)
    if intercept_row is not None:
        vals = np.hstack([vals, np.ones((kk.size, 1))])
        rows = np.hstack([rows, intercept_row[kk][:, None]])
    per = vals.shape[1]
    indptr = np.arange(kk.size + 1, dtype=np.int64) * per
    mat = sp.csc_matrix((vals.ravel(), rows.ravel(), indptr), shape=(num_rows, kk.size))
    return -y[ii], w[ii] * (taus[kk] - 1.0), w[ii] * taus[kk], mat


def _cut_columns(P: np.ndarray, idx: np.ndarray, kk: np.ndarray, row_of: np.ndarray, p: int,
                 intercept_row: Optional[np.ndarray], num_rows: int) -> sp.csc_matrix:
    """Columns lam_s for non-crossing constraints at points ``idx`` between levels kk, kk+1."""
    up = P[idx, :, kk + 1]
    down = -P[idx, :, kk]
    rows = [row_of[kk + 1][:, None] + np.arange(p), row_of[kk][:, None] + np.arange(p)]
    vals = [up, down]
    if intercept_row is not None:
        rows += [intercept_row[kk + 1][:, None], intercept_row[kk][:, None]]
        vals += [np.ones((idx.size, 1)), -np.ones((idx.size, 1))]
    R = np.hstack(rows)
    V = np.hstack(vals)
    cols = np.repeat(np.arange(idx.size), R.shape[1])
    # Same group on both sides (global, grouped) puts two entries in one row: summed by coo.
    return sp.coo_matrix((V.ravel(), (R.ravel(), cols)), shape=(num_rows, idx.size)).tocsc()


def _weights_from_duals(h, G: int, p: int, constraint: str, intercept: bool):
    """Primal weights (p, G) and intercepts (G,) from the dual LP's row duals."""
    duals = -np.asarray(h.getSolution().row_dual)
    alpha = duals[: p * G].reshape(G, p).T.copy()
    if constraint != "free":
        # Row duals carry the solver's tolerance; weights are >= 0 by construction.
        np.maximum(alpha, 0.0, out=alpha)
    c = duals[p * G: p * G + G].copy() if intercept else None
    return alpha, c


# Retries when HiGHS stops short of a verdict (status 'Unknown': the dual simplex left small
# dual infeasibilities its cleanup could not remove under the tight tolerances): run on from
# the basis reached, then restart cold with the primal simplex, then with looser tolerances.
# Each retry only changes how the same LP is solved; the options are restored afterwards.
_RETRIES = (
    (False, {}),
    (True, {"simplex_strategy": 4}),
    (True, {"simplex_strategy": 1, "primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9}),
)


def _option(h, key: str):
    value = h.getOptionValue(key)
    # older highspy returns (status, value)
    return value[1] if isinstance(value, tuple) else value


def _solve(h, what: str) -> str:
    import highspy

    ms = highspy.HighsModelStatus
    verdicts = (ms.kOptimal, ms.kUnbounded, ms.kUnboundedOrInfeasible, ms.kInfeasible)
    h.run()
    status = h.getModelStatus()
    for clear, options in _RETRIES:
        if status in verdicts:
            break
        saved = {key: _option(h, key) for key in options}
        if clear:
            h.clearSolver()
        for key, value in options.items():
            h.setOptionValue(key, value)
        h.run()
        status = h.getModelStatus()
        for key, value in saved.items():
            h.setOptionValue(key, value)
    if status != highspy.HighsModelStatus.kOptimal:
        text = h.modelStatusToString(status)
        if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            # HiGHS solves the dual: an unbounded dual means the weight constraints are infeasible
            text = f"infeasible (dual: {text})"
        raise SolverError(f"HiGHS (structured dual simplex) stopped with status '{text}' on {what}")
    return "optimal"


def _crossings(P: np.ndarray, alpha: np.ndarray, c: Optional[np.ndarray], gap: float):
    """Points and level pairs (i, k) where qhat_k+1 - qhat_k < gap - tolerance."""
    q = np.einsum("njk,jk->nk", P, alpha)
    if c is not None:
        q = q + c
    slack = np.diff(q, axis=1) - gap
    return np.nonzero(slack < -_VIOL)


def _initial_weights(X, y, taus, gid, constraint, intercept, w, size, rng):
    """Weights of the level-separated LP on a random subsample: a guess of residual signs.

    Each group is its own small LP (p rows), solved exactly on ``size`` points.
    """
    n, p, r = X.shape
    sub = np.sort(rng.choice(n, size=size, replace=False))
    G = int(gid.max()) + 1
    alpha, c = np.empty((p, G)), (np.empty(G) if intercept else None)
    for g in range(G):
        levels = np.flatnonzero(gid == g)
        res = solve_structured(X[sub][:, :, levels], y[sub], taus[levels], np.zeros(levels.size, dtype=int),
                               constraint, intercept, False, w[sub])
        alpha[:, g] = res.alpha[:, 0]
        if intercept:
            c[g] = res.intercept[0]
    return alpha, c


def _fitted(X, alpha_g, c_g, gid):
    q = np.einsum("njk,jk->nk", X, alpha_g[:, gid])
    return q if c_g is None else q + c_g[gid]


def solve_structured(X: np.ndarray, y: np.ndarray, taus: np.ndarray, gid: np.ndarray, constraint: str,
                     intercept: bool, noncrossing: bool, w: Optional[np.ndarray] = None,
                     X_extra: Optional[np.ndarray] = None, min_gap: float = 0.0,
                     seed: int = 0) -> StructuredResult:
    """Solve the weight LP of a linear family exactly (see the module docstring).

    For large n the dual columns of points far from the fit are fixed at the bound their
    residual sign dictates (Portnoy & Koenker's "globs"): only a band of points near each
    level's fit keeps a column, the rest enter the row bounds as constants. After each solve
    a fixed point whose residual changed sign gets its column back; the loop ends when no
    sign and no crossing is violated, which are the full LP's optimality conditions.

    Parameters
    ----------
    X : (n, p, r) sorted base predictions (or fqra components)
    y : (n,)
    taus : (r,)
    gid : (r,) group of each level, 0..G-1
    constraint : "simplex", "nonneg" or "free"
    intercept : bool
    noncrossing : bool
    w : (n,) observation weights or None
    X_extra : (m, p, r) extra points for the non-crossing constraints, or None
    min_gap : float
    seed : int
        Seed of the subsample that guesses the residual signs (the answer does not depend on it).

    Returns
    -------
    StructuredResult with alpha (p, r) expanded to levels and intercept (r,) or None.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])
    >>> res = solve_structured(X, np.array([0.0, 2.0]), np.array([0.5]), np.array([0]),
    ...                        "simplex", False, False)
    >>> np.round(res.alpha.ravel(), 6)
    array([1., 0.])
    """
    t0 = time.perf_counter()
    n, p, r = X.shape
    w = np.ones(n) if w is None else w
    G = int(gid.max()) + 1
    num_rows = p * G + (G if intercept else 0)
    row_of = gid * p
    intercept_row = p * G + gid if intercept else None
    band = _band_size(n, p)
    if band < n:
        alpha_g, c_g = _initial_weights(X, y, taus, gid, constraint, intercept, w, band, np.random.default_rng(seed))
        u = y[:, None] - _fitted(X, alpha_g, c_g, gid)
        # keep the `band` points nearest each level's fit; fix the others by residual sign
        cut = np.partition(np.abs(u), band - 1, axis=0)[band - 1]
        free = np.abs(u) <= cut
        upper = u > 0
    else:
        free = np.ones((n, r), dtype=bool)
        upper = np.zeros((n, r), dtype=bool)
    # Fixed columns: d_ik = w_i tau_k (residual > 0) or w_i (tau_k - 1); their row sums move
    # into the row bounds.
    dfix = np.where(free, 0.0, w[:, None] * (taus - (~upper)))
    const = np.zeros(num_rows)
    np.add.at(const, (row_of[:, None] + np.arange(p)).ravel(), np.einsum("nk,njk->kj", dfix, X).ravel())
    if intercept:
        np.add.at(const, intercept_row, dfix.sum(axis=0))
    # Weight rows: G_g <= 0 (alpha >= 0), = 0 for free weights; intercept rows: = 0.
    lower = np.full(num_rows, -np.inf if constraint != "free" else 0.0)
    lower[p * G:] = 0.0
    h = _highs(num_rows, lower - const, -const)
    if constraint == "simplex":
        # mu_g: free columns with a 1 in each weight row of group g (the simplex multiplier).
        mu = sp.csc_matrix((np.ones(p * G), np.arange(p * G), np.arange(G + 1) * p), shape=(num_rows, G))
        _add_columns(h, -np.ones(G), np.full(G, -np.inf), np.full(G, np.inf), mu)
    kk, ii = np.nonzero(free.T)
    _add_columns(h, *_residual_columns(X, y, taus, w, ii, kk, row_of, p, intercept_row, num_rows))
    points = [X] + ([X_extra] if X_extra is not None and noncrossing else [])
    rounds = active = 0
    while True:
        _solve(h, f"round {rounds} ({active} non-crossing constraints, {int(free.sum())} residual columns)")
        alpha_g, c_g = _weights_from_duals(h, G, p, constraint, intercept)
        u = y[:, None] - _fitted(X, alpha_g, c_g, gid)
        wrong = ~free & np.where(upper, u < -_VIOL, u > _VIOL)
        added = 0
        if wrong.any():
            kk, ii = np.nonzero(wrong.T)
            back = np.zeros(num_rows)
            np.add.at(back, (row_of[kk][:, None] + np.arange(p)).ravel(), (X[ii, :, kk] * dfix[ii, kk][:, None]).ravel())
            if intercept:
                np.add.at(back, intercept_row[kk], dfix[ii, kk])
            const -= back
            h.changeRowsBounds(num_rows, np.arange(num_rows, dtype=np.int32),
                               np.where(np.isfinite(lower), lower - const, -np.inf), -const)
            _add_columns(h, *_residual_columns(X, y, taus, w, ii, kk, row_of, p, intercept_row, num_rows))
            free |= wrong
            dfix[wrong] = 0.0
            added += ii.size
        if noncrossing and r > 1:
            for P in points:
                idx, kc = _crossings(P, alpha_g[:, gid], c_g[gid] if c_g is not None else None, min_gap)
                if idx.size:
                    cols = _cut_columns(P, idx, kc, row_of, p, intercept_row, num_rows)
                    _add_columns(h, np.full(idx.size, -min_gap), np.zeros(idx.size), np.full(idx.size, np.inf), cols)
                    active += idx.size
                    added += idx.size
        if not added:
            break
        rounds += 1
        if rounds > _MAX_ROUNDS:
            raise SolverError(f"HiGHS (structured) did not settle after {_MAX_ROUNDS} rounds "
                              f"({active} non-crossing constraints added); use solver='cvxpy'")
    return StructuredResult(alpha_g[:, gid], c_g[gid] if c_g is not None else None, "optimal",
                            time.perf_counter() - t0, rounds, active)


def _band_size(n: int, p: int) -> int:
    """Points per level kept as dual columns: ~ sqrt(p) n^(2/3) (Portnoy & Koenker 1997)."""
    return int(min(n, max(2000, 3 * np.sqrt(p) * n ** (2 / 3))))
