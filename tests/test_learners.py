"""Base quantile learners: shapes, calibration on known quantiles, hand-computed cases, errors."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import LinearRegression, QuantileRegressor

from qaggstats.errors import DataError, FitError, QaggError
from qaggstats.learners import (KNN, GradientBoosting, LearnerTypeError, LinearQR, LocationScale,
                                QuantileForest, QuantileLearner, SklearnQuantile, check_learner,
                                check_predictions)

TAUS = np.array([0.1, 0.5, 0.9])


def linear_qr(tau: float) -> QuantileRegressor:
    """A picklable SklearnQuantile factory: exact linear quantile regression."""
    return QuantileRegressor(quantile=tau, alpha=0.0, solver="highs")


def small_learners():
    return {
        "forest": QuantileForest(n_estimators=30),
        "boost": GradientBoosting(max_iter=30),
        "knn": KNN(k=10),
        "locscale": LocationScale(),
        "sklearn": SklearnQuantile(linear_qr),
        "linear": LinearQR(),
    }


def hetero(n: int, seed: int):
    """y = x + (0.5 + x)·ε, x ~ U(0, 2): the true τ-quantile is x + (0.5 + x)·Φ⁻¹(τ)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, n)
    y = x + (0.5 + x) * rng.standard_normal(n)
    X = np.column_stack([np.ones(n), x])  # as a formula design: intercept column first
    true = x[:, None] + (0.5 + x[:, None]) * norm.ppf(TAUS)[None, :]
    return X, y, true


@pytest.fixture(scope="module")
def train():
    return hetero(2000, seed=1)


@pytest.fixture(scope="module")
def holdout():
    return hetero(2000, seed=2)


@pytest.mark.parametrize("name", list(small_learners()))
def test_protocol_and_output_shape(name):
    learner = small_learners()[name]
    assert isinstance(learner, QuantileLearner)
    assert learner.formula is None
    X, y, _ = hetero(120, seed=5)
    assert learner.fit(X, y, TAUS) is learner
    pred = learner.predict(X[:7])
    assert pred.shape == (7, 3) and pred.dtype == np.float64 and np.isfinite(pred).all()
    assert learner.fit(X, y, [0.5]).predict(X[:4]).shape == (4, 1)


@pytest.mark.parametrize("name", list(small_learners()))
def test_deepcopy_of_fitted_learner_predicts_identically(name):
    X, y, _ = hetero(150, seed=6)
    learner = small_learners()[name].fit(X, y, TAUS)
    np.testing.assert_array_equal(copy.deepcopy(learner).predict(X[:20]), learner.predict(X[:20]))


# Holdout coverage of the 0.1 and 0.9 levels and mean absolute error against the true
# conditional quantiles (n = 2000 train, 2000 test). The coverage tolerance allows for the
# binomial noise (sd 0.007) plus each method's bias: tree ensembles and k-NN smooth over a
# neighbourhood, the parametric models are nearly unbiased here. Boosting's defaults (30 trees
# of 23 leaves at rate 0.3) fit this smooth case less closely (MAE up to 0.44, against 0.38 with
# the former 100 trees of 15 leaves at rate 0.1) and real data better (BENCHMARKS.md).
CALIBRATION = [
    ("forest", QuantileForest(n_estimators=60), 0.04, 0.40),
    ("boost", GradientBoosting(), 0.04, 0.46),
    ("knn", KNN(k=30), 0.025, 0.42),
    ("locscale", LocationScale(), 0.02, 0.10),
    ("sklearn", SklearnQuantile(linear_qr), 0.02, 0.15),
    ("linear", LinearQR(), 0.02, 0.15),
]


