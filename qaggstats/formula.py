"""Formulas, model frames, NA accounting and design reuse on new data.

Formulas are written as in R and evaluated through patsy in a restricted namespace:

- terms: ``a + b``, ``a:b``, ``a*b``, ``(a + b + c)^2`` (all interactions up to order 2),
  ``- 1`` / ``0 +`` (no intercept), R's ``y ~ .`` (every other column), backquoted names
  (```odd name```, or ``Q("odd name")``);
- arithmetic inside ``I()``: ``I(x^2)`` (``^`` is a power, as in R), ``I(x > 2)``;
- functions: ``log``, ``log2``, ``log10``, ``log1p``, ``exp``, ``expm1``, ``sqrt``, ``abs``,
  ``sign``, trigonometric ones, ``floor``, ``ceiling``, ``trunc``, ``round``, ``pmin``, ``pmax``,
  and ``np.<name>`` for the same numpy ufuncs;
- transforms (state learnt on the training rows, reused on new data; see
  :mod:`qaggstats.transforms`): ``poly(x, 2)`` (R's orthogonal polynomials; ``raw = TRUE``),
  ``bs(x, df = 4)`` (R's ``splines::bs``), ``ns(x, df = 3)`` (R's ``splines::ns``),
  ``cr(x, df = 4)`` / ``cc(x, df = 4)`` (``df`` columns centred like mgcv's
  ``s(x, bs = "cr")``, so they sit beside the intercept), ``te``, ``center``, ``standardize``, ``scale``;
- factors: ``factor(g)``, ``C(g)``, ``relevel(g, "b")``, contrasts ``C(g, Sum)``; string,
  boolean and pandas categorical columns are factors by themselves;
- ``offset(x)`` (only in :func:`qaggstats.rq`): added to the linear predictor with coefficient 1.

Nothing else runs: each term is checked before evaluation (only the names above, data columns
and literal numbers or strings; no attribute access beyond ``np.<function>``), so a formula
cannot import modules or reach interpreter internals. A disallowed term raises
:class:`~qaggstats.errors.FormulaError` naming it; an unknown function names the nearest
supported one and its R equivalent.

Design columns come in R's order (intercept, then terms by interaction order, each order in
formula order) with R's labels (``FormulaSpec.column_names``):

==============================  ====================================
term                            labels
==============================  ====================================
intercept                       ``(Intercept)``
numeric ``x``, ``log(x)``       ``x``, ``log(x)``
``I(x^2)``                      ``I(x^2)``
``poly(x, 2)``                  ``poly(x, 2)1``, ``poly(x, 2)2``
``bs(x, df = 4)``               ``bs(x, df = 4)1`` … ``bs(x, df = 4)4``
``ns(z, df = 3)``               ``ns(z, df = 3)1`` … ``ns(z, df = 3)3``
string column ``g`` (a, b, c)   ``gb``, ``gc``
``factor(k)`` (k in 1, 2, 3)    ``factor(k)2``, ``factor(k)3``
``relevel(g, "b")``             ``relevel(g, "b")a``, ``relevel(g, "b")c``
boolean ``b``, ``I(x > 2)``     ``bTRUE``, ``I(x > 2)TRUE``
interaction ``x:g``             ``x:gb``, ``x:gc`` (factors in the order written)
``Q("odd name")``               ```odd name```
==============================  ====================================

patsy's own names stay available as ``FormulaSpec.patsy_names``.

Splines extrapolate outside the training range as R does (``bs``: end polynomial pieces; ``ns``:
linear), with an :class:`ExtrapolationWarning` and a line in ``FormulaSpec.notes``;
``extrapolate="error"`` refuses such rows instead.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, None], "x": [1.0, 2.0, 3.0, 4.0],
...                    "g": ["a", "b", "a", "b"]})
>>> fr = model_frames({"m": "y ~ ."}, df)
>>> fr.specs["m"].column_names, fr.na.n_dropped
(['(Intercept)', 'x', 'gb'], 1)
>>> fr.specs["m"].design(pd.DataFrame({"x": [5.0], "g": ["b"]})).tolist()
[[1.0, 5.0, 1.0]]
"""
from __future__ import annotations

import ast
import difflib
import itertools
import keyword
import math
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

import numpy as np
import pandas as pd
import patsy
from patsy.infix_parser import ParseNode
from patsy.parse_formula import parse_formula

from . import transforms
from .errors import DataError, FormulaError

__all__ = ["FormulaSpec", "NAReport", "Frames", "model_frames", "design_newdata", "expand_dot",
           "used_columns", "ExtrapolationWarning", "SUPPORTED_FUNCTIONS"]

Extrapolate = Literal["warn", "error"]


class ExtrapolationWarning(UserWarning):
    """New data outside the training range of a spline: the basis is extrapolated (as R does)."""


def _log(x: Any, base: Optional[float] = None) -> Any:
    """R's ``log(x, base)``."""
    return np.log(x) if base is None else np.log(x) / np.log(base)


def _round(x: Any, digits: int = 0) -> Any:
    return np.round(x, digits)


def _offset(x: Any) -> Any:
    # offsets are taken out of the design before patsy sees the formula; this only serves
    # FormulaSpec.offset_of, which evaluates the argument
    return x


# Every function a formula may call, with what an R user knows it as. Keys are what the formula
# writes; values are (callable or None for patsy's built-in, R equivalent).
_MATH: dict[str, Any] = {
    "log": _log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "exp": np.exp,
    "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs, "sign": np.sign, "sin": np.sin,
    "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "floor": np.floor, "ceiling": np.ceil,
    "trunc": np.trunc, "round": _round, "pmin": np.minimum, "pmax": np.maximum,
}
_NAMESPACE: dict[str, Any] = {
    **_MATH, "poly": transforms.poly, "bs": transforms.bs, "ns": transforms.ns,
    "cr": transforms.cr, "cc": transforms.cc, "factor": transforms.factor,
    "relevel": transforms.relevel, "offset": _offset, "pi": np.pi, "np": np, "numpy": np,
}
# patsy built-ins a formula may use (they resolve through patsy's own namespace)
_PATSY = {"I", "Q", "C", "te", "center", "standardize", "scale", "Treatment", "Sum", "Poly",
          "Helmert", "Diff"}
