#!/usr/bin/env bash
# Install everything the test suite needs and run it.
#
#   bash scripts/test.sh [pytest args...]
#
# On a fresh Debian machine (as root) this installs PostgreSQL from Debian's
# packages, starts a throw-away server on 127.0.0.1 (its own data directory,
# its own port, stopped again on exit), installs dkmonitor with its test
# dependencies into ./.venv, and runs ruff, mypy --strict and pytest. The
# database tests run against both SQLite and this PostgreSQL server; under
# CI=true a missing PostgreSQL fails the run instead of skipping those tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# A free port unless one is given, so two runs at once do not collide.
PG_PORT="${DKM_TEST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
PG_DATA="$(mktemp -d /tmp/dkm-test-pg.XXXXXX)"
VENV="${DKM_TEST_VENV:-.venv}"

# shellcheck source=scripts/common.sh
. scripts/common.sh

# --- PostgreSQL server from Debian's packages -------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "== installing PostgreSQL (Debian packages)"
    apt_install postgresql
fi
PG_BIN="$(pg_bin)"

# initdb refuses to run as root: the server runs as the postgres user.
chown postgres: "$PG_DATA"
chmod 700 "$PG_DATA"
# Run from / : postgres cannot enter a checkout under /root, and su would say so.
run_pg() { if [ "$(id -u)" -eq 0 ]; then (cd / && su postgres -s /bin/sh -c "$*"); else "$@"; fi; }
cleanup() {
    run_pg "$PG_BIN/pg_ctl -D $PG_DATA -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$PG_DATA"
}
trap cleanup EXIT
echo "== starting PostgreSQL on 127.0.0.1:$PG_PORT"
run_pg "$PG_BIN/initdb -D $PG_DATA -A trust -U postgres --no-sync" >/dev/null
if ! run_pg "$PG_BIN/pg_ctl -D $PG_DATA -l $PG_DATA/server.log -w -o \"-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200\" start" >/dev/null; then
    echo "test.sh: PostgreSQL did not start on port $PG_PORT; its log:" >&2
    cat "$PG_DATA/server.log" >&2 || true
    exit 1
fi
export DKM_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"

# --- Python environment ------------------------------------------------------
ensure_venv_support
ensure_build_tools
# the TLS mail tests make a self-signed certificate with it
if ! command -v openssl >/dev/null 2>&1; then apt_install openssl; fi
# the HTML report is checked in a real headless browser (tests/test_report_browser.py)
if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium (Debian package) for the report's browser test"
    apt_install chromium
fi
# --from-list tests: .zst lists read through the zstd command too
if ! command -v zstd >/dev/null 2>&1; then apt_install zstd; fi
# the MPI scan tests run the real mpirun (Open MPI); mpi4py builds against its headers
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
    echo "== installing Open MPI (Debian packages)"
    apt_install openmpi-bin libopenmpi-dev
fi
# the metrics tests check the node_exporter textfile with promtool (Debian: prometheus)
if ! command -v promtool >/dev/null 2>&1; then
    echo "== installing promtool (Debian package prometheus)"
    apt_install --no-install-recommends prometheus || echo "test.sh: promtool not installed; the promtool checks skip (fail under CI=true)" >&2
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
echo "== installing dkmonitor and test dependencies into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[test,mpi]'

echo "== ruff"
"$VENV/bin/ruff" check dkmonitor tests bench migrations

echo "== mypy"
"$VENV/bin/mypy" --strict dkmonitor

echo "== pytest"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
