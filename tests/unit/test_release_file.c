// SPDX-License-Identifier: MIT
/* release_file.c: the release description written into a store, read back,
 * and refused when anything about it is off. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "chunk_dictionary.pb-c.h"
#include "hash.h"
#include "release.h"
#include "release_file.h"
#include "store.h"
#include "store_dictionary.pb-c.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

struct ctx {
        char dir[64];
        struct store *store;
};

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));
        char path[128];

        if (!c)
                return -1;
        strcpy(c->dir, "/tmp/ihop-test-release-XXXXXX");
        if (!mkdtemp(c->dir))
                return -1;
        snprintf(path, sizeof(path), "%s/store", c->dir);
        if (store_open(path, true, &c->store) < 0)
                return -1;
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        store_close(c->store);
        remove_tree(c->dir);
        free(c);
        return 0;
}

static int group_setup(void **state)
{
        return hash_init_library() == 0 ? 0 : -1;
}

/* A release of n chunks used in a scrambled order, some twice. */
static struct release *make_release(size_t n, size_t hash_len)
{
        struct release *r = calloc(1, sizeof(*r));

        assert_non_null(r);
        r->app_version = strdup("whatever");
        r->hash_len = hash_len;
        r->chunker.algorithm = CHUNKING_ROLLSUM;
        r->chunker.filter_bits = 13;
        r->chunker.min_chunk_size = 1000;
        r->chunker.max_chunk_size = 70000;
        r->chunker.window_size = 48;
        r->chunker.hash_length = (uint32_t)hash_len;
        for (size_t i = 0; i < HASH_MAX_LEN; i++)
                r->source_checksum[i] = (uint8_t)(200 - i);
        r->source_checksum_len = HASH_MAX_LEN;
        r->n_chunks = n;
        r->chunks = calloc(n ? n : 1, sizeof(*r->chunks));
        r->n_order = n ? n + n / 3 : 0;
        r->order = calloc(r->n_order ? r->n_order : 1, sizeof(*r->order));
        assert_non_null(r->chunks);
        assert_non_null(r->order);
        for (size_t i = 0; i < n; i++) {
                uint8_t seed[8];
                uint8_t digest[HASH_MAX_LEN];
                memcpy(seed, &i, sizeof(seed));
                hash_buffer(seed, sizeof(seed), digest);
                memcpy(r->chunks[i].hash, digest, hash_len);
                r->chunks[i].source_size = (uint32_t)(1000 + (i * 7919) % 69000);
        }
        for (size_t i = 0; i < r->n_order; i++) {
                r->order[i] = (uint32_t)(i < n ? i : (i * 31) % n);
                r->source_total_size += r->chunks[r->order[i]].source_size;
        }
        assert_int_equal(release_validate(r, "made"), 0);
        return r;
}

static void assert_release_equal(const struct release *a, const struct release *b)
{
        assert_int_equal(a->hash_len, b->hash_len);
        assert_int_equal(a->chunker.algorithm, b->chunker.algorithm);
        assert_int_equal(a->chunker.filter_bits, b->chunker.filter_bits);
        assert_int_equal(a->chunker.min_chunk_size, b->chunker.min_chunk_size);
        assert_int_equal(a->chunker.max_chunk_size, b->chunker.max_chunk_size);
        assert_int_equal(a->chunker.window_size, b->chunker.window_size);
        assert_int_equal(a->chunker.hash_length, b->chunker.hash_length);
        assert_int_equal(a->source_checksum_len, b->source_checksum_len);
        assert_memory_equal(a->source_checksum, b->source_checksum, a->source_checksum_len);
        assert_int_equal(a->source_total_size, b->source_total_size);
        assert_int_equal(a->n_chunks, b->n_chunks);
        assert_int_equal(a->n_order, b->n_order);
        for (size_t i = 0; i < a->n_chunks; i++) {
                assert_memory_equal(a->chunks[i].hash, b->chunks[i].hash, a->hash_len);
                assert_int_equal(a->chunks[i].source_size, b->chunks[i].source_size);
        }
        if (a->n_order)
                assert_memory_equal(a->order, b->order, a->n_order * sizeof(*a->order));
}

