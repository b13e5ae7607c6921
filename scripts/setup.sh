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
