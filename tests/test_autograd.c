/*
 * test_autograd.c - autograd semantics: accumulation, retain_graph, freed
 * graphs, no_grad, detach, higher order, grad_of, in-place-after-save,
 * eager vs lazy, the tutorial's two examples.
 */
#include "common.h"

static gf_ctx *ctx;
static void setup(void) { ctx = gf_ctx_create(NULL); }
static void teardown(void) { gf_ctx_destroy(ctx); }
TestSuite(autograd, .init = setup, .fini = teardown);

static gf_tensor *vec3(double a, double b, double c) {
    return gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){a, b, c});
}

Test(autograd, seed_example_gradient_is_2x) {
    gf_tensor *x =
        gf_requires_grad(gf_tensor_f32(ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3}), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_pow_scalar(x, 2))));
    const float *g = gf_data_f32(gf_grad(x));
    cr_assert_not_null(g);
    cr_assert_eq(g[0], 2.0f);
    cr_assert_eq(g[1], 4.0f);
    cr_assert_eq(g[2], 6.0f);
}

Test(autograd, grad_accumulates_across_backwards_until_zeroed) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(x, x))));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul_scalar(x, 3))));
    gf_test_expect_close(gf_grad(x), (double[]){5, 7, 9}, 3, 0, 0);
    gf_zero_grad(x);
    gf_test_expect_close(gf_grad(x), (double[]){0, 0, 0}, 3, 0, 0);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(x)));
    gf_test_expect_close(gf_grad(x), (double[]){1, 1, 1}, 3, 0, 0);
}

Test(autograd, fan_out_contributions_sum) {
    /* y = x*x + x*3 + x: dy/dx = 2x + 4 */
    gf_tensor *x = gf_requires_grad(vec3(1, -2, 0.5), true);
    gf_tensor *y = gf_add(gf_add(gf_mul(x, x), gf_mul_scalar(x, 3)), x);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(y)));
    gf_test_expect_close(gf_grad(x), (double[]){6, 0, 5}, 3, 1e-12, 0);
}

Test(autograd, retain_graph_allows_second_backward) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *l = gf_sum(gf_mul(x, x));
    gf_backward_opts o = {.retain_graph = true};
    GF_OK_OR_FAIL(ctx, gf_backward_ex(l, &o));
    GF_OK_OR_FAIL(ctx, gf_backward_ex(l, NULL));
    gf_test_expect_close(gf_grad(x), (double[]){4, 8, 12}, 3, 0, 0);
}

Test(autograd, second_backward_through_freed_graph_is_an_error) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *l = gf_sum(gf_mul(x, x));
    GF_OK_OR_FAIL(ctx, gf_backward(l));
    cr_assert_eq(gf_backward(l), GF_ESTATE);
    gf_test_expect_error(ctx, "second time");
    gf_test_expect_error(ctx, "retain_graph");
    /* The first gradient is unchanged. */
    gf_test_expect_close(gf_grad(x), (double[]){2, 4, 6}, 3, 0, 0);
}

Test(autograd, no_grad_records_nothing_and_nests) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_no_grad_begin(ctx);
    gf_no_grad_begin(ctx);
    gf_tensor *y = gf_mul(x, x);
    gf_no_grad_end(ctx);
    gf_tensor *z = gf_mul(x, x);
    gf_no_grad_end(ctx);
    cr_assert_not(gf_get_requires_grad(y));
    cr_assert_not(gf_get_requires_grad(z));
    cr_assert(gf_is_grad_enabled(ctx));
    cr_assert(gf_get_requires_grad(gf_mul(x, x)));
    cr_assert_eq(gf_backward(gf_sum(y)), GF_ESTATE);
    gf_test_expect_error(ctx, "does not require grad");
    gf_test_expect_close(y, (double[]){1, 4, 9}, 3, 0, 0);
}

Test(autograd, unbalanced_no_grad_end_is_an_error) {
    gf_no_grad_end(ctx);
    gf_test_expect_error(ctx, "gf_no_grad_end");
    cr_assert(gf_is_grad_enabled(ctx));
}

Test(autograd, detach_stops_gradient_and_shares_storage) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *d = gf_detach(x);
    cr_assert_not(gf_get_requires_grad(d));
    /* y = x * detach(x): dy/dx = detach(x) */
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(x, d))));
    gf_test_expect_close(gf_grad(x), (double[]){1, 2, 3}, 3, 0, 0);
    cr_assert_eq(gf_data_f64(d), gf_data_f64(x), "detach shares storage");
}

