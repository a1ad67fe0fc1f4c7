/*
 * bench_branches.c - parallel speed-up of the executor on independent work:
 * 64 branches, each a chain of depth 4 of (h = tanh(h @ W)) on 128x128 f32
 * matrices, the branch outputs summed into a scalar loss; forward +
 * backward per iteration, inside a gf_scope.
 *
 * Weights: "own" (every branch and depth its own W, 256 matrices) or
 * "shared" (one W per depth shared by all branches: their gradient
 * contributions are summed). Inputs are constants (no grad).
 * Engines with 1 and 2 threads (gf_engine_opts.num_threads), lazy ctx (the
 * whole forward is one realize: branches run in parallel) and eager (forward
 * runs op by op on the calling thread; only backward's graph is parallel).
 * ms_per_iter: best of BENCH_REPS (default 4) batches, 1T and 2T interleaved
 * so that they see the same noise; speedup = 1T / 2T (target >= 1.8).
 * cores_used = process CPU time / wall time during the best batch (2T near
 * 1.0 means the second thread did not get a core: a loaded machine, see
 * loadavg, or serialization); --only NAME (or the first argument) runs the
 * configs whose name contains NAME ("own", "shared", "own-lazy", ...).
 * BENCH_THREADS=1,2,4,8,16 instead times one engine per listed thread count
 * (for machines with more cores) and prints one "branches_scaling" line per
 * count with the speed-up over the first.
 */
#define _POSIX_C_SOURCE 199309L
#include "include/gradflow.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BRANCHES 64
#define DEPTH 4
#define N 128

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    gf_engine *eng;
    gf_ctx *ctx;
    gf_tensor *x[BRANCHES];
    gf_tensor *w[BRANCHES][DEPTH]; /* shared: w[b][d] == w[0][d] */
    int threads;
    double best, loss;
    double cpu; /* process CPU seconds / wall seconds during the best batch */
} config;

static void setup(config *c, int nt, int shared, int eager) {
    c->threads = nt;
    c->eng = gf_engine_create(&(gf_engine_opts){.num_threads = nt});
    c->ctx = gf_ctx_create(c->eng);
    if (!c->eng || !c->ctx) {
        fprintf(stderr, "branches: engine/ctx creation failed\n");
        exit(1);
    }
    gf_manual_seed(c->ctx, 42);
    gf_ctx_set_eager(c->ctx, eager);
    const int64_t shp[2] = {N, N};
    for (int b = 0; b < BRANCHES; b++) {
        c->x[b] = gf_randn(c->ctx, GF_F32, 2, shp);
        for (int d = 0; d < DEPTH; d++) {
            if (shared && b > 0) {
                c->w[b][d] = c->w[0][d];
                continue;
            }
            /* ~N(0, 1/N): keeps tanh out of saturation */
            gf_tensor *r = gf_randn(c->ctx, GF_F32, 2, shp);
            gf_tensor *w = gf_mul_scalar(r, 1.0 / 11.3137);
            gf_realize(w);
            c->w[b][d] = gf_requires_grad(gf_detach(w), true);
            gf_release(w);
            gf_release(r);
        }
    }
    gf_realize_all(c->ctx);
    c->best = 1e30;
}

static double one_iter(config *c) {
    gf_ctx *ctx = c->ctx;
    gf_scope_begin(ctx);
    gf_tensor *loss = NULL;
    for (int b = 0; b < BRANCHES; b++) {
        gf_tensor *h = c->x[b];
        for (int d = 0; d < DEPTH; d++) h = gf_tanh(gf_matmul(h, c->w[b][d]));
        gf_tensor *s = gf_sum(h);
        loss = loss ? gf_add(loss, s) : s;
    }
    gf_status st = gf_backward(loss);
    double v = gf_item(loss);
    gf_scope_end(ctx);
    if (st != GF_OK || v != v) {
        fprintf(stderr, "branches: %s\n", gf_ctx_error(ctx));
        exit(1);
    }
    return v;
}

static void destroy(config *c) {
    gf_ctx_destroy(c->ctx);
    gf_engine_destroy(c->eng);
}

/* A warm-up iteration each, then R rounds in which every config runs
 * `iters` iterations in turn (interleaved, so they see the same noise);
 * keeps each config's best time per iteration and its cores used then. */
static void time_configs(config *cs, int n, int R, int iters) {
    for (int i = 0; i < n; i++) cs[i].loss = one_iter(&cs[i]);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < n; i++) {
            double t = now(), c0 = cpu_now();
            for (int k = 0; k < iters; k++) cs[i].loss = one_iter(&cs[i]);
            double wall = now() - t, dt = wall / iters;
            if (dt < cs[i].best) {
                cs[i].best = dt;
                cs[i].cpu = (cpu_now() - c0) / wall;
            }
        }
}

