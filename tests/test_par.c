/*
 * test_par.c - intra-op tiles on the engine's own pool (engine/par.h) and on
 * OpenMP teams: every index runs exactly once for any thread count, grain
 * and backend; team slots are distinct; parallel loops nest (three deep)
 * without deadlock; many user threads lead teams on one pool at once, more
 * of them than the pool has deques to lend; an error raised inside a tile
 * on a worker lands on the ctx; training is bitwise the same for 1, 2, 3, 4
 * and 8 threads on both backends, lazy and eager; and an idle engine uses
 * no CPU (read from /proc).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "gradflow/nn.h"
#include "par.h"

/* ThreadSanitizer builds run the big loops smaller, and skip the OpenMP
 * backend: libgomp is not instrumented, so TSan would only see false races
 * there (the pool's threads are what it checks). */
#if defined(__SANITIZE_THREAD__)
#define GF_TEST_SLOW 1
#define OMP_MAX 0
#else
#define GF_TEST_SLOW 0
#define OMP_MAX 1
#endif

static const gf__par *par_of(int nt, int omp) { return omp ? tpar_omp(nt) : tpar(nt); }

/* ------------------------------------------------------ each index once */

typedef struct {
    atomic_int *hits;
    atomic_long calls;
} cover_args;

static void cover_tile(void *a, int64_t lo, int64_t hi) {
    cover_args *c = a;
    atomic_fetch_add(&c->calls, 1);
    for (int64_t i = lo; i < hi; i++) atomic_fetch_add_explicit(&c->hits[i], 1, memory_order_relaxed);
}

Test(par, every_index_exactly_once_any_threads_grain_and_backend) {
    const int64_t ns[] = {1, 2, 7, 1000, 100003};
    const int64_t grains[] = {1, 3, 64, 100000, 0};
    atomic_int *hits = malloc(100003 * sizeof *hits);
    cr_assert_not_null(hits);
    for (int omp = 0; omp <= OMP_MAX; omp++)
        for (int nt = 1; nt <= 8; nt++)
            for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
                for (size_t b = 0; b < sizeof grains / sizeof grains[0]; b++) {
                    const int64_t n = ns[a], g = grains[b];
                    for (int64_t i = 0; i < n; i++) atomic_init(&hits[i], 0);
                    cover_args c = {.hits = hits};
                    atomic_init(&c.calls, 0);
                    gf__par_for(par_of(nt, omp), n, g, cover_tile, &c);
                    for (int64_t i = 0; i < n; i++)
                        cr_assert_eq(atomic_load(&hits[i]), 1,
                                     "n %lld grain %lld nt %d %s: index %lld ran %d times",
                                     (long long)n, (long long)g, nt, omp ? "openmp" : "pool",
                                     (long long)i, atomic_load(&hits[i]));
                    const int64_t gg = g < 1 ? 1 : g, tiles = (n + gg - 1) / gg;
                    /* one call for the whole range on one thread or one tile */
                    const long want = nt == 1 || tiles == 1 ? 1 : tiles;
                    cr_assert_eq(atomic_load(&c.calls), want, "n %lld grain %lld nt %d: %ld calls",
                                 (long long)n, (long long)g, nt, atomic_load(&c.calls));
                }
    free(hits);
}

/* ------------------------------------------------------------ team slots */

typedef struct {
    int team;
    atomic_uint seen;   /* bit per slot */
    atomic_int members; /* participants that ran */
    atomic_int bad;
} slot_args;

static void slot_member(void *a, int slot) {
    slot_args *s = a;
    if (slot < 0 || slot >= s->team) {
        atomic_store(&s->bad, 1);
        return;
    }
    if (atomic_fetch_or(&s->seen, 1u << slot) & (1u << slot)) atomic_store(&s->bad, 2);
    atomic_fetch_add(&s->members, 1);
    /* long enough for a worker to join */
    for (volatile int k = 0; k < 20000; k++) {
    }
}

Test(par, team_slots_are_distinct_and_below_the_team_size) {
    for (int omp = 0; omp <= OMP_MAX; omp++)
        for (int nt = 1; nt <= 8; nt++)
            for (int team = 1; team <= 10; team++)
                for (int rep = 0; rep < 5; rep++) {
                    slot_args s = {.team = team < nt ? team : nt};
                    atomic_init(&s.seen, 0);
                    atomic_init(&s.members, 0);
                    atomic_init(&s.bad, 0);
                    gf__par_team(par_of(nt, omp), team, slot_member, &s);
                    cr_assert_eq(atomic_load(&s.bad), 0, "nt %d team %d %s: bad slot (%d)", nt,
                                 team, omp ? "openmp" : "pool", atomic_load(&s.bad));
                    cr_assert(atomic_load(&s.seen) & 1u, "the caller is slot 0");
                    cr_assert_geq(atomic_load(&s.members), 1);
                    cr_assert_leq(atomic_load(&s.members), s.team);
                }
}

/* ------------------------------------------------------- nested loops */

typedef struct {
    const gf__par *par;
    int64_t n1, n2, n3;
    atomic_int *hits; /* n1 * n2 * n3 */
} nest_args;

