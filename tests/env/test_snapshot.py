from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.env import probes, snapshot
from cosmo_runner.env.lock import Lock
from tests.conftest import ROOT, InProcess, run_cli


def test_snapshot_field_names_are_the_contract(cli: InProcess) -> None:
    proc = cli("env", "snapshot")
    assert proc.returncode == 0
    env = json.loads(proc.stdout)["environment"]
    observed = env["observed"]
    assert observed["python"]["version"].startswith(platform.python_version())
    assert Path(observed["python"]["executable"]).name.startswith("python")
    assert observed["platform"] and observed["machine"]
    assert env["expected"]["schema_version"] == 1
    packages = observed["packages"]
    assert packages == sorted(packages)
    assert all(p == p.lower() and "_" not in p.split("==")[0] for p in packages)
    assert any(p.startswith("numpy==") for p in packages)
    assert len(env["env_id"]) == 16
    assert env["lock"]["verdict"] == "in-sync"
    assert env["observed"]["runner"]["version"]


def test_env_id_depends_on_what_decides_results_only() -> None:
    state = snapshot.capture(str(ROOT / "environment.manifest.json"))
    base = state.env_id
    assert base == snapshot.capture(str(ROOT / "environment.manifest.json")).env_id
    observed = json.loads(json.dumps(state.observed))
    observed["platform"] = "Linux-another-kernel"  # kernel and host do not matter
    observed["cpu_count"] = 128
    assert snapshot.env_id(observed, state.lock, state.manifest) == base
    observed["python"]["version_short"] = "3.11.2"
    assert snapshot.env_id(observed, state.lock, state.manifest) != base
    assert state.lock is not None
    other_lock = Lock(state.lock.path, "0" * 64, state.lock.pins)
    assert snapshot.env_id(state.observed, other_lock, state.manifest) != base
    drift = [{"name": "jsonschema", "locked": "4.26.0", "installed": "4.25.1"}]
    assert snapshot.env_id(state.observed, state.lock, state.manifest, drift) != base


