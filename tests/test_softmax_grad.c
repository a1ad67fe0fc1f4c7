/*
 * test_softmax_grad.c - the fused backward of softmax and log_softmax
 * (ops/softmax_grad.c): the kernels against a naive loop with the same
 * roundings and summation order, bit for bit (f32, f64; along the last, a
 * middle and the first dim; transposed, sliced and expanded gradients;
 * 0-dim, one class, empty; 10 classes and 3000 classes); against the
 * composed public-op rules (to a few ulp: only the order of the double sum
 * differs); the same bits on 1, 2, 3, 4 and 8 threads; errors and NULL
 * inputs; eager == lazy.
 */
#include "common.h"

#include "../ops/ops.h" /* the fused ops' constructors (internal) */

/* t's values as doubles, in row-major order of t's shape. */
static double *values(gf_tensor *t) {
    gf_ctx *c = gf_ctx_of(t);
    int64_t n = gf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    GF_OK_OR_FAIL(c, gf_copy_to_f64(t, v, n));
    return v;
}

static bool same(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 8) == 0; }

/* The kernel's arithmetic on one row of C values (row element k at k *
 * step in g, y, e, out), in dtype f32 or f64: the double sum in four lanes
 * k % 4, added as (l0 + l1) + (l2 + l3), rounded once; e = exp(y) as the
 * library computes it (log_softmax only). */
static void naive_row(bool log_sm, bool f32, const double *g, const double *y, const double *e,
                      double *out, int64_t C, int64_t step) {
    double a[4] = {0, 0, 0, 0};
    for (int64_t k = 0; k < C; k++) {
        double gk = g[k * step], yk = y[k * step];
        if (log_sm) a[k & 3] += gk;
        else a[k & 3] += f32 ? (double)(float)((float)gk * (float)yk) : gk * yk;
    }
    double s = (a[0] + a[1]) + (a[2] + a[3]);
    if (f32) {
        float sf = (float)s;
        for (int64_t k = 0; k < C; k++) {
            float gk = (float)g[k * step], yk = (float)y[k * step];
            out[k * step] = log_sm ? gk - (float)e[k * step] * sf : yk * (gk - sf);
        }
    } else {
        for (int64_t k = 0; k < C; k++) {
            double gk = g[k * step], yk = y[k * step];
            out[k * step] = log_sm ? gk - e[k * step] * s : yk * (gk - s);
        }
    }
}

/* fused(g, y, dim) == naive_row over every row of the shape, bit for bit.
 * y is a softmax (or log_softmax) output of its shape; g any view. */
static void check_naive(bool log_sm, gf_tensor *g, gf_tensor *y, int dim) {
    gf_ctx *c = gf_ctx_of(g);
    gf_tensor *o = GF_T(c, (log_sm ? gf__log_softmax_backward : gf__softmax_backward)(g, y, dim));
    cr_assert_eq(gf_dtype_of(o), gf_dtype_of(y));
    gf_test_expect_shape(o, gf_ndim(y), gf_shape(y));
    const int nd = gf_ndim(y);
    const int d = nd == 0 ? 0 : (dim < 0 ? dim + nd : dim);
    const int64_t C = nd ? gf_shape(y)[d] : 1;
    int64_t inner = 1;
    for (int k = d + 1; k < nd; k++) inner *= gf_shape(y)[k];
    const int64_t n = gf_numel(y);
    double *gv = values(g), *yv = values(y), *ov = values(o);
    double *ev = values(GF_T(c, gf_exp(y)));
    double *want = malloc(sizeof(double) * (size_t)(n ? n : 1));
    const bool f32 = gf_dtype_of(y) == GF_F32;
    for (int64_t r = 0; C && r < n / C; r++) {
        int64_t base = (r / inner) * C * inner + r % inner;
        naive_row(log_sm, f32, gv + base, yv + base, ev + base, want + base, C, inner);
    }
    for (int64_t i = 0; i < n; i++)
        cr_assert(same(ov[i], want[i]), "%s %s dim %d: element %lld: %a, expected %a",
                  log_sm ? "log_softmax" : "softmax", f32 ? "f32" : "f64", dim, (long long)i,
                  ov[i], want[i]);
    free(gv), free(yv), free(ov), free(ev), free(want);
}