SUPPORTED_FUNCTIONS: dict[str, str] = {
    **{name: f"R's {name}()" for name in _MATH},
    "poly": "R's poly() (orthogonal; raw = TRUE for raw powers)",
    "bs": "R's splines::bs()", "ns": "R's splines::ns()",
    "cr": "mgcv's s(x, bs = \"cr\", k = df)", "cc": "mgcv's s(x, bs = \"cc\", k = df)",
    "te": "mgcv's te()", "factor": "R's factor()", "relevel": "R's relevel()",
    "offset": "R's offset() (rq only)", "I": "R's I()", "Q": "R's `backquoted name`",
    "C": "R's factor() with contrasts (C(g, Sum) ~ contr.sum)", "center": "R's scale(x, scale = FALSE)",
    "standardize": "R's scale()", "scale": "R's scale()", "Treatment": "R's contr.treatment",
    "Sum": "R's contr.sum", "Poly": "R's contr.poly (for ordered factors; poly() for polynomials)",
    "Helmert": "R's contr.helmert", "Diff": "MASS::contr.sdif",
}
# R functions users reach for, and what to write instead
_R_ALTERNATIVES = {
    "s": "cr(x, df = k) (mgcv's s(x, bs = \"cr\", k = k))", "lo": "ns(x, df = k) or cr(x, df = k)",
    "as.factor": "factor(x)", "as_factor": "factor(x)", "as.numeric": "the numeric column itself",
    "as.integer": "floor(x) or trunc(x)", "ordered": "C(x, Poly)",
    "interaction": "a:b", "cut": "a column cut beforehand with pandas.cut, then factor(x)",
    "scale": "standardize(x)", "exp1": "exp(x)", "sqr": "I(x^2)", "square": "I(x^2)",
    "ln": "log(x)", "ifelse": "I(x > c) (a 0/1 indicator)", "pow": "I(x^k)",
}
_NP_FUNCTIONS = {
    "log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "absolute", "sign", "sin",
    "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "floor", "ceil", "trunc",
    "round", "minimum", "maximum", "square", "power", "clip", "where", "cbrt", "reciprocal",
}
_NP_CONSTANTS = {"pi", "e"}
_SPLINES = {"bs", "ns", "cr", "cc", "te"}
_CONTRASTS = {"Treatment", "Sum", "Poly", "Helmert", "Diff"}
_FACTORS = {"factor", "C", "relevel"}
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv, ast.USub,
              ast.UAdd, ast.Not, ast.Invert, ast.BitAnd, ast.BitOr, ast.And, ast.Or, ast.Gt,
              ast.GtE, ast.Lt, ast.LtE, ast.Eq, ast.NotEq)
_NODES = (ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp,
          ast.Compare, ast.BoolOp, ast.keyword, ast.List, ast.Tuple, ast.Attribute) + _OPERATORS
