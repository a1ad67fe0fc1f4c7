/*
 * test_oom.c - out-of-memory fault injection over a whole training round
 * trip: engine and ctx creation, an MLP, one step (forward, cross-entropy,
 * backward, Adam), gf_save and gf_load into a second model, teardown.
 *
 * The binary is linked with -Wl,--wrap=malloc,calloc,realloc,posix_memalign,
 * aligned_alloc,free, so every allocation the static library makes passes
 * through the wrappers below. For k = 1, 2, ... the k-th allocation of a run
 * fails (once) until a run makes fewer than k allocations. Each run must
 * either fail cleanly (NULL or a negative status, GF_ENOMEM with a message on
 * the ctx, nothing leaked, the ctx still computing correct values after
 * gf_ctx_clear_error; or NULL from engine/ctx creation) or, where the library
 * recovered from the failure by design, finish with the same bits as a run
 * without failures. Live allocations are counted by pointer, so libc's own
 * allocations (strdup, fopen) freed by the library do not confuse the count.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "gradflow/nn.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
void __real_free(void *p);

/* ------------------------------------------------- the allocation wrappers */

/* Live pointers allocated through the wrappers: an open-addressing set
 * (linear probing, backward-shift deletion) under one lock, since the
 * pool's workers allocate too. */
#define OOM_SET_BITS 20
static void *live_set[(size_t)1 << OOM_SET_BITS];
static long live_count;
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;

/* Allocations left before the injected failure (0: none armed), whether the
 * failure happened, and allocations seen while counting. */
static atomic_long countdown;
static atomic_bool injected;
static atomic_long n_allocs;

