#include "image_map.h"

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "release_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { STATE_UNKNOWN = 0, STATE_GOOD = 1, STATE_BAD = 2 };

int image_map_new(struct store *store, struct release *release, bool verify, struct image_map **out)
{
        struct image_map *m = calloc(1, sizeof(*m));
        struct rlimit rl;
        uint64_t off = 0;

        if (!m)
                return -ENOMEM;
        m->store = store;
        m->release = release;
        m->verify = verify;
        m->size = release->source_total_size;
        m->starts = malloc((release->n_order + 1) * sizeof(*m->starts));
        m->fds = malloc((release->n_chunks ? release->n_chunks : 1) * sizeof(*m->fds));
        m->verified = calloc(release->n_chunks ? release->n_chunks : 1, sizeof(*m->verified));
        if (!m->starts || !m->fds || !m->verified) {
                image_map_free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < release->n_order; i++) {
                m->starts[i] = off;
                off += release->chunks[release->order[i]].source_size;
        }
        m->starts[release->n_order] = off;
        for (size_t i = 0; i < release->n_chunks; i++)
                atomic_init(&m->fds[i], -1);
        /* One descriptor per chunk stays open: ask for as many as we may use. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        *out = m;
        return 0;
}

void image_map_free(struct image_map *m)
{
        if (!m)
                return;
        if (m->fds)
                for (size_t i = 0; i < m->release->n_chunks; i++)
                        if (atomic_load(&m->fds[i]) >= 0)
                                close(atomic_load(&m->fds[i]));
        free(m->starts);
        free(m->fds);
        free(m->verified);
        release_free(m->release);
        store_close(m->store);
        free(m);
}

/* Index in image order of the chunk holding offset (offset < size). */
static size_t find_position(const struct image_map *m, uint64_t offset)
{
        size_t lo = 0, hi = m->release->n_order;

        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (m->starts[mid] <= offset)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

static void log_chunk_problem(struct image_map *m, uint32_t idx, const char *what)
{
        char rel[STORE_CHUNK_PATH_MAX];

        store_chunk_relpath(m->release->chunks[idx].hash, m->release->hash_len, rel);
        log_error("%s/%s/%s %s", m->store->path, STORE_CHUNKS_DIR, rel, what);
}

/* The open descriptor of a chunk, opening (and with verify, checking) it on first use. */
static int chunk_fd(struct image_map *m, uint32_t idx)
{
        int fd = atomic_load_explicit(&m->fds[idx], memory_order_acquire);
        int expected = -1;

        if (fd < 0) {
                fd = store_chunk_open(m->store, &m->release->chunks[idx], m->release->hash_len);
                if (fd < 0) {
                        unsigned char s = STATE_UNKNOWN;
                        if (atomic_compare_exchange_strong(&m->verified[idx], &s, STATE_BAD))
                                log_chunk_problem(m, idx, fd == -ENOENT ? "is missing" : "cannot be opened");
                        return -EIO;
                }
                if (!atomic_compare_exchange_strong(&m->fds[idx], &expected, fd)) {
                        close(fd);
                        fd = expected;
                }
        }
        if (m->verify) {
                unsigned char s = atomic_load_explicit(&m->verified[idx], memory_order_acquire);
                if (s == STATE_BAD)
                        return -EIO;
                if (s == STATE_UNKNOWN) {
                        bool good = store_fd_holds_chunk(fd, &m->release->chunks[idx], m->release->hash_len);
                        unsigned char unknown = STATE_UNKNOWN;
                        if (atomic_compare_exchange_strong(&m->verified[idx], &unknown,
                                                           good ? STATE_GOOD : STATE_BAD) &&
                            !good)
                                log_chunk_problem(m, idx, "is corrupt: reads of it fail with EIO");
                        if (!good)
                                return -EIO;
                }
        }
        return fd;
}

int image_map_read(struct image_map *m, void *buf, size_t len, uint64_t offset)
{
        uint8_t *out = buf;

        if (offset > m->size || len > m->size - offset)
                return -EINVAL;
        if (len == 0)
                return 0;
        size_t pos = find_position(m, offset);
        while (len > 0) {
                uint32_t idx = m->release->order[pos];
                uint64_t in_chunk = offset - m->starts[pos];
                uint64_t avail = m->starts[pos + 1] - offset;
                size_t take = len < avail ? len : (size_t)avail;
                int fd = chunk_fd(m, idx);
                if (fd < 0)
                        return fd;
                ssize_t n = pread_full(fd, out, take, in_chunk);
                if (n != (ssize_t)take) {
                        unsigned char s = STATE_UNKNOWN;
                        if (atomic_compare_exchange_strong(&m->verified[idx], &s, STATE_BAD))
                                log_chunk_problem(m, idx, n < 0 ? "cannot be read" : "is shorter than its size");
                        return -EIO;
                }
                out += take;
                offset += take;
                len -= take;
                pos++;
        }
        return 0;
}

/* A release missing chunks would serve EIO somewhere in the middle of a
 * file system: it is refused at the start, with where to look. Presence and
 * size only; contents are --verify's business, on first read. */
static int check_complete(struct image_map *m, const char *arg)
{
        const struct release *r = m->release;
        size_t missing = 0, damaged = 0, first = SIZE_MAX;
        enum chunk_state first_state = CHUNK_PRESENT;

        for (size_t i = 0; i < r->n_chunks; i++) {
                enum chunk_state state;
                int err = store_chunk_state(m->store, &r->chunks[i], r->hash_len, false, &state);
                if (err < 0) {
                        char rel[STORE_CHUNK_PATH_MAX];
                        store_chunk_relpath(r->chunks[i].hash, r->hash_len, rel);
                        return store_log_chunk_error(m->store, rel, err, "open");
                }
                if (state == CHUNK_PRESENT)
                        continue;
                missing += state == CHUNK_MISSING;
                damaged += state == CHUNK_CORRUPT;
                if (first == SIZE_MAX) {
                        first = i;
                        first_state = state;
                }
        }
        if (first == SIZE_MAX)
                return 0;

        char rel[STORE_CHUNK_PATH_MAX];
        store_chunk_relpath(r->chunks[first].hash, r->hash_len, rel);
        log_error("%s is incomplete: %zu of its %zu chunks missing, %zu of the wrong size (first: %s/%s/%s %s); "
                  "`ihop verify` lists them, `ihop verify --repair ARCHIVE` fetches them again",
                  arg, missing, r->n_chunks, damaged, m->store->path, STORE_CHUNKS_DIR, rel,
                  first_state == CHUNK_MISSING ? "is missing" : "has the wrong size");
        return -EIO;
}

int image_map_open(const char *arg, bool verify, struct image_map **out, char **name)
{
        struct store *s = NULL;
        struct release *r = NULL;
        char *n = NULL;
        int err;

        err = release_file_open(arg, &s, &n, &r);
        if (err < 0)
                return err;
        err = image_map_new(s, r, verify, out);
        if (err < 0) {
                release_free(r);
                store_close(s);
                free(n);
                return log_errno(err, "cannot map release %s", arg);
        }
        err = check_complete(*out, arg);
        if (err < 0) {
                image_map_free(*out);
                *out = NULL;
                free(n);
                return err;
        }
        if (name)
                *name = n;
        else
                free(n);
        return 0;
}
