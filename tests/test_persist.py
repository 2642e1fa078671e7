"""The safe saved-fit format: real fitted objects round-trip bitwise; hostile files run nothing."""
from __future__ import annotations

import types

import functools
import io
import json
import os
import pickle
import stat
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.svm import SVR

import qaggstats as qa
from qaggstats import learners as L
from qaggstats import persist
from qaggstats.errors import SaveError
from qaggstats.formula import FormulaSpec
from qaggstats.results import Diagnostic

VERSION = qa.__version__
TAUS = [0.1, 0.5, 0.9]


def small_models():
    # every built-in learner type, small enough for a fast suite
    return {"lin": L.LinearQR(), "qf": L.QuantileForest(n_estimators=15),
            "gb": L.GradientBoosting(max_iter=15), "knn": L.KNN(k=10), "ls": L.LocationScale(),
            "ls_gbr": L.LocationScale(mean_model=GradientBoostingRegressor(n_estimators=10))}


@pytest.fixture(scope="module")
def concrete():
    return qa.datasets.load("concrete")


@pytest.fixture(scope="module", params=["cv+", "cqr"])
def fit(request, concrete):
    return qa.qagg("strength ~ .", concrete.iloc[:360], models=small_models(), taus=TAUS,
                   conformal=request.param, cv=3)


@pytest.fixture
def newdata(concrete):
    return concrete.iloc[360:460]


def roundtrip(obj, tmp_path, classes=(Diagnostic,)):
    path = persist.save(obj, tmp_path / "obj.qagg", kind="test", version=VERSION, classes=classes)
    return persist.load(path, kind="test", version=VERSION, classes=classes)


def same_predictions(a, b, specs, data):
    for name in a:
        X = specs[name].design(data)
        pa, pb = a[name].predict(X), b[name].predict(X)
        assert pa.dtype == pb.dtype and np.array_equal(pa, pb), name


# --------------------------------------------------------------------------- round trips
def test_learners_and_specs_predict_bitwise(fit, newdata, tmp_path):
    specs = roundtrip(fit._base.frames.specs, tmp_path)
    fitted = roundtrip(fit._base.crossfit.fitted, tmp_path)
    assert set(fitted) == set(fit._base.crossfit.fitted)
    for name, spec in fit._base.frames.specs.items():
        assert type(specs[name]) is FormulaSpec
        assert np.array_equal(specs[name].design(newdata), spec.design(newdata))
        assert specs[name].column_names == spec.column_names
    same_predictions(fit._base.crossfit.fitted, fitted, specs, newdata)
    for name, learner in fitted.items():
        assert type(learner) is type(fit._base.crossfit.fitted[name])


def test_fold_learners_predict_bitwise(fit, newdata, tmp_path):
    folds = roundtrip(fit._base.crossfit.fold_models, tmp_path)
    for name, models in fit._base.crossfit.fold_models.items():
        assert len(folds[name]) == len(models)
        for k, model in enumerate(models):
            X = fit._base.frames.specs[name].design(newdata)
            assert np.array_equal(folds[name][k].predict(X), model.predict(X)), (name, k)


def test_weights_and_calibration_apply_identically(fit, tmp_path):
    weights = roundtrip(fit.weight_fit, tmp_path)
    assert type(weights) is type(fit.weight_fit)
    Q = np.sort(fit.Q, axis=2)
    assert np.array_equal(weights.combine(Q), fit.weight_fit.combine(Q))
    assert weights.solver == fit.weight_fit.solver and weights.objective == fit.weight_fit.objective
    cal = roundtrip(fit.calibration, tmp_path)
    assert type(cal) is type(fit.calibration)
    q = fit.q_oof[:50]
    if fit.conformal == "cv+":
        # fold models' predictions at 50 points (shifted copies stand in for K fold models)
        q_folds = np.stack([q + 0.1 * k for k in range(fit.calibration.k_folds)])
        assert np.array_equal(cal.apply(q_folds), fit.calibration.apply(q_folds))
    else:
        assert np.array_equal(cal.apply(q), fit.calibration.apply(q))
    assert np.array_equal(cal.corrections, fit.calibration.corrections)
    assert cal.pairs == fit.calibration.pairs
    assert cal.binomial_band(0.2, 100) == fit.calibration.binomial_band(0.2, 100)


