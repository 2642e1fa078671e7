"""The generic cvxpy model of a weight fit: the reference for the structured path and its fallback.

:func:`fit_cvxpy` builds the weight LP of any family from whole arrays (with cvxpy Parameters
for the data when DPP allows, so a refit on same-shape data reuses the canonicalisation) and
solves it with each installed solver in turn. Built problems are cached (the last
``_CACHE_SIZE``); a cvxpy Problem holds its parameter values, so loading data and solving
happen under one lock: concurrent fits in threads wait for each other instead of
overwriting each other's data.

Examples
--------
>>> import numpy as np
>>> X = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])
>>> out = fit_cvxpy("quantile", "simplex", False, X, np.array([0.0, 2.0]), np.array([0.5]),
...                 np.array([0]), None, None, 0.0, False, None, None, 0.0, "cvxpy")
>>> np.round(out[0].ravel(), 4)
array([1., 0.])
"""
from __future__ import annotations

import warnings

import threading
from collections import OrderedDict
from typing import Any, Optional

import numpy as np

from .errors import DataError, SolverError

__all__ = ["fit_cvxpy", "CVXPY_ORDER"]

CVXPY_ORDER = ("CLARABEL", "HIGHS", "SCIPY", "ECOS")
_LOCK = threading.RLock()
# Families whose weights are one (p,) vector per level group.
_LINEAR = ("global", "quantile", "grouped", "qra", "fqra")
_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 2
_DPP_MAX_ENTRIES = 20_000


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
    objective_extra = []
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
        if spec["partition"]:
            # partition of unity: every prototype theta_.kb on the simplex, hence alpha(x) at every x
            if constraint in ("simplex", "nonneg"):
                cons += [T >= 0 for T in Theta]
            if constraint == "simplex":
                cons.append(sum(Theta) == 1)
            if spec["penalty"] and bdim > 1:
                # deviation of each prototype from the mean over the basis functions
                spread = sum(cp.sum(cp.abs(T - np.ones((bdim, 1)) @ cp.sum(T, axis=0, keepdims=True) / bdim))
                             for T in Theta)
                objective_extra.append(spec["penalty"] * spread)
        else:
            for al in points:
                if constraint in ("simplex", "nonneg"):
                    cons += [a >= 0 for a in al]
                if constraint == "simplex":
                    cons.append(sum(al) == 1)
            if spec["penalty"] and bdim > 1:
                # l1 size of the non-constant basis coefficients (column 0 is the constant)
                objective_extra.append(spec["penalty"] * sum(cp.sum(cp.abs(T[1:, :])) for T in Theta))
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
    for term in objective_extra:
        objective = objective + term
    if spec["noncrossing"] and r > 1:
        gap = data("gap", (), spec["min_gap"], nonneg=True)
        cons.append(qhat[:, 1:] - qhat[:, :-1] >= gap)
        if qx is not None:
            cons.append(qx[:, 1:] - qx[:, :-1] >= gap)
    return cp.Problem(cp.Minimize(objective), cons), params, variables


def _problem(spec: dict, arrays: dict):
    """Build or fetch the cached cvxpy problem for ``spec`` and load ``arrays`` into it.

    Call under ``_LOCK`` and solve before releasing it: the cached problem is shared.
    """
    key = tuple((k, tuple(v) if isinstance(v, np.ndarray) else v) for k, v in sorted(spec.items())
                if k not in ("y", "wpos", "wneg", "Q", "Q_x", "basis", "basis_x", "smooth", "min_gap",
                             "penalty")) + (
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
    chain = [s for s in CVXPY_ORDER if s in installed]
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
            # An inaccurate solution is not accepted: its status is recorded and the next solver
            # tried, so cvxpy's own warning about it (and numpy's, from its bound propagation on
            # infinite bounds) would only repeat what ``attempts`` reports.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="cvxpy")
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



def fit_cvxpy(family, constraint, intercept, X, y, taus, gid, basis, w, smooth, noncrossing, Qx, bx,
              min_gap, solver, attempts=None, penalty=0.0, partition=False):
    """Solve the weight LP through cvxpy; returns alpha, intercept, solver, status, timings, attempts.

    ``penalty`` (local only) adds ``penalty * sum |theta_jkb|`` over the non-constant basis
    columns b >= 1, or with ``partition`` (a partition-of-unity basis: the simplex is imposed on
    every prototype theta_.kb) ``penalty * sum |theta_jkb - mean_b theta_jkb|``. Thread-safe: the shared cached problem is loaded and solved under a lock.
    """
    n, p, r = X.shape
    ww = np.ones(n) if w is None else w
    m = 0 if Qx is None or not noncrossing and family != "local" else Qx.shape[0]
    # DPP pays off for repeated small fits; its canonicalisation grows much faster than the
    # plain one with the data size (n=5000, p=5, r=9: 390 s against seconds), so large
    # problems are built from constants. The local family is never DPP (Q times basis).
    dpp = family != "local" and n * p * r <= _DPP_MAX_ENTRIES
    spec = dict(family=family, dpp=dpp, n=n, p=p, r=r, gid=gid if gid is not None else np.arange(r),
                constraint=constraint, intercept=bool(intercept), m_extra=m, smooth=float(smooth),
                noncrossing=bool(noncrossing), min_gap=float(min_gap), penalty=float(penalty),
                partition=bool(partition))
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
    chain = _solver_chain(solver)
    with _LOCK:
        problem, variables = _problem(spec, arrays)
        name, status, compile_s, solve_s, attempts = _solve_cvxpy(problem, chain, attempts)
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