def test_environment_allow_list_only(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    captured = probes.env_vars()
    assert captured["OMP_NUM_THREADS"] == "1"
    assert "SECRET_TOKEN" not in captured


# ---------------------------------------------------------------- the env id's exact inputs


def _captured() -> snapshot.EnvironmentState:
    return snapshot.capture(str(ROOT / "environment.manifest.json"))


@pytest.fixture(scope="module")
def state() -> snapshot.EnvironmentState:
    return _captured()


def _copy(observed: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(observed))
    return copied


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(observed: dict[str, Any]) -> None:
        node = observed
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return change


def _add_library(observed: dict[str, Any]) -> None:
    """scipy's own OpenBLAS, as after `import scipy.linalg` in the same process."""
    pools = observed["threadpools"]
    pools["libraries"].append({**pools["numpy_blas"], "filepath": "/x/scipy.libs/libo.so"})


HASHED = {
    "python implementation": _set("python", "implementation", value="PyPy"),
    "python version": _set("python", "version_short", value="3.11.2"),
    "os family": _set("os_family", value="darwin"),
    "libc": _set("libc", value="musl 1.2.4"),
    "machine": _set("machine", value="aarch64"),
    "RECORD digest": _set("records", "digest", value="f" * 64),
    "BLAS name": _set("threadpools", "numpy_blas", "internal_api", value="mkl"),
    "BLAS version": _set("threadpools", "numpy_blas", "version", value="0.3.21"),
    "BLAS architecture": _set("threadpools", "numpy_blas", "architecture", value="SkylakeX"),
    "no BLAS loaded": _set("threadpools", value=None),
    **{
        name: _set("env_vars", name, value="AVX512F" if name.startswith("NPY") else "AUTO")
        for name in snapshot.ENV_ID_VARIABLES
    },
}
NOT_HASHED = {
    "OMP_NUM_THREADS": _set("env_vars", "OMP_NUM_THREADS", value="1"),
    "OPENBLAS_NUM_THREADS": _set("env_vars", "OPENBLAS_NUM_THREADS", value="1"),
    "another variable": _set("env_vars", "LANG", value="de_DE.UTF-8"),
    "a pip index": _set("env_vars", "PIP_INDEX_URL", value="https://***@host/simple"),
    "BLAS thread count": _set("threadpools", "numpy_blas", "num_threads", value=1),
    "BLAS threading layer": _set("threadpools", "numpy_blas", "threading_layer", value="openmp"),
    "BLAS path (another venv)": _set("threadpools", "numpy_blas", "filepath", value="/opt/v/x.so"),
    "another library loaded": _add_library,
    "kernel": _set("platform", value="Linux-6.99.0-other-x86_64-with-glibc2.36"),
    "CPU count": _set("cpu_count", value=128),
    "CPU model": _set("cpu", "model", value="Intel(R) Xeon(R) Platinum 8480+"),
    "numpy SIMD": _set("cpu", "numpy_simd", value=None),
    "python executable": _set("python", "executable", value="/opt/venv/bin/python"),
    "container": _set("container", "in_container", value=True),
    "runner commit": _set("runner", "git_commit", value="0" * 40),
}


@pytest.mark.parametrize("change", HASHED.values(), ids=HASHED.keys())
def test_env_id_changes_with_each_hashed_input(
    state: snapshot.EnvironmentState, change: Callable[[dict[str, Any]], None]
) -> None:
    observed = _copy(state.observed)
    base = snapshot.env_id(observed, state.lock, state.manifest)
    change(observed)
    assert snapshot.env_id(observed, state.lock, state.manifest) != base


@pytest.mark.parametrize("change", NOT_HASHED.values(), ids=NOT_HASHED.keys())
def test_env_id_ignores_what_does_not_decide_results(
    state: snapshot.EnvironmentState, change: Callable[[dict[str, Any]], None]
) -> None:
    observed = _copy(state.observed)
    base = snapshot.env_id(observed, state.lock, state.manifest)
    change(observed)
    assert snapshot.env_id(observed, state.lock, state.manifest) == base


def test_env_id_inputs_are_exactly_the_documented_list(state: snapshot.EnvironmentState) -> None:
    inputs = snapshot.env_id_inputs(state.observed, state.lock, state.manifest, drift=[{}])
    assert set(inputs) == {
        "lock_sha256",
        "manifest_sha256",
        "python_implementation",
        "python_version",
        "os_family",
        "libc",
        "machine",
        "drift",
        "records_digest",
        "blas_loaded",
        "env_vars",
    }
    assert set(inputs["blas_loaded"]) == {"internal_api", "version", "architecture"}
    assert set(inputs["env_vars"]) == set(snapshot.ENV_ID_VARIABLES)


def test_a_drifted_environment_has_another_env_id(state: snapshot.EnvironmentState) -> None:
    """docs/triage.md: an env id with drift differs from the in-sync one."""
    drift = [{"name": "jsonschema", "locked": "4.26.0", "installed": "4.25.1"}]
    clean = snapshot.env_id(state.observed, state.lock, state.manifest)
    assert snapshot.env_id(state.observed, state.lock, state.manifest, drift) != clean
    assert snapshot.env_id(state.observed, state.lock, state.manifest, []) == clean


def _snapshot(env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = run_cli("env", "snapshot", env=env)
    assert proc.returncode == 0, proc.stderr
    environment: dict[str, Any] = json.loads(proc.stdout)["environment"]
    return environment


# Each variable acts when numpy is imported, so each variation is its own interpreter; the
# unchanged environment and the thread settings are taken once for the tests that read them.
@pytest.fixture(scope="module")
def base_snapshot() -> dict[str, Any]:
    return _snapshot()


@pytest.fixture(scope="module")
def threads_snapshot() -> dict[str, Any]:
    return _snapshot({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})


def test_thread_settings_are_recorded_but_keep_the_env_id(
    base_snapshot: dict[str, Any], threads_snapshot: dict[str, Any]
) -> None:
    base, threads = base_snapshot, threads_snapshot
    assert threads["env_id"] == base["env_id"]
    assert threads["observed"]["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert threads["observed"]["threadpools"]["numpy_blas"]["num_threads"] == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OPENBLAS_CORETYPE", "Sandybridge"), ("NPY_DISABLE_CPU_FEATURES", "X86_V3")],
)
def test_kernel_selecting_variables_change_the_env_id_and_the_facts(
    variable: str, value: str, base_snapshot: dict[str, Any]
) -> None:
    base = base_snapshot
    other = _snapshot({variable: value})
    assert other["env_id"] != base["env_id"]
    assert other["observed"]["env_vars"][variable] == value
    if variable == "OPENBLAS_CORETYPE":  # OpenBLAS really picks the other kernels
        assert other["observed"]["threadpools"]["numpy_blas"]["architecture"] == value
    else:  # numpy really stops dispatching to them
        assert "X86_V3" not in other["observed"]["cpu"]["numpy_simd"]["found"]


