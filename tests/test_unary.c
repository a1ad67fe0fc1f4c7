/*
 * test_unary.c - the elementwise unary ops (ops/unary.c): forward against a
 * naive double reference for f64 and f32 (contiguous, transposed, sliced,
 * 0-dim, empty and large inputs), PyTorch's dtype rules for i64 inputs,
 * float64 gradchecks, second derivatives against central differences of the
 * first (through create_graph), gelu's third derivative, the tutorial's
 * examples, numerically stable sigmoid, errors, NULL inputs, eager == lazy
 * and thread-count independence, bit for bit; exp, sigmoid and tanh (the
 * vector exp and tanh) against libm for every ISA variant, contiguous and
 * strided, with infinities, NaN and the overflow/underflow edges. The fused
 * backward kernels of tanh, sigmoid and relu: tests/test_unary_bwd.c.
 */
#include "common.h"
#include "splitmix.h"

#include "../ops/kernels/kernels.h"

#include <float.h>

/* ------------------------------------------------------------ the op table */

static gf_tensor *f_add(gf_tensor *x) { return gf_add_scalar(x, 1.5); }
static gf_tensor *f_mul(gf_tensor *x) { return gf_mul_scalar(x, -2.5); }
static gf_tensor *f_pow2(gf_tensor *x) { return gf_pow_scalar(x, 2); }
static gf_tensor *f_pow3(gf_tensor *x) { return gf_pow_scalar(x, 3); }
static gf_tensor *f_pow25(gf_tensor *x) { return gf_pow_scalar(x, 2.5); }
static gf_tensor *f_powh(gf_tensor *x) { return gf_pow_scalar(x, 0.5); }
static gf_tensor *f_powm(gf_tensor *x) { return gf_pow_scalar(x, -1.5); }
static gf_tensor *f_pow0(gf_tensor *x) { return gf_pow_scalar(x, 0); }

static double r_add(double x) { return x + 1.5; }
static double r_mul(double x) { return x * -2.5; }
static double r_pow2(double x) { return x * x; }
static double r_pow3(double x) { return x * x * x; }
static double r_pow25(double x) { return pow(x, 2.5); }
static double r_powh(double x) { return pow(x, 0.5); }
static double r_powm(double x) { return pow(x, -1.5); }
static double r_pow0(double x) { (void)x; return 1; }
static double r_neg(double x) { return -x; }
static double r_relu(double x) { return x > 0 ? x : 0; }
static double r_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double r_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double r_sign(double x) { return x > 0 ? 1 : x < 0 ? -1 : 0; }

/* Derivatives for the explicit checks. */
static double phi(double x) { return exp(-0.5 * x * x) / sqrt(2 * M_PI); }
static double r_gelu_d1(double x) { return 0.5 * (1 + erf(x / sqrt(2.0))) + x * phi(x); }

typedef struct {
    const char *name;
    gf_tensor *(*fn)(gf_tensor *);
    double (*ref)(double);
    double lo, hi; /* inputs in [lo, hi), or in +-[lo, hi) when sym */
    bool sym;
    bool diff;     /* has a gradient worth checking */
} unop;

