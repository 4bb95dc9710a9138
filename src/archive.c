// SPDX-License-Identifier: MIT
#include "archive.h"

#include "chunk_dictionary.pb-c.h"
#include "cleanup.h"
#include "log.h"
#include "pb_budget.h"
#include "pb_fields.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const uint8_t archive_magic[ARCHIVE_MAGIC_LEN] = { 'B', 'I', 'T', 'A', '1', 0 };
static const uint8_t legacy_magic[ARCHIVE_MAGIC_LEN] = { 0, 'B', 'I', 'T', 'A', '1' };

bool archive_magic_ok(const uint8_t *buf, size_t len)
{
        return len >= ARCHIVE_MAGIC_LEN && (memcmp(buf, archive_magic, ARCHIVE_MAGIC_LEN) == 0 ||
                                            memcmp(buf, legacy_magic, ARCHIVE_MAGIC_LEN) == 0);
}

static uint64_t read_le64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

int archive_header_length(const uint8_t *pre, size_t len, const char *where, uint64_t *header_len)
{
        uint64_t dict_size;

        if (len < ARCHIVE_PRE_HEADER_SIZE || !archive_magic_ok(pre, len)) {
                log_error("%s: not a bita archive (no BITA1 magic)", where);
                return -EBADMSG;
        }
        dict_size = read_le64(pre + ARCHIVE_MAGIC_LEN);
        if (dict_size > ARCHIVE_MAX_DICTIONARY_SIZE) {
                log_error("%s: dictionary size %llu is larger than the %u bytes ihop accepts", where,
                          (unsigned long long)dict_size, ARCHIVE_MAX_DICTIONARY_SIZE);
                return -EBADMSG;
        }
        *header_len = ARCHIVE_PRE_HEADER_SIZE + dict_size + ARCHIVE_TRAILER_SIZE;
        return 0;
}

static int copy_metadata(const ChunkDictionary__ChunkDictionary *d, struct archive *a)
{
        if (d->n_metadata == 0)
                return 0;
        a->metadata = calloc(d->n_metadata, sizeof(*a->metadata));
        if (!a->metadata)
                return -ENOMEM;
        for (size_t i = 0; i < d->n_metadata; i++) {
                const ChunkDictionary__ChunkDictionary__MetadataEntry *e = d->metadata[i];
                struct archive_metadata *m = &a->metadata[a->n_metadata++];
                m->key = strdup(e->key ? e->key : "");
                m->value = malloc(e->value.len ? e->value.len : 1);
                if (!m->key || !m->value)
                        return -ENOMEM;
                if (e->value.len) /* data is NULL when empty: no memcpy(…, NULL, 0) */
                        memcpy(m->value, e->value.data, e->value.len);
                m->value_len = e->value.len;
        }
        return 0;
}

/* Turns the decoded dictionary into a release plus archive facts, checking
 * every length and offset on the way. */
static int archive_from_dictionary(const ChunkDictionary__ChunkDictionary *d, uint64_t chunk_data_offset,
                                   struct archive *a, const char *where)
{
        struct release *r;
        int err;

        r = a->release = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        err = chunker_params_from_pb(d->chunker_params, where, "the dictionary", &r->chunker);
        if (err < 0)
                return err;
        err = codec_from_pb(d->chunk_compression, where, &a->codec, &a->compression_level);
        if (err < 0)
                return err;
        r->app_version = strdup(d->application_version ? d->application_version : "");
        if (!r->app_version)
                return -ENOMEM;
        if (d->source_checksum.len > HASH_MAX_LEN) {
                log_error("%s: image checksum is %zu bytes long, more than BLAKE2b-512's 64", where,
                          d->source_checksum.len);
                return -EBADMSG;
        }
        if (d->source_checksum.len)
                memcpy(r->source_checksum, d->source_checksum.data, d->source_checksum.len);
        r->source_checksum_len = d->source_checksum.len;
        r->source_total_size = d->source_total_size;
        r->hash_len = r->chunker.hash_length;
        if (r->hash_len < HASH_MIN_LEN || r->hash_len > HASH_MAX_LEN) {
                log_error("%s: chunk hash length %zu is outside %d..%d", where, r->hash_len, HASH_MIN_LEN,
                          HASH_MAX_LEN);
                return -EBADMSG;
        }

        r->chunks = calloc(d->n_chunk_descriptors ? d->n_chunk_descriptors : 1, sizeof(*r->chunks));
        r->order = calloc(d->n_rebuild_order ? d->n_rebuild_order : 1, sizeof(*r->order));
        if (!r->chunks || !r->order)
                return -ENOMEM;
        r->n_chunks = d->n_chunk_descriptors;
        r->n_order = d->n_rebuild_order;
        if (d->n_rebuild_order)
                memcpy(r->order, d->rebuild_order, d->n_rebuild_order * sizeof(*r->order));

