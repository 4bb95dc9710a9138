// SPDX-License-Identifier: MIT
#include "cli.h"

#include "cleanup.h"
#include "log.h"
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HELP_WIDTH 80
/* Help text starts in this column at the latest: a longer option's moves
 * to the next line rather than leave its help a narrow strip. */
#define HELP_MAX_COLUMN 32

#define FOREACH_OPTION(o, table) for (const struct cli_option *o = (table); o && (o->name || o->help); o++)

/* "-j, --jobs N"; a long-only option's "--" under the others' when a
 * table has short options too. */
static size_t option_spelling(const struct cli_option *o, bool shorts, char *buf, size_t len)
{
        int n = 0;

        if (o->key < CLI_OPT_BASE)
                n = snprintf(buf, len, "-%c, ", o->key);
        else if (shorts)
                n = snprintf(buf, len, "    ");
        n += snprintf(buf + n, len - (size_t)n, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        return (size_t)n;
}

/* text, with "%u" standing for number. */
static void expand(const char *text, unsigned number, char *buf, size_t len)
{
        const char *at = strstr(text, "%u");

        if (at)
                snprintf(buf, len, "%.*s%u%s", (int)(at - text), text, number, at + 2);
        else
                snprintf(buf, len, "%s", text);
}

/* The words of text from column pos on, each line at most HELP_WIDTH
 * wide, the next ones indented to column col. */
static void print_wrapped(FILE *f, const char *text, size_t pos, size_t col)
{
        bool line_start = true;

        for (const char *w = text + strspn(text, " "); *w; w += strspn(w, " ")) {
                size_t n = strcspn(w, " ");
                if (!line_start && pos + 1 + n > HELP_WIDTH) {
                        fprintf(f, "\n%*s", (int)col, "");
                        pos = col;
                        line_start = true;
                }
                if (!line_start) {
                        fputc(' ', f);
                        pos++;
                }
                fwrite(w, 1, n, f);
                pos += n;
                line_start = false;
                w += n;
        }
        fputc('\n', f);
}

/* The command's tables: its own, then its groups. */
#define N_TABLES (1 + CLI_MAX_GROUPS)
static void tables_of(const struct cli_command *cmd, const struct cli_option *tables[N_TABLES])
{
        tables[0] = cmd->options;
        for (size_t g = 0; g < N_TABLES - 1; g++)
                tables[g + 1] = cmd->groups[g];
}

static const struct cli_option *find_option(const struct cli_command *cmd, int key);

static bool has_short_options(const struct cli_command *cmd)
{
        const struct cli_option *tables[N_TABLES];

        tables_of(cmd, tables);
        for (size_t t = 0; t < N_TABLES; t++)
                FOREACH_OPTION(o, tables[t])
                        if (o->name && o->key < CLI_OPT_BASE)
                                return true;
        return false;
}

static size_t help_column(const struct cli_command *cmd, bool shorts)
{
        const struct cli_option *tables[N_TABLES];
        char spelling[128];
        size_t col = 0;

        tables_of(cmd, tables);
        for (size_t t = 0; t < N_TABLES; t++)
                FOREACH_OPTION(o, tables[t]) {
                        size_t n = o->name ? 2 + option_spelling(o, shorts, spelling, sizeof(spelling)) + 2 : 0;
                        if (n > col)
                                col = n;
                }
        return col < HELP_MAX_COLUMN ? col : HELP_MAX_COLUMN;
}

static void print_options(FILE *f, const struct cli_option *table, bool shorts, size_t col)
{
        char spelling[128], help[512], def[128], text[700];

        FOREACH_OPTION(o, table) {
                if (!o->name) {
                        fprintf(f, "\n%s\n", o->help);
                        continue;
                }
                size_t pos = 2 + option_spelling(o, shorts, spelling, sizeof(spelling));
                fprintf(f, "  %s", spelling);
                if (pos + 2 > col) {
                        fputc('\n', f);
                        pos = 0;
                }
                fprintf(f, "%*s", (int)(col - pos), "");
                expand(o->help, o->number, help, sizeof(help));
                if (o->def) {
                        expand(o->def, o->number, def, sizeof(def));
                        snprintf(text, sizeof(text), "%s (default: %s)", help, def);
                } else {
                        snprintf(text, sizeof(text), "%s", help);
                }
                print_wrapped(f, text, col, col);
        }
}

void cli_usage(const struct cli_command *cmd, FILE *f)
{
        bool shorts = has_short_options(cmd);
        size_t col = help_column(cmd, shorts);

        fprintf(f, "Usage: ihop %s%s%s\n", cmd->name ? cmd->name : "", cmd->name ? " " : "", cmd->synopsis);
        if (cmd->description)
                fprintf(f, "\n%s", cmd->description);
        if (cmd->print_more)
                cmd->print_more(f);
        if (cmd->options && cmd->options->name) {
                fprintf(f, "\nOptions:\n");
                print_options(f, cmd->options, shorts, col);
        }
        for (size_t g = 0; g < N_TABLES - 1; g++)
                print_options(f, cmd->groups[g], shorts, col);
}

static void add_options(struct cli_parser *p, const struct cli_option *table, size_t *n, char **s)
{
        FOREACH_OPTION(o, table) {
                if (!o->name)
                        continue;
                assert(*n < CLI_MAX_OPTIONS);
                p->longopts[(*n)++] = (struct option){ o->name, o->arg ? required_argument : no_argument, NULL, o->key };
                if (o->key < CLI_OPT_BASE) {
                        *(*s)++ = (char)o->key;
                        if (o->arg)
                                *(*s)++ = ':';
                }
        }
}

static const struct cli_option *find_option(const struct cli_command *cmd, int key)
{
        const struct cli_option *tables[N_TABLES];

        tables_of(cmd, tables);
        for (size_t t = 0; t < N_TABLES; t++)
                FOREACH_OPTION(o, tables[t])
                        if (o->name && o->key == key)
                                return o;
        return NULL;
}

/* getopt's own messages would name argv[0], which for a command is "clone". */
static void report_bad_option(const struct cli_parser *p, int c)
{
        const char *cmd = p->cmd->name ? p->cmd->name : "", *colon = p->cmd->name ? ": " : "";
        const char *word = p->argv[optind - 1];
        const struct cli_option *o = find_option(p->cmd, optopt);

        if (c == ':')
                log_error("%s%s%s wants a value", cmd, colon, word);
        else if (strncmp(word, "--", 2) == 0 && o)
                log_error("%s%s--%s takes no value", cmd, colon, o->name);
        else if (strncmp(word, "--", 2) == 0)
                log_error("%s%sunknown option %s", cmd, colon, word);
        else
                log_error("%s%sunknown option -%c", cmd, colon, optopt);
}

void cli_parser_init(struct cli_parser *p, const struct cli_command *cmd, int argc, char **argv)
{
        char *s;
        size_t n = 0;

        *p = (struct cli_parser){ .cmd = cmd, .argc = argc, .argv = argv };
        opterr = 0; /* report_bad_option says it, with the command's name */
        s = p->shortopts;
        if (cmd->options_first)
                *s++ = '+';
        else if (cmd->operands_in_order)
                *s++ = '-';
        *s++ = ':'; /* a missing value is ':', told apart from an unknown option */
        *s++ = 'h';
        p->longopts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
        add_options(p, cmd->options, &n, &s);
        for (size_t g = 0; g < N_TABLES - 1; g++)
                add_options(p, cmd->groups[g], &n, &s);
        p->longopts[n] = (struct option){};
        *s = '\0';
        /* A fresh scan: main reads its own options with getopt before. */
        optind = 0;
}

int cli_next(struct cli_parser *p)
{
        const struct cli_command *cmd = p->cmd;
        int c = getopt_long(p->argc, p->argv, p->shortopts, p->longopts, NULL);

        switch (c) {
        case 'h':
                cli_usage(cmd, stdout);
                p->result = 0;
                return -1;
        case '?':
        case ':':
                report_bad_option(p, c);
                p->result = cli_usage_error(p);
                return -1;
        case CLI_OPERAND:
                if (p->n_ordered == CLI_MAX_ORDERED_OPERANDS) {
                        log_error("%s: at most %d operands", cmd->name, CLI_MAX_ORDERED_OPERANDS);
                        p->result = cli_usage_error(p);
                        return -1;
                }
                p->ordered[p->n_ordered++] = optarg;
                p->arg = optarg;
                p->option = NULL;
                return CLI_OPERAND;
        case -1:
                if (cmd->operands_in_order) {
                        /* after "--": operands too */
                        while (optind < p->argc && p->n_ordered < CLI_MAX_ORDERED_OPERANDS)
                                p->ordered[p->n_ordered++] = p->argv[optind++];
                        if (optind < p->argc) {
                                log_error("%s: at most %d operands", cmd->name, CLI_MAX_ORDERED_OPERANDS);
                                p->result = cli_usage_error(p);
                                return -1;
                        }
                        p->operands = p->ordered;
                        p->n_operands = p->n_ordered;
                } else {
                        p->operands = p->argv + optind;
                        p->n_operands = p->argc - optind;
                }
                if (p->n_operands < cmd->min_operands || (cmd->max_operands >= 0 && p->n_operands > cmd->max_operands)) {
                        p->result = cli_usage_error(p);
                        return -1;
                }
                return 0;
        default:
                p->option = find_option(cmd, c);
                p->arg = optarg;
                return c;
        }
}

const char *cli_next_value(struct cli_parser *p)
{
        return optind < p->argc ? p->argv[optind++] : NULL;
}

int cli_usage_error(const struct cli_parser *p)
{
        cli_usage(p->cmd, stderr);
        return CLI_USAGE;
}

int cli_check_release_operands(char **args, int n)
{
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *store_path = NULL, *name = NULL;
                int err = store_split_release_path(args[i], &store_path, &name);
                if (err == -EINVAL)
                        return CLI_USAGE;
                if (err < 0)
                        return err;
        }
        return 0;
}

int cli_list_append(const char ***list, size_t *n, const char *arg)
{
        const char **t = realloc(*list, (*n + 1) * sizeof(**list));

        if (!t)
                return log_errno(-ENOMEM, "reading the command line");
        t[(*n)++] = arg;
        *list = t;
        return 0;
}
