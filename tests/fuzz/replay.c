/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runs a libFuzzer target on saved inputs, without libFuzzer: each argument
 * is a file or a directory of files, and each file is passed once to
 * LLVMFuzzerTestOneInput(). This puts every fuzz corpus into ordinary ctest
 * runs (and under ASan/UBSan in the sanitizer build). Exits 1 if an
 * argument cannot be read or no input was found; a failing input aborts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;
    size_t got;

    if (!f || fstat(fileno(f), &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        fclose(f);
        return -1;
    }
    got = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        fprintf(stderr, "replay: %s: short read\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so that ASan sees a read one byte too far. */
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    printf("replay: %s (%zu bytes) ok\n", path, got);
    return 0;
}

static int run_path(const char *path, int *count)
{
    struct stat st;
    struct dirent **names;
    char child[4096];
    int n, ret = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.' && ret == 0) {
            snprintf(child, sizeof(child), "%s/%s", path, names[i]->d_name);
            ret = run_path(child, count);
        }
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    int count = 0;

    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) < 0)
            return 1;
    if (count == 0) {
        fprintf(stderr, "replay: no inputs\n");
        return 1;
    }
    return 0;
}
