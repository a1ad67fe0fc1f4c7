/*
 * test_gradcheck.c - gf_gradcheck and gf_gradcheck_ex: NULL opts (torch's
 * defaults) pass on correct functions in every mode, with the caller's
 * random generator left as it was; functions whose analytic gradient is
 * wrong in chosen Jacobian entries (the detach trick: x - detach(x) is 0
 * but has gradient 1) are reported with the failure count and the WORST
 * entry (input index, element and multi-index, output element), not the
 * first; the full Jacobian finds errors that a random vector-Jacobian
 * product cancels; AUTO's choice of mode by size; second-order checks;
 * every argument error.
 */
#include "common.h"

/* A Jacobian entry made wrong by delta: d out[out] / d input[input][elem]. */
typedef struct {
    int input;
    int64_t elem, out;
    double delta;
} wrong_entry;

/* fn_lin's shape and its wrong entries. */
typedef struct {
    int ndim;
    int64_t shape[2]; /* the output's */
    int nwrong;
    wrong_entry w[4];
    int calls; /* fn_lin counts its calls */
} lin_spec;

static int64_t spec_numel(const lin_spec *s) {
    int64_t m = 1;
    for (int d = 0; d < s->ndim; d++) m *= s->shape[d];
    return m;
}

/* out = sum over the floating inputs i of C_i @ tanh(flat(in[i])), with
 * fixed C_i, reshaped to the spec's shape; plus for each wrong entry
 * delta * (x - detach(x)) at (out, elem): 0 in value, delta in the
 * analytic gradient only. i64 inputs are ignored. */
static gf_tensor *fn_lin(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    lin_spec *s = user;
    s->calls++;
    int64_t M = spec_numel(s);
    gf_tensor *y = gf_zeros(ctx, GF_F64, 1, &M);
    for (int i = 0; i < n; i++) {
        if (gf_dtype_of(in[i]) == GF_I64) continue;
        int64_t N = gf_numel(in[i]);
        double *c = malloc(sizeof *c * (size_t)(M * N));
        for (int64_t o = 0; o < M; o++)
            for (int64_t e = 0; e < N; e++)
                c[o * N + e] = 0.25 * (double)((o * 5 + e * 3 + i) % 7 - 3);
        gf_tensor *C = gf_tensor_f64(ctx, 2, (int64_t[]){M, N}, c);
        free(c);
        gf_tensor *flat = gf_to_dtype(gf_reshape(in[i], 1, &N), GF_F64);
        y = gf_add(y, gf_matmul(C, gf_tanh(flat)));
        for (int k = 0; k < s->nwrong; k++) {
            if (s->w[k].input != i) continue;
            double *p = calloc((size_t)(M * N), sizeof *p);
            p[s->w[k].out * N + s->w[k].elem] = s->w[k].delta;
            gf_tensor *P = gf_tensor_f64(ctx, 2, (int64_t[]){M, N}, p);
            free(p);
            y = gf_add(y, gf_matmul(P, gf_sub(flat, gf_detach(flat))));
        }
    }
    return gf_reshape(y, s->ndim, s->shape);
}

static gf_tensor *f64(gf_ctx *ctx, int ndim, const int64_t *shape, double scale, bool rg) {
    return GF_T(ctx, gf_requires_grad(gf_mul_scalar(gf_randn(ctx, GF_F64, ndim, shape), scale),
                                      rg));
}

