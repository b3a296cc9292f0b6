/* SPDX-License-Identifier: Apache-2.0 */
/* Passing one file descriptor with a message over a Unix socket. */
#ifndef KVS_COMMON_FDPASS_H
#define KVS_COMMON_FDPASS_H

#include <string.h>
#include <sys/socket.h>

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

#endif
