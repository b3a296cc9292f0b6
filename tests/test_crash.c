/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash consistency: a writer process is killed with SIGKILL at random
 * moments, over and over, in the same store directory, and every restart
 * must honour the durability contract:
 *
 *   - every block whose durable put was acknowledged is back, byte for byte;
 *   - every other block is back intact or gone;
 *   - no get ever returns wrong bytes.
 *
 * One cycle is one child process:
 *
 *   parent                         child (cycle c)
 *   ------                         ---------------
 *   fork ----------------------->  open the store (recovery after the kill
 *                                  of cycle c-1), check every key (results
 *                                  in shared memory), pin the live durable
 *                                  keys, write "ready" to a pipe
 *   read "ready", sleep 2..40 ms   put / delete / flush / get, forever
 *   SIGKILL ------------------->   (dies mid-operation)
 *
 * In about one cycle in ten the parent does not wait for "ready" and kills
 * the child while it opens and checks, so recovery itself is interrupted.
 * A last child only checks, and closes the store.
 *
 * Key spaces, so that the checker knows exactly what to expect:
 *   "d%07u"  durable blocks, written once (KVS_PUT_DURABLE), never
 *            overwritten with other bytes; their content is a function of
 *            the number. After the put returns 0 the child appends "A n" to
 *            ack.log with write() + fdatasync(). To bound DRAM, old ones
 *            are retired: "R n" is logged (and synced) *before* the delete,
 *            so a retired key may be present (intact) or gone.
 *   "v%07u"  volatile blocks: put (sometimes with KVS_PUT_NO_DRAM), replaced
 *            and deleted at random. Each carries (key number, version) in its
 *            first 16 bytes and the rest is a function of those, so any
 *            version the checker finds can be verified.
 *
 * Durable blocks are kept referenced (kvs_store_pin) by the writer: the
 * engine evicts disk-only blocks when it reclaims a region, which is allowed
 * for a cache, and a referenced durable block must instead be rewritten.
 * That keeps "lost" exact: a referenced, acknowledged durable block has no
 * legitimate way to disappear.
 *
 * Power cuts (test_powercut): run under tests/faultfs/faultfs-run, which
 * sets KVS_FAULTFS, the store lives on faultfs and each cycle ends with a
 * power cut before the SIGKILL: every write the store did not fsync is
 * forgotten, in the data file and in RocksDB's files alike. Half the
 * cycles cut at a random moment, half by a rule at a random operation
 * number: any operation, one of the data file, one of the index (inside a
 * RocksDB commit), or a sync of either. Once the power is off every I/O
 * fails, so a child that sees an error first asks faultfs whether the
 * power is off and, if it is, stops there as a machine would (the error
 * is not counted). The acknowledgement log lives off the mount: it is
 * what the clients were told, and survives. The reclaim-window case cuts
 * the power at the data file's sync instead of dying there by seccomp.
 *
 * KVS_POWERCUT_RULE, if set, is one more faultfs rule for every cycle; with
 * "rule drop_sync *" (fsync lies) the test must report lost blocks, which
 * shows that it can see a loss.
 *
 * The writer also changes retention: class and TTL of volatile blocks,
 * and the class (never a TTL) of live durable blocks.
 *
 * Environment: KVS_CRASH_CYCLES (default 100; 50 under ASan/TSan),
 * KVS_CRASH_SEED (default 0x6b767363), KVS_CRASH_KEEP=1 keeps the store
 * directory, KVS_CRASH_VERBOSE=1 shows the engine's info messages (the
 * "stale" count at each open is the interesting one).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/seccomp.h>
#include <sys/syscall.h>

#include "common/endian.h"
#include "common/log.h"
#include "kvstore/segment.h"
#include "kvstore/store.h"
#include "tests/testutil.h"

#define NVOL 1024u            /* volatile key space */
#define DUR_LIVE_MAX 64u      /* durable keys kept referenced */
#define DUR_MAX 65536u        /* durable key numbers, all cycles */
#define VOL_MAGIC 0x4c4f5676u /* "vVOL" */
#define DUR_MAGIC 0x52554464u /* "dDUR" */
#define BLK_MAX (128u << 10)
#define VERIFY_EVERY 5u /* cycles between kvs_store_verify runs */

