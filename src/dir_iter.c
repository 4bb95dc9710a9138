// SPDX-License-Identifier: MIT
#include "dir_iter.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int dir_iter_open(struct dir_iter *it, int dirfd, const char *name)
{
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        it->dir = NULL;
        if (fd < 0)
                return -errno;
        it->dir = fdopendir(fd);
        if (!it->dir) {
                int err = -errno;
                close(fd);
                return err;
        }
        return 0;
}

int dir_iter_next(struct dir_iter *it, const struct dirent **entry)
{
        for (;;) {
                struct dirent *e;

                errno = 0;
                e = readdir(it->dir);
                if (!e)
                        return errno > 0 ? -errno : 0;
                if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
                        continue;
                *entry = e;
                return 1;
        }
}

int dir_iter_fd(const struct dir_iter *it)
{
        return dirfd(it->dir);
}

void dir_iter_close(struct dir_iter *it)
{
        if (it->dir)
                closedir(it->dir);
        it->dir = NULL;
}
