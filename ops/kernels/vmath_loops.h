/*
 * vmath_loops.h - the portable reduction loops of the gf__vmath table
 * (kernels.h): row max, column max and column sums. Each ISA directory's
 * vmath file includes this and compiles it with its own flags (generic/:
 * the baseline, avx2/: -mavx2 -mfma), so the same C becomes SSE2 or AVX2
 * code. The loops are written with explicit independent lanes so that the
 * compiler vectorizes them without reassociating anything: no fast-math,
 * and the sums contain no products, so -mfma cannot contract them either.
 * The column sums are therefore the same bits in every variant. Internal to
 * ops/kernels; everything here is static.
 */
#ifndef GF_VMATH_LOOPS_H
#define GF_VMATH_LOOPS_H

#include <math.h>
#include <stdint.h>

/* Row max with NaNs skipped: 16 lanes of `v > m ? v : m` (maxps exactly: a
 * NaN never enters, as the compare is false), NaN seen in a parallel
 * integer mask; lanes folded in a fixed order. U is the unsigned type of T's
 * width so that the mask vectorizes next to the values. */
#define GF__VL_MAX(NAME, T, U)                                                             \
    static T NAME(const T *x, int64_t n, int *nan) {                                       \
        T lv[16];                                                                           \
        U nl[16] = {0};                                                                     \
        int64_t k = 0;                                                                      \
        for (int q = 0; q < 16; q++) lv[q] = -INFINITY;                                     \
        for (; k + 16 <= n; k += 16)                                                        \
            for (int q = 0; q < 16; q++) {                                                  \
                T v = x[k + q];                                                             \
                lv[q] = v > lv[q] ? v : lv[q];                                              \
                nl[q] |= (U)(v != v);                                                       \
            }                                                                               \
        T m = -INFINITY;                                                                    \
        U any = 0;                                                                          \
        for (int q = 0; q < 16; q++) {                                                      \
            m = lv[q] > m ? lv[q] : m;                                                      \
            any |= nl[q];                                                                   \
        }                                                                                   \
        for (; k < n; k++) {                                                                \
            T v = x[k];                                                                     \
            m = v > m ? v : m;                                                              \
            any |= (U)(v != v);                                                             \
        }                                                                                   \
        if (any) *nan = 1;                                                                  \
        return m;                                                                           \
    }

GF__VL_MAX(gf__vl_max_f32, float, uint32_t)
GF__VL_MAX(gf__vl_max_f64, double, uint64_t)

/* Column max: one pass over the w columns per row (contiguous: vectorizes
 * across columns), mv/nf are the running state. */
#define GF__VL_COLMAX(NAME, T, U)                                                          \
    static void NAME(const T *p, int64_t sd, int64_t len, int64_t w, T *restrict mv,       \
                     U *restrict nf) {                                                      \
        for (int64_t k = 0; k < len; k++) {                                                 \
            const T *restrict q = p + k * sd;                                               \
            for (int64_t j = 0; j < w; j++) {                                               \
                T v = q[j];                                                                 \
                mv[j] = v > mv[j] ? v : mv[j];                                              \
                nf[j] |= (U)(v != v);                                                       \
            }                                                                               \
        }                                                                                   \
    }

GF__VL_COLMAX(gf__vl_colmax_f32, float, uint32_t)
GF__VL_COLMAX(gf__vl_colmax_f64, double, uint64_t)

/* Column sums in double, four rows per pass over part[] (see kernels.h for
 * the order, which is reduce.c's documented one). */
#define GF__VL_COLSUM(NAME, T)                                                             \
    static void NAME(const T *p, int64_t sd, int64_t len, int64_t w, double *restrict part) { \
        for (int64_t j = 0; j < w; j++) part[j] = 0;                                        \
        int64_t k = 0;                                                                      \
        for (; k + 4 <= len; k += 4) {                                                      \
            const T *restrict q0 = p + k * sd, *restrict q1 = q0 + sd;                      \
            const T *restrict q2 = q1 + sd, *restrict q3 = q2 + sd;                         \
            for (int64_t j = 0; j < w; j++)                                                 \
                part[j] += ((double)q0[j] + (double)q1[j]) + ((double)q2[j] + (double)q3[j]); \
        }                                                                                   \
        for (; k < len; k++) {                                                              \
            const T *restrict q = p + k * sd;                                               \
            for (int64_t j = 0; j < w; j++) part[j] += (double)q[j];                        \
        }                                                                                   \
    }

GF__VL_COLSUM(gf__vl_colsum_f32, float)
GF__VL_COLSUM(gf__vl_colsum_f64, double)

#endif /* GF_VMATH_LOOPS_H */
