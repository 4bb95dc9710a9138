// SPDX-License-Identifier: MIT
#include "image_map.h"

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "release_file.h"
#include "worker_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* What is known of a chunk. Missing or unreadable chunks are not
 * remembered: a later read tries again (the chunk may have been repaired,
 * or the failure was for want of a descriptor). A chunk that failed
 * --verify stays failed: its content is wrong, and stays so. */
enum {
        STATE_READABLE = 1 << 0, /* opened (and with verify, hashed) once */
        STATE_CORRUPT = 1 << 1,
        STATE_ZERO = 1 << 2,     /* its hash is that of zeros: read without its file */
        STATE_REPORTED = 1 << 7, /* a problem with it was logged */
};

/* Zeros hashed at most, to find the chunks that hold nothing else. */
#define ZERO_HASH_BUDGET (64u << 20)
#define ZERO_SIZES 16u

/* An image's unused space is zeros, stored once per chunk size and used
 * many times: such a chunk is read as a memset, not a pread per chunk
 * (with small chunks, most of a sequential read of a mostly empty image).
 * A chunk is zeros when its hash is the hash of zeros of its size, which
 * is the very test that makes a chunk file stand for its content at all.
 * Only chunks used more than once are candidates, the most used first (an
 * image's free space is its most repeated chunk), and the hashing is
 * bounded: a release of many distinct sizes costs no more than that. */
static int more_used(const void *a, const void *b, void *uses)
{
        const uint8_t *u = uses;
        uint8_t x = u[*(const uint32_t *)a], y = u[*(const uint32_t *)b];

        return x > y ? -1 : x < y;
}

static void find_zero_chunks(struct image_map *m)
{
        static const uint8_t zeros[64 << 10];
        const struct release *r = m->release;
        struct {
                uint32_t size;
                uint8_t digest[HASH_MAX_LEN];
        } known[ZERO_SIZES];
        size_t n_known = 0, n_cand = 0;
        uint64_t hashed = 0;
        size_t slots = r->n_chunks ? r->n_chunks : 1;
        _cleanup_free_ uint8_t *uses = calloc(slots, 1);
        _cleanup_free_ uint32_t *cand = calloc(slots, sizeof(*cand));

        if (!uses || !cand)
                return; /* an optimisation only */
        for (size_t i = 0; i < r->n_order; i++)
                if (uses[r->order[i]] < UINT8_MAX)
                        uses[r->order[i]]++;
        for (size_t i = 0; i < r->n_chunks; i++)
                if (uses[i] >= 2)
                        cand[n_cand++] = (uint32_t)i;
        qsort_r(cand, n_cand, sizeof(*cand), more_used, uses);
        for (size_t c = 0; c < n_cand; c++) {
                uint32_t i = cand[c], size = r->chunks[i].source_size;
                size_t k = 0;

                while (k < n_known && known[k].size != size)
                        k++;
                if (k == n_known) {
                        hash_state st;
                        if (n_known == ZERO_SIZES || hashed + size > ZERO_HASH_BUDGET)
                                continue;
                        hash_init(&st);
                        for (uint32_t done = 0; done < size;) {
                                uint32_t n = size - done < sizeof(zeros) ? size - done : (uint32_t)sizeof(zeros);
                                hash_update(&st, zeros, n);
                                done += n;
                        }
                        hash_final(&st, known[k].digest);
                        known[k].size = size;
                        n_known++;
                        hashed += size;
                }
                if (memcmp(known[k].digest, r->chunks[i].hash, r->hash_len) == 0)
                        atomic_init(&m->state[i], STATE_ZERO);
        }
}

int image_map_new(struct store *store, struct release *release, bool verify, struct image_map **out)
{
        struct image_map *m = calloc(1, sizeof(*m));
        size_t n = release->n_chunks ? release->n_chunks : 1;
        uint64_t off = 0;

        if (!m)
                return -ENOMEM;
        m->store = store;
        m->release = release;
        m->verify = verify;
        m->size = release->source_total_size;
        m->files = fd_cache_shared();
        m->starts = malloc((release->n_order + 1) * sizeof(*m->starts));
        m->cached = malloc(n * sizeof(*m->cached));
        m->state = calloc(n, sizeof(*m->state));
        if (!m->files || !m->starts || !m->cached || !m->state) {
                image_map_free(m);
                return -ENOMEM;
        }
        for (size_t i = 0; i < release->n_order; i++) {
                m->starts[i] = off;
                off += release->chunks[release->order[i]].source_size;
        }
        m->starts[release->n_order] = off;
        for (size_t i = 0; i < n; i++)
                atomic_init(&m->cached[i], -1);
        find_zero_chunks(m);
        /* Before the first read: the cache is sized for every release the
         * process reads (a chunk of zeros is read without its file). */
        size_t files = release->n_chunks;
        for (size_t i = 0; i < release->n_chunks; i++)
                files -= (atomic_load_explicit(&m->state[i], memory_order_relaxed) & STATE_ZERO) != 0;
        fd_cache_expect(files);
        *out = m;
        return 0;
}

