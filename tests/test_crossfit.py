"""Cross-fitting: folds, out-of-fold correctness, refits, determinism, parallelism, errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qaggstats.crossfit import CrossFit, crossfit, fit_task, make_folds
from qaggstats.errors import DataError, FitError
from qaggstats.learners import KNN, GradientBoosting, LocationScale, QuantileForest

TAUS = np.array([0.1, 0.5, 0.9])


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, n)
    y = x + (0.5 + x) * rng.standard_normal(n)
    X = np.column_stack([np.ones(n), x])
    return X, y


class Failing:
    """Raises in fit when the training rows include row ``bad`` (marked by x == 99)."""

    formula = None

    def fit(self, X, y, taus):
        if (X[:, -1] == 99.0).any():
            raise ValueError("singular design at row 99")
        self.r = len(taus)
        return self

    def predict(self, X):
        return np.zeros((X.shape[0], self.r))


class NaNPredictor(Failing):
    def fit(self, X, y, taus):
        self.r = len(taus)
        return self

    def predict(self, X):
        return np.full((X.shape[0], self.r), np.nan)


class Seeded:
    """Remembers the random_state it was fitted with."""

    formula = None

    def __init__(self):
        self.random_state = None

    def fit(self, X, y, taus):
        self.seen = self.random_state
        self.r = len(taus)
        return self

    def predict(self, X):
        return np.full((X.shape[0], self.r), float(self.seen % 1000))


def test_make_folds_balanced_deterministic_and_seeded():
    f = make_folds(103, 5, seed=7)
    assert f.shape == (103,) and f.dtype == np.int64
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(f, make_folds(103, 5, seed=7))
    assert not np.array_equal(f, make_folds(103, 5, seed=8))


@pytest.mark.parametrize("n, cv, message", [
    (3, 5, "cannot cross-fit 3 rows with cv=5 folds: fewer rows than folds"),
    (10, 1, "cv must be an integer number of folds >= 2, got 1"),
    (10, 2.5, "cv must be an integer"),
])
def test_make_folds_errors(n, cv, message):
    with pytest.raises(DataError, match=message):
        make_folds(n, cv, seed=0)


def test_fewer_rows_than_folds_in_crossfit():
    X, y = data(4)
    with pytest.raises(DataError, match="fewer rows than folds"):
        crossfit({"knn": KNN(k=1)}, {"knn": X}, y, TAUS, cv=5)


def test_out_of_fold_predictions_refits_and_fold_models_match_manual_fits():
    X, y = data(120, seed=1)
    Xb = X[:, [0, 1, 1]] ** [1, 1, 2]  # a second design: quadratic in x
    cf = crossfit({"knn": KNN(k=8), "ls": LocationScale()}, {"knn": X, "ls": Xb}, y, TAUS, cv=4, seed=3)
    assert isinstance(cf, CrossFit)
    assert cf.Q.shape == (120, 2, 3) and cf.models == ["knn", "ls"] and cf.cv == 4
    np.testing.assert_array_equal(cf.folds, make_folds(120, 4, seed=3))
    for k in range(4):
        test = cf.folds == k
        manual = LocationScale().fit(Xb[~test], y[~test], TAUS).predict(Xb[test])
        np.testing.assert_allclose(cf.Q[test, 1], manual, rtol=0, atol=1e-12)
        manual = KNN(k=8).fit(X[~test], y[~test], TAUS).predict(X[test])
        np.testing.assert_array_equal(cf.Q[test, 0], manual)
    new = {"knn": X[:5], "ls": Xb[:5]}
    pred = cf.predict(new)
    assert pred.shape == (5, 2, 3)
    np.testing.assert_allclose(pred[:, 1], LocationScale().fit(Xb, y, TAUS).predict(Xb[:5]), atol=1e-12)
    folds = cf.predict_folds(new)
    assert folds.shape == (4, 5, 2, 3)
    for k in range(4):
        np.testing.assert_array_equal(folds[k, :, 0], cf.fold_models["knn"][k].predict(X[:5]))
    assert set(cf.seconds) == {"knn", "ls"} and all(s >= 0 for s in cf.seconds.values())
    assert cf.dropped == {}


def test_input_learners_are_not_modified_and_random_state_is_set_from_seed():
    X, y = data(40)
    learner = Seeded()
    cf = crossfit({"a": learner, "b": Seeded()}, {"a": X, "b": X}, y, TAUS, cv=3, seed=5)
    assert learner.random_state is None and not hasattr(learner, "seen")
    seeds_a = {m.seen for m in cf.fold_models["a"]} | {cf.fitted["a"].seen}
    seeds_b = {m.seen for m in cf.fold_models["b"]} | {cf.fitted["b"].seen}
    assert len(seeds_a) == 1 and len(seeds_b) == 1 and seeds_a != seeds_b
    again = crossfit({"a": Seeded(), "b": Seeded()}, {"a": X, "b": X}, y, TAUS, cv=3, seed=5)
    assert again.fitted["a"].seen == cf.fitted["a"].seen
    other = crossfit({"a": Seeded()}, {"a": X}, y, TAUS, cv=3, seed=6)
    assert other.fitted["a"].seen != cf.fitted["a"].seen


def test_results_bitwise_identical_across_n_jobs_and_backends():
    X, y = data(150, seed=2)
    learners = {"forest": QuantileForest(n_estimators=10, random_state=None), "knn": KNN(k=10),
                "ls": LocationScale(), "boost": GradientBoosting(max_iter=10)}
    designs = {name: X for name in learners}
    one = crossfit(learners, designs, y, TAUS, cv=3, seed=11, n_jobs=1)
    two = crossfit(learners, designs, y, TAUS, cv=3, seed=11, n_jobs=2)
    threads = crossfit(learners, designs, y, TAUS, cv=3, seed=11, n_jobs=2, backend="threading")
    for other in (two, threads):
        np.testing.assert_array_equal(one.Q, other.Q)
        np.testing.assert_array_equal(one.folds, other.folds)
        np.testing.assert_array_equal(one.predict(designs), other.predict(designs))
        np.testing.assert_array_equal(one.predict_folds(designs), other.predict_folds(designs))


def test_progress_reports_every_task():
    X, y = data(60)
    calls = []
    crossfit({"knn": KNN(k=5), "ls": LocationScale()}, {"knn": X, "ls": X}, y, TAUS, cv=3,
             progress=lambda stage, done, total: calls.append((stage, done, total)))
    # 2 learners x (3 folds + 1 refit) = 8 tasks, reported from 0 to 8
    assert calls == [("cross-fitting", i, 8) for i in range(9)]


def test_failing_learner_raises_fit_error_naming_learner_fold_and_cause():
    X, y = data(60)
    X[7, 1] = 99.0
    with pytest.raises(FitError, match=r"learner 'fragile' failed in fold \d of 3: ValueError: singular design at row 99") as info:
        crossfit({"ls": LocationScale(), "fragile": Failing()}, {"ls": X, "fragile": X}, y, TAUS, cv=3)
    assert isinstance(info.value.__cause__, ValueError)


def test_on_error_drop_keeps_the_others_and_records_why():
    X, y = data(60)
    X[7, 1] = 99.0
    cf = crossfit({"ls": LocationScale(), "fragile": Failing(), "nan": NaNPredictor()},
                  {"ls": X, "fragile": X, "nan": X}, y, TAUS, cv=3, on_error="drop")
    assert cf.models == ["ls"] and cf.Q.shape == (60, 1, 3)
    assert set(cf.dropped) == {"fragile", "nan"}
    assert "singular design at row 99" in cf.dropped["fragile"]
    assert "non-finite" in cf.dropped["nan"] and "fold 1 of 3" in cf.dropped["nan"]
    assert set(cf.fitted) == set(cf.fold_models) == set(cf.seconds) == {"ls"}


def test_all_dropped_is_an_error():
    X, y = data(30)
    with pytest.raises(FitError, match="every learner failed"):
        crossfit({"nan": NaNPredictor()}, {"nan": X}, y, TAUS, cv=3, on_error="drop")


def test_bad_arguments():
    X, y = data(30)
    with pytest.raises(DataError, match="no design matrix given for model 'knn'"):
        crossfit({"knn": KNN(k=3)}, {"other": X}, y, TAUS)
    with pytest.raises(DataError, match=r"design of model 'knn' has shape \(29, 2\)"):
        crossfit({"knn": KNN(k=3)}, {"knn": X[:-1]}, y, TAUS)
    with pytest.raises(DataError, match="on_error must be"):
        crossfit({"knn": KNN(k=3)}, {"knn": X}, y, TAUS, on_error="ignore")
    with pytest.raises(DataError, match="backend 'spark' is not supported; choose from loky, threading, "
                                        "'dask' or a dask.distributed Client"):
        crossfit({"knn": KNN(k=3)}, {"knn": X}, y, TAUS, backend="spark")
    with pytest.raises(FitError, match="learner 'x' \\(str\\) has no fit method"):
        crossfit({"x": "knn"}, {"x": X}, y, TAUS)
    cf = crossfit({"knn": KNN(k=3)}, {"knn": X}, y, TAUS, cv=3)
    with pytest.raises(DataError, match="no design matrix given for model 'knn'"):
        cf.predict({})


def test_fit_task_is_pure_and_returns_errors():
    X, y = data(20)
    learner = KNN(k=3)
    res = fit_task(learner, X[:15], y[:15], X[15:], TAUS)
    assert res.pred.shape == (5, 3) and res.error is None and not hasattr(learner, "taus_")
    failed = fit_task(KNN(k=50), X, y, None, TAUS)
    assert failed.pred is None and "k=50 exceeds" in str(failed.error)


class Unpicklable(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class RaisesUnpicklable(Failing):
    def fit(self, X, y, taus):
        raise Unpicklable("exotic failure", 7)


@pytest.mark.filterwarnings("error")  # also: stopping early must not leak joblib's warning
def test_unpicklable_learner_error_still_reported_from_worker_processes():
    X, y = data(30)
    with pytest.raises(FitError, match="learner 'odd' failed in fold 1 of 3: Unpicklable: exotic failure"):
        crossfit({"odd": RaisesUnpicklable()}, {"odd": X}, y, TAUS, cv=3, n_jobs=2)


class PredictFailsOnNewData(Failing):
    def fit(self, X, y, taus):
        self.r, self.n = len(taus), X.shape[0]
        return self

    def predict(self, X):
        if X.shape[0] == 7:
            raise IndexError("index 7 is out of bounds")
        return np.zeros((X.shape[0], self.r))


def test_predict_on_new_data_wraps_learner_errors_and_handles_zero_rows():
    X, y = data(30)
    cf = crossfit({"p": PredictFailsOnNewData(), "knn": KNN(k=3)}, {"p": X, "knn": X}, y, TAUS, cv=3)
    with pytest.raises(FitError, match="learner 'p' failed to predict on new data: IndexError: index 7"):
        cf.predict({"p": X[:7], "knn": X[:7]})
    with pytest.raises(FitError, match=r"learner 'p' failed to predict \(fold model 1 of 3\)"):
        cf.predict_folds({"p": X[:7], "knn": X[:7]})
    with pytest.raises(DataError, match="KNN: X has 1 columns"):
        cf.predict({"p": X[:2], "knn": X[:2, :1]})
    assert cf.predict({"p": X[:0], "knn": X[:0]}).shape == (0, 2, 3)
    assert cf.predict_folds({"p": X[:0], "knn": X[:0]}).shape == (3, 0, 2, 3)


def test_dask_backend_without_dask_installed_names_the_missing_package(monkeypatch):
    # None in sys.modules makes ``import distributed`` fail as if it were not installed
    monkeypatch.setitem(sys.modules, "distributed", None)
    X, y = data(30)
    with pytest.raises(DataError, match=r"backend='dask' needs the optional package 'distributed', "
                                        r"which is not installed \(pip install 'qaggstats\[dask\]'\)"):
        crossfit({"knn": KNN(k=3)}, {"knn": X}, y, TAUS, cv=3, backend="dask")


def test_importing_crossfit_does_not_import_dask():
    code = "import sys, qaggstats.crossfit, qaggstats.distributed; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class ThreadProbe:
    """Records the BLAS threads and joblib's default n_jobs it sees in fit and in predict."""

    formula = None

    def fit(self, X, y, taus):
        from joblib.parallel import get_active_backend
        from threadpoolctl import threadpool_info
        self.fit_blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        self.fit_jobs = get_active_backend()[1]
        self.r = len(taus)
        return self

    def predict(self, X):
        from joblib.parallel import get_active_backend
        self.predict_jobs = get_active_backend()[1]
        return np.zeros((X.shape[0], self.r))


def test_tasks_run_single_threaded_and_prediction_uses_the_cores():
    X, y = data()
    cf = crossfit({"probe": ThreadProbe()}, {"probe": X}, y, TAUS, cv=3, n_jobs=1)
    fitted = cf.fitted["probe"]
    assert all(n == 1 for n in fitted.fit_blas) and fitted.fit_jobs == 1
    assert cf.n_jobs == 1
    cf.n_jobs = -1
    cf.predict({"probe": X[:5]})
    assert fitted.predict_jobs == -1


def test_default_n_jobs_uses_every_core():
    import inspect
    assert inspect.signature(crossfit).parameters["n_jobs"].default == -1
    X, y = data()
    cf = crossfit({"knn": KNN(k=5)}, {"knn": X}, y, TAUS, cv=3)
    assert cf.n_jobs == -1
