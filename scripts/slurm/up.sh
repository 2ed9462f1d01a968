#!/usr/bin/env bash
# make slurm-up: a single-node Slurm as /work/shared/cluster-here.md describes it, loopback
# only. Installs Debian's slurm-wlm and munge when missing (apt-get update first), starts a
# private munged, slurmctld and slurmd under $COSMO_SLURM_ROOT (default /tmp/cosmo-slurm)
# with the slurm.conf made from scripts/slurm/slurm.conf.in (host name and hardware read at
# run time), waits until sinfo shows the node idle and a trivial srun and sbatch work, and
# writes `SLURM_CONF=...` into $COSMO_SLURM_ROOT/slurm-env. A no-op when that cluster
# already answers. On any failure it stops what it started (down.sh) and exits 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/common.sh"

if cluster_answers; then
    log "the Slurm under $COSMO_SLURM_ROOT already answers; nothing to do"
    log "export SLURM_CONF=$COSMO_SLURM_CONF"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "need root (apt-get, and slurmd runs jobs as root here)"

missing=0
for tool in munged mungekey munge unmunge slurmctld slurmd sinfo srun sbatch scancel squeue; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
    log "installing slurm-wlm and munge from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# Leftovers of an earlier, half-started cluster (stale pid files, daemons of ours that
# no longer answer) are stopped by their pid files before anything starts.
"$here/down.sh"

fail() {
    log "error: $*"
    for f in "$COSMO_SLURM_ROOT/slurmctld.log" "$COSMO_SLURM_ROOT/slurmd.log" "$MUNGE_DIR/munged.log"; do
        [ -s "$f" ] && { log "--- tail of $f"; tail -n 15 "$f" >&2; }
    done
    "$here/down.sh" || true
    exit 1
}

mkdir -p "$COSMO_SLURM_ROOT/state" "$COSMO_SLURM_ROOT/spool" "$MUNGE_DIR"
# munged wants its socket directory searchable by everyone (0755); the key itself is 0400.
chmod 0755 "$MUNGE_DIR"
rm -f "$COSMO_SLURM_ENVFILE"

# munged: its own key, socket, pid, log and seed files, nothing under /etc or /run.
if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key" || fail "mungekey could not create a key"
fi
chmod 0400 "$MUNGE_DIR/munge.key"
munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
    --pid-file="$MUNGE_PIDFILE" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" </dev/null || fail "munged did not start"
for _ in $(seq 1 40); do
    munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && break
    sleep 0.25
done
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null \
    || fail "munged does not answer on $MUNGE_SOCKET"

# slurm.conf: this host's short name and the hardware slurmd itself detects (a node that
# claims more CPUs or memory than it has is drained).
node="$(hostname -s)"
hardware="$(slurmd -C | grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=[0-9]+' | paste -sd ' ')"
case "$hardware" in *CPUs=*RealMemory=*) ;; *) fail "slurmd -C reported no hardware: $hardware" ;; esac
sed -e "s|@NODE@|$node|g" -e "s|@ROOT@|$COSMO_SLURM_ROOT|g" -e "s|@HARDWARE@|$hardware|" \
    -e "s|@CTLD_PORT@|$COSMO_SLURM_CTLD_PORT|" -e "s|@SLURMD_PORT@|$COSMO_SLURM_SLURMD_PORT|" \
    "$here/slurm.conf.in" >"$COSMO_SLURM_CONF"
export SLURM_CONF="$COSMO_SLURM_CONF"

log "starting slurmctld and slurmd (node $node: $hardware; logs in $COSMO_SLURM_ROOT)"
# Both daemonise and write their pid files; -c starts the controller from a clean state.
# slurmd listens on 127.0.0.1 only (NoInAddrAny); slurmctld 22.05 still binds 0.0.0.0 on its
# port, but every address it is given and uses is 127.0.0.1.
slurmctld -c </dev/null || fail "slurmctld did not start"
slurmd -N "$node" </dev/null || fail "slurmd did not start"

state=""
for _ in $(seq 1 120); do
    state="$(node_state || true)"
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || fail "node $node is '${state:-not listed}', not idle, after 60 s"

# A trivial interactive step and a trivial batch job must both complete.
out="$(timeout 60 srun --nodes=1 --ntasks=1 --time=1 --job-name=cosmo-up-srun echo srun-ok 2>&1)" \
    || fail "srun failed: $out"
[ "$out" = srun-ok ] || fail "srun printed '$out', expected srun-ok"
job_out="$COSMO_SLURM_ROOT/up-sbatch.out"
rm -f "$job_out"
timeout 60 sbatch --wait --quiet --time=1 --job-name=cosmo-up-sbatch --output="$job_out" \
    --wrap 'echo sbatch-ok' || fail "sbatch --wait failed"
[ "$(cat "$job_out" 2>/dev/null)" = sbatch-ok ] || fail "the sbatch job wrote '$(cat "$job_out" 2>/dev/null)'"

printf 'SLURM_CONF=%s\n' "$COSMO_SLURM_CONF" >"$COSMO_SLURM_ENVFILE"
log "Slurm ready: node $node idle, srun and sbatch work"
log "export SLURM_CONF=$COSMO_SLURM_CONF   (also in $COSMO_SLURM_ENVFILE)"
