/* archive.c: bita archive headers, real ones (tests/fixtures) and hostile
 * ones built here with protobuf-c. Every hostile header carries a correct
 * checksum, so it is the dictionary checks that must refuse it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "archive.h"
#include "chunk_dictionary.pb-c.h"
#include "hash.h"
#include "pb_budget.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------- */

static uint8_t *read_whole(const char *path, size_t *len)
{
        struct stat st;
        uint8_t *buf;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                fail_msg("cannot open %s: %s", path, strerror(errno));
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        assert_non_null(buf);
        n = pread(fd, buf, (size_t)st.st_size, 0);
        assert_int_equal(n, st.st_size);
        close(fd);
        *len = (size_t)st.st_size;
        return buf;
}

static void fixture_path(const char *name, char *out, size_t len)
{
        const char *dir = getenv("FIXTURES");

        if (!dir)
                fail_msg("FIXTURES is not set");
        snprintf(out, len, "%s/%s", dir, name);
}

static void put_le64(uint8_t *p, uint64_t v)
{
        v = htole64(v);
        memcpy(p, &v, sizeof(v));
}

static uint64_t get_le64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

#define CDO_AUTO UINT64_MAX

/* magic | u64 n | dict | u64 chunk data offset | BLAKE2b-512 of all before. */
static uint8_t *wrap_header(const uint8_t *magic, const uint8_t *dict, size_t n, uint64_t cdo, size_t *len)
{
        size_t total = ARCHIVE_PRE_HEADER_SIZE + n + ARCHIVE_TRAILER_SIZE;
        uint8_t *buf = malloc(total);

        assert_non_null(buf);
        memcpy(buf, magic, 6);
        put_le64(buf + 6, n);
        if (n)
                memcpy(buf + ARCHIVE_PRE_HEADER_SIZE, dict, n);
        put_le64(buf + ARCHIVE_PRE_HEADER_SIZE + n, cdo == CDO_AUTO ? total : cdo);
        hash_buffer(buf, total - 64, buf + total - 64);
        *len = total;
        return buf;
}

static const uint8_t MAGIC[6] = { 'B', 'I', 'T', 'A', '1', 0 };
static const uint8_t LEGACY_MAGIC[6] = { 0, 'B', 'I', 'T', 'A', '1' };

/* A small valid dictionary whose parts the tests break one at a time. */
#define SPEC_CHUNKS 3
#define SPEC_ORDER 4
#define SPEC_HASH_LEN 32

struct spec {
        ChunkDictionary__ChunkDictionary d;
        ChunkDictionary__ChunkerParameters cp;
        ChunkDictionary__ChunkCompression cc;
        ChunkDictionary__ChunkDescriptor desc[SPEC_CHUNKS];
        ChunkDictionary__ChunkDescriptor *descp[SPEC_CHUNKS];
        ChunkDictionary__ChunkDictionary__MetadataEntry meta;
        ChunkDictionary__ChunkDictionary__MetadataEntry *metap[1];
        uint32_t order[SPEC_ORDER];
        uint8_t hash[SPEC_CHUNKS][HASH_MAX_LEN + 8];
        uint8_t source_checksum[HASH_MAX_LEN + 8];
        uint8_t meta_value[5];
};

static const uint32_t spec_source_size[SPEC_CHUNKS] = { 1000, 2000, 3000 };
static const uint32_t spec_archive_size[SPEC_CHUNKS] = { 500, 600, 700 };
static const uint64_t spec_archive_offset[SPEC_CHUNKS] = { 0, 500, 1100 };
static const uint32_t spec_order[SPEC_ORDER] = { 0, 1, 0, 2 };
#define SPEC_TOTAL (1000u + 2000u + 1000u + 3000u)

static void spec_init(struct spec *s)
{
        memset(s, 0, sizeof(*s));
        chunk_dictionary__chunk_dictionary__init(&s->d);
        chunk_dictionary__chunker_parameters__init(&s->cp);
        chunk_dictionary__chunk_compression__init(&s->cc);
        chunk_dictionary__chunk_dictionary__metadata_entry__init(&s->meta);

        s->cp.chunking_algorithm = CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__ROLLSUM;
        s->cp.chunk_filter_bits = 15;
        s->cp.min_chunk_size = 16384;
        s->cp.max_chunk_size = 16777216;
        s->cp.rolling_hash_window_size = 64;
        s->cp.chunk_hash_length = SPEC_HASH_LEN;
        s->cc.compression = CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__ZSTD;
        s->cc.compression_level = 19;

        for (size_t i = 0; i < SPEC_CHUNKS; i++) {
                chunk_dictionary__chunk_descriptor__init(&s->desc[i]);
                for (size_t j = 0; j < sizeof(s->hash[i]); j++)
                        s->hash[i][j] = (uint8_t)(0x10 * (i + 1) + j);
                s->desc[i].checksum.data = s->hash[i];
                s->desc[i].checksum.len = SPEC_HASH_LEN;
                s->desc[i].source_size = spec_source_size[i];
                s->desc[i].archive_size = spec_archive_size[i];
                s->desc[i].archive_offset = spec_archive_offset[i];
                s->descp[i] = &s->desc[i];
        }
        memcpy(s->order, spec_order, sizeof(spec_order));
        for (size_t j = 0; j < sizeof(s->source_checksum); j++)
                s->source_checksum[j] = (uint8_t)(0xa0 ^ j);
        memcpy(s->meta_value, "v\0a\xffl", 5);
        s->meta.key = (char *)"the-key";
        s->meta.value.data = s->meta_value;
        s->meta.value.len = 5;
        s->metap[0] = &s->meta;

        s->d.application_version = (char *)"test 1.0";
        s->d.source_checksum.data = s->source_checksum;
        s->d.source_checksum.len = HASH_MAX_LEN;
        s->d.source_total_size = SPEC_TOTAL;
        s->d.chunker_params = &s->cp;
        s->d.chunk_compression = &s->cc;
        s->d.n_rebuild_order = SPEC_ORDER;
        s->d.rebuild_order = s->order;
        s->d.n_chunk_descriptors = SPEC_CHUNKS;
        s->d.chunk_descriptors = s->descp;
        s->d.n_metadata = 1;
        s->d.metadata = s->metap;
}

