#!/usr/bin/env bash
# make docker-up: a private Docker engine as /work/shared/docker-here.md describes it.
# Installs Debian's docker.io and debootstrap when missing, starts dockerd on a private
# socket and data root under $COSMO_DOCKER_ROOT with no bridge network and no iptables
# changes, waits until it answers, and writes the DOCKER_HOST to use into
# $COSMO_DOCKER_ROOT/docker-host. A no-op when an engine already answers.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if engine_answers; then
    log "an engine already answers at ${DOCKER_HOST:-the default socket}; nothing to do"
    exit 0
fi

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]} (apt-get)"
    log "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi

# A stale pid file from a dead daemon must not block a new start.
if [ -s "$COSMO_DOCKER_PIDFILE" ] && ! kill -0 "$(cat "$COSMO_DOCKER_PIDFILE")" 2>/dev/null; then
    rm -f "$COSMO_DOCKER_PIDFILE"
fi
mkdir -p "$COSMO_DOCKER_ROOT"
rm -f "$COSMO_DOCKER_SOCK"

log "starting dockerd (root $COSMO_DOCKER_ROOT, log $COSMO_DOCKER_LOG)"
setsid nohup dockerd --host "unix://$COSMO_DOCKER_SOCK" \
    --data-root "$COSMO_DOCKER_ROOT/data" --exec-root "$COSMO_DOCKER_ROOT/exec" \
    --pidfile "$COSMO_DOCKER_PIDFILE" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    >"$COSMO_DOCKER_LOG" 2>&1 </dev/null &

export DOCKER_HOST="unix://$COSMO_DOCKER_SOCK"
for _ in $(seq 1 60); do
    if engine_answers; then
        printf '%s\n' "$DOCKER_HOST" >"$COSMO_DOCKER_HOSTFILE"
        log "engine ready; DOCKER_HOST=$DOCKER_HOST (also in $COSMO_DOCKER_HOSTFILE)"
        exit 0
    fi
    sleep 0.5
done
tail -n 20 "$COSMO_DOCKER_LOG" >&2 || true
die "dockerd did not answer within 30 s (log: $COSMO_DOCKER_LOG)"
