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

/* Makes this process fit to serve the device that holds the root file
 * system, as systemd's ROOT_STORAGE_DAEMONS.md asks of such a daemon:
 * started from the initramfs, where argv[0][0] becomes '@' so that neither switch_root's nor
 * shutdown's killing spree stops it (only there: /etc/initrd-release
 * exists), never paged out (mlockall: a page fault that needs the root file
 * system would wait on itself) and never chosen by the OOM killer.
 * Negative errno, said why, when one of them cannot be had. */
int daemon_become_root_storage(char *argv0);

/* Such a daemon must be root (systemd spares only root's processes):
 * -EPERM, said why, when this process is not. Checked first, before
 * anything is opened. */
int daemon_check_root_storage(void);