static uint8_t *spec_pack(const struct spec *s, size_t *n)
{
        size_t len = chunk_dictionary__chunk_dictionary__get_packed_size(&s->d);
        uint8_t *buf = malloc(len ? len : 1);

        assert_non_null(buf);
        assert_int_equal(chunk_dictionary__chunk_dictionary__pack(&s->d, buf), len);
        *n = len;
        return buf;
}

static int parse_spec_cdo(const struct spec *s, const uint8_t *magic, uint64_t cdo, struct archive **out,
                          size_t *header_len)
{
        size_t n, len;
        uint8_t *dict = spec_pack(s, &n);
        uint8_t *hdr = wrap_header(magic, dict, n, cdo, &len);
        int r;

        *out = NULL;
        r = archive_parse(hdr, len, "test", out);
        if (header_len)
                *header_len = len;
        free(hdr);
        free(dict);
        return r;
}

static void expect_refused(const struct spec *s)
{
        struct archive *a = NULL;

        assert_int_equal(parse_spec_cdo(s, MAGIC, CDO_AUTO, &a, NULL), -EBADMSG);
        assert_null(a);
}

/* ---- real fixtures ---------------------------------------------------- */

struct fixture {
        const char *name;
        bool legacy;
        enum codec codec;
        enum chunking_algorithm algorithm;
        const char *version;
        uint64_t total;
        size_t n_chunks, n_order;
        uint64_t chunk_data_offset;
        int fits; /* 1: archive_check_size accepts the real file, 0: refuses */
};

/* Counts and offsets read with an independent decoder (Python, by hand).
 * The corrupt-chunk archive lacks one byte of its fifth chunk, so its last
 * chunk runs one byte past the end of the file. */
static const struct fixture fixtures[] = {
        { "rand-0_1_1-none.cba", true, CODEC_NONE, CHUNKING_BUZHASH, "0.1.1", 262144, 5, 5, 588, 1 },
        { "zero-0_1_1-lzma.cba", true, CODEC_LZMA, CHUNKING_BUZHASH, "0.1.1", 134217728, 1, 8, 279, 1 },
        { "zero-0_1_1-zstd.cba", true, CODEC_ZSTD, CHUNKING_BUZHASH, "0.1.1", 134217728, 1, 8, 279, 1 },
        { "zero-0_7_1-brotli.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.7.1", 134217728, 1, 8, 274, 1 },
        { "rand-0_7_1-corrupt-chunk.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.7.0", 262144, 6, 6, 670, 0 },
        { "rand-0_11_0-brotli-trunc.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.11.0", 102400, 2, 2, 349, 0 },
        { "pair/v1.ext4.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.13.0", 25165824, 267, 281, 22086, 1 },
        { "pair/v2.ext4.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.13.0", 25165824, 278, 292, 23000, 1 },
};

