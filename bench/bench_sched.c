/*
 * bench_sched.c - scheduling overhead of the engine's work-stealing pool
 * (engine/pool.c) in ns per task, next to OpenMP tasks with depend clauses
 * running the same DAGs in the same process.
 *
 * Tasks do next to nothing (a few flops on their own cache line-free slot).
 * Each task has a pending-predecessor counter and a successor list and is
 * released like engine/exec.c does it:
 *   mode "cont":   the first successor that becomes ready runs next on the
 *                  same thread (no queue round trip), the others are
 *                  submitted (exactly engine/exec.c's gf__xtask_run);
 *   mode "submit": every ready successor goes through gf__pool_submit (the
 *                  cost of the queues themselves: push, pop/steal, wake).
 * OpenMP: omp parallel num_threads(k) + single producer that creates the
 * tasks in a topological order with depend(in: sentinel[pred]) and
 * depend(out: sentinel[self]).
 *
 * DAGs: chain (100,000 tasks), wide (1,000 independent chains x 100, task
 * ids layer-major so that OpenMP's producer can run ahead on every chain),
 * layered (100 layers x 1,000 tasks, 2-4 distinct random predecessors in
 * the previous layer).
 *
 *   mode "engine" (1 thread only): what a 1-thread gradflow engine does
 *                  with a run: engine/exec.c's serial path, the nodes in
 *                  topological order on the calling thread with no
 *                  counters and no pool (gf_engine has no pool at 1 thread;
 *                  at 2+ threads the engine runs "cont"). The 1-thread pool
 *                  rows above time a configuration the engine never uses.
 *
 * Threads: 1 = pool of 0 workers + the waiting thread; 2 = 1 worker + the
 * waiting thread; n = n-1 workers + the waiting thread. OpenMP:
 * num_threads(n). Thread counts: 1 and 2, or --threads N (or the second
 * argument) alone, or the list BENCH_THREADS=1,2,4,8,16 (scaling runs on
 * bigger machines). --dag NAME (or the first argument) runs the DAGs whose
 * name contains NAME; --help lists the options.
 *
 * Timing: best of REPS (default 7, env BENCH_REPS) repetitions, pool and
 * OpenMP interleaved in rounds so that both see the same machine noise (a
 * short sleep between them lets libgomp's spinning threads go idle).
 * One JSON line per (dag, threads, mode) with both results and the ratio.
 */
#define _POSIX_C_SOURCE 199309L
#include "engine/pool.h"

#include <getopt.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ DAG */
typedef struct {
    int64_t n;
    int32_t *pred_off, *pred; /* CSR: preds of i = pred[pred_off[i] .. pred_off[i+1]) */
    int32_t *succ_off, *succ;
} dag;

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void dag_finish(dag *g) {
    /* succ CSR from pred CSR */
    int64_t n = g->n, ne = g->pred_off[n];
    g->succ_off = calloc((size_t)n + 1, sizeof *g->succ_off);
    g->succ = malloc((size_t)(ne ? ne : 1) * sizeof *g->succ);
    for (int64_t e = 0; e < ne; e++) g->succ_off[g->pred[e] + 1]++;
    for (int64_t i = 0; i < n; i++) g->succ_off[i + 1] += g->succ_off[i];
    int32_t *fill = calloc((size_t)n, sizeof *fill);
    for (int64_t i = 0; i < n; i++)
        for (int32_t e = g->pred_off[i]; e < g->pred_off[i + 1]; e++) {
            int32_t p = g->pred[e];
            g->succ[g->succ_off[p] + fill[p]++] = (int32_t)i;
        }
    free(fill);
}

/* nchains chains of len tasks; id = step * nchains + chain (layer-major). */
static dag make_chains(int nchains, int len) {
    dag g;
    g.n = (int64_t)nchains * len;
    g.pred_off = malloc(((size_t)g.n + 1) * sizeof *g.pred_off);
    g.pred = malloc((size_t)g.n * sizeof *g.pred);
    int32_t e = 0;
    for (int64_t i = 0; i < g.n; i++) {
        g.pred_off[i] = e;
        if (i >= nchains) g.pred[e++] = (int32_t)(i - nchains);
    }
    g.pred_off[g.n] = e;
    dag_finish(&g);
    return g;
}

