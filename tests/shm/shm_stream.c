/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming in place between two real kvstashd on one host (prefill side
 * P, decode side D), each with a shm socket, and clients that map their
 * own sidecar's arena (kvstash/stream.h, "in place"):
 *  1. a prefill client killed (SIGKILL) in the middle of an in-place put:
 *     the decode client had read the parts committed before, the block
 *     fails on D, is visible on neither side, and P reclaims its space;
 *  2. a live block: the prefill client writes parts in P's arena and
 *     commits them one by one; the decode client reads part i in D's
 *     arena before the last part is committed; bytes checked end to end,
 *     also for a block sealed before the fetch; D holds each sealed block
 *     for the fetch until it is destroyed;
 *  3. the same calls from clients that do not map the arena (another
 *     host, say) work on the library's buffers;
 *  4. bad input: a part index out of range, a part committed twice, a
 *     seal with a part not committed; and, raw on the wire, an in-place
 *     begin without a valid stream key and in-place commits of a wrong
 *     length or index, each refused by the daemon.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/raw.h"
#include "tests/shm/shmtest.h"
#include "tests/testutil.h"
#include "transport/proto/stream_op.h"

#define NP 8
#define PART (256u << 10)
#define BLK (NP * PART)

static uint8_t src[4][BLK];
static uint32_t lens[NP];

static kvs_client_key_t key_of(const char *s)
{
    kvs_client_key_t k = {.data = s, .len = (uint32_t)strlen(s)};

    return k;
}

/* Writes part p of src[b] where the put wants it, and commits it. */
static void write_commit(kvs_stream_put_t *put, int b, uint32_t p)
{
    void *dst;
    size_t len;

    CHECK_EQ(kvs_stream_put_buf(put, p, &dst, &len), 0);
    CHECK(len == PART);
    memcpy(dst, src[b] + (size_t)p * PART, PART);
    CHECK_EQ(kvs_stream_put_commit(put, p), 0);
}

static void check_part(kvs_stream_fetch_t *f, uint32_t blk, int b, uint32_t p)
{
    const void *d;
    size_t len;

    CHECK_EQ(kvs_stream_wait(f, blk, p, -1), 0);
    CHECK_EQ(kvs_stream_data(f, blk, p, &d, &len), 0);
    CHECK(len == PART && memcmp(d, src[b] + (size_t)p * PART, PART) == 0);
}

/* 1. The victim: begins an in-place put on P, commits parts 0..2, says
 * so and waits to be killed. */
static void victim(const kvs_e2e_daemon_t *P, const char *psock, int fd)
{
    kvs_client_t *c = shmtest_connect(P, psock, "s", NULL);
    kvs_client_key_t k = key_of("killed");
    kvs_stream_put_t *put;

    CHECK_EQ(kvs_shm_status(c), 0);
    CHECK_EQ(kvs_stream_put_begin_inplace(c, &k, lens, NP, 0, 0, NULL, &put),
             0);
    for (uint32_t p = 0; p < 3; p++)
        write_commit(put, 0, p);
    { /* half of part 3 written, never committed */
        void *dst;
        size_t len;

        CHECK_EQ(kvs_stream_put_buf(put, 3, &dst, &len), 0);
        memset(dst, 0x77, len / 2);
    }
    CHECK(write(fd, "x", 1) == 1);
    for (;;)
        pause();
}

/* Forks the victim (before this process has any UCX client: a fork does
 * not carry UCX state over) and waits until it has committed its parts. */
static pid_t victim_start(const kvs_e2e_daemon_t *P, const char *psock)
{
    int fds[2];
    pid_t pid;
    char ch;

    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        victim(P, psock, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    CHECK(read(fds[0], &ch, 1) == 1);
    close(fds[0]);
    return pid;
}

static void killed_prefill(pid_t pid, kvs_client_t *cp, kvs_client_t *cd)
{
    kvs_stream_block_t bl = {.key = key_of("killed")};
    kvs_stream_fetch_t *f;
    int status, ret;

    CHECK_EQ(kvs_e2e_stat(cp, "stream_puts_open"), 1);
    CHECK(kvs_e2e_stat(cp, "dram_used_bytes") >= BLK);
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", &bl, 1, 30000, &f), 0);
    for (uint32_t p = 0; p < 3; p++)
        check_part(f, 0, 0, p);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    ret = kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1);
    printf("killed prefill client: the block failed on D: %s\n",
           kvs_strerror(ret));
    CHECK(ret < 0);
    kvs_stream_fetch_destroy(f);
    /* P dropped the put and its space; neither side shows the block. */
    shmtest_wait_stat(cp, "stream_puts_open", 0);
    CHECK(kvs_e2e_stat(cp, "dram_used_bytes") < BLK); /* nothing else */
    CHECK_EQ(kvs_e2e_present(cp, "killed"), 0);
    CHECK_EQ(kvs_e2e_present(cd, "killed"), 0);
    shmtest_wait_stat(cd, "stream_fetches_open", 0);
    printf("1. killed prefill client: ok\n");
}