Test(gradcheck, null_opts_pass_in_every_mode_and_keep_the_callers_rng) {
    gf_ctx *ctx = gf_ctx_create(NULL), *ref = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 11);
    gf_tensor *x = f64(ctx, 2, (int64_t[]){2, 3}, 1, true);
    gf_tensor *c = GF_T(ctx, gf_to_dtype(f64(ctx, 1, (int64_t[]){4}, 1, false), GF_F32));
    gf_tensor *z = GF_T(ctx, gf_requires_grad(
                                 gf_to_dtype(gf_randn(ctx, GF_F64, 1, (int64_t[]){3}), GF_F32),
                                 true));
    gf_tensor *lab = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 0});
    gf_tensor *ins[4] = {x, c, z, lab};
    lin_spec s = {2, {2, 2}, 0, {{0}}, 0};
    /* The caller's generator: the next draw after the checks is the one it
     * would have been without them. */
    gf_manual_seed(ctx, 5);
    gf_manual_seed(ref, 5);
    double x0[6], x1[6];
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(x, x0, 6));
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_lin, 4, ins, &s, NULL));
    /* 1 + 2 * (6 + 3) checked elements: c (not requiring grad) and lab
     * (i64) are passed as they are */
    cr_assert_eq(s.calls, 19);
    gf_gradcheck_opts full = {.mode = GF_GRADCHECK_FULL}, vjp = {.mode = GF_GRADCHECK_VJP};
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_lin, 4, ins, &s, &full));
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_lin, 4, ins, &s, &vjp));
    vjp.n_vjp = 7, vjp.seed = 99, vjp.eps = 1e-5, vjp.atol = 1e-7, vjp.rtol = 1e-6;
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_lin, 4, ins, &s, &vjp));
    /* the old entry: eps <= 0 is the default step */
    GF_OK_OR_FAIL(ctx, gf_gradcheck(ctx, fn_lin, 4, ins, &s, 0, 1e-6, 1e-4));
    GF_OK_OR_FAIL(ctx, gf_gradcheck(ctx, fn_lin, 4, ins, &s, -1, 1e-6, 1e-4));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(x, x1, 6));
    cr_assert(memcmp(x0, x1, sizeof x0) == 0, "the checks perturb copies, never the inputs");
    double a[5], b[5];
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(gf_rand(ctx, GF_F64, 1, (int64_t[]){5}), a, 5));
    GF_OK_OR_FAIL(ref, gf_copy_to_f64(gf_rand(ref, GF_F64, 1, (int64_t[]){5}), b, 5));
    cr_assert(memcmp(a, b, sizeof a) == 0, "gf_gradcheck moved the caller's generator");
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx), gf_ctx_destroy(ref);
}

/* Three wrong entries; the first in checking order (input 0 element 1) is
 * not the worst (input 0 element 4, output element 3, off by 0.5). Input 1
 * does not require grad: indices are the caller's. */
Test(gradcheck, reports_the_worst_entry_and_the_failure_count) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 3);
    gf_tensor *ins[3] = {f64(ctx, 2, (int64_t[]){2, 3}, 1, true),
                         f64(ctx, 1, (int64_t[]){4}, 1, false),
                         f64(ctx, 1, (int64_t[]){3}, 1, true)};
    lin_spec s = {2, {2, 2}, 3, {{0, 1, 0, 0.01}, {0, 4, 3, 0.5}, {2, 0, 1, 0.02}}, 0};
    cr_assert_eq(gf_gradcheck_ex(ctx, fn_lin, 3, ins, &s, NULL), GF_EINVAL);
    /* 9 checked elements x 4 output elements */
    gf_test_expect_error(ctx, "gf_gradcheck_ex: 3 of 36 Jacobian entries differ (full Jacobian, "
                              "eps 1e-06, atol 1e-05, rtol 0.001); worst: input 0 element 4 "
                              "[1,1], output element 3 [1,1]: analytic ");
    gf_test_expect_error(ctx, "(difference 0.5, allowed ");
    gf_ctx_clear_error(ctx);
    /* The worst moves with the deltas: input 2 element 0 now. */
    s.w[2].delta = -2;
    cr_assert_eq(gf_gradcheck(ctx, fn_lin, 3, ins, &s, 1e-6, 1e-5, 1e-3), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_gradcheck: 3 of 36 Jacobian entries differ");
    gf_test_expect_error(ctx, "worst: input 2 element 0 [0], output element 1 [0,1]");
    gf_test_expect_error(ctx, "(difference 2, allowed ");
    gf_ctx_clear_error(ctx);
    /* Random products see the same elements, one failure per product. */
    cr_assert_eq(gf_gradcheck_ex(ctx, fn_lin, 3, ins, &s,
                                 &(gf_gradcheck_opts){.mode = GF_GRADCHECK_VJP, .n_vjp = 2}),
                 GF_EINVAL);
    gf_test_expect_error(ctx, "gf_gradcheck_ex: 6 of 18 vector-Jacobian product values differ "
                              "(random vector-Jacobian products, eps 1e-06");
    gf_test_expect_error(ctx, "worst: input 2 element 0 [0], product ");
    gf_ctx_destroy(ctx);
}

/* Two wrong entries in one column that cancel in the first random product
 * (weights w computed as documented: gf_rand + 0.5 after
 * gf_manual_seed(seed)): one product misses them, the full Jacobian and a
 * second product do not. */
