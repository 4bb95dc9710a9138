// SPDX-License-Identifier: MIT
#include "fd_cache.h"

#include "fd_limit.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <unistd.h>

/* Descriptors the shared cache leaves to the rest of the process: a
 * server's client sockets (at most 128), its listening socket, FUSE's and
 * netlink's, stdio, and a file or two being read by a command. */
#define FD_CACHE_RESERVED 256u
/* Each open file pins kernel memory that no RSS shows and that the kernel
 * could otherwise reclaim: a struct file, a dentry and an inode, and while
 * it is the only one open in its fan-out directory, that directory's
 * dentry and inode too: 1.6 to 3 KiB on ext4 (bench/fd-bench.py). One file
 * per this much memory keeps that under 2.5% of it (a 256 MiB device:
 * 2048 files, 3 to 6 MiB). */
#define FD_CACHE_RAM_PER_FILE (128u << 10)
/* Random reads over a whole release gain until every chunk file is open
 * (bench/fd-bench.py): this many cover a release of 4 GiB in chunks of
 * bita's default size. */
#define FD_CACHE_MAX 65536u
#define FD_CACHE_MIN 16u
/* Files closed at once when the process runs out of descriptors. */
#define FD_CACHE_RELIEF 16u

struct fd_slot {
        atomic_int pins; /* readers of fd; -1 while the slot is refilled */
        atomic_int fd;
        _Atomic(atomic_int *) key; /* the owner's key of the file; NULL when empty */
        atomic_bool recent;        /* read since the clock hand last passed */
};

struct fd_cache {
        pthread_mutex_t lock; /* held by misses only */
        struct fd_slot *slots;
        size_t capacity;
        size_t used;   /* slots ever filled: [0, used) */
        size_t n_open; /* slots holding a file */
        size_t limit;  /* at most this many open: lowered when the process runs out */
        size_t hand;   /* the clock's */
        atomic_bool sized; /* slots allocated: the shared cache's at its first miss */
};

int fd_cache_new(size_t capacity, struct fd_cache **out)
{
        struct fd_cache *c = calloc(1, sizeof(*c));

        if (capacity == 0)
                capacity = 1;
        if (!c || !(c->slots = calloc(capacity, sizeof(*c->slots)))) {
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        c->capacity = c->limit = capacity;
        for (size_t i = 0; i < capacity; i++)
                atomic_init(&c->slots[i].fd, -1);
        atomic_init(&c->sized, true);
        *out = c;
        return 0;
}

void fd_cache_free(struct fd_cache *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->used; i++) {
                atomic_int *key = atomic_load(&c->slots[i].key);
                if (!key)
                        continue;
                atomic_store(key, -1);
                close(atomic_load(&c->slots[i].fd));
        }
        pthread_mutex_destroy(&c->lock);
        free(c->slots);
        free(c);
}

static struct fd_cache *shared;
static atomic_size_t shared_expected;

void fd_cache_expect(size_t n_files)
{
        atomic_fetch_add(&shared_expected, n_files);
}

static void shared_alloc(void)
{
        shared = calloc(1, sizeof(*shared));
        if (shared)
                pthread_mutex_init(&shared->lock, NULL);
}

struct fd_cache *fd_cache_shared(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, shared_alloc);
        return shared;
}

size_t fd_cache_most_open(uint64_t ram)
{
        uint64_t by_ram = ram / FD_CACHE_RAM_PER_FILE;

        return by_ram < FD_CACHE_MIN ? FD_CACHE_MIN : by_ram > FD_CACHE_MAX ? FD_CACHE_MAX : (size_t)by_ram;
}

size_t fd_cache_capacity_for(size_t files, rlim_t limit, uint64_t ram)
{
        size_t most = fd_cache_most_open(ram);

        if (files > 0 && files < most)
                most = files > FD_CACHE_MIN ? files : FD_CACHE_MIN;
        if (limit != RLIM_INFINITY && limit < most + FD_CACHE_RESERVED)
                return limit > FD_CACHE_MIN + FD_CACHE_RESERVED ? (size_t)limit - FD_CACHE_RESERVED : FD_CACHE_MIN;
        return most;
}

/* Said once, at debug level: how many of the releases' chunk files stay
 * open, from what limit to what, and why not all of them when not. */
