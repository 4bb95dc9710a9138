#include "http.h"

#include "curl_api.h"
#include "http_response.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct http_conn {
        CURL *curl;
        struct curl_slist *headers; /* the options' extra headers, in curl's form */
        const struct http_options *opts;
        uint64_t bytes_received;
};

/* State of one attempt. */
struct attempt {
        struct http_conn *conn;
        const char *url;
        uint64_t start, len;      /* what this attempt asked for */
        bool need_total;          /* the caller wants the resource's size */
        uint64_t delivered;       /* bytes handed to the sink in this attempt */
        long status;              /* of the final response */
        struct http_response resp; /* its headers */
        bool checked;             /* status and range checked at the first body byte */
        int sink_err;             /* the sink refused: never retried */
        int fatal_err;            /* the server cannot serve us: never retried */
        char reason[160];         /* why the attempt failed, for the retry message */
        curl_off_t last_dlnow;    /* progress seen by the idle check */
        struct timespec last_progress;
        http_sink sink;
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

/* Checks the response before its first body byte is used. */
static bool response_acceptable(struct attempt *a)
{
        if (!GET(a, CURLINFO_RESPONSE_CODE, &a->status))
                return false;
        switch (http_response_check(&a->resp, a->status, a->start, a->len, a->need_total, a->reason,
                                    sizeof(a->reason))) {
        case HTTP_VERDICT_OK:
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

static size_t on_body(char *buf, size_t size, size_t nmemb, void *opaque)
{
        struct attempt *a = opaque;
        size_t n = size * nmemb;

        a->conn->bytes_received += n;
        if (!a->checked) {
                a->checked = true;
                if (!response_acceptable(a))
                        return CURL_WRITEFUNC_ERROR;
        }
        if (n > a->len - a->delivered) {
                /* Keep what was asked for; the surplus ends the transfer, and a
                 * complete range is a success however it ended. */
                size_t want = (size_t)(a->len - a->delivered);
                snprintf(a->reason, sizeof(a->reason), "the server sent more bytes than asked for");
                if (want > 0) {
                        a->sink_err = a->sink((const uint8_t *)buf, want, a->opaque);
                        if (a->sink_err < 0)
                                return CURL_WRITEFUNC_ERROR;
                        a->delivered += want;
                }
                return CURL_WRITEFUNC_ERROR;
        }
        a->sink_err = a->sink((const uint8_t *)buf, n, a->opaque);
        if (a->sink_err < 0)
                return CURL_WRITEFUNC_ERROR;
        a->delivered += n;
        return n;
}

static double seconds_since(const struct timespec *t)
{
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* The idle timeout: curl's low-speed check averages over a window and fires
 * seconds late; this one fires when no byte has come for timeout_s seconds.
 * curl calls it at least once a second. */
static int on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
        struct attempt *a = opaque;
        (void)dltotal;
        (void)ultotal;
        (void)ulnow;

        if (a->conn->opts->cancel && atomic_load(a->conn->opts->cancel)) {
                snprintf(a->reason, sizeof(a->reason), "cancelled");
                return 1;
        }
        if (!a->conn->opts->timeout_s)
                return 0;

        if (dlnow != a->last_dlnow) {
                a->last_dlnow = dlnow;
                clock_gettime(CLOCK_MONOTONIC, &a->last_progress);
                return 0;
        }
        if (seconds_since(&a->last_progress) >= a->conn->opts->timeout_s) {
                snprintf(a->reason, sizeof(a->reason), "no data for %u s", a->conn->opts->timeout_s);
                return 1;
        }
        return 0;
}

static bool set_options(struct attempt *a, const char *range)
{
        const struct http_options *o = a->conn->opts;

        if (!SET(a, CURLOPT_URL, a->url) || !SET(a, CURLOPT_RANGE, range) || !SET(a, CURLOPT_NOSIGNAL, 1L) ||
            !SET(a, CURLOPT_FOLLOWLOCATION, 1L) || !SET(a, CURLOPT_MAXREDIRS, 10L) ||
            !SET(a, CURLOPT_USERAGENT, "ihop/" IHOP_VERSION) || !SET(a, CURLOPT_HTTPHEADER, a->conn->headers) ||
            !SET(a, CURLOPT_HEADERFUNCTION, on_header) || !SET(a, CURLOPT_HEADERDATA, a) ||
            !SET(a, CURLOPT_WRITEFUNCTION, on_body) || !SET(a, CURLOPT_WRITEDATA, a) || !restrict_protocols(a))
                return false;
        if (o->timeout_s && !SET(a, CURLOPT_CONNECTTIMEOUT, (long)o->timeout_s))
                return false;
        if ((o->timeout_s || o->cancel) &&
            (!SET(a, CURLOPT_NOPROGRESS, 0L) || !SET(a, CURLOPT_XFERINFOFUNCTION, on_progress) ||
             !SET(a, CURLOPT_XFERINFODATA, a)))
                return false;
        return true;
}

static int run_attempt(struct attempt *a)
{
        CURL *curl = a->conn->curl;
        char range[64];
        CURLcode res;

        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, a->start, a->start + a->len - 1);
        libcurl.easy_reset(curl);
        if (!set_options(a, range))
                return a->fatal_err;
        clock_gettime(CLOCK_MONOTONIC, &a->last_progress);

        res = libcurl.easy_perform(curl);
        if (a->sink_err < 0)
                return a->sink_err;
        if (a->fatal_err < 0)
                return a->fatal_err;
        if (res == CURLE_OK) {
                if (!a->checked) {
                        a->checked = true;
                        if (!response_acceptable(a))
                                return -EIO;
                }
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
                return -EINVAL;
        return -EIO;
}

int http_get_range(struct http_conn *c, const char *url, uint64_t start, uint64_t len, http_sink sink,
                   void *opaque, uint64_t *total_size)
{
        const struct http_options *o = c->opts;
        uint64_t done = 0;
        unsigned attempt_no = 0;

        for (;;) {
                struct attempt a = {
                        .conn = c, .url = url, .start = start + done, .len = len - done,
                        .need_total = total_size != NULL, .sink = sink, .opaque = opaque,
                };
                int err = run_attempt(&a);
                done += a.delivered;
                if (err < 0 && done == len && err != a.sink_err)
                        err = 0; /* every byte asked for arrived; what went wrong came after */
                if (err == 0) {
                        if (total_size)
                                *total_size = a.resp.range_total;
                        return 0;
                }
                if (err == a.sink_err)
                        return err;
                if (o->cancel && atomic_load(o->cancel))
                        return -ECANCELED; /* the job failed elsewhere and said why */
                if (a.fatal_err < 0 || err == -EINVAL || attempt_no >= o->retry_count) {
                        log_error("%s: %s", url, a.reason);
                        return err == -EINVAL || err == -ENOTSUP ? err : -EIO;
                }
                attempt_no++;
                unsigned delay = o->retry_delay_s;
                if (a.resp.retry_after_s > delay)
                        delay = a.resp.retry_after_s;
                log_warn("%s: %s; retrying from byte %" PRIu64 " (%u of %u) in %u s", url, a.reason,
                         start + done, attempt_no, o->retry_count, delay);
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
