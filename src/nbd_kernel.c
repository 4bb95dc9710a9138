// SPDX-License-Identifier: MIT
#include "nbd_kernel.h"

#include "daemon.h"
#include "log.h"
#include "nbd_server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 16
/* The kernel's largest read by default (max_sectors_kb, 1280 KiB) fits:
 * every failing read is answered with EIO, none ends its connection. */
#define NBD_KERNEL_REPLY_BUFFER (2u << 20)
#define CONNECTION_STACK_SIZE (256u << 10)
/* How long NBD_DO_IT may take to start the device (it takes microseconds). */
#define IOCTL_START_WAIT_MS 10000u

struct attach;

/* One socket pair: ours serves, theirs goes to the kernel. */
struct connection {
        struct attach *a;
        unsigned i;
        int ours, theirs;
        pthread_t thread;
        bool started;
};

struct attach {
        struct image_map *map;
        uint64_t device_size;
        unsigned index;
        unsigned block_size;
        unsigned timeout;
        const char *device;
        int dev_fd; /* ioctl path only */
        atomic_bool doit_returned; /* ioctl path: NBD_DO_IT is over */
        struct connection conns[MAX_CONNECTIONS];
        unsigned n;
        int ended[2]; /* a connection thread writes a byte here as it ends */
};

static void *connection_thread(void *arg)
{
        struct connection *c = arg;
        /* The kernel's requests run in parallel over the connections: one
         * thread each answers them in order. */
        int err = nbd_transmission(c->ours, c->a->map, c->a->device_size, NBD_KERNEL_REPLY_BUFFER, 0, NULL);

        /* The kernel's receiver reads until the socket ends: after a
         * disconnect, NBD_DO_IT returns only once our end is shut. */
        shutdown(c->ours, SHUT_RDWR);

        if (err < 0 && err != -ECONNRESET)
                log_warn("%s: connection %u ended: %s", c->a->device, c->i, strerror(-err));
        if (write(c->a->ended[1], "e", 1) < 0) {
                /* cannot happen: the pipe holds a byte per connection */
        }
        return NULL;
}

static struct nl_sock *netlink_open(int *family)
{
        struct nl_sock *nl = nl_socket_alloc();

        if (!nl)
                return NULL;
        if (genl_connect(nl) < 0 || (*family = genl_ctrl_resolve(nl, "nbd")) < 0) {
                nl_socket_free(nl);
                return NULL;
        }
        return nl;
}

static int netlink_connect(struct attach *a, struct nl_sock *nl, int family)
{
        struct nl_msg *msg = nlmsg_alloc();
        struct nlattr *socks, *item;
        int err;

        if (!msg)
                return -ENOMEM;
        if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, NBD_CMD_CONNECT, 0) ||
            nla_put_u32(msg, NBD_ATTR_INDEX, a->index) < 0 ||
            nla_put_u64(msg, NBD_ATTR_SIZE_BYTES, a->device_size) < 0 ||
            nla_put_u64(msg, NBD_ATTR_BLOCK_SIZE_BYTES, a->block_size) < 0 ||
            nla_put_u64(msg, NBD_ATTR_SERVER_FLAGS, nbd_transmission_flags()) < 0 ||
            (a->timeout && nla_put_u64(msg, NBD_ATTR_TIMEOUT, a->timeout) < 0) ||
            !(socks = nla_nest_start(msg, NBD_ATTR_SOCKETS))) {
                nlmsg_free(msg);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < a->n; i++) {
                if (!(item = nla_nest_start(msg, NBD_SOCK_ITEM)) || nla_put_u32(msg, NBD_SOCK_FD, (uint32_t)a->conns[i].theirs) < 0) {
                        nlmsg_free(msg);
                        return -ENOMEM;
                }
                nla_nest_end(msg, item);
        }
        nla_nest_end(msg, socks);
        err = nl_send_sync(nl, msg);
        if (err == -NLE_BUSY || err == -NLE_EXIST) {
                log_error("%s is busy (already connected)", a->device);
                return -EBUSY;
        }
        if (err < 0) {
                log_error("cannot connect %s through netlink: %s", a->device, nl_geterror(err));
                return -EIO;
        }
        return 0;
}

static void netlink_disconnect(struct attach *a, struct nl_sock *nl, int family)
{
        struct nl_msg *msg = nlmsg_alloc();

        if (!msg)
                return;
        if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, NBD_CMD_DISCONNECT, 0) ||
            nla_put_u32(msg, NBD_ATTR_INDEX, a->index) < 0) {
                nlmsg_free(msg);
                return;
        }
        nl_send_sync(nl, msg);
}

/* The ioctl interface: one connection, and NBD_DO_IT blocks for the device's life. */
static void *ioctl_do_it(void *arg)
{
        struct attach *a = arg;

        if (ioctl(a->dev_fd, NBD_DO_IT) < 0 && errno != EPIPE && errno != EBUSY)
                log_warn("%s: NBD_DO_IT: %s", a->device, strerror(errno));
        atomic_store(&a->doit_returned, true);
        ioctl(a->dev_fd, NBD_CLEAR_QUE);
        ioctl(a->dev_fd, NBD_CLEAR_SOCK);
        return NULL;
}

