"""Static lock check, no network (run by ``make test``).

Fails when a pyproject dependency (or the build backend) is missing from the runtime lock
or not satisfied by its pin, when the dev lock disagrees with the runtime lock on a shared
package, when a lock line lacks a hash, or when the manifest / package-data copies are out
of step with the lock.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import sync_package_data  # noqa: E402

from cosmo_runner.env.lock import _logical_lines, parse_pins  # noqa: E402

LOCKS = ("requirements.lock.txt", "requirements-dev.lock.txt", "requirements-bench.lock.txt")


def check() -> list[str]:
    problems: list[str] = []
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {name: parse_pins((ROOT / name).read_text(encoding="utf-8"), name) for name in LOCKS}
    runtime = pins["requirements.lock.txt"]
    wanted = [(text, "project.dependencies") for text in pyproject["project"]["dependencies"]]
    wanted += [(text, "build-system.requires") for text in pyproject["build-system"]["requires"]]
    for text, where in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in runtime:
            problems.append(f"requirements.lock.txt: {name} ({where}) is missing; run 'make lock'")
        elif not req.specifier.contains(runtime[name], prereleases=True):
            problems.append(
                f"requirements.lock.txt: {name}=={runtime[name]} does not satisfy "
                f"{req} ({where}); run 'make lock'"
            )
    for name in ("requirements-dev.lock.txt",):
        for dist, version in pins[name].items():
            if dist in runtime and runtime[dist] != version:
                problems.append(
                    f"{name}: {dist}=={version} but requirements.lock.txt pins {runtime[dist]}"
                )
    for name in LOCKS:
        text = (ROOT / name).read_text(encoding="utf-8")
        for line in _logical_lines(text):
            if not line.startswith("-") and "--hash=sha256:" not in line:
                problems.append(f"{name}: {line.split()[0]} has no --hash")
            if "file://" in line or line.startswith(
                ("--index-url", "--extra-index-url", "--find-links")
            ):
                problems.append(f"{name}: machine-specific index option: {line}")
    if sync_package_data.main(["--check"]) != 0:
        problems.append(
            "environment.manifest.json or src/cosmo_runner/data/ out of step; run 'make lock'"
        )
    return problems


if __name__ == "__main__":
    found = check()
    for problem in found:
        print(f"check_lock: {problem}", file=sys.stderr)
    print("check_lock: " + ("FAILED" if found else "locks consistent with pyproject.toml"))
    sys.exit(1 if found else 0)
