// SPDX-License-Identifier: MIT
#include "archive_writer.h"

#include "chunk_dictionary.pb-c.h"
#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "pb_fields.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static void put_le64(uint8_t *p, uint64_t v)
{
        v = htole64(v);
        memcpy(p, &v, sizeof(v));
}

int archive_header_build(const struct release *r, enum codec codec, uint32_t level,
                         const struct archive_metadata *metadata, size_t n_metadata, uint8_t **out,
                         size_t *out_len)
{
        ChunkDictionary__ChunkDictionary d = CHUNK_DICTIONARY__CHUNK_DICTIONARY__INIT;
        ChunkDictionary__ChunkerParameters params;
        ChunkDictionary__ChunkCompression compression;
        _cleanup_free_ ChunkDictionary__ChunkDescriptor *descs = NULL;
        _cleanup_free_ ChunkDictionary__ChunkDescriptor **desc_ptrs = NULL;
        _cleanup_free_ ChunkDictionary__ChunkDictionary__MetadataEntry *entries = NULL;
        _cleanup_free_ ChunkDictionary__ChunkDictionary__MetadataEntry **entry_ptrs = NULL;
        size_t dict_len, header_len;
        uint8_t *buf;

        chunker_params_to_pb(&r->chunker, &params);
        codec_to_pb(codec, level, &compression);

        descs = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*descs));
        desc_ptrs = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*desc_ptrs));
        entries = calloc(n_metadata ? n_metadata : 1, sizeof(*entries));
        entry_ptrs = calloc(n_metadata ? n_metadata : 1, sizeof(*entry_ptrs));
        if (!descs || !desc_ptrs || !entries || !entry_ptrs)
                return log_errno(-ENOMEM, "building the archive header");
        for (size_t i = 0; i < r->n_chunks; i++) {
                const struct chunk *c = &r->chunks[i];
                descs[i] = (ChunkDictionary__ChunkDescriptor)CHUNK_DICTIONARY__CHUNK_DESCRIPTOR__INIT;
                descs[i].checksum.data = (uint8_t *)c->hash;
                descs[i].checksum.len = r->hash_len;
                descs[i].archive_size = c->archive_size;
                descs[i].archive_offset = c->archive_offset;
                descs[i].source_size = c->source_size;
                desc_ptrs[i] = &descs[i];
        }
        for (size_t i = 0; i < n_metadata; i++) {
                entries[i] = (ChunkDictionary__ChunkDictionary__MetadataEntry)
                        CHUNK_DICTIONARY__CHUNK_DICTIONARY__METADATA_ENTRY__INIT;
                entries[i].key = metadata[i].key;
                entries[i].value.data = metadata[i].value;
                entries[i].value.len = metadata[i].value_len;
                entry_ptrs[i] = &entries[i];
        }

        d.application_version = r->app_version;
        d.source_checksum.data = (uint8_t *)r->source_checksum;
        d.source_checksum.len = r->source_checksum_len;
        d.source_total_size = r->source_total_size;
        d.chunker_params = &params;
        d.chunk_compression = &compression;
        d.n_rebuild_order = r->n_order;
        d.rebuild_order = r->order;
        d.n_chunk_descriptors = r->n_chunks;
        d.chunk_descriptors = desc_ptrs;
        d.n_metadata = n_metadata;
        d.metadata = entry_ptrs;

        dict_len = chunk_dictionary__chunk_dictionary__get_packed_size(&d);
        /* An archive ihop itself (and its parser's limit) could not read is refused. */
        if (dict_len > ARCHIVE_MAX_DICTIONARY_SIZE) {
                log_error("the archive dictionary would be %zu bytes, more than the %u readers accept: "
                          "use larger chunks, a shorter --hash-length or less metadata",
                          dict_len, ARCHIVE_MAX_DICTIONARY_SIZE);
                return -EFBIG;
        }
        header_len = ARCHIVE_PRE_HEADER_SIZE + dict_len + ARCHIVE_TRAILER_SIZE;
        buf = malloc(header_len);
        if (!buf)
                return log_errno(-ENOMEM, "building the archive header");
        memcpy(buf, archive_magic, ARCHIVE_MAGIC_LEN);
        put_le64(buf + ARCHIVE_MAGIC_LEN, dict_len);
        chunk_dictionary__chunk_dictionary__pack(&d, buf + ARCHIVE_PRE_HEADER_SIZE);
        /* The chunk data follows the header directly. */
        put_le64(buf + ARCHIVE_PRE_HEADER_SIZE + dict_len, header_len);
        hash_buffer(buf, header_len - HASH_MAX_LEN, buf + header_len - HASH_MAX_LEN);
        *out = buf;
        *out_len = header_len;
        return 0;
}

