/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connections that never send HELLO cannot lock anyone out (issue 15,
 * finding 2). A daemon with max_conns = 12 and default pre-HELLO limits
 * gets 20 connections that stay silent; a real client must still get in
 * at once, and every silent one must be closed by the daemon (refused at
 * accept, or closed when its HELLO deadline, daemon.hello_timeout_ms,
 * passes), which STAT counts in hello_timeouts.
 */
#include <string.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include "tests/e2e/e2e.h"
#include "tests/e2e/raw.h"

#define IDLE 20

static bool closed[IDLE];

static void idle_err(void *arg, ucp_ep_h ep, ucs_status_t st)
{
    (void)ep;
    (void)st;
    closed[(uintptr_t)arg] = true;
}

static unsigned nclosed(void)
{
    unsigned n = 0;

    for (unsigned i = 0; i < IDLE; i++)
        n += closed[i];
    return n;
}

int main(void)
{
    /* Only max_conns: the pre-HELLO limits are their defaults. */
    static const char *const args[] = {"--set=daemon.max_conns=12", NULL};
    ucp_params_t up = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                       .features = UCP_FEATURE_AM};
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    ucp_ep_h eps[IDLE];
    ucp_context_h ctx;
    ucp_worker_h w;
    kvs_e2e_daemon_t d;
    kvs_client_t *observer, *late;
    uint64_t base;

    kvs_e2e_daemon_init(&d, "e2e_prehello");
    kvs_e2e_daemon_start(&d, args);
    observer = kvs_e2e_connect(&d, "ns", NULL);
    base = kvs_e2e_stat(observer, "connections_accepted") +
           kvs_e2e_stat(observer, "connections_rejected");

    /* 20 endpoints on one worker that never send a byte. */
    CHECK(ucp_init(&up, NULL, &ctx) == UCS_OK);
    CHECK(ucp_worker_create(ctx, &wp, &w) == UCS_OK);
    for (uintptr_t i = 0; i < IDLE; i++)
        eps[i] = raw_ep_create(w, d.port, UCP_ERR_HANDLING_MODE_PEER, idle_err,
                               (void *)i);
    /* Until the daemon has decided on every one of them. */
    while (kvs_e2e_stat(observer, "connections_accepted") +
               kvs_e2e_stat(observer, "connections_rejected") <
           base + IDLE) {
        for (int k = 0; k < 100; k++)
            ucp_worker_progress(w);
        usleep(1000);
    }
    fprintf(stderr, "silent connections: %llu open\n",
            (unsigned long long)kvs_e2e_stat(observer, "connections") - 1);

    /* A real client still gets in, while they are open. */
    CHECK_EQ(kvs_e2e_try_connect(&d, "ns", NULL, &late), 0);
    CHECK_EQ(kvs_client_put(late, "k", 1, "v", 1, 0), 0);

    /* And every silent one is closed by the daemon. */
    while (nclosed() < IDLE) {
        ucp_worker_progress(w);
        usleep(100);
    }
    while (kvs_e2e_stat(observer, "connections") != 2)
        usleep(10000);
    CHECK(kvs_e2e_stat(observer, "hello_timeouts") >= 1);

    for (int i = 0; i < IDLE; i++) {
        ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                 .flags = UCP_EP_CLOSE_FLAG_FORCE};
        ucs_status_ptr_t sp = ucp_ep_close_nbx(eps[i], &p);

        if (UCS_PTR_IS_PTR(sp)) {
            while (ucp_request_check_status(sp) == UCS_INPROGRESS)
                ucp_worker_progress(w);
            ucp_request_free(sp);
        }
    }
    ucp_worker_destroy(w);
    ucp_cleanup(ctx);
    kvs_client_destroy(late);
    kvs_client_destroy(observer);
    kvs_e2e_daemon_stop(&d);
    printf("e2e_prehello: ok\n");
    return 0;
}