static size_t slot_of(const void *p) {
    return (size_t)(((uintptr_t)p >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> (64 - OOM_SET_BITS));
}

static void track(void *p) {
    if (!p) return;
    pthread_mutex_lock(&live_mu);
    size_t mask = ((size_t)1 << OOM_SET_BITS) - 1, i = slot_of(p);
    while (live_set[i]) i = (i + 1) & mask;
    live_set[i] = p;
    live_count++;
    pthread_mutex_unlock(&live_mu);
}

/* Removes p if the wrappers allocated it; true if it was there. */
static bool untrack(void *p) {
    if (!p) return false;
    pthread_mutex_lock(&live_mu);
    size_t mask = ((size_t)1 << OOM_SET_BITS) - 1, i = slot_of(p);
    while (live_set[i] && live_set[i] != p) i = (i + 1) & mask;
    bool found = live_set[i] == p;
    if (found) {
        live_set[i] = NULL;
        live_count--;
        /* Backward shift: later entries of the probe run move into the gap
         * when their home slot is not inside (gap, j]. */
        for (size_t j = (i + 1) & mask; live_set[j]; j = (j + 1) & mask) {
            size_t h = slot_of(live_set[j]);
            bool home_in_gap = i <= j ? (h > i && h <= j) : (h > i || h <= j);
            if (home_in_gap) continue;
            live_set[i] = live_set[j];
            live_set[j] = NULL;
            i = j;
        }
    }
    pthread_mutex_unlock(&live_mu);
    return found;
}

static long live_allocs(void) {
    pthread_mutex_lock(&live_mu);
    long n = live_count;
    pthread_mutex_unlock(&live_mu);
    return n;
}

/* True for the allocation that must fail. */
static bool inject(void) {
    atomic_fetch_add(&n_allocs, 1);

    long c = atomic_load(&countdown);
    while (c > 0 && !atomic_compare_exchange_weak(&countdown, &c, c - 1)) {
    }
    if (c == 1) {
        atomic_store(&injected, true);
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n) {
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __real_malloc(n);
    track(p);
    return p;
}

void *__wrap_calloc(size_t a, size_t b) {
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __real_calloc(a, b);
    track(p);
    return p;
}

void *__wrap_realloc(void *p, size_t n) {
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    /* A pointer libc allocated stays untracked after it moves. */
    bool ours = !p || untrack(p);
    void *q = __real_realloc(p, n);
    if (ours && q) track(q);
    else if (ours && p && n) track(p); /* failed: p is still allocated */
    return q;
}

int __wrap_posix_memalign(void **p, size_t al, size_t n) {
    if (inject()) return ENOMEM;
    int r = __real_posix_memalign(p, al, n);
    if (r == 0) track(*p);
    return r;
}

void *__wrap_aligned_alloc(size_t al, size_t n) {
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = __real_aligned_alloc(al, n);
    track(p);
    return p;
}

void __wrap_free(void *p) {
    untrack(p);
    __real_free(p);
}

/* ------------------------------------------------------------ the scenario */

/* The first layer's weights [HID, IN] are bigger than anything else, so
 * that Adam's state for them is not served from the allocator's cache and
 * the optimizer step allocates too. */
enum { IN = 40, HID = 24, OUT = 3, BATCH = 5 };

enum { NPARAM = HID * IN + HID + OUT * HID + OUT };

/* What a run that got to the end computed. */
typedef struct {
    double loss;
    float loaded[NPARAM]; /* the loaded model's parameters, in order */
    int64_t steps;
} round_trip;

/* m's parameters, in order, into out[NPARAM]; false (error on the ctx) if
 * one cannot be read. */
static bool read_params(gf_module *m, float *out) {
    int at = 0;
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        const float *d = gf_data_f32(p);
        if (!d) return false;
        cr_assert_leq(at + gf_numel(p), NPARAM);
        memcpy(out + at, d, sizeof(float) * (size_t)gf_numel(p));
        at += (int)gf_numel(p);
    }
    cr_assert_eq(at, NPARAM);
    return true;
}

/* How a run ended. */
typedef enum { RUN_DONE, RUN_FAILED, RUN_NO_ENGINE } run_end;

static char ckpt_path[64];
/* The call that failed in the last run (NULL: none). */
static const char *failed_call;

/* Asserts the state after a call that failed (failed) or succeeded: a
 * failure is an injected allocation failure reported as GF_ENOMEM with a
 * message; a success leaves no error behind. Returns failed. */
static bool check_call(gf_ctx *c, bool failed, const char *what, bool strict) {
    gf_status s = gf_ctx_status(c);
    const char *e = gf_ctx_error(c);
    if (!failed) {
        cr_assert_eq(s, GF_OK, "%s succeeded but left an error: %s", what, e ? e : "?");
        return false;
    }
    failed_call = what;
    cr_assert(atomic_load(&injected), "%s failed without an injected failure: %s", what,
              e ? e : "(no message)");
    cr_assert(e && *e, "%s failed with no message on the ctx (status %d)", what, (int)s);
    if (strict)
        cr_assert_eq(s, GF_ENOMEM, "%s failed with status %d (expected GF_ENOMEM): %s", what,
                     (int)s, e);
    return true;
}

/* Builds the model, runs one training step, saves, loads into a second
 * model and reads it back. strict: every failure must be GF_ENOMEM (one
 * thread, where the injected failure is the only one). */
static run_end run_once(int nthreads, bool eager, bool strict, round_trip *out) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = nthreads});
    failed_call = NULL;
    if (!eng) {
        failed_call = "gf_engine_create";
        cr_assert(atomic_load(&injected), "gf_engine_create failed without an injected failure");
        return RUN_NO_ENGINE;
    }
    gf_ctx *c = gf_ctx_create(eng);
    if (!c) {
        failed_call = "gf_ctx_create";
        cr_assert(atomic_load(&injected), "gf_ctx_create failed without an injected failure");
        gf_engine_destroy(eng);
        return RUN_NO_ENGINE;
    }
    gf_ctx_set_eager(c, eager);
    gf_manual_seed(c, 11);
    float xs[BATCH * IN];
    for (int i = 0; i < BATCH * IN; i++) xs[i] = (float)((i * 7) % 11) / 4 - 1;
    static const int64_t ys[BATCH] = {0, 2, 1, 2, 0};
    run_end end = RUN_FAILED;
    gf_module *m = NULL, *m2 = NULL;
    gf_optimizer *opt = NULL, *opt2 = NULL;
    gf_tensor *x = NULL, *y = NULL;

    m = gf_mlp(c, 3, (int64_t[]){IN, HID, OUT}, GF_ACT_RELU, GF_F32);
    if (check_call(c, !m, "gf_mlp", strict)) goto done;
    opt = gf_module_adam(m, NULL);
    if (check_call(c, !opt, "gf_module_adam", strict)) goto done;
    x = gf_tensor_f32(c, 2, (int64_t[]){BATCH, IN}, xs);
    if (check_call(c, !x, "gf_tensor_f32", strict)) goto done;
    y = gf_tensor_i64(c, 1, (int64_t[]){BATCH}, ys);
    if (check_call(c, !y, "gf_tensor_i64", strict)) goto done;

    gf_scope_begin(c);
    gf_tensor *loss = gf_cross_entropy(gf_module_forward(m, x), y);
    bool failed = check_call(c, !loss, "forward", strict);
    if (!failed) failed = check_call(c, gf_backward(loss) != GF_OK, "gf_backward", strict);
    if (!failed) failed = check_call(c, gf_optimizer_step(opt) != GF_OK, "step", strict);
    double l = failed ? NAN : gf_item(loss);
    if (!failed) failed = check_call(c, isnan(l), "gf_item", strict);
    gf_scope_end(c);
    if (failed) goto done;
    out->loss = l;

    if (check_call(c, gf_save(ckpt_path, m, opt) != GF_OK, "gf_save", strict)) goto done;
    gf_manual_seed(c, 12);
    m2 = gf_mlp(c, 3, (int64_t[]){IN, HID, OUT}, GF_ACT_RELU, GF_F32);
    if (check_call(c, !m2, "gf_mlp (second)", strict)) goto done;
    opt2 = gf_module_adam(m2, NULL);
    if (check_call(c, !opt2, "gf_module_adam (second)", strict)) goto done;
    if (check_call(c, gf_load(ckpt_path, m2, opt2) != GF_OK, "gf_load", strict)) goto done;
    if (check_call(c, !read_params(m2, out->loaded), "gf_data_f32", strict)) goto done;
    /* The loaded model is the saved one, bit for bit. */
    float saved[NPARAM];
    if (check_call(c, !read_params(m, saved), "gf_data_f32", strict)) goto done;
    cr_assert(memcmp(saved, out->loaded, sizeof saved) == 0, "the loaded model differs");
    out->steps = gf_optimizer_steps(opt2);
    end = RUN_DONE;

