/*
 * test_unary_bwd.c - the fused backward kernels of ops/unary.c
 * (tanh_backward, sigmoid_backward, relu_backward), which a plain backward
 * records instead of the composed rules: the kernels against a naive loop
 * in the same dtype, bit for bit (f32, f64; contiguous, strided, broadcast
 * and expanded gradients, 0-dim, empty); the same bits as the composed
 * public-op expressions on a large input, for 1 and 7 threads; a plain
 * backward records the fused node and gives create_graph's (composed)
 * bits, relu at 0 and NaN included (torch's threshold_backward: NaN passes
 * the gradient); float64 gradchecks of tanh, sigmoid and
 * relu through the plain backward (fused) and of their first derivatives
 * through create_graph (composed, second order); errors and NULL inputs;
 * eager == lazy.
 */
#include "common.h"

#include "../ops/ops.h" /* the fused ops' constructors (internal) */

typedef struct {
    const char *name;
    gf_tensor *(*fused)(gf_tensor *, gf_tensor *);
    gf_tensor *(*op)(gf_tensor *);
    int opcode;   /* the fused op */
    double lo, hi; /* op inputs for the gradient checks, |x| in [lo, hi) for relu */
} kind;

static const kind KINDS[] = {
    {"tanh", gf__tanh_backward, gf_tanh, GF__OP_tanh_backward, -2.5, 2.5},
    {"sigmoid", gf__sigmoid_backward, gf_sigmoid, GF__OP_sigmoid_backward, -5, 5},
    {"relu", gf__relu_backward, gf_relu, GF__OP_relu_backward, 0.1, 2},
};
#define NK 3

/* The composed rules, operation by operation, in the dtype: g * (-(v*v) + 1),
 * g * (v * (-v + 1)), v <= 0 ? 0 : g. */
static float naive_f(int k, float g, float v) {
    if (k == 0) {
        float p = v * v, q = -p, r = q + 1.0f;
        return g * r;
    }
    if (k == 1) {
        float q = -v, r = q + 1.0f, s = v * r;
        return g * s;
    }
    return v <= 0 ? 0.0f : g;
}
static double naive_d(int k, double g, double v) {
    if (k == 0) {
        double p = v * v, q = -p, r = q + 1.0;
        return g * r;
    }
    if (k == 1) {
        double q = -v, r = q + 1.0, s = v * r;
        return g * s;
    }
    return v <= 0 ? 0.0 : g;
}

/* t's values as doubles (t expanded to shape first when ndim >= 0). */
static double *values(gf_tensor *t, int ndim, const int64_t *shape) {
    gf_ctx *c = gf_ctx_of(t);
    if (ndim >= 0) t = GF_T(c, gf_expand(t, ndim, shape));
    int64_t n = gf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    GF_OK_OR_FAIL(c, gf_copy_to_f64(t, v, n));
    return v;
}

/* Equal bits, or both NaN (a NaN's sign may differ: see GF__BWD_KERNEL). */
static bool same(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 8) == 0; }

/* fused(g, v) == the naive loop on g and v broadcast to the output shape. */
static void check_naive(int k, gf_tensor *g, gf_tensor *v) {
    gf_ctx *c = gf_ctx_of(g);
    gf_tensor *o = GF_T(c, KINDS[k].fused(g, v));
    cr_assert_eq(gf_dtype_of(o), gf_dtype_of(g));
    int nd = gf_ndim(o);
    const int64_t *sh = gf_shape(o);
    double *gv = values(g, nd, sh), *vv = values(v, nd, sh), *ov = values(o, -1, NULL);
    bool f32 = gf_dtype_of(o) == GF_F32;
    for (int64_t i = 0; i < gf_numel(o); i++) {
        double want = f32 ? naive_f(k, (float)gv[i], (float)vv[i]) : naive_d(k, gv[i], vv[i]);
        cr_assert(same(ov[i], want), "%s %s: element %lld: %a, expected %a (g %a, v %a)",
                  KINDS[k].name, f32 ? "f32" : "f64", (long long)i, ov[i], want, gv[i], vv[i]);
    }
    free(gv), free(vv), free(ov);
}

