/*
 * test_gemm.c - gf__sgemm / gf__dgemm (ops/kernels) against a naive triple
 * loop in higher precision, for every micro-kernel variant the CPU runs:
 * shapes that hit every edge (prime sizes, 1xN, Nx1, K=1, K=0, K > kc,
 * N > nc), transposed and strided operands, beta accumulation, NaN-safety of
 * beta 0, untouched padding around C, a BLIS-style residual on a large
 * product, bitwise equality of C across thread counts, and of row-major and
 * transposed B (the fused and column packing of B).
 */
#include <criterion/criterion.h>

#include "splitmix.h"

#include "../ops/kernels/kernels.h"
#include "par.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const isas[] = {"generic", "avx2", "avx512"};
#define NISAS (sizeof isas / sizeof isas[0])

/* Forces variant i; false (and a note) when this CPU cannot run it. The
 * note is info, not warn: Criterion 2.4 fails the run on any warning. */
static bool use_isa(size_t i) {
    gf__gemm_force_isa(isas[i]);
    if (strcmp(gf__gemm_isa(), isas[i]) == 0) return true;
    cr_log_info("gemm variant %s not supported here (got %s); skipped", isas[i], gf__gemm_isa());
    return false;
}

static void restore_isa(void) { gf__gemm_force_isa(NULL); }

/* splitmix64: fixed seeds make every run see the same data. */
static uint64_t rng = 42;
static double urand(void) {
    return gf_test_u01(&rng) * 2 - 1;
}

/* One problem: C (m x n) = beta*C + op(A) (m x k) * op(B) (k x n).
 * ta/tb: operand stored transposed (so csa/csb != 1); tc: C stored
 * column-major; pad: extra elements per stored row (row stride > width). */
typedef struct {
    int64_t m, n, k;
    int ta, tb, tc;
    int64_t pad;
    int beta1;
} prob;

/* Layout of a logical r x c matrix stored row-major (or transposed) with
 * pad extra elements per stored row: element (i,j) at i*rs + j*cs. */
static void layout(int64_t r, int64_t c, int trans, int64_t pad, int64_t *rs, int64_t *cs,
                   int64_t *size) {
    if (!trans) {
        *rs = c + pad, *cs = 1, *size = r * (c + pad) + 1;
    } else {
        *rs = 1, *cs = r + pad, *size = c * (r + pad) + 1;
    }
}

/* Defines check_<X>(prob, nt): runs the GEMM of dtype T in buffers with a
 * sentinel-filled padding and compares it, element by element, with the
 * reference computed in long double, to within rtol of the sum of absolute
 * terms (the natural scale of the rounding error). */
