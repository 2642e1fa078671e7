"""Diagnostic figures for quantile models; every function returns a matplotlib Figure.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`), never
through ``pyplot``: nothing is drawn on a global figure, no backend is switched, and the
functions are safe in notebooks, servers and the report builder alike. Show a figure in a
notebook by displaying it, save it with ``fig.savefig(...)``, or embed it with
:func:`figure_to_svg` / :func:`figure_to_png_base64`.

Shapes: ``y (n,)`` outcomes, ``q (n, r)`` predicted quantiles at levels ``taus (r,)``
(strictly increasing, inside (0, 1)).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> taus = np.array([0.1, 0.5, 0.9])
>>> x = rng.uniform(0, 1, 200)
>>> y = x + rng.normal(0, 0.2, 200)
>>> q = x[:, None] + 0.2 * np.array([-1.2816, 0.0, 1.2816])
>>> fig = fan_chart(x, q, taus, y=y, xlabel="x")
>>> figure_to_svg(fig).startswith("<svg")
True
"""
from __future__ import annotations

import base64
import functools
import io
from collections.abc import Mapping, Sequence
from html import escape as html_escape
from typing import Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .errors import DataError
from .levels import validate_levels
from .scoring import binomial_band, central_pairs
from .summary import format_weight

__all__ = [
    "fan_chart",
    "partial_curves",
    "coef_plot",
    "weights_heatmap",
    "local_weights",
    "reliability_diagram",
    "pit_histogram",
    "conditional_coverage",
    "wis_decomposition",
    "crossing_plot",
    "figure_to_svg",
    "svg_image_tag",
    "figure_to_png_base64",
]

# A restrained palette (Okabe–Ito, colour-blind safe) and one sequential map for fans.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
_FAN_CMAP = "Blues"
_STYLE = {
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.edgecolor": "#555555",
    "font.family": "DejaVu Sans",
}
_WIDTH = 6.6  # inches: the text width of an A4 page with 2 cm margins


def _with_style(func):
    """Run a plot function inside ``rc_context(_STYLE)``: styled, yet global rcParams untouched."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(_STYLE):
            return func(*args, **kwargs)

    return wrapper


def _figure(nrows: int = 1, ncols: int = 1, height: float = 3.0, width: float = _WIDTH, **kw):
    """A new Figure (not registered with pyplot) and its 2-d array of axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _styled(ax) -> None:
    # Ticks are created lazily at draw time, after rc_context has ended; store their style on
    # the axes so a later savefig() draws them the same way.
    ax.tick_params(which="both", labelsize=_STYLE["xtick.labelsize"], color="#555555",
                   grid_color=_STYLE["grid.color"], grid_linewidth=_STYLE["grid.linewidth"])