        a->chunk_data_end = chunk_data_offset;
        for (size_t i = 0; i < r->n_chunks; i++) {
                const ChunkDictionary__ChunkDescriptor *cd = d->chunk_descriptors[i];
                struct chunk *c = &r->chunks[i];
                uint64_t end;

                if (cd->checksum.len != r->hash_len) {
                        log_error("%s: chunk %zu has a %zu-byte hash, the archive says %zu", where, i,
                                  cd->checksum.len, r->hash_len);
                        return -EBADMSG;
                }
                if (cd->archive_size == 0 || cd->archive_offset > UINT64_MAX - chunk_data_offset ||
                    __builtin_add_overflow(chunk_data_offset + cd->archive_offset, cd->archive_size, &end)) {
                        log_error("%s: chunk %zu has an impossible place in the archive", where, i);
                        return -EBADMSG;
                }
                memcpy(c->hash, cd->checksum.data, r->hash_len);
                c->source_size = cd->source_size;
                c->archive_size = cd->archive_size;
                c->archive_offset = chunk_data_offset + cd->archive_offset;
                a->compressed_size += cd->archive_size;
                if (end > a->chunk_data_end)
                        a->chunk_data_end = end;
        }
        return release_validate(r, where);
}

/* owned, when not NULL, is buf's allocation, freed once decoded. */
static int parse(const uint8_t *buf, size_t len, const char *where, uint8_t **owned, struct archive **out)
{
        _cleanup_archive_ struct archive *a = NULL;
        ChunkDictionary__ChunkDictionary *d;
        struct pb_budget budget;
        uint8_t checksum[HASH_MAX_LEN];
        uint64_t header_len, dict_size;
        int err;

        err = archive_header_length(buf, len, where, &header_len);
        if (err < 0)
                return err;
        if (len < header_len) {
                log_error("%s: the archive header is cut short", where);
                return -EBADMSG;
        }
        dict_size = header_len - ARCHIVE_PRE_HEADER_SIZE - ARCHIVE_TRAILER_SIZE;
        hash_buffer(buf, (size_t)header_len - 64, checksum); /* header_len <= len: a size_t */
        if (memcmp(checksum, buf + header_len - 64, 64) != 0) {
                log_error("%s: the archive header checksum does not match: corrupt archive", where);
                return -EBADMSG;
        }

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->header_size = header_len;
        a->chunk_data_offset = read_le64(buf + ARCHIVE_PRE_HEADER_SIZE + dict_size);
        memcpy(a->header_checksum, checksum, sizeof(checksum));
        if (a->chunk_data_offset < header_len) {
                log_error("%s: chunk data offset %llu lies inside the header", where,
                          (unsigned long long)a->chunk_data_offset);
                return -EBADMSG;
        }

        /* Legitimate dictionaries grow about 2x when unpacked; hostile ones
         * (empty messages) far more, and are cut off here. */
        /* dict_size <= ARCHIVE_MAX_DICTIONARY_SIZE: a size_t, even on 32 bits */
        pb_budget_init(&budget, 4 * (size_t)dict_size + (1u << 20));
        d = chunk_dictionary__chunk_dictionary__unpack(&budget.allocator, (size_t)dict_size,
                                                       buf + ARCHIVE_PRE_HEADER_SIZE);
        if (owned) {
                /* Decoding copied what it needs (bytes fields included). */
                free(*owned);
                *owned = NULL;
                buf = NULL;
        }
        if (!d) {
                log_error("%s: the archive dictionary cannot be decoded (corrupt or too large)", where);
                return -EBADMSG;
        }
        err = archive_from_dictionary(d, a->chunk_data_offset, a, where);
        if (err == 0)
                err = copy_metadata(d, a);
        chunk_dictionary__chunk_dictionary__free_unpacked(d, &budget.allocator);
        if (err == -ENOMEM)
                log_error("%s: out of memory reading the archive dictionary", where);
        if (err < 0)
                return err;
        *out = TAKE_PTR(a);
        return 0;
}

int archive_parse(const uint8_t *buf, size_t len, const char *where, struct archive **out)
{
        return parse(buf, len, where, NULL, out);
}

int archive_parse_take(uint8_t **buf, size_t len, const char *where, struct archive **out)
{
        int err = parse(*buf, len, where, buf, out);

        free(*buf); /* when parse failed before decoding */
        *buf = NULL;
        return err;
}

int archive_check_size(const struct archive *a, uint64_t archive_size, const char *where)
{
        if (a->chunk_data_end > archive_size) {
                log_error("%s: the archive is cut short: its chunks need %llu bytes, it has %llu", where,
                          (unsigned long long)a->chunk_data_end, (unsigned long long)archive_size);
                return -EBADMSG;
        }
        return 0;
}

void archive_free(struct archive *a)
{
        if (!a)
                return;
        release_free(a->release);
        for (size_t i = 0; i < a->n_metadata; i++) {
                free(a->metadata[i].key);
                free(a->metadata[i].value);
        }
        free(a->metadata);
        free(a);
}
