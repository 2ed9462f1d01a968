# Reference fixtures for cosmo_runner.meta from R's metafor (the oracle).
#
#   apt-get install -y --no-install-recommends r-base-core r-cran-metafor r-cran-jsonlite
#   Rscript scripts/metafor/make_fixtures.R [outdir [section ...]]
#
# outdir defaults to tests/fixtures/metafor; naming sections (bcg, normand1999, curtis1998,
# molloy2014, hackshaw1998, synthetic, nonconvergent, zerocells, tests, nielweise2007,
# egger2001, ...: the names in the `if (want(...))` lines below) writes only those. Every
# section sets its own seed, so a section's files are the same whether it runs alone or with
# the others. At its end (section "stats") it runs make_fixtures_stats.R into <outdir>/stats,
# then (section "mods") make_fixtures_mods.R into <outdir>/mods.
#
# Writes one JSON file per data set. Each holds the data, escalc's yi/vi, and one case per
# measure x method x test x control ("default" = metafor's defaults, "tight" =
# control=list(threshold=1e-10, tol=1e-10, maxiter=1000)) with rma.uni, predict (PI and
# back-transformed values), confint (Q-profile), leave1out and regtest results. Cases where
# metafor stops with an error record the message instead. The metafor and R versions are
# recorded in every file. Deterministic: synthetic data use fixed seeds.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[1] else "tests/fixtures/metafor"
only <- args[-1]
want <- function(section) length(only) == 0 || section %in% only
dir.create(outdir, recursive = TRUE, showWarnings = FALSE)

methods <- c("EE", "FE", "DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")
tests <- c("z", "knha")
controls <- list(default = list(), tight = list(threshold = 1e-10, tol = 1e-10, maxiter = 1000))

header <- function(name, description) {
  list(
    dataset = name,
    description = description,
    metafor_version = as.character(packageVersion("metafor")),
    R_version = R.version.string,
    generated_by = "scripts/metafor/make_fixtures.R"
  )
}

num <- function(x) {
  x <- as.numeric(x)
  x[!is.finite(x)] <- NA
  x
}

capture <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(list(message = conditionMessage(e)), class = "fx_error")),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  list(value = value, warnings = warns)
}

is_err <- function(x) inherits(x, "fx_error")

fit_record <- function(res) {
  list(
    b = num(res$beta), se = num(res$se), zval = num(res$zval), pval = num(res$pval),
    ci_lb = num(res$ci.lb), ci_ub = num(res$ci.ub), ddf = num(res$ddf),
    tau2 = num(res$tau2), se_tau2 = num(res$se.tau2), I2 = num(res$I2), H2 = num(res$H2),
    QE = num(res$QE), QEp = num(res$QEp), QM = num(res$QM), QMp = num(res$QMp),
    QMdf = num(res$QMdf), R2 = if (is.null(res$R2)) NA else num(res$R2), vt = num(res$vt),
    k = res$k, weights = num(weights(res))
  )
}

# The back-transformation metafor's predict() applies for a measure (NULL: none), with its
# targs: the harmonic mean of ni for transf.ipft.hm (as metafor computes it from targs$ni),
# the harmonic mean of ti for transf.iirft (cosmo-runner's choice; metafor takes one ti).
transf_for <- function(measure, ni = NULL, ti = NULL) {
  if (measure %in% c("RR", "OR", "ROM", "PLN", "IRLN", "IRR", "MNLN")) return(list(f = exp))
  if (measure == "ZCOR") return(list(f = transf.ztor))
  if (measure == "PLO") return(list(f = transf.ilogit))
  if (measure == "PAS") return(list(f = transf.iarcsin))
  if (measure == "PFT") return(list(f = transf.ipft.hm, targs = list(ni = ni)))
  if (measure == "IRS") return(list(f = transf.isqrt))
  if (measure == "IRFT") return(list(f = transf.iirft, targs = 1 / mean(1 / ti)))
  NULL
}

