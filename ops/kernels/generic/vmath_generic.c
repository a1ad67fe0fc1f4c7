/*
 * vmath_generic.c - the portable gf__vmath table (kernels.h): exp, tanh,
 * sigmoid, log, exp-and-sum, softmax row statistics and cross-entropy
 * gradient rows in plain C (the compiler vectorizes the f32 exp loops for
 * the baseline ISA), and the reduction loops of vmath_loops.h.
 *
 * exp(x) = 2^n * e^r, the same reduction as the AVX2 variant (see
 * avx2/vmath_avx2.c) without FMA: ln 2 is split so that n * ln2_hi is exact
 * in one multiplication (ln2_hi has few significant bits) and x - n*ln2_hi
 * is exact too (the two are close), then the low part is subtracted. n is
 * rounded with the 1.5 * 2^23 (2^52) trick, exact for the clamped range and
 * free of float-to-int conversions of out-of-range values: a NaN x is
 * replaced by 0 for the arithmetic and given back at the end.
 */
#include "../kernels.h"
#include "../vmath_loops.h"

#include <string.h>

/* x within 2 ulp of expf(x) (see the file comment). */
static inline float gf__gexpf(float x) {
    float xc = x < -104.0f ? -104.0f : x > 89.0f ? 89.0f : x;
    xc = xc == xc ? xc : 0.0f;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723212e-6f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    return x == x ? y : x;
}

/* x within 1 ulp of exp(x): Taylor to degree 13 on |r| <= ln2/2. */
static inline double gf__gexp(double x) {
    double xc = x < -746.0 ? -746.0 : x > 710.0 ? 710.0 : x;
    xc = xc == xc ? xc : 0.0;
    double n = (xc * 1.4426950408889634074 + 6755399441055744.0) - 6755399441055744.0;
    double r = xc - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    static const double c[12] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                 1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                 1.0 / 24.0,         1.0 / 6.0,         0.5};
    double p = c[0];
    for (int i = 1; i < 12; i++) p = p * r + c[i];
    p = p * (r * r) + r + 1.0;
    int64_t ni = (int64_t)n, n1 = ni / 2, n2 = ni - n1;
    uint64_t b1 = (uint64_t)(n1 + 1023) << 52, b2 = (uint64_t)(n2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    double y = p * s1 * s2;
    return x == x ? y : x;
}

static void gf__gen_exp_f32(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gf__gexpf(x[i]);
}

static void gf__gen_exp_f64(const double *x, double *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gf__gexp(x[i]);
}

/* tanh(|x|) = 1 - 2/(e^2|x| + 1) in f64 for |x| >= GF__TANH_SMALL_D, carried
 * in hi + lo pairs like the AVX2 variant (vmath_loops.h) but without FMA:
 * the reduction is exact by construction (Cody-Waite), the error of 1 + s,
 * e + 1 and 1 - q is recovered by Fast2Sum, and only the rounding of the
 * quotient q is left (at most 1/4 ulp of the result). */
static inline double gf__gtanh_large(double a) {
    if (a != a) return a;
    double x = a + a < GF__TANH_CLAMP2_D ? a + a : GF__TANH_CLAMP2_D;
    double n = (x * 1.4426950408889634074 + 6755399441055744.0) - 6755399441055744.0;
    double r1 = x - n * GF__LN2_HI_D, nl = n * GF__LN2_LO_D; /* r1 exact */
    double r = r1 - nl, rl = (r1 - r) - nl;
    static const double c[12] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                 1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                 1.0 / 24.0,         1.0 / 6.0,         0.5};
    double q = c[0];
    for (int i = 1; i < 12; i++) q = q * r + c[i];
    double sr = q * (r * r) + r, ph = 1.0 + sr, pl = ((1.0 - ph) + sr) + ph * rl;
    uint64_t b = (uint64_t)((int64_t)n + 1023) << 52;
    double sc;
    memcpy(&sc, &b, sizeof sc);
    double eh = ph * sc, el = pl * sc;
    double dh = eh + 1.0, dl = ((eh - dh) + 1.0) + el;
    double qh = 2.0 / dh, ql = -(qh * 0.5 * qh) * dl; /* 2/(dh + dl) = qh + ql */
    double h = 1.0 - qh, hl = (1.0 - h) - qh;
    return h + (hl - ql);
}

/* tanh (the constants and the method: vmath_loops.h); f32 through
 * gf__gexpf, f64 through gf__gtanh_large. copysign puts the sign back, so
 * -0 stays -0 and a NaN stays NaN; e^2|x| = inf gives 1. */
