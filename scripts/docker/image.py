"""Build the cosmo-runner image hermetically: ``make image``.

1. Wheelhouse: the locked wheels for the image's platform and Python are downloaded on the
   host into ``docker/wheelhouse/`` (``pip download --require-hashes --only-binary=:all:
   --no-deps``), each one checked against the lock's sha256; wheels no entry of the lock
   accepts are removed. Skipped when the wheelhouse already holds an accepted wheel for every
   entry. The image's Python is the base image's own (asked with ``python3`` in the base
   when it is present, else read from an official ``python:X.Y`` tag, else
   ``--python-version``), never assumed. pip evaluates a lock's environment markers for
   the host interpreter, not the target (pypa/pip#11010), so the entries are selected for
   the target here (``packaging``, through the host venv's python) and pip gets only those.
2. Build id: a short content hash of the build's inputs (lock, manifest, Dockerfile,
   entrypoint, ignore rules, pyproject, README, source tree, base image reference).
3. ``docker build --network none`` with ``BASE_IMAGE``, ``BUILD_ID`` and
   ``SOURCE_DATE_EPOCH`` (the last commit's time; honoured by BuildKit 0.11+ only), tagged
   ``<repo>:<build id>`` and ``<repo>:latest``.

The builder is whatever the client chooses: ``DOCKER=/usr/bin/docker DOCKER_BUILDKIT=1``
for BuildKit, the 28.x client on PATH with ``DOCKER_BUILDKIT`` unset for the legacy
builder. The last line on stdout is ``build id: <id>``.

Only the standard library: this runs before any project environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "python:3.11-slim-bookworm"  # the Dockerfile's own default
LOCAL_BASE = "cosmo-base:bookworm"  # make base-image, for places with no registry
WHEELHOUSE = Path("docker/wheelhouse")
DOCKERFILE = Path("docker/Dockerfile")
# Files whose content decides the image (besides the source tree under src/).
INPUT_FILES = (
    "requirements.lock.txt",
    "environment.manifest.json",
    "pyproject.toml",
    "README.md",
    "docker/Dockerfile",
    "docker/entrypoint.sh",
    "docker/Dockerfile.dockerignore",
    ".dockerignore",
)
# Never part of the context (see the ignore rules), so never part of the build id.
IGNORED_PARTS = {"__pycache__", ".venv", "build", "dist", "runs", ".DS_Store"}
IGNORED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".egg-info", ".env")
GLIBC_MINORS = range(5, 37)  # manylinux_2_5 .. manylinux_2_36 (Debian 12 has glibc 2.36)


class ImageError(Exception):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str
    hashes: frozenset[str]
    marker: str | None = None


def read_lock(path: Path) -> list[LockEntry]:
    """The ``name==version`` entries of a hashed lock with their sha256 hashes."""
    entries: list[LockEntry] = []
    name = version = marker = None
    hashes: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line:
            continue
        pin = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?:\s*;\s*(.*?))?", line)
        if pin:
            if name is not None:
                entries.append(LockEntry(name, version or "", frozenset(hashes), marker))
            name, version, marker, hashes = pin.group(1), pin.group(2), pin.group(3), set()
            continue
        hashes.update(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    if name is not None:
        entries.append(LockEntry(name, version or "", frozenset(hashes), marker))
    if not entries or any(not e.hashes for e in entries):
        raise ImageError(f"{path}: expected a lock with a sha256 hash for every entry")
    return entries


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_wheelhouse(entries: Sequence[LockEntry], wheelhouse: Path) -> tuple[list[str], list[Path]]:
    """(names of entries without an accepted wheel, wheels no entry accepts)."""
    accepted = {h for e in entries for h in e.hashes}
    present: set[str] = set()
    stale: list[Path] = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        digest = sha256_file(wheel)
        if digest in accepted:
            present.add(digest)
        else:
            stale.append(wheel)
    missing = [e.name for e in entries if not (e.hashes & present)]
    return missing, stale


def linux_arch(machine: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


def platform_args(machine: str, python: str) -> list[str]:
    """pip download's target: manylinux for ``machine``, CPython ``python`` (X.Y[.Z])."""
    arch = linux_arch(machine)
    tags = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
    tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    args: list[str] = []
    for tag in tags:
        args += ["--platform", tag]
    major, minor = python.split(".")[:2]
    abi = f"cp{major}{minor}"
    return [*args, "--python-version", f"{major}.{minor}", "--implementation", "cp", "--abi", abi]


# Run by the host venv's python: which markers hold for the target (PEP 508, packaging).
_MARKER_SNIPPET = (
    "import json, sys\n"
    "from packaging.markers import Marker\n"
    "env = json.loads(sys.argv[1])\n"
    "print(json.dumps([Marker(m).evaluate({**env, 'extra': ''}) for m in json.load(sys.stdin)]))"
)