typedef struct {
    nest_args *a;
    int64_t i, j;
} nest3;

static void nest_l3(void *p, int64_t lo, int64_t hi) {
    nest3 *c = p;
    for (int64_t k = lo; k < hi; k++)
        atomic_fetch_add(&c->a->hits[(c->i * c->a->n2 + c->j) * c->a->n3 + k], 1);
}

typedef struct {
    nest_args *a;
    int64_t i;
} nest2;

static void nest_l2(void *p, int64_t lo, int64_t hi) {
    nest2 *c = p;
    for (int64_t j = lo; j < hi; j++) {
        nest3 d = {c->a, c->i, j};
        gf__par_for(c->a->par, c->a->n3, 5, nest_l3, &d);
    }
}

static void nest_l1(void *p, int64_t lo, int64_t hi) {
    nest_args *a = p;
    for (int64_t i = lo; i < hi; i++) {
        nest2 d = {a, i};
        gf__par_for(a->par, a->n2, 2, nest_l2, &d);
    }
}

Test(par, loops_nest_three_deep_on_every_thread_count, .timeout = 300) {
    nest_args a = {.n1 = 24, .n2 = 9, .n3 = 40};
    const int64_t n = a.n1 * a.n2 * a.n3;
    a.hits = malloc((size_t)n * sizeof *a.hits);
    cr_assert_not_null(a.hits);
    for (int omp = 0; omp <= OMP_MAX; omp++)
        for (int nt = 1; nt <= 8; nt++) {
            a.par = par_of(nt, omp);
            for (int64_t i = 0; i < n; i++) atomic_init(&a.hits[i], 0);
            gf__par_for(a.par, a.n1, 1, nest_l1, &a);
            for (int64_t i = 0; i < n; i++)
                cr_assert_eq(atomic_load(&a.hits[i]), 1, "nt %d %s: element %lld ran %d times", nt,
                             omp ? "openmp" : "pool", (long long)i, atomic_load(&a.hits[i]));
        }
    free(a.hits);
}

/* --------------------------------------------- many user threads at once */

typedef struct {
    const gf__par *par;
    int64_t n;
    double *out;
} fill_args;

static void fill_tile(void *p, int64_t lo, int64_t hi) {
    fill_args *f = p;
    for (int64_t i = lo; i < hi; i++) f->out[i] = sqrt((double)i) * 3.0 + 1.0;
}

static void *user_thread(void *p) {
    fill_args *f = p;
    for (int rep = 0; rep < (GF_TEST_SLOW ? 5 : 40); rep++) {
        for (int64_t i = 0; i < f->n; i++) f->out[i] = -1;
        gf__par_for(f->par, f->n, 97, fill_tile, f);
        for (int64_t i = 0; i < f->n; i++)
            if (f->out[i] != sqrt((double)i) * 3.0 + 1.0) return (void *)1;
    }
    return NULL;
}

/* 72 threads: more than the 64 deques the pool lends to threads that are
 * not its workers, so some lead no team and run their loop alone. */
Test(par, seventy_two_user_threads_lead_teams_on_one_pool, .timeout = 300) {
    enum { K = 72, N = 5000 };
    const gf__par *par = tpar(4);
    pthread_t th[K];
    fill_args f[K];
    for (int k = 0; k < K; k++) {
        f[k] = (fill_args){.par = par, .n = N, .out = malloc(N * sizeof(double))};
        cr_assert_not_null(f[k].out);
        cr_assert_eq(pthread_create(&th[k], NULL, user_thread, &f[k]), 0);
    }
    for (int k = 0; k < K; k++) {
        void *r;
        pthread_join(th[k], &r);
        cr_assert_null(r, "user thread %d saw a wrong value", k);
        free(f[k].out);
    }
}

/* ---------------------------------------------------- errors from tiles */

typedef struct {
    gf__node *node;
    int64_t bad; /* the tile index that fails */
} err_args;

static void err_tile(void *p, int64_t lo, int64_t hi) {
    err_args *e = p;
    for (int64_t i = lo; i < hi; i++)
        if (i == e->bad || i == e->bad + 1)
            gf__kernel_error(e->node, GF_EINVAL, "gf_test: element %lld failed in its tile",
                             (long long)i);
}

Test(par, an_error_inside_a_tile_lands_on_the_ctx) {
    for (int omp = 0; omp <= OMP_MAX; omp++)
        for (int nt = 1; nt <= 4; nt++) {
            gf_engine *eng = gf_engine_create(&(gf_engine_opts){
                .num_threads = nt, .intraop = omp ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL});
            cr_assert_not_null(eng);
            gf_ctx *c = gf_ctx_create(eng);
            gf_tensor *t = gf_zeros(c, GF_F32, 1, (int64_t[]){4});
            gf__node nd = {.out = t, .par = gf__engine_par(eng)};
            err_args e = {.node = &nd, .bad = 777};
            gf__par_for(&nd.par, 100000, 10, err_tile, &e);
            const char *msg = gf_ctx_error(c);
            cr_assert_not_null(msg, "nt %d: no error on the ctx", nt);
            cr_assert(strstr(msg, "gf_test: element 77") && strstr(msg, "failed in its tile"),
                      "nt %d: %s", nt, msg);
            /* the ctx still works after the error is cleared */
            gf_ctx_clear_error(c);
            cr_assert_eq(gf_item(gf_sum(gf_ones(c, GF_F32, 1, (int64_t[]){5}))), 5.0);
            cr_assert_null(gf_ctx_error(c));
            gf_ctx_destroy(c);
            gf_engine_destroy(eng);
        }
}