static const unop OPS[] = {
    {"add_scalar", f_add, r_add, -3, 3, false, true},
    {"mul_scalar", f_mul, r_mul, -3, 3, false, true},
    {"pow_scalar2", f_pow2, r_pow2, -2, 2, false, true},
    {"pow_scalar3", f_pow3, r_pow3, -2, 2, false, true},
    {"pow_scalar2.5", f_pow25, r_pow25, 0.1, 3, false, true},
    {"pow_scalar0.5", f_powh, r_powh, 0.2, 4, false, true},
    {"pow_scalar-1.5", f_powm, r_powm, 0.3, 3, false, true},
    {"pow_scalar0", f_pow0, r_pow0, -2, 2, false, true},
    {"neg", gf_neg, r_neg, -3, 3, false, true},
    {"exp", gf_exp, exp, -3, 3, false, true},
    {"log", gf_log, log, 0.1, 4, false, true},
    {"sqrt", gf_sqrt, sqrt, 0.1, 4, false, true},
    {"abs", gf_abs, fabs, 0.1, 2, true, true},
    {"relu", gf_relu, r_relu, 0.1, 2, true, true},
    {"sigmoid", gf_sigmoid, r_sigmoid, -6, 6, false, true},
    {"tanh", gf_tanh, tanh, -3, 3, false, true},
    {"gelu", gf_gelu, r_gelu, -4, 4, false, true},
    {"sign", gf_sign, r_sign, 0.1, 2, true, false},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

/* splitmix64: every run sees the same data. */
static uint64_t rng_state = 7;
static double urand(void) {
    return gf_test_u01(&rng_state);
}

/* n values of the op's domain (alternating signs when sym). */
static void fill(double *v, int64_t n, const unop *op) {
    for (int64_t i = 0; i < n; i++) {
        v[i] = op->lo + (op->hi - op->lo) * urand();
        if (op->sym && (i & 1)) v[i] = -v[i];
    }
}

static gf_tensor *make_f64(gf_ctx *ctx, const unop *op, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    fill(v, n, op);
    gf_tensor *t = gf_tensor_f64(ctx, ndim, shape, v);
    free(v);
    return t;
}

/* op(x) == ref(x) elementwise, x's values read back through the public API
 * (so x may be any strided view and any dtype). */
static void check_forward(gf_ctx *ctx, const unop *op, gf_tensor *x, double atol, double rtol) {
    int64_t n = gf_numel(x);
    double *xv = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double *want = malloc(sizeof(double) * (size_t)(n ? n : 1));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(x, xv, n));
    for (int64_t i = 0; i < n; i++) want[i] = op->ref(xv[i]);
    gf_tensor *y = GF_T(ctx, op->fn(x));
    cr_assert_eq(gf_dtype_of(y), gf_dtype_of(x), "%s: dtype changed", op->name);
    gf_test_expect_shape(y, gf_ndim(x), gf_shape(x));
    gf_test_expect_close(y, want, n, atol, rtol);
    free(xv);
    free(want);
}

/* ------------------------------------------------------------ forward */

Test(unary, forward_f64_and_f32_contiguous) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int k = 0; k < NOPS; k++) {
        gf_scope_begin(ctx);
        gf_tensor *x = make_f64(ctx, &OPS[k], 2, (int64_t[]){3, 37});
        check_forward(ctx, &OPS[k], x, 1e-14, 1e-13);
        /* f32 math stays close to the f64 reference of the same (rounded) inputs */
        check_forward(ctx, &OPS[k], GF_T(ctx, gf_to_dtype(x, GF_F32)), 1e-6, 1e-5);
        gf_scope_end(ctx);
    }
    gf_ctx_destroy(ctx);
}

Test(unary, forward_strided_views) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int k = 0; k < NOPS; k++) {
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(ctx);
            gf_tensor *b = make_f64(ctx, &OPS[k], 3, (int64_t[]){2, 6, 9});
            if (dt) b = gf_to_dtype(b, GF_F32);
            double atol = dt ? 1e-6 : 1e-14, rtol = dt ? 1e-5 : 1e-13;
            gf_tensor *t = GF_T(ctx, gf_transpose(b, 1, 2));          /* [2,9,6] */
            gf_tensor *s = GF_T(ctx, gf_slice(b, -1, 1, 9, 2));       /* [2,6,4] */
            gf_tensor *ts = GF_T(ctx, gf_slice(t, -2, 8, 0, 1));      /* [2,0,6] */
            gf_tensor *tt = GF_T(ctx, gf_slice(gf_transpose(b, 0, 2), 0, 2, 9, 3)); /* [3,6,2] */
            cr_assert(!gf_is_contiguous(t) && !gf_is_contiguous(s) && !gf_is_contiguous(tt));
            check_forward(ctx, &OPS[k], t, atol, rtol);
            check_forward(ctx, &OPS[k], s, atol, rtol);
            check_forward(ctx, &OPS[k], ts, atol, rtol);
            check_forward(ctx, &OPS[k], tt, atol, rtol);
            /* 0-dim and a slice with an offset that is contiguous again */
            double mid = 0.5 * (OPS[k].lo + OPS[k].hi);
            check_forward(ctx, &OPS[k], GF_T(ctx, gf_scalar(ctx, gf_dtype_of(b), mid)), atol, rtol);
            check_forward(ctx, &OPS[k], GF_T(ctx, gf_slice(b, 0, 1, 2, 1)), atol, rtol);
            gf_scope_end(ctx);
        }
    }
    gf_ctx_destroy(ctx);
}

/* Large enough for the kernels' parallel loop; values checked against the
 * reference, and the bits equal for 1 and 7 threads. */