one_case <- function(id, yi, vi, measure, method, test, ctrl_name, mods = NULL,
                     leave_one_out = TRUE, ni = NULL, ti = NULL) {
  ctrl <- controls[[ctrl_name]]
  fitted <- capture(if (is.null(mods)) {
    rma(yi, vi, method = method, test = test, control = ctrl)
  } else {
    rma(yi, vi, mods = mods, method = method, test = test, control = ctrl)
  })
  case <- list(id = id, measure = measure, method = method, test = test, control = ctrl_name,
               moderators = !is.null(mods), warnings = fitted$warnings)
  res <- fitted$value
  if (is_err(res)) {
    case$error <- res$message
    return(case)
  }
  case$rma <- fit_record(res)
  if (!is.null(mods)) return(case)
  pr <- predict(res)
  case$predict <- list(pred = num(pr$pred), se = num(pr$se), ci_lb = num(pr$ci.lb),
                       ci_ub = num(pr$ci.ub), pi_lb = num(pr$pi.lb), pi_ub = num(pr$pi.ub))
  tf <- transf_for(measure, ni = ni, ti = ti)
  if (!is.null(tf)) {
    pt <- if (is.null(tf$targs)) predict(res, transf = tf$f) else
      predict(res, transf = tf$f, targs = tf$targs)
    case$transformed <- list(pred = num(pt$pred), ci_lb = num(pt$ci.lb), ci_ub = num(pt$ci.ub),
                             pi_lb = num(pt$pi.lb), pi_ub = num(pt$pi.ub))
  }
  if (!(method %in% c("EE", "FE"))) {
    ci <- capture(confint(res, control = if (ctrl_name == "tight") list(tol = 1e-10) else list()))
    if (is_err(ci$value)) {
      case$confint <- list(error = ci$value$message)
    } else {
      r <- ci$value$random
      case$confint <- list(tau2 = num(r[1, ]), tau = num(r[2, ]), I2 = num(r[3, ]),
                           H2 = num(r[4, ]), warnings = ci$warnings)
    }
  }
  if (res$k >= 3) {
    if (leave_one_out) {
      l1 <- capture(leave1out(res))
      if (is_err(l1$value)) {
        case$leave1out <- list(error = l1$value$message)
      } else {
        l <- l1$value
        case$leave1out <- list(estimate = num(l$estimate), se = num(l$se), zval = num(l$zval),
                               pval = num(l$pval), ci_lb = num(l$ci.lb), ci_ub = num(l$ci.ub),
                               Q = num(l$Q), Qp = num(l$Qp), tau2 = num(l$tau2), I2 = num(l$I2),
                               H2 = num(l$H2), warnings = l1$warnings)
      }
    }
    rt <- capture(regtest(res))
    if (is_err(rt$value)) {
      case$regtest <- list(error = rt$value$message)
    } else {
      r <- rt$value
      case$regtest <- list(zval = num(r$zval), pval = num(r$pval), ddf = num(r$ddf),
                           est = num(r$est), ci_lb = num(r$ci.lb), ci_ub = num(r$ci.ub))
    }
  }
  case
}

all_cases <- function(name, yi, vi, measure, leave_one_out = TRUE, methods_used = methods,
                      ni = NULL, ti = NULL, tests_used = tests) {
  cases <- list()
  for (ctrl_name in names(controls)) for (method in methods_used) for (test in tests_used) {
    id <- paste(name, measure, method, test, sep = "-")
    if (ctrl_name != "default") id <- paste0(id, "-", ctrl_name)
    cases[[length(cases) + 1]] <- one_case(id, yi, vi, measure, method, test, ctrl_name,
                                           leave_one_out = leave_one_out, ni = ni, ti = ti)
  }
  cases
}

write_fixture <- function(obj, file) {
  writeLines(toJSON(obj, auto_unbox = TRUE, digits = I(17), na = "null", null = "null",
                    pretty = TRUE),
             file.path(outdir, file))
}

es_record <- function(es) list(yi = num(es$yi), vi = num(es$vi))