static gf_tensor *forward(bool log_sm, gf_tensor *x, int dim) {
    return log_sm ? gf_log_softmax(x, dim) : gf_softmax(x, dim);
}

Test(softmax_grad, kernels_match_a_naive_loop_bit_for_bit) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 21);
    for (int lg = 0; lg < 2; lg++)
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(ctx);
            const gf_dtype d = dt ? GF_F32 : GF_F64;
            const int64_t sh[3] = {4, 10, 6};
            gf_tensor *x = gf_mul_scalar(gf_randn(ctx, d, 3, sh), 3);
            for (int dim = -1; dim < 3; dim++) { /* last (as -1), first, middle, last */
                gf_tensor *y = GF_T(ctx, forward(lg, x, dim));
                check_naive(lg, gf_randn(ctx, d, 3, sh), y, dim); /* contiguous g */
                gf_tensor *gt = gf_randn(ctx, d, 3, (int64_t[]){6, 10, 4});
                check_naive(lg, GF_T(ctx, gf_permute(gt, (int[]){2, 1, 0})), y, dim); /* strided */
                gf_tensor *one = gf_scalar(ctx, d, 0.5);
                check_naive(lg, GF_T(ctx, gf_expand(one, 3, sh)), y, dim); /* stride 0 */
            }
            /* 10 classes over many rows (row blocks), 3000 classes (a row per block,
             * and a tail), a transposed output, one class, 0-dim, empty */
            int64_t sm[2] = {517, 10}, lgc[2] = {3, 3000};
            gf_tensor *ys = GF_T(ctx, forward(lg, gf_randn(ctx, d, 2, sm), 1));
            check_naive(lg, gf_randn(ctx, d, 2, sm), ys, 1);
            gf_tensor *yl = GF_T(ctx, forward(lg, gf_randn(ctx, d, 2, lgc), -1));
            check_naive(lg, gf_randn(ctx, d, 2, lgc), yl, -1);
            gf_tensor *yt = GF_T(ctx, gf_transpose(ys, 0, 1)); /* [10, 517], dim 0 strided */
            check_naive(lg, gf_randn(ctx, d, 2, (int64_t[]){10, 517}), yt, 0);
            gf_tensor *wide = gf_randn(ctx, d, 2, (int64_t[]){517, 20});
            check_naive(lg, GF_T(ctx, gf_slice(wide, 1, 0, 20, 2)), ys, 1); /* step-2 g */
            gf_tensor *y1 = GF_T(ctx, forward(lg, gf_randn(ctx, d, 2, (int64_t[]){5, 1}), 1));
            check_naive(lg, gf_randn(ctx, d, 2, (int64_t[]){5, 1}), y1, 1);
            gf_tensor *y0 = GF_T(ctx, forward(lg, gf_scalar(ctx, d, 1.5), 0));
            check_naive(lg, gf_scalar(ctx, d, -2), y0, 0);
            gf_tensor *ye = GF_T(ctx, forward(lg, gf_randn(ctx, d, 2, (int64_t[]){0, 7}), 1));
            check_naive(lg, gf_randn(ctx, d, 2, (int64_t[]){0, 7}), ye, 1);
            gf_scope_end(ctx);
        }
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

/* The composed rules of ops/nn.c, op by op. */
static gf_tensor *composed(bool log_sm, gf_tensor *g, gf_tensor *y, int dim) {
    if (log_sm) return gf_sub(g, gf_mul(gf_exp(y), gf_sum_dim(g, dim, true)));
    return gf_mul(y, gf_sub(g, gf_sum_dim(gf_mul(g, y), dim, true)));
}

/* Fused and composed differ only in the order of s's double sum: within a
 * few units of rounding of the terms. */
