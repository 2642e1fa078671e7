"""The whole pipeline's speed, as ratios to a yardstick measured in the same run.

Yardstick: one single-threaded scikit-learn ``HistGradientBoostingRegressor(loss="quantile",
quantile=0.5)`` fit (default settings) on the same rows; ratios cancel most of the noise of a
shared machine. Sections (each appends one JSON line to ``benchmarks/results/pipeline.jsonl``
when it finishes, and is skipped on a rerun with the same ``--run`` name, so an interrupted
run resumes where it stopped):

- ``pipeline``: ``qa.qagg`` with the default models on 20,000 protein rows, 9 levels,
  ``conformal="cqr"``, all cores; then ``fit.predict`` on 50,000 rows; the time per learner,
  weights and calibration.
- ``protein``: the same end to end on all 45,730 protein rows.
- ``rq``: ``rq_fit`` on protein (median, and 9 levels) against R's ``rq`` "fn" and "br"
  (``Rscript``, same run), objectives compared.
- ``forest``: WIS and times of quantile-forest configurations on three random 75/25 splits
  (concrete, kin8nm, 20,000 protein rows), 9 levels.
- ``boost``: WIS at 99 levels of per-level boosting against the grid of levels.
- ``boost9``: WIS and fit time at 9 levels of boosting configurations (iterations, learning
  rate, early stopping, a coarser grid of levels) on a 75/25 split.
- ``demo``: ``python -m qaggstats demo`` as a whole process (median of three runs, against
  the yardstick on the demo's training rows), and its stages timed in one process.
- ``aggregate``: held-out WIS of ``qa.qagg`` (default models, 9 levels, CQR) with the former
  and the current forest and boosting defaults, on three random 75/25 splits.

Run: ``nice python benchmarks/bench_pipeline.py [--run NAME] [--sections ...] [--write]``;
``--write`` puts the tables into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, UCI, load_uci, machine, replace_section, today  # noqa: E402

import qaggstats as qa  # noqa: E402
from qaggstats.learners import GradientBoosting, QuantileForest  # noqa: E402
from qaggstats.quantreg import rq_fit  # noqa: E402
from qaggstats.scoring import wis  # noqa: E402

LOG = RESULTS / "pipeline.jsonl"
NINE = [round(k / 10, 1) for k in range(1, 10)]
SECTIONS = ("pipeline", "protein", "demo", "rq", "forest", "boost", "boost9", "aggregate")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def yardstick(X: np.ndarray, y: np.ndarray) -> float:
    """Seconds of one single-threaded HistGradientBoostingRegressor(loss="quantile") fit."""
    with threadpool_limits(limits=1):
        return _timed(lambda: HistGradientBoostingRegressor(loss="quantile", quantile=0.5).fit(X, y))[1]


def _protein(rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    df = load_uci("protein-tertiary-structure")
    if rows is not None:
        df = df.sample(n=rows, random_state=seed).reset_index(drop=True)
    return df


def _pipeline_run(df: pd.DataFrame, predict_rows: int | None) -> dict:
    X, y = df.drop(columns="y").to_numpy(), df["y"].to_numpy()
    yard = yardstick(X, y)
    fit, total = _timed(lambda: qa.qagg("y ~ .", df, taus=NINE, conformal="cqr", n_jobs=-1))
    cf = fit._base.crossfit
    out = {"rows": len(df), "yardstick_s": yard, "qagg_s": total,
           "qagg_yardsticks": total / yard,
           "learner_task_s": {k: round(v, 3) for k, v in cf.seconds.items()},
           "timings": {k: round(v, 3) for k, v in fit.timings.items()}}
    if predict_rows:
        new = df.sample(n=predict_rows, replace=True, random_state=1).drop(columns="y")
        per = _time_learner_predictions(fit.predictor.learners)
        _, pred_s = _timed(lambda: fit.predict(new))
        out.update(predict_rows=predict_rows, predict_s=pred_s, predict_yardsticks=pred_s / yard,
                   predict_learner_s={k: round(v, 3) for k, v in per.items()})
    return out


def _time_learner_predictions(learners: dict) -> dict:
    """Wrap each fitted learner's predict (on the instance) to add its seconds to a dict."""
    seconds = dict.fromkeys(learners, 0.0)
    for name, learner in learners.items():
        inner = learner.predict

        def timed(X, _inner=inner, _name=name):
            t0 = time.perf_counter()
            try:
                return _inner(X)
            finally:
                seconds[_name] += time.perf_counter() - t0
        learner.predict = timed
    return seconds


