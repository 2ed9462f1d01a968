"""Errors carry their details as fields; every exit code comes from cosmo_runner.errors."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cosmo_runner import errors
from cosmo_runner.errors import (
    AnalysisError,
    EnvironmentGateError,
    FileError,
    Interrupted,
    SpecError,
    StepError,
    ValidationFailed,
    exit_code_for,
)

SRC = Path(errors.__file__).resolve().parent
CODES = {
    errors.EXIT_OK,
    errors.EXIT_CRASH,
    errors.EXIT_USAGE,
    errors.EXIT_ENVIRONMENT,
    errors.EXIT_VALIDATION,
    errors.EXIT_STEP,
    errors.EXIT_SIGINT,
    errors.EXIT_SIGTERM,
}
# An int where an exit code goes: returned from main()/cmd_* (return N, return A if c else N),
# assigned to a *code* name or keyword, compared (==, !=, in) with a *code* value, or given to
# exit(). Another program's ``returncode`` (pip check's) is that program's, not ours.
CODE_NAME = re.compile(r"(^|_)(exit_)?code$")


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "errors.py")


def _is_code_int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value in CODES


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _ints(node: ast.AST | None) -> list[ast.Constant]:
    """The exit-code-like int literals ``node`` evaluates to (both arms of ``a if c else b``)."""
    if isinstance(node, ast.IfExp):
        return _ints(node.body) + _ints(node.orelse)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [c for e in node.elts for c in _ints(e)]
    return [node] if isinstance(node, ast.Constant) and _is_code_int(node) else []


def _returned_codes(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.Constant]:
    """Literals returned by main(), a cmd_* function or the dispatcher (their int is a code)."""
    returns_int = func.returns is not None and _name(func.returns) == "int"
    if not returns_int or not (
        func.name == "main" or func.name.startswith(("cmd_", "_dispatch", "_failure"))
    ):
        return []
    return [c for n in ast.walk(func) if isinstance(n, ast.Return) for c in _ints(n.value)]


def _codes_at(node: ast.AST) -> list[ast.Constant]:
    """Literals assigned to, passed as, compared with (==, !=, in) a *code*, or exit()ed."""
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        named = any(CODE_NAME.search(_name(t)) for t in targets)
        return _ints(node.value) if named else []
    if isinstance(node, ast.keyword):
        return _ints(node.value) if node.arg and CODE_NAME.search(node.arg) else []
    if isinstance(node, ast.Compare):
        equality = all(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops)
        sides = [node.left, *node.comparators]
        if equality and any(CODE_NAME.search(_name(side)) for side in sides):
            return [c for side in sides for c in _ints(side)]
        return []
    if isinstance(node, ast.Call) and _name(node.func) == "exit":
        return [c for a in node.args for c in _ints(a)]
    return []


def _literal_codes(tree: ast.AST) -> list[tuple[int, int]]:
    """(line, value) of every int literal used as an exit code."""
    found: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += _returned_codes(node)
        found += _codes_at(node)
    return [(c.lineno, c.value) for c in found]


def test_no_exit_code_literal_outside_errors_py() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {value}"
        for path in _sources()
        for line, value in _literal_codes(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == [], "exit codes come from cosmo_runner.errors: " + ", ".join(offenders)


@pytest.mark.parametrize(
    "code",
    [
        "def cmd_x(a) -> int:\n    return 0 if a else 3\n",
        "def main() -> int:\n    return 130\n",
        "x.exit_code = 2\n",
        "f(exit_code=4)\n",
        "if result.exit_code in (130, 143):\n    pass\n",
        "if report.exit_code != 0:\n    pass\n",
        "sys.exit(2)\n",
    ],
)
def test_the_literal_finder_finds_each_kind(code: str) -> None:
    assert _literal_codes(ast.parse(code)) != []


def test_no_caller_parses_an_error_message() -> None:
    parsing = re.compile(
        r"str\((exc|error|err|e)\)\s*\.\s*(split|rsplit|partition|startswith|endswith|find|index)"
        r"|\bin\s+str\((exc|error|err|e)\)|\.message\s*\.\s*(split|partition|startswith)"
    )
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in _sources()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if parsing.search(line)
    ]
    assert offenders == []


def test_validation_failed_carries_ids_problems_and_count() -> None:
    error = ValidationFailed(["table", "years"], ["a.csv line 2: x", "a.csv line 3: y"], 7)
    assert (error.validator_ids, error.problems, error.count) == (
        ["table", "years"],
        ["a.csv line 2: x", "a.csv line 3: y"],
        7,
    )
    assert error.lines() == [
        "7 validator error(s) in table, years",
        "a.csv line 2: x",
        "a.csv line 3: y",
    ]
    assert str(error) == "7 validator error(s) in table, years; first: a.csv line 2: x"
    assert error.details() == {"problems": error.problems}
    assert exit_code_for(error) == errors.EXIT_VALIDATION


def test_file_errors_print_one_line_per_problem() -> None:
    error = SpecError("spec.json", ["/a: bad", "/b: worse"])
    assert error.path == "spec.json"
    assert error.lines() == ["spec.json: /a: bad", "spec.json: /b: worse"]
    assert str(error) == "spec.json: /a: bad (and 1 more)"
    assert FileError("x.json", []).lines() == ["x.json: invalid"]
    assert exit_code_for(error) == errors.EXIT_USAGE


def test_analysis_errors_name_their_analysis_by_field() -> None:
    plain = AnalysisError("k = 1: at least 2 studies are needed")
    assert (plain.analysis_id, str(plain)) == (None, "k = 1: at least 2 studies are needed")
    named = plain.of_analysis("bcg-reml")
    assert named.analysis_id == "bcg-reml" and named.reason == plain.reason
    assert str(named) == "analysis 'bcg-reml': k = 1: at least 2 studies are needed"

    run = StepError.analyses(
        [("bcg-reml", named), ("bcg-dl", ZeroDivisionError("float division by zero"))]
    )
    assert run.analysis_ids == ["bcg-reml", "bcg-dl"]
    assert run.problems == [
        "analysis 'bcg-reml': k = 1: at least 2 studies are needed",
        "analysis 'bcg-dl': ZeroDivisionError: float division by zero",
    ]
    assert str(run) == "analysis 'bcg-reml': k = 1: at least 2 studies are needed (and 1 more)"
    assert run.details() == {"problems": run.problems}
    assert exit_code_for(run) == errors.EXIT_STEP
    assert StepError("internal error").details() == {}


def test_every_error_maps_through_exit_code_for() -> None:
    import signal

    assert exit_code_for(EnvironmentGateError(["python 3.10"])) == errors.EXIT_ENVIRONMENT
    assert exit_code_for(Interrupted(signal.SIGINT)) == errors.EXIT_SIGINT
    assert exit_code_for(Interrupted(signal.SIGTERM)) == errors.EXIT_SIGTERM
    assert exit_code_for(RuntimeError("a bug")) == errors.EXIT_CRASH
    assert EnvironmentGateError(["a", "b"]).details() == {"failures": ["a", "b"]}
