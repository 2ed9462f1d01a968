"""One error root, and every exit code: the constants below and :func:`exit_code_for`, the one
mapping from an error to its code (used by :func:`cosmo_runner.cli.main` and the run log).

Exit codes of ``run``, ``validate`` and ``smoke`` (documented in the README, tested in
tests/test_cli.py; no other module writes an exit code as a number, tests/test_errors.py):

====  ===============================================================
0     success
1     a crash (a bug): never returned on purpose
2     usage error, invalid spec or input, unusable output directory
3     the environment gate (smoke test) failed
4     validators found error-level problems
5     an analysis or another internal step failed
6     batch: some specs failed or were lost (each with its own code in the batch log)
130   interrupted by SIGINT
143   interrupted by SIGTERM
====  ===============================================================

``env diff`` exits :data:`EXIT_SAME` or :data:`EXIT_DIFFERENT`, ``verify``
:data:`EXIT_REPRODUCED` or :data:`EXIT_DIFFERS` (or an error's code).

Every subclass builds a one-line ``message`` naming the file, field or package from the
data it carries as attributes (``path``, ``problems``, ``validator_ids``, ``analysis_id``
...). Callers read those attributes, never the message: :meth:`CosmoError.lines` is what
the CLI prints, :meth:`CosmoError.details` what the run log records beside the message.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: Echoed user values (a bad field's value, a key, an unknown kind) are cut to this length.
ECHO_LIMIT = 200

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_VALIDATION = 4
EXIT_STEP = 5
EXIT_BATCH_INCOMPLETE = 6
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
EXIT_SAME = 0  # env diff: the two environments are identical
EXIT_DIFFERENT = 1  # env diff: they differ (a finding, not a crash)
EXIT_REPRODUCED = 0  # verify: every output identical (or within --rtol)
EXIT_DIFFERS = 1  # verify: an output differs


# What str.splitlines splits at, each as its escape: written so in a one-line message
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (10, 11, 12, 13, 28, 29, 30, 0x85, 0x2028, 0x2029)}


def on_one_line(text: str) -> str:
    """``text`` (a key, a JSON pointer) with every line break written as its escape
    (``\\n``, ``\\x85``, ``\\u2028``): a message that echoes it stays one line."""
    return text.translate(_LINE_BREAKS)


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text)} characters)"


class CosmoError(Exception):
    """Root of every error cosmo-runner raises on purpose."""

    exit_code: ClassVar[int] = EXIT_STEP

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def lines(self) -> list[str]:
        """What the CLI prints, one ``cosmo-runner: error:`` line each."""
        return [self.message]

    def details(self) -> dict[str, Any]:
        """Structured fields the run log records beside type and message (JSON-ready)."""
        return {}


class UsageError(CosmoError):
    """Bad command-line usage, or an argument naming something unusable."""

    exit_code = EXIT_USAGE


class FileError(UsageError):
    """A file cannot be used: missing, not a regular file, unreadable, too large, not strict
    JSON (see :mod:`cosmo_runner.readfile`), or invalid against its schema.

    ``problems`` lists every problem, one line each; JSON problems start with their JSON
    pointer (``"/analyses/0/level: ..."``).
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "invalid"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{path}: {first}{more}")

    def lines(self) -> list[str]:
        return [f"{self.path}: {p}" for p in self.problems] or [self.message]

    def details(self) -> dict[str, Any]:
        return {"problems": self.problems}


class SpecError(FileError):
    """The run spec is missing, unreadable, not strict JSON, or invalid against its schema."""


class InputError(UsageError):
    """An input file is missing, unreadable, or its sha256 differs from its pin."""


class OutputDirError(UsageError):
    """The output directory exists and is not empty, or cannot be written."""


class EnvironmentGateError(CosmoError):
    """The smoke test failed: the environment is not the one the manifest expects.

    ``failures`` are the one-line messages of the failing error-level checks.
    """

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, failures: list[str]) -> None:
        self.failures = list(failures)
        first = self.failures[0] if self.failures else "environment check failed"
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        super().__init__(f"environment gate failed: {first}{more}")

    def details(self) -> dict[str, Any]:
        return {"failures": self.failures}


class ManifestError(EnvironmentGateError):
    """The environment manifest (or its lock) is missing, corrupt or schema-invalid."""

    def __init__(self, message: str) -> None:
        super().__init__([message])
        self.message = message


class ValidationFailed(CosmoError):
    """Validators reported error-level findings; no analysis ran.

    ``problems`` holds the error-level findings' messages kept in the log (one line each;
    validators keep at most 100 per kind of finding), ``count`` the number of all of them.
    """

    exit_code = EXIT_VALIDATION

    def __init__(
        self, validator_ids: list[str], problems: list[str], count: int | None = None
    ) -> None:
        self.validator_ids = list(validator_ids)
        self.problems = list(problems)
        self.count = len(self.problems) if count is None else count
        super().__init__(
            f"{self.headline}; first: {self.problems[0] if self.problems else 'unknown'}"
        )

    @property
    def headline(self) -> str:
        """How many error findings, in which validators (the first line the CLI prints)."""
        return f"{self.count} validator error(s) in {', '.join(self.validator_ids)}"

    def lines(self) -> list[str]:
        return [self.headline, *self.problems]

    def details(self) -> dict[str, Any]:
        return {"problems": self.problems}


