/*
 * bench_gemm.c - GFLOP/s of gf__sgemm on square and MLP shapes (with
 * transposed-operand variants, as backward uses them), 1 and 2 threads,
 * best of several runs; one JSON line per case. The variant is the one
 * gf__sgemm picks (GF_ISA=avx512|avx2|generic to force one).
 *
 * Built with -DGF_BENCH_OPENBLAS (and -lopenblas) it also times
 * cblas_sgemm on the same operands, checks the two results agree, and
 * prints the ratio ours/OpenBLAS. Run it with OPENBLAS_CORETYPE set to the
 * machine's core (e.g. SkylakeX, Zen) so OpenBLAS does not guess.
 */
#define _POSIX_C_SOURCE 199309L
#include "../ops/kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef GF_BENCH_OPENBLAS
#include <cblas.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One case: C (m x n) = op(A) (m x k) op(B) (k x n), row-major, with op a
 * transpose when ta/tb (the operand is stored k x m / n x k). */
typedef struct {
    int m, n, k, ta, tb;
} shape;

/* Best seconds per call of fn over at least 3 runs and ~0.4 s. */
#define TIME_BEST(best, call)                                                            \
    do {                                                                                 \
        call; /* warm-up: page faults, thread pool */                                    \
        best = 1e30;                                                                     \
        double t_end = now() + 0.4;                                                      \
        for (int r = 0; r < 3 || (now() < t_end && r < 200); r++) {                      \
            double t0 = now();                                                           \
            call;                                                                        \
            double dt = now() - t0;                                                      \
            if (dt < best) best = dt;                                                    \
        }                                                                                \
    } while (0)

static void run(shape s, int nt) {
    const int m = s.m, n = s.n, k = s.k;
    float *A = aligned_alloc(64, ((size_t)m * k * 4 + 63) & ~(size_t)63);
    float *B = aligned_alloc(64, ((size_t)k * n * 4 + 63) & ~(size_t)63);
    float *C = aligned_alloc(64, ((size_t)m * n * 4 + 63) & ~(size_t)63);
    if (!A || !B || !C) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)m * k; i++) A[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)k * n; i++) B[i] = (float)rand() / RAND_MAX - 0.5f;
    /* Stored shapes: A is m x k (or k x m), B is k x n (or n x k). */
    const int64_t rsa = s.ta ? 1 : k, csa = s.ta ? m : 1;
    const int64_t rsb = s.tb ? 1 : n, csb = s.tb ? k : 1;
    double t;
    TIME_BEST(t, gf__sgemm(m, n, k, A, rsa, csa, B, rsb, csb, 0.0f, C, n, 1, nt));
    const double flop = 2.0 * m * n * k;
    printf("{\"bench\":\"sgemm\",\"m\":%d,\"n\":%d,\"k\":%d,\"ta\":%d,\"tb\":%d,\"threads\":%d,"
           "\"isa\":\"%s\",\"gflops\":%.1f",
           m, n, k, s.ta, s.tb, nt, gf__gemm_isa(), flop / t * 1e-9);
#ifdef GF_BENCH_OPENBLAS
    float *R = aligned_alloc(64, ((size_t)m * n * 4 + 63) & ~(size_t)63);
    if (!R) exit(1);
    openblas_set_num_threads(nt);
    double tb;
    TIME_BEST(tb, cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                              s.tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A, s.ta ? m : k,
                              B, s.tb ? k : n, 0.0f, R, n));
    double diff = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) diff = fmax(diff, fabs((double)C[i] - R[i]));
    printf(",\"openblas_gflops\":%.1f,\"ratio\":%.3f,\"maxdiff\":%.2g", flop / tb * 1e-9, tb / t,
           diff);
    free(R);
#endif
    printf("}\n");
    fflush(stdout);
    free(A), free(B), free(C);
}

int main(int argc, char **argv) {
    /* Forward x W (m x k times k x n), then backward's two products:
     * dX = dY W^T (B transposed), dW = X^T dY (A transposed). */
    static const shape mlp[] = {{64, 256, 784, 0, 0}, {256, 1024, 784, 0, 0},
                                {256, 1024, 1024, 0, 0}};
    int only_threads = argc > 1 ? atoi(argv[1]) : 0;
    for (int nt = 1; nt <= 2; nt++) {
        if (only_threads && nt != only_threads) continue;
        for (int sz = 256; sz <= 2048; sz *= 2) run((shape){sz, sz, sz, 0, 0}, nt);
        run((shape){1024, 1024, 1024, 1, 0}, nt);
        run((shape){1024, 1024, 1024, 0, 1}, nt);
        for (size_t i = 0; i < sizeof mlp / sizeof mlp[0]; i++) {
            shape f = mlp[i];
            run(f, nt);
            run((shape){f.m, f.k, f.n, 0, 1}, nt); /* dX: m x k = dY (m x n) W^T */
            run((shape){f.k, f.n, f.m, 1, 0}, nt); /* dW: k x n = X^T (k x m) dY */
        }
    }
    return 0;
}
