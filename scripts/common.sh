# Shared by install.sh and test.sh (sourced, not run): Debian packages the
# Python side needs, installed only when missing.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# venv + ensurepip (Debian splits them out of python3).
ensure_venv_support() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "== installing python3-venv (Debian package)" >&2
        apt_install python3-venv
    fi
}

# A C compiler and Python's headers, so pip builds the compiled scanner
# (dkmonitor/scan/_dirscan.c). Without them dkmonitor still installs and uses
# its pure-Python scanner, which is slower; so a failed apt only warns.
ensure_build_tools() {
    local headers
    headers="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"
    if command -v gcc >/dev/null 2>&1 && [ -f "$headers" ]; then
        return 0
    fi
    echo "== installing gcc and python3-dev (Debian packages) for the compiled scanner" >&2
    apt_install gcc python3-dev || \
        echo "warning: no compiler or Python headers: dkmonitor will use its slower pure-Python scanner" >&2
}
