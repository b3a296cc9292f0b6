/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lowering a helper thread's CPU priority (see prio.h). On Linux the nice
 * value belongs to a thread, not to the process: setpriority(PRIO_PROCESS)
 * on the caller's thread id changes that thread only, so the serving
 * thread and every other thread keep theirs. Under autogroup scheduling
 * the change weighs the thread against the others of its session only,
 * which is where the serving thread is.
 */
#include "common/prio.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

int kvs_prio_lower_self(kvs_prio_t p)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int by = p == KVS_PRIO_BACKGROUND ? 19 : KVS_PRIO_IO_NICE;
    int cur, ret = 0;

    errno = 0;
    cur = getpriority(PRIO_PROCESS, (id_t)tid);
    if (cur == -1 && errno) {
        ret = -errno;
        goto out;
    }
    if (cur + by > 19)
        by = 19 - cur;
    if (by > 0 && setpriority(PRIO_PROCESS, (id_t)tid, cur + by) != 0)
        ret = -errno;
out:
    if (ret)
        kvs_debug("thread %d: cannot lower its CPU priority: %s", (int)tid,
                  strerror(-ret));
    return ret;
}