_DOT = re.compile(r"(?<![\w.\"'])\.(?![\w.\"'])")
_STRING = re.compile(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_BACKQUOTE = re.compile(r"`([^`]*)`")
# quoted strings and backquoted names (split() keeps them at the odd positions)
_LITERAL = re.compile(r"(`[^`]*`|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")


def _quote(name: str) -> str:
    """A column name as a formula term: bare when an identifier Python reads unchanged, else ``Q("...")``.

    Python folds identifiers to Unicode NFKC (``ﬁ`` → ``fi``, a decomposed ``é`` → ``é``), so a
    name that NFKC changes is quoted, or it would be read as another column.
    """
    if name.isidentifier() and not keyword.iskeyword(name) and unicodedata.normalize("NFKC", name) == name:
        return name
    return "Q(" + repr(name) + ")"


def _is_word_char(c: str) -> bool:
    # letters, digits, marks (a decomposed accent is a combining mark) and the underscore
    return c == "_" or unicodedata.category(c)[0] in "LMN"


def _quote_unnormalised(code: str) -> str:
    """Bare words that Unicode NFKC changes, as ``Q('word')`` (see :func:`_quote`)."""
    if code.isascii():
        return code
    out, i = [], 0
    while i < len(code):
        if not _is_word_char(code[i]):
            out.append(code[i])
            i += 1
            continue
        j = i
        while j < len(code) and _is_word_char(code[j]):
            j += 1
        word = code[i:j]
        out.append(word if word.isascii() or unicodedata.normalize("NFKC", word) == word
                   else "Q(" + repr(word) + ")")
        i = j
    return "".join(out)


def to_patsy(formula: str) -> str:
    """R formula syntax as patsy reads it: ``^`` → ``**``, ``TRUE``/``FALSE``, backquotes → ``Q()``.

    String literals are left alone; a bare name that Unicode NFKC changes (``ﬁ``) is quoted, as
    Python would otherwise read it as another name (``fi``).

    Examples
    --------
    >>> to_patsy("log(y) ~ (a + `b c`)^2 + I(x^2) + poly(x, 2, raw = TRUE) + relevel(g, 'x^2')")
    "log(y) ~ (a + Q('b c'))**2 + I(x**2) + poly(x, 2, raw = True) + relevel(g, 'x^2')"
    >>> to_patsy("y ~ \ufb01")
    "y ~ Q('\ufb01')"
    """
    parts = _STRING.split(_BACKQUOTE.sub(lambda m: "Q(" + repr(m.group(1)) + ")", formula))
    for i in range(0, len(parts), 2):  # even pieces lie outside string literals
        code = _quote_unnormalised(parts[i]).replace("^", "**")
        parts[i] = re.sub(r"\bTRUE\b", "True", re.sub(r"\bFALSE\b", "False", code))
    return "".join(parts)


def _balanced_sum(terms: list[str], group: int = 32) -> str:
    """``a + b + ...`` nested in parenthesised groups of ``group``: the same terms, but a parse
    depth that grows with log(len(terms)) (patsy evaluates a flat sum recursively)."""
    while len(terms) > group:
        terms = ["(" + " + ".join(terms[i:i + group]) + ")" for i in range(0, len(terms), group)]
    return " + ".join(terms)


def expand_dot(formula: str, columns: list[str]) -> str:
    """Replace R's ``.`` on the right-hand side by every column not used on the left.

    The expansion is parenthesised where an operator binds it (``.^2`` is every two-way
    interaction, as in R). Dots inside quoted or backquoted names are names, not R's ``.``.

    Examples
    --------
    >>> expand_dot("y ~ . - z", ["y", "x 1", "z"])
    "y ~ Q('x 1') + z - z"
    >>> expand_dot("y ~ .^2", ["y", "a", "b"])
    'y ~ (a + b)^2'
    """
    check_formula_size(formula)
    lhs, rhs = _split(formula)
    parts = _LITERAL.split(rhs)
    if not any(_DOT.search(parts[i]) for i in range(0, len(parts), 2)):
        return formula
    used = _analyse_code(to_patsy(lhs), set(columns)).used if lhs else set()
    others = [c for c in columns if c not in used]
    if not others:
        raise FormulaError(f"formula {_shown(formula)}: '.' expands to no columns (data has only {columns})")
    expansion = _balanced_sum([_quote(c) for c in others])
    for i in range(0, len(parts), 2):  # even pieces lie outside quotes and backquotes
        code, pieces, start = parts[i], [], 0
        for m in _DOT.finditer(code):
            # a quoted name beside the dot counts as an operand ("x")
            before = code[:m.start()].rstrip()[-1:] or ("x" if i else "")
            after = code[m.end():].lstrip()[:1] or ("x" if i + 1 < len(parts) else "")
            alone = before in ("", "+", "-") and after in ("", "+", "-")
            pieces += [code[start:m.start()], expansion if alone or len(others) == 1 else f"({expansion})"]
            start = m.end()
        parts[i] = "".join(pieces) + code[start:]
    rhs = "".join(parts)
    return f"{lhs} ~ {rhs}" if lhs else f"~ {rhs}"


# --------------------------------------------------------------------------- limits
#: The longest formula accepted, in characters (as written, before ``.`` expands).
MAX_FORMULA_CHARS = 100_000
#: The most terms a formula may expand to (after ``.``, ``*`` and ``^``; counted before patsy
#: builds them).
MAX_TERMS = 10_000
#: The deepest nesting of parentheses, calls and operators in one formula term.
MAX_DEPTH = 100
#: The most levels a factor may have (a one-hot design holds a dense column per level; the
#: base learners need dense designs). Raise it deliberately if memory and time allow.
MAX_FACTOR_LEVELS = 500
#: The largest training design, in cells (rows × columns; 8 bytes each): 2e8 cells are 1.6 GB.
MAX_DESIGN_CELLS = 200_000_000


def _shown(formula: str, limit: int = 200) -> str:
    """A formula for a message: quoted, and cut after ``limit`` characters."""
    text = repr(formula)
    return text if len(text) <= limit else text[:limit] + f"... ({len(formula):,} characters)"


def check_formula_size(formula: Any) -> None:
    """Refuse a formula longer than :data:`MAX_FORMULA_CHARS` or nested deeper than
    :data:`MAX_DEPTH` (parentheses, or a chain of signs such as ``- - - x``), before any parser
    sees it: parsing memory and recursion then stay bounded.

    Examples
    --------
    >>> check_formula_size("y ~ I(" + "-" * 500 + "x)")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qaggstats.errors.FormulaError: formula 'y ~ I(---... nests 500 levels deep (a chain of signs); the limit is 100: simplify the term
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    if len(formula) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula {_shown(formula, 60)} is longer than the limit of {MAX_FORMULA_CHARS:,} "
                           "characters; use y ~ . (every other column) or fewer terms")
    depth = run = deepest = longest = 0
    parts = _LITERAL.split(formula)
    for i in range(0, len(parts), 2):
        for c in parts[i]:
            if c in "([{":
                depth += 1
                deepest = max(deepest, depth)
            elif c in ")]}":
                depth -= 1
            if c in "+-~!":
                run += 1
                longest = max(longest, run)
            elif not c.isspace():
                run = 0
    for n, what in ((deepest, "parentheses"), (longest, "a chain of signs")):
        if n > MAX_DEPTH:
            raise FormulaError(f"formula {_shown(formula, 40)} nests {n} levels deep ({what}); "
                               f"the limit is {MAX_DEPTH}: simplify the term")


def _split(formula: str) -> tuple[str, str]:
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise FormulaError(f"formula {formula!r} must be a string with exactly one '~'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not rhs:
        raise FormulaError(f"formula {formula!r} has an empty right-hand side")
    return lhs, rhs


def _desc(side: str) -> patsy.ModelDesc:
    """patsy's parse of one (patsy-syntax) formula side.

    The parse tree is checked before patsy evaluates it: at most :data:`MAX_TERMS` terms (an
    upper bound counted on the tree, so ``(a + ... + z)^20`` is refused before patsy would
    enumerate millions of interactions) and :data:`MAX_DEPTH` levels; long sums are regrouped
    into a balanced tree of the same terms (patsy evaluates ``a + b + ...`` recursively, which
    failed at about 800 terms).
    """
    try:
        tree = parse_formula(side)
    except patsy.PatsyError as err:
        raise FormulaError(f"cannot parse formula side {_shown(side)}: {err}") from err
    tree, bound = _rebalance(tree, 0, side)
    if bound > MAX_TERMS:
        raise FormulaError(f"formula side {_shown(side)} expands to up to {bound:,} terms; the limit is "
                           f"{MAX_TERMS:,}: use fewer columns or lower the interaction order")
    try:
        return patsy.ModelDesc.from_formula(tree)
    except patsy.PatsyError as err:
        raise FormulaError(f"cannot parse formula side {_shown(side)}: {err}") from err


def _rebalance(node: ParseNode, depth: int, side: str) -> tuple[ParseNode, int]:
    """(the tree with runs of ``+`` balanced, an upper bound on its number of terms)."""
    if depth > MAX_DEPTH:
        raise FormulaError(f"formula side {_shown(side)} nests more than {MAX_DEPTH} levels deep; "
                           "simplify it")
    if node.type in ("+", "-") and len(node.args) == 2:
        spine = []
        while node.type in ("+", "-") and len(node.args) == 2:  # the left-associated chain
            spine.append(node)
            node = node.args[0]
        result, bound = _rebalance(node, depth + 1, side)
        run: list[ParseNode] = []
        # '+' is associative for patsy (terms unite in order; the intercept follows the last
        # operand that sets it), except that '+ 0' and '-' act on everything to their left:
        # those stay in place and the runs of plain '+' operands between them are balanced
        for op in reversed(spine):
            right, b = _rebalance(op.args[1], depth + 1, side)
            if op.type == "+" and right.type != "ZERO":
                run.append(right)
                bound += b
                continue
            result = _join(result, run, op)
            run = []
            result = ParseNode(op.type, op.token, [result, right], op.origin)
        return _join(result, run, spine[0]), bound
    args, bounds = [], []
    for arg in node.args:
        a, b = _rebalance(arg, depth + 1, side)
        args.append(a)
        bounds.append(b)
    node = ParseNode(node.type, node.token, args, node.origin)
    if node.type == "PYTHON_EXPR":
        return node, 1
    if node.type in ("ZERO", "ONE", "NUMBER") or not bounds:
        return node, 0
    if node.type == "~" or len(bounds) == 1:  # the right-hand side; a sign
        return node, bounds[-1]
    a, b = bounds
    if node.type == ":":
        return node, min(a * b, _HUGE)
    if node.type == "**":
        k = int(float(node.args[1].token.extra)) if node.args[1].type == "NUMBER" else a
        return node, min(sum(math.comb(a, j) for j in range(1, min(k, a, 64) + 1)) if a <= 10**6 else _HUGE,
                         _HUGE)
    return node, min(a + b + a * b, _HUGE)  # '*', '/' and '%in%' give at most this many


_HUGE = 10**18


def _join(left: ParseNode, run: list[ParseNode], op: ParseNode) -> ParseNode:
    """``left + (balanced sum of run)``."""
    if not run:
        return left
    while len(run) > 1:
        run = [ParseNode("+", op.token, run[i:i + 2], op.origin) if i + 1 < len(run) else run[i]
               for i in range(0, len(run), 2)]
    return ParseNode("+", op.token, [left, run[0]], op.origin)


@dataclass
class _Uses:
    """What one piece of formula code uses: columns, columns inside splines or factor()."""

    used: set = field(default_factory=set)
    spline: set = field(default_factory=set)
    factor: set = field(default_factory=set)

    def update(self, other: "_Uses") -> None:
        self.used |= other.used
        self.spline |= other.spline
        self.factor |= other.factor


def _unknown_function(name: str, code: str) -> FormulaError:
    if name in _CONTRASTS:
        lower = "; for polynomials of a number write poly(x, 2) (R's poly)" if name == "Poly" else ""
        return FormulaError(f"{name!r} in formula term {code!r} is a contrast: write C(g, {name}) "
                            f"for a factor g{lower}")
    known = sorted(SUPPORTED_FUNCTIONS)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    close += [k for k in known if k.lower() == name.lower() and k not in close]
    if name in _R_ALTERNATIVES:
        hint = f"; write {_R_ALTERNATIVES[name]}"
    elif close:
        hint = f"; did you mean {close[0]}() ({SUPPORTED_FUNCTIONS[close[0]]})?"
    else:
        hint = ""
    return FormulaError(f"unknown function {name!r} in formula term {code!r}{hint}; supported: "
                        f"{', '.join(known)}")


def _column_arg(node: ast.AST, columns: set[str]) -> Optional[str]:
    """The data column a call argument names directly (``x`` or ``Q("x")``), else None."""
    if isinstance(node, ast.Name) and node.id in columns:
        return node.id
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Q"
            and node.args and isinstance(node.args[0], ast.Constant)):
        return str(node.args[0].value)
    return None


def _analyse_code(code: str, columns: set[str]) -> _Uses:
    """Check one Python expression of a formula and return the columns it uses.

    Only calls of supported functions, data columns, literal numbers and strings (as call
    arguments) and arithmetic pass; anything else (attribute access beyond ``np.<ufunc>``,
    subscripts, lambdas, unknown names) raises FormulaError naming the term.
    """
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError as err:
        dotted = re.search(r"(?<![\w.])((?!np\.|numpy\.)[A-Za-z]\w*\.[\w.]+)\s*\(", code)
        if dotted:  # an R function such as as.factor(g) (``as`` is a Python keyword)
            raise _unknown_function(dotted.group(1), code) from None
        raise FormulaError(f"cannot parse formula term {_shown(code)}: {err.msg}") from err
    except (RecursionError, MemoryError):  # Python's parser gives up on very deep expressions
        raise FormulaError(f"formula term {_shown(code)} nests more than {MAX_DEPTH} levels deep; "
                           "split it into several terms or compute the column beforehand") from None
    _check_depth(tree, code)
    uses = _Uses()
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise FormulaError(f"formula term {code!r} uses {type(node).__name__} syntax, which "
                               "formulas do not allow (only columns, numbers, arithmetic and "
                               "supported functions)")
        parent = parents.get(id(node))
        if isinstance(node, ast.Call):
            if any(isinstance(k, ast.keyword) and k.arg is None for k in node.keywords):
                raise FormulaError(f"formula term {code!r}: '**' arguments are not allowed")
            func = node.func
            if isinstance(func, ast.Name):
                name = func.id
                if name not in _NAMESPACE and name not in _PATSY:
                    raise _unknown_function(name, code)
                if name in _CONTRASTS:
                    holder = parents.get(id(parent)) if isinstance(parent, ast.keyword) else parent
                    if not (isinstance(holder, ast.Call) and isinstance(holder.func, ast.Name)
                            and holder.func.id == "C"):
                        raise _unknown_function(name, code)
                if name == "Q":
                    if not (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                            and isinstance(node.args[0].value, str)):
                        raise FormulaError(f"formula term {code!r}: Q() takes one quoted column name")
                    uses.used.add(_need_column(node.args[0].value, columns, code))
                if name in _SPLINES:
                    for arg in node.args:
                        for sub in ast.walk(arg):
                            col = _column_arg(sub, columns)
                            if col is not None:
                                uses.spline.add(col)
                if name in _FACTORS and node.args:
                    col = _column_arg(node.args[0], columns)
                    if col is not None:
                        uses.factor.add(col)
            elif not isinstance(func, ast.Attribute):
                raise FormulaError(f"formula term {code!r}: only named functions can be called")
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy")):
                if isinstance(node.value, ast.Name) and isinstance(parent, ast.Call) \
                        and parent.func is node and node.value.id not in columns:
                    # an R name with a dot, such as as.factor(g)
                    raise _unknown_function(f"{node.value.id}.{node.attr}", code)
                raise FormulaError(f"formula term {code!r}: attribute access "
                                   f"'.{node.attr}' is not allowed in formulas")
            called = isinstance(parent, ast.Call) and parent.func is node
            allowed = _NP_FUNCTIONS if called else _NP_CONSTANTS
            if node.attr not in allowed:
                if hasattr(np, node.attr):
                    raise FormulaError(f"np.{node.attr} in formula term {code!r} is not allowed in "
                                       f"formulas (allowed: np.{', np.'.join(sorted(allowed))})")
                close = difflib.get_close_matches(node.attr, sorted(_NP_FUNCTIONS), n=3)
                hint = f"; did you mean {', '.join('np.' + c for c in close)}?" if close else ""
                raise FormulaError(f"unknown function np.{node.attr} in formula term {code!r}{hint}")
        elif isinstance(node, ast.Name):
            is_np = isinstance(parent, ast.Attribute) and node.id in ("np", "numpy")
            is_func = isinstance(parent, ast.Call) and parent.func is node
            if node.id in columns and not is_func:
                uses.used.add(node.id)
            elif not (is_np or is_func or node.id == "pi" or node.id in _PATSY):
                _need_column(node.id, columns, code)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, (str, bytes)) and not isinstance(parent, (ast.Call, ast.keyword,
                                                                           ast.List, ast.Tuple)):
                raise FormulaError(f"formula term {code!r}: text literals are allowed only as "
                                   "function arguments (e.g. relevel(g, \"b\"))")
            if not isinstance(value, (str, int, float, bool, type(None))):
                raise FormulaError(f"formula term {code!r}: literal {value!r} is not allowed")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            # a power of literals is computed at once: keep it small (9**9**9 would hang)
            exponent = node.right
            if isinstance(exponent, ast.UnaryOp):
                exponent = exponent.operand
            if not isinstance(exponent, (ast.Constant, ast.Name)) or (
                    isinstance(exponent, ast.Constant) and not (
                        isinstance(exponent.value, (int, float)) and abs(exponent.value) <= 100)):
                raise FormulaError(f"formula term {code!r}: a power needs a number up to 100 or "
                                   "a column as exponent")
    return uses


def _check_depth(tree: ast.AST, code: str) -> None:
    """Refuse a term nested deeper than :data:`MAX_DEPTH` (such as ``I(x + x + ... + x)`` with
    thousands of operands), which the recursive steps after parsing could not handle."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FormulaError(f"formula term {_shown(code)} nests more than {MAX_DEPTH} levels deep; "
                               "split it into several terms or compute the column beforehand")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _need_column(name: str, columns: set[str], code: str) -> str:
    if name in columns:
        return name
    folded = unicodedata.normalize("NFKC", name)
    same = [c for c in sorted(columns) if unicodedata.normalize("NFKC", c) == folded]
    if same:  # the same letters in another Unicode form (e.g. typed on another system)
        raise FormulaError(f"formula term {_shown(code)} uses column {name!r}, which is not in the data; "
                           f"the data have {same[0]!r}, the same name in another Unicode form: write "
                           f"Q({same[0]!r}) or copy the name from df.columns")
    close = difflib.get_close_matches(name, sorted(columns), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise FormulaError(f"formula term {code!r} uses column {name!r}, which is not in the data{hint}")


@dataclass
class _Side:
    """One right-hand side: patsy terms in R order (offsets removed) and what they use."""

    desc: patsy.ModelDesc
    uses: _Uses
    offsets: list


def _analyse_rhs(rhs: str, columns: set[str]) -> _Side:
    desc = _desc(to_patsy(rhs))
    uses, terms, offsets = _Uses(), [], []
    for term in desc.rhs_termlist:
        for f in term.factors:
            uses.update(_analyse_code(f.code, columns))
        codes = [f.code for f in term.factors]
        if any(re.match(r"\s*offset\s*\(", c) for c in codes):
            if len(codes) != 1:
                raise FormulaError(f"offset() cannot enter an interaction: {term.name()!r}")
            offsets.append(codes[0])
        else:
            terms.append(term)
    # R's order: intercept, then main effects, two-way interactions, ... each in formula order
    terms.sort(key=lambda t: len(t.factors))
    return _Side(patsy.ModelDesc([], terms), uses, offsets)


def _analyse_lhs(lhs: str, columns: set[str]) -> _Uses:
    return _analyse_code("I(" + to_patsy(lhs) + ")", columns)


# --------------------------------------------------------------------------- R labels
_R_PRECEDENCE = {ast.Or: 1, ast.And: 2, ast.Not: 3, ast.Compare: 4, ast.Add: 5, ast.Sub: 5,
                 ast.Mult: 6, ast.Div: 6, ast.Mod: 6, ast.FloorDiv: 6, ast.USub: 7, ast.UAdd: 7,
                 ast.Pow: 8, ast.BitAnd: 2, ast.BitOr: 1, ast.Invert: 3}
_R_OPS = {ast.Add: " + ", ast.Sub: " - ", ast.Mult: " * ", ast.Div: "/", ast.Pow: "^",
          ast.Mod: " %% ", ast.FloorDiv: " %/% ", ast.BitAnd: " & ", ast.BitOr: " | ",
          ast.And: " && ", ast.Or: " || ", ast.Gt: " > ", ast.GtE: " >= ", ast.Lt: " < ",
          ast.LtE: " <= ", ast.Eq: " == ", ast.NotEq: " != ", ast.USub: "-", ast.UAdd: "+",
          ast.Not: "!", ast.Invert: "!"}


def _r_number(v: float) -> str:
    return "TRUE" if v is True else "FALSE" if v is False else f"{v:.15g}"


def _deparse(node: ast.AST) -> str:
    """R's ``deparse`` of a formula factor's code (spacing and operators as R prints them)."""
    def prec(n: ast.AST) -> int:
        if isinstance(n, (ast.BinOp, ast.UnaryOp, ast.BoolOp)):
            return _R_PRECEDENCE.get(type(n.op), 9)
        return 4 if isinstance(n, ast.Compare) else 10

    def wrap(child: ast.AST, parent_prec: int, strict: bool = False) -> str:
        text = _deparse(child)
        p = prec(child)
        return f"({text})" if p < parent_prec or (strict and p == parent_prec) else text

    if isinstance(node, ast.Expression):
        return _deparse(node.body)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id == "Q" and node.args:
            name = str(node.args[0].value)
            return name if re.fullmatch(r"(?!\.\d)[A-Za-z.][\w.]*", name) else f"`{name}`"
        args = [_deparse(a) for a in node.args] + [f"{k.arg} = {_deparse(k.value)}" for k in node.keywords]
        return f"{_deparse(node.func)}({', '.join(args)})"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_deparse(node.value)}.{node.attr}"
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "NULL" if node.value is None else _r_number(node.value)
    if isinstance(node, ast.BinOp):
        p = prec(node)
        right_assoc = isinstance(node.op, ast.Pow)
        return (wrap(node.left, p, strict=right_assoc) + _R_OPS[type(node.op)]
                + wrap(node.right, p, strict=not right_assoc))
    if isinstance(node, ast.UnaryOp):
        return _R_OPS[type(node.op)] + wrap(node.operand, prec(node))
    if isinstance(node, ast.BoolOp):
        return _R_OPS[type(node.op)].join(wrap(v, prec(node)) for v in node.values)
    if isinstance(node, ast.Compare):
        out = wrap(node.left, 5)
        for op, right in zip(node.ops, node.comparators):
            out += _R_OPS[type(op)] + wrap(right, 5)
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        return "c(" + ", ".join(_deparse(e) for e in node.elts) + ")"
    return ast.unparse(node)


