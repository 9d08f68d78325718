#!/usr/bin/env bash
# Make sure an `nginx` binary is on PATH: the cluster tests and `make cluster-demo` put a real nginx
# in front of two hayhooks instances. Installs Debian's package when missing; needs root for that.
set -euo pipefail

# Debian installs it as /usr/sbin/nginx, which is not on every user's PATH; the tests look there too.
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-nginx: nginx is not installed and this is not root, so it cannot be installed here." >&2
    echo "ensure-nginx: install it first, e.g.: sudo apt-get install -y nginx" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-nginx: nginx is not installed and apt-get is not available; install nginx by hand." >&2
    exit 1
fi
echo "ensure-nginx: installing nginx with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends nginx
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "ensure-nginx: apt-get finished but there is still no nginx" >&2
    exit 1
fi
