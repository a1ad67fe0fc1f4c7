/*
 * test_overflow.c - sizes and integer semantics: shapes whose element count,
 * strides or bytes do not fit in int64 are errors at every op that makes a
 * shape (creation, views, cat, matmul, one_hot, broadcasting); slice counts
 * without overflow; i64 arithmetic wraps modulo 2^64 (lazy and eager);
 * floats that i64 cannot hold are errors, not INT64_MIN. Every error test
 * also checks that the ctx works again once the error is cleared.
 */
#include "common.h"

static gf_ctx *ctx;
static void setup(void) { ctx = gf_ctx_create(NULL); }
static void teardown(void) { gf_ctx_destroy(ctx); }
TestSuite(overflow, .init = setup, .fini = teardown);

#define P31 (INT64_C(1) << 31)
#define P40 (INT64_C(1) << 40)
#define P60 (INT64_C(1) << 60)
#define P62 (INT64_C(1) << 62)

/* c holds an error of status st whose message names op and mentions what;
 * cleared, c computes again (an op, its values checked). */
static void expect_error_then_usable(gf_ctx *c, gf_status st, const char *op, const char *what) {
    cr_assert_eq(gf_ctx_status(c), st, "status %d (%s), expected %d", (int)gf_ctx_status(c),
                 gf_ctx_error(c) ? gf_ctx_error(c) : "no error", (int)st);
    gf_test_expect_error(c, op);
    if (what) gf_test_expect_error(c, what);
    gf_ctx_clear_error(c);
    cr_assert_null(gf_ctx_error(c));
    gf_scope_begin(c);
    gf_tensor *x = GF_T(c, gf_tensor_f64(c, 1, (int64_t[]){3}, (double[]){1, 2, 3}));
    gf_tensor *y = GF_T(c, gf_add_scalar(gf_mul(x, x), 1));
    gf_test_expect_close(y, (double[]){2, 5, 10}, 3, 0, 0);
    cr_assert_eq(gf_ctx_status(c), GF_OK);
    gf_scope_end(c);
}

/* A view of a one-element f32 tensor with the given shape (stride 0
 * everywhere): huge shapes without memory. */
static gf_tensor *huge_view(gf_ctx *c, int ndim, const int64_t *shape) {
    int64_t ones[GF_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1};
    gf_tensor *one = GF_T(c, gf_ones(c, GF_F32, ndim, ones));
    return GF_T(c, gf_expand(one, ndim, shape));
}

/* ------------------------------------------------------------ finding A */

/* 2^31 x 2^31 f32 is 2^62 elements (fits) but 2^64 bytes (wrapped to 0,
 * then the fill wrote past a 64-byte buffer). */
Test(overflow, a_byte_count_of_creation_does_not_wrap) {
    const int64_t sh[2] = {P31, P31};
    int64_t live = gf_ctx_live_tensors(ctx);
    cr_assert_null(gf_zeros(ctx, GF_F32, 2, sh));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_zeros", "[2147483648,2147483648]");
    cr_assert_null(gf_ones(ctx, GF_F32, 2, sh));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_ones", "f32");
    cr_assert_null(gf_full(ctx, GF_F32, 2, sh, 2.0));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_full", "[2147483648,2147483648]");
    cr_assert_null(gf_rand(ctx, GF_F32, 2, sh));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_rand", NULL);
    cr_assert_null(gf_randn(ctx, GF_F32, 2, sh));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_randn", NULL);
    float dummy = 0;
    cr_assert_null(gf_tensor_f32(ctx, 2, sh, &dummy));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_tensor_f32", NULL);
    /* 2^61 f64 elements: 2^64 bytes. */
    cr_assert_null(gf_arange(ctx, GF_F64, INT64_C(1) << 61));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_arange", "[2305843009213693952]");
    cr_assert_eq(gf_ctx_live_tensors(ctx), live, "a failed creation left tensors behind");
}

/* ------------------------------------------------------------ finding B */

