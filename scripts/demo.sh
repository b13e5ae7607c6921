#!/usr/bin/env bash
# Sets up .venv, starts tailord on a temporary data directory (embedded SQLite), drops 40
# labelled vectors into its inbox, waits for the model version to move from 0 to 1, asks for
# predictions with tailorctl and curl, then stops the daemon with SIGTERM.
# --keep leaves the daemon running in the foreground afterwards (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo's model (the default: a k-NN head over vectors) runs on numpy: install tailord
# alone, without torch or the dev tools (scripts/setup.sh adds what the tests need).
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e . --config-settings editable_mode=strict 2> >(grep -v "^WARNING: Location" >&2)
bin=$PWD/.venv/bin
demo=$(mktemp -d /tmp/tailord-demo.XXXXXX)
export TAILORD_SOCKET=$demo/run/tailord.sock

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

"$bin/tailord" serve --data-dir "$demo/data" --inbox "$demo/inbox" --quiet-seconds 2 \
    2> "$demo/daemon.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
echo "tailord is starting (pid $pid); data in $demo/data, log in $demo/daemon.log"
for _ in $(seq 300); do "$bin/tailorctl" version >/dev/null 2>&1 && break; sleep 0.2; done
"$bin/tailorctl" version >/dev/null || { cat "$demo/daemon.log"; exit 1; }

step tailorctl version; "$bin/tailorctl" version
step "drop 20 'cat' and 20 'dog' vectors into $demo/inbox/{cat,dog}/"
"$bin/python" scripts/demo_samples.py "$demo/inbox" "$demo/unseen"
printf 'waiting until every sample is learned'
learned() {
    "$bin/tailorctl" --json status | "$bin/python" -c \
        'import json, sys; s = json.load(sys.stdin); print(sum(s["samples"].get("learned", {}).values()))'
}
for _ in $(seq 600); do
    [ "$(learned)" = 40 ] && break
    printf '.'; sleep 0.2
done
echo
step tailorctl status; "$bin/tailorctl" status
step tailorctl predict "$demo"/unseen/*.npy; "$bin/tailorctl" predict "$demo"/unseen/*.npy
step curl --unix-socket "\$TAILORD_SOCKET" http://localhost/v1/version
curl -s --unix-socket "$TAILORD_SOCKET" http://localhost/v1/version
if [ "${1:-}" = "--keep" ]; then
    echo "tailord keeps running (TAILORD_SOCKET=$TAILORD_SOCKET); Ctrl-C stops it"
    trap - EXIT
    wait $pid
fi
