"""Saved fits that load without running code from the file.

:func:`save` writes an object graph (a fitted predictor, its learners, formula specs, weights,
calibration, and plain tables) to one file; :func:`load` reads it back. Unlike pickle, loading
never calls a function or constructor named by the file: every type the file may hold is on an
explicit trusted list below, and the file is checked against that list before any object is
built.

What a file holds
-----------------
1. A magic line ``QAGGSTATS-SAVED-FIT`` and one JSON header line:
   ``{"format": 1, "kind": ..., "version": ..., "skops_protocol": ...}``. Both are read and
   checked (format, kind, qaggstats major.minor version) before anything else.
2. A `skops <https://skops.readthedocs.io>`_ archive (a zip of ``schema.json`` plus ``.npy``
   arrays written with ``allow_pickle=False``) of a *data-only* translation of the graph:

   - ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts, numpy arrays and
     scalars of non-object dtype are stored as they are;
   - pandas ``DataFrame``, ``Series``, ``Index`` (incl. ``RangeIndex``, ``MultiIndex``) and
     ``Categorical`` become dicts of column arrays, index, names and dtypes (numpy, nullable
     ``Int``/``Float``/``boolean``, categorical, string and object columns of plain values);
   - a ``FormulaSpec`` becomes its formula plus the training values of its columns (its
     pickle state); the patsy design is rebuilt from them on load, after the formula passed a
     safety check (no attribute access but ``np.<ufunc>`` and ``np.clip``/``where``/``round``,
     no names starting with ``_``);
   - qaggstats' own classes (learners, ``Weights``, ``SplitCQR``/``CVPlusCQR``/``MondrianCQR``, ``NAReport``,
     and classes callers add with ``classes=``) become their type name plus their attributes;
   - fitted scikit-learn estimators used by the learners, limited to
     :data:`FOREIGN_TYPES`, each become a nested skops archive of their own (bytes), checked
     on load exactly like the outer one.

   Functions, lambdas, ``functools.partial`` (e.g. a ``SklearnQuantile`` factory), sets and
   any type not listed raise :class:`~qaggstats.errors.SaveError` at save time, naming the
   attribute path and the type.

How trust works on load
-----------------------
Before constructing anything, every node of each ``schema.json`` is checked: its loader must be
one of the plain-data loaders (dict, list, tuple, JSON value, bytes, numpy array, random
generator state, tree state) and its type must be on the trusted list; otherwise :func:`load` raises a
SaveError naming the untrusted type found in the file (e.g. ``builtins.eval``). skops then
builds the archive with the same list. Tree-shaped compiled models index arrays without
bounds checks, so after construction and before the object is returned the node count, child
and feature indices of every ``sklearn.tree._tree.Tree`` and ``TreePredictor`` (and the
index arrays of CSR matrices) are checked to lie in range and children to come after their
parent (no cycles); categorical boosting splits (never made by ``GradientBoosting``) are
refused. A file that fails is refused with a SaveError instead of crashing ``predict``.
Finally qaggstats' marker dicts are turned back into objects, only for type names on the
list. (Trust stops at running no code: a huge file can still take memory and time to read.)

What to do with a SaveError
---------------------------
- "was saved by qaggstats X; this is Y": refit with this version, or install
  ``qaggstats==X`` to load it.
- "untrusted type ...": the file was not written by qaggstats (or was altered); do not use it.
- "cannot save fit.learners['sk'].factory: a function or callable 'make' ...": a learner
  holds a callable (the factory of ``SklearnQuantile``); use a built-in learner, or keep the
  fit in memory. "... not on the trusted list": the same for an object of another type.
- "written with skops protocol N": the installed skops writes a newer or older layout; refit,
  or use the skops version of the machine that saved it.
- "is not a qaggstats saved fit[, or is corrupt]": the file is something else, or damaged
  (truncated copy, disk error); save the fit again.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> from qaggstats import persist
>>> from qaggstats.learners import LinearQR
>>> X = np.column_stack([np.ones(5), np.arange(5.0)]); y = np.array([0.0, 1, 2, 3, 10])
>>> lin = LinearQR().fit(X, y, [0.5])
>>> path = pathlib.Path(tempfile.mkdtemp()) / "lin.qagg"
>>> _ = persist.save({"lin": lin}, path, kind="example", version="0.1.0")
>>> back = persist.load(path, kind="example", version="0.1.0")
>>> bool((back["lin"].predict(X) == lin.predict(X)).all())
True
"""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import QaggError, SaveError
from .files import atomic_write

__all__ = ["save", "load", "MAGIC", "FORMAT", "QAGG_TYPES", "FOREIGN_TYPES"]

