/* File-system primitives with the crash-safety ordering ihop relies on. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Full write/read, retrying short transfers and EINTR; negative errno on failure.
 * read_full returns the byte count, short only at end of file. */
int write_full(int fd, const void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t offset);

/* mkdir -p; existing directories are fine. */
int mkdir_parents(const char *path, mode_t mode);

/* fsync the directory holding path (or path itself when is_dir). */
int fsync_dir_of(const char *path);
int fsync_path(const char *path);

/* Replaces path with data: temp file in the same directory, fsync, rename,
 * fsync of the directory, so readers see the old content or the new, never
 * a mix, and the new survives a power cut once this returns. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads a whole regular file of at most max bytes into a new buffer. */
int read_file_bounded(const char *path, size_t max, uint8_t **out, size_t *out_len);
