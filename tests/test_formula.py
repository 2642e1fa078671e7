"""Formula layer: expansion, NA accounting, design reuse, pickling and the error messages."""
import pickle

import numpy as np
import pandas as pd
import pytest

from qaggstats.errors import DataError, FormulaError
from qaggstats.formula import FormulaSpec, design_newdata, expand_dot, model_frames


@pytest.fixture()
def df():
    rng = np.random.default_rng(1)
    n = 60
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.uniform(1, 5, size=n), "z": rng.normal(size=n),
        "g": pd.array(rng.choice(["b", "a", "c"], size=n), dtype="str"),
        "odd name": rng.normal(size=n),
    })


def test_dot_expansion_quotes_names_and_keeps_order(df):
    fr = model_frames({"m": "y ~ ."}, df)
    spec = fr.specs["m"]
    assert spec.expanded == "y ~ x + z + g + Q('odd name')"
    # R's order and labels; string levels sort as R's factor()
    assert spec.column_names == ["(Intercept)", "x", "z", "gb", "gc", "`odd name`"]
    assert spec.patsy_names == ["Intercept", "x", "z", "g[T.b]", "g[T.c]", "Q('odd name')"]
    assert spec.categories == {"g": ("a", "b", "c")}
    assert expand_dot("y ~ . - z", ["y", "x", "z"]) == "y ~ x + z - z"


def test_na_rows_dropped_and_counted(df):
    df.loc[[2, 5], "x"] = np.nan
    df.loc[5, "y"] = np.nan
    df.loc[9, "g"] = None
    df.loc[11, "z"] = np.nan  # z unused: does not drop the row
    fr = model_frames({"a": "y ~ x", "b": "y ~ C(g)"}, df)
    assert (fr.na.n_input, fr.na.n_used, fr.na.n_dropped) == (60, 57, 3)
    assert fr.na.by_column == {"y": 1, "x": 2, "g": 1}
    assert fr.na.dropped_index == [2, 5, 9]
    assert fr.X["a"].shape == (57, 2) and fr.X["b"].shape == (57, 3) and fr.y.shape == (57,)
    with pytest.raises(DataError, match=r"'x': 2.*'g': 1|'y': 1, 'x': 2, 'g': 1"):
        model_frames({"a": "y ~ x + g"}, df, na="raise")


def test_design_reused_on_new_data_with_training_knots(df):
    spec = model_frames({"m": "y ~ bs(x, df=5) + center(z) + C(g) + np.log(x):z"}, df).specs["m"]
    new = df.iloc[:7]
    X_train_rows = spec.design(df).astype(float)[:7]
    # the same rows through design() alone give the training design (knots and centring fixed)
    np.testing.assert_array_equal(spec.design(new), X_train_rows)
    assert spec.spline_columns == ["x"] and spec.ranges["x"] == (df.x.min(), df.x.max())


def test_pickle_round_trip_bitwise(df):
    spec = FormulaSpec.from_data("y ~ bs(x, df=4) + cr(z, df=3) + C(g) + I(x**2)", df)
    back = pickle.loads(pickle.dumps(spec))
    rng = np.random.default_rng(7)
    new = pd.DataFrame({"x": rng.uniform(df.x.min(), df.x.max(), 25),
                        "z": rng.uniform(df.z.min(), df.z.max(), 25),
                        "g": rng.choice(["a", "b", "c"], 25)})
    a, b = spec.design(new), back.design(new)
    assert a.tobytes() == b.tobytes()
    assert back.column_names == spec.column_names


def test_newdata_errors_name_the_culprit(df):
    spec = FormulaSpec.from_data("y ~ bs(x, df=4) + C(g) + z", df)
    good = df.iloc[:3].drop(columns="y")
    with pytest.raises(DataError, match="'z'"):
        spec.design(good.drop(columns="z"))
    with pytest.raises(DataError, match=r"'g'.*\['zz'\]"):
        spec.design(good.assign(g=["a", "zz", "b"]))
    strict = FormulaSpec.from_data("y ~ bs(x, df=4) + C(g) + z", df, extrapolate="error")
    with pytest.raises(DataError, match=r"'x'.*2 new value.*\[2, 9\].*training range"):
        strict.design(good.assign(x=[7.0, 9.0, 2.0]))
    with pytest.raises(DataError, match=r"'z' has 1 infinite"):
        spec.design(good.assign(z=[np.inf, 0.0, 0.0]))
    X, ok = design_newdata({"m": spec}, good.assign(z=[np.nan, 0.0, 0.0]))
    assert ok.tolist() == [False, True, True] and X["m"].shape == (2, len(spec.column_names))


def test_formula_errors_name_the_culprit(df):
    with pytest.raises(FormulaError, match=r"'xx'.*did you mean 'x'"):
        model_frames({"m": "y ~ xx"}, df)
    with pytest.raises(FormulaError, match=r"unknown function 'bss'.*bs"):
        model_frames({"m": "y ~ bss(x)"}, df)
    with pytest.raises(FormulaError, match=r"np\.logg"):
        model_frames({"m": "y ~ np.logg(x)"}, df)


def test_data_errors(df):
    with pytest.raises(DataError, match="no rows"):
        model_frames({"m": "y ~ x"}, df.iloc[:0])
    with pytest.raises(DataError, match=r"'x' has 2 infinite"):
        model_frames({"m": "y ~ x"}, df.assign(x=[np.inf, -np.inf] + [1.0] * 58))
    with pytest.raises(DataError, match=r"response column 'g' must be numeric"):
        model_frames({"m": "g ~ x"}, df)
    fr = model_frames({"m": "y ~ x"}, df.assign(y=3.0))
    assert fr.notes and "constant" in fr.notes[0]


