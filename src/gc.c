// SPDX-License-Identifier: MIT
#include "gc.h"

#include "cleanup.h"
#include "dir_iter.h"
#include "fsutil.h"
#include "log.h"
#include "release_file.h"
#include "store_usage.h"
#include "text_escape.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "<hex>.chunk" → hash bytes; false for names that are not chunk files. */
static bool parse_chunk_name(const char *name, uint8_t *hash, size_t *len)
{
        const char *dot = strrchr(name, '.');
        char hex[2 * HASH_MAX_LEN + 1];
        size_t n;

        if (!dot || strcmp(dot, ".chunk") != 0)
                return false;
        n = (size_t)(dot - name);
        if (n >= sizeof(hex))
                return false;
        memcpy(hex, name, n);
        hex[n] = '\0';
        int r = hash_from_hex(hex, hash, HASH_MAX_LEN);
        if (r < HASH_MIN_LEN)
                return false;
        *len = (size_t)r;
        return true;
}

static void drop(int dirfd, const char *dir, const char *name, uint64_t size, bool dry_run, const char *why)
{
        _cleanup_free_ char *shown = text_escape_str(name);
        char s[32];

        printf("%s %s/%s (%s, %s)\n", dry_run ? "would remove" : "removed", dir, shown ? shown : name,
               format_size(size, s, sizeof(s)), why);
        if (!dry_run && unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
                log_warn("cannot remove %s/%s: %s", dir, name, strerror(errno));
}

/* Names gathered by a listing, to act on once it is known to be complete. */
struct name_list {
        char **names;
        size_t n, cap;
};

static int name_list_add(struct name_list *l, const char *name)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 64;
                char **t = realloc(l->names, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                l->names = t;
                l->cap = cap;
        }
        l->names[l->n] = strdup(name);
        return l->names[l->n++] ? 0 : -ENOMEM;
}

static void name_list_free(struct name_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->names[i]);
        free(l->names);
        memset(l, 0, sizeof(*l));
}

/* What keeps a chunk: a release, or a release in use. */
struct gc_refs {
        struct store_usage releases, in_use;
};

/* A chunk's temp file names its writer ("HASH.tmp-PID.N"). One whose
 * writer still runs is a fetch in flight, not garbage: an on-demand mount
 * (ondemand.h) stores chunks without holding the store's lock. */
static bool writer_runs(const char *name)
{
        const char *p = strstr(name, STORE_TMP_MARK) + strlen(STORE_TMP_MARK);
        char *end;
        long pid = strtol(p, &end, 10);

        if (end == p || *end != '.' || pid <= 0 || pid == (long)getpid())
                return false;
        return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* chunks_fd: the store's chunks/ directory; sub: one of its fan-out directories. */
static int collect_dir(struct store *s, int chunks_fd, const struct gc_refs *refs, const char *sub, bool dry_run,
                       struct gc_result *res)
{
        _cleanup_dir_iter_ struct dir_iter it = {};
        const struct dirent *e;
        char path[PATH_MAX];
        int r, fd;

        snprintf(path, sizeof(path), "%s/%s/%s", store_path(s), STORE_CHUNKS_DIR, sub);
        r = dir_iter_open(&it, chunks_fd, sub);
        if (r < 0)
                return log_errno(r, "cannot list %s: garbage collection stopped", path);
        fd = dir_iter_fd(&it);
        while ((r = dir_iter_next(&it, &e)) > 0) {
                uint8_t hash[HASH_MAX_LEN];
                size_t len;
                struct stat st;
                /* A symlink is never followed, nor removed: not ours. */
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (strstr(e->d_name, STORE_TMP_MARK)) {
                        if (writer_runs(e->d_name))
                                continue;
                        drop(fd, path, e->d_name, (uint64_t)st.st_size, dry_run, "left by an interrupted clone");
                        res->tmp_removed++;
                        res->bytes_removed += (uint64_t)st.st_size;
                } else if (!parse_chunk_name(e->d_name, hash, &len)) {
                        continue; /* not ours: leave it */
                } else if (store_usage_references(&refs->releases, hash, len)) {
                        res->chunks_kept++;
                        res->bytes_kept += (uint64_t)st.st_size;
                } else if (store_usage_references(&refs->in_use, hash, len)) {
                        res->chunks_kept++;
                        res->bytes_kept += (uint64_t)st.st_size;
                        res->chunks_kept_in_use++;
                        res->bytes_kept_in_use += (uint64_t)st.st_size;
                } else {
                        drop(fd, path, e->d_name, (uint64_t)st.st_size, dry_run, "no release uses it");
                        res->chunks_removed++;
                        res->bytes_removed += (uint64_t)st.st_size;
                }
        }
        if (r < 0)
                return log_errno(r, "cannot list %s: garbage collection stopped", path);
        if (!dry_run)
                unlinkat(chunks_fd, sub, AT_REMOVEDIR); /* only succeeds once empty */
        return 0;
}

static bool is_listed(const struct store_usage *u, const char *name)
{
        for (size_t i = 0; i < u->n_releases; i++)
                if (strcmp(u->releases[i].name, name) == 0)
                        return true;
        return false;
}

/* ihop before 0.3 named a description's temp file "NAME.tmp-XXXXXX" and took
 * such names for releases too: one holding a whole description may be a
 * release ("ihop clone X STORE/keep.tmp-1"), whose chunks are not garbage. */
static int check_legacy_temp(struct store *s, int fd, const char *name, const char *shown, bool *is_release)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = read_file_bounded_at(fd, name, STORE_RELEASE_MAX_SIZE, &buf, &len, NULL);

        *is_release = false;
        /* Too large, or no longer a regular file (replaced since it was
         * looked at): no release, and gc removes only regular files. */
        if (r == -EFBIG || r == -EINVAL)
                return 0;
        if (r < 0)
                return log_errno(r, "refusing to collect garbage in %s: cannot read %s/%s", store_path(s),
                                 store_path(s), shown);
        *is_release = release_file_is_complete(buf, len);
        return 0;
}

