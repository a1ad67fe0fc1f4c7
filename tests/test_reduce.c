/*
 * test_reduce.c - the reductions (ops/reduce.c): sum_dim, mean_dim, max_dim,
 * argmax for every dim (positive and negative) and keepdim both ways against
 * naive loops, f64 / f32 / i64, on contiguous, transposed, permuted, sliced
 * and expanded inputs, shapes that take the row, column, generic and
 * block-split kernels; 0-dim inputs, empty dims, ties and NaN (first max);
 * gf_sum / gf_mean; float64 gradchecks and second order; gf__sum_to through
 * the broadcasting backward of add and mul; errors and NULL inputs; eager ==
 * lazy; and bitwise equality of results for engines of 1..4 threads; for
 * every vector-math variant: max_dim's values (a separate value-only
 * kernel) bit for bit the input at argmax's first maximum, with NaN payloads
 * and signed zeros, in every kernel mode.
 */
#include "common.h"
#include "splitmix.h"

#include "../ops/kernels/kernels.h"

static gf_ctx *ctx;
static void setup(void) { ctx = gf_ctx_create(NULL); }
static void teardown(void) { gf_ctx_destroy(ctx); }
TestSuite(reduce, .init = setup, .fini = teardown, .timeout = 300);

/* splitmix64: the same data on every run. */
static uint64_t rng = 7;
static double urand(void) {
    return gf_test_u01(&rng) * 2 - 1; /* [-1, 1) */
}

static double *rand_buf(int64_t n) {
    double *p = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

static int64_t numel(int nd, const int64_t *sh) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    return n;
}

enum { R_SUM, R_MEAN, R_MAX, R_ARGMAX, R_NOPS };
static const char *const RNAME[] = {"sum_dim", "mean_dim", "max_dim", "argmax"};

static gf_tensor *apply(int op, gf_tensor *x, int dim, bool keepdim) {
    switch (op) {
    case R_SUM: return gf_sum_dim(x, dim, keepdim);
    case R_MEAN: return gf_mean_dim(x, dim, keepdim);
    case R_MAX: return gf_max_dim(x, dim, keepdim);
    default: return gf_argmax(x, dim);
    }
}

/* Naive reduction of the row-major x (shape sh) over dim d (normalized). */
static void ref_reduce(int op, const double *x, int nd, const int64_t *sh, int d, double *out) {
    int64_t outer = 1, n = nd ? sh[d] : 1, inner = 1;
    for (int i = 0; i < d; i++) outer *= sh[i];
    for (int i = d + 1; i < nd; i++) inner *= sh[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            long double s = 0;
            double best = 0;
            int64_t bi = 0;
            for (int64_t k = 0; k < n; k++) {
                double v = x[(o * n + k) * inner + j];
                s += v;
                if (k == 0 || v > best || (isnan(v) && !isnan(best))) best = v, bi = k;
            }
            double r = op == R_SUM ? (double)s : op == R_MEAN ? (double)(s / n)
                     : op == R_MAX ? best : (double)bi;
            out[o * inner + j] = r;
        }
}

/* Checks op(x, dim, keepdim) against the reference on x's logical values:
 * shape, dtype and every element (NaN where the reference is NaN). */
static void check_op(int op, gf_tensor *x, int dim, bool keepdim, double atol, double rtol) {
    int nd = gf_ndim(x);
    const int64_t *sh = gf_shape(x);
    int d = dim < 0 ? dim + (nd ? nd : 1) : dim;
    bool kd = keepdim && op != R_ARGMAX;
    int64_t n = gf_numel(x);
    double *xv = malloc(sizeof(double) * (size_t)(n ? n : 1));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(x, xv, n));
    int ond = 0;
    int64_t osh[GF_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        if (i != d) osh[ond++] = sh[i];
        else if (kd) osh[ond++] = 1;
    int64_t on = numel(ond, osh);
    double *want = malloc(sizeof(double) * (size_t)(on ? on : 1));
    ref_reduce(op, xv, nd, sh, d, want);
    gf_tensor *y = apply(op, x, dim, keepdim);
    cr_assert_not_null(y, "%s dim %d: %s", RNAME[op], dim, gf_ctx_error(ctx));
    gf_test_expect_shape(y, ond, osh);
    gf_dtype want_dt = op == R_ARGMAX ? GF_I64 : gf_dtype_of(x);
    cr_assert_eq(gf_dtype_of(y), want_dt, "%s dtype", RNAME[op]);
    double *got = malloc(sizeof(double) * (size_t)(on ? on : 1));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(y, got, on));
    for (int64_t i = 0; i < on; i++) {
        if (isnan(want[i])) {
            cr_assert(isnan(got[i]), "%s dim %d kd %d elem %lld: got %g, want NaN", RNAME[op],
                      dim, keepdim, (long long)i, got[i]);
            continue;
        }
        double tol = op == R_ARGMAX ? 0 : atol + rtol * fabs(want[i]);
        cr_assert(fabs(got[i] - want[i]) <= tol, "%s dim %d kd %d elem %lld: got %.12g want %.12g",
                  RNAME[op], dim, keepdim, (long long)i, got[i], want[i]);
    }
    free(xv);
    free(want);
    free(got);
}

