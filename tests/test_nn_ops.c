/*
 * test_nn_ops.c - the fused nn functions (ops/nn.c): softmax, log_softmax,
 * mse_loss, cross_entropy, one_hot. Forward against naive three-pass
 * references in double (f64 and f32 inputs, every dim, negative dims,
 * transposed and sliced inputs, extreme logits), float64 gradchecks, a
 * second-order gradcheck of softmax, bad inputs (at record time and from the
 * kernel for lazily computed labels), and bitwise reproducibility (eager vs
 * lazy, 1 vs 4 threads).
 */
#include "common.h"

static gf_ctx *ctx;
static void setup(void) { ctx = gf_ctx_create(NULL); }
static void teardown(void) { gf_ctx_destroy(ctx); }

TestSuite(nn_ops, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ references */

/* y = (log_)softmax of x (contiguous, shape[ndim]) along dim, the naive way:
 * three separate passes per row in double. */
static void ref_softmax(const double *x, double *y, int ndim, const int64_t *shape, int dim,
                        bool log_out) {
    int64_t outer = 1, inner = 1, C = ndim ? shape[dim] : 1;
    for (int k = 0; k < dim; k++) outer *= shape[k];
    for (int k = dim + 1; k < ndim; k++) inner *= shape[k];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const double *xr = x + o * C * inner + i;
            double *yr = y + o * C * inner + i;
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < C; k++) m = fmax(m, xr[k * inner]);
            for (int64_t k = 0; k < C; k++) s += exp(xr[k * inner] - m);
            for (int64_t k = 0; k < C; k++)
                yr[k * inner] = log_out ? xr[k * inner] - m - log(s) : exp(xr[k * inner] - m) / s;
        }
}

/* The values of t (any dtype, any strides) in row-major order (malloc'd). */
static double *values(gf_tensor *t) {
    int64_t n = gf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert_eq(gf_copy_to_f64(t, v, n), GF_OK, "copy: %s", gf_ctx_error(gf_ctx_of(t)));
    return v;
}

/* Checks (log_)softmax of x along every dim (positive and negative) against
 * the reference computed from x's own (possibly f32-rounded) values. */
static void check_softmax_all_dims(gf_tensor *x, bool log_out, double tol) {
    int nd = gf_ndim(x);
    double *xv = values(x);
    double *want = malloc(sizeof(double) * (size_t)gf_numel(x));
    for (int dim = -nd; dim < nd; dim++) {
        gf_tensor *y = GF_T(ctx, log_out ? gf_log_softmax(x, dim) : gf_softmax(x, dim));
        gf_test_expect_shape(y, nd, gf_shape(x));
        cr_assert_eq(gf_dtype_of(y), gf_dtype_of(x));
        ref_softmax(xv, want, nd, gf_shape(x), dim < 0 ? dim + nd : dim, log_out);
        gf_test_expect_close(y, want, gf_numel(x), tol, tol);
    }
    free(xv);
    free(want);
}

/* --------------------------------------------------------- softmax forward */

Test(nn_ops, softmax_every_dim_f64_and_f32_match_reference) {
    gf_manual_seed(ctx, 1);
    gf_tensor *x = gf_mul_scalar(gf_randn(ctx, GF_F64, 3, (int64_t[]){3, 4, 5}), 3.0);
    check_softmax_all_dims(x, false, 1e-13);
    check_softmax_all_dims(gf_to_dtype(x, GF_F32), false, 2e-6);
    cr_assert_null(gf_ctx_error(ctx));
}

Test(nn_ops, log_softmax_every_dim_f64_and_f32_match_reference) {
    gf_manual_seed(ctx, 2);
    gf_tensor *x = gf_mul_scalar(gf_randn(ctx, GF_F64, 3, (int64_t[]){2, 6, 7}), 3.0);
    check_softmax_all_dims(x, true, 1e-13);
    check_softmax_all_dims(gf_to_dtype(x, GF_F32), true, 2e-6);
}

Test(nn_ops, softmax_rows_sum_to_one_on_large_rows) {
    /* 3 rows of 20000: the parallel path, and f32 sums close to 1 */
    gf_manual_seed(ctx, 3);
    gf_tensor *x = gf_randn(ctx, GF_F32, 2, (int64_t[]){3, 20000});
    gf_tensor *s = GF_T(ctx, gf_sum_dim(gf_softmax(x, 1), 1, false));
    gf_test_expect_close(s, (double[]){1, 1, 1}, 3, 1e-5, 0);
}

Test(nn_ops, large_logits_stay_finite) {
    double d[6] = {1000, -1000, 0, 1000, 1000, 999};
    for (int f32 = 0; f32 < 2; f32++) {
        gf_tensor *x = gf_tensor_f64(ctx, 2, (int64_t[]){2, 3}, d);
        if (f32) x = gf_to_dtype(x, GF_F32);
        double e = exp(-1.0), z = 2 + e;
        gf_test_expect_close(GF_T(ctx, gf_softmax(x, -1)),
                             (double[]){1, 0, 0, 1 / z, 1 / z, e / z}, 6, 1e-7, 1e-6);
        gf_test_expect_close(GF_T(ctx, gf_log_softmax(x, -1)),
                             (double[]){0, -2000, -1000, -log(z), -log(z), -1 - log(z)}, 6, 1e-5,
                             1e-7);
        /* rows [1000,-1000,0] label 1 and [1000,1000,999] label 2 */
        gf_tensor *l = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 2});
        double ce = (2000 + 1 + log(z)) / 2;
        gf_test_expect_close(GF_T(ctx, gf_cross_entropy(x, l)), &ce, 1, 1e-4, 1e-7);
    }
}

