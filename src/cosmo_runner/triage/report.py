"""Human-readable summaries for the terminal: pure functions from documents to text."""

from __future__ import annotations

from typing import Any

from cosmo_runner.env.smoke import SmokeReport


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "NA"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def smoke_summary(environment: dict[str, Any], report: SmokeReport) -> str:
    observed = environment["observed"]
    lock = environment["lock"]
    counts = report.as_dict()["counts"]
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [
        f"cosmo-runner smoke: {verdict}  env_id {environment['env_id']}",
        f"  python    {observed['python']['version_short']} {observed['python']['implementation']}  {observed['python']['executable']}",
        f"  platform  {observed['platform']} ({observed['machine']})",
        f"  manifest  {environment['manifest']['path']} ({environment['manifest']['source']})",
        f"  lock      {lock['path']}  {lock['verdict']}",
        f"  checks    {counts['ok']} ok, {counts['warn']} warning(s), {counts['error']} error(s)",
    ]
    lines += [f"  {c.status.upper():<5} {c.message}" for c in report.checks if c.status != "ok"]
    return "\n".join(lines)


#: How the summary names the methods that pool 2x2 tables (the others by their code).
_POOLED = {"MH": "Mantel-Haenszel", "PETO": "Peto"}


def run_summary(log: dict[str, Any], log_path: Any) -> str:
    lines = [f"run {log['run_id']}: {log['status']} (exit {log['exit_code']})"]
    for validator in log.get("validators", []):
        findings = validator.get("findings", [])
        errors = sum(f["level"] == "error" for f in findings)
        lines.append(
            f"  validator {validator['id']}: {validator['status']}"
            f" ({errors} error(s), {len(findings) - errors} other finding(s))"
        )
    for analysis in log.get("analyses", []):
        summary = analysis.get("summary")
        if analysis["status"] != "succeeded" or not summary:
            lines.append(f"  analysis {analysis['id']}: {analysis['status']}")
            continue
        line = (
            f"  analysis {analysis['id']}: k={summary['k']} estimate {_fmt(summary['estimate'])} "
            f"[{_fmt(summary['ci_lb'])}, {_fmt(summary['ci_ub'])}] tau2 {_fmt(summary['tau2'])} "
            f"I2 {_fmt(summary['I2'], 1)}%"
        )
        method = summary.get("method")
        if method:
            line += f" ({_POOLED.get(method, method)})"
        moderators = [
            f"    moderator {coef['term']}: {_fmt(coef['estimate'])} "
            f"[{_fmt(coef['ci_lb'])}, {_fmt(coef['ci_ub'])}] p {coef['pval']:.3g}; "
            f"residual tau2 {_fmt(summary.get('moderator_tau2'))}, R2 {_fmt(summary.get('R2'), 1)}%"
            for coef in summary.get("coefficients") or []
            if coef["term"] != "intrcpt"
        ]
        transformed = summary.get("transformed")
        if transformed:
            line += (
                f"  (back-transformed {_fmt(transformed['estimate'])} "
                f"[{_fmt(transformed['ci_lb'])}, {_fmt(transformed['ci_ub'])}])"
            )
        lines.append(line)
        lines.extend(moderators)
    if log_path is not None:
        lines.append(f"  log: {log_path}")
    return "\n".join(lines)


def batch_summary(log: dict[str, Any], log_path: Any) -> str:
    """The end of a batch: totals, workers refused or lost, where the batch log is."""
    totals = log.get("totals") or {}
    shown = ", ".join(
        f"{totals[s]} {s}"
        for s in ("succeeded", "reused", "failed", "lost", "interrupted")
        if totals.get(s)
    )
    lines = [
        f"batch {log['batch_id']}: {log['status']} (exit {log['exit_code']}): "
        f"{totals.get('specs', 0)} specs{': ' + shown if shown else ''}"
    ]
    workers = log.get("workers") or []
    accepted = sum(w["status"] == "accepted" for w in workers)
    if workers:
        lines.append(f"  workers   {accepted} accepted, {len(workers) - accepted} refused or lost")
    for worker in workers:
        if worker["status"] != "accepted":
            lines.append(f"  {worker['status'].upper():<8} {worker['name']}: {worker['reason']}")
    for spec in log.get("specs") or []:
        if spec["status"] in ("failed", "lost"):
            lines.append(
                f"  {spec['status'].upper():<8} {spec['key']} (exit {spec['exit_code']}): "
                f"{spec.get('message')}"
            )
            if len(lines) > 25:
                lines.append("  ... (the batch log lists every spec)")
                break
    lines.append(f"  log       {log_path}")
    return "\n".join(lines)
