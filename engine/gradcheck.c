/*
 * gradcheck.c - gf_gradcheck and gf_gradcheck_ex (torch.autograd.gradcheck):
 * the analytic Jacobian of a function, whole or as random vector-Jacobian
 * products, against float64 central differences; on failure the worst
 * value and the failure count go on the ctx. Written only against the
 * public API, plus direct writes into the float64 copies it owns.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch.autograd.gradcheck's defaults, and ours for the VJP mode. */
#define GF__GC_EPS 1e-6
#define GF__GC_ATOL 1e-5
#define GF__GC_RTOL 1e-3
#define GF__GC_NVJP 4
#define GF__GC_SEED 0x6772616463686bull /* "gradchk" */
/* GF_GRADCHECK_AUTO checks the whole Jacobian up to this many entries and
 * output elements: one backward per output element stays cheap there. */
#define GF__GC_FULL_ENTRIES 65536
#define GF__GC_FULL_ROWS 4096

/* The worst compared value so far and the counts. */
typedef struct {
    int64_t failed, checked;
    double ratio;      /* difference / allowed difference (inf for NaN or allowed 0) */
    int input;         /* the caller's input index */
    int64_t elem, row; /* element of that input; output element (full) or product (VJP) */
    double ana, num, allowed;
} gf__gc_worst;

static void gf__gc_compare(gf__gc_worst *w, const gf_gradcheck_opts *o, double ana, double num,
                           int input, int64_t elem, int64_t row) {
    double diff = fabs(ana - num), allowed = o->atol + o->rtol * fabs(num);
    w->checked++;
    if (diff <= allowed) return;
    double ratio = isnan(diff) || !(allowed > 0) ? INFINITY : diff / allowed;
    /* Ties keep the first, so the report does not depend on float noise. */
    if (w->failed++ == 0 || ratio > w->ratio)
        *w = (gf__gc_worst){w->failed, w->checked, ratio, input, elem, row, ana, num, allowed};
}

/* The multi-index of row-major element e of a shape, as "[i,j]". */
static const char *gf__gc_index(char *buf, size_t len, int ndim, const int64_t *shape,
                                int64_t e) {
    int64_t ix[GF_MAX_DIMS] = {0};
    for (int d = ndim - 1; d >= 0 && shape[d] > 0; d--) {
        ix[d] = e % shape[d];
        e /= shape[d];
    }
    return gf__shape_str(buf, len, ndim, ix);
}

/* fn's failure as a status, with an error on the ctx if fn left none. */
static gf_status gf__gc_fn_failed(gf_ctx *ctx, const char *who) {
    if (gf_ctx_status(ctx) != GF_OK) return gf_ctx_status(ctx);
    return gf__error(ctx, GF_EINVAL,
                     "%s: fn returned NULL without recording an error on the ctx (expected a "
                     "tensor)", who);
}

/* fn at the current values of the copies, its m output values into f. Not
 * under no_grad: fn may itself differentiate (second-order checks). */
static gf_status gf__gc_eval(gf_ctx *ctx, const char *who, gf_fn fn, int n,
                             gf_tensor *const *x, void *user, double *f, int64_t m) {
    gf_scope_begin(ctx);
    gf_tensor *o = fn(ctx, n, x, user);
    gf_status s = o ? GF_OK : gf__gc_fn_failed(ctx, who);
    if (s == GF_OK && o->numel != m)
        s = gf__error(ctx, GF_ESHAPE,
                      "%s: fn returned %s on a perturbed input (expected %lld elements, as on "
                      "the first call)",
                      who, GF__SHAPE(o), (long long)m);
    if (s == GF_OK) s = gf_copy_to_f64(o, f, m);
    gf_scope_end(ctx);
    return s;
}

/* One tolerance or step: negative or non-finite values are errors naming
 * it; 0 takes the default def where zero_default (gf_gradcheck_ex). */