Test(unary, forward_large_any_thread_count) {
    gf_engine *e1 = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_engine *e7 = gf_engine_create(&(gf_engine_opts){.num_threads = 7});
    gf_ctx *c1 = gf_ctx_create(e1), *c7 = gf_ctx_create(e7);
    int64_t n = 200003;
    double *v = malloc(sizeof(double) * (size_t)n), *w = malloc(sizeof(double) * (size_t)n);
    for (int k = 0; k < NOPS; k++) {
        fill(v, n, &OPS[k]);
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(c1);
            gf_scope_begin(c7);
            gf_tensor *x1 = gf_tensor_f64(c1, 1, &n, v), *x7 = gf_tensor_f64(c7, 1, &n, v);
            if (dt) x1 = gf_to_dtype(x1, GF_F32), x7 = gf_to_dtype(x7, GF_F32);
            gf_tensor *y1 = GF_T(c1, OPS[k].fn(x1)), *y7 = GF_T(c7, OPS[k].fn(x7));
            if (dt) {
                const float *a = gf_data_f32(y1), *b = gf_data_f32(y7);
                cr_assert(a && b);
                cr_assert(memcmp(a, b, sizeof(float) * (size_t)n) == 0, "%s f32: 1 vs 7 threads",
                          OPS[k].name);
            } else {
                const double *a = gf_data_f64(y1), *b = gf_data_f64(y7);
                cr_assert(a && b);
                cr_assert(memcmp(a, b, sizeof(double) * (size_t)n) == 0,
                          "%s f64: 1 vs 7 threads", OPS[k].name);
                for (int64_t i = 0; i < n; i++) w[i] = OPS[k].ref(v[i]);
                gf_test_expect_close(y7, w, n, 1e-14, 1e-13);
            }
            gf_scope_end(c7);
            gf_scope_end(c1);
        }
    }
    free(v);
    free(w);
    gf_ctx_destroy(c1);
    gf_ctx_destroy(c7);
    gf_engine_destroy(e1);
    gf_engine_destroy(e7);
}

Test(unary, special_values) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    double xs[] = {-2, -0.0, 0, 3, NAN};
    gf_tensor *x = gf_tensor_f64(ctx, 1, (int64_t[]){5}, xs);
    const double *r = gf_data_f64(GF_T(ctx, gf_relu(x)));
    cr_assert(r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 3 && isnan(r[4]),
              "relu keeps NaN, as torch");
    const double *s = gf_data_f64(GF_T(ctx, gf_sign(x)));
    cr_assert(s[0] == -1 && s[1] == 0 && s[2] == 0 && s[3] == 1 && s[4] == 0);
    const double *l = gf_data_f64(GF_T(ctx, gf_log(x)));
    cr_assert(isnan(l[0]) && isinf(l[1]) && l[1] < 0 && l[3] == log(3.0));
    const double *q = gf_data_f64(GF_T(ctx, gf_sqrt(x)));
    cr_assert(isnan(q[0]) && q[2] == 0 && q[3] == sqrt(3.0));
    gf_ctx_destroy(ctx);
}

/* No overflow and full relative precision at both tails. */
Test(unary, sigmoid_is_stable) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    double xs[] = {-1000, -100, -30, -1e-3, 0, 1e-3, 30, 100, 1000};
    double want[9];
    for (int i = 0; i < 9; i++)
        want[i] = xs[i] < 0 ? exp(xs[i]) / (1 + exp(xs[i])) : 1 / (1 + exp(-xs[i]));
    gf_tensor *x = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){9}, xs), true);
    gf_tensor *y = GF_T(ctx, gf_sigmoid(x));
    gf_test_expect_close(y, want, 9, 0, 1e-15);
    gf_tensor *y32 = GF_T(ctx, gf_sigmoid(gf_to_dtype(x, GF_F32)));
    const float *f = gf_data_f32(y32);
    for (int i = 0; i < 9; i++) {
        cr_assert(isfinite(f[i]), "sigmoid f32(%g) = %g", xs[i], f[i]);
        /* f32 keeps relative precision down to the normal range (-30: 9.4e-14) */
        if (want[i] > FLT_MIN) cr_assert(fabs(f[i] - want[i]) <= 1e-6 * want[i], "%g", xs[i]);
    }
    gf_tensor *g = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &x, &g,
                                  &(gf_backward_opts){.grad_output = gf_ones_like(y)}));
    double gw[9];
    for (int i = 0; i < 9; i++) gw[i] = want[i] * (1 - want[i]);
    gf_test_expect_close(g, gw, 9, 1e-300, 1e-12);
    gf_ctx_destroy(ctx);
}

