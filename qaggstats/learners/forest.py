"""Quantile regression forest (Meinshausen 2006) with its leaf distributions tabulated at fit."""
from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.tree import DecisionTreeRegressor

from ..errors import DataError
from .base import (LearnerBase, _check_float, _check_int, _check_random_state, check_fit_data,
                   check_predict_data)

__all__ = ["QuantileForest", "Aggregation", "Splitter"]

Aggregation = Literal["pooled", "trees"]
Splitter = Literal["random", "best"]
# Response grid of the pooled distributions: every distinct value up to this many, else this
# many quantiles of y (a bin then holds 1/1024 of the training rows).
_GRID = 1024
# Rows per prediction block: bounds the dense (rows, grid) CDF block to ~16 MB.
_BLOCK = 2048


class QuantileForest(LearnerBase):
    """Quantile regression forest: one random forest, every level read from its leaves.

    A random forest is grown (scikit-learn regression trees on bootstrap samples, squared-error
    criterion; by default with random split points, as extremely randomized trees); each leaf's in-bag training responses, counted
    with their bootstrap multiplicity as in quantile-forest, are tabulated once at fit, and then

    - ``aggregation="pooled"`` (default): Meinshausen's estimator, the quantiles of the
      mixture over trees of the empirical distributions of the query's leaves. Each leaf
      stores its distribution on a response grid (every distinct ``y``, or 1,024 quantiles
      of ``y`` beyond that); predicting is a sparse product ``(rows, leaves) x (leaves,
      grid)``, a cumulative sum and a search, in blocks of rows run in parallel. The
      quantile interpolates the mixture CDF linearly between its support points.
    - ``aggregation="trees"``: each leaf's empirical quantiles at the fitted levels are
      computed at fit; a prediction is their mean over trees (quantile-forest's
      ``aggregate_leaves_first=False``): ``T`` look-ups per row, the fastest (see
      BENCHMARKS.md for its WIS against the pooled estimator).

    Both give non-crossing levels. Defaults, measured on 75/25 splits of concrete, kin8nm and
    20,000 protein rows at 9 levels (BENCHMARKS.md): 50 trees, whose mean WIS over three
    splits was 0.3-0.8 % above 100 trees' (0.03 % on the smooth case below) for half the
    fitting and prediction time (200 trees gained at most 0.5 % over 100); in-bag
    rows in the leaves (all rows cost 1.5-2.5 % WIS); random split points with leaves of 5
    rows, whose WIS was 22 %, 6 % and 5 % below the former default (quantile-forest, 200
    best-split trees, leaves of 20), at a fifth of the fitting time of best splits. Leaves
    of 3 did better still on these data (-27 %, -10 %, -10 %) but worse on the smooth
    one-predictor ``y = x + (0.5 + x) e`` (n = 2000), where leaves of 5 also beat the former
    default (WIS 0.760 against 0.772, holdout coverage 0.11 and 0.89 at levels 0.1 and 0.9).

    Parameters
    ----------
    n_estimators : int, default 50
        Number of trees (100 before, 200 before that; see above).
    min_samples_leaf : int, default 5
        Minimum (distinct in-bag) training rows per leaf, the main smoothing knob (see
        above; leaves of 1 row gave a biased median, holdout coverage 0.39 on concrete).
    splitter : {"random", "best"}, default "random"
        Split points drawn at random (extremely randomized trees, Geurts et al. 2006) or the
        best split of each feature (classical CART, Breiman's forest).
    max_features : float, int or {"sqrt", "log2"}, default 1.0
        Features considered per split (1.0: all, the usual choice for regression).
    max_depth : int or None, default None
        Maximum tree depth (None: grow until leaves reach ``min_samples_leaf``).
    max_samples : float or None, default None
        Bootstrap sample size of each tree as a fraction of the rows, in (0, 1] (None: 1,
        the classical bootstrap). Smaller samples grow smaller trees, faster to build and to
        traverse.
    aggregation : {"pooled", "trees"}, default "pooled"
        How the leaves give quantiles (see above).
    random_state : int or None, default None
        None inside :func:`qaggstats.qagg` takes a seed derived from its ``seed`` (so
        ``qagg(seed=...)`` reaches the learners you build); used alone, None draws fresh
        randomness as in scikit-learn. Seeds the bootstrap and feature sampling.
    n_jobs : int or None, default None
        Threads for growing and traversing trees and for prediction blocks; None follows
        joblib's context: one thread inside cross-fitting tasks (which already run one per
        core), every core when a fitted pipeline predicts new data (``CrossFit.n_jobs``,
        ``Predictor.n_jobs``).
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, (200, 1)); y = X[:, 0] + rng.normal(0, 0.1, 200)
    >>> qf = QuantileForest(n_estimators=20).fit(X, y, [0.1, 0.5, 0.9])
    >>> q = qf.predict(X[:3])
    >>> q.shape, bool(np.all(np.diff(q, axis=1) >= 0))
    ((3, 3), True)
    """

    def __init__(self, n_estimators: int = 50, min_samples_leaf: int = 5,
                 max_features: Any = 1.0, max_depth: Optional[int] = None,
                 max_samples: Optional[float] = None, splitter: Splitter = "random",
                 aggregation: Aggregation = "pooled", random_state: Optional[int] = None,
                 n_jobs: Optional[int] = None, formula: Optional[str] = None) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_depth = max_depth
        self.max_samples = max_samples
        self.splitter = splitter
        self.aggregation = aggregation
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        _check_int(self.n_estimators, "n_estimators", name)
        _check_int(self.min_samples_leaf, "min_samples_leaf", name)
        if self.max_depth is not None:
            _check_int(self.max_depth, "max_depth", name)
        if isinstance(self.max_features, str):
            if self.max_features not in ("sqrt", "log2"):
                raise DataError(
                    f"{name}: max_features must be 'sqrt', 'log2', an integer >= 1 or a fraction "
                    f"in (0, 1], got {self.max_features!r}"
                )
        elif isinstance(self.max_features, (int, np.integer)) and not isinstance(self.max_features, bool):
            _check_int(self.max_features, "max_features", name)
        else:
            _check_float(self.max_features, "max_features", name, 0.0, True, 1.0)
        if self.max_samples is not None:
            _check_float(self.max_samples, "max_samples", name, 0.0, True, 1.0)
        if self.splitter not in ("random", "best"):
            raise DataError(f"{name}: splitter must be 'random' or 'best', got {self.splitter!r}")
        if self.aggregation not in ("trees", "pooled"):
            raise DataError(f"{name}: aggregation must be 'trees' or 'pooled', got {self.aggregation!r}")
        _check_random_state(self.random_state, name)
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool)
                                        or not isinstance(self.n_jobs, (int, np.integer)) or self.n_jobs == 0):
            raise DataError(f"{name}: n_jobs must be None or a non-zero integer (-1: all cores), "
                            f"got {self.n_jobs!r}")

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "QuantileForest":
        """Grow the forest on ``X (n, d)``, ``y (n,)`` and tabulate its leaves for ``taus (r,)``."""
        self._validate()
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        seeds = _tree_seeds(self.random_state, self.n_estimators)
        # n_jobs resolved by effective_n_jobs (here and below): joblib's Parallel(n_jobs=None,
        # prefer="threads") runs on one thread whatever parallel_config says (joblib 1.6)
        grown = Parallel(n_jobs=effective_n_jobs(self.n_jobs), prefer="threads")(
            delayed(_grow)(X, y, int(seed), self.min_samples_leaf, self.max_features, self.max_depth,
                           self.max_samples, self.splitter)
            for seed in seeds)
        self.trees_ = [tree for tree, _, _ in grown]
        nodes = np.column_stack([leaves for _, leaves, _ in grown])
        counts = np.column_stack([inbag for _, _, inbag in grown])
        if self.aggregation == "pooled":
            self.leaf_index_, self.leaf_masses_, self.grid_ = leaf_distributions(nodes, y, counts)
        else:
            self.leaf_index_, self.leaf_quantiles_ = leaf_tables(nodes, y, taus, counts)
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Leaf (node id) of each row of ``X (m, d)`` in each tree: ``(m, T)`` ints."""
        self._check_fitted()
        X = check_predict_data(X, self.n_features_, type(self).__name__)
        X32 = np.asarray(X, dtype=np.float32)  # scikit-learn trees split on float32
        return np.column_stack(Parallel(n_jobs=effective_n_jobs(self.n_jobs), prefer="threads")(
            delayed(tree.apply)(X32) for tree in self.trees_))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` at the rows of ``X (m, d)``."""
        nodes = self.apply(X)
        if self.aggregation == "pooled":
            blocks = Parallel(n_jobs=effective_n_jobs(self.n_jobs), prefer="threads")(
                delayed(pooled_quantiles)(self.leaf_index_, self.leaf_masses_, self.grid_,
                                          nodes[start:start + _BLOCK], self.taus_)
                for start in range(0, nodes.shape[0], _BLOCK))
            return np.concatenate(blocks) if blocks else np.empty((0, self.taus_.size))
        out = np.zeros((nodes.shape[0], self.taus_.size))
        for t in range(nodes.shape[1]):
            out += self.leaf_quantiles_[self.leaf_index_[t, nodes[:, t]]]
        return out / nodes.shape[1]