MAGIC = b"QAGGSTATS-SAVED-FIT\n"
FORMAT = 1
# The header is one short JSON line; anything longer is not ours (and is not parsed).
_HEADER_MAX = 4096
#: The largest saved-fit file :func:`load` reads (bytes). A default fit of 1,000 rows with CV+
#: fold models is about 4 MB; raise this deliberately for fits saved with ``keep_data=True`` on
#: millions of rows.
MAX_LOAD_BYTES = 1 << 30
#: The most bytes the archives of one file may unpack to (their members' declared sizes, which
#: zipfile enforces while reading), nested estimator archives included.
MAX_UNPACKED_BYTES = 4 << 30
#: The largest ``schema.json`` of one archive (it is parsed and audited node by node; the same
#: default fit's largest is 1.9 MB).
MAX_SCHEMA_BYTES = 64 << 20

# qaggstats classes stored as "type name + attributes". Classes defined in modules that import
# persist (results, the predictor) are passed by the caller through ``classes=``, so this module
# imports nothing above it.
QAGG_TYPES: tuple[str, ...] = (
    "qaggstats.learners.linear.LinearQR",
    "qaggstats.learners.forest.QuantileForest",
    "qaggstats.learners.boosting.GradientBoosting",
    "qaggstats.learners.knn.KNN",
    "qaggstats.learners.locscale.LocationScale",
    "qaggstats.learners.sklearn.SklearnQuantile",
    "qaggstats.learners.neural.QuantileNN",
    "qaggstats.learners.tuning.RandomSearch",
    "qaggstats.aggregate.Weights",
    "qaggstats.conformal.SplitCQR",
    "qaggstats.conformal.CVPlusCQR",
    "qaggstats.conformal.MondrianCQR",
    "qaggstats.formula.NAReport",
    "qaggstats.predictor.Predictor",
    "qaggstats.basis.LocalBasis",
    "qaggstats.dqa.DQANetwork",
    "qaggstats.diagnostics.Diagnostic",
)

# Third-party types the learners hold, stored by skops. Nothing else from outside qaggstats.
FOREIGN_TYPES: tuple[str, ...] = (
    # GradientBoosting: one HistGradientBoostingRegressor per level
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.PinballLoss",
    "sklearn._loss._loss.CyPinballLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "numpy.random._generator.Generator",
    # QuantileForest: a list of scikit-learn trees (its leaf tables are plain arrays and CSR data)
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    # regressors a LocationScale may be given as mean or scale model
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._quantile.QuantileRegressor",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.dummy.DummyRegressor",
    "numpy.random.mtrand.RandomState",
)

# skops loaders that only rebuild data (or a trusted type from its data). Excluded on purpose:
# FunctionNode, MethodNode, PartialNode, OperatorFuncNode, ConstructorFromReduceNode (these
# call something named by the file), plus every loader we never write.
_LOADERS: dict[str, str] = {
    "JsonNode": "json", "DictNode": "builtins.dict", "ListNode": "builtins.list",
    "TupleNode": "builtins.tuple", "TypeNode": "keytype", "NdArrayNode": "numpy",
    "ObjectNode": "foreign", "TreeNode": "sklearn.tree._tree.Tree",
    "LossNode": "loss",
    "RandomGeneratorNode": "numpy.random._generator.Generator",
    "RandomStateNode": "numpy.random.mtrand.RandomState", "CachedNode": "cached",
    "BytesNode": "builtins.bytes",
}
# types skops must build through their own loader, never as a generic attribute-filled object
_SPECIAL_LOADED = {rule for rule in _LOADERS.values() if "." in rule} | {
    name for name in FOREIGN_TYPES if name.startswith("sklearn._loss._loss.Cy")}
_KEY_TYPES = {"builtins.str", "builtins.int", "builtins.float", "builtins.bool"}
_NUMPY_TYPES = {f"numpy.{t.__name__}" for t in set(np.sctypeDict.values())
                if t is not np.object_} | {"numpy.ndarray"}
_MARK = "__qagg__"
# pandas' nullable dtypes, stored as values plus a missing-value mask
_MASKED_DTYPES = {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                  "Float32", "Float64", "boolean"}


# --------------------------------------------------------------------------- public API
def save(obj: Any, path: str | os.PathLike, *, kind: str, version: str,
         classes: Iterable[type] = ()) -> Path:
    """Write ``obj`` to ``path`` atomically in the safe saved-fit format; return the path.

    Parameters
    ----------
    obj : object graph
        Built from the types listed in the module docstring.
    path : path
        Written through a temporary file in the same directory and ``os.replace``; on any
        exception (``KeyboardInterrupt`` included) the temporary file is removed and an
        existing file at ``path`` is left untouched. The file gets the permissions ``open()``
        would give (0666 minus the umask).
    kind : str
        What the file holds (e.g. ``"fit"``); :func:`load` refuses a file of another kind.
    version : str
        The qaggstats version writing the file (``qaggstats.__version__``).
    classes : iterable of type
        qaggstats classes, beyond :data:`QAGG_TYPES`, that may be stored by attributes.

    Raises
    ------
    SaveError
        An object of an untrusted type or a callable in the graph (the message gives its
        path, e.g. ``learners['sk'].factory``), or the file cannot be written.
    """
    path = Path(path)
    payload = _dumps(obj, kind=kind, version=version, trusted=_trusted(classes))
    # fsync before the rename: a crash right after save must not leave an empty file
    return atomic_write(path, lambda fh: _write_bytes(fh, payload))


