# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Aggregating quantile models
#
# No single quantile model is best everywhere: a linear quantile regression extrapolates
# sensibly but misses interactions, a quantile forest captures interactions but is coarse in
# the tails, k-nearest neighbours is local but noisy. Fakoor, Kim, Mueller, Smola &
# Tibshirani (*Flexible Model Aggregation for Quantile Regression*, JMLR 2023) combine such
# models into one forecast:
#
# 1. **cross-fit** every base model, so each training point gets a prediction from a model
#    that did not see it (out-of-fold predictions `Q`, shape `(n, p models, r levels)`);
# 2. fit **aggregation weights** by minimising the check loss of the combined quantiles on
#    those out-of-fold predictions — a linear programme;
# 3. make the result **monotone** across levels, so quantiles never cross.
#
# This vignette runs the recipe on real data, compares the weight families, scores every
# model with the weighted interval score, and shows why non-crossing matters.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import qaggstats as qa

concrete = qa.datasets.load("concrete")
print(qa.datasets.describe("concrete"))

# %% [markdown]
# ## The data
#
# Compressive strength (MPa) of 1030 concrete mixtures (Yeh 1998): seven ingredients in
# kg/m³ and the age of the sample in days. Strength depends on the mixture in a strongly
# non-linear way (the water-to-cement ratio, curing time), and its spread varies, so the
# quantiles are worth modelling separately from the mean. We keep a quarter of the mixtures
# aside as a test set that no step of the fit sees.

# %%
rng = np.random.default_rng(2023)
is_test = rng.random(len(concrete)) < 0.25
train, test = concrete[~is_test], concrete[is_test]
formula = qa.datasets.suggested_formula("concrete")
taus = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
print(formula)
print(f"{len(train)} training and {len(test)} test mixtures")

# %% [markdown]
# ## Base models
#
# Five learners, each following the same small protocol (`fit(X, y, taus)`,
# `predict(X) -> (m, r)`). A learner can carry its own formula: the linear model gets a log
# of age and a spline of cement because linear terms alone are far from the truth here; the
# others use the default formula. The forest and boosting sizes are set explicitly (100 trees
# with leaves of at least 10 rows; 60 boosting rounds), so the numbers below stay put when the
# learners' defaults change.

# %%
models = {
    "linear": qa.learners.LinearQR(
        formula="strength ~ bs(cement, df=4) + slag + ash + water + superplastic + coarse + fine + np.log(age)"),
    "forest": qa.learners.QuantileForest(n_estimators=100, min_samples_leaf=10, random_state=0),
    "boost": qa.learners.GradientBoosting(max_iter=60, random_state=0),
    "knn": qa.learners.KNN(k=15),
    "locscale": qa.learners.LocationScale(),
}
fit = qa.qagg(formula, train, models=models, taus=taus, family="quantile",
              cv=5, seed=0, test=test, data_name="concrete")
fit.summary()

# %% [markdown]
# ## The weights
#
# With the `"quantile"` family every level has its own convex combination of the models
# (weights non-negative, summing to one). Models that are good in the tails need not be the
# ones that are good at the median, and the fitted weights show exactly that:

# %%
fit.plot("weights")

# %% [markdown]
# ## Scoring: the weighted interval score
#
# A set of quantiles is scored by the **weighted interval score** (Bracher et al. 2021),
# here the average pinball loss over the levels times two:
#
# $$\mathrm{WIS} = \frac{2}{r} \sum_{k=1}^{r} \rho_{\tau_k}\!\left(y - \hat q_{\tau_k}\right).$$
#
# It is a *proper* score — it is minimised in expectation by the true quantiles — and, for
# levels symmetric around the median, it splits into **dispersion** (how wide the intervals
# are) plus **over-** and **underprediction** (how far outside them the outcomes fall).
# Lower is better. On the held-out test mixtures:

# %%
cols = ["wis", "dispersion", "overprediction", "underprediction", "coverage_90"]
fit.test_scores[cols].sort_values("wis").round(3)

# %%
fit.plot("wis")

# %% [markdown]
# The aggregate beats every single model and both naive ensembles (the mean and the median of
# the models' quantiles). On the out-of-fold data this is no accident: each base model is a
# feasible point of the weight programme (all weight on that model), so the fitted aggregate
# cannot have a larger out-of-fold loss than the best model. On new data it is an empirical
# finding, which is why the test scores matter.

# %%
pd.DataFrame({"out-of-fold WIS": fit.oof_scores["wis"], "test WIS": fit.test_scores["wis"]}).round(3)

