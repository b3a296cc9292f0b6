#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make install` into a DESTDIR (issue 20): every file in its place, a
# program outside the project builds against it with find_package(kvstash)
# and with pkg-config and talks to the installed kvstashd, the installed
# configuration is accepted, and the systemd unit passes systemd-analyze
# verify where that can run.
. "$(dirname "$0")/lib.sh"
B=$KVS_BINARY_DIR
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$B/CMakeCache.txt")
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$B/CMakeCache.txt")
sysconf=$prefix/etc
[ "$prefix" = /usr ] && sysconf=/etc
D=$T/root
R=$D$prefix
expect 0 'kvstashd' env DESTDIR="$D" cmake --install "$B"
for f in bin/kvstashd bin/kvstash bin/kvstash-warmup bin/kvstash-bench \
         "$libdir/libkvstash.so" include/kvstash/kvstash.h \
         include/kvstash/client.h "$libdir/pkgconfig/libkvstash.pc" \
         "$libdir/cmake/kvstash/kvstashConfig.cmake" \
         "$libdir/cmake/kvstash/kvstashTargets.cmake" \
         lib/systemd/system/kvstashd.service share/doc/kvstash/operations.md; do
    [ -e "$R/$f" ] || fail "not installed: $prefix/$f"
done
[ -e "$D$sysconf/kvstash/kvstashd.ini" ] || fail "not installed: $sysconf/kvstash/kvstashd.ini"
export LD_LIBRARY_PATH=$R/$libdir
# A sanitizer build installs an instrumented libkvstash: the consumer is
# built the same way, as the sanitizer's runtime must come first.
san=""
grep -q '^KVS_ASAN:BOOL=ON' "$B/CMakeCache.txt" && san="$san -fsanitize=address"
grep -q '^KVS_UBSAN:BOOL=ON' "$B/CMakeCache.txt" && san="$san -fsanitize=undefined"
for t in kvstashd kvstash kvstash-warmup kvstash-bench; do
    expect 0 "^$t [0-9.]+$" "$R/bin/$t" --version
done
expect 0 '^dir = /var/lib/kvstash' "$R/bin/kvstashd" -c "$D$sysconf/kvstash/kvstashd.ini" --print-config

# A consumer, built both ways against the install only.
expect 0 'Build files have been written' cmake -S "$KVS_SOURCE_DIR/tests/cli/consumer" \
    -B "$T/cbuild" -DCMAKE_PREFIX_PATH="$R" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$san"
grep -q "kvstash_DIR:PATH=$R/$libdir/cmake/kvstash" "$T/cbuild/CMakeCache.txt" ||
    fail "find_package found another kvstash"
expect 0 '' cmake --build "$T/cbuild"
expect 0 "^-I$R/include" env PKG_CONFIG_PATH="$R/$libdir/pkgconfig" \
    PKG_CONFIG_SYSROOT_DIR="$D" pkg-config --cflags libkvstash
cflags=$(cat "$T/out")
libs=$(PKG_CONFIG_PATH="$R/$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D" pkg-config --libs libkvstash) ||
    fail "pkg-config --libs libkvstash"
expect 0 '' cc $san -o "$T/consumer-pc" "$KVS_SOURCE_DIR/tests/cli/consumer/main.c" $cflags $libs

KVSTASHD=$R/bin/kvstashd start_daemon "$T/d"
expect 0 'put and get of 65536 bytes: ok' "$T/cbuild/consumer" 127.0.0.1 "$port"
expect 0 'put and get of 65536 bytes: ok' "$T/consumer-pc" 127.0.0.1 "$port"
expect 0 '^stored 4 bytes$' sh -c "printf abcd | '$R/bin/kvstash' -p $port put k -"
stop_daemon || fail "the installed kvstashd did not stop cleanly"

# The unit: its paths point into the prefix; systemd-analyze checks it
# offline (no running systemd needed); exposure must stay "OK" (< 5).
unit=$R/lib/systemd/system/kvstashd.service
grep -q "^ExecStart=$prefix/bin/kvstashd -c $sysconf/kvstash/kvstashd.ini$" "$unit" ||
    fail "ExecStart: $(grep ExecStart "$unit")"
if command -v systemd-analyze >/dev/null; then
    # verify checks ExecStart's binary on this system: a copy of the unit
    # points at the DESTDIR one (--root would need a whole systemd tree).
    mkdir -p "$T/unit"
    sed "s|$prefix/bin/|$R/bin/|; s|file:$prefix/|file:$R/|" "$unit" >"$T/unit/kvstashd.service"
    expect 0 '' systemd-analyze verify "$T/unit/kvstashd.service"
    grep -q . "$T/out" && fail "systemd-analyze verify: $(cat "$T/out")"
    expect 0 'Overall exposure level for kvstashd.service: [0-4]\.' \
        systemd-analyze security --offline=yes "$T/unit/kvstashd.service"
    grep 'Overall exposure' "$T/out"
else
    echo "systemd-analyze not installed: the unit was not verified"
fi
echo "install: ok"
