// SPDX-License-Identifier: MIT
#include "image_export.h"

#include "chunk_reader.h"
#include "cleanup.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void log_chunk(struct store *s, const struct chunk *c, size_t hash_len, size_t pos, const char *what)
{
        char shown[STORE_CHUNK_SHOWN_MAX];

        log_error("%s (image chunk %zu) %s", store_chunk_path(s, c->hash, hash_len, shown), pos, what);
}

int image_export(struct store *s, const struct release *r, int out_fd, const char *out_name)
{
        _cleanup_free_ uint8_t *buf = malloc(CHUNK_READ_BLOCK);
        uint8_t digest[HASH_MAX_LEN];
        hash_state image_hash;
        int err;

        if (!buf)
                return -ENOMEM;
        hash_init(&image_hash);
        for (size_t pos = 0; pos < r->n_order; pos++) {
                const struct chunk *c = &r->chunks[r->order[pos]];
                _cleanup_close_ int fd = store_chunk_open_sized(s, c, r->hash_len);
                struct chunk_reader rd;
                ssize_t n;

                if (fd == -ENOENT) {
                        log_chunk(s, c, r->hash_len, pos, "is missing");
                        return -ENOENT;
                }
                if (fd == -EBADMSG) {
                        log_chunk(s, c, r->hash_len, pos, "is not a regular file of the chunk's size");
                        return -EBADMSG;
                }
                if (fd < 0)
                        return store_log_chunk_error(s, c->hash, r->hash_len, fd, "open");
                chunk_reader_init(&rd, fd, c, r->hash_len, buf, false);
                while ((n = chunk_reader_next(&rd)) > 0) {
                        hash_update(&image_hash, buf, (size_t)n);
                        if (out_fd >= 0 && (err = write_full(out_fd, buf, (size_t)n)) < 0)
                                return log_errno(err, "cannot write %s", out_name);
                }
                if (n < 0)
                        return store_log_chunk_error(s, c->hash, r->hash_len, (int)n, "read");
                if (!chunk_reader_complete(&rd)) {
                        log_chunk(s, c, r->hash_len, pos, "is shorter than its size");
                        return -EBADMSG;
                }
        }
        hash_final(&image_hash, digest);
        if (memcmp(digest, r->source_checksum, r->source_checksum_len) != 0) {
                log_error("the image does not match its checksum: a chunk in %s is corrupt", store_path(s));
                return -EBADMSG;
        }
        return 0;
}
