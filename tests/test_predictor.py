"""The fitted predictor, read-only results, slim saves, one option set, and the package's import graph."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import DataError, SolverError
from qaggstats.learners import KNN, LinearQR, LocationScale
from qaggstats.options import OPTIONS, check_option
from qaggstats.predictor import needed_models

PACKAGE = Path(qa.__file__).resolve().parent
TAUS = [0.1, 0.5, 0.9]


@pytest.fixture(scope="module")
def engel():
    return qa.datasets.load("engel")


@pytest.fixture(scope="module")
def fit(engel):
    models = {"lin": LinearQR(), "knn": KNN(k=20), "ls": LocationScale()}
    return qa.qagg("foodexp ~ income", engel.iloc[:180], models=models, taus=TAUS, cv=3, seed=0,
                   conformal="cqr", test=engel.iloc[180:])


# ----------------------------------------------------------------------------- the predictor
def test_predict_is_the_predictor_chain(fit, engel):
    """fit.predict, the predictor's parts and the weights applied by hand agree exactly."""
    new = engel.iloc[180:]
    parts = fit.predictor.predict_parts(new)
    np.testing.assert_array_equal(fit.predict(new).to_numpy(), parts.final)
    by_hand = fit.weight_fit.combine(parts.base)
    np.testing.assert_array_equal(parts.raw, by_hand)
    assert (np.diff(parts.final, axis=1) >= 0).all()


def test_predictions_do_not_depend_on_the_prediction_threads(engel):
    """The predictor runs its learners under joblib's n_jobs; forest and k-NN give the same
    quantiles on one thread as on all cores."""
    from dataclasses import replace

    models = {"forest": qa.learners.QuantileForest(n_estimators=20), "knn": KNN(k=15)}
    fit = qa.qagg("foodexp ~ income", engel, models=models, family="mean", taus=TAUS, cv=3, seed=0)
    assert fit.predictor.n_jobs == -1 and set(fit.predictor.learners) == {"forest", "knn"}
    many = fit.predictor.predict_parts(engel)
    one = replace(fit.predictor, n_jobs=1).predict_parts(engel)
    np.testing.assert_array_equal(many.base, one.base)
    np.testing.assert_array_equal(many.final, one.final)


def test_models_with_zero_weight_are_not_kept():
    class W:
        family = "quantile"
        alpha = np.array([[0.7, 0.0], [0.0, 0.0], [0.3, 1.0]])

    assert needed_models(W, ["a", "b", "c"]) == ["a", "c"]
    W.family = "median"
    assert needed_models(W, ["a", "b", "c"]) == ["a", "b", "c"]


class FarOff:
    """A learner whose quantiles are hopeless (the weight fit gives it zero) and which cannot
    predict outside its training range, like a spline that refuses to extrapolate."""

    formula = None

    def fit(self, X, y, taus):
        self.r, self.hi = len(taus), X[:, -1].max()
        return self

    def predict(self, X):
        if (X[:, -1] > 10 * self.hi).any():
            raise RuntimeError("outside the training range")
        sign = np.where(np.arange(X.shape[0]) % 2 == 0, 1.0, -1.0)  # huge noise: no weight can help
        return np.outer(sign * 1e6, np.ones(self.r))


def test_unused_model_never_blocks_prediction(engel):
    """A model with zero weight everywhere is not kept: its failure cannot block prediction."""
    fit = qa.qagg("foodexp ~ income", engel, models={"lin": LinearQR(), "far": FarOff()}, taus=TAUS, cv=3,
                  family="global")
    assert np.all(fit.weight_fit.alpha[1] == 0)
    assert list(fit.predictor.learners) == ["lin"]
    assert any("far have zero weight at every level" in note for note in fit.notes)
    far = pd.DataFrame({"income": [1e6]})
    assert np.isfinite(fit.predict(far).to_numpy()).all()


# ----------------------------------------------------------------------------- results
def test_results_are_read_only(fit):
    with pytest.raises(AttributeError, match="read-only"):
        fit.taus = np.array([0.5])
    with pytest.raises(AttributeError, match="read-only"):
        fit.oof_scores = None


def test_scores_and_diagnostics_are_computed_once(fit):
    assert fit.oof_scores is fit.oof_scores
    assert fit.diagnostics is fit.diagnostics
    assert {"aggregate", "mean", "median", "lin"} <= set(fit.oof_scores.index)


def test_summary_counts_test_rows_and_names_the_data(fit):
    text = str(fit.summary())
    assert "Test rows:              55 held out" in text
    assert "180 given, 180 used" in text
    assert "Data:                   data frame (180 rows)" in text