Test(gradcheck, full_jacobian_finds_what_a_random_product_cancels) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    const uint64_t seed = 1234;
    gf_manual_seed(ctx, seed);
    double w[2];
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(gf_add_scalar(gf_rand(ctx, GF_F64, 1, (int64_t[]){2}), 0.5),
                                      w, 2));
    gf_manual_seed(ctx, 8);
    gf_tensor *x = f64(ctx, 1, (int64_t[]){3}, 1, true);
    double d0 = 0.3, d1 = -0.3 * w[0] / w[1];
    lin_spec s = {1, {2}, 2, {{0, 1, 0, d0}, {0, 1, 1, d1}}, 0};
    gf_gradcheck_opts one = {.mode = GF_GRADCHECK_VJP, .n_vjp = 1, .seed = seed};
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, &x, &s, &one));
    cr_assert_eq(gf_gradcheck_ex(ctx, fn_lin, 1, &x, &s, NULL), GF_EINVAL); /* AUTO: full */
    gf_test_expect_error(ctx, "2 of 6 Jacobian entries differ (full Jacobian");
    gf_test_expect_error(ctx, fabs(d1) > fabs(d0) ? "worst: input 0 element 1 [1], output "
                                                    "element 1 [1]"
                                                  : "worst: input 0 element 1 [1], output "
                                                    "element 0 [0]");
    gf_ctx_clear_error(ctx);
    one.n_vjp = 2;
    cr_assert_eq(gf_gradcheck_ex(ctx, fn_lin, 1, &x, &s, &one), GF_EINVAL);
    gf_test_expect_error(ctx, "1 of 6 vector-Jacobian product values differ");
    gf_test_expect_error(ctx, "worst: input 0 element 1 [1], product 1:");
    gf_ctx_destroy(ctx);
}

/* AUTO checks the full Jacobian up to 65536 entries and 4096 output
 * elements; beyond either, n_vjp (default 4) random products. */
Test(gradcheck, auto_mode_by_size) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 4);
    struct {
        int64_t n, m;
        const char *want;
    } C[] = {
        {16, 4096, "1 of 65536 Jacobian entries differ (full Jacobian"},
        {300, 300, "4 of 1200 vector-Jacobian product values differ"},        /* 90000 entries */
        {1, 4097, "4 of 4 vector-Jacobian product values differ"},            /* 4097 rows */
    };
    for (int i = 0; i < 3; i++) {
        gf_scope_begin(ctx);
        gf_tensor *x = f64(ctx, 1, &C[i].n, 1, true);
        lin_spec s = {1, {C[i].m}, 1, {{0, C[i].n - 1, C[i].m - 1, 1.0}}, 0};
        cr_assert_eq(gf_gradcheck_ex(ctx, fn_lin, 1, &x, &s, NULL), GF_EINVAL);
        gf_test_expect_error(ctx, C[i].want);
        char at[96];
        snprintf(at, sizeof at, "worst: input 0 element %lld [%lld]", (long long)(C[i].n - 1),
                 (long long)(C[i].n - 1));
        gf_test_expect_error(ctx, at);
        gf_ctx_clear_error(ctx);
        gf_scope_end(ctx);
    }
    gf_ctx_destroy(ctx);
}

/* d/dx sum(tanh(x) * w), kept differentiable: the full check of this
 * function is a check of tanh's Hessian through create_graph. */
static gf_tensor *fn_grad(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)n, (void)user;
    gf_tensor *x = in[0], *g = NULL;
    gf_tensor *w = gf_add_scalar(gf_arange(ctx, GF_F64, gf_numel(x)), 1.0);
    gf_tensor *y = gf_sum(gf_mul(gf_tanh(x), gf_reshape(w, gf_ndim(x), gf_shape(x))));
    if (gf_grad_of(y, 1, &x, &g, &(gf_backward_opts){.create_graph = true}) != GF_OK) return NULL;
    return g;
}

Test(gradcheck, second_order_in_both_modes) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 6);
    gf_tensor *x = f64(ctx, 2, (int64_t[]){2, 3}, 1, true);
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_grad, 1, &x, NULL,
                                       &(gf_gradcheck_opts){.mode = GF_GRADCHECK_FULL}));
    GF_OK_OR_FAIL(ctx, gf_gradcheck_ex(ctx, fn_grad, 1, &x, NULL,
                                       &(gf_gradcheck_opts){.mode = GF_GRADCHECK_VJP}));
    gf_ctx_destroy(ctx);
}

static gf_tensor *fn_null(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n, (void)in, (void)user;
    return NULL;
}

/* [3] on the first call, [2] afterwards. */
static gf_tensor *fn_shifty(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n;
    int *calls = user;
    return (*calls)++ ? gf_slice(in[0], 0, 0, 2, 1) : gf_mul(in[0], in[0]);
}

static gf_tensor *fn_bad_matmul(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n, (void)user;
    return gf_matmul(in[0], in[0]);
}

