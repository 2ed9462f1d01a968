# Reference fixtures for the pooled-count methods and diagnostics of cosmo_runner.meta
# (Mantel-Haenszel, Peto; publication bias; cumulative and influence), from R's metafor.
#
#   Rscript scripts/metafor/make_fixtures_stats.R [outdir]   # default tests/fixtures/metafor/stats
#
# Called by scripts/metafor/make_fixtures.R at its end (one command regenerates everything).
# Each file records the metafor and R versions, the data, and one case per data set x
# measure x method x level. Cases where metafor stops with an error record the message.
# Run under LC_COLLATE=C (make_fixtures.R sets it) so that sorting is by code point.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

stats_args <- commandArgs(trailingOnly = TRUE)
stats_outdir <- if (exists("stats_outdir_override")) {
  stats_outdir_override
} else if (length(stats_args) >= 1) {
  stats_args[1]
} else {
  "tests/fixtures/metafor/stats"
}
dir.create(stats_outdir, recursive = TRUE, showWarnings = FALSE)

sx_header <- function(name, description) {
  list(
    dataset = name,
    description = description,
    metafor_version = as.character(packageVersion("metafor")),
    R_version = R.version.string,
    generated_by = "scripts/metafor/make_fixtures_stats.R"
  )
}

sx_num <- function(x) {
  x <- as.numeric(x)
  x[!is.finite(x)] <- NA
  x
}

sx_capture <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(list(message = conditionMessage(e)),
                                                 class = "fx_error")),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  list(value = value, warnings = warns)
}

sx_write <- function(obj, file) {
  writeLines(toJSON(obj, auto_unbox = TRUE, digits = I(17), na = "null", null = "null",
                    pretty = TRUE),
             file.path(stats_outdir, file))
}

# ------------------------------------------------------------------ 2x2 data sets
# Each: study labels and the four cells (rows with a missing cell are left out here).
tables <- list()
bcg <- dat.bcg
tables[["bcg"]] <- list(
  desc = "dat.bcg (Colditz et al. 1994): BCG vaccine trials; no zero cells",
  study = paste(bcg$author, bcg$year), ai = bcg$tpos, bi = bcg$tneg, ci = bcg$cpos,
  di = bcg$cneg)
nw <- dat.nielweise2007
tables[["nielweise2007"]] <- list(
  desc = "dat.nielweise2007: catheter-related infections; zero cells, one double-zero study",
  study = paste(nw$author, nw$year), ai = nw$ai, bi = nw$n1i - nw$ai, ci = nw$ci,
  di = nw$n2i - nw$ci)
yu <- dat.yusuf1985[dat.yusuf1985$table == "6" & !is.na(dat.yusuf1985$ai), ]
tables[["yusuf1985"]] <- list(
  desc = "dat.yusuf1985 table 6 (beta blockers, Peto's classic): three double-zero studies",
  study = paste0(yu$trial, " ", yu$id), ai = yu$ai, bi = yu$n1i - yu$ai, ci = yu$ci,
  di = yu$n2i - yu$ci)
co <- dat.collins1985a[!is.na(dat.collins1985a$b.xti), ]
tables[["collins1985a"]] <- list(
  desc = "dat.collins1985a: bleeding (b.xti, b.xci); a double-zero study, zero cells",
  study = paste(co$trial, co$id), ai = co$b.xti, bi = co$nti - co$b.xti, ci = co$b.xci,
  di = co$nci - co$b.xci)
li <- dat.li2007
tables[["li2007"]] <- list(
  desc = "dat.li2007: magnesium and mortality; sparse cells, one study with ci = 0",
  study = paste(li$study, li$year), ai = li$ai, bi = li$n1i - li$ai, ci = li$ci,
  di = li$n2i - li$ci)
tables[["noevents1"]] <- list(
  desc = "synthetic: no events in the first arm of any study (MH OR/RR undefined)",
  study = paste("Study", 1:4), ai = c(0, 0, 0, 0), bi = c(20, 30, 25, 40),
  ci = c(2, 0, 3, 1), di = c(18, 30, 22, 39))
tables[["alldoublezero"]] <- list(
  desc = "synthetic: every study double-zero (Peto undefined, MH OR undefined)",
  study = paste("Study", 1:3), ai = c(0, 0, 0), bi = c(10, 12, 9), ci = c(0, 0, 0),
  di = c(11, 10, 8))