static void check_fixture(const struct fixture *f)
{
        char path[4096];
        size_t len;
        uint8_t *file;
        uint64_t header_len, sum = 0, compressed = 0, end = 0;
        struct archive *a = NULL;
        const struct release *r;

        fixture_path(f->name, path, sizeof(path));
        file = read_whole(path, &len);
        print_message("%s\n", f->name);

        assert_memory_equal(file, f->legacy ? LEGACY_MAGIC : MAGIC, 6);
        assert_int_equal(archive_header_length(file, ARCHIVE_PRE_HEADER_SIZE, path, &header_len), 0);
        assert_int_equal(header_len, ARCHIVE_PRE_HEADER_SIZE + get_le64(file + 6) + ARCHIVE_TRAILER_SIZE);
        assert_int_equal(header_len, f->chunk_data_offset);
        /* Fewer than 14 bytes cannot say how long the header is. */
        assert_int_equal(archive_header_length(file, ARCHIVE_PRE_HEADER_SIZE - 1, path, &header_len), -EBADMSG);

        /* A header cut short by one byte, or to its pre-header, is refused. */
        assert_int_equal(archive_parse(file, (size_t)f->chunk_data_offset - 1, path, &a), -EBADMSG);
        assert_null(a);
        assert_int_equal(archive_parse(file, ARCHIVE_PRE_HEADER_SIZE, path, &a), -EBADMSG);
        assert_null(a);

        assert_int_equal(archive_parse(file, (size_t)f->chunk_data_offset, path, &a), 0);
        assert_non_null(a);
        r = a->release;
        assert_int_equal(a->codec, f->codec);
        assert_int_equal(a->header_size, f->chunk_data_offset);
        assert_int_equal(a->chunk_data_offset, f->chunk_data_offset);
        assert_memory_equal(a->header_checksum, file + f->chunk_data_offset - 64, 64);
        assert_int_equal(r->hash_len, 64);
        assert_int_equal(r->chunker.hash_length, 64);
        assert_int_equal(r->chunker.algorithm, f->algorithm);
        assert_int_equal(r->chunker.filter_bits, 15);
        assert_int_equal(r->chunker.min_chunk_size, 16384);
        assert_int_equal(r->chunker.max_chunk_size, 16777216);
        assert_int_equal(r->chunker.window_size, f->algorithm == CHUNKING_BUZHASH ? 16 : 64);
        assert_string_equal(r->app_version, f->version);
        assert_int_equal(r->source_checksum_len, 64);
        assert_int_equal(r->source_total_size, f->total);
        assert_int_equal(r->n_chunks, f->n_chunks);
        assert_int_equal(r->n_order, f->n_order);

        for (size_t i = 0; i < r->n_order; i++) {
                assert_true(r->order[i] < r->n_chunks);
                sum += r->chunks[r->order[i]].source_size;
        }
        assert_int_equal(sum, r->source_total_size);
        for (size_t i = 0; i < r->n_chunks; i++) {
                const struct chunk *c = &r->chunks[i];
                assert_true(c->source_size > 0);
                assert_true(c->archive_size > 0);
                /* Offsets are absolute: at or after the chunk data. */
                assert_true(c->archive_offset >= a->chunk_data_offset);
                if (f->codec == CODEC_NONE)
                        assert_int_equal(c->archive_size, c->source_size);
                compressed += c->archive_size;
                if (c->archive_offset + c->archive_size > end)
                        end = c->archive_offset + c->archive_size;
        }
        assert_int_equal(a->compressed_size, compressed);
        assert_int_equal(a->chunk_data_end, end);
        /* bita writes the first chunk right at the chunk data offset. */
        assert_int_equal(r->chunks[0].archive_offset, a->chunk_data_offset);

        if (f->fits == 1) {
                assert_int_equal(a->chunk_data_end, len);
                assert_int_equal(archive_check_size(a, len, path), 0);
                assert_int_equal(archive_check_size(a, len + 1, path), 0);
                assert_int_equal(archive_check_size(a, len - 1, path), -EBADMSG);
        } else if (f->fits == 0) {
                assert_true(a->chunk_data_end > len);
                assert_int_equal(archive_check_size(a, len, path), -EBADMSG);
                assert_int_equal(archive_check_size(a, a->chunk_data_end, path), 0);
        }
        archive_free(a);
        free(file);
}

static void test_fixtures_parse(void **state)
{
        for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
                check_fixture(&fixtures[i]);
}

/* The uncompressed archive's chunks can be hashed straight from the file:
 * that checks hashes, absolute offsets, order and the source checksum. */
static void test_fixture_none_content(void **state)
{
        char path[4096];
        size_t len;
        uint8_t *file, digest[HASH_MAX_LEN];
        struct archive *a = NULL;
        hash_state whole;

        fixture_path("rand-0_1_1-none.cba", path, sizeof(path));
        file = read_whole(path, &len);
        assert_int_equal(archive_parse(file, len, path, &a), 0);
        const struct release *r = a->release;
        for (size_t i = 0; i < r->n_chunks; i++) {
                const struct chunk *c = &r->chunks[i];
                assert_true(c->archive_offset + c->archive_size <= len);
                hash_buffer(file + c->archive_offset, c->source_size, digest);
                assert_memory_equal(digest, c->hash, r->hash_len);
        }
        hash_init(&whole);
        for (size_t i = 0; i < r->n_order; i++) {
                const struct chunk *c = &r->chunks[r->order[i]];
                hash_update(&whole, file + c->archive_offset, c->source_size);
        }
        hash_final(&whole, digest);
        assert_memory_equal(digest, r->source_checksum, 64);
        archive_free(a);
        free(file);
}

/* The zero archives: one 16 MiB chunk of zeros, eight times. */
static void test_fixture_zero_hashes(void **state)
{
        static const char *const names[] = { "zero-0_1_1-lzma.cba", "zero-0_1_1-zstd.cba", "zero-0_7_1-brotli.cba" };
        uint8_t *zeros = calloc(1, 16u << 20);
        uint8_t chunk_digest[HASH_MAX_LEN], image_digest[HASH_MAX_LEN];
        hash_state st;

        assert_non_null(zeros);
        hash_buffer(zeros, 16u << 20, chunk_digest);
        hash_init(&st);
        for (int i = 0; i < 8; i++)
                hash_update(&st, zeros, 16u << 20);
        hash_final(&st, image_digest);

        for (size_t k = 0; k < 3; k++) {
                char path[4096];
                size_t len;
                uint8_t *file;
                struct archive *a = NULL;

                fixture_path(names[k], path, sizeof(path));
                file = read_whole(path, &len);
                assert_int_equal(archive_parse(file, len, path, &a), 0);
                assert_int_equal(a->release->chunks[0].source_size, 16u << 20);
                assert_memory_equal(a->release->chunks[0].hash, chunk_digest, 64);
                assert_memory_equal(a->release->source_checksum, image_digest, 64);
                for (size_t i = 0; i < a->release->n_order; i++)
                        assert_int_equal(a->release->order[i], 0);
                archive_free(a);
                free(file);
        }
        free(zeros);
}

static void test_fixture_corrupt_header(void **state)
{
        char path[4096];
        size_t len;
        uint64_t header_len;
        uint8_t *file;
        struct archive *a = NULL;

        fixture_path("rand-0_7_1-corrupt-header.cba", path, sizeof(path));
        file = read_whole(path, &len);
        assert_int_equal(archive_header_length(file, len, path, &header_len), 0);
        assert_true(header_len <= len);
        assert_int_equal(archive_parse(file, (size_t)header_len, path, &a), -EBADMSG);
        assert_null(a);
        assert_int_equal(archive_parse(file, len, path, &a), -EBADMSG);
        assert_null(a);
        free(file);
}