# %% [markdown]
# ## Weight families
#
# How flexible should the weights be? More freedom fits the out-of-fold data better but
# estimates more numbers. qaggstats offers the families of Fakoor et al.:
#
# | family | weights | parameters |
# |---|---|---|
# | `mean`, `median` | none: average (or median) of the models' quantiles | 0 |
# | `global` | one convex combination shared by all levels | p |
# | `grouped` | one combination per group of neighbouring levels | p × groups |
# | `quantile` | one combination per level | p × r |
# | `local` | weights that vary with x, α(x) = θ·φ(x) | p × r × basis |
# | `fine` | output level k mixes every level of every model | p × r × r |
#
# The expensive part — cross-fitting the base models — does not depend on the family, so
# `fit.reweight(family)` reuses it and only solves a new weight programme. That makes
# comparing families cheap:

# %%
families = {
    "mean": fit.reweight("mean"),
    "median": fit.reweight("median"),
    "global": fit.reweight("global"),
    "grouped (3)": fit.reweight("grouped", groups=3),
    "quantile": fit,
    "local (age, water, cement)": fit.reweight("local", local_formula="~ np.log(age) + water + cement"),
    "fine": fit.reweight("fine"),
}
pd.DataFrame({
    name: {"out-of-fold WIS": f.oof_scores.loc["aggregate", "wis"],
           "test WIS": f.test_scores.loc["aggregate", "wis"],
           "weight fit (s)": f.weight_fit.seconds}
    for name, f in families.items()
}).T.round(3)

# %% [markdown]
# Fitting weights at all is the big step (from `mean` to `global`); letting them vary by level
# helps a little more, because different models win in the tails and at the centre, and
# x-dependent weights a little more again. Whether the local family pays for its extra
# parameters depends on the data and on n: it nests the quantile family, so it always fits
# the out-of-fold data at least as well, and only held-out data can tell whether it
# generalises.
#
# ## When do local and fine weights help?
#
# **Local** weights pay off where one model dominates in some regions of x and another
# elsewhere — Fakoor et al. find them winning when, say, a forest is best where the data are
# dense and a smooth model where it has to extrapolate, or one model is best for small
# outcomes and another for large ones. If one model is best everywhere, local weights only
# add noise (p × b numbers per level instead of p).
#
# **Fine** weights let output level k borrow every level of every model. They pay off when
# base models are *mis-calibrated*: if a model's 0.8 quantile is a better 0.9 quantile than
# its own 0.9, fine weights can use it as such. With well-calibrated models they reduce to
# the per-level family plus noise.
#
# Both are exact linear programmes solved by the same structured HiGHS path as the per-level
# family (fine as the per-level family on the wider design of all model × level columns;
# local per level on Q ⊙ φ(x)), so trying them is cheap.
#
# ## Letting held-out data choose: `family="auto"`
#
# Which family generalises best is an empirical question, so the array-level
# `qa.aggregate.fit_weights` can answer it by **inner validation** on the out-of-fold rows:
# it fits each candidate without one fold of rows and scores it (WIS) on that fold, then
# refits the winner on all rows. The local family needs a basis φ(x); the default
# `LocalBasis()` needs no formula and works with factors, because it is built from the base
# models' own predictions: 4 × 3 "hat" functions of their average central quantile and of
# their average predicted spread, a partition of unity. The local weights are then a blend of
# 12 prototype weight vectors, each on the simplex, so α(x) is a proper set of weights at
# every x, new rows included — the region where the data are high or low, noisy or quiet
# can get its own mix of models. Its strength of shrinkage towards constant weights (the
# penalty) is chosen the same way. (Here the folds are a fresh
# split of the out-of-fold rows; the pipeline passes the cross-fit's own folds.)

# %%
from qaggstats.aggregate import fit_weights
from qaggstats.basis import LocalBasis
from qaggstats.crossfit import make_folds

basis = LocalBasis().fit(None, fit.Q)
auto = fit_weights(fit.Q, fit.y, fit.taus, family="auto", folds=make_folds(len(fit.y), 5, seed=0),
                   basis=basis.transform(None, fit.Q))
print(f"chosen: {auto.family} (basis columns: {', '.join(basis.columns)})")
auto.selection.round(4)

# %% [markdown]
# The table lists every candidate (the local family once per penalty, relative to the
# models' spread), its held-out WIS and why the winner won: the lowest held-out WIS, with
# ties within 0.1 % going to the simpler family listed first.

# %% [markdown]
# ## Why non-crossing matters
#
# Each quantile level of a base model — and each level of an unconstrained aggregate — is
# estimated separately, so nothing forces q̂₀.₁(x) ≤ q̂₀.₅(x). Crossed quantiles describe no
# distribution: an interval whose lower end lies above its upper end is meaningless, and
# downstream users (inventory levels, reserve margins) break.
#
# To see how often it happens, fit gradient boosting — a separate model per level — directly
# on the design matrix. `qa.formula.model_frames` turns a formula into arrays, exactly as
# the pipeline does:

# %%
frames = qa.formula.model_frames({"m": formula}, train)
spec = frames.specs["m"]
X_train, y_train = frames.X["m"], frames.y
X_test, y_test = spec.design(test), spec.response_of(test)

booster = qa.learners.GradientBoosting(max_iter=60, random_state=0).fit(X_train, y_train, np.array(taus))
q_raw = booster.predict(X_test)
q_sorted = qa.monotone.sort_quantiles(q_raw)
print(f"test rows with crossed quantiles: {qa.scoring.crossing_count(q_raw)} of {len(q_raw)} "
      f"({qa.scoring.crossing_rate(q_raw):.1%}) before sorting, "
      f"{qa.scoring.crossing_count(q_sorted)} after")

# %% [markdown]
# ### The sorting theorem
#
# The simplest repair is to **sort** each row of predicted quantiles. Sorting never makes
# the prediction worse: for *every* outcome y and every vector of predictions,
#
# $$\sum_k \rho_{\tau_k}\big(y - \hat q_{(k)}\big) \;\le\; \sum_k \rho_{\tau_k}\big(y - \hat q_k\big),$$
#
# where q̂₍ₖ₎ is the k-th smallest prediction (Chernozhukov, Fernández-Val & Galichon 2010;
# Fakoor et al. 2023, Proposition 2). The reason is a rearrangement inequality: ρ_τ(y − q)
# is submodular in (τ, q), so pairing larger levels with larger predictions lowers the
# total. The inequality holds **point by point**, not only on average — check it on every
# test row:

# %%
def wis_rows(y, q):
    """WIS of each row: (2/r) times the summed pinball loss over levels."""
    u = y[:, None] - q
    return 2 / len(taus) * np.sum(u * (np.array(taus) - (u < 0)), axis=1)


before, after = wis_rows(y_test, q_raw), wis_rows(y_test, q_sorted)
print(f"rows where sorting raised the score: {int(np.sum(after > before + 1e-12))} of {len(before)}")
print(f"mean WIS {before.mean():.4f} -> {after.mean():.4f}; "
      f"largest single improvement {np.max(before - after):.3f}")

fig, ax = plt.subplots(figsize=(6.6, 3.0))
crossed = before > after + 1e-12
ax.hist((before - after)[crossed], bins=30, color="#0072B2")
ax.set(xlabel="WIS before sorting − WIS after sorting", ylabel="test rows",
       title="rows with crossings: sorting only ever helps");

# %% [markdown]
# ### Crossing in the aggregate, and the monotone step
#
# The aggregation weights can be fitted with non-crossing constraints (`noncrossing=True`,
# the default: q̂ₖ ≤ q̂ₖ₊₁ at every training point), but new points can still cross. So the
# pipeline always finishes with a monotone post-processing step (`postprocess="sort"` by
# default). To see the effect, drop the constraints and refit the weights; `fit.monotone`
# records, for each candidate post-processing, the out-of-fold WIS and the number of
# crossed rows before and after:

# %%
free = fit.reweight("quantile", noncrossing=False, constraint="free")
free.monotone.round(4)

# %%
free.plot("crossing")

# %% [markdown]
# Without the constraints over a third of the out-of-fold rows cross. Sorting and isotonic
# regression (the closest monotone vector in squared distance) remove every crossing and can
# only lower WIS — the table shows `wis_after ≤ wis_before`. The
# min–max sweep (running maximum from the median outwards) also removes crossings but comes
# with no such guarantee. The same comparison appears in every fit's summary and report as
# a *diagnostic*: the claim, its source and whether it held on this fit.

# %%
for d in fit.diagnostics:
    print(f"[{d.verdict}] {d.claim}: {d.observed}")

# %% [markdown]
# ## Summary
#
# * Cross-fit base models, then fit weights on out-of-fold predictions: the aggregate is
#   never worse than the best single model out-of-fold, and is usually better on new data.
# * `fit.reweight(...)` compares weight families without refitting the base models.
# * Sorting predicted quantiles is free insurance: it removes crossings and never raises
#   the pinball loss of any single prediction.
#
# The next vignette turns these quantiles into prediction intervals with a finite-sample
# coverage guarantee.
#
# **References.** Fakoor, R., Kim, T., Mueller, J., Smola, A. J. and Tibshirani, R. J.
# (2023), *Flexible model aggregation for quantile regression*, JMLR 24(162).
# Bracher, J., Ray, E. L., Gneiting, T. and Reich, N. G. (2021), *Evaluating epidemic
# forecasts in an interval format*, PLoS Comput. Biol. 17(2). Chernozhukov, V.,
# Fernández-Val, I. and Galichon, A. (2010), *Quantile and probability curves without
# crossing*, Econometrica 78(3). Yeh, I.-C. (1998), *Modeling of strength of high-performance
# concrete using artificial neural networks*, Cement and Concrete Research 28(12).