/* Counters the children update in shared memory; they survive SIGKILL. */
struct shared {
    /* Written by the writer. */
    uint64_t durable_acked; /* durable puts acknowledged, all cycles */
    uint64_t puts, deletes, flushes, gets;
    uint64_t put_errors; /* puts that failed other than KVS_EFULL */
    uint64_t efull;
    uint64_t writer_bad_reads;   /* wrong bytes seen by the writer */
    uint64_t pin_failures;       /* just-acknowledged block not pinnable */
    uint64_t cyc_reclaimed;      /* this cycle's stats.regions_reclaimed */
    uint64_t cyc_written;        /* this cycle's stats.bytes_written */
    uint64_t reclaimed, written; /* summed by the parent */
    /* Written by the checker part of each cycle. */
    uint64_t checks_done;      /* cycles whose check ran to the end */
    uint64_t durable_checked;  /* acked, live durable keys looked up */
    uint64_t lost;             /* acked durable blocks missing */
    uint64_t lost_lookups;     /* lookups that found one missing */
    uint8_t lost_map[DUR_MAX]; /* 1: reported missing */
    uint64_t corrupt;          /* a get returned wrong bytes */
    uint64_t get_errors;       /* a get failed other than KVS_ENOTFOUND */
    uint64_t vol_present, vol_absent;
    uint64_t open_errors;
    uint64_t corrupt_reads; /* stats.corrupt_reads, summed */
    uint64_t verify_runs, verify_checked, verify_bad;
    uint64_t first_lost; /* key number of the first loss, +1 */
    uint64_t first_lost_cycle;
    uint64_t retention, retention_errors; /* set_retention calls, failed */
    uint64_t power_stops;                 /* children stopped by a power cut */
    uint64_t aborts_after_cut; /* children that died in RocksDB's assert */
};

static struct shared *sh;
static char dir[4096];
static char ack_path[4200];

/* ---------------------------------------------------------------------- */
/* Power cuts (faultfs) */

/* True when the store is on faultfs and its power is off now. */
static bool power_off(void)
{
    return kvs_test_faultfs() && kvs_test_faultfs_stat("power") == 1;
}

/* Called where an error is about to be counted: if the power is off, the
 * error is the cut's doing, and the machine stops here until the SIGKILL.
 * The power stays off until the parent has killed this process, so the
 * answer cannot change under the caller. */
/* RocksDB as Debian builds it keeps its assertions, and one of them fires
 * when its info log (index/LOG) is written to again after a write to it
 * failed: after a cut, a child can die of SIGABRT in there. That is the
 * machine going down, not a failure of the test; it exits with
 * EXIT_ABORT_AFTER_CUT when the power is off, and aborts as usual when it
 * is not. */
#define EXIT_ABORT_AFTER_CUT 99

static void abort_handler(int sig)
{
    (void)sig;
    if (kvs_test_faultfs_stat("power") == 1)
        _exit(EXIT_ABORT_AFTER_CUT);
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

static void stop_if_power_off(void)
{
    if (!power_off())
        return;
    __atomic_add_fetch(&sh->power_stops, 1, __ATOMIC_RELAXED);
    for (;;)
        pause();
}

/* ---------------------------------------------------------------------- */
/* Block contents */

static uint64_t mix(uint64_t x)
{
    return kvs_test_rand(&x);
}

/* Half the blocks compress (a repeating pattern, so the codec path is
 * taken on the way to disk and back), half do not. */
static void fill_body(uint8_t *p, size_t len, uint64_t seed)
{
    if (seed & 1) {
        kvs_test_fill(p, len, seed);
        return;
    }
    uint8_t pat[64];
    kvs_test_fill(pat, sizeof(pat), seed);
    for (size_t i = 0; i < len; i++)
        p[i] = pat[i % 64] ^ (uint8_t)(i >> 12);
}

static uint32_t dur_len(uint32_t n)
{
    return 4096u + (uint32_t)(mix(n ^ 0xd0d0) % (12u << 10));
}

static void dur_make(uint8_t *buf, uint32_t n)
{
    uint32_t len = dur_len(n);

    kvs_le32_store(buf, DUR_MAGIC);
    kvs_le32_store(buf + 4, n);
    fill_body(buf + 8, len - 8, mix(n) ^ 0xd);
}

static uint32_t vol_len(uint32_t k, uint64_t ver)
{
    return 1024u +
           (uint32_t)(mix(((uint64_t)k << 40) ^ ver) % (BLK_MAX - 1024u));
}

static void vol_make(uint8_t *buf, uint32_t k, uint64_t ver)
{
    uint32_t len = vol_len(k, ver);

    kvs_le32_store(buf, VOL_MAGIC);
    kvs_le32_store(buf + 4, k);
    kvs_le64_store(buf + 8, ver);
    fill_body(buf + 16, len - 16, mix(((uint64_t)k << 32) ^ ver));
}

/* True if buf (len bytes) is some version of volatile block k. */
static bool vol_valid(const uint8_t *buf, uint64_t len, uint32_t k,
                      uint8_t *scratch)
{
    if (len < 16 || kvs_le32_load(buf) != VOL_MAGIC ||
        kvs_le32_load(buf + 4) != k)
        return false;
    uint64_t ver = kvs_le64_load(buf + 8);
    if (vol_len(k, ver) != len)
        return false;
    vol_make(scratch, k, ver);
    return memcmp(buf, scratch, len) == 0;
}

static void dkey(char *key, uint32_t n)
{
    snprintf(key, 16, "d%07u", n);
}

static void vkey(char *key, uint32_t k)
{
    snprintf(key, 16, "v%07u", k);
}

#define KEYLEN 8u

/* ---------------------------------------------------------------------- */
/* The acknowledgement log */

enum { DUR_NONE = 0, DUR_ACKED = 1, DUR_RETIRED = 2 };

struct ack_state {
    uint8_t st[DUR_MAX];     /* DUR_* per durable key number */
    uint32_t cycle[DUR_MAX]; /* cycle that logged it */
    uint32_t next;           /* one past the highest number logged */
};

/* Reads ack.log; an incomplete last line (the writer died in write()) is
 * ignored, which only makes the check weaker, never wrong. */
static void ack_load(struct ack_state *a)
{
    FILE *f = fopen(ack_path, "r");
    char line[64];

    memset(a, 0, sizeof(*a));
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        unsigned n, cyc;
        char c;
        if (!strchr(line, '\n') ||
            sscanf(line, "%c %u %u", &c, &n, &cyc) != 3 || n >= DUR_MAX)
            continue;
        a->cycle[n] = cyc;
        if (c == 'A' && a->st[n] == DUR_NONE)
            a->st[n] = DUR_ACKED;
        else if (c == 'R')
            a->st[n] = DUR_RETIRED;
        if (n + 1 > a->next)
            a->next = n + 1;
    }
    fclose(f);
}

