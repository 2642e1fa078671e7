"""DQA: deep quantile aggregation (Fakoor et al. 2023, Local-Fine and its coarser variants).

A small network maps the standardised features ``z(x)`` to, for every output level k, weights on
the simplex over candidate (model, level) pairs:

    qhat_k(x) = sum_{(j, l) in C_k} w_kjl(x) Q_jl(x),   w_k.(x) = softmax(f_k(z(x)))

- ``"fine"`` (the paper's Local-Fine, its best method): ``C_k`` holds every model's levels
  within ``window`` levels of k, so a model's 0.85 quantile may serve as the 0.9 one where that
  is better;
- ``"medium"``: ``C_k`` holds every model's own level k (local, per-level weights);
- ``"coarse"``: as medium, with one weight vector shared by all levels.

The network is fitted by Adam (optax) on the pinball loss summed over levels plus the paper's
crossing penalty ``crossing * sum_k (qhat_k - qhat_k+1)_+``, with early stopping on held-out
rows (the parameters of the epoch with the lowest held-out pinball loss are kept); the
pipeline sorts the result afterwards. Training uses JAX (the extra ``qaggstats[deep]``);
:class:`DQANetwork` holds plain arrays and predicts with NumPy, so a saved fit needs no JAX.
Responses and base predictions are centred and scaled by the response before training: a
convex combination commutes with that map, so the weights do not depend on the units.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n, taus = 400, np.array([0.1, 0.5, 0.9])
>>> x = rng.uniform(-1, 1, (n, 1))
>>> y = np.where(x[:, 0] > 0, 2.0, 0.0) + rng.normal(size=n) * 0.1
>>> z = np.array([-0.128, 0.0, 0.128])
>>> Q = np.stack([np.zeros((n, 3)) + z, 2.0 + np.zeros((n, 3)) + z], axis=1)
>>> net, info = fit_dqa(x, Q, y, taus, variant="medium", max_epochs=60, seed=0)  # doctest: +SKIP
>>> w = net.weights(x[:2])                                                        # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

import numpy as np

from . import _deep
from .errors import DataError

__all__ = ["DQANetwork", "fit_dqa", "candidate_index", "Variant", "VARIANTS"]

Variant = Literal["fine", "medium", "coarse"]
VARIANTS: tuple[str, ...] = ("fine", "medium", "coarse")
# Rows per block when a network's weights are evaluated in NumPy (bounds memory: rows x r x K).
_BLOCK = 2048


def candidate_index(variant: str, p: int, r: int, window: Optional[int] = None) -> np.ndarray:
    """Flat positions ``j * r + l`` into ``Q.reshape(m, p * r)`` of each level's candidates, (r, K).

    "fine": every model's levels ``l`` in a window of ``2 * window + 1`` levels around k
    (shifted inwards at the ends, so every level has the same K = p (2 window + 1));
    "medium"/"coarse": every model's own level (K = p). The default window is
    ``ceil(r / 20)`` levels each side (1 at 19 levels, 5 at 99), all levels when r <= 5.

    Examples
    --------
    >>> candidate_index("medium", 2, 3).tolist()
    [[0, 3], [1, 4], [2, 5]]
    >>> candidate_index("fine", 2, 3, window=1)[0].tolist()
    [0, 1, 2, 3, 4, 5]
    """
    if variant not in VARIANTS:
        raise DataError(f"unknown DQA variant {variant!r} (dqa_variant=); choose one of {', '.join(map(repr, VARIANTS))}")
    if variant != "fine":
        return np.arange(p)[None, :] * r + np.arange(r)[:, None]
    if window is None:
        window = r if r <= 5 else math.ceil(r / 20)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise DataError(f"dqa window must be an integer >= 0 (levels each side), got {window!r}")
    width = min(2 * int(window) + 1, r)
    start = np.clip(np.arange(r) - int(window), 0, r - width)
    levels = start[:, None] + np.arange(width)[None, :]                       # (r, width)
    return (np.arange(p)[None, :, None] * r + levels[:, None, :]).reshape(r, -1)


@dataclass
class DQANetwork:
    """A fitted DQA network as plain arrays: features -> per-level simplex weights.

    Attributes
    ----------
    variant : {"fine", "medium", "coarse"}
    index : (r, K) int array
        Candidates of each output level, as flat positions into ``Q.reshape(m, p * r)``.
    layers : tuple of (W, b) array pairs
        Dense layers; ReLU between them, the last gives the logits (``r * K``, or ``K`` for
        "coarse").
    feature_mean, feature_scale : (d,) arrays
        Standardisation of the inputs learnt on the training rows (new rows are clipped to the
        training range ``feature_low``..``feature_high`` after standardising).
    """

    variant: str
    index: np.ndarray
    layers: tuple
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    feature_low: np.ndarray
    feature_high: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Pre-softmax scores (m, r, K)."""
        h = self.standardise(features)
        last = len(self.layers) - 1
        for i, (W, b) in enumerate(self.layers):
            h = h @ W + b
            if i < last:
                h = np.maximum(h, 0.0)
        r, K = self.index.shape
        return np.broadcast_to(h.reshape(h.shape[0], -1, K), (h.shape[0], r, K))

    def standardise(self, features: np.ndarray) -> np.ndarray:
        Z = (np.asarray(features, dtype=float) - self.feature_mean) / self.feature_scale
        return np.clip(Z, self.feature_low, self.feature_high)

    def weights(self, features: np.ndarray) -> np.ndarray:
        """Candidate weights (m, r, K), each row of each level on the simplex."""
        a = self.logits(features)
        a = np.exp(a - a.max(axis=2, keepdims=True))
        return a / a.sum(axis=2, keepdims=True)

    def combine(self, Q: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Aggregate sorted base quantiles Q (m, p, r) at rows with ``features`` (m, d): (m, r)."""
        m = Q.shape[0]
        out = np.empty((m, self.index.shape[0]))
        flat = Q.reshape(m, -1)
        for s in range(0, m, _BLOCK):
            rows = slice(s, s + _BLOCK)
            out[rows] = np.einsum("mkc,mkc->mk", self.weights(features[rows]), flat[rows][:, self.index])
        return out

    def mean_weights(self, features: np.ndarray, p: int, r: int) -> np.ndarray:
        """Weights averaged over rows in the layout of the "fine" family, (p, r_in, r_out)."""
        total = np.zeros((self.index.shape[0], self.index.shape[1]))
        for s in range(0, features.shape[0], _BLOCK):
            total += self.weights(features[s:s + _BLOCK]).sum(axis=0)
        total /= max(features.shape[0], 1)
        out = np.zeros((p * r, self.index.shape[0]))
        for k in range(self.index.shape[0]):
            np.add.at(out[:, k], self.index[k], total[k])
        return out.reshape(p, r, -1)


@dataclass
class _Setup:
    index: np.ndarray
    hidden: tuple
    crossing: float
    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    info: dict = field(default_factory=dict)


def fit_dqa(features: np.ndarray, Q: np.ndarray, y: np.ndarray, taus: Sequence[float], *,
            variant: Variant = "fine", window: Optional[int] = None, hidden: Sequence[int] = (64, 64),
            crossing: float = 1.0, lr: float = 3e-3, weight_decay: float = 1e-4, batch_size: Optional[int] = None,
            max_epochs: int = 300, patience: int = 20, valid: Optional[np.ndarray] = None,
            valid_fraction: float = 0.2, obs_weights: Optional[np.ndarray] = None,
            seed: int = 0) -> tuple[DQANetwork, dict[str, Any]]:
    """Fit a DQA network on out-of-fold base predictions.

    Parameters
    ----------
    features : (n, d) array
        Inputs of the network (e.g. the standardised design of the formula's predictors); they
        are standardised again here on the training rows.
    Q : (n, p, r) array
        Out-of-fold base quantiles, sorted across levels per model.
    y : (n,) array
    taus : (r,) increasing levels
    variant : {"fine", "medium", "coarse"}
        Local-Fine (weights over models and nearby levels), Local-Medium (per level, over
        models) or Local-Coarse (over models, shared by the levels).
    window : int, optional
        "fine": levels each side an output level may borrow from (see :func:`candidate_index`).
    hidden : sequence of int
        Widths of the hidden ReLU layers.
    crossing : float
        Weight of the crossing penalty (in units of the response, like the pinball loss).
    lr, weight_decay, batch_size, max_epochs, patience : training settings
        AdamW step size and decay, minibatch rows (default: a twentieth of the training rows,
        between 32 and 256, so every epoch takes at least 20 steps where n allows), epoch cap,
        and epochs without a better held-out loss before stopping.
    valid : (n,) bool array, optional
        Held-out rows for early stopping (e.g. one cross-fitting fold); default a seeded
        ``valid_fraction`` of the rows.
    obs_weights : (n,) array, optional
    seed : int
        Initialisation, minibatch order and the default held-out rows: the same seed gives the
        same network on the same machine.

    Returns
    -------
    (DQANetwork, dict)
        The network at the best held-out epoch, and what training did (epochs, best epoch,
        held-out loss, seconds).
    """
    import time

    jax, jnp, optax = _deep.require("family 'dqa'")
    t0 = time.perf_counter()
    X = np.asarray(features, dtype=float)
    Q = np.asarray(Q, dtype=float)
    y = np.asarray(y, dtype=float)
    taus = np.asarray(taus, dtype=float)
    n, p, r = Q.shape
    if X.ndim != 2 or X.shape[0] != n:
        raise DataError(f"DQA features must have shape ({n}, d), got {X.shape}")
    if not np.isfinite(X).all():
        raise DataError("DQA features have non-finite values")
    for name, val, ok in (("dqa hidden", hidden, all(isinstance(h, (int, np.integer)) and h >= 1 for h in hidden)),
                          ("dqa crossing", crossing, np.isfinite(crossing) and crossing >= 0),
                          ("dqa lr", lr, np.isfinite(lr) and lr > 0),
                          ("dqa batch_size", batch_size, batch_size is None
                           or isinstance(batch_size, (int, np.integer)) and batch_size >= 1),
                          ("dqa max_epochs", max_epochs, isinstance(max_epochs, (int, np.integer)) and max_epochs >= 1),
                          ("dqa patience", patience, isinstance(patience, (int, np.integer)) and patience >= 1)):
        if not ok:
            raise DataError(f"{name} got an invalid value {val!r}")
    index = candidate_index(variant, p, r, window)
    w = np.ones(n) if obs_weights is None else np.asarray(obs_weights, dtype=float)
    if valid is None:
        if not 0.0 < valid_fraction < 1.0:
            raise DataError(f"dqa valid_fraction must be in (0, 1), got {valid_fraction!r}")
        valid = np.zeros(n, dtype=bool)
        valid[np.random.default_rng([seed, 7]).permutation(n)[:max(1, int(round(valid_fraction * n)))]] = True
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (n,) or valid.all() or not valid.any():
        raise DataError("DQA needs both training and held-out rows for early stopping")

    # centre and scale by the training response: the weights do not depend on the units
    centre = float(np.median(y[~valid]))
    scale = float(np.std(y[~valid])) or 1.0
    mean = X[~valid].mean(axis=0)
    sd = X[~valid].std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    Z = (X - mean) / sd
    flat = ((Q.reshape(n, -1) - centre) / scale)[:, index]                  # (n, r, K)
    ys = (y - centre) / scale
    K = index.shape[1]
    out_dim = K if variant == "coarse" else r * K

    sizes = [Z.shape[1], *[int(h) for h in hidden], out_dim]
    key = jax.random.PRNGKey(int(seed))
    params = []
    for i in range(len(sizes) - 1):
        key, sub = jax.random.split(key)
        if i == len(sizes) - 2:
            W = jnp.zeros((sizes[i], sizes[i + 1]), dtype=jnp.float32)
            # start at each model's own level (the per-level mean), not a blur across levels
            own = (index % r == np.arange(r)[:, None]).astype(np.float32) * 2.0
            b = jnp.asarray(own[0] if variant == "coarse" else own.ravel())
        else:
            W = jax.random.normal(sub, (sizes[i], sizes[i + 1]), dtype=jnp.float32) * math.sqrt(2.0 / sizes[i])
            b = jnp.zeros(sizes[i + 1], dtype=jnp.float32)
        params.append((W, b))
    taus_j = jnp.asarray(taus, dtype=jnp.float32)

    def predict(params, z, g):
        h = z
        for W, b in params[:-1]:
            h = jax.nn.relu(h @ W + b)
        W, b = params[-1]
        a = (h @ W + b).reshape(h.shape[0], -1, K)
        return (jax.nn.softmax(a, axis=-1) * g).sum(-1)                       # (m, r)

    def pinball(q, yy, ww):
        u = yy[:, None] - q
        return ((u * (taus_j - (u < 0))).sum(1) * ww).sum() / ww.sum()

    def loss(params, z, g, yy, ww):
        q = predict(params, z, g)
        cross = (jax.nn.relu(q[:, :-1] - q[:, 1:]).sum(1) * ww).sum() / ww.sum()
        return pinball(q, yy, ww) + crossing * cross

    opt = optax.adamw(lr, weight_decay=weight_decay)
    state = opt.init(params)
    tr = np.flatnonzero(~valid)
    B = int(min(batch_size or np.clip(tr.size // 20, 32, 256), tr.size))
    nb = tr.size // B

    @jax.jit
    def epoch(params, state, order):
        def step(carry, rows):
            params, state = carry
            grads = jax.grad(loss)(params, Zj[rows], Gj[rows], Yj[rows], Wj[rows])
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None
        (params, state), _ = jax.lax.scan(step, (params, state), order.reshape(nb, B))
        return params, state

    @jax.jit
    def held_out(params):
        return pinball(predict(params, Zv, Gv), Yv, Wv)

    f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
    Zj, Gj, Yj, Wj = f32(Z), f32(flat), f32(ys), f32(w)
    Zv, Gv, Yv, Wv = Zj[valid], Gj[valid], Yj[valid], Wj[valid]
    rng = np.random.default_rng([seed, 8])
    best, best_params, best_epoch, epochs = float(held_out(params)), params, 0, 0
    for e in range(1, int(max_epochs) + 1):
        order = jnp.asarray(rng.permutation(tr)[:nb * B])
        params, state = epoch(params, state, order)
        epochs = e
        score = float(held_out(params))
        if score < best - 1e-7 * abs(best):
            best, best_params, best_epoch = score, params, e
        elif e - best_epoch >= patience:
            break
    layers = tuple((np.asarray(W, dtype=float), np.asarray(b, dtype=float)) for W, b in best_params)
    # fold the response scaling into nothing: the weights are scale-free; the inputs' map is kept
    net = DQANetwork(variant=variant, index=index, layers=layers, feature_mean=mean, feature_scale=sd,
                     feature_low=Z[~valid].min(axis=0), feature_high=Z[~valid].max(axis=0))
    info = {"epochs": epochs, "best_epoch": best_epoch, "heldout_pinball": best * scale,
            "seconds": time.perf_counter() - t0, "valid_rows": int(valid.sum()), "candidates": int(K)}
    return net, info