# ---------------------------------------------------------------- dat.bcg: RR, OR, RD
if (want("bcg")) {
  bcg <- dat.bcg
  fx <- header("bcg", "dat.bcg (Colditz et al. 1994): BCG vaccine trials, 2x2 counts")
  fx$data <- list(study = paste(bcg$author, bcg$year), ai = bcg$tpos, bi = bcg$tneg,
                  ci = bcg$cpos, di = bcg$cneg, ablat = bcg$ablat)
  fx$escalc <- list()
  fx$cases <- list()
  for (measure in c("RR", "OR", "RD")) {
    es <- escalc(measure, ai = tpos, bi = tneg, ci = cpos, di = cneg, data = bcg)
    fx$escalc[[measure]] <- es_record(es)
    fx$cases <- c(fx$cases, all_cases("bcg", es$yi, es$vi, measure))
  }
  # meta-regression on absolute latitude (the canonical demo), every method and test
  es <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = bcg)
  for (ctrl_name in names(controls)) for (method in methods) for (test in tests) {
    id <- paste("bcg", "RR", "ablat", method, test, sep = "-")
    if (ctrl_name != "default") id <- paste0(id, "-", ctrl_name)
    fx$cases[[length(fx$cases) + 1]] <- one_case(id, es$yi, es$vi, "RR", method, test, ctrl_name,
                                                 mods = bcg$ablat)
  }
  write_fixture(fx, "bcg.json")
}

# ---------------------------------------------------------- dat.normand1999: MD, SMD
if (want("normand1999")) {
  nd <- dat.normand1999
  fx <- header("normand1999", "dat.normand1999: length of hospital stay, means and SDs")
  fx$data <- list(study = as.character(nd$source), m1i = nd$m1i, sd1i = nd$sd1i, n1i = nd$n1i,
                  m2i = nd$m2i, sd2i = nd$sd2i, n2i = nd$n2i)
  fx$escalc <- list()
  fx$cases <- list()
  for (measure in c("MD", "SMD")) {
    es <- escalc(measure, m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i,
                 data = nd)
    fx$escalc[[measure]] <- es_record(es)
    fx$cases <- c(fx$cases, all_cases("normand1999", es$yi, es$vi, measure))
  }
  write_fixture(fx, "normand1999.json")
}

# ------------------------------------------------------------ dat.curtis1998: ROM
if (want("curtis1998")) {
  ct <- dat.curtis1998
  fx <- header("curtis1998", "dat.curtis1998: elevated CO2 and woody plant biomass, means and SDs")
  fx$data <- list(study = paste(ct$paper, ct$id), m1i = ct$m1i, sd1i = ct$sd1i, n1i = ct$n1i,
                  m2i = ct$m2i, sd2i = ct$sd2i, n2i = ct$n2i)
  es <- escalc("ROM", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i,
               data = ct)
  fx$escalc <- list(ROM = es_record(es))
  fx$cases <- all_cases("curtis1998", es$yi, es$vi, "ROM")
  write_fixture(fx, "curtis1998.json")
}

# ----------------------------------------------------------------- dat.molloy2014: ZCOR
if (want("molloy2014")) {
  ml <- dat.molloy2014
  fx <- header("molloy2014", "dat.molloy2014: conscientiousness and medication adherence")
  fx$data <- list(study = paste(ml$authors, ml$year), ri = ml$ri, ni = ml$ni)
  es <- escalc("ZCOR", ri = ri, ni = ni, data = ml)
  fx$escalc <- list(ZCOR = es_record(es))
  fx$cases <- all_cases("molloy2014", es$yi, es$vi, "ZCOR")
  write_fixture(fx, "molloy2014.json")
}

# ------------------------------------------------------ dat.hackshaw1998: GEN (log ORs)
if (want("hackshaw1998")) {
  hk <- dat.hackshaw1998
  fx <- header("hackshaw1998", "dat.hackshaw1998: passive smoking and lung cancer, log ORs")
  fx$data <- list(study = paste(hk$author, hk$year), yi = hk$yi, vi = hk$vi)
  es <- escalc("GEN", yi = yi, vi = vi, data = hk)
  fx$escalc <- list(GEN = es_record(es))
  fx$cases <- all_cases("hackshaw1998", es$yi, es$vi, "GEN")
  write_fixture(fx, "hackshaw1998.json")
}