@pytest.mark.parametrize("name, learner, cov_tol, mae_tol", CALIBRATION, ids=[c[0] for c in CALIBRATION])
def test_holdout_coverage_and_accuracy_on_known_quantiles(name, learner, cov_tol, mae_tol, train, holdout):
    X, y, _ = train
    Xt, yt, true = holdout
    q = copy.deepcopy(learner).fit(X, y, TAUS).predict(Xt)
    coverage = (yt[:, None] <= q).mean(axis=0)
    assert abs(coverage[0] - 0.1) <= cov_tol, coverage
    assert abs(coverage[2] - 0.9) <= cov_tol, coverage
    mae = np.abs(q - true).mean(axis=0)
    assert (mae <= mae_tol).all(), mae


def test_knn_in_sample_coverage_is_nominal(train):
    """Weibull positions give expected coverage τ; in-sample within 0.015 of 0.1 and 0.9."""
    X, y, _ = train
    q = KNN(k=30).fit(X, y, TAUS).predict(X)
    coverage = (y[:, None] <= q).mean(axis=0)
    np.testing.assert_allclose(coverage[[0, 2]], [0.1, 0.9], atol=0.015)


def test_knn_hand_computed_with_standardisation():
    """Columns a (sd 1) and b (sd 10) standardise to the corners (±1, ±1); the intercept is ignored.

    Query (a, b) = (-1, -2) standardises to (-1, -0.2): distances 0.8 (row 0), 1.2 (row 1),
    2.15 (row 2), 2.33 (row 3). Unstandardised, row 2 (distance 8.25) would beat row 1 (12).
    """
    X = np.array([[1.0, -1.0, -10.0], [1.0, -1.0, 10.0], [1.0, 1.0, -10.0], [1.0, 1.0, 10.0]])
    y = np.array([1.0, 2.0, 30.0, 40.0])
    query = np.array([[1.0, -1.0, -2.0]])
    # k = 2: neighbours {1, 2}. Positions τ(k+1): 0.6 -> clamp to 1; 1.5 -> 1.5; 2.7 -> clamp to 2
    np.testing.assert_allclose(KNN(k=2).fit(X, y, [0.2, 0.5, 0.9]).predict(query), [[1.0, 1.5, 2.0]],
                               rtol=0, atol=1e-12)
    # k = 3: neighbours {1, 2, 30}. Positions 1, 2, 2.5, 3 -> 1, 2, 16, 30
    np.testing.assert_allclose(KNN(k=3).fit(X, y, [0.25, 0.5, 0.625, 0.75]).predict(query),
                               [[1.0, 2.0, 16.0, 30.0]], rtol=0, atol=1e-12)


def test_knn_with_only_constant_columns_uses_all_rows_equally():
    X = np.ones((5, 2))
    y = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    np.testing.assert_allclose(KNN(k=5).fit(X, y, [0.5]).predict(X[:2]), [[3.0], [3.0]])


def test_location_scale_closed_form():
    """x = 0, 0, 1, 1 and y = -1, 1, 0, 4: OLS mean 0 and 2, |residuals| 1, 1, 2, 2, so the
    scale fit is exact: E|e| = 1 at x = 0 and 2 at x = 1, and q_τ = μ + E|e|·√(π/2)·Φ⁻¹(τ)."""
    x = np.array([[0.0], [0.0], [1.0], [1.0]])
    y = np.array([-1.0, 1.0, 0.0, 4.0])
    taus = [0.05, 0.25, 0.5, 0.9]
    z = norm.ppf(taus) * np.sqrt(np.pi / 2)
    expected = np.array([0.0 + 1.0 * z, 2.0 + 2.0 * z])
    # the same with or without an intercept column, and with sklearn's OLS as the mean model
    for X in (x, np.column_stack([np.ones(4), x])):
        for learner in (LocationScale(), LocationScale(mean_model=LinearRegression())):
            got = learner.fit(X, y, taus).predict(X[[0, 2]])
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_location_scale_floor_applies_when_the_fit_is_exact():
    X = np.arange(5.0).reshape(-1, 1)
    y = 3.0 + 2.0 * X[:, 0]
    q = LocationScale(min_scale=0.5).fit(X, y, [0.1, 0.9]).predict(np.array([[10.0]]))
    half_width = 0.5 * np.sqrt(np.pi / 2) * norm.ppf(0.9)
    np.testing.assert_allclose(q, [[23.0 - half_width, 23.0 + half_width]], atol=1e-9)
    default = LocationScale().fit(X, y, [0.1, 0.9]).predict(np.array([[10.0]]))
    # floored at 1e-8 * max|y| = 1.1e-7: the levels stay distinct but the band is negligible
    assert 0 < default[0, 1] - default[0, 0] < 1e-6