def test_tables_and_dataclasses_round_trip(fit, tmp_path):
    for table in (fit.oof_scores, fit.weights, fit.coverage, fit.monotone, fit.frame):
        back = roundtrip(table, tmp_path)
        pd.testing.assert_frame_equal(back, table, check_exact=True)
    assert roundtrip(fit.diagnostics, tmp_path) == fit.diagnostics
    assert roundtrip(fit.na, tmp_path) == fit.na


def test_everything_in_one_dict(fit, newdata, tmp_path):
    everything = {
        "taus": fit.taus, "models": tuple(fit.models), "specs": fit._base.frames.specs,
        "learners": fit._base.crossfit.fitted, "fold_learners": fit._base.crossfit.fold_models,
        "weights": fit.weight_fit, "basis": None, "postprocess": fit.postprocess,
        "calibration": fit.calibration, "oof_scores": fit.oof_scores, "diagnostics": fit.diagnostics,
        "na": fit.na, "notes": list(fit.notes), "n_train": fit.n_train, "cal_size": fit.cal_size,
        "noncrossing": fit.noncrossing, "y": fit.y, "versions": fit.versions,
    }
    back = roundtrip(everything, tmp_path)
    assert set(back) == set(everything)
    assert np.array_equal(back["taus"], fit.taus) and back["taus"].dtype == fit.taus.dtype
    assert back["models"] == tuple(fit.models)
    assert back["n_train"] == fit.n_train and type(back["n_train"]) is int
    assert back["versions"] == fit.versions and back["na"] == fit.na
    same_predictions(fit._base.crossfit.fitted, back["learners"], back["specs"], newdata)
    pd.testing.assert_frame_equal(back["oof_scores"], fit.oof_scores, check_exact=True)


def test_formula_spec_stores_data_not_patsy(tmp_path):
    df = pd.DataFrame({"y": np.arange(40.0) ** 1.5, "x": np.linspace(0, 1, 40), "_z": np.arange(40.0) % 7,
                       "g": pd.Categorical(list("abcd") * 10, categories=list("dcba")),
                       "h": ["u", "v"] * 20})
    spec = FormulaSpec.from_data("np.sqrt(y) ~ bs(x, df=4) + C(g) + h + np.log1p(x) + np.clip(x, 0.2, 0.8) + _z", df)
    path = persist.save(spec, tmp_path / "spec.qagg", kind="test", version=VERSION)
    with zipfile.ZipFile(io.BytesIO(path.read_bytes()[path.read_bytes().index(b"PK"):])) as zf:
        schema = zf.read("schema.json").decode()
    assert "patsy" not in schema and "DesignInfo" not in schema
    back = persist.load(path, kind="test", version=VERSION)
    new = df.iloc[[3, 17, 30]]
    assert np.array_equal(back.design(new), spec.design(new))
    assert back.categories == spec.categories and back.ranges == spec.ranges
    assert np.array_equal(back.response_of(new), spec.response_of(new))


def test_pandas_dtypes_and_indexes_round_trip(tmp_path):
    df = pd.DataFrame({
        "f": [1.5, np.nan, -2.0], "i": np.array([1, 2, 3], dtype=np.int32), "b": [True, False, True],
        "I": pd.array([1, None, 3], dtype="Int64"), "B": pd.array([True, None, False], dtype="boolean"),
        "F": pd.array([0.5, None, 1.0], dtype="Float64"),
        "c": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
        "s": pd.Series(["p", None, "r"], dtype="str"), "o": pd.Series(["p", 1, None], dtype=object),
        "os": pd.Series(["p", "q", "r"], dtype=object),
        "t": pd.to_datetime(["2024-01-01", "2024-02-01", None]),
    }, index=pd.Index(["r1", "r2", "r3"], name="row"))
    pd.testing.assert_frame_equal(roundtrip(df, tmp_path), df, check_exact=True)
    multi = pd.DataFrame({(1, "a"): [1.0, 2.0], (2, "b"): [3.0, 4.0]},
                         index=pd.MultiIndex.from_tuples([("u", 0), ("v", 1)], names=["k", "n"]))
    pd.testing.assert_frame_equal(roundtrip(multi, tmp_path), multi, check_exact=True)
    s = pd.Series([1.0, 2.0], index=pd.RangeIndex(5, 9, 2), name="w")
    pd.testing.assert_series_equal(roundtrip(s, tmp_path), s, check_exact=True)
    s = pd.Series(["a", "b"], index=pd.Index(["u", "v"], dtype=object), dtype=object)
    pd.testing.assert_series_equal(roundtrip(s, tmp_path), s, check_exact=True)
    odd = {1: "one", (2, 3): [np.float32(1.5)], "__qagg__": {"nested": np.arange(3)}}
    back = roundtrip(odd, tmp_path)
    assert back[1] == "one" and back[(2, 3)][0] == np.float32(1.5)
    assert type(back[(2, 3)][0]) is np.float32 and np.array_equal(back["__qagg__"]["nested"], np.arange(3))