# ------------------------------------------------------------------ synthetic edge cases
if (want("synthetic")) {
  synthetic <- list()
  set.seed(20240401)
  synthetic[["k2"]] <- list(desc = "k = 2 studies", yi = c(0.2, 0.9), vi = c(0.04, 0.09))
  synthetic[["boundary"]] <- list(desc = "tau2 at the zero boundary (Q < k - 1)",
                                  yi = c(0.10, 0.12, 0.09, 0.11, 0.10, 0.13),
                                  vi = c(0.02, 0.03, 0.025, 0.04, 0.01, 0.05))
  vi400 <- runif(400, 0.01, 0.2)
  synthetic[["k400"]] <- list(desc = "k = 400, tau2 = 0.05",
                              yi = rnorm(400, 0.3, sqrt(vi400 + 0.05)), vi = vi400)
  vir <- 10^seq(-6, 2, length.out = 12)
  synthetic[["varratio"]] <- list(desc = "sampling variances spanning 8 orders of magnitude",
                                  yi = rnorm(12, 0, sqrt(vir + 0.1)), vi = vir)
  vit <- runif(10, 1e-6, 1e-5)
  synthetic[["tau2huge"]] <- list(desc = "tau2 / vi about 1e5 (huge heterogeneity ratio)",
                                  yi = rnorm(10, 1, 1), vi = vit)
  vis <- runif(10, 5, 50)
  synthetic[["tau2tiny"]] <- list(desc = "tau2 / vi tiny: large variances, small spread",
                                  yi = rnorm(10, 0, 0.5), vi = vis)
  for (name in names(synthetic)) {
    s <- synthetic[[name]]
    fx <- header(name, s$desc)
    fx$data <- list(study = paste("Study", seq_along(s$yi)), yi = s$yi, vi = s$vi)
    fx$escalc <- list(GEN = list(yi = s$yi, vi = s$vi))
    fx$cases <- all_cases(name, s$yi, s$vi, "GEN", leave_one_out = (name != "k400"))
    write_fixture(fx, paste0(name, ".json"))
  }
}

# ---------------------------------------- Fisher scoring that does not converge (REML)
if (want("nonconvergent")) {
  # Random k = 20 data sets (same design as the benchmark); keep the first few on which
  # metafor's Fisher scoring stops with "did not converge", with the REML maximum found by
  # optimize() on metafor's own restricted log-likelihood (tau2 fixed) as the oracle.
  set.seed(7)
  found <- list()
  tries <- 0
  while (length(found) < 3 && tries < 5000) {
    tries <- tries + 1
    v <- runif(20, 0.01, 0.5)
    y <- rnorm(20, 0.3, sqrt(v + 0.1))
    r <- try(rma(y, v, method = "REML"), silent = TRUE)
    if (inherits(r, "try-error") && grepl("did not converge", r)) {
      ll <- function(t) as.numeric(logLik(rma(y, v, tau2 = t, method = "REML")))
      upper <- max(100, 10 * diff(range(y))^2)
      grid <- c(0, upper * 10^seq(-12, 0, length.out = 400))
      best <- which.max(sapply(grid, ll))
      lo <- grid[max(1, best - 1)]
      hi <- grid[min(length(grid), best + 1)]
      opt <- optimize(ll, c(lo, hi), maximum = TRUE, tol = 1e-12)
      fixed <- rma(y, v, tau2 = opt$maximum, method = "REML")
      found[[length(found) + 1]] <- list(yi = y, vi = v, error = as.character(r),
                                         tau2_max = opt$maximum, ll_max = opt$objective,
                                         estimate = num(fixed$beta), se = num(fixed$se))
    }
  }
  fx <- header("nonconvergent", "random k = 20 sets where REML Fisher scoring does not converge")
  fx$tries <- tries
  fx$sets <- found
  write_fixture(fx, "nonconvergent.json")
}

