"""Docker tests against a real engine (``make docker-up``), sharing images per session.

The engine is found the way the Makefile finds it: ``$DOCKER_HOST`` when set, else the
one ``make docker-up`` wrote to ``$COSMO_DOCKER_ROOT/docker-host`` (/tmp/cosmo-docker).
No engine: tests marked ``docker`` are skipped with the reason, except with ``CI=true``,
where they fail: CI must never pass without having exercised the image.

Two builders, as on these machines: BuildKit through Debian's client
(``/usr/bin/docker``, ``DOCKER_BUILDKIT=1``) and the legacy builder through the 28.x
client (``/usr/local/bin/docker``, ``DOCKER_BUILDKIT`` unset). Each builds the image once
per session with ``make image`` on the base from ``make base-image``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "docker"))
from build_context import copy_context  # noqa: E402, F401 - shared with bench, used by the tests

DOCKER_ROOT = Path(os.environ.get("COSMO_DOCKER_ROOT", "/tmp/cosmo-docker"))
BASE_IMAGE = os.environ.get("COSMO_TEST_BASE_IMAGE", "cosmo-base:bookworm")
BUILDKIT_CLIENT = os.environ.get("COSMO_BUILDKIT_DOCKER", "/usr/bin/docker")
LEGACY_CLIENT = os.environ.get("COSMO_LEGACY_DOCKER", "/usr/local/bin/docker")
# Per session, so that concurrent sessions on one engine never remove each other's images.
TEST_REPO_PREFIX = f"cosmo-runner-test-{os.getpid()}"
BUILD_TIMEOUT = 900  # seconds; a cold build takes well under a minute here
RUN_TIMEOUT = 180


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def docker_host() -> str | None:
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    hostfile = DOCKER_ROOT / "docker-host"
    if hostfile.is_file():
        return hostfile.read_text(encoding="utf-8").strip() or None
    return None


def base_env() -> dict[str, str]:
    """The environment for docker and make: the engine's DOCKER_HOST, no outer make state."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.pop("DOCKER_BUILDKIT", None)
    host = docker_host()
    if host:
        env["DOCKER_HOST"] = host
    return env


def _engine_problem() -> str | None:
    """None when an engine answers, else why not."""
    client = shutil.which("docker") or LEGACY_CLIENT
    if not Path(client).exists():
        return "no docker client on PATH"
    try:
        result = subprocess.run(
            [client, "info", "--format", "{{.ServerVersion}}"],
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if result.returncode != 0:
        where = docker_host() or "the default socket"
        return f"no Docker engine answers at {where} (make docker-up starts one)"
    return None


_ENGINE_PROBLEM: list[str | None] = []


def engine_problem() -> str | None:
    if not _ENGINE_PROBLEM:
        _ENGINE_PROBLEM.append(_engine_problem())
    return _ENGINE_PROBLEM[0]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture (the shared builds included): skip docker tests without an
    engine, with the reason; fail them instead when CI=true."""
    if item.get_closest_marker("docker") is None:
        return
    problem = engine_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but {problem}: docker tests must run in CI", pytrace=False)
    pytest.skip(problem)


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """The lock scripts/docker/image.py holds around every build (see build_lock there):
    concurrent BuildKit builds can crash Docker 20.10's daemon."""
    path = Path(os.environ.get("COSMO_DOCKER_BUILD_LOCK", "/tmp/cosmo-docker-build.lock"))
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Docker:
    """A docker client binary plus the environment that selects its builder."""

    client: str
    buildkit: bool

    @property
    def env(self) -> dict[str, str]:
        env = base_env()
        if self.buildkit:
            env["DOCKER_BUILDKIT"] = "1"
        return env

    def __call__(
        self,
        *args: str,
        timeout: float = RUN_TIMEOUT,
        check: bool = False,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        with build_lock() if args[:1] == ("build",) else contextlib.nullcontext():
            result = subprocess.run(
                [self.client, *args],
                env=self.env,
                input=input_text,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result


@dataclass
class Build:
    """One ``make image`` run: what it built and how it went."""

    builder: str  # "buildkit" or "legacy"
    repo: str
    build_id: str
    returncode: int
    log: str
    seconds: float
    docker: Docker = field(repr=False)

    @property
    def tag(self) -> str:
        return f"{self.repo}:{self.build_id}"


def make_image(
    docker: Docker, builder: str, repo: str, root: Path = ROOT, extra: Sequence[str] = ()
) -> Build:
    """``make image`` in ``root`` with this builder, output captured (stdout + stderr)."""
    env = docker.env
    env["IMAGE_REPO"] = repo
    start = time.monotonic()
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(root),
            "image",
            f"BASE_IMAGE={BASE_IMAGE}",
            f"DOCKER={docker.client}",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - start
    found = re.findall(r"^build id: ([0-9a-f]{12})$", result.stdout, flags=re.MULTILINE)
    return Build(
        builder=builder,
        repo=repo,
        build_id=found[-1] if found else "",
        returncode=result.returncode,
        log=result.stdout,
        seconds=seconds,
        docker=docker,
    )


def require_built(build: Build) -> Build:
    assert build.returncode == 0 and build.build_id, (
        f"make image ({build.builder}) failed with exit {build.returncode}:\n{build.log[-6000:]}"
    )
    return build


@pytest.fixture(scope="session")
def buildkit() -> Docker:
    if not Path(BUILDKIT_CLIENT).exists():
        pytest.fail(f"{BUILDKIT_CLIENT} (Debian's docker.io client) is missing", pytrace=False)
    return Docker(BUILDKIT_CLIENT, buildkit=True)


@pytest.fixture(scope="session")
def legacy() -> Docker:
    if not Path(LEGACY_CLIENT).exists():
        pytest.fail(f"{LEGACY_CLIENT} (the 28.x client) is missing", pytrace=False)
    return Docker(LEGACY_CLIENT, buildkit=False)


@pytest.fixture(scope="session")
def base_image(legacy: Docker) -> str:
    """``make base-image`` (a no-op when the image exists)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "base-image"],
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"make base-image failed:\n{result.stdout[-4000:]}"
    legacy("image", "inspect", BASE_IMAGE, check=True)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def buildkit_build(buildkit: Docker, base_image: str) -> Build:
    """The image built by ``make image`` with BuildKit, tagged like users get it."""
    return make_image(buildkit, "buildkit", "cosmo-runner")


@pytest.fixture(scope="session")
def legacy_build(legacy: Docker, base_image: str) -> Iterator[Build]:
    """The same tree built with the legacy builder, under a test repository name."""
    build = make_image(legacy, "legacy", f"{TEST_REPO_PREFIX}-legacy")
    yield build
    remove_repo(legacy, build.repo)


@pytest.fixture(params=["buildkit", "legacy"])
def built(request: pytest.FixtureRequest) -> Build:
    """Each test using this runs once per builder's image."""
    build: Build = request.getfixturevalue(f"{request.param}_build")
    return require_built(build)


def remove_repo(docker: Docker, repo: str) -> None:
    """Remove every tag of a test repository (best effort: cleanup only)."""
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repo)
    tags = [t for t in listed.stdout.split() if t.startswith(repo + ":")]
    if tags:
        docker("image", "rm", "--force", *tags)
