/*
 * bench_serve.c - inference served from many threads on one engine: K
 * request threads, each with its own ctx, share a 784-256-256-10 ReLU MLP's
 * parameters (gf_share handles of one model ctx's leaves) and answer
 * requests of batch B under no_grad: x @ w^T + b with ReLU (gf_linear_act)
 * twice, a last Linear, softmax, and the probabilities read back. Each
 * thread runs back-to-back requests for a fixed time after a warm-up; the
 * line reports requests/s of all threads together and the latency p50/p99
 * over every request. One JSON line per (K, B):
 *
 *   {"bench":"serve","impl":"gradflow","model":"784-256-256-10","batch":1,
 *    "request_threads":2,"engine_threads":2,"requests_per_s":...,
 *    "p50_us":...,"p99_us":...,"speedup_vs_1":...}
 *
 * Options (--opt VALUE or --opt=VALUE; --help lists them): --threads 1,2,4
 * (request threads), --batch 1,64, --engine-threads N (default: the
 * engine's default, one per core), --seconds S (per case, default 1),
 * --intraop pool|openmp.
 */
#define _POSIX_C_SOURCE 200809L
#include "gradflow.h"
#include "gradflow/nn.h"

#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define NLAYER 3
static const int64_t sizes[NLAYER + 1] = {784, 256, 256, 10};

typedef struct {
    gf_engine *eng;
    gf_tensor *const *params; /* w0, b0, w1, b1, w2, b2 of the model ctx */
    int64_t batch;
    double seconds;
    pthread_barrier_t *start;
    /* out */
    double *lat; /* seconds per request */
    int64_t nlat, cap;
    int failed;
} worker;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One request: the forward pass on x, softmax, the probabilities read. */
static int request(gf_ctx *c, gf_tensor *const *p, gf_tensor *x, float *sink) {
    gf_scope_begin(c);
    gf_tensor *h = x;
    for (int l = 0; l < NLAYER; l++)
        h = gf_linear_act(h, p[2 * l], p[2 * l + 1], l + 1 < NLAYER ? GF_ACT_RELU : GF_ACT_NONE);
    const float *y = gf_data_f32(gf_softmax(h, 1));
    int ok = y != NULL;
    if (ok) *sink += y[0];
    gf_scope_end(c);
    return ok;
}

static void *serve(void *arg) {
    worker *w = arg;
    gf_ctx *c = gf_ctx_create(w->eng);
    gf_tensor *p[2 * NLAYER];
    for (int i = 0; i < 2 * NLAYER; i++) p[i] = c ? gf_share(c, w->params[i]) : NULL;
    gf_manual_seed(c, 42);
    gf_tensor *x = gf_randn(c, GF_F32, 2, (int64_t[]){w->batch, sizes[0]});
    gf_no_grad_begin(c);
    float sink = 0;
    int ok = x && gf_realize(x) == GF_OK;
    for (int i = 0; ok && i < 200; i++) ok = request(c, p, x, &sink);
    pthread_barrier_wait(w->start);
    const double t_end = now() + w->seconds;
    while (ok) {
        const double t0 = now();
        ok = request(c, p, x, &sink);
        const double t1 = now();
        if (w->nlat == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 1 << 16;
            double *n = realloc(w->lat, (size_t)w->cap * sizeof *n);
            if (!n) break;
            w->lat = n;
        }
        w->lat[w->nlat++] = t1 - t0;
        if (t1 >= t_end) break;
    }
    if (!ok || sink != sink) {
        fprintf(stderr, "bench_serve: request failed: %s\n", gf_ctx_error(c) ? gf_ctx_error(c) : "?");
        w->failed = 1;
    }
    gf_no_grad_end(c);
    gf_ctx_destroy(c);
    return NULL;
}

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        out[n++] = atoi(t);
    free(copy);
    return n;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_serve [options]   (--opt VALUE or --opt=VALUE)\n"
            "  --threads LIST         request thread counts, e.g. 1,2,4 (default 1,2,4)\n"
            "  --batch LIST           request batch sizes (default 1,64)\n"
            "  --engine-threads N     engine threads (default: one per physical core)\n"
            "  --seconds S            timed seconds per case (default 1)\n"
            "  --intraop NAME         pool or openmp (default: GF_INTRAOP, else pool)\n"
            "  -h, --help             this text\n"
            "One JSON line per (request threads, batch) on stdout.\n");
}

