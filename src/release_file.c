#include "release_file.h"

#include "chunk_dictionary.pb-c.h"
#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "pb_budget.h"
#include "pb_fields.h"
#include "store_dictionary.pb-c.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const uint8_t magic[6] = { 'I', 'H', 'O', 'P', '1', 0 };
#define PRE_SIZE 14u

int release_file_write(struct store *s, const char *name, const struct release *r)
{
        StoreDictionary__StoreDictionary d = STORE_DICTIONARY__STORE_DICTIONARY__INIT;
        ChunkDictionary__ChunkerParameters cp;
        _cleanup_free_ StoreDictionary__ChunkDescriptor *descs = NULL;
        _cleanup_free_ StoreDictionary__ChunkDescriptor **ptrs = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        char path[PATH_MAX], tmp_prefix[NAME_MAX];
        size_t n, total;
        uint64_t le;
        int err;

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
        memcpy(buf, magic, sizeof(magic));
        le = htole64(n);
        memcpy(buf + 6, &le, sizeof(le));
        store_dictionary__store_dictionary__pack(&d, buf + PRE_SIZE);
        hash_buffer(buf, PRE_SIZE + n, buf + PRE_SIZE + n);

        /* The temp file is hidden (".NAME.tmp-XXXXXX"): no release name is
         * hidden, so gc can tell a leftover from a release. */
        snprintf(path, sizeof(path), "%s/%s", s->path, name);
        if (snprintf(tmp_prefix, sizeof(tmp_prefix), ".%s%s", name, STORE_TMP_MARK) >= (int)sizeof(tmp_prefix))
                return log_errno(-ENAMETOOLONG, "cannot write release description %s", path);
        err = write_file_atomic_at(s->dirfd, name, tmp_prefix, buf, total);
        if (err < 0)
                return log_errno(err, "cannot write release description %s", path);
        return 0;
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

        if (len < PRE_SIZE + HASH_MAX_LEN || memcmp(buf, magic, sizeof(magic)) != 0)
                return false;
        memcpy(&n, buf + 6, sizeof(n));
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

        if (len < PRE_SIZE + HASH_MAX_LEN || memcmp(buf, magic, sizeof(magic)) != 0) {
                log_error("%s: not an ihop release description (no IHOP1 magic)", where);
                return -EBADMSG;
        }
        memcpy(&n, buf + 6, sizeof(n));
        n = le64toh(n);
        if (n != len - PRE_SIZE - HASH_MAX_LEN) {
                log_error("%s: the release description is truncated or has trailing bytes", where);
                return -EBADMSG;
        }
        hash_buffer(buf, PRE_SIZE + n, digest);
        if (memcmp(digest, buf + PRE_SIZE + n, HASH_MAX_LEN) != 0) {
                log_error("%s: the release description checksum does not match: corrupt", where);
                return -EBADMSG;
        }
        pb_budget_init(&budget, 4 * n + (1u << 20));
        d = store_dictionary__store_dictionary__unpack(&budget.allocator, n, buf + PRE_SIZE);
        if (!d) {
                log_error("%s: the release description cannot be decoded", where);
                return -EBADMSG;
        }
        err = release_from_dictionary(d, where, out);
        store_dictionary__store_dictionary__free_unpacked(d, &budget.allocator);
        return err;
}

int release_file_read(struct store *s, const char *name, struct release **out)
{
        _cleanup_free_ uint8_t *buf = NULL;
        char path[PATH_MAX];
        size_t len;
        int err;

        snprintf(path, sizeof(path), "%s/%s", s->path, name);
        err = read_file_bounded_at(s->dirfd, name, RELEASE_FILE_MAX_SIZE, &buf, &len);
        if (err == -ENOENT) {
                log_error("release %s does not exist", path);
                return err;
        }
        if (err == -ELOOP) {
                /* gc, which reads no symlink either, would not keep its chunks. */
                log_error("%s is a symlink, not a release description: refusing", path);
                return err;
        }
        if (err == -EFBIG || err == -EINVAL) {
                log_error("%s is not a release description", path);
                return -EBADMSG;
        }
        if (err < 0)
                return log_errno(err, "cannot read release %s", path);
        return release_file_parse(buf, len, path, out);
}

int release_file_open(const char *arg, struct store **store, char **name, struct release **out)
{
        _cleanup_free_ char *store_path = NULL, *n = NULL;
        struct store *s = NULL;
        int err;

        err = store_split_release_path(arg, &store_path, &n);
        if (err == 0)
                err = store_open(store_path, false, &s);
        if (err == 0)
                err = release_file_read(s, n, out);
        if (err < 0) {
                store_close(s);
                return err;
        }
        *store = s;
        if (name)
                *name = TAKE_PTR(n);
        return 0;
}
