"""Embedded example data sets: small, classic, openly licensed, no download needed.

Each data set ships as a CSV file inside the package; :func:`load` reads it into a fresh
DataFrame (categorical columns as pandas categoricals with a fixed level order), and
:func:`describe` gives its size, response, source, licence and a suggested formula.
``README.md`` next to the files records the provenance of each.

Examples
--------
>>> from qaggstats import datasets
>>> datasets.names()
['concrete', 'engel', 'grunfeld']
>>> df = datasets.load("engel")
>>> df.shape
(235, 2)
>>> datasets.suggested_formula("engel")
'foodexp ~ income'
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Optional, Union

import pandas as pd

from ..errors import DataError

__all__ = ["load", "names", "describe", "suggested_formula"]


@dataclass(frozen=True)
class _Meta:
    """What is known about one embedded data set."""

    file: str
    title: str
    response: str
    formula: str
    source: str
    licence: str
    # column -> level order; the first level is the baseline of treatment contrasts
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()


_REGISTRY: dict[str, _Meta] = {
    "engel": _Meta(
        file="engel.csv",
        title="Engel food expenditure: 235 Belgian working-class households (1857)",
        response="foodexp",
        formula="foodexp ~ income",
        source=("Koenker and Bassett (1982), Econometrica 50, 43-61; as distributed with R's quantreg "
                "and statsmodels (statsmodels.datasets.engel)"),
        licence="public domain",
    ),
    "concrete": _Meta(
        file="concrete.csv",
        title="Concrete compressive strength (MPa) of 1030 mixtures, with age group (days)",
        response="strength",
        formula=("strength ~ cement + slag + ash + water + superplastic + coarse + fine + age "
                 "+ C(age_group)"),
        source=("Yeh (1998), Cement and Concrete Research 28(12), 1797-1808; UCI Machine Learning "
                "Repository, doi:10.24432/C5PK67"),
        licence="CC BY 4.0",
        categories=(("age_group", ("early", "standard", "late")),),
    ),
    "grunfeld": _Meta(
        file="grunfeld.csv",
        title="Grunfeld investment data: 11 US firms, 1935-1954 (spread grows with firm size)",
        response="invest",
        formula="invest ~ value + capital",
        source=("Grunfeld (1958) thesis data as recreated by Kleiber and Zeileis (2010), "
                "'The Grunfeld Data at 50', German Economic Review 11, 404-417; via "
                "statsmodels.datasets.grunfeld"),
        licence="public domain",
    ),
}


def names() -> list[str]:
    """Names of the embedded data sets, sorted.

    Examples
    --------
    >>> "engel" in names()
    True
    """
    return sorted(_REGISTRY)


def _meta(name: str) -> _Meta:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown data set {name!r}; available: {', '.join(names())}"
        ) from None


def load(name: str) -> pd.DataFrame:
    """Read an embedded data set into a new DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    pandas.DataFrame
        A fresh copy (changing it does not affect later loads). Categorical columns have a
        fixed level order, the first level being the baseline (as in R's factors).

    Raises
    ------
    DataError
        An unknown name; the message lists the available ones.

    Examples
    --------
    >>> df = load("concrete")
    >>> list(df["age_group"].cat.categories)
    ['early', 'standard', 'late']
    """
    meta = _meta(name)
    with files(__name__).joinpath(meta.file).open("r", encoding="utf-8") as handle:
        df = pd.read_csv(handle)
    for column, levels in meta.categories:
        df[column] = pd.Categorical(df[column], categories=list(levels))
    return df


def suggested_formula(name: str) -> str:
    """A formula that suits the data set for a first quantile regression.

    Examples
    --------
    >>> suggested_formula("grunfeld")
    'invest ~ value + capital'
    """
    return _meta(name).formula


def _row(name: str) -> dict[str, object]:
    meta = _meta(name)
    df = load(name)
    return {
        "name": name,
        "rows": len(df),
        "columns": ", ".join(df.columns),
        "response": meta.response,
        "formula": meta.formula,
        "title": meta.title,
        "source": meta.source,
        "licence": meta.licence,
    }


def describe(name: Optional[str] = None) -> Union[pd.DataFrame, str]:
    """Describe one embedded data set (text) or all of them (a table).

    Parameters
    ----------
    name : str, optional
        A data set name; None describes every data set.

    Returns
    -------
    str or pandas.DataFrame
        For one name, lines ``key: value``; for None, one row per data set with columns
        ``name, rows, columns, response, formula, title, source, licence``.

    Examples
    --------
    >>> describe()[["name", "rows", "licence"]].to_string(index=False).splitlines()[1]
    'concrete  1030 CC BY 4.0'
    >>> print(describe("engel").splitlines()[0])
    name: engel
    """
    if name is None:
        return pd.DataFrame([_row(n) for n in names()])
    return "\n".join(f"{key}: {value}" for key, value in _row(name).items())
