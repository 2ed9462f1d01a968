"""The image on a real engine: hermetic build with both builders, a containerised run of
the BCG example, the entrypoint gate, non-root user, ignore rules, cached rebuilds."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmo_runner.env.lock import parse_pins
from tests.conftest import load_log
from tests.docker.conftest import (
    BASE_IMAGE,
    ROOT,
    TEST_REPO_PREFIX,
    Build,
    Docker,
    copy_context,
    make_image,
    remove_repo,
    require_built,
)

pytestmark = pytest.mark.docker

EXAMPLE = ROOT / "examples" / "bcg"
IMAGE_UID = "10001"
SITE = "/opt/venv/lib/python3*/site-packages"  # a glob for the RUN shell: any base Python


def lock_pins() -> set[str]:
    """``name==version`` for every runtime-lock entry that applies inside the image.

    The image is CPython 3.11 on Linux, on this host's machine; markers are evaluated for
    that target (colorama, for one, is Windows-only). scripts/check_lock.py refuses a marker
    that splits a minor series, so any 3.11 release stands for the image's.
    """
    target = {
        "python_version": "3.11",
        "python_full_version": "3.11.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": platform.machine(),
    }
    text = (ROOT / "requirements.lock.txt").read_text(encoding="utf-8")
    return {
        f"{name}=={version}"
        for name, version in parse_pins(text, "requirements.lock.txt", target).items()
    }


def installed(build: Build) -> set[str]:
    """The image's installed distributions, as ``name==version``."""
    code = (
        "import importlib.metadata as m, re\n"
        "for d in m.distributions():\n"
        "    print(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() + '==' + d.version)\n"
    )
    result = build.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
        build.tag, "-c", code, check=True,
    )  # fmt: skip
    return set(result.stdout.split())


def job_dir(tmp_path: Path) -> Path:
    """A job folder holding a copy of the BCG example, to mount at /work."""
    job = tmp_path / "job"
    shutil.copytree(EXAMPLE, job)
    return job


def docker_step_cached(log: str, *, buildkit: bool, marker: str) -> bool:
    """Whether the build step whose instruction contains ``marker`` came from the cache."""
    if buildkit:
        steps = re.findall(r"^#(\d+) \[[^\]]+\] (?:RUN|COPY).*$", log, flags=re.MULTILINE)
        lines = log.splitlines()
        for number in steps:
            header = next(line for line in lines if line.startswith(f"#{number} ["))
            if marker in header:
                return f"#{number} CACHED" in lines
        raise AssertionError(f"no BuildKit step containing {marker!r} in the log")
    blocks = re.split(r"^Step \d+/\d+ : ", log, flags=re.MULTILINE)
    for block in blocks[1:]:
        instruction, _, rest = block.partition("\n")
        if marker in instruction:
            return rest.lstrip().startswith("---> Using cache")
    raise AssertionError(f"no legacy builder step containing {marker!r} in the log")


DEPS_STEP = "-r /opt/cosmo-runner/requirements.lock.txt"
WHEEL_STEP = "pip wheel"


# ---------------------------------------------------------------------------------------
# Base image and builds


def test_base_image_has_python_311_with_venv(base_image: str, legacy: Docker) -> None:
    result = legacy(
        "run", "--rm", "--network", "none", base_image, "python3", "-c",
        "import ensurepip, sys, venv; print('%d.%d' % sys.version_info[:2])",
        check=True,
    )  # fmt: skip
    assert result.stdout.strip() == "3.11"


def test_make_image_builds_without_network_from_the_wheelhouse(built: Build) -> None:
    assert re.search(r"docker build --network none .*-f \S*docker/Dockerfile", built.log)
    assert f"-t {built.repo}:{built.build_id} -t {built.repo}:latest" in built.log
    # The locked wheels came from the wheelhouse (no index; there was no network anyway).
    assert "Processing /tmp/wheelhouse/numpy-" in built.log or docker_step_cached(
        built.log, buildkit=built.builder == "buildkit", marker=DEPS_STEP
    )
    wheels = sorted(p.name for p in (ROOT / "docker" / "wheelhouse").glob("*.whl"))
    assert len(wheels) == len(lock_pins()), wheels