/* A good header with one byte changed anywhere is refused. */
static void test_fixture_any_flip_refused(void **state)
{
        char path[4096];
        size_t len;
        uint8_t *file;

        fixture_path("zero-0_7_1-brotli.cba", path, sizeof(path));
        file = read_whole(path, &len);
        for (size_t i = 0; i < 274; i++) {
                struct archive *a = NULL;
                file[i] ^= 0x01;
                assert_int_equal(archive_parse(file, len, path, &a), -EBADMSG);
                assert_null(a);
                file[i] ^= 0x01;
        }
        free(file);
}

/* ---- hand-built headers ----------------------------------------------- */

static void check_spec_archive(const struct archive *a, uint64_t cdo)
{
        const struct release *r = a->release;

        assert_int_equal(a->codec, CODEC_ZSTD);
        assert_int_equal(a->compression_level, 19);
        assert_int_equal(a->chunk_data_offset, cdo);
        assert_string_equal(r->app_version, "test 1.0");
        assert_int_equal(r->hash_len, SPEC_HASH_LEN);
        assert_int_equal(r->chunker.algorithm, CHUNKING_ROLLSUM);
        assert_int_equal(r->chunker.filter_bits, 15);
        assert_int_equal(r->chunker.min_chunk_size, 16384);
        assert_int_equal(r->chunker.max_chunk_size, 16777216);
        assert_int_equal(r->chunker.window_size, 64);
        assert_int_equal(r->source_total_size, SPEC_TOTAL);
        assert_int_equal(r->source_checksum_len, 64);
        for (size_t j = 0; j < 64; j++)
                assert_int_equal(r->source_checksum[j], (uint8_t)(0xa0 ^ j));
        assert_int_equal(r->n_chunks, SPEC_CHUNKS);
        assert_int_equal(r->n_order, SPEC_ORDER);
        assert_memory_equal(r->order, spec_order, sizeof(spec_order));
        for (size_t i = 0; i < SPEC_CHUNKS; i++) {
                const struct chunk *c = &r->chunks[i];
                for (size_t j = 0; j < SPEC_HASH_LEN; j++)
                        assert_int_equal(c->hash[j], (uint8_t)(0x10 * (i + 1) + j));
                assert_int_equal(c->source_size, spec_source_size[i]);
                assert_int_equal(c->archive_size, spec_archive_size[i]);
                assert_int_equal(c->archive_offset, cdo + spec_archive_offset[i]);
        }
        assert_int_equal(a->compressed_size, 500 + 600 + 700);
        assert_int_equal(a->chunk_data_end, cdo + 1100 + 700);
        assert_int_equal(a->n_metadata, 1);
        assert_string_equal(a->metadata[0].key, "the-key");
        assert_int_equal(a->metadata[0].value_len, 5);
        assert_memory_equal(a->metadata[0].value, "v\0a\xffl", 5);
}

static void test_built_valid(void **state)
{
        struct spec s;
        struct archive *a = NULL;
        size_t header_len;

        spec_init(&s);
        assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, &header_len), 0);
        assert_non_null(a);
        assert_int_equal(a->header_size, header_len);
        check_spec_archive(a, header_len);
        assert_int_equal(archive_check_size(a, header_len + 1800, "test"), 0);
        assert_int_equal(archive_check_size(a, header_len + 1799, "test"), -EBADMSG);
        archive_free(a);

        /* The chunk data may start further on; offsets follow it. */
        assert_int_equal(parse_spec_cdo(&s, MAGIC, 1u << 20, &a, &header_len), 0);
        check_spec_archive(a, 1u << 20);
        assert_int_equal(archive_check_size(a, (1u << 20) + 1800, "test"), 0);
        assert_int_equal(archive_check_size(a, (1u << 20) + 1799, "test"), -EBADMSG);
        archive_free(a);

        /* The legacy magic reads the same. */
        assert_int_equal(parse_spec_cdo(&s, LEGACY_MAGIC, CDO_AUTO, &a, &header_len), 0);
        check_spec_archive(a, header_len);
        archive_free(a);

        /* Every codec bita knows maps to ours. */
        static const struct { int pb; enum codec c; } codecs[] = {
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__NONE, CODEC_NONE },
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__LZMA, CODEC_LZMA },
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__ZSTD, CODEC_ZSTD },
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__BROTLI, CODEC_BROTLI },
        };
        for (size_t i = 0; i < 4; i++) {
                s.cc.compression = (ChunkDictionary__ChunkCompression__CompressionType)codecs[i].pb;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->codec, codecs[i].c);
                archive_free(a);
        }
        spec_init(&s);
        static const struct { int pb; enum chunking_algorithm c; } algos[] = {
                { CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__BUZHASH, CHUNKING_BUZHASH },
                { CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__ROLLSUM, CHUNKING_ROLLSUM },
                { CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__FIXED_SIZE, CHUNKING_FIXED_SIZE },
        };
        for (size_t i = 0; i < 3; i++) {
                s.cp.chunking_algorithm = (ChunkDictionary__ChunkerParameters__ChunkingAlgorithm)algos[i].pb;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->release->chunker.algorithm, algos[i].c);
                archive_free(a);
        }

        /* The hash length bounds themselves are fine. */
        spec_init(&s);
        for (uint32_t hl = HASH_MIN_LEN; hl <= HASH_MAX_LEN; hl += HASH_MAX_LEN - HASH_MIN_LEN) {
                s.cp.chunk_hash_length = hl;
                for (size_t i = 0; i < SPEC_CHUNKS; i++)
                        s.desc[i].checksum.len = hl;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->release->hash_len, hl);
                assert_memory_equal(a->release->chunks[2].hash, s.hash[2], hl);
                archive_free(a);
        }

        /* No metadata, no chunks, an empty image. */
        spec_init(&s);
        s.d.n_metadata = 0;
        s.d.n_chunk_descriptors = 0;
        s.d.n_rebuild_order = 0;
        s.d.source_total_size = 0;
        assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, &header_len), 0);
        assert_int_equal(a->release->n_chunks, 0);
        assert_int_equal(a->n_metadata, 0);
        assert_int_equal(a->compressed_size, 0);
        assert_int_equal(a->chunk_data_end, header_len);
        archive_free(a);
}