# ------------------------------------------------------- zero cells and double zeros
if (want("zerocells")) {
  zc <- data.frame(ai = c(0, 3, 0, 10, 5), bi = c(20, 17, 15, 0, 15),
                   ci = c(2, 0, 0, 8, 4), di = c(18, 20, 15, 0, 16))
  fx <- header("zerocells", "2x2 tables with zero cells and double-zero studies")
  fx$data <- list(study = paste("Study", 1:5), ai = zc$ai, bi = zc$bi, ci = zc$ci, di = zc$di)
  fx$escalc <- list()
  for (measure in c("RR", "OR", "RD")) for (drop00 in c(FALSE, TRUE)) {
    es <- escalc(measure, ai = ai, bi = bi, ci = ci, di = di, data = zc, drop00 = drop00)
    fx$escalc[[paste0(measure, if (drop00) "-drop00" else "")]] <- es_record(es)
  }
  fx$cases <- list()
  write_fixture(fx, "zerocells.json")
}

# Measures added after the first grid: the fit does not depend on the measure (the full
# method x test x control grid is above), so each gets EE, DL and REML (z, knha; default and
# tight), with predict's back-transformation.
short <- c("EE", "DL", "REML")

# -------------------------------------------- dat.pritz1997: PR, PLN, PLO, PAS, PFT
if (want("pritz1997")) {
  pz <- dat.pritz1997
  fx <- header("pritz1997", "dat.pritz1997: proportion of good outcomes (xi of ni); two xi = ni")
  fx$data <- list(study = as.character(pz$authors), xi = pz$xi, ni = pz$ni)
  fx$escalc <- list()
  fx$cases <- list()
  for (measure in c("PR", "PLN", "PLO", "PAS", "PFT")) {
    es <- escalc(measure, xi = xi, ni = ni, data = pz)
    fx$escalc[[measure]] <- es_record(es)
    fx$cases <- c(fx$cases, all_cases("pritz1997", es$yi, es$vi, measure, methods_used = short,
                                      ni = pz$ni))
  }
  write_fixture(fx, "pritz1997.json")
}

# ------------------------------------ dat.hart1999: IR, IRLN, IRS, IRFT (arm 1), IRR, IRD
if (want("hart1999")) {
  ht <- dat.hart1999
  fx <- header("hart1999", "dat.hart1999: warfarin and stroke, events and person-years per arm")
  fx$data <- list(study = as.character(ht$study), xi = ht$x1i, ti = ht$t1i, x1i = ht$x1i,
                  t1i = ht$t1i, x2i = ht$x2i, t2i = ht$t2i)
  fx$escalc <- list()
  fx$cases <- list()
  for (measure in c("IR", "IRLN", "IRS", "IRFT")) {
    es <- escalc(measure, xi = x1i, ti = t1i, data = ht)
    fx$escalc[[measure]] <- es_record(es)
    fx$cases <- c(fx$cases, all_cases("hart1999", es$yi, es$vi, measure, methods_used = short,
                                      ti = ht$t1i))
  }
  for (measure in c("IRR", "IRD")) {
    es <- escalc(measure, x1i = x1i, t1i = t1i, x2i = x2i, t2i = t2i, data = ht)
    fx$escalc[[measure]] <- es_record(es)
    fx$cases <- c(fx$cases, all_cases("hart1999", es$yi, es$vi, measure, methods_used = short))
  }
  write_fixture(fx, "hart1999.json")
}

# ----------------------------------------------- dat.normand1999: SMDH; MN, MNLN (arm 1)
if (want("normand1999-more")) {
  nd <- dat.normand1999
  fx <- header("normand1999-more", "dat.normand1999: SMDH, and the first arm's means (MN, MNLN)")
  fx$data <- list(study = as.character(nd$source), m1i = nd$m1i, sd1i = nd$sd1i, n1i = nd$n1i,
                  m2i = nd$m2i, sd2i = nd$sd2i, n2i = nd$n2i, mi = nd$m1i, sdi = nd$sd1i,
                  ni = nd$n1i)
  fx$escalc <- list()
  fx$cases <- list()
  es <- escalc("SMDH", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i,
               data = nd)
  fx$escalc[["SMDH"]] <- es_record(es)
  fx$cases <- c(fx$cases, all_cases("normand1999", es$yi, es$vi, "SMDH", methods_used = short))
  for (measure in c("MN", "MNLN")) {
    es <- escalc(measure, mi = m1i, sdi = sd1i, ni = n1i, data = nd)
    fx$escalc[[measure]] <- es_record(es)
    fx$cases <- c(fx$cases, all_cases("normand1999", es$yi, es$vi, measure, methods_used = short))
  }
  write_fixture(fx, "normand1999-more.json")
}