# --------------------------------------------------------------------------- issue 25
def test_names_that_unicode_folding_changes_stay_their_own_columns():
    # Python reads identifiers in NFKC: a bare ligature 'ﬁ' would be the column 'fi', and a
    # decomposed 'é' (e + combining accent) would not tokenize at all
    rng = np.random.default_rng(0)
    nfd = "cafe\u0301"
    df = pd.DataFrame({"y": rng.normal(size=30), "\ufb01": rng.normal(size=30), "fi": rng.normal(size=30),
                       nfd: rng.normal(size=30)})
    spec = model_frames({"m": "y ~ ."}, df).specs["m"]
    assert spec.columns == ["\ufb01", "fi", nfd]
    assert len(spec.column_names) == 4
    for formula, column in (("y ~ \ufb01", "\ufb01"), (f"y ~ {nfd}", nfd), ("y ~ I(\ufb01^2)", "\ufb01")):
        fr = model_frames({"m": formula}, df)
        assert fr.specs["m"].columns == [column]
        expected = df[column] ** 2 if "^2" in formula else df[column]
        np.testing.assert_array_equal(fr.X["m"][:, 1], expected.to_numpy())


def test_a_name_in_another_unicode_form_gets_a_hint():
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 5.0], "caf\u00e9": [1.0, 2.0, 4.0, 3.0]})  # composed é
    with pytest.raises(FormulaError, match=r"another Unicode form: write Q\('caf\u00e9'\)"):
        model_frames({"m": "y ~ cafe\u0301"}, df)


def test_dots_inside_names_and_dot_powers():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=30), "a . b": rng.normal(size=30), "x": rng.normal(size=30)})
    for formula in ("y ~ `a . b` + x", "y ~ x + Q('a . b')", "y ~ ."):
        assert model_frames({"m": formula}, df).specs["m"].columns == ["a . b", "x"]
    # R's .^2: every column and every two-way interaction (the expansion is parenthesised)
    assert model_frames({"m": "y ~ .^2"}, df).specs["m"].column_names == [
        "(Intercept)", "`a . b`", "x", "`a . b`:x"]
    # x:(`a . b` + x) is x:`a . b` + x, as in R
    assert model_frames({"m": "y ~ x:."}, df).specs["m"].column_names == ["(Intercept)", "x", "x:`a . b`"]
    assert expand_dot("y ~ .", ["y", "a", "b"]) == "y ~ a + b"


def test_wide_sums_parse_in_r_order():
    # patsy evaluates a flat sum recursively: 800 terms used to hit RecursionError
    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(850)]
    df = pd.DataFrame(rng.normal(size=(10, 851)), columns=["y"] + names)
    assert model_frames({"m": "y ~ ."}, df).specs["m"].column_names == ["(Intercept)"] + names
    # written out, with the intercept removed and a term taken away at the end
    spec = model_frames({"m": "y ~ 0 + " + " + ".join(names) + " - x5"}, df).specs["m"]
    assert spec.column_names == [n for n in names if n != "x5"]


@pytest.mark.parametrize("formula, message", [
    ("y ~ " + " + ".join(f"I(x*{i})" for i in range(20_000)), "longer than the limit of 100,000"),
    ("y ~ I(" + " + ".join(["x"] * 100_000) + ")", "longer than the limit"),
    ("y ~ I(" + "+".join(["x"] * 30_000) + ")", "nests more than 100 levels"),
    ("y ~ I(" + "-" * 50_000 + "x)", "nests 50000 levels deep"),
    ("y ~ " + "(" * 5000 + "x" + ")" * 5000, "nests 5000 levels deep"),
    ("y ~ (" + " + ".join(f"x{i}" for i in range(30)) + ")^30", "expands to up to 1,073,741,823 terms"),
    ("y ~ " + "*".join(f"x{i}" for i in range(20)), "expands to up to"),
], ids=["20k-terms", "100k-term-I", "30k-term-I", "unary-chain", "parentheses", "power", "product"])
def test_formula_limits_are_typed(formula, message):
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0], **{f"x{i}": [1.0, 2.0, 4.0] for i in range(30)},
                       "x": [1.0, 2.0, 4.0]})
    with pytest.raises(FormulaError, match=message):
        model_frames({"m": formula}, df)


def test_many_level_factors_are_refused_with_the_level_count(monkeypatch):
    # a 20,000-level factor used to build a dense design until numpy ran out of memory
    rng = np.random.default_rng(0)
    n = 30_000
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "g": np.char.add("l", rng.integers(0, 20_000, n).astype(str)),
                       "k": rng.integers(0, 20_000, n)})
    n_levels = df["g"].nunique()
    with pytest.raises(DataError, match=rf"column 'g' has {n_levels:,} levels, more than the limit of 500"):
        model_frames({"m": "y ~ x + g"}, df)
    with pytest.raises(DataError, match=r"column 'k' has .* levels"):
        model_frames({"m": "y ~ x + factor(k)"}, df)
    # the design-size limit names the shape and the widest factor
    small = df.assign(g=df["g"].str[:3]).head(2000)
    monkeypatch.setattr("qaggstats.formula.MAX_DESIGN_CELLS", 10_000)
    with pytest.raises(DataError, match=r"2,000 rows × \d+ columns .* widest factor is 'g'"):
        model_frames({"m": "y ~ x + g"}, small)