/* Units in the last place between two floats of one sign or zero. */
static int64_t ulps32(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4), memcpy(&ib, &b, 4);
    return llabs((int64_t)ia - (int64_t)ib);
}
static int64_t ulps64(double a, double b) {
    int64_t ia, ib;
    memcpy(&ia, &a, 8), memcpy(&ib, &b, 8);
    return ia > ib ? ia - ib : ib - ia;
}

/* gf_exp, gf_sigmoid and gf_tanh through every vector-math variant this
 * CPU runs (chosen with GEMM's, gf__gemm_force_isa), on a contiguous tensor
 * and on a transposed view of it: exp within 2 ulp of expf (f32) and 1 ulp
 * of exp (f64), sigmoid within a few ulp of the stable formula in double,
 * tanh within 1 ulp of the rounded double (f32) / long double (f64) tanh. */
Test(unary, exp_sigmoid_tanh_every_isa_contiguous_and_strided) {
    static const char *const isas[] = {"generic", "avx2", "avx512"};
    enum { R = 41, C = 53, N = R * C };
    double v[N];
    const double spec[] = {INFINITY, -INFINITY, NAN, 0.0, -0.0, 88.72283935546875,
                           88.72284698486328, -103.97, -104.5, 709.78, 709.79, -745.1, -746,
                           1e-30, -87.3};
    for (int i = 0; i < N; i++) v[i] = i % 2 ? -120 + 240 * urand() : -3 + 6 * urand();
    memcpy(v, spec, sizeof spec);
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (size_t k = 0; k < 3; k++) {
        gf__gemm_force_isa(isas[k]);
        if (strcmp(gf__gemm_isa(), isas[k]) != 0) {
            cr_log_info("variant %s not supported here; skipped", isas[k]);
            continue;
        }
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(ctx);
            gf_tensor *b = gf_tensor_f64(ctx, 2, (int64_t[]){R, C}, v);
            if (dt) b = gf_to_dtype(b, GF_F32);
            gf_tensor *views[2] = {b, GF_T(ctx, gf_transpose(b, 0, 1))};
            for (int w = 0; w < 2; w++) {
                double *xv = malloc(sizeof(double) * N), *e = malloc(sizeof(double) * N);
                double *s = malloc(sizeof(double) * N), *t = malloc(sizeof(double) * N);
                GF_OK_OR_FAIL(ctx, gf_copy_to_f64(views[w], xv, N));
                GF_OK_OR_FAIL(ctx, gf_copy_to_f64(GF_T(ctx, gf_exp(views[w])), e, N));
                GF_OK_OR_FAIL(ctx, gf_copy_to_f64(GF_T(ctx, gf_sigmoid(views[w])), s, N));
                GF_OK_OR_FAIL(ctx, gf_copy_to_f64(GF_T(ctx, gf_tanh(views[w])), t, N));
                for (int i = 0; i < N; i++) {
                    double x = xv[i], ws = x < 0 ? exp(x) / (1 + exp(x)) : 1 / (1 + exp(-x));
                    if (isnan(x)) {
                        cr_assert(isnan(e[i]) && isnan(s[i]) && isnan(t[i]), "%s: NaN lost",
                                  isas[k]);
                        continue;
                    }
                    double wt = dt ? (float)tanh(x) : (double)tanhl((long double)x);
                    cr_assert(dt ? ulps32((float)t[i], (float)wt) <= 1 : ulps64(t[i], wt) <= 1,
                              "%s view %d dt %d: tanh(%a) = %a, expected %a", isas[k], w, dt, x,
                              t[i], wt);
                    if (dt) {
                        float want = expf((float)x);
                        cr_assert(ulps32((float)e[i], want) <= 2, "%s view %d: exp(%a) = %a, "
                                  "expf %a", isas[k], w, x, e[i], (double)want);
                        cr_assert(fabs(s[i] - ws) <= 1e-6 * ws || (ws < FLT_MIN && s[i] < 2 * FLT_MIN),
                                  "%s: sigmoid f32(%g) = %g, expected %g", isas[k], x, s[i], ws);
                    } else {
                        cr_assert(ulps64(e[i], exp(x)) <= 1, "%s view %d: exp(%.17g) = %a, "
                                  "exp %a", isas[k], w, x, e[i], exp(x));
                        cr_assert(fabs(s[i] - ws) <= 1e-15 * ws || (ws < 1e-300 && s[i] < 1e-300),
                                  "%s: sigmoid(%g) = %g, expected %g", isas[k], x, s[i], ws);
                    }
                }
                free(xv), free(e), free(s), free(t);
            }
            gf_scope_end(ctx);
        }
    }
    gf__gemm_force_isa(NULL);
    gf_ctx_destroy(ctx);
}