def r_label(code: str) -> str:
    """R's label of one formula factor given as patsy code.

    Examples
    --------
    >>> r_label("bs(x, df=4)"), r_label("I(x ** 2)"), r_label("I((x + 1) / 2 > 3)")
    ('bs(x, df = 4)', 'I(x^2)', 'I((x + 1)/2 > 3)')
    """
    return _deparse(ast.parse(code.strip(), mode="eval"))


def _r_level(suffix: str) -> str:
    """A patsy column suffix (``[T.b]``, ``[b]``, ``[2]``) as R appends it to the factor label."""
    inner = suffix[1:-1] if suffix.startswith("[") and suffix.endswith("]") else suffix
    if inner.startswith("T."):
        inner = inner[2:]
    if inner in ("True", "False"):
        return inner.upper()
    try:
        value = float(inner)
    except ValueError:
        return inner
    return str(int(value)) if value.is_integer() and "." in inner else inner


def _r_names(info: patsy.DesignInfo) -> list[str]:
    """R labels of every design column, in patsy's column order (same iteration as patsy)."""
    labels: list[str] = []
    for term, subterms in info.term_codings.items():
        if not term.factors:
            labels.append("(Intercept)")
            continue
        for sub in subterms:
            per_factor = []
            for f in sub.factors:
                name = r_label(f.code)
                if f in sub.contrast_matrices:
                    per_factor.append([name + _r_level(s) for s in sub.contrast_matrices[f].column_suffixes])
                elif info.factor_infos[f].num_columns > 1:
                    per_factor.append([f"{name}{i + 1}" for i in range(info.factor_infos[f].num_columns)])
                else:
                    per_factor.append([name])
            # patsy (like R) lets the left-most factor vary fastest
            for combo in itertools.product(*reversed(per_factor)):
                labels.append(":".join(reversed(combo)))
    if len(labels) != len(info.column_names):  # pragma: no cover - patsy changed its layout
        return list(info.column_names)
    return labels


