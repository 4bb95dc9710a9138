// SPDX-License-Identifier: MIT
#include "store_use.h"

#include "cleanup.h"
#include "dir_iter.h"
#include "fsutil.h"
#include "log.h"
#include "text_escape.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

/* The random part of a registration's name, with its dot: "NAME.XXXXXX". */
#define SUFFIX_LEN 7u

struct store_use {
        int dirfd; /* STORE/.in-use */
        int fd;    /* the registration, its flock held shared */
        char file[PATH_MAX];
};

static int hold_shared(int fd)
{
        while (flock(fd, LOCK_SH) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

static void drop_file(struct store_use *u)
{
        if (u->fd < 0)
                return;
        /* The name goes first: no unlocked registration is ever left behind. */
        unlinkat(u->dirfd, u->file, 0);
        close(u->fd);
        u->fd = -1;
}

/* The description NAME itself, hard-linked, when it still holds desc. */
static int register_link(struct store *s, struct store_use *u, const char *name, const char *prefix,
                         const uint8_t *desc, size_t len)
{
        _cleanup_close_ int top = store_dir_open(s, STORE_DIR_TOP, false);
        _cleanup_free_ uint8_t *now = NULL;
        size_t now_len;
        int err;

        if (top < 0)
                return top;
        err = link_unique_at(top, name, u->dirfd, prefix, u->file);
        if (err < 0)
                return err;
        /* NAME may have been replaced since it was read, by anything. */
        u->fd = open_regular_at(u->dirfd, u->file, O_NOFOLLOW, NULL);
        err = u->fd < 0 ? u->fd : hold_shared(u->fd);
        if (err == 0)
                err = read_fd_bounded(u->fd, len, &now, &now_len);
        /* Replaced since it was read (clone --force): that is not what the caller serves. */
        if (err == 0 && (now_len != len || memcmp(now, desc, len) != 0))
                err = -ESTALE;
        if (err < 0) {
                if (u->fd < 0)
                        unlinkat(u->dirfd, u->file, 0);
                drop_file(u);
        }
        return err;
}

/* A copy of desc, where no hard link will do. */
static int register_copy(struct store_use *u, const char *prefix, const uint8_t *desc, size_t len)
{
        int err;

        u->fd = create_unique_at(u->dirfd, prefix, u->file);
        if (u->fd < 0) {
                err = u->fd;
                u->fd = -1;
                return err;
        }
        err = hold_shared(u->fd);
        if (err == 0)
                err = write_full(u->fd, desc, len);
        if (err < 0)
                drop_file(u);
        return err;
}

static int not_registered(struct store *s, const char *name, int err)
{
        const char *path = store_path(s);

        if (err == -EROFS) {
                log_warn("store %s is read-only: release %s is not registered as in use (no gc can run there "
                         "either)", path, name);
                return 0;
        }
        if (err == -EACCES || err == -EPERM) {
                log_warn("cannot register release %s/%s as in use (%s): a gc run by a user who may write the "
                         "store could remove its chunks while it is in use", path, name, strerror(-err));
                return 0;
        }
        return log_errno(err, "cannot register release %s/%s as in use in %s/%s", path, name, path, STORE_IN_USE_DIR);
}

int store_use_begin(struct store *s, const char *name, const uint8_t *desc, size_t len, struct store_use **out)
{
        char prefix[NAME_MAX];
        struct store_use *u;
        int err;

        *out = NULL;
        if (snprintf(prefix, sizeof(prefix), "%s.", name) + SUFFIX_LEN >= sizeof(prefix))
                return log_errno(-ENAMETOOLONG, "cannot register release %s/%s as in use", store_path(s), name);
        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->fd = -1;
        u->dirfd = store_dir_open(s, STORE_DIR_IN_USE, true);
        err = u->dirfd;
        if (err >= 0 && (err = register_link(s, u, name, prefix, desc, len)) < 0)
                err = register_copy(u, prefix, desc, len);
        if (err < 0) {
                store_use_end(u);
                return not_registered(s, name, err);
        }
        *out = u;
        return 0;
}

void store_use_end(struct store_use *u)
{
        if (!u)
                return;
        drop_file(u);
        if (u->dirfd >= 0)
                close(u->dirfd);
        free(u);
}

static void store_use_list_free_entry(struct store_use_entry *e)
{
        free(e->file);
        free(e->release);
        free(e->desc);
}

void store_use_list_free(struct store_use_entry *e, size_t n)
{
        for (size_t i = 0; e && i < n; i++)
                store_use_list_free_entry(&e[i]);
        free(e);
}

/* Live or stale, and with read, the content of a live one. 1 when file is
 * a registration, 0 when it is not (gone meanwhile, or not a regular file:
 * not ours), negative errno when it cannot be told. */
static int examine(int dirfd, const char *file, bool read, struct store_use_entry *e)
{
        /* Never blocking: a FIFO planted here must not hang gc. */
        _cleanup_close_ int fd = open_regular_at(dirfd, file, O_NOFOLLOW, NULL);
        size_t name_len = strlen(file);
        struct stat st;

        memset(e, 0, sizeof(*e));
        if (fd == -ENOENT || fd == -ELOOP || fd == -EINVAL)
                return 0;
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return -errno;
        e->size = (uint64_t)st.st_size;
        /* Only a registration no process holds can be had exclusively; the
         * lock goes with fd, when this returns. */
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return -errno;
                e->live = true;
        }
        if (e->live && read) {
                int err = read_fd_bounded(fd, STORE_RELEASE_MAX_SIZE, &e->desc, &e->len);
                if (err < 0)
                        return err == -EFBIG ? -EBADMSG : err;
        }
        e->file = strdup(file);
        e->release = strndup(file, name_len > SUFFIX_LEN ? name_len - SUFFIX_LEN : name_len);
        return e->file && e->release ? 1 : -ENOMEM;
}

static int list_all(struct store *s, struct dir_iter *it, bool read, struct store_use_entry **list, size_t *count)
{
        const struct dirent *e;
        size_t cap = 0;
        int r;

        while ((r = dir_iter_next(it, &e)) > 0) {
                if (*count == cap) {
                        size_t c = cap ? 2 * cap : 8;
                        struct store_use_entry *t = realloc(*list, c * sizeof(*t));
                        if (!t)
                                return -ENOMEM;
                        *list = t;
                        cap = c;
                }
                r = examine(dir_iter_fd(it), e->d_name, read, &(*list)[*count]);
                if (r < 0) {
                        store_use_list_free_entry(&(*list)[*count]);
                        _cleanup_free_ char *shown = text_escape_str(e->d_name);
                        return r == -ENOMEM ? r : log_errno(r, "cannot read %s/%s/%s", store_path(s),
                                                            STORE_IN_USE_DIR, shown ? shown : "?");
                }
                *count += (size_t)r;
        }
        if (r < 0)
                return log_errno(r, "cannot list %s/%s", store_path(s), STORE_IN_USE_DIR);
        return 0;
}

int store_use_list(struct store *s, bool read_descriptions, struct store_use_entry **out, size_t *n)
{
        _cleanup_dir_iter_ struct dir_iter it = {};
        struct store_use_entry *list = NULL;
        size_t count = 0;
        int r;

        *out = NULL;
        *n = 0;
        r = store_dir_iter_open(s, STORE_DIR_IN_USE, &it);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_errno(r, "cannot list %s/%s", store_path(s), STORE_IN_USE_DIR);
        /* A listing cut short would hide a release in use: fail, never guess. */
        r = list_all(s, &it, read_descriptions, &list, &count);
        if (r < 0) {
                store_use_list_free(list, count);
                return r;
        }
        *out = list;
        *n = count;
        return 0;
}
