/*
 * test_alloc.c - counts every malloc/calloc/realloc/posix_memalign/aligned_alloc made
 * while a training step runs (the test binary is linked with
 * -Wl,--wrap=... so calls from the static library are counted too): after
 * warm-up, a step of the tutorial's loop and of an MLP with Adam allocate
 * nothing from the system. It also wraps GOMP_parallel, libgomp's entry to
 * every `omp parallel` region: a region that runs on one thread still
 * allocates a team and makes a futex call, so kernels must enter none on a
 * one-thread engine, nor for tiny tensors on any engine.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "common.h"
#include "gradflow/nn.h"

static atomic_long n_allocs;
static atomic_bool counting;

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);

void __real_GOMP_parallel(void (*fn)(void *), void *data, unsigned nthr, unsigned flags);

static atomic_long n_regions;

void __wrap_GOMP_parallel(void (*fn)(void *), void *data, unsigned nthr, unsigned flags) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_regions, 1);
    __real_GOMP_parallel(fn, data, nthr, flags);
}

void *__wrap_malloc(size_t n) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t al, size_t n) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __real_posix_memalign(p, al, n);
}
void *__wrap_aligned_alloc(size_t al, size_t n) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_allocs, 1);
    return __real_aligned_alloc(al, n);
}

Test(alloc, tutorial_loop_allocates_nothing_after_warmup) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
    gf_ctx *c = gf_ctx_create(eng);
    gf_tensor *in = gf_tensor_f32(c, 2, (int64_t[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
    gf_tensor *tg = gf_tensor_f32(c, 2, (int64_t[]){3, 1}, (float[]){2, 4, 6});
    gf_tensor *w = gf_requires_grad(gf_randn(c, GF_F32, 2, (int64_t[]){2, 1}), true);
    gf_tensor *b = gf_requires_grad(gf_randn(c, GF_F32, 1, (int64_t[]){1}), true);
    /* Freed tensor objects are reused only after 512 later frees (the
     * stale-handle quarantine, engine/tensor.c): this step frees 19, so
     * the quarantine is full after 27 steps and the loop recycles from then. */
    for (int i = 0; i < 60; i++) gf_test_linreg_step(c, in, tg, w, b);
    atomic_store(&n_allocs, 0);
    atomic_store(&counting, true);
    for (int i = 0; i < 100; i++) gf_test_linreg_step(c, in, tg, w, b);
    atomic_store(&counting, false);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    cr_assert_eq(atomic_load(&n_allocs), 0, "%ld system allocations in 100 steps",
                 atomic_load(&n_allocs));
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
}

static void mlp_step(gf_ctx *c, gf_module *m, gf_optimizer *opt, gf_tensor *x, gf_tensor *y) {
    gf_scope_begin(c);
    gf_tensor *loss = gf_cross_entropy(gf_module_forward(m, x), y);
    gf_backward(loss);
    gf_optimizer_step(opt);
    gf_optimizer_zero_grad(opt);
    gf_item(loss);
    gf_scope_end(c);
}

Test(alloc, mlp_adam_step_allocates_nothing_after_warmup) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
    gf_ctx *c = gf_ctx_create(eng);
    gf_manual_seed(c, 3);
    gf_module *m = gf_mlp(c, 4, (int64_t[]){64, 128, 128, 10}, GF_ACT_RELU, GF_F32);
    gf_optimizer *opt = gf_module_adam(m, NULL);
    gf_tensor *x = gf_randn(c, GF_F32, 2, (int64_t[]){32, 64});
    int64_t lab[32];
    for (int i = 0; i < 32; i++) lab[i] = i % 10;
    gf_tensor *y = gf_tensor_i64(c, 1, (int64_t[]){32}, lab);
    /* Which thread runs which node varies from run to run. Each thread's
     * kernel scratch (gf__kscratch) is sized for every small kernel by the
     * first kernel it runs; before that was so, a thread that first ran
     * cross_entropy after 20 steps made this test fail in about 1 run of 5.
     * The long warm-up also covers other per-thread first-use growth. */
    for (int i = 0; i < 200; i++) mlp_step(c, m, opt, x, y);
    atomic_store(&n_allocs, 0);
    atomic_store(&counting, true);
    for (int i = 0; i < 50; i++) mlp_step(c, m, opt, x, y);
    atomic_store(&counting, false);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    cr_assert_eq(atomic_load(&n_allocs), 0, "%ld system allocations in 50 steps",
                 atomic_load(&n_allocs));
    gf_optimizer_free(opt);
    gf_module_free(m);
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
}