/* ------------------------------------------------------------ dtypes */

Test(unary, i64_promotion_like_torch) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_tensor *x = gf_tensor_i64(ctx, 1, (int64_t[]){4}, (int64_t[]){-3, 0, 2, 5});
    double xd[] = {-3, 0, 2, 5};
    struct { gf_tensor *(*fn)(gf_tensor *); double (*ref)(double); } fl[] = {
        {gf_exp, exp}, {gf_sigmoid, r_sigmoid}, {gf_tanh, tanh}, {gf_gelu, r_gelu}};
    for (int k = 0; k < 4; k++) {
        gf_tensor *y = GF_T(ctx, fl[k].fn(x));
        cr_assert_eq(gf_dtype_of(y), GF_F32);
        double w[4];
        for (int i = 0; i < 4; i++) w[i] = fl[k].ref(xd[i]);
        gf_test_expect_close(y, w, 4, 1e-6, 1e-6);
    }
    gf_tensor *p = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){4, 9});
    cr_assert_eq(gf_dtype_of(GF_T(ctx, gf_log(p))), GF_F32);
    gf_test_expect_close(GF_T(ctx, gf_sqrt(p)), (double[]){2, 3}, 2, 0, 0);

    /* integral scalars keep i64 (exact beyond 2^53); others give f32 */
    gf_tensor *big = gf_tensor_i64(ctx, 1, (int64_t[]){1}, (int64_t[]){(1ll << 60) + 1});
    gf_tensor *a = GF_T(ctx, gf_add_scalar(big, 2));
    cr_assert_eq(gf_dtype_of(a), GF_I64);
    cr_assert_eq(gf_data_i64(a)[0], (1ll << 60) + 3);
    gf_tensor *m = GF_T(ctx, gf_mul_scalar(x, -2));
    cr_assert_eq(gf_dtype_of(m), GF_I64);
    gf_test_expect_close(m, (double[]){6, 0, -4, -10}, 4, 0, 0);
    gf_tensor *af = GF_T(ctx, gf_add_scalar(x, 0.5));
    cr_assert_eq(gf_dtype_of(af), GF_F32);
    gf_test_expect_close(af, (double[]){-2.5, 0.5, 2.5, 5.5}, 4, 0, 0);
    gf_tensor *mf = GF_T(ctx, gf_mul_scalar(x, 0.25));
    cr_assert_eq(gf_dtype_of(mf), GF_F32);
    gf_test_expect_close(mf, (double[]){-0.75, 0, 0.5, 1.25}, 4, 0, 0);
    gf_tensor *pw = GF_T(ctx, gf_pow_scalar(x, 3));
    cr_assert_eq(gf_dtype_of(pw), GF_I64);
    gf_test_expect_close(pw, (double[]){-27, 0, 8, 125}, 4, 0, 0);
    gf_tensor *ph = GF_T(ctx, gf_pow_scalar(p, 0.5));
    cr_assert_eq(gf_dtype_of(ph), GF_F32);
    gf_test_expect_close(ph, (double[]){2, 3}, 2, 0, 0);

    /* neg, abs, relu, sign stay i64 */
    gf_tensor *(*keep[])(gf_tensor *) = {gf_neg, gf_abs, gf_relu, gf_sign};
    double (*kref[])(double) = {r_neg, fabs, r_relu, r_sign};
    for (int k = 0; k < 4; k++) {
        gf_tensor *y = GF_T(ctx, keep[k](x));
        cr_assert_eq(gf_dtype_of(y), GF_I64);
        double w[4];
        for (int i = 0; i < 4; i++) w[i] = kref[k](xd[i]);
        gf_test_expect_close(y, w, 4, 0, 0);
    }
    /* the i64 kernels on a strided view: x as [2,2], transposed */
    gf_tensor *xt = GF_T(ctx, gf_transpose(gf_reshape(x, 2, (int64_t[]){2, 2}), 0, 1));
    gf_test_expect_close(GF_T(ctx, gf_abs(xt)), (double[]){3, 2, 0, 5}, 4, 0, 0);
    gf_test_expect_close(GF_T(ctx, gf_add_scalar(xt, -1)), (double[]){-4, 1, -1, 4}, 4, 0, 0);
    gf_test_expect_close(GF_T(ctx, gf_pow_scalar(xt, 2)), (double[]){9, 4, 0, 25}, 4, 0, 0);
    /* f32 and f64 stay themselves with any scalar */
    gf_tensor *x32 = gf_to_dtype(x, GF_F32);
    cr_assert_eq(gf_dtype_of(gf_add_scalar(x32, 0.5)), GF_F32);
    cr_assert_eq(gf_dtype_of(gf_pow_scalar(gf_to_dtype(x, GF_F64), 2)), GF_F64);
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

