/*
 * test_tools.c - the everyday tools: gf_print / gf_fprint against PyTorch's
 * repr of the same tensors (strings taken from torch 1.13 with the dtype
 * names changed to gradflow's), gf_allclose (tolerance boundaries, NaN,
 * infinities, broadcasting, dtypes, errors), gf_randperm (a permutation,
 * seeded, the same for 1 and 4 threads, unbiased enough to have every
 * arrangement) and gf_index_select (against a naive loop on every dim and
 * dtype, strided inputs and indices, repeated indices; float64 gradcheck and
 * second order; the backward's index-order accumulation bit for bit on 1
 * and 4 threads; eager == lazy; bad indices at the call and in the kernel).
 */
#include "common.h"
#include "splitmix.h"

#include <unistd.h>

static gf_ctx *ctx;
static void setup(void) { ctx = gf_ctx_create(NULL); }
static void teardown(void) { gf_ctx_destroy(ctx); }
TestSuite(tools, .init = setup, .fini = teardown, .timeout = 300);

static uint64_t rng = 16;
static double urand(void) { return gf_test_u01(&rng) * 2 - 1; /* [-1, 1) */ }

/* t with values f(i) at row-major index i, built in f64 and cast to dt. */
static gf_tensor *seq(gf_dtype dt, int nd, const int64_t *sh, double (*f)(int64_t)) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) d[i] = f(i);
    gf_tensor *t = GF_T(ctx, gf_to_dtype(gf_tensor_f64(ctx, nd, sh, d), dt));
    free(d);
    return t;
}
static double f_id(int64_t i) { return (double)i; }
static double f_sin(int64_t i) { return sin((double)i) * 3; }
static double f_half(int64_t i) { return (double)i * 1.5; }

/* ------------------------------------------------------------------ print */

/* What gf_fprint writes for t. */
static char *repr(gf_tensor *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    GF_OK_OR_FAIL(ctx, gf_fprint(f, t));
    fclose(f);
    return buf;
}

static void expect_repr(gf_tensor *t, const char *want) {
    char *got = repr(t);
    cr_assert_str_eq(got, want, "got:\n%s\nexpected:\n%s", got, want);
    free(got);
}

Test(tools, print_small_tensors_of_each_dtype) {
    expect_repr(gf_tensor_f32(ctx, 2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4}),
                "tensor([[1., 2.],\n        [3., 4.]])\n");
    expect_repr(gf_tensor_f32(ctx, 1, (int64_t[]){3}, (float[]){0.1f, -2.5f, 3.14159f}),
                "tensor([ 0.1000, -2.5000,  3.1416])\n");
    expect_repr(gf_tensor_f64(ctx, 2, (int64_t[]){2, 2}, (double[]){1.5, 2.25, 3, 4}),
                "tensor([[1.5000, 2.2500],\n        [3.0000, 4.0000]], dtype=f64)\n");
    expect_repr(gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){1, -20, 300}),
                "tensor([  1, -20, 300])\n");
    expect_repr(seq(GF_F32, 3, (int64_t[]){2, 3, 4}, f_sin),
                "tensor([[[ 0.0000,  2.5244,  2.7279,  0.4234],\n"
                "         [-2.2704, -2.8768, -0.8382,  1.9710],\n"
                "         [ 2.9681,  1.2364, -1.6321, -3.0000]],\n"
                "\n"
                "        [[-1.6097,  1.2605,  2.9718,  1.9509],\n"
                "         [-0.8637, -2.8842, -2.2530,  0.4496],\n"
                "         [ 2.7388,  2.5100, -0.0266, -2.5387]]])\n");
    /* a row longer than the line wraps at 80 columns */
    expect_repr(seq(GF_F32, 1, (int64_t[]){30}, f_half),
                "tensor([ 0.0000,  1.5000,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000,\n"
                "        12.0000, 13.5000, 15.0000, 16.5000, 18.0000, 19.5000, 21.0000, 22.5000,\n"
                "        24.0000, 25.5000, 27.0000, 28.5000, 30.0000, 31.5000, 33.0000, 34.5000,\n"
                "        36.0000, 37.5000, 39.0000, 40.5000, 42.0000, 43.5000])\n");
    /* rows one level in: exactly 8 values of width 7 fill (80 - 8) columns */
    expect_repr(seq(GF_F32, 2, (int64_t[]){2, 9}, f_half),
                "tensor([[ 0.0000,  1.5000,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000,\n"
                "         12.0000],\n"
                "        [13.5000, 15.0000, 16.5000, 18.0000, 19.5000, 21.0000, 22.5000, 24.0000,\n"
                "         25.5000]])\n");
}

