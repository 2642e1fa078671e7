"""Diagnostics: each theoretical claim, its source, what this fit showed, and whether it held.

A guarantee and its check are stated separately: the claim is what the theory promises (e.g.
split CQR's *marginal* coverage, in expectation over calibration and test draws); the check
asks whether the observed value is one the guarantee makes plausible at this sample size (a
95 % band for the test coverage), never whether one realised number equals an expectation.

Examples
--------
>>> d = Diagnostic("Sorting cannot raise WIS", "Fakoor et al. (2023)", "WIS 2.1 → 2.0", True)
>>> d.verdict
'held'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from . import scoring

__all__ = ["Diagnostic", "diagnose"]


@dataclass(frozen=True)
class Diagnostic:
    """A theoretical claim, its source, what was observed on this fit, and whether it held."""

    claim: str
    source: str
    observed: str
    held: Optional[bool]

    @property
    def verdict(self) -> str:
        """"held", "failed" or "n/a" (the claim does not apply to this fit)."""
        return {True: "held", False: "failed", None: "n/a"}[self.held]


def _monotone(monotone: pd.DataFrame, postprocess: str, n: int) -> list[Diagnostic]:
    out = []
    mono = monotone.set_index("step")
    for step, name in (("sort", "Sorting"), ("isotonic", "Isotonic projection")):
        b, a = mono.loc[step, "wis_before"], mono.loc[step, "wis_after"]
        out.append(Diagnostic(
            f"{name} across levels cannot raise WIS", "Fakoor et al. (2023), Proposition 2",
            f"out-of-fold WIS {b:.4g} → {a:.4g}", bool(a <= b + 1e-9 * max(1.0, abs(b)))))
    b, a = mono.loc["minmax", "wis_before"], mono.loc["minmax", "wis_after"]
    out.append(Diagnostic(
        "The min–max sweep, unlike sorting, can raise WIS", "Fakoor et al. (2023), min–max sweep",
        f"out-of-fold WIS {b:.4g} → {a:.4g} ({'raised' if a > b else 'not raised'} here)", None))
    step = postprocess if postprocess != "none" else "sort"
    rb, ra = int(mono.loc[step, "rows_crossing_before"]), int(mono.loc[step, "rows_crossing_after"])
    out.append(Diagnostic(
        f"Post-processing ({postprocess}) leaves no crossed quantiles",
        "monotone rearrangement (Chernozhukov et al. 2010)",
        f"rows with crossings {rb} → {ra} of {n}", None if postprocess == "none" else ra == 0))
    return out


def _in_sample(family: str, oof_scores: pd.DataFrame, models: list[str], agg_raw_wis: float) -> Diagnostic:
    best = oof_scores.loc[models, "wis"].idxmin()
    contains_each = family not in ("mean", "median", "fqra")
    return Diagnostic(
        f"The fitted '{family}' aggregate is no worse in-sample than the best single model",
        "each base model is a feasible point of the weight LP" if contains_each else "not guaranteed for this family",
        f"out-of-fold WIS {agg_raw_wis:.4g} vs {oof_scores.loc[best, 'wis']:.4g} ({best})",
        bool(agg_raw_wis <= oof_scores.loc[best, "wis"] * (1 + 1e-6) + 1e-12) if contains_each else None)


def _coverage(conformal: Optional[str], calibration, coverage: pd.DataFrame, n_cal: int) -> list[Diagnostic]:
    test = coverage[coverage["set"] == "test"]
    if not len(test):
        return [Diagnostic("Conformal coverage guarantee", "Romano, Patterson & Candès (2019)",
                           "no test data given (pass test=...), so the guarantee was not checked", None)]
    out = []
    for _, row in test.iterrows():
        alpha = 1 - row["nominal"]
        observed = (f"observed coverage {row['observed']:.3f} on {int(row['n'])} test points; "
                    f"95% of test sets of this size fall in [{row['band_low']:.3f}, {row['band_high']:.3f}] "
                    f"when the guarantee holds")
        if conformal == "cv+":
            bound = max(0.0, calibration.coverage_bound(alpha))
            claim = (f"Nested CV+: the {row['nominal']:.0%} interval covers a new point with probability at least "
                     f"{bound:.3f} (marginally, over training and test draws)"
                     + (" — vacuous at this n and K" if bound == 0 else ""))
            source = "Barber et al. (2021), CV+; Fakoor et al. (2023)"
        elif getattr(calibration, "column", None) is not None:
            claim = (f"Mondrian CQR: the {row['nominal']:.0%} interval covers a new point with probability at least "
                     f"{1 - alpha:.3f} marginally, and within each group of {calibration.column!r} (below)")
            source = "Vovk (2012); Romano, Patterson & Candès (2019)"
        else:
            lo, hi = calibration.coverage_band(alpha)
            claim = (f"Split CQR: the {row['nominal']:.0%} interval covers a new point with probability between "
                     f"{lo:.3f} and {hi:.3f} (marginally, in expectation over calibration and test draws; "
                     f"n_cal = {n_cal})")
            source = "Romano, Patterson & Candès (2019)"
        out.append(Diagnostic(claim, source, observed, bool(row["inside"])))
    groups = coverage[coverage["set"].str.startswith("test, ")]
    for _, row in groups.iterrows():  # Mondrian: the guarantee of each group
        alpha = 1 - row["nominal"]
        label = row["set"][len("test, "):]
        group = calibration.groups[[f"{calibration.column} = {g}" for g in calibration.groups].index(label)]
        lo, hi = calibration.coverage_band(alpha, group)
        out.append(Diagnostic(
            f"Mondrian CQR, group {label}: the {row['nominal']:.0%} interval covers a new point of this group with "
            f"probability between {lo:.3f} and {hi:.3f} (n_cal = {calibration.n_groups[calibration.groups.index(group)]})",
            "Vovk (2012); Romano, Patterson & Candès (2019)",
            f"observed coverage {row['observed']:.3f} on {int(row['n'])} test points of the group; 95% of test sets "
            f"of this size fall in [{row['band_low']:.3f}, {row['band_high']:.3f}] when the guarantee holds",
            bool(row["inside"])))
    return out


def diagnose(*, y: np.ndarray, taus: np.ndarray, family: str, postprocess: str, models: list[str],
             oof_scores: pd.DataFrame, monotone: pd.DataFrame, q_oof_raw: np.ndarray,
             conformal: Optional[str], calibration, coverage: pd.DataFrame, n_cal: int) -> list[Diagnostic]:
    """All diagnostics of a fit, from its out-of-fold arrays and score tables."""
    out = _monotone(monotone, postprocess, y.size)
    out.append(_in_sample(family, oof_scores, models, scoring.wis(y, q_oof_raw, taus)))
    if calibration is not None:
        out += _coverage(conformal, calibration, coverage, n_cal)
    return out