/* A step through the reductions, softmax family, losses and vector-math
 * unaries on x [r, c] (f32, requires grad) and labels [r] (c classes): each
 * forward kernel and, through backward, the kernels of their gradients.
 * Both dims are reduced so that row, column and split reductions all run. */
static void ops_step(gf_ctx *c, gf_tensor *x, gf_tensor *lab) {
    gf_scope_begin(c);
    gf_tensor *t = gf_add(gf_tanh(x), gf_exp(gf_mul(x, gf_scalar(c, GF_F32, 0.1))));
    gf_tensor *l = gf_add(gf_sum(t), gf_mean(gf_sigmoid(x)));
    for (int d = 0; d < 2; d++) {
        l = gf_add(l, gf_sum(gf_max_dim(t, d, false)));
        l = gf_add(l, gf_sum(gf_mean_dim(t, d, true)));
        l = gf_add(l, gf_mean(gf_mul(gf_softmax(x, d), gf_log_softmax(t, d))));
    }
    l = gf_add(l, gf_mse_loss(t, x));
    l = gf_add(l, gf_cross_entropy(x, lab));
    gf_tensor *oh = gf_one_hot(gf_argmax(x, 1), gf_shape(x)[1], GF_F32);
    l = gf_add(l, gf_sum(gf_mul(oh, x)));
    l = gf_add(l, gf_sum(gf_to_dtype(gf_argmax(x, 0), GF_F32)));
    gf_backward(l);
    gf_item(l);
    gf_zero_grad(x);
    gf_scope_end(c);
}

/* Runs warm steps, then counts the regions of `steps` more of each. */
static long count_regions(gf_ctx *c, gf_tensor **xs, gf_tensor **labs, int nx, int steps) {
    for (int i = 0; i < nx; i++) ops_step(c, xs[i], labs[i]);
    atomic_store(&n_regions, 0);
    atomic_store(&counting, true);
    for (int s = 0; s < steps; s++)
        for (int i = 0; i < nx; i++) ops_step(c, xs[i], labs[i]);
    atomic_store(&counting, false);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    return atomic_load(&n_regions);
}

static gf_tensor *labels_of(gf_ctx *c, int64_t r, int64_t classes) {
    int64_t *p = malloc((size_t)r * sizeof *p);
    cr_assert_not_null(p);
    for (int64_t i = 0; i < r; i++) p[i] = (i * 7) % classes;
    gf_tensor *y = gf_tensor_i64(c, 1, (int64_t[]){r}, p);
    free(p);
    return y;
}

/* OpenMP regions in `steps` op steps (after warm-up) over tensors that are
 * tiny and above every kernel threshold (32768 elements) with long rows,
 * short rows (< 128 classes), and few long columns (split reductions). */
static long op_step_regions(gf_ctx *c, int steps) {
    const int64_t shapes[][2] = {{2, 2}, {400, 300}, {3000, 20}, {2, 40000}};
    enum { NX = sizeof shapes / sizeof shapes[0] };
    gf_tensor *xs[NX], *labs[NX];
    for (int i = 0; i < NX; i++) {
        xs[i] = gf_requires_grad(gf_randn(c, GF_F32, 2, shapes[i]), true);
        labs[i] = labels_of(c, shapes[i][0], shapes[i][1]);
    }
    return count_regions(c, xs, labs, NX, steps);
}