/* Every op, every dim (both signs), keepdim both ways. Sums of f32 are
 * compared with a tolerance that scales with the number of terms. */
static void check_all(gf_tensor *x, double atol, double rtol) {
    int nd = gf_ndim(x), lim = nd ? nd : 1;
    for (int op = 0; op < R_NOPS; op++)
        for (int dim = -lim; dim < lim; dim++)
            for (int kd = 0; kd < 2; kd++) check_op(op, x, dim, kd, atol, rtol);
}

/* Shapes taking every kernel: row mode (last dim), column mode (first and
 * middle dims), size-1 dims, multi-block dims (> 1024) in both modes, and
 * few outputs over a long dim (the block-split schedule). */
static const int64_t SHAPES[][4] = {
    {3, 5, 7, 0}, {4, 1, 6, 0}, {2, 3, 4, 5}, {2500, 0, 0, 0}, {3, 2100, 0, 0},
    {2100, 3, 0, 0}, {2, 1500, 5, 0}, {1, 40000, 0, 0}, {33000, 2, 0, 0}, {300, 270, 0, 0},
};
static const int SHAPE_ND[] = {3, 3, 4, 1, 2, 2, 3, 2, 2, 2};
#define NSHAPES (int)(sizeof SHAPE_ND / sizeof SHAPE_ND[0])

Test(reduce, forward_every_dim_f64_and_f32) {
    for (int s = 0; s < NSHAPES; s++) {
        int64_t n = numel(SHAPE_ND[s], SHAPES[s]);
        double *v = rand_buf(n);
        float *f = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
        gf_scope_begin(ctx);
        check_all(GF_T(ctx, gf_tensor_f64(ctx, SHAPE_ND[s], SHAPES[s], v)), 1e-12, 1e-12);
        /* f32 sums accumulate in double: close to the exact sum of the f32 values */
        check_all(GF_T(ctx, gf_tensor_f32(ctx, SHAPE_ND[s], SHAPES[s], f)), 1e-6, 1e-6);
        gf_scope_end(ctx);
        free(v);
        free(f);
    }
}

Test(reduce, forward_strided_views) {
    double *v = rand_buf(6 * 5 * 4);
    gf_tensor *b = GF_T(ctx, gf_tensor_f64(ctx, 3, (int64_t[]){6, 5, 4}, v));
    check_all(GF_T(ctx, gf_transpose(b, 0, 2)), 1e-12, 1e-12);           /* [4,5,6] */
    check_all(GF_T(ctx, gf_permute(b, (int[]){1, 2, 0})), 1e-12, 1e-12); /* [5,4,6] */
    check_all(GF_T(ctx, gf_slice(b, 1, 1, 5, 2)), 1e-12, 1e-12);         /* [6,2,4] */
    check_all(GF_T(ctx, gf_slice(gf_transpose(b, 1, 2), 2, 0, 5, 3)), 1e-12, 1e-12);
    gf_tensor *row = GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){1, 7}, v));
    check_all(GF_T(ctx, gf_expand(row, 3, (int64_t[]){3, 5, 7})), 1e-12, 1e-12);
    /* long strided dims: column mode from a transpose, block split on a slice */
    double *w = rand_buf(3000 * 4);
    gf_tensor *big = GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){3000, 4}, w));
    check_all(GF_T(ctx, gf_transpose(big, 0, 1)), 1e-12, 1e-12);
    check_all(GF_T(ctx, gf_slice(big, 1, 1, 4, 2)), 1e-12, 1e-12);
    float *f = malloc(sizeof(float) * 3000 * 4);
    for (int i = 0; i < 3000 * 4; i++) f[i] = (float)w[i];
    gf_tensor *bf = GF_T(ctx, gf_tensor_f32(ctx, 2, (int64_t[]){3000, 4}, f));
    check_all(GF_T(ctx, gf_transpose(bf, 0, 1)), 1e-6, 1e-6);
    free(v);
    free(w);
    free(f);
}

Test(reduce, forward_i64) {
    int64_t d[12] = {5, -3, 9, 9, 0, 2, -7, 4, 1, 1, 8, -2};
    gf_tensor *x = GF_T(ctx, gf_tensor_i64(ctx, 2, (int64_t[]){3, 4}, d));
    for (int dim = -2; dim < 2; dim++)
        for (int kd = 0; kd < 2; kd++) {
            check_op(R_SUM, x, dim, kd, 0, 0);
            check_op(R_MAX, x, dim, kd, 0, 0);
            check_op(R_ARGMAX, x, dim, kd, 0, 0);
        }
    gf_tensor *s = GF_T(ctx, gf_sum(x));
    cr_assert_eq(gf_dtype_of(s), GF_I64);
    cr_assert_eq(gf_item(s), 27);
    /* exact beyond 2^53 (no trip through double) */
    int64_t big[2] = {(int64_t)1 << 60, 1};
    gf_tensor *t = GF_T(ctx, gf_sum(gf_tensor_i64(ctx, 1, (int64_t[]){2}, big)));
    cr_assert_eq(gf_data_i64(t)[0], ((int64_t)1 << 60) + 1);
}

