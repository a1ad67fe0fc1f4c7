/*
 * bench_train.c - training throughput of MLPs: ms per step and samples/s of
 * forward + cross-entropy + zero_grad + backward + optimizer step (Adam or
 * plain SGD), for 784-256-256-10 at batch 64 and 784-1024-1024-10 at batch
 * 256, on synthetic data of the right shape (no dataset needed), with 1 and
 * 2 engine threads. Each case warms up, then times windows of consecutive
 * steps (>= 5 steps and ~0.3 s each) and keeps the best window's mean step
 * time. The whole-step efficiency is the model's multiply-add work (forward
 * 2*B*sum(in*out) flops, weight gradients the same, input gradients of
 * every layer but the first) over the step time and the f32 FMA peak of the
 * cores used, the peak measured by this binary at start. One JSON line per
 * case, the fields bench/compare_pytorch.py prints for PyTorch plus these:
 *
 *   {"bench":"train","impl":"gradflow","model":"784-256-256-10","batch":64,
 *    "optim":"adam","threads":1,"intraop":"pool","deterministic":false,
 *    "ms_per_step":1.234,"samples_per_s":51863.0,"gflops":...,
 *    "fma_peak_gflops_per_core":...,"efficiency":0.71}
 *
 * Options (--opt VALUE or --opt=VALUE; --help lists them): --threads 1,2
 * (list), --config small|large|all, --optim adam|sgd|all (default adam),
 * --windows N (default 5), --deterministic, --intraop pool|openmp.
 */
#define _POSIX_C_SOURCE 199309L
#include "gradflow.h"
#include "gradflow/nn.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fma_peak.h"

#define now gf_bench_now

static double peak_per_core; /* f32 GFLOP/s of one core, measured at start */

typedef struct {
    const char *name;
    int64_t sizes[4];
    int64_t batch;
} config;

static const config configs[] = {
    {"784-256-256-10", {784, 256, 256, 10}, 64},
    {"784-1024-1024-10", {784, 1024, 1024, 10}, 256},
};

static void die(gf_ctx *ctx, const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what,
            ctx && gf_ctx_error(ctx) ? gf_ctx_error(ctx) : "failed");
    exit(1);
}

/* One training step; returns the loss (realized, so the step's forward and
 * backward are done; the in-place updates finish before the next forward
 * reads the parameters). */
static double step(gf_ctx *ctx, gf_module *m, gf_optimizer *opt, gf_tensor *x, gf_tensor *y) {
    gf_scope_begin(ctx);
    gf_tensor *loss = gf_cross_entropy(gf_module_forward(m, x), y);
    gf_optimizer_zero_grad(opt);
    gf_backward(loss);
    gf_optimizer_step(opt);
    double l = gf_item(loss);
    gf_scope_end(ctx);
    return l;
}

/* Flops of one training step of c (see the header). */
static double step_flops(const config *c) {
    double f = 0;
    for (int l = 0; l < 3; l++) {
        const double mac = (double)c->batch * (double)c->sizes[l] * (double)c->sizes[l + 1];
        f += 2 * mac * (l == 0 ? 2 : 3);
    }
    return f;
}