Test(tools, print_scalars) {
    expect_repr(gf_scalar(ctx, GF_F32, 3.5), "tensor(3.5000)\n");
    expect_repr(gf_scalar(ctx, GF_I64, 7), "tensor(7)\n");
    expect_repr(gf_scalar(ctx, GF_F64, 2), "tensor(2., dtype=f64)\n");
}

Test(tools, print_summarises_large_tensors) {
    /* 2000 elements > 1000: three edge rows and columns, "..." between;
     * the widest shown values put the formatter in scientific mode */
    expect_repr(seq(GF_F32, 2, (int64_t[]){40, 50}, f_id),
                "tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 4.7000e+01, 4.8000e+01,\n"
                "         4.9000e+01],\n"
                "        [5.0000e+01, 5.1000e+01, 5.2000e+01,  ..., 9.7000e+01, 9.8000e+01,\n"
                "         9.9000e+01],\n"
                "        [1.0000e+02, 1.0100e+02, 1.0200e+02,  ..., 1.4700e+02, 1.4800e+02,\n"
                "         1.4900e+02],\n"
                "        ...,\n"
                "        [1.8500e+03, 1.8510e+03, 1.8520e+03,  ..., 1.8970e+03, 1.8980e+03,\n"
                "         1.8990e+03],\n"
                "        [1.9000e+03, 1.9010e+03, 1.9020e+03,  ..., 1.9470e+03, 1.9480e+03,\n"
                "         1.9490e+03],\n"
                "        [1.9500e+03, 1.9510e+03, 1.9520e+03,  ..., 1.9970e+03, 1.9980e+03,\n"
                "         1.9990e+03]])\n");
    expect_repr(seq(GF_I64, 1, (int64_t[]){10000}, f_id),
                "tensor([   0,    1,    2,  ..., 9997, 9998, 9999])\n");
    /* exactly 1000 elements are printed in full */
    char *full = repr(seq(GF_I64, 1, (int64_t[]){1000}, f_id));
    cr_assert_null(strstr(full, "..."));
    cr_assert_not_null(strstr(full, " 500, 501,"));
    free(full);
}

Test(tools, print_special_values_and_empty_tensors) {
    expect_repr(gf_tensor_f32(ctx, 1, (int64_t[]){2}, (float[]){1e-5f, 1}),
                "tensor([1.0000e-05, 1.0000e+00])\n");
    expect_repr(gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){1e9, 1}),
                "tensor([1.0000e+09, 1.0000e+00], dtype=f64)\n");
    expect_repr(gf_tensor_f32(ctx, 1, (int64_t[]){4}, (float[]){-NAN, INFINITY, -INFINITY, 1.5f}),
                "tensor([   nan,    inf,   -inf, 1.5000])\n");
    expect_repr(gf_tensor_f32(ctx, 1, (int64_t[]){3}, (float[]){-0.0f, 0, 2}),
                "tensor([-0., 0., 2.])\n");
    expect_repr(gf_zeros(ctx, GF_F32, 1, (int64_t[]){0}), "tensor([])\n");
    expect_repr(gf_zeros(ctx, GF_F32, 2, (int64_t[]){0, 3}), "tensor([], size=(0, 3))\n");
    expect_repr(gf_zeros(ctx, GF_I64, 1, (int64_t[]){0}), "tensor([], dtype=i64)\n");
    expect_repr(gf_zeros(ctx, GF_F64, 2, (int64_t[]){2, 0}),
                "tensor([], size=(2, 0), dtype=f64)\n");
}

Test(tools, print_autograd_suffixes_views_and_pending_tensors) {
    gf_tensor *x = gf_requires_grad(gf_tensor_f32(ctx, 1, (int64_t[]){2}, (float[]){1, 2}), true);
    expect_repr(x, "tensor([1., 2.], requires_grad=True)\n");
    gf_tensor *y = GF_T(ctx, gf_add(x, x)); /* pending: printing realizes it */
    expect_repr(y, "tensor([2., 4.], grad_fn=<AddBackward>)\n");
    gf_tensor *ix = gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){1, 0, 1});
    expect_repr(gf_index_select(x, 0, ix), "tensor([2., 1., 2.], grad_fn=<IndexSelectBackward>)\n");
    /* suffixes that do not fit in 80 columns go on a line of their own */
    expect_repr(gf_requires_grad(seq(GF_F64, 1, (int64_t[]){6}, f_sin), true),
                "tensor([ 0.0000,  2.5244,  2.7279,  0.4234, -2.2704, -2.8768], dtype=f64,\n"
                "       requires_grad=True)\n");
    /* at the line width: a last line of 58 columns takes the suffix (80 in
     * all), one of 59 does not */
    gf_tensor *w58 = gf_add_scalar(seq(GF_F32, 2, (int64_t[]){2, 7}, f_id), 1000);
    gf_tensor *w59 = gf_add_scalar(seq(GF_F32, 2, (int64_t[]){2, 10}, f_id), 10);
    expect_repr(gf_requires_grad(w58, true),
                "tensor([[1000., 1001., 1002., 1003., 1004., 1005., 1006.],\n"
                "        [1007., 1008., 1009., 1010., 1011., 1012., 1013.]], "
                "requires_grad=True)\n");
    expect_repr(gf_requires_grad(w59, true),
                "tensor([[10., 11., 12., 13., 14., 15., 16., 17., 18., 19.],\n"
                "        [20., 21., 22., 23., 24., 25., 26., 27., 28., 29.]],\n"
                "       requires_grad=True)\n");
    /* a transposed view prints its logical layout */
    expect_repr(gf_transpose(seq(GF_F32, 2, (int64_t[]){2, 3}, f_id), 0, 1),
                "tensor([[0., 3.],\n        [1., 4.],\n        [2., 5.]])\n");
}