Test(reduce, zero_dim_inputs) {
    gf_tensor *s = GF_T(ctx, gf_scalar(ctx, GF_F64, 2.5));
    for (int op = 0; op < R_NOPS; op++)
        for (int dim = -1; dim <= 0; dim++)
            for (int kd = 0; kd < 2; kd++) {
                gf_tensor *y = GF_T(ctx, apply(op, s, dim, kd));
                cr_assert_eq(gf_ndim(y), 0, "%s of a 0-dim is 0-dim", RNAME[op]);
                cr_assert_eq(gf_item(y), op == R_ARGMAX ? 0 : 2.5, "%s", RNAME[op]);
            }
    cr_assert_eq(gf_item(GF_T(ctx, gf_sum(s))), 2.5);
    cr_assert_eq(gf_item(GF_T(ctx, gf_mean(s))), 2.5);
    cr_assert_null(gf_sum_dim(s, 1, false));
    gf_test_expect_error(ctx, "gf_sum_dim");
}

Test(reduce, empty_dims) {
    gf_tensor *e = GF_T(ctx, gf_zeros(ctx, GF_F64, 2, (int64_t[]){3, 0}));
    gf_tensor *s = GF_T(ctx, gf_sum_dim(e, 1, false));
    gf_test_expect_shape(s, 1, (int64_t[]){3});
    gf_test_expect_close(s, (double[]){0, 0, 0}, 3, 0, 0);
    gf_tensor *m = GF_T(ctx, gf_mean_dim(e, -1, true));
    gf_test_expect_shape(m, 2, (int64_t[]){3, 1});
    const double *mv = gf_data_f64(m);
    cr_assert_not_null(mv);
    for (int i = 0; i < 3; i++) cr_assert(isnan(mv[i]), "mean of nothing is NaN");
    /* reducing the non-empty dim of an empty tensor gives an empty result */
    gf_tensor *k = GF_T(ctx, gf_max_dim(e, 0, false));
    gf_test_expect_shape(k, 1, (int64_t[]){0});
    cr_assert_eq(gf_item(GF_T(ctx, gf_sum(e))), 0);
    cr_assert(isnan(gf_item(GF_T(ctx, gf_mean(e)))));
    cr_assert_null(gf_max_dim(e, 1, false));
    gf_test_expect_error(ctx, "gf_max_dim");
    gf_test_expect_error(ctx, "size 0");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_argmax(e, -1));
    gf_test_expect_error(ctx, "gf_argmax");
}

Test(reduce, first_max_and_nan) {
    gf_tensor *x = GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){2, 4},
                                           (double[]){1, 3, 3, 2, 1, NAN, 5, NAN}));
    gf_test_expect_close(gf_argmax(x, 1), (double[]){1, 1}, 2, 0, 0);
    gf_tensor *m = GF_T(ctx, gf_max_dim(x, 1, false));
    const double *mv = gf_data_f64(m);
    cr_assert_eq(mv[0], 3);
    cr_assert(isnan(mv[1]), "NaN is the max");
    /* ties across blocks: the first of equal maxima, for both schedules
     * (one long row: block split; 3 columns of 5000: column mode) */
    double *v = calloc(40000, sizeof(double));
    v[1500] = v[1024] = v[4999] = v[39999] = 7;
    gf_tensor *y = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){40000}, v));
    cr_assert_eq(gf_item(gf_argmax(y, 0)), 1024);
    gf_tensor *y5 = GF_T(ctx, gf_slice(y, 0, 0, 5000, 1));
    cr_assert_eq(gf_item(gf_argmax(y5, 0)), 1024);
    gf_tensor *yc = GF_T(ctx, gf_expand(gf_reshape(y5, 2, (int64_t[]){5000, 1}),
                                        2, (int64_t[]){5000, 3}));
    gf_test_expect_close(gf_argmax(gf_contiguous(yc), 0), (double[]){1024, 1024, 1024}, 3, 0, 0);
    gf_test_expect_close(gf_argmax(yc, 0), (double[]){1024, 1024, 1024}, 3, 0, 0);
    /* the gradient goes to the first max only */
    gf_tensor *t = gf_requires_grad(
        GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){2, 3}, (double[]){4, 1, 4, 0, 2, 2})), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_max_dim(t, 1, false))));
    gf_test_expect_close(gf_grad(t), (double[]){1, 0, 0, 0, 1, 0}, 6, 0, 0);
    free(v);
}

/* Index of the first maximum of line[0..n) (stride st), NaN first. */
static int64_t first_max(const double *v, int64_t off, int64_t n, int64_t st) {
    int64_t bi = 0;
    for (int64_t k = 1; k < n; k++) {
        double a = v[off + k * st], b = v[off + bi * st];
        if (isnan(b)) break;
        if (a > b || isnan(a)) bi = k;
    }
    return bi;
}

