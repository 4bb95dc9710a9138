// SPDX-License-Identifier: MIT
#include "clone.h"

#include "archive_source.h"
#include "archive_trust.h"
#include "chunk_fetch.h"
#include "cleanup.h"
#include "codec.h"
#include "fetch_plan.h"
#include "log.h"
#include "progress.h"
#include "release_file.h"
#include "seed.h"
#include "store.h"
#include "units.h"
#include "worker_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Verified chunks are made durable and renamed in batches of this much. */
#define BATCH_MAX_BYTES (32u << 20)
#define BATCH_MAX_CHUNKS 512u
#define HTTP_DEFAULT_JOBS 4u

struct clone_ctx {
        const struct clone_options *opts;
        struct http_options http; /* the caller's, plus cancellation on failure */
        struct store *store;
        struct archive_source *src;
        struct archive *archive;
        struct archive_trust trust;
        struct archive_trust_result trusted; /* the header's, as open_archive read it */
        struct source_conn *conns; /* one per worker */
        unsigned n_workers;
        size_t hash_len; /* of the chunks as the store names and checks them */

        /* check phase */
        const struct chunk **unique;
        size_t n_unique;
        enum chunk_state *state;
        atomic_size_t next_check;
        atomic_size_t checked;
        atomic_uint_fast64_t checked_bytes;
        uint64_t unique_bytes;
        atomic_size_t recovered; /* complete chunks found in a killed clone's temp files */

        /* fetch phase */
        const struct chunk **missing;
        size_t n_missing;
        struct chunk *repair_chunks; /* a repair's: the release's chunks, placed in the archive */
        struct fetch_range *ranges;
        size_t n_ranges;
        atomic_size_t next_range;
        atomic_size_t fetched_chunks;
        atomic_uint_fast64_t fetched_bytes;
        atomic_uint_fast64_t fetched_compressed;
        uint64_t missing_compressed; /* what the fetch phase is to read */
        atomic_bool failed;
};

static int check_work(void *opaque, unsigned index)
{
        struct clone_ctx *ctx = opaque;
        size_t hash_len = ctx->hash_len;

        for (;;) {
                size_t i = atomic_fetch_add(&ctx->next_check, 1);
                if (i >= ctx->n_unique || atomic_load(&ctx->failed))
                        return 0;
                int err = store_chunk_state(ctx->store, ctx->unique[i], hash_len, !ctx->opts->naive, &ctx->state[i]);
                if (err == 0 && ctx->state[i] != CHUNK_PRESENT) {
                        bool recovered;
                        err = store_chunk_recover(ctx->store, ctx->unique[i], hash_len, &recovered);
                        if (err == 0 && recovered) {
                                ctx->state[i] = CHUNK_PRESENT;
                                atomic_fetch_add(&ctx->recovered, 1);
                        }
                }
                if (err < 0) {
                        atomic_store(&ctx->failed, true);
                        return store_log_chunk_error(ctx->store, ctx->unique[i]->hash, hash_len, err, "read");
                }
                atomic_fetch_add(&ctx->checked_bytes, ctx->unique[i]->source_size);
                atomic_fetch_add(&ctx->checked, 1);
        }
}

static void report_check(struct clone_ctx *ctx, bool final)
{
        struct progress p = {
                .phase = "check", .what = store_path(ctx->store), .final = final,
                .bytes_done = atomic_load(&ctx->checked_bytes), .bytes_total = ctx->unique_bytes,
                .chunks_done = atomic_load(&ctx->checked), .chunks_total = ctx->n_unique,
        };

        progress_report(&p);
}

/* The archive's bytes: what comes over the network. */
static void report_fetch(struct clone_ctx *ctx, bool final)
{
        struct progress p = {
                .phase = "fetch", .what = ctx->src->where, .final = final,
                .bytes_done = atomic_load(&ctx->fetched_compressed), .bytes_total = ctx->missing_compressed,
                .chunks_done = atomic_load(&ctx->fetched_chunks), .chunks_total = ctx->n_missing,
        };

        progress_report(&p);
}

static void check_tick(void *opaque) { report_check(opaque, false); }
static void fetch_tick(void *opaque) { report_fetch(opaque, false); }

static void fetch_received(struct chunk_fetch *f, uint64_t n)
{
        struct clone_ctx *ctx = f->opaque;

        atomic_fetch_add(&ctx->fetched_compressed, n);
}

