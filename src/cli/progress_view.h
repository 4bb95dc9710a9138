// SPDX-License-Identifier: MIT
/* Showing the library's progress reports (progress.h): on a terminal, one
 * line redrawn as curl and apt draw theirs (phase, percent, bytes, rate,
 * time left, chunks); on a file descriptor (--progress-fd N), one JSON
 * object a line, for an update agent to follow:
 *
 *   {"phase":"fetch","what":"https://...","bytes_done":123,"bytes_total":456,
 *    "chunks_done":3,"chunks_total":10,"final":false}
 *
 * bytes_total and chunks_total are 0 when not known; every phase ends with
 * a line whose "final" is true. Lines an agent does not read in time are
 * dropped (but not final ones, for up to a second): progress never holds
 * up the job, and a reader that goes away ends the lines, not the job. */
#pragma once

#include "cli.h"

enum { OPT_PROGRESS_FD = CLI_OPT_BASE_PROGRESS };

/* The terminal line, when stderr is one (and not -q). Called once by main. */
void progress_view_init(void);

/* The --progress-fd option, for clone, compress and verify. */
const struct cli_option *progress_cli_options(void);
/* Takes OPT_PROGRESS_FD: 0 (taken, or another option), CLI_USAGE (logged)
 * when N is not a descriptor open for writing. */
int progress_cli_parse(const struct cli_parser *p, int opt);
