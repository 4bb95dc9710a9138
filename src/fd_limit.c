// SPDX-License-Identifier: MIT
#include "fd_limit.h"

#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* The kernel's ceiling on any process's descriptors (fs.nr_open): a hard
 * limit above it is refused even to root. The kernel's default when /proc
 * cannot tell (not mounted yet in an initramfs). */
#define NR_OPEN_DEFAULT (1u << 20)

static rlim_t nr_open(void)
{
        char buf[32];
        const char *end;
        uint64_t n;
        ssize_t len;
        int fd = open("/proc/sys/fs/nr_open", O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                return NR_OPEN_DEFAULT;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
                return NR_OPEN_DEFAULT;
        buf[len] = '\0';
        return parse_uint_prefix(buf, &n, &end) == 0 && n > 0 ? (rlim_t)n : NR_OPEN_DEFAULT;
}

int fd_limit_raise(rlim_t want, struct rlimit *before, struct rlimit *after)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        *before = *after = rl;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
                rlim_t ceiling = nr_open();
                struct rlimit raised = { want, want };
                if (raised.rlim_max > ceiling)
                        raised.rlim_cur = raised.rlim_max = ceiling;
                /* EPERM without CAP_SYS_RESOURCE: the limit is what it is. */
                if (raised.rlim_max > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &raised) == 0)
                        rl = raised;
        }
        if (rl.rlim_cur < rl.rlim_max) {
                struct rlimit soft = { rl.rlim_max, rl.rlim_max };
                if (setrlimit(RLIMIT_NOFILE, &soft) == 0)
                        rl = soft;
        }
        *after = rl;
        return 0;
}
