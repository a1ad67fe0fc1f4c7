/*
 * gemm_avx512.c - AVX-512F GEMM micro-kernels (contract in ../gemm_ukr.h):
 * 12x32 for f32 (24 zmm accumulators) and 14x16 for f64 (28 accumulators),
 * the Skylake-X register tiles of BLIS (its skx sgemm 32x12 / dgemm 16x14,
 * transposed to our row-major view). Two zmm of B and one broadcast of A per
 * row leave a few of the 32 registers spare. Compiled with -mavx512f -mfma
 * (only this file); gemm.c calls it only after checking the CPU.
 */
#include "../gemm_ukr.h"

#include <immintrin.h>

#define S_MR 12
#define S_NR 32
#define D_MR 14
#define D_NR 16

/* Each accumulator starts at zero and takes one FMA per p in increasing p;
 * edge tiles go through the same vector code on a staging tile, so the bits
 * of an element never depend on m, n or the strides (see the contract). */

#define S_ROW_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps()
#define S_ROW_FMA(i)                                                                \
    do {                                                                            \
        __m512 ai = _mm512_set1_ps(a[i]);                                           \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);                                 \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);                                 \
    } while (0)
#define S_ROW_STORE(i)                                                              \
    do {                                                                            \
        float *r = cc + (i) * rs;                                                   \
        if (beta == 0) {                                                            \
            _mm512_storeu_ps(r, c##i##0);                                           \
            _mm512_storeu_ps(r + 16, c##i##1);                                      \
        } else {                                                                    \
            __m512 vb = _mm512_set1_ps(beta);                                       \
            _mm512_storeu_ps(r, _mm512_add_ps(_mm512_mul_ps(vb, _mm512_loadu_ps(r)),  \
                                              c##i##0));                            \
            _mm512_storeu_ps(r + 16, _mm512_add_ps(                                 \
                                         _mm512_mul_ps(vb, _mm512_loadu_ps(r + 16)), \
                                         c##i##1));                                 \
        }                                                                           \
    } while (0)

static void gf__sgemm_ukr_avx512(int64_t m, int64_t n, int64_t k, const float *restrict a,
                                 const float *restrict b, float beta, float *restrict c,
                                 int64_t rsc, int64_t csc) {
    S_ROW_DECL(0); S_ROW_DECL(1); S_ROW_DECL(2); S_ROW_DECL(3);
    S_ROW_DECL(4); S_ROW_DECL(5); S_ROW_DECL(6); S_ROW_DECL(7);
    S_ROW_DECL(8); S_ROW_DECL(9); S_ROW_DECL(10); S_ROW_DECL(11);
    const int full = m == S_MR && n == S_NR && csc == 1;
    /* C rows are far apart: start fetching them now, they are needed last. */
    if (full)
        for (int i = 0; i < S_MR; i++) {
            _mm_prefetch((const char *)(c + i * rsc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * rsc + 31), _MM_HINT_T0);
        }

#pragma GCC unroll 2
    for (int64_t p = 0; p < k; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        S_ROW_FMA(0); S_ROW_FMA(1); S_ROW_FMA(2); S_ROW_FMA(3);
        S_ROW_FMA(4); S_ROW_FMA(5); S_ROW_FMA(6); S_ROW_FMA(7);
        S_ROW_FMA(8); S_ROW_FMA(9); S_ROW_FMA(10); S_ROW_FMA(11);
        a += S_MR;
        b += S_NR;
    }

    _Alignas(64) float ct[S_MR * S_NR];
    float *cc = c;
    int64_t rs = rsc;
    if (!full) {
        cc = ct;
        rs = S_NR;
        if (beta != 0)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) ct[i * S_NR + j] = c[i * rsc + j * csc];
    }
    S_ROW_STORE(0); S_ROW_STORE(1); S_ROW_STORE(2); S_ROW_STORE(3);
    S_ROW_STORE(4); S_ROW_STORE(5); S_ROW_STORE(6); S_ROW_STORE(7);
    S_ROW_STORE(8); S_ROW_STORE(9); S_ROW_STORE(10); S_ROW_STORE(11);
    if (!full)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * rsc + j * csc] = ct[i * S_NR + j];
}

#define D_ROW_DECL(i) __m512d c##i##0 = _mm512_setzero_pd(), c##i##1 = _mm512_setzero_pd()
#define D_ROW_FMA(i)                                                                \
    do {                                                                            \
        __m512d ai = _mm512_set1_pd(a[i]);                                          \
        c##i##0 = _mm512_fmadd_pd(ai, b0, c##i##0);                                 \
        c##i##1 = _mm512_fmadd_pd(ai, b1, c##i##1);                                 \
    } while (0)
#define D_ROW_STORE(i)                                                              \
    do {                                                                            \
        double *r = cc + (i) * rs;                                                  \
        if (beta == 0) {                                                            \
            _mm512_storeu_pd(r, c##i##0);                                           \
            _mm512_storeu_pd(r + 8, c##i##1);                                       \
        } else {                                                                    \
            __m512d vb = _mm512_set1_pd(beta);                                      \
            _mm512_storeu_pd(r, _mm512_add_pd(_mm512_mul_pd(vb, _mm512_loadu_pd(r)),  \
                                              c##i##0));                            \
            _mm512_storeu_pd(r + 8, _mm512_add_pd(                                  \
                                        _mm512_mul_pd(vb, _mm512_loadu_pd(r + 8)),  \
                                        c##i##1));                                  \
        }                                                                           \
    } while (0)

static void gf__dgemm_ukr_avx512(int64_t m, int64_t n, int64_t k, const double *restrict a,
                                 const double *restrict b, double beta, double *restrict c,
                                 int64_t rsc, int64_t csc) {
    D_ROW_DECL(0); D_ROW_DECL(1); D_ROW_DECL(2); D_ROW_DECL(3); D_ROW_DECL(4);
    D_ROW_DECL(5); D_ROW_DECL(6); D_ROW_DECL(7); D_ROW_DECL(8); D_ROW_DECL(9);
    D_ROW_DECL(10); D_ROW_DECL(11); D_ROW_DECL(12); D_ROW_DECL(13);
    const int full = m == D_MR && n == D_NR && csc == 1;
    if (full)
        for (int i = 0; i < D_MR; i++) {
            _mm_prefetch((const char *)(c + i * rsc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * rsc + 15), _MM_HINT_T0);
        }

#pragma GCC unroll 2
    for (int64_t p = 0; p < k; p++) {
        __m512d b0 = _mm512_load_pd(b), b1 = _mm512_load_pd(b + 8);
        D_ROW_FMA(0); D_ROW_FMA(1); D_ROW_FMA(2); D_ROW_FMA(3); D_ROW_FMA(4);
        D_ROW_FMA(5); D_ROW_FMA(6); D_ROW_FMA(7); D_ROW_FMA(8); D_ROW_FMA(9);
        D_ROW_FMA(10); D_ROW_FMA(11); D_ROW_FMA(12); D_ROW_FMA(13);
        a += D_MR;
        b += D_NR;
    }

    _Alignas(64) double ct[D_MR * D_NR];
    double *cc = c;
    int64_t rs = rsc;
    if (!full) {
        cc = ct;
        rs = D_NR;
        if (beta != 0)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) ct[i * D_NR + j] = c[i * rsc + j * csc];
    }
    D_ROW_STORE(0); D_ROW_STORE(1); D_ROW_STORE(2); D_ROW_STORE(3); D_ROW_STORE(4);
    D_ROW_STORE(5); D_ROW_STORE(6); D_ROW_STORE(7); D_ROW_STORE(8); D_ROW_STORE(9);
    D_ROW_STORE(10); D_ROW_STORE(11); D_ROW_STORE(12); D_ROW_STORE(13);
    if (!full)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * rsc + j * csc] = ct[i * D_NR + j];
}

/* Blocking for a Skylake-X/Ice Lake/Sapphire Rapids-class core (L1d 32-48
 * KiB, L2 1-2 MiB), after BLIS's skx values: f32 A block 480x384 = 720 KiB,
 * B micro-panel 384x32 = 48 KiB is too big for L1, so kc 256 keeps it at 32
 * KiB and mc 480 gives a 480 KiB A block; f64 A block 224x256 = 448 KiB, B
 * micro-panel 256x16 = 32 KiB; B panels 3-6 MiB (L3). */
const gf__gemm_variant gf__gemm_avx512 = {
    .name = "avx512",
    /* matrix-vector rows: the AVX2 ones (bound by reading M, not by the FMA width) */
    .s = {.mr = S_MR, .nr = S_NR, .mc = 480, .kc = 256, .nc = 3072, .ukr = gf__sgemm_ukr_avx512,
          .gemv = gf__sgemv_rows_avx2},
    .d = {.mr = D_MR, .nr = D_NR, .mc = 224, .kc = 256, .nc = 3072, .ukr = gf__dgemm_ukr_avx512,
          .gemv = gf__dgemv_rows_avx2},
    /* BLIS's values are for Skylake-SP: 1 MiB of L2, 1.375 MiB of L3 per core */
    .l2_ref = 1 << 20,
    .l3_ref = 1408 << 10,
};
