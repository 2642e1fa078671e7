"""Weight fitting: combine base-model quantiles by minimising the summed check loss.

For levels ``tau_1 < ... < tau_r``, models ``j = 1..p`` and points ``i``, the aggregate is
``qhat_k(x_i) = sum_j alpha_jk(x_i) Q[i, j, k] (+ c_k)``, and the weights minimise

    sum_k sum_i w_i psi_tau_k(y_i - qhat_k(x_i)) + smooth * sum_k |alpha_k+1 - alpha_k|

(``psi_tau(u) = u (tau - 1{u < 0})``) over a weight family and a constraint set, optionally
with non-crossing constraints ``qhat_k <= qhat_k+1 - min_gap`` at the training points and at
extra points. Every family is a linear programme; the generic route
(:mod:`qaggstats._cvxpy_model`) builds it in cvxpy from whole arrays and is the reference; a
structured route (:mod:`qaggstats._lp`) solves every family but mean/median exactly with
HiGHS on the dual when there is no smoothing penalty — "fine" as the per-level family on the
design ``Q.reshape(n, p*r)``, "local" per level on ``Q_k ⊙ φ(x)`` — adding only the violated
non-crossing (and, for local, positivity) constraints. ``family="auto"`` and
``penalty="auto"`` choose by inner validation (:mod:`qaggstats.selection`).

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
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ._cvxpy_model import fit_cvxpy as _fit_cvxpy
from .basis import is_partition
from .errors import DataError, SolverError
from .scoring import validate_levels

__all__ = ["Weights", "fit_weights", "FAMILIES", "CONSTRAINTS", "pinball_sums", "level_groups"]

FAMILIES = ("mean", "median", "global", "quantile", "grouped", "local", "fine", "qra", "fqra", "dqa", "single")
CONSTRAINTS = ("simplex", "nonneg", "free")
# Families whose weights are one (p,) vector per level group: alpha (p, r) after expansion.
_LINEAR = ("global", "quantile", "grouped", "qra", "fqra")
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
        ``(p, r, r)`` for fine, ``alpha[j, l, k]`` = weight of model j's level l in output level k;
        dqa: the same layout, its weights averaged over the training rows (the weights
        themselves depend on x: see ``network``).
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
    penalty : float
        Local family: the absolute l1 penalty on the non-constant basis coefficients (on a
        partition-of-unity basis: on each coefficient's deviation from its mean over the basis).
    partition : bool
        Local family on a partition-of-unity basis (simplex imposed on every prototype
        ``theta[:, k, b]``, so the local weights are on the simplex at every x).
    requested : str or None
        The family asked for when it differs from what was fitted ("auto"), or "local" when
        its penalty was chosen by inner validation.
    selection : DataFrame or None
        What inner validation compared (family, penalty, heldout_wis, chosen, why).
    network : qaggstats.dqa.DQANetwork or None
        The fitted DQA network (family "dqa").
    training : dict
        DQA: what training did (variant, epochs, best epoch, held-out pinball loss, seconds).

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
    penalty: float = 0.0
    requested: Optional[str] = None
    selection: Optional[pd.DataFrame] = None
    partition: bool = False
    network: Any = None
    training: dict = field(default_factory=dict)

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
        basis : (m, b) array, required for the "local" family (its basis) and "dqa" (its features)

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
        if self.family == "dqa":
            if basis is None:
                raise DataError("the 'dqa' family needs basis= (m, d), its features at the rows, to combine")
            return self.network.combine(Q, _as_basis(basis, Q.shape[0], self.network.feature_mean.size, "basis"))
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

    def to_frame(self, models: Sequence[str], taus: Optional[Sequence[float]] = None,
                 basis: Optional[Sequence[str]] = None) -> pd.DataFrame:
        """Tidy weights.

        Columns ``model, tau, weight`` (plus ``intercept`` rows named "(intercept)" when
        fitted); local: ``model, tau, basis, coef`` (``basis``: the names given, e.g.
        :attr:`qaggstats.basis.LocalBasis.columns`, else the column numbers); fine:
        ``model, input_tau, tau, weight``.

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
            if basis is not None and len(basis) != self.alpha.shape[2]:
                raise DataError(f"to_frame got {len(basis)} basis names for {self.alpha.shape[2]} basis functions")
            frame = pd.DataFrame({"model": np.asarray(models)[j], "tau": t[k],
                                  "basis": b if basis is None else np.asarray([str(c) for c in basis])[b],
                                  "coef": self.alpha.ravel()})
        elif self.family in ("fine", "dqa"):
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


