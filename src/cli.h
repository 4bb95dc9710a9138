/* Plumbing the commands share: what they return, and the checks every
 * command makes the same way. */
#pragma once

/* What a command returns: 0, a negative errno (logged where it was known;
 * main says so when nothing was), or one of these. main alone turns them
 * into the exit status (README, "Exit status"). */
enum cli_result {
        CLI_USAGE = 1,   /* the command line is wrong, and said so: exit 2 */
        CLI_DAMAGED = 2, /* verify: a release is damaged, as printed: exit 1 */
};

/* STORE/NAME operands: one whose NAME cannot name a release is a usage
 * error, found (and logged) before the command does anything. Returns 0,
 * CLI_USAGE or -ENOMEM. */
int cli_check_release_operands(char **args, int n);