static void release_path(struct ctx *c, const char *name, char *out, size_t len)
{
        snprintf(out, len, "%s/%s", store_path(c->store), name);
}

static uint8_t *slurp(const char *path, size_t *len)
{
        struct stat st;
        int fd = open(path, O_RDONLY);
        uint8_t *buf;

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
        close(fd);
        *len = (size_t)st.st_size;
        return buf;
}

static void write_raw(const char *path, const uint8_t *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        assert_true(fd >= 0);
        if (len)
                assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

static uint64_t get_le64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

/* "IHOP1\0" | u64 n | dict | BLAKE2b-512, around a dictionary built here. */
static uint8_t *wrap(const StoreDictionary__StoreDictionary *d, size_t *len)
{
        size_t n = store_dictionary__store_dictionary__get_packed_size(d);
        uint8_t *buf = malloc(14 + n + 64);
        uint64_t le = htole64(n);

        assert_non_null(buf);
        memcpy(buf, "IHOP1\0", 6);
        memcpy(buf + 6, &le, 8);
        store_dictionary__store_dictionary__pack(d, buf + 14);
        hash_buffer(buf, 14 + n, buf + 14 + n);
        *len = 14 + n + 64;
        return buf;
}

/* ---- tests ------------------------------------------------------------ */

static void test_round_trip(void **state)
{
        struct ctx *c = *state;
        static const size_t sizes[] = { 1, 3, 1000 };
        static const size_t hash_lens[] = { HASH_MIN_LEN, 32, HASH_MAX_LEN };

        for (size_t k = 0; k < 3; k++) {
                struct release *r = make_release(sizes[k], hash_lens[k]), *back = NULL;
                char name[32];

                snprintf(name, sizeof(name), "release_%zu", k);
                assert_int_equal(release_file_write(c->store, name, r), 0);
                assert_int_equal(release_file_read(c->store, name, &back), 0);
                assert_non_null(back);
                assert_release_equal(r, back);
                assert_string_equal(back->app_version, "ihop " IHOP_VERSION);
                release_free(back);
                release_free(r);
        }

        /* Every chunking algorithm survives the trip. */
        for (int alg = CHUNKING_BUZHASH; alg <= CHUNKING_FIXED_SIZE; alg++) {
                struct release *r = make_release(5, 16), *back = NULL;
                r->chunker.algorithm = (enum chunking_algorithm)alg;
                assert_int_equal(release_file_write(c->store, "alg", r), 0);
                assert_int_equal(release_file_read(c->store, "alg", &back), 0);
                assert_int_equal(back->chunker.algorithm, alg);
                release_free(back);
                release_free(r);
        }

        /* An empty image: no chunks at all. */
        {
                struct release *r = make_release(0, 64), *back = NULL;
                assert_int_equal(r->source_total_size, 0);
                assert_int_equal(release_file_write(c->store, "empty", r), 0);
                assert_int_equal(release_file_read(c->store, "empty", &back), 0);
                assert_release_equal(r, back);
                release_free(back);
                release_free(r);
        }

        /* Overwriting replaces. */
        {
                struct release *a = make_release(10, 64), *b = make_release(20, 8), *back = NULL;
                assert_int_equal(release_file_write(c->store, "same", a), 0);
                assert_int_equal(release_file_write(c->store, "same", b), 0);
                assert_int_equal(release_file_read(c->store, "same", &back), 0);
                assert_release_equal(b, back);
                release_free(back);
                release_free(a);
                release_free(b);
        }
}

static void test_file_layout(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(50, 64);
        uint8_t *buf, digest[HASH_MAX_LEN];
        char path[256];
        size_t len;

        assert_int_equal(release_file_write(c->store, "rel", r), 0);
        release_path(c, "rel", path, sizeof(path));
        buf = slurp(path, &len);
        assert_true(len > 14 + 64);
        assert_memory_equal(buf, "IHOP1\0", 6);
        assert_int_equal(get_le64(buf + 6), len - 14 - 64);
        hash_buffer(buf, len - 64, digest);
        assert_memory_equal(buf + len - 64, digest, 64);

        /* The dictionary is a StoreDictionary anyone can decode. */
        StoreDictionary__StoreDictionary *d = store_dictionary__store_dictionary__unpack(NULL, len - 78, buf + 14);
        assert_non_null(d);
        assert_int_equal(d->n_chunk_descriptors, 50);
        assert_int_equal(d->n_source_order, r->n_order);
        assert_int_equal(d->source_total_size, r->source_total_size);
        assert_non_null(d->chunker_params);
        assert_int_equal(d->chunker_params->chunk_hash_length, 64);
        assert_int_equal(d->chunker_params->chunking_algorithm,
                         CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__ROLLSUM);
        assert_int_equal(d->chunk_descriptors[7]->source_size, r->chunks[7].source_size);
        assert_memory_equal(d->chunk_descriptors[7]->checksum.data, r->chunks[7].hash, 64);
        store_dictionary__store_dictionary__free_unpacked(d, NULL);

        /* Only chunks/ and the release are left: no temp file. */
        {
                DIR *dir = opendir(store_path(c->store));
                struct dirent *e;
                int n = 0;
                assert_non_null(dir);
                while ((e = readdir(dir))) {
                        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                                continue;
                        assert_true(!strcmp(e->d_name, "chunks") || !strcmp(e->d_name, "rel"));
                        n++;
                }
                closedir(dir);
                assert_int_equal(n, 2);
        }
        free(buf);
        release_free(r);
}

static void test_any_byte_flip(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(20, 32), *back = NULL;
        uint8_t *buf;
        char path[256];
        size_t len;

        assert_int_equal(release_file_write(c->store, "rel", r), 0);
        release_path(c, "rel", path, sizeof(path));
        buf = slurp(path, &len);

        assert_int_equal(release_file_parse(buf, len, "mem", &back), 0);
        release_free(back);
        back = NULL;
        for (size_t i = 0; i < len; i++) {
                for (int bit = 0; bit < 8; bit += 7) {
                        buf[i] ^= (uint8_t)(1u << bit);
                        assert_int_equal(release_file_parse(buf, len, "mem", &back), -EBADMSG);
                        assert_null(back);
                        buf[i] ^= (uint8_t)(1u << bit);
                }
        }
        /* Through the file too, at a few places: magic, size, dictionary, checksum. */
        static const size_t places[] = { 0, 5, 6, 13, 14, 100, 0 /* len-64 */, 0 /* len-1 */ };
        for (size_t k = 0; k < sizeof(places) / sizeof(places[0]); k++) {
                size_t i = k == 6 ? len - 64 : k == 7 ? len - 1 : places[k];
                buf[i] ^= 0x20;
                write_raw(path, buf, len);
                assert_int_equal(release_file_read(c->store, "rel", &back), -EBADMSG);
                assert_null(back);
                buf[i] ^= 0x20;
        }
        write_raw(path, buf, len);
        assert_int_equal(release_file_read(c->store, "rel", &back), 0);
        assert_release_equal(r, back);
        release_free(back);
        free(buf);
        release_free(r);
}

static void test_truncated_and_trailing(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(20, 32), *back = NULL;
        uint8_t *buf, *longer;
        char path[256];
        size_t len;

        assert_int_equal(release_file_write(c->store, "rel", r), 0);
        release_path(c, "rel", path, sizeof(path));
        buf = slurp(path, &len);

        for (size_t n = 0; n < len; n++) {
                assert_int_equal(release_file_parse(buf, n, "mem", &back), -EBADMSG);
                assert_null(back);
        }
        static const size_t cuts[] = { 0, 1, 6, 14, 77, 78, 100 };
        for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
                write_raw(path, buf, cuts[k]);
                assert_true(release_file_read(c->store, "rel", &back) < 0);
                assert_null(back);
        }
        write_raw(path, buf, len - 1);
        assert_int_equal(release_file_read(c->store, "rel", &back), -EBADMSG);

        longer = malloc(len + 100);
        assert_non_null(longer);
        memcpy(longer, buf, len);
        memset(longer + len, 0, 100);
        for (size_t extra = 1; extra <= 100; extra += 33) {
                assert_int_equal(release_file_parse(longer, len + extra, "mem", &back), -EBADMSG);
                assert_null(back);
                write_raw(path, longer, len + extra);
                assert_int_equal(release_file_read(c->store, "rel", &back), -EBADMSG);
                assert_null(back);
        }
        /* Trailing bytes with the size field and checksum redone to cover
         * them: the dictionary then has junk at its end. */
        {
                uint64_t le = htole64(len - 78 + 1);
                uint8_t *t = malloc(len + 1);
                assert_non_null(t);
                memcpy(t, buf, len - 64);
                t[len - 64] = 0xff;
                memcpy(t + 6, &le, 8);
                hash_buffer(t, len - 64 + 1, t + len - 64 + 1);
                assert_int_equal(release_file_parse(t, len + 1, "mem", &back), -EBADMSG);
                assert_null(back);
                free(t);
        }
        free(longer);
        free(buf);
        release_free(r);
}

