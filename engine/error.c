/*
 * error.c - status strings and the sticky first error of a ctx.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

const char *gf_strerror(gf_status s) {
    switch (s) {
#define GF__STATUS_CASE(name, val, msg) \
    case name:                          \
        return #name ": " msg;
        GF_STATUS_LIST(GF__STATUS_CASE)
#undef GF__STATUS_CASE
    }
    return "unknown gradflow status";
}

/* The one place an error is recorded: counted always, kept if first. Safe
 * from kernels running on worker threads. */
static gf_status gf__verror(gf_ctx *ctx, gf_status s, const char *fmt, va_list ap) {
    pthread_mutex_lock(&ctx->err_mu);
    if (ctx->status == GF_OK) {
        ctx->status = s;
        vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    }
    pthread_mutex_unlock(&ctx->err_mu);
    /* Counted after the status is written: a thread that sees the count
     * change (gf__apply_rule) then reads the status it describes. */
    atomic_fetch_add(&ctx->errors, 1);
    return s;
}

gf_status gf__error(gf_ctx *ctx, gf_status s, const char *fmt, ...) {
    if (!ctx) return s;
    va_list ap;
    va_start(ap, fmt);
    gf__verror(ctx, s, fmt, ap);
    va_end(ap);
    return s;
}

gf_status gf__stale_error(gf_ctx *ctx, const gf_tensor *t, const char *fn) {
    return gf__error(ctx ? ctx : t->ctx, GF_ESTATE,
                     "%s: stale tensor handle (a %s %s tensor already freed, by gf_release or "
                     "at the end of its scope; expected a live tensor)",
                     fn, GF__SHAPE(t), gf_dtype_name(t->dtype));
}

const char *gf__shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, n - at, "[");
    for (int i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}

const char *gf_ctx_error(const gf_ctx *ctx) {
    if (!ctx) return "gf_ctx_error: ctx is NULL";
    return ctx->status == GF_OK ? NULL : ctx->err;
}

gf_status gf_ctx_status(const gf_ctx *ctx) {
    return ctx ? ctx->status : GF_EINVAL;
}

gf_status gf_ctx_set_error(gf_ctx *ctx, gf_status s, const char *fmt, ...) {
    if (!ctx || s == GF_OK) return s;
    va_list ap;
    va_start(ap, fmt);
    gf__verror(ctx, s, fmt ? fmt : "", ap);
    va_end(ap);
    return s;
}

void gf_ctx_clear_error(gf_ctx *ctx) {
    if (!ctx) return;
    ctx->status = GF_OK;
    ctx->err[0] = 0;
}

void gf__kernel_error(gf__node *n, gf_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gf__verror(n->out->ctx, s, fmt, ap);
    va_end(ap);
}