def load(path: str | os.PathLike, *, kind: str, version: str | None = None,
         classes: Iterable[type] = ()) -> Any:
    """Read an object graph written by :func:`save`, running no code from the file.

    Parameters
    ----------
    path : path
    kind : str
        The kind given to :func:`save`.
    version : str, optional
        The reader's qaggstats version (default ``qaggstats.__version__``); the file must have
        been written by the same major.minor version.
    classes : iterable of type
        The same extra classes given to :func:`save`.

    Raises
    ------
    SaveError
        Missing file, wrong magic or kind, another format or version (the message says which
        version saved it and what to do), corrupt data, or a type not on the trusted list
        (named in the message).
    """
    if version is None:
        from ._version import __version__ as version
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):  # /dev/zero, a pipe, a directory: never read whole
                raise SaveError(f"cannot read saved fit {path}: it is not a regular file")
            if info.st_size > MAX_LOAD_BYTES:
                raise SaveError(f"saved fit {path} has {info.st_size:,} bytes, more than "
                                f"qaggstats.persist.MAX_LOAD_BYTES ({MAX_LOAD_BYTES:,}); raise that limit "
                                "if you trust the file and have the memory")
            raw = fh.read(MAX_LOAD_BYTES + 1)  # bounded even if the file grows while read
    except SaveError:
        raise
    except OSError as err:
        raise SaveError(f"cannot read saved fit {path}: {err.strerror}") from err
    if len(raw) > MAX_LOAD_BYTES:
        raise SaveError(f"saved fit {path} grew beyond qaggstats.persist.MAX_LOAD_BYTES while being read")
    return _loads(raw, kind=kind, version=version, trusted=_trusted(classes), source=str(path))


# --------------------------------------------------------------------------- file layout
def _trusted(classes: Iterable[type]) -> dict[str, type | None]:
    extra = {}
    for cls in classes:
        if not isinstance(cls, type) or not cls.__module__.startswith("qaggstats."):
            raise SaveError(f"classes= takes qaggstats classes only, got {cls!r}")
        extra[_type_name(cls)] = cls
    # resolved lazily (by these fixed names only) so that importing persist stays cheap
    return {**{name: None for name in QAGG_TYPES}, **extra}


def _dumps(obj: Any, *, kind: str, version: str, trusted: dict[str, type | None]) -> bytes:
    from skops.io._protocol import PROTOCOL

    if not isinstance(kind, str) or not kind:
        raise SaveError(f"kind must be a non-empty string, got {kind!r}")
    data = _Encoder(trusted).encode(obj, kind)
    archive = _skops_dumps(data, kind)
    header = json.dumps({"format": FORMAT, "kind": kind, "version": str(version),
                         "skops_protocol": PROTOCOL}).encode()
    return MAGIC + header + b"\n" + archive


def _skops_dumps(obj: Any, where: str) -> bytes:
    """``obj`` (the encoded graph, or one estimator) as a skops archive, audited.

    One archive per estimator keeps saving linear in the number of trees: skops checks each new
    array against the archive's member list, which made one archive of all fold models
    quadratic (30 s for the default concrete fit with CV+ fold models).
    """
    import skops.io as sio

    try:
        archive = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED)
    except Exception as err:  # skops refuses a type it cannot store: say which
        raise SaveError(f"cannot save {where}: {type(err).__name__}: {err}") from err
    # the same audit as on load, so a file we write is a file we can read
    _audit_schema(_read_schema(archive, "the file being written"), None, where)
    return archive


def _skops_loads(archive: Any, source: str, where: str, budget: list[int]) -> Any:
    """Audit and build one archive; ``budget`` holds the bytes the file may still unpack to."""
    import skops.io as sio

    if not isinstance(archive, bytes):
        raise _corrupt(source, f"at {where}: an estimator archive is not bytes")
    _audit_schema(_read_schema(archive, source, budget), source, where)
    try:
        obj = sio.loads(archive, trusted=list(FOREIGN_TYPES))
    except Exception as err:  # corrupt arrays, zip members or states: never a partial object
        raise _corrupt(source, f"at {where}: {type(err).__name__}: {err}") from err
    _check_foreign(obj, where, source)
    return obj


