"""The two ignore files say the same thing (no engine needed).

BuildKit reads docker/Dockerfile.dockerignore (named after the Dockerfile), the legacy
builder reads .dockerignore at the context root; docker/.dockerignore is read by neither.
"""

from __future__ import annotations

from tests.docker.conftest import ROOT

BUILDKIT_RULES = ROOT / "docker" / "Dockerfile.dockerignore"
LEGACY_RULES = ROOT / ".dockerignore"


def rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_ignore_files_are_identical() -> None:
    assert BUILDKIT_RULES.read_bytes() == LEGACY_RULES.read_bytes()


def test_no_ignore_file_that_no_builder_reads() -> None:
    assert not (ROOT / "docker" / ".dockerignore").exists()


def test_rules_are_an_allow_list_that_keeps_clutter_and_secrets_out() -> None:
    lines = rules(BUILDKIT_RULES.read_text(encoding="utf-8"))
    assert lines[0] == "*"  # everything is out unless let back in
    let_in = {line[1:] for line in lines if line.startswith("!")}
    assert {"requirements.lock.txt", "environment.manifest.json", "src"} <= let_in
    for never in ("**/.git", "**/.venv", "**/__pycache__", "**/runs", "**/.env", "**/*.env"):
        assert never in lines, never
    # Re-inclusions come before the "never" rules, so the latter win inside src/.
    last_let_in = max(i for i, line in enumerate(lines) if line.startswith("!"))
    assert lines.index("**/__pycache__") > last_let_in
