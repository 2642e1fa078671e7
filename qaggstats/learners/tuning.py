"""Random search of a base learner's parameters on out-of-fold WIS (the paper tuned 20 per learner)."""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError, FitError
from ..scoring import wis
from .base import LearnerBase, _check_int, _check_random_state, check_fit_data, check_learner, check_predictions

__all__ = ["RandomSearch"]


class RandomSearch(LearnerBase):
    """A learner whose parameters are chosen at each fit by random search on out-of-fold WIS.

    At ``fit`` the rows are split into ``cv`` folds; each of ``n_iter`` configurations (the
    learner as given first, then distinct random draws from ``space``) is fitted on all folds
    but one and scored by the weighted interval score (:func:`qaggstats.scoring.wis`, the mean
    pinball loss over levels) on the held-out fold; the configuration with the lowest mean
    held-out WIS is refitted on every row. Since the learner as given is one of the candidates,
    the search never chooses a configuration whose held-out WIS is worse than the default's.
    Inside :func:`qaggstats.qagg` the search runs inside each cross-fitting fold, so the
    out-of-fold predictions the weights are fitted on stay honest (nested). That costs
    ``n_iter * cv + 1`` fits per fold: opt in where the learners' defaults are not good enough.

    Parameters
    ----------
    learner : learner
        The learner to tune (any qaggstats learner with ``get_params``/``set_params``).
    space : mapping of str to sequence
        For each parameter name, the values to draw from (uniformly). Values are plain data
        (numbers, strings, tuples), so a tuned fit saves as data.
    n_iter : int, default 20
        Configurations tried, the learner as given included (the paper's 20 per learner).
    cv : int, default 3
        Inner folds.
    random_state : int or None, default None
        Draws of configurations and inner folds; a learner in ``space`` whose own
        ``random_state`` is None gets this seed. None inside :func:`qaggstats.qagg` takes a seed
        derived from its ``seed``; used alone, None is seed 0 (the search is deterministic).

    Attributes
    ----------
    best_params_ : dict
        The parameters of the chosen configuration that ``space`` varies.
    best_ : learner
        The chosen configuration refitted on every row; ``predict`` uses it.
    results_ : pandas.DataFrame
        One row per configuration: its parameters, mean held-out WIS, its standard error over
        folds and whether it was chosen.

    Examples
    --------
    >>> import numpy as np
    >>> from qaggstats.learners import KNN
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(300, 2)); y = X[:, 0] + rng.normal(size=300) * 0.1
    >>> tuned = RandomSearch(KNN(k=30), {"k": [5, 10, 20, 40]}, n_iter=4, random_state=0)
    >>> tuned.fit(X, y, [0.1, 0.5, 0.9]).best_params_["k"] in (5, 10, 20, 40)
    True
    >>> tuned.results_.shape[0]
    4
    """

    def __init__(self, learner: Any, space: Mapping[str, Sequence[Any]], n_iter: int = 20, cv: int = 3,
                 random_state: Optional[int] = None) -> None:
        self.learner = learner
        self.space = space
        self.n_iter = n_iter
        self.cv = cv
        self.random_state = random_state
        self._validate()

    @property
    def formula(self) -> Optional[str]:  # type: ignore[override]
        """The tuned learner's formula (None: the pipeline's default)."""
        return getattr(self.learner, "formula", None)

    def _validate(self) -> None:
        name = type(self).__name__
        check_learner(self.learner, f"{name}.learner")
        if not callable(getattr(self.learner, "get_params", None)) or not callable(
                getattr(self.learner, "set_params", None)):
            raise DataError(f"{name}: the learner {type(self.learner).__name__} has no get_params/set_params "
                            "to vary; tune a qaggstats learner")
        if not isinstance(self.space, Mapping) or not self.space:
            raise DataError(f"{name}: space must be a non-empty mapping of parameter name to a list of values, "
                            f"got {self.space!r}")
        valid = set(self.learner.get_params())
        for key, values in self.space.items():
            if key not in valid:
                raise DataError(f"{name}: {type(self.learner).__name__} has no parameter {key!r} to tune; "
                                f"valid: {', '.join(sorted(valid))}")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise DataError(f"{name}: space[{key!r}] must be a non-empty list of values, got {values!r}")
            for v in values:
                # each value must make a valid learner (its own checks name the problem)
                copy.deepcopy(self.learner).set_params(**{key: v})
        _check_int(self.n_iter, "n_iter", name)
        _check_int(self.cv, "cv", name, low=2)
        _check_random_state(self.random_state, name)

    def candidates(self) -> list[dict[str, Any]]:
        """The configurations tried: the learner's own values first, then distinct draws.

        Examples
        --------
        >>> from qaggstats.learners import KNN
        >>> RandomSearch(KNN(k=30), {"k": [5, 10]}, n_iter=5, random_state=0).candidates()
        [{'k': 30}, {'k': 5}, {'k': 10}]
        """
        own = {k: self.learner.get_params()[k] for k in self.space}
        keys = list(self.space)
        in_grid = all(any(_equal_value(own[k], v) for v in self.space[k]) for k in keys)
        # the grid may hold fewer distinct configurations than n_iter: stop when it is exhausted
        distinct = int(np.prod([len({_key({k: v}) for v in self.space[k]}) for k in keys])) + (not in_grid)
        rng = np.random.default_rng([0 if self.random_state is None else int(self.random_state), 11])
        out, seen = [own], {_key(own)}
        draws = 0
        while len(out) < min(self.n_iter, distinct) and draws < 100 * self.n_iter:
            draws += 1
            cand = {k: self.space[k][int(rng.integers(len(self.space[k])))] for k in keys}
            if _key(cand) not in seen:
                seen.add(_key(cand))
                out.append(cand)
        return out

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "RandomSearch":
        """Search on ``X (n, d)``, ``y (n,)``, ``taus (r,)``; refit the best on every row."""
        self._validate()
        name = type(self).__name__
        X, y, taus = check_fit_data(X, y, taus, name)
        n = X.shape[0]
        if n < 2 * self.cv:
            raise DataError(f"{name}: {n} rows are too few for cv={self.cv} inner folds; lower cv")
        seed = 0 if self.random_state is None else int(self.random_state)
        folds = np.random.default_rng([seed, 12]).permutation(np.arange(n) % self.cv)
        rows = []
        for i, params in enumerate(self.candidates()):
            scores = []
            for f in range(self.cv):
                test = folds == f
                model = self._configured(params, seed).fit(X[~test], y[~test], taus)
                pred = check_predictions(model.predict(X[test]), int(test.sum()), taus.size,
                                         f"{name}({type(self.learner).__name__})", f" in inner fold {f + 1}")
                scores.append(wis(y[test], pred, taus))
            s = np.asarray(scores)
            rows.append({**{k: _cell(v) for k, v in params.items()}, "heldout_wis": float(s.mean()),
                         "se": float(s.std(ddof=1) / np.sqrt(s.size))})
        table = pd.DataFrame(rows)
        if not np.isfinite(table["heldout_wis"]).any():
            raise FitError(f"{name}: no configuration of {type(self.learner).__name__} gave a finite held-out WIS")
        best = int(table["heldout_wis"].idxmin())
        table["chosen"] = np.arange(len(table)) == best
        chosen = self.candidates()[best]
        self.best_params_ = dict(chosen)
        self.best_ = self._configured(chosen, seed).fit(X, y, taus)
        self.results_ = table
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    def _configured(self, params: Mapping[str, Any], seed: int) -> Any:
        model = copy.deepcopy(self.learner).set_params(**params)
        if getattr(model, "random_state", 0) is None:
            model.random_state = seed
        return model

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` of the chosen configuration at the rows of ``X (m, d)``."""
        self._check_fitted()
        return self.best_.predict(X)


def _key(params: Mapping[str, Any]) -> str:
    return repr(sorted(params.items()))


def _equal_value(a: Any, b: Any) -> bool:
    return _key({"v": a}) == _key({"v": b})


def _cell(value: Any) -> Any:
    # tuples (layer widths) as text, so the table has one value per cell
    return repr(value) if isinstance(value, (tuple, list)) else value
