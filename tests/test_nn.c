/*
 * test_nn.c - the nn module: Linear (shapes, PyTorch's init statistics,
 * forward and gradients against a manual computation), activation layers,
 * Dropout, Sequential/MLP, parameter listing, zero_grad, nll_loss, SGD /
 * Adam / AdamW against updates computed here in double from PyTorch's
 * documented rules, LR schedules, checkpoints (round trip, resumed training,
 * every kind of damaged file) and a short training run on synthetic data.
 */
#include "common.h"

#include <glob.h>
#include <unistd.h>

#include "gradflow/nn.h"
#include "nn/nn_internal.h"

static gf_ctx *ctx;
static char dir[64];
static void setup(void) {
    ctx = gf_ctx_create(NULL);
    snprintf(dir, sizeof dir, "/tmp/gf_test_nn_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}
static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    gf_ctx_destroy(ctx);
}
TestSuite(nn, .init = setup, .fini = teardown);

/* All of t's values as doubles (caller frees). */
static double *values(gf_tensor *t) {
    int64_t n = gf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert_eq(gf_copy_to_f64(t, v, n), GF_OK, "%s", gf_ctx_error(ctx));
    return v;
}

/* The raw bytes of every parameter of m, concatenated (caller frees). */
static uint8_t *snapshot(gf_module *m, size_t *size) {
    size_t n = 0;
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        n += (size_t)gf_numel(p) * (gf_dtype_of(p) == GF_F32 ? 4 : 8);
    }
    uint8_t *b = malloc(n ? n : 1), *at = b;
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        size_t k = (size_t)gf_numel(p) * (gf_dtype_of(p) == GF_F32 ? 4 : 8);
        const void *d = gf_dtype_of(p) == GF_F32 ? (const void *)gf_data_f32(p)
                                                 : (const void *)gf_data_f64(p);
        cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
        memcpy(at, d, k);
        at += k;
    }
    *size = n;
    return b;
}

static void expect_same_snapshot(const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                                 const char *what) {
    cr_assert_eq(na, nb, "%s: sizes differ", what);
    cr_assert(memcmp(a, b, na) == 0, "%s: parameters differ", what);
}

/* ------------------------------------------------------------------ Linear */

Test(nn, linear_shapes_and_pytorch_init_statistics) {
    gf_manual_seed(ctx, 1);
    gf_module *l = gf_linear(ctx, 784, 256, true, GF_F32);
    cr_assert_not_null(l, "%s", gf_ctx_error(ctx));
    cr_assert_eq(gf_module_num_parameters(l), 2);
    gf_test_expect_shape(gf_module_parameter(l, 0), 2, (int64_t[]){256, 784});
    gf_test_expect_shape(gf_module_parameter(l, 1), 1, (int64_t[]){256});
    cr_assert(gf_get_requires_grad(gf_module_parameter(l, 0)));
    cr_assert(gf_is_leaf(gf_module_parameter(l, 0)));
    cr_assert_eq(gf_module_num_elements(l), 784 * 256 + 256);
    /* W ~ U(-b, b) with b = 1/sqrt(784) = 1/28: mean 0 (standard error
     * b/sqrt(3n) = 4.6e-5), variance b^2/3 (standard error ~0.3%). */
    double bound = 1.0 / 28;
    gf_tensor *w = gf_module_parameter(l, 0);
    double *v = values(w);
    int64_t n = gf_numel(w);
    double mean = 0, var = 0, lo = 1, hi = -1;
    for (int64_t i = 0; i < n; i++) {
        mean += v[i];
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
    var /= (double)n;
    cr_assert(lo >= -bound && hi < bound, "W outside [-%g, %g): [%g, %g]", bound, bound, lo, hi);
    cr_assert(lo < -0.99 * bound && hi > 0.99 * bound, "W does not fill its range: [%g, %g]", lo,
              hi);
    cr_assert(fabs(mean) < 5 * bound / sqrt(3.0 * (double)n), "W mean %g", mean);
    cr_assert(fabs(var / (bound * bound / 3) - 1) < 0.02, "W variance %g, expected %g", var,
              bound * bound / 3);
    free(v);
    v = values(gf_module_parameter(l, 1));
    for (int i = 0; i < 256; i++) cr_assert(fabs(v[i]) <= bound, "b[%d] = %g", i, v[i]);
    free(v);
    gf_module_free(l);

    /* The bias has the weight's bound: check its statistics on a wide layer. */
    l = gf_linear(ctx, 4, 100000, true, GF_F64);
    cr_assert_not_null(l);
    v = values(gf_module_parameter(l, 1));
    mean = var = 0;
    for (int i = 0; i < 100000; i++) {
        cr_assert(v[i] >= -0.5 && v[i] < 0.5);
        mean += v[i];
        var += v[i] * v[i];
    }
    mean /= 1e5;
    var = var / 1e5 - mean * mean;
    cr_assert(fabs(mean) < 5 * 0.5 / sqrt(3e5), "b mean %g", mean);
    cr_assert(fabs(var * 12 - 1) < 0.03, "b variance %g, expected 1/12", var);
    free(v);
    gf_module_free(l);
}

Test(nn, linear_init_is_reproducible_with_a_seed) {
    gf_manual_seed(ctx, 42);
    gf_module *a = gf_linear(ctx, 30, 20, true, GF_F32);
    gf_manual_seed(ctx, 42);
    gf_module *b = gf_linear(ctx, 30, 20, true, GF_F32);
    gf_module *c = gf_linear(ctx, 30, 20, true, GF_F32);
    size_t na, nb, nc;
    uint8_t *sa = snapshot(a, &na), *sb = snapshot(b, &nb), *sc = snapshot(c, &nc);
    expect_same_snapshot(sa, na, sb, nb, "same seed");
    cr_assert(memcmp(sa, sc, na) != 0, "the next layer must differ");
    free(sa), free(sb), free(sc);
    gf_module_free(a), gf_module_free(b), gf_module_free(c);
}

Test(nn, linear_forward_and_gradients_match_manual_computation) {
    gf_module *l = gf_linear(ctx, 4, 3, true, GF_F64);
    gf_tensor *x = GF_T(ctx, gf_test_uniform(ctx, 2, (int64_t[]){5, 4}, -1, 1));
    gf_tensor *y = GF_T(ctx, gf_module_forward(l, x));
    gf_test_expect_shape(y, 2, (int64_t[]){5, 3});
    double *xv = values(x), *w = values(gf_module_parameter(l, 0)),
           *b = values(gf_module_parameter(l, 1));
    double want[15];
    for (int n = 0; n < 5; n++)
        for (int o = 0; o < 3; o++) {
            double s = b[o];
            for (int i = 0; i < 4; i++) s += xv[n * 4 + i] * w[o * 4 + i];
            want[n * 3 + o] = s;
        }
    gf_test_expect_close(y, want, 15, 1e-12, 1e-12);
    /* L = sum(y * r): dW[o,i] = sum_n r[n,o] x[n,i], db[o] = sum_n r[n,o]. */
    gf_tensor *r = gf_test_uniform(ctx, 2, (int64_t[]){5, 3}, -1, 1);
    double *rv = values(r);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(y, r))));
    double gw[12] = {0}, gb[3] = {0};
    for (int n = 0; n < 5; n++)
        for (int o = 0; o < 3; o++) {
            gb[o] += rv[n * 3 + o];
            for (int i = 0; i < 4; i++) gw[o * 4 + i] += rv[n * 3 + o] * xv[n * 4 + i];
        }
    gf_test_expect_close(gf_grad(gf_module_parameter(l, 0)), gw, 12, 1e-12, 1e-12);
    gf_test_expect_close(gf_grad(gf_module_parameter(l, 1)), gb, 3, 1e-12, 1e-12);
    free(xv), free(w), free(b), free(rv);
    gf_module_free(l);
}

