"""R's formula transforms for patsy: ``poly``, ``bs``, ``ns``, ``factor``, ``relevel``.

Each stateful transform learns its state (centring and recurrence coefficients, knots) from the
training data once and reuses it on new data, as R's ``predict`` does through ``makepredictcall``:

- ``poly(x, degree, raw=False)``: R's orthogonal polynomials (``stats::poly``), evaluated on new
  data by R's three-term recurrence (``predict.poly``); ``raw=True`` gives ``x, x^2, ...``.
- ``bs(x, df=None, knots=None, degree=3, intercept=False, lower_bound=, upper_bound=)``: R's
  ``splines::bs``; outside the training range the end polynomial pieces continue (as R does).
- ``ns(x, df=None, knots=None, intercept=False, lower_bound=, upper_bound=)``: R's
  ``splines::ns``; linear beyond the boundary knots (as R).
- ``cr(x, df)``, ``cc(x, df)``: patsy's cubic regression splines, centred by default like mgcv's
  ``s(x, bs = "cr")`` (``df`` columns after centring, so they sit beside an intercept).
- ``factor(x, levels=None)`` and ``relevel(x, ref)``: categorical coding, R's treatment contrasts
  (``relevel`` moves the reference level).

Knots at ``df`` are R's: quantiles (type 7, numpy's default) of the training values at equally
spaced probabilities.

Examples
--------
>>> import numpy as np, patsy
>>> x = np.arange(1.0, 11.0)
>>> X = patsy.dmatrix("0 + poly(x, 2)", {"x": x}, eval_env=patsy.EvalEnvironment([{"poly": poly}]))
>>> np.round(np.asarray(X)[:2], 6).tolist()
[[-0.495434, 0.522233], [-0.385337, 0.174078]]
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import patsy
from patsy.categorical import C
from patsy.mgcv_cubic_splines import CC, CR
from scipy.interpolate import BSpline

from .errors import FormulaError

__all__ = ["poly", "bs", "ns", "cr", "cc", "factor", "relevel", "poly_coefs", "poly_basis", "bspline_basis",
           "nspline_basis"]


def _values(x: Any, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.number):
        raise FormulaError(f"{who}() needs one numeric column, got values of dtype {x.dtype}")
    return x.astype(np.float64)


# --------------------------------------------------------------------------- poly
def poly_coefs(x: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Recurrence coefficients ``(alpha (degree,), norm2 (degree + 2,))`` of R's ``poly(x, degree)``.

    Examples
    --------
    >>> alpha, norm2 = poly_coefs(np.arange(1.0, 6.0), 2)
    >>> alpha.tolist(), norm2.tolist()
    ([3.0, 3.0], [1.0, 5.0, 10.0, 14.0])
    """
    if len(np.unique(x)) <= degree:
        raise FormulaError(f"poly(): degree {degree} needs more than {degree} distinct values, "
                           f"got {len(np.unique(x))}")
    # Stieltjes recurrence on the training points: the same numbers R obtains through its QR
    # route and stores in attr(, "coefs") for predict()
    alpha, norm2 = np.empty(degree), [1.0]
    z_prev, z = np.zeros_like(x), np.ones_like(x)
    norm2.append(float(z @ z))
    for k in range(degree):
        alpha[k] = float(x @ z**2) / norm2[-1]
        z_next = (x - alpha[k]) * z - (norm2[-1] / norm2[-2]) * z_prev
        z_prev, z = z, z_next
        norm2.append(float(z @ z))
    return alpha, np.asarray(norm2)


def poly_basis(x: np.ndarray, alpha: np.ndarray, norm2: np.ndarray) -> np.ndarray:
    """R's ``predict`` of ``poly``: ``(m, degree)`` orthogonal polynomial columns at ``x``."""
    degree = alpha.size
    Z = np.empty((x.size, degree + 1))
    Z[:, 0] = 1.0
    Z[:, 1] = x - alpha[0]
    for k in range(1, degree):
        Z[:, k + 1] = (x - alpha[k]) * Z[:, k] - (norm2[k + 1] / norm2[k]) * Z[:, k - 1]
    return Z[:, 1:] / np.sqrt(norm2[2:])