# --------------------------------------------------------------------------- column kinds
_NUMBER_TEXT = re.compile(r"^\s*[-+]?(\d{1,3}(,\d{3})+|\d*)(\.\d+)?([eE][-+]?\d+)?\s*$")


def _check_kind(s: pd.Series, as_factor: bool) -> None:
    """Refuse column types a formula would silently misread (datetimes, complex, numbers as text)."""
    dtype = s.dtype
    col = s.name
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        raise DataError(f"column {col!r} holds dates ({dtype}); a formula cannot use them directly: "
                        f"convert to a number, e.g. (df[{col!r}] - df[{col!r}].min()).dt.days, or "
                        f"to a categorical with df[{col!r}].astype(str)")
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise DataError(f"column {col!r} holds durations ({dtype}); convert to a number, e.g. "
                        f"df[{col!r}].dt.total_seconds()")
    if pd.api.types.is_complex_dtype(dtype):
        raise DataError(f"column {col!r} is complex; use its real and imaginary parts as two "
                        "real columns (np.real, np.imag)")
    if as_factor or pd.api.types.is_numeric_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return
    values = s.dropna()
    kinds = {type(v) for v in values}
    if any(issubclass(k, (pd.Timestamp, np.datetime64)) or k.__name__ in ("datetime", "date")
           for k in kinds):
        raise DataError(f"column {col!r} holds dates; convert to a number (e.g. days since a date) "
                        f"or to text with df[{col!r}].astype(str)")
    if any(issubclass(k, complex) for k in kinds):
        raise DataError(f"column {col!r} holds complex numbers; use real columns")
    text = values[[isinstance(v, str) for v in values]].astype(str)
    if len(text) and len(text) == len(values) and text.str.strip().ne("").all() \
            and text.map(lambda v: bool(_NUMBER_TEXT.match(v))).all():
        example = text.iloc[0]
        raise DataError(f"column {col!r} holds numbers stored as text (e.g. {example!r}); convert "
                        f"it with pd.to_numeric(df[{col!r}].str.replace(',', '')), or write "
                        f"factor({col}) if the values are codes of a categorical")


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
    dup = data.columns[data.columns.duplicated()].unique().tolist()
    if dup:
        raise DataError(f"{who}: duplicated column name(s) {dup}; rename them so each column "
                        "has one name (e.g. df.columns = [...])")
    return data


