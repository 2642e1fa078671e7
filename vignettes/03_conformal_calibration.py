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
# # Conformal calibration of quantile intervals
#
# A model's 5% and 95% quantiles give a nominal 90% prediction interval. Whether 90% of new
# outcomes actually land inside depends on the model being right — and in finite samples,
# with flexible models that fit the training data closely, intervals are often too narrow.
#
# **Conformalized quantile regression** (CQR; Romano, Patterson & Candès 2019) fixes the
# coverage with one extra step and no assumptions beyond exchangeability (the calibration and
# new points are drawn alike, e.g. i.i.d.). This vignette
#
# 1. states the split-CQR recipe and its finite-sample guarantee,
# 2. verifies the guarantee by simulation — thousands of calibrations in one vectorised step,
# 3. calibrates an aggregated model on real data, and
# 4. shows what the guarantee does *not* promise: coverage conditional on x.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

import qaggstats as qa

# %% [markdown]
# ## 1. Split CQR
#
# Fit the quantile model on one part of the data. On a separate **calibration set** of
# n_cal points compute the conformity scores
#
# $$E_i = \max\{\hat q_{\alpha/2}(x_i) - y_i,\; y_i - \hat q_{1-\alpha/2}(x_i)\},$$
#
# positive when y_i falls outside the interval (by how much) and negative inside. Let c be
# the k-th smallest score with k = ⌈(n_cal + 1)(1 − α)⌉, and widen every interval by c on
# both sides (c < 0 narrows it):
#
# $$C(x) = [\hat q_{\alpha/2}(x) - c,\; \hat q_{1-\alpha/2}(x) + c].$$
#
# **Guarantee.** If the calibration points and the new point are exchangeable,
#
# $$1 - \alpha \;\le\; P\{Y \in C(X)\} \;\le\; 1 - \alpha + \frac{1}{n_\text{cal} + 1},$$
#
# (the upper bound needs continuous scores without ties). The reason is rank symmetry: the
# new point's score is equally likely to take each of the n_cal + 1 ranks among all scores,
# and it is covered exactly when its rank is at most k, so coverage is k/(n_cal + 1). The
# probability is over the calibration set *and* the new point: the guarantee is
# **marginal**.

# %%
alpha = 0.1
for n_cal in (9, 19, 50, 200, 1000):
    k = int(np.ceil((n_cal + 1) * (1 - alpha)))
    print(f"n_cal = {n_cal:4d}: k = {k:4d}, guaranteed coverage in "
          f"[{1 - alpha:.3f}, {1 - alpha + 1 / (n_cal + 1):.4f}], exact value k/(n_cal+1) = {k / (n_cal + 1):.4f}")

# %% [markdown]
# With fewer than 1/α − 1 calibration points (9 for α = 0.1), k would exceed n_cal and no
# finite correction guarantees the coverage; qaggstats then raises a `CalibrationError`
# saying how many points are needed.
#
# ## 2. The guarantee in a simulation
#
# Take heteroscedastic data, y = 2x + (0.5 + x)·ε with ε ~ N(0, 1) and x ~ U(0, 2), and a
# deliberately **bad** quantile model: it assumes a constant spread that is too small
# (quantiles 2x ± 0.8·z). Its nominal 90% interval covers far less than 90%.
#
# For each of R = 4000 replications we draw a calibration set and compute the CQR
# correction. Because we know how the data are generated, the coverage of the corrected
# interval *given that calibration set* can be computed exactly: average
# P(lower(x) ≤ Y ≤ upper(x) | x) over a fine grid of x. Every step is an array operation
# over all replications at once — `qa.conformal.cqr_corrections` works on arrays of shape
# `(R, n_cal, r)` and `qa.conformal.apply_cqr` on `(R, m, r)`.

# %%
rng = np.random.default_rng(7)
taus = np.array([0.05, 0.5, 0.95])
z = stats.norm.ppf(taus)
x_grid = (np.arange(50) + 0.5) / 25            # midpoints of 50 cells of U(0, 2)


def simulate(size):
    """Draw x and y of the heteroscedastic example, any array shape."""
    x = rng.uniform(0, 2, size)
    return x, 2 * x + (0.5 + x) * rng.standard_normal(size)


def bad_model(x):
    """Quantiles (..., r) of a model with the right centre and too small a constant spread."""
    return 2 * x[..., None] + 0.8 * z


