/*
 * test_handles.c - stale tensor handles (a handle used after gf_scope_end
 * or gf_release freed its tensor) give a clear error naming the function,
 * never a recycled tensor's value; teardown in any order is safe: modules
 * and optimizers freed after their ctx, an engine destroyed before its
 * ctxs, and the ctx's on-destroy functions.
 */
#include "common.h"

#include "gradflow/nn.h"

/* A one-element f32 tensor of value v. */
static gf_tensor *scalar(gf_ctx *c, float v) {
    return gf_tensor_f32(c, 0, NULL, &v);
}

/* gf_item(t) is want within tol (the TSan build's Criterion stand-in has no
 * cr_assert_float_eq). */
static void expect_item(gf_tensor *t, double want, double tol) {
    double v = gf_item(t);
    cr_assert(fabs(v - want) <= tol, "gf_item gave %.9g, expected %.9g: %s", v, want,
              gf_ctx_error(gf_ctx_of(t)) ? gf_ctx_error(gf_ctx_of(t)) : "no error");
}

/* The ctx's error is a stale-handle error naming fn; then it is cleared. */
static void expect_stale(gf_ctx *c, const char *fn) {
    const char *e = gf_ctx_error(c);
    cr_assert_not_null(e, "%s: expected a stale-handle error, got none", fn);
    char want[96];
    snprintf(want, sizeof want, "%s: stale tensor handle", fn);
    cr_assert(strstr(e, want) == e, "error \"%s\" does not start with \"%s\"", e, want);
    cr_assert_eq(gf_ctx_status(c), GF_ESTATE, "status %d for \"%s\"", gf_ctx_status(c), e);
    gf_ctx_clear_error(c);
}

/* The handle of a sum made inside a scope that has ended. */
static gf_tensor *stale_sum(gf_ctx *c, gf_tensor *x) {
    gf_scope_begin(c);
    gf_tensor *loss = GF_T(c, gf_sum(gf_mul(x, x)));
    expect_item(loss, 14.0, 1e-6);
    gf_scope_end(c);
    return loss;
}

Test(handles, item_after_scope_end_is_an_error_not_a_new_tensor) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *x = gf_tensor_f32(c, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    gf_tensor *loss = stale_sum(c, x);
    /* Tensors made after the scope must not take the freed object over (a
     * LIFO free list handed it to the very next one). */
    gf_tensor *fresh[4];
    for (int i = 0; i < 4; i++) {
        fresh[i] = GF_T(c, scalar(c, 5.0f + (float)i));
        cr_assert_neq(fresh[i], loss, "tensor %d reuses the released object", i);
    }
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    double v = gf_item(loss);
    cr_assert(isnan(v), "gf_item of a stale handle gave %g", v);
    expect_stale(c, "gf_item");
    for (int i = 0; i < 4; i++) expect_item(fresh[i], 5.0 + i, 0.0);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
}

Test(handles, data_and_metadata_of_a_stale_handle) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *x = gf_tensor_f32(c, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    gf_tensor *loss = stale_sum(c, x);
    cr_assert_null(gf_data_f32(loss));
    expect_stale(c, "gf_data_f32");
    double d;
    cr_assert_eq(gf_copy_to_f64(loss, &d, 1), GF_ESTATE);
    expect_stale(c, "gf_copy_to_f64");
    cr_assert_eq(gf_realize(loss), GF_ESTATE);
    expect_stale(c, "gf_realize");
    cr_assert_eq(gf_ndim(loss), -1);
    expect_stale(c, "gf_ndim");
    cr_assert_null(gf_shape(loss));
    expect_stale(c, "gf_shape");
    cr_assert_null(gf_strides(loss));
    expect_stale(c, "gf_strides");
    cr_assert_eq(gf_numel(loss), -1);
    expect_stale(c, "gf_numel");
    cr_assert_eq(gf_ctx_of(loss), c, "gf_ctx_of names the ctx that holds the error");
    expect_stale(c, "gf_ctx_of");
    cr_assert_not(gf_is_leaf(loss));
    expect_stale(c, "gf_is_leaf");
    cr_assert_null(gf_keep(loss));
    expect_stale(c, "gf_keep");
    cr_assert_null(gf_zeros_like(loss));
    expect_stale(c, "gf_zeros_like");
    cr_assert_null(gf_requires_grad(loss, true));
    expect_stale(c, "gf_requires_grad");
    /* The ctx works on after the error is cleared. */
    expect_item(gf_sum(x), 6.0, 0.0);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
}