Test(nn_ops, softmax_of_transposed_and_sliced_inputs) {
    gf_manual_seed(ctx, 4);
    gf_tensor *base = gf_randn(ctx, GF_F64, 2, (int64_t[]){7, 5});
    gf_tensor *xt = gf_transpose(base, 0, 1); /* [5,7], stride 1 along dim 0 */
    cr_assert(!gf_is_contiguous(xt));
    check_softmax_all_dims(xt, false, 1e-13);
    check_softmax_all_dims(xt, true, 1e-13);
    check_softmax_all_dims(gf_to_dtype(xt, GF_F32), false, 2e-6);
    gf_tensor *xs = gf_slice(base, 1, 0, 5, 2); /* [7,3], stride 2 along dim 1 */
    check_softmax_all_dims(xs, false, 1e-13);
    check_softmax_all_dims(xs, true, 1e-13);
}

Test(nn_ops, softmax_of_0dim_and_i64) {
    gf_tensor *s = gf_scalar(ctx, GF_F64, 3.5);
    gf_test_expect_close(GF_T(ctx, gf_softmax(s, 0)), (double[]){1}, 1, 0, 0);
    gf_test_expect_close(GF_T(ctx, gf_log_softmax(s, -1)), (double[]){0}, 1, 0, 0);
    gf_tensor *i = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){0, 1});
    gf_tensor *y = GF_T(ctx, gf_softmax(i, 0));
    cr_assert_eq(gf_dtype_of(y), GF_F32);
    double e = exp(1.0);
    gf_test_expect_close(y, (double[]){1 / (1 + e), e / (1 + e)}, 2, 1e-7, 0);
}

/* ------------------------------------------------------------- mse_loss */

static double ref_mse(gf_tensor *p, gf_tensor *t) {
    gf_tensor *pe = gf_sub(p, gf_mul_scalar(t, 0.0)); /* broadcast p to the joint shape */
    gf_tensor *te = gf_sub(t, gf_mul_scalar(p, 0.0));
    int64_t n = gf_numel(pe);
    double *a = values(pe), *b = values(te), s = 0;
    for (int64_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    free(a);
    free(b);
    return s / (double)n;
}

Test(nn_ops, mse_loss_matches_reference_with_broadcasting_and_views) {
    gf_manual_seed(ctx, 5);
    gf_tensor *cases[][2] = {
        {gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 4}), gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 4})},
        {gf_randn(ctx, GF_F64, 3, (int64_t[]){2, 3, 4}), gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 1})},
        {gf_randn(ctx, GF_F64, 1, (int64_t[]){4}), gf_randn(ctx, GF_F64, 2, (int64_t[]){5, 1})},
        {gf_transpose(gf_randn(ctx, GF_F64, 2, (int64_t[]){6, 3}), 0, 1),
         gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 6})},
        {gf_randn(ctx, GF_F64, 1, (int64_t[]){10001}), gf_randn(ctx, GF_F64, 1, (int64_t[]){10001})},
        {gf_scalar(ctx, GF_F64, 2.0), gf_scalar(ctx, GF_F64, -1.0)},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gf_tensor *p = cases[c][0], *t = cases[c][1];
        double want = ref_mse(p, t);
        gf_tensor *l = GF_T(ctx, gf_mse_loss(p, t));
        cr_assert_eq(gf_ndim(l), 0);
        gf_test_expect_close(l, &want, 1, 0, 1e-13);
        gf_tensor *lf = GF_T(ctx, gf_mse_loss(gf_to_dtype(p, GF_F32), gf_to_dtype(t, GF_F32)));
        cr_assert_eq(gf_dtype_of(lf), GF_F32);
        gf_test_expect_close(lf, &want, 1, 1e-6, 1e-5);
    }
    /* mixed dtypes promote; i64 becomes f32 */
    gf_tensor *pi = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 3});
    gf_tensor *l = GF_T(ctx, gf_mse_loss(pi, gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){0, 0})));
    cr_assert_eq(gf_dtype_of(l), GF_F32);
    gf_test_expect_close(l, (double[]){5}, 1, 0, 0);
    cr_assert_eq(gf_dtype_of(gf_mse_loss(pi, gf_scalar(ctx, GF_F64, 0))), GF_F64);
}

/* -------------------------------------------------------- cross_entropy */

static double ref_ce(const double *x, const int64_t *lab, int64_t N, int64_t C) {
    double tot = 0;
    double *y = malloc(sizeof(double) * (size_t)C);
    for (int64_t r = 0; r < N; r++) {
        ref_softmax(x + r * C, y, 1, &C, 0, true);
        tot -= y[lab[r]];
    }
    free(y);
    return tot / (double)N;
}

