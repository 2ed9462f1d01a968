# cosmo-runner: every install goes through a hashed lock (--require-hashes); nothing unpinned.
SHELL := /bin/bash
# The interpreter: python3 by default, or any supported one (README, "Which Python"):
#   make run PYTHON=python3.12      make run PYTHON=$$(PYENV_VERSION=3.13.0 pyenv which python3)
# With the default python3 the venv is .venv (CI and the README use it); an interpreter given
# on the command line or in the environment gets its own, .venv-X.Y, so several live side by
# side. VENV=... overrides either. scripts/check_python.sh refuses an unsupported PYTHON
# (pyproject.toml's requires-python) before anything is installed.
PYTHON ?= python3
ifeq ($(origin PYTHON),file)
VENV ?= .venv
else
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % tuple(sys.version_info[:2]))' 2>/dev/null)
VENV ?= .venv-$(or $(PYVER),unknown)
endif
VPY := $(VENV)/bin/python
PIP_INSTALL := $(VPY) -m pip install --disable-pip-version-check --no-input --require-hashes --no-deps
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --universal --fork-strategy fewest --python-version 3.11

.PHONY: help venv dev run smoke test lint typecheck lock lock-check bench .venv-bench clean \
	docker-up docker-down base-image image slurm-up slurm-down

help:
	@echo "make run    - create $(VENV) from the lock, smoke-test it, run the BCG example"
	@echo "              (another interpreter: make run PYTHON=python3.12 -> .venv-3.12)"
	@echo "make test   - lint, type-check and the whole test suite (docker tests included)"
	@echo "make lock   - regenerate the three hashed locks (needs the network)"
	@echo "make bench  - benchmarks, printed side by side"
	@echo "make image  - hermetic Docker image from the lock (needs an engine: make docker-up)"
	@echo "make docker-up / docker-down - start / stop a private Docker engine (docs/docker.md)"
	@echo "make slurm-up / slurm-down   - start / stop a single-node Slurm on loopback (root;"
	@echo "              then export SLURM_CONF=$(SLURM_ROOT)/slurm.conf; README: Slurm)"

# Runtime environment: the runtime lock only, then the project without deps or build isolation.
$(VENV)/.runtime-stamp: requirements.lock.txt pyproject.toml
	@scripts/check_python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.lock.txt
	$(VPY) -m pip install --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	touch $@

# Development tools on top, resolved with the runtime lock as a constraint.
$(VENV)/.dev-stamp: $(VENV)/.runtime-stamp requirements-dev.lock.txt
	$(PIP_INSTALL) -r requirements-dev.lock.txt
	touch $@

venv: $(VENV)/.runtime-stamp
dev: $(VENV)/.dev-stamp

smoke: venv
	$(VENV)/bin/cosmo-runner smoke

run: venv
	$(VENV)/bin/cosmo-runner smoke
	$(VENV)/bin/cosmo-runner run examples/bcg/spec.json

lint: dev
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

typecheck: dev
	$(VENV)/bin/mypy

lock-check: venv
	$(VPY) scripts/check_lock.py

# The suite on pytest-xdist workers, one per CPU by default (TEST_WORKERS=0: one process);
# loadgroup keeps the docker and slurm tests on one worker, one at a time (tests/conftest.py).
TEST_WORKERS ?= auto
test: dev lock-check lint typecheck
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup

lock: dev
	$(UV_COMPILE) pyproject.toml requirements/build.in -o requirements.lock.txt
	$(UV_COMPILE) requirements/dev.in -c requirements.lock.txt -o requirements-dev.lock.txt
	$(UV_COMPILE) pyproject.toml requirements/build.in requirements/bench.in -o requirements-bench.lock.txt
	$(VPY) scripts/sync_package_data.py

# Benchmarks: peers (statsmodels, PyMARE) live in their own environment from their own hashed lock.
BENCH_VENV ?= .venv-bench
BENCH_PIP_INSTALL := $(BENCH_VENV)/bin/python -m pip install --disable-pip-version-check --no-input --require-hashes --no-deps

$(BENCH_VENV)/.bench-stamp: requirements-bench.lock.txt pyproject.toml
	@scripts/check_python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PIP_INSTALL) -r requirements-bench.lock.txt
	$(BENCH_VENV)/bin/python -m pip install --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	touch $@

.venv-bench: $(BENCH_VENV)/.bench-stamp

bench: venv .venv-bench
	$(BENCH_VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) .venv-bench build dist .pytest_cache .mypy_cache .ruff_cache

# Docker (docs/docker.md). A private engine (no bridge network, no iptables changes) under
# $(DOCKER_ROOT), a base image from Debian's packages for places with no registry, and the
# hermetic image: locked wheels downloaded on the host, then `docker build --network none`.
# BASE_IMAGE empty: python:3.11-slim-bookworm if present locally, else cosmo-base:bookworm.
# DOCKER=/usr/bin/docker DOCKER_BUILDKIT=1 selects BuildKit; the default client builds legacy.
DOCKER_ROOT ?= /tmp/cosmo-docker
BASE_IMAGE ?=
# The base image's Python (X.Y) when image.py cannot ask the base itself (docs/docker.md).
IMAGE_PYTHON_VERSION ?=
DOCKER ?= docker
DOCKER_ENV := COSMO_DOCKER_ROOT=$(DOCKER_ROOT) DOCKER=$(DOCKER)

docker-up:
	$(DOCKER_ENV) scripts/docker/up.sh

docker-down:
	$(DOCKER_ENV) scripts/docker/down.sh

base-image:
	$(DOCKER_ENV) scripts/docker/base_image.sh

image:
	$(DOCKER_ENV) BASE_IMAGE=$(BASE_IMAGE) IMAGE_PYTHON_VERSION=$(IMAGE_PYTHON_VERSION) \
		$(PYTHON) scripts/docker/image.py

# Slurm (README, "Slurm"): a single-node cluster from Debian's slurm-wlm and munge, loopback
# only, with a private munged, slurmctld and slurmd under $(SLURM_ROOT) (their slurm.conf is
# made from scripts/slurm/slurm.conf.in at start), stopped by their pid files. Needs root.
SLURM_ROOT ?= /tmp/cosmo-slurm
SLURM_ENV := COSMO_SLURM_ROOT=$(SLURM_ROOT)

slurm-up:
	$(SLURM_ENV) scripts/slurm/up.sh

slurm-down:
	$(SLURM_ENV) scripts/slurm/down.sh