Test(nn, linear_without_bias_and_bad_arguments) {
    gf_module *l = gf_linear(ctx, 3, 2, false, GF_F64);
    cr_assert_eq(gf_module_num_parameters(l), 1);
    gf_tensor *y = gf_module_forward(l, gf_ones(ctx, GF_F64, 2, (int64_t[]){1, 3}));
    double *w = values(gf_module_parameter(l, 0));
    gf_test_expect_close(y, (double[]){w[0] + w[1] + w[2], w[3] + w[4] + w[5]}, 2, 1e-12, 0);
    free(w);
    cr_assert_null(gf_module_parameter(l, 1));
    gf_test_expect_error(ctx, "index 1 (the module has 1 parameters)");
    gf_ctx_clear_error(ctx);
    gf_module_free(l);
    cr_assert_null(gf_linear(ctx, 0, 3, true, GF_F32));
    gf_test_expect_error(ctx, "gf_linear: in_features 0");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_linear(ctx, 3, 3, true, GF_I64));
    gf_test_expect_error(ctx, "expected GF_F32 or GF_F64");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_dropout(ctx, 1.5));
    gf_test_expect_error(ctx, "gf_dropout: probability 1.5");
    gf_ctx_clear_error(ctx);
    /* A wrong input width is the matmul's error, at the forward call. */
    l = gf_linear(ctx, 3, 2, true, GF_F64);
    cr_assert_null(gf_module_forward(l, gf_ones(ctx, GF_F64, 2, (int64_t[]){2, 5})));
    gf_test_expect_error(ctx, "gf_matmul");
    gf_module_free(l);
}

Test(nn, modules_built_inside_a_scope_outlive_it) {
    gf_scope_begin(ctx);
    gf_scope_begin(ctx);
    gf_module *m = gf_mlp(ctx, 3, (int64_t[]){4, 5, 2}, GF_ACT_RELU, GF_F64);
    gf_optimizer *opt = gf_module_adam(m, NULL);
    gf_tensor *x = gf_ones(ctx, GF_F64, 2, (int64_t[]){3, 4});
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_module_forward(m, x))));
    GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt)); /* creates Adam's state in the scope */
    gf_scope_end(ctx);
    gf_scope_end(ctx);
    int64_t live = gf_ctx_live_tensors(ctx);
    gf_scope_begin(ctx);
    x = gf_ones(ctx, GF_F64, 2, (int64_t[]){3, 4});
    gf_tensor *y = GF_T(ctx, gf_module_forward(m, x));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(y)));
    GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt));
    gf_scope_end(ctx);
    cr_assert_eq(gf_ctx_live_tensors(ctx), live, "a step leaks tensors: %lld -> %lld",
                 (long long)live, (long long)gf_ctx_live_tensors(ctx));
    cr_assert_eq(gf_optimizer_steps(opt), 2);
    gf_optimizer_free(opt);
    gf_module_free(m);
}

/* ------------------------------------------------------ layers, containers */