def test_snapshot_is_valid_against_the_run_log_schema(threads_snapshot: dict[str, Any]) -> None:
    import jsonschema

    from cosmo_runner.schemas import load_schema

    run_log = load_schema("run_log")
    schema = {
        "$schema": run_log["$schema"],
        "$defs": run_log["$defs"],
        "$ref": "#/$defs/environment",
    }

    environment = threads_snapshot  # allow-listed variables and thread pools recorded
    assert environment["observed"]["env_vars"]["OMP_NUM_THREADS"] == "1"
    jsonschema.validate(environment, schema)
    pools = environment["observed"]["threadpools"]
    assert pools["numpy_blas"]["user_api"] == "blas"
    assert pools["numpy_blas"]["version"] and pools["numpy_blas"]["architecture"]
    assert pools["numpy_blas"] in pools["libraries"]


def test_help_imports_neither_numpy_nor_threadpoolctl() -> None:
    code = (
        "import sys\nfrom cosmo_runner.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'threadpoolctl') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"


# ---------------------------------------------------------------- probes


def _lib(filepath: str, **fields: Any) -> dict[str, Any]:
    return {
        "user_api": "blas",
        "internal_api": "openblas",
        "prefix": "libopenblas",
        "filepath": filepath,
        "version": "0.3.30",
        "architecture": "Haswell",
        "threading_layer": "pthreads",
        "num_threads": 2,
        **fields,
    }


@pytest.mark.parametrize(
    ("libraries", "expected"),
    [
        # a manylinux wheel: numpy.libs beside numpy; scipy's vendored copy is not numpy's
        (["/s/scipy.libs/libscipy_openblas-1.so", "/s/numpy.libs/libscipy_openblas64_-2.so"], 1),
        (["/s/numpy/.dylibs/libscipy_openblas64_.dylib"], 0),  # a macOS wheel (delocate)
        (["/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/s/scipy.libs/libo.so"], 0),  # system
        (["/s/scipy.libs/libscipy_openblas-1.so"], None),  # only another package's copy
        ([], None),
    ],
    ids=["wheel", "macos-wheel", "system-blas", "only-scipy", "none"],
)
def test_numpy_blas_is_the_library_numpy_calls(libraries: list[str], expected: int | None) -> None:
    entries = [_lib(p, version=str(i)) for i, p in enumerate(libraries)]
    found = probes.numpy_blas(entries, Path("/s/numpy"))
    assert found == (None if expected is None else entries[expected])


def test_numpy_blas_ignores_openmp_and_unknown_numpy() -> None:
    openmp = _lib("/usr/lib/libgomp.so.1", user_api="openmp", internal_api="openmp")
    assert probes.numpy_blas([openmp], Path("/s/numpy")) is None
    assert probes.numpy_blas([_lib("/s/numpy.libs/x.so")], None) is None


def test_threadpools_opts_out_without_threadpoolctl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import raises ImportError
    assert probes.threadpools() is None


def test_threadpools_records_a_failing_threadpoolctl(monkeypatch: pytest.MonkeyPatch) -> None:
    import threadpoolctl

    def broken() -> None:
        raise OSError("dl_iterate_phdr failed")

    monkeypatch.setattr(threadpoolctl, "threadpool_info", broken)
    assert probes.threadpools() == {
        "libraries": [],
        "numpy_blas": None,
        "warnings": [],
        "error": "OSError: dl_iterate_phdr failed",
    }


@pytest.mark.parametrize(
    ("content", "processor", "expected"),
    [
        (
            "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: X\n",
            "",
            "AMD EPYC 7B13",
        ),
        ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n", "aarch64", "aarch64"),
        ("model name\t:   \n", "", None),
        (None, "arm", "arm"),  # no /proc (macOS)
        (b"model name\t: Caf\xe9 CPU\n", "", "Caf\ufffd CPU"),  # undecodable byte
    ],
    ids=["x86", "arm-no-model-name", "empty", "no-proc", "bad-bytes"],
)
def test_cpu_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str | bytes | None,
    processor: str,
    expected: str | None,
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    if isinstance(content, bytes):
        cpuinfo.write_bytes(content)
    elif content is not None:
        cpuinfo.write_text(content, encoding="utf-8")
    monkeypatch.setattr(probes.platform, "processor", lambda: processor)
    assert probes.cpu_model(cpuinfo) == expected


def test_numpy_simd_matches_numpy_runtime() -> None:
    # numpy's own private module on purpose: it is where numpy keeps the CPU features the
    # probe reports, and the probe must agree with it
    from numpy._core import _multiarray_umath as umath

    simd = probes.numpy_simd()
    assert simd is not None
    assert simd["baseline"] == list(umath.__cpu_baseline__)
    assert set(simd["found"]) | set(simd["not_found"]) == set(umath.__cpu_dispatch__)
    assert simd["enabled"] == [f for f, on in umath.__cpu_features__.items() if on]


RECORDED = [
    "NPY_DISABLE_CPU_FEATURES", "NPY_PROMOTION_STATE", "MPLBACKEND", "MPLCONFIGDIR",
    "PYTHONHASHSEED", "PYTHONPATH", "PYTHONNOUSERSITE", "OMP_NUM_THREADS", "OMP_PROC_BIND",
    "OPENBLAS_CORETYPE", "MKL_CBWR", "PIP_INDEX_URL", "LD_PRELOAD", "LD_LIBRARY_PATH",
    "LC_ALL", "LANG", "TZ", "SOURCE_DATE_EPOCH",
]  # fmt: skip


def test_extended_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RECORDED:
        monkeypatch.setenv(name, f"value-of-{name}")
    for name in ("HOME_DIR_X", "LC_NUMERIC_X", "MY_VAR", "XPYTHONPATH", "LD_AUDIT"):
        monkeypatch.setenv(name, "not recorded")
    captured = probes.env_vars()
    assert {name: captured.get(name) for name in RECORDED} == {
        name: f"value-of-{name}" for name in RECORDED
    }
    assert "not recorded" not in captured.values()


def test_allow_listed_values_are_redacted_when_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:s3cr3t-tok@host/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://a:tokA1@h1/simple https://b:tokB2@h2/x")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    captured = probes.env_vars()
    assert captured["PIP_INDEX_URL"] == "https://***@host/simple"
    assert captured["PIP_EXTRA_INDEX_URL"] == "https://***@h1/simple https://***@h2/x"
    assert captured["PYTHON_KEYRING_BACKEND"] == "***redacted***"  # a *KEY* name
