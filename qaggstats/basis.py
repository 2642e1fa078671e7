"""The basis φ(x) of feature-dependent ("local") weights: α_jk(x) = θ_jk · φ(x).

The basis is learnt on the training rows (knots, centring and scaling, the columns kept) and
applied unchanged to new rows, so predictions never re-standardise on the data they are made
for. :class:`LocalBasis` holds it. The default is a partition of unity over the base models'
own predicted location and spread (needs no formula, works with factors and any learner); the
weight fit then keeps the local weights on the simplex at every x, not only at the training
points (see :func:`qaggstats.aggregate.fit_weights`). The other kinds are linear bases (a
constant column, then standardised columns) from the same predictions or from the design of a
``local_formula``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np

from .errors import DataError

__all__ = ["LocalBasis", "BasisKind", "local_formula_with_response", "is_partition"]


def local_formula_with_response(local_formula: Optional[str], formula: str) -> str:
    """The basis formula for local weights, given the response of ``formula``.

    Examples
    --------
    >>> local_formula_with_response("~ x1 + x2", "y ~ .")
    'y ~ x1 + x2'
    >>> local_formula_with_response(None, "y ~ x")
    'y ~ x'
    """
    if local_formula is None:
        return formula
    lhs = formula.split("~", 1)[0].strip()
    rhs = local_formula.split("~", 1)[-1].strip()
    if not rhs:
        raise DataError(f"local_formula {local_formula!r} has an empty right-hand side")
    return f"{lhs} ~ {rhs}"


def is_partition(basis: np.ndarray) -> bool:
    """Whether a basis is a partition of unity at its rows: entries >= 0, each row summing to one.

    On such a basis :func:`qaggstats.aggregate.fit_weights` puts every prototype weight vector
    of the local family on the simplex (weights on the simplex at every x).

    Examples
    --------
    >>> is_partition(np.array([[0.25, 0.75], [1.0, 0.0]])), is_partition(np.array([[1.0, 0.5]]))
    (True, False)
    """
    return bool(np.all(basis >= 0.0) and np.allclose(basis.sum(axis=1), 1.0, rtol=0.0, atol=1e-9))


BasisKind = Literal["partition", "additive", "spread", "design", "both"]
_EPS = 1e-12


@dataclass
class LocalBasis:
    """The basis φ(x) of local weights, learnt on training rows and applied unchanged to new ones.

    ``"partition"`` (default)
        A partition of unity: products of piecewise-linear "hat" functions of the models'
        average central prediction ``loc`` (``grid[0]`` hats, knots at its training quantiles)
        and of the log of their average predicted spread net of its linear trend in ``loc``
        (``grid[1]`` hats; the trend is fitted on the training rows, so that the grid's cells
        all hold rows when spread grows with location). Every column is
        >= 0 and each row sums to one, so ``alpha_k(x) = sum_b phi_b(x) theta_kb`` is a
        convex combination of b prototype weight vectors ``theta_kb``; with the simplex on
        each prototype the weights are on the simplex at every x, new rows included, and the
        weight LP needs no positivity constraints (fast at any n). Rows beyond the outer
        knots take the outer hats' weights (no extrapolation).

    ``"additive"``
        A partition of unity over the columns of a design matrix (e.g. the model matrix of a
        ``local_formula``): for each non-constant column, ``grid[0]`` hats with knots at its
        training quantiles (two for a 0/1 dummy), all divided by the number of columns, so every
        row is non-negative and sums to one. The local weights are then an average over the
        features of piecewise-linear weight curves, on the simplex at every x, and the weight
        LP is as fast as on the default basis (no positivity constraints).

    The linear kinds have the constant 1 as column 0 and every other column standardised on the
    training rows and clipped to its training range on new rows (so local weights, which are
    kept non-negative at the training points, are not extrapolated linearly beyond them):

    ``"spread"``
        Built from the base models' own predictions ``Q (n, p, r)``, so it needs no formula and
        works with factors and any learner: the models' average central prediction ``loc``
        with hinges ``(loc - kappa)_+`` at its training quartiles (a piecewise-linear spline),
        the log of the models' average predicted spread (``Q[:, :, -1] - Q[:, :, 0]``) and the
        models' disagreement (sd of their central predictions over the spread). Weights may
        then move towards the model that is better where the outcome is high or low, noisy or
        quiet, or where the models disagree — the regions where local aggregation helps.
    ``"design"``
        The standardised non-constant columns of a design matrix (e.g. the model matrix of a
        ``local_formula``; factor dummies included): the non-constant columns, standardised.
    ``"both"``
        The spread columns followed by the design columns.

    All state is plain data (numpy arrays, strings, tuples), so a fitted basis can be stored
    without pickle.

    Parameters
    ----------
    kind : {"partition", "spread", "design", "both"}
    knots : int
        "spread" and "both": hinges of ``loc`` (at its training quantiles
        ``1/(knots+1) .. knots/(knots+1)``).
    grid : (int, int)
        "partition": hats on ``loc`` and on the log spread (knots at training quantiles
        ``0, 1/(m-1), .., 1``; repeated knots, e.g. from a factor, are merged). ``(4, 3)``
        gives b = 12 basis functions.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Q = np.sort(rng.normal(size=(100, 2, 3)), axis=2)
    >>> lb = LocalBasis().fit(None, Q)
    >>> phi = lb.transform(None, Q)
    >>> phi.shape, lb.columns[:2]
    ((100, 12), ('loc1:spread1', 'loc1:spread2'))
    >>> bool(np.all(phi >= 0) and np.allclose(phi.sum(axis=1), 1.0))
    True
    >>> LocalBasis("spread").fit(None, Q).columns[:3]
    ('(constant)', 'loc', 'loc>k1')
    """

    kind: BasisKind = "partition"
    knots: int = 3
    grid: tuple = (4, 3)
    hat_knots: tuple = ()
    spread_trend: Optional[np.ndarray] = None
    columns: tuple = ()
    design_columns: tuple = ()
    keep: Optional[np.ndarray] = None
    center: Optional[np.ndarray] = None
    scale: Optional[np.ndarray] = None
    low: Optional[np.ndarray] = None
    high: Optional[np.ndarray] = None
    knot_values: Optional[np.ndarray] = None

    def fit(self, X_design: Optional[np.ndarray], Q: Optional[np.ndarray],
            column_names: Optional[Sequence[str]] = None) -> "LocalBasis":
        """Learn the standardisation (and knots) on the training rows; returns self."""
        if self.kind not in ("partition", "additive", "spread", "design", "both"):
            raise DataError(f"unknown local basis kind {self.kind!r}; choose 'partition', 'additive', 'spread', "
                            "'design' or 'both'")
        if not isinstance(self.knots, (int, np.integer)) or self.knots < 0:
            raise DataError(f"knots must be an integer >= 0, got {self.knots!r}")
        if self.kind == "partition":
            return self._fit_partition(_check_Q(Q))
        if self.kind == "additive":
            return self._fit_additive(_check_design(X_design), column_names)
        names: list[str] = []
        raw = []
        if self.kind in ("spread", "both"):
            feats = _spread_features(_check_Q(Q))
            self.knot_values = np.quantile(feats[:, 0], np.arange(1, self.knots + 1) / (self.knots + 1))
            raw.append(self._spread_columns(feats))
            names += ["loc"] + [f"loc>k{i + 1}" for i in range(self.knots)] + ["log_spread", "disagreement"]
        if self.kind in ("design", "both"):
            X = _check_design(X_design)
            sd = X.std(axis=0)
            self.keep = sd > 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0))
            cols = list(column_names) if column_names is not None else [f"x{j}" for j in range(X.shape[1])]
            if len(cols) != X.shape[1]:
                raise DataError(f"column_names has {len(cols)} names for {X.shape[1]} design columns")
            self.design_columns = tuple(str(c) for c in cols)
            raw.append(X[:, self.keep])
            names += [c for c, k in zip(self.design_columns, self.keep) if k]
        Z = np.column_stack(raw)
        self.center = Z.mean(axis=0)
        sd = Z.std(axis=0)
        # a constant spread column (e.g. identical models) carries nothing: scaled by 1
        self.scale = np.where(sd > _EPS, sd, 1.0)
        S = (Z - self.center) / self.scale
        self.low, self.high = S.min(axis=0), S.max(axis=0)
        self.columns = ("(constant)",) + tuple(names)
        return self

    def transform(self, X_design: Optional[np.ndarray], Q: Optional[np.ndarray]) -> np.ndarray:
        """φ at rows (m, b): column 0 the constant, the others standardised and clipped."""
        if self.kind == "additive" and self.keep is not None:
            X = _check_design(X_design)
            if X.shape[1] != self.keep.size:
                raise DataError(f"the design has {X.shape[1]} columns; the basis was fitted on {self.keep.size} "
                                f"({', '.join(self.design_columns)})")
            kept = X[:, self.keep]
            return np.column_stack([_hats(kept[:, a], knots) for a, knots in enumerate(self.hat_knots)]) / kept.shape[1]
        if self.kind == "partition" and self.hat_knots:
            feats = self._partition_features(_check_Q(Q))
            H = [_hats(feats[:, a], knots) for a, knots in enumerate(self.hat_knots)]
            return (H[0][:, :, None] * H[1][:, None, :]).reshape(feats.shape[0], -1)
        if self.center is None:
            raise DataError("LocalBasis.transform before fit: call fit(X_design, Q) on the training rows")
        raw = []
        if self.kind in ("spread", "both"):
            raw.append(self._spread_columns(_spread_features(_check_Q(Q))))
        if self.kind in ("design", "both"):
            X = _check_design(X_design)
            if X.shape[1] != self.keep.size:
                raise DataError(f"the design has {X.shape[1]} columns; the basis was fitted on {self.keep.size} "
                                f"({', '.join(self.design_columns)})")
            raw.append(X[:, self.keep])
        S = np.clip((np.column_stack(raw) - self.center) / self.scale, self.low, self.high)
        return np.column_stack([np.ones(S.shape[0]), S])

    def _fit_partition(self, Q: np.ndarray) -> "LocalBasis":
        grid = tuple(self.grid)
        if len(grid) != 2 or not all(isinstance(m, (int, np.integer)) and m >= 1 for m in grid):
            raise DataError(f"grid must be two integers >= 1 (hats on loc, hats on log spread), got {self.grid!r}")
        feats = _spread_features(Q)[:, :2]
        # spread relative to what the location predicts (least squares on the training rows):
        # spread usually grows with location, and hats on the raw pair would leave corners of
        # the grid without rows (prototypes the fit cannot learn)
        slope = np.polyfit(feats[:, 0], feats[:, 1], 1)[0] if np.ptp(feats[:, 0]) > 0 else 0.0
        self.spread_trend = np.array([slope, feats[:, 1].mean() - slope * feats[:, 0].mean()])
        feats = self._partition_features(Q)
        self.hat_knots = tuple(_distinct(np.quantile(feats[:, a], np.linspace(0.0, 1.0, m)))
                               for a, m in enumerate(grid))
        self.columns = tuple(f"loc{a + 1}:spread{c + 1}" for a in range(self.hat_knots[0].size)
                             for c in range(self.hat_knots[1].size))
        return self

    def _fit_additive(self, X: np.ndarray, column_names: Optional[Sequence[str]]) -> "LocalBasis":
        m = self.grid[0] if len(self.grid) else 4
        if not isinstance(m, (int, np.integer)) or m < 2:
            raise DataError(f"grid[0] (hats per feature of the additive basis) must be an integer >= 2, got {m!r}")
        cols = list(column_names) if column_names is not None else [f"x{j}" for j in range(X.shape[1])]
        if len(cols) != X.shape[1]:
            raise DataError(f"column_names has {len(cols)} names for {X.shape[1]} design columns")
        self.design_columns = tuple(str(c) for c in cols)
        self.keep = np.ptp(X, axis=0) > 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0))
        if not self.keep.any():
            raise DataError("the local_formula's design has no non-constant column to build local weights on")
        self.hat_knots = tuple(_distinct(np.quantile(X[:, j], np.linspace(0.0, 1.0, m)))
                               for j in np.flatnonzero(self.keep))
        kept = [c for c, k in zip(self.design_columns, self.keep) if k]
        self.columns = tuple(f"{c}:{i + 1}" for c, knots in zip(kept, self.hat_knots) for i in range(knots.size))
        return self

    def _partition_features(self, Q: np.ndarray) -> np.ndarray:
        """Location and log spread net of its linear trend in location, (n, 2)."""
        feats = _spread_features(Q)[:, :2]
        return np.column_stack([feats[:, 0], feats[:, 1] - np.polyval(self.spread_trend, feats[:, 0])])

    def _spread_columns(self, feats: np.ndarray) -> np.ndarray:
        loc = feats[:, :1]
        return np.column_stack([loc, np.maximum(loc - self.knot_values, 0.0), feats[:, 1:]])


def _distinct(knots: np.ndarray) -> np.ndarray:
    """Sorted knots with those within rounding (1e-9 of their scale) of the previous one merged.

    Examples
    --------
    >>> _distinct(np.array([0.0, 1e-17, 1.0, 1.0]))
    array([0., 1.])
    """
    knots = np.sort(knots)
    tol = 1e-9 * max(1.0, float(np.abs(knots).max()))
    keep = np.r_[True, np.diff(knots) > tol]
    return knots[keep]


def _hats(s: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear hat functions at ``knots`` evaluated at ``s`` (clipped to the knots): (n, m).

    Each row is non-negative and sums to one (linear interpolation weights of the two knots
    around s).

    Examples
    --------
    >>> _hats(np.array([-1.0, 0.25, 3.0]), np.array([0.0, 1.0, 2.0]))
    array([[1.  , 0.  , 0.  ],
           [0.75, 0.25, 0.  ],
           [0.  , 0.  , 1.  ]])
    """
    m = knots.size
    H = np.zeros((s.size, m))
    if m == 1:
        H[:, 0] = 1.0
        return H
    s = np.clip(s, knots[0], knots[-1])
    left = np.clip(np.searchsorted(knots, s, side="right") - 1, 0, m - 2)
    t = (s - knots[left]) / (knots[left + 1] - knots[left])
    rows = np.arange(s.size)
    H[rows, left] = 1.0 - t
    H[rows, left + 1] = t
    return H


def _check_Q(Q) -> np.ndarray:
    if Q is None:
        raise DataError("the 'spread' local basis needs the base predictions Q (n, p, r)")
    arr = np.asarray(Q, dtype=float)
    if arr.ndim != 3 or not np.isfinite(arr).all():
        raise DataError(f"Q must be a finite (n, p, r) array, got shape {arr.shape}")
    return arr


def _check_design(X) -> np.ndarray:
    if X is None:
        raise DataError("the 'design' local basis needs the design matrix X_design (n, d)")
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise DataError(f"X_design must be a finite (n, d) array, got shape {arr.shape}")
    return arr


def _spread_features(Q: np.ndarray) -> np.ndarray:
    """Per row: models' mean central prediction, log mean spread, disagreement / spread."""
    Qs = np.sort(Q, axis=2)
    mid = Qs[:, :, Qs.shape[2] // 2]
    spread = (Qs[:, :, -1] - Qs[:, :, 0]).mean(axis=1)
    scale = np.maximum(spread, _EPS + 1e-9 * np.abs(mid).mean(axis=1))
    disagreement = mid.std(axis=1) / scale
    return np.column_stack([mid.mean(axis=1), np.log(scale), disagreement])
