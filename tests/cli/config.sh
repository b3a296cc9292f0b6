#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kvstashd's configuration file and --print-config (issue 20): the INI
# example of docs/operations.md is accepted as printed, mistakes give one
# message naming the line or the setting, and --print-config refuses what
# a start would refuse.
. "$(dirname "$0")/lib.sh"
DOCS=$KVS_SOURCE_DIR/docs

# The example in docs/operations.md, inline comments and all.
awk '/^```ini/{f=1;next} f&&/^```/{exit} f' "$DOCS/operations.md" >"$T/ops.ini"
grep -q '# ' "$T/ops.ini" || fail "the example has no inline comment any more"
expect 0 '^port = 7370$' "$KVSTASHD" -c "$T/ops.ini" --print-config
grep -q '^namespaces = model=llama-3.1-8b;dtype=bf16, shared-system-prompts$' "$T/out" ||
    fail "the ';' inside a value was taken for a comment"
grep -q '^\[tenant.ops\]$' "$T/out" || fail "the last section was lost"
grep -q '^max_block_mib = 16$' "$T/out" || fail "a value with a comment was lost"

# Comments: both kinds, whole-line and inline; '#' inside a value stays.
printf '; top\n[daemon]\n  port = 7001 ; why\n# all\nport_file =    # none\n[tenant.t]\ntoken = a#b\n' >"$T/c.ini"
expect 0 '^port = 7001$' "$KVSTASHD" -c "$T/c.ini" --print-config
grep -q '^port_file = $' "$T/out" || fail "empty value with a comment"

# An unclosed section names its line and the problem.
printf '[daemon]\nport = 7001\n[store\ndram_mib = 64\n' >"$T/open.ini"
expect 2 'open.ini:3: section header .\[store. has no closing' \
    "$KVSTASHD" -c "$T/open.ini" --print-config
[ "$(wc -l <"$T/out")" -eq 1 ] || fail "more than one message"

# A bad value: one message, with the line and what was wanted.
printf '[daemon]\nport = abc\nmax_conns = x\n' >"$T/bad.ini"
expect 2 'bad.ini:2: daemon.port: bad value .abc. \(want a whole number 0..65535\)' \
    "$KVSTASHD" -c "$T/bad.ini" --print-config
[ "$(wc -l <"$T/out")" -eq 1 ] || fail "more than one message"
printf 'dram_mib = 64\n' >"$T/nosec.ini"
expect 2 'nosec.ini:1: .*dram_mib belongs in section \[store\]' \
    "$KVSTASHD" -c "$T/nosec.ini" --print-config
printf '[daemon]\njust some words\n' >"$T/noeq.ini"
expect 2 'noeq.ini:2: .just some words. is not a setting' \
    "$KVSTASHD" -c "$T/noeq.ini" --print-config
expect 2 'cannot read config file .*missing.ini: No such file' \
    "$KVSTASHD" -c "$T/missing.ini" --print-config

# --print-config validates as a start does.
expect 0 '^listen = localhost  # 127.0.0.1$' "$KVSTASHD" -l localhost --print-config
expect 2 'daemon.listen = no-such-host.invalid: cannot resolve' \
    "$KVSTASHD" -l no-such-host.invalid --print-config
expect 2 'store.dram_mib = 99999999 .* more than this machine.s [0-9]+ MiB of memory' \
    "$KVSTASHD" --dram-mib 99999999 --print-config
expect 2 'dram_low_pct <= dram_high_pct' \
    "$KVSTASHD" --set store.dram_low_pct=95 --set store.dram_high_pct=90 --print-config
expect 2 'dram_low_pct <= dram_high_pct' \
    "$KVSTASHD" --set store.dram_low_pct=95 -d "$T/never" -p 0
[ ! -e "$T/never" ] || fail "a refused start created its data directory"
expect 2 'nvme_bytes must hold at least two regions' \
    "$KVSTASHD" --nvme-mib 64 --print-config
expect 0 '^list = a=localhost:7400  # a=127.0.0.1:7400$' \
    "$KVSTASHD" --set peer.list=a=localhost:7400 --print-config
expect 2 "peer.list: peer a at 'no-such-host.invalid:7400'" \
    "$KVSTASHD" --set peer.list=a=no-such-host.invalid:7400 --print-config
expect 2 "peer.list: peer a at 'localhost:0'.*1..65535" \
    "$KVSTASHD" --set peer.list=a=localhost:0 --print-config
echo "config: ok"
