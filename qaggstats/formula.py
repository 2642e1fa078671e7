"""Formulas, model frames, NA accounting and design reuse on new data.

R-style formulas through patsy: ``C()``, ``bs()``/``cr()`` splines, ``I()``, interactions,
``np.log(x)`` and R's ``y ~ .`` (every other column; names that are not Python identifiers are
quoted as ``Q("...")``). A :class:`FormulaSpec` remembers the training design (spline knots,
centring, category levels) and rebuilds it on new data; it pickles by storing the formula and
the training values of the columns it uses.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, None], "x": [1.0, 2.0, 3.0, 4.0],
...                    "g": ["a", "b", "a", "b"]})
>>> fr = model_frames({"m": "y ~ ."}, df)
>>> fr.specs["m"].column_names, fr.na.n_dropped
(['Intercept', 'g[T.b]', 'x'], 1)
>>> fr.specs["m"].design(pd.DataFrame({"x": [5.0], "g": ["b"]})).tolist()
[[1.0, 1.0, 5.0]]
"""
from __future__ import annotations

import ast
import difflib
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import patsy

from .errors import DataError, FormulaError

__all__ = ["FormulaSpec", "NAReport", "Frames", "model_frames", "design_newdata", "expand_dot"]

# Functions a formula may call besides patsy's built-ins; R users write log(x) as often as np.log(x).
_NAMESPACE: dict[str, Any] = {
    "np": np, "numpy": np, "log": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt,
}
_PATSY_BUILTINS = {"C", "I", "Q", "bs", "cr", "cc", "te", "center", "standardize", "scale",
                   "Treatment", "Sum", "Poly", "Helmert", "Diff"}
# Calls whose arguments are only valid inside the training range (basis built on its knots).
_SPLINES = {"bs", "cr", "cc", "te"}
_DOT = re.compile(r"(?<![\w.\"'])\.(?![\w.\"'])")


def _quote(name: str) -> str:
    """A column name as a formula term: bare when an identifier, else ``Q("...")``."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    return "Q(" + repr(name) + ")"


def expand_dot(formula: str, columns: list[str]) -> str:
    """Replace R's ``.`` on the right-hand side by every column not used on the left.

    Examples
    --------
    >>> expand_dot("y ~ . - z", ["y", "x 1", "z"])
    "y ~ Q('x 1') + z - z"
    """
    lhs, rhs = _split(formula)
    if not _DOT.search(rhs):
        return formula
    used = _names(lhs, set(columns))[0] if lhs else set()
    others = [c for c in columns if c not in used]
    if not others:
        raise FormulaError(f"formula {formula!r}: '.' expands to no columns (data has only {columns})")
    expansion = " + ".join(_quote(c) for c in others)
    return f"{lhs} ~ {_DOT.sub(lambda _: expansion, rhs)}" if lhs else f"~ {_DOT.sub(lambda _: expansion, rhs)}"


def _split(formula: str) -> tuple[str, str]:
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise FormulaError(f"formula {formula!r} must be a string with exactly one '~'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not rhs:
        raise FormulaError(f"formula {formula!r} has an empty right-hand side")
    return lhs, rhs


def _codes(side: str) -> list[str]:
    """Python expressions of the factors of one formula side (patsy's parser)."""
    try:
        desc = patsy.ModelDesc.from_formula("0 + " + side if side else "0")
    except patsy.PatsyError as err:
        raise FormulaError(f"cannot parse formula side {side!r}: {err}") from err
    return [f.code for term in desc.rhs_termlist for f in term.factors]


def _names(side: str, columns: set[str]) -> tuple[set[str], set[str]]:
    """Data columns used by one formula side, and those used inside spline calls.

    Raises FormulaError naming an unknown function or a missing column (with close names).
    """
    used: set[str] = set()
    spline: set[str] = set()
    for code in _codes(side):
        try:
            tree = ast.parse(code, mode="eval")
        except SyntaxError as err:
            raise FormulaError(f"cannot parse formula term {code!r}: {err.msg}") from err
        calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                in_spline = node.func.id in _SPLINES
                if node.func.id == "Q" and node.args and isinstance(node.args[0], ast.Constant):
                    used.add(_need_column(str(node.args[0].value), columns, code))
                if in_spline:
                    for arg in node.args:
                        spline |= {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)} & columns
                        spline |= {str(q.args[0].value) for q in ast.walk(arg)
                                   if isinstance(q, ast.Call) and isinstance(q.func, ast.Name)
                                   and q.func.id == "Q" and q.args and isinstance(q.args[0], ast.Constant)}
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in ("np", "numpy") and not hasattr(np, node.attr)):
                close = difflib.get_close_matches(node.attr, dir(np), n=3)
                hint = f"; did you mean {', '.join('np.' + c for c in close)}?" if close else ""
                raise FormulaError(f"unknown function np.{node.attr} in formula term {code!r}{hint}")
            if not isinstance(node, ast.Name):
                continue
            if node.id in columns:
                used.add(node.id)
            elif id(node) in calls:
                if node.id not in _PATSY_BUILTINS and node.id not in _NAMESPACE:
                    known = sorted(_PATSY_BUILTINS | set(_NAMESPACE))
                    close = difflib.get_close_matches(node.id, known, n=3)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    raise FormulaError(f"unknown function {node.id!r} in formula term {code!r}{hint}")
            elif node.id not in _NAMESPACE and node.id not in _PATSY_BUILTINS:
                _need_column(node.id, columns, code)
    return used, spline


