/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: see testutil.h. */
#include "tests/testutil.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 ? -errno : 0;
}

int kvs_test_rmtree(const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

const char *kvs_test_dir(const char *name)
{
    static char path[PATH_MAX];
    const char *root = getenv("KVS_TEST_DIR");
    int n;

    if (!root || !*root)
        root = "./var/test";
    n = snprintf(path, sizeof(path), "%s/%s.%d", root, name, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "test dir name too long\n");
        exit(1);
    }
    kvs_test_rmtree(path);
    if (mkdir_p(path) < 0) {
        fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return path;
}

uint64_t kvs_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kvs_test_fill(void *buf, size_t len, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t st = seed, v = 0;

    for (size_t i = 0; i < len; i++) {
        if ((i & 7) == 0)
            v = kvs_test_rand(&st);
        p[i] = (uint8_t)(v >> ((i & 7) * 8));
    }
}
