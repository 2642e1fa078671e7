"""qaggstats' ``rq_fit`` (Frisch–Newton + certified vertex) vs the HiGHS LP and statsmodels QuantReg.

Accuracy: ``rq_fit``'s objective against the HiGHS dual-simplex LP on the raw data (the
reference path, relative), QuantReg's objective gap over ``rq_fit`` and the largest coefficient
difference; speed: wall seconds per fit. Run: ``python benchmarks/bench_rq.py``.
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import linprog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_uci  # noqa: E402

from qaggstats.datasets import load  # noqa: E402
from qaggstats.quantreg import check_loss, rq_fit  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def highs_objective(X: np.ndarray, y: np.ndarray, tau: float) -> tuple[float, float]:
    """Check loss at the HiGHS dual-simplex solution of R's br dual, and its seconds."""
    t0 = time.perf_counter()
    res = linprog(-y, A_eq=X.T, b_eq=(1.0 - tau) * X.sum(axis=0), bounds=(0.0, 1.0), method="highs-ds")
    return check_loss(y - X @ -np.asarray(res.eqlin.marginals), tau), time.perf_counter() - t0


def compare(name: str, X: np.ndarray, y: np.ndarray, taus=(0.1, 0.5, 0.9)) -> list[dict]:
    """One row per level: objective gap and coefficient difference of QuantReg vs the LP."""
    rows = []
    for tau in taus:
        (beta, obj), t_lp = _timed(lambda: rq_fit(X, y, tau))
        obj_highs, t_highs = highs_objective(X, y, tau)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # QuantReg's own iteration warnings: counted below
            (sm_fit), t_sm = _timed(lambda: sm.QuantReg(y, X).fit(q=tau, max_iter=5000))
        obj_sm = check_loss(y - X @ sm_fit.params, tau)
        rows.append({"data": name, "n": X.shape[0], "d": X.shape[1], "tau": tau,
                     "obj_vs_highs_rel": obj / obj_highs - 1,
                     "obj_gap_rel": obj_sm / obj - 1, "max_coef_diff": np.abs(sm_fit.params - beta).max(),
                     "sec_rq_fit": t_lp, "sec_highs": t_highs, "sec_quantreg": t_sm})
    return rows


def main() -> None:
    engel = load("engel")
    rows = compare("engel", np.column_stack([np.ones(len(engel)), engel["income"]]),
                   engel["foodexp"].to_numpy())
    for name in ("concrete", "kin8nm"):
        df = load_uci(name)
        X = np.column_stack([np.ones(len(df)), df.drop(columns="y").to_numpy()])
        rows += compare(name, X, df["y"].to_numpy())
    pd.set_option("display.width", 140)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
