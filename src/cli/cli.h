// SPDX-License-Identifier: MIT
/* Plumbing the commands share: one pattern for options, what commands
 * return, and the checks every command makes the same way.
 *
 * A command describes itself in a struct cli_command: its synopsis, what
 * it does, and a table of options, each with its --help text and default.
 * The parser and the --help text are both made from that table, so they
 * cannot drift apart; the tests hold the README's option tables to it. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* What a command returns: 0, a negative errno (logged where it was known;
 * main says so when nothing was), or one of these. main alone turns them
 * into the exit status (README, "Exit status"). */
enum cli_result {
        CLI_USAGE = 1,   /* the command line is wrong, and said so: exit 2 */
        CLI_DAMAGED = 2, /* verify: a release is damaged, as printed: exit 1 */
};

/* Keys of long-only options count up from here, above every short
 * option's letter: enum { OPT_JSON = CLI_OPT_BASE, ... }. The shared groups
 * take theirs from their own bases, above any command's. */
#define CLI_MAX_GROUPS 4
#define CLI_OPT_BASE 0x100
#define CLI_OPT_BASE_CHUNKING 0x200
#define CLI_OPT_BASE_HTTP 0x300
#define CLI_OPT_BASE_TRUST 0x400
#define CLI_OPT_BASE_SIGNING 0x500
#define CLI_OPT_BASE_PROGRESS 0x600
#define CLI_OPT_BASE_JSON 0x700
#define CLI_OPT_BASE_ONDEMAND 0x800

struct cli_option {
        const char *name; /* long name without "--"; NULL: a heading (help set) or the table's end */
        int key;          /* the short option's letter, or CLI_OPT_BASE and up for a long-only one */
        const char *arg;  /* its argument's name in --help ("N", "SIZE"); NULL: it takes none */
        const char *help; /* what it does, wrapped to 80 columns when shown */
        const char *def;  /* its default, shown as "(default: ...)"; NULL: none to state */
        unsigned number;  /* what "%u" in help or def stands for */
};

struct cli_command {
        const char *name;                    /* "clone"; NULL for ihop itself */
        const char *synopsis;                /* after "Usage: ihop NAME " */
        const char *description;             /* lines of at most 80 columns */
        const struct cli_option *options;    /* the command's own, or NULL */
        const struct cli_option *groups[CLI_MAX_GROUPS]; /* groups shared with others (chunking, HTTP); unused: NULL */
        int min_operands, max_operands;      /* max -1: no limit */
        bool options_first;                  /* options stop at the first operand (ihop's own) */
        bool operands_in_order;              /* cli_next returns each operand as CLI_OPERAND, in place */
        void (*print_more)(FILE *f);         /* after the description (ihop's list of commands) */
};

#define CLI_MAX_OPTIONS 32
/* Operands a command with operands_in_order takes at most. */
#define CLI_MAX_ORDERED_OPERANDS 64
/* cli_next's key for an operand, with operands_in_order (p->arg is it). */
#define CLI_OPERAND 1

struct cli_parser {
        const struct cli_command *cmd;
        int argc;
        char **argv;
        const struct cli_option *option; /* the current option's entry */
        const char *arg;   /* its argument */
        int result;        /* once cli_next returned -1: what the command returns */
        char **operands;   /* once cli_next returned 0 */
        int n_operands;
        struct option longopts[CLI_MAX_OPTIONS + 2];
        char shortopts[3 * CLI_MAX_OPTIONS + 5];
        char *ordered[CLI_MAX_ORDERED_OPERANDS]; /* operands_in_order: as they came */
        int n_ordered;
};

void cli_parser_init(struct cli_parser *p, const struct cli_command *cmd, int argc, char **argv);

/* The next option's key (p->option its entry, p->arg its argument); 0 once the options are over
 * and the operands (p->operands) are as many as the command takes; -1 when
 * the command is to return p->result now: 0 after --help, CLI_USAGE after
 * an unknown option or a wrong number of operands (usage shown). Options
 * may follow operands, unless cmd->options_first. With
 * cmd->operands_in_order, each operand comes as CLI_OPERAND where it
 * stands among the options (for an option that applies to the operand
 * after it). */
int cli_next(struct cli_parser *p);

/* For an option that takes two values (KEY VALUE): the second, or NULL. */
const char *cli_next_value(struct cli_parser *p);

/* Shows the usage on stderr and returns CLI_USAGE. */
int cli_usage_error(const struct cli_parser *p);

void cli_usage(const struct cli_command *cmd, FILE *f);

/* Appends arg (one of argv's strings, which outlive the command) to a
 * repeatable option's list; -ENOMEM, logged, when it cannot grow. */
int cli_list_append(const char ***list, size_t *n, const char *arg);

/* STORE/NAME operands: one whose NAME cannot name a release is a usage
 * error, found (and logged) before the command does anything. Returns 0,
 * CLI_USAGE or -ENOMEM. */
int cli_check_release_operands(char **args, int n);
