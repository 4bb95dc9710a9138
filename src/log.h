// SPDX-License-Identifier: MIT
/* Messages for the user: one line each, to stderr, with the context that
 * explains them. Errors are logged once, where the context is known. */
#pragma once

#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);

/* For commands that stop at the first failure: errors after the first are
 * consequences of it (other threads giving up), shown only with -v. */
void log_set_first_error_only(bool on);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Logs "msg: strerror(-err)" at error level and returns err (negative errno). */
int log_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last error line's message shown (without "ihop: error: "), or NULL:
 * what a machine-readable failure report carries. (A command that stops at
 * its first error shows no other.) */
const char *log_last_error(void);

/* Whether an error line was shown: a failure nobody explained still gets one. */
bool log_error_was_shown(void);

/* Progress lines are drawn on stderr only when it is a terminal (and the
 * level is not below info): whether they are. */
bool log_progress_enabled(void);
void log_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_progress_end(void);
