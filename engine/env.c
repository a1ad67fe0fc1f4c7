/*
 * env.c - the GF_* environment variables' parsing and their once-per-process
 * warnings (env.h).
 */
#include "env.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The variables warned about so far: a handful of names, each a literal of
 * the caller, so a short list under a lock is enough. */
#define GF__ENV_MAX_WARNED 32
static const char *gf__env_warned[GF__ENV_MAX_WARNED];
static int gf__env_n_warned;
static pthread_mutex_t gf__env_mu = PTHREAD_MUTEX_INITIALIZER;

const char *gf__env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void gf__env_warn(const char *name, const char *fmt, ...) {
    pthread_mutex_lock(&gf__env_mu);
    bool seen = false;
    for (int i = 0; i < gf__env_n_warned && !seen; i++) seen = strcmp(gf__env_warned[i], name) == 0;
    if (!seen && gf__env_n_warned < GF__ENV_MAX_WARNED) gf__env_warned[gf__env_n_warned++] = name;
    if (!seen) {
        /* One write of the whole line, so lines of threads never interleave. */
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(line, sizeof line, "gradflow: ");
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        fprintf(stderr, "%s\n", line);
        fflush(stderr);
    }
    pthread_mutex_unlock(&gf__env_mu);
}

gf__env_result gf__env_int(const char *name, long long lo, long long hi, long long *out) {
    const char *v = gf__env(name);
    if (!v) return GF__ENV_UNSET;
    const char *p = v;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return GF__ENV_UNSET;
    if (!isdigit((unsigned char)*p) && !((*p == '-' || *p == '+') && isdigit((unsigned char)p[1])))
        return GF__ENV_BAD;
    char *end;
    errno = 0;
    long long x = strtoll(p, &end, 10);
    while (isspace((unsigned char)*end)) end++;
    if (errno == ERANGE || *end || x < lo || x > hi) return GF__ENV_BAD;
    *out = x;
    return GF__ENV_OK;
}
