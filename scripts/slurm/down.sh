#!/usr/bin/env bash
# make slurm-down: stop the Slurm started by `make slurm-up`, by pid only: first cancel its
# jobs and wait for their processes to end (TERM, then KILL, by pid, any that outlived their
# job: common.sh job_pids), then slurmd, slurmctld and munged by their pid files.
# Idempotent: without pid files or job processes there is nothing to stop. Logs stay in
# $COSMO_SLURM_ROOT.
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

# Wait up to $COSMO_SLURM_JOB_WAIT seconds (default 15) for this cluster's job processes to
# end, TERM the ones left, wait as long again, KILL the rest; all by pid.
stop_job_processes() {
    local pids tries=$((2 * ${COSMO_SLURM_JOB_WAIT:-15}))
    for _ in $(seq 1 "$tries"); do
        pids="$(job_pids)"
        [ -n "$pids" ] || return 0
        sleep 0.5
    done
    log "job processes outlived their jobs: $(echo "$pids" | tr '\n' ' '); sending TERM"
    # shellcheck disable=SC2086 # one pid per word
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 "$tries"); do
        pids="$(job_pids)"
        [ -n "$pids" ] || return 0
        sleep 0.5
    done
    log "job processes still running after TERM: $(echo "$pids" | tr '\n' ' '); sending KILL"
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
}

if [ ! -s "$SLURMCTLD_PIDFILE" ] && [ ! -s "$SLURMD_PIDFILE" ] && [ ! -s "$MUNGE_PIDFILE" ]; then
    stop_job_processes  # left by a cluster that is gone
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

stop_job_processes
rm -f "$COSMO_SLURM_ENVFILE"
stop slurmd "$SLURMD_PIDFILE"
stop slurmctld "$SLURMCTLD_PIDFILE"
stop munged "$MUNGE_PIDFILE"