Test(softmax_grad, close_to_the_composed_rules) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 5);
    for (int lg = 0; lg < 2; lg++)
        for (int dt = 0; dt < 2; dt++)
            for (int dim = 0; dim < 2; dim++) {
                gf_scope_begin(ctx);
                const gf_dtype d = dt ? GF_F32 : GF_F64;
                const int64_t sh[2] = {64, 3001};
                gf_tensor *y = GF_T(ctx, forward(lg, gf_mul_scalar(gf_randn(ctx, d, 2, sh), 4), dim));
                gf_tensor *g = gf_randn(ctx, d, 2, sh);
                double *f = values(GF_T(ctx, (lg ? gf__log_softmax_backward : gf__softmax_backward)(
                                                 g, y, dim)));
                double *c = values(GF_T(ctx, composed(lg, g, y, dim)));
                double *gv = values(g), *yv = values(y);
                const double eps = dt ? 0x1p-23 : 0x1p-52;
                int64_t n = sh[0] * sh[1], differ = 0;
                for (int64_t i = 0; i < n; i++) {
                    const double scale = lg ? fabs(gv[i]) + exp(yv[i]) * 3001 * 4
                                            : fabs(yv[i]) * (fabs(gv[i]) + 4);
                    cr_assert(fabs(f[i] - c[i]) <= 4 * eps * scale + 1e-300,
                              "lg %d dt %d dim %d: element %lld: fused %a, composed %a", lg, dt,
                              dim, (long long)i, f[i], c[i]);
                    differ += f[i] != c[i];
                }
                cr_log_info("lg %d dt %d dim %d: %lld of %lld elements differ from composed", lg,
                            dt, dim, (long long)differ, (long long)n);
                free(f), free(c), free(gv), free(yv);
                gf_scope_end(ctx);
            }
    gf_ctx_destroy(ctx);
}

/* Past the threading threshold (rows x C > 32768): the same bits for every
 * thread count, in place (dim 1) and through the gather path (dim 0). */
Test(softmax_grad, same_bits_for_1_2_3_4_8_threads) {
    const int nts[] = {1, 2, 3, 4, 8};
    const void *ref[2][2][2] = {{{0}}};
    size_t bytes[2] = {0};
    gf_engine *es[5];
    gf_ctx *cs[5];
    for (int t = 0; t < 5; t++) {
        es[t] = gf_engine_create(&(gf_engine_opts){.num_threads = nts[t]});
        cs[t] = gf_ctx_create(es[t]);
    }
    const int64_t sh[2] = {300, 257};
    for (int t = 0; t < 5; t++) {
        gf_ctx *c = cs[t];
        gf_manual_seed(c, 77);
        for (int dt = 0; dt < 2; dt++) {
            const gf_dtype d = dt ? GF_F32 : GF_F64;
            bytes[dt] = (size_t)(sh[0] * sh[1]) * (dt ? 4 : 8);
            gf_tensor *x = gf_randn(c, d, 2, sh), *g = gf_randn(c, d, 2, sh);
            for (int lg = 0; lg < 2; lg++)
                for (int dim = 0; dim < 2; dim++) {
                    gf_tensor *y = GF_T(c, forward(lg, x, dim));
                    gf_tensor *o = GF_T(c, (lg ? gf__log_softmax_backward
                                               : gf__softmax_backward)(g, y, dim));
                    const void *p = dt ? (const void *)gf_data_f32(o) : (const void *)gf_data_f64(o);
                    cr_assert_not_null(p, "%s", gf_ctx_error(c));
                    if (t == 0) {
                        void *cp = malloc(bytes[dt]);
                        memcpy(cp, p, bytes[dt]);
                        ref[dt][lg][dim] = cp;
                    } else {
                        cr_assert(memcmp(ref[dt][lg][dim], p, bytes[dt]) == 0,
                                  "%d threads: dt %d lg %d dim %d differs from 1 thread", nts[t],
                                  dt, lg, dim);
                    }
                }
        }
    }
    for (int dt = 0; dt < 2; dt++)
        for (int lg = 0; lg < 2; lg++)
            for (int dim = 0; dim < 2; dim++) free((void *)ref[dt][lg][dim]);
    for (int t = 0; t < 5; t++) gf_ctx_destroy(cs[t]), gf_engine_destroy(es[t]);
}