static uint32_t cur_cycle;

static void ack_append(int fd, char c, uint32_t n)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "%c %u %u\n", c, n, cur_cycle);

    if (write(fd, line, (size_t)len) != len || fdatasync(fd) != 0) {
        fprintf(stderr, "crash: ack log write: %s\n", strerror(errno));
        _exit(3);
    }
}

/* ---------------------------------------------------------------------- */
/* Child: open, check, then write until killed */

static void config(kvs_store_config_t *c)
{
    kvs_store_config_default(c);
    c->dir = dir;
    c->dram_bytes = 16u << 20;
    c->nvme_bytes = 64u << 20;
    c->region_bytes = 4u << 20;
    c->max_block_bytes = 256u << 10;
    c->max_blocks = 8192;
    c->io_depth = 16;
    c->full_wait_ms = 300;
}

static void note_lost(const struct ack_state *a, uint32_t n, uint32_t cycle)
{
    stop_if_power_off();
    sh->lost_lookups++;
    if (sh->lost_map[n])
        return;
    sh->lost_map[n] = 1;
    fprintf(stderr,
            "crash: cycle %u: durable block d%07u (acknowledged in "
            "cycle %u) is missing\n",
            cycle, n, a->cycle[n]);
    if (sh->lost++ == 0) {
        sh->first_lost = n + 1ull;
        sh->first_lost_cycle = cycle;
    }
}

/* Looks up every key the log knows of and every volatile key. */
static void check_store(kvs_store_t *s, uint32_t ns, const struct ack_state *a,
                        uint32_t cycle, bool verify)
{
    enum { B = 32 };
    uint8_t *bufs = malloc((size_t)B * BLK_MAX), *want = malloc(BLK_MAX);
    char keys[B][16];
    kvs_get_args_t g[B];
    kvs_block_info_t info[B];
    int status[B];
    kvs_store_stats_t st;

    if (!bufs || !want)
        _exit(3);
    /* Durable keys: acknowledged ones must be there; retired ones and the
     * few after the last logged one (put, not yet logged) may be. */
    uint32_t end = a->next + 4 < DUR_MAX ? a->next + 4 : DUR_MAX;
    for (uint32_t base = 0; base < end; base += B) {
        uint32_t cnt = end - base < B ? end - base : B;
        for (uint32_t i = 0; i < cnt; i++) {
            dkey(keys[i], base + i);
            g[i] = (kvs_get_args_t){.ns = ns,
                                    .key = keys[i],
                                    .key_len = KEYLEN,
                                    .buf = bufs + (size_t)i * BLK_MAX,
                                    .cap = BLK_MAX};
        }
        kvs_store_get_batch(s, g, cnt, info, status);
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t n = base + i;
            bool acked = a->st[n] == DUR_ACKED;
            if (acked)
                sh->durable_checked++;
            if (status[i] == KVS_ENOTFOUND) {
                if (acked)
                    note_lost(a, n, cycle);
                continue;
            }
            if (status[i] != 0) {
                stop_if_power_off();
                sh->get_errors++;
                fprintf(stderr, "crash: cycle %u: get d%07u: %s\n", cycle, n,
                        kvs_strerror(status[i]));
                continue;
            }
            dur_make(want, n);
            if (info[i].data_len != dur_len(n) ||
                memcmp(g[i].buf, want, dur_len(n)) != 0) {
                sh->corrupt++;
                fprintf(stderr, "crash: cycle %u: d%07u has wrong bytes\n",
                        cycle, n);
            }
        }
    }
    for (uint32_t base = 0; base < NVOL; base += B) {
        for (uint32_t i = 0; i < B; i++) {
            vkey(keys[i], base + i);
            g[i] = (kvs_get_args_t){.ns = ns,
                                    .key = keys[i],
                                    .key_len = KEYLEN,
                                    .buf = bufs + (size_t)i * BLK_MAX,
                                    .cap = BLK_MAX};
        }
        kvs_store_get_batch(s, g, B, info, status);
        for (uint32_t i = 0; i < B; i++) {
            if (status[i] == KVS_ENOTFOUND) {
                sh->vol_absent++;
            } else if (status[i] != 0) {
                stop_if_power_off();
                sh->get_errors++;
                fprintf(stderr, "crash: cycle %u: get v%07u: %s\n", cycle,
                        base + i, kvs_strerror(status[i]));
            } else if (!vol_valid(g[i].buf, info[i].data_len, base + i, want)) {
                sh->corrupt++;
                fprintf(stderr, "crash: cycle %u: v%07u has wrong bytes\n",
                        cycle, base + i);
            } else {
                sh->vol_present++;
            }
        }
    }
    kvs_store_stats(s, &st);
    sh->corrupt_reads += st.corrupt_reads;
    if (verify) {
        uint64_t checked = 0, bad = 0;
        int ret = kvs_store_verify(s, NULL, NULL, &checked, &bad);
        if (ret || bad)
            stop_if_power_off();
        if (ret)
            fprintf(stderr, "crash: verify: %s\n", kvs_strerror(ret));
        sh->verify_runs++;
        sh->verify_checked += checked;
        sh->verify_bad += bad;
        if (bad)
            fprintf(stderr,
                    "crash: cycle %u: verify found %" PRIu64
                    " bad blocks of %" PRIu64 "\n",
                    cycle, bad, checked);
    }
    sh->checks_done++;
    free(bufs);
    free(want);
}

