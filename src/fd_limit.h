// SPDX-License-Identifier: MIT
/* The process's open-file limit (RLIMIT_NOFILE), raised to fit the files
 * it means to keep open. A process started by busybox or an initramfs gets
 * 1024 descriptors, soft and hard, and a release of a real root file system
 * has tens of thousands of chunk files: a chunk whose file is not open costs
 * an open and a close on every read of it (fd_cache.h). Any process may
 * raise its soft limit up to the hard one; raising the hard one takes
 * CAP_SYS_RESOURCE, which root has, and so `mount --root-storage` in the
 * initramfs, the case that matters. */
#pragma once

#include <sys/resource.h>

/* Raises RLIMIT_NOFILE towards want descriptors: the soft limit to the hard
 * one (whatever want is, as any process may), and when want is above the
 * hard limit, both to want, never above /proc/sys/fs/nr_open, where the
 * process may (a refusal, EPERM without CAP_SYS_RESOURCE, leaves the limit
 * as it was, unsaid). *before and *after get the limits found and left.
 * 0, or negative errno from getrlimit. */
int fd_limit_raise(rlim_t want, struct rlimit *before, struct rlimit *after);