void image_map_free(struct image_map *m)
{
        if (!m)
                return;
        if (m->provider)
                m->provider->free(m->provider);
        if (m->files && m->cached)
                fd_cache_forget(m->files, m->cached, m->release->n_chunks);
        free(m->starts);
        free(m->cached);
        free(m->state);
        release_free(m->release);
        store_use_end(m->use);
        store_close(m->store);
        free(m);
}

void image_map_cancel(struct image_map *m)
{
        if (m && m->provider)
                m->provider->cancel(m->provider);
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

/* Logs a problem with a chunk, once per chunk whatever the readers do. */
static void report_chunk(struct image_map *m, uint32_t idx, const char *what, int err)
{
        char shown[STORE_CHUNK_SHOWN_MAX];

        if (atomic_fetch_or(&m->state[idx], STATE_REPORTED) & STATE_REPORTED)
                return;
        store_chunk_path(m->store, m->release->chunks[idx].hash, m->release->hash_len, shown);
        if (err)
                log_error("%s %s: %s", shown, what, strerror(-err));
        else
                log_error("%s %s", shown, what);
}

struct chunk_opener {
        struct image_map *map;
        uint32_t idx;
        bool nowait;
};

static int open_chunk(void *opaque)
{
        struct chunk_opener *o = opaque;
        const struct chunk *c = &o->map->release->chunks[o->idx];
        size_t hash_len = o->map->release->hash_len;

        if (!o->nowait)
                return store_chunk_open(o->map->store, c, hash_len);
        int fd = store_chunk_open_cached(o->map->store, c, hash_len);
        return fd == -EOPNOTSUPP ? -EAGAIN : fd;
}

static int open_provided(void *opaque)
{
        struct chunk_opener *o = opaque;
        int fd = o->map->provider->open(o->map->provider, o->idx);

        return fd == -EMFILE || fd == -ENFILE || fd >= 0 ? fd : -EIO;
}

/* The chunk's file, open (and with verify, checked once), or -EIO. With
 * nowait, -EAGAIN instead of anything that could wait on the device (a
 * lookup of a directory not cached, a first check with verify) and of any
 * failure: the read that may wait does it again and reports it. */
static int chunk_acquire(struct image_map *m, uint32_t idx, bool nowait, struct fd_ref *ref)
{
        struct chunk_opener o = { m, idx, nowait };
        unsigned char s = atomic_load_explicit(&m->state[idx], memory_order_acquire);
        int err;

        if (s & STATE_CORRUPT)
                return -EIO;
        if (nowait && m->verify && !(s & STATE_READABLE))
                return -EAGAIN;
        err = fd_cache_get(m->files, &m->cached[idx], open_chunk, &o, ref);
        if (err < 0 && nowait)
                return -EAGAIN;
        if (err == -ENOENT && m->provider) {
                err = fd_cache_get(m->files, &m->cached[idx], open_provided, &o, ref);
                if (err == -EIO)
                        return -EIO; /* the provider said why */
                if (err == 0) {
                        /* Checked on its way in: no second hash under verify. */
                        atomic_fetch_or(&m->state[idx], STATE_READABLE);
                        return 0;
                }
        }
        if (err < 0) {
                report_chunk(m, idx, err == -ENOENT ? "is missing" : "cannot be opened", err == -ENOENT ? 0 : err);
                return -EIO;
        }
        if (s & STATE_READABLE)
                return 0;
        if (m->verify && !store_fd_holds_chunk(ref->fd, &m->release->chunks[idx], m->release->hash_len)) {
                if (m->provider) {
                        /* Fetched again in its place. The copy is handed
                         * out uncached: the stale file may still be cached
                         * for another reader, and is checked again there. */
                        fd_cache_put_stale(m->files, ref);
                        int fd = m->provider->replace(m->provider, idx);
                        if (fd >= 0) {
                                *ref = (struct fd_ref){ fd, -1 };
                                return 0;
                        }
                        if (fd != -EIO)
                                report_chunk(m, idx, "cannot be opened", fd);
                        return -EIO;
                }
                fd_cache_put(m->files, ref);
                atomic_fetch_or(&m->state[idx], STATE_CORRUPT);
                report_chunk(m, idx, "is corrupt: reads of it fail with EIO", 0);
                return -EIO;
        }
        if (m->provider)
                m->provider->found(m->provider, idx);
        atomic_fetch_or(&m->state[idx], STATE_READABLE);
        return 0;
}

/* take bytes of chunk idx at in_chunk; nowait as for chunk_acquire. */
static int read_chunk(struct image_map *m, uint32_t idx, uint8_t *out, size_t take, uint64_t in_chunk, bool nowait)
{
        struct fd_ref ref;
        ssize_t n;
        int err = chunk_acquire(m, idx, nowait, &ref);

        if (err < 0)
                return err;
        if (nowait) {
                n = pread_nowait(ref.fd, out, take, in_chunk);
                /* The kernel cannot tell: the file is open, so read it as
                 * the servers did before RWF_NOWAIT. */
                if (n == -EOPNOTSUPP)
                        n = pread_full(ref.fd, out, take, in_chunk);
                else if (n != (ssize_t)take)
                        n = -EAGAIN;
        } else {
                n = pread_full(ref.fd, out, take, in_chunk);
        }
        fd_cache_put(m->files, &ref);
        if (n == -EAGAIN)
                return -EAGAIN;
        if (n != (ssize_t)take) {
                report_chunk(m, idx, n < 0 ? "cannot be read" : "is shorter than its size", n < 0 ? (int)n : 0);
                return -EIO;
        }
        return 0;
}

static int map_read(struct image_map *m, void *buf, size_t len, uint64_t offset, bool nowait)
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
                if (atomic_load_explicit(&m->state[idx], memory_order_relaxed) & STATE_ZERO) {
                        memset(out, 0, take);
                } else {
                        int err = read_chunk(m, idx, out, take, in_chunk, nowait);
                        if (err < 0)
                                return err;
                }
                out += take;
                offset += take;
                len -= take;
                pos++;
        }
        return 0;
}