# --------------------------------------------------------------------------- refused at save
def make_gbr(tau):
    return GradientBoostingRegressor(loss="quantile", alpha=tau, n_estimators=5)


@pytest.mark.parametrize("factory, shown", [
    (make_gbr, "make_gbr"), (lambda t: make_gbr(t), "<lambda>"),
    (functools.partial(make_gbr), "make_gbr")])
def test_learner_factory_is_refused_by_name(factory, shown, tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 2))
    learner = L.SklearnQuantile(factory).fit(X, X[:, 0], [0.5])
    with pytest.raises(SaveError, match=rf"test\['learners'\]\['sk'\]\.factory.*{shown}"):
        persist.save({"learners": {"sk": learner}}, tmp_path / "f.qagg", kind="test", version=VERSION)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("obj, named", [
    ({"model": SVR()}, "sklearn.svm._classes.SVR"), ({"s": {1, 2}}, "builtins.set"),
    ({"f": open}, "open"), ({"t": pd.Timestamp("2024-01-01", tz="UTC")}, "Timestamp"),
    (pd.DataFrame({"t": pd.to_datetime(["2024-01-01"]).tz_localize("UTC")}), "datetime64"),
    (pd.DataFrame, "type"),  # a class object, not an instance
    (types.SimpleNamespace(a=1), "types.SimpleNamespace"),
])
def test_untrusted_types_are_refused_at_save_by_name(obj, named, tmp_path):
    with pytest.raises(SaveError, match=named):
        persist.save(obj, tmp_path / "x.qagg", kind="test", version=VERSION)


