#!/usr/bin/env bash
# make base-image: a Python 3.11 base image built from Debian's packages, for places with
# no registry. debootstrap (minbase, bookworm) with python3, python3-venv and
# ca-certificates, imported as $COSMO_BASE_TAG (default cosmo-base:bookworm).
# Skipped when that image already exists. Usable as BASE_IMAGE for `make image`.
set -euo pipefail
. "$(dirname "$0")/common.sh"

tag="${COSMO_BASE_TAG:-cosmo-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

engine_answers || die "no Docker engine answers (run: make docker-up)"
if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
    log "$tag exists; skipping"
    exit 0
fi
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (make docker-up installs it)"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

work="$(mktemp -d "${TMPDIR:-/tmp}/cosmo-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "debootstrap bookworm (minbase) into $work/rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
# No package lists or caches in the image.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*

log "importing as $tag"
tar --numeric-owner -C "$work/rootfs" -c . \
    | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$tag" >/dev/null
"$DOCKER" run --rm --network none "$tag" python3 -c 'import sys, venv, ensurepip; print(sys.version)' >&2
log "built $tag"
