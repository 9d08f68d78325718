#!/usr/bin/env bash
# Prepare what benchmarks/run.py needs besides the project's own venv:
#   - wrk, the load generator (Debian package; installed when missing and running as root)
#   - a scratch venv with the published Hayhooks 2.1.0, the reference the benchmark compares against
# Usage: benchmarks/setup_reference.sh [VENV_DIR]     (default: benchmarks/.reference-venv)
# PYTHON selects the interpreter for the venv (default: python3; hayhooks 2.1.0 needs 3.10+).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.reference-venv}"
python="${PYTHON:-python3}"
version="2.1.0"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
    else
        echo "wrk is missing; install it (e.g. sudo apt-get install wrk)" >&2
        exit 1
    fi
fi

installed() {
    "$venv/bin/python" -I -c "import importlib.metadata as m, sys; sys.exit(m.version('hayhooks') != '$version')" 2>/dev/null
}

if ! installed; then
    echo "creating $venv with hayhooks==$version" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "hayhooks==$version"
fi
installed || { echo "hayhooks==$version did not install into $venv" >&2; exit 1; }
echo "reference: $("$venv/bin/python" -I -c "import importlib.metadata as m; print('hayhooks', m.version('hayhooks'), 'haystack-ai', m.version('haystack-ai'))") in $venv" >&2