Test(unary_bwd, kernels_match_a_naive_loop_bit_for_bit) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 3);
    for (int k = 0; k < NK; k++)
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(ctx);
            gf_dtype d = dt ? GF_F32 : GF_F64;
            gf_tensor *g = gf_randn(ctx, d, 2, (int64_t[]){3, 37});
            gf_tensor *v = gf_to_dtype(gf_test_uniform(ctx, 2, (int64_t[]){3, 37}, -1.2, 1.2), d);
            gf_tensor *gt = gf_randn(ctx, d, 2, (int64_t[]){37, 3});
            check_naive(k, g, v);                                          /* contiguous */
            check_naive(k, GF_T(ctx, gf_transpose(gt, 0, 1)), v);          /* strided g */
            gf_tensor *vt = gf_to_dtype(gf_test_uniform(ctx, 2, (int64_t[]){37, 3}, -2, 2), d);
            check_naive(k, g, GF_T(ctx, gf_transpose(vt, 0, 1)));         /* strided v */
            gf_tensor *wide = gf_randn(ctx, d, 2, (int64_t[]){3, 74});
            check_naive(k, g, GF_T(ctx, gf_slice(wide, 1, 0, 74, 2)));     /* step-2 v */
            gf_tensor *col = gf_randn(ctx, d, 2, (int64_t[]){3, 1});
            check_naive(k, col, v);                                        /* broadcast g */
            check_naive(k, g, GF_T(ctx, gf_slice(v, 0, 1, 2, 1)));         /* broadcast v [1,37] */
            gf_tensor *s = gf_scalar(ctx, d, 0.75);
            check_naive(k, GF_T(ctx, gf_expand(s, 2, (int64_t[]){3, 37})), v); /* stride 0 */
            check_naive(k, s, gf_scalar(ctx, d, -0.4));                    /* 0-dim */
            /* runs longer than a chunk (256) with a tail: contiguous and strided */
            gf_tensor *vl = gf_to_dtype(gf_test_uniform(ctx, 2, (int64_t[]){3, 600}, -2, 2), d);
            check_naive(k, gf_randn(ctx, d, 2, (int64_t[]){3, 600}), vl);
            gf_tensor *gl = gf_randn(ctx, d, 2, (int64_t[]){600, 3});
            check_naive(k, GF_T(ctx, gf_transpose(gl, 0, 1)), vl);
            check_naive(k, gf_randn(ctx, d, 2, (int64_t[]){0, 5}),             /* empty */
                        gf_randn(ctx, d, 1, (int64_t[]){5}));
            /* specials: v at +-1, 0, -0, inf, NaN; g inf and NaN */
            double sv[] = {1, -1, 0, -0.0, INFINITY, -INFINITY, NAN, 0.5, 2, -3};
            double sg[] = {1.5, -2, -1, 3, 1, 2, 1, INFINITY, NAN, -0.0};
            gf_tensor *gs = gf_to_dtype(gf_tensor_f64(ctx, 1, (int64_t[]){10}, sg), d);
            check_naive(k, gs, gf_to_dtype(gf_tensor_f64(ctx, 1, (int64_t[]){10}, sv), d));
            gf_scope_end(ctx);
        }
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

/* The composed public-op expression of tanh's and sigmoid's rules. */
static gf_tensor *composed(int k, gf_tensor *g, gf_tensor *v) {
    if (k == 0) return gf_mul(g, gf_add_scalar(gf_neg(gf_mul(v, v)), 1.0));
    return gf_mul(g, gf_mul(v, gf_add_scalar(gf_neg(v), 1.0)));
}

static const void *raw(gf_tensor *t) {
    return gf_dtype_of(t) == GF_F32 ? (const void *)gf_data_f32(t) : (const void *)gf_data_f64(t);
}

/* Large enough for the threaded loop: the same bits as the composed ops, and
 * as each other on 1 and 7 threads. */
