"""Weight fitting: combine base-model quantiles by minimising the summed check loss.

For levels ``tau_1 < ... < tau_r``, models ``j = 1..p`` and points ``i``, the aggregate is
``qhat_k(x_i) = sum_j alpha_jk(x_i) Q[i, j, k] (+ c_k)``, and the weights minimise

    sum_k sum_i w_i psi_tau_k(y_i - qhat_k(x_i)) + smooth * sum_k |alpha_k+1 - alpha_k|

(``psi_tau(u) = u (tau - 1{u < 0})``) over a weight family and a constraint set, optionally
with non-crossing constraints ``qhat_k <= qhat_k+1 - min_gap`` at the training points and at
extra points. Every family is a linear programme; the generic route builds it in cvxpy from
whole arrays, and a structured route (:mod:`qaggstats._lp`) solves the level-separable
families exactly with HiGHS on the dual, adding only the violated non-crossing constraints.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=200)
>>> taus = np.array([0.1, 0.5, 0.9])
>>> good = np.quantile(rng.normal(size=(5000,)), taus)
>>> Q = np.stack([np.tile(good, (200, 1)), np.tile(good + 5.0, (200, 1))], axis=1)
>>> w = fit_weights(Q, y, taus, family="global")
>>> bool(w.alpha[0, 0] > 0.95), w.alpha.shape        # the well-placed model dominates
(True, (2, 3))
>>> w.combine(Q).shape
(200, 3)
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .errors import DataError, SolverError
from .scoring import validate_levels

__all__ = ["Weights", "fit_weights", "FAMILIES", "CONSTRAINTS", "pinball_sums", "level_groups"]

FAMILIES = ("mean", "median", "global", "quantile", "grouped", "local", "fine", "qra", "fqra")
CONSTRAINTS = ("simplex", "nonneg", "free")
# Families whose weights are one (p,) vector per level group: alpha (p, r) after expansion.
_LINEAR = ("global", "quantile", "grouped", "qra", "fqra")
_CVXPY_ORDER = ("CLARABEL", "HIGHS", "SCIPY", "ECOS")
# Crossings smaller than this are rounding, not violations (the 1e-9).
CROSS_TOL = 1e-9


@dataclass
class Weights:
    """Fitted aggregation weights and how they were obtained.

    Attributes
    ----------
    family, constraint : str
        The weight family and constraint (``"qra"``/``"fqra"`` always report ``"free"``).
    taus : (r,) array
        Levels.
    alpha : array
        ``(p, r)`` for mean, median (NaN: not a linear combination), global, quantile,
        grouped, qra and fqra (fqra's component weights mapped back to the models);
        ``(p, r, b)`` basis coefficients theta for local (``alpha_jk(x) = theta[j, k] @ phi(x)``);
        ``(p, r, r)`` for fine, ``alpha[j, l, k]`` = weight of model j's level l in output level k.
    intercept : (r,) array or None
        Per-level intercept (constraint "free", qra, fqra).
    objective : float
        Check loss plus smoothness penalty at the optimum.
    loss : float
        Summed (observation-weighted) check loss over levels and points.
    solver, status : str
        Solver that produced the answer and its status.
    seconds, compile_seconds, solve_seconds : float
        Total wall time, cvxpy canonicalisation time (0 for the structured path) and solver time.
    model_losses : (p, r) array
        Summed check loss of each base model per level on the fitting data.
    aggregate_losses : (r,) array
        Summed check loss of the aggregate per level on the fitting data.
    groups : (r,) int array or None
        Group of each level (global: all 0; quantile: 0..r-1; grouped: as fitted).
    noncrossing : bool
    rounds : int
        Active-set rounds of the structured path (0 otherwise).
    active : int
        Non-crossing constraints in the final LP of the structured path.
    attempts : dict
        Status of every solver tried, in order.

    Examples
    --------
    >>> import numpy as np
    >>> Q = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    >>> w = fit_weights(Q, np.array([1.0]), [0.25, 0.75], family="mean")
    >>> w.combine(Q)
    array([[1., 2.]])
    >>> w.to_frame(["a", "b"]).shape
    (4, 3)
    """

    family: str
    constraint: str
    taus: np.ndarray
    alpha: np.ndarray
    intercept: Optional[np.ndarray]
    objective: float
    loss: float
    solver: str
    status: str
    seconds: float
    compile_seconds: float
    solve_seconds: float
    model_losses: np.ndarray
    aggregate_losses: np.ndarray
    groups: Optional[np.ndarray] = None
    noncrossing: bool = False
    rounds: int = 0
    active: int = 0
    attempts: dict = field(default_factory=dict)

    def weights_at(self, basis: np.ndarray) -> np.ndarray:
        """Local weights ``alpha_jk(x)`` at basis rows ``(m, b)``, shape ``(m, p, r)``."""
        if self.family != "local":
            raise DataError(f"weights_at needs the 'local' family, this fit is {self.family!r}")
        basis = _as_basis(basis, None, self.alpha.shape[2], "basis")
        return np.einsum("mb,jkb->mjk", basis, self.alpha)

    def combine(self, Q: np.ndarray, basis: Optional[np.ndarray] = None) -> np.ndarray:
        """Aggregate base predictions.

        Each model's quantiles are sorted across levels first, as in the fit.

        Parameters
        ----------
        Q : (m, p, r) array
        basis : (m, b) array, required for the "local" family

        Returns
        -------
        (m, r) array

        Examples
        --------
        >>> import numpy as np
        >>> Q = np.array([[[0.0, 2.0], [1.0, 5.0]]])
        >>> fit_weights(Q, np.array([1.0]), [0.3, 0.7], family="median").combine(Q)
        array([[0.5, 3.5]])
        """
        p, r = self.alpha.shape[0], self.taus.size
        Q = np.sort(_as_Q(Q, "Q", p=p, r=r), axis=2)
        if self.family == "median":
            return np.median(Q, axis=1)
        if self.family == "local":
            if basis is None:
                raise DataError("the 'local' family needs basis= (m, b) to combine")
            basis = _as_basis(basis, Q.shape[0], self.alpha.shape[2], "basis")
            out = np.einsum("mjk,mb,jkb->mk", Q, basis, self.alpha)
        elif self.family == "fine":
            out = Q.reshape(Q.shape[0], -1) @ self.alpha.reshape(-1, r)
        else:
            out = np.einsum("mjk,jk->mk", Q, self.alpha)
        return out if self.intercept is None else out + self.intercept

    def to_frame(self, models: Sequence[str], taus: Optional[Sequence[float]] = None) -> pd.DataFrame:
        """Tidy weights.

        Columns ``model, tau, weight`` (plus ``intercept`` rows named "(intercept)" when
        fitted); local: ``model, tau, basis, coef``; fine: ``model, input_tau, tau, weight``.

        Examples
        --------
        >>> import numpy as np
        >>> Q = np.array([[[0.0, 1.0], [2.0, 3.0]]])
        >>> fit_weights(Q, np.array([1.0]), [0.25, 0.75], family="mean").to_frame(["a", "b"])
          model   tau  weight
        0     a  0.25     0.5
        1     a  0.75     0.5
        2     b  0.25     0.5
        3     b  0.75     0.5
        """
        models = [str(m) for m in models]
        if len(models) != self.alpha.shape[0]:
            raise DataError(f"to_frame got {len(models)} model names for {self.alpha.shape[0]} models")
        t = self.taus if taus is None else np.asarray(taus, dtype=float)
        if self.family == "local":
            j, k, b = np.indices(self.alpha.shape).reshape(3, -1)
            frame = pd.DataFrame({"model": np.asarray(models)[j], "tau": t[k], "basis": b,
                                  "coef": self.alpha.ravel()})
        elif self.family == "fine":
            j, l, k = np.indices(self.alpha.shape).reshape(3, -1)
            frame = pd.DataFrame({"model": np.asarray(models)[j], "input_tau": t[l], "tau": t[k],
                                  "weight": self.alpha.ravel()})
        else:
            j, k = np.indices(self.alpha.shape).reshape(2, -1)
            frame = pd.DataFrame({"model": np.asarray(models)[j], "tau": t[k], "weight": self.alpha.ravel()})
        if self.intercept is not None:
            col = "coef" if self.family == "local" else "weight"
            extra = pd.DataFrame({"model": "(intercept)", "tau": t, col: self.intercept})
            frame = pd.concat([frame, extra], ignore_index=True)
        return frame


# ----------------------------------------------------------------------------- helpers
def pinball_sums(y: np.ndarray, q: np.ndarray, taus: np.ndarray,
                 weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Summed check loss per level, ``sum_i w_i psi_tau_k(y_i - q_ik)``, shape (r,).

    Examples
    --------
    >>> pinball_sums(np.array([1.0, 2.0]), np.array([[0.0], [3.0]]), np.array([0.25]))
    array([1.])
    """
    u = y[:, None] - q
    loss = u * (taus - (u < 0))
    if weights is not None:
        loss = loss * weights[:, None]
    return loss.sum(axis=0)


def level_groups(groups: Union[None, int, Sequence[int]], r: int, family: str) -> np.ndarray:
    """Group id (0..G-1) of each level for the linear families, shape (r,).

    ``groups`` for "grouped": a sequence of r labels (levels with equal labels share weights,
    as quantgen's ``tau_groups``) or an int G (contiguous blocks of near-equal size).

    Examples
    --------
    >>> level_groups(3, 7, "grouped")
    array([0, 0, 0, 1, 1, 2, 2])
    >>> level_groups(["a", "a", "b"], 3, "grouped")
    array([0, 0, 1])
    """
    if family == "global":
        return np.zeros(r, dtype=int)
    if family != "grouped":
        return np.arange(r)
    if groups is None:
        raise DataError("family 'grouped' needs groups= (r labels, or the number of contiguous groups)")
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        if not 1 <= groups <= r:
            raise DataError(f"groups={groups} must be between 1 and the number of levels ({r})")
        return np.repeat(np.arange(groups), [len(b) for b in np.array_split(np.arange(r), groups)])
    labels = np.asarray(groups)
    if labels.shape != (r,):
        raise DataError(f"groups must give one label per level ({r}), got shape {labels.shape}")
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    # Number groups in order of first appearance so group 0 holds the lowest level.
    order = np.argsort(np.argsort(first))
    return order[inverse]


def _as_Q(Q: Any, name: str, p: Optional[int] = None, r: Optional[int] = None,
          n: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(Q, dtype=float)
    if arr.ndim != 3:
        raise DataError(f"{name} must have shape (n, p, r), got {arr.shape}")
    for axis, (want, what) in enumerate(((n, "rows"), (p, "models"), (r, "levels"))):
        if want is not None and arr.shape[axis] != want:
            raise DataError(f"{name} has {arr.shape[axis]} {what}, expected {want}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j, k = np.argwhere(bad)[0]
        raise DataError(f"{name} has {int(bad.sum())} non-finite values (first: row {i}, model {j}, level {k})")
    return arr


def _as_basis(basis: Any, n: Optional[int], b: Optional[int], name: str) -> np.ndarray:
    arr = np.asarray(basis, dtype=float)
    if arr.ndim != 2 or (n is not None and arr.shape[0] != n) or (b is not None and arr.shape[1] != b):
        raise DataError(f"{name} must have shape ({n if n is not None else 'm'}, "
                        f"{b if b is not None else 'b'}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} has non-finite values")
    return arr


def _as_vector(v: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=float)
    if arr.shape != (n,):
        raise DataError(f"{name} must have shape ({n},), got {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise DataError(f"{name} has non-finite values (first at row {bad[0]})")
    return arr


def _pca_maps(Q: np.ndarray, n_components: Optional[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-level principal directions of the base predictions: V (p, c, r), mean (p, r), c.

    The default c is the smallest number of components keeping 95% of the variance at every
    level: fqra's point is to drop near-collinear directions of similar models.
    """
    n, p, r = Q.shape
    mean = Q.mean(axis=0)
    centred = Q - mean
    # SVD of each level's (n, p) block, batched: centred.transpose -> (r, n, p).
    _, s, vt = np.linalg.svd(np.moveaxis(centred, 2, 0), full_matrices=False)
    if n_components is None:
        share = np.cumsum(s**2, axis=1) / np.maximum((s**2).sum(axis=1, keepdims=True), 1e-300)
        n_components = int(max(1, (share < 0.95).sum(axis=1).max() + 1))
    if not 1 <= n_components <= p:
        raise DataError(f"n_components={n_components} must be between 1 and the number of models ({p})")
    V = np.moveaxis(vt[:, :n_components, :], 0, 2).transpose(1, 0, 2)  # (p, c, r)
    return V, mean, n_components


# ----------------------------------------------------------------------------- cvxpy model
_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 2
_DPP_MAX_ENTRIES = 20_000
# Above this many base-prediction entries (n·p·r) the generic cvxpy model is not built as a
# fallback: its canonicalisation needs tens of GB (23 GB seen at n = 1e6, p = 5, r = 19).
_CVXPY_MAX_ENTRIES = 20_000_000


def _weight_var(cp, shape, constraint: str):
    # Simplex weights are declared with bounds [0, 1]: cvxpy 1.9.3 otherwise let HiGHS/SciPy
    # report "infeasible" when base predictions are negative (tests cover this).
    if constraint == "simplex":
        return cp.Variable(shape, bounds=[np.zeros(shape), np.ones(shape)])
    if constraint == "nonneg":
        return cp.Variable(shape, nonneg=True)
    return cp.Variable(shape)


def _build(spec: dict):
    """The cvxpy problem of a weight fit, with Parameters for all data when DPP allows it.

    Returns (problem, params: dict name -> Parameter, vars: dict). Data enter through
    Parameters (linear families and fine), so a refit on same-shape data reuses cvxpy's
    cached canonicalisation; the local family multiplies two data arrays (Q and the basis),
    which DPP does not allow, so it is built from constants.
    """
    import cvxpy as cp

    fam, n, p, r = spec["family"], spec["n"], spec["p"], spec["r"]
    gid, constraint, intercept = np.asarray(spec["gid"]), spec["constraint"], spec["intercept"]
    m = spec["m_extra"]
    dpp = spec["dpp"]
    params: dict[str, Any] = {}

    def data(name, shape, value=None, **kw):
        if dpp:
            params[name] = cp.Parameter(shape, **kw)
            return params[name]
        return value

    y = data("y", (n, 1), spec.get("y"))
    wpos = data("wpos", (n, r), spec.get("wpos"), nonneg=True)
    wneg = data("wneg", (n, r), spec.get("wneg"), nonneg=True)
    cons = []
    if fam == "fine":
        A = _weight_var(cp, (p * r, r), "nonneg" if constraint != "free" else "free")
        if constraint == "simplex":
            cons.append(cp.sum(A, axis=0) == 1)
        Qf = data("Qflat", (n, p * r), spec.get("Qflat"))
        qhat = Qf @ A
        qx = data("Qflat_x", (m, p * r), spec.get("Qflat_x")) @ A if m else None
        rough = cp.sum(cp.abs(A[:, 1:] - A[:, :-1])) if r > 1 else 0
        variables = {"A": A}
    elif fam == "local":
        bdim = spec["basis"].shape[1]
        Theta = [cp.Variable((bdim, r)) for _ in range(p)]
        alphas = [spec["basis"] @ T for T in Theta]  # (n, r) each: alpha_j(x_i) per level
        qhat = sum(cp.multiply(spec["Q"][:, j, :], alphas[j]) for j in range(p))
        points = [alphas]
        qx = None
        if m:
            xalphas = [spec["basis_x"] @ T for T in Theta]
            points.append(xalphas)
            qx = sum(cp.multiply(spec["Q_x"][:, j, :], xalphas[j]) for j in range(p))
        for al in points:
            if constraint in ("simplex", "nonneg"):
                cons += [a >= 0 for a in al]
            if constraint == "simplex":
                cons.append(sum(al) == 1)
        rough = sum(cp.sum(cp.abs(T[:, 1:] - T[:, :-1])) for T in Theta) if r > 1 else 0
        variables = {"Theta": Theta}
    else:
        G = int(gid.max()) + 1
        A = _weight_var(cp, (p, G), constraint)
        if constraint == "simplex":
            cons.append(cp.sum(A, axis=0) == 1)
        Al = A[:, gid] if G != r or not np.array_equal(gid, np.arange(r)) else A  # (p, r)
        Qj = [data(f"Q{j}", (n, r), spec.get(f"Q{j}")) for j in range(p)]
        qhat = sum(cp.multiply(Qj[j], cp.reshape(Al[j, :], (1, r), order="C")) for j in range(p))
        qx = None
        if m:
            Qx = [data(f"Qx{j}", (m, r), spec.get(f"Qx{j}")) for j in range(p)]
            qx = sum(cp.multiply(Qx[j], cp.reshape(Al[j, :], (1, r), order="C")) for j in range(p))
        rough = cp.sum(cp.abs(Al[:, 1:] - Al[:, :-1])) if r > 1 and spec["smooth"] else 0
        variables = {"A": A}
    c = None
    if intercept:
        G = int(gid.max()) + 1 if fam in _LINEAR else r
        c = cp.Variable(G)
        cl = c[gid] if fam in _LINEAR and G != r else c
        row = cp.reshape(cl, (1, r), order="C")
        qhat = qhat + np.ones((n, 1)) @ row
        if qx is not None:
            qx = qx + np.ones((m, 1)) @ row
        variables["c"] = c
    # Explicit residual parts u+ - u- = y - qhat keep the objective "parameter x variable" (DPP).
    upos, uneg = cp.Variable((n, r), nonneg=True), cp.Variable((n, r), nonneg=True)
    ymat = y @ np.ones((1, r)) if dpp else np.outer(spec["y"], np.ones(r))
    cons.append(qhat + upos - uneg == ymat)
    objective = cp.sum(cp.multiply(wpos, upos) + cp.multiply(wneg, uneg))
    if spec["smooth"] and r > 1:
        lam = data("smooth", (), spec["smooth"], nonneg=True)
        objective = objective + lam * rough
    if spec["noncrossing"] and r > 1:
        gap = data("gap", (), spec["min_gap"], nonneg=True)
        cons.append(qhat[:, 1:] - qhat[:, :-1] >= gap)
        if qx is not None:
            cons.append(qx[:, 1:] - qx[:, :-1] >= gap)
    return cp.Problem(cp.Minimize(objective), cons), params, variables


def _problem(spec: dict, arrays: dict):
    """Build or fetch the cached cvxpy problem for ``spec`` and load ``arrays`` into it."""
    key = tuple((k, tuple(v) if isinstance(v, np.ndarray) else v) for k, v in sorted(spec.items())
                if k not in ("y", "wpos", "wneg", "Q", "Q_x", "basis", "basis_x", "smooth", "min_gap")) + (
        ("smooth>0", bool(spec["smooth"])),)
    if not spec["dpp"] or key not in _CACHE:
        built = _build({**spec, **arrays})
        if spec["dpp"]:
            _CACHE[key] = built
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    else:
        built = _CACHE[key]
        _CACHE.move_to_end(key)
    problem, params, variables = built
    for name, par in params.items():
        par.value = arrays[name]
    return problem, variables


def _solver_chain(solver: str) -> list[str]:
    import cvxpy as cp

    installed = cp.installed_solvers()
    chain = [s for s in _CVXPY_ORDER if s in installed]
    if solver in ("auto", "cvxpy"):
        return chain
    if solver.upper() not in installed:
        raise DataError(f"solver {solver!r} is not available; installed: {', '.join(installed)}")
    return [solver.upper()] + [s for s in chain if s != solver.upper()]


def _solve_cvxpy(problem, chain: list[str], attempts: Optional[dict] = None) -> tuple[str, str, float, float, dict]:
    """Solve with each solver in turn until one reports optimal; raise SolverError otherwise.

    ``attempts`` carries earlier failures (e.g. of the structured path) into the final message.
    """
    import cvxpy as cp

    attempts = dict(attempts or {})
    compile_s = solve_s = 0.0
    for name in chain:
        try:
            problem.solve(solver=name)
            status = problem.status
        except (cp.error.SolverError, ValueError, ArithmeticError) as err:
            status = f"error: {err}".splitlines()[0][:200]
        compile_s += float(getattr(problem, "compilation_time", 0.0) or 0.0)
        stats = problem.solver_stats
        solve_s += float(stats.solve_time or 0.0) if stats is not None and status == "optimal" else 0.0
        attempts[name] = status
        if status == cp.OPTIMAL:
            return name, status, compile_s, solve_s, attempts
    raise SolverError("weight fit failed with every solver: " + "; ".join(f"{k}: {v}" for k, v in attempts.items()))


# ----------------------------------------------------------------------------- entry point
def fit_weights(Q: np.ndarray, y: np.ndarray, taus: Sequence[float], family: str = "quantile",
                constraint: str = "simplex", noncrossing: bool = True,
                groups: Union[None, int, Sequence[Any]] = None, basis: Optional[np.ndarray] = None,
                obs_weights: Optional[np.ndarray] = None, smooth: float = 0.0,
                extra: Optional[Mapping[str, np.ndarray]] = None, min_gap: float = 0.0,
                solver: str = "auto", intercept: Optional[bool] = None,
                n_components: Optional[int] = None) -> Weights:
    """Fit aggregation weights for base-model quantiles.

    Parameters
    ----------
    Q : (n, p, r) array
        Base predictions; each model's quantiles are sorted across levels first (with sorted
        inputs the non-crossing constraints are always feasible).
    y : (n,) array
    taus : (r,) increasing levels in (0, 1)
    family : {"mean", "median", "global", "quantile", "grouped", "local", "fine", "qra", "fqra"}
        "mean"/"median": fixed, no fit. "global": one weight per model. "quantile": one per
        model and level. "grouped": shared within level groups. "local": ``alpha_jk(x) =
        sum_b theta_jkb phi_b(x)``. "fine": every output level mixes every input level of
        every model. "qra": free weights with a per-level intercept. "fqra": qra on the
        first principal components of each level's predictions.
    constraint : {"simplex", "nonneg", "free"}
        Simplex (non-negative, summing to one per level; for local at the training and extra
        points; for fine over model x level), non-negative, or unconstrained. qra and fqra
        are always free with an intercept.
    noncrossing : bool
        Impose ``qhat_k + min_gap <= qhat_k+1`` at the training points and extra points.
    groups : int or sequence of r labels
        Level groups for "grouped" (see :func:`level_groups`).
    basis : (n, b) array
        Basis phi(x) of the "local" family at the training points.
    obs_weights : (n,) array, optional
        Non-negative observation weights w_i.
    smooth : float
        Penalty ``smooth * sum_k sum_j |alpha_j,k+1 - alpha_jk|`` (keeps an LP).
    extra : dict with "Q" (m, p, r) and, for local, "basis" (m, b), optional
        Points where non-crossing (and local simplex) constraints also hold.
    min_gap : float
        Minimum gap between adjacent aggregated quantiles under non-crossing.
    solver : str
        "auto" (structured HiGHS path when it applies, else cvxpy), "fast" (structured path,
        error if not applicable), "cvxpy" (Clarabel, then the other installed solvers), or a
        cvxpy solver name tried first. A failing solver hands over to the next.
    intercept : bool, optional
        Per-level intercept; default True for constraint "free", qra and fqra, else False.
    n_components : int, optional
        Components for fqra (default: fewest keeping 95% of the variance at every level).

    Returns
    -------
    Weights

    Raises
    ------
    DataError
        Bad shapes, non-finite values, unknown options (the message names them).
    SolverError
        Every solver failed; the message lists their statuses.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> n, taus = 300, np.array([0.25, 0.5, 0.75])
    >>> y = rng.normal(size=n)
    >>> z = np.array([-0.674, 0.0, 0.674])
    >>> Q = np.stack([np.tile(z, (n, 1)), np.tile(2 * z + 1, (n, 1))], axis=1)
    >>> w = fit_weights(Q, y, taus, family="quantile", noncrossing=True)
    >>> bool(w.aggregate_losses.sum() <= w.model_losses.sum(axis=1).min() + 1e-9)
    True
    """
    t_start = time.perf_counter()
    if family not in FAMILIES:
        raise DataError(f"unknown weight family {family!r}; choose one of {', '.join(FAMILIES)}")
    if constraint not in CONSTRAINTS:
        raise DataError(f"unknown constraint {constraint!r}; choose one of {', '.join(CONSTRAINTS)}")
    taus = validate_levels(taus)
    Q = _as_Q(Q, "Q", r=taus.size)
    n, p, r = Q.shape
    y = _as_vector(y, n, "y")
    w = None
    if obs_weights is not None:
        w = _as_vector(obs_weights, n, "obs_weights")
        if (w < 0).any():
            raise DataError(f"obs_weights must be non-negative (row {int(np.argmax(w < 0))} is {w[w < 0][0]})")
    for name, val in (("smooth", smooth), ("min_gap", min_gap)):
        if not np.isfinite(val) or val < 0:
            raise DataError(f"{name} must be a finite number >= 0, got {val!r}")
    Q = np.sort(Q, axis=2)
    if family in ("qra", "fqra"):
        constraint, intercept = "free", True
    if intercept is None:
        intercept = constraint == "free"
    if family == "local":
        if basis is None:
            raise DataError("family 'local' needs basis= (n, b), the basis phi(x) at the training points")
        basis = _as_basis(basis, n, None, "basis")
    Qx = bx = None
    if extra is not None:
        unknown = set(extra) - {"Q", "basis"}
        if unknown or "Q" not in extra:
            raise DataError(f"extra must be a dict with 'Q' (m, p, r) and, for local, 'basis'; got keys {sorted(extra)}")
        Qx = np.sort(_as_Q(extra["Q"], "extra['Q']", p=p, r=r), axis=2)
        if family == "local":
            if "basis" not in extra:
                raise DataError("extra points for the 'local' family need extra['basis'] (m, b)")
            bx = _as_basis(extra["basis"], Qx.shape[0], basis.shape[1], "extra['basis']")
    gid = level_groups(groups, r, family) if family in _LINEAR else None
    model_losses = np.stack([pinball_sums(y, Q[:, j, :], taus, w) for j in range(p)])

    if family in ("mean", "median"):
        alpha = np.full((p, r), 1.0 / p if family == "mean" else np.nan)
        qhat = Q.mean(axis=1) if family == "mean" else np.median(Q, axis=1)
        agg = pinball_sums(y, qhat, taus, w)
        return Weights(family, "simplex", taus, alpha, None, float(agg.sum()), float(agg.sum()), "none",
                       "fixed", time.perf_counter() - t_start, 0.0, 0.0, model_losses, agg,
                       noncrossing=bool(noncrossing))

    X, V, mean = Q, None, None
    if family == "fqra":
        V, mean, _ = _pca_maps(Q, n_components)
        X = np.einsum("njk,jck->nck", Q - mean, V)
        Qx_design = None if Qx is None else np.einsum("njk,jck->nck", Qx - mean, V)
    else:
        Qx_design = Qx

    from . import _lp

    use_fast = _lp.applicable(family, constraint, smooth, solver)
    if solver == "fast" and not use_fast:
        raise DataError(f"solver='fast' covers the global, quantile, grouped, qra and fqra families "
                        f"without smoothing; got family {family!r} with smooth={smooth}")
    res, failed = None, {}
    if use_fast:
        try:
            res = _lp.solve_structured(X, y, taus, gid, constraint, intercept, noncrossing, w, Qx_design, min_gap)
        except SolverError as err:
            if solver == "fast":  # the structured path alone was asked for: nothing to hand over to
                raise
            if X.size > _CVXPY_MAX_ENTRIES:
                # the generic model of a problem this size needs tens of GB (seen: 23 GB at
                # n = 1e6, p = 5, r = 19); fail clearly instead of exhausting memory
                raise SolverError(f"{err}; the generic cvxpy model is not tried at n = {n:,} "
                                  f"(n·p·r = {X.size:,} > {_CVXPY_MAX_ENTRIES:,}); fit the weights "
                                  "on fewer rows (qagg's weight_rows)") from err
            failed["HIGHS-structured"] = f"error: {err}"
    if res is not None:
        A, c = res.alpha, res.intercept
        solver_name, status, compile_s, solve_s = "HIGHS-structured", res.status, 0.0, res.seconds
        attempts, rounds, active = {"HIGHS-structured": res.status}, res.rounds, res.active
    else:
        # the generic model is the fallback when the structured path fails under "auto"
        A, c, solver_name, status, compile_s, solve_s, attempts = _fit_cvxpy(
            family, constraint, intercept, X, y, taus, gid, basis, w, smooth, noncrossing, Qx_design, bx,
            min_gap, "auto" if failed else solver, failed)
        rounds = active = 0

    if family == "fqra":
        # Map component weights back to the models: qhat = (Q - mean) V beta + c.
        alpha = np.einsum("jck,ck->jk", V, A)
        intercept_out = c - np.einsum("jk,jk->k", mean, alpha)
    else:
        alpha, intercept_out = A, c
    fit = Weights(family, constraint, taus, alpha, intercept_out, 0.0, 0.0, solver_name, status, 0.0,
                  compile_s, solve_s, model_losses, np.zeros(r), groups=gid, noncrossing=bool(noncrossing),
                  rounds=rounds, active=active, attempts=attempts)
    agg = pinball_sums(y, fit.combine(Q, basis=basis), taus, w)
    fit.aggregate_losses = agg
    fit.loss = float(agg.sum())
    fit.objective = fit.loss + smooth * _roughness(fit)
    fit.seconds = time.perf_counter() - t_start
    return fit


def _roughness(fit: Weights) -> float:
    """``sum |alpha_k+1 - alpha_k|`` over adjacent output levels (the smoothness penalty)."""
    a = fit.alpha
    return float(np.abs(np.diff(a, axis=1 if a.ndim == 2 or fit.family == "local" else 2)).sum())


def _fit_cvxpy(family, constraint, intercept, X, y, taus, gid, basis, w, smooth, noncrossing, Qx, bx,
               min_gap, solver, attempts=None):
    """Solve the weight LP through cvxpy; returns alpha, intercept, solver, status, timings."""
    n, p, r = X.shape
    ww = np.ones(n) if w is None else w
    m = 0 if Qx is None or not noncrossing and family != "local" else Qx.shape[0]
    # DPP pays off for repeated small fits; its canonicalisation grows much faster than the
    # plain one with the data size (n=5000, p=5, r=9: 390 s against seconds), so large
    # problems are built from constants. The local family is never DPP (Q times basis).
    dpp = family != "local" and n * p * r <= _DPP_MAX_ENTRIES
    spec = dict(family=family, dpp=dpp, n=n, p=p, r=r, gid=gid if gid is not None else np.arange(r),
                constraint=constraint, intercept=bool(intercept), m_extra=m, smooth=float(smooth),
                noncrossing=bool(noncrossing), min_gap=float(min_gap))
    arrays: dict[str, Any] = {"y": y[:, None], "wpos": np.outer(ww, taus), "wneg": np.outer(ww, 1 - taus),
                              "smooth": float(smooth), "gap": float(min_gap)}
    if family == "fine":
        arrays["Qflat"] = X.reshape(n, p * r)
        if m:
            arrays["Qflat_x"] = Qx.reshape(m, p * r)
    elif family == "local":
        arrays.update(Q=X, basis=basis, Q_x=Qx, basis_x=bx)
    else:
        arrays.update({f"Q{j}": X[:, j, :] for j in range(p)})
        if m:
            arrays.update({f"Qx{j}": Qx[:, j, :] for j in range(p)})
    problem, variables = _problem(spec, arrays)
    name, status, compile_s, solve_s, attempts = _solve_cvxpy(problem, _solver_chain(solver), attempts)
    if family == "local":
        alpha = np.stack([T.value.T for T in variables["Theta"]])  # (p, r, b)
    elif family == "fine":
        alpha = variables["A"].value.reshape(p, r, r)
    else:
        alpha = variables["A"].value[:, gid]
    c = None
    if intercept:
        cv = np.asarray(variables["c"].value)
        c = cv[gid] if family in _LINEAR else cv
    return alpha, c, name, status, compile_s, solve_s, attempts
