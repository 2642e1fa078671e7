"""What a new user meets first (issue 27): the defaults on small data, the summary's wording and
number formats, the README example."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa

ROOT = Path(__file__).resolve().parents[1]


def small_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.uniform(size=n)})
    df["y"] = df["x"] + rng.normal(size=n)
    return df


@pytest.mark.parametrize("n", [20, 30, 50])
def test_default_learners_fit_small_data_with_k_adapted_to_the_rows(n, tmp_path):
    # KNN's k=30 used to exceed the 16 training rows of a fold of 20 rows
    fit = qa.qagg("y ~ .", small_frame(n), n_jobs=1)
    assert fit.report(tmp_path / "report.html").stat().st_size > 10_000
    assert list(fit.models) == ["linear", "forest", "boost", "knn", "locscale"]
    refit_k = min(30, n // 2)
    assert f"KNN(k={refit_k} (auto), n_jobs=None)" == fit.learners["knn"]
    assert f"k={refit_k} (auto)" in str(fit.summary())


def test_summary_names_the_seed_each_random_learner_used():
    df = small_frame(60)
    fit = qa.qagg("y ~ x", df, models={"forest": qa.learners.QuantileForest(n_estimators=5),
                                         "own": qa.learners.QuantileForest(n_estimators=5, random_state=7)},
                  seed=0, n_jobs=1)
    used = re.search(r"random_state=(\d+) \(from seed 0\)", fit.learners["forest"])
    assert used is not None and "random_state=None" not in str(fit.summary())
    assert "random_state=7," in fit.learners["own"] and "from seed" not in fit.learners["own"]
    # the seed shown reproduces the forest's out-of-fold predictions
    again = qa.qagg("y ~ x", df, models={"forest": qa.learners.QuantileForest(
        n_estimators=5, random_state=int(used.group(1)))}, seed=0, n_jobs=1)
    np.testing.assert_array_equal(again.Q[:, 0], fit.Q[:, 0])


@pytest.fixture(scope="module")
def engel_fit():
    df = qa.datasets.load("engel")
    train, test = df.iloc[::2], df.iloc[1::2]
    test = test[test["income"].between(train["income"].min(), train["income"].max())]  # no extrapolation
    # the spline first: the report draws the coefficients of the first linear model
    return qa.qagg("foodexp ~ income", train,
                   models={"spline": qa.learners.LinearQR("foodexp ~ bs(income, df=5)"),
                           "linear": qa.learners.LinearQR(), "knn": qa.learners.KNN()},
                   conformal="cqr", seed=0, n_jobs=1, test=test)


def test_summary_weights_show_levels_as_written_and_one_format(engel_fit):
    text = str(engel_fit.summary())
    block = text.split("Weights\n", 1)[1].split("\n---", 1)[0].splitlines()
    assert block[0].split() == ["tau", "0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95"]
    cells = [c for line in block[2:] for c in line.split()[1:]]
    assert len(cells) == 3 * 7 and all(re.fullmatch(r"0|\d\.\d{3}|<0\.001", c) for c in cells), cells
    html = engel_fit.summary().as_html()
    assert "<th>0.05</th>" in html and "0.05000" not in html


def test_report_tables_share_the_formats_and_the_page_one_font(engel_fit):
    from importlib.resources import files

    from qaggstats.report import build_context

    ctx = build_context(engel_fit)
    weights = [c["text"] for row in ctx["weights_table"]["rows"] for c in row["cells"][1:]]
    assert all(re.fullmatch(r"0|\d\.\d{3}|<0\.001", c) for c in weights), weights
    wis = ctx["key"]["aggregate_wis"]
    mono = ctx["monotone_table"]["rows"]
    sort = next(row["cells"] for row in mono if row["cells"][0]["text"] == "sort")
    assert sort[2]["text"] == wis  # the WIS after sorting, with the decimals of every other WIS
    assert all(row["cells"][3]["text"] == "0" or row["cells"][3]["text"][0] in "+−" for row in mono)
    css = files("qaggstats.templates").joinpath("report.css").read_text(encoding="utf-8")
    assert "serif;" not in css.replace("sans-serif;", "")  # one (sans) family for text and tables
    assert re.search(r"body \{\s*font-family: var\(--sans\)", css)


@pytest.mark.filterwarnings("ignore::qaggstats.quantreg.NonPositiveFisWarning")
def test_report_coefficient_panels_are_three_a_row(engel_fit):
    from qaggstats.report import build_context

    svg = str(build_context(engel_fit)["fig_coef"]["svg"])
    fig = engel_fit.plot("coef", se="nid", ncols=3)  # the spline's 6 coefficients, as the report draws
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and "bs(income, df = 5)5" in svg
    width = fig.get_figwidth() * min(ax.get_position().width for ax in visible)
    assert width > 1.4  # inches of the narrowest panel; four a row gave 1.1


def test_a_clone_stays_clean_and_the_readme_points_only_inside_it():
    assert "qaggstats-demo/" in (ROOT / ".gitignore").read_text().splitlines()  # the demo's default --out
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # every document the README names is in the clone (it once pointed to ../shared/DESIGN.md)
    documents = set(re.findall(r"`([\w./-]+\.md)`", readme))
    assert "docs/ARCHITECTURE.md" in documents
    assert [d for d in documents if not (ROOT / d).is_file()] == []