static dag make_layered(int layers, int width) {
    dag g;
    g.n = (int64_t)layers * width;
    g.pred_off = malloc(((size_t)g.n + 1) * sizeof *g.pred_off);
    g.pred = malloc((size_t)g.n * 4 * sizeof *g.pred);
    int32_t e = 0;
    for (int64_t i = 0; i < g.n; i++) {
        g.pred_off[i] = e;
        int64_t layer = i / width;
        if (layer == 0) continue;
        int k = 2 + (int)(rnd() % 3);
        int32_t chosen[4];
        for (int j = 0; j < k; j++) {
            int32_t p;
            int dup;
            do {
                p = (int32_t)((layer - 1) * width + (int64_t)(rnd() % (uint64_t)width));
                dup = 0;
                for (int q = 0; q < j; q++) dup |= chosen[q] == p;
            } while (dup);
            chosen[j] = p;
            g.pred[e++] = p;
        }
    }
    g.pred_off[g.n] = e;
    dag_finish(&g);
    return g;
}

static void dag_free(dag *g) {
    free(g->pred_off), free(g->pred), free(g->succ_off), free(g->succ);
}

/* The task body: a few dependent flops, stored so they are not optimized out. */
static inline void body(float *slot) {
    float x = *slot;
    x = x * 0.999f + 1.0f;
    x = x * 0.999f + 1.0f;
    *slot = x;
}

/* ------------------------------------------------------------ our pool */
typedef struct brun brun;
typedef struct {
    gf__task base;
    brun *run;
    int32_t id;
} btask;

struct brun {
    gf__pool *pool;
    const dag *g;
    btask *tasks;
    float *slots;
    /* Predecessor counts in one dense array, apart from the tasks: 4 bytes
     * a task keeps the counters of a 100,000-task DAG in L2, where the
     * random decrements of a layered DAG land (as engine/exec.c does). */
    atomic_int *pending;
    int cont;
    atomic_long remaining;
};

/* Whether finishing one predecessor makes s ready. When the count already
 * reads 1, the caller is the last predecessor left and no other thread will
 * touch the counter again: an acquire load replaces the locked decrement
 * (what engine/exec.c's gf__release does). */
static inline bool release(atomic_int *pending) {
    if (atomic_load_explicit(pending, memory_order_acquire) == 1) return true;
    return atomic_fetch_sub_explicit(pending, 1, memory_order_acq_rel) == 1;
}

static void btask_run(gf__task *base) {
    btask *t = (btask *)base;
    brun *r = t->run;
    const int32_t *succ_off = r->g->succ_off, *succ = r->g->succ;
    long done = 0;
    while (t) {
        body(&r->slots[t->id]);
        btask *next = NULL;
        for (int32_t k = succ_off[t->id]; k < succ_off[t->id + 1]; k++) {
            btask *s = &r->tasks[succ[k]];
            if (release(&r->pending[succ[k]])) {
                if (!next && r->cont) next = s;
                else gf__pool_submit(r->pool, &s->base);
            }
        }
        done++;
        t = next;
    }
    /* One decrement per run of continuations, not per task (the shared
     * counter's cache line is the one every thread writes). */
    atomic_fetch_sub_explicit(&r->remaining, done, memory_order_acq_rel);
}

/* One run: reset (untimed), then time submitting the roots + waiting. */
static double pool_once(brun *r) {
    const dag *g = r->g;
    for (int64_t i = 0; i < g->n; i++)
        atomic_store_explicit(&r->pending[i], g->pred_off[i + 1] - g->pred_off[i],
                              memory_order_relaxed);
    atomic_store(&r->remaining, (long)g->n);
    double t0 = now();
    for (int64_t i = 0; i < g->n; i++)
        if (g->pred_off[i + 1] == g->pred_off[i]) gf__pool_submit(r->pool, &r->tasks[i].base);
    gf__pool_wait(r->pool, &r->remaining);
    return now() - t0;
}

/* A 1-thread engine's run (engine/exec.c gf__exec_serial): the DAG's ids
 * are a topological order, which is what the executor gets from its sort. */
static double serial_once(brun *r) {
    const int64_t n = r->g->n;
    double t0 = now();
    for (int64_t i = 0; i < n; i++) body(&r->slots[r->tasks[i].id]);
    return now() - t0;
}

/* The floor: the same release logic (atomic counters, continuation) with a
 * plain LIFO array instead of the pool, on one thread. What the pool adds
 * is pool - floor. */
