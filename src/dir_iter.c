// SPDX-License-Identifier: MIT
#include "dir_iter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
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

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

void dir_names_free(char **names)
{
        if (!names)
                return;
        for (char **p = names; *p; p++)
                free(*p);
        free(names);
}

int dir_iter_names(struct dir_iter *it, dir_name_filter keep, void *opaque, char ***names, size_t *n)
{
        const struct dirent *e;
        char **list = calloc(1, sizeof(*list));
        size_t count = 0, cap = 1;
        int r;

        if (!list)
                return -ENOMEM;
        while ((r = dir_iter_next(it, &e)) > 0) {
                if (!keep(it, e->d_name, opaque))
                        continue;
                if (count + 2 > cap) {
                        char **t = realloc(list, 2 * cap * sizeof(*list));
                        if (!t) {
                                r = -ENOMEM;
                                break;
                        }
                        list = t;
                        cap *= 2;
                }
                list[count] = strdup(e->d_name);
                if (!list[count]) {
                        r = -ENOMEM;
                        break;
                }
                list[++count] = NULL;
        }
        if (r < 0) {
                dir_names_free(list);
                return r;
        }
        qsort(list, count, sizeof(*list), compare_names);
        *names = list;
        *n = count;
        return 0;
}