def test_location_scale_reports_mean_and_sigma(train):
    X, y, _ = train
    mu, sigma = LocationScale().fit(X, y, TAUS).predict_location_scale(np.array([[1.0, 0.0], [1.0, 2.0]]))
    # true mean x and sd 0.5 + x
    np.testing.assert_allclose(mu, [0.0, 2.0], atol=0.12)
    np.testing.assert_allclose(sigma, [0.5, 2.5], atol=0.12)


def test_sklearn_quantile_matches_its_estimator_per_level():
    X, y, _ = hetero(200, seed=8)
    got = SklearnQuantile(linear_qr).fit(X, y, [0.25, 0.75]).predict(X[:5])
    want = np.column_stack([linear_qr(t).fit(X, y).predict(X[:5]) for t in (0.25, 0.75)])
    np.testing.assert_array_equal(got, want)


def test_sklearn_quantile_factory_partial_is_used_with_each_level():
    seen = []

    def factory(tau, scale):
        seen.append(tau)
        return QuantileRegressor(quantile=tau, alpha=scale, solver="highs")

    X, y, _ = hetero(60, seed=9)
    SklearnQuantile(functools.partial(factory, scale=0.0)).fit(X, y, TAUS)
    assert seen == [0.1, 0.5, 0.9]


def test_random_state_makes_forest_and_boosting_reproducible():
    X, y, _ = hetero(300, seed=10)
    a = QuantileForest(n_estimators=10, random_state=3).fit(X, y, TAUS).predict(X[:30])
    b = QuantileForest(n_estimators=10, random_state=3).fit(X, y, TAUS).predict(X[:30])
    c = QuantileForest(n_estimators=10, random_state=4).fit(X, y, TAUS).predict(X[:30])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1 = GradientBoosting(max_iter=10, random_state=1).fit(X, y, TAUS).predict(X[:30])
    g2 = GradientBoosting(max_iter=10, random_state=1).fit(X, y, TAUS).predict(X[:30])
    np.testing.assert_array_equal(g1, g2)


BAD_PARAMETERS = [
    (QuantileForest, {"n_estimators": 0}, "n_estimators must be an integer >= 1, got 0"),
    (QuantileForest, {"min_samples_leaf": 2.5}, "min_samples_leaf"),
    (QuantileForest, {"max_features": "all"}, "max_features"),
    (QuantileForest, {"max_features": 1.5}, "max_features"),
    (QuantileForest, {"random_state": "seed"}, "random_state"),
    (QuantileForest, {"aggregation": "mean"}, "aggregation must be 'trees' or 'pooled'"),
    (QuantileForest, {"splitter": "cart"}, "splitter must be 'random' or 'best'"),
    (QuantileForest, {"max_samples": 1.5}, "max_samples"),
    (QuantileForest, {"n_jobs": 0}, "n_jobs must be None or a non-zero integer"),
    (GradientBoosting, {"grid": 1}, "grid must be an integer >= 2"),
    (GradientBoosting, {"learning_rate": 0.0}, "learning_rate must be a number > 0"),
    (GradientBoosting, {"max_leaf_nodes": 1}, "max_leaf_nodes must be an integer >= 2"),
    (GradientBoosting, {"l2_regularization": -1.0}, "l2_regularization"),
    (GradientBoosting, {"early_stopping": "auto"}, "early_stopping must be True or False"),
    (KNN, {"k": 0}, "k must be an integer >= 1, got 0"),
    (KNN, {"k": True}, "k must be an integer"),
    (KNN, {"formula": 3}, "formula must be a string or None"),
    (KNN, {"n_jobs": 0}, "n_jobs must be None or a non-zero integer"),
    (LocationScale, {"mean_model": "ols"}, "mean_model must be None"),
    (LocationScale, {"min_scale": -1.0}, "min_scale must be a number > 0"),
    (SklearnQuantile, {"factory": "gbr"}, "factory must be a callable"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD_PARAMETERS,
                         ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in BAD_PARAMETERS])
