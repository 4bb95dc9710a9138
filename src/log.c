// SPDX-License-Identifier: MIT
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static bool progress_shown;
static bool first_error_only, error_shown;
static char last_error[1024];

void log_set_level(enum log_level level) { current_level = level; }
void log_set_first_error_only(bool on) { first_error_only = on; }

static void clear_progress_locked(void)
{
        if (progress_shown) {
                fputs("\r\033[K", stderr);
                progress_shown = false;
        }
}

static void vlog(enum log_level level, const char *fmt, va_list ap, const char *suffix)
{
        static const char *const prefix[] = { "error: ", "warning: ", "", "" };

        pthread_mutex_lock(&log_lock);
        if (level == LOG_ERROR && first_error_only && error_shown)
                level = LOG_DEBUG;
        if (level > current_level) {
                pthread_mutex_unlock(&log_lock);
                return;
        }
        if (level == LOG_ERROR) {
                va_list copy;
                va_copy(copy, ap);
                int n = vsnprintf(last_error, sizeof(last_error), fmt, copy);
                va_end(copy);
                if (suffix && n >= 0 && (size_t)n < sizeof(last_error))
                        snprintf(last_error + n, sizeof(last_error) - (size_t)n, ": %s", suffix);
        }
        if (level == LOG_ERROR)
                error_shown = true;
        clear_progress_locked();
        fputs("ihop: ", stderr);
        fputs(prefix[level], stderr);
        vfprintf(stderr, fmt, ap);
        if (suffix)
                fprintf(stderr, ": %s", suffix);
        fputc('\n', stderr);
        pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vlog(level, fmt, ap, NULL);
        va_end(ap);
}

int log_errno(int err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vlog(LOG_ERROR, fmt, ap, strerror(err < 0 ? -err : err));
        va_end(ap);
        return err < 0 ? err : -err;
}

const char *log_last_error(void)
{
        pthread_mutex_lock(&log_lock);
        const char *s = error_shown ? last_error : NULL;
        pthread_mutex_unlock(&log_lock);
        return s;
}

bool log_error_was_shown(void)
{
        pthread_mutex_lock(&log_lock);
        bool shown = error_shown;
        pthread_mutex_unlock(&log_lock);
        return shown;
}

bool log_progress_enabled(void)
{
        static int tty = -1;

        if (tty < 0)
                tty = isatty(STDERR_FILENO);
        return tty && current_level >= LOG_INFO;
}

void log_progress(const char *fmt, ...)
{
        va_list ap;

        if (!log_progress_enabled())
                return;
        pthread_mutex_lock(&log_lock);
        fputs("\r\033[K", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fflush(stderr);
        progress_shown = true;
        pthread_mutex_unlock(&log_lock);
}

void log_progress_end(void)
{
        pthread_mutex_lock(&log_lock);
        clear_progress_locked();
        pthread_mutex_unlock(&log_lock);
}