def coverage(q):
    """Exact coverage of the intervals q[..., 0] to q[..., -1] given on x_grid, averaged over x."""
    sd = 0.5 + x_grid
    inside = stats.norm.cdf((q[..., -1] - 2 * x_grid) / sd) - stats.norm.cdf((q[..., 0] - 2 * x_grid) / sd)
    return np.clip(inside, 0, 1).mean(axis=-1)


def cqr_coverage(R, n_cal):
    """Coverage given the calibration set, for R independent calibration sets of size n_cal."""
    x_cal, y_cal = simulate((R, n_cal))
    c = qa.conformal.cqr_corrections(y_cal, bad_model(x_cal), taus)          # (R, 1 pair)
    q = qa.conformal.apply_cqr(np.broadcast_to(bad_model(x_grid), (R, x_grid.size, 3)), taus, c)
    return coverage(q)                                                       # (R,)


R, n_cal = 4000, 50
covered = cqr_coverage(R, n_cal)
uncorrected = coverage(bad_model(x_grid))
lo, hi = 1 - alpha, 1 - alpha + 1 / (n_cal + 1)
half = 1.96 * covered.std(ddof=1) / np.sqrt(R)
print(f"uncorrected model: coverage {uncorrected:.3f}")
print(f"split CQR:         mean coverage {covered.mean():.4f} ± {half:.4f} (95% Monte Carlo)   "
      f"guarantee [{lo:.4f}, {hi:.4f}]")

# %% [markdown]
# The average coverage sits inside the guaranteed band, although the model was wrong.
#
# Given *one* calibration set, though, the coverage is a random quantity. For continuous
# scores it follows a Beta(k, n_cal + 1 − k) distribution (Vovk 2012; Angelopoulos & Bates
# 2023), whose spread shrinks like 1/√n_cal — a reason to use more than the bare minimum of
# calibration points. The histogram of the 4000 conditional coverages against that density:

# %%
k = int(np.ceil((n_cal + 1) * (1 - alpha)))
grid = np.linspace(0.7, 1.0, 300)
fig, ax = plt.subplots(figsize=(6.6, 3.2))
ax.hist(covered, bins=50, density=True, color="#9ecae1", label="simulated, one calibration set each")
ax.plot(grid, stats.beta(k, n_cal + 1 - k).pdf(grid), color="#08306b", label=f"Beta({k}, {n_cal + 1 - k})")
ax.axvline(1 - alpha, color="#D55E00", linestyle="--", label="1 − α")
ax.set(xlabel="coverage given the calibration set", ylabel="density", title=f"split CQR, n_cal = {n_cal}")
ax.legend(frameon=False, loc="upper left");

# %% [markdown]
# The same check for several calibration sizes. The band narrows as n_cal grows, so more
# replications are needed to resolve it; the exact mean coverage is k/(n_cal + 1). When
# (n_cal + 1)(1 − α) is an integer (n_cal = 9, 19, 199, …) that is exactly 1 − α: the
# lower end of the guarantee is then attained, and the simulated mean scatters around it
# within its Monte Carlo error.

# %%
rows = []
for n in (9, 19, 50, 200):
    cov_n = cqr_coverage(20000, n)
    k_n = int(np.ceil((n + 1) * (1 - alpha)))
    rows.append({"n_cal": n, "mean coverage": cov_n.mean(), "± 95% MC": 1.96 * cov_n.std() / np.sqrt(cov_n.size),
                 "k/(n_cal+1)": k_n / (n + 1), "band low": 1 - alpha, "band high": 1 - alpha + 1 / (n + 1)})
pd.DataFrame(rows).round(4)

# %% [markdown]
# ## 3. Calibrating an aggregate on real data
#
# In `qa.qagg`, `conformal="cqr"` holds out `cal_size` of the rows (25% by default) before
# anything is fitted. The base models are cross-fitted and the weights fitted on the rest;
# the calibration rows are then predicted by the final aggregate and every central interval
# (here 50%, 80% and 90%) gets its own correction. We use the concrete data again, with a
# held-out test set to check the coverage, and two fast learners so that the example runs
# in seconds.