/* max_dim's values come from a kernel that tracks no index; they must be the
 * bits of the input at the first maximum (argmax, and a naive scan): the
 * first NaN's payload, the first zero's sign. Lines with NaNs of distinct
 * payloads and with -0/+0 ties, for shapes in row mode (contiguous and
 * strided), column mode, and the block split of long lines, f32 and f64,
 * through every vector-math variant. */
Test(reduce, max_dim_values_are_the_first_max_every_isa) {
    static const char *const isas[] = {"generic", "avx2", "avx512"};
    static const int64_t shapes[][2] = {{9, 3001}, {3001, 9}, {2, 40000}, {40000, 2}, {5, 33},
                                        {70, 3001}}; /* 70 long rows: four side by side */
    for (size_t k = 0; k < 3; k++) {
        gf__gemm_force_isa(isas[k]);
        if (strcmp(gf__gemm_isa(), isas[k]) != 0) continue;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int64_t R = shapes[si][0], C = shapes[si][1], n = R * C;
            double *v = rand_buf(n);
            double nan1, nan2;
            uint64_t b1 = 0x7ff8000000000001ull, b2 = 0xfff8000000000002ull;
            memcpy(&nan1, &b1, 8), memcpy(&nan2, &b2, 8);
            /* row 0 and column 0: two NaNs; row 1 / column 1: <= 0 with zeros of both signs */
            v[0 * C + C / 2] = nan1, v[0 * C + C - 1] = nan2;
            v[(R / 2) * C + 0] = nan2, v[(R - 1) * C + 0] = nan1;
            for (int64_t j = 0; j < C; j++) v[1 * C + j] = -fabs(v[1 * C + j]) - 0.5;
            for (int64_t i = 0; i < R; i++) v[i * C + 1] = -fabs(v[i * C + 1]) - 0.5;
            v[1 * C + C - 2] = -0.0, v[1 * C + C - 1] = 0.0;
            if (C > 32) v[1 * C + 1] = -0.0, v[1 * C + 32] = 0.0; /* -0 first, in a later lane */
            v[(R - 2) * C + 1] = 0.0, v[(R - 1) * C + 1] = -0.0;
            for (int dt = 0; dt < 2; dt++) {
                gf_scope_begin(ctx);
                gf_tensor *x = GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){R, C}, v));
                if (dt) x = GF_T(ctx, gf_to_dtype(x, GF_F32));
                gf_tensor *xt = GF_T(ctx, gf_transpose(x, 0, 1)); /* strided rows */
                gf_tensor *views[2] = {x, xt};
                for (int w = 0; w < 2; w++)
                    for (int d = 0; d < 2; d++) {
                        gf_tensor *xv = views[w];
                        int64_t L = gf_shape(xv)[d], nout = n / L;
                        gf_tensor *mx = GF_T(ctx, gf_max_dim(xv, d, false));
                        gf_tensor *am = GF_T(ctx, gf_argmax(xv, d));
                        const int64_t *ai = gf_data_i64(am);
                        cr_assert_not_null(ai);
                        for (int64_t o = 0; o < nout; o++) {
                            /* the line of output o in v's layout */
                            int64_t off, st;
                            if (w == 0) off = d == 0 ? o : o * C, st = d == 0 ? C : 1;
                            else off = d == 0 ? o * C : o, st = d == 0 ? 1 : C;
                            int64_t want = first_max(v, off, L, st);
                            cr_assert_eq(ai[o], want, "%s %lldx%lld dt %d view %d dim %d out %lld",
                                         isas[k], (long long)R, (long long)C, dt, w, d,
                                         (long long)o);
                            double wv = v[off + want * st];
                            if (dt) {
                                float f = (float)wv, g = gf_data_f32(mx)[o];
                                cr_assert(memcmp(&f, &g, 4) == 0 || (isnan(f) && isnan(g) &&
                                          signbit(f) == signbit(g)),
                                          "%s f32 dim %d out %lld: %a vs %a", isas[k], d,
                                          (long long)o, (double)g, (double)f);
                            } else {
                                double g = gf_data_f64(mx)[o];
                                cr_assert(memcmp(&wv, &g, 8) == 0, "%s f64 view %d dim %d out "
                                          "%lld: %a vs %a", isas[k], w, d, (long long)o, g, wv);
                            }
                        }
                    }
                gf_scope_end(ctx);
            }
            free(v);
        }
    }
    gf__gemm_force_isa(NULL);
}

