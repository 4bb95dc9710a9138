// SPDX-License-Identifier: MIT
#include "store_usage.h"

#include "cleanup.h"
#include "log.h"
#include "release_file.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_keys(const void *a, const void *b)
{
        const struct chunk_key *x = a, *y = b;
        int c;

        if (x->len != y->len)
                return x->len < y->len ? -1 : 1;
        c = memcmp(x->hash, y->hash, x->len);
        if (c)
                return c;
        return x->release < y->release ? -1 : x->release > y->release;
}

void store_usage_free(struct store_usage *u)
{
        for (size_t i = 0; i < u->n_releases; i++) {
                free(u->releases[i].name);
                release_free(u->releases[i].release);
        }
        free(u->releases);
        free(u->chunks);
        memset(u, 0, sizeof(*u));
}

static bool same_hash(const struct chunk_key *a, const struct chunk_key *b)
{
        return a->len == b->len && memcmp(a->hash, b->hash, a->len) == 0;
}

/* Walks the sorted keys one hash at a time: counts, for each release, the
 * chunks only it uses and those it shares, then keeps one key per hash. */
static void account_and_merge(struct store_usage *u, size_t n)
{
        size_t k = 0;

        for (size_t i = 0; i < n;) {
                size_t j = i + 1, n_rel = 1;
                for (; j < n && same_hash(&u->chunks[i], &u->chunks[j]); j++)
                        if (u->chunks[j].release != u->chunks[j - 1].release)
                                n_rel++;
                for (size_t p = i; p < j; p++) {
                        if (p > i && u->chunks[p].release == u->chunks[p - 1].release)
                                continue; /* listed twice by one release: counts once */
                        struct release_usage *ru = &u->releases[u->chunks[p].release];
                        if (n_rel == 1) {
                                ru->unique_bytes += u->chunks[p].size;
                                ru->unique_chunks++;
                        } else {
                                ru->shared_bytes += u->chunks[p].size;
                                ru->shared_chunks++;
                        }
                }
                u->chunks[k] = u->chunks[i];
                u->chunks[k].n_releases = (uint32_t)n_rel;
                u->referenced_bytes += u->chunks[k].size;
                k++;
                i = j;
        }
        u->n_chunks = k;
}

/* The chunk keys of every release in u, sorted and accounted. */
static int index_chunks(struct store_usage *u)
{
        size_t total = 0, k = 0;

        for (size_t i = 0; i < u->n_releases; i++)
                total += u->releases[i].release->n_chunks;
        u->chunks = calloc(total ? total : 1, sizeof(*u->chunks));
        if (!u->chunks)
                return -ENOMEM;
        for (size_t i = 0; i < u->n_releases; i++) {
                const struct release *r = u->releases[i].release;
                for (size_t j = 0; j < r->n_chunks; j++) {
                        struct chunk_key *c = &u->chunks[k++];
                        memcpy(c->hash, r->chunks[j].hash, r->hash_len);
                        c->len = (uint8_t)r->hash_len;
                        c->size = r->chunks[j].source_size;
                        c->release = (uint32_t)i;
                }
        }
        qsort(u->chunks, k, sizeof(*u->chunks), compare_keys);
        account_and_merge(u, k);
        return 0;
}

int store_usage_load(struct store *s, struct store_usage *u)
{
        char **names = NULL;
        size_t n_names;
        int err;

        memset(u, 0, sizeof(*u));
        err = store_list_releases(s, &names, &n_names);
        if (err < 0)
                return err;
        u->releases = calloc(n_names ? n_names : 1, sizeof(*u->releases));
        if (!u->releases) {
                store_free_names(names);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_names && err == 0; i++) {
                struct release_usage *ru = &u->releases[u->n_releases];
                err = release_file_read(s, names[i], &ru->release);
                if (err == 0) {
                        ru->name = TAKE_PTR(names[i]);
                        u->n_releases++;
                }
        }
        /* Not store_free_names(): the names taken left holes in the list. */
        for (size_t i = 0; i < n_names; i++)
                free(names[i]);
        free(names);
        if (err == 0)
                err = index_chunks(u);
        if (err < 0)
                store_usage_free(u);
        return err;
}

int store_usage_load_in_use(struct store *s, const struct store_use_entry *e, size_t n, struct store_usage *u)
{
        int err = 0;

        memset(u, 0, sizeof(*u));
        u->releases = calloc(n ? n : 1, sizeof(*u->releases));
        if (!u->releases)
                return -ENOMEM;
        for (size_t i = 0; i < n && err == 0; i++) {
                struct release_usage *ru = &u->releases[u->n_releases];
                char where[PATH_MAX];
                if (!e[i].live)
                        continue;
                snprintf(where, sizeof(where), "%s/%s/%s", store_path(s), STORE_IN_USE_DIR, e[i].file);
                err = release_file_parse(e[i].desc, e[i].len, where, &ru->release);
                if (err == 0 && !(ru->name = strdup(e[i].release))) {
                        release_free(ru->release);
                        err = -ENOMEM;
                }
                if (err == 0)
                        u->n_releases++;
        }
        if (err == 0)
                err = index_chunks(u);
        if (err < 0)
                store_usage_free(u);
        return err;
}

bool store_usage_references(const struct store_usage *u, const uint8_t *hash, size_t len)
{
        size_t lo = 0, hi = u->n_chunks;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct chunk_key *c = &u->chunks[mid];
                int cmp = c->len != len ? (c->len < len ? -1 : 1) : memcmp(c->hash, hash, len);
                if (cmp == 0)
                        return true;
                if (cmp < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}
