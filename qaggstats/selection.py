"""Choosing the weight family and the local penalty by held-out WIS on the out-of-fold rows.

The base predictions ``Q`` that weights are fitted on are already out-of-fold (each row was
predicted by learners that never saw it), and their fold ids say how the rows were split. Inner
validation reuses that split: for each held-out fold f, weights are fitted on the other folds'
rows and scored (WIS, :func:`qaggstats.scoring.wis`) on fold f's rows. The family (and, for
"local", the penalty) with the lowest held-out WIS is then refitted on every row. This is how
the paper picks its variants on validation data, without asking the user for a penalty.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n, taus = 600, np.array([0.1, 0.5, 0.9])
>>> x = rng.uniform(-1, 1, n)
>>> y = x + rng.normal(size=n) * 0.3
>>> good, bad = x[:, None] + 0.3 * np.array([-1.28, 0, 1.28]), np.zeros((n, 3)) + [-1, 0, 1]
>>> Q = np.stack([good, bad], axis=1)
>>> from qaggstats.aggregate import fit_weights
>>> w = select_family(Q, y, taus, np.arange(n) % 3, fit_weights=fit_weights, candidates=("global", "quantile"))
>>> w.requested, w.family in ("global", "quantile"), list(w.selection.columns)
('auto', True, ['family', 'penalty', 'heldout_wis', 'chosen', 'why'])
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .basis import is_partition
from .errors import DataError
from .options import OPTIONS
from .scoring import wis

__all__ = ["select_family", "select_penalty", "PENALTY_GRID", "penalty_scale", "CANDIDATES"]

# Relative penalties tried for "local" (times penalty_scale; on a partition-of-unity basis divided by its size b): none, light, medium, heavy. The
# heaviest makes the local weights almost constant in x, i.e. close to the per-level family.
PENALTY_GRID = (0.0, 0.003, 0.03, 0.3)
CANDIDATES = ("quantile", "local", "fine")
# A simpler candidate (earlier in ``candidates``) within this relative held-out WIS of the
# best is preferred: differences this small are noise at the sizes weights are fitted on.
TIE = 1e-3


def penalty_scale(Q: np.ndarray, obs_weights: Optional[np.ndarray] = None) -> float:
    """Unit of the local penalty: total weight times the models' mean absolute spread around their mean.

    Moving weight ``t`` between two models moves the aggregate by about ``t`` times their
    difference, so the check loss changes per unit of theta by about this much.

    Examples
    --------
    >>> import numpy as np
    >>> penalty_scale(np.array([[[0.0], [2.0]], [[1.0], [1.0]]]))
    1.0
    """
    dev = np.abs(Q - Q.mean(axis=1, keepdims=True)).mean(axis=(1, 2))
    w = np.ones(Q.shape[0]) if obs_weights is None else obs_weights
    return float((w * dev).sum())


def _penalty_unit(Q: np.ndarray, obs_weights: Optional[np.ndarray], basis: Optional[np.ndarray]) -> float:
    """:func:`penalty_scale`, divided by the number of basis functions on a partition of unity.

    Each prototype of a partition-of-unity basis is fitted on about 1/b of the rows, so the
    loss it can save, against which its penalty weighs, is about b times smaller.
    """
    unit = penalty_scale(Q, obs_weights)
    return unit / basis.shape[1] if basis is not None and is_partition(basis) else unit


def _held_out_folds(folds: Any, n: int, max_folds: int) -> tuple[np.ndarray, np.ndarray]:
    folds = np.asarray(folds)
    if folds.shape != (n,):
        raise DataError(f"folds must give one fold id per out-of-fold row ({n}), got shape {folds.shape}")
    ids = np.unique(folds)
    if ids.size < 2:
        raise DataError("folds must hold at least two fold ids for inner validation")
    if max_folds < 1:
        raise DataError(f"max_folds must be >= 1, got {max_folds}")
    return folds, ids[:max_folds]


def _heldout_wis(fit_weights, Q, y, taus, folds, held, family, basis, obs_weights, penalties, options) -> list[float]:
    """Mean WIS over the held-out folds' rows, each fold predicted by weights fitted without it:
    one score per penalty of ``penalties`` ("local", fitted as one warm path per fold), else one."""
    totals, count = np.zeros(len(penalties) if family == "local" else 1), 0.0
    for f in held:
        test = folds == f
        train = ~test
        kw = dict(options)
        if family == "local":
            kw.update(basis=basis[train], penalty=list(penalties))
        if obs_weights is not None:
            kw["obs_weights"] = obs_weights[train]
        fits = fit_weights(Q[train], y[train], taus, family=family, **kw)
        wt = None if obs_weights is None else obs_weights[test]
        mass = test.sum() if wt is None else wt.sum()
        for i, fit in enumerate(fits if isinstance(fits, list) else [fits]):
            q = fit.combine(Q[test], basis=basis[test] if family == "local" else None)
            totals[i] += wis(y[test], q, taus, wt) * mass
        count += mass
    return list(totals / count)


def select_penalty(Q: np.ndarray, y: np.ndarray, taus: Sequence[float], folds: Any, basis: np.ndarray, *,
                   fit_weights: Callable[..., Any], penalties: Sequence[float] = PENALTY_GRID, max_folds: int = 3,
                   obs_weights: Optional[np.ndarray] = None, **options):
    """Fit "local" weights with the penalty of lowest held-out WIS (inner validation on ``folds``).

    Parameters
    ----------
    Q : (n, p, r) out-of-fold base predictions
    y : (n,)
    taus : (r,)
    folds : (n,) fold id of each out-of-fold row
    basis : (n, b) local basis, column 0 the constant (see :class:`qaggstats.basis.LocalBasis`)
    fit_weights : callable
        :func:`qaggstats.aggregate.fit_weights`, passed in so this module never imports it back.
    penalties : relative penalties tried (times :func:`penalty_scale`)
    max_folds : int
        Held-out folds used (the first ``max_folds`` fold ids): each costs one fit per penalty.
    obs_weights : (n,) optional
    **options
        Passed to :func:`qaggstats.aggregate.fit_weights` (constraint, noncrossing, extra, ...).

    Returns
    -------
    Weights
        Refitted on all rows with the chosen penalty; ``requested`` is "local" and
        ``selection`` the table of penalties tried.
    """
    Q = np.sort(np.asarray(Q, dtype=float), axis=2)
    y = np.asarray(y, dtype=float)
    folds, held = _held_out_folds(folds, Q.shape[0], max_folds)
    unit = _penalty_unit(Q, obs_weights, basis)
    for rel in penalties:
        if not np.isfinite(rel) or rel < 0:
            raise DataError(f"penalties must be finite and >= 0, got {rel!r}")
    scores = _heldout_wis(fit_weights, Q, y, taus, folds, held, "local", basis, obs_weights,
                          [rel * unit for rel in penalties], options)
    rows = [{"family": "local", "penalty": float(rel), "heldout_wis": score} for rel, score in zip(penalties, scores)]
    table, best = _choose(rows, "penalty")
    fit = fit_weights(Q, y, taus, family="local", basis=basis, penalty=best["penalty"] * unit,
                      obs_weights=obs_weights, **options)
    fit.requested, fit.selection = "local", table
    return fit


def select_family(Q: np.ndarray, y: np.ndarray, taus: Sequence[float], folds: Any, *,
                  fit_weights: Callable[..., Any], basis: Optional[np.ndarray] = None, candidates: Sequence[str] = CANDIDATES,
                  penalties: Sequence[float] = PENALTY_GRID, max_folds: int = 3,
                  obs_weights: Optional[np.ndarray] = None, **options):
    """``weights="auto"``: the family (and local penalty) of lowest held-out WIS, refitted on all rows.

    Every candidate is scored by inner validation on the out-of-fold rows (see the module
    docstring); "local" is tried with each penalty of ``penalties`` (needs ``basis``). The
    simplest candidate (earliest in ``candidates``) within 0.1 % of the best held-out WIS wins.

    Parameters
    ----------
    Q : (n, p, r) out-of-fold base predictions
    y : (n,)
    taus : (r,)
    folds : (n,) fold id of each out-of-fold row
    fit_weights : callable
        :func:`qaggstats.aggregate.fit_weights`, passed in so this module never imports it back.
    basis : (n, b), needed when "local" is a candidate
    candidates : families to compare, simplest first
    penalties : relative local penalties (times :func:`penalty_scale`)
    max_folds : int
        Held-out folds used; each costs one fit per candidate (and penalty).
    obs_weights : (n,) optional
    **options
        Passed to :func:`qaggstats.aggregate.fit_weights` (constraint, noncrossing, groups, extra, ...).

    Returns
    -------
    Weights
        Of the chosen family, with ``requested = "auto"`` and ``selection``: a DataFrame with
        columns family, penalty (relative; NaN for families without one), heldout_wis, chosen
        and why.
    """
    Q = np.sort(np.asarray(Q, dtype=float), axis=2)
    y = np.asarray(y, dtype=float)
    if not candidates:
        raise DataError("candidates must name at least one weight family")
    families = [f for f in OPTIONS["family"] if f != "auto"]
    for fam in candidates:
        if fam not in families:
            raise DataError(f"unknown candidate family {fam!r}; choose from {', '.join(families)}")
    if "local" in candidates and basis is None:
        raise DataError("candidate 'local' needs basis= (n, b); see qaggstats.basis.LocalBasis")
    folds, held = _held_out_folds(folds, Q.shape[0], max_folds)
    unit = _penalty_unit(Q, obs_weights, basis)
    rows = []
    for fam in candidates:
        rels = list(penalties) if fam == "local" else [np.nan]
        scores = _heldout_wis(fit_weights, Q, y, taus, folds, held, fam, basis, obs_weights,
                              [rel * unit for rel in rels], options)
        rows += [{"family": fam, "penalty": float(rel), "heldout_wis": score} for rel, score in zip(rels, scores)]
    table, best = _choose(rows, "family")
    kw = dict(options)
    if best["family"] == "local":
        kw.update(basis=basis, penalty=best["penalty"] * unit)
    fit = fit_weights(Q, y, taus, family=best["family"], obs_weights=obs_weights, **kw)
    fit.requested, fit.selection = "auto", table
    return fit


def _choose(rows: list[dict], what: str) -> tuple[pd.DataFrame, dict]:
    """Mark the simplest row within TIE of the lowest held-out WIS; say why for every row."""
    table = pd.DataFrame(rows)
    low = table["heldout_wis"].min()
    pick = int(np.flatnonzero(table["heldout_wis"].to_numpy() <= low * (1 + TIE))[0])
    table["chosen"] = False
    table.loc[pick, "chosen"] = True
    ref = table.loc[pick, "heldout_wis"]
    why = []
    for i, score in enumerate(table["heldout_wis"]):
        if i == pick:
            why.append("lowest held-out WIS" if score == low else
                       f"simplest within {TIE:.1%} of the lowest held-out WIS")
        else:
            why.append(f"held-out WIS {100 * (score / ref - 1):+.2f}% vs chosen")
    table["why"] = why
    return table, table.loc[pick].to_dict()
