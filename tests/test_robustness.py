"""Robustness: every bad input gets a clear QaggError naming the culprit, nothing is lost, and
results are reproducible (same seed, any n_jobs, after save/load).

Data are small and learners cheap (LinearQR, KNN, LocationScale; cv=2) so the file runs fast.
"""
from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import qaggstats as qa
from qaggstats import _cvxpy_model, _lp, aggregate
from qaggstats.errors import (CalibrationError, DataError, FitError, FormulaError, LearnerTypeError,
                              QaggError, SaveError, SolverError)
from qaggstats.learners import KNN, LinearQR, LocationScale

TAUS = [0.1, 0.5, 0.9]
HOSTILE = "<script>alert(1)</script>"


def cheap_models() -> dict:
    return {"lin": LinearQR(), "knn": KNN(k=3)}


def fit_quick(formula: str, data: pd.DataFrame, **kw):
    """qa.qagg with cheap learners, two folds and three levels unless overridden."""
    args = dict(models=cheap_models(), taus=TAUS, cv=2, seed=0)
    args.update(kw)
    return qa.qagg(formula, data, **args)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    x = rng.uniform(0, 1, n)
    g = rng.choice(["a", "b"], n)
    return pd.DataFrame({"x": x, "g": g, "y": x + (g == "b") + rng.normal(0, 0.1, n)})


@pytest.fixture(scope="module")
def fit(df):
    return fit_quick("y ~ x + C(g)", df)


class Boom:
    """A base learner whose fit always raises."""

    formula = None

    def fit(self, X, y, taus):
        raise ValueError("kaboom")

    def predict(self, X):  # pragma: no cover - never reached, fit raises
        return np.zeros((X.shape[0], 1))


# ----------------------------------------------------------------------------- formulas
def test_formula_naming_a_missing_column(df):
    with pytest.raises(FormulaError, match=r"column 'xx', which is not in the data; did you mean 'x'"):
        fit_quick("y ~ xx", df)


def test_formula_with_a_misspelt_function(df):
    with pytest.raises(FormulaError, match=r"unknown function 'lgo' in formula term 'lgo\(x\)'; did you mean log"):
        fit_quick("y ~ lgo(x)", df)
    with pytest.raises(FormulaError, match=r"unknown function np\.lgo .*did you mean np\.log"):
        fit_quick("y ~ np.lgo(x)", df)


def test_formula_that_is_not_a_formula(df):
    with pytest.raises(FormulaError, match="exactly one '~'"):
        fit_quick("y x", df)


# ----------------------------------------------------------------------------- data
def test_non_numeric_response(df):
    with pytest.raises(DataError, match="response column 'g' must be numeric"):
        fit_quick("g ~ x", df)


def test_constant_response_fits_with_a_note(df):
    res = fit_quick("y ~ x", df.assign(y=2.0))
    assert np.all(res.predict(df.head(3)).to_numpy() == pytest.approx(2.0))
    assert any("'y' is constant (2)" in note for note in res.notes)
    assert "'y' is constant" in str(res.summary())


def test_missing_values_are_counted_and_dropped(df):
    data = df.copy()
    data.loc[[1, 2], "x"] = np.nan
    data.loc[5, "y"] = np.nan
    res = fit_quick("y ~ x", data)
    assert (res.na.n_input, res.na.n_used, res.na.n_dropped) == (40, 37, 3)
    assert res.na.by_column == {"x": 2, "y": 1}
    assert sorted(res.na.dropped_index) == [1, 2, 5]
    assert res.n_train == 37
    text = str(res.summary())
    assert "40 given, 37 used (3 dropped for missing values)" in text and "x: 2, y: 1" in text


def test_missing_values_raise_with_na_raise(df):
    data = df.copy()
    data.loc[[1, 2], "x"] = np.nan
    with pytest.raises(DataError, match=r"missing values \(NA\) in column\(s\) \{'x': 2\}"):
        fit_quick("y ~ x", data, na="raise")


@pytest.mark.parametrize("column", ["x", "y"])
def test_infinite_values_are_an_error(df, column):
    data = df.copy()
    data.loc[3, column] = -np.inf
    with pytest.raises(DataError, match=f"column '{column}' has 1 infinite value"):
        fit_quick("y ~ x", data)


