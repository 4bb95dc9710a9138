// SPDX-License-Identifier: MIT
/* BLAKE2b-512, the hash of bita archives, chunks and images (libsodium). */
#pragma once

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_MAX_LEN 64 /* BLAKE2b-512 */
#define HASH_MIN_LEN 4  /* shortest chunk hash bita accepts */

typedef crypto_generichash_state hash_state;

int hash_init_library(void);
void hash_init(hash_state *st);
void hash_update(hash_state *st, const void *data, size_t len);
void hash_final(hash_state *st, uint8_t out[HASH_MAX_LEN]);
void hash_buffer(const void *data, size_t len, uint8_t out[HASH_MAX_LEN]);

/* Writes 2*len hex digits and a NUL to out. */
void hash_to_hex(const uint8_t *hash, size_t len, char *out);
/* Parses hex into out (at most max bytes); returns the byte count or -EINVAL. */
int hash_from_hex(const char *hex, uint8_t *out, size_t max);