/* The call returns want and leaves an error mentioning msg (then cleared). */
#define EXPECT_ERR(ctx, call, want, msg)                                                  \
    do {                                                                                  \
        gf_status s_ = (call);                                                            \
        cr_assert_eq(s_, (want), "%s returned %d", #call, (int)s_);                       \
        cr_assert_eq(gf_ctx_status(ctx), (want));                                         \
        gf_test_expect_error(ctx, msg);                                                   \
        gf_ctx_clear_error(ctx);                                                          \
    } while (0)

Test(gradcheck, argument_and_function_errors) {
    gf_ctx *ctx = gf_ctx_create(NULL), *other = gf_ctx_create(NULL);
    gf_tensor *x = f64(ctx, 1, (int64_t[]){3}, 1, true), *ins[1] = {x};
    gf_tensor *nograd = f64(ctx, 1, (int64_t[]){3}, 1, false);
    gf_tensor *x23 = f64(ctx, 2, (int64_t[]){2, 3}, 1, true);
    gf_tensor *foreign = gf_zeros(other, GF_F64, 1, (int64_t[]){2});
    lin_spec s = {1, {2}, 0, {{0}}, 0};
    cr_assert_eq(gf_gradcheck_ex(NULL, fn_lin, 1, ins, &s, NULL), GF_EINVAL);
    cr_assert_eq(gf_gradcheck(NULL, fn_lin, 1, ins, &s, 1e-6, 1e-5, 1e-3), GF_EINVAL);
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, NULL, 1, ins, &s, NULL), GF_EINVAL,
               "gf_gradcheck_ex: fn NULL, n 1, inputs set (expected a function, n > 0");
    EXPECT_ERR(ctx, gf_gradcheck(ctx, fn_lin, 0, ins, &s, 1e-6, 1e-5, 1e-3), GF_EINVAL,
               "gf_gradcheck: fn set, n 0, inputs set");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, NULL, &s, NULL), GF_EINVAL,
               "n 1, inputs NULL");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, (gf_tensor *[]){NULL}, &s, NULL), GF_EINVAL,
               "gf_gradcheck_ex: input 0 is NULL");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, &foreign, &s, NULL), GF_EINVAL,
               "gf_gradcheck_ex: input 0 [2] belongs to another ctx");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, ins, &s, &(gf_gradcheck_opts){.atol = -1}),
               GF_EINVAL,
               "gf_gradcheck_ex: opts.atol is -1 (expected a finite value >= 0; 0 takes the "
               "default 1e-05)");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, ins, &s, &(gf_gradcheck_opts){.rtol = NAN}),
               GF_EINVAL, "opts.rtol is nan");
    EXPECT_ERR(ctx,
               gf_gradcheck_ex(ctx, fn_lin, 1, ins, &s, &(gf_gradcheck_opts){.eps = INFINITY}),
               GF_EINVAL, "opts.eps is inf");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, ins, &s, &(gf_gradcheck_opts){.mode = 7}),
               GF_EINVAL,
               "gf_gradcheck_ex: opts.mode is 7 (expected GF_GRADCHECK_AUTO, _FULL or _VJP)");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, ins, &s, &(gf_gradcheck_opts){.n_vjp = -2}),
               GF_EINVAL,
               "gf_gradcheck_ex: opts.n_vjp is -2 (expected >= 0; 0 takes the default 4)");
    EXPECT_ERR(ctx, gf_gradcheck(ctx, fn_lin, 1, ins, &s, NAN, 1e-5, 1e-3), GF_EINVAL,
               "gf_gradcheck: eps is nan (expected a finite step");
    EXPECT_ERR(ctx, gf_gradcheck(ctx, fn_lin, 1, ins, &s, 1e-6, -1e-5, 1e-3), GF_EINVAL,
               "gf_gradcheck: atol is -1e-05 (expected a finite value >= 0)");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_lin, 1, &nograd, &s, NULL), GF_EINVAL,
               "gf_gradcheck_ex: no input requires grad");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_null, 1, ins, NULL, NULL), GF_EINVAL,
               "gf_gradcheck_ex: fn returned NULL without recording an error on the ctx");
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_shifty, 1, ins, &(int){0}, NULL), GF_ESHAPE,
               "gf_gradcheck_ex: fn returned [2] on a perturbed input (expected 3 elements, as on "
               "the first call)");
    /* fn's own error is returned as it is */
    EXPECT_ERR(ctx, gf_gradcheck_ex(ctx, fn_bad_matmul, 1, &x23, NULL, NULL), GF_ESHAPE,
               "gf_matmul");
    gf_ctx_destroy(ctx), gf_ctx_destroy(other);
}