static double floor_once(brun *r, int32_t *stack) {
    const dag *g = r->g;
    for (int64_t i = 0; i < g->n; i++)
        atomic_store_explicit(&r->pending[i], g->pred_off[i + 1] - g->pred_off[i],
                              memory_order_relaxed);
    const int32_t *succ_off = g->succ_off, *succ = g->succ;
    double t0 = now();
    int64_t sp = 0;
    for (int64_t i = 0; i < g->n; i++)
        if (g->pred_off[i + 1] == g->pred_off[i]) stack[sp++] = (int32_t)i;
    while (sp) {
        btask *t = &r->tasks[stack[--sp]];
        while (t) {
            body(&r->slots[t->id]);
            btask *next = NULL;
            for (int32_t k = succ_off[t->id]; k < succ_off[t->id + 1]; k++) {
                btask *s = &r->tasks[succ[k]];
                if (release(&r->pending[succ[k]])) {
                    if (!next && r->cont) next = s;
                    else stack[sp++] = s->id;
                }
            }
            t = next;
        }
    }
    return now() - t0;
}

/* -------------------------------------------------------------- OpenMP */
static double omp_once(const dag *g, int nthreads, float *slots, char *sent) {
    (void)sent; /* (only named in depend clauses) */
    double t0 = now();
#pragma omp parallel num_threads(nthreads)
#pragma omp single
    {
        for (int64_t i = 0; i < g->n; i++) {
            const int32_t *p = &g->pred[g->pred_off[i]];
            float *s = &slots[i];
            switch (g->pred_off[i + 1] - g->pred_off[i]) {
            case 0:
#pragma omp task firstprivate(s) depend(out : sent[i])
                body(s);
                break;
            case 1:
#pragma omp task firstprivate(s) depend(in : sent[p[0]]) depend(out : sent[i])
                body(s);
                break;
            case 2:
#pragma omp task firstprivate(s) depend(in : sent[p[0]], sent[p[1]]) depend(out : sent[i])
                body(s);
                break;
            case 3:
#pragma omp task firstprivate(s) depend(in : sent[p[0]], sent[p[1]], sent[p[2]]) \
    depend(out : sent[i])
                body(s);
                break;
            default:
#pragma omp task firstprivate(s) \
    depend(in : sent[p[0]], sent[p[1]], sent[p[2]], sent[p[3]]) depend(out : sent[i])
                body(s);
                break;
            }
        }
    }
    return now() - t0;
}

/* ---------------------------------------------------------------- main */
static int reps(void) {
    const char *e = getenv("BENCH_REPS");
    int r = e ? atoi(e) : 7;
    return r > 0 ? r : 7;
}

