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
# # Quantile regression with formulas
#
# Least squares estimates one number for each value of the predictors: the conditional
# **mean**. Quantile regression (Koenker & Bassett, 1978) estimates conditional
# **quantiles**: the value below which a fraction τ of the outcomes fall, for any τ in
# (0, 1). Fitting several τ at once shows how the whole distribution of the outcome moves
# with the predictors, not only its centre.
#
# This vignette covers
#
# 1. the check loss that defines a quantile,
# 2. least squares against median regression on Ernst Engel's household budgets,
# 3. coefficients across τ with confidence bands (R's `plot(summary(rq(...)))`),
# 4. standard errors (rank inversion, sandwich, bootstrap),
# 5. transformations, and the classic wage equation written as in R,
# 6. testing whether the slopes differ across τ (R's `anova`), and
# 7. non-linear quantile curves written directly in the formula with `bs()` and `ns()`.
#
# `qa.rq` accepts R's formulas as written for `quantreg::rq` — `I(x^2)`, `poly(x, 2)`,
# `ns(x, df = 3)`, `factor(g)`, `relevel(g, "b")`, `(a + b)^2`, `log(y)` — labels the
# coefficients as R does, and solves the same linear programme exactly, so its estimates agree
# with R's. Formulas are checked before they are evaluated: only data columns, numbers and the
# documented functions are allowed, so a formula cannot run other code.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

import qaggstats as qa

engel = qa.datasets.load("engel")
print(qa.datasets.describe("engel"))
engel.describe().round(1)

# %% [markdown]
# ## 1. The check loss
#
# The τ-quantile of a sample minimises the **check (pinball) loss**
#
# $$\sum_i \rho_\tau(y_i - b), \qquad \rho_\tau(u) = u\,(\tau - \mathbf{1}\{u < 0\}),$$
#
# which charges τ per unit for outcomes above `b` and 1 − τ per unit for outcomes below it.
# At the minimum a fraction τ of the points lies below `b`. Replacing the constant `b` by
# `x'β` gives quantile regression; replacing ρ_τ by the square gives least squares and the
# mean. A quick numerical check on the food expenditures:

# %%
y = engel["foodexp"].to_numpy()
grid = np.linspace(y.min(), y.max(), 4001)
for tau in (0.1, 0.5, 0.9):
    u = y[None, :] - grid[:, None]                       # (grid, n) residuals
    loss = (u * (tau - (u < 0))).sum(axis=1)
    print(f"tau = {tau}: argmin of the check loss {grid[loss.argmin()]:7.1f}   "
          f"sample quantile {np.quantile(y, tau, method='inverted_cdf'):7.1f}")

# %% [markdown]
# ## 2. Least squares versus median regression
#
# Engel (1857) observed that poorer households spend a larger share of their income on food.
# The data: yearly income and food expenditure (Belgian francs) of 235 working-class
# households. We fit the mean (least squares, statsmodels) and the median (`tau=0.5`).

# %%
ols = smf.ols("foodexp ~ income", data=engel).fit()
median = qa.rq("foodexp ~ income", data=engel, tau=0.5)
print(median.summary())
pd.DataFrame({"least squares": ols.params, "median regression": median.params["q0.5"]})

# %% [markdown]
# The median slope is steeper. A handful of rich households spend unusually little on food;
# squared loss lets them pull the least-squares line down at high incomes, while the check
# loss only counts on which side of the line they fall and by how much in absolute terms —
# the median is robust to outlying *y*.

# %%
fig, ax = plt.subplots(figsize=(6.6, 3.6))
ax.scatter(engel["income"], engel["foodexp"], s=8, color="0.35", label="households")
xs = pd.DataFrame({"income": np.linspace(engel["income"].min(), engel["income"].max(), 100)})
ax.plot(xs["income"], ols.predict(xs), "--", color="#D55E00", label="least squares (mean)")
ax.plot(xs["income"], median.predict(xs).iloc[:, 0], color="#0072B2", label="median regression")
ax.set(xlabel="household income", ylabel="food expenditure")
ax.legend(frameon=False);

# %% [markdown]
# ## 3. Many quantiles at once
#
# One call fits any number of levels. The fan of lines widens with income: the spread of food
# spending grows with income (heteroscedasticity), something a single mean line cannot show.

# %%
taus = np.round(np.arange(0.05, 0.96, 0.05), 2)
fit = qa.rq("foodexp ~ income", data=engel, tau=taus)

fig, ax = plt.subplots(figsize=(6.6, 3.6))
ax.scatter(engel["income"], engel["foodexp"], s=8, color="0.35")
lines = fit.predict(xs).to_numpy()
for j, tau in enumerate(taus):
    ax.plot(xs["income"], lines[:, j], color=plt.cm.viridis(tau), linewidth=1.6 if tau == 0.5 else 0.8)
ax.set(xlabel="household income", ylabel="food expenditure",
       title="quantile regression lines, τ = 0.05, 0.10, …, 0.95");

# %% [markdown]
# `fit.coef` is a tidy table with one row per level and term, including confidence limits:

