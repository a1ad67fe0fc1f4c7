/*
 * common.c - the checks and helpers every fuzz target shares (fuzz.h): the
 * error-convention check after each call, the "ctx still works" check, a
 * private temporary directory for the files the loaders read, and the
 * sanitizer defaults the targets run with.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Allocation failures are part of what is tested: a huge tensor must give
 * GF_ENOMEM, not a sanitizer abort, and nothing above 1 GiB is allocated
 * (libFuzzer counts any single malloc above its limit as a crash). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1:"
           "abort_on_error=1";
}
/* A finding ends in abort(), so that the driver can save the input first. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "print_stacktrace=1:abort_on_error=1"; }

void gf_fuzz_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: fuzz invariant violated: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void gf_fuzz_check_usable(gf_ctx *c) {
    gf_scope_begin(c);
    gf_tensor *t = gf_full(c, GF_F64, 1, (int64_t[]){3}, 2.0);
    const double *d = gf_data_f64(gf_mul_scalar(gf_add_scalar(t, 1.0), 3.0));
    GF_FUZZ_CHECK(d && d[0] == 9 && d[1] == 9 && d[2] == 9,
                  "the ctx does not compute (2 + 1) * 3 after its error was cleared: %s",
                  gf_ctx_error(c) ? gf_ctx_error(c) : "(no error)");
    gf_scope_end(c);
    GF_FUZZ_CHECK(gf_ctx_status(c) == GF_OK, "the usability check left an error: %s",
                  gf_ctx_error(c));
}

void gf_fuzz_settle(gf_ctx *c, bool failed, const char *what) {
    if (!c) return;
    gf_status s = gf_ctx_status(c);
    const char *e = gf_ctx_error(c);
    GF_FUZZ_CHECK((s == GF_OK) == (e == NULL), "%s: status %d but message %s", what, (int)s,
                  e ? e : "NULL");
    if (failed)
        GF_FUZZ_CHECK(s < 0 && e && *e, "%s failed and left no error on the ctx", what);
    else
        GF_FUZZ_CHECK(s == GF_OK, "%s succeeded but left an error: %s", what, e);
    if (s == GF_OK) return;
    gf_ctx_clear_error(c);
    GF_FUZZ_CHECK(gf_ctx_status(c) == GF_OK && !gf_ctx_error(c),
                  "gf_ctx_clear_error left an error behind");
    gf_fuzz_check_usable(c);
}

static char gf_fuzz_dir[256];

static void gf_fuzz_rmdir(void) {
    DIR *d = opendir(gf_fuzz_dir);
    if (d) {
        char p[512];
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", gf_fuzz_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(gf_fuzz_dir);
}

void gf_fuzz_path(char *out, size_t cap, const char *name) {
    if (!gf_fuzz_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(gf_fuzz_dir, sizeof gf_fuzz_dir, "%s/gf_fuzz_XXXXXX", t && *t ? t : "/tmp");
        GF_FUZZ_CHECK(mkdtemp(gf_fuzz_dir), "cannot make a temporary directory");
        atexit(gf_fuzz_rmdir);
    }
    snprintf(out, cap, "%s/%s", gf_fuzz_dir, name);
}

void gf_fuzz_write(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    GF_FUZZ_CHECK(f, "cannot write %s", path);
    GF_FUZZ_CHECK(fwrite(data, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}
