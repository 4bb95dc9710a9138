// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "daemon.h"
#include "image_map.h"
#include "log.h"
#include "release_file.h"
#include "store.h"
#include "units.h"
#ifdef HAVE_FUSE
#include "fuse_file.h"
#endif
#include "nbd_kernel.h"
#include "ondemand_options.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#ifdef HAVE_NBD
/* The kernel's wait for a reply, when none is given, on a release read
 * before it is cloned: beyond the longest a read waits for its chunk (the
 * kernel's own 30 s would give a connection up while ihop still fetches,
 * on a slow link, and fail every request queued on it), and a margin for
 * the requests queued behind it on its connection. */
static unsigned source_timeout(const struct ondemand_cli *od)
{
        unsigned wait = ondemand_read_wait_s(&od->http.http);

        if (!wait)
                return 0; /* no bound on a read (--http-timeout 0): the kernel's */
        return wait < NBD_KERNEL_MAX_TIMEOUT - NBD_KERNEL_SOURCE_TIMEOUT_MARGIN
                       ? wait + NBD_KERNEL_SOURCE_TIMEOUT_MARGIN
                       : NBD_KERNEL_MAX_TIMEOUT;
}
#endif

int cmd_mount(int argc, char **argv)
{
        enum {
                OPT_VERIFY = CLI_OPT_BASE, OPT_BLOCK_SIZE, OPT_CONNECTIONS, OPT_TIMEOUT, OPT_DETACH, OPT_PID_FILE,
                OPT_ROOT_STORAGE, OPT_ALLOW_OTHER
        };
        static const struct cli_option options[] = {
                { .name = "verify", .key = OPT_VERIFY,
                  .help = "hash each chunk on its first read; a corrupt chunk reads as EIO" },
                { .name = "block-size", .key = OPT_BLOCK_SIZE, .arg = "SIZE",
                  .help = "NBD block size, 512..4096, a power of two", .def = "%u",
                  .number = NBD_KERNEL_DEFAULT_BLOCK_SIZE },
                { .name = "connections", .key = OPT_CONNECTIONS, .arg = "N",
                  .help = "NBD connections, served in parallel", .def = "%u",
                  .number = NBD_KERNEL_DEFAULT_CONNECTIONS },
                { .name = "timeout", .key = OPT_TIMEOUT, .arg = "SECONDS",
                  .help = "how long the kernel waits for a reply before it gives a connection up (default: "
                          "the kernel's, 30; with --source, 30 more than a read may wait for its chunk; with "
                          "--root-storage, 3600)" },
                { .name = "detach", .key = OPT_DETACH, .help = "go to the background once the release is attached" },
                { .name = "pid-file", .key = OPT_PID_FILE, .arg = "PATH",
                  .help = "with --detach, write the daemon's pid to PATH" },
                { .name = "root-storage", .key = OPT_ROOT_STORAGE,
                  .help = "the device holds the root file system: run as systemd asks of a root storage daemon "
                          "(locked in memory, exempt from the OOM killer, '@' in argv[0] when started from the "
                          "initramfs, SIGINT/SIGTERM ignored, netlink only)" },
                { .name = "allow-other", .key = OPT_ALLOW_OTHER,
                  .help = "FILE only: let every user read the image (FUSE allow_other); by default only the user "
                          "who mounted it can" },
                {}
        };
        const struct cli_command cmd = {
                .name = "mount",
                .synopsis = "[OPTIONS] STORE/NAME /dev/nbdN|FILE",
                .description =
                        "Expose release NAME read-only, put together from the chunk store on every read,\n"
                        "for as long as ihop runs (until the device is disconnected, FILE unmounted, or\n"
                        "SIGINT/SIGTERM). /dev/nbdN: a kernel NBD block device (needs\n"
                        "CONFIG_BLK_DEV_NBD). FILE, a regular file: the release appears as that file\n"
                        "through FUSE, so 'mount -o loop,ro FILE /mnt' works on kernels without NBD.\n"
                        "While it runs, the release is in use: gc keeps its chunks, even after\n"
                        "'ihop rm' of it. With --source, the release need not be in STORE: its\n"
                        "chunks are fetched from SOURCE as they are read (and with --fill, all of\n"
                        "them), checked and kept; once all are in, it is an ordinary release. A STORE\n"
                        "that cannot be written is then refused, unless it holds the whole release.\n",
                .options = options,
                .groups = { ondemand_cli_options(), trust_cli_options(), http_cli_options() },
                .min_operands = 2,
                .max_operands = 2,
        };
        _cleanup_free_ char *name = NULL;
        _cleanup_ondemand_cli_ struct ondemand_cli od;
        struct cli_parser p;
        struct image_map *map = NULL;
        bool verify = false, detach = false, root_storage = false, allow_other = false;
        const char *pid_file = NULL;
        uint64_t block_size = NBD_KERNEL_DEFAULT_BLOCK_SIZE, connections = NBD_KERNEL_DEFAULT_CONNECTIONS;
        uint64_t timeout = 0;
        bool timeout_set = false;
        struct stat st;
        int c, err;

        ondemand_cli_init(&od);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                switch (c) {
                case OPT_VERIFY:
                        verify = true;
                        break;
                case OPT_BLOCK_SIZE:
                        if (parse_size(p.arg, &block_size) < 0 || block_size < 512 || block_size > 4096 ||
                            (block_size & (block_size - 1))) {
                                log_error("--block-size wants 512, 1024, 2048 or 4096, not '%s'", p.arg);
                                return CLI_USAGE;
                        }
                        break;
                case OPT_CONNECTIONS:
                        if (parse_uint(p.arg, 16, &connections) < 0 || connections == 0) {
                                log_error("--connections wants a number from 1 to 16, not '%s'", p.arg);
                                return CLI_USAGE;
                        }
                        break;
                case OPT_TIMEOUT:
                        if (parse_uint(p.arg, NBD_KERNEL_MAX_TIMEOUT, &timeout) < 0 || timeout == 0) {
                                log_error("--timeout wants seconds, from 1 to %u, not '%s'", NBD_KERNEL_MAX_TIMEOUT,
                                          p.arg);
                                return CLI_USAGE;
                        }
                        timeout_set = true;
                        break;
                case OPT_DETACH:
                        detach = true;
                        break;
                case OPT_PID_FILE:
                        pid_file = p.arg;
                        break;
                case OPT_ROOT_STORAGE:
                        root_storage = true;
                        break;
                case OPT_ALLOW_OTHER:
                        allow_other = true;
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
        err = ondemand_cli_finish(&od, od.source != NULL);
        if (err != 0)
                return err;
        if (pid_file && !detach) {
                log_error("--pid-file goes with --detach");
                return CLI_USAGE;
        }
        err = cli_check_release_operands(p.operands, 1);
        if (err != 0)
                return err;
        const char *release = p.operands[0], *target = p.operands[1];
        bool is_file = stat(target, &st) == 0 && S_ISREG(st.st_mode);
        if (allow_other && !is_file) {
                log_error("--allow-other is for a FUSE mount on a file; %s is not one", target);
                return CLI_USAGE;
        }
        if ((root_storage || timeout_set) && is_file) {
                log_error("--%s is for a kernel NBD device (/dev/nbdN), not a file",
                          root_storage ? "root-storage" : "timeout");
                return CLI_USAGE;
        }
        if (root_storage && od.source) {
                /* Fetching resolves names and reads certificates: files of
                 * the very root the device would hold. */
                log_error("--source cannot go with --root-storage: clone the release first");
                return CLI_USAGE;
        }
        if (root_storage && (err = daemon_check_root_storage()) < 0)
                return err;
        if (od.source) {
                struct ondemand_options oo = ondemand_cli_options_for(&od, od.source);
                err = ondemand_open(release, &oo, verify, &map, &name);
        } else {
                err = image_map_open(release, verify, &map, &name);
        }
        if (err < 0)
                return err;
        /* Fork before any thread exists; the parent returns once attached. */
        if (detach) {
                err = daemon_detach(pid_file);
                if (err < 0) {
                        image_map_free(map);
                        return err;
                }
        }
        /* After the fork: a child inherits neither memory locks nor argv. */
        if (root_storage && (err = daemon_become_root_storage(program_argv0)) < 0) {
                image_map_free(map);
                return err;
        }
        err = ondemand_start(map);
        if (err < 0) {
                image_map_free(map);
                return err;
        }
        if (is_file) {
#ifdef HAVE_FUSE
                err = fuse_file_serve(map, name, target, allow_other);
#else
                log_error("this ihop was built without FUSE support (libfuse3): cannot mount on a file");
                err = -ENOTSUP;
#endif
        } else {
#ifdef HAVE_NBD
                struct nbd_kernel_options ko = {
                        .block_size = (unsigned)block_size,
                        .connections = (unsigned)connections,
                        .timeout = timeout_set    ? (unsigned)timeout
                                   : root_storage ? NBD_KERNEL_ROOT_TIMEOUT
                                   : od.source    ? source_timeout(&od)
                                                  : 0,
                        .root_storage = root_storage,
                };
                err = nbd_kernel_serve(map, target, &ko);
#else
                log_error("this ihop was built without kernel NBD support (libnl-genl-3)");
                err = -ENOTSUP;
#endif
        }
        image_map_free(map);
        daemon_cleanup();
        return err;
}