#define GF__GEN_TANH(NAME, T, ABS, CPS, LARGE, SMALL, PC, NP)                               \
    static inline T NAME##1(T x) {                                                          \
        T a = ABS(x), r;                                                                    \
        if (a < SMALL) {                                                                    \
            T t = a * a, p = PC[0];                                                         \
            for (int i = 1; i < NP; i++) p = p * t + PC[i];                                 \
            r = p * (t * a) + a;                                                            \
        } else {                                                                            \
            r = LARGE(a);                                                                   \
        }                                                                                   \
        return CPS(r, x);                                                                   \
    }                                                                                       \
    static void NAME(const T *x, T *y, int64_t n) {                                         \
        for (int64_t i = 0; i < n; i++) y[i] = NAME##1(x[i]);                               \
    }

static inline float gf__gtanhf_large(float a) { return 1.0f - 2.0f / (gf__gexpf(a + a) + 1.0f); }

GF__GEN_TANH(gf__gen_tanh_f32, float, fabsf, copysignf, gf__gtanhf_large, GF__TANH_SMALL_F,
             GF__TANH_PF, GF__TANH_NPF)
GF__GEN_TANH(gf__gen_tanh_f64, double, fabs, copysign, gf__gtanh_large, GF__TANH_SMALL_D,
             GF__TANH_PD, GF__TANH_NPD)

/* The logistic (kernels.h) in chunks: e = exp(-|x|) through the exp loop
 * (which vectorizes), then r = 1/(1 + e) and the choice of r or e*r. */
#define GF__GEN_SIGMOID(NAME, T, ABS, EXP)                                                 \
    static void NAME(const T *x, T *y, int64_t n) {                                         \
        T e[64];                                                                            \
        for (int64_t i = 0; i < n; i += 64) {                                               \
            int64_t len = n - i < 64 ? n - i : 64;                                          \
            for (int64_t j = 0; j < len; j++) e[j] = EXP(-ABS(x[i + j]));                   \
            for (int64_t j = 0; j < len; j++) {                                             \
                T r = (T)1 / ((T)1 + e[j]);                                                 \
                y[i + j] = x[i + j] >= 0 ? r : e[j] * r;                                    \
            }                                                                               \
        }                                                                                   \
    }

GF__GEN_SIGMOID(gf__gen_sigmoid_f32, float, fabsf, gf__gexpf)
GF__GEN_SIGMOID(gf__gen_sigmoid_f64, double, fabs, gf__gexp)

/* Chunks of 64: the exponentials (a vectorizable loop) into a buffer, then
 * stored and summed into 4 double lanes, folded as ((l0 + l1) + (l2 + l3)). */
#define GF__GEN_EXPSUM(NAME, T, EXP)                                                       \
    static double NAME(const T *x, T m, T *y, int64_t n) {                                  \
        double l[4] = {0, 0, 0, 0};                                                         \
        T e[64];                                                                            \
        for (int64_t i = 0; i < n; i += 64) {                                               \
            int64_t len = n - i < 64 ? n - i : 64;                                          \
            for (int64_t j = 0; j < len; j++) e[j] = EXP(x[i + j] - m);                     \
            if (y) memcpy(y + i, e, (size_t)len * sizeof(T));                               \
            for (int64_t j = 0; j < len; j++) l[j & 3] += (double)e[j];                     \
        }                                                                                   \
        return (l[0] + l[1]) + (l[2] + l[3]);                                               \
    }

GF__GEN_EXPSUM(gf__gen_expsum_f32, float, gf__gexpf)
GF__GEN_EXPSUM(gf__gen_expsum_f64, double, gf__gexp)

/* log(x) by fdlibm's method (e_log.c): x = 2^k (1 + f) with 1 + f in
 * [sqrt(2)/2, sqrt(2)), s = f/(2 + f), log(1 + f) = f - f^2/2 + s (f^2/2 +
 * R(s^2)), R fdlibm's degree-7 minimax (Lg1..Lg7, error under 2^-58.45),
 * and k ln 2 added in two parts (ln2_hi * k exact). Under 1 ulp. Subnormal
 * x is scaled by 2^54 first; x <= 0, inf and NaN are handled apart. Shared
 * by the variants through GF__LOG_* (vmath_loops.h). */