/* 2 and 3: a live block and a sealed one, with clients that map their
 * arenas (cp, cd) or not. */
static void live_and_sealed(kvs_client_t *cp, kvs_client_t *cd,
                            kvs_client_t *dstat, const char *tag)
{
    char k0[32], k1[32];
    kvs_stream_block_t bl[2] = {{.buf = NULL}, {.buf = NULL}};
    kvs_client_key_t key0, key1;
    kvs_stream_put_t *put0, *put1;
    kvs_stream_fetch_t *f;
    kvs_stream_info_t info;
    uint64_t refs0 = kvs_e2e_stat(dstat, "refs");
    const void *d;
    size_t len;

    snprintf(k0, sizeof(k0), "%s-live", tag);
    snprintf(k1, sizeof(k1), "%s-sealed", tag);
    key0 = key_of(k0);
    key1 = key_of(k1);
    bl[0].key = key0;
    bl[1].key = key1;
    /* Block 1 is sealed before the fetch. */
    CHECK_EQ(kvs_stream_put_begin_inplace(cp, &key1, lens, NP, 0, 0, NULL,
                                          &put1),
             0);
    for (uint32_t p = NP; p-- > 0;) /* any order */
        write_commit(put1, 3, p);
    CHECK_EQ(kvs_stream_put_seal(put1), 0);

    CHECK_EQ(kvs_stream_put_begin_inplace(cp, &key0, lens, NP, 0, 0, NULL,
                                          &put0),
             0);
    CHECK_EQ(kvs_stream_fetch(cd, "prefill", bl, 2, 30000, &f), 0);
    CHECK_EQ(kvs_stream_data(f, 0, 0, &d, &len), -EAGAIN);
    for (uint32_t p = 0; p < 4; p++)
        write_commit(put0, 2, p);
    /* Parts 0..3 are read on D before part 4 exists. */
    for (uint32_t p = 0; p < 4; p++)
        check_part(f, 0, 2, p);
    CHECK_EQ(kvs_stream_info(f, 0, &info), 0);
    CHECK_EQ(info.complete, 0);
    CHECK_EQ(info.nparts, NP);
    CHECK_EQ(kvs_e2e_present(cp, k0), 0);
    CHECK_EQ(kvs_e2e_present(cd, k0), 0);
    for (uint32_t p = 4; p < NP; p++)
        write_commit(put0, 2, p);
    CHECK_EQ(kvs_stream_put_seal(put0), 0);
    for (uint32_t b = 0; b < 2; b++) {
        CHECK_EQ(kvs_stream_wait(f, b, KVS_STREAM_BLOCK, -1), 0);
        CHECK_EQ(kvs_stream_data(f, b, KVS_STREAM_BLOCK, &d, &len), 0);
        CHECK(len == BLK && memcmp(d, src[b ? 3 : 2], BLK) == 0);
    }
    /* In place, D holds both sealed blocks for the fetch. */
    if (kvs_shm_status(cd) == 0)
        CHECK_EQ(kvs_e2e_stat(dstat, "refs"), refs0 + 2);
    kvs_stream_fetch_destroy(f);
    shmtest_wait_stat(dstat, "refs", refs0); /* CANCEL is on its way */
    CHECK_EQ(kvs_e2e_present(cd, k0), 1);
    CHECK_EQ(kvs_e2e_present(cd, k1), 1);
    CHECK_EQ(kvs_e2e_present(cp, k0), 1);
    printf("%s: live and sealed blocks: ok\n", tag);
}

static void bad_calls(kvs_client_t *cp)
{
    kvs_client_key_t k = key_of("bad");
    kvs_stream_put_t *put;
    void *dst;
    size_t len;

    CHECK_EQ(kvs_stream_put_begin_inplace(cp, &k, lens, NP, 0, 0, NULL, &put),
             0);
    CHECK_EQ(kvs_stream_put_buf(put, NP, &dst, &len), -ERANGE);
    CHECK_EQ(kvs_stream_put_commit(put, NP), -ERANGE);
    CHECK_EQ(kvs_stream_put_commit(put, 0), 0);
    CHECK_EQ(kvs_stream_put_commit(put, 0), -EALREADY);
    for (uint32_t p = 1; p < NP - 1; p++)
        CHECK_EQ(kvs_stream_put_commit(put, p), 0);
    CHECK_EQ(kvs_stream_put_seal(put), KVS_EINCOMPLETE); /* last missing */
    CHECK_EQ(kvs_e2e_present(cp, "bad"), 0);
    CHECK_EQ(kvs_stream_put_begin(cp, &k, lens, NP, 0, 0, NULL, &put), 0);
    CHECK_EQ(kvs_stream_put_buf(put, 0, &dst, &len), -EOPNOTSUPP);
    kvs_stream_put_abort(put);
    printf("4a. bad calls refused by the library: ok\n");
}