/* ----------------------------------------- training: the same bits always */

/* Six steps of a 256-256-10 ReLU MLP with cross-entropy and Adam on batch
 * 128 (every kernel above its parallel cut-off), then all the parameters'
 * bytes into out; returns the byte count. */
static size_t train_bits(int nt, int omp, bool eager, unsigned char *out) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){
        .num_threads = nt, .intraop = omp ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL});
    cr_assert_not_null(eng);
    cr_assert_eq(gf_engine_intraop(eng), omp ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL);
    gf_ctx *c = gf_ctx_create(eng);
    gf_ctx_set_eager(c, eager);
    gf_manual_seed(c, 11);
    gf_module *m = gf_mlp(c, 3, (int64_t[]){256, 256, 10}, GF_ACT_RELU, GF_F32);
    gf_optimizer *opt = gf_module_adam(m, NULL);
    gf_tensor *x = gf_randn(c, GF_F32, 2, (int64_t[]){128, 256});
    int64_t lab[128];
    for (int i = 0; i < 128; i++) lab[i] = (i * 7) % 10;
    gf_tensor *y = gf_tensor_i64(c, 1, (int64_t[]){128}, lab);
    for (int s = 0; s < 6; s++) {
        gf_scope_begin(c);
        gf_tensor *h = gf_module_forward(m, x);
        gf_tensor *loss = gf_add(gf_cross_entropy(h, y),
                                 gf_mul_scalar(gf_mean(gf_tanh(gf_softmax(h, 1))), 0.1));
        gf_backward(loss);
        gf_optimizer_step(opt);
        gf_optimizer_zero_grad(opt);
        gf_scope_end(c);
    }
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    size_t at = 0;
    int np = gf_module_num_parameters(m);
    for (int i = 0; i < np; i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        size_t bytes = (size_t)gf_numel(p) * sizeof(float);
        memcpy(out + at, gf_data_f32(p), bytes);
        at += bytes;
    }
    gf_optimizer_free(opt);
    gf_module_free(m);
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
    return at;
}

Test(par, training_bitwise_identical_for_1_2_3_4_8_threads_both_backends_lazy_and_eager,
     .timeout = 600) {
    const size_t cap = (256 * 256 + 256 + 256 * 10 + 10) * sizeof(float);
    unsigned char *ref = malloc(cap), *got = malloc(cap);
    cr_assert(ref && got);
    size_t n = train_bits(1, 0, false, ref);
    cr_assert_eq(n, cap);
    const int nts[] = {1, 2, 3, 4, 8};
    for (int omp = 0; omp <= OMP_MAX; omp++)
        for (int eager = 0; eager <= 1; eager++)
            for (size_t i = 0; i < sizeof nts / sizeof nts[0]; i++) {
                if (GF_TEST_SLOW && nts[i] == 8) continue;
                cr_assert_eq(train_bits(nts[i], omp, eager, got), n);
                cr_assert(memcmp(ref, got, n) == 0, "%d threads, %s, %s: parameters differ",
                          nts[i], omp ? "openmp" : "pool", eager ? "eager" : "lazy");
            }
    free(ref), free(got);
}

/* ------------------------------------------------------------ idle CPU */

/* CPU time of this process in clock ticks (utime + stime, /proc/self/stat). */
static long long proc_cpu_ticks(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    cr_assert_not_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    cr_assert_not_null(p);
    long long ut = 0, st = 0;
    /* after ")": state, then fields 4..13, utime is field 14, stime 15 */
    int k = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st);
    cr_assert_eq(k, 2);
    return ut + st;
}

Test(par, an_idle_engine_uses_no_cpu_after_a_short_spin, .timeout = 60) {
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 8});
    gf_ctx *c = gf_ctx_create(eng);
    gf_manual_seed(c, 3);
    gf_tensor *a = gf_randn(c, GF_F32, 2, (int64_t[]){512, 512});
    for (int i = 0; i < 3; i++) cr_assert(isfinite(gf_item(gf_sum(gf_matmul(a, a)))));
    usleep(100 * 1000); /* the spin ends well within this */
    const long long t0 = proc_cpu_ticks();
    usleep(500 * 1000);
    const long long used = proc_cpu_ticks() - t0;
    const long hz = sysconf(_SC_CLK_TCK);
    /* 7 workers spinning would burn 3.5 s of CPU; sleeping ones ~0 */
    cr_assert_leq(used * 1000 / hz, 30, "an idle 8-thread engine used %lld ms of CPU in 500 ms",
                  used * 1000 / hz);
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
}