def test_both_builders_share_build_id_and_installed_packages(
    buildkit_build: Build, legacy_build: Build
) -> None:
    bk, lg = require_built(buildkit_build), require_built(legacy_build)
    assert bk.build_id == lg.build_id
    packages = installed(bk)
    assert packages == installed(lg)
    # Exactly the lock, plus the project and the venv's own pip.
    extras = {p.split("==")[0] for p in packages - lock_pins()}
    assert lock_pins() <= packages
    assert extras == {"cosmo-runner", "pip"}


def test_image_labels_and_environment_name_the_build(built: Build) -> None:
    config = json.loads(built.docker("image", "inspect", built.tag, check=True).stdout)[0]
    labels = config["Config"]["Labels"]
    env = dict(item.split("=", 1) for item in config["Config"]["Env"])
    assert labels["io.cosmo-runner.build-id"] == built.build_id
    assert labels["io.cosmo-runner.base-image"] == BASE_IMAGE
    assert env["COSMO_BUILD_ID"] == built.build_id
    assert env["COSMO_BASE_IMAGE"] == BASE_IMAGE
    assert env["COSMO_IN_CONTAINER"] == "1"
    assert env["PIP_NO_INDEX"] == "1"
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["COSMO_MANIFEST"] == "/opt/cosmo-runner/environment.manifest.json"
    assert config["Config"]["Entrypoint"] == ["/usr/local/bin/cosmo-runner-entrypoint"]


def test_runs_as_non_root_user(built: Build) -> None:
    config = json.loads(built.docker("image", "inspect", built.tag, check=True).stdout)[0]
    assert config["Config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    result = built.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "id", built.tag, "-u", check=True
    )
    assert result.stdout.strip() == IMAGE_UID


def test_no_pip_cache_and_no_index_in_the_image(built: Build) -> None:
    result = built.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", built.tag, "-c",
        "find / -xdev -type d -path '*/.cache/pip' 2>/dev/null; "
        "pip install --no-deps does-not-exist 2>&1 | tail -n 1",
        check=True,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # no pip cache directory anywhere
    assert "does-not-exist" in lines[0]  # pip found nothing: PIP_NO_INDEX=1


# ---------------------------------------------------------------------------------------
# Running it