Test(nn, activation_layers_compute_their_functions) {
    gf_tensor *x = gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){-1, 0, 2});
    struct {
        gf_activation a;
        double want[3];
    } cases[] = {
        {GF_ACT_NONE, {-1, 0, 2}},
        {GF_ACT_RELU, {0, 0, 2}},
        {GF_ACT_TANH, {tanh(-1), 0, tanh(2)}},
        {GF_ACT_SIGMOID, {1 / (1 + exp(1)), 0.5, 1 / (1 + exp(-2))}},
        {GF_ACT_GELU, {-0.5 * (1 + erf(-1 / sqrt(2))), 0, 2 * 0.5 * (1 + erf(2 / sqrt(2)))}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gf_module *m = gf_activation_layer(ctx, cases[i].a);
        cr_assert_eq(gf_module_num_parameters(m), 0);
        gf_test_expect_close(gf_module_forward(m, x), cases[i].want, 3, 1e-12, 1e-12);
        gf_module_free(m);
    }
}

Test(nn, mlp_784_256_256_10_has_269322_parameters) {
    gf_module *m = gf_mlp(ctx, 4, (int64_t[]){784, 256, 256, 10}, GF_ACT_RELU, GF_F32);
    cr_assert_not_null(m, "%s", gf_ctx_error(ctx));
    cr_assert_eq(gf_module_num_parameters(m), 6);
    cr_assert_eq(gf_module_num_elements(m), 269322);
    /* Registration order, depth first: W1, b1, W2, b2, W3, b3. */
    gf_test_expect_shape(gf_module_parameter(m, 0), 2, (int64_t[]){256, 784});
    gf_test_expect_shape(gf_module_parameter(m, 1), 1, (int64_t[]){256});
    gf_test_expect_shape(gf_module_parameter(m, 4), 2, (int64_t[]){10, 256});
    gf_test_expect_shape(gf_module_parameter(m, 5), 1, (int64_t[]){10});
    gf_tensor *y = gf_module_forward(m, gf_randn(ctx, GF_F32, 2, (int64_t[]){8, 784}));
    gf_test_expect_shape(y, 2, (int64_t[]){8, 10});
    gf_module_free(m);
}

Test(nn, sequential_equals_its_children_in_order) {
    gf_module *l1 = gf_linear(ctx, 3, 4, true, GF_F64);
    gf_module *l2 = gf_linear(ctx, 4, 2, true, GF_F64);
    gf_tensor *x = gf_test_uniform(ctx, 2, (int64_t[]){5, 3}, -2, 2);
    gf_tensor *want = gf_module_forward(l2, gf_tanh(gf_module_forward(l1, x)));
    double *wv = values(want);
    gf_module *seq =
        gf_sequential(ctx, 3, (gf_module *[]){l1, gf_activation_layer(ctx, GF_ACT_TANH), l2});
    cr_assert_eq(gf_module_num_parameters(seq), 4);
    cr_assert_eq(gf_module_parameter(seq, 2), gf_module_parameter(l2, 0));
    gf_test_expect_close(gf_module_forward(seq, x), wv, 10, 0, 0);
    free(wv);
    gf_module_free(seq); /* frees l1, l2 too */
    /* A NULL child fails the container, which frees the others. */
    cr_assert_null(gf_sequential(ctx, 2, (gf_module *[]){gf_linear(ctx, 2, 2, true, GF_F32), NULL}));
    gf_test_expect_error(ctx, "child 1 is NULL");
}

Test(nn, zero_grad_zeroes_every_parameter_grad) {
    gf_module *m = gf_mlp(ctx, 3, (int64_t[]){3, 4, 2}, GF_ACT_TANH, GF_F64);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_module_forward(m, gf_ones(ctx, GF_F64, 2,
                                                                        (int64_t[]){2, 3})))));
    for (int i = 0; i < 4; i++) {
        double *g = values(gf_grad(gf_module_parameter(m, i)));
        double s = 0;
        for (int64_t k = 0; k < gf_numel(gf_module_parameter(m, i)); k++) s += fabs(g[k]);
        cr_assert(s > 0, "parameter %d has a zero gradient before zero_grad", i);
        free(g);
    }
    gf_module_zero_grad(m);
    for (int i = 0; i < 4; i++) {
        double *g = values(gf_grad(gf_module_parameter(m, i)));
        for (int64_t k = 0; k < gf_numel(gf_module_parameter(m, i)); k++)
            cr_assert_eq(g[k], 0.0);
        free(g);
    }
    gf_module_free(m);
}

/* ----------------------------------------------------------------- Dropout */

Test(nn, dropout_train_masks_and_scales_eval_is_identity) {
    const double p = 0.3;
    gf_module *d = gf_dropout(ctx, p);
    int64_t shape[2] = {400, 250};
    gf_tensor *x = gf_requires_grad(gf_ones(ctx, GF_F32, 2, shape), true);
    gf_manual_seed(ctx, 7);
    gf_tensor *y = GF_T(ctx, gf_module_forward(d, x));
    double *v = values(y);
    int64_t zeros = 0;
    for (int64_t i = 0; i < 100000; i++) {
        if (v[i] == 0) zeros++;
        else cr_assert(fabs(v[i] - 1 / 0.7) < 1e-6, "kept value %g, expected 1/0.7", v[i]);
    }
    /* Binomial(1e5, 0.3): standard deviation 145 zeros. */
    cr_assert(llabs(zeros - 30000) < 1000, "%lld zeros of 100000, expected ~30000",
              (long long)zeros);
    /* The gradient is the same mask, scaled. */
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(y)));
    double *g = values(gf_grad(x));
    cr_assert(memcmp(g, v, sizeof(double) * 100000) == 0);
    free(g);
    /* Same seed, same mask. */
    gf_manual_seed(ctx, 7);
    double *v2 = values(gf_module_forward(d, x));
    cr_assert(memcmp(v, v2, sizeof(double) * 100000) == 0, "the mask is not reproducible");
    free(v2);
    free(v);
    /* Eval mode and p = 0 leave the input as it is. */
    gf_module_train(d, false);
    gf_tensor *e = gf_module_forward(d, x);
    v = values(e);
    for (int64_t i = 0; i < 100000; i++) cr_assert_eq(v[i], 1.0);
    free(v);
    gf_module_free(d);
    d = gf_dropout(ctx, 0);
    v = values(gf_module_forward(d, x));
    for (int64_t i = 0; i < 100000; i++) cr_assert_eq(v[i], 1.0);
    free(v);
    gf_module_free(d);
}