static int ioctl_connect(struct attach *a, pthread_t *doit)
{
        a->dev_fd = open(a->device, O_RDWR | O_CLOEXEC);
        if (a->dev_fd < 0)
                return log_errno(-errno, "cannot open %s", a->device);
        if (ioctl(a->dev_fd, NBD_SET_BLKSIZE, (unsigned long)a->block_size) < 0 ||
            ioctl(a->dev_fd, NBD_SET_SIZE_BLOCKS, (unsigned long)(a->device_size / a->block_size)) < 0 ||
            ioctl(a->dev_fd, NBD_SET_FLAGS, (unsigned long)nbd_transmission_flags()) < 0 ||
            (a->timeout && ioctl(a->dev_fd, NBD_SET_TIMEOUT, (unsigned long)a->timeout) < 0))
                return log_errno(-errno, "cannot configure %s", a->device);
        if (ioctl(a->dev_fd, NBD_SET_SOCK, (unsigned long)a->conns[0].theirs) < 0) {
                if (errno == EBUSY) {
                        log_error("%s is busy (already connected)", a->device);
                        return -EBUSY;
                }
                return log_errno(-errno, "cannot attach %s", a->device);
        }
        if (pthread_create(doit, NULL, ioctl_do_it, a) != 0)
                return log_errno(-EAGAIN, "cannot start a thread");
        return 0;
}

/* NBD_DO_IT starts the device in its own thread and blocks there for the
 * device's life: nothing tells the others that it has started but the
 * device's size turning non-zero (nbd-client polls /sys/block/nbdN/pid the
 * same way). False when it did not start. */
static bool ioctl_wait_started(struct attach *a)
{
        for (unsigned waited_ms = 0; waited_ms < IOCTL_START_WAIT_MS; waited_ms += 10) {
                uint64_t size = 0;

                if (ioctl(a->dev_fd, BLKGETSIZE64, &size) == 0 && size > 0)
                        return true;
                if (atomic_load(&a->doit_returned))
                        return false;
                nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        log_warn("%s: not started after %u s", a->device, IOCTL_START_WAIT_MS / 1000);
        return false;
}

/* Once connected, the driver only marks the disk for a partition scan: the
 * kernel reads the partition table at the device's next open. udev opens
 * every new disk to probe it, but in an initramfs (busybox, no udev) nobody
 * does, and nbdNp1... never appear: a whole-disk image would mount only as a
 * whole. So, as nbd-client does, ihop opens the device once itself (the
 * connection threads serve the reads), before it reports the device ready:
 * when 'ihop mount --detach' returns, the partitions are there for a script
 * to mount. An open, not BLKRRPART: a second scan would drop and re-add the
 * partitions under udev's feet, and BLKRRPART fails while udev has one open
 * to probe it. */
static void scan_partitions(const struct attach *a)
{
        int fd = open(a->device, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
                log_warn("cannot open %s to have its partition table read: %s", a->device, strerror(errno));
                return;
        }
        close(fd);
}

static int device_index(const char *device, unsigned *index)
{
        struct stat st;
        char copy[256];

        if (stat(device, &st) < 0) {
                if (errno == ENOENT && strncmp(device, "/dev/nbd", 8) == 0) {
                        log_error("%s does not exist: this kernel has no NBD support loaded (try: modprobe nbd)", device);
                        return -ENODEV;
                }
                return log_errno(-errno, "cannot use %s", device);
        }
        if (!S_ISBLK(st.st_mode)) {
                log_error("%s is not a block device", device);
                return -ENOTBLK;
        }
        snprintf(copy, sizeof(copy), "%s", device);
        const char *name = basename(copy);
        int end = 0;
        /* The whole name: nbd0p1, a partition, is not device 0. */
        if (sscanf(name, "nbd%u%n", index, &end) != 1 || end == 0 || name[end] != '\0') {
                log_error("%s is not an NBD device (/dev/nbdN)", device);
                return -EINVAL;
        }
        return 0;
}

/* Waits for SIGINT/SIGTERM (on stop, a signalfd) or for every connection
 * to end (the kernel dropped them): true for a signal. A device that holds
 * the root file system outlives the signals: whoever sends them (systemd
 * stopping every process, a user) cannot know that it still holds mounted
 * data; it ends when the device is disconnected. */
static bool wait_for_end(struct attach *a, int stop, unsigned running, bool root_storage)
{
        while (running > 0) {
                struct pollfd pfd[2] = { { stop, POLLIN, 0 }, { a->ended[0], POLLIN, 0 } };
                char buf[MAX_CONNECTIONS];
                ssize_t n;

                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_warn("poll: %s", strerror(errno));
                        return true; /* cannot wait: disconnect and end */
                }
                if (pfd[0].revents) {
                        struct signalfd_siginfo si;
                        if (!root_storage)
                                return true;
                        if (read(stop, &si, sizeof(si)) == (ssize_t)sizeof(si))
                                log_info("%s holds the root file system: ignoring signal %u; it ends when the "
                                         "device is disconnected", a->device, si.ssi_signo);
                        continue;
                }
                n = read(a->ended[0], buf, sizeof(buf));
                if (n > 0)
                        running -= (unsigned)n < running ? (unsigned)n : running;
        }
        return false;
}