# Above this many base-prediction entries (n·p·r) the generic cvxpy model is not built as a
# fallback: its canonicalisation needs tens of GB (23 GB seen at n = 1e6, p = 5, r = 19).
_CVXPY_MAX_ENTRIES = 20_000_000


# ----------------------------------------------------------------------------- entry point
def fit_weights(Q: np.ndarray, y: np.ndarray, taus: Sequence[float], family: str = "quantile",
                constraint: str = "simplex", noncrossing: bool = True,
                groups: Union[None, int, Sequence[Any]] = None, basis: Optional[np.ndarray] = None,
                obs_weights: Optional[np.ndarray] = None, smooth: float = 0.0,
                extra: Optional[Mapping[str, np.ndarray]] = None, min_gap: float = 0.0,
                solver: str = "auto", intercept: Optional[bool] = None,
                n_components: Optional[int] = None, penalty: Union[float, str] = 0.0,
                folds: Optional[np.ndarray] = None, candidates: Optional[Sequence[str]] = None,
                max_folds: int = 3, features: Optional[np.ndarray] = None,
                dqa: Optional[Mapping[str, Any]] = None, seed: int = 0) -> Union[Weights, list[Weights]]:
    """Fit aggregation weights for base-model quantiles.

    Parameters
    ----------
    Q : (n, p, r) array
        Base predictions; each model's quantiles are sorted across levels first (with sorted
        inputs the non-crossing constraints are always feasible).
    y : (n,) array
    taus : (r,) increasing levels in (0, 1)
    family : {"mean", "median", "global", "quantile", "grouped", "local", "fine", "qra", "fqra", "auto"}
        "mean"/"median": fixed, no fit. "single": the one base model of lowest check loss
        summed over levels (weight 1 at every level; the baseline of "auto"). "global": one weight per model. "quantile": one per
        model and level. "grouped": shared within level groups. "qra": free weights with a
        per-level intercept. "fqra": qra on the first principal components of each level's
        predictions.

        "local": ``alpha_jk(x) = sum_b theta_jkb phi_b(x)``, weights that vary with the
        features through a basis phi (:class:`qaggstats.basis.LocalBasis`). It helps where one
        model is better in some regions of x and another elsewhere (the paper's finding: e.g.
        a tree ensemble where data are dense and a linear model where it must extrapolate);
        where one model is best everywhere it reduces to "quantile" at the cost of b times
        more weights, so give it a penalty (``penalty="auto"``). On a partition-of-unity
        basis (non-negative, rows summing to one, e.g. the default
        ``LocalBasis("partition")``) the weights are convex combinations
        ``alpha_k(x) = sum_b phi_b(x) theta_kb`` of b prototype weight vectors, each on the
        simplex, so the weights are on the simplex at every x, and the LP needs no
        positivity constraints. On any other basis (column 0 the constant) the simplex holds
        at the training and extra points.

        "fine": output level k mixes every level l of every model, ``qhat_k = sum_jl
        alpha_jlk Q_jl``. It helps when the models are mis-calibrated — a model whose 0.8
        quantile is a better 0.9 quantile than its own 0.9 — and costs r times more weights.

        "dqa": the paper's deep quantile aggregation (Local-Fine by default): a network from
        the ``features`` (n, d) to, for every output level, simplex weights over the
        models' nearby levels, fitted by the pinball loss plus a crossing penalty with early
        stopping (:func:`qaggstats.dqa.fit_dqa`; settings in ``dqa``). Needs the extra
        ``qaggstats[deep]``; the simplex constraint only.

        "auto": the family (and constraint, and local penalty) of lowest held-out WIS among
        ``candidates`` by a one-standard-error rule, never one worse than the best single model,
        by inner validation on ``folds`` (see :func:`qaggstats.selection.select_family`);
        the result carries ``requested = "auto"`` and a ``selection`` table.
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
        "auto" (structured HiGHS path when it applies — every fitted family without ``smooth``;
        local needs basis column 0 to be the constant 1 — else cvxpy), "fast" (structured path,
        error if not applicable), "cvxpy" (Clarabel, then the other installed solvers), or a
        cvxpy solver name tried first. A failing solver hands over to the next.
    intercept : bool, optional
        Per-level intercept; default True for constraint "free", qra and fqra, else False.
    n_components : int, optional
        Components for fqra (default: fewest keeping 95% of the variance at every level).
    penalty : float or "auto"
        Local only: ``penalty * sum |theta_jkb|`` over the non-constant basis columns b >= 1
        (column 0 must be the constant), or on a partition-of-unity basis
        ``penalty * sum |theta_jkb - mean_b theta_jkb|``; both shrink the local weights
        towards weights constant in x. "auto" chooses it by inner validation on ``folds`` (relative grid
        :data:`qaggstats.selection.PENALTY_GRID` times :func:`qaggstats.selection.penalty_scale`).
        A sequence of numbers fits a path: a list of Weights, one per penalty (on a
        partition-of-unity basis solved in one LP, each warm from the previous penalty's answer).
    folds : (n,) array, optional
        Fold id of each (out-of-fold) row, for family "auto" and penalty "auto": weights are
        fitted without one fold and scored on it, so the choice is honest.
    candidates : sequence of str, optional
        What "auto" compares, simplest first, each "family" or "family:constraint" (default
        :func:`qaggstats.selection.default_candidates`: single, global, quantile,
        quantile:nonneg, qra, fqra, local, fine, and dqa when installed and ``features`` given).
    max_folds : int
        Held-out folds used by the inner validation (each costs one fit per candidate).
    features : (n, d) array
        Inputs of the "dqa" network at the training points (e.g. the standardised design of the
        formula: :class:`qaggstats.basis.LocalBasis` "design"); ``Weights.combine`` then takes
        them as its ``basis``.
    dqa : dict, optional
        Settings of the "dqa" family passed to :func:`qaggstats.dqa.fit_dqa` (``variant``
        "fine" / "medium" / "coarse", ``window``, ``hidden``, ``crossing``, ``max_epochs``, ...).
        Early stopping holds out the last fold of ``folds`` when given.
    seed : int
        Seed of the "dqa" network (initialisation, minibatches).

    Returns
    -------
    Weights
        (a list of them when ``penalty`` is a sequence)

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
    if not isinstance(penalty, str) and np.ndim(penalty) == 1:
        return _fit_path(Q, y, taus, list(penalty), family=family, constraint=constraint, noncrossing=noncrossing,
                         groups=groups, basis=basis, obs_weights=obs_weights, smooth=smooth, extra=extra,
                         min_gap=min_gap, solver=solver, intercept=intercept, n_components=n_components)
    if family == "auto" or isinstance(penalty, str):
        return _select(Q, y, taus, family, penalty, folds, candidates, max_folds, basis=basis, features=features,
                       dqa=dqa, seed=seed,
                       constraint=constraint, noncrossing=noncrossing, groups=groups, obs_weights=obs_weights,
                       smooth=smooth, extra=extra, min_gap=min_gap, solver=solver, intercept=intercept,
                       n_components=n_components)
    if family == "dqa":
        return _fit_dqa(Q, y, taus, features, obs_weights=obs_weights, constraint=constraint, noncrossing=noncrossing,
                        extra=extra, smooth=smooth, penalty=penalty, folds=folds, settings=dqa, seed=seed,
                        t_start=t_start)
    return _fit_weights(Q, y, taus, family, constraint, noncrossing, groups, basis, obs_weights, smooth, extra,
                        min_gap, solver, intercept, n_components, penalty, None, t_start)


def _fit_dqa(Q, y, taus, features, *, obs_weights, constraint, noncrossing, extra, smooth, penalty, folds,
             settings, seed, t_start) -> Weights:
    """family="dqa": the network of :mod:`qaggstats.dqa`, wrapped as Weights."""
    from .dqa import fit_dqa

    if constraint != "simplex":
        raise DataError(f"family 'dqa' gives simplex weights (a softmax); constraint={constraint!r} does not apply")
    for name, val in (("smooth", smooth), ("penalty", penalty)):
        if val:
            raise DataError(f"{name}= does not apply to family 'dqa' (its network is regularised by early stopping)")
    if extra is not None:
        raise DataError("noncrossing_at= does not apply to family 'dqa': its quantiles are sorted after the fit "
                        "(postprocess), which removes every crossing at any point")
    if features is None:
        raise DataError("family 'dqa' needs features= (n, d), the inputs of its network at the training points")
    taus = validate_levels(taus)
    Q = np.sort(_as_Q(Q, "Q", r=taus.size), axis=2)
    n, p, r = Q.shape
    y = _as_vector(y, n, "y")
    features = _as_basis(features, n, None, "features")
    w = None if obs_weights is None else _as_vector(obs_weights, n, "obs_weights")
    if w is not None and (w < 0).any():
        raise DataError(f"obs_weights must be non-negative (row {int(np.argmax(w < 0))} is {w[w < 0][0]})")
    options = dict(settings or {})
    if not noncrossing:
        options["crossing"] = 0.0
    if folds is not None and "valid" not in options:
        folds = np.asarray(folds)
        if folds.shape != (n,):
            raise DataError(f"folds must give one fold id per row ({n}), got shape {folds.shape}")
        if np.unique(folds).size >= 2:
            options["valid"] = folds == folds.max()
    unknown = set(options) - {"variant", "window", "hidden", "crossing", "lr", "weight_decay", "batch_size",
                              "max_epochs", "patience", "valid", "valid_fraction"}
    if unknown:
        raise DataError(f"unknown dqa setting(s) {sorted(unknown)}; see qaggstats.dqa.fit_dqa")
    net, info = fit_dqa(features, Q, y, taus, obs_weights=w, seed=seed, **options)
    alpha = net.mean_weights(features, p, r)
    model_losses = np.stack([pinball_sums(y, Q[:, j, :], taus, w) for j in range(p)])
    agg = pinball_sums(y, net.combine(Q, features), taus, w)
    info = {"variant": net.variant, **info}
    return Weights("dqa", "simplex", taus, alpha, None, float(agg.sum()), float(agg.sum()), "adamw (jax + optax)",
                   f"early stop at epoch {info['best_epoch']} of {info['epochs']}", time.perf_counter() - t_start,
                   0.0, info["seconds"], model_losses, agg, noncrossing=bool(noncrossing), network=net,
                   training=info)


def _fit_weights(Q, y, taus, family, constraint, noncrossing, groups, basis, obs_weights, smooth, extra, min_gap,
                 solver, intercept, n_components, penalty, path, t_start):
    """:func:`fit_weights` for one family and penalty; with ``path`` (penalty multiples, local on a
    partition of unity only) a list of Weights, one per penalty of the path."""
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
    for name, val in (("smooth", smooth), ("min_gap", min_gap), ("penalty", penalty)):
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

    if family == "single":
        # the one model of lowest summed check loss, at every level: the baseline "auto" guards against
        alpha = np.zeros((p, r))
        alpha[int(np.argmin(model_losses.sum(axis=1))), :] = 1.0
        agg = np.asarray(model_losses[int(np.argmin(model_losses.sum(axis=1)))], dtype=float)
        return Weights(family, "simplex", taus, alpha, None, float(agg.sum()), float(agg.sum()), "none",
                       "fixed", time.perf_counter() - t_start, 0.0, 0.0, model_losses, agg,
                       groups=np.arange(r), noncrossing=bool(noncrossing))
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

    if penalty and family != "local":
        raise DataError(f"penalty= applies to the 'local' family only; got family {family!r} "
                        "(use smooth= for smoothness across levels)")
    use_fast = _lp.applicable(family, constraint, smooth, solver)
    partition = family == "local" and is_partition(basis) and (bx is None or is_partition(bx))
    constant_first = (family != "local" or partition
                      or _constant_first(basis) and (bx is None or _constant_first(bx)))
    if solver == "fast" and not (use_fast and constant_first):
        raise DataError(f"solver='fast' covers the global, quantile, grouped, qra, fqra, fine and local "
                        f"families without smoothing (local: basis column 0 the constant 1, or a partition "
                        f"of unity); got family {family!r} with smooth={smooth}"
                        + ("" if constant_first else ", and a basis whose column 0 is not the constant 1 and that is not a partition of unity"))
    use_fast = use_fast and constant_first
    res, failed = None, {}
    if use_fast:
        try:
            res = _solve_fast(family, X, Qx_design, basis, bx, y, taus, gid, constraint, intercept, noncrossing,
                              w, min_gap, penalty, partition, path)
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
    if path is not None and res is None:
        # no structured path answer (smoothing, a cvxpy solver asked for, or the path failed):
        # one fit per penalty, each with its own fallback
        return [_fit_weights(Q, y, taus, family, constraint, noncrossing, groups, basis, obs_weights, smooth,
                             extra, min_gap, solver, intercept, n_components, v, None, time.perf_counter())
                for v in path]
    if path is not None:
        out = []
        for v, one in zip(path, res):
            fit = _weights_of(one, family, constraint, taus, Q, y, w, basis, smooth, v, gid, noncrossing,
                              model_losses, partition, V, mean, t_start)
            out.append(fit)
            t_start = time.perf_counter()
        return out
    if res is not None:
        return _weights_of(res, family, constraint, taus, Q, y, w, basis, smooth, penalty, gid, noncrossing,
                           model_losses, partition, V, mean, t_start)
    # the generic model is the fallback when the structured path fails under "auto"
    A, c, solver_name, status, compile_s, solve_s, attempts = _fit_cvxpy(
        family, constraint, intercept, X, y, taus, gid, basis, w, smooth, noncrossing, Qx_design, bx,
        min_gap, "auto" if failed else solver, failed, penalty=penalty, partition=partition)
    return _weights_of(_lp.StructuredResult(A, c, status, solve_s, 0, 0), family, constraint, taus, Q, y, w, basis,
                       smooth, penalty, gid, noncrossing, model_losses, partition, V, mean, t_start,
                       solver_name=solver_name, compile_s=compile_s, attempts=attempts)


def _weights_of(res, family, constraint, taus, Q, y, w, basis, smooth, penalty, gid, noncrossing, model_losses,
                partition, V, mean, t_start, solver_name="HIGHS-structured", compile_s=0.0, attempts=None):
    """Weights from a solver's answer (structured or generic): losses, penalty, objective."""
    A, c, r = res.alpha, res.intercept, taus.size
    attempts = {"HIGHS-structured": res.status} if attempts is None else attempts
    if family == "fqra":
        # Map component weights back to the models: qhat = (Q - mean) V beta + c.
        alpha = np.einsum("jck,ck->jk", V, A)
        intercept_out = c - np.einsum("jk,jk->k", mean, alpha)
    else:
        alpha, intercept_out = A, c
    fit = Weights(family, constraint, taus, alpha, intercept_out, 0.0, 0.0, solver_name, res.status, 0.0,
                  compile_s, res.seconds, model_losses, np.zeros(r), groups=gid, noncrossing=bool(noncrossing),
                  rounds=res.rounds, active=res.active, attempts=attempts, partition=partition)
    agg = pinball_sums(y, fit.combine(Q, basis=basis), taus, w)
    fit.aggregate_losses = agg
    fit.loss = float(agg.sum())
    fit.penalty = float(penalty)
    fit.objective = fit.loss + smooth * _roughness(fit) + penalty * _size(fit)
    fit.seconds = time.perf_counter() - t_start
    return fit