/* --------------------------------------------------------- errors, NULL */

Test(unary, errors_and_null) {
    for (int k = 0; k < NOPS; k++) cr_assert_null(OPS[k].fn(NULL), "%s(NULL)", OPS[k].name);
    cr_assert_null(gf_neg(gf_exp(NULL)));
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_tensor *x = gf_tensor_i64(ctx, 2, (int64_t[]){2, 3}, (int64_t[]){1, 2, 3, 4, 5, 6});
    cr_assert_null(gf_pow_scalar(x, -2));
    gf_test_expect_error(ctx, "gf_pow_scalar");
    gf_test_expect_error(ctx, "[2,3]");
    gf_test_expect_error(ctx, "negative");
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    /* a NULL from the failed op flows on as NULL, the first error kept */
    cr_assert_null(gf_exp(gf_pow_scalar(x, -1)));
    gf_test_expect_error(ctx, "gf_pow_scalar");
    gf_ctx_clear_error(ctx);
    /* the same power is fine on floats */
    gf_test_expect_close(GF_T(ctx, gf_pow_scalar(gf_to_dtype(x, GF_F64), -2)),
                         (double[]){1, 0.25, 1. / 9, 1. / 16, 1. / 25, 1. / 36}, 6, 0, 1e-15);
    gf_ctx_destroy(ctx);
}

/* ---------------------------------------------------------- gradients */

static gf_tensor *apply_op(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n;
    return ((const unop *)user)->fn(in[0]);
}

static gf_tensor *apply_op_t(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n;
    return ((const unop *)user)->fn(gf_transpose(in[0], 0, 1));
}

Test(unary, gradcheck_f64) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    for (int k = 0; k < NOPS; k++) {
        if (!OPS[k].diff) continue;
        gf_scope_begin(ctx);
        gf_tensor *x = gf_requires_grad(make_f64(ctx, &OPS[k], 2, (int64_t[]){3, 4}), true);
        gf_status s = gf_gradcheck(ctx, apply_op, 1, &x, (void *)&OPS[k], 1e-6, 1e-6, 1e-4);
        cr_assert_eq(s, GF_OK, "%s: %s", OPS[k].name, gf_ctx_error(ctx));
        /* through a transposed view too */
        gf_tensor *t = gf_requires_grad(make_f64(ctx, &OPS[k], 2, (int64_t[]){4, 3}), true);
        s = gf_gradcheck(ctx, apply_op_t, 1, &t, (void *)&OPS[k], 1e-6, 1e-6, 1e-4);
        cr_assert_eq(s, GF_OK, "%s: %s", OPS[k].name, gf_ctx_error(ctx));
        gf_scope_end(ctx);
    }
    gf_ctx_destroy(ctx);
}

/* op'(x) elementwise, differentiable (create_graph). retain_graph too:
 * rules such as exp's (g * out) read op's output, whose node must survive. */
static gf_tensor *first_derivative(gf_ctx *ctx, const unop *op, gf_tensor *x) {
    gf_tensor *y = GF_T(ctx, op->fn(x));
    gf_tensor *g = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &x, &g,
                                  &(gf_backward_opts){.grad_output = gf_ones_like(y),
                                                      .create_graph = true,
                                                      .retain_graph = true}));
    return g;
}

/* op'' by backward through op' (create_graph) against central differences
 * of op' itself: every backward rule here must be differentiable. */
