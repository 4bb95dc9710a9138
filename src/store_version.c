// SPDX-License-Identifier: MIT
#include "store_version.h"

#include "cleanup.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "units.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#define VERSION_PREFIX "ihop-release-version="
#define CHECKSUM_PREFIX "checksum="
#define VERSION_FILE_MAX 512

/* The file's text for version (buf holds VERSION_FILE_MAX bytes); its length. */
static size_t format_version(uint64_t version, char *buf)
{
        uint8_t sum[HASH_MAX_LEN];
        int n = snprintf(buf, VERSION_FILE_MAX, VERSION_PREFIX "%" PRIu64 "\n", version);

        hash_buffer(buf, (size_t)n, sum);
        memcpy(buf + n, CHECKSUM_PREFIX, strlen(CHECKSUM_PREFIX));
        n += (int)strlen(CHECKSUM_PREFIX);
        hash_to_hex(sum, sizeof(sum), buf + n);
        n += 2 * HASH_MAX_LEN;
        buf[n++] = '\n';
        buf[n] = '\0';
        return (size_t)n;
}

/* Exactly what format_version writes for some version, or -EBADMSG. */
static int parse_version(const uint8_t *text, size_t len, uint64_t *version)
{
        char copy[VERSION_FILE_MAX + 1], expected[VERSION_FILE_MAX];
        const size_t prefix = strlen(VERSION_PREFIX);
        const char *end;
        uint64_t v;

        if (len < prefix || len > VERSION_FILE_MAX || memcmp(text, VERSION_PREFIX, prefix) != 0)
                return -EBADMSG;
        memcpy(copy, text, len);
        copy[len] = '\0';
        if (parse_uint_prefix(copy + prefix, &v, &end) < 0)
                return -EBADMSG;
        /* Writing it again must give the same bytes: the number, its
         * newline and its checksum all as written. */
        if (format_version(v, expected) != len || memcmp(expected, text, len) != 0)
                return -EBADMSG;
        *version = v;
        return 0;
}

int store_version_read(struct store *s, uint64_t *version, bool *known)
{
        _cleanup_close_ int dirfd = store_dir_open(s, STORE_DIR_TOP, false);
        _cleanup_free_ uint8_t *text = NULL;
        mode_t type;
        size_t len;
        int err;

        *version = 0;
        *known = false;
        if (dirfd < 0)
                return log_errno(dirfd, "cannot open store %s", store_path(s));
        err = read_file_bounded_at(dirfd, STORE_VERSION_FILE, VERSION_FILE_MAX, &text, &len, &type);
        if (err == -ENOENT)
                return 0;
        if (err == 0)
                err = parse_version(text, len, version);
        if (err == -EINVAL) {
                log_error("%s/%s is %s, not a regular file: refusing signed releases until it is removed",
                          store_path(s), STORE_VERSION_FILE, file_type_name(type));
                return -EBADMSG;
        }
        if (err == -EBADMSG || err == -EFBIG || err == -ELOOP) {
                log_error("%s/%s is damaged (not a version and its checksum): refusing signed releases until it is "
                          "restored or removed",
                          store_path(s), STORE_VERSION_FILE);
                return -EBADMSG;
        }
        if (err < 0)
                return log_errno(err, "cannot read %s/%s", store_path(s), STORE_VERSION_FILE);
        *known = true;
        return 0;
}

int store_version_refuse(struct store *s, uint64_t version, uint64_t remembered, const char *what)
{
        log_error("refusing %s: release version %" PRIu64 " is older than version %" PRIu64
                  ", already accepted into %s (--allow-downgrade takes it anyway)",
                  what, version, remembered, store_path(s));
        return -ESTALE;
}

/* Clones run side by side under the shared store lock; this one is for
 * the version file alone. */
static int lock_version(struct store *s)
{
        int fd = store_dir_open(s, STORE_DIR_CHUNKS, false);

        if (fd < 0)
                return log_errno(fd, "cannot open %s/chunks", store_path(s));
        while (flock(fd, LOCK_EX) < 0) {
                if (errno != EINTR) {
                        int err = -errno;
                        close(fd);
                        return log_errno(err, "cannot lock %s/%s", store_path(s), STORE_VERSION_FILE);
                }
        }
        return fd;
}

int store_version_accept(struct store *s, uint64_t version, bool allow_lower, const char *what)
{
        _cleanup_close_ int lock = lock_version(s);
        _cleanup_close_ int dirfd = -1;
        char text[VERSION_FILE_MAX];
        uint64_t remembered;
        bool known;
        size_t len;
        int err;

        if (lock < 0)
                return lock;
        err = store_version_read(s, &remembered, &known);
        if (err < 0)
                return err;
        if (known && version < remembered && !allow_lower)
                return store_version_refuse(s, version, remembered, what);
        if (known && version <= remembered)
                return 0;
        dirfd = store_dir_open(s, STORE_DIR_TOP, false);
        if (dirfd < 0)
                return log_errno(dirfd, "cannot open store %s", store_path(s));
        len = format_version(version, text);
        err = write_file_atomic_at(dirfd, STORE_VERSION_FILE, STORE_VERSION_FILE STORE_TMP_MARK, text, len);
        if (err < 0)
                return log_errno(err, "cannot write %s/%s", store_path(s), STORE_VERSION_FILE);
        return 0;
}