Test(nn_ops, cross_entropy_matches_reference) {
    gf_manual_seed(ctx, 6);
    int64_t N = 6, C = 5, lab[6] = {0, 4, 2, 2, 1, 3};
    gf_tensor *labels = gf_tensor_i64(ctx, 1, &N, lab);
    gf_tensor *x = gf_mul_scalar(gf_randn(ctx, GF_F64, 2, (int64_t[]){N, C}), 2.0);
    double *xv = values(x), want = ref_ce(xv, lab, N, C);
    gf_tensor *l = GF_T(ctx, gf_cross_entropy(x, labels));
    cr_assert_eq(gf_ndim(l), 0);
    gf_test_expect_close(l, &want, 1, 0, 1e-13);
    gf_tensor *xf = gf_to_dtype(x, GF_F32);
    double *xfv = values(xf), wantf = ref_ce(xfv, lab, N, C);
    gf_test_expect_close(GF_T(ctx, gf_cross_entropy(xf, labels)), &wantf, 1, 1e-6, 1e-6);
    /* transposed logits: the [C,N] storage read as [N,C] */
    gf_tensor *xt = gf_transpose(gf_contiguous(gf_transpose(x, 0, 1)), 0, 1);
    cr_assert(!gf_is_contiguous(xt));
    gf_test_expect_close(GF_T(ctx, gf_cross_entropy(xt, labels)), &want, 1, 0, 1e-13);
    /* 1-D logits with a 0-dim label: one row */
    gf_tensor *row = gf_reshape(gf_slice(x, 0, 1, 2, 1), 1, &C);
    double w1 = ref_ce(xv + C, &lab[1], 1, C);
    gf_tensor *l0 = gf_tensor_i64(ctx, 0, NULL, &lab[1]);
    gf_test_expect_close(GF_T(ctx, gf_cross_entropy(row, l0)), &w1, 1, 0, 1e-13);
    /* strided labels: every other of 12 */
    int64_t lab12[12];
    for (int i = 0; i < 12; i++) lab12[i] = i % 2 ? 99 : lab[i / 2];
    gf_tensor *ls = gf_slice(gf_tensor_i64(ctx, 1, (int64_t[]){12}, lab12), 0, 0, 12, 2);
    gf_test_expect_close(GF_T(ctx, gf_cross_entropy(x, ls)), &want, 1, 0, 1e-13);
    free(xv);
    free(xfv);
}

Test(nn_ops, cross_entropy_many_rows_parallel_path) {
    gf_manual_seed(ctx, 7);
    int64_t N = 300, C = 200;
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) lab[i] = (i * 37) % C;
    gf_tensor *x = gf_randn(ctx, GF_F64, 2, (int64_t[]){N, C});
    double *xv = values(x), want = ref_ce(xv, lab, N, C);
    gf_test_expect_close(GF_T(ctx, gf_cross_entropy(x, gf_tensor_i64(ctx, 1, &N, lab))), &want,
                         1, 0, 1e-12);
    free(xv);
    free(lab);
}

/* -------------------------------------------------------------- one_hot */

Test(nn_ops, one_hot_values_shapes_and_dtypes) {
    gf_tensor *l = gf_tensor_i64(ctx, 2, (int64_t[]){2, 3}, (int64_t[]){0, 3, 1, 2, 2, 0});
    gf_dtype dts[3] = {GF_F32, GF_F64, GF_I64};
    for (int k = 0; k < 3; k++) {
        gf_tensor *o = GF_T(ctx, gf_one_hot(l, 4, dts[k]));
        gf_test_expect_shape(o, 3, (int64_t[]){2, 3, 4});
        cr_assert_eq(gf_dtype_of(o), dts[k]);
        double want[24] = {0};
        int64_t lv[6] = {0, 3, 1, 2, 2, 0};
        for (int i = 0; i < 6; i++) want[i * 4 + lv[i]] = 1;
        gf_test_expect_close(o, want, 24, 0, 0);
    }
    /* transposed labels, and a 0-dim label */
    gf_tensor *o = GF_T(ctx, gf_one_hot(gf_transpose(l, 0, 1), 4, GF_F64));
    gf_test_expect_close(o, (double[]){1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1,
                                       0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0}, 24, 0, 0);
    gf_tensor *o0 = GF_T(ctx, gf_one_hot(gf_tensor_i64(ctx, 0, NULL, (int64_t[]){2}), 3, GF_F32));
    gf_test_expect_shape(o0, 1, (int64_t[]){3});
    gf_test_expect_close(o0, (double[]){0, 0, 1}, 3, 0, 0);
    /* no grad ever flows through one_hot */
    cr_assert(!gf_get_requires_grad(o));
}

/* ----------------------------------------------------------- gradchecks */

static gf_tensor *fn_softmax(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n;
    return gf_softmax(in[0], *(int *)user);
}
static gf_tensor *fn_log_softmax(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n;
    return gf_log_softmax(in[0], *(int *)user);
}
static gf_tensor *fn_mse(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n, (void)user;
    return gf_mse_loss(in[0], in[1]);
}
static gf_tensor *fn_ce(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n, (void)user;
    return gf_cross_entropy(in[0], in[1]);
}

