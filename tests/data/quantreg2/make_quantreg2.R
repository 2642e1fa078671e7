# R parity round 2 (qaggstats tests/test_rq_parity.py): predict.rq intervals, anova of separately
# fitted levels, boot.rq methods with their draws, rearrange, exact fits.
# Run from this directory:  Rscript make_quantreg2.R
suppressMessages(library(quantreg))
options(digits = 17)
engel <- read.csv("../quantreg/engel.csv")
sim <- read.csv("../rsyntax/data.csv")
simnew <- read.csv("../rsyntax/newdata.csv")
nd <- data.frame(income = c(300, 600, 1000, 2000, 5000))
X <- cbind(1, engel$income); y <- engel$foodexp; n <- length(y)

# 1. predict.rq(interval = "confidence"): default se (summary's default with covariance: "nid"),
#    "iid", "nid", "ker"; two levels; a weighted fit; a model with a factor
rows <- list()
add <- function(case, tau, se, level, p) {
  rows[[length(rows) + 1]] <<- data.frame(case = case, tau = tau, se = se, level = level,
                                          row = seq_len(nrow(p)) - 1, fit = p[, "fit"],
                                          lower = p[, "lower"], higher = p[, "higher"])
}
for (tau in c(0.25, 0.5, 0.9)) {
  f <- rq(foodexp ~ income, data = engel, tau = tau)
  add("engel", tau, "default", 0.95, predict(f, nd, interval = "confidence"))
  for (se in c("iid", "nid", "ker")) for (level in c(0.95, 0.9))
    add("engel", tau, se, level, predict(f, nd, interval = "confidence", level = level, se = se))
}
w <- 1 + (seq_len(n) %% 3)
fw <- rq(foodexp ~ income, data = engel, tau = 0.5, weights = w)
add("engel_weighted", 0.5, "nid", 0.95, predict(fw, nd, interval = "confidence", se = "nid"))
fs <- rq(y ~ x + z + g, data = sim, tau = 0.5)
for (se in c("nid", "ker"))
  add("sim", 0.5, se, 0.8, predict(fs, simnew, interval = "confidence", level = 0.8, se = se))
write.csv(do.call(rbind, rows), "predict.csv", row.names = FALSE)
write.csv(data.frame(w = w), "weights.csv", row.names = FALSE)

# 2. predict.rq(type = "percentile", se = "boot"): the xy draws summary.rq makes after set.seed(7)
#    are those of boot.rq after set.seed(7); saved as 0-based row indices (R = 50)
f5 <- rq(foodexp ~ income, data = engel, tau = 0.5)
set.seed(7)
pp <- predict(f5, nd, interval = "confidence", type = "percentile", se = "boot", R = 50)
set.seed(7)
bb <- boot.rq(X, y, 0.5, R = 50)
write.csv(data.frame(row = seq_len(nrow(pp)) - 1, fit = pp[, "fit"], lower = pp[, "lower"],
                     higher = pp[, "higher"]), "predict_percentile.csv", row.names = FALSE)
write.csv(data.frame(replicate = rep(seq_len(50) - 1, each = n), index = c(bb$U) - 1),
          "percentile_draws.csv", row.names = FALSE)

# 3. anova(f1, f2, ...) of one formula fitted separately at several levels (anova.rqlist)
fa <- rq(foodexp ~ income, data = engel, tau = 0.25)
fb <- rq(foodexp ~ income, data = engel, tau = 0.5)
fc <- rq(foodexp ~ income, data = engel, tau = 0.75)
s1 <- rq(y ~ x + z + g, data = sim, tau = 0.25)
s2 <- rq(y ~ x + z + g, data = sim, tau = 0.75)
tabs <- list(
  engel_2 = anova(fa, fc)$table,
  engel_3_distinct = anova(fa, fb, fc, joint = FALSE)$table,
  engel_2_ker = anova(fa, fc, se = "ker")$table,
  sim_2 = anova(s1, s2)$table,
  sim_2_distinct = anova(s1, s2, joint = FALSE)$table,
  nested_ker = anova(rq(y ~ x + z + g, data = sim, tau = 0.5), rq(y ~ x, data = sim, tau = 0.5),
                     se = "ker")$table)
write.csv(do.call(rbind, lapply(names(tabs), function(k)
  data.frame(case = k, term = rownames(tabs[[k]]), tabs[[k]]))), "anova_list.csv", row.names = FALSE)