#define DEFINE_CHECK(X, T, GEMM, EPS)                                                    \
    static void check_##X(prob pr, int nt, const char *isa) {                            \
        int64_t rsa, csa, sa, rsb, csb, sb, rsc, csc, sc;                                \
        layout(pr.m, pr.k, pr.ta, pr.pad, &rsa, &csa, &sa);                              \
        layout(pr.k, pr.n, pr.tb, pr.pad, &rsb, &csb, &sb);                              \
        layout(pr.m, pr.n, pr.tc, pr.pad, &rsc, &csc, &sc);                              \
        T *A = malloc(sa * sizeof(T)), *B = malloc(sb * sizeof(T));                      \
        T *C = malloc(sc * sizeof(T)), *C0 = malloc(sc * sizeof(T));                     \
        cr_assert(A && B && C && C0);                                                    \
        for (int64_t i = 0; i < sa; i++) A[i] = (T)urand();                              \
        for (int64_t i = 0; i < sb; i++) B[i] = (T)urand();                              \
        for (int64_t i = 0; i < sc; i++) C0[i] = pr.beta1 ? (T)urand() : (T)NAN;         \
        memcpy(C, C0, sc * sizeof(T));                                                   \
        T beta = pr.beta1 ? 1 : 0;                                                       \
        GEMM(pr.m, pr.n, pr.k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc, tpar(nt));   \
        const long double rtol = 8 * (long double)EPS * sqrtl((long double)pr.k + 1);   \
        char *inside = calloc(sc, 1);                                                    \
        cr_assert(inside);                                                               \
        for (int64_t i = 0; i < pr.m; i++)                                               \
            for (int64_t j = 0; j < pr.n; j++) {                                         \
                long double s = 0, mag = 0;                                              \
                for (int64_t p = 0; p < pr.k; p++) {                                     \
                    long double t = (long double)A[i * rsa + p * csa] * B[p * rsb + j * csb]; \
                    s += t, mag += fabsl(t);                                             \
                }                                                                        \
                int64_t o = i * rsc + j * csc;                                           \
                inside[o] = 1;                                                           \
                if (pr.beta1) s += C0[o], mag += fabsl((long double)C0[o]);              \
                long double err = fabsl((long double)C[o] - s);                          \
                cr_assert(err <= rtol * mag + (long double)EPS * 1e-30L,                \
                          "%s " #X "gemm m=%ld n=%ld k=%ld ta=%d tb=%d tc=%d pad=%ld "   \
                          "beta=%d nt=%d: C(%ld,%ld)=%.9Lg, want %.9Lg (err %.3Lg, "     \
                          "allowed %.3Lg)",                                              \
                          isa, (long)pr.m, (long)pr.n, (long)pr.k, pr.ta, pr.tb, pr.tc, \
                          (long)pr.pad, pr.beta1, nt, (long)i, (long)j,                  \
                          (long double)C[o], s, err, rtol * mag);                        \
            }                                                                            \
        for (int64_t o = 0; o < sc; o++)                                                 \
            if (!inside[o])                                                              \
                cr_assert(memcmp(&C[o], &C0[o], sizeof(T)) == 0,                         \
                          "%s " #X "gemm m=%ld n=%ld k=%ld: wrote outside C at %ld", isa, \
                          (long)pr.m, (long)pr.n, (long)pr.k, (long)o);                  \
        free(inside);                                                                    \
        free(A), free(B), free(C), free(C0);                                             \
    }

DEFINE_CHECK(s, float, gf__sgemm, FLT_EPSILON)
DEFINE_CHECK(d, double, gf__dgemm, DBL_EPSILON)

/* Shapes (m, n, k) that cross every boundary of every variant's blocking:
 * below/at/above mr and nr, primes, k above kc (256), n above nc (4080). */