tables[["onetable"]] <- list(
  desc = "synthetic: one informative table and one double-zero study (k.yi = 1)",
  study = paste("Study", 1:2), ai = c(3, 0), bi = c(17, 10), ci = c(6, 0), di = c(14, 12))

mh_record <- function(res) {
  list(b = sx_num(res$beta), se = sx_num(res$se), zval = sx_num(res$zval),
       pval = sx_num(res$pval), ci_lb = sx_num(res$ci.lb), ci_ub = sx_num(res$ci.ub),
       QE = sx_num(res$QE), QEp = sx_num(res$QEp), I2 = sx_num(res$I2), H2 = sx_num(res$H2),
       tau2 = sx_num(res$tau2), k = res$k, k_yi = res$k.yi, yi = sx_num(res$yi),
       vi = sx_num(res$vi), weights = sx_num(weights(res)),
       MH = sx_num(res$MH), MHp = sx_num(res$MHp), TA = sx_num(res$TA), TAp = sx_num(res$TAp))
}

mh_cases <- list()
# drop00 = FALSE (metafor's c(FALSE, FALSE)) where it changes something
with_double_zeros <- c("nielweise2007", "yusuf1985", "collins1985a", "onetable")
levels_used <- c(95, 90)
for (name in names(tables)) {
  t <- tables[[name]]
  for (method in c("MH", "PETO")) {
    measures <- if (method == "MH") c("OR", "RR", "RD") else "OR"
    drops <- if (name %in% with_double_zeros) c(TRUE, FALSE) else TRUE
    for (measure in measures) for (level in levels_used) for (drop00 in drops) {
      id <- paste(name, method, measure, sep = "-")
      if (level != 95) id <- paste0(id, "-level", level)
      if (!drop00) id <- paste0(id, "-keep00")
      fitted <- sx_capture(if (method == "MH") {
        rma.mh(ai = t$ai, bi = t$bi, ci = t$ci, di = t$di, measure = measure, level = level,
               drop00 = drop00)
      } else {
        rma.peto(ai = t$ai, bi = t$bi, ci = t$ci, di = t$di, level = level, drop00 = drop00)
      })
      case <- list(id = id, dataset = name, method = method, measure = measure,
                   level = level, drop00 = drop00, warnings = fitted$warnings)
      if (inherits(fitted$value, "fx_error")) {
        case$error <- fitted$value$message
      } else {
        res <- fitted$value
        case$fit <- mh_record(res)
        l1 <- sx_capture(leave1out(res))
        if (inherits(l1$value, "fx_error")) {
          case$leave1out <- list(error = l1$value$message)
        } else {
          l <- l1$value
          case$leave1out <- list(estimate = sx_num(l$estimate), se = sx_num(l$se),
                                 pval = sx_num(l$pval), ci_lb = sx_num(l$ci.lb),
                                 ci_ub = sx_num(l$ci.ub), Q = sx_num(l$Q), I2 = sx_num(l$I2),
                                 warnings = l1$warnings)
        }
        if (res$k.yi >= 3) {
          rt <- sx_capture(regtest(res))
          if (inherits(rt$value, "fx_error")) {
            case$regtest <- list(error = rt$value$message)
          } else {
            r <- rt$value
            case$regtest <- list(zval = sx_num(r$zval), pval = sx_num(r$pval),
                                 est = sx_num(r$est), ci_lb = sx_num(r$ci.lb),
                                 ci_ub = sx_num(r$ci.ub))
          }
        }
        if (measure %in% c("OR", "RR")) {
          pt <- predict(fitted$value, transf = exp)
          case$transformed <- list(pred = sx_num(pt$pred), ci_lb = sx_num(pt$ci.lb),
                                   ci_ub = sx_num(pt$ci.ub))
        }
      }
      mh_cases[[length(mh_cases) + 1]] <- case
    }
  }
}
fx <- sx_header("mh_peto", "rma.mh (OR, RR, RD) and rma.peto on 2x2 tables, metafor defaults")
fx$tables <- lapply(tables, function(t) list(description = t$desc, study = t$study,
                                             ai = t$ai, bi = t$bi, ci = t$ci, di = t$di))
