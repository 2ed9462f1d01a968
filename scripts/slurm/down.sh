#!/usr/bin/env bash
# make slurm-down: stop the Slurm started by `make slurm-up`, by its pid files only: first
# cancel its jobs (so no job step outlives the cluster), then slurmd, slurmctld and munged.
# Idempotent: without pid files there is nothing to stop. Logs stay in $COSMO_SLURM_ROOT.
set -euo pipefail
. "$(dirname "$0")/common.sh"

# TERM, then KILL after 30 s, the process named by a pid file; then remove the file.
stop() {
    local name="$1" pidfile="$2" pid
    if pid="$(live_pid "$pidfile" "$name")"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            pid_alive "$pid" || break
            sleep 0.5
        done
        if pid_alive "$pid"; then
            log "$name (pid $pid) still running after 30 s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

if [ ! -s "$SLURMCTLD_PIDFILE" ] && [ ! -s "$SLURMD_PIDFILE" ] && [ ! -s "$MUNGE_PIDFILE" ]; then
    log "no pid files under $COSMO_SLURM_ROOT; nothing to stop"
    rm -f "$COSMO_SLURM_ENVFILE" "$SLURMCTLD_PIDFILE" "$SLURMD_PIDFILE" "$MUNGE_PIDFILE"
    exit 0
fi

if live_pid "$SLURMCTLD_PIDFILE" slurmctld >/dev/null && [ -s "$COSMO_SLURM_CONF" ]; then
    export SLURM_CONF="$COSMO_SLURM_CONF"
    jobs="$(timeout 10 squeue -h -o '%A' 2>/dev/null || true)"
    if [ -n "$jobs" ]; then
        log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
        # shellcheck disable=SC2086 # one job id per word
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 1 40); do
            [ -z "$(timeout 10 squeue -h -o '%A' 2>/dev/null || true)" ] && break
            sleep 0.5
        done
    fi
fi

rm -f "$COSMO_SLURM_ENVFILE"
stop slurmd "$SLURMD_PIDFILE"
stop slurmctld "$SLURMCTLD_PIDFILE"
stop munged "$MUNGE_PIDFILE"
