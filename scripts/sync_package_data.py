"""Keep environment.manifest.json's lock sha256 in step with requirements.lock.txt, and copy
both into the package data (src/cosmo_runner/data/) so installed commands find them.

Run by ``make lock``; ``--check`` (run by ``make test``) only reports drift and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "environment.manifest.json"
LOCK = ROOT / "requirements.lock.txt"
DATA = ROOT / "src" / "cosmo_runner" / "data"


def synced_manifest_text() -> str:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    manifest["lock"]["sha256"] = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    return json.dumps(manifest, indent=2) + "\n"


def main(argv: list[str]) -> int:
    expected = {MANIFEST: synced_manifest_text()}
    expected[DATA / MANIFEST.name] = expected[MANIFEST]
    expected[DATA / LOCK.name] = LOCK.read_text(encoding="utf-8")
    stale = [
        p
        for p, text in expected.items()
        if not p.is_file() or p.read_text(encoding="utf-8") != text
    ]
    if "--check" in argv:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is out of step with requirements.lock.txt: run 'make lock'"
            )
        return 1 if stale else 0
    DATA.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(expected[path], encoding="utf-8")
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