def test_mixed_type_column_is_named(df):
    data = df.copy()
    data["x"] = data["x"].astype(object)
    data.loc[0, "x"] = "abc"
    with pytest.raises(DataError, match="column 'x' mixes values of types float, str"):
        fit_quick("y ~ x", data)


@pytest.mark.parametrize("data", [pd.DataFrame(), pd.DataFrame({"y": [], "x": []})], ids=["no-columns", "no-rows"])
def test_empty_data_frame(data):
    with pytest.raises(DataError, match="data frame has no rows"):
        fit_quick("y ~ x", data)


def test_data_that_is_not_a_frame(df):
    with pytest.raises(DataError, match="data must be a pandas DataFrame, got dict"):
        fit_quick("y ~ x", df.to_dict("list"))


def test_fewer_rows_than_folds(df):
    with pytest.raises(DataError, match="3 training rows are fewer than cv=5 folds"):
        fit_quick("y ~ x", df.head(3), cv=5)


# ----------------------------------------------------------------------------- quantile levels
@pytest.mark.parametrize("levels, bad", [([0.0, 0.5], "0"), ([0.5, 1.0], "1"), ([-0.1, 0.5], "-0.1"),
                                         ([0.5, 1.2], "1.2")])
def test_levels_outside_unit_interval(df, levels, bad):
    with pytest.raises(DataError, match=f"quantile level {bad} \\(position \\d\\) is outside \\(0, 1\\)"):
        fit_quick("y ~ x", df, taus=levels)


def test_duplicated_levels(df):
    with pytest.raises(DataError, match="quantile levels are duplicated: 0.5"):
        fit_quick("y ~ x", df, taus=[0.1, 0.5, 0.5])


def test_unsorted_levels_are_sorted_with_a_note(df, fit):
    res = fit_quick("y ~ x + C(g)", df, taus=[0.9, 0.1, 0.5])
    assert res.taus.tolist() == TAUS
    note = "quantile levels were not increasing; sorted to 0.1, 0.5, 0.9"
    assert note in res.notes and note in str(res.summary())
    # sorting the levels changes nothing else
    assert np.array_equal(res.predict(df).to_numpy(), fit.predict(df).to_numpy())


# ----------------------------------------------------------------------------- calibration
def test_calibration_set_too_small_for_the_coverage(df):
    with pytest.raises(CalibrationError, match=r"needs at least 49 calibration points for the 98% interval "
                                               r"\(levels 0.01, 0.99\); got n_cal = 4"):
        fit_quick("y ~ x", df, taus=[0.01, 0.5, 0.99], conformal="cqr", cal_size=0.1)


# ----------------------------------------------------------------------------- learners
def test_failing_learner_is_named(df):
    with pytest.raises(FitError, match="learner 'boom' failed in fold 1 of 2: ValueError: kaboom"):
        fit_quick("y ~ x", df, models={"lin": LinearQR(), "boom": Boom()})


def test_failing_learner_is_dropped_and_reported(df):
    res = fit_quick("y ~ x", df, models={"lin": LinearQR(), "boom": Boom()}, on_error="drop")
    assert res.models == ["lin"]
    assert res.Q.shape[1] == 1
    assert any(n.startswith("learner 'boom' was dropped") and "kaboom" in n for n in res.notes)
    assert "learner 'boom' was dropped" in str(res.summary())
    assert res.predict(df.head(2)).notna().all().all()


def test_every_learner_failing_is_an_error_even_with_drop(df):
    with pytest.raises(FitError, match="every learner failed and was dropped.*kaboom"):
        fit_quick("y ~ x", df, models={"boom": Boom()}, on_error="drop")


def test_object_that_is_not_a_learner(df):
    with pytest.raises(LearnerTypeError, match=r"learner 'mine' \(str\) has no fit method"):
        fit_quick("y ~ x", df, models={"mine": "LinearQR"})
    assert issubclass(LearnerTypeError, FitError) and issubclass(LearnerTypeError, TypeError)
    from qaggstats.learners.base import LearnerTypeError as from_base  # old import path still works

    assert from_base is LearnerTypeError


