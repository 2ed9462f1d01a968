# Reference fixtures for moderators in cosmo_runner.meta, from R's metafor: categorical
# moderators (factors), several moderators, omnibus tests of a subset of the coefficients
# (btt), subgroups in metafor's common-tau2 model, and R2 of EE meta-regressions.
#
#   Rscript scripts/metafor/make_fixtures_mods.R [outdir]   # default tests/fixtures/metafor/mods
#
# Called by scripts/metafor/make_fixtures.R at its end (section "mods"). Runs under
# LC_COLLATE=C, so that factor levels sort by code point, as cosmo-runner sorts them; the
# first level is the reference. Term names are written as cosmo-runner names them:
# `alloc[random]` for the level 'random' of the text column alloc, `ablat` for a number column.
# Each file records the metafor and R versions, the data, and one case per data set x model
# x method x test; a case where metafor stops records the message.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

mods_args <- commandArgs(trailingOnly = TRUE)
mods_outdir <- if (exists("mods_outdir_override")) {
  mods_outdir_override
} else if (length(mods_args) >= 1) {
  mods_args[1]
} else {
  "tests/fixtures/metafor/mods"
}
dir.create(mods_outdir, recursive = TRUE, showWarnings = FALSE)

mx_num <- function(x) {
  x <- as.numeric(x)
  x[!is.finite(x)] <- NA
  x
}

# factor(alloc)random -> alloc[random]; ablat -> ablat
mx_terms <- function(names) {
  names <- sub("^factor\\(([^)]+)\\)(.*)$", "\\1[\\2]", names)
  names
}

mx_capture <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(list(message = conditionMessage(e)),
                                                 class = "mx_error")),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  list(value = value, warnings = warns)
}

mx_fit <- function(res) {
  list(
    terms = mx_terms(rownames(res$beta)),
    b = mx_num(res$beta), se = mx_num(res$se), zval = mx_num(res$zval),
    pval = mx_num(res$pval), ci_lb = mx_num(res$ci.lb), ci_ub = mx_num(res$ci.ub),
    tau2 = mx_num(res$tau2), I2 = mx_num(res$I2), H2 = mx_num(res$H2),
    R2 = if (is.null(res$R2)) NULL else mx_num(res$R2),
    QE = mx_num(res$QE), QE_df = res$k - res$p, QEp = mx_num(res$QEp),
    QM = mx_num(res$QM), QM_df = as.integer(res$QMdf[!is.na(res$QMdf)]), QMp = mx_num(res$QMp),
    btt = mx_terms(rownames(res$beta))[res$btt],
    k = res$k, p = res$p
  )
}

mx_write <- function(obj, file) {
  writeLines(toJSON(obj, auto_unbox = TRUE, digits = I(17), na = "null", null = "null",
                    pretty = TRUE),
             file.path(mods_outdir, file))
}

mx_header <- function(name, description) {
  list(
    dataset = name,
    description = description,
    metafor_version = as.character(packageVersion("metafor")),
    R_version = R.version.string,
    collate = Sys.getlocale("LC_COLLATE"),
    generated_by = "scripts/metafor/make_fixtures_mods.R"
  )
}

# one data set: models (R formula + cosmo-runner moderators and test_terms) x methods x tests,
# and the common-tau2 subgroup model of each `subgroups` column
# metafor's default control, and the tight one of make_fixtures.R (ML and REML only)
mx_controls <- list(default = list(), tight = list(threshold = 1e-10, tol = 1e-10, maxiter = 1000))

