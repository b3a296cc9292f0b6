/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client library never takes its host down: when kvstashd dies
 * (SIGKILL) under a connected client, the next calls fail with KVS_EPEER
 * (whatever UCX noticed first), the host process keeps running, and the
 * client can still be destroyed cleanly.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/e2e.h"
#include "tests/testutil.h"

int main(void)
{
    static uint8_t buf[1 << 20], back[1 << 20];
    kvs_e2e_daemon_t d;
    kvs_client_t *c;
    kvs_client_key_t k = {"k", 1};
    uint8_t present;
    size_t len;
    int ret, status;

    kvs_e2e_daemon_init(&d, "e2e_daemon_death");
    if (d.external) {
        fprintf(stderr, "kills its daemon; KVS_TEST_DAEMON set\n");
        return KVS_TEST_SKIP;
    }
    kvs_e2e_daemon_start(&d, NULL);
    c = kvs_e2e_connect(&d, "death", NULL);
    kvs_test_fill(buf, sizeof(buf), 3);
    CHECK_EQ(kvs_client_put(c, "k", 1, buf, sizeof(buf), 0), 0);
    CHECK_EQ(kvs_client_get(c, "k", 1, back, sizeof(back), &len), 0);
    CHECK(kill(d.pid, SIGKILL) == 0);
    CHECK(waitpid(d.pid, &status, 0) == d.pid);
    d.pid = 0;
    /* Calls fail once UCX has noticed; before that one may still be sent
     * into the void, so loop until the failure shows. */
    do {
        ret = kvs_client_get(c, "k", 1, back, sizeof(back), &len);
    } while (ret == 0);
    CHECK_EQ(ret, KVS_EPEER);
    CHECK_EQ(kvs_client_exists(c, &k, 1, &present), KVS_EPEER);
    CHECK_EQ(kvs_client_put(c, "k", 1, buf, 16, 0), KVS_EPEER);
    kvs_client_destroy(c);
    printf("e2e_daemon_death: ok\n");
    return 0;
}
