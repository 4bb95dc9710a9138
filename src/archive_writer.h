// SPDX-License-Identifier: MIT
/* Writing a bita archive: the header (layout in archive.h) and the file.
 *
 * The header holds every chunk's place in the chunk data and the chunk data
 * follows the header, so an archive is written in two steps: chunk data to
 * a scratch file while the image is read, then header and data into the
 * archive, which appears under its name only when complete. */
#pragma once

#include "archive.h"
#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Serializes the header of an archive whose chunk data directly follows it.
 * Here a chunk's archive_offset is relative to the start of the chunk data
 * (as the dictionary stores it), not absolute as in a parsed release.
 * Metadata is written in the order given; keys must be unique. Logs and
 * returns -EFBIG when the dictionary would be larger than readers accept. */
int archive_header_build(const struct release *r, enum codec codec, uint32_t level,
                         const struct archive_metadata *metadata, size_t n_metadata, uint8_t **out,
                         size_t *out_len);

/* A scratch file for chunk data, in the directory that will hold path (so
 * the final copy stays on one file system); it has no name, so it vanishes
 * with the process whatever happens. */
int archive_scratch_open(const char *path);

/* Writes header then the first data_len bytes of data_fd to path: through a
 * temp file beside it, fsync'ed and renamed into place. Without replace an
 * existing path is left alone and -EEXIST returned. Nothing is left under
 * path's directory on failure. Logs its errors. */
int archive_file_write(const char *path, bool replace, const uint8_t *header, size_t header_len, int data_fd,
                       uint64_t data_len);