Test(unary, second_derivative_f64) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    const double eps = 1e-6;
    for (int k = 0; k < NOPS; k++) {
        if (!OPS[k].diff) continue;
        gf_scope_begin(ctx);
        int64_t n = 24;
        double v[24], vp[24], vm[24], dp[24], dm[24], num[24];
        fill(v, n, &OPS[k]);
        for (int i = 0; i < n; i++) vp[i] = v[i] + eps, vm[i] = v[i] - eps;
        gf_tensor *x = gf_requires_grad(gf_tensor_f64(ctx, 1, &n, v), true);
        gf_tensor *d1 = first_derivative(ctx, &OPS[k], x);
        gf_tensor *d2 = NULL;
        /* a constant op' (add, mul, neg, x^0) has no graph: op'' is 0 */
        if (gf_get_requires_grad(d1))
            GF_OK_OR_FAIL(ctx, gf_grad_of(d1, 1, &x, &d2,
                                          &(gf_backward_opts){.grad_output = gf_ones_like(d1)}));
        else
            d2 = gf_zeros_like(x);
        gf_tensor *xp = gf_requires_grad(gf_tensor_f64(ctx, 1, &n, vp), true);
        gf_tensor *xm = gf_requires_grad(gf_tensor_f64(ctx, 1, &n, vm), true);
        GF_OK_OR_FAIL(ctx, gf_copy_to_f64(first_derivative(ctx, &OPS[k], xp), dp, n));
        GF_OK_OR_FAIL(ctx, gf_copy_to_f64(first_derivative(ctx, &OPS[k], xm), dm, n));
        for (int i = 0; i < n; i++) num[i] = (dp[i] - dm[i]) / (2 * eps);
        gf_test_expect_close(d2, num, n, 1e-5, 1e-4);
        gf_scope_end(ctx);
    }
    gf_ctx_destroy(ctx);
}

/* gelu' = Phi + x phi; gelu'' = phi (2 - x^2); gelu''' = phi (x^3 - 4x),
 * the last one through gelu_grad's backward with create_graph. */
Test(unary, gelu_derivatives_closed_form) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    double v[7] = {-3, -1.5, -0.3, 0, 0.4, 1.2, 2.7}, w1[7], w2[7], w3[7];
    for (int i = 0; i < 7; i++) {
        double x = v[i];
        w1[i] = r_gelu_d1(x);
        w2[i] = phi(x) * (2 - x * x);
        w3[i] = phi(x) * (x * x * x - 4 * x);
    }
    for (int dt = 0; dt < 2; dt++) {
        gf_tensor *x = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){7}, v), true);
        gf_tensor *xin = dt ? gf_to_dtype(x, GF_F32) : x;
        double tol = dt ? 1e-6 : 1e-14;
        gf_tensor *y = GF_T(ctx, gf_gelu(xin));
        /* g1's graph goes through the f64 -> f32 cast of x: keep it alive */
        gf_backward_opts cg = {.grad_output = gf_ones_like(y), .create_graph = true,
                               .retain_graph = true};
        gf_tensor *g1 = NULL, *g2 = NULL, *g3 = NULL;
        GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &x, &g1, &cg));
        cg.grad_output = gf_ones_like(g1);
        GF_OK_OR_FAIL(ctx, gf_grad_of(g1, 1, &x, &g2, &cg));
        cg.grad_output = gf_ones_like(g2);
        GF_OK_OR_FAIL(ctx, gf_grad_of(g2, 1, &x, &g3, &cg));
        gf_test_expect_close(g1, w1, 7, tol, tol);
        gf_test_expect_close(g2, w2, 7, tol, tol);
        gf_test_expect_close(g3, w3, 7, tol, tol);
    }
    gf_ctx_destroy(ctx);
}

/* Backward at the points where torch defines a subgradient. */
Test(unary, gradient_at_kinks) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    double v[] = {-1, 0, 2};
    gf_tensor *x = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){3}, v), true);
    gf_backward_opts o = {.grad_output = gf_full(ctx, GF_F64, 1, (int64_t[]){3}, 3.0)};
    gf_tensor *g = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_relu(x), 1, &x, &g, &o));
    gf_test_expect_close(g, (double[]){0, 0, 3}, 3, 0, 0);
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_abs(x), 1, &x, &g, &o));
    gf_test_expect_close(g, (double[]){-3, 0, 3}, 3, 0, 0);
    /* p == 0: zero gradient, also at x == 0 (no 0 * inf) */
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_pow_scalar(x, 0), 1, &x, &g, &o));
    gf_test_expect_close(g, (double[]){0, 0, 0}, 3, 0, 0);
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_pow_scalar(x, 1), 1, &x, &g, &o));
    gf_test_expect_close(g, (double[]){3, 3, 3}, 3, 0, 0);
    /* sign's gradient is zeros, as torch.sign's (its output is in the graph) */
    gf_tensor *s = GF_T(ctx, gf_sign(x));
    cr_assert(gf_get_requires_grad(s));
    GF_OK_OR_FAIL(ctx, gf_grad_of(s, 1, &x, &g, &o));
    gf_test_expect_close(g, (double[]){0, 0, 0}, 3, 0, 0);
    gf_ctx_destroy(ctx);
}

/* ---------------------------------------------- the tutorial's examples */

