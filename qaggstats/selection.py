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
>>> w.requested, list(w.selection.columns)
('auto', ['family', 'constraint', 'penalty', 'heldout_wis', 'se', 'chosen', 'why'])

The first model alone is the true quantiles here, so no combination beats it on held-out WIS
and the guard keeps the best single model:

>>> w.family, list(w.selection["family"])
('single', ['single', 'global', 'quantile'])
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .basis import is_partition
from .errors import DataError
from .options import OPTIONS
from .scoring import wis

__all__ = ["select_family", "select_penalty", "PENALTY_GRID", "penalty_scale", "default_candidates"]

# Relative penalties tried for "local" (times penalty_scale; on a partition-of-unity basis divided by its size b): none, light, medium, heavy. The
# heaviest makes the local weights almost constant in x, i.e. close to the per-level family.
PENALTY_GRID = (0.0, 0.003, 0.03, 0.3)
# Penalty choice: the smallest penalty (earliest) within this relative held-out WIS of the
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


def _heldout_rows(fit_weights, Q, y, taus, folds, held, family, basis, features, penalties, options) -> np.ndarray:
    """Per-row WIS on the held-out folds' rows, each fold predicted by weights fitted without it:
    (penalties, m) for "local" (one warm path per fold), else (1, m); rows in fold order."""
    out = []
    for f in held:
        test = folds == f
        train = ~test
        kw = dict(options)
        if family == "local":
            kw.update(basis=basis[train], penalty=list(penalties))
        if family == "dqa":
            kw.update(features=features[train], folds=folds[train])
        if kw.get("obs_weights") is not None:
            kw["obs_weights"] = kw["obs_weights"][train]
        fits = fit_weights(Q[train], y[train], taus, family=family, **kw)
        rows = basis[test] if family == "local" else features[test] if family == "dqa" else None
        out.append(np.stack([_row_wis(y[test], fit.combine(Q[test], basis=rows), taus)
                             for fit in (fits if isinstance(fits, list) else [fits])]))
    return np.concatenate(out, axis=1)