Test(nn, train_mode_propagates_through_containers) {
    gf_module *m = gf_sequential(ctx, 2, (gf_module *[]){gf_linear(ctx, 10, 10, true, GF_F64),
                                                       gf_dropout(ctx, 0.5)});
    gf_tensor *x = gf_ones(ctx, GF_F64, 2, (int64_t[]){4, 10});
    gf_module_train(m, false);
    double *a = values(gf_module_forward(m, x)), *b = values(gf_module_forward(m, x));
    cr_assert(memcmp(a, b, sizeof(double) * 40) == 0, "eval mode is deterministic");
    gf_module_train(m, true);
    double *c = values(gf_module_forward(m, x));
    cr_assert(memcmp(a, c, sizeof(double) * 40) != 0, "train mode drops");
    free(a), free(b), free(c);
    gf_module_free(m);
}

/* ------------------------------------------------------------------ losses */

Test(nn, nll_loss_is_minus_mean_picked_log_prob) {
    gf_tensor *lp = gf_requires_grad(
        gf_tensor_f64(ctx, 2, (int64_t[]){3, 4},
                      (double[]){-1.0, -2.0, -0.5, -3.0, -0.1, -4.0, -2.5, -1.5, -0.7, -0.8, -0.9,
                                 -5.0}),
        true);
    gf_tensor *y = gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){2, 0, 3});
    gf_tensor *l = GF_T(ctx, gf_nll_loss(lp, y));
    gf_test_expect_close(l, (double[]){(0.5 + 0.1 + 5.0) / 3}, 1, 1e-12, 0);
    GF_OK_OR_FAIL(ctx, gf_backward(l));
    double t = -1.0 / 3;
    gf_test_expect_close(gf_grad(lp), (double[]){0, 0, t, 0, t, 0, 0, 0, 0, 0, 0, t}, 12, 1e-15, 0);
    /* nll_loss(log_softmax(z)) == cross_entropy(z) */
    gf_tensor *z = gf_test_uniform(ctx, 2, (int64_t[]){6, 5}, -3, 3);
    gf_tensor *lab = gf_tensor_i64(ctx, 1, (int64_t[]){6}, (int64_t[]){0, 4, 2, 2, 1, 3});
    double ce = gf_item(gf_cross_entropy(z, lab));
    gf_test_expect_close(gf_nll_loss(gf_log_softmax(z, 1), lab), &ce, 1, 1e-12, 1e-12);
    cr_assert_null(gf_nll_loss(z, gf_tensor_i64(ctx, 1, (int64_t[]){2}, (int64_t[]){0, 1})));
    gf_test_expect_error(ctx, "gf_nll_loss: log_probs [6,5] and labels [2]");
}

/* ------------------------------------------------------------- optimizers */

/* The toy problem: L(p) = sum(a/2 * p^2 + c * p), so dL/dp = a*p + c. */
static const double A[3] = {1.0, 2.0, 0.5}, C[3] = {0.3, -1.0, 0.25}, P0[3] = {1.0, -2.0, 0.5};

static gf_tensor *toy_param(void) {
    return gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){3}, P0), true);
}

/* One step of opt on the toy loss at p, inside a scope (as a training loop). */
static void toy_step(gf_optimizer *opt, gf_tensor *p) {
    gf_scope_begin(ctx);
    gf_tensor *a = gf_tensor_f64(ctx, 1, (int64_t[]){3}, A);
    gf_tensor *c = gf_tensor_f64(ctx, 1, (int64_t[]){3}, C);
    gf_tensor *l = gf_sum(gf_add(gf_mul(gf_mul_scalar(a, 0.5), gf_mul(p, p)), gf_mul(c, p)));
    gf_optimizer_zero_grad(opt);
    GF_OK_OR_FAIL(ctx, gf_backward(l));
    GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt));
    gf_scope_end(ctx);
}

/* torch.optim.SGD's rule, in double. */
static void sgd_reference(const gf_sgd_opts *o, int steps, double *p) {
    double buf[3];
    memcpy(p, P0, sizeof P0);
    for (int t = 0; t < steps; t++)
        for (int i = 0; i < 3; i++) {
            double d = A[i] * p[i] + C[i] + o->weight_decay * p[i];
            if (o->momentum != 0) {
                buf[i] = t == 0 ? d : o->momentum * buf[i] + (1 - o->dampening) * d;
                d = o->nesterov ? d + o->momentum * buf[i] : buf[i];
            }
            p[i] -= o->lr * d;
        }
}

static void check_sgd(gf_sgd_opts o) {
    gf_tensor *p = toy_param();
    gf_optimizer *opt = gf_sgd(1, &p, &o);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    for (int t = 1; t <= 3; t++) {
        toy_step(opt, p);
        double want[3];
        sgd_reference(&o, t, want);
        gf_test_expect_close(p, want, 3, 1e-12, 1e-6);
    }
    cr_assert_eq(gf_optimizer_steps(opt), 3);
    gf_optimizer_free(opt);
    gf_release(p);
}

