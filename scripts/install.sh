#!/usr/bin/env bash
# Install dkmonitor from this checkout into a virtual environment of its own and
# put the `dkmonitor` command on PATH.
#
#   as root:  /opt/dkmonitor, command linked into /usr/local/bin
#   as a user: ~/.local/share/dkmonitor, command linked into ~/.local/bin
#
# Safe to run again: it upgrades the installation in place.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    prefix="${DKM_PREFIX:-/opt/dkmonitor}"
    bindir="/usr/local/bin"
else
    prefix="${DKM_PREFIX:-$HOME/.local/share/dkmonitor}"
    bindir="$HOME/.local/bin"
fi

if [ "$(id -u)" -ne 0 ] && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "install.sh: python3-venv is missing; as root run: apt-get install python3-venv" >&2
    exit 2
fi
# shellcheck source=scripts/common.sh
. scripts/common.sh
ensure_venv_support
if [ "$(id -u)" -eq 0 ]; then ensure_build_tools; fi

python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --upgrade pip >/dev/null
# with the `report` extra: matplotlib and Jinja2 for `dkmonitor report` (HTML)
"$prefix/bin/python" -m pip install -q --upgrade '.[report]'
mkdir -p "$bindir"
ln -sf "$prefix/bin/dkmonitor" "$bindir/dkmonitor"
version="$("$prefix/bin/dkmonitor" --version)"
echo "installed dkmonitor $(echo "$version" | head -n 1 | awk '{print $NF}') in $prefix" \
    "($(echo "$version" | sed -n 's/^scanner: //p')); command: $bindir/dkmonitor" >&2
