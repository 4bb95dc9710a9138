#include "cleanup.h"
#include "commands.h"
#include "image_map.h"
#include "log.h"
#include "nbd_server.h"
#include "release_file.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* More clients than this wait in the listen queue. */
#define SERVE_MAX_CLIENTS 128

static int stop_pipe[2] = { -1, -1 };
static atomic_int n_clients;

/* The connected clients' sockets, so that a stop can end their sessions
 * (shutdown) and wait for them before the releases are closed. */
static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
static int client_fds[SERVE_MAX_CLIENTS];

static int client_register(int fd)
{
        int slot = -1;

        pthread_mutex_lock(&clients_lock);
        for (int i = 0; i < SERVE_MAX_CLIENTS && slot < 0; i++)
                if (client_fds[i] < 0)
                        client_fds[slot = i] = fd;
        pthread_mutex_unlock(&clients_lock);
        return slot;
}

static void client_unregister(int slot)
{
        pthread_mutex_lock(&clients_lock);
        client_fds[slot] = -1;
        pthread_mutex_unlock(&clients_lock);
}

static void clients_stop(void)
{
        pthread_mutex_lock(&clients_lock);
        for (int i = 0; i < SERVE_MAX_CLIENTS; i++)
                if (client_fds[i] >= 0)
                        shutdown(client_fds[i], SHUT_RDWR);
        pthread_mutex_unlock(&clients_lock);
        /* Sessions end at their next read or write; a few seconds at most. */
        for (int waited = 0; atomic_load(&n_clients) > 0 && waited < 10000; waited += 10)
                usleep(10000);
}

static void on_stop_signal(int sig)
{
        (void)sig;
        if (write(stop_pipe[1], "x", 1) < 0) {
                /* nothing to do: the pipe is full, a stop is already pending */
        }
}

static void serve_usage(FILE *f)
{
        fprintf(f, "Usage: ihop serve [--verify] (--unix PATH | --listen HOST:PORT) STORE/NAME...\n"
                   "\n"
                   "Serve releases read-only over the NBD protocol (export name = release name;\n"
                   "the first release is also the default export). Runs until SIGINT or SIGTERM.\n"
                   "\n"
                   "  --unix PATH          listen on a unix socket\n"
                   "  --listen HOST:PORT   listen on TCP\n"
                   "  --verify             hash each chunk on its first read; a corrupt chunk reads as EIO\n");
}

struct client {
        int fd;
        int slot;
        const struct nbd_export *exports;
        size_t n;
};

static void *client_thread(void *arg)
{
        struct client *c = arg;
        const struct nbd_export *e;
        int err = nbd_handshake(c->fd, c->exports, c->n, &e);

        if (err == 0) {
                log_debug("client connected to export '%s'", e->name);
                err = nbd_transmission(c->fd, e->map, e->map->size);
        }
        if (err < 0 && err != -ECONNABORTED && err != -ECONNRESET && err != -EPIPE)
                log_warn("client dropped: %s", strerror(-err));
        client_unregister(c->slot); /* before close: a stop must not shut down a reused fd */
        close(c->fd);
        free(c);
        atomic_fetch_sub(&n_clients, 1);
        return NULL;
}

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

static int listen_tcp(const char *spec)
{
        _cleanup_free_ char *host = strdup(spec);
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
        char *colon;
        int fd, one = 1, r;

        if (!host)
                return -ENOMEM;
        colon = strrchr(host, ':');
        if (!colon) {
                log_error("--listen wants HOST:PORT, not '%s'", spec);
                return -EINVAL;
        }
        *colon = '\0';
        r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
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

static int accept_loop(int listen_fd, const struct nbd_export *exports, size_t n)
{
        struct pollfd pfd[2] = { { listen_fd, POLLIN, 0 }, { stop_pipe[0], POLLIN, 0 } };
        pthread_attr_t attr;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        for (;;) {
                /* At the limit, accept nobody (they wait in the listen queue):
                 * watch for a stop only, and look again shortly. */
                bool full = atomic_load(&n_clients) >= SERVE_MAX_CLIENTS;
                pfd[0].events = full ? 0 : POLLIN;
                if (poll(pfd, 2, full ? 50 : -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_errno(-errno, "poll");
                }
                if (pfd[1].revents)
                        break;
                if (!(pfd[0].revents & POLLIN))
                        continue;
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue; /* the client went away before we got to it */
                struct client *c = malloc(sizeof(*c));
                pthread_t t;
                if (!c) {
                        free(c);
                        close(fd);
                        continue;
                }
                *c = (struct client){ fd, client_register(fd), exports, n };
                atomic_fetch_add(&n_clients, 1);
                if (c->slot < 0 || pthread_create(&t, &attr, client_thread, c) != 0) {
                        if (c->slot >= 0)
                                client_unregister(c->slot);
                        atomic_fetch_sub(&n_clients, 1);
                        close(fd);
                        free(c);
                }
        }
        pthread_attr_destroy(&attr);
        return 0;
}

int cmd_serve(int argc, char **argv)
{
        enum { OPT_UNIX = 256, OPT_LISTEN, OPT_VERIFY };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "unix", required_argument, NULL, OPT_UNIX },
                { "listen", required_argument, NULL, OPT_LISTEN },
                { "verify", no_argument, NULL, OPT_VERIFY },
                {}
        };
        const char *unix_path = NULL, *tcp = NULL;
        struct nbd_export *exports;
        struct sigaction sa = { .sa_handler = on_stop_signal };
        bool verify = false;
        size_t n = 0;
        int c, err = 0, listen_fd;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        serve_usage(stdout);
                        return 0;
                case OPT_UNIX:
                        unix_path = optarg;
                        break;
                case OPT_LISTEN:
                        tcp = optarg;
                        break;
                case OPT_VERIFY:
                        verify = true;
                        break;
                default:
                        serve_usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc || !!unix_path == !!tcp) {
                serve_usage(stderr);
                return 2;
        }
        exports = calloc((size_t)(argc - optind), sizeof(*exports));
        if (!exports)
                return 1;
        for (int i = 0; i < SERVE_MAX_CLIENTS; i++)
                client_fds[i] = -1;
        for (int i = optind; i < argc && err == 0; i++) {
                char *name;
                err = image_map_open(argv[i], verify, &exports[n].map, &name);
                if (err == 0)
                        exports[n++].name = name;
        }
        if (err == 0 && pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                err = log_errno(-errno, "pipe");
        if (err == 0) {
                signal(SIGPIPE, SIG_IGN);
                sigaction(SIGINT, &sa, NULL);
                sigaction(SIGTERM, &sa, NULL);
                listen_fd = unix_path ? listen_unix(unix_path) : listen_tcp(tcp);
                if (listen_fd < 0) {
                        err = listen_fd;
                } else {
                        log_info("serving %zu release%s on %s", n, n == 1 ? "" : "s", unix_path ? unix_path : tcp);
                        err = accept_loop(listen_fd, exports, n);
                        close(listen_fd);
                        if (unix_path)
                                unlink(unix_path);
                        clients_stop();
                }
        }
        /* A client thread that did not end in time still holds the maps. */
        if (atomic_load(&n_clients) == 0) {
                for (size_t i = 0; i < n; i++) {
                        image_map_free(exports[i].map);
                        free((char *)exports[i].name);
                }
                free(exports);
        }
        return err < 0 ? 1 : 0;
}
