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
from typing import Any, Sequence

import pandas as pd

__all__ = ["Summary", "SummaryMixin", "format_pval"]


class Summary:
    """Header lines (label, value) followed by titled tables.

    Parameters
    ----------
    header : sequence of (label, value)
        Shown as ``label: value`` lines.
    tables : sequence of (title, DataFrame)
        Each table is printed under its title ("" for none).
    footer : sequence of str
        Notes printed at the end.
    """

    def __init__(self, header: Sequence[tuple[str, Any]], tables: Sequence[tuple[str, pd.DataFrame]],
                 footer: Sequence[str] = ()) -> None:
        self.header = list(header)
        self.tables = list(tables)
        self.footer = list(footer)

    def as_text(self) -> str:
        """Plain text, as printed in a console."""
        lines = [f"{k}: {v}" for k, v in self.header]
        for title, table in self.tables:
            lines += ["", title] if title else [""]
            lines.append(table.to_string())
        if self.footer:
            lines += [""] + self.footer
        return "\n".join(lines)

    def as_html(self) -> str:
        """An HTML fragment with every value escaped."""
        parts = ["<div class='qagg-summary'>"]
        if self.header:
            parts.append("<table>" + "".join(
                f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                for k, v in self.header) + "</table>")
        for title, table in self.tables:
            if title:
                parts.append(f"<h4>{html.escape(title)}</h4>")
            parts.append(table.to_html(escape=True))
        parts += [f"<p>{html.escape(line)}</p>" for line in self.footer]
        parts.append("</div>")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()


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
