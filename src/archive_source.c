// SPDX-License-Identifier: MIT
#include "archive_source.h"

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LOCAL_READ_BLOCK (256u << 10)

int archive_source_open(const char *spec, const struct http_options *http, struct archive_source **out)
{
        _cleanup_free_ struct archive_source *s = calloc(1, sizeof(*s));
        struct stat st;

        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->http = http;
        s->is_http = http_is_url(spec);
        if (http->n_mirrors && !s->is_http) {
                log_error("%s: mirrors are for an archive at an http(s) URL", spec);
                return -EINVAL;
        }
        for (size_t i = 0; i < http->n_mirrors; i++) {
                if (!http_is_url(http->mirrors[i])) {
                        log_error("mirror %s: not an http(s) URL", http->mirrors[i]);
                        return -EINVAL;
                }
        }
        if (!s->is_http) {
                if (strstr(spec, "://")) {
                        log_error("%s: unsupported URL scheme (use http://, https:// or a file path)", spec);
                        return -EINVAL;
                }
                mode_t type;
                /* An archive is read at offsets (its header first, then the
                 * chunks as wanted): a regular file, never a stream. */
                s->fd = open_regular_at(AT_FDCWD, spec, 0, &type);
                if (s->fd == -EINVAL) {
                        log_error("archive %s is %s, not a regular file: refusing", spec, file_type_name(type));
                        return -EINVAL;
                }
                if (s->fd < 0)
                        return log_errno(s->fd, "cannot open archive %s", spec);
                if (fstat(s->fd, &st) < 0) {
                        int err = log_errno(-errno, "cannot open archive %s", spec);
                        close(s->fd);
                        return err;
                }
                s->size = (uint64_t)st.st_size;
        }
        s->where = strdup(spec);
        s->n_urls = 1 + http->n_mirrors;
        s->urls = calloc(s->n_urls, sizeof(*s->urls));
        if (!s->where || !s->urls) {
                if (s->fd >= 0)
                        close(s->fd);
                free(s->where);
                free(s->urls);
                return -ENOMEM;
        }
        s->urls[0] = s->where;
        for (size_t i = 0; i < http->n_mirrors; i++)
                s->urls[i + 1] = http->mirrors[i];
        *out = TAKE_PTR(s);
        return 0;
}

void archive_source_close(struct archive_source *s)
{
        if (!s)
                return;
        if (s->fd >= 0)
                close(s->fd);
        free(s->where);
        free(s->urls);
        free(s);
}

int source_conn_open(struct archive_source *s, struct source_conn *c)
{
        c->src = s;
        c->http = NULL;
        c->url = 0;
        if (s->is_http)
                return http_conn_new(s->http, &c->http);
        return 0;
}

void source_conn_close(struct source_conn *c)
{
        http_conn_free(c->http);
        c->http = NULL;
}

uint64_t source_conn_bytes_received(const struct source_conn *c)
{
        return c->http ? http_conn_bytes_received(c->http) : 0;
}

static int read_local(struct source_conn *c, uint64_t start, uint64_t len, byte_sink sink, void *opaque)
{
        _cleanup_free_ uint8_t *buf = malloc(len < LOCAL_READ_BLOCK ? (len ? (size_t)len : 1) : LOCAL_READ_BLOCK);
        uint64_t done = 0;

        if (!buf)
                return -ENOMEM;
        while (done < len) {
                size_t want = len - done < LOCAL_READ_BLOCK ? (size_t)(len - done) : LOCAL_READ_BLOCK;
                ssize_t n = pread_full(c->src->fd, buf, want, start + done);
                if (n < 0)
                        return log_errno((int)n, "cannot read %s", c->src->where);
                if ((size_t)n < want) {
                        log_error("%s: the archive is cut short at byte %llu", c->src->where,
                                  (unsigned long long)(start + done + (uint64_t)n));
                        return -EBADMSG;
                }
                int err = sink(buf, (size_t)n, opaque);
                if (err < 0)
                        return err;
                done += (uint64_t)n;
        }
        return 0;
}

/* Counts what reached the sink, so that the next URL goes on from there,
 * and tells the sink's own refusal (never a mirror's business) apart. */
struct counting_sink {
        byte_sink sink;
        void *opaque;
        uint64_t delivered;
        int sink_err;
};

static int count_into(const uint8_t *data, size_t len, void *opaque)
{
        struct counting_sink *cs = opaque;
        int err = cs->sink(data, len, cs->opaque);

        if (err < 0) {
                cs->sink_err = err;
                return err;
        }
        cs->delivered += len;
        return 0;
}

/* With out_why, a failure of the transfer at the last URL is worded there
 * (out_size bytes) for the caller, not logged. */
