/* bench/curl_loop.c: the list case's reference, libcurl's own ceiling on one keep-alive
 * connection: N curl_easy_perform calls of one URL on one reused handle, the body counted and
 * dropped. Built by `make bench` into build/bench/curl_loop.
 *
 *   curl_loop URL N <HEADERFILE     HEADERFILE: one header line (the key stays out of argv)
 *
 * Prints `seconds=S calls=N rate=R bytes=B`; exits 1 when a call fails or answers non-200. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

static size_t count_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    *(size_t *)ud += size * n;
    return size * n;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    char header[4096];
    struct curl_slist *headers = NULL;
    CURL *easy;
    long i, n;
    size_t bytes = 0;
    double t0, seconds;
    if (argc != 3 || (n = strtol(argv[2], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: curl_loop URL N <HEADERFILE\n");
        return 2;
    }
    if (fgets(header, sizeof header, stdin) != NULL) {
        header[strcspn(header, "\r\n")] = '\0';
        headers = curl_slist_append(NULL, header);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    easy = curl_easy_init();
    if (easy == NULL)
        return 1;
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, count_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &bytes);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    t0 = now();
    for (i = 0; i < n; i++) {
        long status = 0;
        CURLcode code = curl_easy_perform(easy);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (code != CURLE_OK || status != 200) {
            fprintf(stderr, "curl_loop: call %ld: %s, HTTP %ld\n", i + 1, curl_easy_strerror(code),
                    status);
            return 1;
        }
    }
    seconds = now() - t0;
    printf("seconds=%.6f calls=%ld rate=%.1f bytes=%lu\n", seconds, n, (double)n / seconds,
           (unsigned long)bytes);
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    return 0;
}