static int put_one(kvs_store_t *s, uint32_t ns, const char *key,
                   const uint8_t *buf, uint32_t len, uint32_t flags,
                   uint64_t *rng)
{
    /* One to four parts, split at random points. */
    kvs_iov_t parts[4];
    uint32_t np = 1 + (uint32_t)(kvs_test_rand(rng) % 4), off = 0;

    for (uint32_t p = 0; p < np; p++) {
        uint32_t n = p + 1 == np
                         ? len - off
                         : (uint32_t)(kvs_test_rand(rng) % (len - off + 1));
        parts[p] = (kvs_iov_t){buf + off, n};
        off += n;
    }
    kvs_put_args_t pa = {.ns = ns,
                         .key = key,
                         .key_len = KEYLEN,
                         .parts = parts,
                         .nparts = np,
                         .flags = flags};
    return kvs_store_put(s, &pa);
}

static void count_put(int ret)
{
    if (ret == 0) {
        sh->puts++;
    } else if (ret == KVS_EFULL) {
        sh->efull++;
    } else {
        stop_if_power_off();
        sh->put_errors++;
        fprintf(stderr, "crash: put: %s\n", kvs_strerror(ret));
    }
}

/* Retention changes: a volatile block gets a random class and maybe a
 * TTL; a live durable block a new class, never a TTL (it must stay). */
static void change_retention(kvs_store_t *s, uint32_t ns, const char *key,
                             bool durable, uint64_t *rng)
{
    uint64_t r = kvs_test_rand(rng);
    uint8_t cls = durable ? (r & 1 ? KVS_CLASS_PINNED : KVS_CLASS_USER)
                          : (uint8_t)(r % 3);
    uint64_t ttl = durable || r % 4 ? 0 : 20 + (r >> 8) % 2000;
    int ret = kvs_store_set_retention(s, ns, key, KEYLEN, cls, ttl);

    sh->retention++;
    if (ret == 0 || ret == KVS_EPINNED_FULL ||
        (ret == KVS_ENOTFOUND && !durable))
        return;
    stop_if_power_off();
    sh->retention_errors++;
    fprintf(stderr, "crash: set_retention %s: %s\n", key, kvs_strerror(ret));
}