def _tree_seeds(random_state: Optional[int], T: int) -> np.ndarray:
    """Seed of each tree (its bootstrap and its feature sampling)."""
    return np.random.default_rng(random_state).integers(0, 2**31 - 1, T)


def _inbag(seed: int, n: int, fraction: Optional[float] = None) -> np.ndarray:
    """Bootstrap multiplicity of each of ``n`` rows for the tree with this seed (a sample of
    ``fraction * n`` rows drawn with replacement; None: ``n``)."""
    size = n if fraction is None else max(1, int(round(fraction * n)))
    return np.bincount(np.random.default_rng(seed).integers(0, n, size), minlength=n)


def _grow(X: np.ndarray, y: np.ndarray, seed: int, min_samples_leaf: int, max_features: Any,
          max_depth: Optional[int], max_samples: Optional[float], splitter: str
          ) -> tuple[DecisionTreeRegressor, np.ndarray, np.ndarray]:
    """One tree on a bootstrap sample (multiplicities as sample weights, as scikit-learn's
    forest does): the tree, the leaf of every training row and the in-bag counts."""
    inbag = _inbag(seed, X.shape[0], max_samples)
    tree = DecisionTreeRegressor(min_samples_leaf=min_samples_leaf, max_features=max_features,
                                 max_depth=max_depth, splitter=splitter, random_state=seed)
    tree.fit(X, y, sample_weight=inbag.astype(np.float64))
    return tree, tree.apply(np.asarray(X, dtype=np.float32)), inbag


