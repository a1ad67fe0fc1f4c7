/*
 * common.h - helpers shared by the Criterion tests.
 */
#ifndef GF_TEST_COMMON_H
#define GF_TEST_COMMON_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow.h"

/* Fails the test with the ctx's error message if status is not GF_OK. */
#define GF_OK_OR_FAIL(ctx, expr)                                                          \
    do {                                                                                  \
        gf_status s_ = (expr);                                                            \
        cr_assert_eq(s_, GF_OK, "%s failed: %s", #expr,                                   \
                     gf_ctx_error(ctx) ? gf_ctx_error(ctx) : gf_strerror(s_));            \
    } while (0)

/* Non-NULL tensor, or fail with the ctx's error. */
#define GF_T(ctx, expr)                                                                   \
    ({                                                                                    \
        gf_tensor *t_ = (expr);                                                           \
        cr_assert_not_null(t_, "%s returned NULL: %s", #expr,                             \
                           gf_ctx_error(ctx) ? gf_ctx_error(ctx) : "(no error)");         \
        t_;                                                                               \
    })

/* Every element of t (any dtype) close to want[]. */
static inline void gf_test_expect_close(gf_tensor *t, const double *want, int64_t n,
                                        double atol, double rtol) {
    cr_assert_not_null(t);
    cr_assert_eq(gf_numel(t), n, "numel %lld, expected %lld", (long long)gf_numel(t),
                 (long long)n);
    double *got = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert_eq(gf_copy_to_f64(t, got, n), GF_OK, "copy failed: %s",
                 gf_ctx_error(gf_ctx_of(t)) ? gf_ctx_error(gf_ctx_of(t)) : "?");
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]),
                  "element %lld: got %.10g, expected %.10g", (long long)i, got[i], want[i]);
    free(got);
}

/* run(ctx, out) computes a fixed set of results on ctx and appends their raw
 * bytes to out (out NULL: only counts them), returning the byte count. The
 * results must be the same bits on a lazy and on an eager ctx. */
static inline void gf_test_expect_eager_equals_lazy(size_t (*run)(gf_ctx *, unsigned char *)) {
    gf_ctx *lazy = gf_ctx_create(NULL), *eager = gf_ctx_create(NULL);
    gf_ctx_set_eager(eager, true);
    size_t n = run(lazy, NULL);
    unsigned char *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
    cr_assert_eq(run(lazy, a), n);
    cr_assert_eq(run(eager, b), n);
    cr_assert(memcmp(a, b, n) == 0, "eager and lazy results differ");
    free(a);
    free(b);
    gf_ctx_destroy(lazy);
    gf_ctx_destroy(eager);
}

/* t's shape equals the given one. */
static inline void gf_test_expect_shape(const gf_tensor *t, int ndim, const int64_t *shape) {
    cr_assert_not_null(t);
    cr_assert_eq(gf_ndim(t), ndim, "ndim %d, expected %d", gf_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        cr_assert_eq(gf_shape(t)[i], shape[i], "dim %d is %lld, expected %lld", i,
                     (long long)gf_shape(t)[i], (long long)shape[i]);
}

/* The ctx's first error mentions every needle (NULL-terminated list). */
static inline void gf_test_expect_error(gf_ctx *ctx, const char *needle) {
    const char *e = gf_ctx_error(ctx);
    cr_assert_not_null(e, "expected an error mentioning \"%s\", got none", needle);
    cr_assert(strstr(e, needle) != NULL, "error \"%s\" does not mention \"%s\"", e, needle);
}

/* A deterministic f64 tensor with values in [lo, hi). */
static inline gf_tensor *gf_test_uniform(gf_ctx *ctx, int ndim, const int64_t *shape,
                                         double lo, double hi) {
    gf_tensor *u = gf_rand(ctx, GF_F64, ndim, shape);
    return gf_add_scalar(gf_mul_scalar(u, hi - lo), lo);
}

/* One step of the tutorial's linear regression loop (API.md): in a scope,
 * forward, backward, SGD update under no_grad, zero_grad. Returns the loss. */
static inline double gf_test_linreg_step(gf_ctx *c, gf_tensor *in, gf_tensor *tg, gf_tensor *w,
                                         gf_tensor *b) {
    gf_scope_begin(c);
    gf_tensor *loss = gf_mean(gf_pow_scalar(gf_sub(gf_add(gf_matmul(in, w), b), tg), 2));
    gf_backward(loss);
    gf_no_grad_begin(c);
    gf_axpy_(w, -0.01, gf_grad(w));
    gf_axpy_(b, -0.01, gf_grad(b));
    gf_zero_grad(w);
    gf_zero_grad(b);
    gf_no_grad_end(c);
    double l = gf_item(loss);
    gf_scope_end(c);
    return l;
}

#endif /* GF_TEST_COMMON_H */
