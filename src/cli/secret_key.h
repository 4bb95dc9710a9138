// SPDX-License-Identifier: MIT
/* The vendor's side of signing: reading a password as minisign does (from
 * the terminal with echo off, else one line of standard input, so a build
 * script can pipe it in) and opening a secret key file with it. */
#pragma once

#include "minisign.h"

#include <stdbool.h>

/* The password (sodium_malloc'ed, freed with password_free); with
 * confirm, asked twice on a terminal. Logs why not. */
int password_read(const char *prompt, bool confirm, char **out);
void password_free(char *p);

/* Reads the minisign secret key at path, asking for its password when it
 * is encrypted; stdin_busy: standard input carries data, so an encrypted
 * key is refused unless stdin is a terminal. Logs why not. */
int secret_key_load(const char *path, bool stdin_busy, struct minisign_secret_key **out);
