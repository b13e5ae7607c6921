#!/usr/bin/env bash
# The integration test under a real systemd: a minimal Debian root (debootstrap, cached),
# booted with systemd-nspawn straight into tailord-driver.service, which installs tailord's
# units from this checkout (bound in read-only) and checks them (driver.sh says what).
# nspawn exits with the driver's code. Needs root. About 1-2 minutes once the root is cached
# (the first run debootstraps it: a few more minutes, network needed).
#
#   tests/systemd/nspawn/run.sh            (TAILORD_NSPAWN_CACHE: where the root is kept)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
cache=${TAILORD_NSPAWN_CACHE:-$HOME/.cache/tailord-nspawn}
root=$cache/bookworm

if [ "$(id -u)" != 0 ]; then
    echo "run.sh: needs root (systemd-nspawn, debootstrap)" >&2
    exit 2
fi
if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get install -y -q systemd-container debootstrap >/dev/null || {
        apt-get update -q >/dev/null && apt-get install -y -q systemd-container debootstrap >/dev/null
    }
fi
if [ ! -x "$root/usr/bin/python3" ]; then
    # Debian bookworm's python3 is 3.11, the ABI of the host's virtualenv, which the
    # container imports from (bound in): nothing is installed inside.
    rm -rf "$root.tmp"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,libpam-systemd,python3 \
        bookworm "$root.tmp" http://deb.debian.org/debian
    mv "$root.tmp" "$root"
fi
# procps: ExecReload's /bin/kill; libpam-systemd: pam_systemd, which gives `systemd --user`
# its $XDG_RUNTIME_DIR. Added to a root cached before they were in the list above.
wanted=(procps libpam-systemd)
installed=$(chroot "$root" dpkg-query -W -f='${db:Status-Status}\n' "${wanted[@]}" 2>/dev/null || true)
if [ "$(grep -cx installed <<<"$installed")" != "${#wanted[@]}" ]; then
    systemd-nspawn --quiet --register=no --keep-unit --directory="$root" \
        apt-get install -y -q "${wanted[@]}"
fi
if [ ! -d "$repo/.venv/lib/python3.11/site-packages" ]; then
    echo "run.sh: run scripts/setup.sh first (the container uses .venv)" >&2
    exit 2
fi

unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed "s|@REPO@|$repo|g" "$repo/tests/systemd/nspawn/tailord-driver.service" >"$unit"
chmod 644 "$unit"
start=$(date +%s)
status=0
# --volatile=overlay: the cached root stays as it is; every write goes to a tmpfs.
# --register=no, --keep-unit: the host's PID 1 is not systemd (no machined to register with).
timeout 900 systemd-nspawn --quiet --boot --register=no --keep-unit --volatile=overlay \
    --directory="$root" --bind-ro="$repo" \
    --bind-ro="$unit:/etc/systemd/system/tailord-driver.service" \
    -- systemd.unit=tailord-driver.service || status=$?
echo "run.sh: the container exited with $status after $(($(date +%s) - start)) s"
exit "$status"