def _fit_path(Q, y, taus, penalties: list, *, family: str, **options) -> list[Weights]:
    """``penalty=[...]``: one local fit per penalty; on a partition-of-unity basis through the
    structured path, each solved warm from the previous one (:func:`_lp.solve_structured`'s
    ``path``), otherwise one by one."""
    if family != "local":
        raise DataError(f"a sequence of penalties applies to the 'local' family only; got family {family!r}")
    if not penalties:
        raise DataError("penalty= got an empty sequence")
    for val in penalties:
        if isinstance(val, str) or not np.isfinite(val) or val < 0:
            raise DataError(f"penalty must hold finite numbers >= 0, got {val!r}")
    basis = options["basis"]
    if basis is None or not is_partition(np.asarray(basis, dtype=float)) or len(penalties) == 1:
        return [fit_weights(Q, y, taus, family=family, penalty=float(v), **options) for v in penalties]
    o = options
    return _fit_weights(Q, y, taus, family, o["constraint"], o["noncrossing"], o["groups"], basis, o["obs_weights"],
                        o["smooth"], o["extra"], o["min_gap"], o["solver"], o["intercept"], o["n_components"],
                        float(penalties[0]), [float(v) for v in penalties], time.perf_counter())


def _select(Q, y, taus, family, penalty, folds, candidates, max_folds, *, basis, features, obs_weights, dqa, seed,
            **options):
    """family="auto" / penalty="auto": inner validation (:mod:`qaggstats.selection`)."""
    from .selection import select_family, select_penalty

    if isinstance(penalty, str) and penalty != "auto":
        raise DataError(f"penalty must be a number >= 0 or 'auto', got {penalty!r}")
    if folds is None:
        raise DataError(f"{'family' if family == 'auto' else 'penalty'}='auto' needs folds= (the fold id of "
                        "each out-of-fold row) for inner validation")
    if family not in ("auto", "local"):
        raise DataError(f"penalty='auto' applies to the 'local' family only; got family {family!r}")
    if obs_weights is not None:
        obs_weights = _as_vector(obs_weights, np.shape(y)[0], "obs_weights")
    if family == "local":
        if basis is None:
            raise DataError("family 'local' needs basis= (n, b), the basis phi(x) at the training points")
        return select_penalty(Q, y, taus, folds, basis, fit_weights=fit_weights, max_folds=max_folds,
                              obs_weights=obs_weights, **options)
    if isinstance(penalty, (int, float)) and penalty:
        raise DataError("family='auto' chooses the local penalty itself; leave penalty at 0 or 'auto'")
    return select_family(Q, y, taus, folds, fit_weights=fit_weights, basis=basis, features=features,
                         candidates=candidates, max_folds=max_folds, obs_weights=obs_weights, dqa=dqa, seed=seed,
                         **options)