# ----------------------------------------------------------------------------- solvers
def _sorted_Q(n: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    Q = np.sort(rng.normal(size=(n, 2, 3)), axis=2)
    return Q, y, np.array(TAUS)


@pytest.mark.parametrize("solver, status", [
    ("cvxpy", "CLARABEL: infeasible"),
    # the structured path solves the dual, whose status 'Unbounded' reads as the opposite of
    # what happened; the message should translate it
    ("fast", "infeasible"),
])
def test_infeasible_constraints_give_solver_error_with_status(solver, status):
    Q, y, taus = _sorted_Q()
    # simplex weights keep the aggregate inside the base models' range, so a gap of 1e3
    # between adjacent levels cannot be met
    with pytest.raises(SolverError, match=status):
        aggregate.fit_weights(Q, y, taus, family="quantile", noncrossing=True, min_gap=1e3, solver=solver)


def test_infeasible_constraints_list_every_solver_tried():
    import cvxpy as cp

    Q, y, taus = _sorted_Q()
    with pytest.raises(SolverError) as info:
        aggregate.fit_weights(Q, y, taus, family="quantile", min_gap=1e3, solver="cvxpy")
    chain = [s for s in _cvxpy_model.CVXPY_ORDER if s in cp.installed_solvers()]
    assert len(chain) >= 2
    for name in chain:
        assert f"{name}: infeasible" in str(info.value)


@pytest.fixture
def clarabel_fails(monkeypatch):
    """Make every cvxpy solve with Clarabel raise, as a crashing solver would."""
    import cvxpy as cp

    real = cp.Problem.solve

    def solve(self, *args, **kwargs):
        if kwargs.get("solver") == "CLARABEL":
            raise cp.error.SolverError("Clarabel crashed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", solve)


def test_failing_solver_hands_over_to_the_next(df, fit, clarabel_fails):
    res = fit_quick("y ~ x + C(g)", df, solver="cvxpy")
    assert res.weight_fit.solver != "CLARABEL" and res.weight_fit.status == "optimal"
    assert res.weight_fit.attempts["CLARABEL"] == "error: Clarabel crashed"
    # another LP solver reaches the same optimum
    assert res.weight_fit.objective == pytest.approx(fit.weight_fit.objective, rel=1e-5, abs=1e-8)


def test_every_solver_failing_gives_solver_error(df, monkeypatch):
    import cvxpy as cp

    def solve(self, *args, **kwargs):
        raise cp.error.SolverError(f"{kwargs.get('solver')} broke")

    monkeypatch.setattr(cp.Problem, "solve", solve)
    with pytest.raises(SolverError, match=r"weight fit failed with every solver: CLARABEL: error: CLARABEL broke; "
                                          r"HIGHS: error: HIGHS broke"):
        fit_quick("y ~ x", df, solver="cvxpy")


def test_structured_path_failure_falls_back_to_cvxpy(df, monkeypatch):
    def broken(*args, **kwargs):
        raise SolverError("HiGHS (structured dual simplex) stopped with status 'Time limit reached' on test")

    monkeypatch.setattr(_lp, "solve_structured", broken)
    res = fit_quick("y ~ x", df, solver="auto")
    assert res.weight_fit.status == "optimal"
    assert "Time limit reached" in res.weight_fit.attempts["HIGHS-structured"]


# ----------------------------------------------------------------------------- new data
def test_newdata_missing_column(fit, df):
    with pytest.raises(DataError, match=r"new data lack column\(s\) \['g'\] used by 'y ~ x \+ C\(g\)'"):
        fit.predict(df[["x"]])


def test_newdata_extra_columns_are_ignored(fit, df):
    extra = df.assign(zz="anything", w=np.nan)
    assert np.array_equal(fit.predict(extra).to_numpy(), fit.predict(df).to_numpy())
    # without the response too
    assert np.array_equal(fit.predict(df.drop(columns="y")).to_numpy(), fit.predict(df).to_numpy())


@pytest.mark.parametrize("bad", ["all-strings", "one-string", "bool"])
def test_newdata_wrong_dtype_names_the_column(fit, df, bad):
    new = df.head(5).copy()
    if bad == "all-strings":
        new["x"] = new["x"].astype(str)
    elif bad == "one-string":
        new["x"] = new["x"].astype(object)
        new.loc[new.index[0], "x"] = "abc"
    else:
        new["x"] = True
    with pytest.raises(DataError, match="column 'x' must be numeric"):
        fit.predict(new)


def test_newdata_unseen_category(fit, df):
    with pytest.raises(DataError, match=r"column 'g' has level\(s\) \['c'\] not seen in training "
                                        r"\(training levels: \['a', 'b'\]\)"):
        fit.predict(df.head(3).assign(g=["a", "c", "b"]))


def test_newdata_missing_values_give_nan_rows_only(fit, df):
    new = df.head(6).copy()
    new.loc[new.index[[1, 4]], "x"] = np.nan
    pred = fit.predict(new)
    assert pred.index.equals(new.index)
    assert pred.isna().all(axis=1).tolist() == [False, True, False, False, True, False]
    ok = [0, 2, 3, 5]
    assert np.array_equal(pred.iloc[ok].to_numpy(), fit.predict(df.head(6).iloc[ok]).to_numpy())


def test_newdata_empty(fit, df):
    pred = fit.predict(df.iloc[:0])
    assert pred.shape == (0, 3) and list(pred.columns) == ["q0.1", "q0.5", "q0.9"]


def test_newdata_not_a_frame(fit, df):
    with pytest.raises(DataError, match="newdata must be a pandas DataFrame, got ndarray"):
        fit.predict(df.to_numpy())


# ----------------------------------------------------------------------------- saved fits
def test_save_load_round_trip_is_identical(fit, df, tmp_path):
    path = fit.save(tmp_path / "fit.qagg")
    back = qa.load(path)
    assert np.array_equal(back.predict(df).to_numpy(), fit.predict(df).to_numpy())
    assert back.weights.equals(fit.weights) and back.taus.tolist() == TAUS
    assert [p.name for p in tmp_path.iterdir()] == ["fit.qagg"]  # no temporary file left


def test_save_load_round_trip_with_conformal(df, tmp_path):
    res = fit_quick("y ~ x", df, conformal="cv+", cv=3, taus=[0.25, 0.5, 0.75])  # nested CV+ needs 3 folds
    back = qa.load(res.save(tmp_path / "cvplus.qagg"))
    assert np.array_equal(back.predict(df).to_numpy(), res.predict(df).to_numpy())


@pytest.mark.parametrize("content, why", [
    (b"", "is not a qaggstats saved fit"),
    (b"\x00\x01garbage, not a pickle", "is not a qaggstats saved fit"),
    (pickle.dumps({"some": "dict"}), "looks like a pickle, which qaggstats no longer loads"),
    (pickle.dumps([1, 2, 3]), "looks like a pickle, which qaggstats no longer loads"),
], ids=["empty", "garbage", "foreign-dict", "foreign-list"])
def test_load_corrupt_or_foreign_file(tmp_path, content, why):
    path = tmp_path / "bad.qagg"
    path.write_bytes(content)
    with pytest.raises(SaveError, match=f"{path}.*{why}"):
        qa.load(path)


def test_load_truncated_file(fit, tmp_path):
    path = fit.save(tmp_path / "fit.qagg")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SaveError, match=f"{path} is not a qaggstats saved fit"):
        qa.load(path)