Test(overflow, b_numel_overflow_is_an_error) {
    /* 2^80 elements used to wrap to numel 0 with no error. */
    cr_assert_null(gf_zeros(ctx, GF_F64, 2, (int64_t[]){P40, P40}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_zeros", "[1099511627776,1099511627776]");
    cr_assert_null(gf_zeros(ctx, GF_I64, 2, (int64_t[]){INT64_C(1) << 32, INT64_C(1) << 32}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_zeros", "i64");
    /* An empty tensor whose other sizes make its strides overflow. */
    cr_assert_null(gf_zeros(ctx, GF_F32, 3, (int64_t[]){0, P40, P40}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_zeros", "[0,1099511627776,1099511627776]");
    /* Negative sizes stay GF_ESHAPE. */
    cr_assert_null(gf_zeros(ctx, GF_F32, 2, (int64_t[]){2, -3}));
    expect_error_then_usable(ctx, GF_ESHAPE, "gf_zeros", "negative size -3");
    /* 2^60 f32 elements (2^62 bytes) are still a valid shape, as a view. */
    gf_tensor *v = huge_view(ctx, 2, (int64_t[]){INT64_C(1) << 30, INT64_C(1) << 30});
    cr_assert_eq(gf_numel(v), INT64_C(1) << 60);
}

/* one_hot's [labels..., C] with C = 2^62 and 4 labels wrapped to 0 elements. */
static void one_hot_overflow(gf_ctx *c) {
    gf_tensor *l = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){4}, (int64_t[]){0, 1, 2, 3}));
    cr_assert_null(gf_one_hot(l, P62, GF_F32));
    expect_error_then_usable(c, GF_ENOMEM, "gf_one_hot", "[4,4611686018427387904]");
    /* One label: 2^62 f32 elements fit, their 2^64 bytes do not. */
    gf_tensor *l1 = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){5}));
    cr_assert_null(gf_one_hot(l1, P62, GF_F32));
    expect_error_then_usable(c, GF_ENOMEM, "gf_one_hot", NULL);
    gf_tensor *ok = GF_T(c, gf_one_hot(l, 4, GF_I64));
    gf_test_expect_close(ok, (double[]){1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, 16, 0,
                         0);
}

Test(overflow, b_one_hot_lazy) { one_hot_overflow(ctx); }
Test(overflow, b_one_hot_eager) {
    gf_ctx_set_eager(ctx, true);
    one_hot_overflow(ctx);
}

Test(overflow, b_expand_overflow) {
    gf_tensor *x = GF_T(ctx, gf_ones(ctx, GF_F32, 2, (int64_t[]){1, 1}));
    cr_assert_null(gf_expand(x, 2, (int64_t[]){P40, P40}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_expand", "[1099511627776,1099511627776]");
    /* 2^62 f32 elements: numel fits, bytes do not. */
    cr_assert_null(gf_expand(x, 2, (int64_t[]){P31, P31}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_expand", NULL);
    cr_assert_null(gf_expand(x, 3, (int64_t[]){P40, P40, 1}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_expand", NULL);
    gf_tensor *e = GF_T(ctx, gf_expand(x, 2, (int64_t[]){2, 3}));
    gf_test_expect_close(e, (double[]){1, 1, 1, 1, 1, 1}, 6, 0, 0);
}

Test(overflow, b_reshape_overflow) {
    gf_tensor *e = GF_T(ctx, gf_zeros(ctx, GF_F32, 1, (int64_t[]){0}));
    /* 2^64 elements wrapped to 0 == numel: accepted before. */
    cr_assert_null(gf_reshape(e, 2, (int64_t[]){INT64_C(1) << 32, INT64_C(1) << 32}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_reshape", "[4294967296,4294967296]");
    cr_assert_null(gf_reshape(e, 3, (int64_t[]){P40, P40, 0}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_reshape", NULL);
    /* -1 inference: the known sizes' product overflows. */
    cr_assert_null(gf_reshape(e, 3, (int64_t[]){INT64_C(1) << 32, INT64_C(1) << 32, -1}));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_reshape", "[4294967296,4294967296,-1]");
    /* unsqueeze of a view at the limit goes through reshape's check. */
    gf_tensor *v = huge_view(ctx, 1, (int64_t[]){P60});
    gf_tensor *u = GF_T(ctx, gf_unsqueeze(v, 0));
    cr_assert_eq(gf_numel(u), P60);
    gf_tensor *x = GF_T(ctx, gf_arange(ctx, GF_I64, 6));
    gf_tensor *r = GF_T(ctx, gf_reshape(x, 2, (int64_t[]){-1, 3}));
    gf_test_expect_shape(r, 2, (int64_t[]){2, 3});
    gf_test_expect_close(r, (double[]){0, 1, 2, 3, 4, 5}, 6, 0, 0);
}

/* Python: list(range(5))[0:5:2**63-1] == [0]; the count used to be
 * (end - start + step - 1) / step, which overflows. */
Test(overflow, b_slice_step_near_int64_max) {
    gf_tensor *x = GF_T(ctx, gf_arange(ctx, GF_I64, 5));
    gf_tensor *a = GF_T(ctx, gf_slice(x, 0, 0, 5, INT64_MAX));
    gf_test_expect_shape(a, 1, (int64_t[]){1});
    gf_test_expect_close(a, (double[]){0}, 1, 0, 0);
    gf_tensor *b = GF_T(ctx, gf_slice(x, 0, 2, INT64_MAX, INT64_MAX - 1));
    gf_test_expect_close(b, (double[]){2}, 1, 0, 0);
    gf_tensor *c = GF_T(ctx, gf_slice(x, 0, -3, INT64_MAX, INT64_MAX));
    gf_test_expect_close(c, (double[]){2}, 1, 0, 0);
    gf_tensor *d = GF_T(ctx, gf_slice(x, 0, INT64_MIN, INT64_MAX, 2));
    gf_test_expect_close(d, (double[]){0, 2, 4}, 3, 0, 0);
    gf_tensor *e = GF_T(ctx, gf_slice(x, 0, 5, INT64_MAX, INT64_MAX));
    cr_assert_eq(gf_numel(e), 0);
    cr_assert_eq(gf_ctx_status(ctx), GF_OK, "%s", gf_ctx_error(ctx));
}

/* The gradient of such a slice (slice_scatter) and its own gradient (a
 * slice again, whose end used to be start + len * step). */
Test(overflow, b_slice_huge_step_backward) {
    gf_tensor *x = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){5}, (double[]){1, 2, 3, 4, 5}));
    gf_requires_grad(x, true);
    gf_tensor *s = GF_T(ctx, gf_slice(x, 0, 3, INT64_MAX, INT64_MAX));
    gf_tensor *loss = GF_T(ctx, gf_sum(gf_mul(s, s)));
    gf_tensor *gx = NULL;
    gf_backward_opts o = {.create_graph = true};
    GF_OK_OR_FAIL(ctx, gf_grad_of(loss, 1, &x, &gx, &o));
    gf_test_expect_close(gx, (double[]){0, 0, 0, 8, 0}, 5, 0, 0);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gx)));
    gf_test_expect_close(gf_grad(x), (double[]){0, 0, 0, 2, 0}, 5, 0, 0);
}

Test(overflow, cat_sizes_overflow) {
    gf_tensor *v = huge_view(ctx, 1, (int64_t[]){P60});
    gf_tensor *eight[8] = {v, v, v, v, v, v, v, v};
    /* 8 * 2^60 = 2^63: the sum itself does not fit. */
    cr_assert_null(gf_cat(8, eight, 0));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_cat", "[1152921504606846976]");
    /* 4 * 2^60 = 2^62 f32 elements: 2^64 bytes. */
    cr_assert_null(gf_cat(4, eight, 0));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_cat", "[4611686018427387904]");
    gf_tensor *a = GF_T(ctx, gf_arange(ctx, GF_I64, 2));
    gf_tensor *c = GF_T(ctx, gf_cat(2, (gf_tensor *[]){a, a}, 0));
    gf_test_expect_close(c, (double[]){0, 1, 0, 1}, 4, 0, 0);
}

Test(overflow, matmul_output_overflow) {
    gf_tensor *a = huge_view(ctx, 2, (int64_t[]){P31, 1});
    gf_tensor *b = huge_view(ctx, 2, (int64_t[]){1, P31});
    gf_tensor *ba = huge_view(ctx, 4, (int64_t[]){P40, 1, 2, 3});
    gf_tensor *bb = huge_view(ctx, 4, (int64_t[]){1, P40, 3, 2});
    int64_t live = gf_ctx_live_tensors(ctx);
    /* [2^31, 2^31] f32: 2^64 bytes. */
    cr_assert_null(gf_matmul(a, b));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_matmul", "[2147483648,2147483648]");
    /* Batch dims [2^40, 1] and [1, 2^40] broadcast to 2^80 batches. */
    cr_assert_null(gf_matmul(ba, bb));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_matmul", "[1099511627776,1099511627776,2,2]");
    cr_assert_eq(gf_ctx_live_tensors(ctx), live, "a failed matmul left tensors behind");
    gf_tensor *m = GF_T(ctx, gf_tensor_f64(ctx, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4}));
    gf_test_expect_close(gf_matmul(m, m), (double[]){7, 10, 15, 22}, 4, 0, 0);
}

Test(overflow, broadcast_overflow) {
    gf_tensor *a = huge_view(ctx, 2, (int64_t[]){P40, 1});
    gf_tensor *b = huge_view(ctx, 2, (int64_t[]){1, P40});
    cr_assert_null(gf_add(a, b));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_add", "[1099511627776,1099511627776]");
    /* mse_loss's output is 0-dim; the shape its kernel walks is not. */
    cr_assert_null(gf_mse_loss(a, b));
    expect_error_then_usable(ctx, GF_ENOMEM, "gf_mse_loss", "[1099511627776,1099511627776]");
}

/* ------------------------------------------------------------ finding C */

/* 3^40 modulo 2^64, as two's complement. */
static int64_t pow3_40_wrapped(void) {
    uint64_t r = 1;
    for (int i = 0; i < 40; i++) r *= 3;
    return (int64_t)r;
}

static int64_t item_i64(gf_tensor *t) {
    cr_assert_not_null(t, "%s", gf_ctx_error(ctx) ? gf_ctx_error(ctx) : "NULL tensor");
    cr_assert_eq(gf_dtype_of(t), GF_I64);
    const int64_t *p = gf_data_i64(t);
    cr_assert_not_null(p, "%s", gf_ctx_error(gf_ctx_of(t)));
    return p[0];
}

/* Every i64 op that can overflow, with its wrapped result. Under UBSan a
 * signed overflow in a kernel aborts the test. */
static void i64_wraps(gf_ctx *c) {
    gf_tensor *mx = GF_T(c, gf_scalar(c, GF_I64, 0x1p63 - 1024));
    /* a tensor's values are exact: INT64_MAX needs the i64 constructor */
    gf_tensor *max = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){INT64_MAX}));
    gf_tensor *min = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){INT64_MIN}));
    gf_tensor *one = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){1}));
    gf_tensor *p62 = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){P62}));
    cr_assert_eq(item_i64(mx), INT64_C(9223372036854774784));
    cr_assert_eq(item_i64(gf_add_scalar(max, 1)), INT64_MIN);
    cr_assert_eq(item_i64(gf_add_scalar(mx, 0x1p63 - 1024)), -2048); /* 2^64 - 2048 */
    cr_assert_eq(item_i64(gf_add(max, one)), INT64_MIN);
    cr_assert_eq(item_i64(gf_sub(min, one)), INT64_MAX);
    cr_assert_eq(item_i64(gf_mul(p62, gf_add_scalar(one, 3))), 0);
    cr_assert_eq(item_i64(gf_mul_scalar(p62, 2)), INT64_MIN);
    cr_assert_eq(item_i64(gf_mul_scalar(max, -1)), -INT64_MAX);
    cr_assert_eq(item_i64(gf_neg(min)), INT64_MIN);
    cr_assert_eq(item_i64(gf_abs(min)), INT64_MIN);
    cr_assert_eq(item_i64(gf_abs(gf_add_scalar(min, 1))), INT64_MAX);
    /* pow: 65536^2 fits, but squaring once more than needed overflowed */
    gf_tensor *b16 = GF_T(c, gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){65536}));
    cr_assert_eq(item_i64(gf_pow_scalar(b16, 2)), INT64_C(4294967296));
    gf_tensor *two = GF_T(c, gf_add_scalar(one, 1));
    cr_assert_eq(item_i64(gf_pow(b16, two)), INT64_C(4294967296));
    gf_tensor *three = GF_T(c, gf_add_scalar(one, 2));
    cr_assert_eq(item_i64(gf_pow_scalar(three, 40)), pow3_40_wrapped());
    gf_tensor *forty = GF_T(c, gf_mul_scalar(one, 40));
    cr_assert_eq(item_i64(gf_pow(three, forty)), pow3_40_wrapped());
    cr_assert_eq(item_i64(gf_pow_scalar(min, 2)), 0);
    /* sums wrap too (accumulated in uint64) */
    gf_tensor *mm = GF_T(c, gf_cat(2, (gf_tensor *[]){max, one}, 0));
    cr_assert_eq(item_i64(gf_sum(mm)), INT64_MIN);
    cr_assert_eq(item_i64(gf_sum_dim(mm, 0, false)), INT64_MIN);
    /* in place: sub_, axpy_ and mul_scalar_ on i64 wrap as well */
    gf_tensor *y = GF_T(c, gf_clone(min));
    GF_OK_OR_FAIL(c, gf_sub_(y, one));
    cr_assert_eq(item_i64(y), INT64_MAX);
    GF_OK_OR_FAIL(c, gf_axpy_(y, 2, one));
    cr_assert_eq(item_i64(y), INT64_MIN + 1);
    GF_OK_OR_FAIL(c, gf_mul_scalar_(y, -1));
    cr_assert_eq(item_i64(y), INT64_MAX);
    GF_OK_OR_FAIL(c, gf_mul_scalar_(y, 4));
    cr_assert_eq(item_i64(y), -4);
    cr_assert_eq(gf_ctx_status(c), GF_OK, "%s", gf_ctx_error(c));
}