done:
    gf_optimizer_free(opt2);
    gf_module_free(m2);
    gf_optimizer_free(opt);
    gf_module_free(m);
    gf_release(x);
    gf_release(y);
    if (end == RUN_FAILED) {
        /* Nothing of the failed run is left in the ctx, and the ctx works. */
        cr_assert_eq(gf_ctx_live_tensors(c), 0, "%lld tensors left after a failed run",
                     (long long)gf_ctx_live_tensors(c));
        gf_ctx_clear_error(c);
        gf_scope_begin(c);
        gf_tensor *two = gf_full(c, GF_F32, 1, (int64_t[]){4}, 2);
        const float *v = gf_data_f32(gf_add_scalar(gf_mul(gf_arange(c, GF_F32, 4), two), 1));
        cr_assert_not_null(v, "the ctx is not usable after a failure: %s",
                           gf_ctx_error(c) ? gf_ctx_error(c) : "?");
        for (int i = 0; i < 4; i++) cr_assert_eq(v[i], 2.0f * (float)i + 1, "element %d", i);
        gf_scope_end(c);
    }
    cr_assert_eq(gf_ctx_live_tensors(c), 0, "%lld tensors left after the run (end %d)",
                 (long long)gf_ctx_live_tensors(c), (int)end);
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
    return end;
}

