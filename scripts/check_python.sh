#!/usr/bin/env bash
# check_python.sh PYTHON: is PYTHON an interpreter cosmo-runner supports? Run by the Makefile
# before it creates a venv, so that an old (or too new, or missing) python3 gets one clear
# line instead of a pip error halfway through an install.
#
# The supported range is pyproject.toml's requires-python (the one place it is decided).
# No project environment exists yet, so there is no `packaging`: the range must be
# comma-separated clauses `OP X.Y[.Z]` with OP one of >= > <= < == != (what we write), and
# versions are compared with `sort -V`. Anything else in requires-python is reported here.
#
# Exit 0 (prints nothing), or 2 with a message on stderr naming the interpreter and range.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${1:?usage: check_python.sh PYTHON}"
hint="pass a supported one, e.g. make run PYTHON=python3.12 (README: Which Python)"

fail() {
    echo "cosmo-runner: error: $*" >&2
    exit 2
}

spec="$(sed -n 's/^requires-python *= *"\([^"]*\)".*/\1/p' "$root/pyproject.toml")"
[ -n "$spec" ] || fail "pyproject.toml: no requires-python line to check $python against"

command -v "$python" >/dev/null 2>&1 || fail "PYTHON=$python: not found; $hint"
# sys.version_info works on every Python there is (2.x too); the output must be X.Y.Z.
version="$("$python" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null)"
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    fail "PYTHON=$python: does not run as a Python interpreter (printed '${version:0:60}'); $hint"
fi

# version_cmp A B: prints -1, 0 or 1 (release segments, missing ones are 0: 3.11 == 3.11.0).
version_cmp() {
    local a="$1" b="$2"
    while [[ "$a" =~ ^[0-9]+(\.[0-9]+){0,1}$ ]]; do a="$a.0"; done
    while [[ "$b" =~ ^[0-9]+(\.[0-9]+){0,1}$ ]]; do b="$b.0"; done
    if [ "$a" = "$b" ]; then echo 0; return; fi
    if [ "$(printf '%s\n%s\n' "$a" "$b" | sort -V | head -n 1)" = "$a" ]; then echo -1; else echo 1; fi
}

IFS=',' read -r -a clauses <<<"$spec"
for clause in "${clauses[@]}"; do
    clause="${clause// /}"
    if ! [[ "$clause" =~ ^(\>=|\<=|==|!=|\>|\<)([0-9]+(\.[0-9]+){0,2})$ ]]; then
        fail "pyproject.toml: requires-python clause '$clause' is not 'OP X.Y[.Z]' (scripts/check_python.sh reads only that form)"
    fi
    op="${BASH_REMATCH[1]}"
    bound="${BASH_REMATCH[2]}"
    cmp="$(version_cmp "$version" "$bound")"
    case "$op" in
        ">=") ok=$([ "$cmp" -ge 0 ] && echo 1) ;;
        ">") ok=$([ "$cmp" -gt 0 ] && echo 1) ;;
        "<=") ok=$([ "$cmp" -le 0 ] && echo 1) ;;
        "<") ok=$([ "$cmp" -lt 0 ] && echo 1) ;;
        "==") ok=$([ "$cmp" -eq 0 ] && echo 1) ;;
        "!=") ok=$([ "$cmp" -ne 0 ] && echo 1) ;;
    esac
    if [ "${ok:-}" != 1 ]; then
        fail "PYTHON=$python is Python $version; cosmo-runner needs Python $spec (pyproject.toml requires-python); nothing was installed; $hint"
    fi
done
exit 0