def test_load_other_version_and_missing_file(fit, tmp_path):
    path = fit.save(tmp_path / "old.qagg")
    raw = path.read_bytes()
    path.write_bytes(raw.replace(f'"version": "{qa.__version__}"'.encode(), b'"version": "0.0.1"', 1))
    with pytest.raises(SaveError, match=r"saved by qaggstats 0\.0\.1.*"):
        qa.load(path)
    with pytest.raises(SaveError, match=f"cannot read saved fit {tmp_path / 'nope.qagg'}"):
        qa.load(tmp_path / "nope.qagg")


# ----------------------------------------------------------------------------- unwritable paths
@pytest.mark.parametrize("write", ["save", "report"])
def test_unwritable_paths_name_the_path_and_leave_nothing(fit, tmp_path, write):
    suffix = ".qagg" if write == "save" else ".html"
    missing_dir = tmp_path / "no" / "such" / f"out{suffix}"
    with pytest.raises(SaveError, match=f"cannot write (report )?{missing_dir}: directory {missing_dir.parent} "
                                        "does not exist"):
        getattr(fit, write)(missing_dir)
    a_directory = tmp_path / f"taken{suffix}"
    a_directory.mkdir()
    with pytest.raises(SaveError, match=f"cannot write (report )?{a_directory}"):
        getattr(fit, write)(a_directory)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [f"taken{suffix}"]


