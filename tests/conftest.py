"""Shared fixtures: a stand-in for ``QaggResults`` built from simulated data.

``make_synthetic_results`` fills every attribute of the results contract in
``docs/ARCHITECTURE.md`` with numbers computed here from scratch with NumPy (pinball, WIS and
its decomposition, coverage, crossings, simplex weights by grid search), so report and plot
tests check real, internally consistent numbers without running the pipeline.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, norm

ROOT = Path(__file__).resolve().parents[1]
TAUS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


# ----------------------------------------------------------------------------- scores
def pinball(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Mean pinball loss per level, shape (r,)."""
    u = y[:, None] - q
    return np.mean(u * (taus - (u < 0)), axis=0)


def wis(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> float:
    return float(2.0 / taus.size * pinball(y, q, taus).sum())


def pairs(taus: np.ndarray) -> list[tuple[int, int]]:
    r = taus.size
    return [(k, r - 1 - k) for k in range(r // 2) if np.isclose(taus[k] + taus[r - 1 - k], 1.0)]


def decomposition(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> dict[str, float]:
    disp = over = under = 0.0
    for lo, hi in pairs(taus):
        disp = disp + taus[lo] * (q[:, hi] - q[:, lo])
        over = over + np.maximum(q[:, lo] - y, 0)
        under = under + np.maximum(y - q[:, hi], 0)
    med = q[:, taus.size // 2]
    over = over + 0.5 * np.maximum(med - y, 0)
    under = under + 0.5 * np.maximum(y - med, 0)
    scale = 2.0 / taus.size
    return {"dispersion": scale * float(np.mean(disp)), "overprediction": scale * float(np.mean(over)),
            "underprediction": scale * float(np.mean(under))}


def score_row(y: np.ndarray, q: np.ndarray, taus: np.ndarray) -> dict[str, float]:
    row = {"wis": wis(y, q, taus), **decomposition(y, q, taus)}
    row.update({f"pinball_{t:g}": float(v) for t, v in zip(taus, pinball(y, q, taus))})
    for lo, hi in pairs(taus):
        pct = f"{round(100 * (taus[hi] - taus[lo]), 8):g}"
        row[f"coverage_{pct}"] = float(np.mean((y >= q[:, lo]) & (y <= q[:, hi])))
        row[f"width_{pct}"] = float(np.mean(q[:, hi] - q[:, lo]))
    row["crossing_rate"] = float(np.mean(np.any(np.diff(q, axis=1) < 0, axis=1)))
    return row


def score_table(y: np.ndarray, preds: dict[str, np.ndarray], taus: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame.from_dict({k: score_row(y, q, taus) for k, q in preds.items()}, orient="index")
    table.index.name = "model"
    return table


def isotonic_rows(q: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators on each row (equal weights)."""
    out = np.empty_like(q)
    for i, row in enumerate(q):
        blocks: list[list[float]] = []  # [mean, size]
        for v in row:
            blocks.append([v, 1.0])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                m2, s2 = blocks.pop()
                m1, s1 = blocks.pop()
                blocks.append([(m1 * s1 + m2 * s2) / (s1 + s2), s1 + s2])
        out[i] = np.concatenate([[m] * int(s) for m, s in blocks])
    return out


def crossing_rows(q: np.ndarray) -> int:
    return int(np.sum(np.any(np.diff(q, axis=1) < 0, axis=1)))


# ----------------------------------------------------------------------------- data
def _truth(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Engel-like: food expenditure linear in income, spread growing with income."""
    return 80.0 + 0.55 * x, 15.0 + 0.09 * x


def _base_models(x: np.ndarray, taus: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, r): a misspecified linear model, a noisy but honest forest, an overconfident kNN."""
    m, s = _truth(x)
    z = norm.ppf(taus)
    linear = (m + 6.0)[:, None] + (45.0 + 0.05 * x)[:, None] * z
    forest = ((m + rng.normal(0, 0.3, x.size) * s)[:, None] + 1.15 * s[:, None] * z
              + rng.normal(0, 0.12, (x.size, taus.size)) * s[:, None])
    knn = m[:, None] + 0.7 * s[:, None] * z + rng.normal(0, 0.15, (x.size, taus.size)) * s[:, None]
    return np.stack([linear, forest, knn], axis=1)


def _simplex_weights(Q: np.ndarray, y: np.ndarray, taus: np.ndarray, step: float = 0.05) -> np.ndarray:
    """(p, r) weights minimising the pinball loss per level over a grid of the simplex."""
    p = Q.shape[1]
    k = int(round(1 / step))
    grid = np.array([c for c in itertools.product(range(k + 1), repeat=p) if sum(c) == k]) / k
    best = np.empty((p, taus.size))
    for j, t in enumerate(taus):
        preds = Q[:, :, j] @ grid.T
        u = y[:, None] - preds
        loss = np.mean(u * (t - (u < 0)), axis=0)
        best[:, j] = grid[np.argmin(loss)]
    return best


def make_synthetic_results(n: int = 300, seed: int = 0, response: str = "foodexp",
                           feature: str = "income",
                           models: tuple[str, ...] = ("linear", "forest", "knn"),
                           data_name: str = "engel (simulated)", with_test: bool = True):
    """A ``types.SimpleNamespace`` with every ``QaggResults`` contract attribute."""
    rng = np.random.default_rng(seed)
    taus = TAUS.copy()
    n_na = {feature: 7, response: 5}
    x = np.exp(rng.uniform(np.log(400), np.log(5000), n))
    m, s = _truth(x)
    y = m + s * rng.normal(size=n)
    Q = _base_models(x, taus, rng)
    W = _simplex_weights(Q, y, taus)
    q_raw = np.einsum("npr,pr->nr", Q, W)
    q = np.sort(q_raw, axis=1)
    names = list(models)

    preds = {name: Q[:, j, :] for j, name in enumerate(names)}
    preds["mean"] = Q.mean(axis=1)
    preds["median"] = np.median(Q, axis=1)
    preds["aggregate"] = q
    oof = score_table(y, preds, taus)

    steps = {"sort": np.sort(q_raw, axis=1), "isotonic": isotonic_rows(q_raw),
             "rearrange": np.sort(q_raw, axis=1), "minmax": np.maximum.accumulate(q_raw, axis=1)}
    monotone = pd.DataFrame([
        {"step": k, "wis_before": wis(y, q_raw, taus), "wis_after": wis(y, v, taus),
         "rows_crossing_before": crossing_rows(q_raw), "rows_crossing_after": crossing_rows(v)}
        for k, v in steps.items()])

    def coverage_rows(yy: np.ndarray, qq: np.ndarray, which: str) -> list[dict]:
        rows = []
        for lo, hi in pairs(taus):
            nominal = round(taus[hi] - taus[lo], 10)
            obs = float(np.mean((yy >= qq[:, lo]) & (yy <= qq[:, hi])))
            b_lo, b_hi = (binom.ppf(a, yy.size, nominal) / yy.size for a in (0.025, 0.975))
            rows.append({"set": which, "nominal": nominal, "observed": obs, "band_low": float(b_lo),
                         "band_high": float(b_hi), "inside": bool(b_lo <= obs <= b_hi), "n": yy.size})
        return rows

    def conditional_rows(yy, qq, features):
        """80 % interval coverage in quintile bins of each feature and of the width, binomial bands."""
        lo, hi = next((i, j) for i, j in pairs(taus) if np.isclose(taus[i], 0.1))
        inside = (qq[:, lo] <= yy) & (yy <= qq[:, hi])
        rows = []
        for name, v in {**features, "predicted width": qq[:, hi] - qq[:, lo]}.items():
            edges = np.quantile(v, np.linspace(0, 1, 6))
            which = np.clip(np.searchsorted(edges, v, side="left") - 1, 0, 4)
            for b in range(5):
                sel = which == b
                obs = float(inside[sel].mean())
                b_lo, b_hi = binom.ppf([0.025, 0.975], sel.sum(), 0.8) / sel.sum()
                rows.append({"variable": name, "bin": f"({edges[b]:.3g}, {edges[b + 1]:.3g}]", "n": int(sel.sum()),
                             "observed": obs, "band_low": float(b_lo), "band_high": float(b_hi),
                             "inside": bool(b_lo <= obs <= b_hi), "nominal": 0.8})
        table = pd.DataFrame(rows)
        table["worst"] = table.index == table["observed"].idxmin()
        return table

    cov = coverage_rows(y, q, "out-of-fold (uncalibrated)")
    test_scores = conditional = None
    if with_test:
        xt = np.exp(rng.uniform(np.log(400), np.log(5000), 150))
        mt, st = _truth(xt)
        yt = mt + st * rng.normal(size=xt.size)
        Qt = _base_models(xt, taus, rng)
        qt = np.sort(np.einsum("npr,pr->nr", Qt, W), axis=1)
        tp = {name: Qt[:, j, :] for j, name in enumerate(names)}
        tp.update(mean=Qt.mean(axis=1), median=np.median(Qt, axis=1), aggregate=qt)
        test_scores = score_table(yt, tp, taus)
        cov += coverage_rows(yt, qt, "test")
        conditional = conditional_rows(yt, qt, {feature: xt})
    coverage = pd.DataFrame(cov)

    mono = monotone.set_index("step")
    best = oof.loc[names, "wis"].idxmin()
    agg_raw = wis(y, q_raw, taus)
    D = types.SimpleNamespace
    diagnostics = [
        D(claim="Sorting across levels cannot raise WIS", source="Fakoor et al. (2023), Proposition 2",
          observed=f"out-of-fold WIS {mono.loc['sort', 'wis_before']:.4g} → {mono.loc['sort', 'wis_after']:.4g}",
          held=bool(mono.loc["sort", "wis_after"] <= mono.loc["sort", "wis_before"] + 1e-12)),
        D(claim="The min–max sweep, unlike sorting, can raise WIS", source="Fakoor et al. (2023), Section 5",
          observed=f"out-of-fold WIS {mono.loc['minmax', 'wis_before']:.4g} → {mono.loc['minmax', 'wis_after']:.4g}",
          held=None),
        D(claim="Post-processing (sort) leaves no crossed quantiles",
          source="monotone rearrangement (Chernozhukov et al. 2010)",
          observed=f"rows with crossings {crossing_rows(q_raw)} → {crossing_rows(q)} of {n}",
          held=crossing_rows(q) == 0),
        D(claim="The fitted 'quantile' aggregate is no worse in-sample than the best single model",
          source="each base model is a feasible point of the weight LP",
          observed=f"out-of-fold WIS {agg_raw:.4g} vs {oof.loc[best, 'wis']:.4g} ({best})",
          held=bool(agg_raw <= oof.loc[best, "wis"] * (1 + 1e-6))),
    ]
    if with_test:
        row = coverage[(coverage["set"] == "test")].iloc[0]
        diagnostics.append(D(
            claim=f"The {row['nominal']:.0%} interval covers within its binomial band on test data",
            source="binomial sampling of n test points", held=bool(row["inside"]),
            observed=f"observed {row['observed']:.3f} on {row['n']} test points; 95% band "
                     f"[{row['band_low']:.3f}, {row['band_high']:.3f}]"))

    frame = pd.DataFrame({response: y, feature: x})
    formula = f"{response} ~ {feature}"
    return types.SimpleNamespace(
        formula=formula,
        formulas={name: (f"{response} ~ bs({feature}, df=5)" if name == "linear" else formula) for name in names},
        data_name=data_name, response=response, taus=taus, models=names,
        learners={names[0]: "LinearQR(se='nid')", names[1]: "QuantileForest(n_estimators=200, min_samples_leaf=10)",
                  names[2]: "KNN(k=30)"},
        na=types.SimpleNamespace(n_input=n + sum(n_na.values()), n_used=n, n_dropped=sum(n_na.values()),
                                 by_column=n_na, dropped_index=list(range(n, n + sum(n_na.values())))),
        n_train=n, n_cal=0, cv=5, seed=seed, solver="CLARABEL", family="quantile", constraint="simplex",
        noncrossing=True, postprocess="sort", conformal=None,
        versions={"python": "3.11.7", "qaggstats": "0.1.0", "numpy": np.__version__, "pandas": pd.__version__},
        created=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc).isoformat(timespec="seconds"),
        weights=pd.DataFrame([{"model": name, "tau": float(t), "weight": float(W[j, k])}
                              for j, name in enumerate(names) for k, t in enumerate(taus)]),
        weight_fit=types.SimpleNamespace(objective=float(sum(pinball(y, q_raw, taus))), solver="CLARABEL",
                                         status="optimal", seconds=0.12, family="quantile"),
        frame=frame, y=y, Q=Q, q_oof=q, q_oof_raw=q_raw,
        oof_scores=oof, test_scores=test_scores, monotone=monotone,
        calibration=None, coverage=coverage, conditional_coverage=conditional, diagnostics=diagnostics,
    )


@pytest.fixture(scope="session")
def synthetic_results():
    """The simulated stand-in for a fitted ``QaggResults`` (do not mutate: session scope)."""
    return make_synthetic_results()


@pytest.fixture(scope="session")
def fake_results(synthetic_results):
    """Alias of :func:`synthetic_results`."""
    return synthetic_results


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``artifacts/`` at the repository root (gitignored), for screenshots and rendered files."""
    path = ROOT / "artifacts"
    path.mkdir(exist_ok=True)
    return path


# ----------------------------------------------------------------------------- self-containment
# The suite must read nothing outside the repository: a user's clone has nothing beside it.
# An audit hook records every file opened in the repository's parent folder but outside the
# repository itself; the session fails if any test did so.
_OUTSIDE_READS: list[str] = []


def _allowed_roots(root: Path = ROOT) -> tuple[str, ...]:
    """Places beside the repository that are the environment, not data: the Python installation
    and virtual environment, site-packages, and the folders that tempfile, pytest and dask's
    local cluster (its scratch space, used by the distributed tests) create in the temporary
    folder (when the repository itself sits there; anything else created there during the
    session is scratch too, see :func:`_outside_repository`).

    A prefix that the repository's own path starts with is left out: a clone in a folder made by
    ``mktemp -d`` (``/tmp/tmp.XXXX/q``) would otherwise match ``/tmp/tmp`` and the guard would
    excuse every file beside it."""
    import os
    import site
    import sysconfig
    import tempfile

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(),
             *site.getsitepackages()}
    allowed = [os.path.abspath(r) + os.sep for r in roots if r]
    temp = os.path.abspath(tempfile.gettempdir()) + os.sep
    allowed += [temp + name for name in ("tmp", "pytest-of-", "dask-scratch-space", "sklearn_testing_",
                                         "joblib_memmapping_folder_")]
    inside = os.path.abspath(root) + os.sep
    return tuple(a for a in allowed if not inside.startswith(a))


def _outside_repository(path: object) -> str | None:
    """``path`` if it lies beside the repository (in its parent folder, outside the repository,
    the environment and hidden folders such as caches), else None."""
    import os

    if not isinstance(path, (str, bytes, os.PathLike)):
        return None
    full = os.path.abspath(os.fsdecode(path))
    parent, root = str(ROOT.parent) + os.sep, str(ROOT) + os.sep
    if not full.startswith(parent) or full.startswith(root) or full == str(ROOT):
        return None
    if full[len(parent):].startswith(".") or full.startswith(_ALLOWED):
        return None
    # data beside a clone exists before the tests start; what appeared since is scratch
    if full[len(parent):].split(os.sep, 1)[0] not in _BESIDE_AT_START:
        return None
    return full


def _audit(event: str, args: tuple) -> None:
    if event == "open" and args:
        hit = _outside_repository(args[0])
        if hit is not None:
            _OUTSIDE_READS.append(hit)


_ALLOWED = _allowed_roots()
_BESIDE_AT_START = frozenset(os.listdir(ROOT.parent))
if str(ROOT.parent) != ROOT.anchor:  # a repository at the file-system root has no "beside"
    sys.addaudithook(_audit)


def pytest_sessionfinish(session, exitstatus):
    if _OUTSIDE_READS:
        shown = ", ".join(sorted(set(_OUTSIDE_READS))[:5])
        print(f"\nERROR: tests opened {len(set(_OUTSIDE_READS))} file(s) outside the repository: {shown}")
        session.exitstatus = 1