Test(reduce, sum_and_mean_of_everything) {
    double *v = rand_buf(3 * 4 * 5);
    long double s = 0;
    for (int i = 0; i < 60; i++) s += v[i];
    gf_tensor *x = GF_T(ctx, gf_tensor_f64(ctx, 3, (int64_t[]){3, 4, 5}, v));
    gf_tensor *a = GF_T(ctx, gf_sum(x));
    cr_assert_eq(gf_ndim(a), 0);
    cr_assert(fabs(gf_item(a) - (double)s) < 1e-12);
    cr_assert(fabs(gf_item(gf_mean(x)) - (double)(s / 60)) < 1e-13);
    /* a strided input sums the same values */
    cr_assert(fabs(gf_item(gf_sum(gf_transpose(x, 0, 2))) - (double)s) < 1e-12);
    free(v);
}

/* ------------------------------------------------------------- gradients */

typedef struct {
    int op, dim;
    bool keepdim, transpose;
} rcase;

static gf_tensor *fn_reduce(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n;
    const rcase *r = user;
    gf_tensor *x = r->transpose ? gf_transpose(in[0], 0, 1) : in[0];
    if (r->op == -1) return gf_sum(x);
    if (r->op == -2) return gf_mean(x);
    return apply(r->op, x, r->dim, r->keepdim);
}

Test(reduce, gradcheck_f64) {
    /* distinct values: max is differentiable away from ties */
    double *v = rand_buf(3 * 4 * 5);
    gf_tensor *x = gf_requires_grad(GF_T(ctx, gf_tensor_f64(ctx, 3, (int64_t[]){3, 4, 5}, v)),
                                    true);
    for (int op = R_SUM; op <= R_MAX; op++)
        for (int dim = -3; dim < 3; dim++)
            for (int kd = 0; kd < 2; kd++)
                for (int tr = 0; tr < 2; tr++) {
                    rcase r = {op, dim, kd, tr};
                    gf_status s = gf_gradcheck(ctx, fn_reduce, 1, &x, &r, 1e-6, 1e-6, 1e-4);
                    cr_assert_eq(s, GF_OK, "%s dim %d kd %d tr %d: %s", RNAME[op], dim, kd, tr,
                                 gf_ctx_error(ctx));
                }
    for (int op = -2; op <= -1; op++) {
        rcase r = {op, 0, false, true};
        GF_OK_OR_FAIL(ctx, gf_gradcheck(ctx, fn_reduce, 1, &x, &r, 1e-6, 1e-6, 1e-4));
    }
    gf_tensor *s0 = gf_requires_grad(GF_T(ctx, gf_scalar(ctx, GF_F64, 0.7)), true);
    for (int op = R_SUM; op <= R_MAX; op++) {
        rcase r = {op, -1, true, false};
        GF_OK_OR_FAIL(ctx, gf_gradcheck(ctx, fn_reduce, 1, &s0, &r, 1e-6, 1e-6, 1e-4));
    }
    free(v);
}

static gf_tensor *fn_grad_on(gf_tensor *const *in, void *user) {
    const rcase *r = user;
    gf_tensor *x = in[0];
    gf_tensor *y = apply(r->op, gf_mul(gf_mul(x, x), x), r->dim, r->keepdim);
    gf_tensor *w = gf_add_scalar(gf_mul_scalar(gf_ones_like(y), 0.5), 1.0);
    gf_tensor *g = NULL;
    gf_backward_opts o = {.create_graph = true, .retain_graph = true};
    if (gf_grad_of(gf_sum(gf_mul(y, w)), 1, &x, &g, &o) != GF_OK) return NULL;
    return g;
}

/* d/dx sum(op(x*x*x) * w), kept differentiable: its gradcheck checks the
 * backward of the backward. gf_gradcheck evaluates fn under no_grad for the
 * central differences; like torch.enable_grad, grad is switched back on
 * around the inner gf_grad_of (no_grad is a nesting count). */
static gf_tensor *fn_grad(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)n;
    int depth = 0;
    while (!gf_is_grad_enabled(c)) gf_no_grad_end(c), depth++;
    gf_tensor *g = fn_grad_on(in, user);
    while (depth--) gf_no_grad_begin(c);
    return g;
}

Test(reduce, second_order) {
    double *v = rand_buf(4 * 5);
    gf_tensor *x = gf_requires_grad(GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){4, 5}, v)), true);
    for (int op = R_SUM; op <= R_MAX; op++)
        for (int dim = -2; dim < 2; dim++) {
            rcase r = {op, dim, dim & 1, false};
            gf_status s = gf_gradcheck(ctx, fn_grad, 1, &x, &r, 1e-6, 1e-6, 1e-4);
            cr_assert_eq(s, GF_OK, "%s dim %d: %s", RNAME[op], dim, gf_ctx_error(ctx));
        }
    /* explicitly: d2/dx2 of sum(mean_dim(x^3, 1)) = 6x/5 */
    gf_tensor *g = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(gf_mean_dim(gf_mul(gf_mul(x, x), x), 1, false)), 1, &x,
                                  &g, &(gf_backward_opts){.create_graph = true, .retain_graph = true}));
    gf_tensor *h = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(g), 1, &x, &h, NULL));
    double want[20];
    for (int i = 0; i < 20; i++) want[i] = 6 * v[i] / 5;
    gf_test_expect_close(h, want, 20, 1e-12, 1e-12);
    free(v);
}