static void test_header_length(void **state)
{
        uint8_t pre[ARCHIVE_PRE_HEADER_SIZE];
        uint64_t hl = 0;

        memcpy(pre, MAGIC, 6);
        put_le64(pre + 6, 100);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), 0);
        assert_int_equal(hl, 14 + 100 + 72);
        memcpy(pre, LEGACY_MAGIC, 6);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), 0);
        assert_int_equal(hl, 14 + 100 + 72);

        put_le64(pre + 6, ARCHIVE_MAX_DICTIONARY_SIZE);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), 0);
        assert_int_equal(hl, 14 + (uint64_t)ARCHIVE_MAX_DICTIONARY_SIZE + 72);

        hl = 12345;
        put_le64(pre + 6, (uint64_t)ARCHIVE_MAX_DICTIONARY_SIZE + 1);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        put_le64(pre + 6, UINT64_MAX);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        put_le64(pre + 6, UINT64_MAX - 14 - 72 + 1); /* would wrap the header length to 0 */
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        assert_int_equal(hl, 12345);

        put_le64(pre + 6, 100);
        static const char *const bad[] = { "BITA2\0", "bita1\0", "\0BITA2", "BITA1 ", "\0\0\0\0\0\0", "CBA\0\0\0" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memcpy(pre, bad[i], 6);
                assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        }
        memcpy(pre, MAGIC, 6);
        for (size_t n = 0; n < ARCHIVE_PRE_HEADER_SIZE; n++)
                assert_int_equal(archive_header_length(pre, n, "t", &hl), -EBADMSG);
}

static void test_hostile_dictionary_size(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict, *hdr;
        struct archive *a = NULL;

        spec_init(&s);
        dict = spec_pack(&s, &n);
        hdr = wrap_header(MAGIC, dict, n, CDO_AUTO, &len);
        assert_int_equal(archive_parse(hdr, len, "t", &a), 0);
        archive_free(a);
        a = NULL;

        /* Size fields that do not match the buffer, with the checksum redone. */
        static const uint64_t sizes[] = { UINT64_MAX, (uint64_t)ARCHIVE_MAX_DICTIONARY_SIZE + 1, 1ull << 63,
                                          UINT64_MAX - 85 };
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                put_le64(hdr + 6, sizes[i]);
                hash_buffer(hdr, len - 64, hdr + len - 64);
                assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
                assert_null(a);
        }
        /* Larger than the buffer but allowed: the header is cut short. */
        put_le64(hdr + 6, n + 1);
        assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
        assert_null(a);
        /* Smaller: the checksum is looked for in the wrong place. */
        put_le64(hdr + 6, n - 1);
        hash_buffer(hdr, len - 64, hdr + len - 64);
        assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
        assert_null(a);
        free(hdr);
        free(dict);
}

static void test_hostile_magic(void **state)
{
        struct spec s;
        struct archive *a = NULL;
        static const uint8_t bad[][6] = { { 'B', 'I', 'T', 'A', '2', 0 }, { 'I', 'H', 'O', 'P', '1', 0 },
                                          { 0, 0, 'B', 'I', 'T', 'A' }, { 'b', 'I', 'T', 'A', '1', 0 } };

        spec_init(&s);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(parse_spec_cdo(&s, bad[i], CDO_AUTO, &a, NULL), -EBADMSG);
                assert_null(a);
        }
}

static void test_hostile_checksum(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict, *hdr;
        struct archive *a = NULL;

        spec_init(&s);
        dict = spec_pack(&s, &n);
        hdr = wrap_header(MAGIC, dict, n, CDO_AUTO, &len);
        for (size_t i = 6; i < len; i++) {
                hdr[i] ^= 0x80;
                assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
                assert_null(a);
                hdr[i] ^= 0x80;
        }
        assert_int_equal(archive_parse(hdr, len, "t", &a), 0);
        archive_free(a);
        free(hdr);
        free(dict);
}

static void test_hostile_order(void **state)
{
        struct spec s;

        spec_init(&s);
        s.order[3] = SPEC_CHUNKS; /* one past the end */
        expect_refused(&s);
        s.order[3] = UINT32_MAX;
        expect_refused(&s);
        /* Order names chunks when there are none. */
        spec_init(&s);
        s.d.n_chunk_descriptors = 0;
        expect_refused(&s);
}

