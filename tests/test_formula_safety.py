"""Formulas run no code (issue 14): hostile terms raise FormulaError naming the term and leave no
trace; column kinds a formula would misread are refused with a hint."""
import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats.errors import DataError, FormulaError
from qaggstats.formula import FormulaSpec, model_frames


@pytest.fixture()
def df():
    rng = np.random.default_rng(3)
    n = 40
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.uniform(1, 2, n),
                         "g": rng.choice(["a", "b"], n), "b": rng.choice([True, False], n)})


def _hostile(canary):
    cmd = f"touch {canary}"
    return [
        f"y ~ x + I(np.load.__globals__['os'].system('{cmd}') * 0)",
        f"y ~ I(__import__('os').system('{cmd}'))",
        f"y ~ x + I(().__class__.__base__.__subclasses__())",
        f"y ~ x + I(open('{canary}', 'w').write('x'))",
        f"y ~ x + I(eval(\"__import__('os').system('{cmd}')\"))",
        f"y ~ x + I(exec(\"import os; os.system('{cmd}')\"))",
        f"y ~ x + I(getattr(np, 'load'))",
        f"y ~ x + np.lib.format.open_memmap('{canary}')",
        f"y ~ x + I([c for c in [1]])",
        f"y ~ x + I((lambda: __import__('os').system('{cmd}'))())",
        f"y ~ C(g, Treatment(__import__('os').system('{cmd}')))",
        f"I(__import__('os').system('{cmd}')) ~ x",
        f"y ~ x + I(np.loadtxt('{canary}'))",
        f"y ~ x + I(x.__class__.__init__.__globals__)",
        f"y ~ x + I(x[0])",
        f"y ~ x + I(__builtins__)",
    ]


def test_hostile_formulas_run_nothing(df, tmp_path):
    canary = tmp_path / "canary"
    for formula in _hostile(canary):
        with pytest.raises(FormulaError) as info:
            model_frames({"m": formula}, df)
        # the message quotes the offending term
        assert "formula term" in str(info.value) or "unknown" in str(info.value), formula
        with pytest.raises(FormulaError):
            qa.rq(formula, df)
        assert not canary.exists(), formula


def test_hostile_column_names_are_data(df, tmp_path):
    canary = tmp_path / "canary"
    name = f"__import__('os').system('touch {canary}')"
    data = df.assign(**{name: df.x * 2})
    spec = FormulaSpec.from_data("y ~ .", data)
    assert spec.column_names[-1] == f"`{name}`"
    assert not canary.exists()


def test_huge_literal_powers_are_refused(df):
    with pytest.raises(FormulaError, match=r"I\(9 \*\* 9 \*\* 9\).*power"):
        model_frames({"m": "y ~ I(9**9**9)"}, df)


def test_column_kinds_refused_with_hint(df):
    n = len(df)
    dates = df.assign(d=pd.date_range("2020-01-01", periods=n))
    with pytest.raises(DataError, match=r"'d' holds dates.*\.dt\.days"):
        model_frames({"m": "y ~ x + d"}, dates)
    with pytest.raises(DataError, match=r"'d' holds dates"):
        model_frames({"m": "y ~ ."}, dates)
    spans = df.assign(t=pd.to_timedelta(np.arange(n), unit="h"))
    with pytest.raises(DataError, match=r"'t' holds durations.*total_seconds"):
        model_frames({"m": "y ~ t"}, spans)
    text = df.assign(v=[f"{1000 + i:,}.5" for i in range(n)])
    with pytest.raises(DataError, match=r"'v' holds numbers stored as text \(e\.g\. '1,000\.5'\).*to_numeric"):
        model_frames({"m": "y ~ v"}, text)
    # written as factor(): the user says the values are codes
    codes = df.assign(v=[str(i % 3) for i in range(n)])
    assert FormulaSpec.from_data("y ~ factor(v)", codes).column_names == ["(Intercept)", "factor(v)1",
                                                                         "factor(v)2"]
    cplx = df.assign(c=df.x + 1j)
    with pytest.raises(DataError, match=r"'c' is complex"):
        model_frames({"m": "y ~ c"}, cplx)
    dup = pd.concat([df, df[["x"]]], axis=1)
    with pytest.raises(DataError, match=r"duplicated column name\(s\) \['x'\]"):
        model_frames({"m": "y ~ x"}, dup)


def test_bool_given_as_text_at_predict(df):
    spec = FormulaSpec.from_data("y ~ x + b", df)
    assert spec.column_names == ["(Intercept)", "x", "bTRUE"]
    new = pd.DataFrame({"x": [1.5, 1.2], "b": ["True", "False"]})
    with pytest.raises(DataError, match=r"'b' was boolean.*'True'.*map"):
        spec.design(new)
    assert spec.design(new.assign(b=[True, False]))[:, 2].tolist() == [1.0, 0.0]
