/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two clients of tests/e2e/stream_partition.sh, each run inside its
 * own network namespace:
 *
 *   stream_netns_client prefill ADDR PORT
 *       puts block 0 whole and parts 0..3 of block 1 (of 8), prints
 *       "ready", then holds block 1 open until killed;
 *   stream_netns_client decode ADDR PORT PEER [FAULT]
 *       fetches blocks 0..2 from PEER through its sidecar, waits for block
 *       0 and part 3 of block 1, prints "streaming", reads one line from
 *       stdin (the script injects the fault, then writes it), and waits
 *       for blocks 1 and 2 to fail. Exits 0 when exactly those failed,
 *       block 0 stayed complete and nothing incomplete is visible on its
 *       sidecar. Prints the time from the fault to the errors (not
 *       asserted), and a line "fault FAULT ms N" for the loop script.
 *       FAULT: "partition" (the default: the network cut), "kill-p" (the
 *       prefill sidecar killed) or "kill-d" (this client's own sidecar
 *       killed: the errors must come, there is nothing left to look at).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

#define NB 3
#define NP 8
#define PART (128u << 10)

static uint8_t src[NB][NP * PART], dst[NB][NP * PART];

static kvs_client_t *connect_to(const char *addr, const char *port)
{
    kvs_client_params_t p = {
        .field_mask =
            KVS_CLIENT_PARAM_ADDR | KVS_CLIENT_PARAM_PORT | KVS_CLIENT_PARAM_NS,
        .addr = addr,
        .port = (uint16_t)atoi(port),
        .ns = "part",
    };
    kvs_client_t *c = NULL;

    CHECK_EQ(kvs_client_create(&p, &c), 0);
    return c;
}

static void keys_init(kvs_stream_block_t *bl, char names[][16])
{
    for (int b = 0; b < NB; b++) {
        snprintf(names[b], 16, "part-%d", b);
        bl[b].key.data = names[b];
        bl[b].key.len = (uint32_t)strlen(names[b]);
        bl[b].buf = dst[b];
        bl[b].cap = sizeof(dst[b]);
        kvs_test_fill(src[b], sizeof(src[b]), 70 + (uint64_t)b);
    }
}

static int prefill(const char *addr, const char *port)
{
    kvs_client_t *c = connect_to(addr, port);
    kvs_stream_block_t bl[NB];
    char names[NB][16];
    uint32_t lens[NP];
    kvs_stream_put_t *p0, *p1;

    keys_init(bl, names);
    for (int i = 0; i < NP; i++)
        lens[i] = PART;
    CHECK_EQ(kvs_stream_put_begin(c, &bl[0].key, lens, NP, 0, 0, NULL, &p0), 0);
    for (uint32_t p = 0; p < NP; p++)
        CHECK_EQ(kvs_stream_put_part(p0, p, src[0] + p * PART, PART), 0);
    CHECK_EQ(kvs_stream_put_seal(p0), 0);
    CHECK_EQ(kvs_stream_put_begin(c, &bl[1].key, lens, NP, 0, 0, NULL, &p1), 0);
    for (uint32_t p = 0; p < NP / 2; p++)
        CHECK_EQ(kvs_stream_put_part(p1, p, src[1] + p * PART, PART), 0);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}

static int decode(const char *addr, const char *port, const char *peer,
                  const char *fault)
{
    kvs_client_t *c = connect_to(addr, port);
    kvs_stream_block_t bl[NB];
    char names[NB][16], line[64];
    kvs_stream_fetch_t *f;
    kvs_stream_info_t info;
    uint64_t t_cut;
    int s1, s2;

    keys_init(bl, names);
    CHECK_EQ(kvs_stream_fetch(c, peer, bl, NB, 60000, &f), 0);
    CHECK_EQ(kvs_stream_wait(f, 0, KVS_STREAM_BLOCK, -1), 0);
    CHECK(memcmp(dst[0], src[0], sizeof(src[0])) == 0);
    CHECK_EQ(kvs_stream_wait(f, 1, NP / 2 - 1, -1), 0);
    CHECK(memcmp(dst[1], src[1], NP / 2 * PART) == 0);
    printf("streaming\n");
    fflush(stdout);
    CHECK(fgets(line, sizeof(line), stdin) != NULL);
    t_cut = kvs_clock_mono_ns();
    s1 = kvs_stream_wait(f, 1, KVS_STREAM_BLOCK, -1);
    printf("block 1 (half put) failed %.0f ms after the cut: %s\n",
           (double)(kvs_clock_mono_ns() - t_cut) / 1e6, kvs_strerror(s1));
    s2 = kvs_stream_wait(f, 2, 0, -1);
    printf("block 2 (not begun) failed %.0f ms after the cut: %s\n",
           (double)(kvs_clock_mono_ns() - t_cut) / 1e6, kvs_strerror(s2));
    printf("fault %s ms %.0f\n", fault,
           (double)(kvs_clock_mono_ns() - t_cut) / 1e6);
    CHECK(s1 < 0);
    CHECK(s2 < 0);
    if (!strcmp(fault, "kill-d")) {
        /* The sidecar is gone: the fetch ended with errors; done. */
        kvs_stream_fetch_destroy(f);
        kvs_client_destroy(c);
        printf("ok\n");
        return 0;
    }
    CHECK_EQ(kvs_stream_info(f, 0, &info), 0);
    CHECK_EQ(info.complete, 1);
    kvs_stream_fetch_destroy(f);
    CHECK_EQ(kvs_e2e_present(c, bl[0].key.data), 1);
    CHECK_EQ(kvs_e2e_present(c, bl[1].key.data), 0);
    CHECK_EQ(kvs_e2e_present(c, bl[2].key.data), 0);
    kvs_client_destroy(c);
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "prefill"))
        return prefill(argv[2], argv[3]);
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "decode"))
        return decode(argv[2], argv[3], argv[4],
                      argc == 6 ? argv[5] : "partition");
    fprintf(stderr,
            "usage: %s prefill ADDR PORT | decode ADDR PORT PEER [FAULT]\n",
            argv[0]);
    return 2;
}
