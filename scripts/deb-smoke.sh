#!/usr/bin/env bash
# Smoke test of the Debian package: installs it (apt, as root: the CI's
# way) or, with --extract, unpacks it into a folder under ./var (no root,
# nothing written outside the tree); then every binary runs --version, the
# packaged configuration is accepted, kvstashd from the package starts on
# a free port and answers a put and a get, and the unit passes
# systemd-analyze verify. An installed package is removed again.
# Usage: scripts/deb-smoke.sh [--extract] PACKAGE.deb
set -euo pipefail
cd "$(dirname "$0")/.."
mode=install
[ "${1:-}" = --extract ] && { mode=extract; shift; }
deb=$(realpath "$1")
work=$PWD/var/deb-smoke
rm -rf "$work"
mkdir -p "$work"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\):/  \1:/p'
if [ $mode = install ]; then
    apt-get install -y -qq "$deb" >/dev/null
    root=""
    trap 'kill $pid 2>/dev/null || true; apt-get remove -y -qq kvstash >/dev/null' EXIT
else
    dpkg-deb -x "$deb" "$work/root"
    root=$work/root
    export LD_LIBRARY_PATH=$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    trap 'kill $pid 2>/dev/null || true' EXIT
fi
pid=""
for t in kvstashd kvstash kvstash-warmup kvstash-bench; do
    "$root/usr/bin/$t" --version
done
"$root/usr/bin/kvstashd" -c "$root/etc/kvstash/kvstashd.ini" --print-config >/dev/null
"$root/usr/bin/kvstashd" -p 0 --port-file "$work/port" -d "$work/data" \
    --dram-mib 64 --nvme-mib 256 >"$work/kvstashd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
head -c 100000 /dev/urandom >"$work/block"
"$root/usr/bin/kvstash" -p "$port" put smoke "$work/block"
"$root/usr/bin/kvstash" -p "$port" get smoke "$work/back"
cmp "$work/block" "$work/back"
kill -TERM "$pid"
wait "$pid"
pid=""
unit=$root/usr/lib/systemd/system/kvstashd.service
if command -v systemd-analyze >/dev/null; then
    if [ $mode = extract ]; then # verify looks for ExecStart on this system
        sed "s|/usr/bin/|$root/usr/bin/|" "$unit" >"$work/kvstashd.service"
        unit=$work/kvstashd.service
    fi
    systemd-analyze verify "$unit"
    echo "systemd-analyze verify: ok"
else
    echo "systemd-analyze not installed: unit not verified"
fi
echo "deb-smoke ($mode): ok"