mx_dataset <- function(name, description, dat, columns, models, subgroups, tight = FALSE) {
  cases <- list()
  runs <- list()
  for (method in c("EE", "DL", "REML", "ML")) {
    for (control in c("default", if (tight && method %in% c("ML", "REML")) "tight")) {
      runs[[length(runs) + 1]] <- list(method = method, control = control)
    }
  }
  for (model in models) {
    for (run in runs) {
      method <- run$method
      for (test in c("z", "knha", "t", "adhoc")) {
        id <- paste(c(name, model$id, method, test, if (run$control == "tight") "tight"),
                    collapse = "-")
        args <- list(yi = dat$yi, vi = dat$vi, mods = model$formula, data = dat,
                     method = method, test = test, control = mx_controls[[run$control]])
        if (!is.null(model$btt)) args$btt <- model$btt
        out <- mx_capture(do.call(rma, args))
        case <- list(id = id, moderators = model$moderators,
                     moderator_kinds = model$kinds,
                     test_terms = model$test_terms, method = method, test = test,
                     control = run$control,
                     warnings = out$warnings)
        if (inherits(out$value, "mx_error")) {
          case$error <- out$value$message
        } else {
          case$fit <- mx_fit(out$value)
        }
        cases[[length(cases) + 1]] <- case
      }
    }
  }
  subs <- list()
  for (g in subgroups) {
    sub_runs <- list(list(method = "DL", control = "default"),
                     list(method = "REML", control = "default"))
    if (tight) sub_runs[[3]] <- list(method = "REML", control = "tight")
    for (run in sub_runs) {
      method <- run$method
      con <- mx_controls[[run$control]]
      for (test in c("z", "knha", "t", "adhoc")) {
        f <- as.formula(paste0("~ factor(", g, ")"))
        f0 <- as.formula(paste0("~ 0 + factor(", g, ")"))
        fit <- rma(dat$yi, dat$vi, mods = f, data = dat, method = method, test = test,
                   control = con)
        cell <- rma(dat$yi, dat$vi, mods = f0, data = dat, method = method, test = test,
                    control = con)
        levels <- sort(unique(dat[[g]]))
        subs[[length(subs) + 1]] <- list(
          id = paste(c(name, g, "common_tau2", method, test,
                       if (run$control == "tight") "tight"), collapse = "-"),
          subgroup = g, method = method, test = test, control = run$control,
          QM = mx_num(fit$QM), QM_df = as.integer(fit$QMdf[!is.na(fit$QMdf)]),
          QMp = mx_num(fit$QMp), tau2 = mx_num(fit$tau2), I2 = mx_num(fit$I2),
          QE = mx_num(fit$QE), QEp = mx_num(fit$QEp),
          groups = levels, estimate = mx_num(cell$beta), se = mx_num(cell$se),
          ci_lb = mx_num(cell$ci.lb), ci_ub = mx_num(cell$ci.ub), pval = mx_num(cell$pval)
        )
      }
    }
  }
  data <- lapply(columns, function(col) dat[[col]])
  names(data) <- columns
  obj <- mx_header(name, description)
  obj$data <- c(list(yi = mx_num(dat$yi), vi = mx_num(dat$vi)), data)
  obj$cases <- cases
  obj$subgroups <- subs
  mx_write(obj, paste0(name, ".json"))
}

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
mx_dataset(
  "bcg", "dat.bcg: log risk ratios; alloc (text: alternate, random, systematic), ablat, year",
  bcg, c("author", "year", "ablat", "alloc"),
  list(
    list(id = "alloc", formula = ~ factor(alloc), moderators = list("alloc")),
    list(id = "alloc-ablat", formula = ~ factor(alloc) + ablat,
         moderators = list("alloc", "ablat")),
    list(id = "ablat-alloc-year", formula = ~ ablat + factor(alloc) + year,
         moderators = list("ablat", "alloc", "year")),
    list(id = "ablat-alloc-btt", formula = ~ ablat + factor(alloc), btt = 3:4,
         moderators = list("ablat", "alloc"),
         test_terms = list("alloc[random]", "alloc[systematic]")),
    list(id = "ablat-year-btt", formula = ~ ablat + year, btt = 3,
         moderators = list("ablat", "year"), test_terms = list("year")),
    list(id = "ablat-btt-intercept", formula = ~ ablat, btt = 1:2,
         moderators = list("ablat"), test_terms = list("intrcpt", "ablat"))
  ),
  c("alloc")
)

raud <- dat.raudenbush1985
mx_dataset(
  "raudenbush1985",
  "dat.raudenbush1985: standardized mean differences (teacher expectancy); weeks, setting and tester (text)",
  raud, c("author", "weeks", "setting", "tester"),
  list(
    list(id = "tester", formula = ~ factor(tester), moderators = list("tester")),
    list(id = "setting-tester-weeks", formula = ~ factor(setting) + factor(tester) + weeks,
         moderators = list("setting", "tester", "weeks")),
    list(id = "weeks-setting-btt", formula = ~ weeks + factor(setting) + factor(tester),
         btt = 3:4, moderators = list("weeks", "setting", "tester"),
         test_terms = list("setting[indiv]", "tester[blind]"))
  ),
  c("tester", "setting")
)

# proportions (examples/proportions): logit proportions of adherence to HAART; sens is text
# ("<400", "400": a number among text, so the spec declares it categorical) and sorts "400"
# before "<400" by code point
deb <- escalc(measure = "PLO", xi = xi, ni = ni, data = dat.debruin2009)
mx_dataset(
  "debruin2009",
  "dat.debruin2009: logit proportions (xi of ni); ethnicity, patients, select, sens (text)",
  deb, c("author", "xi", "ni", "ethnicity", "patients", "select", "sens"),
  list(
    list(id = "ethnicity-patients", formula = ~ factor(ethnicity) + factor(patients),
         moderators = list("ethnicity", "patients")),
    list(id = "sens-select-btt", formula = ~ factor(sens) + factor(select), btt = 2,
         moderators = list("sens", "select"), kinds = list(sens = "categorical"),
         test_terms = list("sens[<400]"))
  ),
  c("patients"), tight = TRUE
)

cat("moderator fixtures written to", mods_outdir, "\n")