/* Counts each chunk stored, and makes the batch durable as it grows. */
static int fetch_stored(struct chunk_fetch *f, size_t index)
{
        struct clone_ctx *ctx = f->opaque;

        atomic_fetch_add(&ctx->fetched_chunks, 1);
        atomic_fetch_add(&ctx->fetched_bytes, f->chunks[index]->source_size);
        if (f->batch->bytes >= BATCH_MAX_BYTES || f->batch->n >= BATCH_MAX_CHUNKS)
                return store_batch_commit(f->batch);
        return 0;
}

static int fetch_work(void *opaque, unsigned index)
{
        struct clone_ctx *ctx = opaque;
        struct decoder *decoder = NULL;
        struct store_batch batch;
        int err, commit_err;

        err = decoder_new(ctx->archive->codec, &decoder);
        if (err < 0)
                return log_errno(err, "cannot create a decoder");
        store_batch_init(&batch, ctx->store);
        for (;;) {
                size_t i = atomic_fetch_add(&ctx->next_range, 1);
                if (i >= ctx->n_ranges || atomic_load(&ctx->failed))
                        break;
                const struct fetch_range *range = &ctx->ranges[i];
                struct chunk_fetch f = {
                        .store = ctx->store, .hash_len = ctx->hash_len, .where = ctx->src->where,
                        .codec = ctx->archive->codec, .decoder = decoder, .batch = &batch,
                        .chunks = ctx->missing + range->first, .n_chunks = range->count,
                        .cancel = &ctx->failed, .received = fetch_received, .stored = fetch_stored, .opaque = ctx,
                };
                err = chunk_fetch_range(&ctx->conns[index], range->start, range->len, &f);
                if (err < 0) {
                        atomic_store(&ctx->failed, true);
                        break;
                }
        }
        /* Chunks already verified are kept even when the clone fails, so that
         * running it again does not download them again. */
        commit_err = store_batch_commit(&batch);
        store_batch_discard(&batch);
        store_batch_free(&batch);
        decoder_free(decoder);
        if (err == -ECANCELED)
                err = 0;
        return err < 0 ? err : commit_err;
}

static int by_hash(const void *a, const void *b, void *len)
{
        const struct chunk *x = *(const struct chunk *const *)a, *y = *(const struct chunk *const *)b;

        return memcmp(x->hash, y->hash, *(size_t *)len);
}

/* One entry per distinct hash: an archive may (in theory) list a chunk twice. */
static int collect_unique(struct clone_ctx *ctx, const struct release *r)
{
        size_t hash_len = r->hash_len, k = 0;

        ctx->unique = calloc(r->n_chunks ? r->n_chunks : 1, sizeof(*ctx->unique));
        if (!ctx->unique)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_chunks; i++)
                ctx->unique[i] = &r->chunks[i];
        qsort_r(ctx->unique, r->n_chunks, sizeof(*ctx->unique), by_hash, &hash_len);
        for (size_t i = 0; i < r->n_chunks; i++)
                if (k == 0 || memcmp(ctx->unique[k - 1]->hash, ctx->unique[i]->hash, hash_len) != 0)
                        ctx->unique[k++] = ctx->unique[i];
        ctx->n_unique = k;
        ctx->state = calloc(k ? k : 1, sizeof(*ctx->state));
        return ctx->state ? 0 : -ENOMEM;
}

static int open_connections(struct clone_ctx *ctx)
{
        unsigned jobs = ctx->opts->jobs;

        if (jobs == 0)
                jobs = ctx->src->is_http ? HTTP_DEFAULT_JOBS : pool_cpu_count();
        ctx->conns = calloc(jobs, sizeof(*ctx->conns));
        if (!ctx->conns)
                return -ENOMEM;
        for (unsigned i = 0; i < jobs; i++) {
                int err = source_conn_open(ctx->src, &ctx->conns[i]);
                if (err < 0)
                        return log_errno(err, "cannot set up a connection");
                ctx->n_workers++;
        }
        return 0;
}

