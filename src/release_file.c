// SPDX-License-Identifier: MIT
#include "release_file.h"

#include "chunk_dictionary.pb-c.h"
#include "cleanup.h"
#include "log.h"
#include "pb_budget.h"
#include "pb_fields.h"
#include "store_dictionary.pb-c.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define PRE_SIZE (STORE_RELEASE_MAGIC_LEN + 8u)

int release_file_encode(const struct release *r, uint8_t **out, size_t *out_len)
{
        StoreDictionary__StoreDictionary d = STORE_DICTIONARY__STORE_DICTIONARY__INIT;
        ChunkDictionary__ChunkerParameters cp;
        _cleanup_free_ StoreDictionary__ChunkDescriptor *descs = NULL;
        _cleanup_free_ StoreDictionary__ChunkDescriptor **ptrs = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n, total;
        uint64_t le;

        descs = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*descs));
        ptrs = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*ptrs));
        if (!descs || !ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_chunks; i++) {
                store_dictionary__chunk_descriptor__init(&descs[i]);
                descs[i].checksum.data = (uint8_t *)r->chunks[i].hash;
                descs[i].checksum.len = r->hash_len;
                descs[i].source_size = r->chunks[i].source_size;
                ptrs[i] = &descs[i];
        }
        chunker_params_to_pb(&r->chunker, &cp);

        d.application_version = (char *)"ihop " IHOP_VERSION;
        d.source_checksum.data = (uint8_t *)r->source_checksum;
        d.source_checksum.len = r->source_checksum_len;
        d.source_total_size = r->source_total_size;
        d.n_source_order = r->n_order;
        d.source_order = r->order;
        d.n_chunk_descriptors = r->n_chunks;
        d.chunk_descriptors = ptrs;
        d.chunker_params = &cp;

        n = store_dictionary__store_dictionary__get_packed_size(&d);
        total = PRE_SIZE + n + HASH_MAX_LEN;
        buf = malloc(total);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, store_release_magic, STORE_RELEASE_MAGIC_LEN);
        le = htole64(n);
        memcpy(buf + STORE_RELEASE_MAGIC_LEN, &le, sizeof(le));
        store_dictionary__store_dictionary__pack(&d, buf + PRE_SIZE);
        hash_buffer(buf, PRE_SIZE + n, buf + PRE_SIZE + n);
        *out = buf;
        *out_len = total;
        buf = NULL;
        return 0;
}

int release_file_write(struct store *s, const char *name, const struct release *r)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int err = release_file_encode(r, &buf, &len);

        return err < 0 ? err : store_release_write(s, name, buf, len);
}

static int release_from_dictionary(const StoreDictionary__StoreDictionary *d, const char *where,
                                   struct release **out)
{
        struct release *r = calloc(1, sizeof(*r));
        int err = -EBADMSG;

        if (!r)
                return -ENOMEM;
        if (chunker_params_from_pb(d->chunker_params, where, "the release description", &r->chunker) < 0)
                goto out;
        r->hash_len = r->chunker.hash_length;
        if (r->hash_len < HASH_MIN_LEN || r->hash_len > HASH_MAX_LEN || d->source_checksum.len > HASH_MAX_LEN) {
                log_error("%s: impossible hash length in the release description", where);
                goto out;
        }
        if (d->source_checksum.len) /* data is NULL when empty: no memcpy(…, NULL, 0) */
                memcpy(r->source_checksum, d->source_checksum.data, d->source_checksum.len);
        r->source_checksum_len = d->source_checksum.len;
        r->source_total_size = d->source_total_size;
        r->app_version = strdup(d->application_version ? d->application_version : "");
        r->chunks = calloc(d->n_chunk_descriptors ? d->n_chunk_descriptors : 1, sizeof(*r->chunks));
        r->order = calloc(d->n_source_order ? d->n_source_order : 1, sizeof(*r->order));
        if (!r->app_version || !r->chunks || !r->order) {
                err = -ENOMEM;
                goto out;
        }
        r->n_chunks = d->n_chunk_descriptors;
        r->n_order = d->n_source_order;
        if (r->n_order)
                memcpy(r->order, d->source_order, r->n_order * sizeof(*r->order));
        for (size_t i = 0; i < r->n_chunks; i++) {
                if (d->chunk_descriptors[i]->checksum.len != r->hash_len) {
                        log_error("%s: chunk %zu has a %zu-byte hash, the release says %zu", where, i,
                                  d->chunk_descriptors[i]->checksum.len, r->hash_len);
                        goto out;
                }
                memcpy(r->chunks[i].hash, d->chunk_descriptors[i]->checksum.data, r->hash_len);
                r->chunks[i].source_size = d->chunk_descriptors[i]->source_size;
        }
        err = release_validate(r, where);
out:
        if (err < 0) {
                release_free(r);
                return err;
        }
        *out = r;
        return 0;
}

