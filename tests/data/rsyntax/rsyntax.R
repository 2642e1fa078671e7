# Reference outputs for R idioms in formulas and rq inference (qaggstats tests/test_rsyntax.py,
# tests/test_rq_inference.py). Run from this directory:  Rscript rsyntax.R
suppressMessages({library(quantreg); library(splines)})
options(digits = 17)
set.seed(20261123)
n <- 200
d <- data.frame(x = round(runif(n, 1, 5), 4), z = round(rnorm(n), 4),
                g = sample(c("a", "b", "c"), n, replace = TRUE),
                k = sample(1:3, n, replace = TRUE))
d$y <- round(1 + 0.8 * d$x - 0.15 * d$x^2 + 0.5 * d$z + (d$g == "b") - 0.5 * (d$k == 3) +
             (0.3 + 0.1 * d$x) * rnorm(n), 4)
write.csv(d, "data.csv", row.names = FALSE)
# new rows: inside and outside the training range of x and z
new <- data.frame(x = c(0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.0),
                  z = c(-3.5, -1, 0, 0.5, 1, 2, 3.5),
                  g = c("a", "b", "c", "a", "b", "c", "a"), k = c(1, 2, 3, 1, 2, 3, 2))
write.csv(new, "newdata.csv", row.names = FALSE)

models <- c(
  square = "y ~ x + I(x^2)",
  poly = "y ~ poly(x, 2)",
  polyraw = "y ~ poly(x, 3, raw = TRUE) + z",
  ns = "y ~ ns(x, df = 3) + z",
  bs = "y ~ bs(x, df = 4) + exp(z/2)",
  factor = "y ~ factor(k) + relevel(factor(g), \"b\") * x",
  cross = "y ~ (x + z + g)^2",
  logy = "log(y + 10) ~ x + sqrt(x) + g"
)
taus <- c(0.25, 0.5)
coefs <- list(); preds <- list()
for (name in names(models)) {
  for (tau in taus) {
    f <- rq(as.formula(models[[name]]), data = d, tau = tau)
    b <- coef(f)
    coefs[[length(coefs) + 1]] <- data.frame(model = name, formula = models[[name]], tau = tau,
                                             term = names(b), estimate = unname(b))
    p <- suppressWarnings(predict(f, newdata = new))
    preds[[length(preds) + 1]] <- data.frame(model = name, tau = tau, row = seq_len(nrow(new)) - 1,
                                             pred = unname(p))
  }
}
write.csv(do.call(rbind, coefs), "coef.csv", row.names = FALSE)
write.csv(do.call(rbind, preds), "predict.csv", row.names = FALSE)

# offset: quantreg 5.94's rq ignores offset(); the reference is the fit of y - z
off <- rq(I(y - z) ~ x, data = d, tau = 0.5)
write.csv(data.frame(term = names(coef(off)), estimate = unname(coef(off))), "offset.csv",
          row.names = FALSE)

# bases themselves on the new rows (basis columns, training knots)
nsb <- ns(d$x, df = 3); bsb <- bs(d$x, df = 4); pb <- poly(d$x, 2)
basis <- cbind(predict(nsb, new$x), suppressWarnings(predict(bsb, new$x)), predict(pb, new$x))
colnames(basis) <- c(paste0("ns", 1:3), paste0("bs", 1:4), paste0("poly", 1:2))
write.csv(data.frame(x = new$x, basis), "basis.csv", row.names = FALSE)

# anova across taus (Engel): joint and per-slope Wald tests of equal slopes
engel_f <- read.csv("../quantreg/engel.csv")
fit <- rq(foodexp ~ income, data = engel_f, tau = c(0.25, 0.5, 0.75))
aj <- anova(fit)$table
ad <- anova(fit, joint = FALSE)$table
fit2 <- rq(y ~ x + z + g, data = d, tau = c(0.1, 0.5, 0.9))
a2 <- anova(fit2)$table
write.csv(rbind(data.frame(case = "engel_joint", aj), data.frame(case = "engel_distinct", ad),
                data.frame(case = "sim_joint", a2)), "anova.csv", row.names = FALSE)

# bootstrap standard errors with many replications (the Monte Carlo error of R's own estimate is
# then small next to the tolerance of the test), and R's default se choice (rank at n < 1001)
set.seed(1)
boot_rows <- list()
for (tau in c(0.25, 0.5)) {
  for (bsm in c("xy", "wxy")) {
    s <- summary(rq(foodexp ~ income, data = engel_f, tau = tau), se = "boot", R = 20000,
                 bsmethod = bsm)
    boot_rows[[length(boot_rows) + 1]] <- data.frame(tau = tau, bsmethod = bsm,
      term = rownames(s$coefficients), std_error = unname(s$coefficients[, 2]))
  }
}
write.csv(do.call(rbind, boot_rows), "boot.csv", row.names = FALSE)

# non-positive fis: count of R's warning on a crossing-prone design
w <- NULL
s <- withCallingHandlers(summary(rq(y ~ factor(k) * g + x, data = d, tau = 0.9), se = "nid"),
                         warning = function(cond) {w <<- conditionMessage(cond); invokeRestart("muffleWarning")})
write.csv(data.frame(warning = if (is.null(w)) "" else w,
                     term = rownames(s$coefficients), std_error = unname(s$coefficients[, 2])),
          "nid_warning.csv", row.names = FALSE)
cat("R", R.version$major, R.version$minor, "quantreg", as.character(packageVersion("quantreg")),
    "splines", as.character(packageVersion("splines")), "\n")

# nested models at one level (anova.rqlist Wald test, "nid" covariance of the larger model)
f1 <- rq(y ~ x + z + g, data = d, tau = 0.5)
f0 <- rq(y ~ x, data = d, tau = 0.5)
fz <- rq(y ~ x + z, data = d, tau = 0.5)
nt <- anova(f1, fz, f0)$table
write.csv(data.frame(case = "nested", nt), "anova_nested.csv", row.names = FALSE)
