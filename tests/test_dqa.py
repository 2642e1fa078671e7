"""DQA, the paper's deep quantile aggregation (qaggstats.dqa): simplex weights that depend on x,
reproducible, better than constant weights where models split the regions; end to end through
qagg, reweight, predict, save/load and the summary; a clear error without the extra."""
import numpy as np
import pytest

import qaggstats as qa
from qaggstats import _deep
from qaggstats.aggregate import fit_weights
from qaggstats.dqa import candidate_index, fit_dqa
from qaggstats.errors import DataError, DependencyError

pytest.importorskip("jax")
pytest.importorskip("optax")


def regional(n=600, seed=0):
    """Model A is right where x < 0 and biased elsewhere; B the other way round; the predictions
    alone cannot tell where (both are flat), x can."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = np.where(x < 0, 0.0, 2.0) + rng.normal(size=n) * 0.2
    taus = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    z = np.array([-1.2816, -0.5244, 0.0, 0.5244, 1.2816]) * 0.2
    Q = np.stack([np.zeros((n, 5)) + z, 2.0 + np.zeros((n, 5)) + z], axis=1)
    return x[:, None], Q, y, taus


def test_candidate_index_windows():
    idx = candidate_index("fine", 2, 7, window=1)
    assert idx.shape == (7, 6)
    assert idx[0].tolist() == [0, 1, 2, 7, 8, 9]         # shifted inwards at the lowest level
    assert idx[3].tolist() == [2, 3, 4, 9, 10, 11]
    assert candidate_index("coarse", 3, 4).shape == (4, 3)
    with pytest.raises(DataError, match="unknown DQA variant 'wide'"):
        candidate_index("wide", 2, 3)


@pytest.mark.parametrize("variant", ["fine", "medium", "coarse"])
def test_dqa_learns_weights_that_depend_on_x(variant):
    X, Q, y, taus = regional()
    w = fit_weights(Q, y, taus, family="dqa", features=X, dqa={"variant": variant, "max_epochs": 150}, seed=0)
    constant = fit_weights(Q, y, taus, family="quantile")
    Xt, Qt, yt, _ = regional(n=400, seed=1)
    def loss(q):
        u = yt[:, None] - q
        return (u * (taus - (u < 0))).mean()
    assert loss(w.combine(Qt, basis=Xt)) < 0.5 * loss(constant.combine(Qt))
    W = w.network.weights(Xt)
    assert np.allclose(W.sum(axis=2), 1.0) and (W >= 0).all()
    # model A carries the left half, B the right half
    on_a = W[:, :, : W.shape[2] // 2].sum(axis=2).mean(axis=1)
    assert on_a[Xt[:, 0] < -0.2].mean() > 0.8 and on_a[Xt[:, 0] > 0.2].mean() < 0.2
    assert w.family == "dqa" and w.alpha.shape == (2, 5, 5) and np.allclose(w.alpha.sum(axis=(0, 1)), 1.0)
    assert w.training["variant"] == variant and w.training["best_epoch"] >= 1


def test_dqa_is_reproducible_for_a_seed():
    X, Q, y, taus = regional(n=300)
    a, _ = fit_dqa(X, Q, y, taus, max_epochs=30, seed=3)
    b, _ = fit_dqa(X, Q, y, taus, max_epochs=30, seed=3)
    c, _ = fit_dqa(X, Q, y, taus, max_epochs=30, seed=4)
    assert np.array_equal(a.combine(Q, X), b.combine(Q, X))
    assert not np.array_equal(a.combine(Q, X), c.combine(Q, X))


def test_dqa_errors_name_the_problem():
    X, Q, y, taus = regional(n=100)
    with pytest.raises(DataError, match="needs features="):
        fit_weights(Q, y, taus, family="dqa")
    with pytest.raises(DataError, match="constraint='nonneg' does not apply"):
        fit_weights(Q, y, taus, family="dqa", features=X, constraint="nonneg")
    with pytest.raises(DataError, match=r"unknown dqa setting\(s\) \['width'\]"):
        fit_weights(Q, y, taus, family="dqa", features=X, dqa={"width": 3})
    with pytest.raises(DataError, match="dqa hidden"):
        fit_weights(Q, y, taus, family="dqa", features=X, dqa={"hidden": (0,)})
    with pytest.raises(DataError, match="noncrossing_at= does not apply"):
        fit_weights(Q, y, taus, family="dqa", features=X, extra={"Q": Q[:3]})


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setattr(_deep, "available", lambda: False)
    X, Q, y, taus = regional(n=100)
    with pytest.raises(DependencyError, match=r'qaggstats\[deep\]') as err:
        fit_weights(Q, y, taus, family="dqa", features=X)
    assert isinstance(err.value, ImportError) and "family 'dqa'" in str(err.value)
    from qaggstats.selection import default_candidates
    assert "dqa" not in default_candidates(True, True)


def test_qagg_dqa_end_to_end_save_load_and_reweight(tmp_path):
    df = qa.datasets.load("concrete").sample(frac=1.0, random_state=0)
    train, test = df.iloc[:500], df.iloc[500:700]
    models = {"linear": qa.learners.LinearQR(), "knn": qa.learners.KNN(k=15),
              "forest": qa.learners.QuantileForest(n_estimators=20)}
    fit = qa.qagg("strength ~ cement + water + age + slag", train, models=models, taus=[0.1, 0.5, 0.9],
                  family="dqa", cv=3, seed=0, test=test, dqa={"max_epochs": 60})
    assert fit.family == "dqa" and fit.weights.columns.tolist() == ["model", "input_tau", "tau", "weight"]
    pred = fit.predict(test)
    assert pred.shape[0] == len(test) and np.isfinite(pred.filter(like="q").to_numpy()).all()
    text = str(fit.summary())
    assert "Weight family:          dqa" in text and "adamw" in text
    saved = fit.save(tmp_path / "dqa.qagg")
    again = qa.load(saved)
    assert again.predict(test).equals(pred)              # data-only file, identical predictions
    assert again.family == "dqa"
    refit = qa.qagg("strength ~ cement + water + age + slag", train, models=models, taus=[0.1, 0.5, 0.9],
                    family="dqa", cv=3, seed=0, dqa={"max_epochs": 60})
    assert refit.predict(test).equals(pred)              # the same seed, the same network
    medium = fit.reweight("dqa", dqa={"variant": "medium", "max_epochs": 40})
    assert medium.weight_fit.training["variant"] == "medium"
    auto = fit.reweight("auto")
    assert "dqa" in set(auto.selection["family"])


def test_cli_fits_dqa(tmp_path):
    from qaggstats.cli import main

    df = qa.datasets.load("engel")
    df.to_csv(tmp_path / "engel.csv", index=False)
    out = tmp_path / "fit.qagg"
    assert main(["fit", str(tmp_path / "engel.csv"), "-f", "foodexp ~ income", "--family", "dqa",
                 "--save", str(out)]) == 0
    assert qa.load(out).family == "dqa"