Test(overflow, c_i64_wraps_lazy) { i64_wraps(ctx); }
Test(overflow, c_i64_wraps_eager) {
    gf_ctx_set_eager(ctx, true);
    i64_wraps(ctx);
}

/* A long i64 sum over a strided view, lazily, through the kernels' tiles. */
Test(overflow, c_i64_long_sum_wraps) {
    enum { N = 100000 };
    int64_t *v = malloc(N * sizeof *v);
    uint64_t want = 0;
    for (int i = 0; i < N; i++) {
        v[i] = INT64_MAX - i;
        want += (uint64_t)v[i];
    }
    gf_tensor *t = GF_T(ctx, gf_tensor_i64(ctx, 2, (int64_t[]){N / 2, 2}, v));
    free(v);
    cr_assert_eq(item_i64(gf_sum(t)), (int64_t)want);
    uint64_t want0 = 0;
    const int64_t *p = gf_data_i64(t);
    for (int i = 0; i < N; i += 2) want0 += (uint64_t)p[i];
    gf_tensor *col = GF_T(ctx, gf_sum_dim(gf_transpose(t, 0, 1), 1, false));
    cr_assert_eq(item_i64(col), (int64_t)want0);
}

/* ------------------------------------------------------------ finding D */

Test(overflow, d_full_i64_out_of_range) {
    cr_assert_null(gf_full(ctx, GF_I64, 1, (int64_t[]){2}, 1e300));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_full", "1e+300");
    cr_assert_null(gf_scalar(ctx, GF_I64, NAN));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_scalar", "nan");
    cr_assert_null(gf_full(ctx, GF_I64, 0, NULL, INFINITY));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_full", "inf");
    cr_assert_null(gf_full(ctx, GF_I64, 0, NULL, 0x1p63));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_full", "i64");
    /* -2^63 is exactly INT64_MIN; fractions truncate toward zero (a C
     * cast, torch.full with an integer dtype). */
    cr_assert_eq(item_i64(gf_full(ctx, GF_I64, 1, (int64_t[]){1}, -0x1p63)), INT64_MIN);
    cr_assert_eq(item_i64(gf_full(ctx, GF_I64, 1, (int64_t[]){1}, -2.7)), -2);
    /* a float tensor holds NaN */
    gf_tensor *f = GF_T(ctx, gf_full(ctx, GF_F64, 1, (int64_t[]){1}, NAN));
    cr_assert(isnan(gf_data_f64(f)[0]));
    cr_assert_eq(gf_ctx_status(ctx), GF_OK);
}