static void writer_loop(kvs_store_t *s, uint32_t ns, struct ack_state *a,
                        uint32_t cycle, uint64_t seed)
{
    uint64_t rng = seed ^ ((uint64_t)cycle << 32);
    uint8_t *buf = malloc(BLK_MAX), *want = malloc(BLK_MAX);
    uint32_t live[DUR_LIVE_MAX], nlive = 0, live_head = 0;
    uint64_t ver = (uint64_t)cycle << 32;
    char key[16];
    int fd = open(ack_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

    if (!buf || !want || fd < 0)
        _exit(3);
    /* Re-reference the live durable keys (oldest first). */
    for (uint32_t n = 0; n < a->next; n++) {
        if (a->st[n] != DUR_ACKED)
            continue;
        dkey(key, n);
        if (kvs_store_pin(s, ns, key, KEYLEN, NULL) != 0)
            continue; /* reported by the check */
        if (nlive == DUR_LIVE_MAX) {
            /* More than we keep: retire the oldest. */
            uint32_t old = live[live_head];
            char okey[16];
            dkey(okey, old);
            kvs_store_unpin(s, ns, okey, KEYLEN);
            ack_append(fd, 'R', old);
            kvs_store_delete(s, ns, okey, KEYLEN);
            live[live_head] = n;
            live_head = (live_head + 1) % DUR_LIVE_MAX;
        } else {
            live[(live_head + nlive++) % DUR_LIVE_MAX] = n;
        }
    }

    uint32_t next = a->next;
    for (uint64_t op = 0;; op++) {
        uint32_t r = (uint32_t)(kvs_test_rand(&rng) % 100);
        int ret;

        if (r < 15 && next < DUR_MAX) {
            uint32_t n = next++;
            dkey(key, n);
            dur_make(buf, n);
            ret = put_one(s, ns, key, buf, dur_len(n), KVS_PUT_DURABLE, &rng);
            count_put(ret);
            if (ret)
                continue;
            ack_append(fd, 'A', n);
            __atomic_add_fetch(&sh->durable_acked, 1, __ATOMIC_RELAXED);
            if (nlive == DUR_LIVE_MAX) {
                uint32_t old = live[live_head];
                char okey[16];
                dkey(okey, old);
                kvs_store_unpin(s, ns, okey, KEYLEN);
                ack_append(fd, 'R', old);
                kvs_store_delete(s, ns, okey, KEYLEN);
                nlive--;
                live_head = (live_head + 1) % DUR_LIVE_MAX;
            }
            if (kvs_store_pin(s, ns, key, KEYLEN, NULL) == 0) {
                live[(live_head + nlive++) % DUR_LIVE_MAX] = n;
            } else {
                stop_if_power_off();
                sh->pin_failures++;
            }
        } else if (r < 77) {
            uint32_t k = (uint32_t)(kvs_test_rand(&rng) % NVOL);
            uint32_t flags = kvs_test_rand(&rng) % 4 == 0 ? KVS_PUT_NO_DRAM : 0;
            vkey(key, k);
            vol_make(buf, k, ++ver);
            count_put(put_one(s, ns, key, buf, vol_len(k, ver), flags, &rng));
        } else if (r < 89) {
            uint32_t k = (uint32_t)(kvs_test_rand(&rng) % NVOL);
            vkey(key, k);
            if (kvs_store_delete(s, ns, key, KEYLEN) == 0)
                sh->deletes++;
        } else if (r < 92) {
            bool durable = nlive > 0 && kvs_test_rand(&rng) % 3 == 0;
            if (durable)
                dkey(
                    key,
                    live[(live_head + (uint32_t)(kvs_test_rand(&rng) % nlive)) %
                         DUR_LIVE_MAX]);
            else
                vkey(key, (uint32_t)(kvs_test_rand(&rng) % NVOL));
            change_retention(s, ns, key, durable, &rng);
        } else if (r < 94) {
            kvs_store_flush(s);
            sh->flushes++;
        } else {
            uint32_t k = (uint32_t)(kvs_test_rand(&rng) % NVOL);
            kvs_block_info_t info;
            vkey(key, k);
            kvs_get_args_t g = {.ns = ns,
                                .key = key,
                                .key_len = KEYLEN,
                                .buf = buf,
                                .cap = BLK_MAX};
            ret = kvs_store_get(s, &g, &info);
            sh->gets++;
            if (ret == 0 && !vol_valid(buf, info.data_len, k, want))
                sh->writer_bad_reads++;
        }
        if (op % 16 == 0) {
            kvs_store_stats_t st;
            kvs_store_stats(s, &st);
            sh->cyc_reclaimed = st.regions_reclaimed;
            sh->cyc_written = st.bytes_written;
        }
        if (op > 2000000)
            _exit(4); /* never killed: the parent is gone */
    }
}

/* One cycle's child. ready_fd < 0: check only, then close cleanly. */
static void child_main(uint32_t cycle, uint64_t seed, int ready_fd)
{
    static struct ack_state a;
    kvs_store_config_t c;
    kvs_store_t *s;
    uint32_t ns;
    int ret;

    cur_cycle = cycle;
    if (kvs_test_faultfs())
        signal(SIGABRT, abort_handler);
    if (!getenv("KVS_CRASH_VERBOSE"))
        kvs_log_set_level(KVS_LOG_WARN);
    ack_load(&a);
    config(&c);
    ret = kvs_store_open(&c, &s);
    if (ret == 0)
        ret = kvs_store_ns_open(s, "crash", 2, &ns);
    if (ret) {
        stop_if_power_off();
        fprintf(stderr, "crash: cycle %u: open: %s\n", cycle,
                kvs_strerror(ret));
        sh->open_errors++;
        _exit(2);
    }
    check_store(s, ns, &a, cycle, ready_fd < 0 || cycle % VERIFY_EVERY == 0);
    if (ready_fd < 0) {
        kvs_store_close(s);
        exit(0);
    }
    if (write(ready_fd, "r", 1) != 1)
        _exit(3);
    if (!getenv("KVS_CRASH_VERBOSE"))
        kvs_log_set_level(KVS_LOG_ERROR);
    writer_loop(s, ns, &a, cycle, seed);
}

/* ---------------------------------------------------------------------- */
/* The region-reclaim window, made deterministic */

/*
 * A durable block that is still in DRAM when its region is reclaimed must
 * be written again and stay durable. The writer here fills region 0 of a
 * two-region store, holding durable block X, until region 1 opens; the
 * engine keeps two regions in reserve, so the next put reclaims region 0
 * and writes X again. The writer dies (seccomp kills it) when the data
 * file is synced during that reclaim, before X's new index record is
 * committed. X must be back after reopen.
 */
static int reclaim_window_child(const kvs_store_config_t *c)
{
    static uint8_t buf[256u << 10];
    kvs_store_t *s;
    kvs_store_stats_t st;
    uint32_t ns, filler = sizeof(buf), x_len = dur_len(1);
    char key[16];
    int ret;

    if (kvs_store_open(c, &s) || kvs_store_ns_open(s, "crash", 2, &ns))
        return 10;
    dkey(key, 1);
    dur_make(buf, 1);
    kvs_iov_t part = {buf, x_len};
    kvs_put_args_t pa = {.ns = ns,
                         .key = key,
                         .key_len = KEYLEN,
                         .parts = &part,
                         .nparts = 1,
                         .flags = KVS_PUT_DURABLE};
    if (kvs_store_put(s, &pa))
        return 11;
    /* Fillers (disk only) for the rest of region 0, and one more, which
     * opens region 1. */
    uint64_t rb = c->region_bytes, fl = kvs_segment_disk_len(KEYLEN, 1, filler);
    uint64_t in0 = (rb - kvs_segment_disk_len(KEYLEN, 1, x_len)) / fl;
    uint64_t nfill = in0 + 1;
    kvs_test_fill(buf, filler, 99);
    part.len = filler;
    pa.flags = KVS_PUT_NO_DRAM;
    for (uint64_t i = 0; i < nfill; i++) {
        snprintf(key, sizeof(key), "f%07u", (unsigned)i);
        if (kvs_store_put(s, &pa))
            return 12;
    }
    kvs_store_stats(s, &st);
    if (st.regions_reclaimed != 0 || st.nvme_blocks != nfill + 1)
        return 13;
    char path[4200];
    snprintf(path, sizeof(path), "%s/data.kvs", c->dir);
    int fd = kvs_test_find_fd(path);
    if (fd < 0)
        return 14;
    if (kvs_test_faultfs())
        ret = kvs_test_faultfs_cmd("rule cut crash_reclaim/data.kvs op sync "
                                   "limit 1");
    else
        ret = kvs_test_seccomp(SYS_fdatasync, fd, SECCOMP_RET_KILL_PROCESS);
    if (ret)
        return 15;
    snprintf(key, sizeof(key), "f%07u", (unsigned)nfill);
    kvs_store_put(s, &pa);
    if (power_off())
        return 17; /* the power went at the sync */
    return 16;     /* not killed: the put did not sync */
}

static bool reclaim_window_check(const kvs_store_config_t *c)
{
    kvs_store_t *s;
    uint32_t ns;
    uint8_t *got = malloc(BLK_MAX), *want = malloc(BLK_MAX);
    char key[16];
    kvs_block_info_t info;
    int ret = kvs_store_open(c, &s);

    if (ret) {
        fprintf(stderr, "crash: reclaim window: reopen: %s\n",
                kvs_strerror(ret));
        return false;
    }
    dkey(key, 1);
    dur_make(want, 1);
    ret = kvs_store_ns_open(s, "crash", 2, &ns);
    kvs_get_args_t g = {
        .ns = ns, .key = key, .key_len = KEYLEN, .buf = got, .cap = BLK_MAX};
    if (ret == 0)
        ret = kvs_store_get(s, &g, &info);
    bool ok = ret == 0 && info.data_len == dur_len(1) &&
              memcmp(got, want, dur_len(1)) == 0;
    printf("crash: reclaim window: durable block %s after a crash while "
           "its region was reclaimed (get: %s)\n",
           ok ? "back" : "LOST", kvs_strerror(ret));
    kvs_store_close(s);
    free(got);
    free(want);
    return ok;
}

/* A fresh scratch directory: on faultfs when the test runs on it. */
static void crash_dir(char *out, size_t cap, const char *name)
{
    const char *m = kvs_test_faultfs();

    if (!m) {
        snprintf(out, cap, "%s", kvs_test_dir(name));
        return;
    }
    snprintf(out, cap, "%s/%s", m, name);
    kvs_test_rmtree(out);
    if (mkdir(out, 0755) < 0) {
        fprintf(stderr, "crash: mkdir %s: %s\n", out, strerror(errno));
        exit(1);
    }
}

static bool reclaim_window_case(void)
{
    char wdir[4096];
    kvs_store_config_t c;
    int st;

    crash_dir(wdir, sizeof(wdir), "crash_reclaim");
    kvs_store_config_default(&c);
    c.dir = wdir;
    c.dram_bytes = 16u << 20;
    c.nvme_bytes = 8u << 20;
    c.region_bytes = 4u << 20;
    c.max_block_bytes = 256u << 10;
    c.max_blocks = 1024;
    c.io_depth = 8;
    c.compress_level = 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(reclaim_window_child(&c));
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return false;
    bool died = kvs_test_faultfs() ? WIFEXITED(st) && WEXITSTATUS(st) == 17
                                   : WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
    if (!died) {
        fprintf(stderr,
                "crash: reclaim window: writer did not die at the "
                "sync (status %d)\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return false;
    }
    if (kvs_test_faultfs() &&
        (kvs_test_faultfs_cmd("restore") || kvs_test_faultfs_cmd("clear")))
        return false;
    /* The check opens the store in a child as well: RocksDB's thread pool
     * must not exist in a process that forks. */
    fflush(NULL);
    pid = fork();
    if (pid == 0)
        _exit(reclaim_window_check(&c) ? 0 : 1);
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return false;
    bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (ok)
        kvs_test_rmtree(wdir);
    return ok;
}

/* ---------------------------------------------------------------------- */
/* Parent */

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);

    return v && *v ? strtoull(v, NULL, 0) : def;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Waits for a child; true if it died as expected (by SIGKILL, or by exit
 * status 0 when want_exit). */
static bool reap(pid_t pid, uint32_t cycle, bool want_exit)
{
    int st;

    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return false;
    if (want_exit ? WIFEXITED(st) && WEXITSTATUS(st) == 0
                  : WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        return true;
    if (!want_exit && WIFEXITED(st) &&
        WEXITSTATUS(st) == EXIT_ABORT_AFTER_CUT) {
        sh->aborts_after_cut++;
        return true;
    }
    if (WIFEXITED(st))
        fprintf(stderr, "crash: cycle %u: child exited with %d\n", cycle,
                WEXITSTATUS(st));
    else
        fprintf(stderr, "crash: cycle %u: child died of signal %d\n", cycle,
                WTERMSIG(st));
    return false;
}

/* Sanitized builds run each cycle several times slower: fewer cycles keep
 * the test well under a minute there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DEFAULT_CYCLES 50
#else
#define DEFAULT_CYCLES 100
#endif

int main(void)
{
    uint32_t cycles = (uint32_t)env_u64("KVS_CRASH_CYCLES", DEFAULT_CYCLES);
    uint64_t seed = env_u64("KVS_CRASH_SEED", 0x6b767363);
    uint64_t rng = seed;
    uint32_t bad_exits = 0, early_kills = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    bool cuts = kvs_test_faultfs() != NULL;
    uint32_t sched_cuts = 0, sched_fired = 0, timed_cuts = 0;
    crash_dir(dir, sizeof(dir), "crash");
    /* The acknowledgement log is off the mount: power cuts spare it. */
    snprintf(ack_path, sizeof(ack_path), "%s/ack.log",
             cuts ? kvs_test_dir("crash_acks") : dir);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(sh, 0, sizeof(*sh));
    bool window_ok = reclaim_window_case();

    printf("crash: %u cycles, seed 0x%" PRIx64 ", store %s\n", cycles, seed,
           dir);

    for (uint32_t cycle = 0; cycle < cycles; cycle++) {
        int pfd[2];
        /* One cycle in ten (never the first) is killed during recovery. */
        bool early = cycle > 0 && kvs_test_rand(&rng) % 10 == 0;
        uint64_t delay_us = 2000 + kvs_test_rand(&rng) % 38000;

        /* Half the power cuts are scheduled at a random operation of a
         * random kind of file; the rest come at the kill's moment. */
        bool sched = cuts && kvs_test_rand(&rng) % 2 == 0;
        const char *extra = getenv("KVS_POWERCUT_RULE");
        if (cuts && extra && *extra && kvs_test_faultfs_cmd("%s", extra)) {
            perror("KVS_POWERCUT_RULE");
            return 1;
        }
        if (sched) {
            static const char *const where[] = {
                "*", "data.kvs", "index/", "data.kvs op sync", "index/ op sync",
            };
            uint32_t w = (uint32_t)(kvs_test_rand(&rng) % 5);
            uint64_t skip = kvs_test_rand(&rng) % (w >= 3 ? 12 : 120);
            if (kvs_test_faultfs_cmd("rule cut %s skip %" PRIu64 " limit 1",
                                     where[w], skip)) {
                perror("faultfs rule");
                return 1;
            }
            sched_cuts++;
        }
        if (pipe(pfd) < 0) {
            perror("pipe");
            return 1;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(pfd[0]);
            child_main(cycle, seed, pfd[1]);
            _exit(5);
        }
        close(pfd[1]);
        if (early) {
            early_kills++;
            sleep_us(delay_us);
        } else {
            char r;
            /* EOF means the child died before it was ready. A child whose
             * power was cut while it recovered never gets ready. */
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            int waited = 0;
            while (poll(&p, 1, cuts ? 5 : -1) == 0 && waited++ < 4000 &&
                   !power_off())
                ;
            if ((p.revents & POLLIN) && read(pfd[0], &r, 1) == 1)
                sleep_us(delay_us);
        }
        if (cuts) {
            if (power_off())
                sched_fired++;
            else
                timed_cuts++;
            if (kvs_test_faultfs_cmd("cut")) {
                perror("faultfs cut");
                return 1;
            }
        }
        kill(pid, SIGKILL);
        close(pfd[0]);
        if (!reap(pid, cycle, false))
            bad_exits++;
        if (cuts && (kvs_test_faultfs_cmd("restore") ||
                     kvs_test_faultfs_cmd("clear"))) {
            perror("faultfs restore");
            return 1;
        }
        sh->reclaimed += sh->cyc_reclaimed;
        sh->written += sh->cyc_written;
        sh->cyc_reclaimed = sh->cyc_written = 0;
    }

    /* The last word: a clean open, a full check and a verify. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        child_main(cycles, seed, -1);
        _exit(5);
    }
    if (pid < 0 || !reap(pid, cycles, true))
        bad_exits++;

    printf("crash: cycles %u (%u killed during recovery, %" PRIu64
           " checks completed), durable acked %" PRIu64
           ", durable lookups %" PRIu64 ", lost %" PRIu64 ", corrupt %" PRIu64
           ", get errors %" PRIu64 ", corrupt_reads %" PRIu64 "\n",
           cycles, early_kills, sh->checks_done, sh->durable_acked,
           sh->durable_checked, sh->lost, sh->corrupt, sh->get_errors,
           sh->corrupt_reads);
    printf("crash: writer puts %" PRIu64 " (efull %" PRIu64 ", errors %" PRIu64
           "), deletes %" PRIu64 ", flushes %" PRIu64 ", gets %" PRIu64
           " (bad %" PRIu64 "), pin failures %" PRIu64
           "; volatile present %" PRIu64 " absent %" PRIu64
           "; verify runs %" PRIu64 " checked %" PRIu64 " bad %" PRIu64
           "; open errors %" PRIu64 ", bad exits %u; at least %" PRIu64
           " regions reclaimed, %" PRIu64 " MiB written to disk\n",
           sh->puts, sh->efull, sh->put_errors, sh->deletes, sh->flushes,
           sh->gets, sh->writer_bad_reads, sh->pin_failures, sh->vol_present,
           sh->vol_absent, sh->verify_runs, sh->verify_checked, sh->verify_bad,
           sh->open_errors, bad_exits, sh->reclaimed, sh->written >> 20);
    printf("crash: retention changes %" PRIu64 " (errors %" PRIu64 ")\n",
           sh->retention, sh->retention_errors);
    if (cuts)
        printf("crash: power cuts %u: %u scheduled (%u came before the "
               "kill), %u at the kill; %" PRIu64 " children stopped by the "
               "cut, %" PRIu64
               " aborted in RocksDB after it; faultfs injected %" PRIu64
               " cuts in %" PRIu64 " operations\n",
               cycles, sched_cuts, sched_fired, timed_cuts, sh->power_stops,
               sh->aborts_after_cut, kvs_test_faultfs_stat("fired_cut"),
               kvs_test_faultfs_stat("ops"));
    if (sh->lost)
        printf("crash: first lost durable block d%07" PRIu64
               " (found missing in cycle %" PRIu64 ")\n",
               sh->first_lost - 1, sh->first_lost_cycle);

    bool ok = window_ok && sh->lost == 0 && sh->corrupt == 0 &&
              sh->get_errors == 0 && sh->writer_bad_reads == 0 &&
              sh->open_errors == 0 && sh->pin_failures == 0 &&
              sh->put_errors == 0 && sh->retention_errors == 0 &&
              bad_exits == 0 && sh->checks_done > 0;
    if (ok && !getenv("KVS_CRASH_KEEP")) {
        kvs_test_rmtree(dir);
        if (cuts) {
            char *slash = strrchr(ack_path, '/');
            *slash = '\0'; /* the acknowledgement log's own directory */
            kvs_test_rmtree(ack_path);
        }
    }
    printf("crash: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