static inline double gf__glog(double x) {
    if (!(x > 0) || x == INFINITY) return x == 0 ? -INFINITY : x < 0 ? NAN : x;
    int64_t k = 0;
    if (x < 0x1p-1022) x *= 0x1p54, k = -54;
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    u += GF__LOG_KSHIFT;
    k += (int64_t)(u >> 52) - 1023;
    u = (u & 0x000fffffffffffffull) + GF__LOG_MBASE;
    double m;
    memcpy(&m, &u, sizeof m);
    double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * (GF__LOG_LG[1] + w * (GF__LOG_LG[3] + w * GF__LOG_LG[5]));
    double t2 = z * (GF__LOG_LG[0] + w * (GF__LOG_LG[2] + w * (GF__LOG_LG[4] + w * GF__LOG_LG[6])));
    double dk = (double)k;
    return s * (hfsq + (t2 + t1)) + dk * GF__LN2_LO_D - hfsq + f + dk * GF__LN2_HI_D;
}

static void gf__gen_log_f64(const double *x, double *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = gf__glog(x[i]);
}

/* Short-row softmax statistics (kernels.h): per row the max, then the
 * exponentials into t and 4 double lanes by k % 4. */
#define GF__GEN_ROWSTATS(NAME, T, EXP)                                                     \
    static void NAME(const T *x, int64_t ld, int64_t n, int64_t nr, T *m, double *s,       \
                     T *t) {                                                                \
        for (int64_t i = 0; i < nr; i++) {                                                  \
            const T *xi = x + i * ld;                                                       \
            T *ti = t + i * n, mx = -INFINITY;                                              \
            for (int64_t k = 0; k < n; k++) mx = xi[k] > mx ? xi[k] : mx;                   \
            for (int64_t k = 0; k < n; k++) ti[k] = EXP(xi[k] - mx);                        \
            double l[4] = {0, 0, 0, 0};                                                     \
            for (int64_t k = 0; k < n; k++) l[k & 3] += (double)ti[k];                      \
            m[i] = mx;                                                                      \
            s[i] = (l[0] + l[1]) + (l[2] + l[3]);                                           \
        }                                                                                   \
    }

GF__GEN_ROWSTATS(gf__gen_rowstats_f32, float, gf__gexpf)
GF__GEN_ROWSTATS(gf__gen_rowstats_f64, double, gf__gexp)

/* Cross-entropy gradient rows (kernels.h), one element at a time (x is read
 * before y is written, so y may equal x). */
#define GF__GEN_CE_GRAD(NAME, T, EXP)                                                      \
    static void NAME(const T *x, int64_t ldx, int64_t n, int64_t nr, const T *m,           \
                     const T *inv, const int64_t *l, T gs, T *y) {                          \
        for (int64_t i = 0; i < nr; i++) {                                                  \
            const T *xi = x + i * ldx;                                                      \
            T *yi = y + i * n;                                                              \
            for (int64_t k = 0; k < n; k++) {                                               \
                T p = EXP(xi[k] - m[i]) * inv[i];                                           \
                yi[k] = (p - (T)(k == l[i])) * gs;                                          \
            }                                                                               \
        }                                                                                   \
    }

GF__GEN_CE_GRAD(gf__gen_ce_grad_rows_f32, float, gf__gexpf)
GF__GEN_CE_GRAD(gf__gen_ce_grad_rows_f64, double, gf__gexp)

const gf__vmath gf__vmath_generic = {
    .name = "generic",
    .exp_f32 = gf__gen_exp_f32,
    .exp_f64 = gf__gen_exp_f64,
    .tanh_f32 = gf__gen_tanh_f32,
    .tanh_f64 = gf__gen_tanh_f64,
    .sigmoid_f32 = gf__gen_sigmoid_f32,
    .sigmoid_f64 = gf__gen_sigmoid_f64,
    .expsum_f32 = gf__gen_expsum_f32,
    .expsum_f64 = gf__gen_expsum_f64,
    .max_f32 = gf__vl_max_f32,
    .max_f64 = gf__vl_max_f64,
    .colmax_f32 = gf__vl_colmax_f32,
    .colmax_f64 = gf__vl_colmax_f64,
    .colsum_f32 = gf__vl_colsum_f32,
    .colsum_f64 = gf__vl_colsum_f64,
    .rowsum4_f32 = gf__vl_rowsum4_f32,
    .rowmax4_f32 = gf__vl_rowmax4_f32,
    .log_f64 = gf__gen_log_f64,
    .rowstats_f32 = gf__gen_rowstats_f32,
    .rowstats_f64 = gf__gen_rowstats_f64,
    .ce_grad_rows_f32 = gf__gen_ce_grad_rows_f32,
    .ce_grad_rows_f64 = gf__gen_ce_grad_rows_f64,
};