static const int64_t shapes[][3] = {
    {1, 1, 1},    {1, 1, 7},     {2, 3, 4},     {5, 7, 3},      {8, 8, 8},
    {6, 16, 9},   {12, 32, 5},   {14, 16, 3},   {7, 17, 11},    {13, 33, 2},
    {17, 31, 13}, {64, 64, 64},  {65, 63, 67},  {127, 61, 253}, {100, 200, 300},
    {1, 37, 19},  {1, 300, 600}, {1, 2000, 50}, {37, 1, 19},    {600, 1, 300},
    {2000, 1, 50}, {1, 1, 1000}, {50, 60, 1},   {300, 200, 1},  {3, 700, 2},
    {700, 3, 9},  {2, 2, 600},   {97, 89, 531}, {13, 4500, 40}, {481, 50, 20},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* Every shape in every layout and with both betas, for one dtype. */
static void sweep(void (*check)(prob, int, const char *), const char *isa) {
    for (size_t s = 0; s < NSHAPES; s++)
        for (int lay = 0; lay < 16; lay++) {
            prob pr = {shapes[s][0], shapes[s][1], shapes[s][2], lay & 1, (lay >> 1) & 1,
                       (lay >> 2) & 1, (lay & 8) ? 3 : 0, 0};
            for (pr.beta1 = 0; pr.beta1 <= 1; pr.beta1++) check(pr, 1 + (lay & 1), isa);
        }
}

Test(gemm, sgemm_matches_reference_every_isa, .fini = restore_isa) {
    for (size_t i = 0; i < NISAS; i++)
        if (use_isa(i)) sweep(check_s, isas[i]);
}

Test(gemm, dgemm_matches_reference_every_isa, .fini = restore_isa) {
    for (size_t i = 0; i < NISAS; i++)
        if (use_isa(i)) sweep(check_d, isas[i]);
}

/* k == 0: C = beta*C, so zeros (over NaN) for beta 0, untouched for beta 1;
 * m == 0 or n == 0: nothing is written at all. */
Test(gemm, empty_dimensions, .fini = restore_isa) {
    for (size_t i = 0; i < NISAS; i++) {
        if (!use_isa(i)) continue;
        float C[12], A[12] = {1}, B[12] = {1};
        for (int t = 0; t < 12; t++) C[t] = NAN;
        gf__sgemm(3, 4, 0, A, 1, 1, B, 4, 1, 0.0f, C, 4, 1, tpar(2));
        for (int t = 0; t < 12; t++) cr_assert_eq(C[t], 0.0f, "%s: C[%d] = %g", isas[i], t, C[t]);
        for (int t = 0; t < 12; t++) C[t] = (float)t;
        gf__sgemm(3, 4, 0, A, 1, 1, B, 4, 1, 1.0f, C, 4, 1, tpar(2));
        for (int t = 0; t < 12; t++) cr_assert_eq(C[t], (float)t);
        gf__sgemm(0, 4, 5, A, 5, 1, B, 4, 1, 0.0f, C, 4, 1, tpar(2));
        gf__sgemm(3, 0, 5, A, 5, 1, B, 4, 1, 0.0f, C, 4, 1, tpar(2));
        for (int t = 0; t < 12; t++) cr_assert_eq(C[t], (float)t);
        double D[6];
        for (int t = 0; t < 6; t++) D[t] = NAN;
        gf__dgemm(2, 3, 0, NULL, 1, 1, NULL, 1, 1, 0.0, D, 3, 1, tpar(1));
        for (int t = 0; t < 6; t++) cr_assert_eq(D[t], 0.0);
    }
}

/* A small exact case: with integer entries every variant must be exact. */
Test(gemm, exact_small_integers, .fini = restore_isa) {
    const float A[2 * 3] = {1, 2, 3, 4, 5, 6};      /* 2x3 */
    const float B[3 * 2] = {7, 8, 9, 10, 11, 12};   /* 3x2 */
    const float want[4] = {58, 64, 139, 154};
    for (size_t i = 0; i < NISAS; i++) {
        if (!use_isa(i)) continue;
        float C[4] = {NAN, NAN, NAN, NAN};
        gf__sgemm(2, 2, 3, A, 3, 1, B, 2, 1, 0.0f, C, 2, 1, tpar(1));
        for (int t = 0; t < 4; t++) cr_assert_eq(C[t], want[t], "%s: C[%d]=%g", isas[i], t, C[t]);
        /* A^T (3x2) B^T (2x3) read through strides: C2 = (B A)^T. */
        float C2[9], C3[9];
        gf__sgemm(3, 3, 2, A, 1, 3, B, 1, 2, 0.0f, C2, 3, 1, tpar(1));
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                float s = 0;
                for (int p = 0; p < 2; p++) s += A[p * 3 + r] * B[c * 2 + p];
                C3[r * 3 + c] = s;
            }
        for (int t = 0; t < 9; t++) cr_assert_eq(C2[t], C3[t], "%s: C2[%d]", isas[i], t);
    }
}

/* BLIS-style residual: ||C - AB||_max / (k eps ||A||_max ||B||_max) stays
 * below 1 on a large product with several kc blocks and many tiles (random
 * rounding gives ~0.3 here; a wrong element gives ~1/(k eps) = 16000). */
