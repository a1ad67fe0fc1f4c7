/*
 * bench_gemm.c - GFLOP/s of gf__sgemm on square and MLP shapes (with the
 * transposed-operand variants backward uses), 1 and 2 threads, next to
 * OpenBLAS at 1 and 2 threads in the same run; one JSON line per shape.
 * The variant is the one gf__sgemm picks (GF_ISA=avx512|avx2|generic).
 *
 * The machine is shared and noisy, so each shape runs ROUNDS rounds
 * (--rounds N or the first argument, default 3; --help lists the options);
 * in each round every configuration (ours 1t, ours
 * 2t, OpenBLAS 1t, OpenBLAS 2t) is timed for a burst (best of >= 3 calls,
 * ~BENCH_BURST_S s, default 0.15), and the best over the rounds is kept.
 * Interleaving keeps a load spike from landing on one configuration only.
 * Each round also gives a paired ratio (OpenBLAS's burst over ours, timed
 * back to back); ratio_1t_med / ratio_2t_med are their medians, with the
 * lowest and highest round in ratio_1t_min/max etc. The best-over-rounds
 * ratio compares two maxima that may come from different rounds (a quiet
 * moment for one side only); the median of paired ratios does not, so it
 * is the steadier of the two on a shared machine. Both are printed.
 * Steadier still at 1 thread are paired calls: after the rounds,
 * BENCH_PAIRS (default 40) pairs of single calls, ours and OpenBLAS's back
 * to back in alternating order; ratio_1t_pairs_med is the median of their
 * ratios. Calls milliseconds apart see the same phase of a machine whose
 * memory bandwidth drifts over seconds. (At 2 threads single calls measure
 * the other library's threads waking up or still spinning: 0.6-1.7 here,
 * so 2 threads keep the bursts only.)
 *
 * BENCH_CASES=i,j,... runs only those cases (numbered from 0 in the order
 * printed), for quick looks at a few shapes.
 *
 * Fields: mc, kc, nc (the f32 blocking in use), gflops_1t, gflops_2t,
 * scale_2t (2t/1t), pct_peak_1t (of the FMA peak of one core, measured
 * here by fma_peak.h at the start and after every case, the best so far kept: one measurement hit by a load spike
 * would put shapes above 100%), fma_peak (that best), pct_peak_2t (of two
 * cores), bitwise_1t_2t (ours gives the same bits for 1 and 2 threads);
 * with -DGF_BENCH_OPENBLAS (and -lopenblas): openblas_1t, openblas_2t,
 * openblas_scale_2t, ratio_1t / ratio_2t (ours / OpenBLAS, > 1 is faster)
 * and maxdiff against OpenBLAS's result. Run with OPENBLAS_CORETYPE set to
 * the machine's core (Zen here; SkylakeX would crash on a Zen 3).
 *
 * After the GEMM cases, {"bench":"linear_act"} lines compare a Linear
 * layer's forward with bias and ReLU fused into the GEMM's epilogue against
 * the GEMM followed by separate passes (see run_linear_act).
 */
#define _POSIX_C_SOURCE 199309L
#include "../ops/kernels/kernels.h"
#include "../tests/par.h"
#include "../ops/ops.h" /* gf__linear_act_set_fused (the linear_act lines) */
#include "fma_peak.h"
#include "gradflow/nn.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef GF_BENCH_OPENBLAS
#include <cblas.h>
#endif

/* One case: C (m x n) = op(A) (m x k) op(B) (k x n), row-major, with op a
 * transpose when ta/tb (the operand is stored k x m / n x k). */
typedef struct {
    int m, n, k, ta, tb;
    const char *what;
} shape;

static double burst_s = 0.15;
static const char *only; /* BENCH_CASES, or NULL for every case */
static int case_no;      /* the number of the next case */

