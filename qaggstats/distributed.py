"""Dask helpers: cross-fitting tasks on a ``dask.distributed`` Client, chunked prediction.

Dask is optional (``pip install 'qaggstats[dask]'``): nothing here imports it at module level,
and asking for a Dask feature without it raises a :class:`~qaggstats.errors.DataError` naming
the missing package.

- :func:`resolve_client` turns ``backend="dask"`` (the current default Client) or a Client
  instance into the Client that :func:`qaggstats.crossfit.crossfit` runs its tasks on.
- :func:`run_tasks` maps a pure function over argument tuples on that Client and yields the
  results in order, which is all cross-fitting needs from a backend; the tasks are the same
  pre-seeded :func:`qaggstats.crossfit.fit_task` calls as locally, so results are bitwise equal.
- :func:`predict_dask` predicts a Dask DataFrame partition by partition (data larger than
  memory), returning a lazy Dask DataFrame with the same partitions.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from distributed import Client, LocalCluster
>>> from qaggstats.crossfit import crossfit
>>> from qaggstats.learners import KNN
>>> X = np.arange(20.0).reshape(-1, 1); y = np.arange(20.0)
>>> with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
...                   dashboard_address=None) as cluster, Client(cluster) as client:
...     cf = crossfit({"knn": KNN(k=3)}, {"knn": X}, y, [0.5], cv=4, backend=client)
>>> cf.Q.shape
(20, 1, 1)
"""
from __future__ import annotations

import importlib
import sys
import uuid
from types import ModuleType
from typing import Any, Callable, Generator, Optional, Sequence

from .errors import DataError

__all__ = ["predict_dask", "run_tasks", "resolve_client", "is_client", "is_dask_dataframe"]

_INSTALL = "pip install 'qaggstats[dask]'"


