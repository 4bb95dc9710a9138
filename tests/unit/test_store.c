// SPDX-License-Identifier: MIT
/* store.c: chunk paths, release names, and the write → verify → commit
 * life of a chunk in a temporary store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "unit_helpers.h"

#include "hash.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct ctx {
        char dir[64];
        char store_path[128];
        struct store *store;
};

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));

        if (!c)
                return -1;
        strcpy(c->dir, "/tmp/ihop-test-store-XXXXXX");
        if (!mkdtemp(c->dir))
                return -1;
        /* A store one level down, so that store_open has to create it. */
        snprintf(c->store_path, sizeof(c->store_path), "%s/sub/store", c->dir);
        if (store_open(c->store_path, true, &c->store) < 0)
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

/* Test data and its chunk, hash truncated to hash_len. */
static void make_chunk(struct chunk *c, const uint8_t *data, uint32_t size, size_t hash_len)
{
        uint8_t digest[HASH_MAX_LEN];

        memset(c, 0, sizeof(*c));
        hash_buffer(data, size, digest);
        memcpy(c->hash, digest, hash_len);
        c->source_size = size;
}

static uint8_t *pattern(size_t len, unsigned seed)
{
        uint8_t *p = malloc(len ? len : 1);
        uint32_t x = seed * 2654435761u + 1;

        assert_non_null(p);
        for (size_t i = 0; i < len; i++) {
                x = x * 1103515245u + 12345u;
                p[i] = (uint8_t)(x >> 16);
        }
        return p;
}

static void chunk_full_path(struct ctx *c, const struct chunk *ch, size_t hash_len, char *out, size_t len)
{
        char rel[STORE_CHUNK_PATH_MAX];

        store_chunk_relpath(ch->hash, hash_len, rel);
        snprintf(out, len, "%s/%s/%s", c->store_path, STORE_CHUNKS_DIR, rel);
}