#define GRADCHECK(fn, n, ins, user) \
    GF_OK_OR_FAIL(ctx, gf_gradcheck(ctx, fn, n, ins, user, 1e-6, 1e-6, 1e-4))

Test(nn_ops, gradcheck_softmax_and_log_softmax_every_dim) {
    gf_manual_seed(ctx, 8);
    gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 3, (int64_t[]){2, 3, 4}), true);
    for (int dim = -3; dim < 3; dim++) {
        GRADCHECK(fn_softmax, 1, &x, &dim);
        GRADCHECK(fn_log_softmax, 1, &x, &dim);
    }
}

Test(nn_ops, gradcheck_mse_both_inputs_with_broadcasting) {
    gf_manual_seed(ctx, 9);
    gf_tensor *p = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 4}), true);
    gf_tensor *t = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 1}), true);
    GRADCHECK(fn_mse, 2, ((gf_tensor *[]){p, t}), NULL);
    gf_tensor *t2 = gf_requires_grad(gf_randn(ctx, GF_F64, 3, (int64_t[]){2, 1, 4}), true);
    GRADCHECK(fn_mse, 2, ((gf_tensor *[]){p, t2}), NULL);
    /* the analytic values too: d/dp = 2(p - t)/n */
    gf_tensor *a = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){1, 4}), true);
    gf_tensor *b = gf_requires_grad(gf_tensor_f64(ctx, 0, NULL, (double[]){2}), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_mse_loss(a, b)));
    gf_test_expect_close(gf_grad(a), (double[]){-1, 2}, 2, 1e-15, 0);
    gf_test_expect_close(gf_grad(b), (double[]){-1}, 1, 1e-15, 0);
}

Test(nn_ops, gradcheck_cross_entropy_wrt_logits) {
    gf_manual_seed(ctx, 10);
    gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){4, 5}), true);
    gf_tensor *l = gf_tensor_i64(ctx, 1, (int64_t[]){4}, (int64_t[]){4, 0, 2, 0});
    GRADCHECK(fn_ce, 2, ((gf_tensor *[]){x, l}), NULL);
    gf_tensor *x1 = gf_requires_grad(gf_randn(ctx, GF_F64, 1, (int64_t[]){3}), true);
    gf_tensor *l0 = gf_tensor_i64(ctx, 0, NULL, (int64_t[]){1});
    GRADCHECK(fn_ce, 2, ((gf_tensor *[]){x1, l0}), NULL);
    /* the labels get no gradient */
    GF_OK_OR_FAIL(ctx, gf_backward(gf_cross_entropy(x, l)));
    cr_assert_null(gf_grad(l));
    cr_assert_not_null(gf_grad(x));
}

/* d/dx sum(softmax(x, 1) * w), computed with create_graph so that it can be
 * differentiated again. gf_gradcheck evaluates fn under no_grad for its
 * numeric differences, so grad mode is switched back on inside. */
static gf_tensor *fn_softmax_grad(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)n;
    int closed = 0;
    while (!gf_is_grad_enabled(c)) gf_no_grad_end(c), closed++;
    gf_tensor *y = gf_sum(gf_mul(gf_softmax(in[0], 1), (gf_tensor *)user));
    gf_tensor *g = NULL;
    gf_backward_opts o = {.retain_graph = true, .create_graph = true};
    if (y && gf_grad_of(y, 1, in, &g, &o) != GF_OK) g = NULL;
    while (closed--) gf_no_grad_begin(c);
    return g;
}

Test(nn_ops, second_order_gradcheck_of_softmax) {
    gf_manual_seed(ctx, 11);
    gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){2, 4}), true);
    gf_tensor *w = gf_randn(ctx, GF_F64, 2, (int64_t[]){2, 4});
    GRADCHECK(fn_softmax_grad, 1, &x, w);
}

/* d/dx of cross_entropy(x, labels), the plain way (the fused kernel) or with
 * create_graph (the composed rule), for the given upstream gradient. */
static gf_tensor *ce_grad(gf_tensor *x, gf_tensor *l, double gout, bool create_graph) {
    gf_ctx *c = gf_ctx_of(x);
    gf_tensor *loss = GF_T(c, gf_cross_entropy(x, l)), *g = NULL;
    gf_backward_opts o = {.grad_output = gf_scalar(c, gf_dtype_of(x), gout),
                          .create_graph = create_graph, .retain_graph = true};
    GF_OK_OR_FAIL(c, gf_grad_of(loss, 1, &x, &g, &o));
    cr_assert_eq(gf_get_requires_grad(g), create_graph, "the plain gradient has no graph");
    GF_OK_OR_FAIL(c, gf_realize(g));
    return g;
}

/* The fused backward of cross_entropy (plain backward) gives the composed
 * rule's bits (create_graph), and both match a naive double reference: f64
 * and f32, rows in parallel, transposed (strided) logits, [C] with a 0-dim
 * label, upstream gradients other than 1. */
