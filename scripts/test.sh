#!/usr/bin/env bash
# Lint, format check, type checks, the import contracts, then the tests. Two tiers:
#
#   scripts/test.sh          the full suite, as CI runs it (.ci/run), with the coverage floor
#                            ([tool.coverage.report] fail_under); ~15 min on 2 cores.
#                            As root it includes the integration test under a real systemd
#                            (tests/systemd/test_nspawn.py: ~30 s with its Debian root cached
#                            in ~/.cache/tailord-nspawn, a few minutes more to debootstrap it).
#   scripts/test.sh --fast   the same checks, then every test not marked slow: each module of
#                            daemon/, storage/ and trainer/ is still exercised. Measured 77 s
#                            on 2 cores (pytest 72 s): run it before every commit.
#
# Further arguments go to pytest (e.g. scripts/test.sh --fast tests/daemon -x).
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
if [ "${1:-}" = "--fast" ]; then
    fast=1
    shift
fi

# The editable install is a link tree (so mypy sees the package): a module added since the last
# setup is missing from it. The full tier always sets up (CI starts from a fresh clone); the
# fast tier only when the tree lacks a module, which saves it ~20 s.
linked() {
    local tree
    tree=$(echo build/__editable__.tailord-*/tailord)
    [ -x .venv/bin/python ] && [ -d "$tree" ] || return 1
    local module
    for module in errors/*.py daemon/*.py daemon/*/*.py storage/*.py trainer/*.py; do
        [ -e "$tree/$module" ] || return 1
    done
}
if [ "$fast" = 0 ] || ! linked; then
    scripts/setup.sh
fi

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy -p tailord.errors -p tailord.daemon -p tailord.storage -p tailord.trainer
echo "== import contracts"; .venv/bin/lint-imports
echo "== pytest"
if [ "$fast" = 1 ]; then
    tier=(-m "not slow")
else
    # Coverage of this process and of every Python it starts (the e2e daemons, the update
    # workers): see [tool.coverage.*] in pyproject.toml.
    tier=(--cov=tailord --cov-report=term-missing:skip-covered)
fi
status=0
.venv/bin/python -m pytest "${tier[@]}" "$@" || status=$?
if [ "$status" = 5 ]; then
    # pytest's "no tests collected" must not pass for a green run: a typo in a path or a
    # marker would otherwise test nothing, quietly.
    echo "scripts/test.sh: pytest collected no test (exit 5); check the paths and -m/-k given" >&2
fi
exit "$status"
