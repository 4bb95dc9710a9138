// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "image_map.h"
#include "log.h"
#include "nbd_listener.h"
#include "ondemand_options.h"
#include "units.h"
#include "release_file.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>

static int listen_unix(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                log_error("unix socket path %s is too long", path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_errno(-errno, "cannot create a socket");
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
                int err = log_errno(-errno, "cannot listen on %s", path);
                close(fd);
                return err;
        }
        return fd;
}

/* "[HOST:]PORT", HOST possibly an IPv6 address in brackets. A missing
 * HOST is the loopback address: serving the network takes saying so. */
static int split_listen_address(char *spec, const char **host, const char **port)
{
        char *colon = strrchr(spec, ':');
        uint64_t number;

        *host = "127.0.0.1";
        *port = spec;
        if (colon) {
                size_t len = (size_t)(colon - spec);
                *colon = '\0';
                *port = colon + 1;
                if (spec[0] == '[') {
                        if (len < 3 || spec[len - 1] != ']')
                                return -EINVAL;
                        spec[len - 1] = '\0';
                        *host = spec + 1;
                } else if (strchr(spec, ':')) {
                        return -EINVAL; /* an IPv6 address wants brackets */
                } else if (spec[0]) {
                        *host = spec;
                }
        }
        return parse_uint(*port, 65535, &number) == 0 && number > 0 ? 0 : -EINVAL;
}

/* spec as given, for messages; host and port split from it. */
static int listen_tcp(const char *spec, const char *host, const char *port)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
        int fd, one = 1, r;

        r = getaddrinfo(host, port, &hints, &ai);
        if (r != 0) {
                log_error("cannot resolve %s: %s", spec, gai_strerror(r));
                return -EINVAL;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                freeaddrinfo(ai);
                return log_errno(-errno, "cannot create a socket");
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
                int err = log_errno(-errno, "cannot listen on %s", spec);
                freeaddrinfo(ai);
                close(fd);
                return err;
        }
        freeaddrinfo(ai);
        return fd;
}

static void free_exports(struct nbd_export *exports, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                image_map_free(exports[i].map);
                free((char *)exports[i].name);
        }
        free(exports);
}

