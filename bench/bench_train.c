/*
 * bench_train.c - training throughput of MLPs: ms per step and samples/s of
 * forward + cross-entropy + zero_grad + backward + Adam step, for
 * 784-256-256-10 at batch 64 and 784-1024-1024-10 at batch 256, on synthetic
 * data of the right shape (no dataset needed), with 1 and 2 engine threads.
 * Each case warms up, then times windows of consecutive steps (>= 5 steps
 * and ~0.3 s each) and keeps the best window's mean step time. One JSON line
 * per case, the same fields bench/compare_pytorch.py prints for PyTorch:
 *
 *   {"bench":"train","impl":"gradflow","model":"784-256-256-10","batch":64,
 *    "threads":1,"deterministic":false,"ms_per_step":1.234,"samples_per_s":51863.0}
 *
 * Options: --threads 1,2 (list), --config small|large|all, --windows N
 * (default 5), --deterministic.
 */
#define _POSIX_C_SOURCE 199309L
#include "gradflow.h"
#include "gradflow/nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static void run(const config *c, int threads, bool deterministic, int windows) {
    gf_engine_opts eo = {.num_threads = threads, .deterministic = deterministic};
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
    gf_optimizer *opt = m ? gf_module_adam(m, &ao) : NULL;
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

    printf("{\"bench\":\"train\",\"impl\":\"gradflow\",\"model\":\"%s\",\"batch\":%lld,"
           "\"threads\":%d,\"deterministic\":%s,\"ms_per_step\":%.4f,\"samples_per_s\":%.1f}\n",
           c->name, (long long)bs, gf_engine_num_threads(eng), deterministic ? "true" : "false",
           best * 1e3, (double)bs / best);
    fflush(stdout);
    gf_optimizer_free(opt);
    gf_module_free(m);
    gf_ctx_destroy(ctx);
    gf_engine_destroy(eng);
}

int main(int argc, char **argv) {
    int threads[16] = {1, 2}, nthreads = 2, windows = 5;
    bool deterministic = false;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--deterministic")) {
            deterministic = true;
        } else if (!strcmp(argv[i], "--threads") && v) {
            nthreads = 0;
            char *copy = strdup(v), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && nthreads < 16;
                 t = strtok_r(NULL, ",", &save))
                threads[nthreads++] = atoi(t);
            free(copy);
            i++;
        } else if (!strcmp(argv[i], "--config") && v) {
            which = v;
            i++;
        } else if (!strcmp(argv[i], "--windows") && v) {
            windows = atoi(v);
            i++;
        } else {
            fprintf(stderr,
                    "usage: bench_train [--threads 1,2] [--config small|large|all] "
                    "[--windows N] [--deterministic]\n");
            return 2;
        }
    }
    for (int t = 0; t < nthreads; t++) {
        if (threads[t] < 1) {
            fprintf(stderr, "bench_train: thread counts must be >= 1\n");
            return 2;
        }
    }
    if (windows < 1) windows = 1;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        if (strcmp(which, "all") && strcmp(which, c == 0 ? "small" : "large")) continue;
        for (int t = 0; t < nthreads; t++) run(&configs[c], threads[t], deterministic, windows);
    }
    return 0;
}