Test(nn, sgd_plain_matches_hand_computed_updates) {
    /* p1 = p0 - 0.1*(a p0 + c), spelled out for the first element. */
    gf_tensor *p = toy_param();
    gf_optimizer *opt = gf_sgd(1, &p, &(gf_sgd_opts){.lr = 0.1});
    toy_step(opt, p);
    gf_test_expect_close(p, (double[]){1.0 - 0.1 * 1.3, -2.0 - 0.1 * (-5.0), 0.5 - 0.1 * 0.5}, 3,
                         1e-15, 0);
    gf_optimizer_free(opt);
    check_sgd((gf_sgd_opts){.lr = 0.1});
}
Test(nn, sgd_momentum) { check_sgd((gf_sgd_opts){.lr = 0.1, .momentum = 0.9}); }
Test(nn, sgd_momentum_dampening) {
    check_sgd((gf_sgd_opts){.lr = 0.05, .momentum = 0.8, .dampening = 0.3});
}
Test(nn, sgd_nesterov) { check_sgd((gf_sgd_opts){.lr = 0.1, .momentum = 0.9, .nesterov = true}); }
Test(nn, sgd_weight_decay) {
    check_sgd((gf_sgd_opts){.lr = 0.1, .weight_decay = 0.01});
    check_sgd((gf_sgd_opts){.lr = 0.1, .momentum = 0.5, .weight_decay = 0.1, .nesterov = true});
}

Test(nn, sgd_rejects_nesterov_without_momentum) {
    gf_tensor *p = toy_param();
    cr_assert_null(gf_sgd(1, &p, &(gf_sgd_opts){.lr = 0.1, .nesterov = true}));
    gf_test_expect_error(ctx, "Nesterov momentum requires a momentum and zero dampening");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_sgd(1, &p, &(gf_sgd_opts){.lr = -1}));
    gf_test_expect_error(ctx, "lr must be >= 0");
}

/* torch.optim.Adam / AdamW, in double. */
static void adam_reference(const gf_adam_opts *o, int steps, double *p) {
    double m[3] = {0}, v[3] = {0};
    memcpy(p, P0, sizeof P0);
    for (int t = 1; t <= steps; t++)
        for (int i = 0; i < 3; i++) {
            double g = A[i] * p[i] + C[i];
            if (o->decoupled) p[i] *= 1 - o->lr * o->weight_decay;
            else g += o->weight_decay * p[i];
            m[i] = o->beta1 * m[i] + (1 - o->beta1) * g;
            v[i] = o->beta2 * v[i] + (1 - o->beta2) * g * g;
            double mhat = m[i] / (1 - pow(o->beta1, t)), vhat = v[i] / (1 - pow(o->beta2, t));
            p[i] -= o->lr * mhat / (sqrt(vhat) + o->eps);
        }
}

static void check_adam(gf_adam_opts o) {
    gf_tensor *p = toy_param();
    gf_optimizer *opt = gf_adam(1, &p, &o);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    for (int t = 1; t <= 3; t++) {
        toy_step(opt, p);
        double want[3];
        adam_reference(&o, t, want);
        gf_test_expect_close(p, want, 3, 1e-12, 1e-6);
    }
    gf_optimizer_free(opt);
    gf_release(p);
}

Test(nn, adam_first_step_moves_each_weight_by_lr) {
    /* With bias correction, step 1 is p -= lr * g/(|g| + eps): exactly lr
     * per element (up to eps) whatever the gradient's size. The gradient is
     * (1.3, -5, 0.5). */
    gf_tensor *p = toy_param();
    gf_adam_opts o = GF_ADAM_DEFAULTS;
    o.lr = 0.01;
    gf_optimizer *opt = gf_adam(1, &p, &o);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    toy_step(opt, p);
    gf_test_expect_close(p,
                         (double[]){1.0 - 0.01 * 1.3 / (1.3 + 1e-8),
                                    -2.0 + 0.01 * 5.0 / (5.0 + 1e-8),
                                    0.5 - 0.01 * 0.5 / (0.5 + 1e-8)},
                         3, 1e-15, 0);
    gf_optimizer_free(opt);
}
Test(nn, adam_bias_correction_three_steps) {
    check_adam((gf_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    check_adam((gf_adam_opts){.lr = 0.05, .beta1 = 0.5, .beta2 = 0.6, .eps = 1e-3});
}
Test(nn, adam_l2_weight_decay) {
    check_adam((gf_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                              .weight_decay = 0.1});
}
Test(nn, adamw_decoupled_weight_decay) {
    check_adam((gf_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                              .weight_decay = 0.1, .decoupled = true});
}

Test(nn, adam_defaults_and_f32_parameters) {
    /* opts NULL: lr 1e-3, betas (0.9, 0.999), eps 1e-8; f32 to 1e-6 relative. */
    gf_tensor *p = gf_requires_grad(gf_tensor_f32(ctx, 1, (int64_t[]){3}, (float[]){1, -2, 0.5f}),
                                    true);
    gf_optimizer *opt = gf_adam(1, &p, NULL);
    cr_assert_eq(gf_optimizer_lr(opt), 1e-3);
    for (int t = 0; t < 3; t++) toy_step(opt, p);
    double want[3];
    adam_reference(&(gf_adam_opts){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}, 3,
                   want);
    gf_test_expect_close(p, want, 3, 0, 1e-6);
    gf_optimizer_free(opt);
}

Test(nn, parameters_without_grad_are_skipped) {
    gf_tensor *p = toy_param();
    gf_tensor *q = gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){5, 6}), true);
    gf_optimizer *opt = gf_adam(2, (gf_tensor *[]){p, q},
                                &(gf_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                                .decoupled = true, .weight_decay = 0.5});
    for (int t = 0; t < 3; t++) toy_step(opt, p);
    gf_test_expect_close(q, (double[]){5, 6}, 2, 0, 0);
    cr_assert_null(opt->s1[1]);
    cr_assert_eq(opt->pstep[0], 3);
    cr_assert_eq(opt->pstep[1], 0);
    gf_optimizer_free(opt);
}