Test(tools, print_writes_to_stdout) {
    fflush(stdout);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(tmp), STDOUT_FILENO);
    gf_status s = gf_print(gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){4, 5}));
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    cr_assert_eq(s, GF_OK);
    char buf[64] = {0};
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    fclose(tmp);
    cr_assert_str_eq(buf, "tensor([4, 5])\n", "got %zu bytes: %s", n, buf);
}

Test(tools, print_errors) {
    cr_assert_eq(gf_print(NULL), GF_EINVAL);
    gf_tensor *t = gf_scalar(ctx, GF_F32, 1);
    cr_assert_eq(gf_fprint(NULL, t), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_fprint: FILE is NULL");
    gf_ctx_clear_error(ctx);
    /* a tensor whose computation fails: the kernel's error, nothing printed */
    gf_tensor *label = gf_add_scalar(gf_tensor_i64(ctx, 1, (int64_t[]){1}, (int64_t[]){2}), 5);
    gf_tensor *bad = gf_one_hot(label, 3, GF_F32);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_neq(gf_fprint(f, bad), GF_OK);
    fclose(f);
    cr_assert_eq(len, 0);
    free(buf);
    gf_test_expect_error(ctx, "out of range");
}

/* --------------------------------------------------------------- allclose */

Test(tools, allclose_tolerance_boundaries) {
    gf_tensor *a = gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){1.5, -4});
    gf_tensor *b = gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){1.0, -4});
    cr_assert(gf_allclose(a, b, 0, 0.5));       /* |diff| == atol */
    cr_assert(!gf_allclose(a, b, 0, 0.4999));
    cr_assert(gf_allclose(a, b, 0.5, 0));       /* |diff| == rtol * |b| */
    cr_assert(!gf_allclose(a, b, 0.4999, 0));
    cr_assert(gf_allclose(a, b, 0.25, 0.25));   /* 0.25 + 0.25 * 1 */
    cr_assert(!gf_allclose(a, b, 0.25, 0.2499));
    cr_assert(!gf_allclose(b, a, 0.3, 0.0));    /* relative to b: 0.3 * 1.5 < 0.5 */
    cr_assert(gf_allclose(b, a, 1.0 / 3.0, 0.0));
    cr_assert(gf_allclose(a, a, 0, 0));         /* zero tolerances: equality */
    cr_assert_null(gf_ctx_error(ctx));
}

