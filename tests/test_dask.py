"""Dask backend: cross-fitting on a LocalCluster equals the local backend bit for bit, and a
Dask DataFrame in gives a Dask DataFrame out with the in-memory predictions."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe", reason="dask[dataframe] is not installed (optional 'dask' extra)")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (optional 'dask' extra)")

import qaggstats as qa  # noqa: E402
from qaggstats import distributed as qdist  # noqa: E402
from qaggstats.crossfit import crossfit  # noqa: E402
from qaggstats.distributed import predict_dask  # noqa: E402
from qaggstats.errors import DataError, FitError  # noqa: E402
from qaggstats.learners import KNN, LocationScale, QuantileForest  # noqa: E402

TAUS = np.array([0.1, 0.5, 0.9])


def cluster(processes: bool = False) -> distributed.LocalCluster:
    """Two single-threaded workers: the machine is small and shared."""
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                    dashboard_address=None)


def design(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, n)
    return np.column_stack([np.ones(n), x]), x + (0.5 + x) * rng.standard_normal(n)


def assert_same_crossfit(a, b, designs):
    assert a.models == b.models and a.dropped == b.dropped
    np.testing.assert_array_equal(a.folds, b.folds)
    np.testing.assert_array_equal(a.Q, b.Q)
    np.testing.assert_array_equal(a.predict(designs), b.predict(designs))
    np.testing.assert_array_equal(a.predict_folds(designs), b.predict_folds(designs))


def test_crossfit_on_worker_processes_is_bitwise_identical_to_local():
    X, y = design(150, seed=2)
    # random learners with random_state=None get their seed from crossfit's seed
    learners = {"forest": QuantileForest(n_estimators=10), "knn": KNN(k=10), "ls": LocationScale()}
    designs = {name: X for name in learners}
    local = crossfit(learners, designs, y, TAUS, cv=3, seed=11)
    with cluster(processes=True) as c, distributed.Client(c) as client:
        on_client = crossfit(learners, designs, y, TAUS, cv=3, seed=11, backend=client)
        default = crossfit(learners, designs, y, TAUS, cv=3, seed=11, backend="dask")
    assert_same_crossfit(local, on_client, designs)
    assert_same_crossfit(local, default, designs)


class Failing:
    """Fails in every fit whose training rows include a row with x == 99."""

    formula = None

    def fit(self, X, y, taus):
        if (X[:, -1] == 99.0).any():
            raise ValueError("singular design at row 99")
        self.r = len(taus)
        return self

    def predict(self, X):
        return np.zeros((X.shape[0], self.r))


def test_failures_drops_and_progress_are_the_same_as_local():
    X, y = design(60)
    X[7, 1] = 99.0
    learners, designs = {"ls": LocationScale(), "fragile": Failing()}, {"ls": X, "fragile": X}
    calls = []
    with cluster() as c, distributed.Client(c) as client:
        with pytest.raises(FitError, match=r"learner 'fragile' failed in fold \d of 3: ValueError: singular design"):
            crossfit(learners, designs, y, TAUS, cv=3, backend=client)
        dropped = crossfit(learners, designs, y, TAUS, cv=3, backend=client, on_error="drop",
                           progress=lambda *a: calls.append(a))
    local = crossfit(learners, designs, y, TAUS, cv=3, on_error="drop")
    assert dropped.models == ["ls"] and "singular design at row 99" in dropped.dropped["fragile"]
    assert_same_crossfit(local, dropped, {"ls": X})
    assert calls == [("cross-fitting", i, 8) for i in range(9)]


def test_backend_dask_without_a_running_client_is_a_clear_error():
    with pytest.raises(ValueError):
        distributed.get_client()  # precondition: no client left over from another test
    X, y = design(30)
    with pytest.raises(DataError, match=r"backend='dask' uses the current dask.distributed Client, but none is running"):
        crossfit({"knn": KNN(k=3)}, {"knn": X}, y, TAUS, cv=3, backend="dask")


# cv+ so that every partition also goes through the K fold models and the calibration
QAGG_OPTIONS = dict(models={"lin": qa.learners.LinearQR(), "knn": KNN(k=10)}, taus=[0.05, 0.5, 0.95],
                    conformal="cv+", cv=3, seed=0)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"x": rng.uniform(0, 2, n), "g": rng.choice(["a", "b", "c"], n)})
    df["y"] = df["x"] + (df["g"] == "b") + rng.normal(0, 0.3, n)
    fit = qa.qagg("y ~ x + C(g)", df, **QAGG_OPTIONS)
    new = df.drop(columns="y").iloc[:60].copy()
    new.index = new.index + 1000  # a non-default index must be kept
    new.loc[[1003, 1020], "x"] = np.nan
    new.loc[1045, "g"] = None
    return fit, new, df


def test_qagg_with_a_client_equals_local(fitted):
    fit, new, df = fitted
    with cluster() as c, distributed.Client(c) as client:
        on_client = qa.qagg("y ~ x + C(g)", df, backend=client, **QAGG_OPTIONS)
    np.testing.assert_array_equal(fit.Q, on_client.Q)
    pd.testing.assert_frame_equal(fit.weights, on_client.weights, check_exact=True)
    pd.testing.assert_frame_equal(fit.predict(new, interval=0.9), on_client.predict(new, interval=0.9),
                                  check_exact=True)


def test_dask_dataframe_in_dask_dataframe_out_equal_to_in_memory(fitted):
    fit, new, _ = fitted
    ddf = dd.from_pandas(new, npartitions=3)
    out = predict_dask(fit, ddf, interval=0.9)
    assert isinstance(out, dd.DataFrame)
    assert out.npartitions == 3 and out.divisions == ddf.divisions
    assert list(out.columns) == ["q0.05", "q0.5", "q0.95", "lower", "upper"]
    with cluster() as c, distributed.Client(c):
        got = out.compute()
        second = out.partitions[1].compute()
    expected = fit.predict(new, interval=0.9)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(second, fit.predict(ddf.partitions[1].compute(), interval=0.9), check_exact=True)
    missing = got.index.isin([1003, 1020, 1045])
    assert got[missing].isna().all().all() and got[~missing].notna().all().all()
    subset = predict_dask(fit, ddf, taus=[0.5]).compute(scheduler="sync")
    pd.testing.assert_frame_equal(subset, fit.predict(new, taus=[0.5]), check_exact=True)


def test_fitted_results_enter_the_graph_once(fitted):
    fit, new, _ = fitted
    out = predict_dask(fit, dd.from_pandas(new, npartitions=4))
    graph = dict(out.__dask_graph__())
    shipped = [key for key, node in graph.items() if getattr(node, "value", None) is fit]
    assert len(shipped) == 1
    tasks = [node for key, node in graph.items() if str(key).startswith("('_predict_partition")]
    assert len(tasks) == 4 and all(shipped[0] in node.dependencies for node in tasks)


def test_predict_dask_errors_are_raised_before_computing(fitted):
    fit, new, _ = fitted
    ddf = dd.from_pandas(new, npartitions=2)
    with pytest.raises(DataError, match="needs a dask DataFrame, got DataFrame"):
        predict_dask(fit, new)
    with pytest.raises(DataError, match="'g'"):
        predict_dask(fit, ddf.drop(columns="g"))
    with pytest.raises(DataError, match="a 0.5 interval needs levels 0.25 and 0.75"):
        predict_dask(fit, ddf, interval=0.5)


def test_predict_dask_without_dask_dataframe_names_the_package(fitted, monkeypatch):
    fit, new, _ = fitted
    ddf = dd.from_pandas(new, npartitions=2)
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)
    with pytest.raises(DataError, match=r"needs the optional package 'dask\[dataframe\]'"):
        predict_dask(fit, ddf)
    assert not qdist.is_dask_dataframe(ddf)