int archive_scratch_open(const char *path)
{
        char dir[PATH_MAX], tmp[PATH_MAX];
        int fd;

        if (strlen(path) >= sizeof(dir))
                return log_errno(-ENAMETOOLONG, "%s", path);
        strcpy(dir, path);
        fd = open(dirname(dir), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                return fd;
        /* File systems without O_TMPFILE: a named file, unlinked at once. */
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                return log_errno(-errno, "cannot create a scratch file in %s", dir);
        if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
                return log_errno(-ENAMETOOLONG, "%s", path);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return log_errno(-errno, "cannot create %s", tmp);
        unlink(tmp);
        return fd;
}

static int copy_range(int from, int to, uint64_t len, const char *to_name)
{
        loff_t in_off = 0;
        bool fallback = false;
        _cleanup_free_ uint8_t *buf = NULL;

        while (len > 0) {
                size_t want = len > (1u << 30) ? 1u << 30 : (size_t)len;
                ssize_t n;

                if (!fallback) {
                        n = copy_file_range(from, &in_off, to, NULL, want, 0);
                        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                                fallback = true;
                                continue;
                        }
                } else {
                        if (!buf && !(buf = malloc(1u << 20)))
                                return log_errno(-ENOMEM, "writing %s", to_name);
                        n = pread(from, buf, want < (1u << 20) ? want : (1u << 20), in_off);
                        if (n > 0) {
                                int err = write_full(to, buf, (size_t)n);
                                if (err < 0)
                                        return log_errno(err, "cannot write %s", to_name);
                                in_off += n;
                        }
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_errno(-errno, "cannot write %s", to_name);
                }
                if (n == 0)
                        return log_errno(-EIO, "cannot write %s: the chunk data scratch file is short", to_name);
                len -= (uint64_t)n;
        }
        return 0;
}

/* Puts tmp in place of path; without replace, only if path does not exist. */
static int rename_into_place(const char *tmp, const char *path, bool replace)
{
        if (replace)
                return rename(tmp, path) < 0 ? -errno : 0;
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS)
                return -errno;
        /* No RENAME_NOREPLACE here: link() refuses an existing name too. */
        if (link(tmp, path) < 0)
                return -errno;
        unlink(tmp);
        return 0;
}

int archive_file_write(const char *path, bool replace, const uint8_t *header, size_t header_len, int data_fd,
                       uint64_t data_len)
{
        char tmp[PATH_MAX];
        mode_t mask;
        int err;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
                return log_errno(-ENAMETOOLONG, "%s", path);
        _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return log_errno(-errno, "cannot create %s", tmp);
        mask = umask(0);
        umask(mask);
        err = write_full(fd, header, header_len);
        if (err < 0)
                log_errno(err, "cannot write %s", tmp);
        if (err == 0)
                err = copy_range(data_fd, fd, data_len, tmp);
        if (err == 0 && (fchmod(fd, 0666 & ~mask) < 0 || fsync(fd) < 0))
                err = log_errno(-errno, "cannot write %s", tmp);
        if (err == 0) {
                err = rename_into_place(tmp, path, replace);
                if (err == -EEXIST)
                        log_error("%s exists (use -f to replace it)", path);
                else if (err < 0)
                        log_errno(err, "cannot rename %s to %s", tmp, path);
        }
        if (err < 0) {
                unlink(tmp);
                return err;
        }
        err = fsync_dir_of(path);
        if (err < 0)
                return log_errno(err, "cannot sync the directory of %s", path);
        return 0;
}
