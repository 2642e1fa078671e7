"""The quantile neural network and the random search over learner parameters."""
import numpy as np
import pandas as pd
import pytest

import qaggstats as qa
from qaggstats import _deep
from qaggstats.errors import DataError, DependencyError
from qaggstats.learners import KNN, LinearQR, QuantileNN, RandomSearch
from qaggstats.scoring import wis

needs_deep = pytest.mark.skipif(not _deep.available(), reason="the deep extra (JAX + optax) is not installed")
TAUS = np.array([0.1, 0.5, 0.9])


def _hetero(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    y = 10.0 + 3.0 * np.sin(3 * X[:, 0]) + rng.normal(size=n) * (0.3 + np.abs(X[:, 1]))
    return X, y


@needs_deep
def test_quantile_nn_learns_the_conditional_quantiles_without_crossing():
    X, y = _hetero(1500, 0)
    Xt, yt = _hetero(1500, 1)
    nn = QuantileNN(hidden=(32, 32), max_epochs=150, random_state=0).fit(X, y, TAUS)
    q = nn.predict(Xt)
    assert q.shape == (1500, 3) and np.all(np.diff(q, axis=1) > 0)
    # far better than the unconditional quantiles, and close to a linear fit's coverage claims
    flat = np.tile(np.quantile(y, TAUS), (yt.size, 1))
    assert wis(yt, q, TAUS) < 0.8 * wis(yt, flat, TAUS)
    assert wis(yt, q, TAUS) < wis(yt, LinearQR().fit(X, y, TAUS).predict(Xt), TAUS)
    cover = (yt[:, None] <= q).mean(axis=0)
    assert np.all(np.abs(cover - TAUS) < 0.05), cover
    assert nn.training_["best_epoch"] >= 1 and nn.training_["valid_rows"] == 300


@needs_deep
def test_quantile_nn_is_reproducible_and_unit_free():
    X, y = _hetero(400, 2)
    a = QuantileNN(hidden=(16,), max_epochs=30, random_state=3).fit(X, y, TAUS).predict(X[:20])
    b = QuantileNN(hidden=(16,), max_epochs=30, random_state=3).fit(X, y, TAUS).predict(X[:20])
    c = QuantileNN(hidden=(16,), max_epochs=30, random_state=3).fit(X, 1000 * y - 5, TAUS).predict(X[:20])
    assert np.array_equal(a, b)
    # responses are standardised before training: the same network up to float32 rounding
    np.testing.assert_allclose((c + 5) / 1000, a, rtol=1e-4, atol=1e-4)


def test_quantile_nn_checks_its_parameters():
    with pytest.raises(DataError, match="hidden must be a non-empty sequence"):
        QuantileNN(hidden=())
    with pytest.raises(DataError, match="lr must be a number > 0"):
        QuantileNN(lr=0)
    with pytest.raises(DataError, match="valid_fraction"):
        QuantileNN(valid_fraction=0.9)


@needs_deep
def test_quantile_nn_refuses_too_few_rows_to_hold_out():
    with pytest.raises(DataError, match="too few to hold out"):
        QuantileNN(valid_fraction=0.1).fit(np.zeros((3, 1)), np.arange(3.0), TAUS)


def test_quantile_nn_names_the_extra_when_jax_is_missing(monkeypatch):
    monkeypatch.setattr(_deep, "available", lambda: False)
    with pytest.raises(DependencyError, match=r"QuantileNN needs JAX.*qaggstats\[deep\]"):
        QuantileNN(max_epochs=1).fit(np.arange(20.0)[:, None], np.arange(20.0), TAUS)


def test_random_search_tries_the_given_learner_first_then_distinct_draws():
    rs = RandomSearch(KNN(k=30), {"k": [5, 10, 20]}, n_iter=10, random_state=1)
    cands = rs.candidates()
    assert cands[0] == {"k": 30}
    # three grid values and the learner's own: four distinct configurations, no repeats
    assert sorted(c["k"] for c in cands) == [5, 10, 20, 30]
    two = RandomSearch(KNN(), {"k": [5, 10, 20, 40, 80], "n_jobs": [1, None]}, n_iter=6, random_state=1)
    keys = [tuple(sorted(c.items(), key=str)) for c in two.candidates()]
    assert len(keys) == 6 and len(set(keys)) == 6


def test_random_search_chooses_by_held_out_wis():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(400, 1))
    sharp = np.where(X[:, 0] > 0.5, 5.0, 0.0) + rng.normal(size=400) * 0.1
    noise = rng.normal(size=400)
    space = {"k": [3, 10, 100]}
    on_sharp = RandomSearch(KNN(k=200), space, n_iter=4, random_state=0).fit(X, sharp, TAUS)
    on_noise = RandomSearch(KNN(k=3), space, n_iter=4, random_state=0).fit(X, noise, TAUS)
    # a step needs few neighbours; pure noise is best estimated from many
    assert on_sharp.best_params_["k"] in (3, 10)
    assert on_noise.best_params_["k"] in (100,)
    table = on_sharp.results_
    assert list(table.columns) == ["k", "heldout_wis", "se", "chosen"]
    chosen = table.loc[table["chosen"]].iloc[0]
    assert chosen["heldout_wis"] == table["heldout_wis"].min() <= table["heldout_wis"].iloc[0]
    np.testing.assert_array_equal(on_sharp.predict(X[:5]), on_sharp.best_.predict(X[:5]))
    assert on_sharp.best_.k == on_sharp.best_params_["k"]


def test_random_search_errors_name_the_parameter():
    with pytest.raises(DataError, match="KNN has no parameter 'kk' to tune"):
        RandomSearch(KNN(), {"kk": [1, 2]})
    with pytest.raises(DataError, match="k must be an integer >= 1"):
        RandomSearch(KNN(), {"k": [5, -1]})
    with pytest.raises(DataError, match=r"space\['k'\] must be a non-empty list"):
        RandomSearch(KNN(), {"k": []})
    with pytest.raises(DataError, match="too few for cv=3"):
        RandomSearch(KNN(k=1), {"k": [1]}).fit(np.zeros((4, 1)), np.arange(4.0), TAUS)


def test_a_tuned_learner_runs_in_qagg_and_saves_as_data(tmp_path):
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"x": rng.uniform(-1, 1, 240)})
    df["y"] = np.sin(3 * df.x) + rng.normal(size=240) * 0.2
    models = {"knn": RandomSearch(KNN(), {"k": [5, 15, 40]}, n_iter=3), "linear": LinearQR()}
    fit = qa.qagg("y ~ x", df, models=models, taus=TAUS, family="quantile", seed=0)
    # each fold's search is seeded from qagg's seed: the same call gives the same fit
    again = qa.qagg("y ~ x", df, models=models, taus=TAUS, family="quantile", seed=0)
    np.testing.assert_array_equal(np.asarray(fit.predict(df.head(30))), np.asarray(again.predict(df.head(30))))
    fit.save(tmp_path / "tuned.qagg")
    back = qa.load(tmp_path / "tuned.qagg")
    np.testing.assert_array_equal(np.asarray(back.predict(df.head(30))), np.asarray(fit.predict(df.head(30))))
