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

static const struct {
        const char *name;
        size_t offset;
} symbols[] = {
        { "curl_global_init", offsetof(struct curl_api, global_init) },
        { "curl_global_cleanup", offsetof(struct curl_api, global_cleanup) },
        { "curl_easy_init", offsetof(struct curl_api, easy_init) },
        { "curl_easy_setopt", offsetof(struct curl_api, easy_setopt) },
        { "curl_easy_perform", offsetof(struct curl_api, easy_perform) },
        { "curl_easy_getinfo", offsetof(struct curl_api, easy_getinfo) },
        { "curl_easy_reset", offsetof(struct curl_api, easy_reset) },
        { "curl_easy_cleanup", offsetof(struct curl_api, easy_cleanup) },
        { "curl_easy_strerror", offsetof(struct curl_api, easy_strerror) },
        { "curl_slist_append", offsetof(struct curl_api, slist_append) },
        { "curl_slist_free_all", offsetof(struct curl_api, slist_free_all) },
        { "curl_version_info", offsetof(struct curl_api, version_info) },
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
