/*
 * gemv_avx2.c - matrix-vector rows for AVX2+FMA (contract in ../gemm_ukr.h,
 * gf__sgemv_rows_fn): y(i) = beta*y(i) + dot(M row i, x) with M's rows and x
 * contiguous, the GEMM driver's path for m = 1 or n = 1 (a batch-1 Linear
 * layer). Four rows share each load of x; every row keeps two vector
 * accumulators (8 FMA chains in flight for 4 rows, enough for the FMA
 * latency on two pipes) summed in a fixed tree, then the k % (2 * lanes)
 * tail in order, so a row's bits do not depend on its neighbours or n.
 * Compiled with -mavx2 -mfma (only this file).
 */
#include "../gemm_ukr.h"

#include <immintrin.h>

static inline float gf__hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline double gf__hsum4(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* R rows (1 or 4) of T from row pointer a[r]; W lanes per vector. */
#define GF__GEMV_ROWS(NAME, T, V, W, LOAD, FMA, ZERO, HSUM, ADD)                           \
    static inline void NAME(int r, int64_t k, const T *const *a, const T *x, T *out) {    \
        V c0[4], c1[4];                                                                    \
        for (int i = 0; i < r; i++) c0[i] = ZERO(), c1[i] = ZERO();                        \
        int64_t p = 0;                                                                     \
        for (; p + 2 * W <= k; p += 2 * W) {                                               \
            const V x0 = LOAD(x + p), x1 = LOAD(x + p + W);                                \
            for (int i = 0; i < r; i++) {                                                  \
                c0[i] = FMA(LOAD(a[i] + p), x0, c0[i]);                                    \
                c1[i] = FMA(LOAD(a[i] + p + W), x1, c1[i]);                                \
            }                                                                              \
        }                                                                                  \
        for (int i = 0; i < r; i++) {                                                      \
            T s = HSUM(ADD(c0[i], c1[i]));                                                 \
            for (int64_t q = p; q < k; q++) s += a[i][q] * x[q];                           \
            out[i] = s;                                                                    \
        }                                                                                  \
    }

GF__GEMV_ROWS(gf__srows_avx2, float, __m256, 8, _mm256_loadu_ps, _mm256_fmadd_ps,
              _mm256_setzero_ps, gf__hsum8, _mm256_add_ps)
GF__GEMV_ROWS(gf__drows_avx2, double, __m256d, 4, _mm256_loadu_pd, _mm256_fmadd_pd,
              _mm256_setzero_pd, gf__hsum4, _mm256_add_pd)

#define GF__GEMV_FN(NAME, T, ROWS)                                                         \
    void NAME(int64_t i0, int64_t i1, int64_t k, const T *M, int64_t ldm, const T *x,     \
              T beta, T *y, int64_t incy) {                                                \
        T s[4];                                                                            \
        const T *a[4];                                                                     \
        for (int64_t i = i0; i < i1;) {                                                    \
            const int r = i1 - i >= 4 ? 4 : 1;                                             \
            for (int j = 0; j < r; j++) a[j] = M + (i + j) * ldm;                          \
            /* always inlined with r constant: straight-line code per case */             \
            if (r == 4) ROWS(4, k, a, x, s);                                               \
            else ROWS(1, k, a, x, s);                                                      \
            for (int j = 0; j < r; j++) {                                                  \
                T *yi = y + (i + j) * incy;                                                \
                *yi = beta == 0 ? s[j] : beta * *yi + s[j];                                \
            }                                                                              \
            i += r;                                                                        \
        }                                                                                  \
    }

GF__GEMV_FN(gf__sgemv_rows_avx2, float, gf__srows_avx2)
GF__GEMV_FN(gf__dgemv_rows_avx2, double, gf__drows_avx2)
