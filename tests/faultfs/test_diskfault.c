/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk faults under the engine, run under faultfs-run: for each fault kind,
 * 1,000 blocks are hit and each must end as a miss or an error, never as
 * wrong bytes; kvs_store_verify() must report the damaged ones; the store
 * must keep serving; and after the faults stop, the next open must be clean.
 *
 *   kind                    rule on                 how the blocks are hit
 *   eio_read                data.kvs reads          at get / at verify
 *   flip_read (header)      data.kvs reads [0,128)  one bit of the block's
 *   flip_read (payload)     data.kvs reads [4K,8K)  read image flipped
 *   drop_write              data.kvs writes         the put's write is lost
 *   torn_write              data.kvs writes         only the header page lands
 *   eio_write               data.kvs writes         the durable put fails
 *   eio_write (index)       index/0* (WAL, SSTs)    the durable put fails
 *   delay                   data.kvs, 1 op in 2     5 ms more: nothing else
 *                                                   changes (200 puts, gets)
 *
 * Each kind has two sets of 1,000 blocks, written one durable put each
 * (KVS_PUT_NO_DRAM, so reads go to the disk): set G is read back with
 * gets while the fault is on, set V is checked by kvs_store_verify() while
 * it is on. Read faults are on only while reading; write faults only while
 * writing. 32 control blocks must read back right after every kind and
 * after the reopen; a read fault covers the whole data file, so verify
 * fails them too then, and they are written again afterwards.
 *
 * After one failed write RocksDB takes no more writes until it is
 * reopened, which kvs_index does at the next write and then once a second
 * while the reopen fails: with the index fault on, every put fails with
 * KVS_EINDEX while gets go on; once the fault is gone, puts work again
 * within 1.5 s, without reopening the store.
 *
 * A block whose read fails (EIO or a bad checksum) is dropped from the
 * table at once, so a passing read fault makes it a miss for good in this
 * run. A get leaves its index record (verify deletes it): the next start
 * loads it again, and verify there may report exactly those blocks, which
 * is checked; a second reopen verifies clean. See docs/testing.md.
 *
 * The whole index directory failing (index/LOG, RocksDB's info log, with
 * the WAL, MANIFEST and SSTs): RocksDB as Debian builds it asserts after a
 * failed write to its info log, and did so on the log line it writes about
 * the very error that hit the WAL, aborting the process. kvs_index now
 * keeps that log empty. The case runs first, in a child (it used to
 * abort): durable puts while every write under index/ fails must fail
 * with an error, and work again once the disk is back.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "kvstore/store.h"
#include "tests/faultfs/diskfault_kinds.h"
#include "tests/testutil.h"

#define NBLK 1000u
#define NCTL 32u
#define BLK_MAX (16u << 10)
#define KEYLEN 16u

struct outcome {
    uint64_t put_ok, put_err;
    uint64_t right, wrong, miss, err; /* gets of set G */
    uint64_t verify_checked, verify_bad, verify_bad_v, verify_other;
    uint64_t fired;
    uint64_t recover_ms; /* index kind: until a put worked again */
};

static char dir[4200];
static uint8_t buf[BLK_MAX], got[BLK_MAX];
static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "diskfault: %s:%d: %s: ", __FILE__, __LINE__,      \
                    #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static void config(kvs_store_config_t *c)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 16u << 20;
    c->nvme_bytes = 256u << 20;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 64u << 10;
    c->max_blocks = 16384;
    c->io_depth = 8;
    c->compress_level = 0;
}

/* Key and bytes of block i of set (0: G, 1: V, 2: control) of kind k. */
static void make_key(char *key, unsigned k, unsigned set, unsigned i)
{
    snprintf(key, KEYLEN + 1, "k%02u-%u-%010u", k, set, i);
}

static uint32_t make_block(unsigned k, unsigned set, unsigned i)
{
    uint32_t len = 8192u + (uint32_t)((i * 1237u + k * 331u) % 8192u);

    kvs_test_fill(buf, len, ((uint64_t)k << 40) ^ ((uint64_t)set << 32) ^ i);
    return len;
}