def test_bad_parameters_raise_clear_errors(cls, kwargs, message):
    args = {"factory": linear_qr} if cls is SklearnQuantile else {}
    with pytest.raises(DataError, match=message) as info:
        cls(**{**args, **kwargs})
    assert cls.__name__ in str(info.value)


def test_knn_matches_brute_force_neighbours_for_every_thread_count():
    rng = np.random.default_rng(31)
    X = np.column_stack([np.ones(500), rng.normal(size=(500, 3)) * [1.0, 10.0, 0.1]])
    y = X[:, 1] + rng.normal(size=500)
    Xt = np.column_stack([np.ones(200), rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1]])
    taus = np.array([0.1, 0.5, 0.9])
    # brute force on the standardised non-constant columns (continuous data: no distance ties)
    mean, sd = X[:, 1:].mean(axis=0), X[:, 1:].std(axis=0)
    dist = (((Xt[:, None, 1:] - X[None, :, 1:]) / sd) ** 2).sum(axis=2)
    nearest = np.argsort(dist, axis=1)[:, :15]
    expected = np.quantile(y[nearest], taus, axis=1, method="weibull").T
    for n_jobs in (None, 1, 2, -1):
        got = KNN(k=15, n_jobs=n_jobs).fit(X, y, taus).predict(Xt)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert KNN(k=1).fit(X, y, taus).predict(Xt[:3]).shape == (3, 3)


def test_knn_on_wide_designs_searches_by_matrix_products_exactly(monkeypatch):
    from qaggstats.learners import knn as knn_module

    rng = np.random.default_rng(32)
    d = knn_module.BRUTE_FORCE_COLUMNS + 10
    X, Xt = rng.normal(size=(400, d)) * np.linspace(0.1, 10, d), rng.normal(size=(100, d)) * np.linspace(0.1, 10, d)
    y = X[:, 0] + rng.normal(size=400)
    taus = np.array([0.1, 0.5, 0.9])
    sd = X.std(axis=0)
    dist = (((Xt[:, None, :] - X[None, :, :]) / sd) ** 2).sum(axis=2)
    expected = np.quantile(y[np.argsort(dist, axis=1)[:, :15]], taus, axis=1, method="weibull").T
    np.testing.assert_allclose(KNN(k=15).fit(X, y, taus).predict(Xt), expected, rtol=0, atol=1e-12)
    # a one-hot factor of 300 levels (many exact ties): the k chosen rows are at the k smallest
    # distances, in blocks smaller than the query set
    g, gt = rng.integers(0, 300, 2000), rng.integers(0, 300, 300)
    F, Ft = np.eye(300)[g][:, 1:], np.eye(300)[gt][:, 1:]
    F[:, 0], Ft[:, 0] = rng.normal(size=2000), rng.normal(size=300)
    true = ((Ft[:, None, :] - F[None, :, :]) ** 2).sum(axis=2)
    monkeypatch.setattr(knn_module, "_BLOCK_CELLS", 2000 * 64)  # blocks of 64 queries
    idx = knn_module._nearest_brute(F, Ft, 30)
    np.testing.assert_allclose(np.sort(np.take_along_axis(true, idx, axis=1), axis=1),
                               np.sort(true, axis=1)[:, :30], atol=1e-9)