/* OpenMP regions in `steps` steps of a 64-256-256-10 MLP with Adam on batch
 * 512, after `warm` steps. */
static long mlp_step_regions(gf_ctx *c, int warm, int steps) {
    gf_module *m = gf_mlp(c, 4, (int64_t[]){64, 256, 256, 10}, GF_ACT_RELU, GF_F32);
    gf_optimizer *opt = gf_module_adam(m, NULL);
    gf_tensor *x = gf_randn(c, GF_F32, 2, (int64_t[]){512, 64});
    gf_tensor *y = labels_of(c, 512, 10);
    for (int i = 0; i < warm; i++) mlp_step(c, m, opt, x, y);
    atomic_store(&n_regions, 0);
    atomic_store(&counting, true);
    for (int i = 0; i < steps; i++) mlp_step(c, m, opt, x, y);
    atomic_store(&counting, false);
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_optimizer_free(opt);
    gf_module_free(m);
    return atomic_load(&n_regions);
}

Test(alloc, one_thread_engine_enters_no_openmp_region) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_ctx *c = gf_ctx_create(eng);
    gf_manual_seed(c, 5);
    long n = op_step_regions(c, 3);
    cr_assert_eq(n, 0, "%ld OpenMP regions in 3 op steps on a 1-thread engine", n);
    n = mlp_step_regions(c, 3, 10);
    cr_assert_eq(n, 0, "%ld OpenMP regions in 10 MLP+Adam steps on a 1-thread engine", n);
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
}

Test(alloc, tiny_ops_enter_no_openmp_region_on_two_threads) {
#if defined(__SANITIZE_THREAD__)
    /* it opens OpenMP regions on purpose; libgomp is not instrumented */
    cr_skip_test("OpenMP backend under ThreadSanitizer");
#endif
    gf_engine *eng =
        gf_engine_create(&(gf_engine_opts){.num_threads = 2, .intraop = GF_INTRAOP_OPENMP});
    gf_ctx *c = gf_ctx_create(eng);
    gf_manual_seed(c, 6);
    gf_tensor *x = gf_requires_grad(gf_randn(c, GF_F32, 2, (int64_t[]){2, 2}), true);
    gf_tensor *lab = labels_of(c, 2, 2);
    long n = count_regions(c, &x, &lab, 1, 10);
    cr_assert_eq(n, 0, "%ld OpenMP regions in 10 steps on 4-element tensors", n);
    /* the counter sees regions: the same step on a large tensor opens some */
    gf_tensor *big = gf_requires_grad(gf_randn(c, GF_F32, 2, (int64_t[]){400, 300}), true);
    gf_tensor *blab = labels_of(c, 400, 300);
    n = count_regions(c, &big, &blab, 1, 1);
    cr_assert_gt(n, 0, "no OpenMP region counted for 400x300 tensors on 2 threads");
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
}

/* On the pool backend no kernel opens an OpenMP region, however large its
 * tensors: their tiles run on the engine's own threads (the threads of one
 * scheduler never compete with a second team). The same ops and MLP+Adam
 * steps as above, on 2 and 3 threads. */
Test(alloc, pool_backend_enters_no_openmp_region_at_any_size) {
    for (int nt = 2; nt <= 3; nt++) {
        gf_engine *eng =
            gf_engine_create(&(gf_engine_opts){.num_threads = nt, .intraop = GF_INTRAOP_POOL});
        gf_ctx *c = gf_ctx_create(eng);
        gf_manual_seed(c, 7);
        long n = op_step_regions(c, 2);
        cr_assert_eq(n, 0, "%ld OpenMP regions in 2 op steps on the pool (%d threads)", n, nt);
        n = mlp_step_regions(c, 2, 5);
        cr_assert_eq(n, 0, "%ld OpenMP regions in 5 MLP+Adam steps on the pool (%d threads)", n,
                     nt);
        gf_ctx_destroy(c);
        gf_engine_destroy(eng);
    }
}