Test(unary_bwd, same_bits_as_the_composed_ops_any_thread_count) {
    gf_engine *e1 = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_engine *e7 = gf_engine_create(&(gf_engine_opts){.num_threads = 7});
    gf_ctx *c1 = gf_ctx_create(e1), *c7 = gf_ctx_create(e7);
    int64_t n = 200003;
    for (int k = 0; k < NK; k++)
        for (int dt = 0; dt < 2; dt++) {
            gf_ctx *cs[2] = {c1, c7};
            const void *res[2];
            size_t sz = (size_t)n * (dt ? 4 : 8);
            for (int c = 0; c < 2; c++) {
                gf_scope_begin(cs[c]);
                gf_manual_seed(cs[c], 5);
                gf_dtype d = dt ? GF_F32 : GF_F64;
                gf_tensor *g = gf_randn(cs[c], d, 1, &n);
                gf_tensor *v = gf_to_dtype(gf_test_uniform(cs[c], 1, &n, -1.5, 1.5), d);
                gf_tensor *f = GF_T(cs[c], KINDS[k].fused(g, v));
                res[c] = raw(f);
                cr_assert_not_null(res[c]);
                if (k < 2) {
                    const void *p = raw(GF_T(cs[c], composed(k, g, v)));
                    cr_assert(memcmp(res[c], p, sz) == 0, "%s dt %d: fused != composed",
                              KINDS[k].name, dt);
                }
            }
            cr_assert(memcmp(res[0], res[1], sz) == 0, "%s dt %d: 1 vs 7 threads", KINDS[k].name,
                      dt);
            gf_scope_end(c7);
            gf_scope_end(c1);
        }
    gf_ctx_destroy(c1), gf_ctx_destroy(c7);
    gf_engine_destroy(e1), gf_engine_destroy(e7);
}

/* d/dx sum(op(x) * w) the plain way (fused) or with create_graph (composed). */
static gf_tensor *grad_via(int k, gf_tensor *leaf, gf_tensor *x, gf_tensor *w, bool cg) {
    gf_ctx *c = gf_ctx_of(leaf);
    gf_tensor *y = GF_T(c, KINDS[k].op(x)), *g = NULL;
    gf_backward_opts o = {.grad_output = gf_to_dtype(w, gf_dtype_of(y)), .create_graph = cg,
                          .retain_graph = true};
    GF_OK_OR_FAIL(c, gf_grad_of(y, 1, &leaf, &g, &o));
    /* relu's composed rule zero_where(g, x) requires grad, as torch's
     * threshold_backward does (its gradient goes to g only) */
    cr_assert_eq(gf_get_requires_grad(g), cg);
    GF_OK_OR_FAIL(c, gf_realize(g));
    return g;
}

/* The backward rules themselves: with grad mode off (a plain backward) one
 * fused node on (g, out) or (g, x); with grad mode on (create_graph) the
 * composed rule, whose last op is a mul (relu's: zero_where); and the
 * composed rule again when g has another dtype than the tensor it is
 * combined with. */
Test(unary_bwd, rules_record_the_fused_op_only_without_grad_mode) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int k = 0; k < NK; k++)
        for (int mode = 0; mode < 3; mode++) {
            gf_scope_begin(ctx);
            gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){4, 5}), true);
            gf_tensor *y = GF_T(ctx, KINDS[k].op(x));
            gf_tensor *g = gf_randn(ctx, mode == 2 ? GF_F32 : GF_F64, 2, (int64_t[]){4, 5});
            cr_assert(y->node && y->node->op != KINDS[k].opcode);
            gf_tensor *gin[1] = {NULL};
            if (mode != 1) gf_no_grad_begin(ctx);
            GF_OK_OR_FAIL(ctx, gf__op_bwd[y->node->op](y->node, y, g, gin));
            if (mode != 1) gf_no_grad_end(ctx);
            cr_assert(gin[0] && gin[0]->node, "%s: no gradient node", KINDS[k].name);
            int want = mode == 0 ? KINDS[k].opcode : k == 2 ? GF__OP_zero_where : GF__OP_mul;
            cr_assert_eq(gin[0]->node->op, want, "%s mode %d: recorded %s", KINDS[k].name, mode,
                         gf__op_names[gin[0]->node->op]);
            if (mode == 0) {
                cr_assert_eq(gin[0]->node->in[0], g, "the upstream gradient comes first");
                cr_assert_eq(gin[0]->node->in[1], k < 2 ? y : x);
            }
            gf_test_expect_shape(gin[0], 2, (int64_t[]){4, 5});
            gf_scope_end(ctx);
        }
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

