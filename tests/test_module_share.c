/*
 * test_module_share.c - gf_module_share: a module of another ctx whose
 * parameters are gf_share handles of the original's (same bits forward,
 * gradients into the original's .grad, updates seen, concurrent shares from
 * many threads), its errors, and its lifetime.
 */
#include <pthread.h>
#include <string.h>

#include "common.h"
#include "gradflow/nn.h"

#define IN 12
#define ROWS 5

static gf_module *make_mlp(gf_ctx *c) {
    gf_manual_seed(c, 42);
    const int64_t sizes[] = {IN, 16, 8, 3};
    gf_module *m = gf_mlp(c, 4, sizes, GF_ACT_RELU, GF_F32);
    cr_assert_not_null(m, "%s", gf_ctx_error(c));
    return m;
}

static void input(float *x) {
    for (int i = 0; i < ROWS * IN; i++) x[i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
}

/* The module's output on the fixed input, copied to out (ROWS*3 floats). */
static void forward(gf_ctx *c, gf_module *m, float *out) {
    float x[ROWS * IN];
    input(x);
    gf_scope_begin(c);
    gf_no_grad_begin(c);
    gf_tensor *y = gf_module_forward(m, gf_tensor_f32(c, 2, (int64_t[]){ROWS, IN}, x));
    GF_OK_OR_FAIL(c, gf_copy_to_f32(y, out, ROWS * 3));
    gf_no_grad_end(c);
    gf_scope_end(c);
}

Test(module_share, forward_is_bitwise_the_original) {
    gf_ctx *a = gf_ctx_create(NULL), *b = gf_ctx_create(gf_ctx_engine(a));
    gf_module *m = make_mlp(a);
    gf_module *s = gf_module_share(b, m);
    cr_assert_not_null(s, "%s", gf_ctx_error(b));
    cr_assert_eq(gf_module_num_parameters(s), gf_module_num_parameters(m));
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(s, i);
        cr_assert_eq(gf_ctx_of(p), b, "parameter %d of the share is a handle of its ctx", i);
        cr_assert(gf_get_requires_grad(p));
        cr_assert_eq(gf_data_f32(p), gf_data_f32(gf_module_parameter(m, i)),
                     "parameter %d: same storage, nothing copied", i);
    }
    float ya[ROWS * 3], yb[ROWS * 3];
    forward(a, m, ya);
    forward(b, s, yb);
    cr_assert(memcmp(ya, yb, sizeof ya) == 0);
    /* Sharing leaves no tensor in the original's ctx. */
    int64_t live = gf_ctx_live_tensors(a);
    gf_module *s2 = gf_module_share(b, m);
    cr_assert_eq(gf_ctx_live_tensors(a), live);
    gf_module_free(s2);
    gf_module_free(s);
    gf_module_free(m);
    gf_ctx_destroy(b);
    gf_ctx_destroy(a);
}

/* loss = sum(module(x)^2): backward through the share lands in the
 * original's .grad, equal to a backward through the original. */
static void loss_backward(gf_ctx *c, gf_module *m) {
    float x[ROWS * IN];
    input(x);
    gf_scope_begin(c);
    gf_tensor *y = gf_module_forward(m, gf_tensor_f32(c, 2, (int64_t[]){ROWS, IN}, x));
    GF_OK_OR_FAIL(c, gf_backward(gf_sum(gf_mul(y, y))));
    gf_scope_end(c);
}

Test(module_share, backward_accumulates_into_the_original_grad) {
    gf_ctx *a = gf_ctx_create(NULL), *b = gf_ctx_create(gf_ctx_engine(a));
    gf_module *m = make_mlp(a);
    gf_module *s = gf_module_share(b, m);
    cr_assert_not_null(s);
    int np = gf_module_num_parameters(m);
    loss_backward(a, m);
    float ref[np][16 * 16];
    for (int i = 0; i < np; i++) {
        gf_tensor *g = gf_grad(gf_module_parameter(m, i));
        cr_assert_not_null(g);
        GF_OK_OR_FAIL(a, gf_copy_to_f32(g, ref[i], gf_numel(g)));
    }
    gf_module_zero_grad(m);
    loss_backward(b, s);
    for (int i = 0; i < np; i++) {
        gf_tensor *g = gf_grad(gf_module_parameter(m, i));
        float got[16 * 16];
        GF_OK_OR_FAIL(a, gf_copy_to_f32(g, got, gf_numel(g)));
        cr_assert(memcmp(got, ref[i], sizeof(float) * (size_t)gf_numel(g)) == 0,
                  "parameter %d: the share's gradient is the original's", i);
    }
    /* A second backward through the share adds: twice the gradient. */
    loss_backward(b, s);
    for (int i = 0; i < np; i++) {
        gf_tensor *g = gf_grad(gf_module_parameter(m, i));
        float got[16 * 16];
        GF_OK_OR_FAIL(a, gf_copy_to_f32(g, got, gf_numel(g)));
        for (int64_t k = 0; k < gf_numel(g); k++)
            cr_assert_eq(got[k], 2 * ref[i][k], "parameter %d element %lld", i, (long long)k);
    }
    gf_module_free(s);
    gf_module_free(m);
    gf_ctx_destroy(b);
    gf_ctx_destroy(a);
}