# 4. boot.rq draws and coefficients (R = 10, engel, tau = 0.5): the U of "xy" (0-based rows),
#    "wxy" (exponential weights), "pwy" (1{U < tau} of the uniforms), "wild" (the two-point
#    weights), "mcmb" (floor(n * unif_rand()) draws of its chain, p per step)
reps <- 10; tau <- 0.5; p <- 2
draws <- list(); coefs <- list()
keep <- function(method, d, B) {
  draws[[method]] <<- data.frame(method = method, replicate = rep(seq_len(reps) - 1, each = length(d) / reps),
                                 value = d)
  coefs[[method]] <<- data.frame(method = method, replicate = seq_len(reps) - 1, b0 = B[, 1], b1 = B[, 2])
}
set.seed(11); b <- boot.rq(X, y, tau, R = reps, bsmethod = "xy"); keep("xy", c(b$U) - 1, b$B)
set.seed(12); b <- boot.rq(X, y, tau, R = reps, bsmethod = "wxy"); keep("wxy", c(b$U), b$B)
set.seed(13); b <- boot.rq(X, y, tau, R = reps, bsmethod = "pwy"); keep("pwy", c(b$U < tau) * 1, b$B)
set.seed(14); b <- boot.rq(X, y, tau, R = reps, bsmethod = "wild")
set.seed(14); S <- sample(c(-2 * tau, 2 * (1 - tau)), prob = c(tau, 1 - tau), size = n * reps, replace = TRUE)
keep("wild", S, b$B)
# mcmb: quantreg's boot.rq.mcmb takes sign(resid), and R's residual at a basis row is rounding
# noise (-1.1e-13 at row 76 here, so psi = tau - 1 there instead of 0); the reference runs the
# same C code (bootnp) with those residuals set to their exact 0
mcmb_exact <- function(x, y, tau, R) {
  fit <- rq(y ~ x - 1, tau = tau, ci = FALSE)
  svdx <- svd(x)
  A <- svdx$v %*% diag(1/svdx$d) %*% t(svdx$v)
  coefTilda <- svdx$v %*% diag(svdx$d) %*% t(svdx$v) %*% fit$coef
  r <- fit$resid
  r[abs(r) < 1e-9 * max(abs(y))] <- 0
  psi <- sign(r); psi[psi > 0] <- tau; psi[psi < 0] <- tau - 1
  x <- x %*% A
  z <- .C("bootnp", as.double(t(x)), as.double(y), as.double(tau), as.double(coefTilda),
          as.double(t(A)), as.double(x * psi), as.double(colSums(x)), as.double(colSums(abs(x))),
          as.integer(n), as.integer(p), success = as.integer(1), theta = double(R * p + p),
          as.integer(R), PACKAGE = "quantreg")
  t(A %*% matrix(z$theta, p, R + 1)[, -1])
}
set.seed(15); b <- list(B = mcmb_exact(X, y, tau, reps))
set.seed(15); u <- runif(n * p * reps)
jj <- rep(rep(0:(p - 1), each = n), reps)  # the C code's (int)(n * j + n * unif_rand()), less n * j
keep("mcmb", floor(n * jj + n * u) - n * jj, b$B)
write.csv(do.call(rbind, draws), "boot_draws.csv", row.names = FALSE)
write.csv(do.call(rbind, coefs), "boot_coef.csv", row.names = FALSE)
r <- c(rq.fit(X, y, tau)$resid)
write.csv(data.frame(tau = tau, akj0 = akj(r, z = 0)$dens, hat1 = hat(X, intercept = FALSE)[1]),
          "wild_pieces.csv", row.names = FALSE)

# 5. bootstrap standard errors of the new methods with many replications (Monte Carlo error ~0.7 %)
set.seed(2)
se_rows <- list()
for (tau in c(0.25, 0.5)) for (bsm in c("pwy", "mcmb", "wild")) {
  s <- summary(rq(foodexp ~ income, data = engel, tau = tau), se = "boot", R = 10000, bsmethod = bsm)
  se_rows[[length(se_rows) + 1]] <- data.frame(tau = tau, bsmethod = bsm, term = rownames(s$coefficients),
                                               std_error = unname(s$coefficients[, 2]))
}
write.csv(do.call(rbind, se_rows), "boot_se.csv", row.names = FALSE)

# 6. rearrange(predict(rqs, newdata, stepfun = TRUE)) on a crossing fit, evaluated on a grid
taus <- c(0.05, 0.1, 0.3, 0.5, 0.55, 0.9)
fr <- rq(y ~ x + z + g, data = sim, tau = taus)
q <- predict(fr, simnew)
cat("rows with crossings:", sum(apply(q, 1, is.unsorted)), "of", nrow(q), "\n")
sf <- rearrange(predict(fr, simnew, stepfun = TRUE))
at <- sort(unique(c(taus, seq(0.05, 0.9, by = 0.025), 0.01, 0.95)))
write.csv(do.call(rbind, lapply(seq_along(sf), function(i)
  data.frame(row = i - 1, at = at, value = sf[[i]](at)))), "rearrange.csv", row.names = FALSE)

# 7. exact fits: rank intervals collapse to the estimates (with R's "nonunique" warning)
ex <- data.frame(x = 0:19); ex$y <- 1 + 2 * ex$x
sx <- suppressWarnings(summary(rq(y ~ x, data = ex, tau = 0.5), se = "rank")$coefficients)
write.csv(data.frame(term = rownames(sx), sx, check.names = FALSE), "exact_rank.csv", row.names = FALSE)
cat("R", R.version$major, R.version$minor, "quantreg", as.character(packageVersion("quantreg")), "\n")