static void report_size(size_t files, size_t capacity, size_t most, const struct rlimit *before,
                        const struct rlimit *after)
{
        bool raised = after->rlim_max > before->rlim_max;
        char how[64], why[128], rest[64] = "";

        if (raised) {
                snprintf(how, sizeof(how), "raised from %ju to %ju", (uintmax_t)before->rlim_cur,
                         (uintmax_t)after->rlim_cur);
                snprintf(rest, sizeof(rest), ", %u descriptors are for the rest", FD_CACHE_RESERVED);
        } else {
                snprintf(how, sizeof(how), "%ju", (uintmax_t)after->rlim_cur);
        }
        if (capacity >= files) {
                log_debug("open-file limit %s: all %zu chunk files of the releases read stay open%s", how, files,
                          rest);
                return;
        }
        if (capacity >= most)
                snprintf(why, sizeof(why), "no more: one per %u KiB of memory, at most %u",
                         FD_CACHE_RAM_PER_FILE >> 10, FD_CACHE_MAX);
        else if (raised)
                snprintf(why, sizeof(why), "fs.nr_open allows no more");
        else
                snprintf(why, sizeof(why), "the others are opened for each read; raising the limit takes "
                                           "CAP_SYS_RESOURCE");
        log_debug("open-file limit %s: %zu of the %zu chunk files of the releases read stay open (%s)%s", how,
                  capacity, files, why, rest);
}

/* The shared cache is sized at its first read, when every release the
 * process serves has said how many files it has: the limit is raised for
 * all of them together, once. */
static void shared_size(void)
{
        size_t files = atomic_load(&shared_expected), capacity = FD_CACHE_MIN, most;
        struct rlimit before, after;
        struct sysinfo si;
        uint64_t ram = sysinfo(&si) == 0 ? (uint64_t)si.totalram * si.mem_unit : 0;
        struct fd_slot *slots;

        most = fd_cache_most_open(ram);
        /* Nobody said how many: as many as may be kept open. */
        if (fd_limit_raise((rlim_t)(files > 0 && files < most ? files : most) + FD_CACHE_RESERVED, &before,
                           &after) == 0) {
                capacity = fd_cache_capacity_for(files, after.rlim_cur, ram);
                if (files > 0)
                        report_size(files, capacity, most, &before, &after);
        }
        slots = calloc(capacity, sizeof(*slots));
        if (!slots)
                capacity = 0; /* every file handed out uncached */
        for (size_t i = 0; i < capacity; i++)
                atomic_init(&slots[i].fd, -1);
        pthread_mutex_lock(&shared->lock);
        shared->slots = slots;
        shared->capacity = shared->limit = capacity;
        pthread_mutex_unlock(&shared->lock);
        atomic_store_explicit(&shared->sized, true, memory_order_release);
}

size_t fd_cache_capacity(const struct fd_cache *c) { return c->capacity; }

static bool pin(struct fd_slot *s)
{
        int p = atomic_load_explicit(&s->pins, memory_order_relaxed);

        while (p >= 0)
                if (atomic_compare_exchange_weak_explicit(&s->pins, &p, p + 1, memory_order_acquire,
                                                          memory_order_relaxed))
                        return true;
        return false;
}

static void unpin(struct fd_slot *s)
{
        atomic_fetch_sub_explicit(&s->pins, 1, memory_order_release);
}

/* The cached file of key, pinned; false on a miss. */
static bool lookup(struct fd_cache *c, atomic_int *key, struct fd_ref *ref)
{
        int i = atomic_load_explicit(key, memory_order_acquire);
        struct fd_slot *s;

        if (i < 0)
                return false;
        s = &c->slots[i];
        if (!pin(s))
                return false;
        /* The slot may have been given to another file between the load of
         * the key and the pin: the pin makes the check below stable. */
        if (atomic_load_explicit(&s->key, memory_order_relaxed) != key) {
                unpin(s);
                return false;
        }
        if (!atomic_load_explicit(&s->recent, memory_order_relaxed))
                atomic_store_explicit(&s->recent, true, memory_order_relaxed);
        ref->fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
        ref->slot = i;
        return true;
}

/* Empties a slot claimed by claim() or held with no pins (lock held). */
static void empty_slot(struct fd_cache *c, struct fd_slot *s, int index)
{
        atomic_int *key = atomic_load_explicit(&s->key, memory_order_relaxed);
        int expected = index;

        if (!key)
                return;
        atomic_compare_exchange_strong(key, &expected, -1);
        close(atomic_load_explicit(&s->fd, memory_order_relaxed));
        atomic_store_explicit(&s->fd, -1, memory_order_relaxed);
        atomic_store_explicit(&s->key, NULL, memory_order_relaxed);
        c->n_open--;
}

/* A slot to refill, with pins at -1, or -1 when every open file is being
 * read (lock held). Below the limit an empty slot is taken; at it, the
 * clock hand passes over recently read files once before evicting them. */