Test(tools, allclose_nan_inf_broadcasting_and_dtypes) {
    gf_tensor *n1 = gf_tensor_f32(ctx, 1, (int64_t[]){2}, (float[]){NAN, 1});
    cr_assert(!gf_allclose(n1, n1, 1, 1)); /* NaN is never close, even to itself */
    gf_tensor *i1 = gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){INFINITY, -INFINITY});
    gf_tensor *i2 = gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){INFINITY, INFINITY});
    cr_assert(gf_allclose(i1, i1, 0, 0));
    cr_assert(!gf_allclose(i1, i2, 1e9, 1e9));
    cr_assert(!gf_allclose(gf_scalar(ctx, GF_F64, 1e300), gf_scalar(ctx, GF_F64, INFINITY), 1, 1));
    /* [2,1] against [3]: every pair of the [2,3] broadcast */
    gf_tensor *col = gf_tensor_f32(ctx, 2, (int64_t[]){2, 1}, (float[]){1, 1});
    gf_tensor *row = gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, 1.001, 0.999});
    cr_assert(gf_allclose(col, row, 0, 1.5e-3));
    cr_assert(!gf_allclose(col, row, 0, 0.5e-3));
    gf_tensor *col2 = gf_tensor_f32(ctx, 2, (int64_t[]){2, 1}, (float[]){1, 2});
    cr_assert(!gf_allclose(col2, row, 0, 1.5e-3)); /* the second row differs */
    /* a strided view and a pending result */
    gf_tensor *m = gf_tensor_f64(ctx, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
    gf_tensor *mt = gf_tensor_f64(ctx, 2, (int64_t[]){2, 2}, (double[]){1, 3, 2, 4});
    cr_assert(gf_allclose(gf_transpose(m, 0, 1), mt, 0, 0));
    cr_assert(gf_allclose(gf_mul_scalar(m, 2), gf_add(m, m), 0, 0));
    /* i64: exact, beyond double precision, and against floats */
    int64_t big = (int64_t)1 << 60;
    gf_tensor *ia = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){big, INT64_MIN});
    gf_tensor *ib = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){big + 1, INT64_MIN});
    cr_assert(!gf_allclose(ia, ib, 0, 0));
    cr_assert(gf_allclose(ia, ib, 0, 1));
    gf_tensor *ic = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){INT64_MAX, INT64_MIN});
    gf_tensor *id = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){INT64_MIN, INT64_MAX});
    cr_assert(!gf_allclose(ic, id, 0, 1e18)); /* a difference of 2^64 - 1, no overflow */
    cr_assert(gf_allclose(gf_tensor_i64(ctx, 1, (int64_t[]){1}, (int64_t[]){3}),
                          gf_scalar(ctx, GF_F32, 3.0), 0, 0));
    /* empty shapes are close */
    gf_tensor *empty = gf_zeros(ctx, GF_F32, 1, (int64_t[]){0});
    cr_assert(gf_allclose(empty, gf_scalar(ctx, GF_F32, 5), 0, 0));
    cr_assert_null(gf_ctx_error(ctx));
}

Test(tools, allclose_errors) {
    gf_tensor *a = gf_zeros(ctx, GF_F32, 1, (int64_t[]){3});
    gf_tensor *b = gf_zeros(ctx, GF_F32, 1, (int64_t[]){4});
    cr_assert(!gf_allclose(NULL, NULL, 0, 0));
    cr_assert(!gf_allclose(a, NULL, 0, 0));
    gf_test_expect_error(ctx, "gf_allclose: b is NULL");
    gf_ctx_clear_error(ctx);
    cr_assert(!gf_allclose(a, b, 0, 0));
    cr_assert_eq(gf_ctx_status(ctx), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_allclose: shapes [3] and [4] do not broadcast");
    gf_ctx_clear_error(ctx);
    cr_assert(!gf_allclose(a, a, -1e-5, 0));
    gf_test_expect_error(ctx, "expected both >= 0");
    gf_ctx_clear_error(ctx);
    cr_assert(!gf_allclose(a, a, 0, NAN));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    gf_ctx_clear_error(ctx);
    gf_ctx *other = gf_ctx_create(NULL);
    cr_assert(!gf_allclose(a, gf_zeros(other, GF_F32, 1, (int64_t[]){3}), 0, 0));
    gf_test_expect_error(ctx, "another ctx");
    gf_ctx_destroy(other);
    gf_ctx_clear_error(ctx);
    /* an operand whose computation fails: false, with the kernel's error */
    gf_tensor *labels =
        gf_add_scalar(gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){0, 1, 2}), 1);
    gf_tensor *zeros = gf_zeros(ctx, GF_F32, 2, (int64_t[]){3, 3});
    cr_assert(!gf_allclose(gf_one_hot(labels, 3, GF_F32), zeros, 1, 1));
    gf_test_expect_error(ctx, "label 3 at index 2 is out of range for 3 classes");
}

/* --------------------------------------------------------------- randperm */

static void expect_permutation(gf_tensor *p, int64_t n) {
    gf_test_expect_shape(p, 1, (int64_t[]){n});
    cr_assert_eq(gf_dtype_of(p), GF_I64);
    const int64_t *v = gf_data_i64(p);
    cr_assert(n == 0 || v);
    char *seen = calloc((size_t)n + 1, 1);
    for (int64_t i = 0; i < n; i++) {
        cr_assert(v[i] >= 0 && v[i] < n, "value %lld at %lld", (long long)v[i], (long long)i);
        cr_assert(!seen[v[i]], "value %lld twice", (long long)v[i]);
        seen[v[i]] = 1;
    }
    free(seen);
}

