// SPDX-License-Identifier: MIT
#include "store.h"

#include "chunk_reader.h"
#include "cleanup.h"
#include "dir_iter.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

struct store {
        char *path;
        int dirfd;
        int chunks_dirfd;
        int lock_fd; /* -1 until store_lock() */
};

const uint8_t store_release_magic[STORE_RELEASE_MAGIC_LEN] = { 'I', 'H', 'O', 'P', '1', 0 };

int store_open(const char *path, bool create, struct store **out)
{
        _cleanup_free_ struct store *s = NULL;
        int err;

        if (create) {
                err = mkdir_parents(path, 0755);
                if (err < 0)
                        return log_errno(err, "cannot create store %s", path);
        }
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dirfd = s->chunks_dirfd = s->lock_fd = -1;
        s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0)
                return log_errno(-errno, "cannot open store %s", path);
        if (create && mkdirat(s->dirfd, STORE_CHUNKS_DIR, 0755) < 0 && errno != EEXIST) {
                err = log_errno(-errno, "cannot create %s/%s", path, STORE_CHUNKS_DIR);
                close(s->dirfd);
                return err;
        }
        /* STORE itself may be a symlink (/data/store -> /mnt/x); what is below it may not. */
        s->chunks_dirfd = openat(s->dirfd, STORE_CHUNKS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s->chunks_dirfd < 0) {
                struct stat st;
                err = -errno;
                if (fstatat(s->dirfd, STORE_CHUNKS_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                        log_error("%s/%s is a symlink, not a directory: refusing", path, STORE_CHUNKS_DIR);
                else if (err == -ENOENT)
                        log_errno(err, "%s is not an ihop store (no %s/)", path, STORE_CHUNKS_DIR);
                else if (err == -ENOTDIR)
                        log_error("%s/%s is not a directory: refusing", path, STORE_CHUNKS_DIR);
                else
                        log_errno(err, "cannot open %s/%s", path, STORE_CHUNKS_DIR);
                close(s->dirfd);
                return err;
        }
        s->path = strdup(path);
        if (!s->path) {
                close(s->dirfd);
                close(s->chunks_dirfd);
                return -ENOMEM;
        }
        *out = TAKE_PTR(s);
        return 0;
}

void store_close(struct store *s)
{
        if (!s)
                return;
        if (s->chunks_dirfd >= 0)
                close(s->chunks_dirfd);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        if (s->dirfd >= 0)
                close(s->dirfd);
        free(s->path);
        free(s);
}

const char *store_path(const struct store *s)
{
        return s->path;
}

void store_chunk_relpath(const uint8_t *hash, size_t hash_len, char buf[STORE_CHUNK_PATH_MAX])
{
        char hex[2 * HASH_MAX_LEN + 1];

        hash_to_hex(hash, hash_len, hex);
        snprintf(buf, STORE_CHUNK_PATH_MAX, "%.4s/%s.chunk", hex, hex);
}

/* "STORE/chunks/rel": every chunk file (or its temp file) as messages name it. */
static const char *shown_chunk_file(const struct store *s, const char *rel, char buf[STORE_CHUNK_SHOWN_MAX])
{
        snprintf(buf, STORE_CHUNK_SHOWN_MAX, "%s/%s/%s", s->path, STORE_CHUNKS_DIR, rel);
        return buf;
}

const char *store_chunk_path(const struct store *s, const uint8_t *hash, size_t hash_len,
                             char buf[STORE_CHUNK_SHOWN_MAX])
{
        char rel[STORE_CHUNK_PATH_MAX];

        store_chunk_relpath(hash, hash_len, rel);
        return shown_chunk_file(s, rel, buf);
}

bool store_release_name_valid(const char *name)
{
        return name[0] && name[0] != '.' && !strchr(name, '/') && strcmp(name, STORE_CHUNKS_DIR) != 0 &&
               !strstr(name, STORE_TMP_MARK) && strlen(name) < 200;
}

int store_split_release_path(const char *arg, char **store_path, char **name)
{
        _cleanup_free_ char *copy = strdup(arg);
        char *slash;

        if (!copy)
                return -ENOMEM;
        while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
                copy[strlen(copy) - 1] = '\0';
        slash = strrchr(copy, '/');
        if (!slash) {
                *store_path = strdup(".");
                *name = strdup(copy);
        } else {
                *slash = '\0';
                *store_path = strdup(slash == copy ? "/" : copy);
                *name = strdup(slash + 1);
        }
        if (!*store_path || !*name)
                return -ENOMEM;
        if (!store_release_name_valid(*name)) {
                log_error("'%s' is not a valid release name (want STORE/NAME, NAME a plain file name: not hidden, "
                          "not '%s', without '%s')",
                          arg, STORE_CHUNKS_DIR, STORE_TMP_MARK);
                free(*store_path);
                free(*name);
                /* The callers free these too (_cleanup_free_): no double free. */
                *store_path = *name = NULL;
                return -EINVAL;
        }
        return 0;
}

int store_chunk_open(struct store *s, const struct chunk *c, size_t hash_len)
{
        char rel[STORE_CHUNK_PATH_MAX];
        int fd;

        store_chunk_relpath(c->hash, hash_len, rel);
        /* O_NONBLOCK: a FIFO planted in the store opens at once (and then
         * fails as no regular file) instead of blocking the reader for ever. */
        fd = openat_beneath(s->chunks_dirfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
        return fd;
}

int store_chunk_open_cached(struct store *s, const struct chunk *c, size_t hash_len)
{
        char rel[STORE_CHUNK_PATH_MAX];

        store_chunk_relpath(c->hash, hash_len, rel);
        return openat_beneath_cached(s->chunks_dirfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
}

/* Why STORE/chunks/rel could not be had, in one line; returns err. */
static int log_chunk_file_error(struct store *s, const char *rel, int err, const char *action)
{
        char buf[STORE_CHUNK_PATH_MAX], shown[STORE_CHUNK_SHOWN_MAX];
        const char *slash = strchr(rel, '/');
        struct stat st;

        if (err == -ELOOP || err == -ENOTDIR) {
                /* Which one: the fan-out directory, or the file itself? */
                snprintf(buf, sizeof(buf), "%.*s", slash ? (int)(slash - rel) : (int)strlen(rel), rel);
                if (slash && fstatat(s->chunks_dirfd, buf, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
                        log_error("%s is %s, not a directory: refusing", shown_chunk_file(s, buf, shown),
                                  S_ISLNK(st.st_mode) ? "a symlink" : "a file");
                        return err;
                }
                if (fstatat(s->chunks_dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
                        log_error("%s is a symlink, not a file: refusing", shown_chunk_file(s, rel, shown));
                        return err;
                }
        }
        return log_errno(err, "cannot %s %s", action, shown_chunk_file(s, rel, shown));
}

int store_log_chunk_error(struct store *s, const uint8_t *hash, size_t hash_len, int err, const char *action)
{
        char rel[STORE_CHUNK_PATH_MAX];

        store_chunk_relpath(hash, hash_len, rel);
        return log_chunk_file_error(s, rel, err, action);
}

bool store_fd_holds_chunk(int fd, const struct chunk *c, size_t hash_len)
{
        _cleanup_free_ uint8_t *buf = malloc(CHUNK_READ_BLOCK);
        struct chunk_reader rd;
        struct stat sb;
        ssize_t n;

        if (!buf || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != c->source_size)
                return false;
        chunk_reader_init(&rd, fd, c, hash_len, buf, true);
        while ((n = chunk_reader_next(&rd)) > 0)
                ;
        return n == 0 && chunk_reader_matches(&rd);
}

int store_chunk_open_sized(struct store *s, const struct chunk *c, size_t hash_len)
{
        struct stat sb;
        _cleanup_close_ int fd = store_chunk_open(s, c, hash_len);

        if (fd < 0)
                return fd;
        if (fstat(fd, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != c->source_size)
                return -EBADMSG;
        return TAKE_FD(fd);
}

int store_chunk_state(struct store *s, const struct chunk *c, size_t hash_len, bool verify,
                      enum chunk_state *state)
{
        _cleanup_close_ int fd = store_chunk_open_sized(s, c, hash_len);

        if (fd == -ENOENT)
                *state = CHUNK_MISSING;
        else if (fd == -EBADMSG)
                *state = CHUNK_CORRUPT;
        else if (fd < 0)
                return fd;
        else
                *state = !verify || store_fd_holds_chunk(fd, c, hash_len) ? CHUNK_PRESENT : CHUNK_CORRUPT;
        return 0;
}

/* Creates the fan-out directory of rel ("abcd/..."), if it is not there. */
static int make_fan_out_dir(struct store *s, const char *rel)
{
        char dir[8], shown[STORE_CHUNK_SHOWN_MAX];

        snprintf(dir, sizeof(dir), "%.4s", rel);
        if (mkdirat(s->chunks_dirfd, dir, 0755) < 0 && errno != EEXIST)
                return log_errno(-errno, "cannot create %s", shown_chunk_file(s, dir, shown));
        return 0;
}

/* Times a chunk's temp file is created again after its fan-out directory
 * was removed under it: each gc removes a directory once at most, so
 * this many gc runs would have to start in the instants between mkdir and
 * create, one after the other. */
#define CREATE_ATTEMPTS 16

int chunk_writer_begin(struct chunk_writer *w, struct store *s, const struct chunk *c, size_t hash_len)
{
        static atomic_uint counter;
        char rel[STORE_CHUNK_PATH_MAX];
        int err;

        store_chunk_relpath(c->hash, hash_len, rel);
        w->store = s;
        w->chunk = c;
        w->hash_len = hash_len;
        w->written = 0;
        w->fd = -1;
        if (snprintf(w->tmp, sizeof(w->tmp), "%s%s%d.%u", rel, STORE_TMP_MARK, (int)getpid(),
                     atomic_fetch_add(&counter, 1)) >= (int)sizeof(w->tmp))
                return -ENAMETOOLONG;
        /* The fan-out directory is created on first use, and gc removes it
         * once empty. An on-demand writer holds no store lock (ondemand.h):
         * a gc may remove the directory between the mkdir and the create,
         * which then finds none (ENOENT). It is made again. Once the temp
         * file is in it, the directory is not empty and stays (gc keeps a
         * live writer's temp file): the rename into place, in the same
         * directory, cannot meet this. */
        for (int attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
                err = make_fan_out_dir(s, rel);
                if (err < 0)
                        return err;
                /* Never through a planted symlink: the fan-out directory must be a real one. */
                w->fd = openat_beneath(s->chunks_dirfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
                if (w->fd != -ENOENT)
                        break;
        }
        if (w->fd < 0) {
                err = log_chunk_file_error(s, w->tmp, w->fd, "create");
                w->fd = -1;
                return err;
        }
        hash_init(&w->hash);
        return 0;
}

int chunk_writer_write(struct chunk_writer *w, const uint8_t *data, size_t len)
{
        int err;

        if (len > w->chunk->source_size - w->written)
                return -EBADMSG;
        hash_update(&w->hash, data, len);
        err = write_full(w->fd, data, len);
        if (err < 0)
                return log_chunk_file_error(w->store, w->tmp, err, "write");
        w->written += len;
        return 0;
}

int chunk_writer_finish(struct chunk_writer *w)
{
        uint8_t digest[HASH_MAX_LEN];
        int err = 0;

        hash_final(&w->hash, digest);
        if (w->written != w->chunk->source_size || memcmp(digest, w->chunk->hash, w->hash_len) != 0)
                err = -EBADMSG;
        /* close() reports delayed write errors (NFS, quota) that write() did not. */
        if (close(w->fd) < 0 && err == 0)
                err = log_chunk_file_error(w->store, w->tmp, -errno, "write");
        w->fd = -1;
        if (err < 0)
                unlinkat(w->store->chunks_dirfd, w->tmp, 0);
        return err;
}

int chunk_writer_open_finished(const struct chunk_writer *w)
{
        return openat_beneath(w->store->chunks_dirfd, w->tmp, O_RDONLY, 0);
}

void chunk_writer_abort(struct chunk_writer *w)
{
        if (w->fd >= 0) {
                close(w->fd);
                w->fd = -1;
                unlinkat(w->store->chunks_dirfd, w->tmp, 0);
        }
}

void store_batch_init(struct store_batch *b, struct store *s)
{
        memset(b, 0, sizeof(*b));
        b->store = s;
}

int store_batch_add(struct store_batch *b, const struct chunk_writer *w)
{
        if (b->n == b->cap) {
                size_t cap = b->cap ? 2 * b->cap : 64;
                void *t = realloc(b->tmp, cap * sizeof(*b->tmp));
                if (!t) {
                        unlinkat(b->store->chunks_dirfd, w->tmp, 0);
                        return -ENOMEM;
                }
                b->tmp = t;
                t = realloc(b->final, cap * sizeof(*b->final));
                if (!t) {
                        unlinkat(b->store->chunks_dirfd, w->tmp, 0);
                        return -ENOMEM;
                }
                b->final = t;
                b->cap = cap;
        }
        memcpy(b->tmp[b->n], w->tmp, STORE_CHUNK_PATH_MAX);
        store_chunk_relpath(w->chunk->hash, w->hash_len, b->final[b->n]);
        b->n++;
        b->bytes += w->written;
        return 0;
}

int store_batch_add_zeros(struct store_batch *b, const struct chunk *c, size_t hash_len)
{
        static const uint8_t zeros[64 << 10];
        struct chunk_writer w = { .fd = -1 };
        int err = chunk_writer_begin(&w, b->store, c, hash_len);

        for (uint64_t left = c->source_size; err == 0 && left > 0;) {
                size_t n = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
                err = chunk_writer_write(&w, zeros, n);
                left -= n;
        }
        if (err < 0) {
                chunk_writer_abort(&w);
                return err;
        }
        err = chunk_writer_finish(&w);
        return err < 0 ? err : store_batch_add(b, &w);
}

int store_sync(struct store *s)
{
        if (syncfs(s->dirfd) < 0)
                return log_errno(-errno, "cannot sync store %s", s->path);
        return 0;
}

int store_batch_commit(struct store_batch *b)
{
        int err;

        if (b->n == 0)
                return 0;
        /* Content must be durable before a chunk gets its final name: after a
         * power cut a final name must never point at a hole or stale blocks.
         * One syncfs per batch is far cheaper than an fsync per chunk. */
        err = store_sync(b->store);
        if (err < 0)
                return err;
        for (size_t i = 0; i < b->n; i++) {
                if (renameat(b->store->chunks_dirfd, b->tmp[i], b->store->chunks_dirfd, b->final[i]) < 0) {
                        err = log_errno(-errno, "cannot move chunk into place in %s", b->store->path);
                        for (size_t j = i; j < b->n; j++)
                                unlinkat(b->store->chunks_dirfd, b->tmp[j], 0);
                        b->n = 0;
                        return err;
                }
        }
        b->n = 0;
        b->bytes = 0;
        return 0;
}

void store_batch_discard(struct store_batch *b)
{
        for (size_t i = 0; i < b->n; i++)
                unlinkat(b->store->chunks_dirfd, b->tmp[i], 0);
        b->n = 0;
        b->bytes = 0;
}

void store_batch_free(struct store_batch *b)
{
        free(b->tmp);
        free(b->final);
        b->tmp = NULL;
        b->final = NULL;
        b->n = b->cap = 0;
}

int store_lock(struct store *s, enum store_lock_mode mode)
{
        int op = mode == STORE_LOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH;

        /* The lock is on the store directory itself: the layout gains no file. */
        if (s->lock_fd < 0) {
                s->lock_fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (s->lock_fd < 0)
                        return log_errno(-errno, "cannot open the lock of store %s", s->path);
        }
        if (flock(s->lock_fd, op | LOCK_NB) == 0)
                return 0;
        if (errno != EWOULDBLOCK)
                return log_errno(-errno, "cannot lock store %s", s->path);
        log_info("waiting for store %s: %s", s->path,
                 mode == STORE_LOCK_EXCLUSIVE ? "another ihop is using it" : "a garbage collection is running");
        while (flock(s->lock_fd, op) < 0)
                if (errno != EINTR)
                        return log_errno(-errno, "cannot lock store %s", s->path);
        return 0;
}

void store_unlock(struct store *s)
{
        if (s->lock_fd >= 0)
                flock(s->lock_fd, LOCK_UN);
}

bool store_tmp_is_stale(const char *name)
{
        const char *mark = strstr(name, STORE_TMP_MARK);
        char *end;
        long pid;

        if (!mark)
                return false;
        pid = strtol(mark + strlen(STORE_TMP_MARK), &end, 10);
        if (pid <= 0 || *end != '.')
                return true; /* not one of ours (release temp files): stale under an exclusive lock */
        return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

void store_free_names(char **names) { dir_names_free(names); }

/* A release description: a plain file with a release's name and the magic.
 * Anything else (a FIFO, a device, a directory, a symlink) is not one, as
 * a file without the magic is not: left out, and never opened so that it
 * could block the listing. */
static bool is_release(const struct dir_iter *it, const char *name, void *opaque)
{
        uint8_t magic[STORE_RELEASE_MAGIC_LEN];

        if (!store_release_name_valid(name))
                return false;
        _cleanup_close_ int rfd = open_regular_at(dir_iter_fd(it), name, O_NOFOLLOW, NULL);
        if (rfd < 0)
                return false;
        return pread_full(rfd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
               store_release_magic_ok(magic, sizeof(magic));
}

int store_list_releases(struct store *s, char ***names, size_t *n)
{
        _cleanup_dir_iter_ struct dir_iter it = {};
        int r;

        r = store_dir_iter_open(s, STORE_DIR_TOP, &it);
        if (r < 0)
                return log_errno(r, "cannot read store %s", s->path);
        r = dir_iter_names(&it, is_release, NULL, names, n);
        /* A listing cut short would hide releases: fail, never guess. */
        if (r < 0 && r != -ENOMEM)
                return log_errno(r, "cannot list the releases of store %s", s->path);
        return r;
}

bool store_release_magic_ok(const uint8_t *buf, size_t len)
{
        return len >= STORE_RELEASE_MAGIC_LEN && memcmp(buf, store_release_magic, STORE_RELEASE_MAGIC_LEN) == 0;
}

bool store_release_exists(struct store *s, const char *name)
{
        return faccessat(s->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

int store_check_writable(struct store *s)
{
        const int dirs[] = { s->dirfd, s->chunks_dirfd };
        struct statvfs st;

        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
                /* The mount's flags with the file system's: a read-only bind
                 * mount of a writable one counts. */
                if (fstatvfs(dirs[i], &st) == 0 && (st.f_flag & ST_RDONLY))
                        return -EROFS;
                /* Permissions as the writes will meet them (effective ids,
                 * capabilities, ACLs): a directory needs w and x. */
                if (faccessat(dirs[i], ".", W_OK | X_OK, AT_EACCESS) < 0 &&
                    (errno == EROFS || errno == EACCES || errno == EPERM))
                        return -errno;
        }
        return 0;
}

int store_release_read(struct store *s, const char *name, uint8_t **buf, size_t *len)
{
        char path[PATH_MAX];
        mode_t type;
        int err;

        snprintf(path, sizeof(path), "%s/%s", s->path, name);
        err = read_file_bounded_at(s->dirfd, name, STORE_RELEASE_MAX_SIZE, buf, len, &type);
        if (err == -ENOENT) {
                log_error("release %s does not exist", path);
                return err;
        }
        if (err == -ELOOP) {
                /* gc, which reads no symlink either, would not keep its chunks. */
                log_error("%s is a symlink, not a release description: refusing", path);
                return err;
        }
        if (err == -EINVAL) {
                log_error("%s is %s, not a release description: refusing", path, file_type_name(type));
                return -EBADMSG;
        }
        if (err == -EFBIG) {
                log_error("%s is not a release description", path);
                return -EBADMSG;
        }
        if (err < 0)
                return log_errno(err, "cannot read release %s", path);
        return 0;
}

static int release_write(struct store *s, const char *name, const uint8_t *buf, size_t len, bool replace)
{
        char path[PATH_MAX], tmp_prefix[NAME_MAX];
        int err;

        /* The temp file is hidden (".NAME.tmp-XXXXXX"): no release name is
         * hidden, so gc can tell a leftover from a release. */
        snprintf(path, sizeof(path), "%s/%s", s->path, name);
        if (snprintf(tmp_prefix, sizeof(tmp_prefix), ".%s%s", name, STORE_TMP_MARK) >= (int)sizeof(tmp_prefix))
                return log_errno(-ENAMETOOLONG, "cannot write release description %s", path);
        err = replace ? write_file_atomic_at(s->dirfd, name, tmp_prefix, buf, len)
                      : write_file_new_at(s->dirfd, name, tmp_prefix, buf, len);
        if (err == -EEXIST && !replace)
                return err;
        if (err < 0)
                return log_errno(err, "cannot write release description %s", path);
        return 0;
}

int store_release_write(struct store *s, const char *name, const uint8_t *buf, size_t len)
{
        return release_write(s, name, buf, len, true);
}

int store_release_create(struct store *s, const char *name, const uint8_t *buf, size_t len)
{
        return release_write(s, name, buf, len, false);
}

int store_release_remove(struct store *s, const char *name)
{
        if (unlinkat(s->dirfd, name, 0) < 0) {
                if (errno == ENOENT) {
                        log_error("release %s/%s does not exist", s->path, name);
                        return -ENOENT;
                }
                return log_errno(-errno, "cannot remove release %s/%s", s->path, name);
        }
        if (fsync(s->dirfd) < 0)
                log_warn("cannot sync %s: %s", s->path, strerror(errno));
        return 0;
}

/* The directory d as a parent descriptor and a name below it. */
static const char *dir_location(const struct store *s, enum store_dir d, int *parent)
{
        *parent = d == STORE_DIR_CHUNKS ? s->chunks_dirfd : s->dirfd;
        return d == STORE_DIR_IN_USE ? STORE_IN_USE_DIR : ".";
}

int store_dir_open(struct store *s, enum store_dir d, bool create)
{
        int parent, fd;
        const char *name = dir_location(s, d, &parent);

        if (create && d == STORE_DIR_IN_USE && mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int store_dir_iter_open(struct store *s, enum store_dir d, struct dir_iter *it)
{
        int parent;
        const char *name = dir_location(s, d, &parent);

        return dir_iter_open(it, parent, name);
}

int store_chunk_recover(struct store *s, const struct chunk *c, size_t hash_len, bool *recovered)
{
        _cleanup_dir_iter_ struct dir_iter it = {};
        char rel[STORE_CHUNK_PATH_MAX], dir[8];
        const struct dirent *e;
        const char *base;
        size_t base_len;
        int r, fd;

        *recovered = false;
        store_chunk_relpath(c->hash, hash_len, rel);
        memcpy(dir, rel, 4);
        dir[4] = '\0';
        base = rel + 5;
        base_len = strlen(base);
        r = dir_iter_open(&it, s->chunks_dirfd, dir);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        fd = dir_iter_fd(&it);
        while ((r = dir_iter_next(&it, &e)) > 0) {
                if (strncmp(e->d_name, base, base_len) != 0 || !store_tmp_is_stale(e->d_name + base_len))
                        continue;
                _cleanup_close_ int tfd = openat(fd, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                /* A killed clone's verified chunk: durable first, then in place. */
                if (tfd >= 0 && store_fd_holds_chunk(tfd, c, hash_len) && fsync(tfd) == 0 &&
                    renameat(fd, e->d_name, fd, base) == 0) {
                        *recovered = true;
                        return 0;
                }
                unlinkat(fd, e->d_name, 0);
        }
        return r;
}
