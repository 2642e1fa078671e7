"""What a new user meets first (issue 27): the defaults on small data, the summary's wording and
number formats, the README example."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import qaggstats as qa


def small_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.uniform(size=n)})
    df["y"] = df["x"] + rng.normal(size=n)
    return df


@pytest.mark.parametrize("n", [20, 30, 50])
def test_default_learners_fit_small_data_with_k_adapted_to_the_rows(n):
    # KNN's k=30 used to exceed the 16 training rows of a fold of 20 rows
    fit = qa.qagg("y ~ .", small_frame(n), n_jobs=1)
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