/* Whether case number c is to run under BENCH_CASES. */
static int wanted(int c) {
    if (!only) return 1;
    for (const char *p = only; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v == c) return 1;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* Best seconds per call of `call` over >= 3 calls and ~burst_s. */
#define TIME_BEST(best, call)                                                            \
    do {                                                                                 \
        call; /* warm-up: page faults, thread pool */                                    \
        double t_end = gf_bench_now() + burst_s;                                         \
        for (int r = 0; r < 3 || (gf_bench_now() < t_end && r < 500); r++) {             \
            double t0 = gf_bench_now();                                                  \
            call;                                                                        \
            double dt = gf_bench_now() - t0;                                             \
            if (dt < best) best = dt;                                                    \
        }                                                                                \
    } while (0)

static float *falloc(size_t n) {
    float *p = aligned_alloc(64, (n * 4 + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

#define MAX_ROUNDS 64
#define MAX_PAIRS 1000
static int pairs = 40; /* BENCH_PAIRS */

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) and returns its median. */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double peak; /* the best FMA peak measured so far, GFLOP/s of one core */

static void run(shape s, int rounds) {
    if (!wanted(case_no++)) return;
    const int m = s.m, n = s.n, k = s.k;
    float *A = falloc((size_t)m * k), *B = falloc((size_t)k * n);
    float *C1 = falloc((size_t)m * n), *C2 = falloc((size_t)m * n);
    for (size_t i = 0; i < (size_t)m * k; i++) A[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)k * n; i++) B[i] = (float)rand() / RAND_MAX - 0.5f;
    /* Stored shapes: A is m x k (or k x m), B is k x n (or n x k). */
    const int64_t rsa = s.ta ? 1 : k, csa = s.ta ? m : 1;
    const int64_t rsb = s.tb ? 1 : n, csb = s.tb ? k : 1;
    double t1 = 1e30, t2 = 1e30;
#ifdef GF_BENCH_OPENBLAS
    float *R = falloc((size_t)m * n);
    double o1 = 1e30, o2 = 1e30;
    double pr1[MAX_ROUNDS], pr2[MAX_ROUNDS]; /* paired ratios per round */
#endif
    for (int r = 0; r < rounds; r++) {
        double rt1 = 1e30, rt2 = 1e30;
        TIME_BEST(rt1, gf__sgemm(m, n, k, A, rsa, csa, B, rsb, csb, 0.0f, C1, n, 1, tpar(1)));
        TIME_BEST(rt2, gf__sgemm(m, n, k, A, rsa, csa, B, rsb, csb, 0.0f, C2, n, 1, tpar(2)));
        t1 = fmin(t1, rt1), t2 = fmin(t2, rt2);
#ifdef GF_BENCH_OPENBLAS
        double ro[3] = {0, 1e30, 1e30};
        for (int nt = 1; nt <= 2; nt++) {
            openblas_set_num_threads(nt);
            TIME_BEST(ro[nt], cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                                          s.tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A,
                                          s.ta ? m : k, B, s.tb ? k : n, 0.0f, R, n));
        }
        o1 = fmin(o1, ro[1]), o2 = fmin(o2, ro[2]);
        pr1[r] = ro[1] / rt1, pr2[r] = ro[2] / rt2;
#endif
    }
#ifdef GF_BENCH_OPENBLAS
    /* Paired calls at 1 thread (see the header): `pairs` pairs of one call
     * of ours and one of OpenBLAS's, back to back, the order alternating. */
    double pq[MAX_PAIRS];
    openblas_set_num_threads(1);
    for (int q = 0; q < pairs; q++) {
        double to = 0, tg = 0;
        for (int h = 0; h < 2; h++) {
            const double t0 = gf_bench_now();
            if ((q + h) % 2 == 0)
                gf__sgemm(m, n, k, A, rsa, csa, B, rsb, csb, 0.0f, C1, n, 1, tpar(1));
            else
                cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                            s.tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A, s.ta ? m : k, B,
                            s.tb ? k : n, 0.0f, R, n);
            const double dt = gf_bench_now() - t0;
            if ((q + h) % 2 == 0)
                tg = dt;
            else
                to = dt;
        }
        pq[q] = to / tg;
    }
#endif
    const double p = gf_fma_peak_gflops(3);
    if (p > peak) peak = p;
    const double gf = 2.0 * m * n * k * 1e-9;
    const int same = memcmp(C1, C2, (size_t)m * n * sizeof *C1) == 0;
    int blk[5]; /* mr, nr, mc, kc, nc (mc, nc sized to this machine's caches) */
    gf__gemm_blocks(4, blk);
    printf("{\"bench\":\"sgemm\",\"what\":\"%s\",\"m\":%d,\"n\":%d,\"k\":%d,\"ta\":%d,\"tb\":%d,"
           "\"isa\":\"%s\",\"mc\":%d,\"kc\":%d,\"nc\":%d,\"gflops_1t\":%.1f,"
           "\"gflops_2t\":%.1f,\"scale_2t\":%.2f,"
           "\"fma_peak\":%.1f,\"pct_peak_1t\":%.1f,\"pct_peak_2t\":%.1f,\"bitwise_1t_2t\":%s",
           s.what, m, n, k, s.ta, s.tb, gf__gemm_isa(), blk[2], blk[3], blk[4], gf / t1, gf / t2,
           t1 / t2,
           peak, peak > 0 ? 100 * gf / t1 / peak : 0, peak > 0 ? 100 * gf / t2 / (2 * peak) : 0,
           same ? "true" : "false");
#ifdef GF_BENCH_OPENBLAS
    double diff = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) diff = fmax(diff, fabs((double)C1[i] - R[i]));
    /* median() sorts, so pr[0] and pr[rounds - 1] are the extremes after it. */
    const double med1 = median(pr1, rounds), med2 = median(pr2, rounds);
    if (pairs > 0)
        printf(",\"pairs\":%d,\"ratio_1t_pairs_med\":%.3f", pairs, median(pq, pairs));
    printf(",\"openblas_1t\":%.1f,\"openblas_2t\":%.1f,\"openblas_scale_2t\":%.2f,"
           "\"ratio_1t\":%.3f,\"ratio_2t\":%.3f,\"rounds\":%d,\"ratio_1t_med\":%.3f,"
           "\"ratio_1t_min\":%.3f,\"ratio_1t_max\":%.3f,\"ratio_2t_med\":%.3f,"
           "\"ratio_2t_min\":%.3f,\"ratio_2t_max\":%.3f,\"maxdiff\":%.2g",
           gf / o1, gf / o2, o1 / o2, o1 / t1, o2 / t2, rounds, med1, pr1[0], pr1[rounds - 1],
           med2, pr2[0], pr2[rounds - 1], diff);
    free(R);
