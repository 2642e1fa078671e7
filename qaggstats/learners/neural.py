"""A quantile neural network: one multilayer perceptron giving every level, non-crossing by construction."""
from __future__ import annotations

import math
import time
from typing import Any, Optional, Sequence

import numpy as np

from .. import _deep
from ..errors import DataError
from .base import LearnerBase, _check_float, _check_int, _check_random_state, check_fit_data, check_predict_data
from .knn import standardizer

__all__ = ["QuantileNN"]

# Rows per prediction block: bounds the hidden activations to a few MB.
_BLOCK = 4096


class QuantileNN(LearnerBase):
    """Multilayer perceptron for all quantile levels at once (as the paper's base network).

    The non-constant columns of ``X`` are standardised (training mean and standard deviation);
    a ReLU network maps them to ``r`` outputs ``a_1..a_r`` and the quantiles are

        q_1(x) = a_1(x),   q_k(x) = q_(k-1)(x) + softplus(a_k(x)),

    so the levels never cross. The network is trained by AdamW (optax) on the pinball loss
    summed over the levels, in units of the training response (centred at its median and
    divided by its standard deviation, so the defaults do not depend on the units), with early
    stopping: the parameters of the epoch with the lowest pinball loss on a seeded held-out
    ``valid_fraction`` of the rows are kept. Training needs JAX and optax (the extra
    ``qaggstats[deep]``); a fitted network is plain NumPy arrays, so it predicts and is saved
    and loaded without them.

    Parameters
    ----------
    hidden : sequence of int, default (64, 64)
        Widths of the hidden ReLU layers.
    lr : float, default 1e-3
        AdamW step size.
    weight_decay : float, default 1e-4
        AdamW decoupled weight decay.
    batch_size : int or None, default None
        Minibatch rows; None: a twentieth of the training rows, between 32 and 256.
    max_epochs : int, default 300
        Epoch cap.
    patience : int, default 20
        Epochs without a better held-out loss before training stops.
    valid_fraction : float, default 0.2
        Share of the rows held out for early stopping.
    random_state : int or None, default None
        Initialisation, minibatch order and held-out rows; None inside :func:`qaggstats.qagg`
        takes a seed derived from its ``seed``, used alone it draws a fresh seed.
    formula : str or None, default None
        Formula for this learner's design; None uses the pipeline's default formula.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (300, 1)); y = X[:, 0] + rng.normal(size=300) * 0.1
    >>> nn = QuantileNN(hidden=(16,), max_epochs=30, random_state=0)
    >>> q = nn.fit(X, y, [0.1, 0.5, 0.9]).predict(X[:2])  # doctest: +SKIP
    >>> bool(np.all(np.diff(q, axis=1) >= 0))               # doctest: +SKIP
    True
    """

    def __init__(self, hidden: Sequence[int] = (64, 64), lr: float = 1e-3, weight_decay: float = 1e-4,
                 batch_size: Optional[int] = None, max_epochs: int = 300, patience: int = 20,
                 valid_fraction: float = 0.2, random_state: Optional[int] = None,
                 formula: Optional[str] = None) -> None:
        self.hidden = hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.valid_fraction = valid_fraction
        self.random_state = random_state
        self.formula = formula
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        hidden = self.hidden
        if (isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__len__") or len(hidden) == 0
                or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden)):
            raise DataError(f"{name}: hidden must be a non-empty sequence of layer widths >= 1, got {hidden!r}")
        _check_float(self.lr, "lr", name)
        _check_float(self.weight_decay, "weight_decay", name, low_open=False)
        if self.batch_size is not None:
            _check_int(self.batch_size, "batch_size", name)
        _check_int(self.max_epochs, "max_epochs", name)
        _check_int(self.patience, "patience", name)
        _check_float(self.valid_fraction, "valid_fraction", name, high=0.5)
        _check_random_state(self.random_state, name)

    def fit(self, X: np.ndarray, y: np.ndarray, taus: np.ndarray) -> "QuantileNN":
        """Train on ``X (n, d)``, ``y (n,)`` for the levels ``taus (r,)``."""
        self._validate()
        name = type(self).__name__
        X, y, taus = check_fit_data(X, y, taus, name)
        n = X.shape[0]
        n_valid = int(round(self.valid_fraction * n))
        if n_valid < 1 or n - n_valid < 2:
            raise DataError(f"{name}: {n} training rows are too few to hold out "
                            f"valid_fraction={self.valid_fraction} for early stopping (need >= 1 and 2 left)")
        seed = self.random_state if self.random_state is not None else int(np.random.SeedSequence().entropy % 2**31)
        t0 = time.perf_counter()
        self.keep_, self.mean_, self.sd_ = standardizer(X)
        self.centre_ = float(np.median(y))
        self.scale_ = float(np.std(y)) or 1.0
        valid = np.zeros(n, dtype=bool)
        valid[np.random.default_rng([seed, 7]).permutation(n)[:n_valid]] = True
        self.layers_, self.training_ = _train(self._scale(X), (y - self.centre_) / self.scale_, taus, valid,
                                              hidden=tuple(int(h) for h in self.hidden), lr=float(self.lr),
                                              weight_decay=float(self.weight_decay), batch_size=self.batch_size,
                                              max_epochs=int(self.max_epochs), patience=int(self.patience), seed=seed)
        self.training_["heldout_pinball"] *= self.scale_  # in units of y
        self.training_["seconds"] = time.perf_counter() - t0
        self.n_features_ = X.shape[1]
        self.taus_ = taus
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        if self.keep_.size == 0:
            return np.zeros((X.shape[0], 1))
        return (X[:, self.keep_] - self.mean_) / self.sd_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Quantiles ``(m, r)`` at the rows of ``X (m, d)``, increasing across levels."""
        self._check_fitted()
        X = check_predict_data(X, self.n_features_, type(self).__name__)
        out = np.empty((X.shape[0], self.taus_.size))
        for s in range(0, X.shape[0], _BLOCK):
            h = self._scale(X[s:s + _BLOCK])
            for i, (W, b) in enumerate(self.layers_):
                h = h @ W + b
                if i < len(self.layers_) - 1:
                    h = np.maximum(h, 0.0)
            out[s:s + _BLOCK] = _monotone(h, np)
        return self.centre_ + self.scale_ * out


def _monotone(a: Any, xp: Any) -> Any:
    """Quantiles from raw outputs: the first, then cumulative softplus increments."""
    inc = xp.logaddexp(0.0, a[:, 1:])
    return xp.concatenate([a[:, :1], a[:, :1] + xp.cumsum(inc, axis=1)], axis=1)


def _train(Z: np.ndarray, ys: np.ndarray, taus: np.ndarray, valid: np.ndarray, *, hidden: tuple, lr: float,
           weight_decay: float, batch_size: Optional[int], max_epochs: int, patience: int,
           seed: int) -> tuple[tuple, dict[str, Any]]:
    """AdamW on the pinball loss with early stopping on ``valid``; the best epoch's layers as arrays."""
    jax, jnp, optax = _deep.require("QuantileNN")
    r = taus.size
    sizes = [Z.shape[1], *hidden, r]
    key = jax.random.PRNGKey(int(seed))
    params = []
    for i in range(len(sizes) - 1):
        key, sub = jax.random.split(key)
        W = jax.random.normal(sub, (sizes[i], sizes[i + 1]), dtype=jnp.float32) * math.sqrt(2.0 / sizes[i])
        b = jnp.zeros(sizes[i + 1], dtype=jnp.float32)
        if i == len(sizes) - 2:
            # start at the standard normal quantiles of the (standardised) response, flat in x
            from scipy.stats import norm

            start = norm.ppf(taus)
            W = W * 0.01
            b = jnp.asarray(np.concatenate([start[:1], np.log(np.expm1(np.maximum(np.diff(start), 1e-3)))]),
                            dtype=jnp.float32)
        params.append((W, b))
    taus_j = jnp.asarray(taus, dtype=jnp.float32)

    def quantiles(params, z):
        h = z
        for W, b in params[:-1]:
            h = jax.nn.relu(h @ W + b)
        W, b = params[-1]
        return _monotone(h @ W + b, jnp)

    def pinball(params, z, yy):
        u = yy[:, None] - quantiles(params, z)
        return (u * (taus_j - (u < 0))).sum(1).mean()

    opt = optax.adamw(lr, weight_decay=weight_decay)
    state = opt.init(params)
    tr = np.flatnonzero(~valid)
    B = int(min(batch_size or np.clip(tr.size // 20, 32, 256), tr.size))
    nb = tr.size // B
    f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
    Zj, Yj = f32(Z), f32(ys)
    Zv, Yv = Zj[valid], Yj[valid]

    @jax.jit
    def epoch(params, state, order):
        def step(carry, rows):
            params, state = carry
            grads = jax.grad(pinball)(params, Zj[rows], Yj[rows])
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None
        (params, state), _ = jax.lax.scan(step, (params, state), order.reshape(nb, B))
        return params, state

    held_out = jax.jit(lambda params: pinball(params, Zv, Yv))
    rng = np.random.default_rng([seed, 8])
    best, best_params, best_epoch, epochs = float(held_out(params)), params, 0, 0
    for e in range(1, max_epochs + 1):
        params, state = epoch(params, state, jnp.asarray(rng.permutation(tr)[:nb * B]))
        epochs = e
        score = float(held_out(params))
        if score < best - 1e-7 * abs(best):
            best, best_params, best_epoch = score, params, e
        elif e - best_epoch >= patience:
            break
    layers = tuple((np.asarray(W, dtype=float), np.asarray(b, dtype=float)) for W, b in best_params)
    return layers, {"epochs": epochs, "best_epoch": best_epoch, "heldout_pinball": best,
                    "valid_rows": int(valid.sum())}
