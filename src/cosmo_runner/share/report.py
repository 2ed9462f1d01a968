"""``report.html``: one self-contained page per run, from its log, results and plots.

The page is built from what the run recorded, never recomputed: the run log (status, exit
code, error, validator findings, the environment and the gate's checks, inputs and outputs
with sha256), each analysis' ``results/<id>.json`` and its plots' ``.svg`` files, read from
the run directory. Nothing is drawn again (matplotlib is not imported) and nothing is
loaded at view time: each plot is embedded as an ``<img>`` whose ``src`` is the SVG file
as a base64 ``data:`` URI. An ``<img>`` keeps each SVG's ids and its ``<style>`` to itself
(inline ``<svg>`` elements would share one id space and matplotlib's ``*{...}`` rule with
the page) and never runs script. The page has no external scripts, fonts or styles.

A file the log records is shown only when its bytes still have the sha256 the log
recorded; otherwise the report says it changed (or is missing) and shows the log's own
summary instead. Paths in the log are read only inside the run directory.

The templates (``templates/*.j2``, package data) go through one jinja2
:class:`~jinja2.Environment` with ``autoescape=True``: a study label ``<script>`` is text.
Rendering is deterministic for one log and one set of files (no "generated at" time), so
``cosmo-runner report RUN`` rewrites the page the run wrote byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmo_runner import __version__
from cosmo_runner.errors import FileError, UsageError
from cosmo_runner.readfile import MiB, read_regular
from cosmo_runner.redact import redact_document
from cosmo_runner.runlog import LOG_NAME, write_atomic

if TYPE_CHECKING:
    import jinja2

REPORT_NAME = "report.html"
#: A results file or plot larger than this is not embedded (the report says so).
MAX_EMBED_BYTES = 32 * MiB
#: Fields of the run log the report reads, checked against run_log.schema.json first.
REPORT_FIELDS = (
    "run_id",
    "status",
    "exit_code",
    "command",
    "started_at",
    "finished_at",
    "duration_s",
    "out_dir",
    "smoke",
    "spec",
    "inputs",
    "validators",
    "analyses",
    "outputs",
    "error",
)

_PLOT_KINDS = ("forest", "funnel")


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The compiled templates, kept in the records cache folder (``jinja2/``) when it can be
    made: compiling them costs more than rendering. jinja2 keys each entry by the template
    source's checksum and the Python version, so a changed template or interpreter never
    reuses an entry, and a corrupt one is ignored. A cache that cannot be read or written
    (a read-only home, a full disk) means compiling again, never a failed report."""
    import jinja2

    from cosmo_runner.env.records import cache_dir

    root = cache_dir()
    if root is None:
        return None
    folder = root / "jinja2"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None

    class _Cache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except OSError:
                bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    return _Cache(str(folder))


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cosmo_runner.share", "templates"),
        bytecode_cache=_bytecode_cache(),
        autoescape=True,  # every value is escaped: a study label "<script>" shows as text
        undefined=jinja2.StrictUndefined,  # a missing context key is a bug, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = fmt_num
    env.filters["pval"] = fmt_pval
    env.filters["pct"] = fmt_pct
    return env


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: fixed ``digits`` decimals, scientific when tiny or huge."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def fmt_pval(value: Any) -> str:
    """A p-value as metafor prints it: ``<.0001`` below 1e-4, else 4 decimals."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return "<.0001" if value < 1e-4 else f"{value:.4f}"


def fmt_pct(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:.2f}%"


def render_run_report(run_dir: Path, log: dict[str, Any]) -> bytes:
    """The report of the run in ``run_dir`` whose log is ``log`` (redacted here), as UTF-8.

    Reads the results and plots the log records (inside ``run_dir`` only); writes nothing.
    """
    context = run_context(run_dir, redact_document(log))
    return _environment().get_template("run_report.html.j2").render(context).encode("utf-8")


def write_run_report(run_dir: Path, log: dict[str, Any]) -> Path:
    """Render and write ``run_dir/report.html`` atomically; an OSError is an
    :class:`~cosmo_runner.errors.OutputWriteError` naming the file."""
    path = run_dir / REPORT_NAME
    write_atomic(path, render_run_report(run_dir, log))
    return path


def rewrite_report(run_dir: Path) -> Path:
    """``cosmo-runner report RUN``: write ``RUN/report.html`` from ``RUN/run_log.json``, or
    for a batch folder (``batch_log.json``, no run log) the batch's page.

    :class:`~cosmo_runner.errors.UsageError` (exit 2) when ``run_dir`` is neither,
    :class:`~cosmo_runner.errors.FileError` (exit 2) for a malformed log naming the field,
    :class:`~cosmo_runner.errors.OutputWriteError` (exit 5) when the page cannot be written.
    """
    from cosmo_runner.logread import check_run_log, read_document
    from cosmo_runner.schemas import validate_against
    from cosmo_runner.triage.runs import BATCH_LOG_NAME

    log_path = run_dir / LOG_NAME
    batch_path = run_dir / BATCH_LOG_NAME
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run folder (not a directory)")
    if not log_path.is_file() and batch_path.is_file():
        batch = read_document(batch_path)
        problems = validate_against("batch_log", batch)
        if problems:
            raise FileError(str(batch_path), problems)
        return write_batch_report(run_dir, batch)
    if not log_path.is_file():
        raise UsageError(f"{run_dir}: not a run folder (no {LOG_NAME} or {BATCH_LOG_NAME})")
    log = check_run_log(read_document(log_path), log_path, fields=REPORT_FIELDS)
    return write_run_report(run_dir, log)


# --------------------------------------------------------------------------- the context


def run_context(run_dir: Path, log: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, as plain data with every optional field filled in."""
    status = log.get("status") or "unknown"
    spec = log.get("spec") or {}
    analyses = [_analysis(run_dir, record) for record in log.get("analyses") or []]
    validators = [_validator(record) for record in log.get("validators") or []]
    smoke = log.get("smoke") or {}
    checks = list(smoke.get("checks") or [])
    error = log.get("error")
    run_path = str(log.get("out_dir") or run_dir)
    return {
        "version": __version__,
        "run_id": log.get("run_id") or "",
        "status": status,
        "exit_code": log.get("exit_code"),
        "ok": status == "succeeded",
        "spec_name": spec.get("name") or "(unnamed spec)",
        "spec": {
            "path": spec.get("path"),
            "resolved": spec.get("resolved"),
            "sha256": spec.get("sha256"),
        },
        "command": " ".join(log.get("command") or []),
        "started_at": log.get("started_at"),
        "finished_at": log.get("finished_at"),
        "duration_s": log.get("duration_s"),
        "failure": _failure(error, checks, validators, analyses),
        "validators": validators,
        "analyses": analyses,
        "environment": _environment_view(log.get("environment") or {}),
        "checks": [_check(c) for c in checks],
        "checks_counts": smoke.get("counts") or {},
        "gate_passed": smoke.get("passed"),
        "inputs": [
            {k: item.get(k) for k in ("id", "path", "resolved", "bytes", "sha256")}
            for item in log.get("inputs") or []
        ],
        "outputs": [
            {k: item.get(k) for k in ("path", "bytes", "sha256")}
            for item in log.get("outputs") or []
        ],
        "reproduce": [
            f"cosmo-runner verify {run_path}",
            f"cosmo-runner env diff {run_path} current",
        ],
    }


