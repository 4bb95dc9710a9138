// SPDX-License-Identifier: MIT
#include "http.h"

#include "cleanup.h"
#include "curl_api.h"
#include "http_redirect.h"
#include "http_response.h"
#include "log.h"
#include "rate_floor.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Redirects followed for one request before giving up on a loop. */
#define HTTP_MAX_REDIRECTS 10
/* The longest redirect body read (and dropped). */
#define HTTP_MAX_REDIRECT_BODY (64 * 1024)

struct http_conn {
        CURL *curl;
        struct curl_slist *headers; /* the options' extra headers, in curl's form */
        const struct http_options *opts;
        uint64_t bytes_received;
};

/* State of one attempt: a request, and the redirects it leads to. */
struct attempt {
        struct http_conn *conn;
        const char *url;          /* the URL given, which messages name */
        char *hop_url;            /* the last request's URL, when a redirect led there */
        uint64_t start, len;      /* what this attempt asked for */
        bool need_total;          /* the caller wants the resource's size */
        uint64_t expected_total;  /* the resource's size, when known (0: any) */
        uint64_t delivered;       /* bytes handed to the sink in this attempt */
        /* The response to the last request: */
        long status;
        struct http_response resp;
        bool checked;             /* classified, at its first body byte or at its end */
        bool redirecting;         /* it is a redirect: its body is dropped */
        uint64_t dropped;         /* bytes of that body dropped */
        char *redirect_url;       /* where it leads, once it has ended */
        bool sink_failed;         /* the sink refused (sink_err): never retried */
        int sink_err;
        int fatal_err;            /* retrying cannot help: never retried */
        char reason[512];         /* why the attempt failed, for the messages */
        curl_off_t last_dlnow;    /* progress seen by the idle check */
        struct timespec last_progress;
        struct timespec started;  /* the request's, for the rate's floor */
        struct rate_floor floor;
        byte_sink sink;
        void *opaque;
};

/* libcurl (and with it the TLS library) is loaded on first use only: a
 * clone from a file, a mount or a server never pays for it. */
int http_global_init(void)
{
        return curl_api_load();
}

void http_global_cleanup(void)
{
        curl_api_unload();
}

bool http_is_url(const char *s)
{
        return strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0;
}

int http_conn_new(const struct http_options *opts, struct http_conn **out)
{
        struct http_conn *c;
        int err;

        err = http_global_init();
        if (err < 0)
                return err;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->opts = opts;
        for (size_t i = 0; i < opts->n_headers; i++) {
                struct curl_slist *l = libcurl.slist_append(c->headers, opts->headers[i]);
                if (!l) {
                        http_conn_free(c);
                        return -ENOMEM;
                }
                c->headers = l;
        }
        c->curl = libcurl.easy_init();
        if (!c->curl) {
                http_conn_free(c);
                return -ENOMEM;
        }
        *out = c;
        return 0;
}

void http_conn_free(struct http_conn *c)
{
        if (!c)
                return;
        if (c->curl)
                libcurl.easy_cleanup(c->curl);
        libcurl.slist_free_all(c->headers);
        free(c);
}

uint64_t http_conn_bytes_received(const struct http_conn *c) { return c->bytes_received; }

static size_t on_header(char *buf, size_t size, size_t nmemb, void *opaque)
{
        struct attempt *a = opaque;
        size_t n = size * nmemb;

        a->conn->bytes_received += n;
        http_response_header(&a->resp, buf, n, time(NULL));
        return n;
}

static void attempt_release(struct attempt *a)
{
        free(a->hop_url);
        free(a->redirect_url);
        a->hop_url = a->redirect_url = NULL;
}

/* Records why the attempt cannot succeed, ever; returns err. */
static int __attribute__((format(printf, 3, 4))) fail(struct attempt *a, int err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
        va_end(ap);
        a->fatal_err = err;
        return err;
}

static const char *libcurl_version(void)
{
        const curl_version_info_data *v = libcurl.version_info(CURLVERSION_NOW);

        return v && v->version ? v->version : "(unknown version)";
}

/* Every option matters (a lost one could mean a protocol or a header not
 * restricted): one that libcurl refuses fails the transfer, named. */
#define SET(a, opt, val) option_set((a), #opt, libcurl.easy_setopt((a)->conn->curl, (opt), (val)))
#define GET(a, info, ptr) info_get((a), #info, libcurl.easy_getinfo((a)->conn->curl, (info), (ptr)))