Test(autograd, third_power_second_derivative_is_6x) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, -3), true);
    gf_tensor *y = gf_sum(gf_pow_scalar(x, 3));
    gf_tensor *g1 = NULL;
    gf_backward_opts o = {.create_graph = true};
    GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &x, &g1, &o));
    gf_test_expect_close(g1, (double[]){3, 12, 27}, 3, 1e-12, 1e-12);
    cr_assert(gf_get_requires_grad(g1));
    gf_tensor *g2 = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(g1), 1, &x, &g2, NULL));
    gf_test_expect_close(g2, (double[]){6, 12, -18}, 3, 1e-12, 1e-12);
}

Test(autograd, create_graph_backward_then_backward_of_grad) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_backward_opts o = {.create_graph = true};
    GF_OK_OR_FAIL(ctx, gf_backward_ex(gf_sum(gf_pow_scalar(x, 3)), &o));
    gf_tensor *g = gf_grad(x); /* 3x^2, with a graph */
    gf_test_expect_close(g, (double[]){3, 12, 27}, 3, 1e-12, 1e-12);
    gf_tensor *gx = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(g), 1, &x, &gx, NULL));
    gf_test_expect_close(gx, (double[]){6, 12, 18}, 3, 1e-12, 1e-12);
}

/* A plain backward after a create_graph one adds into the value of .grad (as
 * PyTorch does) and leaves a plain .grad without a graph. */
Test(autograd, plain_backward_after_create_graph_accumulates_and_drops_graph) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_backward_opts o = {.create_graph = true};
    GF_OK_OR_FAIL(ctx, gf_backward_ex(gf_sum(gf_pow_scalar(x, 3)), &o));
    cr_assert(gf_get_requires_grad(gf_grad(x)));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_pow_scalar(x, 3))));
    gf_test_expect_close(gf_grad(x), (double[]){6, 24, 54}, 3, 1e-12, 1e-12);
    cr_assert(!gf_get_requires_grad(gf_grad(x)), "a plain backward leaves a plain .grad");
    /* and after gf_zero_grad replaced a graph .grad by zeros */
    GF_OK_OR_FAIL(ctx, gf_backward_ex(gf_sum(gf_pow_scalar(x, 3)), &o));
    gf_zero_grad(x);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul_scalar(x, 2))));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(x)));
    gf_test_expect_close(gf_grad(x), (double[]){3, 3, 3}, 3, 0, 0);
}

/* The accumulation into .grad runs inside the backward's parallel run; a
 * pending (lazy) reader of .grad recorded before the backward still sees the
 * old value, and one recorded after sees the new. */
Test(autograd, pending_reader_of_grad_sees_value_before_backward) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(x, x))));
    gf_tensor *before = gf_mul_scalar(gf_grad(x), 1);
    gf_tensor *view = gf_slice(gf_grad(x), 0, 1, 3, 1); /* a view of .grad, pending copy */
    gf_tensor *vcopy = gf_mul_scalar(view, 1);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(x, x))));
    gf_tensor *after = gf_mul_scalar(gf_grad(x), 1);
    gf_test_expect_close(before, (double[]){2, 4, 6}, 3, 0, 0);
    gf_test_expect_close(vcopy, (double[]){4, 6}, 2, 0, 0);
    gf_test_expect_close(after, (double[]){4, 8, 12}, 3, 0, 0);
    gf_test_expect_close(gf_grad(x), (double[]){4, 8, 12}, 3, 0, 0);
}

/* Leaves of many shapes and dtypes accumulated on a multi-threaded engine
 * (the accumulation nodes run on the pool, several at a time), eager and
 * lazy, with the same bits as a 1-thread engine. */