/* Sends an in-place SPUT_BEGIN (stream key skey) for key on r, returns
 * the status of the daemon's BLOCK answer. */
static int raw_begin(raw_t *r, uint64_t id, const char *key, uint64_t skey)
{
    uint8_t body[KVS_SMSG_BODY_MAX], frame[KVS_SMSG_MAX];
    kvs_smsg_t m = {.op = KVS_OP_SPUT_BEGIN,
                    .flags = KVS_SMSG_F_INPLACE,
                    .id = id,
                    .nparts = NP,
                    .off = skey};
    size_t blen = strlen(key), flen;
    kvs_wire_hdr_t h;
    raw_frame_t *fr;
    kvs_wire_msg_t w;

    memcpy(body, key, blen);
    for (uint32_t i = 0; i < NP; i++, blen += 4)
        kvs_le32_store(body + blen, PART);
    m.str_len = (uint16_t)strlen(key);
    CHECK_EQ(kvs_smsg_encode(&m, body, blen, frame, &flen), 0);
    raw_post(r, frame, flen, NULL, 0, false);
    for (;;) {
        CHECK(raw_wait(r));
        CHECK(raw_pop(r, &h, &fr));
        if (h.opcode == KVS_OP_BLOCK && h.req_id == id)
            break;
    }
    raw_decode(fr, &w);
    return w.hdr.status;
}

/* Sends op (a PART in place of len bytes, or SEAL) for put id; for SEAL,
 * returns the status of SPUT_DONE. */
static int raw_op(raw_t *r, uint8_t op, uint64_t id, uint32_t part,
                  uint64_t len)
{
    uint8_t frame[KVS_SMSG_MAX];
    kvs_smsg_t m = {.op = op, .id = id, .part = part, .len = len};
    kvs_wire_hdr_t h;
    raw_frame_t *fr;
    size_t flen;

    if (op == KVS_OP_SPUT_PART)
        m.flags = KVS_SMSG_F_INPLACE;
    CHECK_EQ(kvs_smsg_encode(&m, NULL, 0, frame, &flen), 0);
    raw_post(r, frame, flen, NULL, 0, false);
    if (op != KVS_OP_SPUT_SEAL)
        return 0;
    for (;;) {
        CHECK(raw_wait(r));
        CHECK(raw_pop(r, &h, &fr));
        if (h.opcode == KVS_OP_SPUT_DONE && h.req_id == id)
            return h.status;
    }
}