static bool option_set(struct attempt *a, const char *name, CURLcode res)
{
        if (res == CURLE_OK)
                return true;
        fail(a, -ENOTSUP, "libcurl %s refuses %s: %s", libcurl_version(), name, libcurl.easy_strerror(res));
        return false;
}

static bool info_get(struct attempt *a, const char *name, CURLcode res)
{
        if (res == CURLE_OK)
                return true;
        fail(a, -ENOTSUP, "libcurl %s cannot tell %s: %s", libcurl_version(), name, libcurl.easy_strerror(res));
        return false;
}

/* Only http and https: no URL, whatever a server redirects to, may reach
 * file://, ftp://, ldap:// and the other protocols libcurl speaks. */
static bool restrict_protocols(struct attempt *a)
{
        CURL *curl = a->conn->curl;
        CURLcode res;

        res = libcurl.easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        if (res == CURLE_OK)
                res = libcurl.easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        if (res == CURLE_UNKNOWN_OPTION) {
                /* libcurl before 7.85 has only the bitmasks, deprecated since. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
                res = libcurl.easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
                if (res == CURLE_OK)
                        res = libcurl.easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#pragma GCC diagnostic pop
        }
        if (res == CURLE_OK)
                return true;
        fail(a, -ENOTSUP, "libcurl %s cannot restrict protocols to http and https (%s): refusing to fetch",
             libcurl_version(), libcurl.easy_strerror(res));
        return false;
}

/* Whether the response can be used for the range asked for; when not,
 * a->reason says why and a->fatal_err whether retrying is pointless. */
static bool check_range(struct attempt *a)
{
        switch (http_response_check(&a->resp, a->status, a->start, a->len, a->need_total, a->reason,
                                    sizeof(a->reason))) {
        case HTTP_VERDICT_OK:
                if (a->expected_total && a->resp.total_known && a->resp.range_total != a->expected_total) {
                        fail(a, -EBADMSG, "the server's copy is %" PRIu64 " bytes, not the archive's %" PRIu64,
                             a->resp.range_total, a->expected_total);
                        return false;
                }
                return true;
        case HTTP_VERDICT_NO_RANGES:
                a->fatal_err = -ENOTSUP;
                return false;
        case HTTP_VERDICT_PERMANENT:
                a->fatal_err = -EIO;
                return false;
        case HTTP_VERDICT_RETRY:
                break;
        }
        return false;
}

/* Before the first byte of a body is used (or at the end of a response
 * without one): is it the range asked for, or a redirect? */
static bool classify_response(struct attempt *a)
{
        a->checked = true;
        if (!GET(a, CURLINFO_RESPONSE_CODE, &a->status))
                return false;
        /* Where a redirect leads is known once its response has ended. */
        a->redirecting = a->status == 301 || a->status == 302 || a->status == 303 || a->status == 307 ||
                         a->status == 308;
        return a->redirecting || check_range(a);
}

/* A redirect's response has ended: 1 with a->redirect_url set, or a
 * negative errno. */
static int take_redirect(struct attempt *a)
{
        char *target = NULL;

        /* libcurl resolves the Location (relative ones too) without following it. */
        if (!GET(a, CURLINFO_REDIRECT_URL, &target))
                return a->fatal_err;
        if (!target) {
                check_range(a); /* no Location: fails on the status */
                return a->fatal_err < 0 ? a->fatal_err : -EIO;
        }
        a->redirect_url = strdup(target);
        if (!a->redirect_url)
                return fail(a, -ENOMEM, "out of memory");
        return 1;
}

/* Hands len bytes of the resource to the sink: false when it refuses them. */
static bool deliver(struct attempt *a, const char *buf, size_t len)
{
        a->sink_err = a->sink((const uint8_t *)buf, len, a->opaque);
        if (a->sink_err < 0) {
                a->sink_failed = true;
                return false;
        }
        a->delivered += len;
        return true;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *opaque)
{
        struct attempt *a = opaque;
        size_t n = size * nmemb;

        a->conn->bytes_received += n;
        if (!a->checked && !classify_response(a))
                return CURL_WRITEFUNC_ERROR;
        if (a->redirecting) {
                /* Not the resource: dropped, and read to its end so that the
                 * connection is kept (libcurl tells where a redirect leads
                 * only then). A body this long is no redirect page. */
                a->dropped += n;
                if (a->dropped <= HTTP_MAX_REDIRECT_BODY)
                        return n;
                fail(a, -EIO, "the server sent a redirect with a body of more than %d KiB",
                     HTTP_MAX_REDIRECT_BODY / 1024);
                return CURL_WRITEFUNC_ERROR;
        }
        if (n > a->len - a->delivered) {
                /* Keep what was asked for; the surplus ends the transfer, and a
                 * complete range is a success however it ended. */
                size_t want = (size_t)(a->len - a->delivered);
                snprintf(a->reason, sizeof(a->reason), "the server sent more bytes than asked for");
                if (want > 0)
                        deliver(a, buf, want);
                return CURL_WRITEFUNC_ERROR;
        }
        return deliver(a, buf, n) ? n : CURL_WRITEFUNC_ERROR;
}

static double seconds_since(const struct timespec *t)
{
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* The idle timeout: curl's low-speed check averages over a window and fires
 * seconds late; this one fires when no byte has come for timeout_s seconds.
 * A server that sends a byte now and then beats it: the rate's floor
 * (rate_floor.h) does not. libcurl calls this about once a second when
 * nothing comes, while connecting too, and at every write otherwise: also
 * how soon a cancel is seen. */
static int on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
        struct attempt *a = opaque;
        const struct http_options *o = a->conn->opts;
        (void)dltotal;
        (void)ultotal;
        (void)ulnow;

        if (o->cancel && atomic_load(o->cancel)) {
                snprintf(a->reason, sizeof(a->reason), "cancelled");
                return 1;
        }
        if (!o->timeout_s)
                return 0;

        if (dlnow == a->last_dlnow) {
                /* Nothing new: the idle rule speaks. (The floor would too, a
                 * moment sooner, for a small range that stalls; "no data"
                 * says better what happened.) */
                if (seconds_since(&a->last_progress) < o->timeout_s)
                        return 0;
                snprintf(a->reason, sizeof(a->reason), "no data for %u s", o->timeout_s);
                return 1;
        }
        a->last_dlnow = dlnow;
        clock_gettime(CLOCK_MONOTONIC, &a->last_progress);
        if (rate_floor_below(&a->floor, seconds_since(&a->started), dlnow > 0 ? (uint64_t)dlnow : 0)) {
                snprintf(a->reason, sizeof(a->reason), "only %" PRIu64 " bytes in %.0f s, less than %" PRIu64
                         " bytes a second", a->floor.span_bytes, a->floor.span_s, o->min_rate);
                return 1;
        }
        return 0;
}

static bool set_options(struct attempt *a, const char *url, const char *range, bool with_headers)
{
        const struct http_options *o = a->conn->opts;

        if (!SET(a, CURLOPT_URL, url) || !SET(a, CURLOPT_RANGE, range) || !SET(a, CURLOPT_NOSIGNAL, 1L) ||
            /* Redirects are followed one by one in run_attempt, which decides
             * where they may lead and with which headers. */
            !SET(a, CURLOPT_FOLLOWLOCATION, 0L) || !SET(a, CURLOPT_USERAGENT, "ihop/" IHOP_VERSION) ||
            !SET(a, CURLOPT_HEADERFUNCTION, on_header) || !SET(a, CURLOPT_HEADERDATA, a) ||
            !SET(a, CURLOPT_WRITEFUNCTION, on_body) || !SET(a, CURLOPT_WRITEDATA, a) || !restrict_protocols(a))
                return false;
        if (with_headers && a->conn->headers && !SET(a, CURLOPT_HTTPHEADER, a->conn->headers))
                return false;
        if (o->timeout_s && !SET(a, CURLOPT_CONNECTTIMEOUT, (long)o->timeout_s))
                return false;
        /* A vendor's own CA: that file alone, not the system's directory too. */
        if (o->ca_file && (!SET(a, CURLOPT_CAINFO, o->ca_file) || !SET(a, CURLOPT_CAPATH, (char *)NULL)))
                return false;
        /* A device's identity for servers that ask for it (mutual TLS). */
        if (o->client_cert && (!SET(a, CURLOPT_SSLCERT, o->client_cert) || !SET(a, CURLOPT_SSLCERTTYPE, "PEM")))
                return false;
        if (o->client_key && (!SET(a, CURLOPT_SSLKEY, o->client_key) || !SET(a, CURLOPT_SSLKEYTYPE, "PEM")))
                return false;
        if ((o->timeout_s || o->cancel) &&
            (!SET(a, CURLOPT_NOPROGRESS, 0L) || !SET(a, CURLOPT_XFERINFOFUNCTION, on_progress) ||
             !SET(a, CURLOPT_XFERINFODATA, a)))
                return false;
        return true;
}

/* One request to url: 0 when the range arrived whole, 1 when the response
 * is a redirect to a->redirect_url, or a negative errno (a->reason says
 * why). */
static int request(struct attempt *a, const char *url, bool with_headers)
{
        CURL *curl = a->conn->curl;
        char range[64];
        CURLcode res;

        http_response_init(&a->resp);
        a->status = 0;
        a->checked = false;
        a->redirecting = false;
        free(a->redirect_url);
        a->redirect_url = NULL;
        a->dropped = 0;
        a->last_dlnow = 0;
        a->reason[0] = '\0';
        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, a->start, a->start + a->len - 1);
        libcurl.easy_reset(curl);
        if (!set_options(a, url, range, with_headers))
                return a->fatal_err;
        clock_gettime(CLOCK_MONOTONIC, &a->last_progress);
        a->started = a->last_progress;
        rate_floor_start(&a->floor, a->conn->opts->timeout_s, a->conn->opts->min_rate);

        res = libcurl.easy_perform(curl);
        if (a->sink_failed)
                return a->sink_err;
        if (a->fatal_err < 0)
                return a->fatal_err;
        if (res == CURLE_OK && !a->checked && !classify_response(a))
                return a->fatal_err < 0 ? a->fatal_err : -EIO;
        if (res == CURLE_OK && a->redirecting)
                return take_redirect(a);
        if (res == CURLE_OK) {
                if (a->delivered == a->len)
                        return 0;
                snprintf(a->reason, sizeof(a->reason), "the body ended after %" PRIu64 " of %" PRIu64 " bytes",
                         a->delivered, a->len);
                return -EIO;
        }
        if (!a->reason[0])
                snprintf(a->reason, sizeof(a->reason), "%s", libcurl.easy_strerror(res));
        /* Bad URLs and unsupported schemes do not get better by retrying. */
        if (res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL || res == CURLE_COULDNT_RESOLVE_HOST)
                return fail(a, -EINVAL, "%s", a->reason);
        return -EIO;
}

/* The request for the range, then the redirects it leads to. The extra
 * headers go along only while every hop stays in the origin given: a
 * server elsewhere is not trusted to send us back with them. */
static int run_attempt(struct attempt *a)
{
        const char *url = a->url;
        bool with_headers = true;

        for (unsigned redirects = 0;; redirects++) {
                int r = request(a, url, with_headers);
                if (r <= 0)
                        return r;
                if (redirects == HTTP_MAX_REDIRECTS)
                        return fail(a, -ELOOP, "more than %d redirects", HTTP_MAX_REDIRECTS);
                switch (http_redirect_decide(url, strlen(url), a->redirect_url, strlen(a->redirect_url))) {
                case HTTP_REDIRECT_SAME_ORIGIN:
                        break;
                case HTTP_REDIRECT_OTHER_ORIGIN:
                        with_headers = false;
                        break;
                case HTTP_REDIRECT_DOWNGRADE:
                        return fail(a, -EPERM, "refusing the redirect from https to http (to %s): it would leave TLS",
                                    a->redirect_url);
                case HTTP_REDIRECT_BAD_URL:
                        return fail(a, -EPERM, "refusing the redirect to %s: only http and https URLs are fetched",
                                    a->redirect_url);
                }
                free(a->hop_url);
                a->hop_url = TAKE_PTR(a->redirect_url);
                url = a->hop_url;
        }
}

/* http_get_range, and with why set the same without logging the failure:
 * why (why_size bytes) gets it instead. */
static int get_range(struct http_conn *c, const char *url, uint64_t start, uint64_t len, byte_sink sink,
                     void *opaque, uint64_t *total_size, uint64_t expected_total, char *why, size_t why_size)
{
        const struct http_options *o = c->opts;
        uint64_t done = 0;
        unsigned attempt_no = 0;

        for (;;) {
                struct attempt a = {
                        .conn = c, .url = url, .start = start + done, .len = len - done,
                        .need_total = total_size != NULL, .expected_total = expected_total, .sink = sink,
                        .opaque = opaque,
                };
                int err = run_attempt(&a);
                done += a.delivered;
                if (err < 0 && done == len && !a.sink_failed)
                        err = 0; /* every byte asked for arrived; what went wrong came after */
                if (err == 0) {
                        if (total_size)
                                *total_size = a.resp.range_total;
                        attempt_release(&a);
                        return 0;
                }
                if (a.sink_failed) {
                        attempt_release(&a);
                        return err;
                }
                if (o->cancel && atomic_load(o->cancel)) {
                        attempt_release(&a);
                        return -ECANCELED; /* the job failed elsewhere and said why */
                }
                /* Which server said so, when a redirect led elsewhere. */
                const char *via = a.hop_url ? " (after a redirect to " : "";
                const char *hop = a.hop_url ? a.hop_url : "";
                const char *via_end = a.hop_url ? ")" : "";
                if (a.fatal_err < 0 || attempt_no >= o->retry_count) {
                        if (why)
                                snprintf(why, why_size, "%s: %s%s%s%s", url, a.reason, via, hop, via_end);
                        else
                                log_error("%s: %s%s%s%s", url, a.reason, via, hop, via_end);
                        attempt_release(&a);
                        return a.fatal_err < 0 ? a.fatal_err : -EIO;
                }
                attempt_no++;
                unsigned delay = o->retry_delay_s;
                if (a.resp.retry_after_s > delay)
                        delay = a.resp.retry_after_s;
                log_warn("%s: %s%s%s%s; retrying from byte %" PRIu64 " (%u of %u) in %u s", url, a.reason, via, hop,
                         via_end, start + done, attempt_no, o->retry_count, delay);
                attempt_release(&a);
                /* Wait in steps, so that a job failing elsewhere stops the wait. */
                for (unsigned ms = 0; ms < delay * 1000u; ms += 100) {
                        struct timespec ts = { 0, 100 * 1000 * 1000 };
                        if (o->cancel && atomic_load(o->cancel))
                                return -ECANCELED;
                        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                                ;
                }
        }
}

int http_get_range(struct http_conn *c, const char *url, uint64_t start, uint64_t len, byte_sink sink,
                   void *opaque, uint64_t *total_size)
{
        return get_range(c, url, start, len, sink, opaque, total_size, 0, NULL, 0);
}

int http_get_range_quiet(struct http_conn *c, const char *url, uint64_t start, uint64_t len, byte_sink sink,
                         void *opaque, uint64_t *total_size, uint64_t expected_total, char *why, size_t why_size)
{
        return get_range(c, url, start, len, sink, opaque, total_size, expected_total, why, why_size);
}

struct small_body {
        uint8_t *buf;
        size_t used, cap;
};

static int small_body_sink(const uint8_t *data, size_t len, void *opaque)
{
        struct small_body *b = opaque;

        if (len > b->cap - b->used)
                return -EFBIG; /* cannot happen: the ranges asked for fit */
        memcpy(b->buf + b->used, data, len);
        b->used += len;
        return 0;
}

int http_get_small(struct http_conn *c, const char *url, size_t max, uint8_t **out, size_t *len, char *why,
                   size_t why_size)
{
        struct small_body b = { .cap = max };
        uint64_t total = 0;
        int err;

        /* Range requests only, as for archives: the first byte tells the size,
         * so nothing larger than max is ever taken in. */
        b.buf = malloc(max ? max : 1);
        if (!b.buf) {
                snprintf(why, why_size, "%s: out of memory", url);
                return -ENOMEM;
        }
        err = get_range(c, url, 0, 1, small_body_sink, &b, &total, 0, why, why_size);
        if (err == 0 && total > max) {
                snprintf(why, why_size, "%s: %" PRIu64 " bytes, more than the %zu expected at most", url, total, max);
                err = -EFBIG;
        }
        if (err == 0 && total > 1)
                err = get_range(c, url, 1, total - 1, small_body_sink, &b, NULL, total, why, why_size);
        if (err < 0) {
                free(b.buf);
                return err;
        }
        *out = b.buf;
        *len = b.used;
        return 0;
}