Test(nn_ops, cross_entropy_fused_backward_is_the_composed_rule_bit_for_bit) {
    static const int64_t shapes[][2] = {{37, 29}, {300, 257}, {1, 1}, {5, 1000}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int dt = 0; dt < 2; dt++)
            for (int tr = 0; tr < 2; tr++) {
                int64_t N = shapes[si][0], C = shapes[si][1];
                gf_scope_begin(ctx);
                gf_manual_seed(ctx, 20 + (uint64_t)si);
                gf_dtype d = dt ? GF_F32 : GF_F64;
                gf_tensor *raw = gf_mul_scalar(gf_randn(ctx, GF_F64, 2,
                                                        tr ? (int64_t[]){C, N} : (int64_t[]){N, C}), 5.0);
                double *rv = values(raw);
                gf_tensor *leaf = tr ? gf_tensor_f64(ctx, 2, (int64_t[]){C, N}, rv)
                                     : gf_tensor_f64(ctx, 2, (int64_t[]){N, C}, rv);
                if (dt) {
                    float *f = malloc(sizeof(float) * (size_t)(N * C));
                    for (int64_t i = 0; i < N * C; i++) f[i] = (float)rv[i];
                    leaf = gf_tensor_f32(ctx, 2, gf_shape(leaf), f);
                    free(f);
                }
                gf_requires_grad(leaf, true);
                gf_tensor *x = tr ? GF_T(ctx, gf_transpose(leaf, 0, 1)) : leaf;
                int64_t *lab = malloc(sizeof(int64_t) * (size_t)N);
                for (int64_t r = 0; r < N; r++) lab[r] = (r * 7 + 3) % C;
                gf_tensor *l = gf_tensor_i64(ctx, 1, &N, lab);
                /* leaf grads: through the transposed view the fused kernel reads strided rows */
                gf_tensor *gp = ce_grad(x, l, 0.37, false), *gc = ce_grad(x, l, 0.37, true);
                cr_assert_eq(gf_dtype_of(gp), d);
                double *a = values(gp), *b = values(gc), *xv = values(x);
                cr_assert(memcmp(a, b, sizeof(double) * (size_t)(N * C)) == 0,
                          "%lldx%lld dt %d tr %d: fused and composed differ", (long long)N,
                          (long long)C, dt, tr);
                for (int64_t r = 0; r < N; r++) {
                    double m = -INFINITY, s = 0;
                    for (int64_t k = 0; k < C; k++) m = fmax(m, xv[r * C + k]);
                    for (int64_t k = 0; k < C; k++) s += exp(xv[r * C + k] - m);
                    for (int64_t k = 0; k < C; k++) {
                        double want = (exp(xv[r * C + k] - m) / s - (k == lab[r])) * 0.37 / N;
                        cr_assert(fabs(a[r * C + k] - want) <= (dt ? 1e-7 : 1e-15) * 0.37 / N + 1e-6 * fabs(want),
                                  "row %lld col %lld: %g vs %g", (long long)r, (long long)k,
                                  a[r * C + k], want);
                    }
                }
                free(a), free(b), free(xv), free(rv), free(lab);
                gf_scope_end(ctx);
            }
    /* [C] logits with a 0-dim label */
    gf_tensor *x1 = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){4}, (double[]){1, -2, 3, 0.5}), true);
    gf_tensor *l0 = gf_tensor_i64(ctx, 0, NULL, (int64_t[]){2});
    double *a = values(ce_grad(x1, l0, -1.5, false)), *b = values(ce_grad(x1, l0, -1.5, true));
    cr_assert(memcmp(a, b, 4 * sizeof(double)) == 0);
    double s = exp(1) + exp(-2) + exp(3) + exp(0.5);
    gf_test_expect_close(ce_grad(x1, l0, -1.5, false),
                         (double[]){-1.5 * exp(1) / s, -1.5 * exp(-2) / s,
                                    -1.5 * (exp(3) / s - 1), -1.5 * exp(0.5) / s},
                         4, 1e-15, 1e-14);
    free(a), free(b);
}

/* d/dx cross_entropy(x, labels) with create_graph (the composed rule), so
 * that its own gradient can be checked: second order through cross_entropy. */
static gf_tensor *fn_ce_grad(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)n;
    int closed = 0;
    while (!gf_is_grad_enabled(c)) gf_no_grad_end(c), closed++;
    gf_tensor *y = gf_cross_entropy(in[0], (gf_tensor *)user);
    gf_tensor *g = NULL;
    gf_backward_opts o = {.retain_graph = true, .create_graph = true};
    if (y && gf_grad_of(y, 1, in, &g, &o) != GF_OK) g = NULL;
    while (closed--) gf_no_grad_begin(c);
    return g;
}

Test(nn_ops, second_order_gradcheck_through_cross_entropy) {
    gf_manual_seed(ctx, 12);
    gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 5}), true);
    gf_tensor *l = gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){4, 0, 2});
    GRADCHECK(fn_ce_grad, 1, &x, l);
    /* and backward through the create_graph gradient reaches x */
    gf_tensor *g = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_cross_entropy(x, l), 1, &x, &g,
                                  &(gf_backward_opts){.create_graph = true, .retain_graph = true}));
    cr_assert(gf_get_requires_grad(g));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(g, g))));
    cr_assert_not_null(gf_grad(x));
}

