// SPDX-License-Identifier: MIT
#include "daemon.h"

#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1;
static const char *pid_path;

int daemon_detach(const char *pid_file)
{
        int p[2];
        pid_t pid;
        char c;

        if (pipe2(p, O_CLOEXEC) < 0)
                return log_errno(-errno, "pipe");
        pid = fork();
        if (pid < 0)
                return log_errno(-errno, "fork");
        if (pid > 0) {
                close(p[1]);
                ssize_t n;
                while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
                        ;
                /* EOF without a byte: the child failed and said why on stderr. */
                if (n == 1)
                        _exit(0);
                waitpid(pid, NULL, WNOHANG);
                _exit(1);
        }
        close(p[0]);
        ready_fd = p[1];
        pid_path = pid_file;
        setsid();
        return 0;
}

void daemon_ready(void)
{
        if (ready_fd < 0)
                return;
        if (pid_path) {
                char buf[32];
                int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
                if (write_file_atomic(pid_path, buf, (size_t)len) < 0)
                        log_warn("cannot write pid file %s", pid_path);
        }
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
                dup2(null, STDIN_FILENO);
                dup2(null, STDOUT_FILENO);
                close(null);
        }
        if (write(ready_fd, "r", 1) < 0)
                log_warn("cannot signal readiness to the parent: %s", strerror(errno));
        close(ready_fd);
        ready_fd = -1;
        /* stderr stays: a supervisor (or the journal) may be reading it. */
}

void daemon_cleanup(void)
{
        if (pid_path)
                unlink(pid_path);
}

/* The file that says this runs in an initramfs (systemd's INITRD_INTERFACE). */
#define INITRD_RELEASE "/etc/initrd-release"

int daemon_check_root_storage(void)
{
        if (geteuid() != 0) {
                log_error("--root-storage: systemd spares only root's processes at shutdown; run ihop as root");
                return -EPERM;
        }
        return 0;
}

int daemon_become_root_storage(char *argv0)
{
        int fd;

        /* One malloc arena: every page of every arena would be locked. */
        mallopt(M_ARENA_MAX, 1);
        /* Taken now: in a page fault, the root device must not wait on itself. */
        if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
                return log_errno(-errno, "--root-storage: cannot lock ihop in memory (mlockall)");
        fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "-1000", 5) != 5) {
                int err = -errno;
                if (fd >= 0)
                        close(fd);
                return log_errno(err, "--root-storage: cannot exempt ihop from the OOM killer");
        }
        close(fd);
        if (access(INITRD_RELEASE, F_OK) == 0) {
                if (argv0 && argv0[0])
                        argv0[0] = '@';
        } else {
                log_warn("--root-storage outside an initramfs (no %s): systemd will stop ihop at shutdown, "
                         "like any other process started from the root file system", INITRD_RELEASE);
        }
        return 0;
}