static int put(kvs_store_t *s, uint32_t ns, unsigned k, unsigned set,
               unsigned i)
{
    char key[KEYLEN + 1];
    uint32_t len = make_block(k, set, i);
    kvs_iov_t part = {buf, len};

    make_key(key, k, set, i);
    kvs_put_args_t pa = {.ns = ns,
                         .key = key,
                         .key_len = KEYLEN,
                         .parts = &part,
                         .nparts = 1,
                         .flags = KVS_PUT_DURABLE | KVS_PUT_NO_DRAM};
    return kvs_store_put(s, &pa);
}

/* 0: right bytes; 1: wrong bytes; KVS_ENOTFOUND; or another error. */
static int get(kvs_store_t *s, uint32_t ns, unsigned k, unsigned set,
               unsigned i)
{
    char key[KEYLEN + 1];
    kvs_block_info_t info;

    make_key(key, k, set, i);
    kvs_get_args_t g = {.ns = ns,
                        .key = key,
                        .key_len = KEYLEN,
                        .buf = got,
                        .cap = sizeof(got)};
    int ret = kvs_store_get(s, &g, &info);
    if (ret)
        return ret;
    uint32_t len = make_block(k, set, i);
    return info.data_len == len && memcmp(got, buf, len) == 0 ? 0 : 1;
}

struct vctx {
    unsigned kind;
    struct outcome *o;
};

static void verify_cb(void *arg, uint32_t ns, const void *key, uint32_t key_len,
                      int status)
{
    struct vctx *v = arg;
    char want[8];

    (void)ns;
    (void)status;
    snprintf(want, sizeof(want), "k%02u-1-", v->kind);
    if (key_len == KEYLEN && memcmp(key, want, 5) == 0)
        v->o->verify_bad_v++;
    else
        v->o->verify_other++;
}

static void check_controls(kvs_store_t *s, uint32_t ns, const char *when)
{
    unsigned bad = 0;

    for (unsigned i = 0; i < NCTL; i++)
        bad += get(s, ns, 99, 2, i) != 0;
    CHECK(bad == 0, "%u of %u control blocks not right %s", bad, NCTL, when);
}