/* -------------------------------------------------------------- errors */

Test(nn_ops, out_of_range_label_is_reported_at_record_time) {
    gf_tensor *x = gf_zeros(ctx, GF_F64, 2, (int64_t[]){3, 5});
    gf_tensor *l = gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){0, 4, 7});
    cr_assert_null(gf_cross_entropy(x, l));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    cr_assert_str_eq(gf_ctx_error(ctx), "gf_cross_entropy: label 7 at index 2 is out of range "
                                        "for 5 classes (expected 0..4)");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_cross_entropy(x, gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){0, -1, 0})));
    gf_test_expect_error(ctx, "label -1 at index 1");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_one_hot(l, 5, GF_F32));
    cr_assert_str_eq(gf_ctx_error(ctx), "gf_one_hot: label 7 at index 2 is out of range for 5 "
                                        "classes (expected 0..4)");
}

Test(nn_ops, out_of_range_lazy_label_is_reported_by_the_kernel) {
    gf_tensor *x = gf_zeros(ctx, GF_F64, 2, (int64_t[]){3, 5});
    gf_tensor *lf = gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, 5, 2});
    gf_tensor *l = gf_to_dtype(lf, GF_I64); /* pending: its values are unknown yet */
    gf_tensor *loss = GF_T(ctx, gf_cross_entropy(x, l));
    cr_assert_null(gf_ctx_error(ctx));
    cr_assert_neq(gf_realize(loss), GF_OK);
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    cr_assert_str_eq(gf_ctx_error(ctx), "gf_cross_entropy: label 5 at index 1 is out of range "
                                        "for 5 classes (expected 0..4)");
    gf_ctx_clear_error(ctx);
    gf_tensor *l2 = gf_to_dtype(gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){-2, 0}), GF_I64);
    gf_tensor *o = GF_T(ctx, gf_one_hot(l2, 3, GF_F64));
    cr_assert_neq(gf_realize(o), GF_OK);
    cr_assert_str_eq(gf_ctx_error(ctx), "gf_one_hot: label -2 at index 0 is out of range for 3 "
                                        "classes (expected 0..2)");
}

Test(nn_ops, bad_dtypes_shapes_and_dims) {
    gf_tensor *x = gf_zeros(ctx, GF_F64, 2, (int64_t[]){3, 5});
    gf_tensor *lf = gf_zeros(ctx, GF_F64, 1, (int64_t[]){3});
    cr_assert_null(gf_cross_entropy(x, lf));
    gf_test_expect_error(ctx, "gf_cross_entropy: labels [3] are");
    gf_test_expect_error(ctx, "expected i64");
    gf_ctx_clear_error(ctx);
    gf_tensor *l3 = gf_zeros(ctx, GF_I64, 1, (int64_t[]){3});
    cr_assert_null(gf_cross_entropy(gf_zeros(ctx, GF_F64, 3, (int64_t[]){3, 5, 2}), l3));
    cr_assert_eq(gf_ctx_status(ctx), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_cross_entropy: logits [3,5,2]");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_cross_entropy(x, gf_zeros(ctx, GF_I64, 1, (int64_t[]){4})));
    gf_test_expect_error(ctx, "logits [3,5] and labels [4] do not match (expected labels [3])");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_cross_entropy(gf_zeros(ctx, GF_F64, 1, (int64_t[]){5}), l3));
    gf_test_expect_error(ctx, "gf_cross_entropy: logits [5] and labels [3]");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_one_hot(lf, 3, GF_F32));
    gf_test_expect_error(ctx, "gf_one_hot: labels [3] are");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_one_hot(l3, 0, GF_F32));
    gf_test_expect_error(ctx, "gf_one_hot: num_classes 0");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_one_hot(l3, 3, (gf_dtype)7));
    gf_test_expect_error(ctx, "gf_one_hot: unknown dtype 7");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_mse_loss(x, gf_zeros(ctx, GF_F64, 1, (int64_t[]){4})));
    cr_assert_eq(gf_ctx_status(ctx), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_mse_loss: pred [3,5] and target [4] cannot be broadcast");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_softmax(x, 2));
    gf_test_expect_error(ctx, "gf_softmax: dim 2 out of range");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_log_softmax(x, -3));
    gf_test_expect_error(ctx, "gf_log_softmax: dim -3 out of range");
    gf_ctx_clear_error(ctx);
    /* NULL in, NULL out, no crash */
    cr_assert_null(gf_softmax(NULL, 0));
    cr_assert_null(gf_log_softmax(NULL, 0));
    cr_assert_null(gf_mse_loss(NULL, x));
    cr_assert_null(gf_cross_entropy(x, NULL));
    cr_assert_null(gf_one_hot(NULL, 3, GF_F32));
}

/* ------------------------------------------------------ reproducibility */

/* Every nn op on the same seeded data, results copied out as doubles into
 * out[] (f32 values are exact in double). Returns the count written. */
