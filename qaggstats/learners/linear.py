"""Linear quantile regression as a base learner (one exact LP fit per level)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.linalg import qr

from ..quantreg import rq_fit
from .base import LearnerBase, check_fit_data, check_predict_data

__all__ = ["LinearQR"]

# Largest gap between adjacent levels for which a fit starts from its neighbour's.
_WARM_GAP = 0.05


class LinearQR(LearnerBase):
    """Linear quantile regression, ``rq_fit`` per level on the design matrix.

    The design comes from the formula (patsy adds the intercept), so ``fit`` adds no
    column of its own. Each level is an exact solve of the LP (:func:`~qaggstats.quantreg.rq_fit`:
    Frisch–Newton, then the certified vertex, so R's ``rq(method="br")`` coefficients);
    levels at most 0.05 apart start from their neighbour's fit. Fitted quantiles may cross
    between levels.

    Unlike :func:`qaggstats.rq`, which refuses a singular design as R's ``rq`` does, the
    learner drops aliased columns (pivoted QR, like R's ``lm``) and gives them coefficient
    0: inside cross-fitting a fold can lose the rows that separate two columns (e.g. a rare
    category), and the ensemble should not fail for that. Aliasing is judged on unit-norm
    columns, so units never make a column look aliased (an intercept beside ``x + 1e7`` is
    kept). ``aliased_`` holds their indices, ``aliased_names_`` their names (the column
    names when ``X`` is a DataFrame, else ``"x<j>"``) and ``notes_`` one sentence each.

    Parameters
    ----------
    formula : str or None, default None
        Formula for this learner's design (e.g. ``"y ~ bs(x, df=5)"``); None uses the
        pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.ones(5), np.arange(5.0)])
    >>> y = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    >>> np.round(LinearQR().fit(X, y, [0.5]).predict([[1.0, 5.0]]), 10)
    array([[5.]])
    """

    def __init__(self, formula: Optional[str] = None) -> None:
        self.formula = formula
        self._validate()

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "LinearQR":
        """Fit one coefficient vector per level; stores ``coef_ (d, r)``, ``objective_ (r,)``
        and the aliased columns (``aliased_``, ``aliased_names_``, ``notes_``)."""
        self._validate()
        columns = getattr(X, "columns", None)
        X, y, taus = check_fit_data(X, y, taus, type(self).__name__)
        names = [str(c) for c in columns] if columns is not None else [f"x{j}" for j in range(X.shape[1])]
        keep = _independent_columns(X)
        fits: list[tuple[np.ndarray, float]] = []
        for k, t in enumerate(taus):
            # close levels (e.g. 99 of them) start from their neighbour's fit: the solver then
            # works on a band of rows (same optimum; see rq_fit); 0.1 apart it seldom pays
            start = fits[-1][0] if k and t - taus[k - 1] <= _WARM_GAP else None
            fits.append(rq_fit(X[:, keep], y, float(t), start=start))
        self.coef_ = np.zeros((X.shape[1], taus.size))
        self.coef_[keep] = np.column_stack([b for b, _ in fits])
        self.aliased_ = np.setdiff1d(np.arange(X.shape[1]), keep)
        self.aliased_names_ = [names[j] for j in self.aliased_]
        self.notes_ = [f"column {name!r} is aliased (a linear combination of the others): "
                       "dropped, coefficient 0" for name in self.aliased_names_]
        self.objective_ = np.array([o for _, o in fits])
        self.taus_ = taus
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fitted quantiles ``(m, r)``: ``X @ coef_``."""
        self._check_fitted()
        X = check_predict_data(X, self.coef_.shape[0], type(self).__name__)
        return X @ self.coef_


def _independent_columns(X: np.ndarray) -> np.ndarray:
    """Sorted indices of a maximal set of linearly independent columns (pivoted QR on
    unit-norm columns, so the verdict does not depend on units; zero columns are aliased).

    Examples
    --------
    >>> x = np.arange(5.0)
    >>> _independent_columns(np.column_stack([np.ones(5), x + 1e7, 2 * (x + 1e7)])).tolist()
    [0, 1]
    """
    norms = np.linalg.norm(X, axis=0)
    nonzero = np.flatnonzero(norms > 0)
    if nonzero.size == 0:
        return nonzero
    _, R, piv = qr(X[:, nonzero] / norms[nonzero], mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    tol = diag.max(initial=0.0) * max(X.shape) * np.finfo(float).eps
    return np.sort(nonzero[piv[: int((diag > tol).sum())]])