# %%
concrete = qa.datasets.load("concrete")
is_test = np.random.default_rng(3).random(len(concrete)) < 0.3
train, test = concrete[~is_test], concrete[is_test]
levels = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
fit = qa.qagg(qa.datasets.suggested_formula("concrete"), train, taus=levels,
              models={"linear": qa.learners.LinearQR(),
                      "forest": qa.learners.QuantileForest(n_estimators=60, random_state=0)},
              conformal="cqr", cal_size=0.25, cv=5, seed=0, test=test, data_name="concrete")
print(f"training rows {fit.n_train}, calibration rows {fit.n_cal}, test rows {len(test)}")
pd.DataFrame({"interval": ["90%", "80%", "50%"], "correction c (MPa)": fit.calibration.corrections,
              "guaranteed band": [f"[{a:.3f}, {b:.3f}]" for a, b in map(fit.calibration.coverage_band, fit.calibration.alphas)]})

# %% [markdown]
# The 90% interval is widened slightly; the 80% and 50% intervals are *narrowed* (negative
# corrections): out of fold, the aggregate's inner intervals were too wide, and CQR corrects
# in both directions.
#
# `fit.coverage` compares observed and nominal coverage: out-of-fold on the training rows
# (before calibration) and on the test rows (after). The test band is where the observed
# coverage of that many test points should fall (95% probability) if the guarantee holds —
# it accounts for both the randomness of the calibration set and of the test points.

# %%
fit.coverage.round(3)

# %% [markdown]
# Calibration changes the intervals, not the model. Compare the 90% intervals on the test
# mixtures with and without it:

# %%
y_test = test["strength"].to_numpy()
rows = {}
for calibrated in (False, True):
    p = fit.predict(test, interval=0.9, calibrated=calibrated)
    rows["calibrated" if calibrated else "uncalibrated"] = {
        "coverage": np.mean((y_test >= p["lower"]) & (y_test <= p["upper"])),
        "mean width (MPa)": np.mean(p["upper"] - p["lower"]),
    }
pd.DataFrame(rows).T.round(3)

# %% [markdown]
# Here the uncalibrated aggregate was already close to calibrated, so the correction is
# small; with an overconfident model (like the simulated one above) it is large. Either way
# the calibrated interval carries the guarantee and the uncalibrated one does not.
#
# ## 4. Marginal, not conditional
#
# The guarantee averages over x. An interval can cover 90% overall while covering 97% of
# easy cases and 75% of hard ones. Binning the test points by a feature and computing the
# coverage in each bin (with 95% Wilson intervals) shows whether that happens. First the
# uncalibrated out-of-fold intervals on the training rows, by age of the sample:

# %%
fit.plot("coverage", x=fit.frame["age"].to_numpy(), xlabel="age (days)", bins=6)

# %% [markdown]
# And the calibrated intervals on the test mixtures, by age and by cement content:

# %%
p = fit.predict(test, interval=0.9)
qa.plots.conditional_coverage(test["age"], y_test, p["lower"], p["upper"], nominal=0.9,
                              bins=6, xlabel="age (days)")

# %%
qa.plots.conditional_coverage(test["cement"], y_test, p["lower"], p["upper"], nominal=0.9,
                              bins=6, xlabel="cement (kg/m³)")

# %% [markdown]
# Split CQR adds the same correction everywhere, so where the base models' intervals are
# too narrow for some kind of mixture it cannot fix that locally. Remedies that stay within
# the framework: better base models or x-dependent (`"local"`) weights, so that the
# uncalibrated intervals already adapt to x; the asymmetric variant
# (`conformal="cqr-asymmetric"`, separate corrections for the two ends, band
# [1 − α, 1 − α + 2/(n_cal + 1)]); or `conformal="cv+"`, which uses the cross-fitted
# predictions instead of holding rows out (a weaker guarantee, 1 − 2α − O(1/√n), but no
# data lost to calibration).
#
# **References.** Romano, Y., Patterson, E. and Candès, E. (2019), *Conformalized quantile
# regression*, NeurIPS 32. Vovk, V. (2012), *Conditional validity of inductive conformal
# predictors*, ACML. Angelopoulos, A. N. and Bates, S. (2023), *Conformal prediction: a
# gentle introduction*, Foundations and Trends in ML 16(4). Barber, R. F., Candès, E. J.,
# Ramdas, A. and Tibshirani, R. J. (2021), *Predictive inference with the jackknife+*,
# Annals of Statistics 49(1).
