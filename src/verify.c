// SPDX-License-Identifier: MIT
#include "verify.h"

#include "chunk_reader.h"
#include "cleanup.h"
#include "log.h"
#include "progress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { UNCHECKED = 0, GOOD, MISSING, CORRUPT };

/* Reads one chunk, feeding the image hash (when not NULL) and checking the
 * chunk's own hash the first time. */
static int check_chunk(struct store *s, const struct release *r, uint32_t idx, uint8_t *buf, hash_state *image,
                       unsigned char *state)
{
        const struct chunk *c = &r->chunks[idx];
        struct chunk_reader rd;
        ssize_t n;
        _cleanup_close_ int fd = store_chunk_open_sized(s, c, r->hash_len);

        if (fd == -ENOENT || fd == -EBADMSG) {
                *state = fd == -ENOENT ? MISSING : CORRUPT;
                return 0;
        }
        if (fd < 0)
                return fd;
        chunk_reader_init(&rd, fd, c, r->hash_len, buf, *state == UNCHECKED);
        while ((n = chunk_reader_next(&rd)) > 0)
                if (image)
                        hash_update(image, buf, (size_t)n);
        if (n < 0)
                return (int)n;
        if (!chunk_reader_complete(&rd))
                *state = CORRUPT;
        else if (*state == UNCHECKED)
                *state = chunk_reader_matches(&rd) ? GOOD : CORRUPT;
        return 0;
}

int release_verify(struct store *s, const struct release *r, verify_damaged_fn damaged, void *opaque,
                   struct verify_result *res)
{
        _cleanup_free_ unsigned char *state = calloc(r->n_chunks ? r->n_chunks : 1, 1);
        _cleanup_free_ uint8_t *buf = malloc(CHUNK_READ_BLOCK);
        uint8_t digest[HASH_MAX_LEN];
        hash_state image;
        bool image_possible = true;

        memset(res, 0, sizeof(*res));
        if (!state || !buf)
                return -ENOMEM;
        struct progress pr = { .phase = "verify", .what = store_path(s), .bytes_total = r->source_total_size,
                               .chunks_total = r->n_order };
        hash_init(&image);
        for (size_t pos = 0; pos < r->n_order; pos++) {
                uint32_t idx = r->order[pos];
                pr.chunks_done = pos;
                progress_report(&pr);
                pr.bytes_done += r->chunks[idx].source_size;
                if (state[idx] == MISSING || state[idx] == CORRUPT) {
                        image_possible = false;
                        continue;
                }
                int err = check_chunk(s, r, idx, buf, image_possible ? &image : NULL, &state[idx]);
                if (err < 0)
                        return store_log_chunk_error(s, r->chunks[idx].hash, r->hash_len, err, "read");
                if (state[idx] != GOOD)
                        image_possible = false;
        }
        pr.chunks_done = r->n_order;
        pr.final = true;
        progress_report(&pr);
        for (size_t i = 0; i < r->n_chunks; i++) {
                char shown[STORE_CHUNK_SHOWN_MAX];
                if (state[i] == UNCHECKED)
                        continue; /* listed but not part of the image */
                res->chunks_checked++;
                if (state[i] == GOOD)
                        continue;
                store_chunk_path(s, r->chunks[i].hash, r->hash_len, shown);
                if (damaged)
                        damaged(state[i] == MISSING, shown, opaque);
                else
                        printf("%s %s\n", state[i] == MISSING ? "missing" : "corrupt", shown);
                if (state[i] == MISSING)
                        res->missing++;
                else
                        res->corrupt++;
        }
        if (image_possible) {
                hash_final(&image, digest);
                res->image_ok = memcmp(digest, r->source_checksum, r->source_checksum_len) == 0;
        }
        return 0;
}
