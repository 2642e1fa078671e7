# Reproduces engel_rq.csv and concrete_rq.csv from engel.csv and concrete.csv.
# R 4.2.2, quantreg 5.94, splines (base R). Run from this folder:
#   Rscript make_quantreg.R [output folder, default "."]
library(quantreg)
library(splines)
out <- commandArgs(trailingOnly = TRUE)
out <- if (length(out)) out[1] else "."

engel <- read.csv("engel.csv")
rows <- list()
for (t in c(.05, .1, .25, .5, .75, .9, .95)) {
  fit <- rq(foodexp ~ income, tau = t, data = engel, method = "br")
  for (se in c("iid", "nid", "ker")) {
    co <- coef(summary(fit, se = se))
    rows[[length(rows) + 1]] <- data.frame(tau = t, term = rownames(co), se_method = se,
      estimate = co[, 1], std_error = co[, 2], lower_bd = NA, upper_bd = NA)
  }
  co <- coef(summary(fit, se = "rank"))
  rows[[length(rows) + 1]] <- data.frame(tau = t, term = rownames(co), se_method = "rank",
    estimate = co[, 1], std_error = NA, lower_bd = co[, 2], upper_bd = co[, 3])
}
write.csv(do.call(rbind, rows), file.path(out, "engel_rq.csv"), row.names = FALSE)

concrete <- read.csv("concrete.csv")
concrete$age_group <- factor(concrete$age_group, levels = c("early", "standard", "late"))
rows <- list()
for (t in c(.1, .5, .9)) {
  fit <- rq(strength ~ cement + slag + ash + water + superplastic + age_group + bs(fine, df = 4),
            tau = t, data = concrete)
  rows[[length(rows) + 1]] <- data.frame(tau = t, term = names(coef(fit)), estimate = unname(coef(fit)),
                                         objective = sum(fit$rho))
}
write.csv(do.call(rbind, rows), file.path(out, "concrete_rq.csv"), row.names = FALSE)
