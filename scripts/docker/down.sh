#!/usr/bin/env bash
# make docker-down: stop the engine started by `make docker-up`, by its pid file only.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if [ ! -s "$COSMO_DOCKER_PIDFILE" ]; then
    log "no pid file at $COSMO_DOCKER_PIDFILE; nothing to stop"
    exit 0
fi
pid="$(cat "$COSMO_DOCKER_PIDFILE")"
if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd (pid $pid) still running after 30 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
fi
rm -f "$COSMO_DOCKER_PIDFILE" "$COSMO_DOCKER_HOSTFILE" "$COSMO_DOCKER_SOCK"
