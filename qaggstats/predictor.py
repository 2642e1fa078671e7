"""The fitted predictor: exactly what prediction needs, and the one prediction chain.

A :class:`Predictor` holds the formula specs and refit base learners the weights use, the
weights, the local-weight basis, the monotone post-processing and the conformal calibration.
Its :meth:`Predictor.predict_parts` is the only place where the chain

    designs → base quantiles (sorted per model) → weighted combination → post-processing → calibration

is written; the pipeline (calibration rows, non-crossing points), the results (``predict``,
``scores``) and Dask prediction all call it.

Examples
--------
>>> import qaggstats as qa
>>> df = qa.datasets.load("engel")
>>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
...               taus=[0.1, 0.5, 0.9], cv=3)
>>> parts = fit.predictor.predict_parts(df.head(4))
>>> parts.base.shape, parts.final.shape, bool(parts.ok.all())
((4, 1, 3), (4, 3), True)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from .crossfit import predict_learner
from .errors import DataError
from .formula import FormulaSpec, design_newdata
from .monotone import postprocess as monotone_postprocess

__all__ = ["Predictor", "PredictionParts", "sort_base", "needed_models"]

_BASIS = "__basis__"


def sort_base(Q: np.ndarray) -> np.ndarray:
    """Sort each base model's quantiles across levels, shape kept: (n, p, r).

    With sorted inputs the non-crossing constraints of the weight fit are always feasible
    (equal weights across levels satisfy them).

    Examples
    --------
    >>> sort_base(np.array([[[2.0, 1.0, 3.0]]])).tolist()
    [[[1.0, 2.0, 3.0]]]
    """
    return np.sort(Q, axis=-1)


def needed_models(weights: Any, models: list[str], uses_all: bool = False) -> list[str]:
    """The models whose predictions the fitted weights use (non-zero weight somewhere).

    A model with weight exactly zero at every level (and, for local weights, every basis
    coefficient zero) never enters a prediction, so it need not be kept or evaluated: its
    columns are filled with zeros. "mean" and "median" use every model, and so does a local
    basis built from the models' own predictions (``uses_all``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> w = SimpleNamespace(family="quantile", alpha=np.array([[1.0, 0.5], [0.0, 0.5], [0.0, 0.0]]))
    >>> needed_models(w, ["a", "b", "c"])
    ['a', 'b']
    """
    alpha = np.asarray(weights.alpha, dtype=float)
    if weights.family in ("mean", "median") or not np.isfinite(alpha).all() or uses_all:
        return list(models)
    used = np.abs(alpha.reshape(alpha.shape[0], -1)).max(axis=1) > 0
    return [m for m, keep in zip(models, used) if keep]


@dataclass(frozen=True)
class PredictionParts:
    """The stages of one prediction for the rows with complete predictors.

    Attributes
    ----------
    base : (m_ok, p, r) sorted base quantiles (zeros for models the weights do not use)
    raw : (m_ok, r) weighted combination before post-processing
    final : (m_ok, r) after post-processing and (when asked) calibration
    ok : (m,) bool, rows of the input with complete predictors
    """

    base: np.ndarray
    raw: np.ndarray
    final: np.ndarray
    ok: np.ndarray


@dataclass(frozen=True)
class Predictor:
    """Everything prediction needs, and nothing else (no training data, no unused models).

    Attributes
    ----------
    taus : (r,) array
        Fitted levels.
    models : tuple of str
        All base models in weight order (p), including any the weights do not use.
    specs : dict model -> FormulaSpec
        Formula state (levels, knots, centring) of each model kept in ``learners``.
    learners : dict model -> fitted learner
        The learners refit on all training rows, only those the weights use.
    weights : aggregate.Weights
        The fitted aggregation.
    postprocess : str
        Monotone post-processing method.
    basis_spec : FormulaSpec or None
        Formula of the local-weight basis when it is built from a ``local_formula``.
    basis : basis.LocalBasis or None
        The local-weight basis φ (``family="local"``), learnt on the training rows.
    calibration : SplitCQR, CVPlusCQR, MondrianCQR or None
        Conformal calibration (Mondrian: rows with a missing group label are left out, like
        rows with missing predictors).
    fold_learners : dict model -> list of learners, or None
        The K fold models of the base learners, kept only for CV+ (its intervals need them at
        predict time).
    fold_aggregates : tuple of (Weights, LocalBasis or None, str or None), or None
        Nested CV+: per fold, the aggregation refitted without that fold (weights, the
        local/DQA representation learnt without it, and which one, "local" or "dqa").
    fold_basis_specs : dict {"local", "dqa"} -> FormulaSpec, or None
        The formulas of the fold aggregates' representations built from a design.
    n_jobs : int
        Threads for the learners' predictions (joblib's ``n_jobs``, -1: all cores), used by
        learners that leave their own ``n_jobs`` unset (the forest's tree traversal and
        blocks, the k-NN search). Predictions do not depend on it.
    """

    taus: np.ndarray
    models: tuple[str, ...]
    specs: Mapping[str, FormulaSpec]
    learners: Mapping[str, Any]
    weights: Any
    postprocess: str
    basis_spec: Optional[FormulaSpec] = None
    basis: Any = None
    calibration: Any = None
    fold_learners: Optional[Mapping[str, list]] = field(default=None)
    n_jobs: int = -1
    fold_aggregates: Optional[tuple] = None
    fold_basis_specs: Optional[Mapping[str, FormulaSpec]] = None

    # ------------------------------------------------------------------ the chain, on arrays
    def base_quantiles(self, designs: Mapping[str, np.ndarray], learners: Optional[Mapping[str, Any]] = None,
                       where: str = " on new data") -> np.ndarray:
        """Sorted base quantiles (m, p, r) from each kept learner's design; zeros for unused models."""
        learners = self.learners if learners is None else learners
        m = next(iter(designs.values())).shape[0] if designs else 0
        Q = np.zeros((m, len(self.models), self.taus.size))
        if m == 0:
            return Q
        for j, name in enumerate(self.models):
            if name not in learners:
                continue
            Q[:, j, :] = predict_learner(learners[name], designs[name], name, self.taus.size, where, self.n_jobs)
        return sort_base(Q)

    def combine(self, Q: np.ndarray, basis: Optional[np.ndarray] = None) -> np.ndarray:
        """Weighted combination (m, r) of sorted base quantiles (m, p, r), before post-processing."""
        return self.weights.combine(Q) if basis is None else self.weights.combine(Q, basis=basis)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Monotone post-processing of combined quantiles (m, r)."""
        return monotone_postprocess(raw, self.taus, self.postprocess)

    def basis_rows(self, X_basis: Optional[np.ndarray], Q: np.ndarray) -> Optional[np.ndarray]:
        """The local-weight basis φ (m, b) from the basis design and the sorted base quantiles,
        or None for other families."""
        return None if self.basis is None else self.basis.transform(X_basis, Q)

    # ------------------------------------------------------------------ from data frames
    def designs(self, newdata: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Design matrices of the kept models (and the basis) for new rows, and the complete-row mask."""
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
        specs = dict(self.specs)
        if self.basis_spec is not None:
            specs[_BASIS] = self.basis_spec
        for fam, spec in (self.fold_basis_specs or {}).items():
            specs[_BASIS + fam] = spec
        return design_newdata(specs, newdata)

    def predict_parts(self, newdata: pd.DataFrame, calibrated: bool = True) -> PredictionParts:
        """Run the whole chain on new data (rows with missing predictors are left out, see ``ok``)."""
        X, ok = self.designs(newdata)
        column = getattr(self.calibration, "column", None) if calibrated else None
        if column is not None:  # Mondrian: the group column is needed, and a missing label is a missing predictor
            if column not in newdata.columns:
                raise DataError(f"newdata has no column {column!r}: the fit calibrates each of its groups "
                                "(conformal_groups); add it, or predict with calibrated=False")
            present = newdata[column].notna().to_numpy()
            keep = present[ok]
            X = {name: design[keep] for name, design in X.items()}
            ok = ok & present
        Q = self.base_quantiles(X)
        basis = self.basis_rows(X.get(_BASIS), Q)
        raw = self.combine(Q, basis)
        final = self.finish(raw)
        if calibrated and self.calibration is not None:
            if self.fold_learners is not None:  # CV+: each fold model's aggregate enters the interval
                final = self.calibration.apply(np.stack(self._fold_predictions(X)), final)
            elif column is not None:
                final = self.calibration.apply(final, newdata[column].to_numpy()[ok])
            else:
                final = self.calibration.apply(final)
        return PredictionParts(base=Q, raw=raw, final=final, ok=ok)

    def _fold_predictions(self, X: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Nested CV+: each fold aggregate (its base learners and weights fitted without that fold)
        at the rows of designs ``X``, post-processed: K arrays (m, r)."""
        K = len(self.fold_aggregates)
        out = []
        for k, (weights, basis, fam) in enumerate(self.fold_aggregates):
            Q = self.base_quantiles(X, {m: models[k] for m, models in self.fold_learners.items()},
                                    f" (fold model {k + 1} of {K}) on new data")
            if basis is None:
                raw = weights.combine(Q)
            else:
                raw = weights.combine(Q, basis=basis.transform(X.get(_BASIS + fam), Q))
            out.append(self.finish(raw))
        return out

    def with_calibration(self, calibration: Any, fold_learners: Optional[Mapping[str, list]] = None,
                         fold_aggregates: Optional[tuple] = None,
                         fold_basis_specs: Optional[Mapping[str, FormulaSpec]] = None) -> "Predictor":
        """A copy with a conformal calibration (and, for CV+, the fold models and aggregates) attached."""
        return replace(self, calibration=calibration, fold_learners=fold_learners,
                       fold_aggregates=fold_aggregates, fold_basis_specs=fold_basis_specs)