static void test_hostile_hash_length(void **state)
{
        struct spec s;
        static const uint32_t bad[] = { 0, 1, 3, 65, 128, UINT32_MAX };

        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
                spec_init(&s);
                s.cp.chunk_hash_length = bad[k];
                /* Descriptors agree with the parameters, as far as they can. */
                for (size_t i = 0; i < SPEC_CHUNKS; i++)
                        s.desc[i].checksum.len = bad[k] <= HASH_MAX_LEN + 8 ? bad[k] : HASH_MAX_LEN + 8;
                expect_refused(&s);
        }
        /* A descriptor hash of the wrong length. */
        static const size_t wrong[] = { 0, 4, SPEC_HASH_LEN - 1, SPEC_HASH_LEN + 1, 64, 65, 72 };
        for (size_t k = 0; k < sizeof(wrong) / sizeof(wrong[0]); k++) {
                spec_init(&s);
                s.desc[1].checksum.len = wrong[k];
                expect_refused(&s);
        }
        /* The whole-image checksum: missing, or longer than BLAKE2b-512. */
        spec_init(&s);
        s.d.source_checksum.len = 0;
        expect_refused(&s);
        s.d.source_checksum.len = 65;
        expect_refused(&s);
        s.d.source_checksum.len = 72;
        expect_refused(&s);
}

static void test_hostile_sizes(void **state)
{
        struct spec s;

        /* A chunk of size 0, used or not. */
        spec_init(&s);
        s.desc[2].source_size = 0;
        s.d.source_total_size = SPEC_TOTAL - 3000;
        expect_refused(&s);
        spec_init(&s);
        s.d.n_rebuild_order = 2;
        s.d.source_total_size = 3000;
        s.desc[2].source_size = 0;
        expect_refused(&s);

        /* Sizes that do not add up. */
        spec_init(&s);
        s.d.source_total_size = SPEC_TOTAL + 1;
        expect_refused(&s);
        s.d.source_total_size = SPEC_TOTAL - 1;
        expect_refused(&s);
        s.d.source_total_size = 0;
        expect_refused(&s);
        s.d.source_total_size = UINT64_MAX;
        expect_refused(&s);
        spec_init(&s);
        s.d.n_rebuild_order = 3; /* the image lacks its last chunk */
        expect_refused(&s);

        /* Huge chunks: a sum of 2^32 + 7000 would be 7000 in 32 bits. */
        spec_init(&s);
        s.desc[0].source_size = UINT32_MAX;
        s.desc[1].source_size = SPEC_TOTAL + 1;
        s.d.n_rebuild_order = 2;
        s.d.source_total_size = SPEC_TOTAL;
        expect_refused(&s);
        /* Many huge chunks against a small total. */
        spec_init(&s);
        uint32_t many[1000];
        for (size_t i = 0; i < 1000; i++)
                many[i] = 0;
        s.desc[0].source_size = UINT32_MAX;
        s.d.rebuild_order = many;
        s.d.n_rebuild_order = 1000;
        s.d.source_total_size = 1000;
        expect_refused(&s);
        /* ...and a total that the same sum, wrapped at 2^64, would not reach. */
        s.d.source_total_size = (uint64_t)UINT32_MAX * 999;
        expect_refused(&s);
        s.d.source_total_size = (uint64_t)UINT32_MAX * 1000;
        {
                struct archive *a = NULL;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->release->source_total_size, (uint64_t)UINT32_MAX * 1000);
                archive_free(a);
        }
}

static void test_hostile_archive_place(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict;

        spec_init(&s);
        s.desc[1].archive_offset = UINT64_MAX;
        expect_refused(&s);
        s.desc[1].archive_offset = UINT64_MAX - 10;
        expect_refused(&s);

        /* The header length (= chunk data offset) once an offset needs a
         * 10-byte varint, as every value >= 2^63 does. */
        spec_init(&s);
        s.desc[2].archive_offset = UINT64_MAX - 100000;
        dict = spec_pack(&s, &n);
        free(wrap_header(MAGIC, dict, n, CDO_AUTO, &len));
        free(dict);

        /* offset + chunk data offset fits; adding the size wraps. */
        s.desc[2].archive_offset = UINT64_MAX - len - 10;
        expect_refused(&s);
        /* offset + chunk data offset wraps to 0. */
        s.desc[2].archive_offset = UINT64_MAX - len + 1;
        expect_refused(&s);
        /* offset + chunk data offset + size = UINT64_MAX exactly: fits. */
        s.desc[2].archive_offset = UINT64_MAX - len - 700;
        {
                struct archive *a = NULL;
                size_t len2;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, &len2), 0);
                assert_int_equal(len2, len);
                assert_int_equal(a->release->chunks[2].archive_offset, UINT64_MAX - 700);
                assert_int_equal(a->chunk_data_end, UINT64_MAX);
                assert_int_equal(archive_check_size(a, UINT64_MAX - 1, "t"), -EBADMSG);
                archive_free(a);
        }

        /* A huge chunk data offset with modest relative offsets. */
        spec_init(&s);
        {
                struct archive *a = NULL;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, UINT64_MAX - 1000, &a, NULL), -EBADMSG);
                assert_null(a);
                assert_int_equal(parse_spec_cdo(&s, MAGIC, UINT64_MAX - 1800, &a, NULL), 0);
                assert_int_equal(a->chunk_data_end, UINT64_MAX);
                archive_free(a);
        }

        /* A chunk with no bytes in the archive. */
        spec_init(&s);
        s.desc[0].archive_size = 0;
        expect_refused(&s);
}

static void test_hostile_chunk_data_offset(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict, *hdr;
        struct archive *a = NULL;

        spec_init(&s);
        dict = spec_pack(&s, &n);
        free(wrap_header(MAGIC, dict, n, CDO_AUTO, &len));
        static const uint64_t inside[] = { 0, 1, 14, 100, 0 /* len - 1 */, 0 /* len - 64 */ };
        for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
                uint64_t cdo = i == 4 ? len - 1 : i == 5 ? len - 64 : inside[i];
                hdr = wrap_header(MAGIC, dict, n, cdo, &len);
                assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
                assert_null(a);
                free(hdr);
        }
        hdr = wrap_header(MAGIC, dict, n, len, &len);
        assert_int_equal(archive_parse(hdr, len, "t", &a), 0);
        archive_free(a);
        free(hdr);
        free(dict);
}

