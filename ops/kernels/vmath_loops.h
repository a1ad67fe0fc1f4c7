/*
 * vmath_loops.h - the portable reduction loops of the gf__vmath table
 * (kernels.h): row max, column max and column sums; and the constants of
 * tanh and log that every variant shares. Each ISA directory's
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

/* Column max: four rows per pass over the w columns (four streams in
 * flight; contiguous columns: vectorizes across them), then the leftover
 * rows; mv/nf are the running state. */
#define GF__VL_COLMAX(NAME, T, U)                                                          \
    static void NAME(const T *p, int64_t sd, int64_t len, int64_t w, T *restrict mv,       \
                     U *restrict nf) {                                                      \
        int64_t k = 0;                                                                      \
        for (; k + 8 <= len; k += 8) { /* eight rows per pass: eight memory streams */     \
            const T *restrict q0 = p + k * sd, *restrict q1 = q0 + sd;                      \
            const T *restrict q2 = q1 + sd, *restrict q3 = q2 + sd;                         \
            const T *restrict q4 = q3 + sd, *restrict q5 = q4 + sd;                         \
            const T *restrict q6 = q5 + sd, *restrict q7 = q6 + sd;                         \
            for (int64_t j = 0; j < w; j++) {                                               \
                T v0 = q0[j], v1 = q1[j], v2 = q2[j], v3 = q3[j], m = mv[j];                \
                T v4 = q4[j], v5 = q5[j], v6 = q6[j], v7 = q7[j];                           \
                m = v0 > m ? v0 : m;                                                        \
                m = v1 > m ? v1 : m;                                                        \
                m = v2 > m ? v2 : m;                                                        \
                m = v3 > m ? v3 : m;                                                        \
                m = v4 > m ? v4 : m;                                                        \
                m = v5 > m ? v5 : m;                                                        \
                m = v6 > m ? v6 : m;                                                        \
                m = v7 > m ? v7 : m;                                                        \
                mv[j] = m;                                                                  \
                nf[j] |= (U)((v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3) |            \
                             (v4 != v4) | (v5 != v5) | (v6 != v6) | (v7 != v7));            \
            }                                                                               \
        }                                                                                   \
        for (; k + 4 <= len; k += 4) {                                                      \
            const T *restrict q0 = p + k * sd, *restrict q1 = q0 + sd;                      \
            const T *restrict q2 = q1 + sd, *restrict q3 = q2 + sd;                         \
            for (int64_t j = 0; j < w; j++) {                                               \
                T v0 = q0[j], v1 = q1[j], v2 = q2[j], v3 = q3[j], m = mv[j];                \
                m = v0 > m ? v0 : m;                                                        \
                m = v1 > m ? v1 : m;                                                        \
                m = v2 > m ? v2 : m;                                                        \
                m = v3 > m ? v3 : m;                                                        \
                mv[j] = m;                                                                  \
                nf[j] |= (U)((v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3));            \
            }                                                                               \
        }                                                                                   \
        for (; k < len; k++) {                                                              \
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

/* Row max with NaNs skipped: the row seen as rows of GF__VL_LANES lanes and
 * reduced like the column max above (a loop the compiler vectorizes: `v > m
 * ? v : m` is maxps exactly, a NaN never enters as the compare is false),
 * NaNs flagged in a parallel integer mask; the lanes folded pairwise (a
 * short dependency chain), then the tail. Short rows (softmax over a few
 * classes) are one plain loop. */
#define GF__VL_LANES 32
#define GF__VL_MAX(NAME, T, U, COLMAX)                                                     \
    static T NAME(const T *x, int64_t n, int *nan) {                                       \
        T m = -INFINITY;                                                                    \
        U any = 0;                                                                          \
        int64_t k = 0;                                                                      \
        if (n >= 2 * GF__VL_LANES) {                                                        \
            T lv[GF__VL_LANES];                                                             \
            U nl[GF__VL_LANES] = {0};                                                       \
            for (int q = 0; q < GF__VL_LANES; q++) lv[q] = -INFINITY;                       \
            int64_t rows = n / GF__VL_LANES;                                                \
            k = rows * GF__VL_LANES;                                                        \
            COLMAX(x, GF__VL_LANES, rows, GF__VL_LANES, lv, nl);                            \
            for (int w = GF__VL_LANES / 2; w > 0; w /= 2)                                   \
                for (int q = 0; q < w; q++) {                                               \
                    lv[q] = lv[q + w] > lv[q] ? lv[q + w] : lv[q];                          \
                    nl[q] |= nl[q + w];                                                     \
                }                                                                           \
            m = lv[0];                                                                      \
            any = nl[0];                                                                    \
        }                                                                                   \
        for (; k < n; k++) {                                                                \
            T v = x[k];                                                                     \
            m = v > m ? v : m;                                                              \
            any |= (U)(v != v);                                                             \
        }                                                                                   \
        if (any) *nan = 1;                                                                  \
        return m;                                                                           \
    }

GF__VL_MAX(gf__vl_max_f32, float, uint32_t, gf__vl_colmax_f32)
GF__VL_MAX(gf__vl_max_f64, double, uint64_t, gf__vl_colmax_f64)

/* Row max of four rows side by side (reduce.c's max_dim over long f32 rows,
 * for the memory streams, as rowsum4): m[i] = the max of the n floats at
 * p[i] with NaNs skipped, nan[i] |= 1 where one occurs. Exact in any order,
 * so the same values as gf__vl_max_f32. GCC vectors of 8 lanes: `v > m`
 * gives a lane mask, and (v & mask) | (m & ~mask) keeps v exactly where it
 * is larger (never a NaN: the compare is false). */
typedef int32_t gf__vl_v8i __attribute__((vector_size(32)));
typedef float gf__vl_v8f __attribute__((vector_size(32)));
static void gf__vl_rowmax4_f32(const float *const p[4], int64_t n, float m[4], int nan[4]) {
    gf__vl_v8i mv[4], nf[4] = {{0}};
    const gf__vl_v8f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                             -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int i = 0; i < 4; i++) __builtin_memcpy(&mv[i], &ninf, 32);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int i = 0; i < 4; i++) {
            gf__vl_v8f v, cur;
            __builtin_memcpy(&v, p[i] + k, 32);
            __builtin_memcpy(&cur, &mv[i], 32);
            const gf__vl_v8i gt = v > cur, vi = (gf__vl_v8i)v;
            mv[i] = (vi & gt) | (mv[i] & ~gt);
            nf[i] |= v != v;
        }
    for (int i = 0; i < 4; i++) {
        float r = -INFINITY, lane[8];
        int32_t fl[8];
        __builtin_memcpy(lane, &mv[i], 32);
        __builtin_memcpy(fl, &nf[i], 32);
        int any = 0;
        for (int q = 0; q < 8; q++) {
            r = lane[q] > r ? lane[q] : r;
            any |= fl[q] != 0;
        }
        for (int64_t t = k; t < n; t++) {
            const float v = p[i][t];
            r = v > r ? v : r;
            any |= v != v;
        }
        m[i] = r;
        nan[i] |= any;
    }
}