def test_knn_default_k_adapts_to_the_training_rows_and_a_chosen_k_is_kept():
    X, y, _ = hetero(100, seed=12)
    # the default: 30 neighbours from 60 rows on, half the rows below
    assert [KNN().fit(X[:n], y[:n], TAUS).k_ for n in (1, 16, 59, 60, 100)] == [1, 8, 29, 30, 30]
    assert KNN(k=7).fit(X[:20], y[:20], TAUS).k_ == 7
    # the adaptive default predicts exactly as that k given by hand
    np.testing.assert_array_equal(KNN().fit(X[:16], y[:16], TAUS).predict(X),
                                  KNN(k=8).fit(X[:16], y[:16], TAUS).predict(X))
    assert repr(KNN()) == "KNN()"


def test_set_params_validates_and_get_params_round_trips():
    knn = KNN(k=7, formula="y ~ x")
    assert knn.get_params() == {"k": 7, "n_jobs": None, "formula": "y ~ x"}
    assert repr(knn) == "KNN(k=7, formula='y ~ x')"
    assert repr(QuantileForest()) == "QuantileForest()"
    with pytest.raises(DataError, match="k must be"):
        knn.set_params(k=-2)
    with pytest.raises(DataError, match="no parameter 'kk'"):
        knn.set_params(kk=2)


def test_fit_and_predict_input_errors():
    X, y, _ = hetero(20, seed=11)
    with pytest.raises(DataError, match="KNN: k=30 exceeds the 20 training rows; lower k"):
        KNN(k=30).fit(X, y, TAUS)
    with pytest.raises(FitError, match="KNN is not fitted"):
        KNN().predict(X)
    knn = KNN(k=5).fit(X, y, TAUS)
    with pytest.raises(DataError, match="X has 1 columns but the learner was fitted on 2"):
        knn.predict(X[:, :1])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="LocationScale: X contains NaN"):
        LocationScale().fit(bad, y, TAUS)
    with pytest.raises(DataError, match="y must have shape \\(20,\\)"):
        LocationScale().fit(X, y[:-1], TAUS)
    with pytest.raises(DataError, match="strictly increasing"):
        GradientBoosting().fit(X, y, [0.9, 0.1])
    with pytest.raises(DataError, match="inside \\(0, 1\\)"):
        QuantileForest().fit(X, y, [0.0, 0.5])


def test_sklearn_factory_returning_a_non_regressor_names_the_level():
    X, y, _ = hetero(30, seed=12)
    with pytest.raises(FitError, match=r"factory\(0.1\) returned str"):
        SklearnQuantile(lambda t: "oops").fit(X, y, TAUS)


def test_check_learner_names_the_learner_and_the_missing_method():
    class NoPredict:
        formula = None

        def fit(self, X, y, taus):
            return self

    with pytest.raises(LearnerTypeError, match="learner 'mine' \\(NoPredict\\) has no predict method"):
        check_learner(NoPredict(), "mine")
    with pytest.raises(TypeError, match="'other' \\(object\\) has no fit method"):
        check_learner(object(), "other")
    bad_formula = KNN()
    bad_formula.formula = 5
    with pytest.raises(FitError, match="'knn' \\(KNN\\) has formula=5"):
        check_learner(bad_formula, "knn")
    assert issubclass(LearnerTypeError, QaggError)
    check_learner(KNN(), "fine")


def test_check_predictions_validates_shape_and_finiteness():
    assert check_predictions([[1, 2]], 1, 2, "x").dtype == np.float64
    with pytest.raises(FitError, match=r"learner 'boost' returned predictions of shape \(2,\) in fold 3"):
        check_predictions(np.zeros(2), 2, 1, "boost", " in fold 3")
    with pytest.raises(FitError, match="learner 'knn' predicted 2 non-finite"):
        check_predictions([[np.inf, np.nan]], 1, 2, "knn")


def test_linear_qr_drops_aliased_columns_and_matches_the_reduced_fit():
    """One of two proportional columns gets coefficient 0; predictions equal the reduced fit."""
    from qaggstats.quantreg import rq_fit

    rng = np.random.default_rng(5)
    x = rng.normal(size=80)
    y = 1 + 2 * x + rng.normal(size=80)
    X = np.column_stack([np.ones(80), x, 3 * x])
    lin = LinearQR().fit(X, y, np.array([0.25, 0.5]))
    assert lin.aliased_.size == 1 and lin.aliased_[0] in (1, 2)
    assert np.all(lin.coef_[lin.aliased_[0]] == 0)
    beta, _ = rq_fit(X[:, :2], y, 0.5)
    np.testing.assert_allclose(lin.predict(X)[:, 1], X[:, :2] @ beta, rtol=1e-9)