def section_pipeline() -> dict:
    return _pipeline_run(_protein(20_000), predict_rows=50_000)


def section_protein() -> dict:
    return _pipeline_run(_protein(), predict_rows=None)


R_SCRIPT = r"""
suppressMessages(library(quantreg))
d <- as.matrix(read.table("{data}"))
X <- cbind(1, d[, {features}]); y <- d[, {target}]
for (m in c("fn", "br")) {{
  t1 <- system.time(b <- rq.fit(X, y, tau = 0.5, method = m)$coef)[["elapsed"]]
  t9 <- system.time(for (tau in 1:9 / 10) rq.fit(X, y, tau = tau, method = m))[["elapsed"]]
  cat(m, t1, t9, sprintf("%.17g", sum((y - X %*% b) * (0.5 - (y - X %*% b < 0)))), "\n")
}}
"""


def section_rq() -> dict:
    folder = UCI / "protein-tertiary-structure"
    feats = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1) + 1
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int)) + 1
    df = _protein()
    X = np.column_stack([np.ones(len(df)), df.drop(columns="y").to_numpy()])
    y = df["y"].to_numpy()
    (beta, obj), t1 = _timed(lambda: rq_fit(X, y, 0.5))
    _, t9 = _timed(lambda: [rq_fit(X, y, t) for t in NINE])
    script = R_SCRIPT.format(data=folder / "data.txt", features=f"c({','.join(map(str, feats))})",
                             target=target)
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(script)
    r_out = subprocess.run(["Rscript", fh.name], capture_output=True, text=True, check=True).stdout
    Path(fh.name).unlink()
    out = {"rows": len(y), "ours_median_s": t1, "ours_9_s": t9, "ours_obj": obj}
    for line in r_out.strip().splitlines():
        method, s1, s9, robj = line.split()
        out[f"R_{method}_median_s"], out[f"R_{method}_9_s"] = float(s1), float(s9)
        out[f"R_{method}_obj_rel_diff"] = obj / float(robj) - 1
    out["ratio_to_R_fn_median"] = t1 / out["R_fn_median_s"]
    out["ratio_to_R_fn_9"] = t9 / out["R_fn_9_s"]
    return out


def _split(name: str, rows: int | None = None, seed: int = 0):
    df = load_uci(name)
    X, y = df.drop(columns="y").to_numpy(), df["y"].to_numpy()
    p = np.random.default_rng(seed).permutation(len(y))[: rows or len(y)]
    k = int(0.75 * p.size)
    return X[p[:k]], y[p[:k]], X[p[k:]], y[p[k:]]


# None: the former default, quantile-forest's RandomForestQuantileRegressor, 200 trees, every
# training row kept in the leaves; the others are QuantileForest parameters.
FOREST_CONFIGS = {
    "quantile-forest, 200 best-split trees, leaves 20 (default before issue 16)": None,
    "pooled, 100 random-split trees, leaves 5 (former default)": dict(n_estimators=100),
    "pooled, 70 random-split trees, leaves 5": dict(n_estimators=70),
    "pooled, 50 random-split trees, leaves 5 (default)": dict(n_estimators=50),
    "pooled, 200 random-split trees, leaves 5": dict(n_estimators=200),
    "pooled, 100 random-split trees, leaves 3": dict(n_estimators=100, min_samples_leaf=3),
    "pooled, 100 best-split trees, leaves 5": dict(n_estimators=100, splitter="best"),
    "pooled, 100 best-split trees, leaves 20": dict(n_estimators=100, splitter="best", min_samples_leaf=20),
    "trees, 100 random-split trees, leaves 5": dict(n_estimators=100, aggregation="trees"),
}
FOREST_SPLITS = 3