def _check_infinite(frame: pd.DataFrame, columns: list[str]) -> None:
    for col in columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) \
                and not pd.api.types.is_complex_dtype(s):
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
    columns used by the right-hand side), ``column_names`` (design columns with R's labels, in
    R's order), ``patsy_names`` (the same columns as patsy names them), ``categories``
    (column -> training levels), ``ranges`` (numeric column -> training (min, max)),
    ``spline_columns`` (columns inside ``bs()``/``ns()``/``cr()``/...), ``offsets`` (codes of
    ``offset()`` terms), ``extrapolate`` ("warn" or "error": spline inputs outside the training
    range), ``notes`` (extrapolation remarks from :meth:`design`).

    The transform state (knots, centring, polynomial coefficients, levels) is learnt once from the
    training rows; pickling keeps those rows and relearns the identical state on load, never
    from new data.

    Examples
    --------
    >>> import pickle, pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 3.0, 2.0, 5.0, 4.0], "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    >>> spec = FormulaSpec.from_data("y ~ bs(x, df=3)", df)
    >>> spec.column_names
    ['(Intercept)', 'bs(x, df = 3)1', 'bs(x, df = 3)2', 'bs(x, df = 3)3']
    >>> new = pd.DataFrame({"x": [1.5, 4.5]})
    >>> (pickle.loads(pickle.dumps(spec)).design(new) == spec.design(new)).all()
    np.True_
    """

    def __init__(self, formula: str, train: pd.DataFrame, extrapolate: Extrapolate = "warn") -> None:
        # ``train`` holds exactly the used columns over the NA-free training rows
        if extrapolate not in ("warn", "error"):
            raise DataError(f"extrapolate must be 'warn' or 'error', got {extrapolate!r}")
        self.formula = formula
        self.extrapolate = extrapolate
        self.notes: list[str] = []
        self.expanded = expand_dot(formula, list(train.columns))
        lhs, rhs = _split(self.expanded)
        names = set(train.columns)
        lhs_uses = _analyse_lhs(lhs, names) if lhs else _Uses()
        side = _analyse_rhs(rhs, names)
        self.response = lhs
        self._response_columns = [c for c in train.columns if c in lhs_uses.used]
        self.columns = [c for c in train.columns if c in side.uses.used]
        self.spline_columns = [c for c in self.columns if c in side.uses.spline]
        self.offsets = list(side.offsets)
        for col in self.columns:
            _check_kind(train[col], col in side.uses.factor)
        for col in self._response_columns:
            _check_kind(train[col], False)
        self.categories = {c: _levels(train[c]) for c in self.columns if _is_categorical(train[c])}
        self._bool_columns = [c for c in self.categories if pd.api.types.is_bool_dtype(train[c])]
        self.ranges = {c: (float(train[c].min()), float(train[c].max()))
                       for c in self.columns if c not in self.categories}
        # numeric columns used as factor(k): new values must be training levels
        self._factor_values = {c: np.unique(train[c].to_numpy(dtype=np.float64))
                               for c in self.columns if c in side.uses.factor and c not in self.categories}
        for col in self.spline_columns:
            if col in self.categories:
                raise FormulaError(f"spline of categorical column {col!r} in {self.expanded!r}")
        for col, n_levels in [(c, len(v)) for c, v in self.categories.items()] + [
                (c, v.size) for c, v in self._factor_values.items()]:
            if n_levels > MAX_FACTOR_LEVELS:
                raise DataError(
                    f"column {col!r} has {n_levels:,} levels, more than the limit of {MAX_FACTOR_LEVELS:,} "
                    f"for a factor in {_shown(self.expanded, 80)}: its design would hold one dense column "
                    f"per level. Lump rare levels into one (e.g. keep = df[{col!r}].value_counts().index[:50]; "
                    f"df[{col!r}] = df[{col!r}].where(df[{col!r}].isin(keep), 'other')), encode it as a "
                    "number, or raise qaggstats.formula.MAX_FACTOR_LEVELS if you have the memory and time")
        self._train = train
        frame = self._frame(train)
        try:
            # the design's layout and transform state only: the training matrix itself is built
            # once, by design(), after its size was checked
            self._info = patsy.design_matrix_builders([side.desc.rhs_termlist], lambda: iter([frame]),
                                                      _env(), NA_action="raise")[0]
        except patsy.PatsyError as err:
            raise FormulaError(f"formula {self.expanded!r}: {err}") from err
        # patsy groups categorical terms first; put the columns back in R's term order
        slices = self._info.term_slices
        self._perm = np.concatenate([np.empty(0, int)] + [
            np.arange(slices[t].start, slices[t].stop) for t in side.desc.rhs_termlist]).astype(int)
        self.patsy_names = [self._info.column_names[j] for j in self._perm]
        r_names = _r_names(self._info)
        self.column_names = [r_names[j] for j in self._perm]

    @classmethod
    def from_data(cls, formula: str, data: pd.DataFrame, extrapolate: Extrapolate = "warn") -> "FormulaSpec":
        """Learn the design of ``formula`` from ``data`` (rows with NA in used columns ignored)."""
        data = _check_data(data, f"formula {formula!r}")
        used = used_columns(formula, data)
        train = data[used].dropna()
        if train.shape[0] == 0:
            raise DataError(f"formula {formula!r}: no rows left after dropping missing values in {used}")
        return cls(formula, train, extrapolate)

    def __getstate__(self) -> dict:
        # patsy's DesignInfo does not pickle: keep formula + training values, rebuild on load
        return {"formula": self.formula, "train": self._train, "extrapolate": self.extrapolate}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["formula"], state["train"], state.get("extrapolate", "warn"))

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
        """Raise DataError naming a missing column, an unseen level or a wrongly typed column.

        Spline inputs outside the training range warn (:class:`ExtrapolationWarning`, recorded
        in ``notes``) or, with ``extrapolate="error"``, raise. Missing values are not errors
        here (callers drop those rows first).
        """
        missing = [c for c in self.columns if c not in data.columns]
        if missing:
            raise DataError(f"new data lack column(s) {missing} used by {self.expanded!r}")
        if isinstance(data.columns, pd.Index) and data.columns.duplicated().any():
            _check_data(data, "new data")
        _check_infinite(data, [c for c in self.columns if c not in self.categories])
        for col in self._bool_columns:
            s = data[col].dropna()
            if not (pd.api.types.is_bool_dtype(s) or all(isinstance(v, (bool, np.bool_)) for v in s)):
                raise DataError(f"column {col!r} was boolean (True/False) in training but new data "
                                f"hold {s.dtype} values such as {s.iloc[0]!r}; convert it, e.g. "
                                f"df[{col!r}] = df[{col!r}].map({{'True': True, 'False': False}})")
        for col, levels in self.categories.items():
            s = data[col].dropna()
            unseen = sorted({str(v) for v in s.unique()} - {str(v) for v in levels})
            if unseen:
                raise DataError(f"column {col!r} has level(s) {unseen} not seen in training "
                                f"(training levels: {list(levels)})")
        for col in self.ranges:
            if not pd.api.types.is_numeric_dtype(data[col]) or pd.api.types.is_bool_dtype(data[col]):
                raise DataError(f"column {col!r} must be numeric (as in training), got {data[col].dtype}")
        for col, values in self._factor_values.items():
            v = data[col].dropna().to_numpy(dtype=np.float64)
            unseen = np.setdiff1d(v, values)
            if unseen.size:
                raise DataError(f"column {col!r} (a factor in {self.expanded!r}) has level(s) "
                                f"{[f'{u:g}' for u in unseen[:5]]} not seen in training "
                                f"(training levels: {[f'{u:g}' for u in values[:20]]})")
        for col in self.spline_columns:
            lo, hi = self.ranges[col]
            v = data[col].dropna().to_numpy(dtype=np.float64)
            if v.size and (v.min() < lo or v.max() > hi):
                n_out = int(((v < lo) | (v > hi)).sum())
                msg = (f"column {col!r} enters a spline; {n_out} new value(s) in "
                       f"[{v.min():g}, {v.max():g}] fall outside the training range [{lo:g}, {hi:g}]")
                if self.extrapolate == "error":
                    raise DataError(msg + " (extrapolate='error'; use extrapolate='warn' to "
                                    "extrapolate the basis as R does)")
                note = msg + ": the spline basis is extrapolated (as R does)"
                if note not in self.notes:
                    self.notes.append(note)
                warnings.warn(note, ExtrapolationWarning, stacklevel=3)

    def design(self, data: pd.DataFrame) -> np.ndarray:
        """Design matrix ``(m, d)`` of ``data`` with the training knots, centring and levels.

        Raises DataError naming a missing column, an unseen level, a wrongly typed column or a
        missing value (and, with ``extrapolate="error"``, a spline input out of range).
        """
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        self.check_newdata(data)
        na = {c: int(data[c].isna().sum()) for c in self.columns if data[c].isna().any()}
        if na:
            raise DataError(f"missing values in column(s) {na} used by {self.expanded!r}")
        if data.shape[0] == 0:
            return np.empty((0, len(self.column_names)))
        try:
            (X,) = patsy.build_design_matrices([self._info], self._frame(data), NA_action="raise")
        except patsy.PatsyError as err:
            raise DataError(f"cannot build the design of {self.expanded!r} on new data: {err}") from err
        return np.asarray(X, dtype=np.float64)[:, self._perm]

    def offset_of(self, data: pd.DataFrame) -> np.ndarray:
        """Sum of the ``offset()`` terms on ``data`` ``(m,)`` (zeros without offsets)."""
        total = np.zeros(data.shape[0])
        if self.offsets:
            frame = self._frame(data)
            for code in self.offsets:
                v = patsy.dmatrix("0 + I(" + code + ")", frame, eval_env=_env(), NA_action="raise")
                total += np.asarray(v, dtype=np.float64)[:, 0]
        return total

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
            Y = patsy.dmatrix("0 + I(" + to_patsy(self.response) + ")", frame, eval_env=_env(),
                              NA_action="raise")
        except patsy.PatsyError as err:
            raise DataError(f"cannot evaluate response {self.response!r}: {err}") from err
        return np.asarray(Y, dtype=np.float64)[:, 0]


def _env() -> patsy.EvalEnvironment:
    return patsy.EvalEnvironment([_NAMESPACE])


def used_columns(formula: str, data: pd.DataFrame) -> list[str]:
    """Data columns a formula uses (both sides, after ``.`` expansion), in data order.

    Examples
    --------
    >>> used_columns("y ~ log(x) + factor(g)", pd.DataFrame(columns=["g", "x", "y", "z"]))
    ['g', 'x', 'y']
    """
    expanded = expand_dot(formula, list(data.columns))
    lhs, rhs = _split(expanded)
    names = set(data.columns)
    cols = (_analyse_lhs(lhs, names).used if lhs else set()) | _analyse_rhs(rhs, names).uses.used
    return [c for c in data.columns if c in cols]


def model_frames(formulas: Mapping[str, str], data: pd.DataFrame, na: str = "drop",
                 extrapolate: Extrapolate = "warn", allow_offset: bool = False) -> Frames:
    """Designs of several formulas on the same rows, sharing one response.

    Rows with a missing value in any column used by any formula (response included) are
    dropped and counted, or, with ``na="raise"``, reported in a DataError.

    Parameters
    ----------
    formulas : mapping name -> formula
        Every formula must have the same left-hand side.
    data : DataFrame
    na : {"drop", "raise"}
    extrapolate : {"warn", "error"}
        Spline inputs of new data outside the training range: extrapolate with a warning (R's
        behaviour) or raise DataError.
    allow_offset : bool
        Accept ``offset()`` terms (the caller then applies ``FormulaSpec.offset_of``); otherwise
        they raise FormulaError.

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
        _check_data(data, "model_frames")
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
    specs = {name: FormulaSpec(f, kept[used_columns(f, data)], extrapolate)
             for name, f in formulas.items()}
    if not allow_offset:
        for name, spec in specs.items():
            if spec.offsets:
                raise FormulaError(f"formula {name!r}: offset() terms ({', '.join(spec.offsets)}) "
                                   "are supported by rq only; subtract the offset from the response "
                                   "instead")
    first = next(iter(specs.values()))
    y = first.response_of(kept)
    notes = []
    if np.ptp(y) == 0:
        notes.append(f"the response {first.response!r} is constant ({y[0]:g}) on all {y.size} rows")
    report = NAReport(n_input=int(data.shape[0]), n_used=int(positions.size),
                      n_dropped=int(bad.sum()), by_column=by_column,
                      dropped_index=data.index[bad].tolist())
    for name, spec in specs.items():
        cells = kept.shape[0] * len(spec.column_names)
        if cells > MAX_DESIGN_CELLS:
            widest = max(spec.categories, key=lambda c: len(spec.categories[c]), default=None)
            hint = (f"; its widest factor is {widest!r} with {len(spec.categories[widest]):,} levels"
                    if widest is not None else "")
            raise DataError(f"the design of {name!r} would be {kept.shape[0]:,} rows × {len(spec.column_names):,} "
                            f"columns ({cells * 8 / 1e9:.1f} GB), more than the limit of "
                            f"{MAX_DESIGN_CELLS:,} cells{hint}: use fewer terms or levels, or fit on a "
                            "sample of the rows")
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
    with warnings.catch_warnings():
        # check_newdata above already warned once per spec about extrapolation
        warnings.simplefilter("ignore", ExtrapolationWarning)
        return {name: spec.design(rows) for name, spec in specs.items()}, ok