Test(tools, randperm_is_a_seeded_permutation) {
    gf_manual_seed(ctx, 5);
    gf_tensor *p = GF_T(ctx, gf_randperm(ctx, 1000));
    expect_permutation(p, 1000);
    int64_t fixed = 0, moved_far = 0;
    for (int64_t i = 0; i < 1000; i++) {
        fixed += gf_data_i64(p)[i] == i;
        moved_far += llabs(gf_data_i64(p)[i] - i) > 100;
    }
    cr_assert_lt(fixed, 10, "%lld fixed points: not shuffled", (long long)fixed);
    cr_assert_gt(moved_far, 600);
    /* the same seed gives the same permutation; the counter moves on */
    gf_tensor *q = GF_T(ctx, gf_randperm(ctx, 1000));
    cr_assert(memcmp(gf_data_i64(p), gf_data_i64(q), 8000) != 0);
    gf_manual_seed(ctx, 5);
    gf_tensor *r = GF_T(ctx, gf_randperm(ctx, 1000));
    cr_assert(memcmp(gf_data_i64(p), gf_data_i64(r), 8000) == 0);
    gf_manual_seed(ctx, 6);
    gf_tensor *s = GF_T(ctx, gf_randperm(ctx, 1000));
    cr_assert(memcmp(gf_data_i64(p), gf_data_i64(s), 8000) != 0);
    expect_permutation(GF_T(ctx, gf_randperm(ctx, 0)), 0);
    expect_permutation(GF_T(ctx, gf_randperm(ctx, 1)), 1);
    cr_assert(gf_is_leaf(p));
    cr_assert(!gf_get_requires_grad(p));
}

Test(tools, randperm_every_arrangement_about_equally_often) {
    /* n = 3: six arrangements; 6000 draws of a fixed seed give each about
     * 1000 (an off-by-one in the swap range would give only two of them) */
    int count[6] = {0};
    gf_manual_seed(ctx, 11);
    for (int k = 0; k < 6000; k++) {
        gf_scope_begin(ctx);
        const int64_t *v = gf_data_i64(gf_randperm(ctx, 3));
        cr_assert_not_null(v);
        int code = (int)(v[0] * 2 + (v[1] > v[2]));
        count[code]++;
        gf_scope_end(ctx);
    }
    for (int c = 0; c < 6; c++)
        cr_assert(count[c] > 850 && count[c] < 1150, "arrangement %d: %d", c, count[c]);
}

Test(tools, randperm_same_for_any_thread_count) {
    int64_t *ref = NULL;
    for (int t = 1; t <= 4; t += 3) {
        gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = t});
        cr_assert_not_null(e);
        gf_ctx *c = gf_ctx_create(e);
        gf_manual_seed(c, 42);
        gf_rand(c, GF_F32, 1, (int64_t[]){7}); /* the counter position matters */
        const int64_t *v = gf_data_i64(gf_randperm(c, 5000));
        cr_assert_not_null(v);
        if (!ref) {
            ref = malloc(5000 * sizeof *ref);
            memcpy(ref, v, 5000 * sizeof *ref);
        } else {
            cr_assert(memcmp(ref, v, 5000 * sizeof *ref) == 0, "%d threads differ", t);
        }
        gf_ctx_destroy(c);
        gf_engine_destroy(e);
    }
    free(ref);
}

Test(tools, randperm_errors) {
    cr_assert_null(gf_randperm(NULL, 3));
    cr_assert_null(gf_randperm(ctx, -1));
    cr_assert_eq(gf_ctx_status(ctx), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_randperm: n = -1 (expected n >= 0)");
}

/* ----------------------------------------------------------- index_select */

/* out = x's slices ix[0..L) along d, x row-major of shape sh. */
static void ref_select(const double *x, int nd, const int64_t *sh, int d, const int64_t *ix,
                       int64_t L, double *out) {
    int64_t outer = 1, S = sh[d], inner = 1;
    for (int i = 0; i < d; i++) outer *= sh[i];
    for (int i = d + 1; i < nd; i++) inner *= sh[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t k = 0; k < inner; k++)
                out[(o * L + i) * inner + k] = x[(o * S + ix[i]) * inner + k];
}

/* index_select(x, dim, ix) against ref_select on x's logical values: shape,
 * dtype and every element exactly. */
static void check_select(gf_tensor *x, int dim, gf_tensor *ix) {
    int nd = gf_ndim(x), d = dim < 0 ? dim + nd : dim;
    int64_t L = gf_numel(ix), sh[GF_MAX_DIMS];
    memcpy(sh, gf_shape(x), sizeof(int64_t) * (size_t)nd);
    double *xv = malloc(sizeof(double) * (size_t)gf_numel(x));
    int64_t *iv = malloc(sizeof(int64_t) * (size_t)(L ? L : 1));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(x, xv, gf_numel(x)));
    for (int64_t i = 0; i < L; i++)
        iv[i] = (int64_t)gf_item(gf_ndim(ix) ? gf_slice(ix, 0, i, i + 1, 1) : ix);
    int64_t osh[GF_MAX_DIMS];
    memcpy(osh, sh, sizeof osh);
    osh[d] = L;
    int64_t n = gf_numel(x) / sh[d] * L;
    double *want = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ref_select(xv, nd, sh, d, iv, L, want);
    gf_tensor *y = GF_T(ctx, gf_index_select(x, dim, ix));
    gf_test_expect_shape(y, nd, osh);
    cr_assert_eq(gf_dtype_of(y), gf_dtype_of(x));
    cr_assert(gf_is_contiguous(y));
    gf_test_expect_close(y, want, n, 0, 0);
    free(xv);
    free(iv);
    free(want);
}