Test(handles, ops_on_a_stale_input_name_the_op) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *x = gf_tensor_f32(c, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    gf_scope_begin(c);
    gf_tensor *y = GF_T(c, gf_add_scalar(x, 1.0));
    gf_realize(y);
    gf_scope_end(c);
    cr_assert_null(gf_add(y, x));
    expect_stale(c, "gf_add");
    cr_assert_null(gf_add(x, y));
    expect_stale(c, "gf_add");
    cr_assert_null(gf_exp(y));
    expect_stale(c, "gf_exp");
    cr_assert_null(gf_sum_dim(y, 0, false));
    expect_stale(c, "gf_sum_dim");
    cr_assert_null(gf_matmul(x, y));
    expect_stale(c, "gf_matmul");
    /* A composite function reports the first op it records. */
    cr_assert_null(gf_sum(y));
    expect_stale(c, "gf_reshape");
    cr_assert_eq(gf_fill_(y, 1.0), GF_ESTATE);
    expect_stale(c, "gf_fill_");
    cr_assert_eq(gf_axpy_(x, 2.0, y), GF_ESTATE);
    expect_stale(c, "gf_axpy_");
    /* x was not written by the failed update. */
    gf_test_expect_close(x, (double[]){1, 2, 3}, 3, 0, 0);
    expect_item(gf_sum(gf_mul(x, x)), 14.0, 1e-6);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
}

Test(handles, release_twice_is_an_error) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *keep = scalar(c, 1.0f);
    gf_tensor *t = GF_T(c, gf_zeros(c, GF_F32, 1, (int64_t[]){4}));
    cr_assert_eq(gf_ctx_live_tensors(c), 2);
    gf_release(t);
    cr_assert_eq(gf_ctx_live_tensors(c), 1);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_release(t);
    expect_stale(c, "gf_release");
    cr_assert_eq(gf_ctx_live_tensors(c), 1, "the second release freed something else");
    expect_item(keep, 1.0, 0.0);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
}

Test(handles, backward_of_a_stale_loss) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *w = gf_requires_grad(gf_tensor_f32(c, 1, (int64_t[]){3}, (float[]){1, 2, 3}), true);
    gf_tensor *loss = stale_sum(c, w);
    cr_assert_eq(gf_backward(loss), GF_ESTATE);
    expect_stale(c, "gf_backward");
    cr_assert_null(gf_grad(w), "a stale backward must not write .grad");
    gf_tensor *g = NULL;
    cr_assert_eq(gf_grad_of(loss, 1, &w, &g, NULL), GF_ESTATE);
    expect_stale(c, "gf_grad_of");
    cr_assert_null(g);
    /* A fresh loss still trains. */
    gf_scope_begin(c);
    GF_OK_OR_FAIL(c, gf_backward(gf_sum(gf_mul(w, w))));
    gf_scope_end(c);
    gf_test_expect_close(gf_grad(w), (double[]){2, 4, 6}, 3, 1e-6, 0);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
}

/* Detection holds while fewer than 512 tensor objects were freed since the
 * handle's (the quarantine); none of the tensors made meanwhile reuses it. */
Test(handles, stale_detected_across_many_later_tensors) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *t = scalar(c, 2.0f);
    gf_release(t);
    for (int i = 0; i < 500; i++) {
        gf_tensor *u = GF_T(c, scalar(c, (float)i));
        cr_assert_neq(u, t, "tensor %d reuses the released object", i);
        gf_release(u);
    }
    cr_assert(isnan(gf_item(t)));
    expect_stale(c, "gf_item");
    gf_ctx_destroy(c);
}

/* Releasing handles that the graph still needs is not a stale use: the
 * intermediate lives on inside the graph and backward goes through it. */
Test(handles, released_intermediates_still_serve_the_graph) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *w = gf_requires_grad(gf_tensor_f32(c, 1, (int64_t[]){2}, (float[]){1, 3}), true);
    gf_tensor *h = gf_mul(w, w);
    gf_tensor *loss = gf_sum(gf_mul_scalar(h, 0.5));
    gf_release(h);
    GF_OK_OR_FAIL(c, gf_backward(loss));
    expect_item(loss, 5.0, 1e-6);
    gf_test_expect_close(gf_grad(w), (double[]){1, 3}, 2, 1e-6, 0);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
}

/* ---------------------------------------------------------------- teardown */

