/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk faults under a real kvstashd, run under faultfs-run: the daemon-side
 * half of test_diskfault (which drives the engine directly). For each fault
 * kind a fresh daemon, whose data directory (data file and RocksDB index)
 * is on faultfs, gets two sets of KVS_DFD_BLOCKS blocks (default 1,000),
 * each written by a durable put straight to disk (KVS_CLIENT_PUT_NO_DRAM),
 * and 32 control blocks before them:
 *
 *   kind                rule on                  hit while
 *   eio_read            data.kvs                 set G's gets, set V's verify
 *   flip_read header    data.kvs reads [0,128)   the same
 *   flip_read payload   data.kvs reads [4K,8K)   the same
 *   drop_write          data.kvs                 both sets' puts
 *   torn_write          data.kvs (4 KiB lands)   both sets' puts
 *   eio_write           data.kvs                 both sets' puts
 *   eio_write index     index/0* (WAL, SSTs)     both sets' puts
 *
 * Promises, through the client library and the kvstash command (its
 * "verify", as an operator would run it):
 *   - every get of set G is a miss or an error, never bytes, and never
 *     wrong bytes; a durable put whose write failed is not acknowledged;
 *   - "kvstash verify" reports every damaged block of set V (and, under a
 *     read fault, every block it reads);
 *   - the daemon keeps serving: the controls read back right afterwards
 *     (written again after a read fault: verify dropped them), a fresh
 *     durable put and get work, and its connection count is back;
 *   - the next start, with the disk healthy, is clean: the daemon starts,
 *     verify there reports no more than the blocks of set G that a get
 *     found damaged (a get drops a block from memory, not its index
 *     record), no get returns wrong bytes, and a second start verifies
 *     with 0 bad; every stop is an orderly exit 0.
 * See docs/testing.md ("Faults below the engine").
 */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/e2e/e2e.h"
#include "tests/faultfs/diskfault_kinds.h"
#include "tests/testutil.h"

#define NCTL 32u
#define BLK_MAX (16u << 10)
#define BATCH 16u

/* Gets of one set: right bytes, wrong bytes, misses, errors. */
struct gets {
    uint64_t right, wrong, miss, err;
};

static unsigned nblk;
static uint8_t want[BATCH][BLK_MAX], got[BLK_MAX];

/* Block i of set (0: G, 1: V, 2: control, 3: fresh) of kind k: 8 to 12
 * KiB (a payload flip at [4K,8K) lands in it), bytes made from its name. */
static void make_key(char *key, unsigned k, unsigned set, unsigned i)
{
    snprintf(key, 17, "k%02u-%u-%010u", k, set, i);
}

static uint32_t make_block(uint8_t *b, unsigned k, unsigned set, unsigned i)
{
    uint32_t len = 8192u + (uint32_t)((i * 1237u + k * 331u) % 4096u);

    kvs_test_fill(b, len, ((uint64_t)k << 40) ^ ((uint64_t)set << 32) ^ i);
    return len;
}

/* Durable puts of blocks [from, to) of a set, BATCH a call; counts the
 * acknowledged ones and the refused ones. */
static void put_set(kvs_client_t *c, unsigned k, unsigned set, unsigned from,
                    unsigned to, uint64_t *ok, uint64_t *err)
{
    static char keys[BATCH][17];
    kvs_iov_t parts[BATCH];
    kvs_client_put_t p[BATCH];

    for (unsigned i = from; i < to; i += BATCH) {
        unsigned n = to - i < BATCH ? to - i : BATCH;

        memset(p, 0, sizeof(p));
        for (unsigned j = 0; j < n; j++) {
            make_key(keys[j], k, set, i + j);
            parts[j].base = want[j];
            parts[j].len = make_block(want[j], k, set, i + j);
            p[j].key.data = keys[j];
            p[j].key.len = 16;
            p[j].parts = &parts[j];
            p[j].nparts = 1;
            p[j].flags = KVS_CLIENT_PUT_DURABLE | KVS_CLIENT_PUT_NO_DRAM;
        }
        kvs_client_put_batch(c, p, n);
        for (unsigned j = 0; j < n; j++) {
            if (p[j].status == 0)
                (*ok)++;
            else
                (*err)++;
        }
    }
}

static void get_set(kvs_client_t *c, unsigned k, unsigned set, unsigned n,
                    struct gets *g)
{
    char key[17];
    size_t len;