/* Counts the regular files under dir (recursively) whose name contains mark. */
static int count_files(const char *dir, const char *mark)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        int n = 0;

        if (!d)
                return 0;
        while ((e = readdir(d))) {
                char path[1024];
                struct stat st;

                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (lstat(path, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        n += count_files(path, mark);
                else if (!mark || strstr(e->d_name, mark))
                        n++;
        }
        closedir(d);
        return n;
}

static int chunks_files(struct ctx *c, const char *mark)
{
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", c->store_path, STORE_CHUNKS_DIR);
        return count_files(path, mark);
}

static uint8_t *slurp(const char *path, size_t *len)
{
        struct stat st;
        int fd = open(path, O_RDONLY);
        uint8_t *buf;

        if (fd < 0)
                return NULL;
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
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

static void mkdir_for(const char *file)
{
        char dir[1024];
        char *slash;

        snprintf(dir, sizeof(dir), "%s", file);
        slash = strrchr(dir, '/');
        assert_non_null(slash);
        *slash = '\0';
        assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
}

/* ---- paths and names -------------------------------------------------- */

static void test_chunk_relpath(void **state)
{
        static const uint8_t h4[4] = { 0xab, 0xcd, 0x01, 0x23 };
        uint8_t h64[64];
        char buf[STORE_CHUNK_PATH_MAX], expect[STORE_CHUNK_PATH_MAX];

        store_chunk_relpath(h4, 4, buf);
        assert_string_equal(buf, "abcd/abcd0123.chunk");

        static const uint8_t h8[8] = { 0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x0F, 0xF0, 0x99 };
        store_chunk_relpath(h8, 8, buf);
        assert_string_equal(buf, "dead/deadbeef000ff099.chunk");

        for (int i = 0; i < 64; i++)
                h64[i] = (uint8_t)i;
        store_chunk_relpath(h64, 64, buf);
        strcpy(expect, "0001/");
        for (int i = 0; i < 64; i++)
                sprintf(expect + strlen(expect), "%02x", i);
        strcat(expect, ".chunk");
        assert_string_equal(buf, expect);
        assert_int_equal(strlen(buf), 5 + 128 + 6);

        /* Only hash_len bytes are used. */
        store_chunk_relpath(h64, 5, buf);
        assert_string_equal(buf, "0001/0001020304.chunk");

        /* The known hash of a known input. */
        uint8_t digest[HASH_MAX_LEN];
        hash_buffer("", 0, digest);
        store_chunk_relpath(digest, 64, buf);
        assert_string_equal(buf, "786a/786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419"
                                 "d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce.chunk");
}

static void test_release_name_valid(void **state)
{
        assert_false(store_release_name_valid(""));
        assert_false(store_release_name_valid(".x"));
        assert_false(store_release_name_valid("."));
        assert_false(store_release_name_valid(".."));
        assert_false(store_release_name_valid("a/b"));
        assert_false(store_release_name_valid("/a"));
        assert_false(store_release_name_valid("a/"));
        assert_false(store_release_name_valid("chunks"));
        assert_true(store_release_name_valid("release_v2"));
        assert_true(store_release_name_valid("x"));
        assert_true(store_release_name_valid("v1.ext4"));
        assert_true(store_release_name_valid("chunks2"));
        assert_true(store_release_name_valid("a.b"));
        /* Temp files are never releases, and no release name looks like one. */
        assert_false(store_release_name_valid("keep.tmp-release"));
        assert_false(store_release_name_valid("a.tmp-"));
        assert_false(store_release_name_valid(".a.tmp-Ab12Cd"));
        assert_false(store_release_name_valid("x.tmp-123.4"));
        assert_true(store_release_name_valid("a.tmp"));
        assert_true(store_release_name_valid("tmp-a"));
        assert_true(store_release_name_valid("a-tmp-b"));
        assert_true(store_release_name_valid("a,b\\c"));
        char longname[300];
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_false(store_release_name_valid(longname));
}

static void split_ok(const char *arg, const char *store, const char *name)
{
        char *sp = NULL, *n = NULL;

        assert_int_equal(store_split_release_path(arg, &sp, &n), 0);
        assert_non_null(sp);
        assert_non_null(n);
        assert_string_equal(sp, store);
        assert_string_equal(n, name);
        free(sp);
        free(n);
}

static void split_bad(const char *arg)
{
        /* Callers free both with _cleanup_free_, so failure must leave them
         * NULL (or allocated), never dangling: freeing here must be safe. */
        char *sp = NULL, *n = NULL;

        assert_int_equal(store_split_release_path(arg, &sp, &n), -EINVAL);
        free(sp);
        free(n);
}

static void test_split_release_path(void **state)
{
        split_ok("a/b/c", "a/b", "c");
        split_ok("c", ".", "c");
        split_ok("/c", "/", "c");
        split_ok("/srv/store/release_v2", "/srv/store", "release_v2");
        split_ok("./x", ".", "x");
        split_ok("a/b/c/", "a/b", "c");
        split_ok("a/b/c///", "a/b", "c");
        split_ok("c/", ".", "c");
        split_ok("/c/", "/", "c");
        split_bad("/");
        split_bad("");
        split_bad("a/.hidden");
        split_bad("store/chunks");
        split_bad("store/..");
        split_bad("store/.");
        split_bad("store/keep.tmp-release");
}

/* ---- store_open ------------------------------------------------------- */

static void test_open(void **state)
{
        struct ctx *c = *state;
        struct store *s = NULL;
        char path[512];
        struct stat st;

        /* Created: the store and its chunks/ directory. */
        snprintf(path, sizeof(path), "%s/%s", c->store_path, STORE_CHUNKS_DIR);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_string_equal(store_path(c->store), c->store_path);

        /* Opened again, without creating. */
        assert_int_equal(store_open(c->store_path, false, &s), 0);
        store_close(s);
        s = NULL;
        /* Opened with create on an existing store. */
        assert_int_equal(store_open(c->store_path, true, &s), 0);
        store_close(s);
        s = NULL;

        /* Missing, or a directory without chunks/: not a store. */
        snprintf(path, sizeof(path), "%s/nothing", c->dir);
        assert_true(store_open(path, false, &s) < 0);
        assert_null(s);
        snprintf(path, sizeof(path), "%s/sub", c->dir);
        assert_int_equal(store_open(path, false, &s), -ENOENT);
        assert_null(s);
        store_close(NULL);
}

/* ---- releases: the files at the top of a store ------------------------ */

static void test_chunk_path_for_messages(void **state)
{
        struct ctx *c = *state;
        static const uint8_t h4[4] = { 0xab, 0xcd, 0x01, 0x23 };
        char buf[STORE_CHUNK_SHOWN_MAX], expect[512];

        snprintf(expect, sizeof(expect), "%s/chunks/abcd/abcd0123.chunk", c->store_path);
        assert_ptr_equal(store_chunk_path(c->store, h4, 4, buf), buf);
        assert_string_equal(buf, expect);
}

static void write_description(struct ctx *c, const char *name, size_t len)
{
        uint8_t *data = pattern(len, 7);

        memcpy(data, store_release_magic, STORE_RELEASE_MAGIC_LEN);
        assert_int_equal(store_release_write(c->store, name, data, len), 0);
        free(data);
}

static void test_release_files(void **state)
{
        struct ctx *c = *state;
        uint8_t *buf = NULL, *expect = pattern(300, 7);
        char path[512], **names = NULL;
        size_t len, n;

        memcpy(expect, store_release_magic, STORE_RELEASE_MAGIC_LEN);
        assert_false(store_release_exists(c->store, "rel"));
        write_description(c, "rel", 300);
        assert_true(store_release_exists(c->store, "rel"));
        /* No temp file is left beside it. */
        assert_int_equal(count_files(c->store_path, STORE_TMP_MARK), 0);

        assert_int_equal(store_release_read(c->store, "rel", &buf, &len), 0);
        assert_int_equal(len, 300);
        assert_memory_equal(buf, expect, 300);
        free(buf);
        buf = NULL;

        /* Listed by its magic: a file without it is no release. */
        snprintf(path, sizeof(path), "%s/notes", c->store_path);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("IHOP2 and more", f);
        fclose(f);
        assert_int_equal(store_list_releases(c->store, &names, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(names[0], "rel");
        assert_null(names[1]);
        store_free_names(names);
        assert_true(store_release_magic_ok(expect, STORE_RELEASE_MAGIC_LEN));
        assert_false(store_release_magic_ok(expect, STORE_RELEASE_MAGIC_LEN - 1));
        assert_false(store_release_magic_ok((const uint8_t *)"IHOP2", 6));

        /* Too large to be a description, not a regular file, a symlink, missing. */
        assert_int_equal(truncate(path, (off_t)STORE_RELEASE_MAX_SIZE + 1), 0);
        assert_int_equal(store_release_read(c->store, "notes", &buf, &len), -EBADMSG);
        assert_int_equal(store_release_read(c->store, STORE_CHUNKS_DIR, &buf, &len), -EBADMSG);
        snprintf(path, sizeof(path), "%s/link", c->store_path);
        assert_int_equal(symlink("rel", path), 0);
        assert_int_equal(store_release_read(c->store, "link", &buf, &len), -ELOOP);
        assert_int_equal(store_release_read(c->store, "nothing", &buf, &len), -ENOENT);
        assert_null(buf);

        /* A FIFO nobody writes to under a release's name: refused at once
         * (an open without O_NONBLOCK would wait for ever), and not listed. */
        snprintf(path, sizeof(path), "%s/fifo", c->store_path);
        assert_int_equal(mkfifo(path, 0644), 0);
        assert_int_equal(store_release_read(c->store, "fifo", &buf, &len), -EBADMSG);
        assert_null(buf);
        assert_int_equal(store_list_releases(c->store, &names, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(names[0], "rel");
        store_free_names(names);

        /* Removed: gone, and a second time -ENOENT; other files stay. */
        assert_int_equal(store_release_remove(c->store, "rel"), 0);
        assert_false(store_release_exists(c->store, "rel"));
        assert_int_equal(store_release_remove(c->store, "rel"), -ENOENT);
        assert_true(store_release_exists(c->store, "notes"));
        assert_true(store_release_exists(c->store, "link"));
        free(expect);
}

static void test_release_write_replaces_atomically(void **state)
{
        struct ctx *c = *state;
        uint8_t *buf = NULL;
        size_t len;

        write_description(c, "rel", 1000);
        write_description(c, "rel", 20);
        assert_int_equal(store_release_read(c->store, "rel", &buf, &len), 0);
        assert_int_equal(len, 20);
        free(buf);
        assert_int_equal(count_files(c->store_path, STORE_TMP_MARK), 0);
        /* A name too long for its temp file's: refused, nothing written. */
        char name[NAME_MAX + 1];
        memset(name, 'n', NAME_MAX - 2);
        name[NAME_MAX - 2] = '\0';
        uint8_t data[STORE_RELEASE_MAGIC_LEN + 1] = {};
        assert_int_equal(store_release_write(c->store, name, data, sizeof(data)), -ENAMETOOLONG);
        assert_false(store_release_exists(c->store, name));
}

/* A listing of the store's directories goes through dir_iter: every entry, once. */
static void test_dir_iter_of_the_store(void **state)
{
        struct ctx *c = *state;
        struct dir_iter it = {};
        const struct dirent *e;
        int r, seen = 0;

        write_description(c, "a", 100);
        write_description(c, "b", 100);
        assert_int_equal(store_dir_iter_open(c->store, STORE_DIR_TOP, &it), 0);
        while ((r = dir_iter_next(&it, &e)) > 0)
                seen |= strcmp(e->d_name, "a") == 0 ? 1 : strcmp(e->d_name, "b") == 0 ? 2 :
                        strcmp(e->d_name, STORE_CHUNKS_DIR) == 0 ? 4 : 8;
        assert_int_equal(r, 0);
        assert_int_equal(seen, 7);
        dir_iter_close(&it);
        assert_int_equal(store_dir_iter_open(c->store, STORE_DIR_CHUNKS, &it), 0);
        assert_int_equal(dir_iter_next(&it, &e), 0); /* nothing stored yet */
        dir_iter_close(&it);
}

/* ---- chunk life ------------------------------------------------------- */

static void write_chunk(struct store *s, struct store_batch *b, const struct chunk *ch, size_t hash_len,
                        const uint8_t *data, size_t piece)
{
        struct chunk_writer w;

        assert_int_equal(chunk_writer_begin(&w, s, ch, hash_len), 0);
        for (size_t off = 0; off < ch->source_size; off += piece) {
                size_t n = ch->source_size - off < piece ? ch->source_size - off : piece;
                assert_int_equal(chunk_writer_write(&w, data + off, n), 0);
        }
        assert_int_equal(chunk_writer_finish(&w), 0);
        assert_int_equal(store_batch_add(b, &w), 0);
}

static void test_write_commit(void **state)
{
        struct ctx *c = *state;
        const uint32_t size = 300000;
        uint8_t *data = pattern(size, 1), *back;
        struct chunk ch;
        struct store_batch b;
        enum chunk_state st = CHUNK_CORRUPT;
        char path[1024];
        size_t len;

        for (size_t hash_len = HASH_MIN_LEN; hash_len <= HASH_MAX_LEN; hash_len += 30) {
                make_chunk(&ch, data, size, hash_len);
                chunk_full_path(c, &ch, hash_len, path, sizeof(path));

                assert_int_equal(store_chunk_state(c->store, &ch, hash_len, true, &st), 0);
                assert_int_equal(st, CHUNK_MISSING);
                assert_int_equal(store_chunk_open(c->store, &ch, hash_len), -ENOENT);

                store_batch_init(&b, c->store);
                write_chunk(c->store, &b, &ch, hash_len, data, 4093);
                assert_int_equal(b.n, 1);
                assert_int_equal(b.bytes, size);
                /* Verified but not committed: a temp file, no final name. */
                assert_int_equal(access(path, F_OK), -1);
                assert_int_equal(chunks_files(c, STORE_TMP_MARK), 1);
                assert_int_equal(store_chunk_state(c->store, &ch, hash_len, true, &st), 0);
                assert_int_equal(st, CHUNK_MISSING);

                assert_int_equal(store_batch_commit(&b), 0);
                assert_int_equal(b.n, 0);
                assert_int_equal(chunks_files(c, STORE_TMP_MARK), 0);
                back = slurp(path, &len);
                assert_non_null(back);
                assert_int_equal(len, size);
                assert_memory_equal(back, data, size);
                free(back);

                st = CHUNK_MISSING;
                assert_int_equal(store_chunk_state(c->store, &ch, hash_len, true, &st), 0);
                assert_int_equal(st, CHUNK_PRESENT);
                st = CHUNK_MISSING;
                assert_int_equal(store_chunk_state(c->store, &ch, hash_len, false, &st), 0);
                assert_int_equal(st, CHUNK_PRESENT);

                int fd = store_chunk_open(c->store, &ch, hash_len);
                assert_true(fd >= 0);
                close(fd);

                /* Committing an empty batch is a no-op. */
                assert_int_equal(store_batch_commit(&b), 0);
                store_batch_free(&b);
        }
        /* Two hash lengths of the same data share a fan-out directory but
         * not a file: 3 hash lengths, 3 files, 1 directory. */
        assert_int_equal(chunks_files(c, NULL), 3);
        free(data);
}

static void test_batch_many(void **state)
{
        struct ctx *c = *state;
        enum { N = 150 };
        struct chunk ch[N];
        uint8_t *data[N];
        struct store_batch b;
        enum chunk_state st;

        store_batch_init(&b, c->store);
        for (int i = 0; i < N; i++) {
                uint32_t size = 1 + (uint32_t)i * 97;
                data[i] = pattern(size, 100 + i);
                make_chunk(&ch[i], data[i], size, 16);
                write_chunk(c->store, &b, &ch[i], 16, data[i], i % 2 ? 1 : size);
        }
        assert_int_equal(b.n, N); /* the batch grew past its first 64 */
        assert_int_equal(chunks_files(c, STORE_TMP_MARK), N);
        assert_int_equal(store_batch_commit(&b), 0);
        assert_int_equal(chunks_files(c, STORE_TMP_MARK), 0);
        assert_int_equal(chunks_files(c, ".chunk"), N);
        for (int i = 0; i < N; i++) {
                char path[1024];
                size_t len;
                uint8_t *back;

                assert_int_equal(store_chunk_state(c->store, &ch[i], 16, true, &st), 0);
                assert_int_equal(st, CHUNK_PRESENT);
                chunk_full_path(c, &ch[i], 16, path, sizeof(path));
                back = slurp(path, &len);
                assert_int_equal(len, ch[i].source_size);
                assert_memory_equal(back, data[i], len);
                free(back);
                free(data[i]);
        }
        store_batch_free(&b);
        assert_null(b.tmp);
        assert_int_equal(b.cap, 0);
}

static void test_wrong_data(void **state)
{
        struct ctx *c = *state;
        const uint32_t size = 5000;
        uint8_t *data = pattern(size, 2);
        struct chunk ch;
        struct chunk_writer w;
        enum chunk_state st;
        char path[1024];

        make_chunk(&ch, data, size, 32);
        chunk_full_path(c, &ch, 32, path, sizeof(path));

        /* Same size, one byte different. */
        data[1234] ^= 1;
        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, 32), 0);
        assert_int_equal(chunk_writer_write(&w, data, size), 0);
        assert_int_equal(chunk_writer_finish(&w), -EBADMSG);
        assert_int_equal(chunks_files(c, NULL), 0);
        data[1234] ^= 1;

        /* Short. */
        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, 32), 0);
        assert_int_equal(chunk_writer_write(&w, data, size - 1), 0);
        assert_int_equal(chunk_writer_finish(&w), -EBADMSG);
        assert_int_equal(chunks_files(c, NULL), 0);

        /* Nothing at all. */
        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, 32), 0);
        assert_int_equal(chunk_writer_finish(&w), -EBADMSG);
        assert_int_equal(chunks_files(c, NULL), 0);

        /* Too long: refused at the write that overflows, in one go or after
         * the right bytes. */
        uint8_t *longer = pattern(size + 1, 3);
        memcpy(longer, data, size);
        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, 32), 0);
        assert_int_equal(chunk_writer_write(&w, longer, size + 1), -EBADMSG);
        chunk_writer_abort(&w);
        assert_int_equal(chunks_files(c, NULL), 0);

        assert_int_equal(chunk_writer_begin(&w, c->store, &ch, 32), 0);
        assert_int_equal(chunk_writer_write(&w, data, size), 0);
        assert_int_equal(chunk_writer_write(&w, longer + size, 1), -EBADMSG);
        assert_int_equal(w.written, size);
        chunk_writer_abort(&w);
        assert_int_equal(chunks_files(c, NULL), 0);
        /* Abort twice is harmless. */
        chunk_writer_abort(&w);

        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(store_chunk_state(c->store, &ch, 32, true, &st), 0);
        assert_int_equal(st, CHUNK_MISSING);

        /* A writer can still succeed afterwards. */
        struct store_batch b;
        store_batch_init(&b, c->store);
        write_chunk(c->store, &b, &ch, 32, data, size);
        assert_int_equal(store_batch_commit(&b), 0);
        store_batch_free(&b);
        assert_int_equal(store_chunk_state(c->store, &ch, 32, true, &st), 0);
        assert_int_equal(st, CHUNK_PRESENT);
        free(longer);
        free(data);
}

