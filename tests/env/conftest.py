"""Fixtures of tests/env."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import InProcess


@pytest.fixture(scope="session")
def this_smoke_json(cli: InProcess) -> subprocess.CompletedProcess[str]:
    """``cosmo-runner smoke --json`` of this environment, with the project's manifest, run
    once for the tests that read its verdict: each such smoke probes every required import
    in fresh interpreters (about 1.3 s of CPU). Read it, never change it."""
    return cli("smoke", "--json")
