// SPDX-License-Identifier: MIT
/* libcurl, loaded with dlopen on first use. Linked normally, it and the
 * TLS, Kerberos, LDAP and SSH libraries it pulls in (some 30 of them) are
 * mapped, relocated and initialised in every ihop process: about 5 MiB of
 * resident memory in `ihop mount` and `ihop serve`, which run for as long as
 * a device is up and never speak HTTP. */
#pragma once

#include <curl/curl.h>

/* The functions ihop uses, named as libcurl's without the curl_ prefix. */
struct curl_api {
        CURLcode (*global_init)(long flags);
        void (*global_cleanup)(void);
        CURL *(*easy_init)(void);
        CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
        CURLcode (*easy_perform)(CURL *curl);
        CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
        void (*easy_reset)(CURL *curl);
        void (*easy_cleanup)(CURL *curl);
        const char *(*easy_strerror)(CURLcode code);
        struct curl_slist *(*slist_append)(struct curl_slist *list, const char *string);
        void (*slist_free_all)(struct curl_slist *list);
        curl_version_info_data *(*version_info)(CURLversion age);
};

/* Valid once curl_api_load has returned 0. */
extern struct curl_api libcurl;

/* Loads libcurl and runs curl_global_init, once per process (thread-safe);
 * later calls return the first call's result. Logs why when it fails. */
int curl_api_load(void);
/* curl_global_cleanup, when loaded; the library stays mapped. */
void curl_api_unload(void);