Test(module_share, updates_of_the_original_are_seen_and_train_mode_is_its_own) {
    gf_ctx *a = gf_ctx_create(NULL), *b = gf_ctx_create(gf_ctx_engine(a));
    gf_module *m = make_mlp(a);
    gf_module *s = gf_module_share(b, m);
    gf_optimizer *opt = gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1});
    cr_assert_not_null(opt);
    loss_backward(a, m);
    GF_OK_OR_FAIL(a, gf_optimizer_step(opt));
    float ya[ROWS * 3], yb[ROWS * 3];
    forward(a, m, ya);
    forward(b, s, yb);
    cr_assert(memcmp(ya, yb, sizeof ya) == 0, "the share sees the step");
    gf_optimizer_free(opt);
    gf_module_free(s);
    gf_module_free(m);
    gf_ctx_destroy(b);
    gf_ctx_destroy(a);
}

typedef struct {
    gf_engine *eng;
    gf_module *m;
    const float *ref;
    int ok;
} worker_arg;

/* Each thread: its own ctx and share, 20 inferences compared to ref. */
static void *worker(void *p) {
    worker_arg *w = p;
    gf_ctx *c = gf_ctx_create(w->eng);
    gf_module *s = gf_module_share(c, w->m);
    for (int it = 0; s && it < 20; it++) {
        float y[ROWS * 3];
        forward(c, s, y);
        w->ok += memcmp(y, w->ref, sizeof y) == 0;
    }
    gf_module_free(s);
    gf_ctx_destroy(c);
    return NULL;
}

Test(module_share, many_threads_share_one_model_while_its_ctx_works) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 3});
    gf_ctx *a = gf_ctx_create(eng);
    gf_module *m = make_mlp(a);
    float ref[ROWS * 3];
    forward(a, m, ref);
    enum { K = 6 };
    pthread_t th[K];
    worker_arg args[K];
    for (int i = 0; i < K; i++) {
        args[i] = (worker_arg){eng, m, ref, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    /* The original's thread keeps running inference in its own ctx. */
    for (int it = 0; it < 20; it++) {
        float y[ROWS * 3];
        forward(a, m, y);
        cr_assert(memcmp(y, ref, sizeof y) == 0);
    }
    for (int i = 0; i < K; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].ok, 20, "thread %d: %d of 20 inferences matched", i, args[i].ok);
    }
    gf_module_free(m);
    gf_ctx_destroy(a);
    gf_engine_destroy(eng);
}

Test(module_share, errors_and_lifetime) {
    gf_ctx *a = gf_ctx_create(NULL), *b = gf_ctx_create(gf_ctx_engine(a));
    cr_assert_null(gf_module_share(NULL, NULL));
    cr_assert_null(gf_module_share(b, NULL));
    gf_test_expect_error(b, "gf_module_share: the module is NULL");
    gf_ctx_clear_error(b);

    gf_engine *other = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_ctx *c = gf_ctx_create(other);
    gf_module *m = make_mlp(a);
    cr_assert_null(gf_module_share(c, m));
    gf_test_expect_error(c, "gf_module_share: the module's ctx runs on another engine");

    /* A share holds its own references: it keeps working after the original
     * is freed, and freeing it leaves the original intact. */
    float ref[ROWS * 3], y[ROWS * 3];
    forward(a, m, ref);
    gf_module *s = gf_module_share(b, m);
    gf_module *s2 = gf_module_share(b, m);
    gf_module_free(s2);
    forward(a, m, y);
    cr_assert(memcmp(y, ref, sizeof y) == 0);
    gf_module_free(m);
    forward(b, s, y);
    cr_assert(memcmp(y, ref, sizeof y) == 0, "the share outlives the original module");

    /* A module whose ctx is gone cannot be shared. */
    gf_ctx *d = gf_ctx_create(gf_ctx_engine(a));
    gf_module *md = make_mlp(d);
    gf_ctx_destroy(d);
    cr_assert_null(gf_module_share(b, md));
    gf_test_expect_error(b, "gf_module_share: the module's ctx was destroyed");
    gf_module_free(md);

    gf_module_free(s);
    gf_ctx_destroy(c);
    gf_engine_destroy(other);
    gf_ctx_destroy(b);
    gf_ctx_destroy(a);
}
