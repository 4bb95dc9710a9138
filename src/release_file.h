// SPDX-License-Identifier: MIT
/* The release description in a store (STORE/NAME):
 *
 *   "IHOP1\0" | u64-LE size n | protobuf StoreDictionary (n bytes) | BLAKE2b-512 of all before
 *
 * (the magic is the store's, store_release_magic: its listings recognise descriptions by it)
 *
 * Written last in a clone, atomically, so a release exists only when complete. */
#pragma once

#include "release.h"
#include "store.h"
#include "store_use.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int release_file_write(struct store *s, const char *name, const struct release *r);

/* The description of r as release_file_write writes it (*out malloc'ed). */
int release_file_encode(const struct release *r, uint8_t **out, size_t *out_len);
/* Reads and checks STORE/NAME; logs the reason on failure. */
int release_file_read(struct store *s, const char *name, struct release **out);
/* The same, also handing back the bytes read (*raw, malloc'ed). */
int release_file_read_raw(struct store *s, const char *name, struct release **out, uint8_t **raw, size_t *raw_len);
/* Is buf a whole release description as ihop writes it (magic, length and
 * checksum right)? Quiet: no message either way. */
bool release_file_is_complete(const uint8_t *buf, size_t len);
/* Parses a description held in memory; `where` names it in messages. */
int release_file_parse(const uint8_t *buf, size_t len, const char *where, struct release **out);

/* "STORE/NAME" → the opened store, the release name and its description,
 * all checked; on failure (logged) nothing is left allocated. */
int release_file_open(const char *arg, struct store **store, char **name, struct release **out);
/* The same, the release registered as in use by this process (store_use.h)
 * in *use (NULL when the store cannot take it, as on a read-only one) until
 * store_use_end(): what `ihop mount` and `ihop serve` read stays in the store. */
int release_file_open_in_use(const char *arg, struct store **store, char **name, struct release **out,
                             struct store_use **use);