# ------------------------------------------------------- dat.molloy2014: COR, UCOR
if (want("molloy2014-cor")) {
  ml <- dat.molloy2014
  fx <- header("molloy2014-cor", "dat.molloy2014: raw (COR) and unbiased (UCOR) correlations")
  fx$data <- list(study = paste(ml$authors, ml$year), ri = ml$ri, ni = ml$ni)
  fx$escalc <- list()
  fx$cases <- list()
  es <- escalc("COR", ri = ri, ni = ni, data = ml)
  fx$escalc[["COR"]] <- es_record(es)
  fx$cases <- c(fx$cases, all_cases("molloy2014", es$yi, es$vi, "COR", methods_used = short))
  # escalc("UCOR") needs the gsl package (hyperg_2F1), which Debian's r-cran-metafor does not
  # pull in: the same formula as metafor's (yi = ri 2F1(1/2, 1/2; (ni-2)/2; 1-ri^2), vtype
  # "LS" vi = (1 - yi^2)^2/(ni - 1)) with 2F1 summed as its power series to full precision.
  f21 <- function(a, b, c, x) {
    term <- 1; total <- 1; k <- 0
    while (abs(term) > 1e-18 * abs(total)) {
      term <- term * (a + k) * (b + k) / ((c + k) * (k + 1)) * x
      total <- total + term; k <- k + 1
    }
    total
  }
  yi <- ml$ri * mapply(f21, 1 / 2, 1 / 2, (ml$ni - 2) / 2, 1 - ml$ri^2)
  vi <- (1 - yi^2)^2 / (ml$ni - 1)
  fx$escalc[["UCOR"]] <- list(yi = yi, vi = vi, note = "2F1 by its power series (no gsl)")
  fx$cases <- c(fx$cases, all_cases("molloy2014", yi, vi, "UCOR", methods_used = short))
  write_fixture(fx, "molloy2014-cor.json")
}

# ------------------------------------------- GEN from hazard ratios with 95% and 90% CIs
# metafor 3.8 has no conv.wald: sei = (log(upper) - log(lower))/(2 qnorm(1/2 + level/200)),
# the Cochrane Handbook's rule, fitted with rma and back-transformed with predict(transf=exp).
if (want("hrci")) {
  hr <- data.frame(study = paste("Trial", LETTERS[1:8]),
                   yi = c(0.78, 0.91, 0.65, 1.05, 0.83, 0.72, 0.97, 0.58),
                   lower = c(0.61, 0.74, 0.45, 0.81, 0.70, 0.50, 0.80, 0.35),
                   upper = c(1.00, 1.12, 0.94, 1.36, 0.98, 1.04, 1.18, 1.20))
  for (level in c(95, 90)) {
    name <- if (level == 95) "hrci" else "hrci90"
    fx <- header(name, paste0("hazard ratios with ", level, "% CIs as papers print them (GEN, ",
                              "input_scale log); Trial H's CI is asymmetric on the log scale"))
    fx$data <- list(study = hr$study, yi = hr$yi, lower = hr$lower, upper = hr$upper)
    fx$settings <- list(input_scale = "log", ci_level = level)
    yi <- log(hr$yi)
    sei <- (log(hr$upper) - log(hr$lower)) / (2 * qnorm(1 / 2 + level / 200))
    fx$escalc <- list(GEN = list(yi = yi, vi = sei^2))
    fx$cases <- all_cases(name, yi, sei^2, "GEN", methods_used = short)
    for (i in seq_along(fx$cases)) {
      case <- fx$cases[[i]]
      if (is.null(case$error) && !is.null(case$predict)) {
        ctrl <- controls[[case$control]]
        res <- rma(yi, sei^2, method = case$method, test = case$test, control = ctrl)
        pt <- predict(res, transf = exp)
        fx$cases[[i]]$transf <- "exp"
        fx$cases[[i]]$transformed <- list(pred = num(pt$pred), ci_lb = num(pt$ci.lb),
                                          ci_ub = num(pt$ci.ub), pi_lb = num(pt$pi.lb),
                                          pi_ub = num(pt$pi.ub))
      }
    }
    write_fixture(fx, paste0(name, ".json"))
  }
}