def test_diagnostics_state_guarantee_and_check_separately(fit):
    cqr = [d for d in fit.diagnostics if d.claim.startswith("Split CQR")]
    assert cqr, [d.claim for d in fit.diagnostics]
    for d in cqr:
        assert "marginally, in expectation" in d.claim
        assert "95% of test sets of this size fall in" in d.observed
        assert d.held in (True, False)


def test_crossings_below_the_tolerance_are_not_counted():
    y = np.array([500.0, 600.0])
    q = np.array([[1.0, 1.0 - 2.3e-13, 2.0], [1.0, 2.0, 3.0]])
    table = qa.scoring.score_table(y, {"m": q}, [0.1, 0.5, 0.9])
    assert table.loc["m", "crossing_rate"] == 0.0
    q[0, 1] = 1.0 - 1e-3  # a real crossing is still counted
    assert qa.scoring.score_table(y, {"m": q}, [0.1, 0.5, 0.9]).loc["m", "crossing_rate"] == 0.5


# ----------------------------------------------------------------------------- saving
def test_saved_fit_keeps_only_what_prediction_needs(fit, engel, tmp_path):
    path = fit.save(tmp_path / "fit.qagg")
    loaded = qa.load(path)
    new = engel.iloc[180:]
    pd.testing.assert_frame_equal(loaded.predict(new), fit.predict(new), check_exact=True)
    assert str(loaded.summary()) == str(fit.summary())
    assert loaded.y is None and loaded.Q is None and loaded.frame is None
    with pytest.raises(DataError, match="keep_data=True"):
        loaded.plot("fan")
    with pytest.raises(DataError, match="refit"):
        loaded.reweight("global")
    kept = qa.load(fit.save(tmp_path / "full.qagg", keep_data=True))
    np.testing.assert_array_equal(kept.q_oof, fit.q_oof)
    assert path.stat().st_size < (tmp_path / "full.qagg").stat().st_size


# ----------------------------------------------------------------------------- inputs
def test_obs_weights_series_is_aligned_by_label(engel):
    df = engel.iloc[:150]
    w = pd.Series(np.linspace(0.5, 2.0, len(df)), index=df.index)
    models = {"lin": LinearQR(), "knn": KNN(k=20)}
    ref = qa.qagg("foodexp ~ income", df, models=models, taus=TAUS, cv=3, obs_weights=w.to_numpy())
    shuffled = w.sample(frac=1.0, random_state=1)
    fit = qa.qagg("foodexp ~ income", df, models=models, taus=TAUS, cv=3, obs_weights=shuffled)
    np.testing.assert_array_equal(fit.weight_fit.alpha, ref.weight_fit.alpha)
    disjoint = pd.Series(1.0, index=df.index + 10_000)
    with pytest.raises(DataError, match="no value for 150 row label"):
        qa.qagg("foodexp ~ income", df, models=models, taus=TAUS, cv=3, obs_weights=disjoint)
    nan = w.copy()
    nan.iloc[3] = np.nan
    df2 = df.assign(w=nan)
    with pytest.raises(DataError, match="obs_weights column 'w' has 1 missing"):
        qa.qagg("foodexp ~ income", df2, models=models, taus=TAUS, cv=3, obs_weights="w")


@pytest.mark.parametrize("seed", [None, -1, 2**32, 1.5, True])
def test_bad_seeds_are_data_errors(engel, seed):
    with pytest.raises(DataError, match="seed must be an integer"):
        qa.qagg("foodexp ~ income", engel, models={"lin": LinearQR()}, taus=TAUS, cv=3, seed=seed)


def test_noncrossing_at_rows_with_missing_values_are_counted(engel):
    at = engel.iloc[:20].copy()
    at.loc[at.index[:4], "income"] = np.nan
    fit = qa.qagg("foodexp ~ income", engel, models={"lin": LinearQR(), "knn": KNN(k=20)}, taus=TAUS, cv=3,
                  noncrossing_at=at)
    assert any("noncrossing_at: 4 of 20 rows" in note for note in fit.notes)


def test_infeasible_min_gap_is_named(engel):
    with pytest.raises(SolverError, match="min_gap=1e\\+06"):
        qa.qagg("foodexp ~ income", engel, models={"lin": LinearQR(), "knn": KNN(k=20)}, taus=TAUS, cv=3,
                min_gap=1e6)


def test_every_option_set_is_checked_in_one_place():
    for name, choices in OPTIONS.items():
        for value in choices:
            assert check_option(name, value) == value
        with pytest.raises(DataError, match=f"\\({name}=\\); choose one of"):
            check_option(name, "nope")


