// SPDX-License-Identifier: MIT
/* File-system primitives with the crash-safety ordering ihop relies on. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Full write/read, retrying short transfers and EINTR; negative errno on failure.
 * pread_full returns the byte count, short only at end of file. */
int write_full(int fd, const void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t offset);

/* All len bytes at offset if they are in the page cache now (a read that
 * waits on no device): len, -EAGAIN when any would have to be read from the
 * device (or the file ends first), -EOPNOTSUPP when the kernel or the file
 * system cannot tell (RWF_NOWAIT), else negative errno. */
ssize_t pread_nowait(int fd, void *buf, size_t len, uint64_t offset);

/* mkdir -p; existing directories are fine. */
int mkdir_parents(const char *path, mode_t mode);

/* fsync of the directory holding path (after a rename or unlink in it). */
int fsync_dir_of(const char *path);

/* Opens rel below dirfd following no symlink on the way (any component),
 * nor "..": -ELOOP when one is a symlink, -ENOTDIR when a directory on the
 * way is not one. One openat2() where the kernel has it (5.6+), else a walk
 * component by component with O_NOFOLLOW. */
int openat_beneath(int dirfd, const char *rel, int flags, mode_t mode);

/* openat_beneath for reading, only if every directory entry on the way is
 * in the kernel's cache (RESOLVE_CACHED): an open that reads no directory
 * from the device. -EAGAIN when one is not, -EOPNOTSUPP when the kernel
 * cannot tell (before 5.12), else as openat_beneath. */
int openat_beneath_cached(int dirfd, const char *rel, int flags);

/* Creates a new file named prefix + 6 random characters (relative to dirfd,
 * or AT_FDCWD) with O_EXCL, never through a symlink, mode 0666 less the
 * umask, as any program's output; name (PATH_MAX bytes) gets its name. */
int create_unique_at(int dirfd, const char *prefix, char *name);

/* Hard-links oldname (relative to dirfd; a symlink is linked as itself) as
 * prefix + 6 random characters in new_dirfd; name (PATH_MAX bytes) gets the
 * new name. */
int link_unique_at(int dirfd, const char *oldname, int new_dirfd, const char *prefix, char *name);

/* Replaces name (relative to dirfd, or AT_FDCWD) with data: a temp file
 * named tmp_prefix + 6 random characters in the same directory, fsync,
 * rename, fsync of the directory, so readers see the old content or the new,
 * never a mix, and the new survives a power cut once this returns. The file
 * gets mode 0666 less the umask. */
int write_file_atomic_at(int dirfd, const char *name, const char *tmp_prefix, const void *data, size_t len);
/* The same, but never replacing: -EEXIST, and nothing written, when name exists. */
int write_file_new_at(int dirfd, const char *name, const char *tmp_prefix, const void *data, size_t len);
/* The same, the temp file being path + ".tmp-XXXXXX". */
int write_file_atomic(const char *path, const void *data, size_t len);
/* The same; private: mode 0600 (a secret key), set before any byte is
 * written; !replace: -EEXIST, and nothing written, when path exists. */
int write_file_atomic_opts(const char *path, const void *data, size_t len, bool private, bool replace);

/* What a file of this type is, for the message that refuses it where a
 * regular file was wanted: "a FIFO", "a character device", "a directory"... */
const char *file_type_name(mode_t mode);

/* Opens name (relative to dirfd, or AT_FDCWD) for reading if it is a regular
 * file, and never blocks on what is not: a FIFO without a writer or a device
 * can block open() itself. What is not a regular file is not opened (stat
 * first), and what replaces it meanwhile is opened O_NONBLOCK | O_NOCTTY,
 * then refused by fstat. -EINVAL (nothing logged: the caller knows what the
 * file was for) when it is not a regular file, *type (when not NULL) then
 * saying what it is (file_type_name). flags adds to O_RDONLY: O_NOFOLLOW
 * refuses a symlink (-ELOOP). The descriptor returned reads as any
 * (O_NONBLOCK cleared). */
int open_regular_at(int dirfd, const char *name, int flags, mode_t *type);

/* Reads a whole regular file of at most max bytes into a new buffer, opened
 * as open_regular_at does: -EINVAL when it is not a regular file (*type,
 * when not NULL, then saying what it is), -EFBIG when it is larger. */
int read_file_bounded(const char *path, size_t max, uint8_t **out, size_t *out_len, mode_t *type);
/* The same for an open file (no type said). */
int read_fd_bounded(int fd, size_t max, uint8_t **out, size_t *out_len);
/* The same for name in dirfd, never through a symlink (-ELOOP). */
int read_file_bounded_at(int dirfd, const char *name, size_t max, uint8_t **out, size_t *out_len, mode_t *type);
