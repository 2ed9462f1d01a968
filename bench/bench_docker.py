"""Docker image build time: a cold build and a source-only rebuild, per builder.

Called by ``make bench`` (bench/run_all.py) when a Docker engine answers. Works on a copy
of the build context (the repository is never touched): ``scripts/docker/image.py`` builds
it once with ``--no-cache`` (cold: everything but the base image and the wheelhouse), then
again after a one-line change under ``src/`` (the dependency layers should come from the
cache). Prints a markdown section on stdout; progress goes to stderr.

Usage: ``python bench/bench_docker.py [--builders buildkit,legacy] [--base-image REF]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PY = ROOT / "scripts" / "docker" / "image.py"
sys.path.insert(0, str(IMAGE_PY.parent))
from build_context import copy_context  # noqa: E402

REPO = "cosmo-runner-bench"
BUILDERS = {
    # name: (client, DOCKER_BUILDKIT, description)
    "buildkit": ("/usr/bin/docker", "1", "BuildKit (`/usr/bin/docker`, `DOCKER_BUILDKIT=1`)"),
    "legacy": ("/usr/local/bin/docker", None, "legacy builder (`/usr/local/bin/docker`)"),
}
DEPS_MARKER = "-r /opt/cosmo-runner/requirements.lock.txt"


def build(context: Path, builder: str, base: str | None, *, no_cache: bool) -> tuple[float, str]:
    client, buildkit, _ = BUILDERS[builder]
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL"}}
    env.pop("DOCKER_BUILDKIT", None)
    if buildkit:
        env["DOCKER_BUILDKIT"] = buildkit
    cmd = [sys.executable, str(IMAGE_PY), "--root", str(context), "--docker", client]
    cmd += ["--repo", f"{REPO}-{builder}"] + (["--base-image", base] if base else [])
    cmd += ["--", "--no-cache"] if no_cache else []
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f"bench_docker: {builder} build failed (exit {proc.returncode})")
    return seconds, proc.stdout


def deps_cached(log: str) -> bool:
    """Whether the dependency install step came from the cache (either builder's log)."""
    for number in re.findall(r"^#(\d+) \[[^\]]+\] RUN .*$", log, flags=re.MULTILINE):
        header = next(line for line in log.splitlines() if line.startswith(f"#{number} ["))
        if DEPS_MARKER in header:
            return f"#{number} CACHED" in log.splitlines()
    for block in re.split(r"^Step \d+/\d+ : ", log, flags=re.MULTILINE)[1:]:
        instruction, _, rest = block.partition("\n")
        if DEPS_MARKER in instruction:
            return rest.lstrip().startswith("---> Using cache")
    return False


def remove_images(builder: str) -> None:
    client = BUILDERS[builder][0]
    listed = subprocess.run(
        [client, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"{REPO}-{builder}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if listed:
        subprocess.run(
            [client, "image", "rm", "--force", *listed], capture_output=True, check=False
        )


def use_local_engine() -> None:
    """Without DOCKER_HOST, talk to the engine ``make docker-up`` wrote down, if any."""
    hostfile = Path(os.environ.get("COSMO_DOCKER_ROOT", "/tmp/cosmo-docker")) / "docker-host"
    if not os.environ.get("DOCKER_HOST") and hostfile.is_file():
        os.environ["DOCKER_HOST"] = hostfile.read_text(encoding="utf-8").strip()


def main(argv: list[str] | None = None) -> int:
    use_local_engine()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", default="buildkit,legacy")
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or None)
    args = parser.parse_args(argv)
    builders = [b.strip() for b in args.builders.split(",") if b.strip()]

    rows = []
    with tempfile.TemporaryDirectory(prefix="cosmo-bench-docker-") as tmp:
        context = Path(tmp) / "context"
        copy_context(context)
        init = context / "src" / "cosmo_runner" / "__init__.py"
        original = init.read_text(encoding="utf-8")
        for builder in builders:
            if not Path(BUILDERS[builder][0]).exists():
                rows.append((BUILDERS[builder][2], "n/a", "n/a", "client missing"))
                continue
            print(f"bench_docker: {builder}: cold build (--no-cache)", file=sys.stderr)
            init.write_text(original, encoding="utf-8")
            cold, _ = build(context, builder, args.base_image, no_cache=True)
            print(f"bench_docker: {builder}: source-only rebuild", file=sys.stderr)
            init.write_text(original + f"# bench {time.time_ns()}\n", encoding="utf-8")
            rebuild, log = build(context, builder, args.base_image, no_cache=False)
            remove_images(builder)
            cached = "from cache" if deps_cached(log) else "REINSTALLED"
            rows.append((BUILDERS[builder][2], f"{cold:.1f} s", f"{rebuild:.1f} s", cached))

    print("### Docker image build time\n")
    print(
        "`docker build --network none` through `scripts/docker/image.py` on a copy of the "
        "context, wheelhouse already downloaded, base image present. Cold: `--no-cache`. "
        "Source-only rebuild: one changed line under `src/`.\n"
    )
    print("| builder | cold build | source-only rebuild | dependency layer on rebuild |")
    print("|---|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