class _Poly:
    """Stateful ``poly(x, degree=1, raw=False)``."""

    def __init__(self) -> None:
        self._x: list[np.ndarray] = []

    def memorize_chunk(self, x: Any, degree: int = 1, raw: bool = False) -> None:
        self._x.append(_values(x, "poly"))

    def memorize_finish(self) -> None:
        self.x = np.concatenate(self._x)
        self._x = []
        self.state: Optional[tuple[np.ndarray, np.ndarray]] = None

    def transform(self, x: Any, degree: int = 1, raw: bool = False) -> np.ndarray:
        if not isinstance(degree, (int, np.integer)) or degree < 1:
            raise FormulaError(f"poly(): degree must be a positive integer, got {degree!r}")
        v = _values(x, "poly")
        if raw:
            return np.column_stack([v**k for k in range(1, degree + 1)])
        if self.state is None:
            self.state = poly_coefs(self.x, int(degree))
        return poly_basis(v, *self.state)


poly = patsy.stateful_transform(_Poly)


# --------------------------------------------------------------------------- B-splines
def _basis(t: np.ndarray, k: int, x: np.ndarray, nu: int = 0) -> np.ndarray:
    """All B-splines of order ``k + 1`` on knots ``t`` at ``x``; end pieces continue outside."""
    nb = t.size - k - 1
    return BSpline(t, np.eye(nb), k, extrapolate=True)(x, nu=nu)


def _interior_knots(x: np.ndarray, n_interior: int) -> np.ndarray:
    if n_interior <= 0:
        return np.empty(0)
    probs = np.linspace(0.0, 1.0, n_interior + 2)[1:-1]
    return np.quantile(x, probs)


def bspline_basis(x: np.ndarray, knots: np.ndarray, bounds: tuple[float, float], degree: int = 3,
                  intercept: bool = False) -> np.ndarray:
    """R's ``splines::bs`` basis at ``x`` (``(m, len(knots) + degree + intercept)``).

    Examples
    --------
    >>> B = bspline_basis(np.array([0.0, 0.5, 1.0]), np.array([0.5]), (0.0, 1.0))
    >>> np.round(B, 4).tolist()
    [[0.0, 0.0, 0.0, 0.0], [0.25, 0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0]]
    """
    t = np.concatenate([[bounds[0]] * (degree + 1), np.sort(knots), [bounds[1]] * (degree + 1)])
    B = _basis(t, degree, x)
    return B if intercept else B[:, 1:]


def nspline_basis(x: np.ndarray, knots: np.ndarray, bounds: tuple[float, float],
                  intercept: bool = False) -> np.ndarray:
    """R's ``splines::ns`` basis at ``x`` (``(m, len(knots) + 1 + intercept)``), linear outside.

    Examples
    --------
    >>> N = nspline_basis(np.array([0.0, 0.5, 1.0, 2.0]), np.array([0.5]), (0.0, 1.0))
    >>> np.round(N, 4).tolist()
    [[0.0, 0.0], [0.5663, -0.2108], [0.3441, 0.7706], [-0.4944, 3.3296]]
    """
    t = np.concatenate([[bounds[0]] * 4, np.sort(knots), [bounds[1]] * 4])
    lo, hi = bounds
    B = np.empty((x.size, t.size - 4))
    inside = (x >= lo) & (x <= hi)
    B[inside] = _basis(t, 3, x[inside])
    for side, pivot in ((x < lo, lo), (x > hi, hi)):
        if side.any():
            at = np.array([pivot])
            B[side] = _basis(t, 3, at) + (x[side] - pivot)[:, None] * _basis(t, 3, at, nu=1)
    const = _basis(t, 3, np.array([lo, hi]), nu=2)
    if not intercept:
        const, B = const[:, 1:], B[:, 1:]
    # R: t(qr.qty(qr(t(const)), t(basis)))[, -(1:2)]; LAPACK's and LINPACK's Householder
    # reflectors coincide, so the complete Q equals R's
    Q = np.linalg.qr(const.T, mode="complete")[0]
    return (B @ Q)[:, 2:]