static void test_corrupt_final(void **state)
{
        struct ctx *c = *state;
        const uint32_t size = 200000;
        uint8_t *data = pattern(size, 4);
        struct chunk ch;
        enum chunk_state st;
        char path[1024];

        make_chunk(&ch, data, size, 64);
        chunk_full_path(c, &ch, 64, path, sizeof(path));
        mkdir_for(path);

        /* Right size, wrong content (last byte): only verify notices. */
        data[size - 1] ^= 0x40;
        write_raw(path, data, size);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, false, &st), 0);
        assert_int_equal(st, CHUNK_PRESENT);

        /* Wrong size: corrupt either way. */
        data[size - 1] ^= 0x40;
        write_raw(path, data, size - 1);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, false, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        write_raw(path, data, size);
        {
                int fd = open(path, O_WRONLY | O_APPEND);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, "x", 1), 1);
                close(fd);
        }
        assert_int_equal(store_chunk_state(c->store, &ch, 64, false, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);

        /* Right content: present. */
        write_raw(path, data, size);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_PRESENT);

        /* A directory in its place is not a chunk. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, false, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        assert_int_equal(rmdir(path), 0);

        /* A chunk larger than the read block, checked in pieces. */
        const uint32_t big = (1u << 20) + 17;
        uint8_t *bigdata = pattern(big, 5);
        struct chunk bc;
        make_chunk(&bc, bigdata, big, 64);
        chunk_full_path(c, &bc, 64, path, sizeof(path));
        mkdir_for(path);
        write_raw(path, bigdata, big);
        assert_int_equal(store_chunk_state(c->store, &bc, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_PRESENT);
        bigdata[big / 2] ^= 1;
        write_raw(path, bigdata, big);
        assert_int_equal(store_chunk_state(c->store, &bc, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        free(bigdata);
        free(data);
}

static void test_missing(void **state)
{
        struct ctx *c = *state;
        struct chunk ch;
        enum chunk_state st = CHUNK_PRESENT;

        make_chunk(&ch, (const uint8_t *)"hello", 5, 64);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_MISSING);
        st = CHUNK_PRESENT;
        assert_int_equal(store_chunk_state(c->store, &ch, 64, false, &st), 0);
        assert_int_equal(st, CHUNK_MISSING);
}

static void test_discard(void **state)
{
        struct ctx *c = *state;
        struct store_batch b;
        struct chunk ch[3];
        uint8_t *data[3];
        enum chunk_state st;

        store_batch_init(&b, c->store);
        for (int i = 0; i < 3; i++) {
                data[i] = pattern(1000 + i, 10 + i);
                make_chunk(&ch[i], data[i], 1000 + i, 20);
                write_chunk(c->store, &b, &ch[i], 20, data[i], 100);
        }
        assert_int_equal(chunks_files(c, STORE_TMP_MARK), 3);
        store_batch_discard(&b);
        assert_int_equal(b.n, 0);
        assert_int_equal(b.bytes, 0);
        assert_int_equal(chunks_files(c, NULL), 0);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(store_chunk_state(c->store, &ch[i], 20, true, &st), 0);
                assert_int_equal(st, CHUNK_MISSING);
        }
        /* Committing after a discard moves nothing. */
        assert_int_equal(store_batch_commit(&b), 0);
        assert_int_equal(chunks_files(c, NULL), 0);
        /* Discard after commit leaves committed chunks alone. */
        write_chunk(c->store, &b, &ch[0], 20, data[0], 1000);
        assert_int_equal(store_batch_commit(&b), 0);
        store_batch_discard(&b);
        assert_int_equal(chunks_files(c, NULL), 1);
        assert_int_equal(store_chunk_state(c->store, &ch[0], 20, true, &st), 0);
        assert_int_equal(st, CHUNK_PRESENT);
        store_batch_free(&b);
        for (int i = 0; i < 3; i++)
                free(data[i]);
        assert_int_equal(store_sync(c->store), 0);
}