static void setup_path(void) {
    strcpy(ckpt_path, "/tmp/gf_oom_XXXXXX");
    int fd = mkstemp(ckpt_path);
    cr_assert(fd >= 0, "mkstemp failed");
    close(fd);
}

/* Every k from 1 until a run makes fewer than k allocations, on a 1-thread
 * engine (the k-th allocation is then the same call every time). */
static void sweep(bool eager) {
    setup_path();
    round_trip ref = {0}, got;
    /* A clean run first: the reference values, and the calling thread's
     * kernel scratch (kept for the thread's life) exists before counting. */
    cr_assert_eq(run_once(1, eager, true, &ref), RUN_DONE);
    cr_assert(isfinite(ref.loss) && ref.steps == 1);
    long baseline = live_allocs();
    long k = 1, failed = 0, recovered = 0;
    /* Every phase of the round trip must see failures of its own, but the
     * optimizer step: its state comes from buffers the allocator cached
     * during the step (optimizer_step_fails_cleanly_and_steps_again covers
     * it). */
    static const char *const phases[] = {"gf_engine_create", "gf_ctx_create", "gf_mlp",
                                         "gf_module_adam", "forward", "gf_backward", "step",
                                         "gf_save", "gf_mlp (second)", "gf_load"};
    enum { NPHASES = sizeof phases / sizeof *phases };
    long per_phase[NPHASES] = {0};
    for (;; k++) {
        atomic_store(&injected, false);
        atomic_store(&n_allocs, 0);
        atomic_store(&countdown, k);
        memset(&got, 0, sizeof got);
        run_end end = run_once(1, eager, true, &got);
        atomic_store(&countdown, 0);
        cr_assert_eq(live_allocs(), baseline, "k=%ld: %ld allocations leaked", k,
                     live_allocs() - baseline);
        if (!atomic_load(&injected)) {
            cr_assert_eq(end, RUN_DONE);
            break;
        }
        if (end == RUN_DONE) {
            /* The library worked around the failure: same results. */
            recovered++;
            cr_assert(memcmp(&got.loss, &ref.loss, sizeof ref.loss) == 0,
                      "k=%ld: loss %.9g after a recovered failure, expected %.9g", k, got.loss,
                      ref.loss);
            cr_assert(memcmp(got.loaded, ref.loaded, sizeof ref.loaded) == 0,
                      "k=%ld: loaded parameters differ after a recovered failure", k);
            cr_assert_eq(got.steps, ref.steps);
        } else {
            failed++;
            for (int i = 0; i < NPHASES; i++)
                if (failed_call && strcmp(failed_call, phases[i]) == 0) per_phase[i]++;
        }
    }
    for (int i = 0; i < NPHASES; i++)
        cr_assert(per_phase[i] > 0 || strcmp(phases[i], "step") == 0,
                  "no injected failure surfaced in %s", phases[i]);
    cr_log_info("%s: %ld allocations per run, %ld failed cleanly, %ld recovered",
                eager ? "eager" : "lazy", k - 1, failed, recovered);
    unlink(ckpt_path);
}

Test(oom, every_allocation_of_a_training_round_trip_fails_cleanly) { sweep(false); }

Test(oom, every_allocation_fails_cleanly_in_eager_mode) { sweep(true); }

/* Two threads with every node handed to the pool: which allocation is the
 * k-th varies from run to run, so only no crash, no leak and the error
 * convention are checked (any status, since a worker's failure may be
 * reported by the node that needed its output). */