# ----------------------------------------------------------------------------- the import graph
def _imports(path: Path) -> set[str]:
    """Modules of the package imported anywhere in a file, lazy (function-level) imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ((node.module,) if node.module else ()))
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            out.update(names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qaggstats"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("qaggstats"))
    return out


def test_no_import_cycles_lazy_imports_included():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(path):
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name and imp != "qaggstats":  # the package root only re-exports lazily
                targets.add(imp)
        graph[name] = targets

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_cli_version():
    out = subprocess.run([sys.executable, "-m", "qaggstats", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"qaggstats {qa.__version__}"


def test_plots_name_the_response_and_the_column(fit):
    fan = fit.plot("fan")
    assert fan.axes[0].get_ylabel() == "foodexp"
    cov = fit.plot("coverage", x="income")
    assert any(ax.get_xlabel() == "income" for ax in cov.axes)


def test_qagg_seed_reaches_the_learners_a_user_builds(engel):
    from qaggstats.learners import QuantileForest

    def fit_with(seed):
        return qa.qagg("foodexp ~ income", engel, models={"forest": QuantileForest(n_estimators=10)},
                       taus=TAUS, cv=3, seed=seed).Q

    np.testing.assert_array_equal(fit_with(1), fit_with(1))
    assert not np.array_equal(fit_with(1), fit_with(2))


@pytest.fixture(scope="module")
def regions():
    """Two regions of x where different models are right: where local weights should help."""
    rng = np.random.default_rng(5)
    n = 600
    x = rng.uniform(-2, 2, n)
    g = np.where(rng.random(n) < 0.5, "a", "b")
    y = np.where(x < 0, 1.0 + 0.5 * x, np.sin(3 * x)) + (g == "b") * 0.5 + rng.normal(0, 0.2 + 0.2 * (x > 0), n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def test_local_default_basis_needs_no_formula_and_works_with_factors(regions, tmp_path):
    train, new = regions.iloc[:500], regions.iloc[500:]
    fit = qa.qagg("y ~ x + g", train, models={"lin": LinearQR(), "knn": KNN(k=15)}, taus=TAUS, cv=3,
                  family="local")
    assert fit.family == "local" and fit.predictor.basis.kind == "partition" and fit.predictor.basis_spec is None
    assert fit.weight_fit.selection is not None  # the penalty was chosen by inner validation
    # the tidy weights name the basis functions
    assert list(fit.weights["basis"].unique()) == list(fit.predictor.basis.columns)
    back = qa.load(fit.save(tmp_path / "local.qagg"))
    pd.testing.assert_frame_equal(back.predict(new), fit.predict(new), check_exact=True)
    by_formula = fit.reweight("local", local_formula="~ x + g")
    basis = by_formula.predictor.basis
    assert basis.kind == "additive" and {"gb:1", "gb:2", "x:1"} <= set(basis.columns)
    # a partition of unity over x: the weights are on the simplex at every new row, beyond the range too
    far = new.assign(x=new["x"] * 10)
    X_far = by_formula.predictor.basis_spec.design(far)
    alpha = by_formula.weight_fit.weights_at(basis.transform(X_far, None))
    assert (alpha >= -1e-12).all() and np.allclose(alpha.sum(axis=1), 1.0)
    assert by_formula.weight_fit.partition


def test_auto_says_what_it_compared_and_why(regions):
    fit = qa.qagg("y ~ x + g", regions, models={"lin": LinearQR(), "knn": KNN(k=15)}, taus=TAUS, cv=3,
                  family="auto")
    table = fit.selection
    assert fit.family_requested == "auto" and fit.family in set(table["family"])
    assert set(table["family"]) == {"single", "global", "quantile", "qra", "fqra", "local", "fine", "dqa"}
    assert table["chosen"].sum() == 1
    assert table.loc[table["chosen"], "family"].item() == fit.family
    text = str(fit.summary())
    assert "Weight family selection" in text and "(chosen by auto)" in text


def test_cli_names_a_semicolon_csv_and_predict_keeps_ids(fit, engel, tmp_path, capsys):
    from qaggstats.cli import main

    bad = tmp_path / "semi.csv"
    engel.to_csv(bad, sep=";", index=False)
    assert main(["fit", str(bad), "-f", "foodexp ~ income"]) == 2
    assert "looks semicolon-separated" in capsys.readouterr().err
    saved = fit.save(tmp_path / "fit.qagg")
    new = engel.iloc[180:190].assign(id=[f"r{i}" for i in range(10)])
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(saved), str(tmp_path / "new.csv"), "-o", str(out), "--id", "id",
                 "--keep", "income"]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns[:2]) == ["id", "income"] and pred["id"].tolist() == new["id"].tolist()
    # predictions with the default 10 significant digits; a kept input column with all of its own
    np.testing.assert_allclose(pred[["q0.1", "q0.5", "q0.9"]].to_numpy(), fit.predict(new).to_numpy(), rtol=1e-9)
    np.testing.assert_array_equal(pred["income"], new["income"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