def _failure(
    error: Any,
    checks: list[dict[str, Any]],
    validators: list[dict[str, Any]],
    analyses: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """What went wrong, shown first: the error, failed gate checks, error findings."""
    if not isinstance(error, dict):
        return None
    findings = [
        {"validator": v["id"], **f}
        for v in validators
        for f in v["findings"]
        if f["level"] == "error"
    ][:20]
    gate = [c for c in checks if c.get("status") == "error"]
    shown = {f["message"] for f in findings} | {c.get("message") for c in gate}
    return {
        "type": error.get("type") or "error",
        "message": error.get("message") or "",
        # the error's own list, less what the findings and gate checks below already say
        "problems": [str(p) for p in error.get("problems") or [] if str(p) not in shown],
        "gate": gate,
        "findings": findings,
        "analyses": [a for a in analyses if a["status"] not in ("succeeded", "running")],
    }


def _check(check: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": check.get("name"),
        "status": check.get("status"),
        "message": check.get("message"),
        "expected": _brief(check.get("expected")),
        "observed": _brief(check.get("observed")),
    }


def _brief(value: Any, limit: int = 300) -> str:
    """A JSON-ish value as one short line for a table cell."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _validator(record: dict[str, Any]) -> dict[str, Any]:
    findings = []
    for finding in record.get("findings") or []:
        location = finding.get("location") or {}
        where = ", ".join(
            f"{key} {location[key]}"
            for key in ("file", "line", "column", "study", "pointer")
            if location.get(key) not in (None, "")
        )
        findings.append(
            {
                "level": finding.get("level") or "info",
                "code": finding.get("code") or "",
                "message": finding.get("message") or "",
                "where": where,
            }
        )
    error = record.get("error")
    return {
        "id": record.get("id") or "",
        "kind": record.get("kind") or "",
        "input": record.get("input") or "",
        "status": record.get("status") or "",
        "findings": findings,
        "omitted": list(record.get("omitted") or []),
        "dropped_lines": list(record.get("dropped_lines") or []),
        "error": f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else "",
    }


def _read_recorded(run_dir: Path, record: Any) -> tuple[bytes | None, str | None]:
    """The bytes of an output the log records, or None and why they are not shown."""
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        return None, "not recorded"
    rel = record["path"]
    root = run_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        return None, f"{rel}: outside the run folder, not read"
    try:
        data = read_regular(path, limit=MAX_EMBED_BYTES)
    except FileError as exc:
        return None, f"{rel}: {exc.problems[0] if exc.problems else 'cannot read'}"
    expected = record.get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        return None, f"{rel}: changed since the run (its sha256 is not the one in the log)"
    return data, None


def _analysis(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    notes: list[str] = []
    result: dict[str, Any] | None = None
    if record.get("result") is not None:
        data, note = _read_recorded(run_dir, record.get("result"))
        if note:
            notes.append(note)
        if data is not None:
            try:
                loaded = json.loads(data)
            except ValueError:
                notes.append(f"{record['result']['path']}: not JSON")
            else:
                result = loaded if isinstance(loaded, dict) else None
    summary = record.get("summary") or {}
    source = result if result is not None else summary
    error = record.get("error")
    return {
        "id": record.get("id") or "",
        "status": record.get("status") or "",
        "error": f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else "",
        "notes": notes,
        "from_summary": result is None and bool(summary),
        "result": _result_view(source) if source else None,
        "plots": _plots(run_dir, record.get("plots") or [], notes),
    }


def _plots(run_dir: Path, records: list[Any], notes: list[str]) -> list[dict[str, str]]:
    plots = []
    for record in records:
        path = record.get("path") if isinstance(record, dict) else None
        if not isinstance(path, str) or not path.endswith(".svg"):
            continue
        data, note = _read_recorded(run_dir, record)
        if data is None:
            notes.append(note or f"{path}: not shown")
            continue
        stem = Path(path).name.removesuffix(".svg")
        kind = stem.rsplit(".", 1)[-1] if stem.rsplit(".", 1)[-1] in _PLOT_KINDS else "plot"
        plots.append(
            {
                "kind": kind,
                "path": path,
                "src": "data:image/svg+xml;base64," + base64.b64encode(data).decode("ascii"),
            }
        )
    return plots


def _result_view(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one analysis as rows for the template (absent ones left out)."""

    def ci(block: Any) -> tuple[Any, Any]:
        return (block.get("lb"), block.get("ub")) if isinstance(block, dict) else (None, None)

    stat_name = "z" if result.get("df") is None else "t"  # t, knha, adhoc: t with df
    rows = [
        ("k (studies)", result.get("k"), None, None),
        ("estimate", result.get("estimate"), result.get("ci_lb"), result.get("ci_ub")),
        ("standard error", result.get("se"), None, None),
        (f"{stat_name} statistic", result.get("statistic"), None, None),
        ("prediction interval", None, result.get("pi_lb"), result.get("pi_ub")),
        ("tau² (Q-profile CI)", result.get("tau2"), *ci(result.get("tau2_ci"))),
        ("tau", result.get("tau"), None, None),
        ("I² % (CI)", result.get("I2"), *ci(result.get("I2_ci"))),
        ("H² (CI)", result.get("H2"), *ci(result.get("H2_ci"))),
    ]
    table = [
        {"name": name, "value": value, "lb": lb, "ub": ub}
        for name, value, lb, ub in rows
        if value is not None or lb is not None
    ]
    transformed = result.get("transformed")
    egger = result.get("egger") if isinstance(result.get("egger"), dict) else None
    subgroup_test = result.get("subgroup_test")
    return {
        "measure": result.get("measure"),
        "method": result.get("method"),
        "test": result.get("test"),
        "level": result.get("level"),
        "table": table,
        "pval": result.get("pval"),
        "Q": result.get("Q"),
        "Q_df": result.get("Q_df"),
        "Q_pval": result.get("Q_pval"),
        "transformed": transformed if isinstance(transformed, dict) else None,
        "coefficients": [c for c in result.get("coefficients") or [] if isinstance(c, dict)],
        "moderators": {
            key: result.get(key)
            for key in (
                "moderator_tau2",
                "moderator_I2",
                "R2",
                "QM",
                "QM_df",
                "QM_pval",
                "QE",
                "QE_df",
                "QE_pval",
            )
            if result.get(key) is not None
        },
        "subgroups": [g for g in result.get("subgroups") or [] if isinstance(g, dict)],
        "subgroup_test": subgroup_test if isinstance(subgroup_test, dict) else None,
        "egger": egger,
        "leave_one_out": [r for r in result.get("leave_one_out") or [] if isinstance(r, dict)],
        "more": _more_results(result),
        "studies": [s for s in result.get("studies") or [] if isinstance(s, dict)],
        "warnings": [str(w) for w in result.get("warnings") or []],
        "converged": result.get("converged"),
        "iterations": result.get("iterations"),
    }


#: Result keys the page shows in their own place; any other block is listed under "More".
_SHOWN_KEYS = frozenset(
    {
        "H2",
        "H2_ci",
        "I2",
        "I2_ci",
        "Q",
        "QE",
        "QE_df",
        "QE_pval",
        "QM",
        "QM_df",
        "QM_pval",
        "Q_df",
        "Q_pval",
        "R2",
        "added_half",
        "algorithm",
        "ci_lb",
        "ci_ub",
        "coefficients",
        "converged",
        "df",
        "dropped_studies",
        "egger",
        "estimate",
        "id",
        "iterations",
        "k",
        "leave_one_out",
        "level",
        "measure",
        "method",
        "moderator_I2",
        "moderator_algorithm",
        "moderator_converged",
        "moderator_iterations",
        "moderator_tau2",
        "moderator_warnings",
        "pi_lb",
        "pi_ub",
        "pval",
        "result_version",
        "se",
        "statistic",
        "studies",
        "tau",
        "tau2",
        "tau2_ci",
        "tau2_se",
        "test",
        "transformed",
        "warnings",
        "subgroups",
        "subgroup_test",
    }
)
_MORE_ROWS = 500


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _flat(value: Any) -> Any:
    """A list of scalars as one comma-separated cell (moderator levels, test terms); any
    other value as it is."""
    if isinstance(value, list) and all(_scalar(v) for v in value):
        return ", ".join("null" if v is None else str(v) for v in value)
    return value


def _more_results(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Result blocks this page has no place of its own for (a newer analysis' diagnostics,
    say): a flat object as ``key value`` pairs, a list of flat objects as a table (a list of
    scalars counts as one value, shown comma-separated)."""
    more: list[dict[str, Any]] = []
    for key in sorted(set(result) - _SHOWN_KEYS):
        value = result[key]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            value = [{k: _flat(x) for k, x in v.items()} for v in value]
        else:
            value = _flat(value)
        if _scalar(value):
            more.append({"name": key, "pairs": [("", value)], "columns": [], "rows": []})
        elif isinstance(value, dict) and all(_scalar(v) for v in value.values()):
            more.append({"name": key, "pairs": sorted(value.items()), "columns": [], "rows": []})
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, dict) and all(_scalar(x) for x in v.values()) for v in value)
        ):
            columns = list(dict.fromkeys(k for row in value for k in row))
            rows = [[row.get(c) for c in columns] for row in value[:_MORE_ROWS]]
            more.append(
                {
                    "name": key,
                    "pairs": [],
                    "columns": columns,
                    "rows": rows,
                    "left_out": max(0, len(value) - _MORE_ROWS),
                }
            )
    return more


def _environment_view(environment: dict[str, Any]) -> dict[str, Any]:
    observed = environment.get("observed") or {}
    python = observed.get("python") or {}
    blas = observed.get("blas") or {}
    threadpools = observed.get("threadpools") or {}
    numpy_blas = threadpools.get("numpy_blas") if isinstance(threadpools, dict) else None
    lock = environment.get("lock") or {}
    runner = observed.get("runner") or {}

    def lib(value: Any) -> str:
        if isinstance(value, dict):
            return " ".join(str(value.get(k)) for k in ("name", "version") if value.get(k))
        return "" if value is None else str(value)

    loaded = ""
    if isinstance(numpy_blas, dict):
        loaded = " ".join(
            str(numpy_blas.get(k))
            for k in ("internal_api", "version", "architecture", "threading_layer")
            if numpy_blas.get(k)
        )
    return {
        "env_id": environment.get("env_id"),
        "python": " ".join(
            str(python.get(k)) for k in ("implementation", "version_short") if python.get(k)
        ),
        "python_executable": python.get("executable"),
        "platform": observed.get("platform"),
        "machine": observed.get("machine"),
        "libc": observed.get("libc"),
        "blas": lib(blas.get("blas")) if isinstance(blas, dict) else "",
        "lapack": lib(blas.get("lapack")) if isinstance(blas, dict) else "",
        "blas_loaded": loaded,
        "lock": {
            "path": lock.get("path"),
            "sha256": lock.get("sha256"),
            "verdict": lock.get("verdict"),
        },
        "runner": " ".join(str(runner.get(k)) for k in ("version", "git_commit") if runner.get(k)),
        "packages": [str(p) for p in observed.get("packages") or []],
    }


# --------------------------------------------------------------------------- batches

#: A run log larger than this is not read for the batch table (its row says so).
MAX_ROW_LOG_BYTES = 64 * MiB


def render_batch_report(batch_dir: Path, batch: dict[str, Any]) -> bytes:
    """The batch's page: a summary, then one row per spec (status, exit code, each
    analysis' estimate, CI and I², a link to the run's own report.html)."""
    context = batch_context(batch_dir, redact_document(batch))
    return _environment().get_template("batch_report.html.j2").render(context).encode("utf-8")


def write_batch_report(batch_dir: Path, batch: dict[str, Any]) -> Path:
    """Render and write ``batch_dir/report.html`` atomically (an OSError is an
    :class:`~cosmo_runner.errors.OutputWriteError`)."""
    path = batch_dir / REPORT_NAME
    write_atomic(path, render_batch_report(batch_dir, batch))
    return path


def _run_row(batch_dir: Path, rel: Any) -> dict[str, Any]:
    """What a batch row shows of one run folder: its log's status and analysis summaries."""
    row: dict[str, Any] = {"analyses": [], "note": "", "link": None, "run_id": None}
    if not isinstance(rel, str) or not rel:
        return row
    root = batch_dir.resolve()
    run_dir = (root / rel).resolve()
    if not run_dir.is_relative_to(root):
        row["note"] = f"{rel}: outside the batch folder, not read"
        return row
    try:
        log = json.loads(read_regular(run_dir / LOG_NAME, limit=MAX_ROW_LOG_BYTES))
    except (FileError, ValueError) as exc:
        problem = exc.problems[0] if isinstance(exc, FileError) and exc.problems else "not JSON"
        row["note"] = f"{rel}/{LOG_NAME}: {problem}"
        return row
    if not isinstance(log, dict):
        row["note"] = f"{rel}/{LOG_NAME}: not a run log"
        return row
    row["run_id"] = log.get("run_id") if isinstance(log.get("run_id"), str) else None
    row["log_status"] = log.get("status") if isinstance(log.get("status"), str) else None
    row["log_exit_code"] = log.get("exit_code") if isinstance(log.get("exit_code"), int) else None
    if (run_dir / REPORT_NAME).is_file():
        row["link"] = f"{Path(rel).as_posix()}/{REPORT_NAME}"
    for analysis in log.get("analyses") or []:
        if not isinstance(analysis, dict):
            continue
        found = analysis.get("summary")
        summary: dict[str, Any] = found if isinstance(found, dict) else {}
        row["analyses"].append(
            {
                "id": str(analysis.get("id") or ""),
                "status": str(analysis.get("status") or ""),
                **{k: _number(summary.get(k)) for k in ("estimate", "ci_lb", "ci_ub", "I2")},
            }
        )
    return row


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def batch_context(batch_dir: Path, batch: dict[str, Any]) -> dict[str, Any]:
    """The batch page's data: ``specs`` rows when the log has them (``cosmo-runner batch``),
    else one row per listed run folder (a minimal batch log, as ``runs`` reads it)."""
    rows = []
    specs = batch.get("specs")
    if isinstance(specs, list):
        for entry in specs:
            if not isinstance(entry, dict):
                continue
            row = _run_row(batch_dir, entry.get("run_dir"))
            row.update(
                name=str(entry.get("key") or entry.get("spec") or ""),
                spec=str(entry.get("spec") or ""),
                status=str(entry.get("status") or row.get("log_status") or "unknown"),
                exit_code=entry.get("exit_code"),
                message=str(entry.get("message") or ""),
            )
            rows.append(row)
    else:
        for item in batch.get("runs") or []:
            rel = item.get("path") if isinstance(item, dict) else None
            row = _run_row(batch_dir, rel)
            row.update(
                name=str(rel or ""),
                spec="",
                status=row.get("log_status") or "unknown",
                exit_code=row.get("log_exit_code"),
                message="",
            )
            rows.append(row)
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["status"]] = totals.get(row["status"], 0) + 1
    workers = [w for w in batch.get("workers") or [] if isinstance(w, dict)]
    error = batch.get("error") if isinstance(batch.get("error"), dict) else None
    return {
        "version": __version__,
        "batch_id": str(batch.get("batch_id") or ""),
        "status": str(batch.get("status") or "unknown"),
        "exit_code": batch.get("exit_code"),
        "ok": batch.get("status") == "succeeded",
        "started_at": batch.get("started_at"),
        "ended_at": batch.get("ended_at"),
        "expected_env_id": batch.get("expected_env_id"),
        "command": " ".join(str(c) for c in batch.get("command") or []),
        "error": f"{error.get('type')}: {error.get('message')}" if error else "",
        "rows": rows,
        "totals": sorted(totals.items()),
        "workers": [
            {k: w.get(k) for k in ("name", "address", "env_id", "status", "reason", "specs")}
            for w in workers
        ],
        "env_ids": sorted({str(w["env_id"]) for w in workers if w.get("env_id")}),
    }
