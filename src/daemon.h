// SPDX-License-Identifier: MIT
/* Running `ihop mount` in the background: the parent returns only once the
 * device is attached (or attaching failed), so scripts can mount it next. */
#pragma once

/* Forks; the parent waits for daemon_ready() in the child and exits with 0,
 * or 1 when the child exits first. Only the child returns (0 or negative errno). */
int daemon_detach(const char *pid_file);

/* Called once the release is attached: writes the pid file, releases the
 * waiting parent, detaches from the terminal. A no-op when not detached. */
void daemon_ready(void);

/* Removes the pid file at exit. */
void daemon_cleanup(void);

/* systemd spares processes whose argv[0] starts with '@' when it kills
 * everything at shutdown: what a daemon backing the root filesystem needs. */
void daemon_mark_storage(char *argv0);