# ------------------------------------------ proportions with xi = 0 and xi = ni (escalc)
if (want("zeroprops")) {
  zp <- data.frame(xi = c(0, 3, 10, 5, 0), ni = c(20, 15, 10, 12, 8))
  fx <- header("zeroprops", "proportions with xi = 0 and xi = ni (add 1/2 for PR, PLN, PLO)")
  fx$data <- list(study = paste("Study", 1:5), xi = zp$xi, ni = zp$ni)
  fx$escalc <- list()
  for (measure in c("PR", "PLN", "PLO", "PAS", "PFT")) {
    fx$escalc[[measure]] <- es_record(escalc(measure, xi = xi, ni = ni, data = zp))
  }
  fx$cases <- list()
  write_fixture(fx, "zeroprops.json")
}

# ---------------------------------------------------- rates with zero events (escalc)
if (want("zerorates")) {
  zr <- data.frame(x1i = c(0, 3, 0, 5, 2), t1i = c(120, 200, 90, 150, 60),
                   x2i = c(2, 0, 0, 4, 1), t2i = c(110, 210, 100, 140, 75))
  fx <- header("zerorates", "rates with zero events; IRR/IRD with a double zero (drop00)")
  fx$data <- list(study = paste("Study", 1:5), xi = zr$x1i, ti = zr$t1i, x1i = zr$x1i,
                  t1i = zr$t1i, x2i = zr$x2i, t2i = zr$t2i)
  fx$escalc <- list()
  for (measure in c("IR", "IRLN", "IRS", "IRFT")) {
    fx$escalc[[measure]] <- es_record(escalc(measure, xi = x1i, ti = t1i, data = zr))
  }
  for (measure in c("IRR", "IRD")) for (drop00 in c(FALSE, TRUE)) {
    es <- escalc(measure, x1i = x1i, t1i = t1i, x2i = x2i, t2i = t2i, data = zr, drop00 = drop00)
    fx$escalc[[paste0(measure, if (drop00) "-drop00" else "")]] <- es_record(es)
  }
  fx$cases <- list()
  write_fixture(fx, "zerorates.json")
}

# ------------------------------------- tests "t" and "adhoc" (metafor 3.8.1's other tests)
# Every method with test = "t" (t with k - p df, the z variance) and "adhoc" (Knapp-Hartung
# with s2w truncated below at 1), intercept-only and on ablat, default and tight; "boundary"
# has Q < k - 1, so s2w < 1 and adhoc differs from knha there.
if (want("tests")) {
  tt <- c("t", "adhoc")
  bcg <- dat.bcg
  fx <- header("tests-bcg", "dat.bcg (log RR) with tests t and adhoc, intercept-only and ~ ablat")
  fx$data <- list(study = paste(bcg$author, bcg$year), ai = bcg$tpos, bi = bcg$tneg,
                  ci = bcg$cpos, di = bcg$cneg, ablat = bcg$ablat)
  es <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = bcg)
  fx$escalc <- list(RR = es_record(es))
  fx$cases <- all_cases("bcg", es$yi, es$vi, "RR", tests_used = tt)
  for (ctrl_name in names(controls)) for (method in methods) for (test in tt) {
    id <- paste("bcg", "RR", "ablat", method, test, sep = "-")
    if (ctrl_name != "default") id <- paste0(id, "-", ctrl_name)
    fx$cases[[length(fx$cases) + 1]] <- one_case(id, es$yi, es$vi, "RR", method, test, ctrl_name,
                                                 mods = bcg$ablat)
  }
  write_fixture(fx, "tests-bcg.json")
  yi <- c(0.10, 0.12, 0.09, 0.11, 0.10, 0.13)
  vi <- c(0.02, 0.03, 0.025, 0.04, 0.01, 0.05)
  fx <- header("tests-boundary", "tau2 at the zero boundary (Q < k - 1: s2w < 1), tests t, adhoc")
  fx$data <- list(study = paste("Study", seq_along(yi)), yi = yi, vi = vi)
  fx$escalc <- list(GEN = list(yi = yi, vi = vi))
  fx$cases <- all_cases("boundary", yi, vi, "GEN", tests_used = tt)
  write_fixture(fx, "tests-boundary.json")
}

