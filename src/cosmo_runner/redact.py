"""Redaction: the one place that decides what is a secret and how it is hidden.

Applied where environment variables are captured, as a last pass over every run log
before it is written, and over everything the CLI prints (snapshot, diff, verify report,
run summary, error lines). Three rules, in this order:

1. **URL userinfo.** ``scheme://user:token@host/...`` becomes ``scheme://***@host/...``,
   anywhere inside a string (so lists of URLs such as ``PIP_EXTRA_INDEX_URL`` and URLs in
   error messages or tracebacks are covered). The userinfo is what RFC 3986 puts before
   the last ``@`` of the authority, which ends at the first ``/``, ``?``, ``#`` or
   whitespace, as ``urllib.parse`` and pip read it.
2. **Secret names.** The value of an environment variable whose name contains ``TOKEN``,
   ``SECRET``, ``PASSWORD``, ``KEY`` or ``CREDENTIAL`` (any case) becomes
   ``***redacted***``; inside free text, so does ``NAME=value`` with such a name.
3. **Known values.** The values of this process's secret-named environment variables and
   the userinfo of URLs in its environment, its command line or the document at hand (at
   least :data:`MIN_SECRET_LENGTH` characters) are replaced wherever else they appear: a
   backstop for messages and normalised paths that quote them without a URL around them.

Pure functions of their input, ``os.environ``, ``sys.argv`` and :data:`command_line`; they
never raise on odd input.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

REDACTED = "***redacted***"
USERINFO_MASK = "***"
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
# A known value shorter than this is not hunted for in free text: "1" or "true" would
# otherwise be replaced everywhere. Such values are still redacted by name (rule 2).
MIN_SECRET_LENGTH = 6
# Fields of our documents that hold maps of environment variables (name -> value).
ENV_MAP_KEYS = frozenset({"env_vars"})
#: The command line of a command run in process (``cli.main(argv)`` sets it for the call):
#: known secrets come from it as from ``sys.argv``, which then holds the host program's.
command_line: ContextVar[tuple[str, ...]] = ContextVar("cosmo_command_line", default=())

_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
# scheme "://" then the userinfo: everything up to the authority's last "@" (greedy).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"<>]*)@")
# NAME=value in free text (argv items, messages); the value runs to whitespace or a quote.
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>[^\s\"']+)"
)


def is_secret_name(name: str) -> bool:
    """Whether a variable or field name marks its value as a secret."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def _strip_userinfo(text: str) -> str:
    if "://" not in text:
        return text
    return _URL_USERINFO.sub(
        lambda m: m["scheme"] + USERINFO_MASK + "@" if m["userinfo"] != USERINFO_MASK else m[0],
        text,
    )


def _strip_assignments(text: str) -> str:
    if "=" not in text:
        return text

    def replace(m: re.Match[str]) -> str:  # "x=TOKEN=v": the value may hold another pair
        value = REDACTED if is_secret_name(m["name"]) else _strip_assignments(m["value"])
        return f"{m['name']}={value}"

    return _ASSIGNMENT.sub(replace, text)


def _assigned_secrets(text: str) -> list[str]:
    """The values of secret ``NAME=value`` pairs in ``text`` (nested pairs too)."""
    found: list[str] = []
    for m in _ASSIGNMENT.finditer(text):
        found.extend([m["value"]] if is_secret_name(m["name"]) else _assigned_secrets(m["value"]))
    return found


def known_secrets(
    environ: Mapping[str, str] | None = None, argv: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Values to hunt for in free text (rule 3), longest first: from ``environ`` (default
    ``os.environ``) the values of secret-named variables and the userinfo of URLs in any
    value; from ``argv`` (default ``sys.argv`` and :data:`command_line`) URL userinfo and
    secret ``NAME=value`` values (a path such as ``https://u:tok@h/spec.json`` loses its
    ``//`` once it is a ``Path``, after which only its known userinfo gives it away)."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if is_secret_name(name):
            found.add(value)
        found.update(_userinfo_parts(value))
    for item in (*sys.argv, *command_line.get()) if argv is None else argv:
        found.update(_userinfo_parts(item))
        found.update(_assigned_secrets(item))
    return _usable(found)


def _userinfo_parts(text: str) -> list[str]:
    """Each URL userinfo in ``text``, and its password part alone."""
    if "://" not in text:
        return []
    parts: list[str] = []
    for match in _URL_USERINFO.finditer(text):
        userinfo = match["userinfo"]
        parts.append(userinfo)
        parts.extend(userinfo.split(":", 1)[1:])
    return parts


def _usable(values: Iterable[str]) -> tuple[str, ...]:
    usable = {
        v for v in values if len(v) >= MIN_SECRET_LENGTH and v not in REDACTED + USERINFO_MASK
    }
    return tuple(sorted(usable, key=lambda s: (-len(s), s)))


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with URL userinfo, secret ``NAME=value`` pairs and known secrets hidden.

    ``secrets`` defaults to :func:`known_secrets` of the current environment.
    """
    text = _strip_assignments(_strip_userinfo(text))
    for secret in known_secrets() if secrets is None else secrets:
        if secret and secret not in REDACTED and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """Environment variables with secret-named values replaced and URL userinfo hidden
    (a value that is not a string, as in a damaged log, is kept for the caller to judge)."""
    return {
        name: REDACTED
        if is_secret_name(str(name))
        else _strip_userinfo(value)
        if isinstance(value, str)
        else value
        for name, value in env.items()
    }


def redact_document(document: Any, secrets: Iterable[str] | None = None) -> Any:
    """A JSON-ready document with every string redacted (the input is never modified; it is
    returned itself when nothing in it needs hiding).

    The userinfo of any URL in the document is also hunted for in all of its strings.

    Maps of environment variables (any value under a key in :data:`ENV_MAP_KEYS`, such as
    a run log's ``environment.observed.env_vars``) also get rule 2 by name. Other field
    names are not judged: a field called ``key`` in a diff holds a package's name.
    """
    values = set(known_secrets() if secrets is None else secrets)
    text = json.dumps(document, ensure_ascii=False, default=str)
    if "://" in text:
        values.update(_usable(_harvest(document)))
    if not _may_need_redaction(text, values):
        return document  # the common case, decided in C: nothing to hide anywhere
    return _redact(document, _usable(values))


def _may_need_redaction(text: str, secrets: Iterable[str]) -> bool:
    """Whether any rule could apply to a document dumped as ``text`` (JSON, not ASCII-escaped):
    rule 1 needs a ``://``, rule 2 a secret word (in a variable's name), rule 3 a known
    value. A value that JSON would escape cannot be searched for in ``text``: then yes."""
    if "://" in text or is_secret_name(text):
        return True
    return any(s in text or _JSON_ESCAPED.search(s) for s in secrets)


def _harvest(node: Any) -> list[str]:
    """The URL userinfo found anywhere in a document, to hunt for everywhere in it."""
    if isinstance(node, str):
        return _userinfo_parts(node)
    if isinstance(node, Mapping):
        return [part for value in node.values() for part in _harvest(value)]
    if isinstance(node, list | tuple):
        return [part for item in node for part in _harvest(item)]
    return []


def _redact(node: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(node, str):
        return redact_text(node, secrets)
    if isinstance(node, Mapping):
        return {
            key: _redact(
                redact_env(value) if key in ENV_MAP_KEYS and isinstance(value, Mapping) else value,
                secrets,
            )
            for key, value in node.items()
        }
    if isinstance(node, list | tuple):
        return [_redact(item, secrets) for item in node]
    return node