int image_map_read(struct image_map *m, void *buf, size_t len, uint64_t offset)
{
        return map_read(m, buf, len, offset, false);
}

int image_map_read_nowait(struct image_map *m, void *buf, size_t len, uint64_t offset)
{
        return map_read(m, buf, len, offset, true);
}

bool image_map_chunk_is_zero(const struct image_map *m, uint32_t idx)
{
        return atomic_load_explicit(&m->state[idx], memory_order_relaxed) & STATE_ZERO;
}

uint64_t image_map_extent(const struct image_map *m, uint64_t offset, uint64_t max_len, bool *zero)
{
        size_t pos = find_position(m, offset), n = m->release->n_order;
        bool z = atomic_load_explicit(&m->state[m->release->order[pos]], memory_order_relaxed) & STATE_ZERO;
        uint64_t end = offset + max_len; /* offset < size and max_len <= size - offset */

        while (pos + 1 < n && m->starts[pos + 1] < end &&
               (bool)(atomic_load_explicit(&m->state[m->release->order[pos + 1]], memory_order_relaxed) &
                      STATE_ZERO) == z)
                pos++;
        *zero = z;
        return (m->starts[pos + 1] < end ? m->starts[pos + 1] : end) - offset;
}

static int check_range(struct image_map *m, uint64_t offset, uint64_t len, bool nowait)
{
        if (offset > m->size || len > m->size - offset)
                return -EINVAL;
        if (len == 0)
                return 0;
        for (size_t pos = find_position(m, offset); pos < m->release->n_order && m->starts[pos] < offset + len;
             pos++) {
                uint32_t idx = m->release->order[pos];
                struct fd_ref ref;
                unsigned char s = atomic_load_explicit(&m->state[idx], memory_order_acquire);
                if (s & STATE_ZERO)
                        continue;
                /* Without nowait, a chunk once opened is known to exist:
                 * only a failure of the storage can fail its read now. The
                 * caller that must not wait also wants its file open. */
                if ((s & STATE_READABLE) && !nowait)
                        continue;
                int err = chunk_acquire(m, idx, nowait, &ref);
                if (err < 0)
                        return err;
                fd_cache_put(m->files, &ref);
        }
        return 0;
}

