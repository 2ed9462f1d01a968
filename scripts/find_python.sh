#!/usr/bin/env bash
# find_python.sh X.Y: the path of a CPython X.Y interpreter that pyenv provides (the newest
# X.Y.Z it has), for .ci/run and the cross-version tests. Never a hard-coded path: pyenv is
# asked (`pyenv versions --bare`, then `PYENV_VERSION=X.Y.Z pyenv which python3`).
#
# Exit 0: the path on stdout. Exit 3: pyenv is not installed. Exit 4: pyenv has no X.Y.
# Exit 2: usage. The reason for a non-zero exit is one line on stderr.
set -uo pipefail
minor="${1:-}"
if ! [[ "$minor" =~ ^3\.[0-9]+$ ]]; then
    echo "usage: find_python.sh 3.Y" >&2
    exit 2
fi
if ! command -v pyenv >/dev/null 2>&1; then
    echo "find_python: pyenv not found on PATH; Python $minor not looked for" >&2
    exit 3
fi
# Plain CPython releases only (3.13.0, not 3.13.0t, 3.13-dev, pypy3.10 or a virtualenv).
version="$(pyenv versions --bare 2>/dev/null | sed 's/^[* ]*//; s/ .*//' \
    | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1)"
if [ -z "$version" ]; then
    echo "find_python: pyenv has no Python $minor (pyenv versions: $(pyenv versions --bare 2>/dev/null | tr '\n' ' '))" >&2
    exit 4
fi
path="$(PYENV_VERSION="$version" pyenv which python3 2>/dev/null)"
if [ -z "$path" ] || ! [ -x "$path" ]; then
    echo "find_python: pyenv lists $version but 'PYENV_VERSION=$version pyenv which python3' gives no interpreter" >&2
    exit 4
fi
echo "$path"