static int claim(struct fd_cache *c)
{
        if (c->n_open < c->limit) {
                if (c->used < c->capacity) {
                        atomic_store_explicit(&c->slots[c->used].pins, -1, memory_order_relaxed);
                        return (int)c->used++;
                }
                for (size_t i = 0; i < c->used; i++) {
                        int zero = 0;
                        if (!atomic_load_explicit(&c->slots[i].key, memory_order_relaxed) &&
                            atomic_compare_exchange_strong(&c->slots[i].pins, &zero, -1))
                                return (int)i;
                }
        }
        for (size_t step = 0; step < 2 * c->used; step++) {
                size_t i = c->hand;
                struct fd_slot *s = &c->slots[i];
                int zero = 0;

                c->hand = (i + 1) % c->used;
                if (!atomic_load_explicit(&s->key, memory_order_relaxed))
                        continue;
                if (atomic_load_explicit(&s->recent, memory_order_relaxed)) {
                        atomic_store_explicit(&s->recent, false, memory_order_relaxed);
                        continue;
                }
                if (atomic_compare_exchange_strong(&s->pins, &zero, -1)) {
                        empty_slot(c, s, (int)i);
                        return (int)i;
                }
        }
        return -1;
}

/* Out of descriptors: close some files nobody reads, and keep fewer open
 * from now on, since something else in the process needs them. */
static void relieve(struct fd_cache *c)
{
        size_t closed = 0;

        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->used && closed < FD_CACHE_RELIEF; i++) {
                struct fd_slot *s = &c->slots[i];
                int zero = 0;
                if (!atomic_load_explicit(&s->key, memory_order_relaxed) ||
                    !atomic_compare_exchange_strong(&s->pins, &zero, -1))
                        continue;
                empty_slot(c, s, (int)i);
                atomic_store_explicit(&s->pins, 0, memory_order_release);
                closed++;
        }
        c->limit = c->n_open > 1 ? c->n_open : 1;
        pthread_mutex_unlock(&c->lock);
}

int fd_cache_get(struct fd_cache *c, atomic_int *key, fd_cache_open_fn open_fn, void *opaque,
                 struct fd_ref *ref)
{
        int fd, i;

        if (lookup(c, key, ref))
                return 0;
        if (!atomic_load_explicit(&c->sized, memory_order_acquire)) {
                static pthread_once_t once = PTHREAD_ONCE_INIT;
                pthread_once(&once, shared_size); /* only the shared cache is not */
        }
        /* Opened outside the lock, so that misses run in parallel; two
         * readers missing the same file both open it, and one keeps its. */
        fd = open_fn(opaque);
        if (fd == -EMFILE || fd == -ENFILE) {
                relieve(c);
                fd = open_fn(opaque);
        }
        if (fd < 0)
                return fd;

        pthread_mutex_lock(&c->lock);
        if (lookup(c, key, ref)) {
                pthread_mutex_unlock(&c->lock);
                close(fd);
                return 0;
        }
        i = claim(c);
        if (i >= 0) {
                struct fd_slot *s = &c->slots[i];
                atomic_store_explicit(&s->fd, fd, memory_order_relaxed);
                atomic_store_explicit(&s->key, key, memory_order_relaxed);
                atomic_store_explicit(&s->recent, true, memory_order_relaxed);
                c->n_open++;
                /* Pinned for the caller; the release publishes fd and key to
                 * readers who pin the slot after this. */
                atomic_store_explicit(&s->pins, 1, memory_order_release);
                atomic_store_explicit(key, i, memory_order_release);
        }
        pthread_mutex_unlock(&c->lock);
        ref->fd = fd;
        ref->slot = i;
        return 0;
}

void fd_cache_put(struct fd_cache *c, struct fd_ref *ref)
{
        if (ref->slot >= 0)
                unpin(&c->slots[ref->slot]);
        else if (ref->fd >= 0)
                close(ref->fd);
        ref->fd = ref->slot = -1;
}

void fd_cache_put_stale(struct fd_cache *c, struct fd_ref *ref)
{
        if (ref->slot >= 0) {
                struct fd_slot *s = &c->slots[ref->slot];
                int only_us = 1;
                pthread_mutex_lock(&c->lock);
                /* From our pin straight to refilling: no reader in between. */
                if (atomic_compare_exchange_strong(&s->pins, &only_us, -1)) {
                        empty_slot(c, s, ref->slot);
                        atomic_store_explicit(&s->pins, 0, memory_order_release);
                } else {
                        unpin(s);
                }
                pthread_mutex_unlock(&c->lock);
        } else if (ref->fd >= 0) {
                close(ref->fd);
        }
        ref->fd = ref->slot = -1;
}

void fd_cache_forget(struct fd_cache *c, atomic_int *keys, size_t n)
{
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->used; i++) {
                uintptr_t key = (uintptr_t)atomic_load_explicit(&c->slots[i].key, memory_order_relaxed);
                if (key >= (uintptr_t)keys && key < (uintptr_t)(keys + n))
                        empty_slot(c, &c->slots[i], (int)i);
        }
        pthread_mutex_unlock(&c->lock);
}
