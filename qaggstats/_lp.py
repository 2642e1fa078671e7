"""Structured LP solver for the weight families (HiGHS on the dual).

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

The same dual serves the "fine" and "local" families through their per-level designs
(:class:`FineDesign`, :class:`LocalDesign`): fine is the per-level family on the design
``Q.reshape(n, p*r)``; local is, per level k, a free-weight problem on ``Z_k = Q_k ⊙ φ(x)``
(p·b weights theta_jk) with the simplex as the equalities ``sum_j theta_jk = e_1`` (free
columns ``nu``, one per basis function, as ``mu_g`` above) and the positivity rows
``phi(x_i) . theta_jk >= 0`` added as cuts when violated, like the non-crossing constraints.
An l1 penalty ``lam_v |theta_v|`` on a weight only changes its dual row's bounds to
``[-lam_v, lam_v]`` (``(-inf, lam_v]`` for non-negative weights); an l1 penalty on linear maps
of the weights, ``lam_m |D_m . alpha_g|``, adds one dual column per map and group (``D_m`` in the
group's weight rows, bounds ``[-lam_m, lam_m]``, cost 0). Local weights over a partition-of-unity
basis use that: non-negative theta, ``sum_j theta_jkb = 1`` for every basis function b, and the
penalty on each theta's deviation from its mean over b.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from .errors import SolverError

__all__ = ["applicable", "solve_structured", "StructuredResult", "DenseDesign", "FineDesign",
           "LocalDesign", "new_highs"]

_FAMILIES = ("global", "quantile", "grouped", "qra", "fqra", "fine", "local")
# Crossings within this are solver rounding, not violations.
_VIOL = 1e-9
# Cuts within this of binding at the subsample's answer seed a wide design's LP.
_SEED = 1e-7
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
    >>> applicable("quantile", "simplex", 0.0, "auto"), applicable("local", "simplex", 0.5, "auto")
    (True, False)
    """
    return solver in ("auto", "fast") and family in _FAMILIES and smooth == 0


class DenseDesign:
    """Per-level design held as one array X (n, d, r): level k's row i is ``X[i, :, k]``."""

    # factor of the band of free dual columns (see _band_size); the wide fine and local
    # designs do best with a narrower band (measured: 3x faster at n = 20,000, d = 45-50)
    band = 3.0
    # most non-crossing cuts added per level pair and round (None: all)
    cut_cap: Optional[int] = None

    def __init__(self, X: np.ndarray):
        self.X = X
        self.n, self.d, self.r = X.shape

    def rows(self, ii: np.ndarray, kk: np.ndarray) -> np.ndarray:
        """Design rows of the (point, level) pairs, (len, d)."""
        return self.X[ii, :, kk]

    def fitted(self, A: np.ndarray) -> np.ndarray:
        """``q_ik = X[i, :, k] . A[:, k]`` for weights A (d, r): (n, r)."""
        return np.einsum("njk,jk->nk", self.X, A)

    def gram(self, D: np.ndarray) -> np.ndarray:
        """``sum_i D_ik X[i, :, k]`` for D (n, r): (r, d)."""
        return np.einsum("nk,njk->kj", D, self.X)

    def take(self, rows: np.ndarray) -> "DenseDesign":
        return DenseDesign(self.X[rows])


class FineDesign(DenseDesign):
    """The "fine" design: every level's row i is the flattened ``Q[i].ravel()`` (d = p r)."""

    band = 0.5
    cut_cap = 500

    def __init__(self, Q: np.ndarray):
        self.Q = Q
        self.F = Q.reshape(Q.shape[0], -1)
        self.n, self.d, self.r = self.F.shape[0], self.F.shape[1], Q.shape[2]

    def rows(self, ii, kk):
        return self.F[ii]

    def fitted(self, A):
        return self.F @ A

    def gram(self, D):
        return D.T @ self.F

    def take(self, rows):
        return FineDesign(self.Q[rows])