int main(int argc, char **argv) {
    int ks[8] = {1, 2, 4}, nk = 3, bs[8] = {1, 64}, nb = 2, eng_threads = 0;
    double seconds = 1.0;
    gf_intraop io = GF_INTRAOP_DEFAULT;
    static const struct option longs[] = {
        {"threads", required_argument, NULL, 't'}, {"batch", required_argument, NULL, 'b'},
        {"engine-threads", required_argument, NULL, 'e'},
        {"seconds", required_argument, NULL, 's'}, {"intraop", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'h': usage(stdout); return 0;
        case 't': nk = parse_list(optarg, ks, 8); break;
        case 'b': nb = parse_list(optarg, bs, 8); break;
        case 'e': eng_threads = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'i':
            if (strcmp(optarg, "pool") && strcmp(optarg, "openmp")) {
                fprintf(stderr, "bench_serve: --intraop wants pool or openmp, got \"%s\"\n",
                        optarg);
                return 2;
            }
            io = !strcmp(optarg, "openmp") ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL;
            break;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_serve: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = eng_threads, .intraop = io});
    gf_ctx *mc = eng ? gf_ctx_create(eng) : NULL;
    if (!mc) {
        fprintf(stderr, "bench_serve: no engine\n");
        return 1;
    }
    gf_manual_seed(mc, 1);
    gf_module *model = gf_mlp(mc, NLAYER + 1, sizes, GF_ACT_RELU, GF_F32);
    gf_tensor *params[2 * NLAYER];
    for (int i = 0; i < 2 * NLAYER; i++) {
        params[i] = model ? gf_module_parameter(model, i) : NULL;
        if (!params[i] || gf_realize(params[i]) != GF_OK) {
            fprintf(stderr, "bench_serve: model: %s\n", gf_ctx_error(mc));
            return 1;
        }
    }
    for (int b = 0; b < nb; b++) {
        double base = 0;
        for (int k = 0; k < nk; k++) {
            const int K = ks[k];
            worker *w = calloc((size_t)K, sizeof *w);
            pthread_t *th = calloc((size_t)K, sizeof *th);
            pthread_barrier_t start;
            pthread_barrier_init(&start, NULL, (unsigned)K);
            for (int i = 0; i < K; i++) {
                w[i] = (worker){.eng = eng, .params = params, .batch = bs[b], .seconds = seconds,
                                .start = &start};
                pthread_create(&th[i], NULL, serve, &w[i]);
            }
            int64_t total = 0;
            int failed = 0;
            double span = 0;
            for (int i = 0; i < K; i++) {
                pthread_join(th[i], NULL);
                total += w[i].nlat;
                failed |= w[i].failed;
                double s = 0;
                for (int64_t j = 0; j < w[i].nlat; j++) s += w[i].lat[j];
                if (s > span) span = s;
            }
            if (failed || total == 0) return 1;
            double *all = malloc((size_t)total * sizeof *all);
            int64_t at = 0;
            for (int i = 0; i < K; i++) {
                memcpy(all + at, w[i].lat, (size_t)w[i].nlat * sizeof *all);
                at += w[i].nlat;
                free(w[i].lat);
            }
            qsort(all, (size_t)total, sizeof *all, cmp_double);
            const double rps = (double)total / span;
            if (k == 0) base = rps / K;
            printf("{\"bench\":\"serve\",\"impl\":\"gradflow\",\"model\":\"784-256-256-10\","
                   "\"batch\":%d,\"request_threads\":%d,\"engine_threads\":%d,\"intraop\":\"%s\","
                   "\"requests_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                   "\"speedup_vs_1\":%.3f}\n",
                   bs[b], K, gf_engine_num_threads(eng),
                   gf_engine_intraop(eng) == GF_INTRAOP_OPENMP ? "openmp" : "pool", rps,
                   all[total / 2] * 1e6, all[(int64_t)(0.99 * (double)(total - 1))] * 1e6,
                   base > 0 ? rps / base : 0.0);
            fflush(stdout);
            free(all);
            free(w);
            free(th);
            pthread_barrier_destroy(&start);
        }
    }
    gf_module_free(model);
    gf_ctx_destroy(mc);
    gf_engine_destroy(eng);
    return 0;
}
