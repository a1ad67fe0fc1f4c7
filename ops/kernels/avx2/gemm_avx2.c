/*
 * gemm_avx2.c - AVX2+FMA GEMM micro-kernels (contract in ../gemm_ukr.h):
 * 6x16 for f32 and 6x8 for f64, i.e. 12 ymm accumulators, 2 ymm of B and one
 * broadcast of A per step, the Haswell/Zen register tile that BLIS uses;
 * and the fused tiles that pack row-major B as they read it (ukr_pb).
 * Compiled with -mavx2 -mfma (only this file); gemm.c calls it only after
 * checking the CPU.
 */
#include "../gemm_ukr.h"

#include <immintrin.h>

#define S_MR 6
#define S_NR 16
#define D_MR 6
#define D_NR 8

/* Each accumulator starts at zero and takes one FMA per p in increasing p;
 * edge tiles go through the same vector code on a staging tile, so the bits
 * of an element never depend on m, n or the strides (see the contract). */

/* Row i of the f32 tile is (c<i>0, c<i>1): 16 floats. */
#define S_ROW_FMA(i)                                                                \
    do {                                                                            \
        __m256 ai = _mm256_broadcast_ss(a + (i));                                   \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                 \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                 \
    } while (0)

#define S_ROW_STORE(i)                                                              \
    do {                                                                            \
        float *r = cc + (i) * rs;                                                   \
        if (beta == 0) {                                                            \
            _mm256_storeu_ps(r, c##i##0);                                           \
            _mm256_storeu_ps(r + 8, c##i##1);                                       \
        } else {                                                                    \
            __m256 vb = _mm256_set1_ps(beta);                                       \
            _mm256_storeu_ps(r, _mm256_add_ps(_mm256_mul_ps(vb, _mm256_loadu_ps(r)),  \
                                              c##i##0));                            \
            _mm256_storeu_ps(r + 8, _mm256_add_ps(                                  \
                                        _mm256_mul_ps(vb, _mm256_loadu_ps(r + 8)),  \
                                        c##i##1));                                  \
        }                                                                           \
    } while (0)

/* Writes the accumulators to C: straight into a full tile with unit column
 * stride, otherwise through the staging tile ct (only the m x n corner is
 * read or written in C). */
#define S_STORE_TILE()                                                              \
    do {                                                                            \
        _Alignas(64) float ct[S_MR * S_NR];                                         \
        float *cc = c;                                                              \
        int64_t rs = rsc;                                                           \
        if (!full) {                                                                \
            cc = ct;                                                                \
            rs = S_NR;                                                              \
            if (beta != 0)                                                          \
                for (int64_t i = 0; i < m; i++)                                     \
                    for (int64_t j = 0; j < n; j++) ct[i * S_NR + j] = c[i * rsc + j * csc]; \
        }                                                                           \
        S_ROW_STORE(0);                                                             \
        S_ROW_STORE(1);                                                             \
        S_ROW_STORE(2);                                                             \
        S_ROW_STORE(3);                                                             \
        S_ROW_STORE(4);                                                             \
        S_ROW_STORE(5);                                                             \
        if (!full)                                                                  \
            for (int64_t i = 0; i < m; i++)                                         \
                for (int64_t j = 0; j < n; j++) c[i * rsc + j * csc] = ct[i * S_NR + j]; \
    } while (0)

static void gf__sgemm_ukr_avx2(int64_t m, int64_t n, int64_t k, const float *restrict a,
                               const float *restrict b, float beta, float *restrict c,
                               int64_t rsc, int64_t csc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const int full = m == S_MR && n == S_NR && csc == 1;
    /* C rows are far apart: start fetching them now, they are needed last. */
    if (full)
        for (int i = 0; i < S_MR; i++) _mm_prefetch((const char *)(c + i * rsc + 15), _MM_HINT_T0);

    /* Edge tiles of 1-4 rows skip the rows they do not have (every m here
     * is 4 mod 6 or 2 mod 6 for the MLP and power-of-two shapes); the rows
     * they compute take the same FMAs in the same order. */
    if (m > 4) {
#pragma GCC unroll 4
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            S_ROW_FMA(0);
            S_ROW_FMA(1);
            S_ROW_FMA(2);
            S_ROW_FMA(3);
            S_ROW_FMA(4);
            S_ROW_FMA(5);
            a += S_MR;
            b += S_NR;
        }
    } else if (m > 2) {
#pragma GCC unroll 4
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            S_ROW_FMA(0);
            S_ROW_FMA(1);
            S_ROW_FMA(2);
            S_ROW_FMA(3);
            a += S_MR;
            b += S_NR;
        }
    } else {
#pragma GCC unroll 4
        for (int64_t p = 0; p < k; p++) {
            __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            S_ROW_FMA(0);
            S_ROW_FMA(1);
            a += S_MR;
            b += S_NR;
        }
    }

    S_STORE_TILE();
}

/* The fused tile (gf__sgemm_ukr_pb_fn in ../gemm_ukr.h): the m > 4 loop
 * above with b's two vectors loaded from row p of B and stored to bp. B's
 * rows are far apart (often a page each), so row p + S_PF is prefetched
 * into L2 at step p, the first S_PF rows before the loop (the last steps
 * prefetch rows past the block: harmless, and the address is computed as an
 * integer, not as a pointer past B). */
#define S_PF 16
static void gf__sgemm_ukr_pb_avx2(int64_t k, const float *restrict a, const float *B,
                                  int64_t rsb, float *restrict bp, float beta,
                                  float *restrict c, int64_t rsc, int64_t csc) {
    const int64_t m = S_MR, n = S_NR;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const int full = csc == 1;
    if (full)
        for (int i = 0; i < S_MR; i++) _mm_prefetch((const char *)(c + i * rsc + 15), _MM_HINT_T0);
    for (int64_t p = 0; p < S_PF && p < k; p++) _mm_prefetch((const char *)(B + p * rsb), _MM_HINT_T1);
    const uintptr_t pf_ahead = (uintptr_t)(S_PF * rsb) * sizeof(float);
#pragma GCC unroll 4
    for (int64_t p = 0; p < k; p++) {
        const float *b = B + p * rsb;
        _mm_prefetch((const char *)((uintptr_t)b + pf_ahead), _MM_HINT_T1);
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        _mm256_store_ps(bp, b0);
        _mm256_store_ps(bp + 8, b1);
        S_ROW_FMA(0);
        S_ROW_FMA(1);
        S_ROW_FMA(2);
        S_ROW_FMA(3);
        S_ROW_FMA(4);
        S_ROW_FMA(5);
        a += S_MR;
        bp += S_NR;
    }
    S_STORE_TILE();
}

/* Row i of the f64 tile is (c<i>0, c<i>1): 8 doubles. */
#define D_ROW_FMA(i)                                                                \
    do {                                                                            \
        __m256d ai = _mm256_broadcast_sd(a + (i));                                  \
        c##i##0 = _mm256_fmadd_pd(ai, b0, c##i##0);                                 \
        c##i##1 = _mm256_fmadd_pd(ai, b1, c##i##1);                                 \
    } while (0)

#define D_ROW_STORE(i)                                                              \
    do {                                                                            \
        double *r = cc + (i) * rs;                                                  \
        if (beta == 0) {                                                            \
            _mm256_storeu_pd(r, c##i##0);                                           \
            _mm256_storeu_pd(r + 4, c##i##1);                                       \
        } else {                                                                    \
            __m256d vb = _mm256_set1_pd(beta);                                      \
            _mm256_storeu_pd(r, _mm256_add_pd(_mm256_mul_pd(vb, _mm256_loadu_pd(r)),  \
                                              c##i##0));                            \
            _mm256_storeu_pd(r + 4, _mm256_add_pd(                                  \
                                        _mm256_mul_pd(vb, _mm256_loadu_pd(r + 4)),  \
                                        c##i##1));                                  \
        }                                                                           \
    } while (0)

/* As S_STORE_TILE. */
#define D_STORE_TILE()                                                              \
    do {                                                                            \
        _Alignas(64) double ct[D_MR * D_NR];                                        \
        double *cc = c;                                                             \
        int64_t rs = rsc;                                                           \
        if (!full) {                                                                \
            cc = ct;                                                                \
            rs = D_NR;                                                              \
            if (beta != 0)                                                          \
                for (int64_t i = 0; i < m; i++)                                     \
                    for (int64_t j = 0; j < n; j++) ct[i * D_NR + j] = c[i * rsc + j * csc]; \
        }                                                                           \
        D_ROW_STORE(0);                                                             \
        D_ROW_STORE(1);                                                             \
        D_ROW_STORE(2);                                                             \
        D_ROW_STORE(3);                                                             \
        D_ROW_STORE(4);                                                             \
        D_ROW_STORE(5);                                                             \
        if (!full)                                                                  \
            for (int64_t i = 0; i < m; i++)                                         \
                for (int64_t j = 0; j < n; j++) c[i * rsc + j * csc] = ct[i * D_NR + j]; \
    } while (0)

static void gf__dgemm_ukr_avx2(int64_t m, int64_t n, int64_t k, const double *restrict a,
                               const double *restrict b, double beta, double *restrict c,
                               int64_t rsc, int64_t csc) {
    __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
    __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
    __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
    __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
    __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd();
    __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd();
    const int full = m == D_MR && n == D_NR && csc == 1;
    if (full)
        for (int i = 0; i < D_MR; i++) _mm_prefetch((const char *)(c + i * rsc + 7), _MM_HINT_T0);

#pragma GCC unroll 4
    for (int64_t p = 0; p < k; p++) {
        __m256d b0 = _mm256_load_pd(b), b1 = _mm256_load_pd(b + 4);
        D_ROW_FMA(0);
        D_ROW_FMA(1);
        D_ROW_FMA(2);
        D_ROW_FMA(3);
        D_ROW_FMA(4);
        D_ROW_FMA(5);
        a += D_MR;
        b += D_NR;
    }

    D_STORE_TILE();
}

/* The fused f64 tile, as gf__sgemm_ukr_pb_avx2. */
#define D_PF 16
static void gf__dgemm_ukr_pb_avx2(int64_t k, const double *restrict a, const double *B,
                                  int64_t rsb, double *restrict bp, double beta,
                                  double *restrict c, int64_t rsc, int64_t csc) {
    const int64_t m = D_MR, n = D_NR;
    __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
    __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
    __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
    __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
    __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd();
    __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd();
    const int full = csc == 1;
    if (full)
        for (int i = 0; i < D_MR; i++) _mm_prefetch((const char *)(c + i * rsc + 7), _MM_HINT_T0);
    for (int64_t p = 0; p < D_PF && p < k; p++) _mm_prefetch((const char *)(B + p * rsb), _MM_HINT_T1);
    const uintptr_t pf_ahead = (uintptr_t)(D_PF * rsb) * sizeof(double);
#pragma GCC unroll 4
    for (int64_t p = 0; p < k; p++) {
        const double *b = B + p * rsb;
        _mm_prefetch((const char *)((uintptr_t)b + pf_ahead), _MM_HINT_T1);
        __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
        _mm256_store_pd(bp, b0);
        _mm256_store_pd(bp + 4, b1);
        D_ROW_FMA(0);
        D_ROW_FMA(1);
        D_ROW_FMA(2);
        D_ROW_FMA(3);
        D_ROW_FMA(4);
        D_ROW_FMA(5);
        a += D_MR;
        bp += D_NR;
    }
    D_STORE_TILE();
}

/* Blocking for a Zen/Haswell-class core (L1d 32-48 KiB, L2 512 KiB-1 MiB):
 * f32 A block 144x256 = 144 KiB, B micro-panel 256x16 = 16 KiB; f64 A block
 * 72x256 = 144 KiB, B micro-panel 256x8 = 16 KiB; B panels 4 MiB-8 MiB (L3). */
const gf__gemm_variant gf__gemm_avx2 = {
    .name = "avx2",
    .s = {.mr = S_MR, .nr = S_NR, .mc = 144, .kc = 256, .nc = 4080, .ukr = gf__sgemm_ukr_avx2,
          .pack_a = gf__spack_a_avx2, .pack_b = gf__spack_b_avx2, .ukr_pb = gf__sgemm_ukr_pb_avx2,
          .gemv = gf__sgemv_rows_avx2},
    .d = {.mr = D_MR, .nr = D_NR, .mc = 72, .kc = 256, .nc = 4080, .ukr = gf__dgemm_ukr_avx2,
          .pack_a = gf__dpack_a_avx2, .pack_b = gf__dpack_b_avx2, .ukr_pb = gf__dgemm_ukr_pb_avx2,
          .gemv = gf__dgemv_rows_avx2},
    /* tuned on a Zen 3 VM whose hwloc reports 512 KiB of L2 and 32 MiB of
     * L3 for 2 cores */
    .l2_ref = 512 << 10,
    .l3_ref = 16 << 20,
};
