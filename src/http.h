// SPDX-License-Identifier: MIT
/* HTTP range requests (libcurl), one connection per http_conn, kept alive
 * between requests. A transfer that fails part way is retried from the
 * first byte not yet delivered, so the sink sees every byte exactly once. */
#pragma once

#include "byte_sink.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_options {
        unsigned retry_count;
        unsigned retry_delay_s;
        unsigned timeout_s; /* no data for this long fails the attempt (0: no limit) */
        /* Less than this many bytes a second over timeout_s seconds fails
         * the attempt too (rate_floor.h): a server that drips bytes beats
         * the idle timeout (0: no floor). */
        uint64_t min_rate;
        const char *const *headers; /* extra request headers, "Name: value" */
        size_t n_headers;
        const char *ca_file; /* trust these CA certificates (PEM), not the system's; NULL: the system's */
        const char *client_cert; /* TLS client certificate (PEM), for servers that ask for one */
        const char *client_key;  /* its private key (PEM); NULL: in client_cert's file */
        /* The same archive at other URLs, tried in order when SOURCE fails
         * (archive_source.c): only for an archive at a URL. */
        const char *const *mirrors;
        size_t n_mirrors;
        /* Set by the caller when the whole job has failed elsewhere: a transfer
         * in progress or waiting to retry gives up (optional). */
        const atomic_bool *cancel;
};

#define HTTP_DEFAULT_RETRY_COUNT 3
#define HTTP_DEFAULT_RETRY_DELAY_S 1
#define HTTP_DEFAULT_TIMEOUT_S 30
/* 1 KiB/s: below what any link that carries HTTP gives (GPRS, NB-IoT), far
 * above a trickle meant to hold a connection (a byte a second). */
#define HTTP_DEFAULT_MIN_RATE 1024
#define HTTP_OPTIONS_DEFAULT                                                                      \
        { .retry_count = HTTP_DEFAULT_RETRY_COUNT, .retry_delay_s = HTTP_DEFAULT_RETRY_DELAY_S,         \
          .timeout_s = HTTP_DEFAULT_TIMEOUT_S, .min_rate = HTTP_DEFAULT_MIN_RATE }

struct http_conn;

/* Loads libcurl (on first use; logs why it cannot). */
int http_global_init(void);
void http_global_cleanup(void);
bool http_is_url(const char *s);

int http_conn_new(const struct http_options *opts, struct http_conn **out);
void http_conn_free(struct http_conn *c);

/* Fetches bytes [start, start+len) of url. total_size, when not NULL, gets
 * the resource size from Content-Range. Logs failures with the URL. */
int http_get_range(struct http_conn *c, const char *url, uint64_t start, uint64_t len, byte_sink sink,
                   void *opaque, uint64_t *total_size);

/* http_get_range for one of several copies of a resource: a failure is
 * not logged but worded in why (why_size bytes, URL included) for the
 * caller, which may try another copy; with expected_total (not 0), a
 * response for a resource of another size fails (a mirror's stale copy). */
int http_get_range_quiet(struct http_conn *c, const char *url, uint64_t start, uint64_t len, byte_sink sink,
                         void *opaque, uint64_t *total_size, uint64_t expected_total, char *why, size_t why_size);

/* A whole resource of at most max bytes (a signature file), in range
 * requests as archives are read, retried as http_get_range. A failure is
 * not logged: why (why_size bytes) says what went wrong, URL included, for
 * the caller to word its one line; -EFBIG when the resource is larger. */
int http_get_small(struct http_conn *c, const char *url, size_t max, uint8_t **out, size_t *len, char *why,
                   size_t why_size);

/* Bytes received from the network by this connection (headers and bodies). */
uint64_t http_conn_bytes_received(const struct http_conn *c);