static gf_tensor *rand_f64(int nd, const int64_t *sh) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    double *v = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = urand();
    gf_tensor *t = GF_T(ctx, gf_tensor_f64(ctx, nd, sh, v));
    free(v);
    return t;
}

Test(tools, index_select_forward_every_dim_and_dtype) {
    gf_tensor *x = rand_f64(3, (int64_t[]){4, 5, 6});
    gf_tensor *ix = gf_tensor_i64(ctx, 1, (int64_t[]){5}, (int64_t[]){3, 0, 3, 1, 3});
    for (int dim = -3; dim < 3; dim++) {
        check_select(x, dim, ix);
        check_select(gf_to_dtype(x, GF_F32), dim, ix);
        check_select(gf_to_dtype(gf_mul_scalar(x, 100), GF_I64), dim, ix);
    }
    /* strided inputs: transposed, sliced, expanded; a strided index */
    check_select(gf_transpose(x, 0, 2), 1, ix);
    check_select(gf_slice(x, 2, 1, 6, 2), -1,
                 gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){2, 0}));
    check_select(gf_expand(gf_slice(x, 0, 0, 1, 1), 3, (int64_t[]){4, 5, 6}), 0, ix);
    gf_tensor *long_ix = gf_tensor_i64(ctx, 1, (int64_t[]){6}, (int64_t[]){1, 9, 2, 9, 0, 9});
    check_select(x, 1, gf_slice(long_ix, 0, 0, 6, 2));
    /* a 0-dim index keeps the dim (size 1); an empty one gives size 0 */
    check_select(x, 1, gf_scalar(ctx, GF_I64, 4));
    check_select(x, 0, gf_zeros(ctx, GF_I64, 1, (int64_t[]){0}));
    /* 1-D input */
    check_select(gf_reshape(x, 1, (int64_t[]){120}), 0,
                 gf_tensor_i64(ctx, 1, (int64_t[]){4}, (int64_t[]){119, 0, 119, 60}));
    cr_assert_null(gf_ctx_error(ctx));
}

Test(tools, index_select_batches_with_randperm) {
    /* in-memory batching: rows of a shuffled order, four at a time */
    gf_tensor *data = seq(GF_F32, 2, (int64_t[]){10, 3}, f_id);
    gf_manual_seed(ctx, 3);
    gf_tensor *perm = GF_T(ctx, gf_randperm(ctx, 10));
    const int64_t *p = gf_data_i64(perm);
    for (int64_t b = 0; b < 10; b += 4) {
        int64_t end = b + 4 < 10 ? b + 4 : 10;
        gf_tensor *batch = GF_T(ctx, gf_index_select(data, 0, gf_slice(perm, 0, b, end, 1)));
        double want[12];
        for (int64_t i = b; i < end; i++)
            for (int k = 0; k < 3; k++) want[(i - b) * 3 + k] = (double)(p[i] * 3 + k);
        gf_test_expect_close(batch, want, (end - b) * 3, 0, 0);
    }
}

Test(tools, index_select_gradient_adds_repeated_rows) {
    gf_tensor *x = gf_requires_grad(rand_f64(2, (int64_t[]){5, 3}), true);
    gf_tensor *ix = gf_tensor_i64(ctx, 1, (int64_t[]){5}, (int64_t[]){4, 1, 4, 4, 0});
    double w[15];
    for (int i = 0; i < 15; i++) w[i] = i + 1;
    gf_tensor *wt = gf_tensor_f64(ctx, 2, (int64_t[]){5, 3}, w);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(gf_index_select(x, 0, ix), wt))));
    const int64_t *iv = gf_data_i64(ix);
    double want[15] = {0};
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 3; k++) want[iv[i] * 3 + k] += w[i * 3 + k];
    gf_test_expect_close(gf_grad(x), want, 15, 0, 0);
    /* along the last dim: column j gets the count of j in the index */
    gf_tensor *x2 = gf_requires_grad(rand_f64(2, (int64_t[]){2, 3}), true);
    gf_tensor *ix2 = gf_tensor_i64(ctx, 1, (int64_t[]){4}, (int64_t[]){2, 2, 0, 2});
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_index_select(x2, -1, ix2))));
    gf_test_expect_close(gf_grad(x2), (double[]){1, 0, 3, 1, 0, 3}, 6, 0, 0);
}