/* Re-writing a chunk that is already there replaces it with the same bytes. */
static void test_rewrite_existing(void **state)
{
        struct ctx *c = *state;
        uint8_t *data = pattern(777, 6);
        struct chunk ch;
        struct store_batch b;
        enum chunk_state st;
        char path[1024];

        make_chunk(&ch, data, 777, 64);
        chunk_full_path(c, &ch, 64, path, sizeof(path));
        mkdir_for(path);
        data[0] ^= 1;
        write_raw(path, data, 777); /* a corrupt copy */
        data[0] ^= 1;
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_CORRUPT);
        store_batch_init(&b, c->store);
        write_chunk(c->store, &b, &ch, 64, data, 777);
        assert_int_equal(store_batch_commit(&b), 0);
        store_batch_free(&b);
        assert_int_equal(store_chunk_state(c->store, &ch, 64, true, &st), 0);
        assert_int_equal(st, CHUNK_PRESENT);
        assert_int_equal(chunks_files(c, NULL), 1);
        free(data);
}

/* ---- symlinks planted in a store ----------------------------------------
 * Checked twice: with openat2 (RESOLVE_NO_SYMLINKS), and in a child process
 * whose seccomp filter answers openat2 with ENOSYS, as a kernel before 5.6
 * does, so that the fallback (one directory at a time, O_NOFOLLOW) runs. The
 * checks return the failing line (0: all passed), usable in either. */

