#include "nbd_listener.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A client thread's stack: the handshake's buffers and a few frames of the
 * read path. The default (8 MiB) would be mostly untouched, but counts in
 * full once a daemon locks its memory. */
#define CLIENT_STACK_SIZE (256u << 10)

struct client {
        struct listener *l;
        int fd; /* -1: the place is free */
        pthread_t thread;
        bool handshaking; /* counted in n_handshakes */
        bool done;        /* the thread has ended: join it */
        uint64_t serial;  /* accept order */
};

struct listener {
        const struct nbd_listener_options *o;
        pthread_mutex_t lock;
        struct client clients[NBD_LISTENER_MAX_CLIENTS];
        unsigned n_clients, n_handshakes;
        uint64_t serial;
        int ended[2]; /* a client thread writes a byte here as it ends */
};

static void *client_thread(void *arg)
{
        struct client *c = arg;
        struct listener *l = c->l;
        const struct nbd_export *e = NULL;
        int err = nbd_handshake(c->fd, l->o->exports, l->o->n_exports, l->o->handshake_timeout_ms, &e);
        bool dropped;

        pthread_mutex_lock(&l->lock);
        dropped = !c->handshaking; /* dropped for a newcomer */
        if (c->handshaking) {
                c->handshaking = false;
                l->n_handshakes--;
        }
        pthread_mutex_unlock(&l->lock);

        if (err == 0 && !dropped) {
                log_debug("client connected to export '%s'", e->name);
                err = nbd_transmission(c->fd, e->map, e->map->size, NBD_LISTENER_REPLY_BUFFER, NBD_LISTENER_WORKERS);
        }
        if (err == -ETIMEDOUT)
                log_warn("client dropped: no export chosen within %u s", l->o->handshake_timeout_ms / 1000);
        else if (err < 0 && !dropped && err != -ECONNABORTED && err != -ECONNRESET && err != -EPIPE)
                log_warn("client dropped: %s", strerror(-err));

        pthread_mutex_lock(&l->lock);
        c->done = true;
        pthread_mutex_unlock(&l->lock);
        if (write(l->ended[1], "e", 1) < 0) {
                /* the pipe is full: the accept loop has wake-ups pending anyway */
        }
        return NULL;
}

/* Joins the threads that have ended and frees their places. */
static void reap(struct listener *l)
{
        char buf[64];

        while (read(l->ended[0], buf, sizeof(buf)) > 0)
                ;
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++) {
                struct client *c = &l->clients[i];
                bool done;

                pthread_mutex_lock(&l->lock);
                done = c->fd >= 0 && c->done;
                pthread_mutex_unlock(&l->lock);
                if (!done)
                        continue;
                pthread_join(c->thread, NULL);
                close(c->fd);
                pthread_mutex_lock(&l->lock);
                c->fd = -1;
                l->n_clients--;
                pthread_mutex_unlock(&l->lock);
        }
}

/* Drops the client that has been in the handshake longest (lock held): its
 * thread sees its socket shut and ends. */
static void drop_oldest_handshake(struct listener *l)
{
        struct client *oldest = NULL;

        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++) {
                struct client *c = &l->clients[i];
                if (c->fd >= 0 && c->handshaking && (!oldest || c->serial < oldest->serial))
                        oldest = c;
        }
        if (!oldest)
                return;
        log_debug("dropping a client that has not finished its handshake, for a newcomer");
        oldest->handshaking = false;
        l->n_handshakes--;
        shutdown(oldest->fd, SHUT_RDWR);
}

static void start_client(struct listener *l, int fd, const pthread_attr_t *attr)
{
        struct client *c = NULL;

        pthread_mutex_lock(&l->lock);
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS && !c; i++)
                if (l->clients[i].fd < 0)
                        c = &l->clients[i];
        if (c) {
                *c = (struct client){ .l = l, .fd = fd, .handshaking = true, .serial = l->serial++ };
                if (pthread_create(&c->thread, attr, client_thread, c) == 0) {
                        l->n_clients++;
                        l->n_handshakes++;
                } else {
                        log_warn("cannot start a thread for a client: %s", strerror(errno));
                        c->fd = -1;
                        c = NULL;
                }
        }
        pthread_mutex_unlock(&l->lock);
        if (!c)
                close(fd);
}

/* Whether a newcomer can be taken now (lock held). Handshakes beyond their
 * share, or when every place is taken, make room by dropping the oldest;
 * when every place holds a session, newcomers wait in the listen queue. */
static bool room_for_newcomer(struct listener *l)
{
        bool full = l->n_clients >= NBD_LISTENER_MAX_CLIENTS;

        if ((full || l->n_handshakes >= NBD_LISTENER_MAX_HANDSHAKES) && l->n_handshakes > 0)
                drop_oldest_handshake(l);
        return !full;
}

static void stop_clients(struct listener *l)
{
        pthread_mutex_lock(&l->lock);
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++)
                if (l->clients[i].fd >= 0)
                        shutdown(l->clients[i].fd, SHUT_RDWR);
        pthread_mutex_unlock(&l->lock);
        /* A session ends at its next read or write of the shut socket. */
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++) {
                struct client *c = &l->clients[i];
                if (c->fd < 0)
                        continue;
                pthread_join(c->thread, NULL);
                close(c->fd);
                c->fd = -1;
        }
        l->n_clients = 0;
}

static int accept_loop(struct listener *l, int listen_fd, int stop_fd, const pthread_attr_t *attr)
{
        /* Set when every place is taken, or every descriptor: the listen
         * queue is left alone until a client thread ends. */
        bool waiting = false, out_of_fds_said = false;

        for (;;) {
                struct pollfd pfd[3] = {
                        { stop_fd, POLLIN, 0 },
                        { l->ended[0], POLLIN, 0 },
                        { listen_fd, waiting ? 0 : POLLIN, 0 },
                };
                if (poll(pfd, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_errno(-errno, "poll");
                }
                if (pfd[0].revents)
                        return 0;
                if (pfd[1].revents) {
                        reap(l);
                        waiting = false;
                }
                if (!(pfd[2].revents & POLLIN))
                        continue;
                pthread_mutex_lock(&l->lock);
                bool room = room_for_newcomer(l);
                pthread_mutex_unlock(&l->lock);
                if (!room) {
                        waiting = true;
                        continue;
                }
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                        start_client(l, fd, attr);
                } else if (errno == EMFILE || errno == ENFILE) {
                        /* The newcomer stays queued until a session ends and
                         * gives its descriptor back. */
                        if (!out_of_fds_said)
                                log_warn("out of file descriptors: new clients wait until a session ends");
                        out_of_fds_said = true;
                        waiting = true;
                }
                /* else the client went away before we got to it */
        }
}

int nbd_listener_run(int listen_fd, int stop_fd, const struct nbd_listener_options *o)
{
        struct listener *l = calloc(1, sizeof(*l));
        pthread_attr_t attr;
        int err;

        if (!l)
                return log_errno(-ENOMEM, "cannot start serving");
        l->o = o;
        if (pipe2(l->ended, O_CLOEXEC | O_NONBLOCK) < 0) {
                free(l);
                return log_errno(-errno, "pipe");
        }
        pthread_mutex_init(&l->lock, NULL);
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++)
                l->clients[i].fd = -1;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, CLIENT_STACK_SIZE);

        err = accept_loop(l, listen_fd, stop_fd, &attr);
        stop_clients(l);

        pthread_attr_destroy(&attr);
        pthread_mutex_destroy(&l->lock);
        close(l->ended[0]);
        close(l->ended[1]);
        free(l);
        return err;
}