/* ------------------------------------------- gf__sum_to via broadcasting */

/* grad of sum((a op b) * w) for a, b of the given shapes. */
static void bcast_grads(bool mul, int na, const int64_t *sa, int nb, const int64_t *sb,
                        gf_tensor **ga, gf_tensor **gb, double **av, double **bv, double **wv,
                        int *nw, int64_t *sw) {
    *av = rand_buf(numel(na, sa));
    *bv = rand_buf(numel(nb, sb));
    gf_tensor *a = gf_requires_grad(GF_T(ctx, gf_tensor_f64(ctx, na, sa, *av)), true);
    gf_tensor *b = gf_requires_grad(GF_T(ctx, gf_tensor_f64(ctx, nb, sb, *bv)), true);
    gf_tensor *y = GF_T(ctx, mul ? gf_mul(a, b) : gf_add(a, b));
    *nw = gf_ndim(y);
    memcpy(sw, gf_shape(y), sizeof(int64_t) * (size_t)*nw);
    *wv = rand_buf(gf_numel(y));
    gf_tensor *w = GF_T(ctx, gf_tensor_f64(ctx, *nw, sw, *wv));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(y, w))));
    *ga = GF_T(ctx, gf_grad(a));
    *gb = GF_T(ctx, gf_grad(b));
    gf_test_expect_shape(*ga, na, sa);
    gf_test_expect_shape(*gb, nb, sb);
}

Test(reduce, sum_to_size_one_dims) {
    /* [3,1] + [1,4]: grads are the row sums and the column sums of w */
    gf_tensor *ga, *gb;
    double *av, *bv, *wv;
    int nw;
    int64_t sw[GF_MAX_DIMS];
    bcast_grads(false, 2, (int64_t[]){3, 1}, 2, (int64_t[]){1, 4}, &ga, &gb, &av, &bv, &wv, &nw,
                sw);
    double ra[3] = {0}, rb[4] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ra[i] += wv[i * 4 + j], rb[j] += wv[i * 4 + j];
    gf_test_expect_close(ga, ra, 3, 1e-14, 1e-14);
    gf_test_expect_close(gb, rb, 4, 1e-14, 1e-14);
    free(av), free(bv), free(wv);
    /* with w = 1: plain counts */
    gf_tensor *a = gf_requires_grad(GF_T(ctx, gf_ones(ctx, GF_F32, 2, (int64_t[]){3, 1})), true);
    gf_tensor *b = gf_requires_grad(GF_T(ctx, gf_ones(ctx, GF_F32, 2, (int64_t[]){1, 4})), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_add(a, b))));
    gf_test_expect_close(gf_grad(a), (double[]){4, 4, 4}, 3, 0, 0);
    gf_test_expect_close(gf_grad(b), (double[]){3, 3, 3, 3}, 4, 0, 0);
}

Test(reduce, sum_to_leading_and_both) {
    /* [2,3,4] * [4]: b's grad sums a*w over the two leading dims */
    gf_tensor *ga, *gb;
    double *av, *bv, *wv;
    int nw;
    int64_t sw[GF_MAX_DIMS];
    bcast_grads(true, 3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, &ga, &gb, &av, &bv, &wv, &nw,
                sw);
    double rb[4] = {0}, ra[24];
    for (int i = 0; i < 24; i++) rb[i % 4] += av[i] * wv[i], ra[i] = bv[i % 4] * wv[i];
    gf_test_expect_close(gb, rb, 4, 1e-14, 1e-14);
    gf_test_expect_close(ga, ra, 24, 1e-15, 0);
    free(av), free(bv), free(wv);
    /* [5,3,4] + [3,1]: leading dim and a size-1 dim */
    bcast_grads(false, 3, (int64_t[]){5, 3, 4}, 2, (int64_t[]){3, 1}, &ga, &gb, &av, &bv, &wv,
                &nw, sw);
    double rb2[3] = {0};
    for (int i = 0; i < 60; i++) rb2[(i / 4) % 3] += wv[i];
    gf_test_expect_close(gb, rb2, 3, 1e-14, 1e-14);
    gf_test_expect_close(ga, wv, 60, 0, 0);
    free(av), free(bv), free(wv);
    /* 0-dim + [2,3]: everything sums into a 0-dim grad */
    gf_tensor *s = gf_requires_grad(GF_T(ctx, gf_scalar(ctx, GF_F64, 1)), true);
    gf_tensor *m = gf_requires_grad(GF_T(ctx, gf_zeros(ctx, GF_F64, 2, (int64_t[]){2, 3})), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul_scalar(gf_add(m, s), 2))));
    cr_assert_eq(gf_ndim(gf_grad(s)), 0);
    cr_assert_eq(gf_item(gf_grad(s)), 12);
    /* second order through sum_to: d/db of sum(d/da sum(a*b*b)) with a [3,1], b [1,4] */
    gf_tensor *a = gf_requires_grad(GF_T(ctx, gf_full(ctx, GF_F64, 2, (int64_t[]){3, 1}, 2)), true);
    gf_tensor *b = gf_requires_grad(
        GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){1, 4}, (double[]){1, 2, 3, 4})), true);
    gf_tensor *g = NULL, *h = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(gf_mul(gf_mul(a, b), b)), 1, &a, &g,
                                  &(gf_backward_opts){.create_graph = true, .retain_graph = true}));
    gf_test_expect_close(g, (double[]){30, 30, 30}, 3, 1e-14, 0); /* sum b^2 */
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(g), 1, &b, &h, NULL));
    gf_test_expect_close(h, (double[]){6, 12, 18, 24}, 4, 1e-14, 0); /* 3 * 2b */
}