fx$cases <- mh_cases
sx_write(fx, "mh_peto.json")

# --------------------------------------------------------------- publication bias
# ranktest (Begg & Mazumdar), trimfill (L0, R0, Q0; side from Egger's sign or given) and
# regtest (every predictor, models rma and lm) on intercept-only rma.uni fits, with
# metafor's default control. trimfill and regtest get the model's test and level.
bias_sets <- list()
bcg_es <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
bias_sets[["bcg"]] <- list(
  desc = "dat.bcg log risk ratios", measure = "RR", study = paste(dat.bcg$author, dat.bcg$year),
  yi = as.numeric(bcg_es$yi), vi = as.numeric(bcg_es$vi),
  ni = with(dat.bcg, tpos + tneg + cpos + cneg))
eg <- dat.egger2001
eg_es <- escalc("OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = eg)
bias_sets[["egger2001"]] <- list(
  desc = "dat.egger2001 (magnesium, an asymmetric funnel) log odds ratios", measure = "OR",
  study = paste(eg$study, eg$year), yi = as.numeric(eg_es$yi), vi = as.numeric(eg_es$vi),
  ni = eg$n1i + eg$n2i)
hk <- dat.hackshaw1998
bias_sets[["hackshaw1998"]] <- list(
  desc = "dat.hackshaw1998 log odds ratios given (no sample sizes)", measure = "GEN",
  study = paste(hk$author, hk$year), yi = hk$yi, vi = hk$vi, ni = NULL)
ml <- dat.molloy2014
ml_es <- escalc("ZCOR", ri = ri, ni = ni, data = ml)
bias_sets[["molloy2014"]] <- list(
  desc = "dat.molloy2014 Fisher's z", measure = "ZCOR", study = paste(ml$authors, ml$year),
  yi = as.numeric(ml_es$yi), vi = as.numeric(ml_es$vi), ni = ml$ni)
bias_sets[["ties"]] <- list(
  desc = "synthetic: tied sampling variances (the rank test's normal approximation)",
  measure = "GEN", study = paste("Study", 1:10),
  yi = c(0.42, 0.10, 0.35, 0.61, 0.05, 0.28, 0.90, 0.33, 0.15, 0.52),
  vi = c(0.04, 0.04, 0.09, 0.09, 0.09, 0.02, 0.16, 0.04, 0.02, 0.16), ni = NULL)

tf_record <- function(tf) {
  list(k0 = tf$k0, se_k0 = sx_num(tf$se.k0), side = tf$side, p_k0 = sx_num(tf$p.k0),
       b = sx_num(tf$beta), se = sx_num(tf$se), zval = sx_num(tf$zval), pval = sx_num(tf$pval),
       ci_lb = sx_num(tf$ci.lb), ci_ub = sx_num(tf$ci.ub), tau2 = sx_num(tf$tau2),
       I2 = sx_num(tf$I2), QE = sx_num(tf$QE), k = tf$k,
       filled_yi = sx_num(tf$yi[tf$fill]), filled_vi = sx_num(tf$vi[tf$fill]))
}

bias_cases <- list()
for (name in names(bias_sets)) {
  b <- bias_sets[[name]]
  rk <- sx_capture(ranktest(b$yi, b$vi))
  rank_rec <- list(tau = sx_num(rk$value$tau), pval = sx_num(rk$value$pval),
                   warnings = rk$warnings)
  for (method in c("EE", "DL", "ML", "REML")) for (test in c("z", "knha")) {
    for (level in if (method == "REML" && test == "z") c(95, 90) else 95) {
      id <- paste(name, method, test, sep = "-")
      if (level != 95) id <- paste0(id, "-level", level)
      fit <- rma(b$yi, b$vi, method = method, test = test, level = level)
      case <- list(id = id, dataset = name, method = method, test = test, level = level,
                   ranktest = rank_rec, trimfill = list(), regtest = list())
      for (estimator in c("L0", "R0", "Q0")) for (side in c("auto", "left", "right")) {
        key <- paste(estimator, side, sep = "-")
        tf <- sx_capture(if (side == "auto") {
          trimfill(fit, estimator = estimator, test = test, level = level)
        } else {
          trimfill(fit, estimator = estimator, side = side, test = test, level = level)
        })
        case$trimfill[[key]] <- if (inherits(tf$value, "fx_error")) {
          list(error = tf$value$message)
        } else {
          c(tf_record(tf$value), list(warnings = tf$warnings))
        }
      }
      predictors <- c("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")
      if (is.null(b$ni)) predictors <- c("sei", "vi")
      for (model in c("rma", "lm")) for (predictor in predictors) {
        key <- paste(model, predictor, sep = "-")
        rt <- sx_capture(if (is.null(b$ni)) {
          regtest(fit, model = model, predictor = predictor)
        } else {
          regtest(fit, model = model, predictor = predictor, ni = b$ni)
        })
        case$regtest[[key]] <- if (inherits(rt$value, "fx_error")) {
          list(error = rt$value$message)
        } else {
          r <- rt$value
          list(zval = sx_num(r$zval), pval = sx_num(r$pval), ddf = sx_num(r$ddf),
               est = if (is.null(r$est)) NA else sx_num(r$est),
               ci_lb = if (is.null(r$ci.lb)) NA else sx_num(r$ci.lb),
               ci_ub = if (is.null(r$ci.ub)) NA else sx_num(r$ci.ub))
        }
      }
      bias_cases[[length(bias_cases) + 1]] <- case
    }
  }
}
fx <- sx_header("pubbias", "ranktest, trimfill and regtest on rma.uni fits, metafor defaults")
fx$sets <- lapply(bias_sets, function(b) list(description = b$desc, measure = b$measure,
                                              study = b$study, yi = b$yi, vi = b$vi,
                                              ni = b$ni))
fx$cases <- bias_cases
sx_write(fx, "pubbias.json")

# ------------------------------------------------------- cumulative and influence
# cumul (data order, and by a column) and influence on intercept-only rma.uni fits, with
# metafor's default control; every method kind and both tests.
infl_cases <- list()
for (name in c("bcg", "egger2001", "hackshaw1998", "molloy2014")) {
  b <- bias_sets[[name]]
  by <- if (name == "bcg") dat.bcg$year else if (name == "egger2001") eg$year else NULL
  for (method in c("EE", "DL", "ML", "REML")) for (test in c("z", "knha")) {
    id <- paste(name, method, test, sep = "-")
    fit <- rma(b$yi, b$vi, method = method, test = test, slab = b$study)
    case <- list(id = id, dataset = name, method = method, test = test)
    cm <- cumul(fit)
    case$cumul <- list(estimate = sx_num(cm$estimate), se = sx_num(cm$se),
                       pval = sx_num(cm$pvals), ci_lb = sx_num(cm$ci.lb),
                       ci_ub = sx_num(cm$ci.ub), Q = sx_num(cm$Q),
                       tau2 = if (is.null(cm$tau2)) NA else sx_num(cm$tau2),
                       I2 = sx_num(cm$I2), slab = cm$slab)
    if (!is.null(by)) {
      cb <- cumul(fit, order = by)
      case$cumul_by <- list(column = "year", values = by, estimate = sx_num(cb$estimate),
                            ci_lb = sx_num(cb$ci.lb), ci_ub = sx_num(cb$ci.ub),
                            tau2 = if (is.null(cb$tau2)) NA else sx_num(cb$tau2),
                            I2 = sx_num(cb$I2), slab = cb$slab)
    }
    inf <- influence(fit)
    i <- inf$inf
    case$influence <- list(rstudent = sx_num(i$rstudent), dffits = sx_num(i$dffits),
                           cook_d = sx_num(i$cook.d), cov_r = sx_num(i$cov.r),
                           tau2_del = sx_num(i$tau2.del), QE_del = sx_num(i$QE.del),
                           hat = sx_num(i$hat), weight = sx_num(i$weight),
                           dfbs = sx_num(inf$dfbs$intrcpt), inf = inf$is.infl)
    infl_cases[[length(infl_cases) + 1]] <- case
  }
}
fx <- sx_header("influence", "cumul and influence on rma.uni fits, metafor defaults")
fx$sets <- lapply(bias_sets[c("bcg", "egger2001", "hackshaw1998", "molloy2014")],
                  function(b) list(study = b$study, yi = b$yi, vi = b$vi))
fx$cases <- infl_cases
sx_write(fx, "influence.json")

cat("stats fixtures written to", stats_outdir, "\n")
