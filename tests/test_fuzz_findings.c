/*
 * test_fuzz_findings.c - regression tests for what the fuzz targets of
 * tests/fuzz found: each test is the smallest program that showed the bug.
 */
#include "common.h"
#include "gradflow/nn.h"

#include <unistd.h>

static gf_tensor *square_sum(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n, (void)user;
    return gf_sum(gf_mul(in[0], in[0]));
}

/* sum(x^3): central differences with step h miss its gradient by h^2. */
static gf_tensor *cube_sum(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n, (void)user;
    return gf_sum(gf_mul(gf_mul(in[0], in[0]), in[0]));
}

/* gf_gradcheck kept its random weights and its loss with gf_keep inside its
 * own scope, which moved both into the caller's scope: two tensors left
 * behind per call (for good, outside any scope). */
Test(fuzz_findings, gradcheck_leaves_no_tensor_behind) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *x = gf_requires_grad(gf_tensor_f64(c, 1, (int64_t[]){3}, (double[]){1, -2, 3}),
                                    true);
    int64_t before = gf_ctx_live_tensors(c);
    GF_OK_OR_FAIL(c, gf_gradcheck(c, square_sum, 1, &x, NULL, 1e-6, 1e-5, 1e-3));
    cr_assert_eq(gf_ctx_live_tensors(c), before, "%lld tensors before, %lld after",
                 (long long)before, (long long)gf_ctx_live_tensors(c));
    /* A failing check (a huge step on a cubic) leaves nothing either. */
    cr_assert_eq(gf_gradcheck(c, cube_sum, 1, &x, NULL, 0.5, 0, 0), GF_EINVAL);
    gf_ctx_clear_error(c);
    cr_assert_eq(gf_ctx_live_tensors(c), before);
    gf_ctx_destroy(c);
}

/* An input of another ctx was copied in its own ctx, outside the scope
 * gf_gradcheck opened in the ctx passed: the copies stayed there. It is an
 * error now, like any op's inputs from two ctxs. */
Test(fuzz_findings, gradcheck_rejects_an_input_of_another_ctx) {
    gf_ctx *c = gf_ctx_create(NULL), *other = gf_ctx_create(gf_ctx_engine(c));
    gf_tensor *x = gf_requires_grad(gf_tensor_f64(c, 1, (int64_t[]){2}, (double[]){1, 2}), true);
    gf_tensor *y =
        gf_requires_grad(gf_tensor_f64(other, 1, (int64_t[]){2}, (double[]){3, 4}), true);
    int64_t before = gf_ctx_live_tensors(other);
    cr_assert_eq(gf_gradcheck(c, square_sum, 2, (gf_tensor *[]){x, y}, NULL, 1e-6, 1e-5, 1e-3),
                 GF_EINVAL);
    gf_test_expect_error(c, "gf_gradcheck: input 1 [2] belongs to another ctx");
    cr_assert_eq(gf_ctx_live_tensors(other), before);
    gf_ctx_destroy(other);
    gf_ctx_destroy(c);
}

/* gf_nll_loss, composed of public ops, left its intermediates (one_hot, the
 * product, the sum) as handles in the caller's scope: outside any scope they
 * stayed until gf_ctx_destroy. It returns one handle now, like an op. */
Test(fuzz_findings, nll_loss_leaves_only_its_result) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *lp = gf_log_softmax(gf_tensor_f64(c, 2, (int64_t[]){2, 3},
                                                 (double[]){1, 2, 3, 4, 5, 7}), 1);
    gf_tensor *y = gf_tensor_i64(c, 1, (int64_t[]){2}, (int64_t[]){2, 0});
    gf_realize(lp);
    int64_t before = gf_ctx_live_tensors(c);
    gf_tensor *loss = gf_nll_loss(lp, y);
    double want = -(gf_data_f64(lp)[2] + gf_data_f64(lp)[3]) / 2;
    cr_assert(fabs(gf_item(loss) - want) <= 1e-12, "loss %.17g, expected %.17g", gf_item(loss),
              want);
    gf_release(loss);
    cr_assert_eq(gf_ctx_live_tensors(c), before, "%lld tensors before, %lld after",
                 (long long)before, (long long)gf_ctx_live_tensors(c));
    gf_ctx_destroy(c);
}

