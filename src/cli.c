#include "cli.h"

#include "cleanup.h"
#include "store.h"

#include <errno.h>

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
