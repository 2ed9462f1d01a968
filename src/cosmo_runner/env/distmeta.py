"""What a distribution's metadata says about how it was installed: WHEEL tags, direct_url.json.

- ``WHEEL``'s ``Tag:`` lines name the platforms the wheel was built for. A wheel none of whose
  tags this interpreter supports (:func:`packaging.tags.sys_tags`) was copied in from another
  machine or Python. ``packaging`` is imported lazily: without it the tags are recorded and
  :func:`supported_tags` returns None, so the gate says they were not checked.
- ``direct_url.json`` (PEP 610) exists when a distribution was installed from a URL or a
  path rather than from an index: ``dir_info.editable`` (``pip install -e``) or a ``file://``
  url (a local directory, archive or wheel). Either means the code is not what the lock's
  hashes pin.

Pure data: the smoke checks decide what is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.parser import HeaderParser
from importlib import metadata

from cosmo_runner.env import optional


def wheel_tags(dist: metadata.Distribution) -> list[str] | None:
    """The ``Tag:`` lines of the distribution's WHEEL file as written; None without a WHEEL."""
    text = dist.read_text("WHEEL")
    if text is None:
        return None
    return [t.strip() for t in HeaderParser().parsestr(text).get_all("Tag", []) if t.strip()]


def all_wheel_tags(dists: dict[str, metadata.Distribution]) -> dict[str, list[str]]:
    """``{name: [tags]}`` for every installed distribution that has a WHEEL file."""
    found = {}
    for name, dist in sorted(dists.items()):
        tags = wheel_tags(dist)
        if tags is not None:
            found[name] = tags
    return found


def expand(tag: str) -> set[str]:
    """A tag with compressed parts (``py2.py3-none-any``) as the single tags it stands for."""
    parts = tag.split("-")
    if len(parts) != 3:
        return {tag}
    return {
        f"{i}-{a}-{p}"
        for i in parts[0].split(".")
        for a in parts[1].split(".")
        for p in parts[2].split(".")
    }


def supported_tags() -> frozenset[str] | None:
    """Every tag this interpreter accepts (``packaging.tags.sys_tags``); None without packaging."""
    if not optional.available("packaging"):  # the gate reports it as gate-dependency:packaging
        return None
    from packaging.tags import sys_tags

    return frozenset(str(tag) for tag in sys_tags())


def usable(tags: list[str], supported: frozenset[str]) -> bool:
    """A wheel is usable when at least one of its tags is supported (as pip chooses wheels)."""
    return any(expand(tag) & supported for tag in tags)


@dataclass(frozen=True)
class DirectUrl:
    """How a distribution was installed when not from an index (PEP 610 ``direct_url.json``).

    ``kind`` is ``editable``, ``local`` (a ``file://`` url), ``url`` (any other url, which
    still bypasses the index) or ``invalid`` (the file is not the JSON PEP 610 describes).
    """

    kind: str
    url: str | None
    detail: str = ""

    @property
    def local(self) -> bool:
        """Editable, or installed from a local path: what the gate refuses for a locked name."""
        return self.kind in ("editable", "local", "invalid")


def direct_url(dist: metadata.Distribution) -> DirectUrl | None:
    """The distribution's ``direct_url.json`` read as PEP 610 says; None when it has none."""
    text = dist.read_text("direct_url.json")
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return DirectUrl("invalid", None, f"not valid JSON ({exc.msg} at line {exc.lineno})")
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return DirectUrl("invalid", None, "no 'url' string")
    url: str = data["url"]
    dir_info = data.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable") is True:
        return DirectUrl("editable", url)
    if url.startswith("file:"):
        return DirectUrl("local", url)
    return DirectUrl("url", url)