/* NaN in a pending f64 tensor: the cast reports it when it runs. */
static void to_dtype_nan_pending(gf_ctx *c) {
    gf_tensor *x = GF_T(c, gf_tensor_f64(c, 1, (int64_t[]){3}, (double[]){1, NAN, 3}));
    gf_tensor *p = GF_T(c, gf_mul_scalar(x, 2)); /* pending: its values are unknown yet */
    gf_tensor *t = GF_T(c, gf_to_dtype(p, GF_I64));
    cr_assert_eq(gf_ctx_status(c), GF_OK, "recording the cast failed: %s", gf_ctx_error(c));
    cr_assert_null(gf_data_i64(t));
    expect_error_then_usable(c, GF_EINVAL, "gf_to_dtype", "element 1 of f64 tensor [3] is nan");
    gf_tensor *f = GF_T(c, gf_tensor_f32(c, 1, (int64_t[]){2}, (float[]){2, -INFINITY}));
    gf_tensor *t2 = GF_T(c, gf_to_dtype(gf_add_scalar(f, 1), GF_I64));
    cr_assert_eq(gf_realize(t2), GF_EINVAL);
    expect_error_then_usable(c, GF_EINVAL, "gf_to_dtype", "-inf");
    /* values that fit convert (truncated toward zero) */
    gf_tensor *g = GF_T(c, gf_tensor_f64(c, 1, (int64_t[]){3}, (double[]){-2.5, 0x1p62, 7.9}));
    gf_tensor *ok = GF_T(c, gf_to_dtype(gf_mul_scalar(g, 1), GF_I64));
    const int64_t *d = gf_data_i64(ok);
    cr_assert_not_null(d, "%s", gf_ctx_error(c));
    cr_assert_eq(d[0], -2);
    cr_assert_eq(d[1], P62);
    cr_assert_eq(d[2], 7);
}