static gf_status gf__gc_field(gf_ctx *ctx, const char *who, const char *name, double v,
                              bool zero_default, double def, double *dst) {
    if (!isfinite(v) || v < 0) {
        if (zero_default)
            return gf__error(ctx, GF_EINVAL,
                             "%s: %s is %g (expected a finite value >= 0; 0 takes the default "
                             "%g)", who, name, v, def);
        return gf__error(ctx, GF_EINVAL, "%s: %s is %g (expected a finite value >= 0)", who,
                         name, v);
    }
    *dst = v == 0 && zero_default ? def : v;
    return GF_OK;
}

/* a * b zeroed doubles (at least one), or NULL when that overflows or the
 * memory is not there. */
static double *gf__gc_alloc(int64_t a, int64_t b) {
    if (a < 0 || b < 0 || (b && a > (int64_t)(SIZE_MAX / sizeof(double)) / b)) return NULL;
    return calloc(a * b != 0 ? (size_t)(a * b) : 1, sizeof(double));
}

/* The check itself, with the options resolved; who names the entry. */
static gf_status gf__gradcheck(gf_ctx *ctx, const char *who, gf_fn fn, int n,
                               gf_tensor *const *inputs, void *user, const gf_gradcheck_opts *o) {
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) return gf__error(ctx, GF_EINVAL, "%s: input %d is NULL", who, i);
        if (inputs[i]->ctx != ctx)
            return gf__error(ctx, GF_EINVAL,
                             "%s: input %d %s belongs to another ctx (expected the ctx passed)",
                             who, i, GF__SHAPE(inputs[i]));
    }
    gf_status s = GF_OK;
    gf_scope_begin(ctx);
    const size_t nn = n > 0 ? (size_t)n : 1; /* the callers checked n > 0 */
    gf_tensor **x = calloc(nn, sizeof *x), **want = calloc(nn, sizeof *want);
    gf_tensor **an = calloc(nn, sizeof *an);
    int *idx = calloc(nn, sizeof *idx);
    int64_t *off = calloc(nn + 1, sizeof *off);
    double *A = NULL, *W = NULL, *fp = NULL, *fm = NULL;
    if (!x || !want || !an || !idx || !off)
        s = gf__error(ctx, GF_ENOMEM, "%s: out of memory", who);
    /* float64 leaf copies of the floating inputs that require grad; the
     * others are passed as they are. */
    int nw = 0;
    for (int i = 0; i < n && s == GF_OK; i++) {
        gf_tensor *in = inputs[i];
        if (in->dtype == GF_I64 || !in->requires_grad) {
            x[i] = in;
            continue;
        }
        gf_no_grad_begin(ctx);
        x[i] = gf_clone(gf_to_dtype(in, GF_F64));
        gf_no_grad_end(ctx);
        if (!x[i] || gf_realize(x[i]) != GF_OK) {
            s = gf_ctx_status(ctx);
            break;
        }
        gf_requires_grad(x[i], true);
        want[nw] = x[i];
        idx[nw] = i;
        off[nw + 1] = off[nw] + x[i]->numel;
        nw++;
    }
    if (s == GF_OK && nw == 0)
        s = gf__error(ctx, GF_EINVAL,
                      "%s: no input requires grad (expected at least one floating input with "
                      "requires_grad)", who);
    gf_tensor *out = NULL;
    if (s == GF_OK) {
        out = fn(ctx, n, x, user);
        if (out && out->dtype != GF_F64) out = gf_to_dtype(out, GF_F64);
        if (!out) s = gf__gc_fn_failed(ctx, who);
    }
    const int64_t N = nw ? off[nw] : 0, M = out ? out->numel : 0;
    bool full = o->mode == GF_GRADCHECK_FULL;
    if (o->mode == GF_GRADCHECK_AUTO)
        full = M <= GF__GC_FULL_ROWS && (M == 0 || N <= GF__GC_FULL_ENTRIES / M);
    const int64_t K = full ? M : o->n_vjp;
    if (s == GF_OK) {
        A = gf__gc_alloc(K, N);
        W = gf__gc_alloc(full ? 1 : K, M); /* full: the one-hot grad_output */
        fp = gf__gc_alloc(M, 1);
        fm = gf__gc_alloc(M, 1);
        if (!A || !W || !fp || !fm)
            s = gf__error(ctx, GF_ENOMEM,
                          "%s: out of memory for a %lld x %lld Jacobian (expected fewer output "
                          "elements, or GF_GRADCHECK_VJP)",
                          who, (long long)K, (long long)N);
    }
    /* The VJP weights, drawn with the check's own seed; the caller's
     * generator state is restored. */
    if (s == GF_OK && !full) {
        uint64_t seed = ctx->seed, ctr = ctx->rng_counter;
        gf_manual_seed(ctx, o->seed);
        for (int64_t k = 0; k < K && s == GF_OK; k++) {
            gf_scope_begin(ctx);
            gf_tensor *w = gf_add_scalar(gf_rand(ctx, GF_F64, out->ndim, out->shape), 0.5);
            s = w ? gf_copy_to_f64(w, W + k * M, M) : gf_ctx_status(ctx);
            gf_scope_end(ctx);
        }
        ctx->seed = seed;
        ctx->rng_counter = ctr;
    }
    /* Analytic: row k of the Jacobian (full: grad_output one-hot at output
     * element k) or w_k^T J, one backward each, before any input moves. */
    for (int64_t k = 0; k < K && s == GF_OK; k++) {
        gf_scope_begin(ctx);
        double *gk = full ? W : W + k * M;
        if (full) gk[k] = 1;
        gf_tensor *g = gf_tensor_f64(ctx, out->ndim, out->shape, gk);
        if (full) gk[k] = 0;
        gf_backward_opts bo = {.grad_output = g, .retain_graph = true};
        s = g ? gf_grad_of(out, nw, want, an, &bo) : gf_ctx_status(ctx);
        for (int j = 0; j < nw && s == GF_OK; j++)
            s = gf_copy_to_f64(an[j], A + k * N + off[j], want[j]->numel);
        gf_scope_end(ctx);
    }
    /* Numeric: one column of the Jacobian per input element, from fn at
     * x + eps and x - eps (written into the copy, version bumped). */
    gf__gc_worst worst = {0};
    for (int j = 0; j < nw && K > 0 && s == GF_OK; j++) {
        gf_tensor *xj = want[j];
        double *p = (double *)gf__ptr(xj);
        for (int64_t e = 0; e < xj->numel && s == GF_OK; e++) {
            double orig = p[e];
            for (int side = 0; side < 2 && s == GF_OK; side++) {
                p[e] = orig + (side ? -o->eps : o->eps);
                atomic_fetch_add(&xj->storage->version, 1);
                s = gf__gc_eval(ctx, who, fn, n, x, user, side ? fm : fp, M);
            }
            p[e] = orig;
            atomic_fetch_add(&xj->storage->version, 1);
            for (int64_t k = 0; k < K && s == GF_OK; k++) {
                double num = 0;
                if (full) {
                    num = (fp[k] - fm[k]) / (2 * o->eps);
                } else {
                    for (int64_t m = 0; m < M; m++) num += W[k * M + m] * (fp[m] - fm[m]);
                    num /= 2 * o->eps;
                }
                gf__gc_compare(&worst, o, A[k * N + off[j] + e], num, idx[j], e, k);
            }
        }
    }
    if (s == GF_OK && worst.failed) {
        char ie[96], oe[96], row[128];
        const gf_tensor *xi = x[worst.input];
        gf__gc_index(ie, sizeof ie, xi->ndim, xi->shape, worst.elem);
        if (full)
            snprintf(row, sizeof row, "output element %lld %s", (long long)worst.row,
                     gf__gc_index(oe, sizeof oe, out->ndim, out->shape, worst.row));
        else
            snprintf(row, sizeof row, "product %lld", (long long)worst.row);
        s = gf__error(ctx, GF_EINVAL,
                      "%s: %lld of %lld %s differ (%s, eps %g, atol %g, rtol %g); worst: "
                      "input %d element %lld %s, %s: analytic %.10g vs numeric %.10g "
                      "(difference %.3g, allowed %.3g)",
                      who, (long long)worst.failed, (long long)worst.checked,
                      full ? "Jacobian entries" : "vector-Jacobian product values",
                      full ? "full Jacobian" : "random vector-Jacobian products", o->eps,
                      o->atol, o->rtol, worst.input, (long long)worst.elem, ie, row, worst.ana,
                      worst.num, fabs(worst.ana - worst.num), worst.allowed);
    }
    free(A), free(W), free(fp), free(fm);
    free(x), free(want), free(an), free(idx), free(off);
    gf_scope_end(ctx);
    return s;
}