/* A plain backward's gradient (fused) is the composed rule's (create_graph)
 * bit for bit: f64 and f32 (through a cast of the leaf), contiguous and
 * transposed x, relu at 0 and -0 (gradient 0) and at NaN (the upstream
 * gradient, as torch.relu's). */
Test(unary_bwd, plain_backward_is_fused_and_equals_create_graph_bits) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 9);
    for (int k = 0; k < NK; k++)
        for (int dt = 0; dt < 2; dt++)
            for (int tr = 0; tr < 2; tr++) {
                gf_scope_begin(ctx);
                gf_tensor *leaf = gf_requires_grad(
                    gf_contiguous(gf_test_uniform(ctx, 2, (int64_t[]){6, 7}, -3, 3)), true);
                double *lv = (double *)gf_data_f64(leaf);
                lv[0] = 0, lv[1] = -0.0, lv[2] = NAN; /* data of a leaf that nothing read yet */
                gf_tensor *x = dt ? gf_to_dtype(leaf, GF_F32) : leaf;
                if (tr) x = gf_transpose(x, 0, 1);
                gf_tensor *w = gf_randn(ctx, GF_F64, 2, gf_shape(x));
                gf_tensor *gp = grad_via(k, leaf, x, w, false), *gc = grad_via(k, leaf, x, w, true);
                double *a = values(gp, -1, NULL), *b = values(gc, -1, NULL);
                for (int i = 0; i < 42; i++)
                    cr_assert(same(a[i], b[i]), "%s dt %d tr %d: fused %a != composed %a at %d",
                              KINDS[k].name, dt, tr, a[i], b[i], i);
                /* w in the leaf's layout, rounded as the f32 path rounds it */
                double *wl = values(tr ? gf_transpose(w, 0, 1) : w, -1, NULL);
                double w2 = dt ? (double)(float)wl[2] : wl[2];
                if (k == 2)
                    cr_assert(a[0] == 0 && !signbit(a[0]) && a[1] == 0 && !signbit(a[1]) &&
                                  a[2] == w2,
                              "relu' at 0, -0, NaN: %a %a %a (expected 0 0 %a)", a[0], a[1],
                              a[2], w2);
                else cr_assert(isnan(a[2]));
                free(a), free(b), free(wl);
                gf_scope_end(ctx);
            }
    gf_ctx_destroy(ctx);
}

static gf_tensor *apply_op(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n;
    return ((const kind *)user)->op(in[0]);
}

/* op'(x) * w summed, differentiated with create_graph: the composed rule. */
static gf_tensor *apply_d1(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)n;
    gf_tensor *x = in[0], *y = ((const kind *)user)->op(x), *g = NULL;
    gf_backward_opts o = {.grad_output = gf_ones_like(y), .create_graph = true};
    if (gf_grad_of(y, 1, &x, &g, &o) != GF_OK) return NULL;
    (void)ctx;
    return gf_mul(g, gf_add_scalar(x, 0.5));
}

/* gf_gradcheck differentiates with a plain backward, so the first check
 * runs the fused kernels; the second differentiates op' built by the
 * composed rule (second order; relu'' is 0 away from the kink). */
Test(unary_bwd, gradcheck_f64_fused_and_composed_paths) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int k = 0; k < NK; k++) {
        gf_scope_begin(ctx);
        gf_manual_seed(ctx, 13 + (uint64_t)k);
        gf_tensor *x = gf_test_uniform(ctx, 2, (int64_t[]){3, 4}, KINDS[k].lo, KINDS[k].hi);
        if (k == 2) x = gf_mul(x, gf_sign(gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 4})));
        x = gf_requires_grad(gf_contiguous(x), true);
        gf_status s = gf_gradcheck(ctx, apply_op, 1, &x, (void *)&KINDS[k], 1e-6, 1e-6, 1e-4);
        cr_assert_eq(s, GF_OK, "%s: %s", KINDS[k].name, gf_ctx_error(ctx));
        s = gf_gradcheck(ctx, apply_d1, 1, &x, (void *)&KINDS[k], 1e-6, 1e-6, 1e-4);
        cr_assert_eq(s, GF_OK, "%s second order: %s", KINDS[k].name, gf_ctx_error(ctx));
        gf_scope_end(ctx);
    }
    gf_ctx_destroy(ctx);
}

