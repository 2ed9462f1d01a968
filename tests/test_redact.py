"""The redactor: URL userinfo, secret-named variables and known secret values never survive.

Properties over generated URLs, names and documents (hypothesis), plus the exact forms the
issue names (PIP_INDEX_URL with a token, PIP_EXTRA_INDEX_URL with several URLs).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosmo_runner.redact import (
    REDACTED,
    is_secret_name,
    known_secrets,
    redact_document,
    redact_env,
    redact_text,
)

# Secrets hold at least one of these capitals, which nothing around them uses (the text
# is lower case, the names MY_API_TOKEN, PIP_INDEX_URL, ... avoid them), so a secret found
# in the output can only have leaked, never been produced by its surroundings.
SECRET_LETTERS = "BCFGHJQVWZ"
SECRET_ALPHABET = SECRET_LETTERS + "0123456789"
secret = st.text(SECRET_ALPHABET, min_size=3, max_size=24).filter(
    lambda s: any(c in SECRET_LETTERS for c in s)
)
# userinfo may hold RFC 3986 sub-delims, ':' and percent-escapes; never '/', '?', '#', '@'.
userinfo_extra = st.text(SECRET_ALPHABET + ":-._~!$&'()*+,;=%", max_size=8)
host = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}(:[0-9]{2,5})?", fullmatch=True)
path = st.from_regex(r"(/[a-z0-9._-]{0,8}){0,3}", fullmatch=True)
scheme = st.sampled_from(["https", "http", "git+https", "ftp", "s3", "svn+ssh"])
filler = st.text("abcdefghijklmnopqrstuvwxyz .,;()[]'", max_size=20)
NO_ENV: tuple[str, ...] = ()  # known values off: the rules alone must hide the secret


@st.composite
def url_with_secret(draw: st.DrawFn) -> tuple[str, str, str]:
    """(url, its secret, the url as it must look redacted)."""
    token = draw(secret)
    info = draw(st.sampled_from(["{t}", "user:{t}", "{t}:x-oauth-basic", "__token__:{t}"]))
    info = info.format(t=token) + draw(userinfo_extra)
    sch, h, p = draw(scheme), draw(host), draw(path)
    return f"{sch}://{info}@{h}{p}", token, f"{sch}://***@{h}{p}"


@given(url_with_secret(), filler, filler)
def test_url_userinfo_is_hidden_anywhere_in_a_string(
    case: tuple[str, str, str], before: str, after: str
) -> None:
    url, token, expected = case
    text = f"{before} {url} {after}"
    out = redact_text(text, NO_ENV)
    assert token not in out
    assert out == f"{before} {expected} {after}"


@given(st.lists(url_with_secret(), min_size=1, max_size=5))
def test_every_url_of_a_space_separated_list_is_hidden(cases: list[tuple[str, str, str]]) -> None:
    value = " ".join(url for url, _, _ in cases)  # PIP_EXTRA_INDEX_URL's form
    out = redact_env({"PIP_EXTRA_INDEX_URL": value})["PIP_EXTRA_INDEX_URL"]
    assert out == " ".join(expected for _, _, expected in cases)
    assert not any(token in out for _, token, _ in cases)


@given(st.text(max_size=60))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact_text(text, NO_ENV)
    assert redact_text(once, NO_ENV) == once


@given(st.text(st.characters(exclude_characters="=:"), max_size=60))
def test_text_without_urls_or_assignments_is_unchanged(text: str) -> None:
    assert redact_text(text, NO_ENV) == text


@given(
    st.text("abcxyz_", max_size=6),
    st.sampled_from(["TOKEN", "secret", "Password", "KEY", "credential", "ApiKey", "TOKENS"]),
    st.text("abcxyz_0", max_size=6),
    secret,
)
def test_a_secret_named_variable_is_redacted_by_name(
    prefix: str, word: str, suffix: str, value: str
) -> None:
    name = f"{prefix}{word}{suffix}"
    assert is_secret_name(name)
    assert redact_env({name: value}) == {name: REDACTED}
    assert redact_text(f"run with {name}={value} now", NO_ENV) == f"run with {name}={REDACTED} now"


@given(st.from_regex(r"[A-Z][A-Z_]{0,12}", fullmatch=True), st.text(SECRET_ALPHABET, max_size=10))
def test_other_variables_keep_their_value(name: str, value: str) -> None:
    if is_secret_name(name):
        return  # generated a secret word by chance; covered above
    assert redact_env({name: value}) == {name: value}
    assert redact_text(f"{name}={value}", NO_ENV) == f"{name}={value}"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


def _shape(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return type(node).__name__


@given(JSON)
def test_a_document_keeps_its_shape_and_stays_json(document: Any) -> None:
    before = json.dumps(document, sort_keys=True)
    out = redact_document(document, NO_ENV)
    assert _shape(out) == _shape(document)
    json.dumps(out, allow_nan=False)
    assert json.dumps(document, sort_keys=True) == before  # the input is not modified


@given(url_with_secret(), secret)
def test_secrets_nested_in_a_document_are_hidden(case: tuple[str, str, str], token: str) -> None:
    url, url_token, _ = case
    document = {
        "command": ["cosmo-runner", "run", url],
        "error": {"message": f"cannot read {url}", "traceback": f"...\n  MY_TOKEN={token}\n"},
        "environment": {"observed": {"env_vars": {"MY_API_TOKEN": token, "PIP_INDEX_URL": url}}},
        "validators": [{"findings": [{"message": f"see {url}"}]}],
    }
    out = json.dumps(redact_document(document, NO_ENV))
    assert url_token not in out and token not in out
    assert json.loads(out)["environment"]["observed"]["env_vars"]["MY_API_TOKEN"] == REDACTED


def test_a_field_named_key_is_a_name_not_a_secret() -> None:
    """env diff --json has {"key": "jsonschema"}: only env-var maps are judged by name."""
    document = {"differences": [{"section": "packages", "key": "jsonschema", "a": "1", "b": "2"}]}
    assert redact_document(document, NO_ENV) == document


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:s3cr3t-tok@host/simple", "https://***@host/simple"),
        (
            "https://__token__:pypi-AgEI@upload.pypi.org/legacy/",
            "https://***@upload.pypi.org/legacy/",
        ),
        ("https://tok@host", "https://***@host"),
        ("https://us@er:p@ss@host:8443/simple", "https://***@host:8443/simple"),
        # pip's VCS form: the "@" after the path is a revision, not userinfo
        (
            "pkg @ git+https://github.com/org/repo@v1.2",
            "pkg @ git+https://github.com/org/repo@v1.2",
        ),
        ("git+https://tok@github.com/org/repo@v1.2", "git+https://***@github.com/org/repo@v1.2"),
        # the value runs to whitespace or a quote ("&" may be part of a token)
        ("https://host/simple?api_key=abc123&x=1", f"https://host/simple?api_key={REDACTED}"),
        ("mailto:someone@example.org", "mailto:someone@example.org"),
        ("https://***@host/simple", "https://***@host/simple"),
        ("--api-key=abc123", f"--api-key={REDACTED}"),
        ("x=DB_PASSWORD=pa55-w0rd", f"x=DB_PASSWORD={REDACTED}"),
        ("OMP_NUM_THREADS=1 MKL_CBWR=AUTO", "OMP_NUM_THREADS=1 MKL_CBWR=AUTO"),
    ],
)
def test_examples(text: str, expected: str) -> None:
    assert redact_text(text, NO_ENV) == expected


def test_known_values_from_the_environment_are_hunted_in_free_text() -> None:
    env = {
        "MY_API_TOKEN": "tok-123-secret",
        "PIP_INDEX_URL": "https://user:s3cr3t-tok@host/simple",
        "PIP_USE_KEYRING": "1",  # too short to hunt for: "1" must stay "1" elsewhere
        "HOME": "/root",
    }
    values = known_secrets(env, argv=[])
    assert set(values) == {"tok-123-secret", "user:s3cr3t-tok", "s3cr3t-tok"}
    text = "failed: tok-123-secret was refused; password s3cr3t-tok; 1 retry"
    assert (
        redact_text(text, values) == f"failed: {REDACTED} was refused; password {REDACTED}; 1 retry"
    )


def test_the_default_is_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SECRET", "hunter2-but-longer")
    assert redact_text("the value is hunter2-but-longer") == f"the value is {REDACTED}"
    assert "hunter2-but-longer" not in json.dumps(redact_document({"a": ["hunter2-but-longer"]}))


def test_known_values_from_the_command_line() -> None:
    argv = ["run", "https://user:argv-s3cret@host/spec.json", "--input", "x=DB_PASSWORD=pa55-w0rd"]
    assert set(known_secrets({}, argv)) == {"user:argv-s3cret", "argv-s3cret", "pa55-w0rd"}


def test_userinfo_seen_once_in_a_document_is_hidden_everywhere_in_it() -> None:
    """A URL given as a path loses its '//' (pathlib), so only its known userinfo shows it."""
    document = {
        "command": ["cosmo-runner", "run", "https://user:argv-s3cret@host/spec.json"],
        "spec": {"resolved": "/tmp/https:/user:argv-s3cret@host/spec.json"},
        "error": {"message": "https:/user:argv-s3cret@host/spec.json: spec file not found"},
    }
    out = redact_document(document, NO_ENV)
    assert "argv-s3cret" not in json.dumps(out)
    assert out["command"][2] == "https://***@host/spec.json"
    assert out["spec"]["resolved"] == f"/tmp/https:/{REDACTED}@host/spec.json"


TRICKY = st.text('ab:/@="\\\n KEYtokenA1é', max_size=14)
TRICKY_JSON = st.recursive(
    st.none() | st.integers() | TRICKY,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["env_vars", "a", "MY_KEY", "b"]), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(TRICKY_JSON, st.lists(TRICKY, max_size=3))
def test_the_shortcut_for_clean_documents_never_changes_the_outcome(
    document: Any, secrets: list[str]
) -> None:
    """redact_document skips the walk when its JSON text shows nothing to hide; the walk
    itself must then agree (escaped characters, URLs, secret words, known values)."""
    from cosmo_runner import redact

    # private on purpose: the fast path's agreement with the walk it skips is the point, and
    # the walk (_redact, with _harvest and _usable) has no public entry of its own
    values = set(redact._usable(secrets)) | set(redact._usable(redact._harvest(document)))
    assert redact_document(document, secrets) == redact._redact(document, redact._usable(values))
