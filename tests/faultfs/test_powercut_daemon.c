/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Power cuts under a real kvstashd, run under faultfs-run. The daemon's data
 * directory (data file and RocksDB index) is on faultfs; this process is
 * its client and keeps the list of acknowledged durable puts in memory,
 * where the power cut cannot reach it. Each cycle:
 *
 *   1. start kvstashd (recovery from the previous cut) and connect;
 *   2. check: every acknowledged durable block is back with its bytes,
 *      every volatile block is absent or some version of itself;
 *   3. write: durable puts (class pinned, so that no eviction may take
 *      them; beyond 400 the oldest is retired, that is struck off the list
 *      and then deleted), ordinary puts and deletes; in half the cycles a rule
 *      cuts the power at a random later operation of the daemon's files
 *      (any, or a sync: inside a durable put or an index commit), else the
 *      power is cut after a random number of client operations;
 *   4. SIGKILL the daemon, restore the power (unsynced writes forgotten).
 *
 * A last cycle checks, runs VERIFY through the daemon, and stops it with
 * SIGTERM, which must be an orderly exit. KVS_PCD_CYCLES (default 50),
 * KVS_PCD_SEED (tests/long/powercut.sh daemon runs 3,000); KVS_POWERCUT_RULE is
 * one more faultfs rule for every cycle (with "rule drop_sync data.kvs" the
 * test must report losses).
 */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/endian.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define DUR_MAX (1u << 17)
#define DUR_LIVE 400u /* acknowledged durable blocks kept */
#define NVOL 256u
#define BLK_MAX (32u << 10)

static uint8_t acked[DUR_MAX];
static uint32_t next_dur;
static uint32_t live[DUR_LIVE], live_head, nlive; /* oldest first */
static uint64_t n_acked, n_checked, n_lost, n_wrong, n_errors, n_put_errors;
static uint64_t n_vol_present, n_sched_fired, n_client_cuts;

static uint32_t dur_len(uint32_t n)
{
    uint64_t st = n ^ 0xd0d0;

    return 4096u + (uint32_t)(kvs_test_rand(&st) % 8192u);
}

static void dur_make(uint8_t *b, uint32_t n)
{
    kvs_test_fill(b, dur_len(n), 0x5eed0000ull + n);
}

static uint32_t vol_len(uint32_t k, uint64_t ver)
{
    uint64_t st = ((uint64_t)k << 40) ^ ver;

    return 1024u + (uint32_t)(kvs_test_rand(&st) % (BLK_MAX - 1024u));
}

static void vol_make(uint8_t *b, uint32_t k, uint64_t ver)
{
    uint32_t len = vol_len(k, ver);

    kvs_test_fill(b, len, ((uint64_t)k << 32) ^ ver);
    kvs_le32_store(b, k);
    kvs_le64_store(b + 4, ver);
}

static bool power_off(void)
{
    return kvs_test_faultfs_stat("power") == 1;
}

static void check_all(kvs_client_t *c, uint32_t cycle)
{
    static uint8_t got[BLK_MAX], want[BLK_MAX];
    char key[16];
    size_t len;

    for (uint32_t n = 0; n < next_dur; n++) {
        if (!acked[n])
            continue;
        snprintf(key, sizeof(key), "d%06u", n);
        n_checked++;
        int ret = kvs_client_get(c, key, 7, got, sizeof(got), &len);
        if (ret == KVS_ENOTFOUND) {
            n_lost++;
            fprintf(stderr, "pcd: cycle %u: acknowledged %s is missing\n",
                    cycle, key);
            acked[n] = 0; /* report each once */
            continue;
        }
        if (ret) {
            n_errors++;
            fprintf(stderr, "pcd: cycle %u: get %s: %s\n", cycle, key,
                    kvs_strerror(ret));
            continue;
        }
        dur_make(want, n);
        if (len != dur_len(n) || memcmp(got, want, len) != 0) {
            n_wrong++;
            fprintf(stderr, "pcd: cycle %u: %s has wrong bytes\n", cycle, key);
        }
    }
    for (uint32_t k = 0; k < NVOL; k++) {
        snprintf(key, sizeof(key), "v%06u", k);
        int ret = kvs_client_get(c, key, 7, got, sizeof(got), &len);
        if (ret == KVS_ENOTFOUND)
            continue;
        if (ret) {
            n_errors++;
            fprintf(stderr, "pcd: cycle %u: get %s: %s\n", cycle, key,
                    kvs_strerror(ret));
            continue;
        }
        uint64_t ver = len >= 12 ? kvs_le64_load(got + 4) : 0;
        vol_make(want, k, ver);
        if (len < 12 || kvs_le32_load(got) != k || len != vol_len(k, ver) ||
            memcmp(got, want, len) != 0) {
            n_wrong++;
            fprintf(stderr, "pcd: cycle %u: %s has wrong bytes\n", cycle, key);
            continue;
        }
        n_vol_present++;
    }
}