/* Labels of another ctx: gf_nll_loss made their one_hot in that ctx, then
 * gf_mul failed on the two ctxs, and the one_hot stayed there (outside the
 * scope gf_nll_loss opens in its own ctx). It is an error up front now; the
 * error of a binary op on two ctxs names the public function. */
Test(fuzz_findings, nll_loss_rejects_labels_of_another_ctx) {
    gf_ctx *c = gf_ctx_create(NULL), *other = gf_ctx_create(gf_ctx_engine(c));
    gf_tensor *lp = gf_log_softmax(gf_zeros(c, GF_F64, 2, (int64_t[]){2, 3}), 1);
    gf_tensor *y = gf_tensor_i64(other, 1, (int64_t[]){2}, (int64_t[]){2, 0});
    int64_t before = gf_ctx_live_tensors(other);
    cr_assert_null(gf_nll_loss(lp, y));
    gf_test_expect_error(c, "gf_nll_loss: labels belong to another ctx");
    cr_assert_eq(gf_ctx_live_tensors(other), before);
    gf_ctx_clear_error(c);
    cr_assert_null(gf_mul(lp, gf_zeros(other, GF_F64, 2, (int64_t[]){2, 3})));
    gf_test_expect_error(c, "gf_mul: input 1 belongs to another ctx");
    gf_ctx_destroy(other);
    gf_ctx_destroy(c);
}

/* An in-place update of an expanded view (stride 0) updated its one memory
 * element once per view element: axpy_ on a [1] expanded to [3] added 3
 * times (and i64 values overflowed from there). Writing to elements that
 * share memory is an error now, as in PyTorch, for every in-place op. */
Test(fuzz_findings, inplace_write_to_an_expanded_view_is_an_error) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_tensor *base = gf_tensor_f64(c, 1, (int64_t[]){1}, (double[]){1});
    gf_tensor *e = gf_expand(base, 1, (int64_t[]){3});
    gf_tensor *one = gf_scalar(c, GF_F64, 1);
    cr_assert_eq(gf_axpy_(e, 1.0, one), GF_EINVAL);
    gf_test_expect_error(c, "gf_axpy_: tensor [3] is written in place but its elements share");
    gf_ctx_clear_error(c);
    cr_assert_eq(gf_fill_(e, 2.0), GF_EINVAL);
    gf_test_expect_error(c, "stride 0 in dim 0");
    gf_ctx_clear_error(c);
    cr_assert_eq(gf_item(base), 1.0, "the base was written");
    /* A size-1 dim of stride 0 holds one element: it may be written. */
    gf_tensor *e1 = gf_expand(base, 2, (int64_t[]){1, 1});
    GF_OK_OR_FAIL(c, gf_fill_(e1, 5.0));
    cr_assert_eq(gf_item(base), 5.0);
    gf_ctx_destroy(c);
}

/* gf_to_dtype to i64 checks a computed input's values at the call. On an
 * expanded view it read every element of the view, not of its storage: a
 * [2] expanded to [2, 2^40] took 2^41 reads (hours) for a call that records
 * one node. It reads each element in memory once now; the index it reports
 * is still the first bad one in the view's row-major order. */
Test(fuzz_findings, to_i64_checks_an_expanded_view_by_its_storage, .timeout = 30) {
    gf_ctx *c = gf_ctx_create(NULL);
    const int64_t big = INT64_C(1) << 40;
    gf_tensor *col = gf_tensor_f64(c, 2, (int64_t[]){2, 1}, (double[]){1.5, NAN});
    gf_tensor *e = gf_expand(col, 2, (int64_t[]){2, big});
    cr_assert_null(gf_to_dtype(e, GF_I64));
    gf_test_expect_error(c, "gf_to_dtype: element 1099511627776 of f64 tensor "
                            "[2,1099511627776] is nan");
    gf_ctx_clear_error(c);
    /* Values that fit: the cast is recorded (running it would need 2^40 * 3
     * elements of output). */
    gf_tensor *row = gf_tensor_f32(c, 2, (int64_t[]){1, 3}, (float[]){1, -2, 3.5f});
    gf_tensor *i = gf_to_dtype(gf_expand(row, 2, (int64_t[]){big, 3}), GF_I64);
    cr_assert_not_null(i, "%s", gf_ctx_error(c));
    gf_test_expect_shape(i, 2, (int64_t[]){big, 3});
    cr_assert_eq(gf_dtype_of(i), GF_I64);
    /* A small view converts as before. */
    gf_tensor *small = gf_to_dtype(gf_expand(row, 2, (int64_t[]){2, 3}), GF_I64);
    const int64_t *d = gf_data_i64(small);
    cr_assert_not_null(d, "%s", gf_ctx_error(c));
    const int64_t want[6] = {1, -2, 3, 1, -2, 3};
    for (int k = 0; k < 6; k++)
        cr_assert_eq(d[k], want[k], "element %d: %lld", k, (long long)d[k]);
    gf_ctx_destroy(c);
}