Test(overflow, d_to_dtype_nan_lazy) { to_dtype_nan_pending(ctx); }

/* Computed inputs (leaves, or anything in eager mode) are checked at the
 * call: NULL at once. */
static void to_dtype_computed(gf_ctx *c) {
    gf_tensor *x = GF_T(c, gf_tensor_f64(c, 1, (int64_t[]){2}, (double[]){1, 1e19}));
    cr_assert_null(gf_to_dtype(x, GF_I64));
    expect_error_then_usable(c, GF_EINVAL, "gf_to_dtype", "element 1 of f64 tensor [2]");
    /* a strided view: the index is row-major in the view */
    gf_tensor *m = GF_T(c, gf_tensor_f64(c, 2, (int64_t[]){2, 2}, (double[]){1, 2, NAN, 4}));
    cr_assert_null(gf_to_dtype(gf_transpose(m, 0, 1), GF_I64));
    expect_error_then_usable(c, GF_EINVAL, "gf_to_dtype", "element 1 of f64 tensor [2,2] is nan");
}

Test(overflow, d_to_dtype_computed_lazy) { to_dtype_computed(ctx); }
Test(overflow, d_to_dtype_eager) {
    gf_ctx_set_eager(ctx, true);
    to_dtype_computed(ctx);
    gf_tensor *x = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, NAN, 3}));
    cr_assert_null(gf_to_dtype(gf_mul_scalar(x, 2), GF_I64));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_to_dtype", "nan");
}