def leaf_tables(nodes: np.ndarray, y: np.ndarray, taus: np.ndarray,
                counts: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Empirical quantiles (numpy's linear rule) of ``y`` in every leaf of every tree.

    Parameters
    ----------
    nodes : (n, T) int ndarray
        Leaf (node id) of each training row in each tree, as ``forest.apply(X)``.
    y : (n,) ndarray
        Training responses.
    taus : (r,) ndarray
        Levels.
    counts : (n, T) int ndarray, optional
        Multiplicity of each row in each tree (bootstrap counts; 0: out of bag). None: 1.

    Returns
    -------
    index : (T, max node id + 1) int ndarray
        Row of ``quantiles`` for (tree, node); -1 for nodes holding no training row.
    quantiles : (total leaves, r) ndarray
        Quantiles of each leaf, rows sorted by tree then node id.

    Examples
    --------
    >>> nodes = np.array([[1], [1], [2], [1]])
    >>> index, q = leaf_tables(nodes, np.array([0.0, 1.0, 5.0, 2.0]), np.array([0.5, 1.0 - 1e-12]))
    >>> index.tolist(), q.round(6).tolist()
    ([[-1, 0, 1]], [[1.0, 2.0], [5.0, 5.0]])
    """
    n, T = nodes.shape
    index = np.full((T, int(nodes.max()) + 1), -1, dtype=np.int64)
    tables = []
    offset = 0
    for t in range(T):
        rows = np.arange(n) if counts is None else np.repeat(np.arange(n), counts[:, t])
        order = rows[np.lexsort((y[rows], nodes[rows, t]))]
        leaf, ys = nodes[order, t], y[order]
        starts = np.flatnonzero(np.r_[True, leaf[1:] != leaf[:-1]])
        sizes = np.diff(np.r_[starts, leaf.size])
        pos = (sizes[:, None] - 1) * taus[None, :]
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        lo += starts[:, None]
        hi = np.minimum(lo + 1, (starts + sizes - 1)[:, None])
        tables.append(ys[lo] * (1.0 - frac) + ys[hi] * frac)
        index[t, leaf[starts]] = offset + np.arange(starts.size)
        offset += starts.size
    return index, np.concatenate(tables)


def leaf_distributions(nodes: np.ndarray, y: np.ndarray,
                       counts: Optional[np.ndarray] = None) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Each leaf's empirical distribution of ``y`` on a response grid.

    Parameters
    ----------
    nodes : (n, T) int ndarray
        Leaf (node id) of each training row in each tree, as ``forest.apply(X)``.
    y : (n,) ndarray
        Training responses.
    counts : (n, T) int ndarray, optional
        Multiplicity of each row in each tree (bootstrap counts; 0: out of bag). None: 1.

    Returns
    -------
    index : (T, max node id + 1) int ndarray
        Row of ``masses`` for (tree, node); -1 for nodes holding no training row.
    masses : (total leaves, g) sparse CSR matrix
        Share of the leaf's rows at each grid point (rows sum to 1).
    grid : (g,) ndarray
        The increasing response grid: the distinct values of ``y``, or ``_GRID`` quantiles
        of ``y`` (each row then counts at the first grid point at or above it).

    Examples
    --------
    >>> nodes = np.array([[1], [1], [2], [1]])
    >>> index, masses, grid = leaf_distributions(nodes, np.array([0.0, 1.0, 5.0, 1.0]))
    >>> index.tolist(), grid.tolist(), masses.toarray().round(3).tolist()
    ([[-1, 0, 1]], [0.0, 1.0, 5.0], [[0.333, 0.667, 0.0], [0.0, 0.0, 1.0]])
    """
    n, T = nodes.shape
    grid = np.unique(y)
    if grid.size > _GRID:
        grid = np.unique(np.quantile(y, np.linspace(0.0, 1.0, _GRID)))
    column = np.minimum(np.searchsorted(grid, y, side="left"), grid.size - 1)
    index = np.full((T, int(nodes.max()) + 1), -1, dtype=np.int64)
    parts = []
    offset = 0
    for t in range(T):
        weight = np.ones(n) if counts is None else counts[:, t].astype(np.float64)
        kept = np.flatnonzero(weight > 0)
        leaves, compact = np.unique(nodes[kept, t], return_inverse=True)
        index[t, leaves] = offset + np.arange(leaves.size)
        total = np.bincount(compact, weights=weight[kept])
        parts.append((offset + compact, column[kept], weight[kept] / total[compact]))
        offset += leaves.size
    rows, cols, vals = (np.concatenate(p) for p in zip(*parts))
    masses = sp.csr_matrix((vals, (rows, cols)), shape=(offset, grid.size))
    masses.sum_duplicates()
    return index, masses, grid


def pooled_quantiles(index: np.ndarray, masses: sp.csr_matrix, grid: np.ndarray,
                     nodes: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Quantiles ``(m, r)`` of the equal-weight mixture over trees of the leaf distributions
    of ``nodes (m, T)``: the mixture CDF interpolated linearly between its support points
    (below the first one, the first one).

    Examples
    --------
    >>> nodes = np.array([[1], [1], [2], [1]])
    >>> index, masses, grid = leaf_distributions(nodes, np.array([0.0, 1.0, 5.0, 1.0]))
    >>> pooled_quantiles(index, masses, grid, np.array([[1], [2]]), np.array([0.5, 0.9])).round(3).tolist()
    [[0.25, 0.85], [5.0, 5.0]]
    """
    m, T = nodes.shape
    leaves = index[np.arange(T), nodes].ravel()
    weights = sp.csr_matrix((np.full(m * T, 1.0 / T), leaves, np.arange(0, m * T + 1, T)),
                            shape=(m, masses.shape[0]))
    mix = (weights @ masses).tocsr()
    mix.sort_indices()
    # per row, the mixture's support points (grid columns with mass) and its CDF there
    ptr, cols = mix.indptr, mix.indices
    row = np.repeat(np.arange(m), np.diff(ptr))
    cum = np.cumsum(mix.data)
    cdf = cum - np.r_[0.0, cum][ptr[:-1]][row]
    # one sorted key for all rows (cdf lies in [0, 1]): a single search per level. The one
    # cumulative sum per block rounds at ~1e-13 of the block's row count: a row's quantiles
    # depend on its position in the batch only at that level (and not at all on n_jobs)
    key = row + 0.5 * cdf
    last = ptr[1:] - 1
    out = np.empty((m, taus.size))
    for k, tau in enumerate(taus):
        # first support point where the CDF reaches tau (rounding: within 1e-9)
        j = np.minimum(np.searchsorted(key, np.arange(m) + 0.5 * (tau - 1e-9)), last)
        has_prev = j > ptr[:-1]
        prev = np.where(has_prev, j - 1, j)
        below = np.where(has_prev, cdf[prev], 0.0)
        step = cdf[j] - below
        frac = np.clip((tau - below) / np.where(step > 0, step, 1.0), 0.0, 1.0)
        left, right = grid[cols[prev]], grid[cols[j]]
        out[:, k] = np.where(has_prev, left + frac * (right - left), right)
    return out