def _label(text: object) -> str:
    """Text for matplotlib shown literally: '$' would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def number_text(value: float, significant: int = 4, signed: bool = False) -> str:
    """A number for a figure: ``significant`` digits without trailing zeros, thousands
    separators and no e-notation from 1 up, a true minus sign.

    Examples
    --------
    >>> number_text(28810.37), number_text(2.39152), number_text(1.0), number_text(-0.000123)
    ('28,810', '2.392', '1', '−0.000123')
    >>> number_text(0.0, signed=True), number_text(0.0123, signed=True), number_text(-2.3e-13)
    ('0', '+0.0123', '−2.3e-13')
    """
    v = float(value)
    if not np.isfinite(v):
        return "—"
    if v == 0:
        return "0"
    sign = "+" if signed else ""
    if abs(v) < 1:
        text = f"{v:{sign}.{significant}g}"
    else:
        decimals = max(0, significant - 1 - int(np.floor(np.log10(abs(v)))))
        text = f"{v:{sign},.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return "−" + text[1:] if text.startswith("-") else text  # a true minus sign (not in the exponent)


def _name(values: object, given: str | None) -> str | None:
    """An explicit label, else the name of a pandas Series (a column passed as is)."""
    if given is not None:
        return given
    name = getattr(values, "name", None)
    return None if name is None else str(name)


def _taus(taus: object, r: int) -> np.ndarray:
    t = np.asarray(taus, dtype=float).ravel()
    if t.size != r:
        raise DataError(f"taus has {t.size} levels but q has {r} columns")
    return validate_levels(t) if t.size else t


def _yq(y: object, q: object, taus: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q_a = np.asarray(q, dtype=float)
    if q_a.ndim != 2:
        raise DataError(f"q must be a 2-d array (n, r), got shape {q_a.shape}")
    y_a = np.asarray(y, dtype=float).ravel()
    if y_a.size != q_a.shape[0]:
        raise DataError(f"y has {y_a.size} rows but q has {q_a.shape[0]}")
    return y_a, q_a, _taus(taus, q_a.shape[1])


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``k`` successes in ``n`` trials (good at small n and near 0/1).

    Examples
    --------
    >>> lo, hi = wilson_interval(np.array([45]), np.array([50]))
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.786, 0.957)
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = k / n
    denom = 1.0 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # the interval contains p in exact arithmetic; rounding can put an end a few ulps past it
    # (upper end 1 - 1e-16 at k = n = 4), which error bars refuse as a negative length
    return np.minimum(centre - half, p), np.maximum(centre + half, p)


# --------------------------------------------------------------------------- predictions
@_with_style
def fan_chart(x: object | None, q: object, taus: object, y: object | None = None,
              xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
              smooth: int | Literal["auto"] = "auto") -> Figure:
    """Central prediction intervals as shaded bands, the median as a line, and observations.

    Parameters
    ----------
    x : array_like, shape (n,), or None
        Feature to plot along; rows are sorted by it. None orders rows by the predicted median
        (or the middle level), which shows the spread of any multivariate model.
    q : array_like, shape (n, r)
    taus : array_like, shape (r,)
    y : array_like, shape (n,), optional
        Observed outcomes, drawn as points.
    xlabel : str, optional
        Label of the x axis (e.g. the feature's column name); by default the name of ``x`` when
        it is a pandas Series, else "x" (or "predicted 0.5 quantile" when ``x`` is None).
    ylabel : str, optional
        Label of the y axis (e.g. the response's name); by default the name of ``y`` when it is
        a pandas Series, else "value".
    title : str, optional
    smooth : int or "auto"
        Draw the band edges as running medians over this many neighbouring rows (1: the rows'
        own quantiles). Rows next to each other in predicted-median order may differ in every
        other predictor, so their raw interval edges zigzag; the running median shows the
        typical interval at each predicted level. "auto" uses about n / 40 rows when ``x`` is
        None and 1 when it is given. The median line and the points are never smoothed.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> q = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    >>> fig = fan_chart(np.array([1.0, 0.0]), q, [0.1, 0.5, 0.9], y=[1.5, 0.5])
    >>> len(fig.axes[0].collections)  # one band and the observations
    2
    """
    xlabel, ylabel = _name(x, xlabel), _name(y, ylabel)
    q_a = np.asarray(q, dtype=float)
    t = _taus(taus, q_a.shape[1]) if q_a.ndim == 2 else _taus(taus, -1)
    mid = int(np.argmin(np.abs(t - 0.5)))
    if x is None:
        x_a = q_a[:, mid]
        xlabel = xlabel or f"predicted {t[mid]:g} quantile"
    else:
        x_a = np.asarray(x, dtype=float).ravel()
        if x_a.size != q_a.shape[0]:
            raise DataError(f"x has {x_a.size} rows but q has {q_a.shape[0]}")
    window = fan_window(q_a.shape[0], x is None) if smooth == "auto" else int(smooth)
    if window < 1:
        raise DataError(f"smooth must be a positive number of rows or 'auto', got {smooth!r}")
    order = np.argsort(x_a, kind="stable")
    xs, qs = x_a[order], q_a[order]
    edges = running_median(qs, window)
    fig, axes = _figure(height=3.0)
    ax = axes[0, 0]
    pairs = central_pairs(t)
    cmap = mpl.colormaps[_FAN_CMAP]
    for k, (lo, hi) in enumerate(pairs):
        shade = cmap(0.25 + 0.45 * (k + 1) / max(len(pairs), 1))
        ax.fill_between(xs, edges[:, lo], edges[:, hi], color=shade, linewidth=0,
                        label=f"{t[hi] - t[lo]:.0%} interval")
    ax.plot(xs, qs[:, mid], color="#08306b", linewidth=1.4, label=f"{t[mid]:g} quantile")
    if y is not None:
        y_a = np.asarray(y, dtype=float).ravel()[order]
        ax.scatter(xs, y_a, s=6, color="#222222", alpha=0.55, linewidths=0, label="observed", zorder=3)
    ax.set_xlabel(_label(xlabel or "x"))
    ax.set_ylabel(_label(ylabel or "value"))
    if title:
        ax.set_title(_label(title))
    legend_title = f"intervals: running median of {window} rows" if window > 1 else None
    ax.legend(loc="upper left", frameon=False, ncols=2, title=legend_title, title_fontsize=7.5,
              alignment="left")
    _styled(ax)
    return fig


@_with_style
def partial_curves(curves: Mapping[str, tuple[object, object]], taus: object, ylabel: str | None = None,
                   ncols: int = 3) -> Figure:
    """Predicted quantiles as one predictor varies while the others are held fixed.

    Parameters
    ----------
    curves : mapping of str to (x, q)
        For each predictor (panel title and x label), its grid ``x (m,)`` and the predicted
        quantiles ``q (m, r)`` at the grid points.
    taus : array_like, shape (r,)
    ylabel : str, optional
        Label of the shared y axis (e.g. the response's name); default "value".
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per predictor with shared y axis: central intervals shaded, median as a line.

    Examples
    --------
    >>> x = np.linspace(0, 1, 5)
    >>> q = x[:, None] + np.array([-1.0, 0.0, 1.0])
    >>> fig = partial_curves({"a": (x, q), "b": (x, 2 * q)}, [0.1, 0.5, 0.9], ylabel="y")
    >>> [ax.get_xlabel() for ax in fig.axes], fig.axes[0].get_ylabel()
    (['a', 'b'], 'y')
    """
    if not curves:
        raise DataError("partial_curves needs at least one (x, q) curve")
    items = [(str(name), np.asarray(x, dtype=float).ravel(), np.asarray(q, dtype=float))
             for name, (x, q) in curves.items()]
    t = _taus(taus, items[0][2].shape[1])
    for name, x_a, q_a in items:
        if q_a.shape != (x_a.size, t.size):
            raise DataError(f"curve {name!r}: q has shape {q_a.shape}, expected ({x_a.size}, {t.size})")
    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    fig, axes = _figure(nrows, ncols, height=2.3 * nrows, sharey=True)
    for ax in axes.ravel()[len(items):]:
        ax.set_visible(False)
    mid = int(np.argmin(np.abs(t - 0.5)))
    pairs = central_pairs(t)
    cmap = mpl.colormaps[_FAN_CMAP]
    for ax, (name, x_a, q_a) in zip(axes.ravel(), items):
        order = np.argsort(x_a, kind="stable")
        xs, qs = x_a[order], q_a[order]
        for k, (lo, hi) in enumerate(pairs):
            shade = cmap(0.25 + 0.45 * (k + 1) / max(len(pairs), 1))
            ax.fill_between(xs, qs[:, lo], qs[:, hi], color=shade, linewidth=0,
                            label=f"{t[hi] - t[lo]:.0%} interval")
        ax.plot(xs, qs[:, mid], color="#08306b", linewidth=1.4, label=f"{t[mid]:g} quantile")
        ax.set_xlabel(_label(name))
        _styled(ax)
    for row in axes:
        row[0].set_ylabel(_label(ylabel or "value"))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


def fan_window(n: int, by_prediction: bool) -> int:
    """The ``smooth="auto"`` window of :func:`fan_chart`: an odd ~n/40 rows (at least 5) when
    rows are ordered by prediction, else 1.

    Examples
    --------
    >>> fan_window(808, True), fan_window(100, True), fan_window(808, False)
    (21, 5, 1)
    """
    if not by_prediction:
        return 1
    return max(5, (n // 40) | 1)


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median down the rows of each column (edges: the nearest row repeated).

    Examples
    --------
    >>> running_median(np.array([[1.0], [9.0], [2.0], [3.0]]), 3).ravel()
    array([1., 2., 3., 3.])
    """
    if window <= 1 or values.shape[0] < 2:
        return values
    from scipy.ndimage import median_filter

    return median_filter(values, size=(min(window, values.shape[0]), 1), mode="nearest")


@_with_style
def coef_plot(coef_df: pd.DataFrame, ols: pd.DataFrame | None = None, ncols: int = 3) -> Figure:
    """Coefficients of linear quantile regressions across levels, like R's ``plot(summary(rq))``.

    Parameters
    ----------
    coef_df : DataFrame
        Columns ``tau``, ``term``, ``estimate``, ``lower``, ``upper`` (one row per level and term).
    ols : DataFrame, optional
        Columns ``term``, ``estimate`` and optionally ``lower``, ``upper``: the least-squares fit,
        drawn as R's ``plot(summary(rqs))`` does: a horizontal line at the estimate (dashed) and
        its confidence band (shaded between dotted bounds). ``RQResults.plot()`` computes it.
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per term, in the order the terms first appear.

    Examples
    --------
    >>> df = pd.DataFrame({"tau": [0.25, 0.75] * 2, "term": ["a", "a", "b", "b"],
    ...                    "estimate": [1, 2, 0, 0.5], "lower": [0.5, 1.5, -0.2, 0.2],
    ...                    "upper": [1.5, 2.5, 0.2, 0.8]})
    >>> [ax.get_title() for ax in coef_plot(df).axes]
    ['a', 'b']
    """
    need = {"tau", "term", "estimate", "lower", "upper"}
    missing = need - set(coef_df.columns)
    if missing:
        raise DataError(f"coef_df lacks column(s): {', '.join(sorted(missing))}")
    terms = list(dict.fromkeys(coef_df["term"]))
    ncols = max(1, min(ncols, len(terms)))
    nrows = -(-len(terms) // ncols)
    fig, axes = _figure(nrows, ncols, height=2.5 * nrows)
    ols_rows = ols.set_index("term") if ols is not None else None
    for ax in axes.ravel()[len(terms):]:
        ax.set_visible(False)
    for ax, term in zip(axes.ravel(), terms):
        d = coef_df[coef_df["term"] == term].sort_values("tau")
        ax.fill_between(d["tau"], d["lower"], d["upper"], color="#c6dbef", linewidth=0, label="confidence band")
        ax.plot(d["tau"], d["estimate"], "o-", color=PALETTE[0], markersize=3, linewidth=1.2, label="quantile regression")
        ax.axhline(0.0, color="#888888", linewidth=0.7)
        if ols_rows is not None and term in ols_rows.index:
            row = ols_rows.loc[term]
            ax.axhline(row["estimate"], color=PALETTE[1], linestyle="--", linewidth=1.0, label="least squares")
            if {"lower", "upper"} <= set(ols_rows.columns):
                ax.axhspan(row["lower"], row["upper"], color=PALETTE[1], alpha=0.12, linewidth=0,
                           label="least-squares band")
                for bound in (row["lower"], row["upper"]):
                    ax.axhline(bound, color=PALETTE[1], linestyle=":", linewidth=0.8)
        ax.set_title(_label(term))
        ax.set_xlabel("τ")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))  # a few readable ticks in a small panel
        _styled(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


# --------------------------------------------------------------------------- weights
@_with_style
def weights_heatmap(weights_df: pd.DataFrame, annotate: bool = True) -> Figure:
    """Aggregation weights as an annotated heat map: models (rows) by quantile level (columns).

    Parameters
    ----------
    weights_df : DataFrame
        Tidy weights: ``model``, ``tau``, ``weight``; or, for local weights, ``model``, ``tau``,
        ``basis``, ``coef`` (rows become ``model · basis``).
    annotate : bool
        Write each value in its cell.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> w = pd.DataFrame({"model": ["a", "b", "a", "b"], "tau": [0.1, 0.1, 0.9, 0.9],
    ...                   "weight": [0.7, 0.3, 0.2, 0.8]})
    >>> fig = weights_heatmap(w)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['a', 'b']
    """
    table, value = _weights_matrix(weights_df)
    n_rows, n_cols = table.shape
    fig, axes = _figure(height=min(0.9 + 0.32 * n_rows, 6.0))
    ax = axes[0, 0]
    vals = table.to_numpy(dtype=float)
    if value == "weight" and np.nanmin(vals) >= 0:
        im = ax.imshow(vals, cmap="Blues", vmin=0.0, vmax=max(1.0, float(np.nanmax(vals))), aspect="auto")
    else:
        bound = float(np.nanmax(np.abs(vals))) or 1.0
        im = ax.imshow(vals, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(n_cols), [f"{t:g}" for t in table.columns])
    ax.set_yticks(range(n_rows), [_label(i) for i in table.index])
    ax.set_xlabel("quantile level τ")
    ax.tick_params(length=0)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    if annotate:
        norm = im.norm
        for i in range(n_rows):
            for j in range(n_cols):
                v = vals[i, j]
                if np.isfinite(v):
                    dark = abs(norm(v) - 0.5) > 0.3 if value != "weight" else norm(v) > 0.55
                    ax.text(j, i, format_weight(float(v), minus="−"), ha="center", va="center", fontsize=7.5,
                            color="white" if dark else "#222222")
    # No colour-bar label: the cells are annotated and the caption names the quantity.
    fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    _styled(ax)
    return fig


def _weights_matrix(weights_df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    cols = set(weights_df.columns)
    if {"model", "tau", "weight"} <= cols:
        index, value = "model", "weight"
    elif {"model", "tau", "basis", "coef"} <= cols:
        weights_df = weights_df.assign(row=weights_df["model"].astype(str) + " · " + weights_df["basis"].astype(str))
        index, value = "row", "coef"
    else:
        raise DataError("weights_df needs columns model, tau, weight (or model, tau, basis, coef); "
                        f"got {', '.join(map(str, weights_df.columns))}")
    table = weights_df.pivot_table(index=index, columns="tau", values=value, sort=False)
    return table.reindex(sorted(table.columns), axis=1), value


@_with_style
def local_weights(x: object, alpha: object, taus: object, models: Sequence[str] | None = None,
                  levels: Sequence[float] | None = None, xlabel: str | None = None) -> Figure:
    """Local aggregation weights ``alpha_jk(x)`` along one feature, one panel per level.

    Parameters
    ----------
    x : array_like, shape (n,)
        Feature the weights are drawn along.
    alpha : array_like, shape (n, p, r)
        Weight of model j at level k for each row.
    taus : array_like, shape (r,)
    models : sequence of str, optional
        Model names (default ``model 1`` … ``model p``).
    levels : sequence of float, optional
        Levels to show (default: the lowest, the one nearest 0.5 and the highest).
    xlabel : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> x = np.linspace(0, 1, 20)
    >>> a = np.stack([x, 1 - x], axis=1)[:, :, None].repeat(3, axis=2)
    >>> fig = local_weights(x, a, [0.1, 0.5, 0.9], models=["lin", "forest"])
    >>> len(fig.axes)
    3
    """
    xlabel = _name(x, xlabel)
    a = np.asarray(alpha, dtype=float)
    if a.ndim != 3:
        raise DataError(f"alpha must have shape (n, p, r), got {a.shape}")
    n, p, r = a.shape
    t = _taus(taus, r)
    x_a = np.asarray(x, dtype=float).ravel()
    if x_a.size != n:
        raise DataError(f"x has {x_a.size} rows but alpha has {n}")
    names = list(models) if models is not None else [f"model {j + 1}" for j in range(p)]
    if len(names) != p:
        raise DataError(f"{len(names)} model names for {p} models in alpha")
    if levels is None:
        picks = sorted({0, int(np.argmin(np.abs(t - 0.5))), r - 1})
    else:
        picks = []
        for lev in levels:
            hit = np.flatnonzero(np.isclose(t, lev, rtol=0, atol=1e-9))
            if not hit.size:
                raise DataError(f"level {lev:g} is not among taus ({', '.join(f'{v:g}' for v in t)})")
            picks.append(int(hit[0]))
    order = np.argsort(x_a, kind="stable")
    fig, axes = _figure(1, len(picks), height=2.6, sharey=True)
    for ax, k in zip(axes[0], picks):
        for j, name in enumerate(names):
            ax.plot(x_a[order], a[order, j, k], color=PALETTE[j % len(PALETTE)], linewidth=1.3, label=_label(name))
        ax.set_title(f"τ = {t[k]:g}")
        ax.set_xlabel(_label(xlabel or "x"))
        _styled(ax)
    axes[0, 0].set_ylabel("weight")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), frameon=False)
    return fig


# --------------------------------------------------------------------------- calibration
@_with_style
def reliability_diagram(y: object, q: object | Mapping[str, object], taus: object,
                        level: float = 0.95) -> Figure:
    """Nominal level against the observed share of outcomes at or below each quantile.

    A calibrated forecast lies on the diagonal; the shaded band is where the observed share of
    a calibrated forecast falls with probability ``level`` (binomial, n outcomes).

    Parameters
    ----------
    y : array_like, shape (n,)
    q : array_like, shape (n, r), or mapping of name to such arrays
        Several mappings entries are drawn as separate lines (e.g. aggregate vs base models).
    taus : array_like, shape (r,)
    level : float
        Probability of the binomial band.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=500)
    >>> q = np.tile([-1.2816, 0.0, 1.2816], (500, 1))
    >>> fig = reliability_diagram(y, q, [0.1, 0.5, 0.9])
    >>> fig.axes[0].get_xlabel()
    'nominal level τ'
    """
    series = dict(q) if isinstance(q, Mapping) else {"forecast": q}
    fig, axes = _figure(height=3.2, width=3.4)
    ax = axes[0, 0]
    grid = np.linspace(0.005, 0.995, 199)
    n_ref = None
    for j, (name, qq) in enumerate(series.items()):
        y_a, q_a, t = _yq(y, qq, taus)
        observed = (y_a[:, None] <= q_a).mean(axis=0)
        if n_ref is None:
            n_ref = y_a.size
            lo, hi = binomial_band(grid, n_ref, level)
            ax.fill_between(grid, lo, hi, color="#dddddd", linewidth=0, label=f"{level:.0%} binomial band")
            ax.plot([0, 1], [0, 1], color="#777777", linewidth=0.8)
        ax.plot(t, observed, "o-", color=PALETTE[j % len(PALETTE)], markersize=3.5, linewidth=1.2,
                label=_label(name))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal level τ")
    ax.set_ylabel("observed share at or below quantile")
    ax.legend(loc="upper left", frameon=False)
    _styled(ax)
    return fig


def pit_values(y: object, q: object, taus: object) -> np.ndarray:
    """Probability integral transform from the piecewise-linear quantile function.

    Between levels the quantile function is interpolated linearly through ``(taus_k, q_k)``;
    beyond the outermost levels it continues with the slope of the outermost segment and the
    PIT is clipped to [0, 1]. Rows are sorted first, so crossed quantiles still give a valid
    (monotone) quantile function.

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> pit_values([1.0, 0.5, 3.0], [[0.0, 1.0, 2.0]] * 3, [0.1, 0.5, 0.9])
    array([0.5, 0.3, 1. ])
    """
    y_a, q_a, t = _yq(y, q, taus)
    q_s = np.sort(q_a, axis=1)
    out = np.empty(y_a.size)
    if t.size == 1:
        return np.where(y_a <= q_s[:, 0], t[0] / 2, (1 + t[0]) / 2)
    for i in range(y_a.size):
        qi = q_s[i]
        if y_a[i] < qi[0]:
            slope = (t[1] - t[0]) / max(qi[1] - qi[0], 1e-12)
            out[i] = t[0] - slope * (qi[0] - y_a[i])
        elif y_a[i] > qi[-1]:
            slope = (t[-1] - t[-2]) / max(qi[-1] - qi[-2], 1e-12)
            out[i] = t[-1] + slope * (y_a[i] - qi[-1])
        else:
            # np.interp needs strictly increasing abscissae; ties (flat quantiles) take the mean level.
            uniq, inv = np.unique(qi, return_inverse=True)
            levels = np.bincount(inv, weights=t) / np.bincount(inv)
            out[i] = np.interp(y_a[i], uniq, levels) if uniq.size > 1 else levels[0]
    return np.clip(out, 0.0, 1.0)


@_with_style
def pit_histogram(y: object, q: object, taus: object, bins: int | None = None, level: float = 0.95) -> Figure:
    """Histogram of PIT values (see :func:`pit_values`) against the uniform density.

    Parameters
    ----------
    y, q, taus
        Outcomes ``(n,)``, quantiles ``(n, r)`` and levels ``(r,)``.
    bins : int, optional
        Equal-width bins. By default the bin edges are ``0, taus, 1``: the count in
        ``[tau_k, tau_{k+1}]`` then equals the number of outcomes between the two predicted
        quantiles, so the histogram does not depend on the interpolation.
    level : float
        Probability of the binomial band around the uniform density.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> y = rng.normal(size=400)
    >>> q = np.tile([-1.2816, 0.0, 1.2816], (400, 1))
    >>> fig = pit_histogram(y, q, [0.1, 0.5, 0.9])
    >>> len(fig.axes[0].containers[0])  # bars
    4
    """
    y_a, q_a, t = _yq(y, q, taus)
    pit = pit_values(y_a, q_a, t)
    edges = np.linspace(0, 1, bins + 1) if bins else np.concatenate([[0.0], t, [1.0]])
    counts, _ = np.histogram(pit, bins=edges)
    widths = np.diff(edges)
    n = y_a.size
    fig, axes = _figure(height=3.2, width=3.4)
    ax = axes[0, 0]
    ax.bar(edges[:-1], counts / (n * widths), width=widths, align="edge", color=PALETTE[0], alpha=0.7,
           edgecolor="white", linewidth=0.8, label="PIT density")
    # The band as dashed steps (not a fill) so bars outside it stand out.
    lo, hi = binomial_band(widths, n, level)
    for bound, label in ((lo, f"{level:.0%} band if uniform"), (hi, None)):
        ax.stairs(bound / widths, edges, color="#444444", linewidth=0.9, linestyle=":", label=label)
    ax.axhline(1.0, color="#555555", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("PIT value")
    ax.set_ylabel("density")
    ax.legend(loc="upper center", frameon=False)
    _styled(ax)
    return fig


@_with_style
def conditional_coverage(x: object, y: object, lower: object, upper: object, bins: int = 8,
                         nominal: float | None = None, xlabel: str | None = None) -> Figure:
    """Coverage of an interval within equal-count bins of a feature (or of the predicted median).

    Parameters
    ----------
    x : array_like, shape (n,)
        Feature (or predicted median) that defines the bins.
    y, lower, upper : array_like, shape (n,)
        Outcomes and interval bounds; covered means ``lower <= y <= upper``.
    bins : int
        Number of equal-count bins (quantiles of x).
    nominal : float, optional
        Nominal coverage, drawn as a reference line.
    xlabel : str, optional
        Label of the x axis (e.g. the feature's column name); by default the name of ``x`` when
        it is a pandas Series, else "x".

    Returns
    -------
    matplotlib.figure.Figure
        Points at the bin means of x with 95% Wilson intervals; bin sizes are annotated.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> x = rng.uniform(size=300); y = rng.normal(size=300)
    >>> fig = conditional_coverage(x, y, -1.645 * np.ones(300), 1.645 * np.ones(300), nominal=0.9)
    >>> fig.axes[0].get_ylabel()
    'coverage'
    """
    xlabel = _name(x, xlabel)
    x_a, y_a, lo_a, hi_a = (np.asarray(v, dtype=float).ravel() for v in (x, y, lower, upper))
    if not (x_a.size == y_a.size == lo_a.size == hi_a.size):
        raise DataError("x, y, lower and upper must have the same length")
    bins = max(1, min(int(bins), x_a.size))
    order = np.argsort(x_a, kind="stable")
    groups = np.array_split(order, bins)
    covered = (y_a >= lo_a) & (y_a <= hi_a)
    k = np.array([covered[g].sum() for g in groups])
    m = np.array([g.size for g in groups])
    centre = np.array([x_a[g].mean() for g in groups])
    w_lo, w_hi = wilson_interval(k, m)
    share = k / m
    fig, axes = _figure(height=2.6)
    ax = axes[0, 0]
    if nominal is not None:
        ax.axhline(nominal, color=PALETTE[1], linestyle="--", linewidth=1.0, label=f"nominal {nominal:.0%}")
    ax.errorbar(centre, share, yerr=[share - w_lo, w_hi - share], fmt="o", color=PALETTE[0],
                markersize=4, capsize=2.5, linewidth=1.0, label="observed (95% Wilson)")
    for c, s, size in zip(centre, w_lo, m):
        ax.annotate(f"n={size}", (c, s), textcoords="offset points", xytext=(0, -9), ha="center",
                    fontsize=6.5, color="#666666")
    ax.set_ylim(max(0.0, float(np.min(w_lo)) - 0.12), 1.02)
    ax.set_xlabel(_label(xlabel or "x"))
    ax.set_ylabel("coverage")
    ax.legend(loc="lower right", frameon=False)
    _styled(ax)
    return fig


# --------------------------------------------------------------------------- scores
@_with_style
def wis_decomposition(scores_df: pd.DataFrame, highlight: str | None = "aggregate") -> Figure:
    """WIS of each model as stacked bars: dispersion, overprediction, underprediction.

    Parameters
    ----------
    scores_df : DataFrame
        Indexed by model, columns ``dispersion``, ``overprediction``, ``underprediction``
        (and optionally ``wis``, written at the end of each bar).
    highlight : str, optional
        Row label drawn in bold (the aggregate).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> s = pd.DataFrame({"dispersion": [1.0, 0.8], "overprediction": [0.2, 0.1],
    ...                   "underprediction": [0.3, 0.2]}, index=["lin", "aggregate"])
    >>> fig = wis_decomposition(s)
    >>> len(fig.axes[0].patches)
    6
    """
    parts = ["dispersion", "overprediction", "underprediction"]
    missing = [c for c in parts if c not in scores_df.columns]
    if missing:
        raise DataError(f"scores_df lacks column(s): {', '.join(missing)}")
    d = scores_df[parts].astype(float)
    labels = [str(i) for i in d.index]
    fig, axes = _figure(height=0.9 + 0.3 * len(labels))
    ax = axes[0, 0]
    ypos = np.arange(len(labels))[::-1]
    left = np.zeros(len(labels))
    colours = {"dispersion": "#9ecae1", "overprediction": PALETTE[1], "underprediction": PALETTE[0]}
    for part in parts:
        ax.barh(ypos, d[part].to_numpy(), left=left, color=colours[part], height=0.65, label=part,
                edgecolor="white", linewidth=0.5)
        left += d[part].to_numpy()
    total = scores_df["wis"].to_numpy(dtype=float) if "wis" in scores_df.columns else left
    for yp, end, tot in zip(ypos, left, total):
        ax.text(end, yp, f" {number_text(tot)}", va="center", fontsize=7.5, color="#222222")
    ax.set_yticks(ypos, [_label(s) for s in labels])
    for tick, name in zip(ax.get_yticklabels(), labels):
        if name == highlight:
            tick.set_fontweight("bold")
    ax.set_xlim(0, float(left.max()) * 1.12 if left.size else 1)
    ax.set_xlabel("weighted interval score (lower is better)")
    ax.grid(axis="y", visible=False)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, frameon=False)
    _styled(ax)
    return fig


@_with_style
def crossing_plot(monotone_df: pd.DataFrame) -> Figure:
    """Effect of each monotone post-processing step: crossing rows and WIS, before and after.

    Parameters
    ----------
    monotone_df : DataFrame
        One row per step: ``step``, ``wis_before``, ``wis_after``, ``rows_crossing_before``,
        ``rows_crossing_after``.

    Returns
    -------
    matplotlib.figure.Figure
        Left: rows with crossed quantiles; right: change in WIS (after − before) per step.

    Examples
    --------
    >>> m = pd.DataFrame({"step": ["sort", "isotonic"], "wis_before": [1.0, 1.0],
    ...                   "wis_after": [0.98, 0.99], "rows_crossing_before": [12, 12],
    ...                   "rows_crossing_after": [0, 0]})
    >>> [ax.get_title() for ax in crossing_plot(m).axes]
    ['rows with crossed quantiles', 'change in WIS (before: 1)']
    """
    need = ["step", "wis_before", "wis_after", "rows_crossing_before", "rows_crossing_after"]
    missing = [c for c in need if c not in monotone_df.columns]
    if missing:
        raise DataError(f"monotone_df lacks column(s): {', '.join(missing)}")
    steps = [str(s) for s in monotone_df["step"]]
    pos = np.arange(len(steps))
    fig, axes = _figure(1, 2, height=2.6)
    ax1, ax2 = axes[0]
    w = 0.38
    before_rows = monotone_df["rows_crossing_before"].to_numpy(dtype=float)
    after = monotone_df["rows_crossing_after"].to_numpy(dtype=float)
    crossed = bool(before_rows.any() or after.any())
    if crossed:
        ax1.bar(pos - w / 2, before_rows, w, color="#bdbdbd", label="before")
        ax1.bar(pos + w / 2, after, w, color=PALETTE[0], label="after")
        for p_, b, a in zip(pos, before_rows, after):
            ax1.text(p_ - w / 2, b, f"{b:.0f}", ha="center", va="bottom", fontsize=7)
            ax1.text(p_ + w / 2, a, f"{a:.0f}", ha="center", va="bottom", fontsize=7)
    else:
        # zero-height bars would leave an empty panel: say what it means
        ax1.text(0.5, 0.55, "no crossings: every row's quantiles\nwere in order before and after each step",
                 transform=ax1.transAxes, ha="center", va="center", fontsize=7.5, color="#555555")
        ax1.set_yticks([0.0], ["0"])
    ax1.set_xticks(pos, [_label(s) for s in steps])
    ax1.set_title("rows with crossed quantiles")
    ax1.grid(axis="x", visible=False)
    change = monotone_df["wis_after"].to_numpy(dtype=float) - monotone_df["wis_before"].to_numpy(dtype=float)
    before = np.unique(np.round(monotone_df["wis_before"].to_numpy(dtype=float), 10))
    ax2.set_title("change in WIS" + (f" (before: {number_text(before[0])})" if before.size == 1 else ""))
    ax2.set_xticks(pos, [_label(s) for s in steps])
    ax2.grid(axis="x", visible=False)
    ax2.axhline(0.0, color="#555555", linewidth=0.8)
    # Rounding noise (a sort that swaps equal values) is no change: 1e-9 of the WIS level.
    scale = float(np.max(np.abs(monotone_df["wis_before"].to_numpy(dtype=float)), initial=0.0))
    change = np.where(np.abs(change) <= 1e-9 * scale, 0.0, change)
    if not np.any(change):
        # Nothing to draw (no crossed rows, say): say so instead of four "+0" bars on a made-up scale.
        ax2.set_ylim(-1, 1)
        ax2.set_yticks([0.0], ["0"])
        ax2.text(0.5, 0.62, "no step changes the WIS", transform=ax2.transAxes, ha="center", va="center",
                 fontsize=7.5, color="#555555")
    else:
        # WIS changes from post-processing are tiny next to WIS itself: show the change, not two levels.
        colours = [PALETTE[1] if c > 0 else PALETTE[0] for c in change]
        ax2.bar(pos, change, 0.55, color=colours)
        span = float(np.max(np.abs(change)))
        for p_, c in zip(pos, change):
            ax2.text(p_, c, number_text(c, 3, signed=True), ha="center", va="bottom" if c >= 0 else "top",
                     fontsize=7)
        ax2.set_ylim(-1.6 * span, 1.6 * span)
        ax2.ticklabel_format(axis="y", useOffset=False, style="sci", scilimits=(-3, 4))
        ax2.set_ylabel("WIS after − before")
    ax1.set_ylim(0, max(1.0, float(before_rows.max(initial=0))) * 1.4)
    if crossed:
        ax1.legend(frameon=False, loc="upper center", ncols=2)
        ax1.yaxis.set_major_locator(MaxNLocator(integer=True))  # row counts: no 0.5 ticks
    for ax in (ax1, ax2):
        _styled(ax)
    return fig


# --------------------------------------------------------------------------- embedding
def figure_to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element for inlining in HTML, with text kept as text.

    Fonts are not converted to paths (``svg.fonttype = "none"``), so figure labels stay
    searchable and selectable in the HTML and in a PDF made from it. The XML prolog is dropped
    and the fixed size replaced by a responsive one (the viewBox keeps the aspect ratio).

    Examples
    --------
    >>> fig = Figure(figsize=(2, 1)); ax = fig.subplots(); _ = ax.set_title("hello")
    >>> svg = figure_to_svg(fig)
    >>> svg.startswith("<svg") and ">hello<" in svg
    True
    """
    buf = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.03, metadata={"Date": None})
    text = buf.getvalue()
    svg = text[text.index("<svg"):]
    head, rest = svg.split(">", 1)
    width = head.split('width="', 1)[1].split('"', 1)[0]
    head = head.replace(f'width="{width}"', f'width="100%" style="max-width: {width}"', 1)
    head = _drop_attr(head, "height")
    return head + ">" + rest


def svg_image_tag(svg: str, alt: str) -> str:
    """An ``<img>`` holding an SVG from :func:`figure_to_svg` as a data URI, at most its natural width.

    For the PDF: WeasyPrint computes CSS styles for every node of an SVG inlined in HTML
    (thousands per figure), but draws an SVG image directly, with its text still as text; the
    demo report's PDF took 1.3 s instead of 2.1 s. The root gets its size in points back
    (from the viewBox), so the image has an intrinsic size and aspect ratio.

    Examples
    --------
    >>> fig = Figure(figsize=(2, 1)); _ = fig.subplots()
    >>> tag = svg_image_tag(figure_to_svg(fig), "an empty plot")
    >>> tag.startswith('<img src="data:image/svg+xml;base64,') and 'alt="an empty plot"' in tag
    True
    """
    head, rest = svg.split(">", 1)
    width = head.split("max-width: ", 1)[1].split('"', 1)[0]
    _, _, w, h = head.split('viewBox="', 1)[1].split('"', 1)[0].split()
    head = _drop_attr(_drop_attr(head, "style"), "width") + f' width="{w}pt" height="{h}pt"'
    data = base64.b64encode((head + ">" + rest).encode("utf-8")).decode("ascii")
    return (f'<img src="data:image/svg+xml;base64,{data}" alt="{html_escape(alt, quote=True)}" '
            f'style="max-width: {width}">')


def _drop_attr(tag: str, name: str) -> str:
    start = tag.find(f' {name}="')
    if start < 0:
        return tag
    end = tag.index('"', start + len(name) + 3)
    return tag[:start] + tag[end + 1:]


def figure_to_png_base64(fig: Figure, dpi: int = 200) -> str:
    """The figure as a base64 PNG string (for ``<img src="data:image/png;base64,...">``).

    Examples
    --------
    >>> fig = Figure(figsize=(1, 1)); _ = fig.subplots()
    >>> base64.b64decode(figure_to_png_base64(fig, dpi=20))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.03, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")