/* --------------------------------------------------------------- errors */

Test(reduce, errors_and_null) {
    gf_tensor *x = GF_T(ctx, gf_zeros(ctx, GF_F32, 2, (int64_t[]){2, 3}));
    const char *names[] = {"gf_sum_dim", "gf_mean_dim", "gf_max_dim", "gf_argmax"};
    for (int op = 0; op < R_NOPS; op++) {
        gf_ctx_clear_error(ctx);
        cr_assert_null(apply(op, x, 2, false));
        gf_test_expect_error(ctx, names[op]);
        gf_test_expect_error(ctx, "out of range");
        gf_ctx_clear_error(ctx);
        cr_assert_null(apply(op, x, -3, true));
        gf_test_expect_error(ctx, names[op]);
        cr_assert_null(apply(op, NULL, 0, false));
    }
    cr_assert_null(gf_sum(NULL));
    cr_assert_null(gf_mean(NULL));
    gf_tensor *i = GF_T(ctx, gf_zeros(ctx, GF_I64, 1, (int64_t[]){3}));
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_mean(i));
    gf_test_expect_error(ctx, "gf_mean: ");
    gf_test_expect_error(ctx, "i64 (expected a floating tensor)");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_mean_dim(i, 0, false));
    gf_test_expect_error(ctx, "gf_mean_dim");
    gf_ctx_clear_error(ctx);
    /* argmax is never differentiable */
    gf_tensor *r = gf_requires_grad(GF_T(ctx, gf_ones(ctx, GF_F64, 1, (int64_t[]){3})), true);
    cr_assert_not(gf_get_requires_grad(GF_T(ctx, gf_argmax(r, 0))));
    cr_assert(gf_get_requires_grad(GF_T(ctx, gf_max_dim(r, 0, false))));
}

/* ------------------------------------------------- determinism, eager */

/* The results of a fixed set of reductions of data v, bytes into out. */
#define NDET 9
static size_t det_run(gf_ctx *c, const float *v, const double *vd, void **out) {
    gf_scope_begin(c);
    gf_tensor *x = gf_tensor_f32(c, 1, (int64_t[]){1 << 22}, v);
    gf_tensor *m = gf_reshape(x, 2, (int64_t[]){4096, 1024});
    gf_tensor *d = gf_tensor_f64(c, 2, (int64_t[]){3, 300000}, vd);
    gf_tensor *r[NDET] = {
        gf_sum(x),                             /* one output: the block split */
        gf_mean(x),
        gf_sum_dim(m, 0, false),               /* column mode */
        gf_sum_dim(m, 1, true),                /* rows */
        gf_sum_dim(gf_transpose(m, 0, 1), 1, false), /* strided rows */
        gf_sum_dim(d, 1, false),               /* few outputs, long rows */
        gf_sum_dim(gf_reshape(x, 2, (int64_t[]){1 << 21, 2}), 0, false), /* column split */
        gf_max_dim(d, 1, false),
        gf_argmax(m, 0),
    };
    size_t total = 0, at = 0;
    for (int i = 0; i < NDET; i++) {
        cr_assert_not_null(r[i], "%s", gf_ctx_error(c));
        GF_OK_OR_FAIL(c, gf_realize(r[i]));
        total += (size_t)gf_numel(r[i]) * 8;
    }
    char *buf = malloc(total);
    for (int i = 0; i < NDET; i++) {
        size_t nb = (size_t)gf_numel(r[i]) * (gf_dtype_of(r[i]) == GF_F32 ? 4 : 8);
        const void *p = gf_dtype_of(r[i]) == GF_F32 ? (const void *)gf_data_f32(r[i])
                        : gf_dtype_of(r[i]) == GF_F64 ? (const void *)gf_data_f64(r[i])
                                                      : (const void *)gf_data_i64(r[i]);
        memcpy(buf + at, p, nb);
        at += nb;
    }
    gf_scope_end(c);
    *out = buf;
    return at;
}

