// SPDX-License-Identifier: MIT
/* Small helpers shared by the unit tests: peak-memory probes for the
 * hostile-input tests, and removing a test's scratch directory. */
#pragma once

#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

/* Peak resident memory of this process, in KiB (-1 if unknown). */
static inline long vm_hwm_kib(void)
{
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/self/status", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
                        break;
        fclose(f);
        return v;
}

/* Resets the peak RSS (VmHWM) to the current RSS. */
static inline bool reset_hwm(void)
{
        int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
        bool ok;

        if (fd < 0)
                return false;
        ok = write(fd, "5", 1) == 1;
        close(fd);
        return ok;
}

static inline int unit_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
        (void)sb;
        (void)flag;
        (void)ftw;
        return remove(path);
}

/* rm -rf dir */
static inline void remove_tree(const char *dir)
{
        nftw(dir, unit_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