def _loads(raw: bytes, *, kind: str, version: str, trusted: dict[str, type | None],
           source: str) -> Any:
    from skops.io._protocol import PROTOCOL

    if not raw.startswith(MAGIC):
        hint = " (it looks like a pickle, which qaggstats no longer loads)" if raw[:1] == b"\x80" else ""
        raise SaveError(f"{source} is not a qaggstats saved fit: it does not start with "
                        f"{MAGIC.strip().decode()!r}{hint}; refit and save it with this version")
    end = raw.find(b"\n", len(MAGIC), len(MAGIC) + _HEADER_MAX)
    try:
        header = json.loads(raw[len(MAGIC):end]) if end > 0 else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise _corrupt(source, "its header line is not readable")
    if header.get("format") != FORMAT:
        raise SaveError(f"{source} uses saved-fit format {header.get('format')!r}; this qaggstats "
                        f"{version} reads format {FORMAT}. Load it with the qaggstats version that "
                        f"wrote it ({header.get('version')!r}) and refit, or refit from the data")
    saved = str(header.get("version"))
    if saved.split(".")[:2] != str(version).split(".")[:2]:
        raise SaveError(f"{source} was saved by qaggstats {saved}; this is {version}. "
                        f"Refit with {version}, or install qaggstats=={saved} to load it")
    if header.get("kind") != kind:
        raise SaveError(f"{source} holds a {header.get('kind')!r}, not a {kind!r}")
    if header.get("skops_protocol") != PROTOCOL:
        raise SaveError(f"{source} was written with skops protocol {header.get('skops_protocol')!r}; "
                        f"the installed skops reads protocol {PROTOCOL}. Refit, or install the skops "
                        "version of the machine that saved it")
    budget = [MAX_UNPACKED_BYTES]
    data = _skops_loads(raw[end + 1:], source, kind, budget)
    try:
        return _Decoder(trusted, source, budget).decode(data, kind)
    except SaveError:
        raise
    except Exception as err:  # a malformed model part: refuse the file, never half an object
        raise _corrupt(source, f"{type(err).__name__}: {err}") from err


def _read_schema(archive: bytes, source: str, budget: list[int] | None = None) -> dict:
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            if budget is not None:  # sizes first: nothing is unpacked beyond the limits
                unpacked = sum(max(info.file_size, 0) for info in zf.infolist())
                budget[0] -= unpacked
                if budget[0] < 0:
                    raise SaveError(f"{source} unpacks to more than qaggstats.persist.MAX_UNPACKED_BYTES "
                                    f"({MAX_UNPACKED_BYTES:,} bytes); qaggstats refuses to load it (raise "
                                    "the limit if you trust the file)")
                size = zf.getinfo("schema.json").file_size
                if size > MAX_SCHEMA_BYTES:
                    raise SaveError(f"{source} has a schema of {size:,} bytes, more than "
                                    f"qaggstats.persist.MAX_SCHEMA_BYTES ({MAX_SCHEMA_BYTES:,}); qaggstats "
                                    "refuses to load it (raise the limit if you trust the file)")
            schema = json.loads(zf.read("schema.json"))
    except SaveError:
        raise
    except Exception as err:  # zipfile, zlib and json raise many types on damaged input
        raise _corrupt(source, f"truncated or damaged archive ({type(err).__name__}: {err})") from err
    if not isinstance(schema, dict):
        raise _corrupt(source, "its schema is not an object")
    return schema


def _audit_schema(schema: dict, source: str | None, where: str) -> None:
    """Refuse any node whose loader or type is not on the lists (nothing is built yet).

    ``source`` None: the archive is being written, and the message says what cannot be saved.
    """
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "__loader__" in node:
            loader = node.get("__loader__")
            name = f"{node.get('__module__')}.{node.get('__class__')}"
            rule = _LOADERS.get(loader) if isinstance(loader, str) else None
            ok = {
                None: False, "json": True, "cached": True,
                "keytype": name in _KEY_TYPES, "numpy": name in _NUMPY_TYPES,
                "foreign": name in FOREIGN_TYPES and name not in _SPECIAL_LOADED,
                "loss": name in FOREIGN_TYPES and name.startswith("sklearn._loss._loss.Cy"),
            }.get(rule, name == rule)
            if not ok and source is None:
                raise SaveError(f"cannot save {where}: it holds an object of type {name!r}, which is "
                                "not on the trusted list of saved fits (see qaggstats.persist)")
            if not ok:
                raise SaveError(f"{source} names the untrusted type {name!r} (loader {loader!r}) at {where}; "
                                "qaggstats refuses to load it. The file was not written by qaggstats "
                                "or was altered: do not use it")
            if loader == "JsonNode" and not isinstance(node.get("content"), str):
                raise _corrupt(source, "a JSON value is not text")
        stack.extend(v for k, v in node.items() if k not in ("__class__", "__module__", "__loader__"))


def _corrupt(source: str, detail: str) -> SaveError:
    return SaveError(f"{source} is not a qaggstats saved fit, or is corrupt: {detail}")


