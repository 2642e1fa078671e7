"""Every docstring example in the package runs and prints what it claims."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import qaggstats

MODULES = ["qaggstats"] + sorted(
    name for _, name, _ in pkgutil.walk_packages(qaggstats.__path__, "qaggstats.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
