"""Spec lists and keys (no Dask): readable, unique, refused when listed twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmo_runner.batch.plan import assign_keys, spec_list
from cosmo_runner.errors import UsageError


def test_keys_are_the_paths_below_the_common_folder(tmp_path: Path) -> None:
    paths = [tmp_path / "grid" / "a" / "s1.json", tmp_path / "grid" / "b" / "s1.json"]
    assert [p.key for p in assign_keys(paths)] == ["a__s1", "b__s1"]


def test_one_spec_is_keyed_by_its_name(tmp_path: Path) -> None:
    assert [p.key for p in assign_keys([tmp_path / "bcg.json"])] == ["bcg"]


def test_odd_characters_are_replaced_and_collisions_get_a_hash(tmp_path: Path) -> None:
    planned = assign_keys([tmp_path / "a b.json", tmp_path / "a_b.json", tmp_path / ".x.json"])
    keys = [p.key for p in planned]
    assert keys[0].startswith("a_b-") and keys[1].startswith("a_b-") and keys[0] != keys[1]
    assert len(keys[0]) == len("a_b-") + 8
    assert keys[2] == "_.x"


def test_a_spec_listed_twice_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        assign_keys([tmp_path / "s.json", tmp_path / "sub" / ".." / "s.json"])
    assert str(caught.value) == (
        f"batch: spec listed twice: {tmp_path / 'sub' / '..' / 's.json'} (also as "
        f"{tmp_path / 's.json'})"
    )


def test_from_file_lists_paths_relative_to_itself(tmp_path: Path) -> None:
    listing = tmp_path / "lists" / "specs.txt"
    listing.parent.mkdir()
    listing.write_text("# a comment\n\n  one.json  \n/abs/two.json\n", encoding="utf-8")
    assert spec_list([Path("x.json")], listing) == [
        Path("x.json"),
        listing.parent / "one.json",
        Path("/abs/two.json"),
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "file not found"),
        (b"ok.json\n\xff\n", "not UTF-8 text (byte 8)"),
    ],
)
def test_a_bad_from_file_is_a_usage_error(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    listing = tmp_path / "list.txt"
    if content is not None:
        listing.write_bytes(content)
    with pytest.raises(UsageError) as caught:
        spec_list([], listing)
    assert problem in str(caught.value)
    assert str(listing) in str(caught.value)


def test_no_specs_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match=r"^batch: no specs given \(pass SPEC\.\.\. or --from FILE\)$"
    ):
        spec_list([], None)