#define CHECK(cond)                                                                                   \
        do {                                                                                          \
                if (!(cond)) {                                                                        \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
                        return __LINE__;                                                              \
                }                                                                                     \
        } while (0)

static bool file_exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

static int symlink_checks(const char *dir)
{
        char store_path[256], outside[256], path[1024], target[1024], rel[STORE_CHUNK_PATH_MAX];
        const uint32_t size = 5000;
        uint8_t *a = pattern(size, 1), *b = pattern(size, 2);
        struct store *s = NULL, *s2 = NULL;
        struct chunk ca, cb;
        struct chunk_writer w;
        struct store_batch batch;
        enum chunk_state state;
        bool recovered;
        int fd;

        snprintf(store_path, sizeof(store_path), "%s/store", dir);
        snprintf(outside, sizeof(outside), "%s/outside", dir);
        CHECK(mkdir(outside, 0755) == 0);
        CHECK(store_open(store_path, true, &s) == 0);
        make_chunk(&ca, a, size, 64);
        make_chunk(&cb, b, size, 64);
        CHECK(memcmp(ca.hash, cb.hash, 2) != 0);

        /* A stored chunk A, readable. */
        store_batch_init(&batch, s);
        CHECK(chunk_writer_begin(&w, s, &ca, 64) == 0);
        CHECK(chunk_writer_write(&w, a, size) == 0 && chunk_writer_finish(&w) == 0);
        CHECK(store_batch_add(&batch, &w) == 0 && store_batch_commit(&batch) == 0);
        store_batch_free(&batch);
        fd = store_chunk_open(s, &ca, 64);
        CHECK(fd >= 0);
        close(fd);

        /* B's fan-out directory is a symlink to a directory outside holding B. */
        store_chunk_relpath(cb.hash, 64, rel);
        snprintf(target, sizeof(target), "%s/%.4s", outside, rel);
        CHECK(mkdir(target, 0755) == 0);
        snprintf(path, sizeof(path), "%s/%s", outside, rel);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        CHECK(fd >= 0 && write(fd, b, size) == (ssize_t)size);
        close(fd);
        snprintf(path, sizeof(path), "%s/chunks/%.4s", store_path, rel);
        CHECK(symlink(target, path) == 0);
        /* Not read through, */
        CHECK(store_chunk_open(s, &cb, 64) == -ELOOP);
        CHECK(store_chunk_state(s, &cb, 64, true, &state) == -ELOOP);
        /* not written through: nothing new appears outside, */
        CHECK(chunk_writer_begin(&w, s, &cb, 64) == -ELOOP);
        CHECK(count_files(outside, NULL) == 1);
        /* not listed: a killed clone's "temp file" there is neither taken nor removed. */
        snprintf(path, sizeof(path), "%s/%s.tmp-999999999.1", outside, rel);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        CHECK(fd >= 0 && write(fd, b, size) == (ssize_t)size);
        close(fd);
        CHECK(store_chunk_recover(s, &cb, 64, &recovered) < 0 && !recovered);
        CHECK(file_exists(path));

        /* A's chunk file becomes a symlink to a copy outside: not read through. */
        store_chunk_relpath(ca.hash, 64, rel);
        snprintf(target, sizeof(target), "%s/a-copy", outside);
        fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0644);
        CHECK(fd >= 0 && write(fd, a, size) == (ssize_t)size);
        close(fd);
        snprintf(path, sizeof(path), "%s/chunks/%s", store_path, rel);
        CHECK(unlink(path) == 0 && symlink(target, path) == 0);
        CHECK(store_chunk_open(s, &ca, 64) == -ELOOP);
        CHECK(store_chunk_state(s, &ca, 64, false, &state) == -ELOOP);
        store_close(s);

        /* STORE itself may be a symlink: followed. */
        snprintf(path, sizeof(path), "%s/store-link", dir);
        CHECK(symlink(store_path, path) == 0);
        CHECK(store_open(path, false, &s2) == 0);
        store_close(s2);
        s2 = NULL;

        /* chunks/ a symlink: the store is refused. */
        snprintf(path, sizeof(path), "%s/chunks", store_path);
        snprintf(target, sizeof(target), "%s/chunks-elsewhere", dir);
        CHECK(rename(path, target) == 0 && symlink(target, path) == 0);
        CHECK(store_open(store_path, false, &s2) < 0 && s2 == NULL);
        CHECK(store_open(store_path, true, &s2) < 0 && s2 == NULL);
        free(a);
        free(b);
        return 0;
}