/* Scalars with i64 tensors: a fraction (or NaN, inf) gives f32 as before;
 * an integer beyond i64 is an error; the exact limit 2^63 - 1024 (a double
 * below 2^63) stays i64. */
Test(overflow, d_scalar_ops_on_i64) {
    gf_tensor *z = GF_T(ctx, gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 2}));
    cr_assert_null(gf_add_scalar(z, 1e19));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_add_scalar", "1e+19");
    cr_assert_null(gf_mul_scalar(z, -1e300));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_mul_scalar", "[2]");
    cr_assert_null(gf_pow_scalar(z, 1e20));
    expect_error_then_usable(ctx, GF_EINVAL, "gf_pow_scalar", "i64");
    gf_tensor *h = GF_T(ctx, gf_add_scalar(z, 0.5));
    cr_assert_eq(gf_dtype_of(h), GF_F32);
    gf_test_expect_close(h, (double[]){1.5, 2.5}, 2, 0, 0);
    gf_tensor *n = GF_T(ctx, gf_add_scalar(z, NAN));
    cr_assert_eq(gf_dtype_of(n), GF_F32);
    cr_assert(isnan(gf_data_f32(n)[0]));
    gf_tensor *big = GF_T(ctx, gf_add_scalar(gf_sub(z, z), 0x1p63 - 1024));
    cr_assert_eq(gf_dtype_of(big), GF_I64);
    cr_assert_eq(gf_data_i64(big)[1], INT64_C(9223372036854774784));
}