class LocalDesign(DenseDesign):
    """The "local" design: level k's row i is ``Q[i, :, k] ⊗ phi(x_i)`` (d = p b, j-major).

    Kept factored (Q and the basis) so that the n·p·b·r array is never formed.
    """

    band = 0.5
    cut_cap = 500

    def __init__(self, Q: np.ndarray, phi: np.ndarray):
        self.Q, self.phi = Q, phi
        self.n, self.p, self.r = Q.shape
        self.b = phi.shape[1]
        self.d = self.p * self.b

    def rows(self, ii, kk):
        return (self.Q[ii, :, kk][:, :, None] * self.phi[ii][:, None, :]).reshape(ii.size, self.d)

    def fitted(self, A):
        # one matrix product per block of levels: phi (n, b) @ theta (b, p * levels)
        out = np.empty((self.n, self.r))
        for k0 in range(0, self.r, 16):
            k1 = min(self.r, k0 + 16)
            theta = A[:, k0:k1].reshape(self.p, self.b, k1 - k0).transpose(1, 0, 2).reshape(self.b, -1)
            alpha = (self.phi @ theta).reshape(self.n, self.p, k1 - k0)
            out[:, k0:k1] = np.einsum("njk,njk->nk", self.Q[:, :, k0:k1], alpha)
        return out

    def gram(self, D):
        return np.stack([((D[:, k, None] * self.Q[:, :, k]).T @ self.phi).ravel() for k in range(self.r)])

    def take(self, rows):
        return LocalDesign(self.Q[rows], self.phi[rows])


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


def _residual_columns(X: DenseDesign, y: np.ndarray, taus: np.ndarray, w: np.ndarray, ii: np.ndarray,
                      kk: np.ndarray, row_of: np.ndarray, p: int, intercept_row: Optional[np.ndarray],
                      num_rows: int):
    """Columns d_ik for the (point, level) pairs (ii, kk): costs, bounds and CSC matrix.

    ``row_of[k]`` is the first constraint row of level k's group; d_ik has Q[i, :, k] in
    rows row_of[k] .. +p-1 and a 1 in ``intercept_row[k]`` when there is an intercept.
    """
    vals = X.rows(ii, kk)  # (cols, p)
    rows = row_of[kk][:, None] + np.arange(p)
    if intercept_row is not None:
        vals = np.hstack([vals, np.ones((kk.size, 1))])
        rows = np.hstack([rows, intercept_row[kk][:, None]])
    per = vals.shape[1]
    indptr = np.arange(kk.size + 1, dtype=np.int64) * per
    mat = sp.csc_matrix((vals.ravel(), rows.ravel(), indptr), shape=(num_rows, kk.size))
    return -y[ii], w[ii] * (taus[kk] - 1.0), w[ii] * taus[kk], mat


def _cut_columns(P: DenseDesign, idx: np.ndarray, kk: np.ndarray, row_of: np.ndarray, p: int,
                 intercept_row: Optional[np.ndarray], num_rows: int) -> sp.csc_matrix:
    """Columns lam_s for non-crossing constraints at points ``idx`` between levels kk, kk+1."""
    up = P.rows(idx, kk + 1)
    down = -P.rows(idx, kk)
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


def _weights_from_duals(h, G: int, p: int, nonneg: bool, intercept: bool):
    """Primal weights (p, G) and intercepts (G,) from the dual LP's row duals."""
    duals = -np.asarray(h.getSolution().row_dual)
    alpha = duals[: p * G].reshape(G, p).T.copy()
    if nonneg:
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


def _crossings(P: DenseDesign, alpha: np.ndarray, c: Optional[np.ndarray], gap: float,
               cap: Optional[int] = None, tol: float = _VIOL):
    """Points and level pairs (i, k) where qhat_k+1 - qhat_k < gap - tolerance.

    With ``cap``, only the ``cap`` worst crossings of each level pair: a wide design's dense
    cut columns (d = p b or p r entries each) would otherwise take gigabytes in one round
    (seen: 9.5 GB for local at n = 45,000).
    """
    q = P.fitted(alpha)
    if c is not None:
        q = q + c
    slack = np.diff(q, axis=1) - gap
    if cap is None:
        return np.nonzero(slack < -tol)
    found = []
    for k in np.flatnonzero((slack < -tol).any(axis=0)):
        i = np.flatnonzero(slack[:, k] < -tol)
        if i.size > cap:
            i = i[np.argpartition(slack[i, k], cap - 1)[:cap]]
        found.append((i, np.full(i.size, k)))
    if not found:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return tuple(np.concatenate(v) for v in zip(*found))