def _row_wis(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """WIS of each row (the mean of these is :func:`qaggstats.scoring.wis`), (m,)."""
    u = y[:, None] - q
    return 2.0 * (u * (np.asarray(taus) - (u < 0))).mean(axis=1)


def _mean(rows: np.ndarray, w: Optional[np.ndarray]) -> np.ndarray:
    return rows.mean(axis=-1) if w is None else (rows * w).sum(axis=-1) / w.sum()


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
    per_row = _heldout_rows(fit_weights, Q, y, taus, folds, held, "local", basis, None,
                            [rel * unit for rel in penalties], dict(options, obs_weights=obs_weights))
    w_held = None if obs_weights is None else np.concatenate([obs_weights[folds == f] for f in held])
    rows = [{"family": "local", "constraint": options.get("constraint", "simplex"), "penalty": float(rel),
             "heldout_wis": float(score)} for rel, score in zip(penalties, _mean(per_row, w_held))]
    table, best = _choose(rows, per_row, w_held, rule="tie")
    fit = fit_weights(Q, y, taus, family="local", basis=basis, penalty=best["penalty"] * unit,
                      obs_weights=obs_weights, **options)
    fit.requested, fit.selection = "local", table
    return fit


def default_candidates(basis_given: bool = True, features_given: bool = False) -> tuple[str, ...]:
    """What ``family="auto"`` compares, simplest first: every family with its useful constraints,
    the best single model as the baseline, "local" when a basis is given, and "dqa" when JAX is
    installed and features are given.

    Examples
    --------
    >>> default_candidates(False)
    ('single', 'global', 'quantile', 'quantile:nonneg', 'qra', 'fqra', 'fine')
    """
    from . import _deep

    base = ("single", "global", "quantile", "quantile:nonneg", "qra", "fqra") + (("local",) if basis_given else ())
    return base + ("fine",) + (("dqa",) if features_given and _deep.available() else ())


def _parse_candidate(candidate: str, families: Sequence[str], default_constraint: str) -> tuple[str, str]:
    family, _, constraint = str(candidate).partition(":")
    if family not in families:
        raise DataError(f"unknown candidate family {family!r} in candidates=; choose from {', '.join(families)}")
    constraint = constraint or ("free" if family in ("qra", "fqra") else
                                "simplex" if family in ("single", "dqa") else default_constraint)
    if constraint not in OPTIONS["constraint"]:
        raise DataError(f"unknown constraint {constraint!r} in candidate {candidate!r}; choose one of "
                        f"{', '.join(OPTIONS['constraint'])}")
    return family, constraint


def select_family(Q: np.ndarray, y: np.ndarray, taus: Sequence[float], folds: Any, *,
                  fit_weights: Callable[..., Any], basis: Optional[np.ndarray] = None,
                  features: Optional[np.ndarray] = None, candidates: Optional[Sequence[str]] = None,
                  penalties: Sequence[float] = PENALTY_GRID, max_folds: int = 3,
                  obs_weights: Optional[np.ndarray] = None, **options):
    """``family="auto"``: the family of lowest held-out WIS by a one-standard-error rule, never worse
    than the best single model, refitted on all rows.

    Every candidate is scored by inner validation on the out-of-fold rows (see the module
    docstring), all on the same held-out rows, so their differences are paired. The best
    candidate is the one of lowest held-out WIS; the chosen one is the simplest (earliest in
    ``candidates``) whose held-out WIS is within one standard error of the best's (the standard
    error of the per-row difference to the best, over the held-out rows). The guard: a family
    whose held-out WIS is above that of "single" (the best single model, chosen on the training
    folds) is never chosen; "single" is always compared.

    Parameters
    ----------
    Q : (n, p, r) out-of-fold base predictions
    y : (n,)
    taus : (r,)
    folds : (n,) fold id of each out-of-fold row
    fit_weights : callable
        :func:`qaggstats.aggregate.fit_weights`, passed in so this module never imports it back.
    basis : (n, b), needed when "local" is a candidate
    features : (n, d), needed when "dqa" is a candidate
    candidates : families to compare, simplest first, each "family" or "family:constraint"
        (default :func:`default_candidates`); "single" is added first when missing.
    penalties : relative local penalties (times :func:`penalty_scale`)
    max_folds : int
        Held-out folds used; each costs one fit per candidate (and penalty).
    obs_weights : (n,) optional
    **options
        Passed to :func:`qaggstats.aggregate.fit_weights` (constraint, noncrossing, groups, extra, dqa, ...).

    Returns
    -------
    Weights
        Of the chosen family, with ``requested = "auto"`` and ``selection``: a DataFrame with
        columns family, constraint, penalty (relative; NaN for families without one),
        heldout_wis, se (of the difference to the best), chosen and why.
    """
    Q = np.sort(np.asarray(Q, dtype=float), axis=2)
    y = np.asarray(y, dtype=float)
    candidates = (default_candidates(basis is not None, features is not None) if candidates is None
                  else tuple(candidates))
    if not candidates:
        raise DataError("candidates must name at least one weight family")
    families = [f for f in OPTIONS["family"] if f != "auto"]
    default_constraint = options.pop("constraint", "simplex")
    parsed = [_parse_candidate(c, families, default_constraint) for c in candidates]
    if ("single", "simplex") not in parsed:
        parsed.insert(0, ("single", "simplex"))
    if any(f == "local" for f, _ in parsed) and basis is None:
        raise DataError("candidate 'local' needs basis= (n, b); see qaggstats.basis.LocalBasis")
    if any(f == "dqa" for f, _ in parsed) and features is None:
        raise DataError("candidate 'dqa' needs features= (n, d); see qaggstats.basis.LocalBasis('design')")
    if options.get("extra") is not None and any(f == "dqa" for f, _ in parsed):
        parsed = [c for c in parsed if c[0] != "dqa"]  # dqa takes no extra non-crossing points
    folds, held = _held_out_folds(folds, Q.shape[0], max_folds)
    unit = _penalty_unit(Q, obs_weights, basis)
    rows, per_row = [], []
    for fam, con in parsed:
        rels = list(penalties) if fam == "local" else [np.nan]
        kw = dict(options, constraint=con, obs_weights=obs_weights)
        if fam not in ("local",):
            kw.pop("penalty", None)
        scores = _heldout_rows(fit_weights, Q, y, taus, folds, held, fam, basis, features,
                               [rel * unit for rel in rels], kw)
        per_row.append(scores)
        rows += [{"family": fam, "constraint": con, "penalty": float(rel)} for rel in rels]
    per_row = np.concatenate(per_row)
    w_held = None if obs_weights is None else np.concatenate([obs_weights[folds == f] for f in held])
    for row, score in zip(rows, _mean(per_row, w_held)):
        row["heldout_wis"] = float(score)
    table, best = _choose(rows, per_row, w_held, rule="se")
    kw = dict(options, constraint=best["constraint"], obs_weights=obs_weights)
    if best["family"] == "local":
        kw.update(basis=basis, penalty=best["penalty"] * unit)
    if best["family"] == "dqa":
        kw.update(features=features, folds=folds)
    fit = fit_weights(Q, y, taus, family=best["family"], **kw)
    fit.requested, fit.selection = "auto", table
    return fit


def _choose(rows: list[dict], per_row: np.ndarray, w: Optional[np.ndarray], rule: str) -> tuple[pd.DataFrame, dict]:
    """Mark the chosen row and say why for every row.

    ``rule="se"``: the simplest row whose held-out WIS is within one standard error (of its
    per-row difference to the best) of the lowest, and never above the "single" row's.
    ``rule="tie"``: the simplest within :data:`TIE` (relative) of the lowest.
    """
    table = pd.DataFrame(rows)
    score = table["heldout_wis"].to_numpy()
    ib = int(np.argmin(score))
    diff = per_row - per_row[ib]
    m = per_row.shape[1]
    if w is None:
        se = diff.std(axis=1, ddof=1) / np.sqrt(m) if m > 1 else np.zeros(len(rows))
    else:
        wn = w / w.sum()
        mu = (diff * wn).sum(axis=1)
        se = np.sqrt(((diff - mu[:, None]) ** 2 * wn).sum(axis=1) / max(m - 1, 1))
    table["se"] = se
    if rule == "se":
        ok = score <= score[ib] + se
        single = table.index[table["family"] == "single"]
        if len(single):
            ok &= score <= score[single[0]]
    else:
        ok = score <= score[ib] * (1 + TIE)
    pick = int(np.flatnonzero(ok)[0])
    table["chosen"] = False
    table.loc[pick, "chosen"] = True
    ref = score[pick]
    why = []
    for i, sc in enumerate(score):
        if i == pick:
            why.append("lowest held-out WIS" if i == ib else
                       "simplest within one standard error of the lowest held-out WIS" if rule == "se" else
                       f"simplest within {TIE:.1%} of the lowest held-out WIS")
        elif rule == "se" and len(single) and sc > score[single[0]] and table.loc[i, "family"] != "single":
            why.append(f"held-out WIS {100 * (sc / ref - 1):+.2f}% vs chosen; worse than the best single model")
        else:
            why.append(f"held-out WIS {100 * (sc / ref - 1):+.2f}% vs chosen")
    table["why"] = why
    return table, table.loc[pick].to_dict()