/* The top of the store (listed by it), read whole before anything goes:
 * every plain file with a release's name must be a release gc knows, and
 * what is left of interrupted clones (release temp files) is gathered in temps. */
static int scan_top(struct store *s, struct dir_iter *it, const struct store_usage *u, struct name_list *temps)
{
        const char *path = store_path(s);
        const struct dirent *e;
        int r, fd = dir_iter_fd(it);

        while ((r = dir_iter_next(it, &e)) > 0) {
                struct stat st;
                /* Names go into messages: escaped, whoever made the files. */
                _cleanup_free_ char *name = text_escape_str(e->d_name);
                if (!name)
                        return -ENOMEM;
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return log_errno(-errno, "refusing to collect garbage in %s: cannot read %s/%s", path,
                                         path, name);
                }
                if (store_release_name_valid(e->d_name)) {
                        if (S_ISLNK(st.st_mode)) {
                                log_error("refusing to collect garbage in %s: %s/%s is a symlink, not a release "
                                          "description (move it out of the store)",
                                          path, path, name);
                                return -ELOOP;
                        }
                        if (S_ISREG(st.st_mode) && !is_listed(u, e->d_name)) {
                                /* Damaged magic or length: its chunks are not garbage. */
                                log_error("refusing to collect garbage in %s: %s/%s is not a readable release "
                                          "description (move it out of the store if it is not a release)",
                                          path, path, name);
                                return -EBADMSG;
                        }
                        continue;
                }
                if (!S_ISREG(st.st_mode) || !strstr(e->d_name, STORE_TMP_MARK))
                        continue;
                if (e->d_name[0] != '.') {
                        bool is_release;
                        r = check_legacy_temp(s, fd, e->d_name, name, &is_release);
                        if (r < 0)
                                return r;
                        if (is_release) {
                                log_error("refusing to collect garbage in %s: %s/%s is a whole release description "
                                          "with a temp file's name; rename it to a name without '%s' (or remove "
                                          "it) and run gc again",
                                          path, path, name, STORE_TMP_MARK);
                                return -EEXIST;
                        }
                }
                r = name_list_add(temps, e->d_name);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return log_errno(r, "refusing to collect garbage in %s: cannot list it", path);
        return 0;
}

/* The fan-out directories of chunks/, listed whole before any is walked:
 * one that is a symlink stops gc before it has removed anything. */
