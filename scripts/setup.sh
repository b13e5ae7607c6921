#!/usr/bin/env bash
# Creates .venv and installs tailord (editable, strict link tree so type checkers see it) with
# the dev tools. The constraints file pins the CPU build of torch. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e '.[dev]' --config-settings editable_mode=strict 2> >(grep -v "^WARNING: Location" >&2)

# The systemd tests (tests/systemd/) need systemd-analyze and systemd-socket-activate, from
# Debian's `systemd` package (no running systemd needed). Installed as root when missing;
# otherwise those tests are skipped with a loud reason.
if ! command -v systemd-analyze >/dev/null || ! command -v systemd-socket-activate >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q systemd >/dev/null || {
            apt-get update -q >/dev/null && apt-get install -y -q systemd >/dev/null
        }
    else
        echo "scripts/setup.sh: systemd-analyze is missing; as root: apt-get install systemd" >&2
    fi
fi