static void clone_ctx_free(struct clone_ctx *ctx)
{
        for (unsigned i = 0; i < ctx->n_workers; i++)
                source_conn_close(&ctx->conns[i]);
        free(ctx->conns);
        free(ctx->unique);
        free(ctx->state);
        free(ctx->missing);
        free(ctx->repair_chunks);
        free(ctx->ranges);
        archive_free(ctx->archive);
        archive_source_close(ctx->src);
        store_close(ctx->store);
}

/* Before anything is downloaded: every wanted chunk a seed holds is stored from there. */
static int apply_seeds(struct clone_ctx *ctx, struct clone_result *res, atomic_uchar **seeded)
{
        const struct release *r = ctx->archive->release;
        atomic_uchar *have = calloc(ctx->n_unique ? ctx->n_unique : 1, sizeof(*have));
        struct seed_target t = {
                .store = ctx->store, .chunker = &r->chunker, .hash_len = r->hash_len,
                .wanted = ctx->unique, .n_wanted = ctx->n_unique, .have = have,
        };

        if (!have)
                return -ENOMEM;
        for (size_t i = 0; i < ctx->n_unique; i++)
                atomic_init(&have[i], ctx->state[i] == CHUNK_PRESENT);
        for (size_t i = 0; i < ctx->opts->n_seeds; i++) {
                struct seed_stats st;
                int err = seed_apply(ctx->opts->seeds[i], &t, &st);
                if (err < 0) {
                        free(have);
                        return err;
                }
                log_debug("seed %s: %zu chunks taken", ctx->opts->seeds[i], st.chunks);
                res->chunks_seeded += st.chunks;
                res->bytes_seeded += st.bytes;
        }
        *seeded = have;
        return 0;
}

/* Connections, the signature when trusted keys are given, then the archive
 * header (pinned by it, and by --verify-header if given). The store takes
 * the signed version only when the caller commits it (remember_version). */
static int open_archive(struct clone_ctx *ctx, struct clone_result *res)
{
        const struct clone_options *o = ctx->opts;
        struct archive_trust_result *tr = &ctx->trusted;
        int err;

        ctx->trust = (struct archive_trust){ .source = o->source, .http = &ctx->http, .policy = o->trust };
        err = open_connections(ctx);
        if (err == 0)
                err = archive_trust_read_header(&ctx->trust, ctx->store, ctx->src, &ctx->conns[0], &ctx->archive, tr);
        if (err < 0)
                return err;
        if (res && tr->signature_checked) {
                res->signature_checked = true;
                res->release_version = tr->release_version;
                memcpy(res->signer_id, tr->signer_id, sizeof(res->signer_id));
        }
        if (o->header_checksum_len &&
            memcmp(o->header_checksum, ctx->archive->header_checksum, o->header_checksum_len) != 0) {
                char hex[2 * HASH_MAX_LEN + 1];
                hash_to_hex(ctx->archive->header_checksum, HASH_MAX_LEN, hex);
                log_error("%s: header checksum %s does not match the one given with --verify-header",
                          ctx->src->where, hex);
                return -EBADMSG;
        }
        return 0;
}

/* The signed release version into the store, once nothing can refuse the
 * release any more and before any chunk of it is stored: checking the
 * store takes over chunks a killed clone left, seeds store chunks, and
 * neither may come before it (a clone cut short still counts). */
static int remember_version(struct clone_ctx *ctx)
{
        return archive_trust_commit(&ctx->trust, ctx->store, &ctx->trusted);
}

/* Which of ctx->unique the store holds (ctx->state), taking over complete
 * chunks a killed clone left in temp files. */
static int check_store(struct clone_ctx *ctx, struct clone_result *res)
{
        int err;

        ctx->unique_bytes = 0;
        for (size_t i = 0; i < ctx->n_unique; i++)
                ctx->unique_bytes += ctx->unique[i]->source_size;
        err = pool_run(ctx->n_workers > pool_cpu_count() ? ctx->n_workers : pool_cpu_count(), check_work, ctx,
                       check_tick);
        if (err == 0)
                report_check(ctx, true);
        res->chunks_recovered = atomic_load(&ctx->recovered);
        return err;
}

/* Fetches ctx->missing from the archive into the store, every chunk verified
 * against its hash before it is stored; all of them durable on success. */
