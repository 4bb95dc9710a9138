// SPDX-License-Identifier: MIT
#include "curl_api.h"

#include "log.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

/* The soname of libcurl's ABI since 7.16 (2006), whichever TLS library it
 * was built with. */
#define LIBCURL_SONAME "libcurl.so.4"

struct curl_api libcurl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_result;

/* A member of struct curl_api and the libcurl function it holds, named
 * once: "curl_" + the member's name. */
#define SYMBOL(member) { "curl_" #member, offsetof(struct curl_api, member) }

static const struct {
        const char *name;
        size_t offset;
} symbols[] = {
        SYMBOL(global_init),
        SYMBOL(global_cleanup),
        SYMBOL(easy_init),
        SYMBOL(easy_setopt),
        SYMBOL(easy_perform),
        SYMBOL(easy_getinfo),
        SYMBOL(easy_reset),
        SYMBOL(easy_cleanup),
        SYMBOL(easy_strerror),
        SYMBOL(slist_append),
        SYMBOL(slist_free_all),
        SYMBOL(version_info),
};

static int load(void)
{
        struct curl_api api;
        void *lib;

        /* Kept open for the life of the process: curl's TLS library cannot
         * be unloaded safely. */
        lib = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
                log_error("HTTP needs libcurl (%s), which cannot be loaded: %s", LIBCURL_SONAME, dlerror());
                return -ENOENT;
        }
        for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
                void *f = dlsym(lib, symbols[i].name);
                if (!f) {
                        log_error("%s lacks %s: too old a libcurl", LIBCURL_SONAME, symbols[i].name);
                        return -ENOENT;
                }
                /* POSIX guarantees that a function's address survives the
                 * trip through void *. */
                *(void **)((char *)&api + symbols[i].offset) = f;
        }
        if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                log_error("libcurl cannot be initialised");
                return -EIO;
        }
        libcurl = api;
        return 0;
}

static void load_once_fn(void)
{
        load_result = load();
}

int curl_api_load(void)
{
        pthread_once(&load_once, load_once_fn);
        return load_result;
}

void curl_api_unload(void)
{
        if (libcurl.global_cleanup) /* set once loaded and initialised */
                libcurl.global_cleanup();
}