def _constant_first(basis: np.ndarray) -> bool:
    """Whether basis column 0 is the constant 1 (then the local simplex is sum_j theta_jk = e_1)."""
    return basis.shape[1] >= 1 and bool(np.all(basis[:, 0] == 1.0))


def _solve_fast(family, X, Xx, basis, bx, y, taus, gid, constraint, intercept, noncrossing, w, min_gap, penalty,
                partition=False, path=None):
    """The structured HiGHS path (:mod:`qaggstats._lp`), weights returned in the family's shape
    (with ``path``, local on a partition only: a list, one answer per penalty)."""
    from . import _lp

    n, p, r = X.shape
    if family == "fine":
        res = _lp.solve_structured(_lp.FineDesign(X), y, taus, np.arange(r), constraint, intercept, noncrossing, w,
                                   None if Xx is None else _lp.FineDesign(Xx), min_gap)
        res.alpha = res.alpha.reshape(p, r, r)
        return res
    if family == "local" and partition:
        b = basis.shape[1]
        # every prototype theta_.kb on the simplex: theta >= 0 and sum_j theta_jkb = 1 for each b
        equality = (np.tile(np.eye(b), (p, 1)), np.ones(b)) if constraint == "simplex" else None
        maps = None
        if penalty or path is not None:
            # with a path the penalty columns carry unit bounds, scaled by each penalty in turn
            unit = 1.0 if path is not None else float(penalty)
            maps = (np.kron(np.eye(p), np.eye(b) - 1.0 / b), np.full(p * b, unit))
        out = _lp.solve_structured(_lp.LocalDesign(X, basis), y, taus, np.arange(r),
                                   "free" if constraint == "free" else "nonneg", intercept, noncrossing, w,
                                   None if Xx is None else _lp.LocalDesign(Xx, bx), min_gap,
                                   equality=equality, penalty_maps=maps, path=path)
        for res in out if path is not None else [out]:
            res.alpha = np.ascontiguousarray(res.alpha.reshape(p, b, r).transpose(0, 2, 1))
        return out
    if family == "local":
        b = basis.shape[1]
        # simplex at the points <=> sum_j theta_jk = e_1 (column 0 is the constant 1 and the
        # basis has full column rank on the points, or theta's null-space part is immaterial)
        E = np.tile(np.eye(b), (p, 1))
        equality = (E, np.eye(b)[0]) if constraint == "simplex" else None
        pen = np.tile(np.r_[0.0, np.full(b - 1, penalty)], p) if penalty else None
        res = _lp.solve_structured(_lp.LocalDesign(X, basis), y, taus, np.arange(r), "free", intercept,
                                   noncrossing, w, None if Xx is None else _lp.LocalDesign(Xx, bx), min_gap,
                                   equality=equality, penalty=pen, positive=constraint != "free")
        # contiguous, so combine() sums in the same order before and after a save/load
        res.alpha = np.ascontiguousarray(res.alpha.reshape(p, b, r).transpose(0, 2, 1))
        return res
    return _lp.solve_structured(X, y, taus, gid, constraint, intercept, noncrossing, w, Xx, min_gap)


def _size(fit: Weights) -> float:
    """Local's penalised size: ``sum |theta_jkb|`` over the non-constant basis columns b >= 1, or
    on a partition-of-unity basis ``sum |theta_jkb - mean_b theta_jkb|``."""
    if fit.family != "local":
        return 0.0
    if fit.partition:
        return float(np.abs(fit.alpha - fit.alpha.mean(axis=2, keepdims=True)).sum())
    return float(np.abs(fit.alpha[:, :, 1:]).sum())


def _roughness(fit: Weights) -> float:
    """``sum |alpha_k+1 - alpha_k|`` over adjacent output levels (the smoothness penalty)."""
    a = fit.alpha
    return float(np.abs(np.diff(a, axis=1 if a.ndim == 2 or fit.family == "local" else 2)).sum())