def _former_forest(X: np.ndarray, y: np.ndarray, taus: np.ndarray):
    from quantile_forest import RandomForestQuantileRegressor
    model = RandomForestQuantileRegressor(n_estimators=200, min_samples_leaf=20, max_features=1.0,
                                          random_state=0, n_jobs=1, max_samples_leaf=None).fit(X, y)

    class Former:
        def predict(self, Xnew):
            return np.asarray(model.predict(Xnew, quantiles=list(taus))).reshape(len(Xnew), taus.size)
    return Former()


def section_forest() -> dict:
    """Mean WIS over FOREST_SPLITS random 75/25 splits; median fit time and prediction speed."""
    taus = np.array(NINE)
    rows = []
    for name, n in (("concrete", None), ("kin8nm", None), ("protein-tertiary-structure", 20_000)):
        runs = {label: [] for label in FOREST_CONFIGS}
        for seed in range(FOREST_SPLITS):
            Xtr, ytr, Xte, yte = _split(name, n, seed)
            yard = yardstick(Xtr, ytr)
            for label, params in FOREST_CONFIGS.items():
                with threadpool_limits(limits=1):
                    fit, t_fit = _timed(lambda: _former_forest(Xtr, ytr, taus) if params is None
                                        else QuantileForest(n_jobs=1, **params).fit(Xtr, ytr, taus))
                    q, t_pred = _timed(lambda: fit.predict(Xte))
                runs[label].append((wis(yte, q, taus), t_fit / yard, t_fit, len(yte) / t_pred))
        for label, values in runs.items():
            w, fy, fs, rps = np.array(values).T
            rows.append({"data": name, "train": len(ytr), "config": label, "wis": float(w.mean()),
                         "fit_yardsticks": float(np.median(fy)), "fit_s": float(np.median(fs)),
                         "predict_rows_per_s": float(np.median(rps))})
    return {"rows": rows}


def section_boost() -> dict:
    taus = np.arange(1, 100) / 100
    rows = []
    for name in ("concrete", "kin8nm"):
        Xtr, ytr, Xte, yte = _split(name)
        for grid in (None, 21, 15, 11):
            fit, t_fit = _timed(lambda: GradientBoosting(grid=grid).fit(Xtr, ytr, taus))
            q = np.sort(fit.predict(Xte), axis=1)
            rows.append({"data": name, "grid": "per level (99 models)" if grid is None else grid,
                         "wis": wis(yte, q, taus), "fit_s": t_fit})
    return {"rows": rows}


# GradientBoosting parameters at 9 levels; the first is the former default.
BOOST9_CONFIGS = {
    "15 leaves, 100 iterations, rate 0.1": dict(max_leaf_nodes=15, max_iter=100, learning_rate=0.1),
    "15 leaves, 50 iterations, rate 0.2": dict(max_leaf_nodes=15, max_iter=50, learning_rate=0.2),
    "15 leaves, 40 iterations, rate 0.25": dict(max_leaf_nodes=15, max_iter=40, learning_rate=0.25),
    "15 leaves, early stopping (<= 100, rate 0.2)": dict(max_leaf_nodes=15, max_iter=100, learning_rate=0.2,
                                                         early_stopping=True),
    "23 leaves, 30 iterations, rate 0.3": dict(max_leaf_nodes=23, max_iter=30, learning_rate=0.3),
    "31 leaves, 30 iterations, rate 0.3": dict(max_leaf_nodes=31, max_iter=30, learning_rate=0.3),
}
BOOST9_SPLITS = 5