typedef struct {
    int dim;
    gf_tensor *ix;
} sel_case;

static gf_tensor *fn_select(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n;
    const sel_case *s = user;
    return gf_index_select(in[0], s->dim, s->ix);
}

/* d/dx sum(index_select(x)^3 * w), kept differentiable (its gradcheck
 * checks index_add's backward). Grad is switched back on around the inner
 * gf_grad_of, as torch.enable_grad would (gradcheck evaluates fn under
 * no_grad for the differences). */
static gf_tensor *fn_select_grad(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)n;
    const sel_case *s = user;
    int depth = 0;
    while (!gf_is_grad_enabled(c)) gf_no_grad_end(c), depth++;
    gf_tensor *x = in[0], *y = gf_index_select(x, s->dim, s->ix);
    gf_tensor *w = gf_add_scalar(gf_mul_scalar(gf_ones_like(y), 0.5), 1.0);
    gf_tensor *g = NULL;
    gf_backward_opts o = {.create_graph = true, .retain_graph = true};
    if (gf_grad_of(gf_sum(gf_mul(gf_mul(gf_mul(y, y), y), w)), 1, &x, &g, &o) != GF_OK) g = NULL;
    while (depth--) gf_no_grad_begin(c);
    return g;
}

Test(tools, index_select_gradcheck_and_second_order) {
    gf_tensor *x = gf_requires_grad(rand_f64(3, (int64_t[]){3, 4, 5}), true);
    gf_tensor *ix = gf_tensor_i64(ctx, 1, (int64_t[]){6}, (int64_t[]){2, 0, 2, 1, 2, 0});
    for (int dim = -1; dim < 3; dim++) {
        sel_case s = {dim, ix};
        gf_status st = gf_gradcheck(ctx, fn_select, 1, &x, &s, 1e-6, 1e-6, 1e-4);
        cr_assert_eq(st, GF_OK, "dim %d: %s", dim, gf_ctx_error(ctx));
        st = gf_gradcheck(ctx, fn_select_grad, 1, &x, &s, 1e-6, 1e-6, 1e-4);
        cr_assert_eq(st, GF_OK, "second order, dim %d: %s", dim, gf_ctx_error(ctx));
    }
}

/* Forward and backward of index_select on a [300, 257] f32 (dim 0) and
 * its transpose (dim 1: one unit per outer row), repeated indices; the raw
 * bytes of the output and both gradients into out. */
static size_t det_run(gf_ctx *c, unsigned char *out) {
    uint64_t st = 99;
    float *xv = malloc(sizeof(float) * 300 * 257), *wv = malloc(sizeof(float) * 400 * 257);
    int64_t iv[400];
    for (int i = 0; i < 300 * 257; i++) xv[i] = (float)gf_test_u01(&st);
    for (int i = 0; i < 400 * 257; i++) wv[i] = (float)(gf_test_u01(&st) - 0.5);
    for (int i = 0; i < 400; i++) iv[i] = (int64_t)(gf_test_u01(&st) * 37) * 8; /* many repeats */
    gf_tensor *ix = gf_tensor_i64(c, 1, (int64_t[]){400}, iv);
    size_t at = 0;
    for (int dim = 0; dim < 2; dim++) {
        gf_scope_begin(c);
        gf_tensor *x = gf_requires_grad(gf_tensor_f32(c, 2, (int64_t[]){300, 257}, xv), true);
        gf_tensor *w = gf_tensor_f32(c, 2, (int64_t[]){400, 257}, wv);
        gf_tensor *xs = dim ? gf_transpose(x, 0, 1) : x, *ws = dim ? gf_transpose(w, 0, 1) : w;
        gf_tensor *y = gf_index_select(xs, dim, ix);
        gf_backward(gf_sum(gf_mul(y, ws)));
        const float *yv = gf_data_f32(y), *gv = gf_data_f32(gf_grad(x));
        cr_assert(yv && gv, "%s", gf_ctx_error(c));
        if (out) memcpy(out + at, yv, 400 * 257 * 4);
        at += 400 * 257 * 4;
        if (out) memcpy(out + at, gv, 300 * 257 * 4);
        at += 300 * 257 * 4;
        gf_scope_end(c);
    }
    free(xv);
    free(wv);
    return at;
}