int cmd_serve(int argc, char **argv)
{
        enum { OPT_UNIX = CLI_OPT_BASE, OPT_LISTEN, OPT_VERIFY, OPT_HANDSHAKE_TIMEOUT };
        static const struct cli_option options[] = {
                { .name = "unix", .key = OPT_UNIX, .arg = "PATH", .help = "listen on a unix socket" },
                { .name = "listen", .key = OPT_LISTEN, .arg = "[HOST:]PORT",
                  .help = "listen on TCP; without HOST on 127.0.0.1 only (0.0.0.0:PORT or [::]:PORT: every "
                          "interface)" },
                { .name = "verify", .key = OPT_VERIFY,
                  .help = "hash each chunk on its first read; a corrupt chunk reads as EIO" },
                { .name = "handshake-timeout", .key = OPT_HANDSHAKE_TIMEOUT, .arg = "SECS",
                  .help = "drop a client that has not chosen an export within SECS", .def = "%u",
                  .number = NBD_LISTENER_DEFAULT_HANDSHAKE_TIMEOUT_S },
                {}
        };
        const struct cli_command cmd = {
                .name = "serve",
                .synopsis = "[OPTIONS] (--unix PATH | --listen [HOST:]PORT) STORE/NAME...",
                .description = "Serve releases read-only over the NBD protocol (export name = release name;\n"
                               "the first release is also the default export). Runs until SIGINT or SIGTERM;\n"
                               "meanwhile the releases are in use: gc keeps their chunks, even after 'ihop rm'.\n"
                               "No TLS and no authentication: whoever reaches the socket reads the releases.\n"
                               "--source SOURCE applies to the release after it: that one need not be in\n"
                               "STORE; its chunks are fetched from SOURCE as they are read, and kept (a STORE\n"
                               "that cannot be written is refused, unless it holds the whole release).\n",
                .options = options,
                .groups = { ondemand_cli_options(), trust_cli_options(), http_cli_options() },
                .operands_in_order = true,
                .min_operands = 1,
                .max_operands = -1,
        };
        const char *unix_path = NULL, *tcp = NULL, *host = NULL, *port = NULL;
        _cleanup_free_ char *tcp_split = NULL;
        struct nbd_export *exports;
        struct nbd_listener_options lo = { .handshake_timeout_ms = NBD_LISTENER_DEFAULT_HANDSHAKE_TIMEOUT_S * 1000 };
        struct cli_parser p;
        sigset_t stop_signals;
        int stop = -1;
        bool verify = false;
        uint64_t secs;
        size_t n = 0;
        int c, err = 0, listen_fd;
        _cleanup_ondemand_cli_ struct ondemand_cli od;
        const char *sources[CLI_MAX_ORDERED_OPERANDS] = {}, *pending = NULL;
        bool any_source = false;
        int named = 0; /* operands seen as such; those after "--" come at the end */

        ondemand_cli_init(&od);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                switch (c) {
                case CLI_OPERAND:
                        sources[p.n_ordered - 1] = pending;
                        pending = NULL;
                        named = p.n_ordered;
                        break;
                case OPT_SOURCE:
                        if (pending) {
                                log_error("--source %s: two sources for one release", p.arg);
                                return CLI_USAGE;
                        }
                        pending = p.arg;
                        any_source = true;
                        break;
                case OPT_UNIX:
                        unix_path = p.arg;
                        break;
                case OPT_LISTEN:
                        tcp = p.arg;
                        break;
                case OPT_VERIFY:
                        verify = true;
                        break;
                case OPT_HANDSHAKE_TIMEOUT:
                        if (parse_uint(p.arg, 3600, &secs) < 0 || secs == 0) {
                                log_error("--handshake-timeout wants seconds from 1 to 3600, not '%s'", p.arg);
                                return CLI_USAGE;
                        }
                        lo.handshake_timeout_ms = (unsigned)secs * 1000;
                        break;
                default:
                        err = ondemand_cli_parse(&od, &p, c);
                        if (err != 0)
                                return err;
                        break;
                }
        }
        if (c < 0)
                return p.result;
        if (pending && p.n_operands > named) { /* "--source SOURCE -- STORE/NAME" */
                sources[named] = pending;
                pending = NULL;
        }
        if (pending) {
                log_error("--source %s is for the release named after it, and none is", pending);
                return CLI_USAGE;
        }
        err = ondemand_cli_finish(&od, any_source);
        if (err != 0)
                return err;
        if (!!unix_path == !!tcp)
                return cli_usage_error(&p);
        if (tcp) {
                tcp_split = strdup(tcp);
                if (!tcp_split)
                        return -ENOMEM;
                if (split_listen_address(tcp_split, &host, &port) < 0) {
                        log_error("--listen wants [HOST:]PORT (an IPv6 HOST in brackets), not '%s'", tcp);
                        return CLI_USAGE;
                }
        }
        err = cli_check_release_operands(p.operands, p.n_operands);
        if (err != 0)
                return err;
        exports = calloc((size_t)p.n_operands, sizeof(*exports));
        if (!exports)
                return -ENOMEM;
        for (int i = 0; i < p.n_operands && err == 0; i++) {
                char *name;
                if (sources[i]) {
                        struct ondemand_options oo = ondemand_cli_options_for(&od, sources[i]);
                        err = ondemand_open(p.operands[i], &oo, verify, &exports[n].map, &name);
                } else {
                        err = image_map_open(p.operands[i], verify, &exports[n].map, &name);
                }
                if (err == 0)
                        exports[n++].name = name;
        }
        /* The stop signals arrive through a signalfd that the accept loop
         * watches: blocked here, before any client thread exists. */
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        if (err == 0) {
                pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
                signal(SIGPIPE, SIG_IGN);
                stop = signalfd(-1, &stop_signals, SFD_CLOEXEC);
                if (stop < 0)
                        err = log_errno(-errno, "signalfd");
        }
        /* With the stop signals blocked: the fills' threads inherit that. */
        for (size_t i = 0; i < n && err == 0; i++)
                err = ondemand_start(exports[i].map);
        if (err == 0) {
                listen_fd = unix_path ? listen_unix(unix_path) : listen_tcp(tcp, host, port);
                if (listen_fd < 0) {
                        err = listen_fd;
                } else {
                        log_info("serving %zu release%s on %s", n, n == 1 ? "" : "s", unix_path ? unix_path : tcp);
                        lo.exports = exports;
                        lo.n_exports = n;
                        err = nbd_listener_run(listen_fd, stop, &lo);
                        close(listen_fd);
                        if (unix_path)
                                unlink(unix_path);
                }
        }
        if (stop >= 0)
                close(stop);
        free_exports(exports, n);
        return err;
}
