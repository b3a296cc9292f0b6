/* SPDX-License-Identifier: Apache-2.0 */
/* Directory helpers for the engine, the tools and the tests. */
#ifndef KVS_FS_H
#define KVS_FS_H

/* Creates path and its missing parents (mode 0755). 0 or -errno. */
int kvs_fs_mkdir_p(const char *path);

/* Removes a directory tree (or a file); 0 if it did not exist. 0 or
 * -errno. */
int kvs_fs_rmtree(const char *path);

#endif
