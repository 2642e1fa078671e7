"""A small summary protocol (linearmodels style): text for consoles, HTML for notebooks.

Results classes implement ``summary()`` returning a :class:`Summary` (or any object with
``as_text()`` and ``as_html()``); :class:`SummaryMixin` then gives them ``__str__`` and
``_repr_html_``.

Examples
--------
>>> class Fit(SummaryMixin):
...     def summary(self):
...         return Summary([("Model", "a<b")], [])
>>> print(Fit())
Model: a<b
>>> "a&lt;b" in Fit()._repr_html_()
True
"""
from __future__ import annotations

import html
import textwrap
from typing import Any, Callable, Optional, Sequence

import pandas as pd

__all__ = ["Summary", "SummaryMixin", "format_pval", "format_weight", "WEIGHT_DECIMALS"]

WEIGHT_DECIMALS = 3


class Summary:
    """The one summary renderer: header lines (label, value), then titled sections, then notes.

    Two layouts share it: R's (``title=None``: ``label: value`` lines and plain tables, as
    ``summary.rq`` prints) and a boxed report (``title=...``: a centred title between rules,
    aligned labels, sections separated by rules, long lines wrapped to ``width``).

    Parameters
    ----------
    header : sequence of (label, value)
    tables : sequence of (title, DataFrame or sequence of str)
        Each section under its title ("" for none); a list of strings is printed as wrapped
        bullet lines (HTML: a list).
    footer : sequence of str
        Notes printed at the end.
    title : str, optional
        Boxed layout with this title.
    width : int
        Line width of the boxed layout.
    float_format : callable, optional
        Formats the floats of every table.
    """

    def __init__(self, header: Sequence[tuple[str, Any]], tables: Sequence[tuple[str, Any]],
                 footer: Sequence[str] = (), *, title: Optional[str] = None, width: int = 78,
                 float_format: Optional[Callable[[float], str]] = None) -> None:
        self.header = list(header)
        self.tables = list(tables)
        self.footer = list(footer)
        self.title = title
        self.width = width
        self.float_format = float_format

    def _table_text(self, table: pd.DataFrame) -> str:
        options = ["display.width", self.width, "display.max_columns", 50]
        if self.float_format is not None:
            options += ["display.float_format", self.float_format]
        with pd.option_context(*options):
            return table.to_string(index=not isinstance(table.index, pd.RangeIndex))

    def _lines_text(self, lines: Sequence[str]) -> list[str]:
        out: list[str] = []
        for line in lines:
            out += textwrap.wrap(str(line), self.width, initial_indent="  ", subsequent_indent="      ") or [""]
        return out

    def as_text(self) -> str:
        """Plain text, as printed in a console."""
        if self.title is None:
            lines = [f"{k}: {v}" for k, v in self.header]
            for title, body in self.tables:
                lines += ["", title] if title else [""]
                lines += [body.to_string()] if isinstance(body, pd.DataFrame) else [str(v) for v in body]
            if self.footer:
                lines += [""] + self.footer
            return "\n".join(lines)
        rule = self.width
        lines = [self.title.center(rule), "=" * rule]
        lines += [f"{k + ':':<24}{v}" for k, v in self.header]
        for title, body in self.tables:
            lines += ["-" * rule, title]
            lines += [self._table_text(body)] if isinstance(body, pd.DataFrame) else self._lines_text(body)
        if self.footer:
            lines += ["-" * rule] + self._lines_text(self.footer)
        lines.append("=" * rule)
        return "\n".join(lines)

    def as_html(self) -> str:
        """An HTML fragment with every value escaped."""
        parts = ["<div class='qagg-summary'>"]
        if self.title:
            parts.append(f"<h4>{html.escape(self.title)}</h4>")
        if self.header:
            parts.append("<table>" + "".join(
                f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                for k, v in self.header) + "</table>")
        for title, body in self.tables:
            if title:
                parts.append(f"<h5>{html.escape(title)}</h5>")
            if isinstance(body, pd.DataFrame):
                parts.append(body.to_html(escape=True, float_format=self.float_format))
            else:
                parts.append("<ul>" + "".join(f"<li>{html.escape(str(v))}</li>" for v in body) + "</ul>")
        parts += [f"<p>{html.escape(line)}</p>" for line in self.footer]
        parts.append("</div>")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.as_html()


class SummaryMixin:
    """Gives ``__str__`` and ``_repr_html_`` to a class defining ``summary()``."""

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()


def format_pval(p: float, digits: int = 3) -> str:
    """A p-value as R's ``format.pval`` prints it in coefficient tables (``< 2e-16`` at the floor).

    Examples
    --------
    >>> format_pval(0.012345), format_pval(3.1e-8), format_pval(1e-300)
    ('0.0123', '3.1e-08', '< 2e-16')
    """
    if p != p:  # NaN
        return "NA"
    eps = 2.220446049250313e-16  # R's .Machine$double.eps
    if p < eps:
        return "< 2e-16"
    return f"{p:.{digits}g}"


def format_weight(w: float, minus: str = "-") -> str:
    """An aggregation weight as every table and figure shows it: three decimals, an exact zero
    as ``0`` (a model the fit left out), a weight too small for three decimals as ``<0.001``.

    Parameters
    ----------
    w : float
    minus : str
        The minus sign (the reports use the true minus ``−``).

    Examples
    --------
    >>> format_weight(0.37612), format_weight(0.0), format_weight(0.0002), format_weight(-0.25)
    ('0.376', '0', '<0.001', '-0.250')
    """
    if w != w:  # NaN: no weight at this cell (e.g. a basis function absent at a level)
        return ""
    if w == 0:
        return "0"
    smallest = 10.0 ** -WEIGHT_DECIMALS
    if abs(w) < smallest / 2:
        return f"<{smallest:.{WEIGHT_DECIMALS}f}" if w > 0 else f">{minus}{smallest:.{WEIGHT_DECIMALS}f}"
    return f"{w:.{WEIGHT_DECIMALS}f}".replace("-", minus)