def _write_bytes(fh: Any, payload: bytes) -> None:
    fh.write(payload)
    fh.flush()
    os.fsync(fh.fileno())


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- encoding
class _Encoder:
    """Object graph -> plain data, marker dicts and trusted foreign estimators."""

    def __init__(self, trusted: dict[str, type | None]) -> None:
        self.trusted = trusted

    def fail(self, where: str, obj: Any, why: str) -> SaveError:
        return SaveError(f"cannot save {where}: {why} (type {_type_name(type(obj))}). "
                         "Saved fits hold only data and trusted types (see qaggstats.persist)")

    def encode(self, obj: Any, where: str) -> Any:
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if isinstance(obj, np.ndarray):
            return self.array(obj, where)
        if isinstance(obj, np.generic):
            if obj.dtype == object:
                raise self.fail(where, obj, "an object scalar")
            return {_MARK: "scalar", "value": np.asarray(obj)}
        if type(obj) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) is tuple:
            return tuple(self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj))
        if type(obj) is dict:
            return self.mapping(obj, where)
        if isinstance(obj, (FunctionType, BuiltinFunctionType, MethodType, type)) or (
                callable(obj) and not hasattr(obj, "predict") and not hasattr(obj, "fit")):
            name = getattr(obj, "__qualname__", None) or getattr(getattr(obj, "func", None), "__qualname__", "")
            raise self.fail(where, obj, f"a function or callable {name!r} cannot be stored safely; "
                                        "use a built-in learner, or keep the fit in memory")
        if isinstance(obj, pd.DataFrame):
            return self.frame(obj, where)
        if isinstance(obj, pd.Series):
            return {_MARK: "Series", "values": self.column(obj.array, where),
                    "index": self.index(obj.index, f"{where}.index"), "name": self.label(obj.name, where)}
        if isinstance(obj, pd.Index):
            return self.index(obj, where)
        if type(obj) in (sp.csr_matrix, sp.csr_array):  # e.g. the forest's leaf distributions
            if obj.dtype == object:
                raise self.fail(where, obj, "a sparse matrix of objects")
            return {_MARK: "csr", "data": obj.data, "indices": obj.indices, "indptr": obj.indptr,
                    "shape": [int(v) for v in obj.shape], "array": type(obj) is sp.csr_array}
        if isinstance(obj, pd.Categorical):
            return {_MARK: "Categorical", "values": self.column(obj, where)}
        from .formula import FormulaSpec

        if type(obj) is FormulaSpec:
            state = obj.__getstate__()
            return {_MARK: "FormulaSpec", "formula": state["formula"], "extrapolate": state["extrapolate"],
                    "train": self.frame(state["train"], f"{where}.train")}
        name = _type_name(type(obj))
        if name in self.trusted:
            return {_MARK: "object", "type": name,
                    "state": self.mapping(dict(vars(obj)), where, attributes=True)}
        if name in FOREIGN_TYPES:
            return {_MARK: "skops", "type": name, "archive": _skops_dumps(obj, where)}
        raise self.fail(where, obj, "this type is not on the trusted list")

    def mapping(self, obj: dict, where: str, attributes: bool = False) -> Any:
        def sub(key: Any) -> str:
            return f"{where}.{key}" if attributes else f"{where}[{key!r}]"

        if all(type(k) is str for k in obj) and _MARK not in obj:
            return {k: self.encode(v, sub(k)) for k, v in obj.items()}
        # other keys (numbers, tuples, None) and our marker go through a key list
        return {_MARK: "dict", "keys": [self.encode(k, f"{where} key {k!r}") for k in obj],
                "values": [self.encode(v, sub(k)) for k, v in obj.items()]}

    def array(self, arr: np.ndarray, where: str) -> Any:
        if type(arr) is not np.ndarray:
            raise self.fail(where, arr, "an ndarray subclass")
        if arr.dtype != object:
            return arr
        items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(arr.ravel().tolist())]
        return {_MARK: "objarray", "items": items, "shape": list(arr.shape)}

    def label(self, name: Any, where: str) -> Any:
        if name is None or type(name) in (bool, int, float, str):
            return name
        if isinstance(name, tuple):
            return tuple(self.label(n, where) for n in name)
        if isinstance(name, np.generic):
            return self.encode(name, where)
        raise self.fail(f"{where} (a column or index name)", name, "a name that is not plain data")

    def frame(self, df: pd.DataFrame, where: str) -> dict:
        if not df.columns.is_unique:
            dup = df.columns[df.columns.duplicated()].tolist()
            raise SaveError(f"cannot save {where}: duplicated column names {dup}")
        return {_MARK: "DataFrame", "columns": self.index(df.columns, f"{where}.columns"),
                "index": self.index(df.index, f"{where}.index"),
                "data": [self.column(df.iloc[:, j].array, f"{where}[{df.columns[j]!r}]")
                         for j in range(df.shape[1])]}

    def index(self, idx: pd.Index, where: str) -> dict:
        if isinstance(idx, pd.RangeIndex):
            return {_MARK: "RangeIndex", "start": int(idx.start), "stop": int(idx.stop),
                    "step": int(idx.step), "name": self.label(idx.name, where)}
        if isinstance(idx, pd.MultiIndex):
            return {_MARK: "MultiIndex",
                    "levels": [self.index(lv, f"{where}.levels[{i}]") for i, lv in enumerate(idx.levels)],
                    "codes": [np.asarray(c) for c in idx.codes],
                    "names": [self.label(n, where) for n in idx.names]}
        return {_MARK: "Index", "values": self.column(idx.array, where),
                "name": self.label(idx.name, where)}

    def column(self, values: Any, where: str) -> dict:
        """One column (a pandas array) as plain data plus its dtype."""
        dtype = values.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cat = pd.Categorical(values)
            return {"kind": "categorical", "codes": np.asarray(cat.codes),
                    "categories": self.index(cat.categories, f"{where}.categories"),
                    "ordered": bool(cat.ordered)}
        if isinstance(values, pd.arrays.NumpyExtensionArray) or isinstance(dtype, np.dtype):
            arr = np.asarray(values)
            if arr.dtype != object:
                return {"kind": "numpy", "values": arr}
            return {"kind": "object", "values": self.plain_items(arr, where)}
        if str(dtype) in _MASKED_DTYPES:
            return {"kind": "masked", "dtype": str(dtype), "mask": np.asarray(values.isna()),
                    "values": values.to_numpy(dtype=dtype.numpy_dtype, na_value=dtype.numpy_dtype.type(0))}
        if isinstance(dtype, pd.StringDtype):
            arr = np.asarray(values, dtype=object)
            missing = pd.isna(arr)
            return {"kind": "string", "storage": dtype.storage,
                    "na_value": "nan" if dtype.na_value is np.nan else "NA",
                    "values": ["" if m else str(v) for v, m in zip(arr.tolist(), missing)],
                    "mask": missing}
        raise SaveError(f"cannot save {where}: columns of dtype {dtype} are not stored in saved fits; "
                        "convert it to numbers, strings or a categorical")

    def plain_items(self, arr: np.ndarray, where: str) -> list:
        out = []
        for v in arr.tolist():
            if v is None or type(v) in (bool, int, float, str):
                out.append(v)
            elif isinstance(v, np.generic) and v.dtype.kind in "biuf":
                out.append(v.item())  # numpy numbers in an object column become Python numbers
            else:
                raise SaveError(f"cannot save {where}: value {v!r} of type {type(v).__name__} "
                                "in an object column; saved fits store numbers and strings only")
        return out


