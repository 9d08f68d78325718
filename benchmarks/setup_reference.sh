#!/usr/bin/env bash
# Prepare what benchmarks/run.py needs besides the project's own venv:
#   - wrk, the load generator (Debian package; installed when missing and running as root)
#   - a scratch venv with the published Hayhooks 2.1.0, the reference the benchmark compares against
# Usage: benchmarks/setup_reference.sh [VENV_DIR]     (default: benchmarks/.reference-venv)
# PYTHON selects the interpreter for the venv (default: python3; hayhooks 2.1.0 needs 3.10+).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.reference-venv}"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
    else
        echo "wrk is missing; install it (e.g. sudo apt-get install wrk)" >&2
        exit 1
    fi
fi

"$here/../scripts/ensure-published-hayhooks.sh" "$venv"