def _fitted(X: DenseDesign, alpha_g, c_g, gid):
    q = X.fitted(alpha_g[:, gid])
    return q if c_g is None else q + c_g[gid]


def _positivity_violations(P: LocalDesign, alpha_g: np.ndarray, gid: np.ndarray, most: int, tol: float = _VIOL):
    """(i, j, g) where the local weight ``phi(x_i) . theta_jg`` is negative beyond rounding.

    At most ``most`` points per (j, g), the most negative: typically a few points at the
    edge of the basis' range bind, and adding every violated row would flood the LP.
    """
    found = []
    for g in range(alpha_g.shape[1]):
        a = P.phi @ alpha_g[:, g].reshape(P.p, P.b).T  # (n, p)
        for j in np.flatnonzero((a < -tol).any(axis=0)):
            i = np.flatnonzero(a[:, j] < -tol)
            if i.size > most:
                i = i[np.argpartition(a[i, j], most - 1)[:most]]
            found.append((i, np.full(i.size, j), np.full(i.size, g)))
    if not found:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return tuple(np.concatenate(v) for v in zip(*found))


def _positivity_columns(P: LocalDesign, ii, jj, gg, row_of_group: np.ndarray, num_rows: int) -> sp.csc_matrix:
    """Columns for the cuts ``phi(x_i) . theta_jg >= 0``: phi(x_i) in the rows of theta_jg."""
    rows = (row_of_group[gg] + jj * P.b)[:, None] + np.arange(P.b)
    indptr = np.arange(ii.size + 1, dtype=np.int64) * P.b
    return sp.csc_matrix((P.phi[ii].ravel(), rows.ravel(), indptr), shape=(num_rows, ii.size))