Test(softmax_grad, errors_and_null) {
    gf_ctx *ctx = gf_ctx_create(NULL), *other = gf_ctx_create(NULL);
    gf_tensor *a = gf_softmax(gf_randn(ctx, GF_F32, 2, (int64_t[]){2, 3}), 1);
    gf_tensor *b = gf_randn(ctx, GF_F64, 2, (int64_t[]){2, 3});
    gf_tensor *c = gf_randn(ctx, GF_F32, 2, (int64_t[]){3, 2});
    gf_tensor *i = gf_tensor_i64(ctx, 2, (int64_t[]){2, 3}, (int64_t[]){1, 2, 3, 4, 5, 6});
    gf_tensor *o = gf_randn(other, GF_F32, 2, (int64_t[]){2, 3});
    for (int lg = 0; lg < 2; lg++) {
        gf_tensor *(*f)(gf_tensor *, gf_tensor *, int) =
            lg ? gf__log_softmax_backward : gf__softmax_backward;
        const char *name = lg ? "log_softmax_backward" : "softmax_backward";
        cr_assert_null(f(NULL, a, 1));
        cr_assert_null(f(a, NULL, 1));
        gf_ctx_clear_error(ctx);
        cr_assert_null(f(b, a, 1));
        gf_test_expect_error(ctx, name);
        gf_test_expect_error(ctx, "f64");
        gf_ctx_clear_error(ctx);
        cr_assert_null(f(i, i, 1));
        gf_test_expect_error(ctx, "float dtype");
        gf_ctx_clear_error(ctx);
        cr_assert_null(f(c, a, 1));
        gf_test_expect_error(ctx, "[3,2]");
        gf_test_expect_error(ctx, "same shape");
        gf_ctx_clear_error(ctx);
        cr_assert_null(f(a, a, 2));
        gf_test_expect_error(ctx, name);
        gf_ctx_clear_error(ctx);
        cr_assert_null(f(o, a, 1));
        gf_ctx_clear_error(ctx);
        cr_assert_not_null(f(a, a, -1), "%s", gf_ctx_error(ctx));
    }
    gf_ctx_destroy(ctx), gf_ctx_destroy(other);
}

static size_t eager_run(gf_ctx *c, unsigned char *out) {
    size_t n = 0;
    gf_manual_seed(c, 4);
    for (int lg = 0; lg < 2; lg++)
        for (int dim = 0; dim < 2; dim++) {
            gf_scope_begin(c);
            gf_tensor *y = forward(lg, gf_randn(c, GF_F32, 2, (int64_t[]){33, 70}), dim);
            gf_tensor *g = gf_randn(c, GF_F32, 2, (int64_t[]){33, 70});
            gf_tensor *r = (lg ? gf__log_softmax_backward : gf__softmax_backward)(g, y, dim);
            const float *p = gf_data_f32(r);
            cr_assert_not_null(p, "%s", gf_ctx_error(c));
            if (out) memcpy(out + n, p, 33 * 70 * 4);
            n += 33 * 70 * 4;
            gf_scope_end(c);
        }
    return n;
}

Test(softmax_grad, eager_and_lazy_identical_bits) { gf_test_expect_eager_equals_lazy(eager_run); }

/* The backward rules: with grad mode off (a plain backward) one fused node
 * on (g, out); with grad mode on (create_graph) the composed rule (last op
 * mul for softmax, sub for log_softmax); and the composed rule when g has
 * another dtype than out. */
Test(softmax_grad, rules_record_the_fused_op_only_without_grad_mode) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int lg = 0; lg < 2; lg++)
        for (int mode = 0; mode < 3; mode++) {
            gf_scope_begin(ctx);
            gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){4, 5}), true);
            gf_tensor *y = GF_T(ctx, forward(lg, x, 0));
            gf_tensor *g = gf_randn(ctx, mode == 2 ? GF_F32 : GF_F64, 2, (int64_t[]){4, 5});
            gf_tensor *gin[1] = {NULL};
            if (mode != 1) gf_no_grad_begin(ctx);
            GF_OK_OR_FAIL(ctx, gf__op_bwd[y->node->op](y->node, y, g, gin));
            if (mode != 1) gf_no_grad_end(ctx);
            cr_assert(gin[0] && gin[0]->node, "no gradient node");
            const int fused = lg ? GF__OP_log_softmax_backward : GF__OP_softmax_backward;
            const int want = mode == 0 ? fused : lg ? GF__OP_sub : GF__OP_mul;
            cr_assert_eq(gin[0]->node->op, want, "lg %d mode %d: recorded %s", lg, mode,
                         gf__op_names[gin[0]->node->op]);
            if (mode == 0) {
                cr_assert_eq(gin[0]->node->in[0], g, "the upstream gradient comes first");
                cr_assert_eq(gin[0]->node->in[1], y);
                cr_assert_eq(gin[0]->node->a.dim, 0);
            }
            gf_test_expect_shape(gin[0], 2, (int64_t[]){4, 5});
            gf_scope_end(ctx);
        }
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