Test(autograd, many_leaves_accumulate_on_the_pool_like_one_thread) {
    double sums[2][2] = {{0}};
    for (int e = 0; e < 2; e++) {
        gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = e ? 4 : 1});
        for (int eager = 0; eager < 2; eager++) {
            gf_ctx *c = gf_ctx_create(eng);
            gf_ctx_set_eager(c, eager);
            gf_manual_seed(c, 7);
            gf_tensor *w[24];
            gf_tensor *loss = NULL;
            for (int i = 0; i < 24; i++) {
                int64_t sh[2] = {40 + i, 300 + 17 * i};
                gf_tensor *r = gf_randn(c, i % 3 ? GF_F32 : GF_F64, 2, sh);
                w[i] = gf_requires_grad(r, true);
            }
            for (int step = 0; step < 3; step++) {
                loss = NULL;
                for (int i = 0; i < 24; i++) {
                    gf_tensor *term = gf_sum(gf_tanh(gf_mul_scalar(w[i], 0.5 + step)));
                    term = gf_to_dtype(term, GF_F64);
                    loss = loss ? gf_add(loss, term) : term;
                }
                GF_OK_OR_FAIL(c, gf_backward(loss));
            }
            double acc = 0;
            for (int i = 0; i < 24; i++) {
                gf_tensor *g = gf_grad(w[i]);
                cr_assert_not_null(g);
                int64_t n = gf_numel(g);
                double *v = malloc(sizeof(double) * (size_t)n);
                cr_assert_eq(gf_copy_to_f64(g, v, n), GF_OK);
                for (int64_t k = 0; k < n; k++) acc += v[k] * (double)(k % 7 + 1);
                free(v);
            }
            sums[e][eager] = acc;
            gf_ctx_destroy(c);
        }
        gf_engine_destroy(eng);
    }
    cr_assert(sums[0][0] != 0);
    cr_assert_eq(sums[0][0], sums[1][0], "lazy: 1 thread %.17g, 4 threads %.17g", sums[0][0],
                 sums[1][0]);
    cr_assert_eq(sums[0][0], sums[0][1], "1 thread: lazy %.17g, eager %.17g", sums[0][0],
                 sums[0][1]);
    cr_assert_eq(sums[0][0], sums[1][1], "4 threads eager %.17g", sums[1][1]);
}

/* The forward run starts on the pool while gf_backward records the gradient
 * graph: a kernel error in that run (a label out of range, known only when
 * the pending labels are computed) comes back from gf_backward with the
 * op's message, nothing reaches .grad, and the ctx works afterwards. */
Test(autograd, forward_error_during_overlapped_backward_is_reported) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
    gf_ctx *c = gf_ctx_create(eng);
    gf_manual_seed(c, 3);
    int64_t sh[2] = {512, 300};
    gf_tensor *w = gf_requires_grad(gf_randn(c, GF_F32, 2, sh), true);
    gf_tensor *w2 = gf_requires_grad(gf_randn(c, GF_F32, 2, sh), true);
    int64_t lab[512];
    for (int i = 0; i < 512; i++) lab[i] = i % 300;
    lab[77] = 300; /* out of range */
    gf_tensor *labels = gf_tensor_i64(c, 1, (int64_t[]){512}, lab);
    /* pending labels: checked by the kernel, not at record time */
    gf_tensor *plabels = gf_add_scalar(labels, 0);
    /* two independent branches so the forward run goes to the pool */
    gf_tensor *l1 = gf_cross_entropy(gf_tanh(gf_mul_scalar(w, 0.5)), plabels);
    gf_tensor *l2 = gf_sum(gf_tanh(gf_mul_scalar(w2, 0.5)));
    cr_assert_neq(gf_backward(gf_add(l1, l2)), GF_OK);
    const char *e = gf_ctx_error(c);
    cr_assert(e && strstr(e, "out of range"), "error: %s", e ? e : "(none)");
    cr_assert_null(gf_grad(w), ".grad untouched by a failed backward");
    gf_ctx_clear_error(c);
    /* the ctx still works: a correct backward afterwards */
    gf_tensor *ok = gf_sum(gf_mul(w2, w2));
    GF_OK_OR_FAIL(c, gf_backward(ok));
    cr_assert_not_null(gf_grad(w2));
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
}

Test(autograd, grad_of_leaves_dot_grad_untouched) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *w = gf_requires_grad(vec3(4, 5, 6), true);
    gf_tensor *y = gf_sum(gf_mul(x, w));
    gf_tensor *g[2] = {0};
    GF_OK_OR_FAIL(ctx, gf_grad_of(y, 2, (gf_tensor *[]){x, w}, g, NULL));
    gf_test_expect_close(g[0], (double[]){4, 5, 6}, 3, 0, 0);
    gf_test_expect_close(g[1], (double[]){1, 2, 3}, 3, 0, 0);
    cr_assert_null(gf_grad(x));
    cr_assert_null(gf_grad(w));
}

Test(autograd, grad_of_unused_input_is_zeros) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *u = gf_requires_grad(vec3(7, 7, 7), true);
    gf_tensor *g[2] = {0};
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(x), 2, (gf_tensor *[]){x, u}, g, NULL));
    gf_test_expect_close(g[1], (double[]){0, 0, 0}, 3, 0, 0);
}