static void test_read_errors(void **state)
{
        struct ctx *c = *state;
        struct release *back = NULL;
        char path[256];

        assert_int_equal(release_file_read(c->store, "nothing", &back), -ENOENT);
        assert_null(back);
        /* A directory is not a release. */
        assert_int_equal(release_file_read(c->store, "chunks", &back), -EBADMSG);
        assert_null(back);
        /* Empty file. */
        release_path(c, "empty", path, sizeof(path));
        write_raw(path, NULL, 0);
        assert_int_equal(release_file_read(c->store, "empty", &back), -EBADMSG);
        /* Larger than any release description may be (sparse). */
        release_path(c, "huge", path, sizeof(path));
        {
                int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                assert_true(fd >= 0);
                assert_int_equal(ftruncate(fd, (off_t)STORE_RELEASE_MAX_SIZE + 1), 0);
                close(fd);
        }
        assert_int_equal(release_file_read(c->store, "huge", &back), -EBADMSG);
        assert_null(back);
        /* A bita archive is not a release description. */
        const char *fixtures = getenv("FIXTURES");
        if (fixtures) {
                char src[512];
                int in, out;
                ssize_t n;
                uint8_t b[4096];
                snprintf(src, sizeof(src), "%s/zero-0_7_1-brotli.cba", fixtures);
                release_path(c, "cba", path, sizeof(path));
                in = open(src, O_RDONLY);
                out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                assert_true(in >= 0 && out >= 0);
                while ((n = read(in, b, sizeof(b))) > 0)
                        assert_int_equal(write(out, b, (size_t)n), n);
                close(in);
                close(out);
                assert_int_equal(release_file_read(c->store, "cba", &back), -EBADMSG);
                assert_null(back);
        }
}