def solve_structured(X, y: np.ndarray, taus: np.ndarray, gid: np.ndarray, constraint: str,
                     intercept: bool, noncrossing: bool, w: Optional[np.ndarray] = None,
                     X_extra=None, min_gap: float = 0.0, seed: int = 0,
                     equality: Optional[tuple[np.ndarray, np.ndarray]] = None,
                     penalty: Optional[np.ndarray] = None, positive: bool = False,
                     penalty_maps: Optional[tuple[np.ndarray, np.ndarray]] = None,
                     path: Optional[Sequence[float]] = None):
    """Solve the weight LP of a linear family, fine or local exactly (see the module docstring).

    For large n the dual columns of points far from the fit are fixed at the bound their
    residual sign dictates (Portnoy & Koenker's "globs"): only a band of points near each
    level's fit keeps a column, the rest enter the row bounds as constants. After each solve
    a fixed point whose residual changed sign gets its column back; the loop ends when no
    sign, no crossing and no positivity cut is violated, which are the full LP's optimality
    conditions.

    Parameters
    ----------
    X : (n, d, r) array or a design (:class:`DenseDesign`, :class:`FineDesign`, :class:`LocalDesign`)
        Sorted base predictions (or fqra components), or the fine / local design.
    y : (n,)
    taus : (r,)
    gid : (r,) group of each level, 0..G-1
    constraint : "simplex", "nonneg" or "free"
        Simplex: weights >= 0 summing to one per group (unless ``equality`` is given).
    intercept : bool
    noncrossing : bool
    w : (n,) observation weights or None
    X_extra : (m, d, r) array or design of the same kind, extra points for the non-crossing
        (and positivity) constraints, or None
    min_gap : float
    seed : int
        Seed of the subsample that guesses the residual signs (the answer does not depend on it).
    equality : (E (d, e), f (e,)), optional
        Equalities ``E' alpha_g = f`` for every group, in place of the simplex's sum to one
        (local: ``sum_j theta_jg = e_1``); pass constraint "free" or "nonneg" for the bounds.
    penalty : (d,) array, optional
        l1 penalty ``sum_g sum_v penalty_v |alpha_vg|`` added to the objective.
    positive : bool
        Local design only: cuts ``phi(x_i) . theta_jg >= 0`` at the training and extra points.
    penalty_maps : (D (m, d), lam (m,)), optional
        l1 penalty ``sum_g sum_m lam_m |D_m . alpha_g|`` added to the objective.
    path : sequence of float, optional
        With ``penalty_maps``: solve for ``lam * s`` for each multiplier s in turn, each warm
        from the previous answer (only the penalty columns' bounds change), and return a list.

    Returns
    -------
    StructuredResult with alpha (d, r) expanded to levels and intercept (r,) or None; a list
    of them, one per multiplier, with ``path``.

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
    X = X if isinstance(X, DenseDesign) else DenseDesign(X)
    if X_extra is not None and not isinstance(X_extra, DenseDesign):
        X_extra = DenseDesign(X_extra)
    if positive and not isinstance(X, LocalDesign):
        raise ValueError("positivity cuts need a LocalDesign")
    n, p, r = X.n, X.d, X.r
    w = np.ones(n) if w is None else w
    G = int(gid.max()) + 1
    num_rows = p * G + (G if intercept else 0)
    row_of = gid * p
    intercept_row = p * G + gid if intercept else None
    if path is not None and penalty_maps is None:
        raise ValueError("path needs penalty_maps")
    steps = [1.0] if path is None else [float(v) for v in path]
    base_lam = None
    if penalty_maps is not None:
        base_lam = np.asarray(penalty_maps[1], dtype=float)
        penalty_maps = (penalty_maps[0], base_lam * steps[0])
    options = dict(equality=equality, penalty=penalty, positive=positive, penalty_maps=penalty_maps)
    band = _band_size(n, p, X.band)
    if band < n:
        alpha_g, c_g = _initial_weights(X, y, taus, gid, constraint, intercept, w, band,
                                        np.random.default_rng(seed), options)
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
    np.add.at(const, (row_of[:, None] + np.arange(p)).ravel(), X.gram(dfix).ravel())
    if intercept:
        np.add.at(const, intercept_row, dfix.sum(axis=0))
    # Weight rows: G_g <= 0 (alpha >= 0), = 0 for free weights, within +-penalty when
    # penalised; intercept rows: = 0.
    nonneg = constraint != "free"
    pen = np.zeros(p) if penalty is None else np.asarray(penalty, dtype=float)
    upper_b = np.concatenate([np.tile(pen, G), np.zeros(num_rows - p * G)])
    lower = np.concatenate([np.tile(-pen, G) if not nonneg else np.full(p * G, -np.inf), np.zeros(num_rows - p * G)])
    h = _highs(num_rows, lower - const, upper_b - const)
    if equality is not None:
        E, f = equality
        e = E.shape[1]
        # nu_ge: free columns with E[:, e] in group g's weight rows and cost -f_e
        blocks = sp.kron(sp.eye(G), sp.csc_matrix(E), format="csc")
        mat = sp.vstack([blocks, sp.csc_matrix((num_rows - p * G, G * e))], format="csc")
        _add_columns(h, -np.tile(f, G), np.full(G * e, -np.inf), np.full(G * e, np.inf), mat)
    elif constraint == "simplex":
        # mu_g: free columns with a 1 in each weight row of group g (the simplex multiplier).
        mu = sp.csc_matrix((np.ones(p * G), np.arange(p * G), np.arange(G + 1) * p), shape=(num_rows, G))
        _add_columns(h, -np.ones(G), np.full(G, -np.inf), np.full(G, np.inf), mu)
    if penalty_maps is not None:
        D, lam = penalty_maps
        # v_gm: one column per map and group, D_m in the group's weight rows, |v_gm| <= lam_m
        blocks = sp.kron(sp.eye(G), sp.csc_matrix(np.asarray(D, dtype=float).T), format="csc")
        mat = sp.vstack([blocks, sp.csc_matrix((num_rows - p * G, blocks.shape[1]))], format="csc")
        lam = np.tile(np.asarray(lam, dtype=float), G)
        map_cols = np.arange(h.getNumCol(), h.getNumCol() + lam.size, dtype=np.int32)
        _add_columns(h, np.zeros(lam.size), -lam, lam, mat)
    kk, ii = np.nonzero(free.T)
    _add_columns(h, *_residual_columns(X, y, taus, w, ii, kk, row_of, p, intercept_row, num_rows))
    points = [X] + ([X_extra] if X_extra is not None else [])
    group_rows = np.arange(G) * p
    rounds = active = 0

    def add_cuts(alpha_g, c_g, tol):
        """Add the cuts violated by more than ``tol`` at (alpha_g, c_g); returns how many."""
        added = 0
        for P in points:
            if noncrossing and r > 1:
                idx, kc = _crossings(P, alpha_g[:, gid], c_g[gid] if c_g is not None else None, min_gap,
                                     P.cut_cap, tol)
                if idx.size:
                    cols = _cut_columns(P, idx, kc, row_of, p, intercept_row, num_rows)
                    _add_columns(h, np.full(idx.size, -min_gap), np.zeros(idx.size), np.full(idx.size, np.inf), cols)
                    added += idx.size
            if positive:
                ii, jj, gg = _positivity_violations(P, alpha_g, gid, 2 * P.b, tol)
                if ii.size:
                    cols = _positivity_columns(P, ii, jj, gg, group_rows, num_rows)
                    _add_columns(h, np.zeros(ii.size), np.zeros(ii.size), np.full(ii.size, np.inf), cols)
                    added += ii.size
        return added

    if band < n and X.cut_cap is not None:
        # Wide designs: start with the cuts active (or violated) at the subsample's answer.
        # Adding them after a first solve costs a long dual phase (measured: 18 s of 31 s for
        # local at n = 5,000, r = 19), adding them up front costs little.
        active += add_cuts(alpha_g, c_g, -_SEED)
    def settle():
        """Solve, then add wrong-signed residual columns and violated cuts until none is left."""
        nonlocal rounds, active
        while True:
            _solve(h, f"round {rounds} ({active} cuts, {int(free.sum())} residual columns)")
            alpha_g, c_g = _weights_from_duals(h, G, p, nonneg, intercept)
            u = y[:, None] - _fitted(X, alpha_g, c_g, gid)
            wrong = ~free & np.where(upper, u < -_VIOL, u > _VIOL)
            added = 0
            if wrong.any():
                kk, ii = np.nonzero(wrong.T)
                back = np.zeros(num_rows)
                np.add.at(back, (row_of[kk][:, None] + np.arange(p)).ravel(),
                          (X.rows(ii, kk) * dfix[ii, kk][:, None]).ravel())
                if intercept:
                    np.add.at(back, intercept_row[kk], dfix[ii, kk])
                const[:] -= back
                h.changeRowsBounds(num_rows, np.arange(num_rows, dtype=np.int32),
                                   np.where(np.isfinite(lower), lower - const, -np.inf), upper_b - const)
                _add_columns(h, *_residual_columns(X, y, taus, w, ii, kk, row_of, p, intercept_row, num_rows))
                free[:] |= wrong
                dfix[wrong] = 0.0
                added += ii.size
            cuts = add_cuts(alpha_g, c_g, _VIOL)
            active += cuts
            added += cuts
            if not added:
                return alpha_g, c_g
            rounds += 1
            if rounds > _MAX_ROUNDS:
                raise SolverError(f"HiGHS (structured) did not settle after {_MAX_ROUNDS} rounds "
                                  f"({active} cuts added); use solver='cvxpy'")

    results = []
    for step in steps:
        if results:
            # the next penalty of the path: only the penalty columns' bounds change, so the
            # previous basis stays primal feasible and the re-solve starts from it
            scaled = np.tile(base_lam, G) * step
            h.changeColsBounds(map_cols.size, map_cols, -scaled, scaled)
            t0, rounds = time.perf_counter(), 0
        alpha_g, c_g = settle()
        results.append(StructuredResult(alpha_g[:, gid], c_g[gid] if c_g is not None else None, "optimal",
                                        time.perf_counter() - t0, rounds, active))
    return results if path is not None else results[0]


def _initial_weights(X: DenseDesign, y, taus, gid, constraint, intercept, w, size, rng, options):
    """Weights of the LP without non-crossing on a random subsample: a guess of residual signs."""
    sub = np.sort(rng.choice(X.n, size=size, replace=False))
    res = solve_structured(X.take(sub), y[sub], taus, gid, constraint, intercept, False, w[sub], **options)
    G = int(gid.max()) + 1
    first = np.array([np.flatnonzero(gid == g)[0] for g in range(G)])
    return res.alpha[:, first], (res.intercept[first] if intercept else None)



def _band_size(n: int, p: int, factor: float = 3.0) -> int:
    """Points per level kept as dual columns: ~ sqrt(p) n^(2/3) (Portnoy & Koenker 1997)."""
    return int(min(n, max(2000, factor * np.sqrt(p) * n ** (2 / 3))))

