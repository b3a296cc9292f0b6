/* SPDX-License-Identifier: Apache-2.0 */
/* Passing one file descriptor with a message over a Unix socket. */
#ifndef KVS_COMMON_FDPASS_H
#define KVS_COMMON_FDPASS_H

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room for one fd's control message. */
#define KVS_FDPASS_SPACE CMSG_SPACE(sizeof(int))

/* Attaches fd to m as SCM_RIGHTS, in cbuf (KVS_FDPASS_SPACE bytes). Makes
 * only stores, so a child between fork and exec may call it. */
static inline void kvs_fdpass_attach(struct msghdr *m, char *cbuf, int fd)
{
    struct cmsghdr *cm;

    memset(cbuf, 0, KVS_FDPASS_SPACE);
    m->msg_control = cbuf;
    m->msg_controllen = KVS_FDPASS_SPACE;
    cm = CMSG_FIRSTHDR(m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
}

/* The fd passed with a message that recvmsg() received into m (call it
 * only when recvmsg succeeded: m's control part is the kernel's then);
 * any other fd passed with it is closed. -1 when none came. */
static inline int kvs_fdpass_take(const struct msghdr *m)
{
    int fd = -1;

    if (m->msg_controllen == 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)m); cm;
         cm = CMSG_NXTHDR((struct msghdr *)m, cm)) {
        size_t n;

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int x;

            memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (fd < 0)
                fd = x;
            else
                close(x);
        }
    }
    return fd;
}

#endif
