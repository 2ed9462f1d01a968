# Shared settings for scripts/docker/*.sh (sourced, not executed).
# The engine started by `make docker-up` lives under one fixed directory, so that
# make targets, tests and .ci/run all find it without passing anything around.

COSMO_DOCKER_ROOT="${COSMO_DOCKER_ROOT:-/tmp/cosmo-docker}"
COSMO_DOCKER_SOCK="$COSMO_DOCKER_ROOT/docker.sock"
COSMO_DOCKER_PIDFILE="$COSMO_DOCKER_ROOT/dockerd.pid"
COSMO_DOCKER_HOSTFILE="$COSMO_DOCKER_ROOT/docker-host"   # one line: the DOCKER_HOST to use
COSMO_DOCKER_LOG="$COSMO_DOCKER_ROOT/dockerd.log"

# DOCKER_HOST: an explicit one wins; otherwise the engine written down by docker-up.
if [ -z "${DOCKER_HOST:-}" ] && [ -s "$COSMO_DOCKER_HOSTFILE" ]; then
    DOCKER_HOST="$(cat "$COSMO_DOCKER_HOSTFILE")"
    export DOCKER_HOST
fi

# The client: $DOCKER when given (e.g. /usr/bin/docker for BuildKit), else the one on PATH.
DOCKER="${DOCKER:-docker}"

engine_answers() {
    command -v "$DOCKER" >/dev/null 2>&1 && "$DOCKER" info >/dev/null 2>&1
}

log() { printf '%s\n' "[$(basename "$0")] $*" >&2; }
die() { log "error: $*"; exit 1; }