# --------------------------------------------------------------------------- hostile files
class Canary:
    """Pickles to a call that creates a file: what a crafted .qagg did to pickle-based loads."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def assert_refused(path, canary, *match, **load_kwargs):
    kwargs = {"kind": "test", "version": VERSION, **load_kwargs}
    with pytest.raises(SaveError) as info:
        persist.load(path, **kwargs)
    for m in match:
        assert m in str(info.value), str(info.value)
    assert not canary.exists()
    return str(info.value)


def header(**over):
    from skops.io._protocol import PROTOCOL

    fields = {"format": persist.FORMAT, "kind": "test", "version": VERSION, "skops_protocol": PROTOCOL}
    return persist.MAGIC + json.dumps({**fields, **over}).encode() + b"\n"


def test_a_pickle_with_reduce_runs_nothing(tmp_path):
    canary = tmp_path / "canary"
    # the payload is live: plain unpickling creates the file (what qa.load used to do)
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(Canary(live)))
    assert live.exists()
    evil = pickle.dumps({"magic": "qaggstats-fit", "version": VERSION, "results": Canary(canary)})
    (tmp_path / "evil.qagg").write_bytes(evil)
    assert_refused(tmp_path / "evil.qagg", canary, "not a qaggstats saved fit", "pickle")
    # the same pickle behind a valid header
    (tmp_path / "evil2.qagg").write_bytes(header() + evil)
    assert_refused(tmp_path / "evil2.qagg", canary, "corrupt")
    # and as a zip member named like an array
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps(_node("NdArrayNode", "numpy", "ndarray",
                                                     type="numpy", file="x.npy")
                                              | {"protocol": 2, "_skops_version": "0.16.0"}))
        zf.writestr("x.npy", evil)
    (tmp_path / "evil3.qagg").write_bytes(header() + buf.getvalue())
    assert_refused(tmp_path / "evil3.qagg", canary, "corrupt")


def _node(loader, module, cls, **extra):
    return {"__loader__": loader, "__module__": module, "__class__": cls, **extra}


def _archive_with(node) -> bytes:
    """A skops archive whose root dict holds one crafted node next to plain data."""
    root = _node("DictNode", "builtins", "dict",
                 content={"ok": _node("JsonNode", "builtins", "str", content="1", is_json=True),
                          "evil": node},
                 key_types=_node("ListNode", "builtins", "list",
                                 content=[_node("TypeNode", "builtins", "str")] * 2))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps({**root, "protocol": 2, "_skops_version": "0.16.0"}))
    return buf.getvalue()


def _touch_args(canary):
    return _node("TupleNode", "builtins", "tuple", content=[
        _node("JsonNode", "builtins", "str", content=json.dumps(f"touch {canary}"), is_json=True)])


@pytest.mark.parametrize("make, named", [
    (lambda c: _node("FunctionNode", "os", "system"), "os.system"),
    (lambda c: _node("FunctionNode", "builtins", "eval"), "builtins.eval"),
    (lambda c: _node("TypeNode", "subprocess", "Popen"), "subprocess.Popen"),
    (lambda c: _node("ObjectNode", "subprocess", "Popen", content=_node(
        "DictNode", "builtins", "dict", content={}, key_types=_node("ListNode", "builtins", "list", content=[]))),
     "subprocess.Popen"),
    (lambda c: _node("ConstructorFromReduceNode", "os", "system", content=_touch_args(c)), "os.system"),
    (lambda c: _node("PartialNode", "functools", "partial", content={
        "func": _node("FunctionNode", "os", "system"), "args": _touch_args(c),
        "kwds": _node("DictNode", "builtins", "dict", content={},
                      key_types=_node("ListNode", "builtins", "list", content=[])),
        "namespace": _node("DictNode", "builtins", "dict", content={},
                           key_types=_node("ListNode", "builtins", "list", content=[]))}),
     "functools.partial"),
    (lambda c: _node("ObjectNode", "qaggstats.learners.linear", "LinearQR"), "LinearQR"),
    # trusted types only through their own loaders, never filled attribute by attribute
    (lambda c: _node("ObjectNode", "sklearn.tree._tree", "Tree"), "sklearn.tree._tree.Tree"),
    (lambda c: _node("ObjectNode", "numpy.random._generator", "Generator"), "Generator"),
    (lambda c: _node("TreeNode", "os", "system"), "os.system"),
    (lambda c: _node("NdArrayNode", "builtins", "eval", type="json", content=[],
                     shape=_node("TupleNode", "builtins", "tuple", content=[])), "builtins.eval"),
])
def test_a_schema_naming_an_untrusted_type_runs_nothing(make, named, tmp_path):
    canary = tmp_path / "canary"
    (tmp_path / "evil.qagg").write_bytes(header() + _archive_with(make(canary)))
    message = assert_refused(tmp_path / "evil.qagg", canary, "untrusted type", named)
    assert "do not use it" in message


def test_the_crafted_schema_is_live_when_trusted_blindly(tmp_path):
    # skops itself, told to trust os.system, runs the command: the file above is a real attack
    import skops.io as sio

    canary = tmp_path / "canary"
    archive = _archive_with(_node("ConstructorFromReduceNode", "os", "system", content=_touch_args(canary)))
    sio.loads(archive, trusted=["os.system"])
    assert canary.exists()


def test_our_own_records_refuse_untrusted_types_and_formulas(tmp_path):
    import skops.io as sio

    canary = tmp_path / "canary"
    train = persist._Encoder({}).frame(pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 4.0]}), "t")
    cases = [
        ({"__qagg__": "object", "type": "os.system", "state": {}}, "untrusted type 'os.system'"),
        ({"__qagg__": "object", "type": "qaggstats.results.QaggResults", "state": {}}, "QaggResults"),
        ({"__qagg__": "pickle", "data": "x"}, "unknown record kind"),
        ({"__qagg__": "FormulaSpec", "formula": f"y ~ x + I(np.load.__globals__['os'].system('touch {canary}')*0)",
          "train": train}, "np.load.__globals__"),
        ({"__qagg__": "FormulaSpec", "formula": f"y ~ I(__import__('os').system('touch {canary}'))",
          "train": train}, "__import__"),
        ({"__qagg__": "FormulaSpec", "formula": "y ~ I(np.save('x', x))", "train": train}, "np.save"),
        ({"__qagg__": "NearestNeighbors", "params": {"metric": "minkowski", "metric_params": {"w": 1}},
          "X": np.zeros((2, 1))}, "unknown record kind"),
        # estimator archives nested in the file go through the same audit
        ({"__qagg__": "skops", "type": "sklearn.dummy.DummyRegressor",
          "archive": _archive_with(_node("ConstructorFromReduceNode", "os", "system", content=_touch_args(canary)))},
         "untrusted type 'os.system'"),
        ({"__qagg__": "skops", "type": "sklearn.dummy.DummyRegressor", "archive": b"PK junk"}, "corrupt"),
        ({"__qagg__": "skops", "type": "sklearn.dummy.DummyRegressor",
          "archive": sio.dumps(LinearRegression())}, "not a 'sklearn.dummy.DummyRegressor'"),
    ]
    for record, named in cases:
        (tmp_path / "evil.qagg").write_bytes(header() + sio.dumps({"root": record}))
        assert_refused(tmp_path / "evil.qagg", canary, named)


def test_truncated_corrupt_foreign_files_are_refused(tmp_path):
    canary = tmp_path / "canary"
    good = persist.save({"w": np.arange(10.0), "t": pd.DataFrame({"a": [1, 2]})},
                        tmp_path / "good.qagg", kind="test", version=VERSION).read_bytes()
    start = good.index(b"PK")
    for cut in (5, len(persist.MAGIC) + 3, start + 10, len(good) // 2, len(good) - 1):
        (tmp_path / "cut.qagg").write_bytes(good[:cut])
        assert_refused(tmp_path / "cut.qagg", canary)
    flipped = bytearray(good)
    for pos in range(start + 40, len(good), 97):
        flipped[pos] ^= 0xFF
    (tmp_path / "flip.qagg").write_bytes(bytes(flipped))
    assert_refused(tmp_path / "flip.qagg", canary)
    (tmp_path / "empty.qagg").write_bytes(b"")
    assert_refused(tmp_path / "empty.qagg", canary, "not a qaggstats saved fit")
    assert_refused(tmp_path / "missing.qagg", canary, "cannot read")


def test_wrong_magic_kind_format_and_version(tmp_path):
    canary = tmp_path / "canary"
    good = persist.save([1.0], tmp_path / "good.qagg", kind="test", version=VERSION).read_bytes()
    archive = good[good.index(b"PK"):]
    (tmp_path / "magic.qagg").write_bytes(b"NOT-QAGG-AT-ALL\n" + good[len(persist.MAGIC):])
    assert_refused(tmp_path / "magic.qagg", canary, "not a qaggstats saved fit")
    (tmp_path / "v.qagg").write_bytes(header(version="9.4.2") + archive)
    msg = assert_refused(tmp_path / "v.qagg", canary, "saved by qaggstats 9.4.2", f"this is {VERSION}")
    assert "install qaggstats==9.4.2" in msg and "Refit" in msg
    (tmp_path / "f.qagg").write_bytes(header(format=2) + archive)
    assert_refused(tmp_path / "f.qagg", canary, "format 2")
    assert_refused(tmp_path / "good.qagg", canary, "holds a 'test', not a 'fit'", kind="fit")
    (tmp_path / "h.qagg").write_bytes(persist.MAGIC + b"{not json\n" + archive)
    assert_refused(tmp_path / "h.qagg", canary, "header")


def _tamper_and_load(obj, tmp_path):
    path = persist.save(obj, tmp_path / "tampered.qagg", kind="test", version=VERSION)
    return assert_refused(path, tmp_path / "canary", "corrupt", "refuses")


def test_out_of_range_tree_indices_are_refused(concrete, tmp_path):
    X = concrete.drop(columns="strength").select_dtypes("number").to_numpy(dtype=float)[:200]
    y = concrete["strength"].to_numpy()[:200]
    qf = L.QuantileForest(n_estimators=3).fit(X, y, TAUS)
    tree = qf.trees_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["left_child"][0] = 10 ** 6
    tree.__setstate__(state)
    assert "child index" in _tamper_and_load({"qf": qf}, tmp_path)

    qf = L.QuantileForest(n_estimators=3).fit(X, y, TAUS)
    tree = qf.trees_[1].tree_
    state = tree.__getstate__()
    inner = np.flatnonzero(state["nodes"]["left_child"] != -1)[0]
    state["nodes"]["feature"][inner] = 50
    tree.__setstate__(state)
    assert "feature index" in _tamper_and_load({"qf": qf}, tmp_path)

    gb = L.GradientBoosting(max_iter=3).fit(X, y, TAUS)
    nodes = gb.models_[0]._predictors[0][0].nodes
    nodes["left"][0] = 10 ** 6
    assert "child index" in _tamper_and_load({"gb": gb}, tmp_path)

    gb = L.GradientBoosting(max_iter=3).fit(X, y, TAUS)
    nodes = gb.models_[1]._predictors[2][0].nodes
    nodes["right"][0] = 0  # a cycle back to the root
    assert "child index" in _tamper_and_load({"gb": gb}, tmp_path)


# --------------------------------------------------------------------------- atomic writes
def test_keyboard_interrupt_mid_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "fit.qagg"
    persist.save({"old": 1}, path, kind="test", version=VERSION)
    before = path.read_bytes()

    def interrupted(fh, payload):
        fh.write(payload[: len(payload) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(persist, "_write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        persist.save({"new": np.arange(1000.0)}, path, kind="test", version=VERSION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.qagg"]
    assert path.read_bytes() == before

    def disk_full(fh, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persist, "_write_bytes", disk_full)
    with pytest.raises(SaveError, match="No space left"):
        persist.save({"new": 2}, path, kind="test", version=VERSION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.qagg"]
    assert path.read_bytes() == before


def test_saved_file_gets_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        path = persist.save([1], tmp_path / "p.qagg", kind="test", version=VERSION)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_missing_directory_is_a_save_error(tmp_path):
    with pytest.raises(SaveError, match="does not exist"):
        persist.save([1], tmp_path / "nope" / "p.qagg", kind="test", version=VERSION)


def test_local_weights_basis_round_trips(concrete, tmp_path):
    fit = qa.qagg("strength ~ .", concrete.iloc[:300], models={"lin": L.LinearQR(), "knn": L.KNN(k=10)},
                  taus=TAUS, family="local", local_formula="~ cement + age_group", cv=3)
    pred = fit.predictor
    back = roundtrip({"basis_spec": pred.basis_spec, "basis": pred.basis, "weights": fit.weight_fit}, tmp_path)
    new = concrete.iloc[300:360]
    X = pred.basis_spec.design(new)
    basis = back["basis"].transform(back["basis_spec"].design(new), None)
    assert np.array_equal(basis, pred.basis.transform(X, None))
    Q = np.sort(fit.Q[:60], axis=2)
    assert np.array_equal(back["weights"].combine(Q, basis), fit.weight_fit.combine(Q, basis))

def test_sparse_matrices_round_trip_and_are_checked(tmp_path):
    import scipy.sparse as sp

    m = sp.random(30, 12, density=0.2, format="csr", random_state=0)
    back = roundtrip({"m": m, "a": sp.csr_array(m)}, tmp_path)
    assert type(back["m"]) is sp.csr_matrix and type(back["a"]) is sp.csr_array
    assert (back["m"] != m).nnz == 0
    bad = persist._Decoder({}, "x.qagg")
    rec = {"data": m.data, "indices": m.indices + 100, "indptr": m.indptr, "shape": [30, 12]}
    with pytest.raises(SaveError, match="inconsistent sparse matrix"):
        bad.m_csr(rec, "m")


# --------------------------------------------------------------------------- issue 25
def test_edited_arrays_and_nan_thresholds_are_refused_at_load(concrete, tmp_path):
    data = concrete.iloc[:120]
    models = {"lin": L.LinearQR(), "qf": L.QuantileForest(n_estimators=3)}
    good = qa.qagg("strength ~ cement + water", data, models=models, taus=TAUS, cv=2)
    loaded = qa.load(good.save(tmp_path / "good.qagg"))  # the load-time check passes honest fits
    assert loaded.predict(data.head(3)).equals(good.predict(data.head(3)))

    fit = qa.qagg("strength ~ cement", data, models=models, taus=TAUS, cv=2)
    lin = fit.predictor.learners["lin"]  # coef_ (2, 3)
    lin.coef_ = lin.coef_.reshape(lin.coef_.shape[1], lin.coef_.shape[0]).copy()  # a 2-D shape edited
    with pytest.raises(SaveError, match=r"corrupt: predicting its own training rows failed"):
        qa.load(fit.save(tmp_path / "shape.qagg"))

    fit = qa.qagg("strength ~ cement + water", data, models=models, taus=TAUS, cv=2)
    tree = fit.predictor.learners["qf"].trees_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["threshold"][state["nodes"]["left_child"] != -1] = np.nan
    tree.__setstate__(state)
    with pytest.raises(SaveError, match=r"threshold or leaf value is not a finite number"):
        qa.load(fit.save(tmp_path / "nan.qagg"))


def test_load_reads_a_bounded_amount(tmp_path, monkeypatch):
    with pytest.raises(SaveError, match="not a regular file"):
        qa.load("/dev/zero")  # used to read forever, then MemoryError
    path = persist.save({"a": np.zeros(1000)}, tmp_path / "a.qagg", kind="test", version=VERSION)
    monkeypatch.setattr(persist, "MAX_LOAD_BYTES", 100)
    with pytest.raises(SaveError, match=r"has [\d,]+ bytes, more than qaggstats.persist.MAX_LOAD_BYTES"):
        persist.load(path, kind="test", version=VERSION)


def test_padded_archives_are_refused_before_parsing(tmp_path, monkeypatch):
    path = persist.save({"a": np.zeros(10)}, tmp_path / "a.qagg", kind="test", version=VERSION)
    raw = path.read_bytes()
    end = raw.find(b"\n", len(persist.MAGIC))
    src = zipfile.ZipFile(io.BytesIO(raw[end + 1:]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            member = src.read(info.filename)
            if info.filename == "schema.json":  # 100 MB of padding compresses to ~100 kB
                member = member[:-1] + b" " * 100_000_000 + member[-1:]
            zf.writestr(info.filename, member)
    padded = tmp_path / "padded.qagg"
    padded.write_bytes(raw[:end + 1] + out.getvalue())
    with pytest.raises(SaveError, match=r"schema of 100,\d{3},\d{3} bytes, more than .*MAX_SCHEMA_BYTES"):
        persist.load(padded, kind="test", version=VERSION)
    monkeypatch.setattr(persist, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(SaveError, match=r"unpacks to more than .*MAX_UNPACKED_BYTES"):
        persist.load(padded, kind="test", version=VERSION)


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from qaggstats.files import atomic_write

    target = tmp_path / "predictions.csv"
    script = ("import time, sys\nfrom qaggstats.files import atomic_write\n"
              "def hang(fh):\n    fh.write(b'partial'); fh.flush(); print('writing', flush=True); time.sleep(600)\n"
              f"atomic_write({str(target)!r}, hang)\n")
    env = {**os.environ, "PYTHONPATH": str(conftest_root())}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".predictions.csv.") and left[0].endswith(".tmp")
    # an unrelated hidden file and a legacy-named fresh temporary file are not ours to remove
    (tmp_path / ".predictions.csv.notes").write_text("keep")
    atomic_write(target, b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".predictions.csv.notes", "predictions.csv"]
    assert target.read_bytes() == b"done"


def conftest_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