class StepError(CosmoError):
    """An analysis or another pipeline step failed.

    :meth:`analyses` builds the error of a run whose analyses failed: ``analysis_ids`` and
    ``problems`` (one line per failed analysis, ``analysis 'ID': ...``), the message naming
    the first.
    """

    exit_code = EXIT_STEP

    def __init__(
        self,
        message: str,
        *,
        analysis_ids: list[str] | None = None,
        problems: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.analysis_ids = list(analysis_ids or [])
        self.problems = list(problems or [])

    @classmethod
    def analyses(cls, failures: list[tuple[str, BaseException]]) -> StepError:
        """The run's error when the analyses ``failures`` (id, what it raised) failed."""
        problems = [
            f"analysis {analysis_id!r}: {_detail(error)}" for analysis_id, error in failures
        ]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return cls(problems[0] + more, analysis_ids=[i for i, _ in failures], problems=problems)

    def details(self) -> dict[str, Any]:
        return {"problems": self.problems} if self.problems else {}


class ValidatorError(StepError):
    """A validator raised, or returned something that is not a valid finding (a plugin bug
    the message names); the validator's status is ``error``."""


class OutputWriteError(StepError):
    """An output (result, plot, spec copy or the run log itself) could not be written.

    ``path`` is the file, ``reason`` the operating system's reason in lower case
    ("no space left on device").
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")

    @classmethod
    def from_os_error(cls, error: OSError, path: object = None) -> OutputWriteError:
        """The error for ``error`` raised while writing ``path`` (default: its filename)."""
        reason = error.strerror or str(error) or type(error).__name__
        where = path if path is not None else (error.filename or "an output")
        return cls(str(where), reason[:1].lower() + reason[1:])


class AnalysisError(StepError):
    """A meta-analysis cannot be computed (k < 2, bad variances, no convergence ...).

    ``reason`` is what went wrong; with ``analysis_id`` (:meth:`of_analysis`, set by
    :func:`cosmo_runner.meta.analysis.analyse`) the message names the analysis too.
    """

    def __init__(self, reason: str, analysis_id: str | None = None) -> None:
        self.reason = reason
        self.analysis_id = analysis_id
        super().__init__(reason if analysis_id is None else f"analysis {analysis_id!r}: {reason}")

    def of_analysis(self, analysis_id: str) -> AnalysisError:
        """This error, said of the analysis ``analysis_id`` (chain it: ``raise ... from``)."""
        return AnalysisError(self.reason, analysis_id)


class PlotDataError(AnalysisError):
    """A result the plots cannot read (:mod:`cosmo_runner.meta.plots.data`): ``pointer`` is
    the key's JSON pointer in the result, ``problem`` what is wrong with it ("is missing")."""

    def __init__(self, pointer: str, problem: str, analysis_id: str | None = None) -> None:
        self.pointer = pointer
        self.problem = problem
        super().__init__(f"cannot plot the result: {pointer} {problem}", analysis_id)

    def of_analysis(self, analysis_id: str) -> PlotDataError:
        return PlotDataError(self.pointer, self.problem, analysis_id)


class UnknownMeasureError(AnalysisError):
    """A measure name that is not in the measure table (:mod:`cosmo_runner.meta.measures`).

    ``measure`` is the name as given, ``known`` the table's names.
    """

    def __init__(self, measure: str, known: tuple[str, ...]) -> None:
        self.measure = measure
        self.known = known
        super().__init__(f"unknown measure {shorten(measure)!r} (one of {', '.join(known)})")


class SomeSpecsFailed(CosmoError):
    """A batch ended with ``failed`` failed and ``lost`` lost specs out of ``total``."""

    exit_code = EXIT_BATCH_INCOMPLETE

    def __init__(self, failed: int, lost: int, total: int) -> None:
        self.failed = failed
        self.lost = lost
        self.total = total
        super().__init__(
            f"{failed + lost} of {total} specs did not succeed ({failed} failed, {lost} lost); "
            "each one's exit code is in the batch log"
        )


class Interrupted(CosmoError):
    """The run was stopped by a signal: SIGINT -> 130, SIGTERM -> 143 (128 + signal number)."""

    exit_code = EXIT_SIGINT

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _detail(error: BaseException) -> str:
    """What an analysis raised, in its own words (without the analysis it names)."""
    if isinstance(error, AnalysisError):
        return error.reason
    if isinstance(error, CosmoError):
        return error.message
    return f"{type(error).__name__}: {error}"


def exit_code_for(error: BaseException) -> int:
    """The documented exit code of an error; anything not ours is a crash (1)."""
    if isinstance(error, Interrupted):
        return 128 + error.signum
    if isinstance(error, CosmoError):
        return error.exit_code
    return EXIT_CRASH
