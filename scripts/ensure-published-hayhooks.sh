#!/usr/bin/env bash
# A scratch venv with the published Hayhooks 2.1.0: the reference benchmarks/run.py compares against,
# and the published CLI that tests/e2e/test_uploads.py uses as a client of our server.
# Usage: scripts/ensure-published-hayhooks.sh [VENV_DIR]     (default: benchmarks/.reference-venv)
# PYTHON selects the interpreter for the venv (default: python3; hayhooks 2.1.0 needs 3.10+).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo/benchmarks/.reference-venv}"
python="${PYTHON:-python3}"
version="2.1.0"

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
