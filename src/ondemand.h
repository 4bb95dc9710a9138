// SPDX-License-Identifier: MIT
/* A release used before it is cloned (`mount --source`, `serve --source`).
 *
 * Its description comes from the archive's header (with trusted keys, the
 * signature is checked first, as for clone). A read that touches chunks the
 * store lacks fetches them first, with the missing chunks that follow them
 * in the archive in the same range request (bounded; longer while reads go
 * on sequentially, as a read-ahead), each checked against its hash and
 * stored as clone stores it (chunk_fetch.h), so that what was read once is
 * local for good, and chunks the store holds (from other releases) are
 * never fetched. Two reads of one missing chunk fetch it once. A chunk that
 * cannot be fetched (after the HTTP retries) fails that read with EIO, and
 * a later read tries again.
 *
 * Once every chunk is in the store, the release description is written,
 * under the shared store lock as clone writes its own (a gc running then
 * is waited for): from then on it is an ordinary release. Until then there is none: an
 * incomplete release never appears as one. With fill, a thread fetches the
 * rest in the background, giving way to reads, until that happens.
 *
 * The release is registered as in use (store_use.h) from the start, with
 * the description it will have: gc keeps every chunk it names, fetched or
 * still to come. */
#pragma once

#include "archive_trust.h"
#include "http.h"
#include "image_map.h"

#include <stdbool.h>

struct ondemand_options {
        const char *source; /* path or http(s) URL of the .cba */
        struct http_options http;
        struct trust_policy trust; /* signed releases */
        bool fill;
};

/* Opens STORE/NAME (arg) backed by the archive at o->source: *out reads the
 * archive's image, from the store where it can. The store is made if need
 * be; a release NAME already there must be the archive's. A store this
 * process cannot write (read-only, another user's) is refused at once, in
 * one line, unless it holds the whole release: that is served from it as
 * image_map_open() would, nothing fetched. *name (when not NULL) gets the
 * release name. Threads (fetching) start with ondemand_start(), after any
 * fork. */
int ondemand_open(const char *arg, const struct ondemand_options *o, bool verify, struct image_map **out,
                  char **name);

/* Starts the fetching threads (reads' fetches, read-ahead, the fill when
 * asked for; for a release complete from the start, only under verify, to
 * repair a chunk found corrupt). */
int ondemand_start(struct image_map *m);

/* The longest a read waits for a chunk on its way before it fails with
 * EIO, from the HTTP options: (retries + 1) x (timeout + retry delay + 2)
 * seconds, times the URLs; 0 (no limit) with no HTTP timeout. */
unsigned ondemand_read_wait_s(const struct http_options *h);
