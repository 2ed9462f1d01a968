#!/bin/sh
# Container entrypoint: the environment gate, then the cosmo-runner CLI.
#
# Every container start runs the smoke test before anything else. `run` and `smoke` run
# that same gate themselves (`run` also records the failing checks in its run log, so it
# must not be stopped before it can write one); every other command is gated here,
# quietly on success. Any gate failure (smoke exit 3, or a smoke that cannot even start)
# exits 3, the "environment gate failed" code, with the smoke report on stderr.
# To inspect a broken image without the gate: docker run --entrypoint cosmo-runner ...
set -u

case "${1:-}" in
    run | smoke) ;;
    *)
        report="$(cosmo-runner smoke 2>&1)"
        status=$?
        if [ "$status" -ne 0 ]; then
            printf '%s\n' "$report" >&2
            printf 'cosmo-runner: environment gate failed (smoke exit %s); nothing was run\n' \
                "$status" >&2
            exit 3
        fi
        ;;
esac
exec cosmo-runner "$@"