static void run(const config *c, int threads, bool deterministic, int windows, bool sgd,
                gf_intraop io) {
    gf_engine_opts eo = {.num_threads = threads, .deterministic = deterministic, .intraop = io};
    gf_engine *eng = gf_engine_create(&eo);
    if (!eng) die(NULL, "gf_engine_create");
    gf_ctx *ctx = gf_ctx_create(eng);
    if (!ctx) die(NULL, "gf_ctx_create");
    gf_manual_seed(ctx, 1);

    /* Synthetic batch: N(0,1) pixels, labels cycling through the classes. */
    const int64_t bs = c->batch, classes = c->sizes[3];
    gf_tensor *x = gf_randn(ctx, GF_F32, 2, (int64_t[]){bs, c->sizes[0]});
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)bs);
    if (!lab) die(NULL, "out of memory");
    for (int64_t i = 0; i < bs; i++) lab[i] = (i * 7 + 3) % classes;
    gf_tensor *y = gf_tensor_i64(ctx, 1, (int64_t[]){bs}, lab);
    free(lab);
    gf_module *m = gf_mlp(ctx, 4, c->sizes, GF_ACT_RELU, GF_F32);
    gf_adam_opts ao = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    gf_sgd_opts so = {.lr = 1e-2};
    gf_optimizer *opt = !m ? NULL : sgd ? gf_module_sgd(m, &so) : gf_module_adam(m, &ao);
    if (!x || !y || !opt || gf_realize(x)) die(ctx, "setup");

    /* Warm-up: thread pool, allocator caches, optimizer state, page faults. */
    double t_warm = now() + 0.2;
    for (int i = 0; i < 5 || now() < t_warm; i++) step(ctx, m, opt, x, y);
    if (gf_realize_all(ctx) || gf_ctx_error(ctx)) die(ctx, "warm-up");

    double best = 1e30;
    for (int w = 0; w < windows; w++) {
        int steps = 0;
        double t0 = now(), t_end = t0 + 0.3, dt;
        do {
            step(ctx, m, opt, x, y);
            steps++;
        } while (steps < 5 || now() < t_end);
        gf_realize_all(ctx);
        dt = (now() - t0) / steps;
        if (dt < best) best = dt;
    }
    if (gf_ctx_error(ctx)) die(ctx, "training step");

    const double gflops = step_flops(c) / best * 1e-9;
    printf("{\"bench\":\"train\",\"impl\":\"gradflow\",\"model\":\"%s\",\"batch\":%lld,"
           "\"optim\":\"%s\",\"threads\":%d,\"intraop\":\"%s\",\"deterministic\":%s,"
           "\"ms_per_step\":%.4f,\"samples_per_s\":%.1f,\"gflops\":%.1f,"
           "\"fma_peak_gflops_per_core\":%.1f,\"efficiency\":%.3f}\n",
           c->name, (long long)bs, sgd ? "sgd" : "adam", gf_engine_num_threads(eng),
           gf_engine_intraop(eng) == GF_INTRAOP_OPENMP ? "openmp" : "pool",
           deterministic ? "true" : "false", best * 1e3, (double)bs / best, gflops, peak_per_core,
           peak_per_core > 0 ? gflops / (peak_per_core * gf_engine_num_threads(eng)) : 0.0);
    fflush(stdout);
    gf_optimizer_free(opt);
    gf_module_free(m);
    gf_ctx_destroy(ctx);
    gf_engine_destroy(eng);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_train [options]   (--opt VALUE or --opt=VALUE)\n"
            "  --threads LIST      engine thread counts, e.g. 1,2,4 (default 1,2)\n"
            "  --config NAME       small (784-256-256-10, batch 64), large\n"
            "                      (784-1024-1024-10, batch 256) or all (default all)\n"
            "  --optim NAME        adam, sgd or all (default adam)\n"
            "  --windows N         timed windows per case, the best kept (default 5)\n"
            "  --deterministic     sets the engine option (changes nothing: every engine\n"
            "                      is bitwise reproducible; kept for old scripts)\n"
            "  --intraop NAME      pool or openmp (default: GF_INTRAOP, else pool)\n"
            "  -h, --help          this text\n"
            "One JSON line per case on stdout (bench/plot.py --scaling draws samples/s\n"
            "against threads).\n");
}

/* Exits with the usage on stderr when cond is false. */
static void need(bool cond, const char *opt, const char *v) {
    if (cond) return;
    fprintf(stderr, "bench_train: bad value \"%s\" for --%s\n", v, opt);
    usage(stderr);
    exit(2);
}

int main(int argc, char **argv) {
    int threads[16] = {1, 2}, nthreads = 2, windows = 5;
    bool deterministic = false;
    const char *which = "all", *optim = "adam";
    gf_intraop io = GF_INTRAOP_DEFAULT;
    static const struct option longs[] = {
        {"threads", required_argument, NULL, 't'}, {"config", required_argument, NULL, 'c'},
        {"optim", required_argument, NULL, 'o'},   {"intraop", required_argument, NULL, 'i'},
        {"windows", required_argument, NULL, 'w'}, {"deterministic", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int ch, at;
    while ((ch = getopt_long(argc, argv, "h", longs, &at)) != -1) {
        const char *name = ch != '?' && ch != 'h' ? longs[at].name : "";
        switch (ch) {
        case 'h': usage(stdout); return 0;
        case 'D': deterministic = true; break;
        case 't': {
            nthreads = 0;
            char *copy = strdup(optarg), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && nthreads < 16;
                 t = strtok_r(NULL, ",", &save))
                threads[nthreads++] = atoi(t);
            free(copy);
            need(nthreads > 0, name, optarg);
            break;
        }
        case 'c':
            need(!strcmp(optarg, "small") || !strcmp(optarg, "large") || !strcmp(optarg, "all"),
                 name, optarg);
            which = optarg;
            break;
        case 'o':
            need(!strcmp(optarg, "adam") || !strcmp(optarg, "sgd") || !strcmp(optarg, "all"),
                 name, optarg);
            optim = optarg;
            break;
        case 'i':
            need(!strcmp(optarg, "pool") || !strcmp(optarg, "openmp"), name, optarg);
            io = !strcmp(optarg, "openmp") ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL;
            break;
        case 'w': windows = atoi(optarg); break;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_train: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    for (int t = 0; t < nthreads; t++) {
        if (threads[t] < 1) {
            fprintf(stderr, "bench_train: thread counts must be >= 1\n");
            return 2;
        }
    }
    if (windows < 1) windows = 1;
    peak_per_core = gf_fma_peak_gflops(5);
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        if (strcmp(which, "all") && strcmp(which, c == 0 ? "small" : "large")) continue;
        for (int o = 0; o < 2; o++) {
            if (strcmp(optim, "all") && strcmp(optim, o ? "sgd" : "adam")) continue;
            for (int t = 0; t < nthreads; t++)
                run(&configs[c], threads[t], deterministic, windows, o == 1, io);
        }
    }
    return 0;
}