/* Checks the arguments both entries share. */
static gf_status gf__gc_args(gf_ctx *ctx, const char *who, gf_fn fn, int n,
                             gf_tensor *const *inputs) {
    if (!fn || n <= 0 || !inputs)
        return gf__error(ctx, GF_EINVAL,
                         "%s: fn %s, n %d, inputs %s (expected a function, n > 0 and an array "
                         "of n inputs)",
                         who, fn ? "set" : "NULL", n, inputs ? "set" : "NULL");
    return GF_OK;
}

gf_status gf_gradcheck_ex(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *inputs, void *user,
                          const gf_gradcheck_opts *opts) {
    const char *who = "gf_gradcheck_ex";
    if (!ctx) return GF_EINVAL;
    gf_status s = gf__gc_args(ctx, who, fn, n, inputs);
    if (s != GF_OK) return s;
    gf_gradcheck_opts in = opts ? *opts : (gf_gradcheck_opts){0}, o = in;
    if ((s = gf__gc_field(ctx, who, "opts.eps", in.eps, true, GF__GC_EPS, &o.eps)) != GF_OK ||
        (s = gf__gc_field(ctx, who, "opts.atol", in.atol, true, GF__GC_ATOL, &o.atol)) != GF_OK ||
        (s = gf__gc_field(ctx, who, "opts.rtol", in.rtol, true, GF__GC_RTOL, &o.rtol)) != GF_OK)
        return s;
    if (in.mode < GF_GRADCHECK_AUTO || in.mode > GF_GRADCHECK_VJP)
        return gf__error(ctx, GF_EINVAL,
                         "%s: opts.mode is %d (expected GF_GRADCHECK_AUTO, _FULL or _VJP)", who,
                         (int)in.mode);
    if (in.n_vjp < 0)
        return gf__error(ctx, GF_EINVAL,
                         "%s: opts.n_vjp is %d (expected >= 0; 0 takes the default %d)", who,
                         in.n_vjp, GF__GC_NVJP);
    o.n_vjp = in.n_vjp ? in.n_vjp : GF__GC_NVJP;
    o.seed = in.seed ? in.seed : GF__GC_SEED;
    return gf__gradcheck(ctx, who, fn, n, inputs, user, &o);
}

gf_status gf_gradcheck(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *inputs, void *user,
                       double eps, double atol, double rtol) {
    const char *who = "gf_gradcheck";
    if (!ctx) return GF_EINVAL;
    gf_status s = gf__gc_args(ctx, who, fn, n, inputs);
    if (s != GF_OK) return s;
    if (isnan(eps) || isinf(eps))
        return gf__error(ctx, GF_EINVAL,
                         "%s: eps is %g (expected a finite step; <= 0 takes the default %g)", who,
                         eps, GF__GC_EPS);
    /* The tolerances are used as given (0 is an exact check). */
    gf_gradcheck_opts o = {.eps = eps > 0 ? eps : GF__GC_EPS, .mode = GF_GRADCHECK_AUTO,
                           .n_vjp = GF__GC_NVJP, .seed = GF__GC_SEED};
    if ((s = gf__gc_field(ctx, who, "atol", atol, false, 0, &o.atol)) != GF_OK ||
        (s = gf__gc_field(ctx, who, "rtol", rtol, false, 0, &o.rtol)) != GF_OK)
        return s;
    return gf__gradcheck(ctx, who, fn, n, inputs, user, &o);
}