#endif
    printf("}\n");
    fflush(stdout);
    free(A), free(B), free(C1), free(C2);
}

/* ---------------------------------------------- fused linear + bias + relu */
/* One {"bench":"linear_act"} line: y = relu(x W^T + b), x m x k, W n x k
 * (nn's layout, read transposed by strides), b [n], on nt threads. Kernel
 * level: the bare GEMM (gemm_ms), the GEMM with the bias + relu epilogue
 * (fused_ms; ep_over_gemm is the epilogue's cost, best over best, and
 * ep_over_gemm_med the median of the rounds' paired ratios), and the GEMM followed by
 * a bias-add pass and a relu pass over C, split over the threads like the
 * ops split them (unfused_ms). Op level, through the engine (nt threads):
 * gf_linear_act recorded as the fused op (op_fused_ms) and as the three
 * ops nn recorded before (matmul, add, relu: op_unfused_ms), each realized
 * in a scope. Each configuration timed in every round, the best kept;
 * bitwise: the fused outputs equal the unfused ones. */
/* U = relu(X W^T + b) the unfused way: the GEMM, then a pass adding b, then
 * a relu pass, each split over nt threads. */
static void unfused_passes(int m, int n, int k, const float *X, const float *W,
                           const float *bias, float *U, int nt) {
    gf__sgemm(m, n, k, X, k, 1, W, 1, k, 0.0f, U, n, 1, tpar(nt));
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) U[(int64_t)i * n + j] += bias[j];
    const int64_t mn = (int64_t)m * n;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < mn; i++) U[i] = U[i] < 0 ? 0 : U[i];
}