static void test_symlinks_are_never_followed(void **state)
{
        struct ctx *c = *state;

        assert_int_equal(symlink_checks(c->dir), 0);
}

static void test_symlinks_are_never_followed_without_openat2(void **state)
{
        struct ctx *c = *state;
        struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                        _exit(254);
                /* The filter is in force: openat2 is gone. */
                struct open_how how = { .flags = O_RDONLY };
                if (syscall(__NR_openat2, AT_FDCWD, "/", &how, sizeof(how)) >= 0 || errno != ENOSYS)
                        _exit(253);
                _exit(symlink_checks(c->dir) == 0 ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 254) {
                /* qemu-user (the cross-built tests) cannot take a guest's
                 * seccomp filter; every kernel ihop runs on natively can. */
                print_message("no seccomp filter here (qemu-user?): the fallback is not tested\n");
                skip();
        }
        assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_chunk_relpath),
                cmocka_unit_test(test_release_name_valid),
                cmocka_unit_test(test_split_release_path),
                cmocka_unit_test_setup_teardown(test_open, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chunk_path_for_messages, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release_write_replaces_atomically, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dir_iter_of_the_store, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_batch_many, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_final, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rewrite_existing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlinks_are_never_followed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlinks_are_never_followed_without_openat2, setup, teardown),
        };

        return cmocka_run_group_tests(tests, group_setup, NULL);
}