class _Spline:
    """Stateful ``bs``/``ns``: knots and boundary knots learnt on the training values."""

    natural = False

    def __init__(self) -> None:
        self._x: list[np.ndarray] = []

    def memorize_chunk(self, x: Any, *args: Any, **kwargs: Any) -> None:
        self._x.append(_values(x, self._name))

    def memorize_finish(self) -> None:
        self.x = np.concatenate(self._x)
        self._x = []
        self.state: Optional[tuple] = None

    @property
    def _name(self) -> str:
        return "ns" if self.natural else "bs"

    def _learn(self, df: Optional[int], knots: Optional[Sequence[float]], degree: int,
               intercept: bool, lower_bound: Optional[float], upper_bound: Optional[float]) -> tuple:
        lo = float(np.min(self.x)) if lower_bound is None else float(lower_bound)
        hi = float(np.max(self.x)) if upper_bound is None else float(upper_bound)
        if knots is not None:
            inner = np.sort(np.asarray(knots, dtype=np.float64))
        elif df is not None:
            n_inner = int(df) - (1 if self.natural else degree) - int(bool(intercept))
            if n_inner < 0:
                least = (1 if self.natural else degree) + int(bool(intercept))
                raise FormulaError(f"{self._name}(): df = {df} is below the minimum {least}")
            inside = self.x[(self.x >= lo) & (self.x <= hi)]
            inner = _interior_knots(inside, n_inner)
        else:
            inner = np.empty(0)
        return inner, (lo, hi)

    def transform(self, x: Any, df: Optional[int] = None, knots: Optional[Sequence[float]] = None,
                  degree: int = 3, intercept: bool = False, lower_bound: Optional[float] = None,
                  upper_bound: Optional[float] = None) -> np.ndarray:
        if self.natural and degree != 3:
            raise FormulaError("ns(): natural splines are cubic (no degree argument)")
        if self.state is None:
            self.state = self._learn(df, knots, degree, intercept, lower_bound, upper_bound)
        inner, bounds = self.state
        v = _values(x, self._name)
        if self.natural:
            return nspline_basis(v, inner, bounds, intercept)
        return bspline_basis(v, inner, bounds, degree, intercept)


class _NSpline(_Spline):
    natural = True


bs = patsy.stateful_transform(_Spline)
ns = patsy.stateful_transform(_NSpline)


class _CR(CR):
    """patsy's ``cr`` with mgcv's identifiability constraint by default (``constraints="center"``).

    patsy's unconstrained cubic regression basis sums to one, so beside an intercept the design
    is singular; like mgcv's ``s(x, bs = "cr")`` the basis is centred (``df`` columns remain).
    """

    def memorize_chunk(self, x: Any, df: Optional[int] = None, knots: Any = None,
                       lower_bound: Any = None, upper_bound: Any = None,
                       constraints: Any = "center") -> None:
        super().memorize_chunk(x, df, knots, lower_bound, upper_bound, constraints)

    def transform(self, x: Any, df: Optional[int] = None, knots: Any = None, lower_bound: Any = None,
                  upper_bound: Any = None, constraints: Any = "center") -> np.ndarray:
        return super().transform(x, df, knots, lower_bound, upper_bound, constraints)


class _CC(CC):
    """patsy's cyclic ``cc`` centred by default, as :class:`_CR`."""

    def memorize_chunk(self, x: Any, df: Optional[int] = None, knots: Any = None,
                       lower_bound: Any = None, upper_bound: Any = None,
                       constraints: Any = "center") -> None:
        super().memorize_chunk(x, df, knots, lower_bound, upper_bound, constraints)

    def transform(self, x: Any, df: Optional[int] = None, knots: Any = None, lower_bound: Any = None,
                  upper_bound: Any = None, constraints: Any = "center") -> np.ndarray:
        return super().transform(x, df, knots, lower_bound, upper_bound, constraints)


cr = patsy.stateful_transform(_CR)
cc = patsy.stateful_transform(_CC)


# --------------------------------------------------------------------------- factors
def factor(x: Any, levels: Optional[Sequence[Any]] = None) -> Any:
    """R's ``factor(x)``: treat ``x`` as categorical (levels sorted unless given)."""
    return C(x, levels=levels)


def relevel(x: Any, ref: Any) -> Any:
    """R's ``relevel(x, ref)``: treatment contrasts against level ``ref``."""
    data = getattr(x, "data", x)  # unwrap factor(g)
    levels = data.cat.categories if hasattr(data, "cat") else getattr(data, "categories", None)
    if levels is None:
        levels = sorted(set(np.asarray(data).tolist()))
    if ref not in list(levels):
        # R's levels are text: relevel(factor(k), "2") names the numeric level 2
        as_text = {(f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)): v for v in levels}
        ref = as_text.get(str(ref), ref)
    if ref not in list(levels):
        raise FormulaError(f"relevel(): reference level {ref!r} is not a level "
                           f"(levels: {list(levels)})")
    return C(x, patsy.Treatment(reference=ref))
