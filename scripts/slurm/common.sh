# Shared settings for scripts/slurm/*.sh (sourced, not executed).
# The Slurm started by `make slurm-up` lives under one fixed directory, so that make
# targets, tests and .ci/run all find it without passing anything around: its slurm.conf is
# $COSMO_SLURM_ROOT/slurm.conf, and $COSMO_SLURM_ROOT/slurm-env holds the one line
# `SLURM_CONF=...` that Slurm's clients (sinfo, sbatch, dask-jobqueue) need.

COSMO_SLURM_ROOT="${COSMO_SLURM_ROOT:-/tmp/cosmo-slurm}"
COSMO_SLURM_CONF="$COSMO_SLURM_ROOT/slurm.conf"
COSMO_SLURM_ENVFILE="$COSMO_SLURM_ROOT/slurm-env"
COSMO_SLURM_CTLD_PORT="${COSMO_SLURM_CTLD_PORT:-6817}"
COSMO_SLURM_SLURMD_PORT="${COSMO_SLURM_SLURMD_PORT:-6818}"
MUNGE_DIR="$COSMO_SLURM_ROOT/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
MUNGE_PIDFILE="$MUNGE_DIR/munged.pid"
SLURMCTLD_PIDFILE="$COSMO_SLURM_ROOT/slurmctld.pid"
SLURMD_PIDFILE="$COSMO_SLURM_ROOT/slurmd.pid"

log() { printf '%s\n' "[$(basename "$0")] $*" >&2; }
die() { log "error: $*"; exit 1; }

# Exit 0 when process PID is alive (not a zombie: a daemon killed but not yet reaped) and,
# when NAME is given, is that daemon (its comm), so a reused pid does not count either.
pid_alive() {
    local stat comm
    case "$1" in '' | *[!0-9]*) return 1 ;; esac
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # /proc/PID/stat is "PID (COMM) STATE ...", and COMM may hold spaces or parentheses.
    case "${stat##*) }" in Z* | X* | "$stat") return 1 ;; esac
    comm="${stat#*(}"
    [ -z "${2:-}" ] || [ "${comm%)*}" = "$2" ]
}

# The pid in a pid file when pid_alive holds for it (and NAME), else nothing and status 1.
live_pid() {
    local pid
    [ -s "$1" ] || return 1
    pid="$(cat "$1")"
    pid_alive "$pid" "${2:-}" && printf '%s\n' "$pid"
}

# The node's state as sinfo reports it for this cluster ("idle", "mix", "down*", ...).
node_state() {
    SLURM_CONF="$COSMO_SLURM_CONF" timeout 10 sinfo -h -N -o '%t' 2>/dev/null | head -n 1
}

# Exit 0 when this cluster's three daemons run and its node takes work (idle, mixed,
# allocated, or completing a job whose processes are still ending: "comp").
cluster_answers() {
    local state
    live_pid "$MUNGE_PIDFILE" munged >/dev/null && live_pid "$SLURMCTLD_PIDFILE" slurmctld >/dev/null \
        && live_pid "$SLURMD_PIDFILE" slurmd >/dev/null || return 1
    state="$(node_state)" || return 1
    case "$state" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac
}

# The pids of this cluster's job processes, one a line: every live process whose environment
# holds a SLURM_JOB_ID and this cluster's SLURM_CONF (Slurm sets both in a job, and every
# descendant inherits them, also one that left the job's process tree, which
# proctrack/linuxproc then no longer tracks: such a process outlives its cancelled job).
job_pids() {
    local environ pid
    for environ in /proc/[0-9]*/environ; do
        pid="${environ#/proc/}"
        pid="${pid%/environ}"
        [ "$pid" != "$$" ] || continue
        grep -qzxF "SLURM_CONF=$COSMO_SLURM_CONF" "$environ" 2>/dev/null || continue
        grep -qz '^SLURM_JOB_ID=' "$environ" 2>/dev/null || continue
        if pid_alive "$pid"; then printf '%s\n' "$pid"; fi
    done | sort -n
}