static void run_linear_act(int m, int n, int k, int nt, int rounds) {
    if (!wanted(case_no++)) return;
    float *X = falloc((size_t)m * k), *W = falloc((size_t)n * k), *bias = falloc((size_t)n);
    float *C = falloc((size_t)m * n), *F = falloc((size_t)m * n), *U = falloc((size_t)m * n);
    for (size_t i = 0; i < (size_t)m * k; i++) X[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)n * k; i++) W[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int j = 0; j < n; j++) bias[j] = (float)rand() / RAND_MAX - 0.5f;
    const gf__sepilogue ep = {.bias = bias, .incb = 1, .act = GF__ACT_RELU};
    const int64_t mn = (int64_t)m * n;
    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = nt});
    gf_ctx *ctx = gf_ctx_create(eng);
    gf_tensor *x = gf_tensor_f32(ctx, 2, (int64_t[]){m, k}, X);
    gf_tensor *w = gf_tensor_f32(ctx, 2, (int64_t[]){n, k}, W);
    gf_tensor *b = gf_tensor_f32(ctx, 1, (int64_t[]){n}, bias);
    float *opf = falloc((size_t)mn), *opu = falloc((size_t)mn);
#define GF__OP_CALL(fused, dst)                                                            \
    do {                                                                                   \
        gf__linear_act_set_fused(fused);                                                   \
        gf_scope_begin(ctx);                                                               \
        const float *y_ = gf_data_f32(gf_linear_act(x, w, b, GF_ACT_RELU));                \
        if (!y_) {                                                                         \
            fprintf(stderr, "gf_linear_act: %s\n", gf_ctx_error(ctx));                     \
            exit(1);                                                                       \
        }                                                                                  \
        memcpy(dst, y_, sizeof(float) * (size_t)mn);                                       \
        gf_scope_end(ctx);                                                                 \
        gf__linear_act_set_fused(true);                                                    \
    } while (0)
    double tg = 1e30, tf = 1e30, tu = 1e30, of = 1e30, ou = 1e30, pr[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        double rg = 1e30, rf = 1e30;
        TIME_BEST(rg, gf__sgemm(m, n, k, X, k, 1, W, 1, k, 0.0f, C, n, 1, tpar(nt)));
        TIME_BEST(rf, gf__sgemm_ep(m, n, k, X, k, 1, W, 1, k, 0.0f, F, n, 1, tpar(nt), &ep));
        tg = fmin(tg, rg), tf = fmin(tf, rf), pr[r] = rf / rg;
        TIME_BEST(tu, unfused_passes(m, n, k, X, W, bias, U, nt));
        TIME_BEST(of, GF__OP_CALL(true, opf));
        TIME_BEST(ou, GF__OP_CALL(false, opu));
    }