/* The description's temp file is hidden (".NAME.tmp-XXXXXX"): no release name
 * is, so gc can never take a release for a temp file or the reverse. Seen
 * with inotify, as the kernel reports every file made in the store. */
static void test_temp_file_is_hidden(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(5, 32);
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC), created = 0;
        ssize_t n;

        assert_true(ino >= 0);
        assert_true(inotify_add_watch(ino, store_path(c->store), IN_CREATE | IN_MOVED_FROM) >= 0);
        assert_int_equal(release_file_write(c->store, "rel", r), 0);
        while ((n = read(ino, buf, sizeof(buf))) > 0) {
                for (char *p = buf; p < buf + n;) {
                        struct inotify_event *e = (struct inotify_event *)p;
                        if (e->mask & IN_CREATE) {
                                assert_true(strncmp(e->name, ".rel.tmp-", 9) == 0);
                                assert_int_equal(strlen(e->name), 9 + 6);
                                assert_false(store_release_name_valid(e->name));
                                created++;
                        }
                        p += sizeof(*e) + e->len;
                }
        }
        close(ino);
        assert_int_equal(created, 1);
        release_free(r);
}

/* The description's mode is 0666 less the umask, as any program's output. */
static void test_mode_follows_umask(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(5, 32);
        static const mode_t masks[] = { 077, 022, 027 };
        char path[256];
        struct stat st;

        for (size_t i = 0; i < 3; i++) {
                mode_t old = umask(masks[i]);
                assert_int_equal(release_file_write(c->store, "rel", r), 0);
                umask(old);
                release_path(c, "rel", path, sizeof(path));
                assert_int_equal(stat(path, &st), 0);
                assert_int_equal(st.st_mode & 0777, 0666 & ~masks[i]);
        }
        release_free(r);
}

