"""Load and validate a run spec (JSON Schema Draft 2020-12), then resolve its paths.

Every problem is reported with its JSON pointer, all of them at once, for example
``/analyses/0/method: 'REMLL' is not one of [...]``. Paths are relative to the spec file;
the inputs are read by :mod:`cosmo_runner.inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError, SpecError, shorten
from cosmo_runner.readfile import MiB, parse_json, read_regular
from cosmo_runner.schemas import validate_against

#: A spec larger than this is refused (exit 2) before it is parsed.
MAX_SPEC_BYTES = 16 * MiB
#: Objects and arrays nested deeper than this are refused (exit 2); real specs use 5.
MAX_SPEC_DEPTH = 64


@dataclass(frozen=True)
class Spec:
    path: Path
    raw: bytes
    data: dict[str, Any]
    base_dir: Path | None = None  # where relative paths resolve; default: the spec's folder

    @property
    def base(self) -> Path:
        return self.base_dir or self.path.parent

    @property
    def validators(self) -> list[dict[str, Any]]:
        return list(self.data.get("validators", []))

    @property
    def analyses(self) -> list[dict[str, Any]]:
        return list(self.data.get("analyses", []))

    def resolve(self, relative: str) -> Path:
        return (self.base / relative).resolve()


def read(path: Path) -> tuple[bytes, Any]:
    """The spec's bytes and parsed JSON; any problem raises :class:`SpecError`.

    The spec must be a regular file of at most :data:`MAX_SPEC_BYTES`, strict JSON (no
    duplicate keys, no NaN/Infinity) nested at most :data:`MAX_SPEC_DEPTH` levels deep.
    """
    try:
        raw = read_regular(path, limit=MAX_SPEC_BYTES)
        return raw, parse_json(raw, str(path), max_depth=MAX_SPEC_DEPTH)
    except FileError as exc:
        raise SpecError(exc.path, exc.problems) from exc


def problems(data: Any) -> list[str]:
    """Schema problems, then cross-reference problems (unique ids, known inputs)."""
    found = validate_against("run_spec", data)
    if found or not isinstance(data, dict):
        return found
    inputs = set(data["inputs"])
    seen: dict[str, str] = {}
    for section in ("validators", "analyses"):
        for index, item in enumerate(data.get(section, [])):
            where = f"/{section}/{index}"
            if item["id"] in seen:
                found.append(
                    f"{where}/id: duplicate id {item['id']!r} (first at {seen[item['id']]})"
                )
            else:
                seen[item["id"]] = where
            if item["input"] not in inputs:
                found.append(
                    f"{where}/input: {shorten(repr(item['input']))} is not an input "
                    f"(inputs: {shorten(', '.join(sorted(inputs)))})"
                )
            found.extend(_moderator_problems(item, where))
            if section == "analyses":
                found.extend(_table_method_problems(item, where))
    return found


def _moderator_problems(item: dict[str, Any], where: str) -> list[str]:
    """``moderator_kinds`` and ``test_terms`` name moderators of the entry; a
    ``subgroup_model`` needs a subgroup column. (Whether a level named in a term exists is
    known from the data: the validator and the analysis check it.)"""
    out = []
    moderators = [str(m) for m in item.get("moderators") or []]
    for column in item.get("moderator_kinds") or {}:
        if column not in moderators:
            out.append(
                f"{where}/moderator_kinds: {shorten(repr(column))} is not one of the "
                f"moderators ({shorten(', '.join(moderators)) or 'none'})"
            )
    for index, term in enumerate(item.get("test_terms") or []):
        column = term.split("[", 1)[0] if term.endswith("]") and "[" in term else term
        if term != "intrcpt" and term not in moderators and column not in moderators:
            out.append(
                f"{where}/test_terms/{index}: {shorten(repr(term))} is not a term of the "
                f"moderators ({shorten(', '.join(moderators))}): name intrcpt, a numeric "
                "moderator, or a level as column[level]"
            )
    if "subgroup_model" in item and "subgroup" not in (item.get("columns") or {}):
        out.append(f"{where}/subgroup_model: needs a subgroup column (columns.subgroup)")
    return out


#: Methods that pool 2x2 tables directly, and their measures (meta.mantel_haenszel's table;
#: repeated here so that validating a spec imports no numpy; a test keeps them equal).
TABLE_METHODS = {"MH": ("OR", "RR", "RD"), "PETO": ("OR",)}


def _table_method_problems(item: dict[str, Any], where: str) -> list[str]:
    """MH and PETO: their measures only, and no test, control, moderators or subgroup."""
    method = item.get("method")
    if method not in TABLE_METHODS:
        return []
    out = []
    allowed = TABLE_METHODS[method]
    if item["measure"] not in allowed:
        out.append(
            f"{where}/measure: method {method} pools 2x2 tables of {', '.join(allowed)}, "
            f"not {shorten(repr(item['measure']))}"
        )
    reasons = {
        "test": "takes no test (always a z statistic, as metafor's rma.mh and rma.peto)",
        "moderators": "fits no moderators (use an inverse-variance method such as REML)",
        "control": "estimates no tau2 (control sets the tau2 algorithm of inverse-variance "
        "methods)",
    }
    for key, reason in reasons.items():
        if key in item:
            out.append(f"{where}/{key}: method {method} {reason}")
    if "subgroup" in (item.get("columns") or {}):
        out.append(
            f"{where}/columns/subgroup: method {method} has no subgroup analysis here "
            "(use an inverse-variance method)"
        )
    return out


def load(path: Path, base_dir: Path | None = None) -> Spec:
    """Read and validate a spec; every problem at once in one :class:`SpecError`.

    Relative paths resolve against ``base_dir`` (a replay of a spec copy passes the
    original spec's folder), else against the spec's own folder.
    """
    raw, data = read(path)
    found = problems(data)
    if found:
        raise SpecError(str(path), found)
    return Spec(path=path.resolve(), raw=raw, data=data, base_dir=base_dir)
