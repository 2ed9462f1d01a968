#!/usr/bin/env bash
# Exit 0 when the Slurm of `make slurm-up` runs (munged, slurmctld, slurmd) and takes work.
set -euo pipefail
. "$(dirname "$0")/common.sh"
cluster_answers