Test(gemm, large_residual, .fini = restore_isa) {
    const int64_t m = 512, n = 512, k = 512;
    float *A = malloc(m * k * sizeof(float)), *B = malloc(k * n * sizeof(float));
    float *C = malloc(m * n * sizeof(float));
    double *R = calloc(m * n, sizeof(double));
    cr_assert(A && B && C && R);
    double amax = 0, bmax = 0;
    for (int64_t t = 0; t < m * k; t++) A[t] = (float)urand(), amax = fmax(amax, fabs(A[t]));
    for (int64_t t = 0; t < k * n; t++) B[t] = (float)urand(), bmax = fmax(bmax, fabs(B[t]));
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < n; j++) R[i * n + j] += (double)A[i * k + p] * B[p * n + j];
    for (size_t v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        gf__sgemm(m, n, k, A, k, 1, B, n, 1, 0.0f, C, n, 1, tpar(2));
        double res = 0;
        for (int64_t t = 0; t < m * n; t++) res = fmax(res, fabs(C[t] - R[t]));
        double ratio = res / (k * FLT_EPSILON * amax * bmax);
        cr_log_info("%s: residual ratio %.3g", isas[v], ratio);
        cr_assert(ratio < 1, "%s: residual ratio %g", isas[v], ratio);
        cr_assert(res > 0 || ratio == 0); /* a real comparison, not NaN */
    }
    free(A), free(B), free(C), free(R);
}

/* The bits of C do not depend on the threads: same shapes run with 1..4
 * threads on the engine's pool and 2..4 on OpenMP teams, including the MLP shapes and matrix-vector products big
 * enough to go parallel, transposed operands and beta 1. */
static const int64_t det_shapes[][3] = {
    {256, 256, 256}, {127, 61, 253}, {64, 256, 784}, {256, 1024, 784}, {7, 3000, 300},
    {1000, 9, 600},  {1, 4096, 512}, {4096, 1, 512}, {300, 301, 302},
};

#define DEFINE_DET(X, T, GEMM)                                                           \
    static void det_##X(const char *isa) {                                               \
        for (size_t s = 0; s < sizeof det_shapes / sizeof det_shapes[0]; s++)            \
            for (int lay = 0; lay < 4; lay++) {                                          \
                int64_t m = det_shapes[s][0], n = det_shapes[s][1], k = det_shapes[s][2]; \
                int ta = lay & 1, tb = (lay >> 1) & 1;                                   \
                T *A = malloc(m * k * sizeof(T)), *B = malloc(k * n * sizeof(T));        \
                T *C0 = malloc(m * n * sizeof(T)), *C = malloc(m * n * sizeof(T));       \
                T *R = malloc(m * n * sizeof(T));                                        \
                cr_assert(A && B && C0 && C && R);                                       \
                for (int64_t t = 0; t < m * k; t++) A[t] = (T)urand();                   \
                for (int64_t t = 0; t < k * n; t++) B[t] = (T)urand();                   \
                for (int64_t t = 0; t < m * n; t++) C0[t] = (T)urand();                  \
                int64_t rsa = ta ? 1 : k, csa = ta ? m : 1;                              \
                int64_t rsb = tb ? 1 : n, csb = tb ? k : 1;                              \
                for (int beta = 0; beta <= 1; beta++)                                    \
                    for (int q = 1; q <= 7; q++) { /* pool 1-4, then OpenMP 2-4 */       \
                        const int nt = q <= 4 ? q : q - 3;                               \
                        const gf__par *par = q <= 4 ? tpar(nt) : tpar_omp(nt);           \
                        T *out = q == 1 ? R : C;                                         \
                        memcpy(out, C0, m * n * sizeof(T));                              \
                        GEMM(m, n, k, A, rsa, csa, B, rsb, csb, (T)beta, out, n, 1, par); \
                        if (q > 1)                                                       \
                            cr_assert(memcmp(C, R, m * n * sizeof(T)) == 0,              \
                                      "%s " #X "gemm %ldx%ldx%ld lay=%d beta=%d: nt=%d " \
                                      "(%s) differs from nt=1",                          \
                                      isa, (long)m, (long)n, (long)k, lay, beta, nt,     \
                                      q <= 4 ? "pool" : "openmp");                       \
                    }                                                                    \
                /* and the bits are a real product, not e.g. all zeros */                \
                long double s = 0;                                                       \
                for (int64_t p = 0; p < k; p++)                                          \
                    s += (long double)A[p * csa] * B[p * rsb];                     \
                s += C0[0];                                                              \
                cr_assert(fabsl(R[0] - s) <= 1e-3L * (1 + fabsl(s)), "%s: R[0]", isa);  \
                free(A), free(B), free(C0), free(C), free(R);                            \
            }                                                                            \
    }