Test(tools, index_select_backward_in_index_order_for_any_thread_count) {
    size_t n = det_run(ctx, NULL);
    unsigned char *ref = malloc(n), *got = malloc(n);
    det_run(ctx, ref);
    /* the gradient of dim 0 is w's rows added in index order, in f32 */
    {
        uint64_t st = 99;
        float *wv = malloc(sizeof(float) * 400 * 257), *acc = calloc(300 * 257, sizeof(float));
        int64_t iv[400];
        for (int i = 0; i < 300 * 257; i++) gf_test_u01(&st);
        for (int i = 0; i < 400 * 257; i++) wv[i] = (float)(gf_test_u01(&st) - 0.5);
        for (int i = 0; i < 400; i++) iv[i] = (int64_t)(gf_test_u01(&st) * 37) * 8;
        for (int i = 0; i < 400; i++)
            for (int k = 0; k < 257; k++) acc[iv[i] * 257 + k] += wv[i * 257 + k];
        cr_assert(memcmp(ref + 400 * 257 * 4, acc, 300 * 257 * 4) == 0,
                  "dim 0 gradient is not the index-order sum");
        free(wv);
        free(acc);
    }
    for (int t = 1; t <= 4; t += 3)
        for (int eager = 0; eager < 2; eager++) {
            gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = t});
            cr_assert_not_null(e);
            gf_ctx *c = gf_ctx_create(e);
            gf_ctx_set_eager(c, eager);
            cr_assert_eq(det_run(c, got), n);
            cr_assert(memcmp(ref, got, n) == 0, "%d threads, eager %d: bits differ", t, eager);
            gf_ctx_destroy(c);
            gf_engine_destroy(e);
        }
    free(ref);
    free(got);
}

static size_t eager_lazy_run(gf_ctx *c, unsigned char *out) {
    gf_manual_seed(c, 8);
    gf_tensor *x = gf_requires_grad(gf_randn(c, GF_F64, 3, (int64_t[]){4, 3, 5}), true);
    gf_tensor *ix = gf_randperm(c, 5);
    gf_tensor *y = gf_index_select(gf_tanh(x), -1, gf_slice(ix, 0, 1, 5, 1));
    gf_tensor *g = NULL;
    gf_grad_of(gf_sum(gf_mul(y, y)), 1, &x, &g, NULL);
    const double *yv = gf_data_f64(y), *gv = gf_data_f64(g);
    cr_assert(yv && gv, "%s", gf_ctx_error(c));
    if (out) {
        memcpy(out, yv, 48 * 8);
        memcpy(out + 48 * 8, gv, 60 * 8);
    }
    return 108 * 8;
}

Test(tools, index_select_eager_equals_lazy) { gf_test_expect_eager_equals_lazy(eager_lazy_run); }

Test(tools, index_select_errors) {
    gf_tensor *x = rand_f64(2, (int64_t[]){5, 3});
    gf_tensor *ix = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 5});
    cr_assert_null(gf_index_select(x, 0, ix));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_index_select: index[1] = 5 is out of range for dim 0 of size 5");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(x, -1, gf_tensor_i64(ctx, 1, (int64_t[]){1}, (int64_t[]){-1})));
    gf_test_expect_error(ctx, "index[0] = -1 is out of range for dim 1 of size 3");
    gf_ctx_clear_error(ctx);
    /* a pending index is checked when it runs; the output is zeros */
    gf_tensor *pend = gf_add_scalar(gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 2}), 3);
    gf_tensor *y = GF_T(ctx, gf_index_select(x, 0, pend));
    cr_assert_neq(gf_realize(y), GF_OK);
    gf_test_expect_error(ctx, "gf_index_select: index[1] = 5 is out of range for dim 0 of size 5");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(x, 0, gf_tensor_f32(ctx, 1, (int64_t[]){1}, (float[]){0})));
    gf_test_expect_error(ctx, "expected a 1-D i64 tensor");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(x, 0, gf_zeros(ctx, GF_I64, 2, (int64_t[]){1, 1})));
    gf_test_expect_error(ctx, "index [1,1] is i64 (expected a 1-D i64 tensor");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(gf_scalar(ctx, GF_F32, 1), 0, gf_scalar(ctx, GF_I64, 0)));
    gf_test_expect_error(ctx, "input is 0-dim");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(x, 2, gf_scalar(ctx, GF_I64, 0)));
    gf_test_expect_error(ctx, "gf_index_select: dim 2 out of range for a 2-dim tensor");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(NULL, 0, ix));
    gf_test_expect_error(ctx, "gf_index_select: the input is NULL");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(x, 0, NULL));
    gf_test_expect_error(ctx, "gf_index_select: index is NULL");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_index_select(NULL, 0, NULL));
    gf_ctx *other = gf_ctx_create(NULL);
    cr_assert_null(gf_index_select(x, 0, gf_scalar(other, GF_I64, 0)));
    gf_test_expect_error(ctx, "another ctx");
    gf_ctx_destroy(other);
}