@pytest.mark.parametrize("user", ["host", "image"])
def test_bcg_example_runs_in_container_and_logs_build_and_env(
    built: Build, tmp_path: Path, user: str
) -> None:
    job = job_dir(tmp_path)
    if user == "host":
        user_args = ["--user", f"{os.getuid()}:{os.getgid()}"]
    else:  # the image's own non-root user writes into a world-writable job folder
        user_args = []
        job.chmod(0o777)
    result = built.docker(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        *user_args, "-v", f"{job}:/work", built.tag,
        "run", "/work/spec.json", "--out", "/work/out",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # No warnings under --read-only (matplotlib's config dir is on the tmpfs).
    assert not re.search(r"(?i)warning|matplotlib", result.stderr), result.stderr
    log = load_log(job / "out")  # written inside, persists outside; schema-valid
    assert log["status"] == "succeeded"
    environment = log["environment"]
    assert re.fullmatch(r"[0-9a-f]{16}", environment["env_id"])
    assert environment["observed"]["container"] == {
        "in_container": True,
        "build_id": built.build_id,
        "base_image": BASE_IMAGE,
    }
    smoke = built.docker("run", "--rm", "--network", "none", built.tag, "smoke", check=True)
    assert environment["env_id"] in smoke.stdout


def test_entrypoint_gate_is_quiet_when_the_environment_is_sound(built: Build) -> None:
    result = built.docker(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        built.tag, "--version",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cosmo-runner ")
    assert result.stderr == ""


@pytest.fixture(params=["numpy", "jsonschema", "packaging"])
def broken_image(built: Build, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The image with one package folder deleted from its venv (dist-info kept; a derived
    image with the same entrypoint). jsonschema and packaging are the gate's own
    dependencies: their loss must still be exit 3 at the gate, never a crash."""
    package = request.param
    tag = f"{TEST_REPO_PREFIX}-broken-{package}-{built.builder}:{built.build_id}"
    dockerfile = (
        f"FROM {built.tag}\nUSER 0\nRUN rm -rf {SITE}/{package}\nUSER {IMAGE_UID}:{IMAGE_UID}\n"
    )
    result = built.docker("build", "--network", "none", "-t", tag, "-", input_text=dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    yield package, tag
    built.docker("image", "rm", "--force", tag)


def test_broken_environment_stops_at_the_gate_with_exit_3(
    built: Build, broken_image: tuple[str, str], tmp_path: Path
) -> None:
    package, broken_image_tag = broken_image
    job = job_dir(tmp_path)
    run = built.docker(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "--user", f"{os.getuid()}:{os.getgid()}", "-v", f"{job}:/work", broken_image_tag,
        "run", "/work/spec.json", "--out", "/work/out",
    )  # fmt: skip
    assert run.returncode == 3, run.stdout + run.stderr
    assert package in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    log = json.loads((job / "out" / "run_log.json").read_text(encoding="utf-8"))
    assert log["status"] == "failed"
    assert log["exit_code"] == 3
    # Stopped at the gate: no validator or analysis ran, no result or plot was produced.
    assert log["validators"] == [] and log["analyses"] == []
    # The report of the failure is still written (share/report.py), nothing else.
    assert set(log["timings"]) <= {"environment", "smoke", "report"}
    produced = {p.name for p in (job / "out").rglob("*") if p.is_file() and p.suffix != ".json"}
    assert produced == {"report.html"}, produced

    for args in (["--version"], ["smoke"]):  # the entrypoint gate, and smoke itself
        gated = built.docker("run", "--rm", "--network", "none", broken_image_tag, *args)
        assert gated.returncode == 3, gated.stdout + gated.stderr
        assert package in gated.stdout + gated.stderr
        assert "Traceback" not in gated.stderr


# ---------------------------------------------------------------------------------------
# Build context and caching


PLANTED = (
    ".venv/bin/planted-{token}",
    "src/cosmo_runner/__pycache__/planted-{token}.cpython-311.pyc",
    "runs/planted-{token}/run_log.json",
    "src/cosmo_runner/planted-{token}.pyc",
    ".env",
    "src/cosmo_runner/.env",
    "secrets-{token}.env",
    ".git/planted-{token}",
    "build/planted-{token}",
)


def clean_build_id(context: Path) -> str:
    """The build id of ``context`` with the planted files removed (a clean copy of it)."""
    clean = context.with_name("clean")
    shutil.copytree(context, clean, ignore=shutil.ignore_patterns("*planted-*", "*.env"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docker" / "image.py"), "--print-build-id",
         "--root", str(clean), "--base-image", BASE_IMAGE],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def planted_context(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the build context with local clutter and secrets planted in it."""
    token = secrets.token_hex(6)
    context = copy_context(tmp_path / "context")
    for pattern in PLANTED:
        path = context / pattern.format(token=token)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"planted {token}\n", encoding="utf-8")
    return context, token


@pytest.mark.parametrize("builder", ["buildkit", "legacy"])
def test_ignore_rules_apply_for_each_builder(
    request: pytest.FixtureRequest,
    planted_context: tuple[Path, str],
    base_image: str,
    builder: str,
) -> None:
    """The exact context each builder sees: everything COPY'd by a probe Dockerfile that
    sits where the real one does (so the same ignore files apply)."""
    docker: Docker = request.getfixturevalue(builder)
    context, token = planted_context
    (context / "docker" / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY . /context/\n", encoding="utf-8"
    )
    tag = f"{TEST_REPO_PREFIX}-context-{builder}:{token}"
    docker(
        "build", "--network", "none", "-f", str(context / "docker" / "Dockerfile"),
        "-t", tag, str(context), timeout=600, check=True,
    )  # fmt: skip
    try:
        listing = docker(
            "run", "--rm", "--network", "none", tag,
            "find", "/context", "-type", "f", "-printf", "%P\\n", check=True,
        ).stdout.split()  # fmt: skip
    finally:
        docker("image", "rm", "--force", tag)
    assert not [p for p in listing if token in p or p.endswith(".env")], listing
    allowed = re.compile(
        r"(requirements\.lock\.txt|environment\.manifest\.json|pyproject\.toml|README\.md"
        r"|LICENSE.*|src/.+|docker/entrypoint\.sh|docker/wheelhouse/(\.keep|.+\.whl))"
    )
    assert [p for p in listing if not allowed.fullmatch(p)] == []
    assert "src/cosmo_runner/cli.py" in listing
    assert "requirements.lock.txt" in listing
    assert not [p for p in listing if "__pycache__" in p or p.endswith(".pyc")]


def test_planted_files_are_absent_from_the_image(
    buildkit: Docker, buildkit_build: Build, planted_context: tuple[Path, str]
) -> None:
    require_built(buildkit_build)
    context, token = planted_context
    repo = f"{TEST_REPO_PREFIX}-planted"
    try:
        build = require_built(make_image(buildkit, "buildkit", repo, root=context))
        # Ignored files are not inputs: the build id is the one of the clean tree.
        assert build.build_id == clean_build_id(context)
        found = buildkit(
            "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", build.tag, "-c",
            f"find / -xdev \\( -name '*{token}*' -o -name '.env' -o -name '*.env' "
            "-o -path '*/runs/*' -o -path '*/.venv/*' \\) -print 2>/dev/null; "
            f"grep -rl 'planted {token}' /opt /work /usr/local/bin 2>/dev/null; true",
            check=True,
        ).stdout  # fmt: skip
    finally:
        remove_repo(buildkit, repo)
    assert found.strip() == ""


@pytest.mark.parametrize("builder", ["buildkit", "legacy"])
def test_source_only_change_rebuilds_without_reinstalling_dependencies(
    request: pytest.FixtureRequest, tmp_path: Path, builder: str
) -> None:
    docker: Docker = request.getfixturevalue(builder)
    first: Build = require_built(request.getfixturevalue(f"{builder}_build"))
    context = copy_context(tmp_path / "context")
    init = context / "src" / "cosmo_runner" / "__init__.py"
    # unique per run: the engine's cache outlives a test session, and a change it has
    # already built would come from the cache
    marker = f"# source-only change {time.time_ns()}\n"
    init.write_text(init.read_text(encoding="utf-8") + marker, "utf-8")
    repo = f"{TEST_REPO_PREFIX}-rebuild-{builder}"
    try:
        rebuild = require_built(make_image(docker, builder, repo, root=context))
    finally:
        remove_repo(docker, repo)
    buildkit = builder == "buildkit"
    assert rebuild.build_id != first.build_id
    assert docker_step_cached(rebuild.log, buildkit=buildkit, marker=DEPS_STEP), rebuild.log
    assert not docker_step_cached(rebuild.log, buildkit=buildkit, marker=WHEEL_STEP)


def test_failing_smoke_test_fails_the_build(
    buildkit: Docker, buildkit_build: Build, tmp_path: Path
) -> None:
    require_built(buildkit_build)
    context = copy_context(tmp_path / "context")
    path = context / "environment.manifest.json"  # the one the image's gate checks against
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["imports"]["modules"].append("module_that_is_not_installed")
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    repo = f"{TEST_REPO_PREFIX}-nosmoke"
    try:
        build = make_image(buildkit, "buildkit", repo, root=context)
    finally:
        remove_repo(buildkit, repo)
    assert build.returncode != 0
    assert "RUN cosmo-runner smoke" in build.log
    assert "module_that_is_not_installed" in build.log


def test_empty_wheelhouse_makes_the_plain_build_use_the_index(
    buildkit: Docker, base_image: str, tmp_path: Path
) -> None:
    """The networked path (`docker build -f docker/Dockerfile .` on a fresh clone) cannot
    succeed here; this shows it takes the index branch, still with --require-hashes: with
    --network none pip then fails to reach the index for the first locked pin."""
    context = copy_context(tmp_path / "context")
    for wheel in (context / "docker" / "wheelhouse").glob("*.whl"):
        wheel.unlink()
    (context / "docker" / "wheelhouse" / ".keep").touch()
    result = buildkit(
        "build", "--network", "none", "--progress", "plain", "--target", "deps",
        "--build-arg", f"BASE_IMAGE={base_image}", "-f", str(context / "docker" / "Dockerfile"),
        str(context), timeout=600,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(r"/simple/[a-z0-9-]+/", log), log[-3000:]  # it asked the index
    assert re.search(r"No matching distribution found for \S+==\S+", log), log[-3000:]