Test(autograd, grad_of_intermediate) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *h = gf_mul_scalar(x, 2);
    gf_tensor *y = gf_sum(gf_mul(h, h));
    gf_tensor *g = NULL;
    GF_OK_OR_FAIL(ctx, gf_grad_of(y, 1, &h, &g, NULL));
    gf_test_expect_close(g, (double[]){4, 8, 12}, 3, 0, 0);
}

Test(autograd, inplace_change_of_saved_tensor_is_error_at_backward) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *c = vec3(2, 2, 2);
    gf_tensor *y = gf_sum(gf_mul(x, c));
    GF_OK_OR_FAIL(ctx, gf_realize(y));
    GF_OK_OR_FAIL(ctx, gf_fill_(c, 5.0));
    cr_assert_eq(gf_backward(y), GF_ESTATE);
    gf_test_expect_error(ctx, "modified by an in-place operation");
    gf_test_expect_error(ctx, "gf_mul");
}

Test(autograd, inplace_on_leaf_requiring_grad_needs_no_grad) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    cr_assert_eq(gf_fill_(x, 0), GF_ESTATE);
    gf_test_expect_error(ctx, "in-place");
    gf_ctx_clear_error(ctx);
    gf_no_grad_begin(ctx);
    GF_OK_OR_FAIL(ctx, gf_fill_(x, 0));
    gf_no_grad_end(ctx);
    gf_test_expect_close(x, (double[]){0, 0, 0}, 3, 0, 0);
}

Test(autograd, inplace_is_ordered_after_pending_readers) {
    /* y reads a lazily; the in-place write to a must not be seen by y. */
    gf_tensor *a = vec3(1, 2, 3);
    gf_tensor *y = gf_mul_scalar(a, 10);
    GF_OK_OR_FAIL(ctx, gf_fill_(a, -1));
    gf_test_expect_close(y, (double[]){10, 20, 30}, 3, 0, 0);
    gf_test_expect_close(a, (double[]){-1, -1, -1}, 3, 0, 0);
    /* A pending reader of a sees the value a had when the reader was recorded. */
    gf_tensor *v = gf_slice(gf_mul_scalar(a, 1), 0, 1, 3, 1);
    GF_OK_OR_FAIL(ctx, gf_sub_(a, vec3(1, 1, 1)));
    gf_test_expect_close(v, (double[]){-1, -1}, 2, 0, 0);
}

Test(autograd, backward_needs_scalar_or_grad_output) {
    gf_tensor *x = gf_requires_grad(vec3(1, 2, 3), true);
    gf_tensor *y = gf_mul(x, x);
    cr_assert_eq(gf_backward(y), GF_ESHAPE);
    gf_test_expect_error(ctx, "not a scalar");
    gf_ctx_clear_error(ctx);
    gf_backward_opts o = {.grad_output = vec3(1, 0, -1)};
    GF_OK_OR_FAIL(ctx, gf_backward_ex(y, &o));
    gf_test_expect_close(gf_grad(x), (double[]){2, 0, -6}, 3, 0, 0);
    gf_backward_opts bad = {.grad_output = gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){1, 1})};
    cr_assert_eq(gf_backward_ex(gf_mul(x, x), &bad), GF_ESHAPE);
    gf_test_expect_error(ctx, "[3]");
}

Test(autograd, backward_null_is_einval) {
    cr_assert_eq(gf_backward(NULL), GF_EINVAL);
    cr_assert_eq(gf_backward_ex(NULL, NULL), GF_EINVAL);
}

Test(autograd, requires_grad_on_i64_is_error) {
    gf_tensor *i = gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){1, 2});
    gf_requires_grad(i, true);
    cr_assert_not(gf_get_requires_grad(i));
    gf_test_expect_error(ctx, "i64");
}

Test(autograd, broadcast_gradients_reduce_to_input_shape) {
    gf_tensor *a = gf_requires_grad(gf_tensor_f64(ctx, 2, (int64_t[]){3, 1}, (double[]){1, 2, 3}), true);
    gf_tensor *b = gf_requires_grad(gf_tensor_f64(ctx, 2, (int64_t[]){1, 4}, (double[]){1, 2, 3, 4}), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(a, b))));
    gf_test_expect_shape(gf_grad(a), 2, (int64_t[]){3, 1});
    gf_test_expect_shape(gf_grad(b), 2, (int64_t[]){1, 4});
    gf_test_expect_close(gf_grad(a), (double[]){10, 10, 10}, 3, 0, 0);
    gf_test_expect_close(gf_grad(b), (double[]){6, 6, 6, 6}, 4, 0, 0);
}