/* One SGD training step of m (in c) on fixed data. */
static void sgd_step(gf_ctx *c, gf_module *m, gf_optimizer *opt) {
    gf_scope_begin(c);
    gf_tensor *x = gf_tensor_f64(c, 2, (int64_t[]){2, 2}, (double[]){1, -2, 0.5, 3});
    GF_OK_OR_FAIL(c, gf_backward(gf_sum(gf_module_forward(m, x))));
    GF_OK_OR_FAIL(c, gf_optimizer_step(opt));
    gf_optimizer_zero_grad(opt);
    gf_scope_end(c);
}

/* m's parameters, concatenated, into out (at most cap values); the count. */
static int64_t param_values(gf_module *m, double *out, int64_t cap) {
    int64_t n = 0;
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        cr_assert_leq(n + gf_numel(p), cap);
        memcpy(out + n, gf_data_f64(p), sizeof(double) * (size_t)gf_numel(p));
        n += gf_numel(p);
    }
    return n;
}

/* gf_load gives the optimizer the file's hyperparameters, momentum too, but
 * checked the file's momentum buffers against the optimizer's own momentum
 * setting: an SGD without momentum loaded a momentum file saved before its
 * first step (no buffers yet), stepped, saved, and that file did not load
 * into an SGD made the same way ("1 state tensors in the file, the
 * optimizer keeps 0"). The buffers are checked against the file's
 * hyperparameters now, as torch.optim's load_state_dict takes them. */
Test(fuzz_findings, a_momentum_file_loads_into_sgd_without_momentum_before_and_after_a_step) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_manual_seed(c, 3);
    char dir[] = "/tmp/gf_fuzz_findings_XXXXXX", fresh[64], stepped[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(fresh, sizeof fresh, "%s/fresh", dir);
    snprintf(stepped, sizeof stepped, "%s/stepped", dir);
    gf_sgd_opts plain = GF_SGD_DEFAULTS, heavy = GF_SGD_DEFAULTS;
    plain.lr = heavy.lr = 0.1;
    heavy.momentum = 0.9;
    gf_module *m[3];
    gf_optimizer *o[3];
    for (int k = 0; k < 3; k++) {
        m[k] = gf_linear(c, 2, 1, true, GF_F64);
        o[k] = gf_module_sgd(m[k], k == 0 ? &heavy : &plain);
        cr_assert(m[k] && o[k], "%s", gf_ctx_error(c));
    }
    GF_OK_OR_FAIL(c, gf_save(fresh, m[0], o[0]));
    GF_OK_OR_FAIL(c, gf_load(fresh, m[1], o[1]));
    sgd_step(c, m[1], o[1]);
    GF_OK_OR_FAIL(c, gf_save(stepped, m[1], o[1]));
    GF_OK_OR_FAIL(c, gf_load(stepped, m[2], o[2]));
    /* Both go on with momentum 0.9 and the same buffer: the same bits. */
    sgd_step(c, m[1], o[1]);
    sgd_step(c, m[2], o[2]);
    double a[8], b[8];
    int64_t n = param_values(m[1], a, 8);
    cr_assert_eq(param_values(m[2], b, 8), n);
    cr_assert(memcmp(a, b, sizeof(double) * (size_t)n) == 0, "the resumed run differs");
    /* And that is the run of an SGD made with momentum 0.9. */
    gf_module *m4 = gf_linear(c, 2, 1, true, GF_F64);
    gf_optimizer *o4 = gf_module_sgd(m4, &heavy);
    GF_OK_OR_FAIL(c, gf_load(fresh, m4, o4));
    sgd_step(c, m4, o4);
    sgd_step(c, m4, o4);
    cr_assert_eq(param_values(m4, b, 8), n);
    cr_assert(memcmp(a, b, sizeof(double) * (size_t)n) == 0, "momentum 0.9 from the start "
              "differs from momentum loaded from the file");
    gf_optimizer_free(o4);
    gf_module_free(m4);
    for (int k = 0; k < 3; k++) gf_optimizer_free(o[k]), gf_module_free(m[k]);
    remove(fresh);
    remove(stepped);
    rmdir(dir);
    gf_ctx_destroy(c);
}

