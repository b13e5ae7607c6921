#!/usr/bin/env bash
# Sets up .venv, then runs lint, format check, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy -p tailord.errors -p tailord.daemon -p tailord.storage -p tailord.trainer
echo "== pytest"
# pytest exits 5 when it collected no test; set -e makes that fail the run, as it should.
.venv/bin/python -m pytest "$@"
