// SPDX-License-Identifier: MIT
/* The ihop subcommands. Each describes its options in a struct cli_command
 * (cli.h), calls the modules, and returns 0, a negative errno or a
 * cli_result, which main turns into the exit status. */
#pragma once

/* argv[0] as the program got it, for daemons that rename themselves. */
extern char *program_argv0;

int cmd_clone(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