static void test_hostile_missing_parts(void **state)
{
        struct spec s;

        spec_init(&s);
        s.d.chunker_params = NULL;
        expect_refused(&s);
        spec_init(&s);
        s.d.chunk_compression = NULL;
        expect_refused(&s);
        spec_init(&s);
        s.d.chunker_params = NULL;
        s.d.chunk_compression = NULL;
        expect_refused(&s);
}

static void test_hostile_unknown_enums(void **state)
{
        struct spec s;
        static const int bad_codecs[] = { 4, 5, 99, -1, INT32_MAX };
        static const int bad_algos[] = { 3, 4, 1000, -1 };

        for (size_t i = 0; i < sizeof(bad_codecs) / sizeof(bad_codecs[0]); i++) {
                spec_init(&s);
                s.cc.compression = (ChunkDictionary__ChunkCompression__CompressionType)bad_codecs[i];
                expect_refused(&s);
        }
        for (size_t i = 0; i < sizeof(bad_algos) / sizeof(bad_algos[0]); i++) {
                spec_init(&s);
                s.cp.chunking_algorithm = (ChunkDictionary__ChunkerParameters__ChunkingAlgorithm)bad_algos[i];
                expect_refused(&s);
        }
}

/* prefix followed by count empty ChunkDescriptors (field 7, length 0). */
static uint8_t *flood_header(const uint8_t *prefix, size_t n_prefix, size_t count, size_t *len)
{
        uint8_t *dict = malloc(n_prefix + 2 * count), *hdr;

        assert_non_null(dict);
        if (n_prefix)
                memcpy(dict, prefix, n_prefix);
        for (size_t i = 0; i < count; i++) {
                dict[n_prefix + 2 * i] = (7 << 3) | 2;
                dict[n_prefix + 2 * i + 1] = 0;
        }
        hdr = wrap_header(MAGIC, dict, n_prefix + 2 * count, CDO_AUTO, len);
        free(dict);
        return hdr;
}

/* Millions of empty descriptors: two bytes each packed, a struct each
 * unpacked. The budget must stop the decoder long before that. */
static void test_hostile_empty_descriptor_flood(void **state)
{
        const size_t count = 2u << 20; /* 4 MiB of dictionary */
        struct archive *a = NULL;
        struct spec s;
        size_t len, n;
        uint8_t *hdr, *prefix;
        long before, after;
        bool measure;

        hdr = flood_header(NULL, 0, count, &len);
        assert_int_equal(len, 14 + (4u << 20) + 72);
        measure = reset_hwm();
        before = vm_hwm_kib();
        assert_int_equal(archive_parse(hdr, len, "flood", &a), -EBADMSG);
        assert_null(a);
        after = vm_hwm_kib();
        if (measure && before > 0 && after > 0) {
                /* Unbudgeted, 2M descriptors cost over 150 MiB; budgeted, about 35. */
                print_message("peak RSS grew by %ld KiB\n", after - before);
                assert_true(after - before < 96 * 1024);
        }
        free(hdr);

        /* The same flood behind a valid prefix (parameters, compression). */
        spec_init(&s);
        s.d.n_chunk_descriptors = 0;
        s.d.n_rebuild_order = 0;
        s.d.n_metadata = 0;
        s.d.source_total_size = 0;
        prefix = spec_pack(&s, &n);
        hdr = flood_header(prefix, n, count, &len);
        assert_int_equal(archive_parse(hdr, len, "flood", &a), -EBADMSG);
        assert_null(a);
        free(hdr);

        /* A few thousand fit the budget, then fail the checks (0-byte hashes). */
        hdr = flood_header(prefix, n, 4000, &len);
        assert_int_equal(archive_parse(hdr, len, "few", &a), -EBADMSG);
        assert_null(a);
        free(hdr);
        /* The prefix alone is a valid, empty release. */
        hdr = flood_header(prefix, n, 0, &len);
        assert_int_equal(archive_parse(hdr, len, "none", &a), 0);
        archive_free(a);
        free(hdr);
        free(prefix);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ull;
}

static void test_hostile_garbage(void **state)
{
        uint8_t dict[1024];
        struct archive *a = NULL;

        for (int iter = 0; iter < 3000; iter++) {
                size_t n = 1 + rng() % sizeof(dict), len;
                uint8_t *hdr;
                for (size_t i = 0; i < n; i++)
                        dict[i] = (uint8_t)rng();
                hdr = wrap_header(iter & 1 ? MAGIC : LEGACY_MAGIC, dict, n, CDO_AUTO, &len);
                assert_int_equal(archive_parse(hdr, len, "garbage", &a), -EBADMSG);
                assert_null(a);
                free(hdr);
        }
        /* An empty dictionary lacks everything. */
        {
                size_t len;
                uint8_t *hdr = wrap_header(MAGIC, NULL, 0, CDO_AUTO, &len);
                assert_int_equal(archive_parse(hdr, len, "empty", &a), -EBADMSG);
                assert_null(a);
                free(hdr);
        }
}

/* Valid dictionaries with random bytes changed (checksum redone): refused,
 * or accepted only when self-consistent. Never a crash or a leak. */
