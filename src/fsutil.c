// SPDX-License-Identifier: MIT
#include "fsutil.h"

#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2_H 1
#endif
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

int write_full(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

ssize_t pread_full(int fd, void *buf, size_t len, uint64_t offset)
{
        uint8_t *p = buf;
        size_t done = 0;

        while (done < len) {
                ssize_t n = pread(fd, p + done, len - done, (off_t)(offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

ssize_t pread_nowait(int fd, void *buf, size_t len, uint64_t offset)
{
        static atomic_bool unsupported;
        uint8_t *p = buf;
        size_t done = 0;

        if (atomic_load_explicit(&unsupported, memory_order_relaxed))
                return -EOPNOTSUPP;
        while (done < len) {
                struct iovec iov = { p + done, len - done };
                ssize_t n = preadv2(fd, &iov, 1, (off_t)(offset + done), RWF_NOWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        /* EINVAL: a kernel before 4.14 does not know the flag. */
                        if (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) {
                                atomic_store_explicit(&unsupported, true, memory_order_relaxed);
                                return -EOPNOTSUPP;
                        }
                        return -errno;
                }
                /* Short: the rest is not cached (or the file ends there). */
                if (n == 0)
                        return -EAGAIN;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

int mkdir_parents(const char *path, mode_t mode)
{
        char buf[PATH_MAX];

        if (strlen(path) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, path);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int fsync_path(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int fsync_dir_of(const char *path)
{
        char buf[PATH_MAX];

        if (strlen(path) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, path);
        return fsync_path(dirname(buf));
}

/* Without openat2 (ENOSYS: a kernel before 5.6; EPERM: a seccomp filter that
 * does not know it), one directory at a time, each opened without following
 * a symlink. */
static int openat_walk(int dirfd, const char *rel, int flags, mode_t mode)
{
        char buf[PATH_MAX];
        _cleanup_close_ int dir = -1;
        char *p = buf, *slash;
        int fd;

        if (strlen(rel) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, rel);
        while ((slash = strchr(p, '/'))) {
                *slash = '\0';
                if (strcmp(p, "..") == 0)
                        return -EXDEV; /* as RESOLVE_BENEATH */
                if (p[0] && strcmp(p, ".") != 0) {
                        int next = openat(dir >= 0 ? dir : dirfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (next < 0)
                                return -errno;
                        if (dir >= 0)
                                close(dir);
                        dir = next;
                }
                p = slash + 1;
        }
        if (strcmp(p, "..") == 0)
                return -EXDEV;
        fd = openat(dir >= 0 ? dir : dirfd, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        return fd < 0 ? -errno : fd;
}

int openat_beneath_cached(int dirfd, const char *rel, int flags)
{
#if defined(SYS_openat2) && defined(HAVE_OPENAT2_H) && defined(RESOLVE_CACHED)
        static atomic_bool unsupported;

        if (!atomic_load_explicit(&unsupported, memory_order_relaxed)) {
                struct open_how how = {
                        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_CACHED,
                };
                long r = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
                if (r >= 0)
                        return (int)r;
                /* EINVAL: a kernel before 5.12 does not know RESOLVE_CACHED. */
                if (errno != ENOSYS && errno != EPERM && errno != EINVAL)
                        return -errno;
                atomic_store_explicit(&unsupported, true, memory_order_relaxed);
        }
#else
        (void)dirfd;
        (void)rel;
        (void)flags;
#endif
        return -EOPNOTSUPP;
}

int openat_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
        int fd;

#if defined(SYS_openat2) && defined(HAVE_OPENAT2_H)
        static atomic_bool no_openat2;

        if (!atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
                struct open_how how = {
                        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
                        .mode = (flags & O_CREAT) ? mode : 0, /* openat2 refuses a mode it would not use */
                        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH,
                };
                long r = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
                if (r >= 0)
                        return (int)r;
                if (errno != ENOSYS && errno != EPERM)
                        return -errno;
                atomic_store_explicit(&no_openat2, true, memory_order_relaxed);
        }
#endif
        fd = openat_walk(dirfd, rel, flags, mode);
        /* The walk says ENOTDIR for a symlink where a directory was wanted;
         * openat2 says ELOOP for every symlink: say the same either way. */
        if (fd == -ENOTDIR) {
                char buf[PATH_MAX];
                struct stat st;
                strcpy(buf, rel);
                for (char *slash = buf; (slash = strchr(slash, '/')); slash++) {
                        *slash = '\0';
                        if (fstatat(dirfd, buf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                                return -ELOOP;
                        *slash = '/';
                }
                if (fstatat(dirfd, buf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                        return -ELOOP;
        }
        return fd;
}

static void random_letters(char *out, size_t n)
{
        static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        static atomic_uint counter;
        uint8_t rnd[16];

        if (getrandom(rnd, n, GRND_NONBLOCK) != (ssize_t)n) {
                /* No entropy yet (early boot) or no getrandom: O_EXCL still
                 * makes the name unique, this only spreads the attempts. */
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull;
                for (size_t i = 0; i < n; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
                        rnd[i] = (uint8_t)(x >> 56);
        }
        for (size_t i = 0; i < n; i++)
                out[i] = letters[rnd[i] % (sizeof(letters) - 1)];
        out[n] = '\0';
}

/* make(name, ctx) with name = prefix + 6 random characters, until one is
 * new: make answers -EEXIST for a name taken, else what it made. */
static int make_unique(const char *prefix, char *name, int (*make)(const char *name, void *ctx), void *ctx)
{
        size_t n = strlen(prefix);

        if (n + 7 > PATH_MAX)
                return -ENAMETOOLONG;
        memcpy(name, prefix, n);
        for (int attempt = 0; attempt < 100; attempt++) {
                random_letters(name + n, 6);
                int r = make(name, ctx);
                if (r != -EEXIST)
                        return r;
        }
        return -EEXIST;
}

static int create_new(const char *name, void *dirfd)
{
        /* 0666: the kernel takes the umask off, as for any program's output. */
        int fd = openat(*(int *)dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);

        return fd < 0 ? -errno : fd;
}

int create_unique_at(int dirfd, const char *prefix, char *name)
{
        return make_unique(prefix, name, create_new, &dirfd);
}

struct link_source {
        int dirfd, new_dirfd;
        const char *name;
};

static int link_new(const char *name, void *opaque)
{
        const struct link_source *src = opaque;

        /* No AT_SYMLINK_FOLLOW: a symlink is linked as itself, never its target. */
        return linkat(src->dirfd, src->name, src->new_dirfd, name, 0) < 0 ? -errno : 0;
}

int link_unique_at(int dirfd, const char *oldname, int new_dirfd, const char *prefix, char *name)
{
        struct link_source src = { dirfd, new_dirfd, oldname };

        return make_unique(prefix, name, link_new, &src);
}

/* write_file_atomic_at, the file made private (mode 0600 before any byte
 * is in it) and an existing one kept (-EEXIST) as asked. */
static int write_atomic(int dirfd, const char *name, const char *tmp_prefix, const void *data, size_t len,
                        bool private, bool replace)
{
        char tmp[PATH_MAX];
        int r = 0;

        _cleanup_close_ int fd = create_unique_at(dirfd, tmp_prefix, tmp);
        if (fd < 0)
                return fd;
        if (private && fchmod(fd, 0600) < 0)
                r = -errno;
        if (r == 0)
                r = write_full(fd, data, len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && renameat2(dirfd, tmp, dirfd, name, replace ? 0 : RENAME_NOREPLACE) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(dirfd, tmp, 0);
                return r;
        }
        if (dirfd == AT_FDCWD)
                return fsync_dir_of(name);
        return fsync(dirfd) < 0 ? -errno : 0;
}

int write_file_atomic_at(int dirfd, const char *name, const char *tmp_prefix, const void *data, size_t len)
{
        return write_atomic(dirfd, name, tmp_prefix, data, len, false, true);
}

int write_file_new_at(int dirfd, const char *name, const char *tmp_prefix, const void *data, size_t len)
{
        return write_atomic(dirfd, name, tmp_prefix, data, len, false, false);
}

int write_file_atomic_opts(const char *path, const void *data, size_t len, bool private, bool replace)
{
        char prefix[PATH_MAX];

        if (snprintf(prefix, sizeof(prefix), "%s.tmp-", path) >= (int)sizeof(prefix))
                return -ENAMETOOLONG;
        return write_atomic(AT_FDCWD, path, prefix, data, len, private, replace);
}

int write_file_atomic(const char *path, const void *data, size_t len)
{
        return write_file_atomic_opts(path, data, len, false, true);
}

const char *file_type_name(mode_t mode)
{
        switch (mode & S_IFMT) {
        case S_IFREG:
                return "a regular file";
        case S_IFDIR:
                return "a directory";
        case S_IFIFO:
                return "a FIFO";
        case S_IFCHR:
                return "a character device";
        case S_IFBLK:
                return "a block device";
        case S_IFSOCK:
                return "a socket";
        case S_IFLNK:
                return "a symlink";
        default:
                return "not a regular file";
        }
}

/* Refuses what st says is not a regular file: -EINVAL, its type in *type. */
static int check_regular(const struct stat *st, mode_t *type)
{
        if (S_ISREG(st->st_mode))
                return 0;
        if (type)
                *type = st->st_mode & S_IFMT;
        return -EINVAL;
}

int open_regular_at(int dirfd, const char *name, int flags, mode_t *type)
{
        struct stat st;
        int fl, err;

        /* Looked at first: opening a device is not harmless (a watchdog
         * starts counting, a tape rewinds), so what is not a regular file
         * is not opened at all. */
        if (fstatat(dirfd, name, &st, (flags & O_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0) < 0)
                return -errno;
        if ((flags & O_NOFOLLOW) && S_ISLNK(st.st_mode))
                return -ELOOP; /* as the open would say */
        err = check_regular(&st, type);
        if (err < 0)
                return err;
        /* It may have been replaced since. O_NONBLOCK: opening a FIFO for
         * reading waits for a writer, a serial line for its carrier;
         * O_NOCTTY: a terminal opened by a session leader (a daemon) would
         * become its controlling terminal. */
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | flags);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        err = check_regular(&st, type);
        if (err < 0)
                return err;
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int read_fd_bounded(int fd, size_t max, uint8_t **out, size_t *out_len)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;
        _cleanup_free_ uint8_t *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        if (!buf)
                return -ENOMEM;
        ssize_t n = pread_full(fd, buf, (size_t)st.st_size, 0);
        if (n < 0)
                return (int)n;
        *out_len = (size_t)n;
        *out = TAKE_PTR(buf);
        return 0;
}

static int read_regular_at(int dirfd, const char *name, int flags, size_t max, uint8_t **out, size_t *out_len,
                           mode_t *type)
{
        _cleanup_close_ int fd = open_regular_at(dirfd, name, flags, type);

        if (fd < 0)
                return fd;
        return read_fd_bounded(fd, max, out, out_len);
}

int read_file_bounded(const char *path, size_t max, uint8_t **out, size_t *out_len, mode_t *type)
{
        return read_regular_at(AT_FDCWD, path, 0, max, out, out_len, type);
}

int read_file_bounded_at(int dirfd, const char *name, size_t max, uint8_t **out, size_t *out_len, mode_t *type)
{
        return read_regular_at(dirfd, name, O_NOFOLLOW, max, out, out_len, type);
}