Test(unary_bwd, errors_and_null) {
    gf_ctx *ctx = gf_ctx_create(NULL), *other = gf_ctx_create(NULL);
    gf_tensor *a = gf_randn(ctx, GF_F32, 2, (int64_t[]){2, 3});
    gf_tensor *b = gf_randn(ctx, GF_F64, 2, (int64_t[]){2, 3});
    gf_tensor *c = gf_randn(ctx, GF_F32, 1, (int64_t[]){4});
    gf_tensor *i = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 2});
    gf_tensor *o = gf_randn(other, GF_F32, 2, (int64_t[]){2, 3});
    for (int k = 0; k < NK; k++) {
        const char *nm = k == 0 ? "tanh_backward" : k == 1 ? "sigmoid_backward" : "relu_backward";
        cr_assert_null(KINDS[k].fused(NULL, a));
        cr_assert_null(KINDS[k].fused(a, NULL));
        cr_assert_null(gf_ctx_error(ctx), "a NULL input is passed on quietly");
        cr_assert_null(KINDS[k].fused(a, b));
        gf_test_expect_error(ctx, nm);
        gf_test_expect_error(ctx, "f32");
        gf_test_expect_error(ctx, "f64");
        cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
        gf_ctx_clear_error(ctx);
        cr_assert_null(KINDS[k].fused(i, i));
        gf_test_expect_error(ctx, "i64");
        gf_ctx_clear_error(ctx);
        cr_assert_null(KINDS[k].fused(a, c));
        gf_test_expect_error(ctx, nm);
        gf_test_expect_error(ctx, "[2,3]");
        gf_test_expect_error(ctx, "[4]");
        cr_assert_eq(gf_ctx_status(ctx), GF_ESHAPE);
        gf_ctx_clear_error(ctx);
        cr_assert_null(KINDS[k].fused(a, o));
        gf_test_expect_error(ctx, "another ctx");
        gf_ctx_clear_error(ctx);
    }
    gf_ctx_destroy(ctx), gf_ctx_destroy(other);
}

/* The fused ops and plain gradients through them, as raw bytes. */
static size_t run_all(gf_ctx *ctx, unsigned char *out) {
    size_t len = 0;
    gf_manual_seed(ctx, 21);
    for (int k = 0; k < NK; k++)
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(ctx);
            gf_dtype d = dt ? GF_F32 : GF_F64;
            gf_tensor *leaf = gf_requires_grad(
                gf_contiguous(gf_test_uniform(ctx, 2, (int64_t[]){5, 7}, -2, 2)), true);
            gf_tensor *x = gf_transpose(gf_to_dtype(leaf, d), 0, 1);
            gf_tensor *g = gf_randn(ctx, d, 2, (int64_t[]){7, 5}), *y = KINDS[k].op(x);
            gf_tensor *res[2] = {KINDS[k].fused(g, k < 2 ? y : x), NULL};
            GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &leaf, &res[1],
                                          &(gf_backward_opts){.grad_output = g}));
            for (int r = 0; r < 2; r++) {
                size_t sz = (size_t)gf_numel(res[r]) * (gf_dtype_of(res[r]) == GF_F32 ? 4 : 8);
                const void *p = raw(res[r]);
                cr_assert_not_null(p, "%s: %s", KINDS[k].name, gf_ctx_error(ctx));
                if (out) memcpy(out + len, p, sz);
                len += sz;
            }
            gf_scope_end(ctx);
        }
    return len;
}

Test(unary_bwd, eager_and_lazy_identical_bits) {
    gf_test_expect_eager_equals_lazy(run_all);
}