# %%
fit.coef.query("term == 'income'").head(6).round(4)

# %% [markdown]
# ### Coefficients across τ
#
# Plotting each coefficient against τ — with its confidence band, and the least-squares
# estimate (dashed) with its 90 % band (shaded), as R's `plot(summary(rqs))` draws them — is the
# standard way to read a quantile regression. If the
# slope were the same at every τ, the predictor would only *shift* the distribution (a
# location model, where least squares tells the whole story). Here the income slope rises
# from about 0.34 at τ = 0.05 to about 0.71 at τ = 0.95, and the bands at the two ends are
# far apart: income *stretches* the distribution of food spending.

# %%
fit.plot()

# %% [markdown]
# ## 4. Standard errors
#
# Quantile regression standard errors need the density of the errors at the quantile, which
# must be estimated. `se=` follows R's `summary.rq`, including its default (`se=None`): rank
# inversion below 1,001 rows, `"nid"` above.
#
# * `"rank"` inverts a rank test: confidence intervals without a density estimate;
# * `"iid"` assumes the errors have the same distribution for every x (rarely true);
# * `"nid"` lets the density vary with x, using a local difference quotient with the
#   Hall–Sheather bandwidth (and warns, as R, when that estimate is not positive somewhere);
# * `"ker"` is Powell's kernel sandwich estimator;
# * `"boot"` is R's xy-pair bootstrap (`replications=200`, `seed=0` by default).
#
# With heteroscedastic data like these the iid standard errors of the slope are far too
# small — less than half the `nid` and `ker` ones at τ = 0.1 — because a single density
# cannot describe errors whose spread grows with income.

# %%
rows = []
for se in ("iid", "nid", "ker", "boot"):
    # 100 bootstrap replications keep this cell quick; R's default is 200
    c = qa.rq("foodexp ~ income", data=engel, tau=[0.1, 0.5, 0.9], se=se, replications=100).coef
    rows.append(c.query("term == 'income'").set_index("tau")["std_error"].rename(se))
pd.DataFrame(rows).round(4)

# %% [markdown]
# ## 5. Transformations and equivariance
#
# Quantiles commute with increasing transformations: the τ-quantile of log(y) is the log of
# the τ-quantile of y. So a model fitted on the log scale gives quantiles on the original
# scale by simply exponentiating — no retransformation bias as with means. Formulas accept
# `log`, `exp`, `sqrt`, ... as in R (or `np.log`). On the log–log scale the slopes (income elasticities of food
# demand) stay between about 0.8 and 0.92 across τ, where the raw-scale slope doubled: in
# logs, Engel's data are much closer to a location model.

# %%
loglog = qa.rq("log(foodexp) ~ log(income)", data=engel, tau=[0.1, 0.25, 0.5, 0.75, 0.9])
loglog.params.round(3)

# %% [markdown]
# ### The wage equation, as an R user writes it
#
# Mincer's earnings equation is the textbook quantile regression: log wages on experience,
# its square and years of schooling. We simulate a CPS-style sample of 800 workers in which
# schooling raises wages more at the top of the distribution than at the bottom (the spread of
# log wages grows with education), and fit the formula exactly as it is written in R.

# %%
rng = np.random.default_rng(42)
n = 800
education = rng.integers(8, 21, n)
experience = np.clip(rng.gamma(4.0, 4.5, n).round(), 0, 45)
union = rng.random(n) < 0.2
spread = 0.25 + 0.02 * (education - 8)
log_wage = (0.9 + 0.07 * education + 0.045 * experience - 0.0008 * experience**2
            + 0.12 * union + spread * rng.standard_normal(n))
cps = pd.DataFrame({"wage": np.exp(log_wage).round(2), "experience": experience,
                    "education": education, "union": np.where(union, "yes", "no")})

wage = qa.rq("log(wage) ~ experience + I(experience^2) + education", data=cps, tau=[0.1, 0.5, 0.9])
print(wage.summary())

# %% [markdown]
# The coefficient names are R's (`(Intercept)`, `I(experience^2)`), in R's order, so the table
# can be read line by line against R's output. The same model with orthogonal polynomials,
# `poly(experience, 2)` (R's `poly`, with its exact basis), gives the same fitted quantiles with
# different coefficients; `factor()`, `relevel()` and interactions work as in R too:

# %%
same = qa.rq("log(wage) ~ poly(experience, 2) + education", data=cps, tau=[0.1, 0.5, 0.9])
print("largest difference in fitted quantiles:", float(np.abs(same.fitted - wage.fitted).to_numpy().max()))
union_fit = qa.rq('log(wage) ~ experience + I(experience^2) + education * relevel(factor(union), "yes")',
                  data=cps, tau=0.5, se="nid")
union_fit.params.round(4)

# %% [markdown]
# ## 6. Are the slopes equal across τ?
#
# If a predictor only shifted the distribution, its coefficient would be the same at every τ.
# R's `anova(fit)` on a fit at several levels is the joint Wald test of that hypothesis
# (Koenker and Bassett, 1982), with the covariance of the estimates across levels. For the
# wage equation it rejects clearly — education stretches the wage distribution — and the
# per-slope version (`joint=False`) shows which coefficients differ:

