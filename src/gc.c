#include "gc.h"

#include "cleanup.h"
#include "log.h"
#include "store_usage.h"
#include "units.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
        char s[32];

        printf("%s %s/%s (%s, %s)\n", dry_run ? "would remove" : "removed", dir, name, format_size(size, s, sizeof(s)),
               why);
        if (!dry_run && unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
                log_warn("cannot remove %s/%s: %s", dir, name, strerror(errno));
}

static int collect_dir(struct store *s, const struct store_usage *u, const char *sub, bool dry_run,
                       struct gc_result *res)
{
        char path[512];
        int fd = openat(s->chunks_dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        struct dirent *e;
        DIR *d;

        snprintf(path, sizeof(path), "%s/%s/%s", s->path, STORE_CHUNKS_DIR, sub);
        if (fd < 0)
                return errno == ENOTDIR ? 0 : log_errno(-errno, "cannot read %s", path);
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return log_errno(-errno, "cannot read %s", path);
        }
        while ((e = readdir(d))) {
                uint8_t hash[HASH_MAX_LEN];
                size_t len;
                struct stat st;
                if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
                        continue;
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (strstr(e->d_name, STORE_TMP_MARK)) {
                        drop(fd, path, e->d_name, (uint64_t)st.st_size, dry_run, "left by an interrupted clone");
                        res->tmp_removed++;
                        res->bytes_removed += (uint64_t)st.st_size;
                } else if (!parse_chunk_name(e->d_name, hash, &len)) {
                        continue; /* not ours: leave it */
                } else if (store_usage_references(u, hash, len)) {
                        res->chunks_kept++;
                        res->bytes_kept += (uint64_t)st.st_size;
                } else {
                        drop(fd, path, e->d_name, (uint64_t)st.st_size, dry_run, "no release uses it");
                        res->chunks_removed++;
                        res->bytes_removed += (uint64_t)st.st_size;
                }
        }
        closedir(d);
        if (!dry_run)
                unlinkat(s->chunks_dirfd, sub, AT_REMOVEDIR); /* only succeeds once empty */
        return 0;
}

/* Release descriptions half-written by a killed clone (NAME.tmp-XXXXXX). */
static int collect_top(struct store *s, bool dry_run, struct gc_result *res)
{
        int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *e;
        DIR *d;

        if (fd < 0 || !(d = fdopendir(fd))) {
                if (fd >= 0)
                        close(fd);
                return log_errno(-errno, "cannot read %s", s->path);
        }
        while ((e = readdir(d))) {
                struct stat st;
                if (!strstr(e->d_name, STORE_TMP_MARK) || fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                drop(fd, s->path, e->d_name, (uint64_t)st.st_size, dry_run, "left by an interrupted clone");
                res->tmp_removed++;
                res->bytes_removed += (uint64_t)st.st_size;
        }
        closedir(d);
        return 0;
}

/* A plain file at the top that is not a release ls can read may be a release
 * description whose magic or length got damaged: the chunks it names are not
 * garbage. Refuse rather than guess. */
static int check_unread_releases(struct store *s, const struct store_usage *u)
{
        int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *e;
        DIR *d;
        int err = 0;

        if (fd < 0 || !(d = fdopendir(fd))) {
                if (fd >= 0)
                        close(fd);
                return log_errno(-errno, "cannot read %s", s->path);
        }
        while (err == 0 && (e = readdir(d))) {
                struct stat st;
                bool listed = false;
                if (!store_release_name_valid(e->d_name) || strstr(e->d_name, STORE_TMP_MARK) ||
                    fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                for (size_t i = 0; i < u->n_releases && !listed; i++)
                        listed = strcmp(u->releases[i].name, e->d_name) == 0;
                if (!listed) {
                        log_error("refusing to collect garbage in %s: %s/%s is not a readable release description "
                                  "(move it out of the store if it is not a release)",
                                  s->path, s->path, e->d_name);
                        err = -EBADMSG;
                }
        }
        closedir(d);
        return err;
}

int store_gc(struct store *s, bool dry_run, struct gc_result *res)
{
        struct store_usage u;
        struct dirent *e;
        DIR *d;
        int err, fd;

        memset(res, 0, sizeof(*res));
        err = store_usage_load(s, &u);
        if (err < 0) {
                log_error("refusing to collect garbage in %s: its releases cannot all be read", s->path);
                return err;
        }
        err = check_unread_releases(s, &u);
        if (err < 0) {
                store_usage_free(&u);
                return err;
        }
        fd = openat(s->chunks_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                if (fd >= 0)
                        close(fd);
                store_usage_free(&u);
                return log_errno(-errno, "cannot read %s/%s", s->path, STORE_CHUNKS_DIR);
        }
        while (err == 0 && (e = readdir(d)))
                if (e->d_name[0] != '.')
                        err = collect_dir(s, &u, e->d_name, dry_run, res);
        closedir(d);
        if (err == 0)
                err = collect_top(s, dry_run, res);
        store_usage_free(&u);
        return err;
}