DEFINE_DET(s, float, gf__sgemm)
DEFINE_DET(d, double, gf__dgemm)

Test(gemm, bitwise_identical_across_threads, .fini = restore_isa, .timeout = 600) {
    for (size_t i = 0; i < NISAS; i++) {
        if (!use_isa(i)) continue;
        det_s(isas[i]);
        det_d(isas[i]);
    }
}

/* An element's bits do not depend on which rows share its tile (the
 * micro-kernel contract the thread grids rely on; edge tiles of 1..mr-1
 * rows take their own paths in the avx2 kernel): rows [r0, m) computed as a
 * GEMM of their own equal those rows of the whole product, for every r0
 * that leaves 2 rows or more (one row is a matrix-vector product, another
 * algorithm), with A row-major and transposed. */
Test(gemm, edge_rows_same_bits_as_full_tiles, .fini = restore_isa) {
    enum { M = 29, N = 40, K = 300 };
    float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
    float *C = malloc(M * N * sizeof(float)), *P = malloc(M * N * sizeof(float));
    cr_assert(A && B && C && P);
    for (int t = 0; t < M * K; t++) A[t] = (float)urand();
    for (int t = 0; t < K * N; t++) B[t] = (float)urand();
    for (size_t v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        for (int ta = 0; ta <= 1; ta++) {
            const int64_t rsa = ta ? 1 : K, csa = ta ? M : 1;
            gf__sgemm(M, N, K, A, rsa, csa, B, N, 1, 0.0f, C, N, 1, tpar(1));
            for (int r0 = 1; r0 < M - 1; r0++) {
                gf__sgemm(M - r0, N, K, A + r0 * rsa, rsa, csa, B, N, 1, 0.0f, P, N, 1, tpar(1));
                cr_assert(memcmp(P, C + r0 * N, (size_t)(M - r0) * N * sizeof(float)) == 0,
                          "%s ta=%d: rows %d..%d alone differ from the full product", isas[v],
                          ta, r0, M - 1);
            }
        }
    }
    free(A), free(B), free(C), free(P);
}

/* B read row by row (packed by the fused first tile of each panel where the
 * variant has one, or by its row packer) and the same B stored transposed
 * (packed by the column packer) give the same bits: packing only copies,
 * and the micro-kernel sums in the same order either way. Shapes cover
 * k = 1, k not a multiple of 8, n not a multiple of any nr (a partial last
 * panel), m below mr (no fused tile), several kc blocks, a B block big
 * enough to be prefetched a block ahead, rows of B not 64-byte aligned (pad),
 * column-major C, beta 1 and 1-3 threads. */
static const int64_t rowb_shapes[][3] = {
    {6, 16, 1}, {7, 17, 3}, {5, 40, 50}, {12, 33, 257}, {64, 256, 784}, {30, 400, 700},
    {61, 130, 300},
};