static void run_kind(kvs_store_t *s, uint32_t ns, unsigned k, struct outcome *o)
{
    const struct kvs_dfkind *kd = &kvs_dfkinds[k];
    uint64_t fired0 = kvs_test_faultfs_stat(kd->fired);

    memset(o, 0, sizeof(*o));
    if (kd->on_write)
        CHECK(kvs_test_faultfs_cmd("%s", kd->rule) == 0, "rule");
    for (unsigned set = 0; set < 2; set++)
        for (unsigned i = 0; i < NBLK; i++) {
            if (put(s, ns, k, set, i) == 0)
                o->put_ok++;
            else
                o->put_err++;
        }
    if (kd->on_write)
        CHECK(kvs_test_faultfs_cmd("clear") == 0, "clear");
    else
        CHECK(kvs_test_faultfs_cmd("%s", kd->rule) == 0, "rule");

    for (unsigned i = 0; i < NBLK; i++) {
        int r = get(s, ns, k, 0, i);
        if (r == 0)
            o->right++;
        else if (r == 1)
            o->wrong++;
        else if (r == KVS_ENOTFOUND)
            o->miss++;
        else
            o->err++;
    }
    struct vctx v = {k, o};
    int ret =
        kvs_store_verify(s, verify_cb, &v, &o->verify_checked, &o->verify_bad);
    CHECK(ret == 0, "verify: %s", kvs_strerror(ret));
    CHECK(kvs_test_faultfs_cmd("clear") == 0, "clear");
    o->fired = kvs_test_faultfs_stat(kd->fired) - fired0;

    /* What each kind must give. */
    CHECK(o->wrong == 0, "%s: %" PRIu64 " gets returned wrong bytes", kd->name,
          o->wrong);
    CHECK(o->right == 0, "%s: %" PRIu64 " faulted blocks read back right",
          kd->name, o->right);
    CHECK(o->miss + o->err == NBLK, "%s: misses + errors %" PRIu64, kd->name,
          o->miss + o->err);
    if (kd->puts_fail) {
        CHECK(o->put_ok == 0,
              "%s: %" PRIu64 " durable puts acknowledged "
              "though their writes failed",
              kd->name, o->put_ok);
        CHECK(o->verify_bad_v == 0, "%s: verify bad %" PRIu64, kd->name,
              o->verify_bad_v);
    } else {
        CHECK(o->put_err == 0, "%s: %" PRIu64 " puts failed", kd->name,
              o->put_err);
        CHECK(o->verify_bad_v == NBLK,
              "%s: verify reported %" PRIu64 " of %u damaged blocks", kd->name,
              o->verify_bad_v, NBLK);
    }
    /* A read fault covers the whole file, so verify also fails the other
     * blocks on disk then (the controls among them); a write fault must
     * hurt no block but the ones written meanwhile. */
    if (kd->on_write)
        CHECK(o->verify_other == 0,
              "%s: verify reported %" PRIu64 " blocks "
              "outside the faulted set",
              kd->name, o->verify_other);
    else
        CHECK(o->verify_bad == o->verify_checked,
              "%s: %" PRIu64 " of %" PRIu64
              " blocks passed verify under a read fault",
              kd->name, o->verify_checked - o->verify_bad, o->verify_checked);
    CHECK(o->fired >= (kd->index ? 1 : NBLK),
          "%s: faultfs injected only %" PRIu64, kd->name, o->fired);

    /* The store keeps serving: the controls (written again after a read
     * fault, which dropped them) and a fresh durable block. */
    if (!kd->on_write)
        for (unsigned i = 0; i < NCTL; i++)
            CHECK(put(s, ns, 99, 2, i) == 0, "control put");
    check_controls(s, ns, "after the faults");
    if (kd->index) {
        /* The index reopens itself at a write once the disk is back: at
         * most a second after its last failed try. */
        uint64_t t0 = kvs_clock_mono_ns();
        int r;

        while ((r = put(s, ns, 98, 2, k)) == KVS_EINDEX &&
               kvs_clock_mono_ns() - t0 < 5000000000ull)
            usleep(50000);
        o->recover_ms = (kvs_clock_mono_ns() - t0) / 1000000;
        CHECK(r == 0 && get(s, ns, 98, 2, k) == 0,
              "%s: a put after the disk came back: %s after %" PRIu64 " ms",
              kd->name, kvs_strerror(r), o->recover_ms);
        CHECK(o->recover_ms < 1500,
              "%s: writes came back only after %" PRIu64 " ms", kd->name,
              o->recover_ms);
    } else {
        CHECK(put(s, ns, 98, 2, k) == 0 && get(s, ns, 98, 2, k) == 0,
              "%s: a put and get after the faults failed", kd->name);
    }
}

/* A slow disk: half the data file's writes and reads take 5 ms more.
 * Durable puts and gets of 200 blocks must all succeed, right. */
static void slow_disk(kvs_store_t *s, uint32_t ns)
{
    enum { N = 200 };
    uint64_t fired0 = kvs_test_faultfs_stat("fired_delay");
    unsigned put_bad = 0, get_bad = 0;

    CHECK(kvs_test_faultfs_cmd("rule delay data.kvs one_in 2 arg 5000") == 0,
          "rule");
    for (unsigned i = 0; i < N; i++)
        put_bad += put(s, ns, 97, 0, i) != 0;
    for (unsigned i = 0; i < N; i++)
        get_bad += get(s, ns, 97, 0, i) != 0;
    CHECK(kvs_test_faultfs_cmd("clear") == 0, "clear");
    uint64_t fired = kvs_test_faultfs_stat("fired_delay") - fired0;
    CHECK(put_bad == 0 && get_bad == 0, "slow disk: %u puts, %u gets failed",
          put_bad, get_bad);
    CHECK(fired >= N / 2, "slow disk: only %" PRIu64 " delays", fired);
    printf("diskfault: %-18s faults injected %5" PRIu64 "; puts ok %u "
           "failed %u; gets right %u wrong or missing %u\n",
           "delay 5 ms", fired, N - put_bad, put_bad, N - get_bad, get_bad);
}