static int fetch_missing(struct clone_ctx *ctx, struct clone_result *res)
{
        int err;

        err = fetch_plan_build(ctx->missing, ctx->n_missing, FETCH_MAX_RANGE, &ctx->ranges, &ctx->n_ranges);
        if (err < 0)
                return err;
        ctx->missing_compressed = 0;
        for (size_t i = 0; i < ctx->n_missing; i++)
                ctx->missing_compressed += ctx->missing[i]->archive_size;
        err = pool_run(ctx->n_workers, fetch_work, ctx, fetch_tick);
        if (err == 0)
                report_fetch(ctx, true);
        res->chunks_fetched = atomic_load(&ctx->fetched_chunks);
        res->bytes_fetched = atomic_load(&ctx->fetched_bytes);
        res->bytes_fetched_compressed = atomic_load(&ctx->fetched_compressed);
        for (unsigned i = 0; i < ctx->n_workers; i++)
                res->bytes_downloaded += source_conn_bytes_received(&ctx->conns[i]);
        if (err < 0)
                return err;
        return store_sync(ctx->store);
}

static int clone_fetch(struct clone_ctx *ctx, struct clone_result *res)
{
        const struct clone_options *o = ctx->opts;
        const struct release *r;
        int err;

        err = open_archive(ctx, res);
        if (err == 0)
                err = remember_version(ctx);
        if (err < 0)
                return err;
        r = ctx->archive->release;
        ctx->hash_len = r->hash_len;
        res->image_size = r->source_total_size;
        res->chunks_total = r->n_order;
        res->archive_size = ctx->src->size;
        res->header_size = ctx->archive->header_size;

        err = collect_unique(ctx, r);
        if (err < 0)
                return err;
        res->chunks_unique = ctx->n_unique;
        err = check_store(ctx, res);
        if (err < 0)
                return err;

        _cleanup_free_ atomic_uchar *seeded = NULL;
        if (o->n_seeds) {
                err = apply_seeds(ctx, res, &seeded);
                if (err < 0)
                        return err;
        }

        ctx->missing = calloc(ctx->n_unique ? ctx->n_unique : 1, sizeof(*ctx->missing));
        if (!ctx->missing)
                return -ENOMEM;
        for (size_t i = 0; i < ctx->n_unique; i++) {
                if (seeded && ctx->state[i] != CHUNK_PRESENT && atomic_load(&seeded[i]))
                        continue; /* counted in chunks_seeded */
                if (ctx->state[i] == CHUNK_PRESENT) {
                        res->chunks_reused++;
                        res->bytes_reused += ctx->unique[i]->source_size;
                        continue;
                }
                if (ctx->state[i] == CHUNK_CORRUPT) {
                        char shown[STORE_CHUNK_SHOWN_MAX];
                        log_warn("%s is corrupt; fetching it again",
                                 store_chunk_path(ctx->store, ctx->unique[i]->hash, r->hash_len, shown));
                        res->chunks_corrupt_in_store++;
                }
                ctx->missing[ctx->n_missing++] = ctx->unique[i];
        }
        /* The description is written only after every chunk it names is durable. */
        err = fetch_missing(ctx, res);
        if (err < 0)
                return err;
        return release_file_write(ctx->store, o->name, r);
}

int clone_run(const struct clone_options *o, struct clone_result *res)
{
        struct clone_ctx ctx = { .opts = o };
        int err;

        memset(res, 0, sizeof(*res));
        err = store_open(o->store_path, true, &ctx.store);
        if (err < 0)
                return err;
        err = store_lock(ctx.store, STORE_LOCK_SHARED);
        if (err < 0) {
                store_close(ctx.store);
                return err;
        }
        if (!o->force && store_release_exists(ctx.store, o->name)) {
                log_error("release %s/%s already exists (use --force to replace it)", o->store_path, o->name);
                store_close(ctx.store);
                return -EEXIST;
        }
        ctx.http = o->http;
        ctx.http.cancel = &ctx.failed;
        err = archive_source_open(o->source, &ctx.http, &ctx.src);
        if (err == 0)
                err = clone_fetch(&ctx, res);
        clone_ctx_free(&ctx);
        return err;
}

/* The archive's chunk with this hash (compared on the shorter of the two
 * hash lengths; the content is checked against the release's own). */