/* gf_index_select checks a computed index's values at the call. An index
 * expanded from one value to 2^40 entries was read 2^40 times (hours) for a
 * call that records one node; an expanded index repeats one value, read
 * once now. */
Test(fuzz_findings, index_select_checks_an_expanded_index_once, .timeout = 30) {
    gf_ctx *c = gf_ctx_create(NULL);
    const int64_t big = INT64_C(1) << 40;
    gf_tensor *a = gf_tensor_f64(c, 1, (int64_t[]){3}, (double[]){10, 20, 30});
    gf_tensor *two = gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){2});
    gf_tensor *r = gf_index_select(a, 0, gf_expand(two, 1, (int64_t[]){big}));
    cr_assert_not_null(r, "%s", gf_ctx_error(c));
    gf_test_expect_shape(r, 1, (int64_t[]){big});
    gf_tensor *five = gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){5});
    cr_assert_null(gf_index_select(a, 0, gf_expand(five, 1, (int64_t[]){big})));
    gf_test_expect_error(c, "gf_index_select: index[0] = 5 is out of range for dim 0 of size 3");
    gf_ctx_clear_error(c);
    /* A short expanded index selects as before. */
    gf_tensor *s = gf_index_select(a, 0, gf_expand(two, 1, (int64_t[]){4}));
    const double *d = gf_data_f64(s);
    cr_assert_not_null(d, "%s", gf_ctx_error(c));
    for (int k = 0; k < 4; k++) cr_assert_eq(d[k], 30.0, "element %d: %g", k, d[k]);
    gf_ctx_destroy(c);
}

/* gf_one_hot and gf_cross_entropy check computed labels at the call, and
 * read every label of an expanded view: a label expanded to 2^40 rows took
 * 2^40 reads. Each label in memory is read once now; the index in the
 * error is still the first bad one in the labels' row-major order. */
Test(fuzz_findings, label_checks_read_an_expanded_view_by_its_storage, .timeout = 30) {
    gf_ctx *c = gf_ctx_create(NULL);
    const int64_t big = INT64_C(1) << 40;
    gf_tensor *col = gf_tensor_i64(c, 2, (int64_t[]){2, 1}, (int64_t[]){1, 7});
    gf_tensor *r = gf_one_hot(gf_expand(col, 2, (int64_t[]){2, big}), 8, GF_F32);
    cr_assert_not_null(r, "%s", gf_ctx_error(c));
    gf_test_expect_shape(r, 3, (int64_t[]){2, big, 8});
    cr_assert_null(gf_one_hot(gf_expand(col, 2, (int64_t[]){2, big}), 5, GF_F32));
    gf_test_expect_error(c, "gf_one_hot: label 7 at index 1099511627776 is out of range for 5 "
                            "classes");
    gf_ctx_clear_error(c);
    gf_tensor *one = gf_tensor_i64(c, 1, (int64_t[]){1}, (int64_t[]){3});
    gf_tensor *logits = gf_expand(gf_zeros(c, GF_F32, 2, (int64_t[]){1, 2}), 2,
                                  (int64_t[]){big, 2});
    cr_assert_null(gf_cross_entropy(logits, gf_expand(one, 1, (int64_t[]){big})));
    gf_test_expect_error(c, "gf_cross_entropy: label 3 at index 0 is out of range for 2 classes");
    gf_ctx_clear_error(c);
    /* A short expanded view converts as before. */
    gf_tensor *h = gf_one_hot(gf_expand(col, 2, (int64_t[]){2, 2}), 8, GF_I64);
    const int64_t *d = gf_data_i64(h);
    cr_assert_not_null(d, "%s", gf_ctx_error(c));
    for (int k = 0; k < 32; k++)
        cr_assert_eq(d[k], k % 8 == (k < 16 ? 1 : 7), "element %d: %lld", k, (long long)d[k]);
    gf_ctx_destroy(c);
}
