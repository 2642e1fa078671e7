"""The optional deep-learning stack (JAX + optax), imported only when a neural method is used.

DQA (:mod:`qaggstats.dqa`) and the quantile neural network learner train with JAX's automatic
differentiation and optax's Adam; prediction is plain NumPy, so a saved fit predicts without
them. They live in the extra ``qaggstats[deep]``, which ``[test]`` includes.

Examples
--------
>>> available() in (True, False)
True
"""
from __future__ import annotations

import importlib.util
from typing import Any

from .errors import DependencyError

__all__ = ["available", "require", "EXTRA"]

EXTRA = 'pip install "qaggstats[deep]"'


def available() -> bool:
    """Whether JAX and optax can be imported (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))


def require(what: str) -> tuple[Any, Any, Any]:
    """``(jax, jax.numpy, optax)``, or a :class:`DependencyError` naming ``what`` and the extra."""
    if not available():
        raise DependencyError(f"{what} needs JAX and optax, which are not installed; install the extra: {EXTRA}")
    import jax
    import jax.numpy as jnp
    import optax

    return jax, jnp, optax