static const struct chunk *find_in_archive(const struct chunk **sorted, size_t n, const uint8_t *hash, size_t len)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = memcmp(sorted[mid]->hash, hash, len);
                if (c == 0)
                        return sorted[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static int repair_fetch(struct clone_ctx *ctx, const struct release *r, const struct repair_options *ro,
                        struct repair_result *res)
{
        struct clone_result cres = {};
        const struct release *a;
        _cleanup_free_ const struct chunk **sorted = NULL;
        size_t cmp_len;
        int err;

        err = open_archive(ctx, NULL);
        if (err < 0)
                return err;
        a = ctx->archive->release;
        if (a->source_checksum_len != r->source_checksum_len ||
            memcmp(a->source_checksum, r->source_checksum, r->source_checksum_len) != 0) {
                log_error("%s holds another image than release %s: cannot repair from it", ctx->src->where,
                          ro->release);
                return -EINVAL;
        }
        err = remember_version(ctx);
        if (err < 0)
                return err;
        ctx->hash_len = r->hash_len;
        err = collect_unique(ctx, r);
        if (err < 0)
                return err;
        err = check_store(ctx, &cres);
        if (err < 0)
                return err;

        cmp_len = a->hash_len < r->hash_len ? a->hash_len : r->hash_len;
        sorted = calloc(a->n_chunks ? a->n_chunks : 1, sizeof(*sorted));
        ctx->missing = calloc(ctx->n_unique ? ctx->n_unique : 1, sizeof(*ctx->missing));
        ctx->repair_chunks = calloc(ctx->n_unique ? ctx->n_unique : 1, sizeof(*ctx->repair_chunks));
        if (!sorted || !ctx->missing || !ctx->repair_chunks)
                return -ENOMEM;
        for (size_t i = 0; i < a->n_chunks; i++)
                sorted[i] = &a->chunks[i];
        qsort_r(sorted, a->n_chunks, sizeof(*sorted), by_hash, &cmp_len);
        for (size_t i = 0; i < ctx->n_unique; i++) {
                const struct chunk *want = ctx->unique[i], *have;
                if (ctx->state[i] == CHUNK_PRESENT)
                        continue;
                res->chunks_damaged++;
                have = find_in_archive(sorted, a->n_chunks, want->hash, cmp_len);
                if (!have || have->source_size != want->source_size) {
                        char shown[STORE_CHUNK_SHOWN_MAX];
                        store_chunk_path(ctx->store, want->hash, r->hash_len, shown);
                        if (ro->unavailable)
                                ro->unavailable(shown, ro->opaque);
                        else
                                printf("not repairable: %s is not in %s\n", shown, ctx->src->where);
                        res->chunks_unavailable++;
                        continue;
                }
                /* The release's hash and size (what the chunk is checked against),
                 * the archive's place for its bytes. */
                struct chunk *c = &ctx->repair_chunks[ctx->n_missing];
                *c = *want;
                c->archive_offset = have->archive_offset;
                c->archive_size = have->archive_size;
                ctx->missing[ctx->n_missing++] = c;
        }
        err = fetch_missing(ctx, &cres);
        res->chunks_fetched = cres.chunks_fetched;
        if (err < 0)
                return err;
        if (res->chunks_unavailable) {
                log_error("%s: %zu of its damaged chunks are not in %s: cannot repair them from it", ro->release,
                          res->chunks_unavailable, ctx->src->where);
                return -ENOENT;
        }
        return 0;
}

int clone_repair(const struct repair_options *ro, struct repair_result *res)
{
        _cleanup_free_ char *store_path = NULL, *name = NULL;
        struct clone_options o = { .source = ro->source, .jobs = ro->jobs, .http = ro->http };
        struct clone_ctx ctx = { .opts = &o };
        struct release *r = NULL;
        int err;

        memset(res, 0, sizeof(*res));
        err = store_split_release_path(ro->release, &store_path, &name);
        if (err < 0)
                return err;
        err = store_open(store_path, false, &ctx.store);
        if (err < 0)
                return err;
        err = store_lock(ctx.store, STORE_LOCK_SHARED);
        if (err == 0)
                err = release_file_read(ctx.store, name, &r);
        if (err == 0) {
                ctx.http = o.http;
                ctx.http.cancel = &ctx.failed;
                err = archive_source_open(o.source, &ctx.http, &ctx.src);
        }
        if (err == 0)
                err = repair_fetch(&ctx, r, ro, res);
        clone_ctx_free(&ctx);
        release_free(r);
        return err;
}
