// SPDX-License-Identifier: MIT
#include "http_options.h"

#include "log.h"
#include "units.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct cli_option options[] = {
        { .help = "HTTP options (for an archive at an http(s) URL):" },
        { .name = "http-retry-count", .key = OPT_HTTP_RETRY_COUNT, .arg = "N", .help = "retries of a failed transfer",
          .def = "%u", .number = HTTP_DEFAULT_RETRY_COUNT },
        { .name = "http-retry-delay", .key = OPT_HTTP_RETRY_DELAY, .arg = "SECS", .help = "delay before a retry",
          .def = "%u", .number = HTTP_DEFAULT_RETRY_DELAY_S },
        { .name = "http-timeout", .key = OPT_HTTP_TIMEOUT, .arg = "SECS",
          .help = "fail an attempt after this long without data; 0: never", .def = "%u",
          .number = HTTP_DEFAULT_TIMEOUT_S },
        { .name = "http-min-rate", .key = OPT_HTTP_MIN_RATE, .arg = "BYTES",
          .help = "fail an attempt that gets less than BYTES a second over --http-timeout; 0: never",
          .def = "%u", .number = HTTP_DEFAULT_MIN_RATE },
        { .name = "http-header", .key = OPT_HTTP_HEADER, .arg = "'K: V'",
          .help = "request header for SOURCE's origin only (repeatable)" },
        { .name = "http-cacert", .key = OPT_HTTP_CACERT, .arg = "FILE",
          .help = "trust the CA certificates in FILE (PEM) for https instead", .def = "the system's" },
        { .name = "http-cert", .key = OPT_HTTP_CERT, .arg = "FILE",
          .help = "present this client certificate (PEM) to https servers that ask for one" },
        { .name = "http-key", .key = OPT_HTTP_KEY, .arg = "FILE", .help = "the client certificate's private key (PEM)",
          .def = "in the --http-cert file" },
        { .name = "mirror", .key = OPT_HTTP_MIRROR, .arg = "URL",
          .help = "the same archive at URL, tried when SOURCE fails (repeatable, in order)" },
        {}
};

const struct cli_option *http_cli_options(void) { return options; }

void http_cli_init(struct http_cli *h)
{
        *h = (struct http_cli){ .http = HTTP_OPTIONS_DEFAULT };
}

void http_cli_free(struct http_cli *h)
{
        free(h->headers);
        free(h->mirrors);
        h->headers = NULL;
        h->mirrors = NULL;
}

int http_cli_finish(const struct http_cli *h)
{
        if (h->http.client_key && !h->http.client_cert) {
                log_error("--http-key goes with --http-cert");
                return CLI_USAGE;
        }
        return 0;
}

int http_cli_parse(struct http_cli *h, const struct cli_parser *p, int opt)
{
        uint64_t v;

        switch (opt) {
        case OPT_HTTP_RETRY_COUNT:
        case OPT_HTTP_RETRY_DELAY:
        case OPT_HTTP_TIMEOUT:
                if (parse_uint(p->arg, 86400, &v) < 0) {
                        log_error("--%s wants a number of %s, not '%s'", p->option->name,
                                  opt == OPT_HTTP_RETRY_COUNT ? "retries" : "seconds", p->arg);
                        return CLI_USAGE;
                }
                if (opt == OPT_HTTP_RETRY_COUNT)
                        h->http.retry_count = (unsigned)v;
                else if (opt == OPT_HTTP_RETRY_DELAY)
                        h->http.retry_delay_s = (unsigned)v;
                else
                        h->http.timeout_s = (unsigned)v;
                return 0;
        case OPT_HTTP_MIN_RATE:
                /* A size (4KiB): bytes a second, at most 1 GiB of them. */
                if (parse_size(p->arg, &v) < 0 || v > (1u << 30)) {
                        log_error("--http-min-rate wants bytes a second (1024, 4KiB; 0: no floor), not '%s'",
                                  p->arg);
                        return CLI_USAGE;
                }
                h->http.min_rate = v;
                return 0;
        case OPT_HTTP_HEADER: {
                if (!strchr(p->arg, ':')) {
                        log_error("--http-header wants 'Name: value', not '%s'", p->arg);
                        return CLI_USAGE;
                }
                int err = cli_list_append(&h->headers, &h->http.n_headers, p->arg);
                h->http.headers = h->headers;
                return err;
        }
        case OPT_HTTP_CACERT:
                h->http.ca_file = p->arg;
                return 0;
        case OPT_HTTP_CERT:
                h->http.client_cert = p->arg;
                return 0;
        case OPT_HTTP_KEY:
                h->http.client_key = p->arg;
                return 0;
        case OPT_HTTP_MIRROR: {
                if (!http_is_url(p->arg)) {
                        log_error("--mirror wants an http(s) URL, not '%s'", p->arg);
                        return CLI_USAGE;
                }
                int err = cli_list_append(&h->mirrors, &h->http.n_mirrors, p->arg);
                h->http.mirrors = h->mirrors;
                return err;
        }
        default:
                return 0;
        }
}