Test(reduce, bitwise_identical_for_any_thread_count_and_eager) {
    int64_t n = 1 << 22;
    float *v = malloc(sizeof(float) * (size_t)n);
    double *vd = malloc(sizeof(double) * 900000);
    double exact = 0;
    for (int64_t i = 0; i < n; i++) v[i] = (float)(urand() + 0.25), exact += v[i];
    for (int64_t i = 0; i < 900000; i++) vd[i] = urand();
    void *ref = NULL;
    size_t ref_n = 0;
    for (int t = 1; t <= 4; t++)
        for (int eager = 0; eager < 2; eager++) {
            gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = t});
            cr_assert_not_null(e);
            cr_assert_eq(gf_engine_num_threads(e), t);
            gf_ctx *c = gf_ctx_create(e);
            gf_ctx_set_eager(c, eager);
            void *got = NULL;
            size_t got_n = det_run(c, v, vd, &got);
            if (!ref) {
                ref = got, ref_n = got_n;
                /* and the full f32 sum is accurate (double accumulation) */
                float s;
                memcpy(&s, ref, sizeof s);
                cr_assert(fabs(s - exact) <= 1e-6 * fabs(exact), "sum %.9g vs %.9g", s, exact);
            } else {
                cr_assert_eq(got_n, ref_n);
                cr_assert(memcmp(got, ref, ref_n) == 0, "%d threads, eager %d: bits differ", t,
                          eager);
                free(got);
            }
            gf_ctx_destroy(c);
            gf_engine_destroy(e);
        }
    free(ref);
    free(v);
    free(vd);
}

/* The documented summation order, written out: per block of 1024 elements
 * along the reduced dim, 8 double lanes (element k into lane k % 8), then
 * ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), then the block's tail
 * in order; the block partials added in block order from 0. */
static double naive_sum_order(const float *p, int64_t n, int64_t step) {
    double tot = 0;
    for (int64_t b0 = 0; b0 < n; b0 += 1024) {
        const int64_t len = n - b0 < 1024 ? n - b0 : 1024;
        double l[8] = {0};
        int64_t k = 0;
        for (; k + 8 <= len; k += 8)
            for (int q = 0; q < 8; q++) l[q] += (double)p[(b0 + k + q) * step];
        double s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        for (; k < len; k++) s += (double)p[(b0 + k) * step];
        tot += s;
    }
    return tot;
}

/* Long row sums read several blocks side by side (four streams): the bits
 * are still the documented order's, for the whole-tensor sum (few units:
 * (unit, block) pairs, in groups of four far apart), rows of many full
 * blocks with and without a tail (many units: four consecutive blocks),
 * a few long rows, and the same rows through a transposed view (dim 0 of
 * the transpose); every vector-math variant, 1 and 3 threads. */
Test(reduce, long_rows_sum_in_the_documented_order) {
    const int64_t shapes[][2] = {{1, 1024 * 37 + 5}, {1, 1024 * 8}, {70, 1024 * 9},
                                 {70, 1024 * 6 + 300}, {3, 1024 * 11 + 17}, {65, 4096}};
    static const char *const isas[] = {"generic", "avx2", "avx512"};
    for (int vn = 0; vn < 6; vn++) { /* variant vn / 2, 1 or 3 threads */
        const int v = vn / 2, nt = 1 + 2 * (vn % 2);
        gf__gemm_force_isa(isas[v]); /* the vector-math variant follows it */
        gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = nt});
        gf_ctx *c = gf_ctx_create(e);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t r = shapes[si][0], n = shapes[si][1];
            float *v = malloc(sizeof(float) * (size_t)(r * n));
            for (int64_t i = 0; i < r * n; i++) v[i] = (float)urand();
            gf_scope_begin(c);
            gf_tensor *x = gf_tensor_f32(c, 2, (int64_t[]){r, n}, v);
            const float *got = gf_data_f32(GF_T(c, gf_sum_dim(x, 1, false)));
            cr_assert_not_null(got, "%s", gf_ctx_error(c));
            for (int64_t i = 0; i < r; i++) {
                const float want = (float)naive_sum_order(v + i * n, n, 1);
                cr_assert(memcmp(&got[i], &want, 4) == 0, "[%lld, %lld] row %lld, %d threads: %a vs %a",
                          (long long)r, (long long)n, (long long)i, nt, got[i], want);
            }
            if (r == 1) { /* gf_sum of everything */
                float all = (float)naive_sum_order(v, n, 1);
                const float *s = gf_data_f32(GF_T(c, gf_sum(x)));
                cr_assert(s && memcmp(s, &all, 4) == 0, "sum [1, %lld]", (long long)n);
            }
            /* the transpose [n, r] summed over dim 0: strided rows */
            gf_tensor *xt = GF_T(c, gf_transpose(x, 0, 1));
            const float *gt = gf_data_f32(GF_T(c, gf_sum_dim(xt, 0, false)));
            cr_assert_not_null(gt);
            for (int64_t i = 0; i < r; i++) {
                const float want = (float)naive_sum_order(v + i * n, n, 1);
                cr_assert(memcmp(&gt[i], &want, 4) == 0, "transposed row %lld", (long long)i);
            }
            gf_scope_end(c);
            free(v);
        }
        gf_ctx_destroy(c);
        gf_engine_destroy(e);
    }
    gf__gemm_force_isa(NULL);
}