static void bench(const char *name, const dag *g, int nthreads, const char *only) {
    if (only && !strstr(name, only)) return;
    gf__pool *pool = gf__pool_create(nthreads - 1, nthreads, false);
    if (!pool) {
        fprintf(stderr, "pool create failed\n");
        exit(1);
    }
    btask *tasks = calloc((size_t)g->n, sizeof *tasks);
    float *slots = calloc((size_t)g->n, sizeof *slots);
    char *sent = calloc((size_t)g->n, 1);
    atomic_int *pending = calloc((size_t)g->n, sizeof *pending);
    brun r = {.pool = pool, .g = g, .tasks = tasks, .slots = slots, .pending = pending};
    for (int64_t i = 0; i < g->n; i++) {
        tasks[i].base.run = btask_run;
        tasks[i].run = &r;
        tasks[i].id = (int32_t)i;
    }
    double best_cont = 1e30, best_sub = 1e30, best_omp = 1e30, best_fl[2] = {1e30, 1e30};
    double best_ser = 1e30;
    int32_t *stack = malloc((size_t)g->n * sizeof *stack);
    int R = reps();
    /* warm-up: thread start, page faults, libgomp's team */
    r.cont = 1;
    pool_once(&r);
    int no_omp = getenv("BENCH_NO_OMP") != NULL; /* for profiling the pool alone */
    if (!no_omp) omp_once(g, nthreads, slots, sent);
    sleep_ms(30);
    for (int rep = 0; rep < R; rep++) {
        double d;
        r.cont = 1;
        d = pool_once(&r);
        if (d < best_cont) best_cont = d;
        r.cont = 0;
        d = pool_once(&r);
        if (d < best_sub) best_sub = d;
        for (int m = 0; m < 2; m++) {
            r.cont = !m;
            d = floor_once(&r, stack);
            if (d < best_fl[m]) best_fl[m] = d;
            if (nthreads == 1 && m == 0) {
                /* as often as the others: every slot runs the body R times */
                d = serial_once(&r);
                if (d < best_ser) best_ser = d;
            }
        }
        if (!no_omp) {
            d = omp_once(g, nthreads, slots, sent);
            if (d < best_omp) best_omp = d;
        }
        sleep_ms(30); /* libgomp's threads spin after a region; let them go idle */
    }
    double n = (double)g->n;
    const char *modes[2] = {"cont", "submit"};
    double bests[2] = {best_cont, best_sub};
    for (int m = 0; m < 2; m++)
        printf("{\"bench\":\"sched\",\"dag\":\"%s\",\"tasks\":%lld,\"edges\":%lld,"
               "\"threads\":%d,\"mode\":\"%s\",\"pool_ns_per_task\":%.1f,"
               "\"omp_ns_per_task\":%.1f,\"omp_over_pool\":%.2f,"
               "\"floor_ns_per_task\":%.1f,\"reps\":%d,\"target_ns\":150,\"target_ratio\":3}\n",
               name, (long long)g->n, (long long)g->pred_off[g->n], nthreads, modes[m],
               bests[m] / n * 1e9, best_omp / n * 1e9, best_omp / bests[m],
               best_fl[m] / n * 1e9, R);
    if (nthreads == 1)
        printf("{\"bench\":\"sched\",\"dag\":\"%s\",\"tasks\":%lld,\"edges\":%lld,"
               "\"threads\":1,\"mode\":\"engine\",\"engine_ns_per_task\":%.1f,"
               "\"omp_ns_per_task\":%.1f,\"omp_over_engine\":%.2f,\"reps\":%d,"
               "\"note\":\"1-thread engine: serial topological order, no pool\"}\n",
               name, (long long)g->n, (long long)g->pred_off[g->n], best_ser / n * 1e9,
               best_omp / n * 1e9, best_omp / best_ser, R);
    fflush(stdout);
    /* sanity: every slot went through the same number of bodies */
    for (int64_t i = 1; i < g->n; i++)
        if (slots[i] != slots[0]) {
            fprintf(stderr, "sched: task %lld ran a different number of times\n", (long long)i);
            exit(1);
        }
    gf__pool_destroy(pool);
    free(tasks), free(slots), free(sent), free(stack), free(pending);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_sched [--dag NAME] [--threads N] | [NAME [N]]\n"
            "  --dag NAME    only the DAGs whose name contains NAME (chain, wide, layered)\n"
            "  --threads N   only N threads (default 1 and 2, or BENCH_THREADS=1,2,4,...)\n"
            "  -h, --help    this text\n"
            "(--opt VALUE or --opt=VALUE.) Environment: BENCH_REPS (default 7),\n"
            "BENCH_THREADS, BENCH_NO_OMP (pool only). One JSON line per (dag, threads,\n"
            "mode) on stdout.\n");
}

int main(int argc, char **argv) {
    /* optional filters: a substring of the dag name, a thread count */
    static const struct option longs[] = {{"dag", required_argument, NULL, 'd'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *only = NULL, *nt_arg = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch == 'd') only = optarg;
        else if (ch == 't') nt_arg = optarg;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && !only) only = argv[optind++];
    if (optind < argc && !nt_arg) nt_arg = argv[optind++];
    if (optind < argc || (nt_arg && atoi(nt_arg) < 0)) {
        fprintf(stderr, "bench_sched: expected a DAG name and a thread count >= 0\n");
        usage(stderr);
        return 2;
    }
    int only_nt = nt_arg ? atoi(nt_arg) : 0;
    dag chain = make_chains(1, 100000);
    dag wide = make_chains(1000, 100);
    dag layered = make_layered(100, 1000);
    /* thread counts: --threads alone, else BENCH_THREADS=1,2,4,... (default 1,2) */
    int nts[64], nnt = 0;
    const char *tl = getenv("BENCH_THREADS");
    if (only_nt > 0) nts[nnt++] = only_nt;
    for (const char *q = tl && !nnt ? tl : ""; *q && nnt < 64;) {
        char *end;
        long v = strtol(q, &end, 10);
        if (end == q) break;
        if (v > 0) nts[nnt++] = (int)v;
        q = *end ? end + 1 : end;
    }
    if (!nnt) nts[nnt++] = 1, nts[nnt++] = 2;
    for (int t = 0; t < nnt; t++) {
        int nt = nts[t];
        bench("chain", &chain, nt, only);
        bench("wide", &wide, nt, only);
        bench("layered", &layered, nt, only);
    }
    dag_free(&chain), dag_free(&wide), dag_free(&layered);
    return 0;
}