/* Verify at the reopen may find only blocks that a get found damaged on
 * disk (set G of drop_write and torn_write): a get drops a damaged block
 * from the table, its index record only goes with verify or a reclaim. */
static void reopen_cb(void *arg, uint32_t ns, const void *key, uint32_t key_len,
                      int status)
{
    uint64_t *unexpected = arg;
    unsigned k, set, i;
    char text[KEYLEN + 1];

    (void)ns;
    (void)status;
    memcpy(text, key, key_len < KEYLEN ? key_len : KEYLEN);
    text[key_len < KEYLEN ? key_len : KEYLEN] = '\0';
    if (key_len != KEYLEN ||
        sscanf(text, "k%02u-%u-%010u", &k, &set, &i) != 3 || k >= KVS_DFKINDS ||
        set != 0 || !kvs_dfkinds[k].on_write || kvs_dfkinds[k].puts_fail)
        (*unexpected)++;
}

/* Reopens the store with no faults: it must open, verify (see reopen_cb),
 * serve the controls, take puts again, and return none of the faulted
 * blocks; a second reopen must verify clean. */
static void reopen_check(void)
{
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    uint64_t checked = 0, bad = 0, wrong = 0, present = 0, unexpected = 0;
    uint64_t checked2 = 0, bad2 = 0;

    config(&c);
    int ret = kvs_store_open(&c, &s);
    CHECK(ret == 0, "reopen: %s", kvs_strerror(ret));
    if (ret)
        return;
    CHECK(kvs_store_ns_open(s, "fault", 2, &ns) == 0, "ns");
    CHECK(kvs_store_verify(s, reopen_cb, &unexpected, &checked, &bad) == 0,
          "verify");
    CHECK(unexpected == 0,
          "reopen: verify found %" PRIu64 " bad blocks "
          "no get had found damaged",
          unexpected);
    check_controls(s, ns, "after the reopen");
    CHECK(put(s, ns, 98, 3, 0) == 0 && get(s, ns, 98, 3, 0) == 0,
          "reopen: a put and get failed");
    for (unsigned k = 0; k < KVS_DFKINDS; k++)
        for (unsigned set = 0; set < 2; set++)
            for (unsigned i = 0; i < NBLK; i++) {
                int r = get(s, ns, k, set, i);
                wrong += r == 1;
                present += r == 0;
            }
    CHECK(wrong == 0 && present == 0,
          "reopen: %" PRIu64 " wrong, %" PRIu64 " faulted blocks back", wrong,
          present);
    kvs_store_close(s);
    ret = kvs_store_open(&c, &s);
    CHECK(ret == 0, "second reopen: %s", kvs_strerror(ret));
    if (ret == 0) {
        CHECK(kvs_store_verify(s, NULL, NULL, &checked2, &bad2) == 0, "verify");
        CHECK(bad2 == 0, "second reopen: verify found %" PRIu64 " bad", bad2);
        check_controls(s, ns, "after the second reopen");
        kvs_store_close(s);
    }
    printf("diskfault: reopen: opened, verify checked %" PRIu64 " bad %" PRIu64
           " (all found damaged by a get before), %u controls right, "
           "faulted blocks back %" PRIu64 ", wrong %" PRIu64 "; second "
           "reopen: verify checked %" PRIu64 " bad %" PRIu64 "\n",
           checked, bad, NCTL, present, wrong, checked2, bad2);
}

/* The whole index directory failing (see the top). Runs in a child,
 * before this process opens a store: RocksDB's threads must not exist in a
 * process that forks. True when the child saw every put fail with an error
 * and puts work again after the fault. */