# --------------------------------------------------------------------------- decoding
class _Decoder:
    """Plain data -> objects; only marker kinds and type names on the lists are rebuilt."""

    def __init__(self, trusted: dict[str, type | None], source: str, budget: list[int] | None = None) -> None:
        self.trusted = trusted
        self.source = source
        self.budget = [MAX_UNPACKED_BYTES] if budget is None else budget

    def corrupt(self, where: str, why: str) -> SaveError:
        return _corrupt(self.source, f"at {where}: {why}")

    def decode(self, obj: Any, where: str) -> Any:
        if isinstance(obj, dict):
            kind = obj.get(_MARK)
            if kind is None:
                return {k: self.decode(v, f"{where}[{k!r}]") for k, v in obj.items()}
            handler = getattr(self, f"m_{kind}", None) if isinstance(kind, str) else None
            if handler is None:
                raise self.corrupt(where, f"unknown record kind {kind!r}")
            try:
                return handler(obj, where)
            except SaveError:
                raise
            except Exception as err:  # malformed record: name it, never return half an object
                raise self.corrupt(where, f"{type(err).__name__}: {err}") from err
        if isinstance(obj, list):
            return [self.decode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return tuple(self.decode(v, f"{where}[{i}]") for i, v in enumerate(obj))
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        _check_foreign(obj, where, self.source)  # arrays of objects and estimators
        return obj

    def m_csr(self, rec: dict, where: str) -> Any:
        data, indices, indptr = rec["data"], rec["indices"], rec["indptr"]
        rows, cols = (int(v) for v in rec["shape"])
        ok = (all(isinstance(a, np.ndarray) and a.ndim == 1 for a in (data, indices, indptr))
              and data.dtype != object and indices.dtype.kind == "i" and indptr.dtype.kind == "i"
              and rows >= 0 and cols >= 0 and indptr.size == rows + 1 and data.size == indices.size
              and (indptr.size == 0 or (indptr[0] == 0 and indptr[-1] == indices.size
                                        and bool(np.all(np.diff(indptr) >= 0))))
              and (indices.size == 0 or (indices.min() >= 0 and indices.max() < cols))
              and (data.dtype.kind not in "fc" or bool(np.isfinite(data).all())))
        if not ok:  # compiled sparse code trusts these arrays: check them before building
            raise self.corrupt(where, "inconsistent sparse matrix arrays")
        cls = sp.csr_array if rec.get("array") else sp.csr_matrix
        return cls((data, indices, indptr), shape=(rows, cols))

    def m_skops(self, rec: dict, where: str) -> Any:
        obj = _skops_loads(rec["archive"], self.source, where, self.budget)
        if _type_name(type(obj)) != rec["type"] or rec["type"] not in FOREIGN_TYPES:
            raise self.corrupt(where, f"the estimator is a {_type_name(type(obj))}, not a {rec['type']!r}")
        return obj

    def m_scalar(self, rec: dict, where: str) -> Any:
        return rec["value"][()]

    def m_dict(self, rec: dict, where: str) -> dict:
        keys = [self.decode(k, where) for k in rec["keys"]]
        return {k: self.decode(v, f"{where}[{k!r}]") for k, v in zip(keys, rec["values"], strict=True)}

    def m_objarray(self, rec: dict, where: str) -> np.ndarray:
        items = [self.decode(v, f"{where}[{i}]") for i, v in enumerate(rec["items"])]
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(tuple(int(s) for s in rec["shape"]))

    def m_object(self, rec: dict, where: str) -> Any:
        name = rec["type"]
        if name not in self.trusted:
            raise SaveError(f"{self.source} names the untrusted type {name!r} at {where}; "
                            "qaggstats refuses to load it")
        cls = self.trusted[name] or _resolve(name)
        state = self.decode(rec["state"], where)
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise self.corrupt(where, "object state is not a dict of attributes")
        obj = cls.__new__(cls)
        # __dict__ directly: frozen dataclasses refuse setattr, and no __init__ or __setstate__
        # of the class runs on file data
        obj.__dict__.update(state)
        return obj

    def m_FormulaSpec(self, rec: dict, where: str) -> Any:
        from .formula import FormulaSpec

        formula = rec["formula"]
        train = self.decode(rec["train"], f"{where}.train")
        if not isinstance(train, pd.DataFrame):
            raise self.corrupt(where, "the training values are not a table")
        if not isinstance(formula, str) or len(formula) > 10_000:
            raise self.corrupt(where, "the formula is not a formula string")
        extrapolate = rec.get("extrapolate", "warn")
        if extrapolate not in ("warn", "error"):
            raise self.corrupt(where, f"unknown extrapolation policy {extrapolate!r}")
        spec = FormulaSpec.__new__(FormulaSpec)
        try:
            # the formula layer's own guard: only documented functions and columns, checked on the
            # syntax tree before patsy evaluates anything
            spec.__setstate__({"formula": formula, "train": train, "extrapolate": extrapolate})
        except QaggError as err:
            raise SaveError(f"{self.source}: the formula {formula!r} at {where} is refused: {err}") from err
        return spec

    def m_DataFrame(self, rec: dict, where: str) -> pd.DataFrame:
        columns = self.m_index(rec["columns"], f"{where}.columns")
        index = self.m_index(rec["index"], f"{where}.index")
        data = [self.column(c, f"{where}[{i}]") for i, c in enumerate(rec["data"])]
        if len(data) != len(columns) or any(len(c) != len(index) for c in data):
            raise self.corrupt(where, "column and index lengths disagree")
        frame = pd.DataFrame({i: pd.Series(c, index=index, dtype=c.dtype, copy=False)
                              for i, c in enumerate(data)}, index=index)
        frame.columns = columns
        return frame

    def m_Series(self, rec: dict, where: str) -> pd.Series:
        index = self.m_index(rec["index"], f"{where}.index")
        values = self.column(rec["values"], where)
        return pd.Series(values, index=index, dtype=values.dtype, name=self.decode(rec["name"], where))

    def m_Categorical(self, rec: dict, where: str) -> pd.Categorical:
        return self.column(rec["values"], where)

    def m_index(self, rec: dict, where: str) -> pd.Index:
        kind = rec.get(_MARK) if isinstance(rec, dict) else None
        if kind == "RangeIndex":
            return pd.RangeIndex(int(rec["start"]), int(rec["stop"]), int(rec["step"]),
                                 name=self.decode(rec["name"], where))
        if kind == "MultiIndex":
            return pd.MultiIndex(levels=[self.m_index(lv, where) for lv in rec["levels"]],
                                 codes=[np.asarray(c) for c in rec["codes"]],
                                 names=[self.decode(n, where) for n in rec["names"]],
                                 verify_integrity=True)
        if kind == "Index":
            values = self.column(rec["values"], where)
            # the stored dtype, not pandas' inference (an object index of strings stays object)
            return pd.Index(values, dtype=values.dtype, name=self.decode(rec["name"], where), copy=False)
        raise self.corrupt(where, f"unknown index kind {kind!r}")

    m_RangeIndex = m_MultiIndex = m_Index = m_index

    def column(self, rec: dict, where: str) -> Any:
        kind = rec["kind"]
        if kind == "numpy":
            values = rec["values"]
            if not isinstance(values, np.ndarray) or values.ndim != 1:
                raise self.corrupt(where, "a column is not a 1-d array")
            return values
        if kind == "object":
            out = np.empty(len(rec["values"]), dtype=object)
            out[:] = [self.decode(v, where) for v in rec["values"]]
            return out
        if kind == "categorical":
            categories = self.m_index(rec["categories"], where)
            return pd.Categorical.from_codes(np.asarray(rec["codes"]), categories=categories,
                                             ordered=bool(rec["ordered"]))
        if kind == "masked":
            if rec["dtype"] not in _MASKED_DTYPES:
                raise self.corrupt(where, f"unknown column dtype {rec['dtype']!r}")
            out = pd.array(np.asarray(rec["values"]), dtype=rec["dtype"])
            out[np.asarray(rec["mask"], dtype=bool)] = pd.NA
            return out
        if kind == "string":
            if rec["storage"] not in ("python", "pyarrow") or rec["na_value"] not in ("nan", "NA"):
                raise self.corrupt(where, "unknown string storage")
            storage = rec["storage"]
            if storage == "pyarrow":
                try:
                    import pyarrow  # noqa: F401  (optional: same values in python storage)
                except ImportError:
                    storage = "python"
            dtype = pd.StringDtype(storage, na_value=np.nan if rec["na_value"] == "nan" else pd.NA)
            values = np.array(rec["values"], dtype=object)
            values[np.asarray(rec["mask"], dtype=bool)] = None
            return pd.array(values, dtype=dtype)
        raise self.corrupt(where, f"unknown column kind {kind!r}")


def _resolve(name: str) -> type:
    """A class from :data:`QAGG_TYPES` (never a name taken from the file alone)."""
    import importlib

    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------- compiled models
def _check_foreign(obj: Any, where: str, source: str) -> None:
    """Bounds of the index arrays that compiled predict code follows without checks."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, np.generic)) or (
            isinstance(obj, np.ndarray) and obj.dtype != object):
        return  # plain data: numpy indexing is bounds-checked

    def fail(why: str) -> SaveError:
        return SaveError(f"{source} is corrupt at {where}: {why}; qaggstats refuses to load it")

    from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import Tree

    if isinstance(obj, (Tree, TreePredictor)):
        raise fail(f"a {type(obj).__name__} outside the model that owns it")
    if isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.dtype == object):
        for i, item in enumerate(np.asarray(obj, dtype=object).ravel()):
            _check_foreign(item, f"{where}[{i}]", source)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_foreign(value, f"{where}[{key!r}]", source)
        return
    fitted = hasattr(obj, "n_features_in_")
    if isinstance(obj, DecisionTreeRegressor):
        if fitted or hasattr(obj, "tree_"):
            _check_tree(obj.tree_, int(obj.n_features_in_), fail)
    elif isinstance(obj, HistGradientBoostingRegressor):
        if fitted or hasattr(obj, "_predictors"):
            if obj.is_categorical_ is not None:
                raise fail("categorical boosting trees are not loaded")
            for level in obj._predictors:
                for pred in level:
                    _check_predictor(pred, int(obj.n_features_in_), fail)
    elif isinstance(obj, GradientBoostingRegressor):
        if fitted or hasattr(obj, "estimators_"):
            for est in np.asarray(obj.estimators_, dtype=object).ravel():
                if not isinstance(est, DecisionTreeRegressor) or int(est.n_features_in_) != int(obj.n_features_in_):
                    raise fail("a boosting tree does not match the model")
                _check_tree(est.tree_, int(obj.n_features_in_), fail)
    else:
        # qaggstats learners and linear models: look into their attributes (numpy indexing of
        # plain arrays is bounds-checked, so arrays themselves need no check)
        for key, value in getattr(obj, "__dict__", {}).items():
            _check_foreign(value, f"{where}.{key}", source)


def _check_tree(tree: Any, n_features: int, fail: Any) -> None:
    # node_count is read from the file independently of the node array: compare first, as the
    # arrays below are views of node_count nodes
    if int(tree.node_count) != int(tree.capacity) or int(tree.n_features) != n_features:
        raise fail("a tree's node count or feature count is inconsistent")
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    n = left.shape[0]
    idx = np.arange(n)
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise fail("a tree node has one child")
    inner = ~leaf
    # children after their parent (as scikit-learn numbers them): every path ends at a leaf
    if np.any((left[inner] <= idx[inner]) | (left[inner] >= n)
              | (right[inner] <= idx[inner]) | (right[inner] >= n)):
        raise fail("a tree's child index is out of range")
    if np.any((feature[inner] < 0) | (feature[inner] >= n_features)):
        raise fail("a tree's feature index is out of range")
    # a NaN threshold sends every row one way and a NaN leaf predicts NaN: both only by editing
    if not (np.isfinite(tree.threshold[inner]).all() and np.isfinite(tree.value).all()):
        raise fail("a tree's split threshold or leaf value is not a finite number")


def _check_predictor(pred: Any, n_features: int, fail: Any) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = pred.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1:
        raise fail("a boosting tree's node array has the wrong layout")
    n = nodes.shape[0]
    idx = np.arange(n)
    inner = nodes["is_leaf"] == 0
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    if np.any((left[inner] <= idx[inner]) | (left[inner] >= n)
              | (right[inner] <= idx[inner]) | (right[inner] >= n)):
        raise fail("a boosting tree's child index is out of range")
    feat = nodes["feature_idx"][inner]
    if np.any((feat < 0) | (feat >= n_features)):
        raise fail("a boosting tree's feature index is out of range")
    if np.any(nodes["is_categorical"][inner] != 0):
        raise fail("categorical boosting trees are not loaded")
    if not (np.isfinite(nodes["num_threshold"][inner]).all() and np.isfinite(nodes["value"]).all()):
        raise fail("a boosting tree's split threshold or leaf value is not a finite number")