#define DEFINE_ROWB(X, T, GEMM)                                                          \
    static void rowb_##X(const char *isa) {                                              \
        for (size_t s = 0; s < sizeof rowb_shapes / sizeof rowb_shapes[0]; s++)          \
            for (int lay = 0; lay < 8; lay++) {                                          \
                const int64_t m = rowb_shapes[s][0], n = rowb_shapes[s][1];               \
                const int64_t k = rowb_shapes[s][2], pad = (lay & 1) ? 3 : 0;             \
                const int tc = (lay >> 1) & 1, beta = (lay >> 2) & 1;                     \
                const int nt = 1 + (int)(s % 3);                                         \
                T *A = malloc(m * k * sizeof(T)), *Br = malloc(k * (n + pad) * sizeof(T)); \
                T *Bt = malloc(n * (k + pad) * sizeof(T)), *C0 = malloc(m * n * sizeof(T)); \
                T *Cr = malloc(m * n * sizeof(T)), *Ct = malloc(m * n * sizeof(T));        \
                cr_assert(A && Br && Bt && C0 && Cr && Ct);                              \
                for (int64_t t = 0; t < m * k; t++) A[t] = (T)urand();                   \
                for (int64_t p = 0; p < k; p++)                                          \
                    for (int64_t j = 0; j < n + pad; j++) {                              \
                        Br[p * (n + pad) + j] = (T)urand();                              \
                        if (j < n) Bt[j * (k + pad) + p] = Br[p * (n + pad) + j];        \
                    }                                                                    \
                for (int64_t t = 0; t < m * n; t++) C0[t] = (T)urand();                  \
                const int64_t rsc = tc ? 1 : n, csc = tc ? m : 1;                        \
                memcpy(Cr, C0, m * n * sizeof(T));                                       \
                memcpy(Ct, C0, m * n * sizeof(T));                                       \
                GEMM(m, n, k, A, k, 1, Br, n + pad, 1, (T)beta, Cr, rsc, csc, tpar(nt)); \
                GEMM(m, n, k, A, k, 1, Bt, 1, k + pad, (T)beta, Ct, rsc, csc, tpar(nt)); \
                cr_assert(memcmp(Cr, Ct, m * n * sizeof(T)) == 0,                        \
                          "%s " #X "gemm %ldx%ldx%ld pad=%ld tc=%d beta=%d nt=%d: "       \
                          "row-major B and transposed B differ",                          \
                          isa, (long)m, (long)n, (long)k, (long)pad, tc, beta, nt);      \
                long double s0 = beta ? C0[0] : 0;                                       \
                for (int64_t p = 0; p < k; p++) s0 += (long double)A[p] * Br[p * (n + pad)]; \
                cr_assert(fabsl(Cr[0] - s0) <= 1e-3L * (1 + fabsl(s0)), "%s: C[0]", isa); \
                free(A), free(Br), free(Bt), free(C0), free(Cr), free(Ct);               \
            }                                                                            \
    }

DEFINE_ROWB(s, float, gf__sgemm)
DEFINE_ROWB(d, double, gf__dgemm)

Test(gemm, row_major_b_same_bits_as_transposed_b, .fini = restore_isa) {
    for (size_t i = 0; i < NISAS; i++) {
        if (!use_isa(i)) continue;
        rowb_s(isas[i]);
        rowb_d(isas[i]);
    }
}

/* Every variant agrees with the generic kernel (to rounding) on one product
 * that exercises full and edge tiles. */
Test(gemm, variants_agree_with_generic, .fini = restore_isa) {
    const int64_t m = 131, n = 77, k = 299;
    double *A = malloc(m * k * sizeof(double)), *B = malloc(k * n * sizeof(double));
    double *G = malloc(m * n * sizeof(double)), *C = malloc(m * n * sizeof(double));
    cr_assert(A && B && G && C);
    for (int64_t t = 0; t < m * k; t++) A[t] = urand();
    for (int64_t t = 0; t < k * n; t++) B[t] = urand();
    gf__gemm_force_isa("generic");
    cr_assert_str_eq(gf__gemm_isa(), "generic");
    gf__dgemm(m, n, k, A, k, 1, B, n, 1, 0.0, G, n, 1, tpar(1));
    for (size_t i = 1; i < NISAS; i++) {
        if (!use_isa(i)) continue;
        gf__dgemm(m, n, k, A, k, 1, B, n, 1, 0.0, C, n, 1, tpar(2));
        for (int64_t t = 0; t < m * n; t++)
            cr_assert(fabs(C[t] - G[t]) <= 1e-12 * sqrt((double)k) * (1 + fabs(G[t])),
                      "%s vs generic at %ld: %.17g vs %.17g", isas[i], (long)t, C[t], G[t]);
    }
    free(A), free(B), free(G), free(C);
}

/* GF_ISA's fallback rule as seen through gf__gemm_force_isa: an unknown name
 * gives a supported variant, NULL restores the start-up choice. */