Test(handles, module_and_optimizer_freed_after_their_ctx) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
    gf_ctx *c = gf_ctx_create(eng);
    gf_module *m = gf_mlp(c, 3, (int64_t[]){4, 8, 2}, GF_ACT_RELU, GF_F32);
    cr_assert_not_null(m, "%s", gf_ctx_error(c));
    gf_optimizer *opt = gf_module_adam(m, NULL);
    cr_assert_not_null(opt, "%s", gf_ctx_error(c));
    gf_tensor *x = gf_randn(c, GF_F32, 2, (int64_t[]){3, 4});
    gf_tensor *y = gf_tensor_i64(c, 1, (int64_t[]){3}, (int64_t[]){0, 1, 0});
    GF_OK_OR_FAIL(c, gf_backward(gf_cross_entropy(gf_module_forward(m, x), y)));
    GF_OK_OR_FAIL(c, gf_optimizer_step(opt)); /* Adam's state tensors now exist */
    gf_ctx_destroy(c);
    /* The module is detached: using it reports on the caller's ctx. */
    gf_ctx *other = gf_ctx_create(eng);
    cr_assert_null(gf_module_forward(m, gf_zeros(other, GF_F32, 2, (int64_t[]){1, 4})));
    gf_test_expect_error(other, "gf_module_forward: the module's ctx was destroyed");
    cr_assert_eq(gf_optimizer_step(opt), GF_ESTATE);
    /* Under ASan these were use-after-frees of the ctx's tensors. */
    gf_optimizer_free(opt);
    gf_module_free(m);
    gf_ctx_destroy(other);
    gf_engine_destroy(eng);
}

Test(handles, module_freed_before_its_ctx_unregisters) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_module *m = gf_mlp(c, 3, (int64_t[]){4, 8, 2}, GF_ACT_TANH, GF_F32);
    gf_optimizer *opt = gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1, .momentum = 0.9});
    cr_assert_not_null(opt, "%s", gf_ctx_error(c));
    int64_t before = gf_ctx_live_tensors(c);
    cr_assert_eq(before, 4, "%lld tensors", (long long)before);
    gf_optimizer_free(opt);
    gf_module_free(m);
    cr_assert_eq(gf_ctx_live_tensors(c), 0);
    /* No detach function of the freed objects runs here (ASan: none reads them). */
    gf_ctx_destroy(c);
}

Test(handles, engine_destroyed_before_its_ctx) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
    gf_ctx *c = gf_ctx_create(eng);
    gf_tensor *x = gf_tensor_f32(c, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    gf_engine_destroy(eng);
    /* The ctx keeps its engine until it is destroyed itself. */
    cr_assert_eq(gf_ctx_engine(c), eng);
    cr_assert_eq(gf_engine_num_threads(gf_ctx_engine(c)), 2);
    expect_item(gf_sum(gf_mul(x, x)), 14.0, 1e-6);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c); /* frees the engine too (ASan: no leak, no use after free) */
}

static int hook_log[8], hook_n;
static int64_t hook_live;

static void hook(gf_ctx *c, void *arg) {
    hook_log[hook_n++] = (int)(intptr_t)arg;
    hook_live = gf_ctx_live_tensors(c);
}

Test(handles, on_destroy_functions_run_newest_first_on_an_intact_ctx) {
    hook_n = 0;
    gf_ctx *c = gf_ctx_create(NULL);
    scalar(c, 1.0f);
    scalar(c, 2.0f);
    for (intptr_t i = 1; i <= 4; i++) GF_OK_OR_FAIL(c, gf_ctx_on_destroy(c, hook, (void *)i));
    gf_ctx_remove_on_destroy(c, hook, (void *)2);
    gf_ctx_remove_on_destroy(c, hook, (void *)7); /* never registered: nothing */
    cr_assert_eq(gf_ctx_on_destroy(c, NULL, NULL), GF_EINVAL);
    gf_test_expect_error(c, "gf_ctx_on_destroy: fn is NULL");
    cr_assert_eq(gf_ctx_on_destroy(NULL, hook, NULL), GF_EINVAL);
    gf_ctx_destroy(c);
    cr_assert_eq(hook_n, 3);
    cr_assert_eq(hook_log[0], 4);
    cr_assert_eq(hook_log[1], 3);
    cr_assert_eq(hook_log[2], 1);
    cr_assert_eq(hook_live, 2, "the tensors were gone before the functions ran");
}