static int scan_chunks(struct store *s, struct dir_iter *it, struct name_list *dirs)
{
        const char *path = store_path(s);
        const struct dirent *e;
        int r, fd = dir_iter_fd(it);

        while ((r = dir_iter_next(it, &e)) > 0) {
                struct stat st;
                if (e->d_name[0] == '.')
                        continue;
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        _cleanup_free_ char *name = NULL;
                        if (errno == ENOENT)
                                continue;
                        r = -errno;
                        name = text_escape_str(e->d_name);
                        return log_errno(r, "refusing to collect garbage in %s: cannot read %s/%s/%s", path,
                                         path, STORE_CHUNKS_DIR, name ? name : "?");
                }
                if (S_ISLNK(st.st_mode)) {
                        _cleanup_free_ char *name = text_escape_str(e->d_name);
                        log_error("%s/%s/%s is a symlink, not a directory: refusing to collect garbage in %s",
                                  path, STORE_CHUNKS_DIR, name ? name : "?", path);
                        return -ELOOP;
                }
                if (!S_ISDIR(st.st_mode))
                        continue; /* not ours: leave it */
                r = name_list_add(dirs, e->d_name);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return log_errno(r, "refusing to collect garbage in %s: cannot list %s/%s", path, path,
                                 STORE_CHUNKS_DIR);
        return 0;
}

/* The releases and the releases in use: nothing is collected unless both
 * are known whole. */
static int load_refs(struct store *s, struct gc_refs *refs, struct store_use_entry **uses, size_t *n_uses)
{
        const char *path = store_path(s);
        int err;

        err = store_usage_load(s, &refs->releases);
        if (err < 0) {
                log_error("refusing to collect garbage in %s: its releases cannot all be read", path);
                return err;
        }
        err = store_use_list(s, true, uses, n_uses);
        if (err == 0)
                err = store_usage_load_in_use(s, *uses, *n_uses, &refs->in_use);
        if (err < 0) {
                log_error("refusing to collect garbage in %s: the releases in use cannot all be read", path);
                store_usage_free(&refs->releases);
        }
        return err;
}

/* Registrations whose process is gone pin nothing: they go, like temp files. */
static void drop_stale(struct store *s, const struct store_use_entry *uses, size_t n_uses, bool dry_run,
                       struct gc_result *res)
{
        _cleanup_close_ int fd = -1;
        char dir[PATH_MAX];

        snprintf(dir, sizeof(dir), "%s/%s", store_path(s), STORE_IN_USE_DIR);
        for (size_t i = 0; i < n_uses; i++) {
                if (uses[i].live)
                        continue;
                if (fd < 0 && (fd = store_dir_open(s, STORE_DIR_IN_USE, false)) < 0) {
                        log_warn("cannot open %s: %s", dir, strerror(-fd));
                        return;
                }
                drop(fd, dir, uses[i].file, uses[i].size, dry_run, "its process no longer runs");
                res->stale_removed++;
        }
}

int store_gc(struct store *s, bool dry_run, struct gc_result *res)
{
        _cleanup_dir_iter_ struct dir_iter top = {}, chunks = {};
        struct name_list temps = {}, dirs = {};
        const char *path = store_path(s);
        struct store_use_entry *uses = NULL;
        struct gc_refs refs;
        size_t n_uses = 0;
        int err;

        memset(res, 0, sizeof(*res));
        err = load_refs(s, &refs, &uses, &n_uses);
        if (err < 0) {
                store_use_list_free(uses, n_uses);
                return err;
        }
        err = store_dir_iter_open(s, STORE_DIR_TOP, &top);
        if (err < 0)
                log_errno(err, "refusing to collect garbage in %s: cannot list it", path);
        else if ((err = store_dir_iter_open(s, STORE_DIR_CHUNKS, &chunks)) < 0)
                log_errno(err, "refusing to collect garbage in %s: cannot list %s/%s", path, path, STORE_CHUNKS_DIR);
        if (err == 0)
                err = scan_top(s, &top, &refs.releases, &temps);
        if (err == 0)
                err = scan_chunks(s, &chunks, &dirs);
        for (size_t i = 0; err == 0 && i < dirs.n; i++)
                err = collect_dir(s, dir_iter_fd(&chunks), &refs, dirs.names[i], dry_run, res);
        for (size_t i = 0; err == 0 && i < temps.n; i++) {
                int fd = dir_iter_fd(&top);
                struct stat st;
                if (fstatat(fd, temps.names[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                drop(fd, path, temps.names[i], (uint64_t)st.st_size, dry_run, "left by an interrupted clone");
                res->tmp_removed++;
                res->bytes_removed += (uint64_t)st.st_size;
        }
        if (err == 0)
                drop_stale(s, uses, n_uses, dry_run, res);
        if (err == -ENOMEM)
                log_errno(err, "garbage collection in %s", path);
        name_list_free(&temps);
        name_list_free(&dirs);
        store_usage_free(&refs.releases);
        store_usage_free(&refs.in_use);
        store_use_list_free(uses, n_uses);
        return err;
}