    memset(g, 0, sizeof(*g));
    for (unsigned i = 0; i < n; i++) {
        make_key(key, k, set, i);
        int ret = kvs_client_get(c, key, 16, got, sizeof(got), &len);
        uint32_t wlen = make_block(want[0], k, set, i);
        if (ret == KVS_ENOTFOUND)
            g->miss++;
        else if (ret)
            g->err++;
        else if (len == wlen && memcmp(got, want[0], len) == 0)
            g->right++;
        else
            g->wrong++;
    }
}

/* "kvstash verify" against the daemon, as an operator runs it: its exit
 * status (0 clean, 1 bad blocks found) and the two counts it prints. */
static void cli_verify(const kvs_e2e_daemon_t *d, uint64_t *checked,
                       uint64_t *bad)
{
    char cmd[700], line[256];
    bool parsed = false;
    FILE *f;

    snprintf(cmd, sizeof(cmd), "%s -p %u -n dfd verify 2>&1", KVS_CLI_BIN,
             (unsigned)d->port);
    f = popen(cmd, "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "checked %" SCNu64 " blocks on disk, %" SCNu64 " bad",
                   checked, bad) == 2)
            parsed = true;
        else
            fprintf(stderr, "dfd: kvstash verify: %s", line);
    int st = pclose(f);
    CHECK(parsed);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == (*bad ? 1 : 0));
}

static void check_controls(kvs_client_t *c, unsigned k, const char *when)
{
    struct gets g;

    get_set(c, k, 2, NCTL, &g);
    if (g.right != NCTL)
        fprintf(stderr, "dfd: %s: controls %s: %" PRIu64 " right of %u\n",
                kvs_dfkinds[k].name, when, g.right, NCTL);
    CHECK_EQ(g.right, NCTL);
}

static void start(kvs_e2e_daemon_t *d, kvs_client_t **c)
{
    kvs_e2e_daemon_start(d, NULL);
    *c = kvs_e2e_connect(d, "dfd", NULL);
}

static void stop(kvs_e2e_daemon_t *d, kvs_client_t *c)
{
    kvs_client_destroy(c);
    kvs_e2e_daemon_stop(d); /* checks an orderly exit 0 */
}

