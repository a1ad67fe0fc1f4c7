/*
 * bench_overhead.c - end-to-end framework overhead per op through the public
 * API: a chain of 100 elementwise ops on a 4-element f32 tensor (so the
 * arithmetic is nothing and everything measured is recording, scheduling,
 * allocation, autograd), inside a gf_scope, then gf_sum and gf_backward.
 *
 * The chain (i = 0..99, y = the value before the current one):
 *   i % 4 == 0: x = gf_mul_scalar(x, 0.5)
 *   i % 4 == 1: x = gf_add_scalar(x, 0.25)
 *   i % 4 == 2: x = gf_tanh(x)
 *   i % 4 == 3: x = gf_mul(x, y)       (two chain values: a DAG, not a pure chain)
 * then loss = gf_sum(x). fwd_ops = 101 (the 100 chain ops + the sum); the
 * divisor is forward ops only, as a PyTorch user counts them, although the
 * time includes the backward pass (whose ops gradflow records internally).
 * bench/overhead_pytorch.py does the same in PyTorch and prints the same
 * fields (run bench/run_overhead.sh for both interleaved, with the ratio).
 *
 * Engines with 1 and 2 threads, lazy and eager ctx. us_per_op is the best of
 * BENCH_REPS (default 7) batches of ITERS iterations, each batch ~0.1 s.
 * --threads N and --mode lazy|eager (or the arguments [threads [lazy|eager]])
 * run only the matching configurations; --help lists the options.
 */
#define _POSIX_C_SOURCE 199309L
#include "include/gradflow.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAIN 100
#define FWD_OPS (CHAIN + 1)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double one_iter(gf_ctx *ctx, gf_tensor *x0) {
    gf_scope_begin(ctx);
    gf_tensor *x = x0, *y = x0;
    for (int i = 0; i < CHAIN; i++) {
        gf_tensor *prev = x;
        switch (i % 4) {
        case 0: x = gf_mul_scalar(x, 0.5); break;
        case 1: x = gf_add_scalar(x, 0.25); break;
        case 2: x = gf_tanh(x); break;
        default: x = gf_mul(x, y); break;
        }
        y = prev;
    }
    gf_tensor *loss = gf_sum(x);
    gf_status s = gf_backward(loss);
    double v = gf_item(loss);
    gf_scope_end(ctx);
    if (s != GF_OK) {
        fprintf(stderr, "overhead: %s\n", gf_ctx_error(ctx));
        exit(1);
    }
    return v;
}

typedef struct {
    gf_engine *eng;
    gf_ctx *ctx;
    gf_tensor *x0;
    int threads, eager;
    double best;
    double loss;
} config;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_overhead [--threads N] [--mode lazy|eager] | [N [lazy|eager]]\n"
            "  --threads N   only the engine of N threads (1 or 2; 0: both)\n"
            "  --mode M      only lazy or only eager ctxs\n"
            "  -h, --help    this text\n"
            "(--opt VALUE or --opt=VALUE.) Environment: BENCH_REPS (batches, best kept;\n"
            "default 7). One JSON line per configuration on stdout.\n");
}

int main(int argc, char **argv) {
    const char *e = getenv("BENCH_REPS");
    int R = e && atoi(e) > 0 ? atoi(e) : 7;
    /* Optional filter for profiling one configuration. */
    static const struct option longs[] = {{"threads", required_argument, NULL, 't'},
                                          {"mode", required_argument, NULL, 'm'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *nt_arg = NULL, *mode_arg = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch == 't') nt_arg = optarg;
        else if (ch == 'm') mode_arg = optarg;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && !nt_arg) nt_arg = argv[optind++];
    if (optind < argc && !mode_arg) mode_arg = argv[optind++];
    /* A mode may be abbreviated ("e"), as the bare arguments always allowed. */
    size_t ml = mode_arg ? strlen(mode_arg) : 0;
    if (optind < argc || (nt_arg && atoi(nt_arg) < 0) ||
        (mode_arg && (!ml || (strncmp(mode_arg, "lazy", ml) && strncmp(mode_arg, "eager", ml))))) {
        fprintf(stderr, "bench_overhead: expected a thread count >= 0 and lazy or eager\n");
        usage(stderr);
        return 2;
    }
    int only_nt = nt_arg ? atoi(nt_arg) : 0;
    int only_eager = mode_arg ? mode_arg[0] == 'e' : -1;
    config cs[4];
    int nc = 0;
    for (int nt = 1; nt <= 2; nt++)
        for (int eager = 0; eager <= 1; eager++) {
            if ((only_nt && nt != only_nt) || (only_eager >= 0 && eager != only_eager)) continue;
            config *c = &cs[nc++];
            c->threads = nt;
            c->eager = eager;
            c->eng = gf_engine_create(&(gf_engine_opts){.num_threads = nt});
            c->ctx = gf_ctx_create(c->eng);
            if (!c->eng || !c->ctx) {
                fprintf(stderr, "overhead: engine/ctx creation failed\n");
                return 1;
            }
            gf_ctx_set_eager(c->ctx, eager);
            const float d[4] = {0.1f, -0.2f, 0.3f, 0.4f};
            c->x0 = gf_requires_grad(gf_tensor_f32(c->ctx, 1, (int64_t[]){4}, d), true);
            c->best = 1e30;
        }
    /* Iterations per batch: ~0.1 s on the first config. */
    for (int k = 0; k < 200; k++) one_iter(cs[0].ctx, cs[0].x0);
    double t0 = now();
    for (int k = 0; k < 200; k++) one_iter(cs[0].ctx, cs[0].x0);
    int iters = (int)(0.1 / ((now() - t0) / 200));
    if (iters < 50) iters = 50;
    for (int i = 0; i < nc; i++) /* warm-up: pools, allocator caches */
        for (int k = 0; k < iters / 4 + 10; k++) cs[i].loss = one_iter(cs[i].ctx, cs[i].x0);
    /* Interleaved batches: the configs see the same noise. */
    for (int r = 0; r < R; r++)
        for (int i = 0; i < nc; i++) {
            config *c = &cs[i];
            double t = now();
            for (int k = 0; k < iters; k++) c->loss = one_iter(c->ctx, c->x0);
            double dt = (now() - t) / iters;
            if (dt < c->best) c->best = dt;
        }
    for (int i = 0; i < nc; i++) {
        config *c = &cs[i];
        printf("{\"bench\":\"overhead\",\"impl\":\"gradflow\",\"threads\":%d,\"mode\":\"%s\","
               "\"numel\":4,\"fwd_ops\":%d,\"us_per_op\":%.3f,\"us_per_iter\":%.2f,"
               "\"loss\":%.6f,\"iters\":%d,\"reps\":%d}\n",
               c->threads, c->eager ? "eager" : "lazy", FWD_OPS, c->best * 1e6 / FWD_OPS,
               c->best * 1e6, c->loss, iters, R);
    }
    /* Sanity: all configs computed the same loss. */
    for (int i = 1; i < nc; i++)
        if (cs[i].loss != cs[0].loss) {
            fprintf(stderr, "overhead: loss differs between configs (%.9g vs %.9g)\n",
                    cs[i].loss, cs[0].loss);
            return 1;
        }
    for (int i = 0; i < nc; i++) {
        gf_ctx_destroy(cs[i].ctx);
        gf_engine_destroy(cs[i].eng);
    }
    return 0;
}
