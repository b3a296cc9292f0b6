/* SPDX-License-Identifier: Apache-2.0 */
/* The error space: every kvstash code has its own message, errno passes
 * through, and nothing returns NULL. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "kvstash/status.h"

static void test_every_code_has_a_message(void **state)
{
    (void)state;
    for (int s = KVS_EBASE - 1; s > KVS_ELAST; s--) {
        const char *m = kvs_strerror(s);
        assert_non_null(m);
        assert_string_not_equal(m, "unknown kvstash error");
        assert_string_not_equal(m, "unknown error");
    }
}

static void test_errno_and_unknown(void **state)
{
    (void)state;
    assert_string_equal(kvs_strerror(0), "success");
    assert_string_equal(kvs_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(kvs_strerror(KVS_ELAST), "unknown error");
    assert_string_equal(kvs_strerror(12345), "unknown error");
    assert_true(KVS_EBASE < -4095);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_a_message),
        cmocka_unit_test(test_errno_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