int image_map_check_range(struct image_map *m, uint64_t offset, uint64_t len)
{
        return check_range(m, offset, len, false);
}

int image_map_check_range_nowait(struct image_map *m, uint64_t offset, uint64_t len)
{
        return check_range(m, offset, len, true);
}

/* Chunks looked at by each thread of the completeness check. */
#define CHECK_THREADS 16u
#define CHECK_MIN_CHUNKS_PER_THREAD 256u

struct completeness {
        struct image_map *map;
        enum chunk_state *state; /* per unique chunk */
        atomic_size_t next;
        atomic_int err;
        atomic_size_t err_index;
};

static int check_some(void *opaque, unsigned thread)
{
        struct completeness *c = opaque;
        const struct release *r = c->map->release;
        (void)thread;

        for (;;) {
                size_t i = atomic_fetch_add(&c->next, 1);
                if (i >= r->n_chunks || atomic_load(&c->err))
                        return 0;
                int err = store_chunk_state(c->map->store, &r->chunks[i], r->hash_len, false, &c->state[i]);
                if (err < 0) {
                        int none = 0;
                        if (atomic_compare_exchange_strong(&c->err, &none, err))
                                atomic_store(&c->err_index, i);
                        return 0;
                }
        }
}

/* A release missing chunks would serve EIO somewhere in the middle of a
 * file system: it is refused at the start, with where to look. Presence and
 * size only; contents are --verify's business, on first read. On a cold
 * store each look is a read of a directory and an inode: on flash (or a
 * virtual disk) those wait on the device one by one, so many threads keep
 * many of them in flight. */
int image_map_scan(struct image_map *m, enum chunk_state *state, const char *arg)
{
        const struct release *r = m->release;
        struct completeness c = { .map = m, .state = state };
        unsigned threads = (unsigned)(r->n_chunks / CHECK_MIN_CHUNKS_PER_THREAD);
        int err;

        threads = threads < 1 ? 1 : threads > CHECK_THREADS ? CHECK_THREADS : threads;
        err = pool_run_light(threads, check_some, &c, NULL);
        if (err == 0 && (err = atomic_load(&c.err)) < 0)
                store_log_chunk_error(m->store, r->chunks[atomic_load(&c.err_index)].hash, r->hash_len, err, "open");
        else if (err < 0)
                log_errno(err, "cannot check release %s", arg);
        return err;
}

static int check_complete(struct image_map *m, const char *arg)
{
        const struct release *r = m->release;
        size_t missing = 0, damaged = 0, first = SIZE_MAX;
        char shown[STORE_CHUNK_SHOWN_MAX];
        enum chunk_state *state;
        int err;

        state = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*state));
        if (!state)
                return log_errno(-ENOMEM, "cannot check release %s", arg);
        err = image_map_scan(m, state, arg);
        for (size_t i = 0; err == 0 && i < r->n_chunks; i++) {
                missing += state[i] == CHUNK_MISSING;
                damaged += state[i] == CHUNK_CORRUPT;
                if (state[i] != CHUNK_PRESENT && first == SIZE_MAX)
                        first = i;
        }
        if (err == 0 && first != SIZE_MAX) {
                log_error("%s is incomplete: %zu of its %zu chunks missing, %zu of the wrong size (first: %s %s); "
                          "`ihop verify` lists them, `ihop verify --repair ARCHIVE` fetches them again",
                          arg, missing, r->n_chunks, damaged,
                          store_chunk_path(m->store, r->chunks[first].hash, r->hash_len, shown),
                          state[first] == CHUNK_MISSING ? "is missing" : "has the wrong size");
                err = -EIO;
        }
        free(state);
        return err;
}

int image_map_open(const char *arg, bool verify, struct image_map **out, char **name)
{
        struct store *s = NULL;
        struct release *r = NULL;
        struct store_use *use = NULL;
        char *n = NULL;
        int err;

        err = release_file_open_in_use(arg, &s, &n, &r, &use);
        if (err < 0)
                return err;
        err = image_map_new(s, r, verify, out);
        if (err < 0) {
                release_free(r);
                store_use_end(use);
                store_close(s);
                free(n);
                return log_errno(err, "cannot map release %s", arg);
        }
        (*out)->use = use;
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