def test_forest_tree_quantiles_are_the_mean_of_each_trees_leaf_quantiles():
    X, y, _ = hetero(400, seed=21)
    qf = QuantileForest(n_estimators=7, random_state=2, aggregation="trees").fit(X, y, TAUS)
    new = X[:25] + 0.01
    train_leaves, new_leaves = qf.apply(X), qf.apply(new)
    inbag = _inbag_counts(qf, 400)
    expected = np.mean([
        [np.quantile(np.repeat(y, inbag[:, t])[np.repeat(train_leaves[:, t], inbag[:, t]) == new_leaves[i, t]], TAUS)
         for t in range(7)]
        for i in range(25)
    ], axis=1)
    np.testing.assert_allclose(qf.predict(new), expected, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(qf.predict(X), axis=1) >= 0)


def _inbag_counts(qf, n):
    """The bootstrap multiplicities (n, T) the forest's trees were grown on."""
    from qaggstats.learners.forest import _inbag, _tree_seeds
    return np.column_stack([_inbag(int(s), n) for s in _tree_seeds(qf.random_state, qf.n_estimators)])


def _mixture_quantiles(y, weights, taus):
    """Quantiles of the distribution putting weights[i] on y[i]: its CDF interpolated
    linearly between support points (brute force, for the forest tests)."""
    values = np.unique(y)
    mass = np.array([weights[y == v].sum() for v in values])
    support, cdf = values[mass > 0], np.cumsum(mass[mass > 0])
    out = []
    for tau in taus:
        j = int(np.searchsorted(cdf, tau - 1e-12))
        if j == 0:
            out.append(support[0])
        else:
            frac = (tau - cdf[j - 1]) / (cdf[j] - cdf[j - 1])
            out.append(support[j - 1] + frac * (support[j] - support[j - 1]))
    return np.array(out)


def test_forest_pooled_is_meinshausens_weighted_mixture():
    X, y, _ = hetero(300, seed=22)
    y = np.round(y, 1)  # ties: several rows per grid point
    qf = QuantileForest(n_estimators=9, random_state=5).fit(X, y, TAUS)
    new = X[:20] + 0.02
    train_leaves, new_leaves = qf.apply(X), qf.apply(new)
    inbag = _inbag_counts(qf, 300)
    for i in range(20):
        same = (train_leaves == new_leaves[i]) * inbag            # (n, T) in-bag multiplicity
        weights = (same / same.sum(axis=0)).mean(axis=1)          # Meinshausen's weights
        np.testing.assert_allclose(qf.predict(new[i:i + 1])[0], _mixture_quantiles(y, weights, TAUS),
                                   rtol=1e-10, atol=1e-10)


def test_forest_pooled_agrees_with_quantile_forest_and_estimates_the_truth():
    from quantile_forest import RandomForestQuantileRegressor
    X, y, true_q = hetero(1500, seed=22)
    ours = QuantileForest(n_estimators=40, splitter="best", min_samples_leaf=20, random_state=0).fit(X, y, TAUS).predict(X)
    ref = RandomForestQuantileRegressor(n_estimators=40, min_samples_leaf=20, random_state=0,
                                        max_samples_leaf=None).fit(X, y).predict(X, quantiles=list(TAUS))
    # same estimator up to the interpolation rule and the in-bag rows: close, not equal
    assert np.median(np.abs(ours - ref)) < 0.1 * np.std(y)
    assert np.median(np.abs(ours - true_q)) < 0.4
    # 3,000 rows: two prediction blocks, run in parallel: bitwise the same as one thread, and
    # a row's quantiles do not depend on its batch beyond rounding (one cumulative sum per block)
    twice = np.vstack([X, X])
    same = dict(n_estimators=40, splitter="best", min_samples_leaf=20, random_state=0)
    one = QuantileForest(n_jobs=1, **same).fit(X, y, TAUS).predict(twice)
    two = QuantileForest(n_jobs=2, **same).fit(X, y, TAUS).predict(twice)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(two, np.vstack([ours, ours]), rtol=0, atol=1e-9 * np.std(y))