Test(oom, two_threads_fail_without_crash_or_leak) {
    setenv("GF_MIN_PARALLEL_WORK", "0", 1);
    setup_path();
    round_trip ref = {0};
    /* A 1-thread run gives this thread its kernel scratch (kept for the
     * thread's life) before the baseline; the 2-thread run counts. */
    cr_assert_eq(run_once(1, false, false, &ref), RUN_DONE);
    atomic_store(&n_allocs, 0);
    cr_assert_eq(run_once(2, false, false, &ref), RUN_DONE);
    long baseline = live_allocs(), total = atomic_load(&n_allocs);
    cr_assert_gt(total, 100);
    /* About 150 runs spread over the whole round trip. */
    for (long k = 1; k <= total; k += total / 150 + 1) {
        atomic_store(&injected, false);
        atomic_store(&countdown, k);
        round_trip got;
        run_once(2, false, false, &got);
        atomic_store(&countdown, 0);
        cr_assert_eq(live_allocs(), baseline, "k=%ld: %ld allocations leaked", k,
                     live_allocs() - baseline);
    }
    unlink(ckpt_path);
}

/* ------------------------------------------------ one call, every failure */

/* A 1-thread engine and ctx for the single-call sweeps below. */
static gf_ctx *fresh_ctx(bool eager) {
    gf_ctx *c = gf_ctx_create(gf_engine_create(&(gf_engine_opts){.num_threads = 1}));
    cr_assert_not_null(c);
    gf_ctx_set_eager(c, eager);
    return c;
}

static void destroy_ctx(gf_ctx *c) {
    gf_engine *e = gf_ctx_engine(c);
    gf_ctx_destroy(c);
    gf_engine_destroy(e);
}

/* Arms the k-th allocation from now to fail. */
static void arm(long k) {
    atomic_store(&injected, false);
    atomic_store(&countdown, k);
}

/* After one call: it failed (with GF_ENOMEM and a message naming fn) or it
 * succeeded with nothing on the ctx. Disarms; returns whether a failure was
 * injected. */
static bool settle(gf_ctx *c, bool failed, const char *fn) {
    atomic_store(&countdown, 0);
    bool inj = atomic_load(&injected);
    const char *e = gf_ctx_error(c);
    if (failed) {
        cr_assert(inj, "%s failed without an injected failure: %s", fn, e ? e : "(none)");
        cr_assert_eq(gf_ctx_status(c), GF_ENOMEM, "%s: status %d, expected GF_ENOMEM (%s)", fn,
                     (int)gf_ctx_status(c), e ? e : "no message");
        cr_assert(e && strstr(e, "out of memory"), "%s: message \"%s\"", fn, e ? e : "");
    } else {
        cr_assert_null(e, "%s succeeded but left an error: %s", fn, e);
    }
    gf_ctx_clear_error(c);
    return inj;
}

/* gf_linear ran out of memory in gf_requires_grad (the leaf's grad state)
 * and returned a module whose weight did not require grad, with the error
 * left on the ctx. Each k on a fresh ctx: its free lists and the engine's
 * cache start empty, so the k-th allocation is the same call every time. */
Test(oom, gf_linear_fails_when_a_parameter_cannot_require_grad) {
    long k = 1;
    for (;; k++) {
        gf_ctx *c = fresh_ctx(false);
        arm(k);
        gf_module *m = gf_linear(c, 40, 24, true, GF_F32);
        bool inj = settle(c, !m, "gf_linear");
        for (int i = 0; m && i < gf_module_num_parameters(m); i++)
            cr_assert(gf_get_requires_grad(gf_module_parameter(m, i)),
                      "k=%ld: parameter %d does not require grad", k, i);
        gf_module_free(m);
        cr_assert_eq(gf_ctx_live_tensors(c), 0, "k=%ld: tensors left behind", k);
        destroy_ctx(c);
        if (!inj) break;
    }
    cr_assert_gt(k, 2);
}

/* An eager op whose computation failed returned its (uncomputed) output
 * with the error on the ctx; it returns NULL now, like any failed op. */
Test(oom, eager_op_that_cannot_compute_returns_null) {
    long k = 1;
    for (;; k++) {
        gf_ctx *c = fresh_ctx(true);
        gf_tensor *a = gf_arange(c, GF_F64, 5), *b = gf_full(c, GF_F64, 1, (int64_t[]){5}, 0.5);
        arm(k);
        gf_tensor *y = gf_mul(a, b);
        bool inj = settle(c, !y, "gf_mul");
        if (y) gf_test_expect_close(y, (double[]){0, 0.5, 1, 1.5, 2}, 5, 0, 0);
        gf_release(y);
        cr_assert_eq(gf_ctx_live_tensors(c), 2);
        destroy_ctx(c);
        if (!inj) break;
    }
    cr_assert_gt(k, 1);
}

