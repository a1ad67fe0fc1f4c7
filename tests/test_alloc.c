/*
 * test_alloc.c - counts every malloc/calloc/realloc/posix_memalign/aligned_alloc made
 * while a training step runs (the test binary is linked with
 * -Wl,--wrap=... so calls from the static library are counted too): after
 * warm-up, a step of the tutorial's loop and of an MLP with Adam allocate
 * nothing from the system.
 */
#include <stdatomic.h>

#include "common.h"
#include "gradflow/nn.h"

static atomic_long n_allocs;
static atomic_bool counting;

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);

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
    for (int i = 0; i < 20; i++) gf_test_linreg_step(c, in, tg, w, b);
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
    for (int i = 0; i < 20; i++) mlp_step(c, m, opt, x, y);
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
