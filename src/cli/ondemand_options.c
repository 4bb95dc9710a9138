// SPDX-License-Identifier: MIT
#include "ondemand_options.h"

#include "log.h"

static const struct cli_option options[] = {
        { .help = "Before the release is cloned (what is read is fetched, checked and kept):" },
        { .name = "source", .key = OPT_SOURCE, .arg = "SOURCE",
          .help = "the release's archive (path or http(s) URL), for the chunks STORE lacks" },
        { .name = "fill", .key = OPT_FILL,
          .help = "with --source, fetch every chunk not read yet in the background; once all are in, the "
                  "release is an ordinary one" },
        {}
};

const struct cli_option *ondemand_cli_options(void) { return options; }

void ondemand_cli_init(struct ondemand_cli *o)
{
        *o = (struct ondemand_cli){};
        http_cli_init(&o->http);
}

void ondemand_cli_free(struct ondemand_cli *o)
{
        http_cli_free(&o->http);
        trust_cli_free(&o->trust);
}

int ondemand_cli_parse(struct ondemand_cli *o, const struct cli_parser *p, int opt)
{
        switch (opt) {
        case OPT_SOURCE:
                o->source = p->arg;
                return 0;
        case OPT_FILL:
                o->fill = true;
                return 0;
        default: {
                int r = trust_cli_parse(&o->trust, p, opt);
                return r != 0 ? r : http_cli_parse(&o->http, p, opt);
        }
        }
}

int ondemand_cli_finish(const struct ondemand_cli *o, bool any_source)
{
        int r = trust_cli_finish(&o->trust);

        if (r == 0)
                r = http_cli_finish(&o->http);
        if (r != 0)
                return r;
        if (!any_source && (o->fill || o->trust.keys.n > 0)) {
                log_error("--%s goes with --source", o->fill ? "fill" : "trusted-key");
                return CLI_USAGE;
        }
        return 0;
}

struct ondemand_options ondemand_cli_options_for(const struct ondemand_cli *o, const char *source)
{
        return (struct ondemand_options){
                .source = source, .http = o->http.http, .trust = trust_cli_policy(&o->trust), .fill = o->fill,
        };
}