def _need_column(name: str, columns: set[str], code: str) -> str:
    if name in columns:
        return name
    close = difflib.get_close_matches(name, sorted(columns), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise FormulaError(f"formula term {code!r} uses column {name!r}, which is not in the data{hint}")


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


def _levels(s: pd.Series) -> tuple:
    """Training levels: a Categorical keeps its order, anything else sorts (as R's factor())."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique())
        return tuple(c for c in s.cat.categories if c in present)
    values = s.dropna().unique().tolist()
    try:
        return tuple(sorted(values))
    except TypeError:
        # an object column mixing e.g. numbers and strings has no order; R's factor() would
        # silently compare them as text, which hides what is usually a data-entry error
        kinds = sorted({type(v).__name__ for v in values})
        raise DataError(f"column {s.name!r} mixes values of types {', '.join(kinds)}; "
                        "convert it to one type (numbers, or strings for a categorical)") from None


def _check_data(data: Any, who: str) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{who}: data must be a pandas DataFrame, got {type(data).__name__}")
    if data.shape[0] == 0:
        raise DataError(f"{who}: data frame has no rows")
    return data


def _check_infinite(frame: pd.DataFrame, columns: list[str]) -> None:
    for col in columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            n_inf = int(np.isinf(s.to_numpy(dtype=np.float64, na_value=np.nan)).sum())
            if n_inf:
                raise DataError(f"column {col!r} has {n_inf} infinite value(s); remove or recode them")


@dataclass
class NAReport:
    """Rows dropped for missing values.

    Attributes: ``n_input``, ``n_used``, ``n_dropped``, ``by_column`` (column -> NA count over
    the input rows, for the columns used), ``dropped_index`` (row labels dropped).
    """

    n_input: int
    n_used: int
    n_dropped: int
    by_column: dict[str, int]
    dropped_index: list


@dataclass
class Frames:
    """Model frames of several formulas on shared rows (see :func:`model_frames`).

    ``y (n,)``, ``X`` name -> ``(n, d_name)``, ``specs`` name -> :class:`FormulaSpec`, ``na``,
    ``index`` (kept row labels), ``positions`` (kept integer positions), ``notes`` (remarks
    such as a constant response).
    """

    y: np.ndarray
    X: dict[str, np.ndarray]
    specs: dict[str, "FormulaSpec"]
    na: NAReport
    index: pd.Index
    positions: np.ndarray
    notes: list[str] = field(default_factory=list)


class FormulaSpec:
    """A formula with its training design, reusable on new data and picklable.

    Build with :meth:`from_data`. Attributes: ``formula`` (as given), ``expanded`` (after
    ``y ~ .``), ``response`` (left-hand side, "" for one-sided formulas), ``columns`` (data
    columns used by the right-hand side), ``column_names`` (design columns), ``categories``
    (column -> training levels), ``ranges`` (numeric column -> training (min, max)),
    ``spline_columns`` (columns inside ``bs()``/``cr()``: new values must stay in range).

    Examples
    --------
    >>> import pickle, pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 3.0, 2.0, 5.0, 4.0], "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    >>> spec = FormulaSpec.from_data("y ~ bs(x, df=3)", df)
    >>> new = pd.DataFrame({"x": [1.5, 4.5]})
    >>> (pickle.loads(pickle.dumps(spec)).design(new) == spec.design(new)).all()
    np.True_
    """

    def __init__(self, formula: str, train: pd.DataFrame) -> None:
        # ``train`` holds exactly the used columns over the NA-free training rows
        self.formula = formula
        self.expanded = expand_dot(formula, list(train.columns))
        lhs, rhs = _split(self.expanded)
        names = set(train.columns)
        lhs_cols = _names(lhs, names)[0] if lhs else set()
        rhs_cols, spline = _names(rhs, names)
        self.response = lhs
        self._response_columns = sorted(lhs_cols, key=list(train.columns).index)
        self.columns = [c for c in train.columns if c in rhs_cols]
        self.spline_columns = [c for c in self.columns if c in spline]
        self.categories = {c: _levels(train[c]) for c in self.columns if _is_categorical(train[c])}
        self.ranges = {c: (float(train[c].min()), float(train[c].max()))
                       for c in self.columns if c not in self.categories}
        for col in self.spline_columns:
            if col in self.categories:
                raise FormulaError(f"spline of categorical column {col!r} in {self.expanded!r}")
        self._train = train
        try:
            self._info = patsy.dmatrix(rhs, self._frame(train), eval_env=_env(),
                                       NA_action="raise", return_type="matrix").design_info
        except patsy.PatsyError as err:
            raise FormulaError(f"formula {self.expanded!r}: {err}") from err
        self.column_names = list(self._info.column_names)

    @classmethod
    def from_data(cls, formula: str, data: pd.DataFrame) -> "FormulaSpec":
        """Learn the design of ``formula`` from ``data`` (rows with NA in used columns ignored)."""
        data = _check_data(data, f"formula {formula!r}")
        used = used_columns(formula, data)
        train = data[used].dropna()
        if train.shape[0] == 0:
            raise DataError(f"formula {formula!r}: no rows left after dropping missing values in {used}")
        return cls(formula, train)

    def __getstate__(self) -> dict:
        # patsy's DesignInfo does not pickle: keep formula + training values, rebuild on load
        return {"formula": self.formula, "train": self._train}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["formula"], state["train"])

    def __repr__(self) -> str:
        return f"FormulaSpec({self.expanded!r}, d={len(self.column_names)})"

    def _frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """Used columns as patsy wants them: categoricals with the training levels, floats."""
        out = {}
        for col in self.columns:
            s = data[col]
            if col in self.categories:
                # object dtype: patsy does not know pandas 3's 'str' dtype
                out[col] = pd.Categorical(s.astype(object), categories=list(self.categories[col]))
            else:
                out[col] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        return pd.DataFrame(out, index=data.index)

    def check_newdata(self, data: pd.DataFrame) -> None:
        """Raise DataError naming a missing column, an unseen level or an out-of-range spline input.

        Missing values are not errors here (callers drop those rows first).
        """
        missing = [c for c in self.columns if c not in data.columns]
        if missing:
            raise DataError(f"new data lack column(s) {missing} used by {self.expanded!r}")
        _check_infinite(data, [c for c in self.columns if c not in self.categories])
        for col, levels in self.categories.items():
            s = data[col].dropna()
            unseen = sorted({str(v) for v in s.unique()} - {str(v) for v in levels})
            if unseen:
                raise DataError(f"column {col!r} has level(s) {unseen} not seen in training "
                                f"(training levels: {list(levels)})")
        for col, (lo, hi) in self.ranges.items():
            if not pd.api.types.is_numeric_dtype(data[col]) or pd.api.types.is_bool_dtype(data[col]):
                raise DataError(f"column {col!r} must be numeric (as in training), got {data[col].dtype}")
        for col in self.spline_columns:
            lo, hi = self.ranges[col]
            v = data[col].dropna().to_numpy(dtype=np.float64)
            if v.size and (v.min() < lo or v.max() > hi):
                n_out = int(((v < lo) | (v > hi)).sum())
                raise DataError(
                    f"column {col!r} enters a spline; {n_out} new value(s) in "
                    f"[{v.min():g}, {v.max():g}] fall outside the training range [{lo:g}, {hi:g}] "
                    "(splines are not extrapolated)")

    def design(self, data: pd.DataFrame) -> np.ndarray:
        """Design matrix ``(m, d)`` of ``data`` with the training knots, centring and levels.

        Raises DataError naming a missing column, an unseen level, an out-of-range spline input
        or a missing value.
        """
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        self.check_newdata(data)
        na = {c: int(data[c].isna().sum()) for c in self.columns if data[c].isna().any()}
        if na:
            raise DataError(f"missing values in column(s) {na} used by {self.expanded!r}")
        if data.shape[0] == 0:
            return np.empty((0, len(self.column_names)))
        (X,) = patsy.build_design_matrices([self._info], self._frame(data), NA_action="raise")
        return np.asarray(X, dtype=np.float64)

    def response_of(self, data: pd.DataFrame) -> np.ndarray:
        """Response ``(m,)``: the left-hand side evaluated on ``data`` (numeric)."""
        if not self.response:
            raise FormulaError(f"formula {self.expanded!r} has no response")
        missing = [c for c in self._response_columns if c not in data.columns]
        if missing:
            raise DataError(f"data lack the response column(s) {missing} of {self.expanded!r}")
        for col in self._response_columns:
            s = data[col]
            if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                raise DataError(f"response column {col!r} must be numeric, got dtype {s.dtype}")
        frame = pd.DataFrame({c: data[c].to_numpy(dtype=np.float64, na_value=np.nan)
                              for c in self._response_columns}, index=data.index)
        try:
            Y = patsy.dmatrix("0 + I(" + self.response + ")", frame, eval_env=_env(), NA_action="raise")
        except patsy.PatsyError as err:
            raise DataError(f"cannot evaluate response {self.response!r}: {err}") from err
        return np.asarray(Y, dtype=np.float64)[:, 0]


def _env() -> patsy.EvalEnvironment:
    return patsy.EvalEnvironment([_NAMESPACE])


def used_columns(formula: str, data: pd.DataFrame) -> list[str]:
    """Data columns a formula uses (both sides, after ``.`` expansion), in data order.

    Examples
    --------
    >>> used_columns("y ~ np.log(x) + C(g)", pd.DataFrame(columns=["g", "x", "y", "z"]))
    ['g', 'x', 'y']
    """
    expanded = expand_dot(formula, list(data.columns))
    lhs, rhs = _split(expanded)
    names = set(data.columns)
    cols = (_names(lhs, names)[0] if lhs else set()) | _names(rhs, names)[0]
    return [c for c in data.columns if c in cols]


def model_frames(formulas: Mapping[str, str], data: pd.DataFrame, na: str = "drop") -> Frames:
    """Designs of several formulas on the same rows, sharing one response.

    Rows with a missing value in any column used by any formula (response included) are
    dropped and counted, or, with ``na="raise"``, reported in a DataError.

    Parameters
    ----------
    formulas : mapping name -> formula
        Every formula must have the same left-hand side.
    data : DataFrame
    na : {"drop", "raise"}

    Returns
    -------
    Frames

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [1.0, None, 3.0, 5.0]})
    >>> fr = model_frames({"a": "y ~ x", "b": "y ~ 1"}, df)
    >>> fr.X["a"].shape, fr.X["b"].shape, fr.na.by_column
    ((3, 2), (3, 1), {'y': 0, 'x': 1})
    """
    if na not in ("drop", "raise"):
        raise DataError(f"na must be 'drop' or 'raise', got {na!r}")
    if not formulas:
        raise FormulaError("model_frames: no formulas given")
    data = _check_data(data, "model_frames")
    if isinstance(data.columns, pd.MultiIndex) or not all(isinstance(c, str) for c in data.columns):
        data = data.rename(columns=str)
    lhs = {name: _split(f)[0] for name, f in formulas.items()}
    if len(set(lhs.values())) != 1 or not next(iter(lhs.values())):
        raise FormulaError(f"formulas must share one response (left-hand side); got {lhs}")
    used: list[str] = []
    for f in formulas.values():
        used += [c for c in used_columns(f, data) if c not in used]
    used = [c for c in data.columns if c in used]
    _check_infinite(data, used)
    by_column = {c: int(data[c].isna().sum()) for c in used}
    bad = data[used].isna().any(axis=1).to_numpy()
    if bad.any() and na == "raise":
        culprits = {c: k for c, k in by_column.items() if k}
        raise DataError(f"missing values (NA) in column(s) {culprits}; use na='drop' to drop "
                        f"those {int(bad.sum())} rows")
    positions = np.flatnonzero(~bad)
    if positions.size == 0:
        raise DataError(f"no rows left after dropping missing values (NA counts: {by_column})")
    kept = data.iloc[positions]
    specs = {name: FormulaSpec(f, kept[used_columns(f, data)]) for name, f in formulas.items()}
    first = next(iter(specs.values()))
    y = first.response_of(kept)
    notes = []
    if np.ptp(y) == 0:
        notes.append(f"the response {first.response!r} is constant ({y[0]:g}) on all {y.size} rows")
    report = NAReport(n_input=int(data.shape[0]), n_used=int(positions.size),
                      n_dropped=int(bad.sum()), by_column=by_column,
                      dropped_index=data.index[bad].tolist())
    X = {name: spec.design(kept) for name, spec in specs.items()}
    return Frames(y=y, X=X, specs=specs, na=report, index=kept.index, positions=positions, notes=notes)


def design_newdata(specs: Mapping[str, FormulaSpec],
                   newdata: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Designs of new data for several specs; rows with missing predictors are left out.

    Returns ``(X, ok)``: ``X`` name -> ``(m_ok, d_name)`` over the rows where ``ok (m,)`` is
    True (no missing value in any column any spec uses).

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0]})
    >>> spec = FormulaSpec.from_data("y ~ x", df)
    >>> X, ok = design_newdata({"a": spec}, pd.DataFrame({"x": [2.0, None]}))
    >>> X["a"].tolist(), ok.tolist()
    ([[1.0, 2.0]], [True, False])
    """
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    for spec in specs.values():
        spec.check_newdata(newdata)
    cols = sorted({c for spec in specs.values() for c in spec.columns})
    ok = ~newdata[cols].isna().any(axis=1).to_numpy() if cols else np.ones(newdata.shape[0], bool)
    rows = newdata.iloc[np.flatnonzero(ok)]
    return {name: spec.design(rows) for name, spec in specs.items()}, ok
