#!/bin/bash
# Runs inside the container, as tailord-driver.service (run.sh boots into it). Installs
# tailord's units with `tailord install-units` and checks, under the real systemd and sandbox:
# the socket unit starts the service on the first connection; the service is active only
# after READY=1; the socket is 0660 and refuses a user outside the tailord group; a dropped
# sample is learned (a linear head: torch trains under MemoryDenyWriteExecute) and its
# version is on the socket; /usr and /home are read-only to the service; `systemctl reload`
# applies a changed quiet_seconds; a hung main loop (SIGSTOP) is killed by the watchdog and
# restarted; the user units run under `systemd --user`. Exit code: the number of failures.
set -uo pipefail
repo=$1
failures=0
ok() { echo "driver: ok   - $*"; }
fail() {
    echo "driver: FAIL - $*"
    failures=$((failures + 1))
}
check() { # check "what" command...: ok if the command succeeds
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
wait_until() { # wait_until SECONDS command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}
prop() { systemctl show -P "$2" "$1"; }
sock=/run/tailord/tailord.sock
ctl() { tailorctl --socket "$sock" "$@"; }

# -- tailord from the checkout: the host's virtualenv on this python3.11 ------------------------
site=$repo/.venv/lib/python3.11/site-packages
echo "import site; site.addsitedir('$site')" >/usr/lib/python3/dist-packages/tailord-host.pth
for name in tailord tailorctl; do
    module=$([ $name = tailord ] && echo "tailord.daemon.cli:tailord_main" || echo "tailord.daemon.ctl.main:main")
    # The __main__ guard, as pip's scripts have: the update worker is spawned and
    # imports the main module again.
    printf '#!/usr/bin/python3\nimport sys\nfrom %s import %s\nif __name__ == "__main__":\n    sys.exit(%s())\n' \
        "${module%%:*}" "${module##*:}" "${module##*:}" >/usr/local/bin/$name
    chmod 755 /usr/local/bin/$name
done
check "tailord runs in the container" tailord --version

mkdir -p /srv/inbox
tailord install-units --inbox /srv/inbox || fail "install-units"
# Shorter than the shipped timings, so the watchdog check takes seconds; the config file
# makes the reload check possible (install-units writes no --config).
mkdir -p /etc/systemd/system/tailord.service.d /etc/tailord
cat >/etc/systemd/system/tailord.service.d/test.conf <<UNIT
[Service]
ExecStart=
ExecStart=/usr/local/bin/tailord serve --allow-group tailord --inbox /srv/inbox --config /etc/tailord/tailord.toml
WatchdogSec=4
TimeoutAbortSec=2
RestartSec=1
# The checkout (and its .venv) stands in for an installed tailord: the sandbox's PrivateTmp
# and ProtectHome would hide it wherever CI cloned it (/tmp, /root, /home).
BindReadOnlyPaths=$repo
$(case "$repo" in /home/* | /root/* | /run/user/*) echo "ProtectHome=tmpfs" ;; esac)
UNIT
printf '[model]\nhead = "linear"\n[policy]\nquiet_seconds = 1\n' >/etc/tailord/tailord.toml
systemd-sysusers
chown tailord:tailord /srv/inbox
useradd --create-home member --groups tailord
useradd --create-home outsider
systemctl daemon-reload

# -- socket activation, readiness ------------------------------------------------------------
systemctl start tailord.socket
check "the socket unit listens" test "$(systemctl is-active tailord.socket)" = active
check "the service waits for a connection" test "$(systemctl is-active tailord.service)" = inactive
check "the socket is 0660, the tailord group's" test "$(stat -c '%a %U %G' $sock)" = "660 tailord tailord"

states=$(mktemp)
(for _ in $(seq 600); do
    s=$(systemctl is-active tailord.service)
    echo "$s $(journalctl -q -u tailord -g 'tailord serving version' | wc -l)" >>"$states"
    [ "$s" = active ] && break
    sleep 0.05
done) &
poller=$!
check "the first connection starts tailord (version 0)" test "$(ctl version)" = 0
wait $poller
check "it was activating before active" grep -q '^activating' "$states"
check "active only once it served (READY=1 after the socket and version)" \
    grep -qx 'active [1-9]' <(grep '^active' "$states" | head -1)
check "STATUS= shows the policy" grep -q 'serving version 0' <(prop tailord StatusText)

check "a member of the tailord group is served" setpriv --reuid=member --regid=member --init-groups \
    tailorctl --socket $sock version
check "a user outside the group is refused" bash -c "! setpriv --reuid=outsider --regid=outsider --init-groups tailorctl --socket $sock version"

# -- a sample learned under the sandbox --------------------------------------------------------
mkdir -p /srv/inbox/cat /srv/inbox/dog
for i in 1 2 3 4 5 6; do
    echo "[2, 2, 2, 2, 2, 2, 2, 2.$i]" >/srv/inbox/cat/.c$i.json && mv /srv/inbox/cat/.c$i.json /srv/inbox/cat/c$i.json
    echo "[-2, 2, -2, 2, -2, 2, -2, 2.$i]" >/srv/inbox/dog/.d$i.json && mv /srv/inbox/dog/.d$i.json /srv/inbox/dog/d$i.json
done
chown -R tailord:tailord /srv/inbox
if wait_until 180 bash -c "[ \"\$(tailorctl --socket $sock version)\" -ge 1 ]"; then
    ok "the dropped samples are learned: version $(ctl version) on the socket (linear head, MemoryDenyWriteExecute=yes)"
else
    fail "no version 1 within 180 s"
    ctl status
    journalctl -q -u tailord --no-pager | tail -30
fi

# -- the sandbox as the service sees it ---------------------------------------------------------
pid=$(prop tailord MainPID)
check "/usr is read-only to the service" bash -c "! nsenter -t $pid -m -- touch /usr/tailord-probe 2>/dev/null"
check "/home is out of the service's reach" bash -c "! nsenter -t $pid -m -- ls /home/member >/dev/null 2>&1"
check "the data folder is writable to it" nsenter -t "$pid" -m -- test -w /var/lib/tailord

# -- reload -----------------------------------------------------------------------------------
printf '[model]\nhead = "linear"\n[policy]\nquiet_seconds = 3600\n[ingest]\nbatch_files = 7\n' \
    >/etc/tailord/tailord.toml
systemctl reload tailord
check "reload logged the applied key" wait_until 10 bash -c "journalctl -q -u tailord | grep -q 'applied policy.quiet_seconds'"
echo "[2, 2, 2, 2, 2, 2, 2, 9]" >/srv/inbox/cat/.late.json && chown tailord: /srv/inbox/cat/.late.json && mv /srv/inbox/cat/.late.json /srv/inbox/cat/late.json
check "the new quiet_seconds is the policy's (STATUS=)" wait_until 30 bash -c \
    "systemctl show -P StatusText tailord | grep -q 'quiet period ends in 3[56][0-9][0-9]s'"
check "the reloaded daemon is the same process" test "$(prop tailord MainPID)" = "$pid"

# -- the watchdog -------------------------------------------------------------------------------
case "$pid" in
    '' | 0)
        # `kill -STOP 0` would stop this driver's own process group.
        fail "tailord is not running; the watchdog cannot be checked"
        journalctl -q -u tailord --no-pager | tail -30
        ;;
    *) kill -STOP "$pid" ;;
esac
if wait_until 30 bash -c "p=\$(systemctl show -P MainPID tailord); [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ] && [ \"\$(systemctl is-active tailord)\" = active ]"; then
    ok "a hung main loop is killed by the watchdog and restarted (pid $pid -> $(prop tailord MainPID))"
else
    fail "the watchdog did not restart a stopped tailord"
fi
check "the journal says why" bash -c "journalctl -q -u tailord | grep -qi 'watchdog timeout'"
check "the restarted tailord serves the same version" test "$(ctl version)" -ge 1

# -- the journal's priorities -------------------------------------------------------------------
warnings=$(journalctl -q -u tailord -p warning -o cat)
check "journalctl -p warning shows the reload's restart warning" grep -q 'apply only on a restart' <<<"$warnings"
check "journalctl -p warning leaves out info lines" bash -c "! grep -q 'serving version' <<<\"\$1\"" _ "$warnings"

# -- stop ---------------------------------------------------------------------------------------
systemctl stop tailord.service
check "SIGTERM stops it cleanly" test "$(prop tailord ExecMainStatus)" = 0

# -- the user units -----------------------------------------------------------------------------
uid=$(id -u member)
# systemd-user-runtime-dir asks logind, over the system bus, for the user's runtime folder.
systemctl start dbus.service systemd-logind.service
if systemctl start "user@$uid.service"; then
    as_member() {
        setpriv --reuid=member --regid=member --init-groups env HOME=/home/member \
            XDG_RUNTIME_DIR=/run/user/$uid "$@"
    }
    as_member tailord install-units --user >/dev/null || fail "install-units --user"
    as_member systemctl --user daemon-reload
    as_member systemctl --user start tailord.socket
    check "the user socket starts the user's tailord (version 0)" test "$(as_member tailorctl version)" = 0
    check "the user service is active" test "$(as_member systemctl --user is-active tailord.service)" = active
    check "its data is in ~/.local/share/tailord" test -f /home/member/.local/share/tailord/tailord.db
else
    fail "user@$uid.service did not start (systemd --user)"
    systemctl status --no-pager "user-runtime-dir@$uid.service" "user@$uid.service"
    journalctl -q --no-pager -u "user-runtime-dir@$uid.service" -u "user@$uid.service" | tail -20
fi

echo "driver: $failures failure(s)"
exit "$failures"