Test(gemm, force_isa_falls_back) {
    const char *start = gf__gemm_isa();
    gf__gemm_force_isa("no-such-isa");
    const char *got = gf__gemm_isa();
    cr_assert(strcmp(got, "avx512") == 0 || strcmp(got, "avx2") == 0 ||
              strcmp(got, "generic") == 0);
    gf__gemm_force_isa("generic");
    cr_assert_str_eq(gf__gemm_isa(), "generic");
    gf__gemm_force_isa(NULL);
    cr_assert_str_eq(gf__gemm_isa(), start);
}

static void restore_blocks(void) {
    gf__gemm_set_blocks(0, 0);
    gf__gemm_force_isa(NULL);
}

/* mc and nc (sized to the machine's caches, or GF_GEMM_MC / GF_GEMM_NC)
 * only cut M and N into blocks: any mc, nc give the bits of the sized
 * ones, for every variant, row-major and transposed operands, 1 and 3
 * threads, f32 and f64. The sized values are positive multiples of mr, nr. */
Test(gemm, cache_blocking_never_changes_bits, .fini = restore_blocks) {
    enum { M = 203, N = 150, K = 530 };
    const int blocks[][2] = {{1, 1}, {13, 17}, {50, 40}, {4000, 9000}};
    float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
    float *R = malloc(M * N * sizeof(float)), *C = malloc(M * N * sizeof(float));
    double *Ad = malloc(M * K * sizeof(double)), *Bd = malloc(K * N * sizeof(double));
    double *Rd = malloc(M * N * sizeof(double)), *Cd = malloc(M * N * sizeof(double));
    cr_assert(A && B && R && C && Ad && Bd && Rd && Cd);
    for (int t = 0; t < M * K; t++) Ad[t] = urand(), A[t] = (float)Ad[t];
    for (int t = 0; t < K * N; t++) Bd[t] = urand(), B[t] = (float)Bd[t];
    for (size_t v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        for (int dsize = 4; dsize <= 8; dsize += 4) {
            int b[5];
            gf__gemm_blocks(dsize, b);
            cr_assert(b[2] > 0 && b[2] % b[0] == 0, "%s: mc %d, mr %d", isas[v], b[2], b[0]);
            cr_assert(b[4] > 0 && b[4] % b[1] == 0, "%s: nc %d, nr %d", isas[v], b[4], b[1]);
        }
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++)
                for (int nt = 1; nt <= 3; nt += 2) {
                    const int64_t rsa = ta ? 1 : K, csa = ta ? M : 1;
                    const int64_t rsb = tb ? 1 : N, csb = tb ? K : 1;
                    gf__gemm_set_blocks(0, 0);
                    gf__sgemm(M, N, K, A, rsa, csa, B, rsb, csb, 0.0f, R, N, 1, tpar(nt));
                    gf__dgemm(M, N, K, Ad, rsa, csa, Bd, rsb, csb, 0.0, Rd, N, 1, tpar(nt));
                    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
                        gf__gemm_set_blocks(blocks[i][0], blocks[i][1]);
                        int b[5];
                        gf__gemm_blocks(4, b);
                        cr_assert(b[2] % b[0] == 0 && b[2] <= (blocks[i][0] < b[0] ? b[0] : blocks[i][0]));
                        gf__sgemm(M, N, K, A, rsa, csa, B, rsb, csb, 0.0f, C, N, 1, tpar(nt));
                        cr_assert(memcmp(C, R, sizeof(float) * M * N) == 0,
                                  "%s ta %d tb %d nt %d: f32 mc %d nc %d changes the bits",
                                  isas[v], ta, tb, nt, blocks[i][0], blocks[i][1]);
                        gf__dgemm(M, N, K, Ad, rsa, csa, Bd, rsb, csb, 0.0, Cd, N, 1, tpar(nt));
                        cr_assert(memcmp(Cd, Rd, sizeof(double) * M * N) == 0,
                                  "%s ta %d tb %d nt %d: f64 mc %d nc %d changes the bits",
                                  isas[v], ta, tb, nt, blocks[i][0], blocks[i][1]);
                    }
                }
    }
    free(A), free(B), free(R), free(C), free(Ad), free(Bd), free(Rd), free(Cd);
}