/* Thread counts of a scaling run: BENCH_THREADS=1,2,4,... (NULL: none). */
static int thread_list(int *nts, int max) {
    const char *tl = getenv("BENCH_THREADS");
    int n = 0;
    for (const char *q = tl ? tl : ""; *q && n < max;) {
        char *end;
        long v = strtol(q, &end, 10);
        if (end == q) break;
        if (v > 0) nts[n++] = (int)v;
        q = *end ? end + 1 : end;
    }
    return n;
}

/* Scaling run (BENCH_THREADS set): one engine per thread count, timed in
 * interleaved rounds like the 1T/2T pair; one JSON line per count with the
 * speed-up over the first count. */
static void scaling(const char *name, int shared, int eager, const int *nts, int nn, int R,
                    int iters) {
    config *cs = calloc((size_t)nn, sizeof *cs);
    if (!cs) exit(1);
    for (int i = 0; i < nn; i++) setup(&cs[i], nts[i], shared, eager);
    time_configs(cs, nn, R, iters);
    for (int i = 0; i < nn; i++) {
        if (cs[i].loss != cs[0].loss)
            fprintf(stderr, "branches: loss differs %dT %.9g vs %dT %.9g\n", nts[0], cs[0].loss,
                    nts[i], cs[i].loss);
        printf("{\"bench\":\"branches_scaling\",\"config\":\"%s\",\"threads\":%d,"
               "\"ms_per_iter\":%.2f,\"speedup_vs_%dt\":%.3f,\"cores_used\":%.2f,"
               "\"loadavg\":%.2f,\"reps\":%d,\"iters\":%d}\n",
               name, nts[i], cs[i].best * 1e3, nts[0], cs[0].best / cs[i].best, cs[i].cpu,
               loadavg(), R, iters);
    }
    fflush(stdout);
    for (int i = 0; i < nn; i++) destroy(&cs[i]);
    free(cs);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_branches [--only NAME | NAME]   (--only NAME or --only=NAME)\n"
            "  --only NAME   only the configs whose name contains NAME: own-lazy,\n"
            "                own-eager, shared-lazy, shared-eager (also the first\n"
            "                argument alone)\n"
            "  -h, --help    this text\n"
            "Environment: BENCH_REPS (batches, best kept; default 4), BENCH_THREADS\n"
            "(e.g. 1,2,4: one engine per count, \"branches_scaling\" lines). One JSON\n"
            "line per config on stdout.\n");
}

int main(int argc, char **argv) {
    static const struct option longs[] = {{"only", required_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *only = NULL; /* e.g. "own", "shared", "own-lazy" */
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch != 'o') {
            usage(stderr);
            return 2;
        }
        only = optarg;
    }
    if (optind < argc && !only) only = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "bench_branches: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    const char *e = getenv("BENCH_REPS");
    int R = e && atoi(e) > 0 ? atoi(e) : 4;
    int iters = 2;
    for (int shared = 0; shared <= 1; shared++)
        for (int eager = 0; eager <= 1; eager++) {
            char name[32];
            snprintf(name, sizeof name, "%s-%s", shared ? "shared" : "own", eager ? "eager" : "lazy");
            if (only && !strstr(name, only)) continue;
            int nts[32], nn = thread_list(nts, 32);
            if (nn) {
                scaling(name, shared, eager, nts, nn, R, iters);
                continue;
            }
            config cs[2];
            setup(&cs[0], 1, shared, eager);
            setup(&cs[1], 2, shared, eager);
            time_configs(cs, 2, R, iters);
            /* same seed, same graph: same loss for any thread count */
            if (cs[0].loss != cs[1].loss)
                fprintf(stderr, "branches: loss differs 1T %.9g vs 2T %.9g\n", cs[0].loss,
                        cs[1].loss);
            /* flops: forward 2N^3 per matmul; backward dW (and dX except at depth 0) */
            double mm = (double)BRANCHES * DEPTH, fl = 2.0 * N * N * N;
            double flops = mm * fl + mm * fl + (double)BRANCHES * (DEPTH - 1) * fl;
            printf("{\"bench\":\"branches\",\"weights\":\"%s\",\"mode\":\"%s\",\"branches\":%d,"
                   "\"depth\":%d,\"n\":%d,\"ms_per_iter_1t\":%.2f,\"ms_per_iter_2t\":%.2f,"
                   "\"speedup_2t\":%.3f,\"gflops_1t\":%.1f,\"gflops_2t\":%.1f,\"target\":1.8,"
                   "\"cores_used_1t\":%.2f,\"cores_used_2t\":%.2f,\"loadavg\":%.2f,"
                   "\"reps\":%d,\"iters\":%d,\"omp_wait_policy\":\"%s\"}\n",
                   shared ? "shared" : "own", eager ? "eager" : "lazy", BRANCHES, DEPTH, N,
                   cs[0].best * 1e3, cs[1].best * 1e3, cs[0].best / cs[1].best,
                   flops / cs[0].best * 1e-9, flops / cs[1].best * 1e-9, cs[0].cpu, cs[1].cpu,
                   loadavg(), R, iters,
                   getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "");
            fflush(stdout);
            destroy(&cs[0]);
            destroy(&cs[1]);
        }
    return 0;
}