static int64_t run_all(gf_ctx *c, int64_t N, int64_t C, double *out) {
    gf_manual_seed(c, 42);
    gf_tensor *x = gf_mul_scalar(gf_randn(c, GF_F32, 2, (int64_t[]){N, C}), 4.0);
    gf_tensor *xd = gf_to_dtype(x, GF_F64);
    gf_tensor *t = gf_randn(c, GF_F32, 2, (int64_t[]){N, C});
    gf_tensor *lab = gf_to_dtype(gf_mul_scalar(gf_rand(c, GF_F64, 1, &N), (double)C), GF_I64);
    gf_tensor *outs[] = {
        gf_softmax(x, -1), gf_log_softmax(x, 1), gf_softmax(x, 0), gf_log_softmax(xd, 0),
        gf_softmax(gf_transpose(xd, 0, 1), 1), gf_mse_loss(x, t), gf_mse_loss(xd, gf_slice(t, 0, 0, 1, 1)),
        gf_cross_entropy(x, lab), gf_cross_entropy(xd, lab), gf_one_hot(lab, C, GF_F32),
        NULL, NULL,
    };
    /* the fused cross_entropy backward, f32 and f64 */
    for (int k = 0; k < 2; k++) {
        double *v = malloc(sizeof(double) * (size_t)(N * C));
        float *f = malloc(sizeof(float) * (size_t)(N * C));
        GF_OK_OR_FAIL(c, gf_copy_to_f64(x, v, N * C)); /* x is f32: exact in double */
        for (int64_t i = 0; i < N * C; i++) f[i] = (float)v[i];
        gf_tensor *leaf = k ? gf_tensor_f64(c, 2, (int64_t[]){N, C}, v)
                            : gf_tensor_f32(c, 2, (int64_t[]){N, C}, f);
        gf_requires_grad(leaf, true);
        free(f);
        gf_tensor *g = NULL;
        GF_OK_OR_FAIL(c, gf_grad_of(gf_cross_entropy(leaf, lab), 1, &leaf, &g, NULL));
        outs[10 + k] = g;
        free(v);
    }
    int64_t at = 0;
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
        cr_assert_not_null(outs[k], "op %zu: %s", k, gf_ctx_error(c));
        int64_t n = gf_numel(outs[k]);
        cr_assert_eq(gf_copy_to_f64(outs[k], out + at, n), GF_OK, "%s", gf_ctx_error(c));
        at += n;
    }
    return at;
}

Test(nn_ops, eager_and_lazy_give_identical_bits) {
    int64_t N = 40, C = 30, cap = 10 * N * C;
    double *a = malloc(sizeof(double) * (size_t)cap), *b = malloc(sizeof(double) * (size_t)cap);
    gf_ctx *lazy = gf_ctx_create(NULL), *eager = gf_ctx_create(NULL);
    gf_ctx_set_eager(eager, true);
    int64_t na = run_all(lazy, N, C, a), nb = run_all(eager, N, C, b);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(a, b, sizeof(double) * (size_t)na) == 0, "eager and lazy differ");
    gf_ctx_destroy(lazy);
    gf_ctx_destroy(eager);
    free(a);
    free(b);
}

Test(nn_ops, one_and_four_threads_give_identical_bits) {
    /* 300x257 > 32768 elements: the kernels take their parallel paths */
    int64_t N = 300, C = 257, cap = 10 * N * C;
    double *a = malloc(sizeof(double) * (size_t)cap), *b = malloc(sizeof(double) * (size_t)cap);
    gf_engine *e1 = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_engine *e4 = gf_engine_create(&(gf_engine_opts){.num_threads = 4});
    gf_ctx *c1 = gf_ctx_create(e1), *c4 = gf_ctx_create(e4);
    int64_t na = run_all(c1, N, C, a), nb = run_all(c4, N, C, b);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(a, b, sizeof(double) * (size_t)na) == 0, "1 and 4 threads differ");
    gf_ctx_destroy(c1);
    gf_ctx_destroy(c4);
    gf_engine_destroy(e1);
    gf_engine_destroy(e4);
    free(a);
    free(b);
}

/* ------------------------------------- cross_entropy's row statistics */

/* Short rows (the block kernels: vm->rowstats, vm->ce_grad_rows) and the
 * 127/128 boundary where the row kernels take over: the fused gradient is
 * the composed rule's bits, f32 and f64, for contiguous logits, transposed
 * ones and every other column of a wider tensor (rows with stride 2), and
 * the loss matches the reference. */