#undef GF__OP_CALL
    const int same = memcmp(F, U, sizeof(float) * (size_t)mn) == 0 &&
                     memcmp(opf, opu, sizeof(float) * (size_t)mn) == 0 &&
                     memcmp(opf, F, sizeof(float) * (size_t)mn) == 0;
    printf("{\"bench\":\"linear_act\",\"act\":\"relu\",\"m\":%d,\"n\":%d,\"k\":%d,\"threads\":%d,"
           "\"isa\":\"%s\",\"gemm_ms\":%.4f,\"fused_ms\":%.4f,\"unfused_ms\":%.4f,"
           "\"ep_over_gemm\":%.4f,\"ep_over_gemm_med\":%.4f,\"unfused_over_fused\":%.4f,"
           "\"op_fused_ms\":%.4f,\"op_unfused_ms\":%.4f,\"op_unfused_over_fused\":%.4f,"
           "\"rounds\":%d,\"bitwise\":%s}\n",
           m, n, k, nt, gf__gemm_isa(), tg * 1e3, tf * 1e3, tu * 1e3, tf / tg, median(pr, rounds),
           tu / tf, of * 1e3, ou * 1e3, ou / of, rounds, same ? "true" : "false");
    fflush(stdout);
    gf_ctx_destroy(ctx);
    gf_engine_destroy(eng);
    free(X), free(W), free(bias), free(C), free(F), free(U), free(opf), free(opu);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_gemm [--rounds N | N]   (--rounds N or --rounds=N)\n"
            "  --rounds N    rounds per shape, the best kept (default 3; also the first\n"
            "                argument alone)\n"
            "  -h, --help    this text\n"
            "Environment: BENCH_BURST_S (seconds per burst, default 0.15), BENCH_CASES\n"
            "(i,j,... only those cases), BENCH_PAIRS (paired 1-thread calls, default 40),\n"
            "GF_ISA, OPENBLAS_CORETYPE. One JSON line per shape on stdout.\n");
}

int main(int argc, char **argv) {
    static const struct option longs[] = {{"rounds", required_argument, NULL, 'r'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *rounds_arg = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (ch != 'r') {
            usage(stderr);
            return 2;
        }
        rounds_arg = optarg;
    }
    if (optind < argc && !rounds_arg) rounds_arg = argv[optind++];
    if (optind < argc || (rounds_arg && atoi(rounds_arg) < 1)) {
        fprintf(stderr, "bench_gemm: expected one round count >= 1, got \"%s\"\n",
                optind < argc ? argv[optind] : rounds_arg);
        usage(stderr);
        return 2;
    }
    int rounds = rounds_arg ? atoi(rounds_arg) : 3;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    const char *e = getenv("BENCH_BURST_S");
    if (e && atof(e) > 0) burst_s = atof(e);
    only = getenv("BENCH_CASES");
    e = getenv("BENCH_PAIRS");
    if (e && atoi(e) >= 0) pairs = atoi(e) > MAX_PAIRS ? MAX_PAIRS : atoi(e);
    peak = gf_fma_peak_gflops(5);
    printf("{\"bench\":\"fma_peak\",\"chains\":%d,\"gflops_per_core\":%.1f}\n", GF_FMA_CHAINS,
           peak);
    /* Forward x W (m x k times k x n), then backward's two products:
     * dX = dY W^T (B transposed), dW = X^T dY (A transposed). */
    static const shape mlp[] = {{64, 256, 784, 0, 0, "fwd"},
                                {256, 1024, 784, 0, 0, "fwd"},
                                {256, 1024, 1024, 0, 0, "fwd"}};
    for (int sz = 256; sz <= 2048; sz *= 2) run((shape){sz, sz, sz, 0, 0, "square"}, rounds);
    run((shape){1024, 1024, 1024, 1, 0, "square"}, rounds);
    run((shape){1024, 1024, 1024, 0, 1, "square"}, rounds);
    for (size_t i = 0; i < sizeof mlp / sizeof mlp[0]; i++) {
        shape f = mlp[i];
        run(f, rounds);
        run((shape){f.m, f.k, f.n, 0, 1, "dX=G.W^T"}, rounds); /* m x k = dY W^T */
        run((shape){f.k, f.n, f.m, 1, 0, "dW=X^T.G"}, rounds); /* k x n = X^T dY */
    }
    /* A Linear layer's forward with its bias and ReLU, fused and not. */
    static const int la[][3] = {{64, 256, 784}, {256, 1024, 1024}};
    for (int i = 0; i < 2; i++)
        for (int nt = 1; nt <= 2; nt++) run_linear_act(la[i][0], la[i][1], la[i][2], nt, rounds);
    return 0;
}