static void close_fd(int fd)
{
        if (fd >= 0)
                close(fd);
}

int nbd_kernel_serve(struct image_map *map, const char *device, const struct nbd_kernel_options *o)
{
        struct attach a = { .map = map, .device = device, .block_size = o->block_size, .timeout = o->timeout,
                            .dev_fd = -1, .ended = { -1, -1 } };
        unsigned block_size = o->block_size, connections = o->connections;
        pthread_attr_t attr;
        struct nl_sock *nl = NULL;
        pthread_t doit;
        bool used_ioctl = false;
        unsigned running = 0;
        sigset_t stop_signals;
        int stop = -1, family = -1, err;

        for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
                a.conns[i] = (struct connection){ .a = &a, .i = i, .ours = -1, .theirs = -1 };
        err = device_index(device, &a.index);
        if (err < 0)
                return err;
        a.device_size = (map->size + block_size - 1) / block_size * block_size;

        /* The stop signals arrive through a signalfd, blocked in every thread. */
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
        signal(SIGPIPE, SIG_IGN);
        stop = signalfd(-1, &stop_signals, SFD_CLOEXEC);
        if (stop < 0 || pipe2(a.ended, O_CLOEXEC) < 0) {
                err = log_errno(-errno, "cannot set up %s", device);
                goto out;
        }

        /* IHOP_NBD_INTERFACE=ioctl takes the older path even where netlink
         * exists, so that the fallback is tested on kernels that have both. */
        const char *iface = getenv("IHOP_NBD_INTERFACE");
        nl = iface && strcmp(iface, "ioctl") == 0 ? NULL : netlink_open(&family);
        if (!nl && o->root_storage) {
                /* systemd's shutdown stops and continues every process; the
                 * ioctl interface's NBD_DO_IT then returns, and the kernel
                 * drops the device under the mounted root (systemd #31690). */
                log_error("--root-storage needs the kernel's netlink NBD interface: with the ioctl interface "
                          "the device is lost when systemd stops every process at shutdown");
                err = -ENOTSUP;
                goto out;
        }
        a.n = nl ? (connections > MAX_CONNECTIONS ? MAX_CONNECTIONS : connections) : 1;
        for (unsigned i = 0; i < a.n; i++) {
                int sv[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                        err = log_errno(-errno, "socketpair");
                        goto out;
                }
                a.conns[i].ours = sv[0];
                a.conns[i].theirs = sv[1];
        }
        if (nl) {
                err = netlink_connect(&a, nl, family);
        } else {
                log_debug("no netlink nbd family: using the ioctl interface");
                err = ioctl_connect(&a, &doit);
                used_ioctl = err == 0;
        }
        if (err < 0)
                goto out;
        /* Small stacks: with --root-storage every page of them is locked. */
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, CONNECTION_STACK_SIZE);
        for (unsigned i = 0; i < a.n; i++) {
                struct connection *c = &a.conns[i];
                c->started = pthread_create(&c->thread, &attr, connection_thread, c) == 0;
                if (c->started)
                        running++;
                else
                        shutdown(c->ours, SHUT_RDWR); /* the kernel sees this connection dead */
        }
        pthread_attr_destroy(&attr);
        if (running > 0 && (nl || ioctl_wait_started(&a)))
                scan_partitions(&a);
        log_info("release mounted on %s (%llu bytes, block size %u, %u connection%s, %s%s)", device,
                 (unsigned long long)a.device_size, block_size, a.n, a.n == 1 ? "" : "s",
                 nl ? "netlink" : "ioctl", o->root_storage ? ", root storage" : "");
        daemon_ready();
        if (wait_for_end(&a, stop, running, o->root_storage)) {
                /* First the reads waiting for a chunk on its way (--source):
                 * they fail now, or their connection threads could not be
                 * joined before their fetches end. */
                image_map_cancel(map);
                log_info("disconnecting %s", device);
                if (nl)
                        netlink_disconnect(&a, nl, family);
                else
                        ioctl(a.dev_fd, NBD_DISCONNECT);
        }
        for (unsigned i = 0; i < a.n; i++)
                if (a.conns[i].started)
                        pthread_join(a.conns[i].thread, NULL);
        if (used_ioctl)
                pthread_join(doit, NULL);
out:
        for (unsigned i = 0; i < a.n; i++) {
                close_fd(a.conns[i].ours);
                close_fd(a.conns[i].theirs);
        }
        close_fd(a.dev_fd);
        close_fd(a.ended[0]);
        close_fd(a.ended[1]);
        close_fd(stop);
        if (nl)
                nl_socket_free(nl);
        return err;
}