static void test_hostile_mutations(void **state)
{
        struct spec s;
        size_t n;
        uint8_t *orig, *dict;
        int accepted = 0, refused = 0;

        spec_init(&s);
        orig = spec_pack(&s, &n);
        dict = malloc(n);
        assert_non_null(dict);
        for (int iter = 0; iter < 20000; iter++) {
                struct archive *a = NULL;
                size_t len, m = n;
                uint8_t *hdr;
                int flips = 1 + (int)(rng() % 4), r;

                memcpy(dict, orig, n);
                for (int k = 0; k < flips; k++)
                        dict[rng() % n] = (uint8_t)rng();
                if (rng() % 8 == 0)
                        m = rng() % n; /* cut short too */
                hdr = wrap_header(MAGIC, dict, m, CDO_AUTO, &len);
                r = archive_parse(hdr, len, "mutant", &a);
                if (r == 0) {
                        uint64_t sum = 0;
                        const struct release *rel = a->release;
                        accepted++;
                        assert_true(rel->hash_len >= HASH_MIN_LEN && rel->hash_len <= HASH_MAX_LEN);
                        for (size_t i = 0; i < rel->n_order; i++) {
                                assert_true(rel->order[i] < rel->n_chunks);
                                sum += rel->chunks[rel->order[i]].source_size;
                        }
                        assert_int_equal(sum, rel->source_total_size);
                        for (size_t i = 0; i < rel->n_chunks; i++) {
                                assert_true(rel->chunks[i].source_size > 0);
                                assert_true(rel->chunks[i].archive_offset >= a->chunk_data_offset);
                                assert_true(rel->chunks[i].archive_offset + rel->chunks[i].archive_size <=
                                            a->chunk_data_end);
                        }
                        archive_free(a);
                } else {
                        assert_int_equal(r, -EBADMSG);
                        assert_null(a);
                        refused++;
                }
                free(hdr);
        }
        print_message("mutants: %d accepted, %d refused\n", accepted, refused);
        assert_true(refused > 0);
        free(dict);
        free(orig);
}

/* The budget allocator: refuses past its budget, refunds on free. */
static void test_pb_budget(void **state)
{
        struct pb_budget b;
        void *p, *q, *r;

        pb_budget_init(&b, 1000);
        assert_int_equal(b.left, 1000);
        p = b.allocator.alloc(b.allocator.allocator_data, 600);
        assert_non_null(p);
        assert_true(((uintptr_t)p % _Alignof(max_align_t)) == 0);
        memset(p, 0xaa, 600);
        assert_int_equal(b.left, 400);
        assert_null(b.allocator.alloc(b.allocator.allocator_data, 401));
        assert_int_equal(b.left, 400);
        q = b.allocator.alloc(b.allocator.allocator_data, 400);
        assert_non_null(q);
        assert_int_equal(b.left, 0);
        assert_null(b.allocator.alloc(b.allocator.allocator_data, 1));
        b.allocator.free(b.allocator.allocator_data, p);
        assert_int_equal(b.left, 600);
        r = b.allocator.alloc(b.allocator.allocator_data, 600);
        assert_non_null(r);
        b.allocator.free(b.allocator.allocator_data, q);
        b.allocator.free(b.allocator.allocator_data, r);
        b.allocator.free(b.allocator.allocator_data, NULL);
        assert_int_equal(b.left, 1000);
        assert_null(b.allocator.alloc(b.allocator.allocator_data, SIZE_MAX));
        assert_int_equal(b.left, 1000);

        /* Through protobuf-c: unpack and free give the whole budget back. */
        {
                struct spec s;
                size_t n;
                uint8_t *dict;
                ChunkDictionary__ChunkDictionary *d;

                spec_init(&s);
                dict = spec_pack(&s, &n);
                pb_budget_init(&b, 1u << 20);
                d = chunk_dictionary__chunk_dictionary__unpack(&b.allocator, n, dict);
                assert_non_null(d);
                assert_true(b.left < 1u << 20);
                chunk_dictionary__chunk_dictionary__free_unpacked(d, &b.allocator);
                assert_int_equal(b.left, 1u << 20);
                /* Too small a budget: no dictionary, and nothing kept. */
                pb_budget_init(&b, 200);
                assert_null(chunk_dictionary__chunk_dictionary__unpack(&b.allocator, n, dict));
                assert_int_equal(b.left, 200);
                free(dict);
        }
}

static int group_setup(void **state)
{
        return hash_init_library() == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixtures_parse),
                cmocka_unit_test(test_fixture_none_content),
                cmocka_unit_test(test_fixture_zero_hashes),
                cmocka_unit_test(test_fixture_corrupt_header),
                cmocka_unit_test(test_fixture_any_flip_refused),
                cmocka_unit_test(test_header_length),
                cmocka_unit_test(test_built_valid),
                cmocka_unit_test(test_hostile_dictionary_size),
                cmocka_unit_test(test_hostile_magic),
                cmocka_unit_test(test_hostile_checksum),
                cmocka_unit_test(test_hostile_order),
                cmocka_unit_test(test_hostile_hash_length),
                cmocka_unit_test(test_hostile_sizes),
                cmocka_unit_test(test_hostile_archive_place),
                cmocka_unit_test(test_hostile_chunk_data_offset),
                cmocka_unit_test(test_hostile_missing_parts),
                cmocka_unit_test(test_hostile_unknown_enums),
                cmocka_unit_test(test_hostile_empty_descriptor_flood),
                cmocka_unit_test(test_hostile_garbage),
                cmocka_unit_test(test_hostile_mutations),
                cmocka_unit_test(test_pb_budget),
        };

        return cmocka_run_group_tests(tests, group_setup, NULL);
}
