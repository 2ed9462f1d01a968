"""A batch inside the image: in one container with no network (``--network none``, so
loopback is all there is), a ``cosmo-runner scheduler``, a gated ``cosmo-runner worker`` and
the batch client, each started through the image's entrypoint (its gate first) as the
image's non-root user on a read-only root file system."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.batch.helpers import batch_log, by_key, committed
from tests.batch.specgen import generate_specs
from tests.conftest import load_log
from tests.docker.conftest import Build, require_built

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SPECS = 8
# Each long-running process writes its ready line ("cosmo-runner scheduler at tcp://...")
# to stdout; the script waits for it (bounded), then starts the next one. Exit codes and
# the scheduler's address are printed as key=value lines.
SCRIPT = r"""
set -u
cd /work
wait_for() {  # FILE PATTERN: up to 120 s
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -le 240 ] || { echo "timeout waiting for $2 in $1"; return 1; }
        sleep 0.5
    done
}
cosmo-runner-entrypoint scheduler --host 127.0.0.1 --port 8786 >scheduler.out 2>scheduler.err &
scheduler=$!
wait_for scheduler.out "^cosmo-runner scheduler at " || exit 90
address="$(sed -n 's/^cosmo-runner scheduler at //p' scheduler.out)"
echo "address=$address"
cosmo-runner-entrypoint worker "$address" >worker.out 2>worker.err &
worker=$!
wait_for worker.out "^cosmo-runner worker at " || exit 91
cosmo-runner-entrypoint batch specs/*.json --cluster "$address" --out /work/out \
    >batch.out 2>batch.err
echo "batch=$?"
kill -TERM "$worker"; wait "$worker"; echo "worker=$?"
kill -TERM "$scheduler"; wait "$scheduler"; echo "scheduler=$?"
"""


@pytest.fixture
def build(buildkit_build: Build) -> Build:
    return require_built(buildkit_build)


def test_scheduler_gated_worker_and_batch_in_one_container(build: Build, tmp_path: Path) -> None:
    job = tmp_path / "job"
    specs = generate_specs(job / "specs", SPECS, seed=21)
    for path in [job, *job.rglob("*")]:  # the image's own user writes into the job folder
        path.chmod(0o777 if path.is_dir() else 0o666)
    result = build.docker(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{job}:/work", "--entrypoint", "/bin/sh", build.tag, "-c", SCRIPT,
        timeout=600,
    )  # fmt: skip
    files = {
        name: (job / name).read_text(errors="replace") if (job / name).exists() else ""
        for name in ("scheduler.err", "worker.err", "batch.out", "batch.err")
    }
    context = result.stdout + result.stderr + json.dumps(files, indent=1)[-6000:]
    assert result.returncode == 0, context
    codes = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert (codes["batch"], codes["worker"], codes["scheduler"]) == ("0", "0", "0"), context
    assert re.fullmatch(r"tcp://127\.0\.0\.1:8786", codes["address"]), context
    assert files["batch.err"] == "", context  # quiet: no warnings, no tracebacks

    doc = batch_log(job / "out")
    assert doc["status"] == "succeeded" and doc["exit_code"] == 0
    assert doc["cluster"] == {"kind": "address", "address": "tcp://127.0.0.1:8786"}
    [worker] = doc["workers"]
    assert worker["status"] == "accepted" and worker["specs"] == SPECS, worker
    assert worker["address"].startswith("tcp://127.0.0.1:")
    assert worker["env_id"] == doc["expected_env_id"] == doc["client_env_id"]
    entries = by_key(doc)
    assert committed(job / "out") == sorted(entries) == sorted(p.stem for p in specs)
    for key, entry in entries.items():
        assert (entry["status"], entry["exit_code"]) == ("succeeded", 0), entry
        log: dict[str, Any] = load_log(job / "out" / key)
        assert log["environment"]["env_id"] == doc["expected_env_id"]
        assert log["environment"]["observed"]["container"]["build_id"] == build.build_id