static void run_kind(const char *mnt, unsigned k)
{
    const struct kvs_dfkind *kd = &kvs_dfkinds[k];
    uint64_t fired0 = kvs_test_faultfs_stat(kd->fired);
    uint64_t put_ok = 0, put_err = 0, ctl_ok = 0, ctl_err = 0, fired;
    uint64_t v_checked, v_bad, r_checked, r_bad, r2_checked, r2_bad;
    struct gets g, rg, rv;
    char name[32], target[4200], data[600];
    kvs_e2e_daemon_t d;
    kvs_client_t *c;

    snprintf(name, sizeof(name), "diskfault_daemon_%u", k);
    kvs_e2e_daemon_init(&d, name);
    snprintf(target, sizeof(target), "%s/daemon%u", mnt, k);
    snprintf(data, sizeof(data), "%s/data", d.dir);
    CHECK(mkdir(target, 0755) == 0);
    CHECK(symlink(target, data) == 0);
    start(&d, &c);

    put_set(c, k, 2, 0, NCTL, &ctl_ok, &ctl_err);
    CHECK_EQ(ctl_ok, NCTL);
    if (kd->on_write)
        CHECK_EQ(kvs_test_faultfs_cmd("%s", kd->rule), 0);
    put_set(c, k, 0, 0, nblk, &put_ok, &put_err);
    put_set(c, k, 1, 0, nblk, &put_ok, &put_err);
    if (!kd->on_write)
        CHECK_EQ(kvs_test_faultfs_cmd("%s", kd->rule), 0);
    else
        CHECK_EQ(kvs_test_faultfs_cmd("clear"), 0);
    get_set(c, k, 0, nblk, &g);
    cli_verify(&d, &v_checked, &v_bad);
    CHECK_EQ(kvs_test_faultfs_cmd("clear"), 0);
    fired = kvs_test_faultfs_stat(kd->fired) - fired0;

    /* Still serving. */
    if (!kd->on_write) {
        ctl_ok = ctl_err = 0;
        put_set(c, k, 2, 0, NCTL, &ctl_ok, &ctl_err);
        CHECK_EQ(ctl_ok, NCTL);
    }
    check_controls(c, k, "after the faults");
    /* A fresh durable put: at once, or after an index fault within a
     * second of the index's next reopen. */
    uint64_t t0 = kvs_clock_mono_ns(), back_ms;
    for (;;) {
        ctl_ok = ctl_err = 0;
        put_set(c, k, 3, 0, 1, &ctl_ok, &ctl_err);
        if (ctl_ok || !kd->index || kvs_clock_mono_ns() - t0 > 5000000000ull)
            break;
        usleep(50000);
    }
    back_ms = (kvs_clock_mono_ns() - t0) / 1000000;
    CHECK_EQ(ctl_ok, 1);
    get_set(c, k, 3, 1, &rg);
    CHECK_EQ(rg.right, 1);
    while (kvs_e2e_stat(c, "connections") != 1) /* the command's is gone */
        usleep(10000);
    stop(&d, c);

    /* The next start, the disk healthy again: verify first (it would not
     * see a block a get has just dropped), then every block. */
    start(&d, &c);
    cli_verify(&d, &r_checked, &r_bad);
    check_controls(c, k, "after the restart");
    get_set(c, k, 0, nblk, &rg);
    get_set(c, k, 1, nblk, &rv);
    stop(&d, c);
    start(&d, &c);
    cli_verify(&d, &r2_checked, &r2_bad);
    stop(&d, c);

    printf("dfd: %s: %" PRIu64 " injected; puts %" PRIu64
           " acknowledged, %" PRIu64 " failed; set G gets: %" PRIu64
           " right, %" PRIu64 " wrong, %" PRIu64 " misses, %" PRIu64
           " errors; kvstash verify: %" PRIu64 " checked, %" PRIu64
           " bad; restart: verify %" PRIu64 " checked, %" PRIu64
           " bad, gets G %" PRIu64 "/V %" PRIu64 " right, %" PRIu64
           " wrong, controls right; second restart: verify %" PRIu64
           " checked, %" PRIu64 " bad; fresh put after %" PRIu64 " ms\n",
           kd->name, fired, put_ok, put_err, g.right, g.wrong, g.miss, g.err,
           v_checked, v_bad, r_checked, r_bad, rg.right, rv.right,
           rg.wrong + rv.wrong, r2_checked, r2_bad, back_ms);

    CHECK(fired >= (kd->index ? 1 : nblk));
    CHECK(back_ms < 1500);
    CHECK_EQ(g.wrong, 0);
    CHECK_EQ(g.right, 0);
    CHECK_EQ(g.miss + g.err, nblk);
    CHECK_EQ(rg.wrong + rv.wrong, 0);
    CHECK_EQ(r2_bad, 0);
    if (kd->puts_fail) {
        CHECK_EQ(put_ok, 0);
        CHECK_EQ(v_bad, 0);
        CHECK_EQ(r_bad, 0);
    } else {
        CHECK_EQ(put_err, 0);
        /* Set V (and, under a read fault, all it reads: the controls). */
        if (kd->on_write)
            CHECK_EQ(v_bad, nblk);
        else
            CHECK(v_bad == v_checked && v_bad >= nblk);
        /* Only blocks a get found damaged, and only if the disk is. */
        CHECK(r_bad <= (kd->on_write ? g.miss + g.err : 0));
    }
    kvs_test_rmtree(d.dir);
}

int main(void)
{
    const char *m = kvs_test_faultfs();
    const char *n = getenv("KVS_DFD_BLOCKS");

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!m) {
        printf("dfd: SKIP: run under faultfs-run (KVS_FAULTFS)\n");
        return KVS_TEST_SKIP;
    }
    if (getenv("KVS_TEST_DAEMON") && *getenv("KVS_TEST_DAEMON")) {
        printf("dfd: SKIP: starts its own daemons; KVS_TEST_DAEMON set\n");
        return KVS_TEST_SKIP;
    }
    nblk = n && *n ? (unsigned)strtoul(n, NULL, 0) : 1000u;
    CHECK(nblk >= 1 && nblk <= 100000);
    for (unsigned k = 0; k < KVS_DFKINDS; k++)
        run_kind(m, k);
    printf("dfd: PASS (%u blocks a set, %zu kinds)\n", nblk, KVS_DFKINDS);
    return 0;
}
