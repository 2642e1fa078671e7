"""The basis φ(x) of feature-dependent ("local") weights: α_jk(x) = θ_jk · φ(x).

The basis is learnt on the training rows (centring and scaling, the columns kept) and applied
unchanged to new rows, so predictions never re-standardise on the data they are made for.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import DataError

__all__ = ["local_formula_with_response", "standardized_basis", "apply_basis"]


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


def standardized_basis(X: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Basis φ(x) = [1, standardised non-constant design columns] with its training state.

    Returns
    -------
    basis : (n, b) array
    state : (keep, mean, sd) to apply the same map to new rows
    """
    sd = X.std(axis=0)
    keep = sd > 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0))
    mean = X[:, keep].mean(axis=0)
    state = (keep, mean, sd[keep])
    return apply_basis(X, state), state


def apply_basis(X: np.ndarray, state) -> np.ndarray:
    """Apply a :func:`standardized_basis` state to new rows: (m, d) -> (m, b)."""
    keep, mean, sd = state
    Z = (X[:, keep] - mean) / sd
    return np.column_stack([np.ones(X.shape[0]), Z])
