"""Terminal text for triage: ``env diff`` tables and ``verify`` reports (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosmo_runner.env.diff import Difference, EnvDiff
from cosmo_runner.errors import EXIT_OK
from cosmo_runner.triage.verify import FieldDiff, OutputComparison, VerifyReport

MAX_VALUE = 48
MAX_FIELDS = 8
MAX_NAMES = 5
SECTION_LABELS = {
    "python": "python",
    "system": "",
    "packages": "package",
    "lock": "lock",
    "manifest": "manifest",
    "manifest_content": "manifest",
    "env_vars": "env var",
    "blas": "",
    "threadpools": "loaded",
    "cpu": "cpu",
    "runner": "runner",
}
SECTION_NAMES = {
    "manifest_content": "manifest",
    "env_vars": "env vars",
    "system": "platform",
    "threadpools": "loaded blas",
}
# Shown by a reproduced verify whose replay ran under another Python (issue 16): the
# outputs reproduced across those interpreters.
PYTHON_KEYS_SHOWN = ("version", "implementation")


def _value(value: Any, key: str = "") -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else repr(value)
    if key == "sha256" and len(text) == 64:
        return text[:12] + "..."
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _label(d: Difference) -> str:
    prefix = SECTION_LABELS.get(d.section, d.section)
    key = (
        d.key.replace("_", " ")
        if d.section in ("python", "system", "cpu", "lock", "manifest", "threadpools")
        else d.key
    )
    return f"{prefix} {key}".strip()


def _aligned(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]


def _side(name: str, view: dict[str, Any]) -> str:
    facts = [view["kind"]]
    if view["status"]:
        facts.append(f"status {view['status']}")
    facts.append(f"env_id {view['env_id'] or 'unknown'}")
    return f"{name}: {view['source']} ({', '.join(facts)})"


def env_id_phrase(result: EnvDiff) -> str:
    match = result.env_ids_match
    if match is None:
        unknown = [n for n, v in (("A", result.a), ("B", result.b)) if v.env_id is None]
        return f"env id unknown for {' and '.join(unknown)} (no recorded environment)"
    if match:
        return f"env ids match ({result.a.env_id})"
    return f"env ids differ ({result.a.env_id} vs {result.b.env_id})"


def verdict(result: EnvDiff) -> str:
    """The one-line verdict: identical or how many differences where, and the env ids."""
    if result.identical:
        return f"identical; {env_id_phrase(result)}"
    counts: dict[str, int] = {}
    for section, n in result.counts().items():
        name = SECTION_NAMES.get(section, section)
        counts[name] = counts.get(name, 0) + n
    sections = ", ".join(f"{name} {n}" for name, n in counts.items())
    return (
        f"different: {len(result.differences)} difference(s) ({sections}); {env_id_phrase(result)}"
    )


def diff_table(result: EnvDiff, *, header: bool = True) -> str:
    """A short aligned table of the differences only, then the one-line verdict."""
    data = result.as_dict()
    lines = [_side("A", data["a"]), _side("B", data["b"])] if header else []
    if result.differences:
        rows = [("", "A", "B")] + [
            (_label(d), _value(d.a, d.key), _value(d.b, d.key)) for d in result.differences
        ]
        lines += _aligned(rows)
    if result.not_compared:
        names = ", ".join(dict.fromkeys(SECTION_NAMES.get(s, s) for s in result.not_compared))
        lines.append(f"  not compared (known on one side only): {names}")
    lines += [f"  note: {n}" for n in result.notes]
    lines.append(verdict(result))
    return "\n".join(lines)


def _field(f: FieldDiff | None, what: str) -> str:
    if f is None:
        return ""
    amount = f.abs_diff if what == "abs" else f.rel_diff
    return f"largest {what} difference {f.pointer}: {f.original!r} -> {f.replay!r} ({what} {amount:.3g})"


def _output_lines(output: OutputComparison) -> list[str]:
    """The lines of one output that is not identical: status, fields, largest differences."""
    line = f"  {output.status.upper()}: {output.path}"
    if output.fields:
        line += f" ({len(output.fields)} field(s))"
    if output.note:
        line += f"; {output.note}"
    lines = [line]
    if output.tampered:
        lines.append("    changed since the run: its sha256 differs from the run log's")
    if len(output.fields) > 1:
        shown = ", ".join(f.pointer for f in output.fields[:MAX_FIELDS])
        more = len(output.fields) - MAX_FIELDS
        lines.append(f"    fields: {shown}" + (f" (and {more} more)" if more > 0 else ""))
    non_numeric = [f for f in output.fields if not f.numeric]
    lines += [f"    {f.pointer}: {f.original!r} -> {f.replay!r}" for f in non_numeric[:MAX_FIELDS]]
    if output.max_abs is not None:
        lines.append("    " + _field(output.max_abs, "abs"))
        lines.append("    " + _field(output.max_rel, "rel"))
    return lines


def render_report(report: VerifyReport) -> str:
    """What ``cosmo-runner verify`` prints: the verdict, each differing output, the env diff."""
    lines = [f"verify {report.run_dir} (run {report.run_id})"]
    lines.append(f"  replay: {report.replay_dir} (exit {report.replay_exit_code})")
    lines += [
        f"  version differs: {v.describe()}, original vs replay (another cosmo-runner wrote it)"
        for v in report.versions
    ]
    if report.smoke_failures:
        lines += [f"  environment gate: {m}" for m in report.smoke_failures]
        lines += [f"  hint: {h}" for h in report.hints]
    elif report.replay_error and report.exit_code != EXIT_OK:
        lines.append(f"  replay error: {report.replay_error}")
    for output in report.outputs:
        if output.status != "equal":
            lines += _output_lines(output)
    equal = sum(o.status == "equal" for o in report.outputs)
    if report.outputs:
        lines.append(f"  outputs: {equal} of {len(report.outputs)} identical by sha256")
    if report.env_diff is not None:
        if report.exit_code != EXIT_OK and not report.env_diff.identical:
            lines.append("environment, original run (A) vs replay (B):")
            lines += [
                "  " + line for line in diff_table(report.env_diff, header=False).splitlines()
            ]
        else:
            lines.append(f"  environment: {verdict(report.env_diff)}")
            lines += [
                f"  python {d.key}: {d.a} (original) vs {d.b} (replay)"
                for d in report.env_diff.differences
                if d.section == "python" and d.key in PYTHON_KEYS_SHOWN
            ]
            lines += [f"  note: {n}" for n in report.env_diff.notes]
    lines.append(_verdict_line(report))
    return "\n".join(lines)


def _verdict_line(report: VerifyReport) -> str:
    outcome = report.outcome
    if outcome == "reproduced within rtol":
        _, max_rel = report.largest()
        extra = f"; {_field(max_rel, 'rel')}" if max_rel else ""
        return f"reproduced within rtol {report.rtol}{extra} (exit {report.exit_code})"
    if outcome == "differs":
        paths = [o.path for o in report.differing]
        parts = []
        if report.replay_exit_code:
            parts.append(f"the replay failed (exit {report.replay_exit_code})")
        if paths:
            more = len(paths) - MAX_NAMES
            parts.append(", ".join(paths[:MAX_NAMES]) + (f" (and {more} more)" if more > 0 else ""))
        return f"differs: {'; '.join(parts)} (exit {report.exit_code})"
    return f"{outcome} (exit {report.exit_code})"