Test(nn_ops, cross_entropy_short_rows_fused_is_composed_bit_for_bit) {
    static const int64_t shapes[][2] = {{256, 10}, {33, 1}, {9, 2}, {7, 3}, {40, 127},
                                        {20, 128}, {1, 17}, {500, 9}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int dt = 0; dt < 2; dt++)
            for (int view = 0; view < 3; view++) {
                int64_t N = shapes[si][0], C = shapes[si][1];
                gf_scope_begin(ctx);
                gf_manual_seed(ctx, 50 + (uint64_t)si);
                gf_dtype d = dt ? GF_F32 : GF_F64;
                /* view 0: [N, C]; 1: [C, N] transposed; 2: columns 0, 2, ... of [N, 2C] */
                int64_t shape[2] = {view == 1 ? C : N, view == 1 ? N : view == 2 ? 2 * C : C};
                gf_tensor *leaf = gf_requires_grad(
                    gf_contiguous(gf_mul_scalar(gf_randn(ctx, d, 2, shape), 4.0)), true);
                gf_tensor *x = view == 1   ? gf_transpose(leaf, 0, 1)
                               : view == 2 ? gf_slice(leaf, 1, 0, 2 * C, 2)
                                           : leaf;
                int64_t *lab = malloc(sizeof(int64_t) * (size_t)N);
                for (int64_t r = 0; r < N; r++) lab[r] = (r * 5 + 1) % C;
                gf_tensor *l = gf_tensor_i64(ctx, 1, &N, lab);
                double *xv = values(x), want = ref_ce(xv, lab, N, C);
                gf_test_expect_close(GF_T(ctx, gf_cross_entropy(x, l)), &want, 1,
                                     dt ? 1e-6 : 0, dt ? 1e-6 : 1e-13);
                double *a = values(ce_grad(x, l, 1.0, false)), *b = values(ce_grad(x, l, 1.0, true));
                cr_assert(memcmp(a, b, sizeof(double) * (size_t)(N * C)) == 0,
                          "%lldx%lld dt %d view %d: fused and composed differ", (long long)N,
                          (long long)C, dt, view);
                for (int64_t r = 0; r < N; r++) {
                    double m = -INFINITY, s = 0;
                    for (int64_t k = 0; k < C; k++) m = fmax(m, xv[r * C + k]);
                    for (int64_t k = 0; k < C; k++) s += exp(xv[r * C + k] - m);
                    for (int64_t k = 0; k < C; k++) {
                        double w = (exp(xv[r * C + k] - m) / s - (k == lab[r])) / N;
                        cr_assert(fabs(a[r * C + k] - w) <= (dt ? 1e-7 : 1e-15) / N + 1e-6 * fabs(w),
                                  "row %lld col %lld: %g vs %g", (long long)r, (long long)k,
                                  a[r * C + k], w);
                    }
                }
                free(a), free(b), free(xv), free(lab);
                gf_scope_end(ctx);
            }
}

static gf_tensor *fn_ce_transposed(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n;
    return gf_cross_entropy(gf_transpose(in[0], 0, 1), (gf_tensor *)user);
}

Test(nn_ops, gradcheck_cross_entropy_many_short_rows_and_strided) {
    gf_manual_seed(ctx, 13);
    gf_tensor *x = gf_requires_grad(gf_mul_scalar(gf_randn(ctx, GF_F64, 2, (int64_t[]){12, 3}), 2.0), true);
    int64_t lab[12];
    for (int i = 0; i < 12; i++) lab[i] = i % 3;
    gf_tensor *l = gf_tensor_i64(ctx, 1, (int64_t[]){12}, lab);
    GRADCHECK(fn_ce, 2, ((gf_tensor *[]){x, l}), NULL);
    /* logits [3, 12] read transposed: rows with stride 12 */
    gf_tensor *xt = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){3, 12}), true);
    GRADCHECK(fn_ce_transposed, 1, &xt, l);
}

/* Labels found bad by the forward's kernel: the statistics are defined (NaN,
 * label -1), and a gradient computed from them later reports an error
 * instead of indexing with the bad label. */
Test(nn_ops, gradient_after_a_failed_forward_reports_an_error) {
    gf_tensor *x = gf_requires_grad(gf_zeros(ctx, GF_F32, 2, (int64_t[]){3, 5}), true);
    gf_tensor *l = gf_to_dtype(gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, 7, 2}), GF_I64);
    gf_tensor *loss = GF_T(ctx, gf_cross_entropy(x, l));
    cr_assert_neq(gf_realize(loss), GF_OK);
    gf_test_expect_error(ctx, "gf_cross_entropy: label 7 at index 1 is out of range");
    gf_ctx_clear_error(ctx);
    cr_assert(isnan(gf_item(loss)), "the loss of the failed statistics is NaN");
    gf_tensor *g = NULL;
    cr_assert_neq(gf_grad_of(loss, 1, &x, &g, NULL), GF_OK);
    gf_test_expect_error(ctx, "gf_cross_entropy: the forward's labels were out of range");
}

Test(nn_ops, two_three_and_eight_threads_give_one_threads_bits) {
    /* 5000x10: 50000 elements, the parallel path over 25 blocks of short rows */
    int64_t N = 5000, C = 10, cap = 10 * N * C;
    double *a = malloc(sizeof(double) * (size_t)cap), *b = malloc(sizeof(double) * (size_t)cap);
    gf_engine *e1 = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_ctx *c1 = gf_ctx_create(e1);
    int64_t na = run_all(c1, N, C, a);
    for (int nt = 2; nt <= 8; nt += nt == 3 ? 5 : 1) {
        gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = nt});
        gf_ctx *c = gf_ctx_create(e);
        cr_assert_eq(run_all(c, N, C, b), na);
        cr_assert(memcmp(a, b, sizeof(double) * (size_t)na) == 0, "1 and %d threads differ", nt);
        gf_ctx_destroy(c);
        gf_engine_destroy(e);
    }
    gf_ctx_destroy(c1);
    gf_engine_destroy(e1);
    free(a);
    free(b);
}