/* A symlink in the store is not a release description (gc, which reads none,
 * would not keep its chunks), wherever it points. */
static void test_symlink_is_not_a_release(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(5, 32), *back = NULL;
        char path[256], link[256];

        assert_int_equal(release_file_write(c->store, "real", r), 0);
        release_path(c, "real", path, sizeof(path));
        release_path(c, "link", link, sizeof(link));
        assert_int_equal(symlink(path, link), 0);
        assert_int_equal(release_file_read(c->store, "link", &back), -ELOOP);
        assert_null(back);
        assert_int_equal(release_file_read(c->store, "real", &back), 0);
        release_free(back);
        release_free(r);
}

static void test_is_complete(void **state)
{
        struct ctx *c = *state;
        struct release *r = make_release(40, 64);
        uint8_t *buf;
        char path[256];
        size_t len;

        assert_int_equal(release_file_write(c->store, "rel", r), 0);
        release_path(c, "rel", path, sizeof(path));
        buf = slurp(path, &len);
        assert_true(release_file_is_complete(buf, len));
        /* Any part of it, or any byte changed: not a whole description. */
        for (size_t cut = 0; cut < len; cut += 7)
                assert_false(release_file_is_complete(buf, cut));
        for (size_t i = 0; i < len; i += 5) {
                buf[i] ^= 0x10;
                assert_false(release_file_is_complete(buf, len));
                buf[i] ^= 0x10;
        }
        free(buf);
        release_free(r);
}