static void bad_wire(const kvs_e2e_daemon_t *P, const char *psock,
                     kvs_client_t *cp)
{
    uint8_t buf[512];
    uint64_t skey = 0;
    int sfd = -1;
    raw_t r;

    raw_connect(&r, P->port);
    CHECK_EQ(raw_send(&r, buf,
                      raw_hello(buf, 1, "", "s", KVS_WIRE_FEAT_STREAM), NULL,
                      0, false),
             0);
    /* No session, or a forged key: refused. */
    CHECK_EQ(raw_begin(&r, 10, "wire-a", 0), KVS_EAUTH);
    CHECK_EQ(raw_begin(&r, 11, "wire-a", 0x1234567887654321ull), KVS_EAUTH);
    CHECK_EQ(shmtest_raw_attach_keep(psock, "s", NULL, &sfd, &skey), 0);
    CHECK(skey != 0);
    /* A part index out of range. */
    CHECK_EQ(raw_begin(&r, 12, "wire-b", skey), 0);
    raw_op(&r, KVS_OP_SPUT_PART, 12, NP, PART);
    CHECK_EQ(raw_op(&r, KVS_OP_SPUT_SEAL, 12, 0, 0), KVS_EPROTO);
    /* An oversize commit. */
    CHECK_EQ(raw_begin(&r, 13, "wire-c", skey), 0);
    raw_op(&r, KVS_OP_SPUT_PART, 13, 0, PART + 1);
    CHECK_EQ(raw_op(&r, KVS_OP_SPUT_SEAL, 13, 0, 0), KVS_EPROTO);
    /* A part committed twice. */
    CHECK_EQ(raw_begin(&r, 14, "wire-d", skey), 0);
    raw_op(&r, KVS_OP_SPUT_PART, 14, 0, PART);
    raw_op(&r, KVS_OP_SPUT_PART, 14, 0, PART);
    CHECK_EQ(raw_op(&r, KVS_OP_SPUT_SEAL, 14, 0, 0), KVS_EPROTO);
    /* A seal with parts not committed. */
    CHECK_EQ(raw_begin(&r, 15, "wire-e", skey), 0);
    raw_op(&r, KVS_OP_SPUT_PART, 15, 1, PART);
    CHECK_EQ(raw_op(&r, KVS_OP_SPUT_SEAL, 15, 0, 0), KVS_EINCOMPLETE);
    /* And whole, it works: every part committed, sealed. */
    CHECK_EQ(raw_begin(&r, 16, "wire-f", skey), 0);
    for (uint32_t p = 0; p < NP; p++)
        raw_op(&r, KVS_OP_SPUT_PART, 16, p, PART);
    CHECK_EQ(raw_op(&r, KVS_OP_SPUT_SEAL, 16, 0, 0), 0);
    /* The session's end revokes its key. */
    close(sfd);
    shmtest_wait_stat(cp, "shm_sessions", 1); /* cp's own */
    CHECK_EQ(raw_begin(&r, 17, "wire-g", skey), KVS_EAUTH);
    raw_close(&r);
    CHECK_EQ(kvs_e2e_present(cp, "wire-b"), 0);
    CHECK_EQ(kvs_e2e_present(cp, "wire-c"), 0);
    CHECK_EQ(kvs_e2e_present(cp, "wire-d"), 0);
    CHECK_EQ(kvs_e2e_present(cp, "wire-e"), 0);
    CHECK_EQ(kvs_e2e_present(cp, "wire-f"), 1);
    shmtest_wait_stat(cp, "stream_puts_open", 0);
    printf("4b. bad input on the wire refused by the daemon: ok\n");
}

int main(void)
{
    kvs_e2e_daemon_t P, D;
    char psock[700], dsock[700];
    kvs_client_t *cp, *cd, *np, *nd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < NP; i++)
        lens[i] = PART;
    for (int b = 0; b < 4; b++)
        kvs_test_fill(src[b], BLK, 500 + (uint64_t)b);
    kvs_e2e_daemon_init(&D, "shm_stream-d");
    kvs_e2e_daemon_init(&P, "shm_stream-p");
    shmtest_start_prefill(&P, psock, sizeof(psock));
    shmtest_start_decode(&D, dsock, sizeof(dsock), &P, NULL);
    {
        pid_t pid = victim_start(&P, psock);

        cp = shmtest_connect(&P, psock, "s", NULL);
        cd = shmtest_connect(&D, dsock, "s", NULL);
        CHECK_EQ(kvs_shm_status(cp), 0);
        CHECK_EQ(kvs_shm_status(cd), 0);
        killed_prefill(pid, cp, cd);
    }
    {
        uint64_t in_p = kvs_e2e_stat(cp, "stream_parts_inplace");
        uint64_t in_d = kvs_e2e_stat(cd, "stream_parts_inplace");

        live_and_sealed(cp, cd, cd, "mapped");
        /* Every part was committed in P's arena and read in D's. */
        CHECK(kvs_e2e_stat(cp, "stream_parts_inplace") >= in_p + 2 * NP);
        CHECK(kvs_e2e_stat(cd, "stream_parts_inplace") >= in_d + 2 * NP);
    }
    /* 3. The same code with clients that do not map the arena. */
    np = kvs_e2e_connect(&P, "s", NULL);
    nd = kvs_e2e_connect(&D, "s", NULL);
    CHECK(kvs_shm_status(np) != 0);
    CHECK(kvs_shm_status(nd) != 0);
    {
        uint64_t in_d = kvs_e2e_stat(cd, "stream_parts_inplace");

        live_and_sealed(np, nd, cd, "unmapped");
        CHECK_EQ(kvs_e2e_stat(cd, "stream_parts_inplace"), in_d);
    }
    /* Mixed: a mapped prefill client, a decode client without. */
    live_and_sealed(cp, nd, cd, "mixed");
    bad_calls(cp);
    bad_wire(&P, psock, cp);

    kvs_client_destroy(np);
    kvs_client_destroy(nd);
    kvs_client_destroy(cp);
    kvs_client_destroy(cd);
    kvs_e2e_daemon_stop(&D);
    kvs_e2e_daemon_stop(&P);
    kvs_test_rmtree(D.dir);
    kvs_test_rmtree(P.dir);
    printf("shm_stream: ok\n");
    return 0;
}