static void write_phase(kvs_client_t *c, uint32_t cycle, uint64_t *rng)
{
    static uint8_t buf[BLK_MAX];
    uint32_t nops = 20 + (uint32_t)(kvs_test_rand(rng) % 180);
    char key[16];

    for (uint32_t op = 0; op < nops && !power_off(); op++) {
        uint32_t r = (uint32_t)(kvs_test_rand(rng) % 100);
        if (r < 30 && next_dur < DUR_MAX) {
            uint32_t n = next_dur++;
            snprintf(key, sizeof(key), "d%06u", n);
            dur_make(buf, n);
            kvs_iov_t part = {buf, dur_len(n)};
            kvs_client_put_t p = {.key = {key, 7},
                                  .parts = &part,
                                  .nparts = 1,
                                  .flags = KVS_CLIENT_PUT_DURABLE,
                                  .cls = KVS_CLASS_PINNED};
            int ret = kvs_client_put_batch(c, &p, 1);
            if (ret == 0) {
                acked[n] = 1;
                n_acked++;
                if (nlive == DUR_LIVE) {
                    uint32_t old = live[live_head];
                    char okey[16];
                    int st;
                    acked[old] = 0; /* struck off first: may stay or go */
                    snprintf(okey, sizeof(okey), "d%06u", old);
                    kvs_client_key_t ck = {okey, 7};
                    kvs_client_delete(c, &ck, 1, &st);
                    live[live_head] = n;
                    live_head = (live_head + 1) % DUR_LIVE;
                } else {
                    live[(live_head + nlive++) % DUR_LIVE] = n;
                }
            } else if (!power_off()) {
                n_put_errors++;
                fprintf(stderr, "pcd: cycle %u: durable put %s: %s\n", cycle,
                        key, kvs_strerror(ret));
            }
        } else if (r < 80) {
            uint32_t k = (uint32_t)(kvs_test_rand(rng) % NVOL);
            uint64_t ver = ((uint64_t)cycle << 32) | op;
            snprintf(key, sizeof(key), "v%06u", k);
            vol_make(buf, k, ver);
            int ret = kvs_client_put(
                c, key, 7, buf, vol_len(k, ver),
                kvs_test_rand(rng) % 4 ? 0 : KVS_CLIENT_PUT_NO_DRAM);
            if (ret && ret != KVS_EFULL && !power_off()) {
                n_put_errors++;
                fprintf(stderr, "pcd: cycle %u: put %s: %s\n", cycle, key,
                        kvs_strerror(ret));
            }
        } else {
            uint32_t k = (uint32_t)(kvs_test_rand(rng) % NVOL);
            snprintf(key, sizeof(key), "v%06u", k);
            kvs_client_key_t ck = {key, 7};
            int st;
            kvs_client_delete(c, &ck, 1, &st);
        }
    }
}