/* Column sums in double (see kernels.h for the order, which is reduce.c's
 * documented one: groups of four rows added to the running sum in turn),
 * eight rows per pass over part[]: eight memory streams instead of four
 * (sum_dim(0) of [4096, 4096] f32 ~5% faster here), the same operations. */
#define GF__VL_COLSUM(NAME, T)                                                             \
    static void NAME(const T *p, int64_t sd, int64_t len, int64_t w, double *restrict part) { \
        for (int64_t j = 0; j < w; j++) part[j] = 0;                                        \
        int64_t k = 0;                                                                      \
        /* eight rows per pass (eight memory streams), added as two groups of four:    \
         * the same operations as two passes of four */                                   \
        for (; k + 8 <= len; k += 8) {                                                      \
            const T *restrict q0 = p + k * sd, *restrict q1 = q0 + sd;                      \
            const T *restrict q2 = q1 + sd, *restrict q3 = q2 + sd;                         \
            const T *restrict q4 = q3 + sd, *restrict q5 = q4 + sd;                         \
            const T *restrict q6 = q5 + sd, *restrict q7 = q6 + sd;                         \
            for (int64_t j = 0; j < w; j++)                                                 \
                part[j] = (part[j] + (((double)q0[j] + (double)q1[j]) +                     \
                                      ((double)q2[j] + (double)q3[j]))) +                   \
                          (((double)q4[j] + (double)q5[j]) + ((double)q6[j] + (double)q7[j])); \
        }                                                                                   \
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

/* Four row partials side by side (reduce.c's f32 sums of long rows): q[i]
 * = the partial of the len floats at p[i] (len a multiple of 8) in double,
 * element k into lane k % 8, then ((l0 + l1) + (l2 + l3)) + ((l4 + l5) +
 * (l6 + l7)): reduce.c's one-block order, so the same bits in every variant.
 * One core streaming one block at a time reads ~10-11 GB/s here; four
 * streams keep more lines in flight (~15-16). GCC vectors so that both the
 * SSE2 and the AVX2 build convert four floats per instruction. */
typedef float gf__vl_v4f __attribute__((vector_size(16)));
typedef double gf__vl_v4d __attribute__((vector_size(32)));
static void gf__vl_rowsum4_f32(const float *const p[4], int64_t len, double q[4]) {
    const float *restrict p0 = p[0], *restrict p1 = p[1], *restrict p2 = p[2],
                          *restrict p3 = p[3];
    gf__vl_v4d a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
    for (int64_t k = 0; k < len; k += 8) {
        gf__vl_v4f x0, y0, x1, y1, x2, y2, x3, y3;
        __builtin_memcpy(&x0, p0 + k, 16), __builtin_memcpy(&y0, p0 + k + 4, 16);
        __builtin_memcpy(&x1, p1 + k, 16), __builtin_memcpy(&y1, p1 + k + 4, 16);
        __builtin_memcpy(&x2, p2 + k, 16), __builtin_memcpy(&y2, p2 + k + 4, 16);
        __builtin_memcpy(&x3, p3 + k, 16), __builtin_memcpy(&y3, p3 + k + 4, 16);
        a0 += __builtin_convertvector(x0, gf__vl_v4d), b0 += __builtin_convertvector(y0, gf__vl_v4d);
        a1 += __builtin_convertvector(x1, gf__vl_v4d), b1 += __builtin_convertvector(y1, gf__vl_v4d);
        a2 += __builtin_convertvector(x2, gf__vl_v4d), b2 += __builtin_convertvector(y2, gf__vl_v4d);
        a3 += __builtin_convertvector(x3, gf__vl_v4d), b3 += __builtin_convertvector(y3, gf__vl_v4d);
    }
    const gf__vl_v4d a[4] = {a0, a1, a2, a3}, b[4] = {b0, b1, b2, b3};
    for (int i = 0; i < 4; i++)
        q[i] = ((a[i][0] + a[i][1]) + (a[i][2] + a[i][3])) + ((b[i][0] + b[i][1]) + (b[i][2] + b[i][3]));
}

/* tanh's constants, shared by every variant. For |x| < GF__TANH_SMALL,
 * tanh(x) = x + x^3 P(x^2) with P a near-minimax (Chebyshev) fit of
 * (tanh(a) - a) / a^3 over a^2 in [0, 0.5625^2], made with mpmath at 50
 * digits: degree 4 for f32 (fit error 1.6e-8, about 5e-9 of the result:
 * degree 5 bought nothing measurable and cost a multiply-add per lane),
 * degree 10 for f64 (1.2e-17, about 3.5e-18 of the result). Coefficients
 * are listed from the highest degree down (Horner order). Above the
 * threshold, tanh(|x|) = 1 - 2/(exp(2|x|) + 1): there tanh >= 0.51, so the
 * subtraction cancels less than one bit. f32 takes exp(2|x|), 2|x| in
 * [1.125, 18.5] (tanh is 1 in f32 from 9.01 on), as 2^n e^r with
 * |r| <= ln2/2 and e^r = 1 + r + r^2 G(r), G a Chebyshev fit of
 * (e^r - 1 - r) / r^2 of degree 4 (fit error 6.5e-8, 1.1e-8 of e^r; e's
 * relative error reaches tanh scaled by 2e/(e+1)^2 <= 0.37). */
#define GF__TANH_SMALL_F 0.5625f
#define GF__TANH_SMALL_D 0.5625
#define GF__TANH_NPF 5
static const float GF__TANH_PF[GF__TANH_NPF] = {-0.0065255721689981483556f,
                                                0.021263353447151622097f,
                                                -0.053901753164581233464f,
                                                0.13333073813501169266f,
                                                -0.3333333169526054732f};
#define GF__TANH_NEF 5
static const float GF__TANH_EF[GF__TANH_NEF] = {0.0013926176119935578884f,
                                                0.0083631730745137109028f,
                                                0.041666554662050533982f,
                                                0.1666657702559798819f, 0.5f};
/* f64 above the threshold: e^(2|x|) and the steps after it are carried as
 * hi + lo pairs (see the variants), with 2|x| clamped to 40 (tanh is 1 in
 * double from |x| = 19.1 on) and ln 2 split Cody-Waite style: ln2_hi has 21
 * trailing zero bits, so n * ln2_hi is exact for the n <= 58 used here and
 * 2|x| - n * ln2_hi is exact (the two are within a factor 2, n >= 2). */
#define GF__TANH_CLAMP2_D 40.0
#define GF__LN2_HI_D 6.93147180369123816490e-01
#define GF__LN2_LO_D 1.90821492927058770002e-10
#define GF__TANH_NPD 11
static const double GF__TANH_PD[GF__TANH_NPD] = {
    -0.000020026740085317684745, 0.00008426522203958066102, -0.00023410556936672797301,
    0.00058875371118348039075,   -0.0014556239774192677815, 0.0035921055321327687723,
    -0.0088632340215295135964,   0.021869488476962561362,   -0.053968253967059396515,
    0.13333333333332390931,      -0.33333333333333332102};

/* log's constants (fdlibm's e_log.c, as musl has them): adding KSHIFT to
 * x's bits moves the exponent's boundary from 1 to sqrt(2)/2, so that k is
 * the exponent field of the sum minus 1023 and the mantissa bits plus
 * MBASE give 1 + f in [sqrt(2)/2, sqrt(2)); Lg1..Lg7 is the minimax R(z)
 * of log(1 + f) = 2s + s R(s^2) (error under 2^-58.45); ln 2 is split as
 * tanh's above (GF__LN2_HI_D * k is exact for |k| <= 1100). */
#define GF__LOG_KSHIFT 0x00095f6200000000ull /* 0x3ff0000000000000 - 0x3fe6a09e00000000 */
#define GF__LOG_MBASE 0x3fe6a09e00000000ull
static const double GF__LOG_LG[7] = {6.666666666666735130e-01, 3.999999999940941908e-01,
                                     2.857142874366239149e-01, 2.222219843214978396e-01,
                                     1.818357216161805012e-01, 1.531383769920937332e-01,
                                     1.479819860511658591e-01};

#endif /* GF_VMATH_LOOPS_H */
