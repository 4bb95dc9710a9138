// SPDX-License-Identifier: MIT
#include "nbd_listener.h"

#include "log.h"
#include "nbd_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* A client thread's stack: the handshake's buffers and a few frames of the
 * read path. The default (8 MiB) would be mostly untouched, but counts in
 * full once a daemon locks its memory. */
#define CLIENT_STACK_SIZE (256u << 10)

/* A client in the handshake that has answered the greeting is not dropped
 * for a newcomer before this: an NBD client negotiates in milliseconds, so
 * a flood of newcomers cannot push out one that is really negotiating. */
#define HANDSHAKE_GRACE_MS 1000

struct client {
        struct listener *l;
        int fd; /* -1: the place is free */
        pthread_t thread;
        bool handshaking; /* counted in n_handshakes */
        bool done;        /* the thread has ended: join it */
        atomic_bool engaged; /* it answered the greeting as an NBD client does */
        int64_t accepted_ms;
};

struct listener {
        const struct nbd_listener_options *o;
        pthread_mutex_t lock;
        struct client clients[NBD_LISTENER_MAX_CLIENTS];
        unsigned n_clients, n_handshakes;
        int ended[2]; /* a client thread writes a byte here as it ends */
};

static void *client_thread(void *arg)
{
        struct client *c = arg;
        struct listener *l = c->l;
        const struct nbd_export *e = NULL;
        struct nbd_features features;
        int err = nbd_handshake(c->fd, l->o->exports, l->o->n_exports, l->o->handshake_timeout_ms, &c->engaged,
                                &e, &features);
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
                err = nbd_transmission(c->fd, e->map, e->map->size, NBD_LISTENER_REPLY_BUFFER, NBD_LISTENER_WORKERS,
                                       &features);
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

/* Has the client said anything? What it sent may still wait in the socket,
 * its thread not having run since: that counts too. */
static bool has_spoken(struct client *c)
{
        int pending = 0;

        return atomic_load(&c->engaged) || (ioctl(c->fd, FIONREAD, &pending) == 0 && pending > 0);
}

/* When a client in the handshake may be dropped for a newcomer: at once if
 * it has not said a word, else once its grace has passed. */
static int64_t droppable_from(struct client *c)
{
        return has_spoken(c) ? c->accepted_ms + HANDSHAKE_GRACE_MS : c->accepted_ms;
}

/* Drops the client in the handshake that has been droppable longest (lock
 * held): its thread sees its socket shut and ends. Returns 0 when one was
 * dropped, else when one will be droppable (ms on CLOCK_MONOTONIC), or -1
 * when none is in the handshake. */
static int64_t drop_a_handshake(struct listener *l)
{
        struct client *first = NULL;
        int64_t now = nbd_now_ms();

        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++) {
                struct client *c = &l->clients[i];
                if (c->fd >= 0 && c->handshaking && (!first || droppable_from(c) < droppable_from(first)))
                        first = c;
        }
        if (!first)
                return -1;
        if (droppable_from(first) > now)
                return droppable_from(first);
        log_debug("dropping a client that has not finished its handshake, for a newcomer");
        first->handshaking = false;
        l->n_handshakes--;
        shutdown(first->fd, SHUT_RDWR);
        return 0;
}

static void start_client(struct listener *l, int fd, const pthread_attr_t *attr)
{
        struct client *c = NULL;

        pthread_mutex_lock(&l->lock);
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS && !c; i++)
                if (l->clients[i].fd < 0)
                        c = &l->clients[i];
        if (c) {
                *c = (struct client){ .l = l, .fd = fd, .handshaking = true, .accepted_ms = nbd_now_ms() };
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
 * share, or when every place is taken, make room by dropping one (see
 * drop_a_handshake); when every place holds a session, or no handshake may
 * be dropped yet, newcomers wait in the listen queue: *retry_ms is then
 * when to look again (-1: when a client ends). */
static bool room_for_newcomer(struct listener *l, int64_t *retry_ms)
{
        bool full = l->n_clients >= NBD_LISTENER_MAX_CLIENTS;

        *retry_ms = -1;
        if (!full && l->n_handshakes < NBD_LISTENER_MAX_HANDSHAKES)
                return true;
        int64_t next = drop_a_handshake(l);
        if (next > 0) {
                *retry_ms = next;
                return false;
        }
        return !full;
}

static void stop_clients(struct listener *l)
{
        pthread_mutex_lock(&l->lock);
        for (unsigned i = 0; i < NBD_LISTENER_MAX_CLIENTS; i++)
                if (l->clients[i].fd >= 0)
                        shutdown(l->clients[i].fd, SHUT_RDWR);
        pthread_mutex_unlock(&l->lock);
        /* A read waiting for a chunk on its way (--source) would hold its
         * session for as long as the fetch takes: it fails now. */
        for (size_t i = 0; i < l->o->n_exports; i++)
                image_map_cancel(l->o->exports[i].map);
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
        /* Set when no newcomer can be taken (every place taken, every
         * descriptor, or no handshake droppable yet): the listen queue is
         * left alone until a client thread ends, or until retry_ms. */
        bool waiting = false, out_of_fds_said = false;
        int64_t retry_ms = -1;

        for (;;) {
                struct pollfd pfd[3] = {
                        { stop_fd, POLLIN, 0 },
                        { l->ended[0], POLLIN, 0 },
                        { listen_fd, waiting ? 0 : POLLIN, 0 },
                };
                int timeout = -1;
                if (waiting && retry_ms >= 0) {
                        int64_t left = retry_ms - nbd_now_ms();
                        timeout = left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
                }
                int r = poll(pfd, 3, timeout);
                if (r < 0) {
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
                if (r == 0)
                        waiting = false; /* a handshake's grace has passed */
                if (waiting || !(pfd[2].revents & POLLIN))
                        continue;
                pthread_mutex_lock(&l->lock);
                bool room = room_for_newcomer(l, &retry_ms);
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
                        retry_ms = -1;
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