Test(nn, lr_schedules) {
    cr_assert_eq(gf_lr_step(0.1, 0, 30, 0.1), 0.1);
    cr_assert_eq(gf_lr_step(0.1, 29, 30, 0.1), 0.1);
    cr_assert(fabs(gf_lr_step(0.1, 30, 30, 0.1) - 0.01) < 1e-15);
    cr_assert(fabs(gf_lr_step(0.1, 65, 30, 0.1) - 0.001) < 1e-15);
    cr_assert(fabs(gf_lr_step(1.0, 7, 2, 0.5) - 0.125) < 1e-15);
    cr_assert_eq(gf_lr_cosine(0.1, 0, 10, 0.0), 0.1);
    cr_assert(fabs(gf_lr_cosine(0.1, 5, 10, 0.0) - 0.05) < 1e-15);
    cr_assert(fabs(gf_lr_cosine(0.1, 10, 10, 0.001) - 0.001) < 1e-15);
    cr_assert(fabs(gf_lr_cosine(0.1, 2, 10, 0.01) - (0.01 + 0.09 * (1 + cos(M_PI / 5)) / 2)) <
              1e-15);
    cr_assert(isnan(gf_lr_step(0.1, 1, 0, 0.1)));
    cr_assert(isnan(gf_lr_cosine(0.1, 1, 0, 0.0)));
    /* An optimizer follows a schedule through set_lr. */
    gf_tensor *p = toy_param();
    gf_optimizer *opt = gf_sgd(1, &p, &(gf_sgd_opts){.lr = 0.1});
    gf_optimizer_set_lr(opt, gf_lr_cosine(0.1, 5, 10, 0));
    cr_assert(fabs(gf_optimizer_lr(opt) - 0.05) < 1e-15);
    gf_optimizer_free(opt);
}

/* ------------------------------------------------------------- checkpoints */