Test(unary, tutorial_seed_example) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_tensor *x =
        gf_requires_grad(gf_tensor_f32(ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3}), true);
    GF_OK_OR_FAIL(ctx, gf_backward(GF_T(ctx, gf_sum(gf_pow_scalar(x, 2)))));
    const float *g = gf_data_f32(gf_grad(x));
    cr_assert_not_null(g, "%s", gf_ctx_error(ctx));
    cr_assert(g[0] == 2 && g[1] == 4 && g[2] == 6, "grad %g %g %g", g[0], g[1], g[2]);
    gf_ctx_destroy(ctx);
}

Test(unary, second_derivative_of_cube_is_6x) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    double v[] = {-2, 0.5, 1, 3};
    gf_tensor *x = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){4}, v), true);
    /* 1: backward with create_graph, then backward of the gradient */
    GF_OK_OR_FAIL(ctx, gf_backward_ex(GF_T(ctx, gf_sum(gf_pow_scalar(x, 3))),
                                      &(gf_backward_opts){.create_graph = true}));
    gf_tensor *g1 = gf_grad(x);
    gf_test_expect_close(g1, (double[]){12, 0.75, 3, 27}, 4, 0, 1e-15);
    cr_assert(gf_get_requires_grad(g1), "create_graph gives a differentiable .grad");
    gf_tensor *l2 = GF_T(ctx, gf_sum(g1));
    gf_zero_grad(x);
    GF_OK_OR_FAIL(ctx, gf_backward(l2));
    gf_test_expect_close(gf_grad(x), (double[]){-12, 3, 6, 18}, 4, 0, 1e-15);
    /* 2: gf_grad_of twice, f32 */
    gf_tensor *x32 = gf_requires_grad(
        gf_tensor_f32(ctx, 1, (int64_t[]){4}, (float[]){-2, 0.5f, 1, 3}), true);
    gf_tensor *d1 = NULL, *d2 = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(GF_T(ctx, gf_sum(gf_pow_scalar(x32, 3))), 1, &x32, &d1,
                                  &(gf_backward_opts){.create_graph = true}));
    GF_OK_OR_FAIL(ctx, gf_grad_of(GF_T(ctx, gf_sum(d1)), 1, &x32, &d2, NULL));
    cr_assert_eq(gf_dtype_of(d2), GF_F32);
    gf_test_expect_close(d2, (double[]){-12, 3, 6, 18}, 4, 0, 0);
    gf_ctx_destroy(ctx);
}

/* ---------------------------------------------------- eager == lazy */

/* op(x), and d/dx sum(op(x) * w) through create_graph and a second order,
 * in f32 and f64, into out[] as raw bytes. */
static size_t run_all(gf_ctx *ctx, unsigned char *out) {
    size_t len = 0;
    rng_state = 99;
    for (int k = 0; k < NOPS; k++)
        for (int dt = 0; dt < 2; dt++) {
            gf_scope_begin(ctx);
            gf_tensor *x = gf_requires_grad(make_f64(ctx, &OPS[k], 2, (int64_t[]){5, 7}), true);
            gf_tensor *w = make_f64(ctx, &OPS[k], 2, (int64_t[]){7, 5});
            gf_tensor *xin = gf_transpose(dt ? gf_to_dtype(x, GF_F32) : x, 0, 1);
            gf_tensor *y = GF_T(ctx, OPS[k].fn(xin));
            gf_tensor *res[3] = {y, NULL, NULL};
            if (OPS[k].diff) {
                gf_backward_opts o = {.grad_output = gf_to_dtype(w, gf_dtype_of(y)),
                                      .create_graph = true, .retain_graph = true};
                GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &x, &res[1], &o));
                o.grad_output = gf_ones_like(res[1]);
                if (gf_get_requires_grad(res[1]))
                    GF_OK_OR_FAIL(ctx, gf_grad_of(res[1], 1, &x, &res[2], &o));
            }
            for (int r = 0; r < 3; r++) {
                if (!res[r]) continue;
                size_t sz = (size_t)gf_numel(res[r]) * (gf_dtype_of(res[r]) == GF_F32 ? 4 : 8);
                const void *p = gf_dtype_of(res[r]) == GF_F32 ? (const void *)gf_data_f32(res[r])
                                                              : (const void *)gf_data_f64(res[r]);
                cr_assert_not_null(p, "%s: %s", OPS[k].name, gf_ctx_error(ctx));
                if (out) memcpy(out + len, p, sz);
                len += sz;
            }
            gf_scope_end(ctx);
        }
    return len;
}

Test(unary, eager_and_lazy_identical_bits) {
    gf_test_expect_eager_equals_lazy(run_all);
}