# ------------------------------- dat.nielweise2007 (RD): where metafor's default stops early
# ML and REML with every test; "converged" records metafor with threshold = 1e-12 (the
# likelihood maximum: ML tau2 5.916e-5 against 7.955e-5 at the default threshold 1e-5).
if (want("nielweise2007")) {
  nw <- dat.nielweise2007
  fx <- header("nielweise2007", "dat.nielweise2007: catheter infections, risk differences")
  fx$data <- list(study = paste(nw$author, nw$year), ai = nw$ai, bi = nw$n1i - nw$ai,
                  ci = nw$ci, di = nw$n2i - nw$ci)
  es <- escalc("RD", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = nw)
  fx$escalc <- list(RD = es_record(es))
  fx$cases <- all_cases("nielweise2007", es$yi, es$vi, "RD", methods_used = c("ML", "REML"),
                        tests_used = c("z", "knha", "t", "adhoc"))
  fx$converged <- list()
  for (method in c("ML", "REML")) {
    res <- rma(es$yi, es$vi, method = method, control = list(threshold = 1e-12, maxiter = 1000))
    fx$converged[[method]] <- list(threshold = 1e-12, tau2 = num(res$tau2), I2 = num(res$I2),
                                   b = num(res$beta), se = num(res$se))
  }
  write_fixture(fx, "nielweise2007.json")
}

# ------------------------ a likelihood with two peaks: dat.egger2001 without LIMIT-2 (OR, ML)
# metafor's Fisher scoring stops at tau2 = 0, a local maximum (the log-likelihood falls to a
# valley near tau2 = 1e-4, then rises to the interior peak); the oracle for the peak is
# optimize() on metafor's own log-likelihood (tau2 fixed), with the profile around 0.
if (want("egger2001")) {
  eg <- dat.egger2001
  eg <- eg[eg$study != "LIMIT-2", ]
  fx <- header("egger2001", "dat.egger2001 without LIMIT-2 (OR): a bimodal ML likelihood")
  fx$data <- list(study = as.character(eg$study), ai = eg$ai, bi = eg$n1i - eg$ai, ci = eg$ci,
                  di = eg$n2i - eg$ci)
  es <- escalc("OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = eg)
  fx$escalc <- list(OR = es_record(es))
  fx$cases <- list()
  fx$peaks <- list()
  for (method in c("ML", "REML")) {
    res <- rma(es$yi, es$vi, method = method)
    ll <- function(t) as.numeric(logLik(rma(es$yi, es$vi, tau2 = t, method = method)))
    opt <- optimize(ll, c(0.01, 2), maximum = TRUE, tol = 1e-12)
    profile_t <- c(0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1)
    fx$peaks[[method]] <- list(metafor_tau2 = num(res$tau2), metafor_ll = num(logLik(res)),
                               peak_tau2 = opt$maximum, peak_ll = opt$objective,
                               profile_tau2 = profile_t, profile_ll = sapply(profile_t, ll))
  }
  write_fixture(fx, "egger2001.json")
}

cat("fixtures written to", outdir, "\n")

# Mantel-Haenszel / Peto, publication bias, cumulative and influence: a sibling script,
# writing into <outdir>/stats (sorting by code point, as R does under LC_COLLATE=C).
if (want("stats")) {
  Sys.setlocale("LC_COLLATE", "C")
  stats_outdir_override <- file.path(outdir, "stats")
  source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                    value = TRUE)[1])),
                   "make_fixtures_stats.R"))
}

# Moderators (categorical, several, btt, common-tau2 subgroups, EE R2): a sibling script,
# writing into <outdir>/mods (levels sorted by code point under LC_COLLATE=C).
if (want("mods")) {
  Sys.setlocale("LC_COLLATE", "C")
  mods_outdir_override <- file.path(outdir, "mods")
  source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                    value = TRUE)[1])),
                   "make_fixtures_mods.R"))
}