Test(nn, crc32_matches_the_standard_check_value) {
    cr_assert_eq(gf__crc32(0, "123456789", 9), 0xCBF43926u);
    /* Incremental equals one shot. */
    cr_assert_eq(gf__crc32(gf__crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

/* A small model and Adam optimizer, trained `steps` steps on fixed data. */
typedef struct {
    gf_module *m;
    gf_optimizer *opt;
    gf_tensor *x, *y;
} rig;

static rig make_rig(uint64_t seed, bool sgd) {
    rig r;
    gf_manual_seed(ctx, seed);
    r.m = gf_mlp(ctx, 3, (int64_t[]){4, 8, 3}, GF_ACT_RELU, GF_F32);
    r.opt = sgd ? gf_module_sgd(r.m, &(gf_sgd_opts){.lr = 0.1, .momentum = 0.9, .nesterov = true})
                : gf_module_adam(r.m, &(gf_adam_opts){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999,
                                                      .eps = 1e-8, .weight_decay = 0.01,
                                                      .decoupled = true});
    gf_manual_seed(ctx, 99);
    r.x = gf_randn(ctx, GF_F32, 2, (int64_t[]){16, 4});
    r.y = gf_tensor_i64(ctx, 1, (int64_t[]){16},
                        (int64_t[]){0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0});
    return r;
}

static void train(rig *r, int steps) {
    for (int s = 0; s < steps; s++) {
        gf_scope_begin(ctx);
        gf_optimizer_zero_grad(r->opt);
        GF_OK_OR_FAIL(ctx, gf_backward(gf_cross_entropy(gf_module_forward(r->m, r->x), r->y)));
        GF_OK_OR_FAIL(ctx, gf_optimizer_step(r->opt));
        gf_scope_end(ctx);
    }
}

static void free_rig(rig *r) {
    gf_optimizer_free(r->opt);
    gf_module_free(r->m);
}

static void check_round_trip(bool sgd) {
    char path[128];
    snprintf(path, sizeof path, "%s/model.ckpt", dir);
    rig a = make_rig(1, sgd);
    train(&a, 3);
    GF_OK_OR_FAIL(ctx, gf_save(path, a.m, a.opt));
    size_t n0, n1, n2, n3;
    uint8_t *saved = snapshot(a.m, &n0);
    train(&a, 4); /* the reference: 7 steps without interruption */
    uint8_t *want = snapshot(a.m, &n1);
    cr_assert_eq(gf_optimizer_steps(a.opt), 7);

    /* Loading restores the parameters bitwise, and the optimizer's state so
     * that training continues exactly as it would have. */
    GF_OK_OR_FAIL(ctx, gf_load(path, a.m, a.opt));
    uint8_t *back = snapshot(a.m, &n2);
    expect_same_snapshot(saved, n0, back, n2, "after load");
    cr_assert_eq(gf_optimizer_steps(a.opt), 3);
    train(&a, 4);
    uint8_t *resumed = snapshot(a.m, &n3);
    expect_same_snapshot(want, n1, resumed, n3, "resumed training");
    free(back), free(resumed);

    /* Into a fresh model (other init) and a fresh optimizer (no state yet). */
    rig b = make_rig(2, sgd);
    uint8_t *other = snapshot(b.m, &n2);
    cr_assert(memcmp(other, saved, n0) != 0);
    free(other);
    GF_OK_OR_FAIL(ctx, gf_load(path, b.m, b.opt));
    back = snapshot(b.m, &n2);
    expect_same_snapshot(saved, n0, back, n2, "fresh model after load");
    train(&b, 4);
    resumed = snapshot(b.m, &n3);
    expect_same_snapshot(want, n1, resumed, n3, "fresh model resumed");
    free(back), free(resumed), free(saved), free(want);
    free_rig(&a);
    free_rig(&b);

    /* The write was atomic: no temporary file is left behind. */
    char pat[160];
    snprintf(pat, sizeof pat, "%s/model.ckpt.tmp*", dir);
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), GLOB_NOMATCH);
}

Test(nn, checkpoint_round_trip_adamw) { check_round_trip(false); }
Test(nn, checkpoint_round_trip_sgd_nesterov) { check_round_trip(true); }

Test(nn, checkpoint_model_only) {
    char path[128];
    snprintf(path, sizeof path, "%s/weights.ckpt", dir);
    rig a = make_rig(1, false);
    train(&a, 2);
    GF_OK_OR_FAIL(ctx, gf_save(path, a.m, NULL));
    size_t n0, n1;
    uint8_t *saved = snapshot(a.m, &n0);
    rig b = make_rig(5, false);
    GF_OK_OR_FAIL(ctx, gf_load(path, b.m, NULL));
    uint8_t *got = snapshot(b.m, &n1);
    expect_same_snapshot(saved, n0, got, n1, "model only");
    /* Asking for optimizer state the file does not have is an error. */
    cr_assert_eq(gf_load(path, b.m, b.opt), GF_EIO);
    gf_test_expect_error(ctx, "the file has no optimizer state");
    free(saved), free(got);
    free_rig(&a);
    free_rig(&b);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Loading the damaged file fails with GF_EIO and the message, and changes
 * neither the model nor the optimizer. */
static void expect_rejected(rig *r, const char *path, const char *needle) {
    size_t n0, n1;
    uint8_t *before = snapshot(r->m, &n0);
    int64_t steps = gf_optimizer_steps(r->opt);
    double lr = gf_optimizer_lr(r->opt);
    gf_ctx_clear_error(ctx);
    cr_assert_eq(gf_load(path, r->m, r->opt), GF_EIO, "expected GF_EIO for \"%s\"", needle);
    gf_test_expect_error(ctx, needle);
    gf_test_expect_error(ctx, path);
    gf_ctx_clear_error(ctx);
    uint8_t *after = snapshot(r->m, &n1);
    expect_same_snapshot(before, n0, after, n1, needle);
    cr_assert_eq(gf_optimizer_steps(r->opt), steps);
    cr_assert_eq(gf_optimizer_lr(r->opt), lr);
    free(before), free(after);
}

Test(nn, damaged_checkpoints_are_rejected_and_change_nothing) {
    char good[128], bad[128];
    snprintf(good, sizeof good, "%s/good.ckpt", dir);
    snprintf(bad, sizeof bad, "%s/bad.ckpt", dir);
    rig a = make_rig(1, false);
    train(&a, 2);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    size_t n;
    uint8_t *file = read_all(good, &n);
    /* The model to protect has other values than the file, and Adam state. */
    rig r = make_rig(3, false);
    train(&r, 1);
    gf_optimizer_set_lr(r.opt, 0.5);

    char msg[128];
    size_t cuts[] = {0, 5, 20, 24, 100, n / 2, n - 4, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(bad, file, cuts[i]);
        if (cuts[i] < 24)
            snprintf(msg, sizeof msg, "truncated at byte %zu (expected at least 24", cuts[i]);
        else
            snprintf(msg, sizeof msg, "truncated at byte %zu (expected %zu)", cuts[i], n);
        expect_rejected(&r, bad, msg);
    }

    uint8_t *copy = malloc(n + 1);
    memcpy(copy, file, n);
    copy[n / 2] ^= 0x10;
    write_all(bad, copy, n);
    expect_rejected(&r, bad, "checksum mismatch (file corrupted)");
    memcpy(copy, file, n);
    copy[n - 1] ^= 0x01; /* the stored CRC itself */
    write_all(bad, copy, n);
    expect_rejected(&r, bad, "checksum mismatch");

    memcpy(copy, file, n);
    copy[0] = 'X';
    write_all(bad, copy, n);
    expect_rejected(&r, bad, "not a gradflow checkpoint (bad magic bytes)");

    memcpy(copy, file, n);
    copy[8] = 3;
    write_all(bad, copy, n);
    expect_rejected(&r, bad, "unsupported format version 3 (this build reads versions 1 to 2)");

    memcpy(copy, file, n);
    copy[n] = 0;
    write_all(bad, copy, n + 1);
    expect_rejected(&r, bad, "1 trailing bytes after the checksum");

    snprintf(msg, sizeof msg, "%s/missing.ckpt", dir);
    expect_rejected(&r, msg, "cannot open: No such file or directory");

    /* A model of another shape. */
    gf_module *other = gf_mlp(ctx, 3, (int64_t[]){4, 5, 3}, GF_ACT_RELU, GF_F32);
    gf_optimizer *oopt = gf_module_adam(other, NULL);
    rig o = {.m = other, .opt = oopt};
    expect_rejected(&o, good, "parameter 0 has shape [8,4] in the file, the model has [5,4]");
    free_rig(&o);
    /* Another depth, another dtype, another optimizer. */
    o.m = gf_mlp(ctx, 4, (int64_t[]){4, 8, 8, 3}, GF_ACT_RELU, GF_F32);
    o.opt = gf_module_adam(o.m, NULL);
    expect_rejected(&o, good, "the file has 4 parameters, the model has 6");
    free_rig(&o);
    o.m = gf_mlp(ctx, 3, (int64_t[]){4, 8, 3}, GF_ACT_RELU, GF_F64);
    o.opt = gf_module_adam(o.m, NULL);
    expect_rejected(&o, good, "parameter 0 is f32 in the file, the model has f64");
    free_rig(&o);
    o.m = gf_mlp(ctx, 3, (int64_t[]){4, 8, 3}, GF_ACT_RELU, GF_F32);
    o.opt = gf_module_sgd(o.m, &(gf_sgd_opts){.lr = 0.1, .momentum = 0.9});
    expect_rejected(&o, good, "the file holds Adam state, the optimizer is SGD");
    free_rig(&o);

    /* After all that, the good file still loads, and r trains on. */
    GF_OK_OR_FAIL(ctx, gf_load(good, r.m, r.opt));
    size_t n0, n1;
    uint8_t *s0 = snapshot(a.m, &n0), *s1 = snapshot(r.m, &n1);
    expect_same_snapshot(s0, n0, s1, n1, "good file after bad ones");
    free(s0), free(s1), free(copy), free(file);
    free_rig(&a);
    free_rig(&r);
}

Test(nn, save_reports_an_unwritable_path) {
    gf_module *m = gf_linear(ctx, 2, 2, true, GF_F32);
    char path[160];
    snprintf(path, sizeof path, "%s/no/such/dir/m.ckpt", dir);
    cr_assert_eq(gf_save(path, m, NULL), GF_EIO);
    gf_test_expect_error(ctx, "gf_save: ");
    gf_test_expect_error(ctx, "cannot create");
    gf_module_free(m);
}

/* ----------------------------------------------------------------- training */

Test(nn, mlp_learns_two_gaussian_blobs) {
    /* Class k ~ N(mu_k, 0.5^2 I) in 2-D with mu = (+-1.5, +-1.5): nearly
     * separable, so cross-entropy must fall well below log(2) = 0.69. */
    const int n = 256;
    gf_manual_seed(ctx, 123);
    gf_tensor *noise = gf_randn(ctx, GF_F32, 2, (int64_t[]){n, 2});
    float *xs = malloc(sizeof(float) * 2 * n);
    int64_t *ys = malloc(sizeof(int64_t) * n);
    const float *nz = gf_data_f32(noise);
    for (int i = 0; i < n; i++) {
        ys[i] = i & 1;
        float mu = ys[i] ? 1.5f : -1.5f;
        xs[2 * i] = mu + 0.5f * nz[2 * i];
        xs[2 * i + 1] = mu + 0.5f * nz[2 * i + 1];
    }
    gf_tensor *x = gf_tensor_f32(ctx, 2, (int64_t[]){n, 2}, xs);
    gf_tensor *y = gf_tensor_i64(ctx, 1, (int64_t[]){n}, ys);
    free(xs), free(ys);
    gf_module *m = gf_mlp(ctx, 3, (int64_t[]){2, 16, 2}, GF_ACT_RELU, GF_F32);
    gf_optimizer *opt = gf_module_adam(
        m, &(gf_adam_opts){.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    double first = 0, last = 0;
    for (int step = 0; step < 100; step++) {
        gf_scope_begin(ctx);
        gf_optimizer_zero_grad(opt);
        gf_tensor *loss = gf_cross_entropy(gf_module_forward(m, x), y);
        GF_OK_OR_FAIL(ctx, gf_backward(loss));
        GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt));
        last = gf_item(loss);
        if (step == 0) first = last;
        gf_scope_end(ctx);
    }
    cr_assert(first > 0.3, "initial loss %g", first);
    cr_assert(last < 0.05, "loss after 100 Adam steps %g (initial %g)", last, first);
    /* Accuracy in eval mode. */
    gf_module_train(m, false);
    gf_tensor *pred = gf_argmax(gf_module_forward(m, x), 1);
    const int64_t *pv = gf_data_i64(pred), *yv = gf_data_i64(y);
    int correct = 0;
    for (int i = 0; i < n; i++) correct += pv[i] == yv[i];
    cr_assert(correct >= n - 3, "%d of %d correct", correct, n);
    gf_optimizer_free(opt);
    gf_module_free(m);
}

Test(nn, sgd_fits_a_linear_teacher) {
    /* y = x W* ^T + b* with MSE: SGD with momentum drives the loss to ~0. */
    gf_manual_seed(ctx, 5);
    gf_tensor *x = gf_randn(ctx, GF_F64, 2, (int64_t[]){64, 3});
    gf_tensor *wt = gf_tensor_f64(ctx, 2, (int64_t[]){2, 3}, (double[]){1, -2, 0.5, 0.3, 0, -1});
    gf_tensor *bt = gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){0.7, -0.2});
    gf_tensor *y = gf_add(gf_matmul(x, gf_transpose(wt, 0, 1)), bt);
    gf_module *m = gf_linear(ctx, 3, 2, true, GF_F64);
    gf_optimizer *opt = gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1, .momentum = 0.9});
    double loss = 0;
    for (int step = 0; step < 200; step++) {
        gf_scope_begin(ctx);
        gf_module_zero_grad(m);
        gf_tensor *l = gf_mse_loss(gf_module_forward(m, x), y);
        GF_OK_OR_FAIL(ctx, gf_backward(l));
        GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt));
        loss = gf_item(l);
        gf_scope_end(ctx);
    }
    cr_assert(loss < 1e-8, "final MSE %g", loss);
    gf_test_expect_close(gf_module_parameter(m, 0), (double[]){1, -2, 0.5, 0.3, 0, -1}, 6, 1e-4,
                         0);
    gf_optimizer_free(opt);
    gf_module_free(m);
}