# %%
print(wage.anova())
wage.anova(joint=False).table.round(4)

# %% [markdown]
# On Engel's data the same test reproduces the F value of R's quantreg vignette (15.557 on 2
# and 703 degrees of freedom):

# %%
qa.rq("foodexp ~ income", data=engel, tau=[0.25, 0.5, 0.75]).anova().table

# %% [markdown]
# ## 7. Non-linear quantile curves with splines
#
# Nothing forces straight lines. A B-spline basis written in the formula,
# `bs(income, df=5)`, lets each quantile curve bend; the model is still linear in its
# coefficients, so the fit is still an exact linear programme. The spline's knots are placed
# from the training data and stored with the fit, so `predict` on new data uses the same
# basis. `bs()` and `ns()` are R's bases exactly; beyond the training range they extrapolate as
# R does (`bs`: the end polynomial pieces; `ns`: straight lines), with a warning and a note in
# the prediction's `attrs["notes"]` (`rq(..., extrapolate="error")` refuses instead).

# %%
spline = qa.rq("foodexp ~ bs(income, df=5)", data=engel, tau=[0.1, 0.5, 0.9])
linear = qa.rq("foodexp ~ income", data=engel, tau=[0.1, 0.5, 0.9])

fig, ax = plt.subplots(figsize=(6.6, 3.6))
ax.scatter(engel["income"], engel["foodexp"], s=8, color="0.35")
for j, tau in enumerate((0.1, 0.5, 0.9)):
    ax.plot(xs["income"], spline.predict(xs).iloc[:, j], color="#0072B2", label="spline" if j == 0 else None)
    ax.plot(xs["income"], linear.predict(xs).iloc[:, j], ":", color="#D55E00", label="linear" if j == 0 else None)
ax.set(xlabel="household income", ylabel="food expenditure", title="τ = 0.1, 0.5, 0.9")
ax.legend(frameon=False);

# %% [markdown]
# Which fits better? The check loss at the optimum (`objective`) can only fall when basis
# functions are added (the linear model is nested in the spline model), so compare the
# models on data they were not fitted to instead. A simple 5-fold cross-validation of the
# mean pinball loss:

# %%
folds = np.random.default_rng(1).permutation(len(engel)) % 5
cv_loss = {}
for name, formula in {"linear": "foodexp ~ income", "spline df=5": "foodexp ~ bs(income, df=5)"}.items():
    loss = np.zeros(3)
    for k in range(5):
        train, test = engel[folds != k], engel[folds == k]
        inside = test["income"].between(train["income"].min(), train["income"].max())
        pred = qa.rq(formula, data=train, tau=[0.1, 0.5, 0.9]).predict(test[inside]).to_numpy()
        loss += qa.scoring.pinball_loss(test.loc[inside, "foodexp"].to_numpy(), pred, [0.1, 0.5, 0.9]) / 5
    cv_loss[name] = loss
pd.DataFrame(cv_loss, index=["τ=0.1", "τ=0.5", "τ=0.9"]).round(2)

# %% [markdown]
# On held-out households the straight lines win at every level: with 235 points, the five
# spline coefficients per level mostly chase noise, especially in the sparse region of high
# incomes. The formula makes trying the richer model a one-word change; cross-validation
# (or the aggregation of the next vignette, which weighs models by their out-of-fold loss)
# decides whether it is worth it.

# %% [markdown]
# ## 8. A warning: separately fitted quantiles can cross
#
# Each level is fitted on its own, so nothing stops the 0.1 line from rising above the 0.5
# line somewhere — typically where data are scarce, and always eventually for linear lines
# with different slopes. On these data the lines fitted at τ = 0.05 and τ = 0.10 cross
# just outside the observed incomes:

# %%
b = qa.rq("foodexp ~ income", data=engel, tau=[0.05, 0.1]).params.to_numpy()   # (terms, levels)
crossing_income = (b[0, 1] - b[0, 0]) / (b[1, 0] - b[1, 1])
print(f"the 0.05 and 0.10 lines cross at income {crossing_income:.0f}; "
      f"observed incomes run from {engel['income'].min():.0f} to {engel['income'].max():.0f}")

# %% [markdown]
# Crossing quantiles are not a distribution. The next vignette,
# *Aggregating quantile models*, shows how qaggstats combines many quantile models and
# guarantees non-crossing predictions — and why sorting the predicted quantiles can only
# improve them.
#
# **References.** Koenker, R. and Bassett, G. (1978), *Regression quantiles*, Econometrica
# 46, 33–50. Koenker, R. (2005), *Quantile Regression*, Cambridge University Press.
# Hall, P. and Sheather, S. (1988), *On the distribution of a studentized quantile*, JRSS B 50.
# Koenker, R. and Bassett, G. (1982), *Tests of linear hypotheses and l1 estimation*,
# Econometrica 50, 1577–1583. Koenker, R. and Machado, J. (1999), *Goodness of fit and related
# inference processes for quantile regression*, JASA 94, 1296–1310.