/* The tutorial's linear regression, lazily and eagerly: same bits. */
static void linreg(gf_ctx *c, float out_w[2], float out_b[1], double losses[10]) {
    gf_manual_seed(c, 7);
    gf_tensor *in = gf_tensor_f32(c, 2, (int64_t[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
    gf_tensor *tg = gf_tensor_f32(c, 2, (int64_t[]){3, 1}, (float[]){2, 4, 6});
    gf_tensor *w = gf_requires_grad(gf_randn(c, GF_F32, 2, (int64_t[]){2, 1}), true);
    gf_tensor *b = gf_requires_grad(gf_randn(c, GF_F32, 1, (int64_t[]){1}), true);
    for (int i = 0; i < 100; i++) {
        double l = gf_test_linreg_step(c, in, tg, w, b);
        if ((i + 1) % 10 == 0) losses[i / 10] = l;
    }
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    memcpy(out_w, gf_data_f32(w), 2 * sizeof(float));
    memcpy(out_b, gf_data_f32(b), sizeof(float));
}

Test(autograd, linear_regression_loss_falls_and_eager_equals_lazy) {
    float wl[2], bl[1], we[2], be[1];
    double ll[10], le[10];
    linreg(ctx, wl, bl, ll);
    gf_ctx *e = gf_ctx_create(NULL);
    gf_ctx_set_eager(e, true);
    linreg(e, we, be, le);
    gf_ctx_destroy(e);
    for (int i = 1; i < 10; i++) cr_assert_lt(ll[i], ll[i - 1], "loss must fall: %g then %g", ll[i - 1], ll[i]);
    cr_assert_lt(ll[9], ll[0] * 0.5);
    cr_assert_eq(memcmp(wl, we, sizeof wl), 0, "eager and lazy weights differ");
    cr_assert_eq(memcmp(bl, be, sizeof bl), 0, "eager and lazy bias differ");
    cr_assert_eq(memcmp(ll, le, sizeof ll), 0, "eager and lazy losses differ");
}

Test(autograd, shared_parameter_accumulates_from_two_ctxs) {
    gf_tensor *w = gf_requires_grad(vec3(1, 2, 3), true);
    gf_ctx *other = gf_ctx_create(gf_ctx_engine(ctx));
    gf_tensor *w2 = gf_share(other, w);
    cr_assert_not_null(w2, "%s", gf_ctx_error(other));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul_scalar(w, 2))));
    GF_OK_OR_FAIL(other, gf_backward(gf_sum(gf_mul_scalar(w2, 3))));
    gf_test_expect_close(gf_grad(w), (double[]){5, 5, 5}, 3, 0, 0);
    gf_test_expect_close(gf_grad(w2), (double[]){5, 5, 5}, 3, 0, 0);
    gf_ctx_destroy(other);
    gf_test_expect_close(gf_grad(w), (double[]){5, 5, 5}, 3, 0, 0);
}

static gf_tensor *fn_poly(gf_ctx *c, int n, gf_tensor *const *in, void *u) {
    (void)c, (void)n, (void)u;
    return gf_div(gf_mul(in[0], in[1]), gf_add_scalar(gf_mul(in[1], in[1]), 1.0));
}

Test(autograd, gradcheck_passes_for_correct_and_reports_wrong) {
    gf_tensor *a = gf_requires_grad(gf_randn(ctx, GF_F64, 2, (int64_t[]){2, 3}), true);
    gf_tensor *b = gf_requires_grad(gf_randn(ctx, GF_F64, 1, (int64_t[]){3}), true);
    GF_OK_OR_FAIL(ctx, gf_gradcheck(ctx, fn_poly, 2, (gf_tensor *[]){a, b}, NULL, 1e-6, 1e-6, 1e-4));
    /* A too-strict tolerance with a huge step must fail and say where. */
    cr_assert_eq(gf_gradcheck(ctx, fn_poly, 2, (gf_tensor *[]){a, b}, NULL, 0.5, 0, 0), GF_EINVAL);
    gf_test_expect_error(ctx, "analytic");
}

Test(autograd, sign_has_zero_gradient_like_torch) {
    gf_tensor *x = gf_requires_grad(vec3(-2, 0, 3), true);
    gf_tensor *y = gf_sum(gf_add(gf_sign(x), gf_mul(x, x)));
    GF_OK_OR_FAIL(ctx, gf_backward(y));
    gf_test_expect_close(gf_grad(x), (double[]){-4, 0, 6}, 3, 0, 0);
}
