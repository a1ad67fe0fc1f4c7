/*
 * gradcheck.c - gf_gradcheck: analytic gradients against float64 central
 * differences, written only against the public API (plus direct writes into
 * the float64 copies it owns).
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* sum(fn(inputs) * r) as a double; r fixed random weights of out's shape
 * (created on the first call), so that every output element matters. */
static gf_tensor *gf__gc_loss(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *in, void *user,
                              gf_tensor **r) {
    gf_tensor *out = fn(ctx, n, in, user);
    if (!out) return NULL;
    if (out->dtype != GF_F64) out = gf_to_dtype(out, GF_F64);
    if (!*r) {
        uint64_t seed = ctx->seed, ctr = ctx->rng_counter;
        gf_manual_seed(ctx, 0x6772616463686bull); /* fixed: "gradchk" */
        gf_tensor *w = gf_rand(ctx, GF_F64, out->ndim, out->shape);
        ctx->seed = seed;
        ctx->rng_counter = ctr;
        if (!w) return NULL;
        /* In gf_gradcheck's own scope (the first call is made there), so
         * it lives until the check ends and no longer. */
        *r = gf_add_scalar(w, 0.5); /* weights in [0.5, 1.5) */
        if (!*r) return NULL;
        gf_realize(*r);
    }
    return gf_sum(gf_mul(out, *r));
}

gf_status gf_gradcheck(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *inputs, void *user,
                       double eps, double atol, double rtol) {
    if (!ctx) return GF_EINVAL;
    if (!fn || n <= 0 || !inputs || !(eps > 0))
        return gf__error(ctx, GF_EINVAL,
                         "gf_gradcheck: expected fn, n > 0 inputs and eps > 0 (got eps %g)", eps);
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) return gf__error(ctx, GF_EINVAL, "gf_gradcheck: input %d is NULL", i);
        /* Its copies are made in its own ctx, outside the scope opened here. */
        if (inputs[i]->ctx != ctx)
            return gf__error(ctx, GF_EINVAL,
                             "gf_gradcheck: input %d belongs to another ctx (expected inputs "
                             "of the ctx passed)", i);
    }
    gf_status s = GF_OK;
    gf_scope_begin(ctx);
    /* float64 leaf copies of the inputs. */
    gf_tensor **x = calloc((size_t)n, sizeof *x);
    gf_tensor *r = NULL;
    if (!x) {
        gf_scope_end(ctx);
        return gf__error(ctx, GF_ENOMEM, "gf_gradcheck: out of memory");
    }
    int ndiff = 0;
    for (int i = 0; i < n && s == GF_OK; i++) {
        gf_tensor *in = inputs[i];
        if (in->dtype == GF_I64 || !in->requires_grad) {
            x[i] = in;
            continue;
        }
        gf_no_grad_begin(ctx);
        x[i] = gf_clone(gf_to_dtype(in, GF_F64));
        gf_no_grad_end(ctx);
        if (!x[i] || gf_realize(x[i]) != GF_OK) s = gf_ctx_status(ctx);
        else gf_requires_grad(x[i], true), ndiff++;
    }
    if (s == GF_OK && ndiff == 0)
        s = gf__error(ctx, GF_EINVAL, "gf_gradcheck: no input requires grad");
    gf_tensor **an = calloc((size_t)n, sizeof *an);
    gf_tensor **want = calloc((size_t)n, sizeof *want);
    int *idx = calloc((size_t)n, sizeof *idx);
    if (!an || !want || !idx) s = gf__error(ctx, GF_ENOMEM, "gf_gradcheck: out of memory");
    /* Analytic gradients. */
    if (s == GF_OK) {
        gf_tensor *loss = gf__gc_loss(ctx, fn, n, x, user, &r);
        int k = 0;
        for (int i = 0; i < n; i++)
            if (x[i]->requires_grad && x[i]->dtype == GF_F64 && x[i] != inputs[i]) {
                want[k] = x[i];
                idx[k++] = i;
            }
        if (!loss) s = gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_EINVAL;
        else s = gf_grad_of(loss, k, want, an, NULL);
        for (int j = 0; s == GF_OK && j < k; j++) s = gf_realize(an[j]);
        /* Numeric gradients, element by element. */
        for (int j = 0; s == GF_OK && j < k; j++) {
            gf_tensor *xi = want[j];
            double *p = (double *)gf__ptr(xi);
            const double *a = gf_data_f64(an[j]);
            if (!a) { s = gf_ctx_status(ctx); break; }
            for (int64_t e = 0; s == GF_OK && e < xi->numel; e++) {
                double orig = p[e];
                double f[2];
                for (int side = 0; side < 2 && s == GF_OK; side++) {
                    p[e] = orig + (side ? -eps : eps);
                    atomic_fetch_add(&xi->storage->version, 1);
                    /* Not under no_grad: fn may itself differentiate
                     * (a second-order check calls gf_grad_of inside). */
                    gf_scope_begin(ctx);
                    gf_tensor *l = gf__gc_loss(ctx, fn, n, x, user, &r);
                    f[side] = l ? gf_item(l) : NAN;
                    gf_scope_end(ctx);
                    if (!l) s = gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_EINVAL;
                }
                p[e] = orig;
                atomic_fetch_add(&xi->storage->version, 1);
                if (s != GF_OK) break;
                double num = (f[0] - f[1]) / (2 * eps);
                double ana = a[e];
                if (!(fabs(ana - num) <= atol + rtol * fabs(num)))
                    s = gf__error(ctx, GF_EINVAL,
                                  "gf_gradcheck: input %d element %lld: analytic gradient %.10g "
                                  "vs numeric %.10g (allowed difference %.3g)",
                                  idx[j], (long long)e, ana, num, atol + rtol * fabs(num));
            }
        }
    }
    free(an);
    free(want);
    free(idx);
    free(x);
    gf_scope_end(ctx);
    return s;
}
