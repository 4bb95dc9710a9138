// SPDX-License-Identifier: MIT
/* Where an archive's bytes come from: a local file or an http(s) URL,
 * with its mirrors (http_options.mirrors): the same archive elsewhere. A
 * request that fails on one URL (after its retries) goes on from the first
 * byte not yet delivered at the next, and the job stays there; every copy
 * gets the same checks (its size, each chunk's hash). Both kinds deliver
 * byte ranges to a sink in order; the clone does not care which. */
#pragma once

#include "archive.h"
#include "byte_sink.h"
#include "http.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct archive_source {
        char *where;     /* path or URL, for messages */
        bool is_http;
        const char **urls; /* SOURCE, then its mirrors */
        size_t n_urls;
        atomic_size_t url_in_use; /* the first that has not failed */
        int fd;          /* local file */
        uint64_t size;   /* archive size, once the header is read */
        const struct http_options *http;
};

/* One per thread: an HTTP connection, or nothing for a local file. */
struct source_conn {
        struct archive_source *src;
        struct http_conn *http;
        size_t url; /* the URL this connection uses */
};

int archive_source_open(const char *spec, const struct http_options *http, struct archive_source **out);
void archive_source_close(struct archive_source *s);

int source_conn_open(struct archive_source *s, struct source_conn *c);
void source_conn_close(struct source_conn *c);
uint64_t source_conn_bytes_received(const struct source_conn *c);

/* Reads and checks the archive header, and that the archive holds all its chunk data. */
int archive_source_read_header(struct archive_source *s, struct source_conn *c, struct archive **out);

/* For a reader of the header alone (info, diff): opens SPEC (path or URL;
 * http NULL for the defaults), reads and checks its header on one
 * connection and closes it again. *size, if given, gets the archive's size. */
int archive_source_load_header(const char *spec, const struct http_options *http, struct archive **out,
                               uint64_t *size);

/* Streams bytes [start, start+len) to sink. */
int source_read_range(struct source_conn *c, uint64_t start, uint64_t len, byte_sink sink, void *opaque);

/* source_read_range for a caller that says the failure itself, with its
 * context: a transfer that fails (after its retries, at every URL) is not
 * logged but worded in why (why_size bytes, the URL and the reason); why
 * stays empty for the other failures, said where they happened (a local
 * file's, the sink's). */
int source_read_range_quiet(struct source_conn *c, uint64_t start, uint64_t len, byte_sink sink, void *opaque,
                            char *why, size_t why_size);