static bool index_dir_case(void)
{
    char ldir[4300];
    int st;

    snprintf(ldir, sizeof(ldir), "%s/logcase", kvs_test_faultfs());
    if (mkdir(ldir, 0755) < 0)
        return false;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        kvs_store_config_t c;
        kvs_store_t *s;
        uint32_t ns;
        unsigned failed = 0;
        uint64_t t0;
        int r;

        config(&c);
        c.dir = ldir;
        c.nvme_bytes = 16u << 20;
        if (kvs_store_open(&c, &s) || kvs_store_ns_open(s, "log", 2, &ns))
            _exit(2);
        if (kvs_test_faultfs_cmd("rule eio_write logcase/index/"))
            _exit(3);
        for (unsigned i = 0; i < 20; i++)
            failed += put(s, ns, 90, 0, i) != 0;
        uint64_t fired = kvs_test_faultfs_stat("fired_eio_write");
        if (kvs_test_faultfs_cmd("clear"))
            _exit(3);
        t0 = kvs_clock_mono_ns();
        while ((r = put(s, ns, 90, 1, 0)) == KVS_EINDEX &&
               kvs_clock_mono_ns() - t0 < 5000000000ull)
            usleep(50000);
        printf("diskfault: index/ (LOG, WAL, MANIFEST) failing: %" PRIu64
               " faults injected, %u of 20 durable puts failed; after the "
               "fault a put %s in %" PRIu64 " ms\n",
               fired, failed, r ? kvs_strerror(r) : "worked",
               (kvs_clock_mono_ns() - t0) / 1000000);
        if (failed != 20 || r != 0 || get(s, ns, 90, 1, 0) != 0)
            _exit(4);
        kvs_store_close(s);
        if (kvs_store_open(&c, &s)) /* and the next start is clean */
            _exit(5);
        r = get(s, ns, 90, 1, 0);
        kvs_store_close(s);
        _exit(r == 0 ? 0 : 6);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return false;
    kvs_test_faultfs_cmd("clear");
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok)
        printf("diskfault: index/: %s %d\n",
               WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT
                   ? "FAIL: the process aborted (RocksDB assertion?)"
                   : "FAIL: the child failed, status",
               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return ok;
}

int main(void)
{
    const char *m = kvs_test_faultfs();
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    struct outcome o[KVS_DFKINDS];

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!m) {
        printf("diskfault: SKIP: run under faultfs-run (KVS_FAULTFS)\n");
        return KVS_TEST_SKIP;
    }
    if (!getenv("KVS_DISKFAULT_VERBOSE"))
        kvs_log_set_level(KVS_LOG_ERROR);
    if (!index_dir_case())
        failures++;
    snprintf(dir, sizeof(dir), "%s/diskfault", m);
    if (mkdir(dir, 0755) < 0) {
        perror("mkdir");
        return 1;
    }
    config(&c);
    int ret = kvs_store_open(&c, &s);
    if (ret == 0)
        ret = kvs_store_ns_open(s, "fault", 2, &ns);
    if (ret) {
        fprintf(stderr, "diskfault: open: %s\n", kvs_strerror(ret));
        return 1;
    }
    for (unsigned i = 0; i < NCTL; i++)
        CHECK(put(s, ns, 99, 2, i) == 0, "control put");
    check_controls(s, ns, "before any fault");

    for (unsigned k = 0; k < KVS_DFKINDS; k++) {
        /* The slow disk before the index kind, as it always ran. */
        if (kvs_dfkinds[k].index)
            slow_disk(s, ns);
        run_kind(s, ns, k, &o[k]);
        printf("diskfault: %-18s faults injected %5" PRIu64
               "; puts ok %4" PRIu64 " failed %4" PRIu64
               "; gets: right %" PRIu64 " wrong %" PRIu64 " miss %4" PRIu64
               " error %" PRIu64 "; verify: checked %" PRIu64 " bad %4" PRIu64
               "\n",
               kvs_dfkinds[k].name, o[k].fired, o[k].put_ok, o[k].put_err,
               o[k].right, o[k].wrong, o[k].miss, o[k].err, o[k].verify_checked,
               o[k].verify_bad);
        if (kvs_dfkinds[k].index)
            printf("diskfault: %-18s writes back %" PRIu64 " ms after the "
                   "fault ended, without a reopen of the store\n",
                   kvs_dfkinds[k].name, o[k].recover_ms);
    }
    kvs_store_close(s);
    reopen_check();
    printf("diskfault: %s\n", failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
