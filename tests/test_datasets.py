"""Embedded data sets: contents against references, metadata, errors, size."""
from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qaggstats.datasets as datasets
from qaggstats.errors import DataError

REFERENCE = Path(__file__).resolve().parent / "data" / "quantreg"


def test_names():
    assert datasets.names() == ["concrete", "engel", "grunfeld"]


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs the R reference files")
def test_engel_equals_quantreg_copy():
    df = datasets.load("engel")
    ref = pd.read_csv(REFERENCE / "engel.csv")
    assert list(df.columns) == ["income", "foodexp"] and len(df) == 235
    np.testing.assert_allclose(df.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-9)


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs the R reference files")
def test_concrete_equals_reference_with_factor_levels_in_r_order():
    df = datasets.load("concrete")
    ref = pd.read_csv(REFERENCE / "concrete.csv")
    assert list(df.columns) == ["cement", "slag", "ash", "water", "superplastic", "coarse", "fine",
                                "age", "strength", "age_group"]
    assert df.shape == (1030, 10)
    numeric = ref.columns.drop("age_group")
    np.testing.assert_array_equal(df[numeric].to_numpy(), ref[numeric].to_numpy())
    assert list(df["age_group"].cat.categories) == ["early", "standard", "late"]
    assert (df["age_group"].astype(str) == ref["age_group"]).all()
    # the factor is the documented cut of age at 7 and 28 days
    expected = np.where(df["age"] <= 7, "early", np.where(df["age"] <= 28, "standard", "late"))
    assert (df["age_group"].astype(str).to_numpy() == expected).all()


def test_grunfeld_shape_and_heteroscedasticity():
    df = datasets.load("grunfeld")
    assert df.shape == (220, 5) and df["firm"].nunique() == 11
    assert df.groupby("firm").size().eq(20).all()
    assert (df["year"].min(), df["year"].max()) == (1935, 1954)
    # spread grows with size: the residual spread of invest ~ value is larger for the top half
    slope, icept = np.polyfit(df["value"], df["invest"], 1)
    resid = df["invest"] - (icept + slope * df["value"])
    big = df["value"] > df["value"].median()
    assert resid[big].std() > 3 * resid[~big].std()


def test_describe_table_and_text():
    table = datasets.describe()
    assert isinstance(table, pd.DataFrame)
    assert {"name", "rows", "columns", "response", "source", "licence", "formula"} <= set(table.columns)
    assert table.set_index("name")["rows"].to_dict() == {"concrete": 1030, "engel": 235, "grunfeld": 220}
    assert table.set_index("name")["licence"].to_dict() == {
        "concrete": "CC BY 4.0", "engel": "public domain", "grunfeld": "public domain"}
    text = datasets.describe("engel")
    assert "formula: foodexp ~ income" in text and "rows: 235" in text


@pytest.mark.parametrize("name", ["concrete", "engel", "grunfeld"])
def test_suggested_formula_uses_existing_columns(name):
    df = datasets.load(name)
    formula = datasets.suggested_formula(name)
    response, rhs = (side.strip() for side in formula.split("~"))
    assert response == datasets.describe().set_index("name").loc[name, "response"]
    for term in re.findall(r"[A-Za-z_]\w*", rhs):
        assert term == "C" or term in df.columns, term


def test_unknown_name_lists_available():
    with pytest.raises(DataError, match="unknown data set 'mcycle'; available: concrete, engel, grunfeld"):
        datasets.load("mcycle")
    with pytest.raises(DataError, match="available"):
        datasets.describe("nope")


def test_load_returns_a_fresh_copy():
    first = datasets.load("engel")
    first.iloc[0, 0] = -1.0
    assert datasets.load("engel").iloc[0, 0] > 0


def test_files_are_small_and_documented():
    package = files("qaggstats.datasets")
    csvs = [p for p in package.iterdir() if p.name.endswith(".csv")]
    assert sorted(p.name for p in csvs) == ["concrete.csv", "engel.csv", "grunfeld.csv"]
    assert sum(len(p.read_bytes()) for p in csvs) < 200_000
    readme = package.joinpath("README.md").read_text(encoding="utf-8")
    for name in datasets.names():
        assert f"## {name}" in readme
    assert "CC BY 4.0" in readme and "public domain" in readme