@pytest.mark.parametrize("write", ["save", "report"])
def test_failure_while_writing_leaves_no_half_written_file(fit, tmp_path, monkeypatch, write):
    suffix = ".qagg" if write == "save" else ".html"
    target = tmp_path / f"out{suffix}"
    target.write_text("previous version")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)  # results and report both write through os.replace
    with pytest.raises(SaveError, match=f"cannot write (report )?{target}: No space left on device"):
        getattr(fit, write)(target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_text() == "previous version"


# ----------------------------------------------------------------------------- reproducibility
def _random_models() -> dict:
    """Cheap learners plus a random one, so seeds and worker processes matter."""
    return {"lin": LinearQR(), "knn": KNN(k=3), "ls": LocationScale(),
            "forest": qa.learners.QuantileForest(n_estimators=10, min_samples_leaf=3, random_state=None)}


def test_same_seed_is_bitwise_identical_across_runs_and_n_jobs(df):
    runs = [fit_quick("y ~ x + C(g)", df, models=_random_models(), seed=7, n_jobs=n_jobs, conformal="cv+", cv=3)
            for n_jobs in (1, 1, 2)]
    first = runs[0]
    for other in runs[1:]:
        assert np.array_equal(other.Q, first.Q)
        assert np.array_equal(other.weight_fit.alpha, first.weight_fit.alpha)
        assert np.array_equal(other.predict(df).to_numpy(), first.predict(df).to_numpy())
    # the seed is not ignored: another seed moves the folds and the random learner
    other_seed = fit_quick("y ~ x + C(g)", df, models=_random_models(), seed=8, conformal="cv+", cv=3)
    assert not np.array_equal(other_seed.Q, first.Q)


# ----------------------------------------------------------------------------- reports
def test_hostile_column_name_is_escaped_end_to_end(df, tmp_path):
    data = pd.DataFrame({HOSTILE: df["x"], "y": df["y"]})
    data.loc[3, HOSTILE] = np.nan  # the name then also heads a row of the NA table
    res = fit_quick("y ~ .", data)
    page = res.report(tmp_path / "hostile.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<script" not in page.lower()
    assert '<th scope="row" class="label">&lt;script&gt;alert(1)&lt;/script&gt;</th><td class="num ">1</td>' in page
    assert "<script" not in res.summary().as_html()
    assert res.predict(data.head(2)).notna().all().all()


def test_results_formulas_are_expanded_and_escaped_in_summary(df):
    data = pd.DataFrame({HOSTILE: df["x"], "y": df["y"]})
    res = fit_quick("y ~ .", data)
    assert res.formulas == {"lin": f"y ~ Q('{HOSTILE}')", "knn": f"y ~ Q('{HOSTILE}')"}
    summary = res.summary().as_html()
    assert "<script" not in summary and "&lt;script&gt;alert(1)&lt;/script&gt;" in summary


# ----------------------------------------------------------------------------- fuzz
_COLUMN_KINDS = ("float", "int", "str", "bool", "category", "constant")


@st.composite
def frames(draw):
    """Small frames with mixed dtypes, NaNs, duplicated rows and constant columns."""
    n = draw(st.one_of(st.integers(0, 4), st.integers(8, 16)))  # tiny frames, and some that fit
    kinds = draw(st.lists(st.sampled_from(_COLUMN_KINDS), min_size=1, max_size=3))
    floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    response = draw(st.sampled_from(["float", "float", "float", "int", "bool", "str"]))
    values = {"float": st.one_of(floats, st.just(np.nan)), "int": st.integers(-3, 3), "bool": st.booleans(),
              "str": st.sampled_from(["a", "b"])}[response]
    data = {"y": draw(st.lists(values, min_size=n, max_size=n))}
    for j, kind in enumerate(kinds):
        # names patsy cannot take bare ("y ~ ." quotes them) and a hostile one
        name = draw(st.sampled_from([f"{kind}{j}", f"{kind} {j}", f"<b>{kind}{j}</b>"]))
        if kind == "float":
            col = draw(st.lists(st.one_of(floats, st.just(np.nan)), min_size=n, max_size=n))
        elif kind == "int":
            col = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
        elif kind == "str":
            col = draw(st.lists(st.one_of(st.sampled_from(["a", "b", "c d", "<é>"]), st.none()),
                                min_size=n, max_size=n))
        elif kind == "bool":
            col = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        elif kind == "category":
            col = pd.Categorical(draw(st.lists(st.sampled_from(["lo", "mid", "hi"]), min_size=n, max_size=n)),
                                 categories=["lo", "mid", "hi"])
        else:
            col = [1.5] * n
        data[name] = col
    frame = pd.DataFrame(data)
    if n and draw(st.booleans()):
        frame = pd.concat([frame, frame.iloc[: draw(st.integers(1, n))]], ignore_index=True)
    return frame


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=frames(), cv=st.sampled_from([2, 3]),
       quantiles=st.sampled_from([[0.5], [0.1, 0.5, 0.9], [0.25, 0.75]]),
       formula=st.sampled_from(["y ~ .", "y ~ 1", "y ~ . - 1"]))
def test_fuzz_qagg_gives_a_result_or_a_qagg_error(data, cv, quantiles, formula):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = qa.qagg(formula, data, models={"lin": LinearQR(), "knn": KNN(k=3), "ls": LocationScale()},
                          taus=quantiles, cv=cv, seed=0)
    except QaggError as err:
        # the message names the culprit: a column, a term of the formula, a learner, an argument
        culprits = {str(c) for c in data.columns} | {"lin", "knn", "ls", "cv", "quantile level", "rows",
                                                     "formula", "response"}
        culprits |= {t.strip() for t in formula.replace("~", "+").split("+") if t.strip()}
        assert any(c in str(err) for c in culprits), str(err)
        event(f"qagg raised {type(err).__name__}")  # --hypothesis-show-statistics shows the mix
        return
    event("qagg fitted")
    # the rows used in training always predict: complete and without crossings ("sort")
    pred = res.predict(res.frame).to_numpy()
    assert pred.shape == (res.n_train, len(quantiles)) and np.isfinite(pred).all()
    assert np.all(np.diff(pred, axis=1) >= 0)
    try:  # all input rows: NaN where a predictor is missing, or a QaggError (e.g. a level only in dropped rows)
        full = res.predict(data)
    except QaggError as err:
        assert str(err)
    else:
        assert full.shape == (len(data), len(quantiles))


# --------------------------------------------------------------------------- issue 25
def test_obs_weights_with_duplicated_labels_are_never_matched_by_position(df):
    data = df.copy()
    data.index = [0, 0] + list(range(2, len(df)))
    reversed_weights = pd.Series(np.arange(1.0, len(df) + 1), index=data.index[::-1])
    with pytest.raises(DataError, match=r"obs_weights .* duplicated labels \(e.g. 0\).*obs_weights.to_numpy"):
        fit_quick("y ~ x", data, obs_weights=reversed_weights)
    # the data's own index (same labels, same order) says which value is whose
    own = pd.Series(np.arange(1.0, len(df) + 1), index=data.index)
    a = fit_quick("y ~ x", data, obs_weights=own)
    b = fit_quick("y ~ x", data, obs_weights=own.to_numpy())
    np.testing.assert_array_equal(a.weights["weight"], b.weights["weight"])


def test_extreme_obs_weights_are_named(df):
    w = np.ones(len(df))
    w[3] = 1e300
    with pytest.raises(DataError, match=r"obs_weights ranges from 1 to 1e\+300.*rescale"):
        fit_quick("y ~ x", df, obs_weights=w)


def test_fewer_rows_than_linear_parameters_is_refused(df):
    with pytest.raises(DataError, match=r"model 'lin' \(LinearQR\).* 8 independent columns.* 4 of the 8 "
                                        r"training rows.*zero width"):
        fit_quick("y ~ poly(x, 6) + g", df.head(8))


def test_a_response_far_from_zero_gets_the_same_weights(df):
    # convex weights do not change when y and every prediction move by one constant; the LP
    # used to fail (a raw solver dump) at y + 1e12
    models = {"knn3": KNN(k=3), "knn8": KNN(k=8)}
    near = fit_quick("y ~ x", df, models=models)
    far = fit_quick("y ~ x", df.assign(y=df["y"] + 1e12), models=models)
    # (y itself is stored to about 1e-4 at 1e12, so the base predictions differ at that level)
    np.testing.assert_allclose(far.weights["weight"], near.weights["weight"], atol=2e-3)
    np.testing.assert_allclose(far.oof_scores["wis"], near.oof_scores["wis"], rtol=1e-3)


def test_unseen_test_levels_fail_at_fit_time(df):
    test = df.head(5).copy()
    test.loc[test.index[0], "g"] = "zz"
    with pytest.raises(DataError, match=r"test= \(model 'lin'\): column 'g' has level\(s\) \['zz'\] not seen"):
        fit_quick("y ~ x + C(g)", df, test=test)