static int read_http(struct source_conn *c, uint64_t start, uint64_t len, byte_sink sink, void *opaque,
                     uint64_t *total, char *out_why, size_t out_size)
{
        struct archive_source *s = c->src;
        struct counting_sink cs = { .sink = sink, .opaque = opaque };
        size_t in_use = atomic_load(&s->url_in_use);

        if (c->url < in_use)
                c->url = in_use; /* another connection found it failing */
        for (;;) {
                char why[768] = "";
                int err = http_get_range_quiet(c->http, s->urls[c->url], start + cs.delivered, len - cs.delivered,
                                               count_into, &cs, total, s->size, why, sizeof(why));
                if (err == 0 || cs.sink_err < 0 || err == -ECANCELED)
                        return err;
                if (c->url + 1 >= s->n_urls) {
                        if (out_why)
                                snprintf(out_why, out_size, "%s", why[0] ? why : strerror(-err));
                        else
                                log_error("%s", why[0] ? why : strerror(-err));
                        return err;
                }
                log_warn("%s; going on with the mirror %s", why, s->urls[c->url + 1]);
                c->url++;
                size_t seen = in_use;
                while (seen < c->url && !atomic_compare_exchange_weak(&s->url_in_use, &seen, c->url))
                        ;
                in_use = c->url;
        }
}

int source_read_range(struct source_conn *c, uint64_t start, uint64_t len, byte_sink sink, void *opaque)
{
        return source_read_range_quiet(c, start, len, sink, opaque, NULL, 0);
}

int source_read_range_quiet(struct source_conn *c, uint64_t start, uint64_t len, byte_sink sink, void *opaque,
                            char *why, size_t why_size)
{
        if (why)
                why[0] = '\0';
        if (len == 0)
                return 0;
        if (c->http)
                return read_http(c, start, len, sink, opaque, NULL, why, why_size);
        return read_local(c, start, len, sink, opaque);
}

struct buffer_fill {
        uint8_t *buf;
        size_t used;
};

static int fill_buffer(const uint8_t *data, size_t len, void *opaque)
{
        struct buffer_fill *f = opaque;

        memcpy(f->buf + f->used, data, len);
        f->used += len;
        return 0;
}

static int read_into(struct source_conn *c, uint64_t start, uint8_t *buf, size_t len, uint64_t *total)
{
        struct buffer_fill f = { buf, 0 };

        if (c->http)
                return read_http(c, start, len, fill_buffer, &f, total, NULL, 0);
        if (start + len > c->src->size) {
                log_error("%s: the archive is cut short inside its header", c->src->where);
                return -EBADMSG;
        }
        *total = c->src->size;
        return read_local(c, start, len, fill_buffer, &f);
}

int archive_source_read_header(struct archive_source *s, struct source_conn *c, struct archive **out)
{
        uint8_t pre[ARCHIVE_PRE_HEADER_SIZE];
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t header_len, total = 0;
        int err;

        /* Exactly the header's bytes, in two requests: the pre-header says how long the rest is. */
        err = read_into(c, 0, pre, sizeof(pre), &total);
        if (err < 0)
                return err;
        err = archive_header_length(pre, sizeof(pre), s->where, &header_len);
        if (err < 0)
                return err;
        if (header_len > total) {
                log_error("%s: the archive is cut short inside its header", s->where);
                return -EBADMSG;
        }
        /* archive_header_length bounds it (64 MiB of dictionary): a size_t, even on 32 bits */
        buf = malloc((size_t)header_len);
        if (!buf)
                return log_errno(-ENOMEM, "%s: cannot hold the archive header", s->where);
        memcpy(buf, pre, sizeof(pre));
        err = read_into(c, sizeof(pre), buf + sizeof(pre), (size_t)header_len - sizeof(pre), &total);
        if (err < 0)
                return err;
        s->size = total;
        _cleanup_archive_ struct archive *a = NULL;
        err = archive_parse_take(&buf, (size_t)header_len, s->where, &a);
        if (err < 0)
                return err;
        err = archive_check_size(a, s->size, s->where);
        if (err < 0)
                return err;
        *out = TAKE_PTR(a);
        return 0;
}

int archive_source_load_header(const char *spec, const struct http_options *http, struct archive **out,
                               uint64_t *size)
{
        const struct http_options defaults = HTTP_OPTIONS_DEFAULT;
        struct archive_source *src = NULL;
        struct source_conn conn = {};
        int err;

        err = archive_source_open(spec, http ? http : &defaults, &src);
        if (err < 0)
                return err;
        err = source_conn_open(src, &conn);
        if (err == 0)
                err = archive_source_read_header(src, &conn, out);
        if (err == 0 && size)
                *size = src->size;
        source_conn_close(&conn);
        archive_source_close(src);
        return err;
}
