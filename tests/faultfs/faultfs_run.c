/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faultfs-run: runs a test program with the fault-injecting file system
 * mounted, so that the test's store lives on it.
 *
 *   faultfs-run FAULTFS NAME PROGRAM [ARGS...]
 *
 * makes a scratch directory NAME under $KVS_TEST_DIR with backing/ and
 * mnt/, starts FAULTFS (the faultfs binary) on them, runs PROGRAM with
 * KVS_FAULTFS=<mnt> in its environment, unmounts, and exits with PROGRAM's
 * status. When FUSE cannot be mounted here (no /dev/fuse, no permission to
 * mount, a container without the fuse module) it says why and exits 77, which
 * CTest reports as skipped. The scratch directory is removed when PROGRAM
 * succeeds.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testutil.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Waits until mnt is a mount point (its device differs from its parent's)
 * or the file system process has exited. */
static int wait_mounted(const char *base, const char *mnt, pid_t fs)
{
    struct stat b, m;
    int st;

    for (int i = 0; i < 500; i++) {
        if (waitpid(fs, &st, WNOHANG) == fs)
            return -ECHILD;
        if (stat(base, &b) == 0 && stat(mnt, &m) == 0 && b.st_dev != m.st_dev)
            return 0;
        sleep_ms(10);
    }
    return -ETIMEDOUT;
}

int main(int argc, char **argv)
{
    char base[PATH_MAX], backing[PATH_MAX + 16], mnt[PATH_MAX + 16];
    int fd, st, rc;

    if (argc < 4) {
        fprintf(stderr, "usage: faultfs-run FAULTFS NAME PROGRAM [ARGS...]\n");
        return 2;
    }
    fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("faultfs-run: SKIP: cannot open /dev/fuse (%s): FUSE is not "
               "available here; the power-cut and disk-fault tests need it\n",
               strerror(errno));
        return KVS_TEST_SKIP;
    }
    close(fd);
    snprintf(base, sizeof(base), "%s", kvs_test_dir(argv[2]));
    snprintf(backing, sizeof(backing), "%s/backing", base);
    snprintf(mnt, sizeof(mnt), "%s/mnt", base);
    if (mkdir(backing, 0755) < 0 || mkdir(mnt, 0755) < 0) {
        perror("faultfs-run: mkdir");
        return 1;
    }
    fflush(NULL);
    pid_t fs = fork();
    if (fs < 0) {
        perror("faultfs-run: fork");
        return 1;
    }
    if (fs == 0) {
        /* Killed with us (CTest's timeout kills this process, not its
         * children): SIGTERM makes fuse_main unmount before it returns,
         * so a timed-out test leaves no mount behind (one left a build
         * directory that rm -rf could not remove). */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() == 1)
            _exit(127);
        execl(argv[1], argv[1], backing, mnt, "-o", "max_threads=16",
              (char *)NULL);
        fprintf(stderr, "faultfs-run: exec %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    rc = wait_mounted(base, mnt, fs);
    if (rc) {
        printf("faultfs-run: SKIP: faultfs could not mount %s (%s); FUSE "
               "mounts are not allowed here\n",
               mnt, rc == -ECHILD ? "it exited" : "timed out");
        if (rc != -ECHILD) {
            kill(fs, SIGKILL);
            waitpid(fs, &st, 0);
        }
        kvs_test_rmtree(base);
        return KVS_TEST_SKIP;
    }
    setenv("KVS_FAULTFS", mnt, 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* it holds the mount */
        execvp(argv[3], argv + 3);
        fprintf(stderr, "faultfs-run: exec %s: %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    rc = 1;
    if (pid > 0 && waitpid(pid, &st, 0) == pid)
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    /* Unmount: a lazy unmount if something still holds it. */
    if (umount2(mnt, 0) < 0)
        umount2(mnt, MNT_DETACH);
    bool reaped = false;
    for (int i = 0; i < 300 && !(reaped = waitpid(fs, &st, WNOHANG) == fs); i++)
        sleep_ms(10);
    if (!reaped) {
        kill(fs, SIGKILL);
        waitpid(fs, &st, 0);
    }
    if (rc == 0)
        kvs_test_rmtree(base);
    return rc;
}