/* In-place on an i64 destination: fill_ takes any value i64 holds (a
 * fraction truncated, as gf_full); mul_scalar_ and axpy_ need an integer;
 * copy_ from floats that do not fit is an error. Nothing is written then. */
Test(overflow, d_inplace_on_i64) {
    gf_tensor *y = GF_T(ctx, gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){5, 6}));
    cr_assert_eq(gf_fill_(y, NAN), GF_EINVAL);
    expect_error_then_usable(ctx, GF_EINVAL, "gf_fill_", "nan");
    cr_assert_eq(gf_fill_(y, -1e19), GF_EINVAL);
    expect_error_then_usable(ctx, GF_EINVAL, "gf_fill_", "[2]");
    cr_assert_eq(gf_mul_scalar_(y, 0.5), GF_EINVAL);
    expect_error_then_usable(ctx, GF_EINVAL, "gf_mul_scalar_", "an integer");
    gf_tensor *one = GF_T(ctx, gf_ones(ctx, GF_I64, 1, (int64_t[]){2}));
    cr_assert_eq(gf_axpy_(y, 1.5, one), GF_EINVAL);
    expect_error_then_usable(ctx, GF_EINVAL, "gf_axpy_", "1.5");
    gf_tensor *src = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){3, NAN}));
    cr_assert_eq(gf_copy_(y, src), GF_EINVAL);
    expect_error_then_usable(ctx, GF_EINVAL, "gf_copy_", "element 1 of the f64 source [2] is nan");
    gf_tensor *inf = GF_T(ctx, gf_tensor_f32(ctx, 1, (int64_t[]){1}, (float[]){INFINITY}));
    cr_assert_eq(gf_sub_(y, inf), GF_EINVAL);
    expect_error_then_usable(ctx, GF_EINVAL, "gf_sub_", "inf");
    const int64_t *d = gf_data_i64(y);
    cr_assert_eq(d[0], 5, "a refused update wrote %lld", (long long)d[0]);
    cr_assert_eq(d[1], 6);
    GF_OK_OR_FAIL(ctx, gf_fill_(y, 2.9));
    cr_assert_eq(gf_data_i64(y)[0], 2);
    gf_tensor *ok = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){-7.5, 0x1p62}));
    GF_OK_OR_FAIL(ctx, gf_copy_(y, ok));
    cr_assert_eq(gf_data_i64(y)[0], -7);
    cr_assert_eq(gf_data_i64(y)[1], P62);
}