/* d/dx sum(op(x) * w), plain (fused) and with create_graph (composed): the
 * same to a few ulp, along the first and the last dim, through a transposed
 * x, f32 and f64. */
Test(softmax_grad, plain_backward_close_to_create_graph) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 17);
    for (int lg = 0; lg < 2; lg++)
        for (int dt = 0; dt < 2; dt++)
            for (int dim = 0; dim < 2; dim++) {
                gf_scope_begin(ctx);
                gf_tensor *leaf = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){9, 13}), true);
                gf_tensor *x = gf_transpose(dt ? gf_to_dtype(leaf, GF_F32) : leaf, 0, 1);
                gf_tensor *w = gf_randn(ctx, dt ? GF_F32 : GF_F64, 2, (int64_t[]){13, 9});
                gf_tensor *gr[2];
                for (int cg = 0; cg < 2; cg++) {
                    gf_tensor *y = GF_T(ctx, forward(lg, x, dim)), *gx = NULL;
                    gf_backward_opts o = {.grad_output = w, .create_graph = cg, .retain_graph = true};
                    GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &leaf, &gx, &o));
                    GF_OK_OR_FAIL(ctx, gf_realize(gx));
                    gr[cg] = gx;
                }
                double *a = values(gr[0]), *b = values(gr[1]);
                const double eps = dt ? 0x1p-23 : 0x1p-52;
                for (int i = 0; i < 9 * 13; i++)
                    cr_assert(fabs(a[i] - b[i]) <= 64 * eps * (1 + fabs(b[i])),
                              "lg %d dt %d dim %d: plain %a, create_graph %a at %d", lg, dt, dim,
                              a[i], b[i], i);
                free(a), free(b);
                gf_scope_end(ctx);
            }
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

typedef struct {
    bool log_sm;
    int dim;
} fn_args;

/* sum(op(x, dim) * w) with a fixed w: a scalar for gradcheck. */
static gf_tensor *apply_op(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)n;
    const fn_args *f = user;
    gf_tensor *y = forward(f->log_sm, in[0], f->dim);
    gf_manual_seed(ctx, 99);
    return gf_sum(gf_mul(y, gf_randn(ctx, GF_F64, gf_ndim(y), gf_shape(y))));
}

/* The gradient of apply_op built with create_graph (composed), contracted
 * with x + 0.5: differentiating it checks the second derivatives. */
static gf_tensor *apply_d1(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    gf_tensor *x = in[0], *g = NULL, *y = apply_op(ctx, n, in, user);
    gf_backward_opts o = {.create_graph = true};
    if (gf_grad_of(y, 1, &x, &g, &o) != GF_OK) return NULL;
    return gf_sum(gf_mul(g, gf_add_scalar(x, 0.5)));
}

/* gf_gradcheck differentiates with a plain backward: the fused kernels,
 * along the first, a middle and the last dim; then second order through the
 * composed rules. */
Test(softmax_grad, gradcheck_f64_fused_and_second_order) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int lg = 0; lg < 2; lg++)
        for (int dim = 0; dim < 3; dim++) {
            gf_scope_begin(ctx);
            gf_manual_seed(ctx, 31 + (uint64_t)dim);
            gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 3, (int64_t[]){3, 4, 5}), true);
            fn_args f = {lg, dim};
            gf_status s = gf_gradcheck(ctx, apply_op, 1, &x, &f, 1e-6, 1e-6, 1e-4);
            cr_assert_eq(s, GF_OK, "lg %d dim %d: %s", lg, dim, gf_ctx_error(ctx));
            s = gf_gradcheck(ctx, apply_d1, 1, &x, &f, 1e-6, 1e-6, 1e-4);
            cr_assert_eq(s, GF_OK, "lg %d dim %d second order: %s", lg, dim, gf_ctx_error(ctx));
            gf_scope_end(ctx);
        }
    gf_ctx_destroy(ctx);
}
