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

cat("stats fixtures written to", stats_outdir, "\n")