def _synthetic(n: int = 4000, seed: int = 0):
    """75/25 split of y = x + (0.5 + x) e, x ~ U(0, 2), e ~ N(0, 1): smooth, one predictor."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, n)
    y = x + (0.5 + x) * rng.standard_normal(n)
    k = int(0.75 * n)
    return x[:k, None], y[:k], x[k:, None], y[k:]


def _demo_stages(out: Path) -> dict:
    """Seconds of each stage of the demo, run as ``qaggstats demo`` runs them."""
    from qaggstats import cli, datasets, report

    df = datasets.load("concrete")
    train, test = cli._holdout(df, 0.2, 0)
    n_jobs = cli.build_parser().parse_args(["demo"]).n_jobs  # the demo's default
    fit, t_fit = _timed(lambda: qa.qagg(datasets.suggested_formula("concrete"), train,
                                        models=cli._demo_models(False, 0), family="quantile",
                                        conformal="cqr", cv=5, seed=0, n_jobs=n_jobs, test=test,
                                        data_name="concrete"))
    context, t_ctx = _timed(lambda: report.build_context(fit))
    html, t_html = _timed(lambda: report.render_html(context))
    _, t_pdf = _timed(lambda: report.html_to_pdf(report.render_html(report._pdf_context(context))))
    _, t_save = _timed(lambda: fit.save(out / "fit.qagg"))
    X = train.drop(columns="strength").select_dtypes("number").to_numpy()
    return {"fit": t_fit, "report context": t_ctx, "html": t_html, "pdf (weasyprint)": t_pdf,
            "save": t_save, "yardstick_s": yardstick(X, train["strength"].to_numpy()),
            "learner_task_s": {k: round(v, 3) for k, v in fit._base.crossfit.seconds.items()}}


def section_demo() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        stages = _demo_stages(Path(tmp))
        runs = []
        for _ in range(3):
            _, seconds = _timed(lambda: subprocess.run(
                [sys.executable, "-m", "qaggstats", "demo", "--out", tmp], check=True,
                capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}))
            runs.append(seconds)
    return {"demo_s": float(np.median(runs)), "runs_s": runs, "stages_s": stages}


def section_boost9() -> dict:
    """Mean WIS over BOOST9_SPLITS random 75/25 splits (seeds 0, 1, ...), and the fit time."""
    taus = np.array(NINE)
    rows = []
    for name, n in (("concrete", None), ("kin8nm", None), ("protein-tertiary-structure", 20_000),
                    ("synthetic", None)):
        scores = {label: [] for label in BOOST9_CONFIGS}
        fit_yards = {label: [] for label in BOOST9_CONFIGS}
        for seed in range(BOOST9_SPLITS):
            Xtr, ytr, Xte, yte = _synthetic(seed=seed) if name == "synthetic" else _split(name, n, seed)
            yard = yardstick(Xtr, ytr)
            for label, params in BOOST9_CONFIGS.items():
                fit, t_fit = _timed(lambda: GradientBoosting(random_state=0, **params).fit(Xtr, ytr, taus))
                scores[label].append(wis(yte, np.sort(fit.predict(Xte), axis=1), taus))
                fit_yards[label].append(t_fit / yard)
        former = np.array(scores[next(iter(BOOST9_CONFIGS))])
        for label in BOOST9_CONFIGS:
            w = np.array(scores[label])
            rows.append({"data": name, "train": len(ytr), "config": label, "mean_wis": float(w.mean()),
                         "vs_former_pct": float(100 * (w.mean() / former.mean() - 1)),
                         "splits_better": f"{int(np.sum(w < former))}/{BOOST9_SPLITS}",
                         "fit_yardsticks": float(np.median(fit_yards[label]))})
    return {"rows": rows}


AGGREGATE_SPLITS = 3


def section_aggregate() -> dict:
    """Held-out WIS of qagg with the former and current learner defaults, mean over splits."""
    former = {"forest": QuantileForest(n_estimators=100),
              "boost": GradientBoosting(max_iter=100, max_leaf_nodes=15, learning_rate=0.1)}
    rows = []
    for name, n in (("concrete", None), ("kin8nm", None), ("protein-tertiary-structure", 20_000)):
        runs = {"former defaults (forest 100 trees; boosting 100 trees of 15 leaves, rate 0.1)": [],
                "current defaults": []}
        for seed in range(AGGREGATE_SPLITS):
            Xtr, ytr, Xte, yte = _split(name, n, seed)
            cols = [f"x{j}" for j in range(Xtr.shape[1])]
            train = pd.DataFrame(Xtr, columns=cols).assign(y=ytr)
            test = pd.DataFrame(Xte, columns=cols).assign(y=yte)
            for label, changed in zip(runs, (former, {})):
                models = qa.pipeline.default_models(0) | changed
                fit, t_fit = _timed(lambda: qa.qagg("y ~ .", train, models=models, taus=NINE,
                                                    conformal="cqr", test=test, n_jobs=-1))
                scores = fit.test_scores["wis"]
                runs[label].append((scores["aggregate"], scores["forest"], scores["boost"], t_fit))
        for label, values in runs.items():
            agg, forest, boost, seconds = np.array(values).T
            rows.append({"data": name, "train": len(ytr), "models": label,
                         "aggregate_wis": float(agg.mean()), "forest_wis": float(forest.mean()),
                         "boost_wis": float(boost.mean()), "qagg_s": float(np.median(seconds))})
    return {"rows": rows}


def _load(run: str) -> dict:
    done = {}
    if LOG.exists():
        for line in LOG.read_text().splitlines():
            rec = json.loads(line)
            if rec["run"] == run:
                done[rec["section"]] = rec
    return done


def _tables(done: dict) -> str:
    head = next(iter(done.values()))
    parts = [f"{head['date']} on {head['machine']}; the machine is shared with about six other "
             "agents' jobs, so absolute times are noisy and the ratios to the yardstick (one "
             "single-threaded `HistGradientBoostingRegressor(loss=\"quantile\")` fit on the same "
             f"rows, measured in the same run) are the figures to compare. Run `{head['run']}`: "
             "`nice python benchmarks/bench_pipeline.py --write` (raw records: "
             "`benchmarks/results/pipeline.jsonl`)."]
    for key in ("pipeline", "protein"):
        if key in done:
            r = done[key]["result"]
            parts.append(f"\n**`qa.qagg` default models, {r['rows']:,} protein rows, 9 levels, CQR, n_jobs=-1**"
                         f"{_load_note(done[key])}: "
                         f"{r['qagg_s']:.1f} s = **{r['qagg_yardsticks']:.1f} yardsticks** "
                         f"(yardstick {r['yardstick_s']:.2f} s)."
                         + (f" Predicting {r['predict_rows']:,} rows: {r['predict_s']:.2f} s = "
                            f"**{r['predict_yardsticks']:.2f} yardsticks**." if "predict_s" in r else ""))
            tasks = ", ".join(f"{k} {v:.1f}" for k, v in r["learner_task_s"].items())
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items())
            parts.append(f"Where the time goes: task seconds per learner, summed over its 5 fold "
                         f"fits and the refit (they run 2 at a time): {tasks}. Stages (wall s): {stages}."
                         + (" Prediction per learner (s): " + ", ".join(
                             f"{k} {v}" for k, v in r["predict_learner_s"].items()) + "."
                            if "predict_learner_s" in r else ""))
    if "demo" in done:
        r = done["demo"]["result"]
        st = r["stages_s"]
        stages = ", ".join(f"{k} {st[k]:.2f}" for k in ("fit", "report context", "html", "pdf (weasyprint)", "save"))
        tasks = ", ".join(f"{k} {v:.1f}" for k, v in st["learner_task_s"].items())
        parts.append(f"\n**`qaggstats demo`** (concrete, 824 training rows, 7 levels, CQR, HTML and PDF "
                     f"report, saved fit){_load_note(done['demo'])} as a whole process: **{r['demo_s']:.1f} s** (median of "
                     f"{', '.join(f'{v:.1f}' for v in r['runs_s'])}; the yardstick on its training rows "
                     f"is {st['yardstick_s']:.3f} s). Stages in one process (s): {stages}; "
                     f"learner task seconds: {tasks}.")
    if "rq" in done:
        r = done["rq"]["result"]
        parts.append(
            "\n**`rq_fit` on protein (45,730 x 10)** against R quantreg in the same run:\n\n"
            "| | median s | 9 levels s |\n|---|---:|---:|\n"
            f"| qaggstats (Frisch–Newton + certified vertex) | {r['ours_median_s']:.3f} | {r['ours_9_s']:.2f} |\n"
            f"| R `rq(method=\"fn\")` | {r['R_fn_median_s']:.3f} | {r['R_fn_9_s']:.2f} |\n"
            f"| R `rq(method=\"br\")` | {r['R_br_median_s']:.3f} | {r['R_br_9_s']:.2f} |\n\n"
            f"Ratio to R \"fn\": {r['ratio_to_R_fn_median']:.2f} (median), {r['ratio_to_R_fn_9']:.2f} "
            f"(9 levels). Median objective relative to R: br {r['R_br_obj_rel_diff']:.1e}, "
            f"fn {r['R_fn_obj_rel_diff']:.1e} (R's fn stops at its own tolerance; ours is the vertex).")
    if "forest" in done:
        df = pd.DataFrame(done["forest"]["result"]["rows"])
        parts.append(f"\n**Quantile forest configurations** (mean WIS over {FOREST_SPLITS} random 75/25 "
                     "splits, 9 levels, one thread; median fit time in yardsticks on the same training "
                     "rows):\n")
        parts.append(_md(df[["data", "train", "config", "wis", "fit_yardsticks", "fit_s", "predict_rows_per_s"]]))
    if "boost" in done:
        df = pd.DataFrame(done["boost"]["result"]["rows"])
        parts.append("\n**Boosting at 99 levels**: one model per level against a grid of levels "
                     "interpolated in Φ⁻¹(τ) (75/25 split, default settings):\n")
        parts.append(_md(df))
    if "boost9" in done:
        df = pd.DataFrame(done["boost9"]["result"]["rows"])
        parts.append("\n**Boosting at 9 levels**: configurations of `GradientBoosting`, mean WIS over "
                     f"{BOOST9_SPLITS} random 75/25 splits, its change from the former default (first row) "
                     "and on how many splits it was lower; median fit time in yardsticks (one thread) on "
                     "the same training rows:\n")
        parts.append(_md(df))
    if "aggregate" in done:
        df = pd.DataFrame(done["aggregate"]["result"]["rows"])
        parts.append("\n**Held-out WIS of the aggregate** (`qa.qagg`, default models, 9 levels, CQR; "
                     f"mean over {AGGREGATE_SPLITS} random 75/25 splits, median fit seconds):\n")
        parts.append(_md(df))
    return "\n".join(parts)


def _load_note(rec: dict) -> str:
    """The machine's load before a timed section, when it was recorded."""
    return f" (load {rec['load_before']:.1f} before the run)" if "load_before" in rec else ""


def _md(df: pd.DataFrame) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=today(), help="run name; finished sections are not rerun")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--write", action="store_true", help="write the tables into BENCHMARKS.md")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = _load(args.run)
    for key in args.sections:
        if key in done:
            print(f"[{key}] already recorded in run {args.run!r}; skipped", flush=True)
            continue
        print(f"[{key}] running...", flush=True)
        # the shared machine's 1-minute load before the section: above ~1, another job held a
        # core, and the 2-core pipeline lost more to it than the 1-thread yardstick
        load = os.getloadavg()[0]
        result = globals()[f"section_{key}"]()
        rec = {"run": args.run, "section": key, "date": today(), "machine": machine(),
               "load_before": round(load, 2), "result": result}
        with LOG.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        done[key] = rec
        print(json.dumps(result, indent=1, default=str), flush=True)
    text = _tables({k: done[k] for k in SECTIONS if k in done})
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "pipeline", "## The whole pipeline: speed\n\n" + text)


if __name__ == "__main__":
    main()