/* gf_module_adam and gf_module_sgd returned NULL with nothing on the ctx
 * when their list of the module's parameters could not be allocated. */
Test(oom, module_optimizers_report_out_of_memory) {
    gf_ctx *c = fresh_ctx(false);
    gf_module *m = gf_linear(c, 3, 2, true, GF_F32);
    cr_assert_not_null(m);
    arm(1);
    cr_assert_null(gf_module_adam(m, NULL));
    settle(c, true, "gf_module_adam");
    arm(1);
    cr_assert_null(gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1}));
    settle(c, true, "gf_module_sgd");
    gf_module_free(m);
    destroy_ctx(c);
}

/* An optimizer step that runs out of memory creating its state fails with
 * GF_ENOMEM, keeps no half-made state, and a later step gives the values of
 * a step that never failed. The parameter's gradient comes from gf_sum, so
 * no buffer of its size is cached and Adam's state must be allocated. A
 * failure the library absorbs (a tensor object taken back from the ctx's
 * quarantine when calloc fails) lets the step succeed: then both steps
 * count. k = 0: one clean step; k = -1: two clean steps. Returns whether
 * the armed step failed. */
static bool adam_step_after(long k, float *out, int64_t *steps) {
    gf_ctx *c = fresh_ctx(false);
    float init[300];
    for (int i = 0; i < 300; i++) init[i] = (float)i / 100;
    gf_tensor *p = gf_requires_grad(gf_tensor_f32(c, 2, (int64_t[]){10, 30}, init), true);
    gf_optimizer *opt = gf_adam(1, &p, &(gf_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99,
                                                       .eps = 1e-8});
    cr_assert_not_null(opt);
    gf_scope_begin(c);
    GF_OK_OR_FAIL(c, gf_backward(gf_sum(p)));
    gf_scope_end(c);
    bool failed = false;
    if (k > 0) arm(k);
    if (k) {
        failed = gf_optimizer_step(opt) != GF_OK;
        settle(c, failed, "gf_optimizer_step");
    }
    GF_OK_OR_FAIL(c, gf_optimizer_step(opt));
    memcpy(out, gf_data_f32(p), sizeof(float) * 300);
    *steps = gf_optimizer_steps(opt);
    gf_optimizer_free(opt);
    gf_release(p);
    cr_assert_eq(gf_ctx_live_tensors(c), 0);
    destroy_ctx(c);
    return failed;
}

Test(oom, optimizer_step_fails_cleanly_and_steps_again) {
    float ref[300], ref2[300], got[300];
    int64_t ref_steps, got_steps;
    adam_step_after(0, ref, &ref_steps);
    cr_assert_eq(ref_steps, 1);
    adam_step_after(-1, ref2, &ref_steps);
    cr_assert_eq(ref_steps, 2);
    long baseline = live_allocs(), k = 1, failures = 0;
    for (;; k++) {
        bool failed = adam_step_after(k, got, &got_steps);
        cr_assert_eq(live_allocs(), baseline, "k=%ld: leaked", k);
        if (!atomic_load(&injected)) break;
        failures += failed;
        /* A failed step did not count and changed nothing; an absorbed
         * failure is a whole step. */
        cr_assert_eq(got_steps, failed ? 1 : 2, "k=%ld: %lld steps", k, (long long)got_steps);
        cr_assert(memcmp(got, failed ? ref : ref2, sizeof ref) == 0, "k=%ld: parameter differs",
                  k);
    }
    cr_assert_gt(k, 2, "the step made no allocation to fail");
    cr_assert_gt(failures, 0, "no injected failure made the step fail");
}