bool release_file_is_complete(const uint8_t *buf, size_t len)
{
        uint8_t digest[HASH_MAX_LEN];
        uint64_t n;

        if (len < PRE_SIZE + HASH_MAX_LEN || !store_release_magic_ok(buf, len))
                return false;
        memcpy(&n, buf + STORE_RELEASE_MAGIC_LEN, sizeof(n));
        if (le64toh(n) != len - PRE_SIZE - HASH_MAX_LEN)
                return false;
        hash_buffer(buf, len - HASH_MAX_LEN, digest);
        return memcmp(digest, buf + len - HASH_MAX_LEN, HASH_MAX_LEN) == 0;
}

int release_file_parse(const uint8_t *buf, size_t len, const char *where, struct release **out)
{
        StoreDictionary__StoreDictionary *d;
        struct pb_budget budget;
        uint8_t digest[HASH_MAX_LEN];
        uint64_t n;
        int err;

        if (len < PRE_SIZE + HASH_MAX_LEN || !store_release_magic_ok(buf, len)) {
                log_error("%s: not an ihop release description (no IHOP1 magic)", where);
                return -EBADMSG;
        }
        memcpy(&n, buf + STORE_RELEASE_MAGIC_LEN, sizeof(n));
        n = le64toh(n);
        if (n != len - PRE_SIZE - HASH_MAX_LEN) {
                log_error("%s: the release description is truncated or has trailing bytes", where);
                return -EBADMSG;
        }
        size_t dict_len = (size_t)n; /* now known to fit: it is len less the frame */
        hash_buffer(buf, PRE_SIZE + dict_len, digest);
        if (memcmp(digest, buf + PRE_SIZE + dict_len, HASH_MAX_LEN) != 0) {
                log_error("%s: the release description checksum does not match: corrupt", where);
                return -EBADMSG;
        }
        pb_budget_init(&budget, 4 * dict_len + (1u << 20));
        d = store_dictionary__store_dictionary__unpack(&budget.allocator, dict_len, buf + PRE_SIZE);
        if (!d) {
                log_error("%s: the release description cannot be decoded", where);
                return -EBADMSG;
        }
        err = release_from_dictionary(d, where, out);
        store_dictionary__store_dictionary__free_unpacked(d, &budget.allocator);
        return err;
}

int release_file_read_raw(struct store *s, const char *name, struct release **out, uint8_t **raw, size_t *raw_len)
{
        _cleanup_free_ uint8_t *buf = NULL;
        char path[PATH_MAX];
        size_t len;
        int err;

        err = store_release_read(s, name, &buf, &len);
        if (err < 0)
                return err;
        snprintf(path, sizeof(path), "%s/%s", store_path(s), name);
        err = release_file_parse(buf, len, path, out);
        if (err == 0 && raw) {
                *raw = TAKE_PTR(buf);
                *raw_len = len;
        }
        return err;
}

int release_file_read(struct store *s, const char *name, struct release **out)
{
        return release_file_read_raw(s, name, out, NULL, NULL);
}

static int open_release(const char *arg, struct store **store, char **name, struct release **out,
                        struct store_use **use)
{
        _cleanup_free_ char *store_path = NULL, *n = NULL;
        _cleanup_free_ uint8_t *raw = NULL;
        struct store *s = NULL;
        size_t len;
        int err;

        err = store_split_release_path(arg, &store_path, &n);
        if (err == 0)
                err = store_open(store_path, false, &s);
        /* From before the description is read until it is registered: a gc
         * either ended before the read or finds the registration. */
        if (err == 0 && use)
                err = store_lock(s, STORE_LOCK_SHARED);
        if (err == 0)
                err = release_file_read_raw(s, n, out, use ? &raw : NULL, &len);
        if (err == 0 && use && (err = store_use_begin(s, n, raw, len, use)) < 0) {
                release_free(*out);
                *out = NULL;
        }
        if (err < 0) {
                store_close(s);
                return err;
        }
        if (use)
                store_unlock(s);
        *store = s;
        if (name)
                *name = TAKE_PTR(n);
        return 0;
}

int release_file_open(const char *arg, struct store **store, char **name, struct release **out)
{
        return open_release(arg, store, name, out, NULL);
}

int release_file_open_in_use(const char *arg, struct store **store, char **name, struct release **out,
                             struct store_use **use)
{
        return open_release(arg, store, name, out, use);
}
