#!/usr/bin/env bash
# Exit 0 when a Docker engine answers: $DOCKER_HOST, else the one `make docker-up` started.
set -euo pipefail
. "$(dirname "$0")/common.sh"
engine_answers