int main(void)
{
    uint32_t cycles = (uint32_t)strtoul(
        getenv("KVS_PCD_CYCLES") ? getenv("KVS_PCD_CYCLES") : "50", NULL, 0);
    uint64_t rng =
        strtoull(getenv("KVS_PCD_SEED") ? getenv("KVS_PCD_SEED") : "0x70637464",
                 NULL, 0);
    const char *m = kvs_test_faultfs();
    kvs_e2e_daemon_t d;
    char data[600], target[4200];

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!m) {
        printf("pcd: SKIP: run under faultfs-run (KVS_FAULTFS)\n");
        return KVS_TEST_SKIP;
    }
    kvs_e2e_daemon_init(&d, "powercut_daemon");
    if (d.external) {
        printf("pcd: SKIP: kills its daemon; KVS_TEST_DAEMON set\n");
        return KVS_TEST_SKIP;
    }
    /* The daemon's --dir is <d.dir>/data: a link to the mount, so that
     * its port file and log stay off it. */
    snprintf(target, sizeof(target), "%s/daemon", m);
    snprintf(data, sizeof(data), "%s/data", d.dir);
    CHECK(mkdir(target, 0755) == 0);
    CHECK(symlink(target, data) == 0);

    const char *extra = getenv("KVS_POWERCUT_RULE");
    for (uint32_t cycle = 0; cycle <= cycles; cycle++) {
        if (extra && *extra && cycle < cycles)
            CHECK_EQ(kvs_test_faultfs_cmd("%s", extra), 0);
        kvs_e2e_daemon_start(&d, NULL);
        kvs_client_t *c = kvs_e2e_connect(&d, "pcd", NULL);
        check_all(c, cycle);
        if (cycle == cycles) {
            uint64_t checked = 0, bad = 0;
            CHECK_EQ(kvs_client_verify(c, &checked, &bad), 0);
            printf("pcd: last start: verify checked %" PRIu64 " bad %" PRIu64
                   "\n",
                   checked, bad);
            kvs_client_destroy(c);
            kvs_e2e_daemon_stop(&d);
            break;
        }
        if (kvs_test_rand(&rng) % 2) {
            bool sync = kvs_test_rand(&rng) % 2;
            uint64_t skip = kvs_test_rand(&rng) % (sync ? 20 : 300);
            CHECK_EQ(kvs_test_faultfs_cmd("rule cut daemon/%s skip %" PRIu64
                                          " limit 1",
                                          sync ? " op sync" : "", skip),
                     0);
        }
        write_phase(c, cycle, &rng);
        if (power_off())
            n_sched_fired++;
        else
            n_client_cuts++;
        CHECK_EQ(kvs_test_faultfs_cmd("cut"), 0);
        CHECK(kill(d.pid, SIGKILL) == 0);
        int st;
        CHECK(waitpid(d.pid, &st, 0) == d.pid);
        d.pid = 0;
        kvs_client_destroy(c);
        CHECK_EQ(kvs_test_faultfs_cmd("restore"), 0);
        CHECK_EQ(kvs_test_faultfs_cmd("clear"), 0);
    }
    printf("pcd: %u cycles (%" PRIu64 " cut by a rule inside the daemon's "
           "I/O, %" PRIu64 " between client calls), durable puts "
           "acknowledged %" PRIu64 ", durable lookups %" PRIu64
           ", lost %" PRIu64 ", wrong bytes %" PRIu64 ", get errors %" PRIu64
           ", put errors %" PRIu64 ", volatile blocks found intact %" PRIu64
           "\n",
           cycles, n_sched_fired, n_client_cuts, n_acked, n_checked, n_lost,
           n_wrong, n_errors, n_put_errors, n_vol_present);
    bool ok = n_lost == 0 && n_wrong == 0 && n_errors == 0 &&
              n_put_errors == 0 && n_acked > 0;
    printf("pcd: %s\n", ok ? "PASS" : "FAIL");
    if (ok)
        kvs_test_rmtree(d.dir);
    return ok ? 0 : 1;
}