def test_boosting_early_stopping_stops_each_level_on_its_own():
    X, y, _ = hetero(2000, seed=24)
    gb = GradientBoosting(max_iter=200, learning_rate=0.3, early_stopping=True, random_state=0).fit(X, y, TAUS)
    iterations = [m.n_iter_ for m in gb.models_]
    assert all(m.do_early_stopping_ for m in gb.models_)
    assert min(iterations) < 200
    assert gb.predict(X[:5]).shape == (5, len(TAUS))
    assert all(m.n_iter_ == 30 for m in GradientBoosting(random_state=0).fit(X, y, TAUS).models_)


def test_boosting_grid_fits_fewer_models_and_interpolates_monotonically():
    X, y, _ = hetero(400, seed=23)
    taus = np.arange(1, 40) / 40
    gb = GradientBoosting(max_iter=20, grid=5).fit(X, y, taus)
    assert len(gb.models_) == 5 and gb.fit_levels_[0] == taus[0] and gb.fit_levels_[-1] == taus[-1]
    pred = gb.predict(X[:50])
    assert pred.shape == (50, 39) and np.all(np.diff(pred, axis=1) >= 0)
    # at the grid's end levels the interpolation returns the end models' (sorted) predictions
    ends = np.sort(np.column_stack([m.predict(X[:50]) for m in gb.models_]), axis=1)
    np.testing.assert_allclose(pred[:, [0, -1]], ends[:, [0, -1]], rtol=1e-12)
    per_level = GradientBoosting(max_iter=20, grid=None).fit(X, y, taus)
    assert len(per_level.models_) == 39
    few = GradientBoosting(max_iter=20, grid=5).fit(X, y, TAUS)
    assert len(few.models_) == 3 and np.array_equal(few.fit_levels_, TAUS)


def test_boosting_predicts_levels_in_threads_without_changing_them():
    from joblib import parallel_config

    X, y, _ = hetero(600, seed=25)
    gb = GradientBoosting(max_iter=10, random_state=0).fit(X, y, TAUS)
    alone = np.column_stack([m.predict(X[:50]) for m in gb.models_])
    with parallel_config(n_jobs=2):
        np.testing.assert_array_equal(gb.predict(X[:50]), alone)
    np.testing.assert_array_equal(gb.predict(X[:50]), alone)


def test_forest_and_boosting_take_their_threads_from_joblibs_context(monkeypatch):
    """joblib's Parallel(n_jobs=None, prefer="threads") ignores parallel_config: the learners
    resolve n_jobs themselves, so a fitted pipeline's predictions use every core."""
    import joblib

    from qaggstats.learners import boosting, forest

    asked = []

    def recording(n_jobs=None, **kwargs):
        asked.append(n_jobs)
        return joblib.Parallel(n_jobs=n_jobs, **kwargs)

    monkeypatch.setattr(forest, "Parallel", recording)
    monkeypatch.setattr(boosting, "Parallel", recording)
    X, y, _ = hetero(300, seed=26)
    qf = QuantileForest(n_estimators=5, random_state=0).fit(X, y, TAUS)
    gb = GradientBoosting(max_iter=5, random_state=0).fit(X, y, TAUS)
    assert asked == [1]  # the forest's fit outside any context: one thread
    with joblib.parallel_config(n_jobs=2):
        qf.predict(X)
        gb.predict(X)
    assert asked[1:] == [2, 2, 2]  # the forest's traversal and blocks, the boosting levels
    with joblib.parallel_config(n_jobs=1):
        qf.predict(X)
    assert asked[4:] == [1, 1]