/* Well-formed files (right magic, size, checksum) whose content is wrong. */
static void test_bad_content(void **state)
{
        StoreDictionary__StoreDictionary d;
        ChunkDictionary__ChunkerParameters cp;
        StoreDictionary__ChunkDescriptor desc[2], *descp[2];
        uint8_t h[2][80], sum[80];
        uint32_t order[3] = { 0, 1, 0 };
        struct release *back = NULL;
        uint8_t *buf;
        size_t len;

#define RESET()                                                                   \
        do {                                                                      \
                store_dictionary__store_dictionary__init(&d);                     \
                chunk_dictionary__chunker_parameters__init(&cp);                  \
                cp.chunk_hash_length = 16;                                        \
                for (int i = 0; i < 2; i++) {                                     \
                        store_dictionary__chunk_descriptor__init(&desc[i]);       \
                        memset(h[i], 0x11 * (i + 1), sizeof(h[i]));               \
                        desc[i].checksum.data = h[i];                             \
                        desc[i].checksum.len = 16;                                \
                        desc[i].source_size = 100 * (i + 1);                      \
                        descp[i] = &desc[i];                                      \
                }                                                                 \
                memset(sum, 0x5a, sizeof(sum));                                   \
                order[0] = 0, order[1] = 1, order[2] = 0;                         \
                d.source_checksum.data = sum;                                     \
                d.source_checksum.len = 64;                                       \
                d.source_total_size = 400;                                        \
                d.n_source_order = 3;                                             \
                d.source_order = order;                                           \
                d.n_chunk_descriptors = 2;                                        \
                d.chunk_descriptors = descp;                                      \
                d.chunker_params = &cp;                                           \
        } while (0)
#define EXPECT(result)                                                            \
        do {                                                                      \
                buf = wrap(&d, &len);                                             \
                assert_int_equal(release_file_parse(buf, len, "built", &back), result); \
                if (result == 0)                                                  \
                        release_free(back);                                       \
                else                                                              \
                        assert_null(back);                                        \
                back = NULL;                                                      \
                free(buf);                                                        \
        } while (0)

        RESET();
        EXPECT(0);

        RESET();
        d.chunker_params = NULL;
        EXPECT(-EBADMSG);
        RESET();
        cp.chunk_hash_length = 3;
        desc[0].checksum.len = desc[1].checksum.len = 3;
        EXPECT(-EBADMSG);
        RESET();
        cp.chunk_hash_length = 65;
        desc[0].checksum.len = desc[1].checksum.len = 65;
        EXPECT(-EBADMSG);
        RESET();
        desc[1].checksum.len = 15;
        EXPECT(-EBADMSG);
        RESET();
        d.source_checksum.len = 0;
        EXPECT(-EBADMSG);
        RESET();
        d.source_checksum.len = 65;
        EXPECT(-EBADMSG);
        RESET();
        order[2] = 2;
        EXPECT(-EBADMSG);
        RESET();
        d.source_total_size = 399;
        EXPECT(-EBADMSG);
        RESET();
        d.source_total_size = 401;
        EXPECT(-EBADMSG);
        RESET();
        desc[1].source_size = 0;
        EXPECT(-EBADMSG);
        RESET();
        desc[0].source_size = UINT32_MAX;
        /* The sum 2 * UINT32_MAX + 200 would be 198 in 32 bits. */
        d.source_total_size = 198;
        EXPECT(-EBADMSG);

        /* The wrong magic, checksum redone. */
        RESET();
        buf = wrap(&d, &len);
        buf[4] = '2';
        hash_buffer(buf, len - 64, buf + len - 64);
        assert_int_equal(release_file_parse(buf, len, "built", &back), -EBADMSG);
        free(buf);

        /* An empty-message flood stays inside the budget and fails. */
        {
                const size_t count = 2u << 20;
                bool measure;
                long before, after;
                size_t n = 2 * count;
                uint8_t *f = malloc(14 + n + 64);
                uint64_t le = htole64(n);
                assert_non_null(f);
                memcpy(f, "IHOP1\0", 6);
                memcpy(f + 6, &le, 8);
                for (size_t i = 0; i < count; i++) {
                        f[14 + 2 * i] = (5 << 3) | 2;
                        f[14 + 2 * i + 1] = 0;
                }
                hash_buffer(f, 14 + n, f + 14 + n);
                measure = reset_hwm();
                before = vm_hwm_kib();
                assert_int_equal(release_file_parse(f, 14 + n + 64, "flood", &back), -EBADMSG);
                assert_null(back);
                after = vm_hwm_kib();
                if (measure && before > 0 && after > 0) {
                        /* Unbudgeted, 2M descriptors cost over 100 MiB; budgeted, about 30. */
                        print_message("peak RSS grew by %ld KiB\n", after - before);
                        assert_true(after - before < 64 * 1024);
                }
                free(f);
        }
#undef RESET
#undef EXPECT
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_file_layout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_any_byte_flip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated_and_trailing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
                cmocka_unit_test(test_bad_content),
                cmocka_unit_test_setup_teardown(test_temp_file_is_hidden, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mode_follows_umask, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_is_not_a_release, setup, teardown),
                cmocka_unit_test_setup_teardown(test_is_complete, setup, teardown),
        };

        return cmocka_run_group_tests(tests, group_setup, NULL);
}