def target_environment(machine: str, python: str) -> dict[str, str]:
    """PEP 508 marker variables of the image: CPython ``python`` on Linux/``machine``."""
    full = python if python.count(".") == 2 else f"{python}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": linux_arch(machine),
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": ".".join(full.split(".")[:2]),
        "sys_platform": "linux",
    }


def select_entries(entries: Sequence[LockEntry], machine: str, python: str) -> list[LockEntry]:
    """The entries whose marker holds in the image (all of them when none has a marker)."""
    markers = sorted({e.marker for e in entries if e.marker})
    if not markers:
        return list(entries)
    env = json.dumps(target_environment(machine, python))
    try:
        result = subprocess.run(
            [host_python(), "-c", _MARKER_SNIPPET, env],
            input=json.dumps(markers),
            capture_output=True,
            text=True,
            check=True,
        )
        verdicts = dict(zip(markers, json.loads(result.stdout), strict=True))
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ImageError(
            f"cannot evaluate the lock's markers with {host_python()} (needs packaging: "
            f"make venv first): {detail.strip().splitlines()[-1] if detail.strip() else exc}"
        ) from exc
    return [e for e in entries if not e.marker or verdicts[e.marker]]


def host_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def sync_wheelhouse(lock: Path, wheelhouse: Path, machine: str, python: str) -> None:
    entries = select_entries(read_lock(lock), machine, python)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    missing, stale = plan_wheelhouse(entries, wheelhouse)
    for wheel in stale:
        log(f"removing {wheel.name}: no entry of {lock.name} for Python {python} accepts its hash")
        wheel.unlink()
    if not missing:
        log(f"wheelhouse holds an accepted wheel for all {len(entries)} locked entries")
        return
    log(f"downloading {len(missing)} locked wheel(s) for linux/{machine}, CPython {python}")
    # Only the entries for this target, without markers (pip would evaluate them for the host).
    handle, name = tempfile.mkstemp(prefix="cosmo-wheelhouse-", suffix=".txt")
    os.close(handle)
    selected = Path(name)
    selected.write_text(
        "".join(
            f"{e.name}=={e.version} "
            + " ".join(f"--hash=sha256:{h}" for h in sorted(e.hashes))
            + "\n"
            for e in entries
        ),
        encoding="utf-8",
    )
    cmd = [
        host_python(),
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--require-hashes",
        "--only-binary=:all:",
        "--no-deps",
        *platform_args(machine, python),
        "-r",
        str(selected),
        "-d",
        str(wheelhouse),
    ]
    try:
        run(cmd)
    finally:
        selected.unlink()
    missing, stale = plan_wheelhouse(entries, wheelhouse)
    if missing or stale:
        raise ImageError(
            f"wheelhouse incomplete after download: missing {missing}, unexpected "
            f"{[p.name for p in stale]}"
        )