def _require(module: str, package: str, purpose: str) -> ModuleType:
    """Import an optional module, or raise a DataError naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DataError(f"{purpose} needs the optional package {package!r}, which is not "
                        f"installed ({_INSTALL})") from err


def is_client(obj: Any) -> bool:
    """True when ``obj`` is a ``dask.distributed.Client``; never imports Dask.

    If ``distributed`` was never imported, no Client can exist.

    Examples
    --------
    >>> is_client("dask")
    False
    """
    module = sys.modules.get("distributed")
    return module is not None and isinstance(obj, module.Client)


def is_dask_dataframe(obj: Any) -> bool:
    """True when ``obj`` is a Dask DataFrame; never imports Dask.

    Examples
    --------
    >>> import pandas as pd
    >>> is_dask_dataframe(pd.DataFrame({"x": [1.0]}))
    False
    """
    module = sys.modules.get("dask.dataframe")
    return module is not None and isinstance(obj, module.DataFrame)


def resolve_client(backend: Any) -> Any:
    """The Client that ``backend`` ("dask" or a Client) designates.

    Raises
    ------
    DataError
        ``distributed`` is not installed, ``backend="dask"`` with no Client running, or a
        ``backend`` that is neither.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, \\
    ...         Client(cluster) as client:
    ...     resolve_client("dask") is client
    True
    """
    distributed = _require("distributed", "distributed", f"backend={backend!r}")
    if isinstance(backend, distributed.Client):
        return backend
    if backend != "dask":
        raise DataError(f"backend {backend!r} is not a dask.distributed Client or 'dask'")
    try:
        return distributed.get_client()
    except ValueError as err:  # distributed's way of saying "no client"
        raise DataError("backend='dask' uses the current dask.distributed Client, but none is "
                        "running; start one (e.g. Client(LocalCluster())) or pass backend=<Client>"
                        ) from err


def run_tasks(client: Any, func: Callable[..., Any],
              calls: Sequence[tuple]) -> Generator[Any, None, None]:
    """Results of ``func(*args)`` for each tuple in ``calls``, in order, computed on ``client``.

    Every distinct argument object (a learner shared by the K fold fits, each training slice)
    is scattered once, so the task graph stays small and no object travels once per task.
    Closing the generator early (a failed task) cancels the tasks not yet collected.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, \\
    ...         Client(cluster) as client:
    ...     list(run_tasks(client, pow, [(2, 3), (3, 2)]))
    [8, 9]
    """
    shared = _scatter_distinct(client, calls)
    futures = [client.submit(func, *(shared.get(id(a), a) for a in args), pure=False)
               for args in calls]
    try:
        for future in futures:
            yield future.result()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)


def _scatter_distinct(client: Any, calls: Sequence[tuple]) -> dict[int, Any]:
    """id(argument) -> Future for every distinct argument that is not None or a number."""
    objects: dict[int, Any] = {}
    for args in calls:
        for a in args:
            if a is not None and not isinstance(a, (bool, int, float, str)):
                objects.setdefault(id(a), a)
    if not objects:
        return {}
    # hash=False: hashing large arrays costs time, and the objects are distinct anyway
    futures = client.scatter(list(objects.values()), hash=False)
    return dict(zip(objects, futures))


def _predict_partition(part: Any, results: Any, taus: Optional[Sequence[float]],
                       interval: Optional[float], calibrated: bool) -> Any:
    """In-memory prediction of one pandas partition."""
    return results.predict(part, taus=taus, interval=interval, calibrated=calibrated)


def predict_dask(results: Any, ddf: Any, taus: Optional[Sequence[float]] = None,
                 interval: Optional[float] = None, calibrated: bool = True) -> Any:
    """Lazy, chunked :meth:`QaggResults.predict` of a Dask DataFrame.

    Each partition is predicted in memory by ``results.predict`` and the output keeps the
    partitions (and divisions) of ``ddf``; nothing is computed until ``.compute()`` (or
    ``.to_parquet`` ...). The fitted ``results`` enter the graph once, as a single piece of
    data every partition task depends on, not once per partition.

    Parameters
    ----------
    results : QaggResults
        A fitted aggregate (anything with ``predict(frame, taus, interval, calibrated)``).
    ddf : dask.dataframe.DataFrame
        New data with every column the formulas use; rows with missing predictors get NaN.
    taus, interval, calibrated
        As in :meth:`QaggResults.predict`.

    Returns
    -------
    dask.dataframe.DataFrame
        Columns ``q<tau>`` (and ``lower``, ``upper``), float64, indexed like ``ddf``.

    Raises
    ------
    DataError
        Dask is not installed, ``ddf`` is not a Dask DataFrame, or (at once, not at compute
        time) a missing column, an unfitted level or interval.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import qaggstats as qa
    >>> df = qa.datasets.load("engel")
    >>> fit = qa.qagg("foodexp ~ income", df, models={"lin": qa.learners.LinearQR()},
    ...               taus=[0.05, 0.5, 0.95], cv=3)
    >>> out = predict_dask(fit, dd.from_pandas(df, npartitions=4), interval=0.9)
    >>> out.npartitions, list(out.columns)
    (4, ['q0.05', 'q0.5', 'q0.95', 'lower', 'upper'])
    """
    dask = _require("dask", "dask", "prediction of a Dask DataFrame")
    dd = _require("dask.dataframe", "dask[dataframe]", "prediction of a Dask DataFrame")
    if not isinstance(ddf, dd.DataFrame):
        raise DataError(f"predict_dask needs a dask DataFrame, got {type(ddf).__name__}")
    # Predicting the empty meta frame gives the exact output columns and dtypes, and raises
    # a missing column or an unfitted level now rather than inside a worker later.
    meta = _predict_partition(ddf._meta, results, taus, interval, calibrated)
    shipped = dask.delayed(results, name=f"qagg-results-{uuid.uuid4().hex}", pure=False,
                           traverse=False)
    return ddf.map_partitions(_predict_partition, shipped, taus, interval, calibrated,
                              meta=meta)