def source_files(root: Path) -> list[Path]:
    files = [root / name for name in INPUT_FILES if (root / name).is_file()]
    files += sorted(root.glob("LICENSE*"))
    for path in sorted((root / "src").rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or IGNORED_PARTS & set(rel.parts):
            continue
        if any(part.endswith(IGNORED_SUFFIXES) for part in rel.parts):
            continue
        files.append(path)
    return files


def compute_build_id(root: Path, base_image: str) -> str:
    """Short content hash of the build's inputs: same inputs, same id, on any machine."""
    digest = hashlib.sha256()
    digest.update(f"base-image\0{base_image}\0".encode())
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()[:12]


def git_last_commit(root: Path, fmt: str) -> str | None:
    """A field of the last commit (``%ct`` time, ``%H`` hash); None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", f"--format={fmt}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def source_date_epoch(root: Path) -> str | None:
    return os.environ.get("SOURCE_DATE_EPOCH") or git_last_commit(root, "%ct")


def image_exists(docker: str, ref: str) -> bool:
    result = subprocess.run([docker, "image", "inspect", ref], capture_output=True, check=False)
    return result.returncode == 0


def base_python(docker: str, base: str) -> str:
    """The base image's Python: asked of its ``python3`` when the image is present, else
    an official ``python:X.Y[.Z]`` tag's version. Never assumed."""
    if image_exists(docker, base):
        ask = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
        result = subprocess.run(
            [
                docker,
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "python3",
                base,
                "-c",
                ask,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        version = result.stdout.strip()
        if result.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+", version):
            return version
        raise ImageError(
            f"{base}: 'python3' in the base image did not give its version "
            f"(exit {result.returncode}): {result.stderr.strip()[-200:]}"
        )
    tag = re.search(r"(?:^|/)python:(\d+\.\d+(?:\.\d+)?)(?:-|@|$)", base)
    if tag:
        return tag.group(1)
    raise ImageError(
        f"{base}: not present locally and not a python:X.Y tag, so its Python is unknown; "
        "pull it first or pass --python-version X.Y"
    )


def choose_base_image(docker: str, requested: str | None) -> str:
    """The requested base; else the Dockerfile default if present, else cosmo-base."""
    if requested:
        return requested
    if not image_exists(docker, DEFAULT_BASE) and image_exists(docker, LOCAL_BASE):
        log(f"{DEFAULT_BASE} is not available locally; using {LOCAL_BASE} (make base-image)")
        return LOCAL_BASE
    return DEFAULT_BASE


def build_command(
    docker: str,
    root: Path,
    *,
    repo: str,
    build_id: str,
    base_image: str,
    epoch: str | None,
    git_commit: str | None,
    buildkit: bool,
    extra: Iterable[str] = (),
) -> list[str]:
    cmd = [docker, "build", "--network", "none", "-f", str(root / DOCKERFILE)]
    if buildkit:
        cmd += ["--progress", "plain"]
    cmd += ["--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"BUILD_ID={build_id}"]
    if epoch:
        cmd += ["--build-arg", f"SOURCE_DATE_EPOCH={epoch}"]
    if git_commit:
        cmd += ["--build-arg", f"GIT_COMMIT={git_commit}"]
    cmd += ["-t", f"{repo}:{build_id}", "-t", f"{repo}:latest", *extra, str(root)]
    return cmd


def use_local_engine() -> None:
    """Without DOCKER_HOST, talk to the engine ``make docker-up`` wrote down, if any."""
    root = Path(os.environ.get("COSMO_DOCKER_ROOT", "/tmp/cosmo-docker"))
    hostfile = root / "docker-host"
    if not os.environ.get("DOCKER_HOST") and hostfile.is_file():
        os.environ["DOCKER_HOST"] = hostfile.read_text(encoding="utf-8").strip()


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One docker build at a time on this machine. Docker 20.10's BuildKit (0.8) can panic
    and take dockerd down when builds sharing steps run concurrently ("failed to get
    edge", moby/moby#42414), e.g. two test sessions against one engine."""
    path = Path(os.environ.get("COSMO_DOCKER_BUILD_LOCK", "/tmp/cosmo-docker-build.lock"))
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another docker build to finish (lock {path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def log(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    log("$ " + shlex.join(cmd))
    result = subprocess.run(cmd, env=env, check=False)
    if result.returncode != 0:
        raise ImageError(f"{cmd[0]} {cmd[1]} failed with exit code {result.returncode}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (context)")
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or None)
    parser.add_argument("--repo", default=os.environ.get("IMAGE_REPO", "cosmo-runner"))
    parser.add_argument("--docker", default=os.environ.get("DOCKER", "docker"))
    parser.add_argument("--machine", default=platform.machine())
    parser.add_argument(
        "--python-version",
        default=os.environ.get("IMAGE_PYTHON_VERSION") or None,
        help="the base image's Python X.Y (default: asked of the base image)",
    )
    parser.add_argument("--skip-wheelhouse", action="store_true", help="use it as it is")
    parser.add_argument("--print-build-id", action="store_true", help="print it and stop")
    parser.add_argument("build_args", nargs="*", help="extra arguments for docker build")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    use_local_engine()

    try:
        if args.print_build_id:
            base = args.base_image or DEFAULT_BASE
            print(compute_build_id(root, base))
            return 0
        base = choose_base_image(args.docker, args.base_image)
        if not args.skip_wheelhouse:
            python = args.python_version or base_python(args.docker, base)
            log(f"base image {base}: Python {python}")
            sync_wheelhouse(root / "requirements.lock.txt", root / WHEELHOUSE, args.machine, python)
        build_id = compute_build_id(root, base)
        if not image_exists(args.docker, base):
            log(
                f"{base} is not present locally; the build will try to pull it "
                f"(no registry? make base-image, then BASE_IMAGE={LOCAL_BASE})"
            )
        buildkit = os.environ.get("DOCKER_BUILDKIT") == "1"
        log(f"build id {build_id} (base {base}, {'BuildKit' if buildkit else 'legacy builder'})")
        cmd = build_command(
            args.docker,
            root,
            repo=args.repo,
            build_id=build_id,
            base_image=base,
            epoch=source_date_epoch(root),
            git_commit=git_last_commit(root, "%H"),
            buildkit=buildkit,
            extra=args.build_args,
        )
        with build_lock():
            run(cmd)
    except ImageError as exc:
        log(f"error: {exc}")
        return 1
    print(f"tags: {args.repo}:{build_id} {args.repo}:latest")
    print(f"build id: {build_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
