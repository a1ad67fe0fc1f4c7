/*
 * vmath_avx2.c - the AVX2+FMA gf__vmath table (kernels.h): exp, tanh,
 * sigmoid, log (f64), exp-and-sum, softmax row statistics and
 * cross-entropy gradient rows for f32 (8 lanes) and f64 (4 lanes) in
 * intrinsics, and the portable reduction loops (vmath_loops.h) compiled
 * with -mavx2 -mfma. Tails are loaded masked and stored by halves, pairs
 * and singles (gf__store_tail8/4), never with vmaskmovps stores, which are
 * microcoded on AMD.
 *
 * exp(x) = 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 (two FMA
 * steps with ln 2 split into a high and a low part, so r carries no
 * cancellation error), |r| <= ln2/2, and e^r a polynomial (f32: Cephes'
 * degree-7 minimax; f64: Taylor to degree 13, truncation error < 1e-17
 * relative). x is clamped first to where the result still rounds to inf or
 * to 0, so that n stays in [-150, 129] (f64: [-1077, 1025]); 2^n is applied
 * as two factors 2^(n>>1) and 2^(n-(n>>1)), both normal numbers, so that
 * the result rounds once whether it is normal, subnormal, 0 or inf (f32:
 * added to the exponent field instead when all 8 results are normal, the
 * same bits). The clamps are written min(hi, x) / max(lo, x), which return
 * x when x is NaN, so a NaN flows through and the result is NaN.
 *
 * tanh(x) = sign(x) t(|x|), the sign put back by OR so that -0 stays -0:
 * below |x| = 0.5625 the odd polynomial of vmath_loops.h, above it
 * t = 1 - 2/(e^2|x| + 1). Both are computed for every lane and blended
 * (skipping a branch no lane needs was slower: 0.90 vs 0.77 ns per element
 * in cache, as random data needs both almost always). f32 is bound by its
 * multiply-adds, so it takes the fewest that keep the accuracy: a degree-4
 * polynomial in Horner's form, and its own e^2|x| (gf__tanh8_q: rounding
 * and scaling by integer steps, a degree-6 polynomial, the + 1 taken into
 * its last FMA, the doubling of |x| folded into its constants), 15
 * multiply-adds per 8 lanes instead of 20 (0.54 against 0.75 ns per element
 * in cache): at most 1.32 ulp from the exact tanh,
 * never more than 1 ulp from the correctly rounded one (checked over all
 * 2^32 floats). f64 carries e and the steps after it as hi + lo pairs
 * (exact Cody-Waite reduction, the division's remainder by FMA), so that
 * only the last addition rounds at full weight: at most 0.74 ulp measured
 * on 8e7 points against tanhl (glibc's tanh: 2.1).
 */
#include "../kernels.h"
#include "../vmath_loops.h"

#include <immintrin.h>
#include <stdbool.h>

/* ------------------------------------------------------------------ f32 */

/* exp of 8 lanes; le0: the caller's x are <= 0 or NaN, so the upper clamp
 * is left out (it returns x for them: the same bits). */
static inline __m256 gf__exp8_(__m256 x, bool le0) {
    const __m256 hi = _mm256_set1_ps(89.0f), lo = _mm256_set1_ps(-104.0f);
    x = _mm256_max_ps(lo, le0 ? x : _mm256_min_ps(hi, x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    /* Every lane's n in [-125, 127] (p in [0.7, 1.42]: p 2^n is normal, the
     * scaling exact): add n to p's exponent field, the same bits as the two
     * factors below (15% of exp's time on typical data; NaN lanes, whose n
     * converts to INT_MIN, and results near the ends take the two factors.
     * With a vector in 2 taking them, as for uniform data on [-95, 0],
     * mispredictions make exp 12% slower than always multiplying: there
     * subnormal results already cost it 70%). */
    __m256i off = _mm256_add_epi32(ni, _mm256_set1_epi32(125));
    __m256i ok = _mm256_cmpeq_epi32(_mm256_min_epu32(off, _mm256_set1_epi32(252)), off);
    if (_mm256_movemask_ps(_mm256_castsi256_ps(ok)) == 0xff)
        return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(ni, 23)));
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static inline __m256 gf__exp8(__m256 x) { return gf__exp8_(x, false); }

/* Lanes [0, k) of a mask, k in 0..8. */
static inline __m256i gf__mask8(int64_t k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Stores lanes [0, rem) of v to p, rem in 1..7, by halves, pairs and
 * singles: AMD's masked stores (vmaskmovps) are microcoded, ~20 times a
 * plain store, which short rows and short segments would pay every time. */
static inline void gf__store_tail8(float *p, __m256 v, int64_t rem) {
    __m128 h = _mm256_castps256_ps128(v);
    if (rem & 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps(v, 1);
        p += 4;
    }
    if (rem & 2) {
        _mm_storel_pi((__m64 *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
    }
    if (rem & 1) _mm_store_ss(p, h);
}

/* y[i] = F(x[i]) for i < n (y may equal x): two 8-lane vectors per 64-byte
 * line, the line 1 KiB ahead of x prefetched (the hardware prefetcher alone
 * left these compute-bound loops waiting on memory: tanh over 64 MiB took
 * 0.73 ns per element, 0.66 with the prefetch, 0.54 in cache; exp 0.62 and
 * 0.57), the tail through a masked load and gf__store_tail8. Each element
 * is computed on its own, the tail by the same F. */
#define GF__MAP8(NAME, F)                                                                  \
    static void NAME(const float *x, float *y, int64_t n) {                                \
        int64_t i = 0;                                                                     \
        for (; i + 16 <= n; i += 16) {                                                     \
            _mm_prefetch((const char *)(x + i + 256), _MM_HINT_T0);                        \
            __m256 v0 = F(_mm256_loadu_ps(x + i)), v1 = F(_mm256_loadu_ps(x + i + 8));     \
            _mm256_storeu_ps(y + i, v0);                                                   \
            _mm256_storeu_ps(y + i + 8, v1);                                               \
        }                                                                                  \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, F(_mm256_loadu_ps(x + i)));     \
        if (i < n) gf__store_tail8(y + i, F(_mm256_maskload_ps(x + i, gf__mask8(n - i))), n - i); \
    }

GF__MAP8(gf__avx2_exp_f32, gf__exp8)

/* exp of x <= 0 (or NaN): softmax's exp(x - max) */
static inline __m256 gf__exp8_le0(__m256 x) { return gf__exp8_(x, true); }
GF__MAP8(gf__avx2_exp_le0_f32, gf__exp8_le0)

/* 2/(e^x + 1) for tanh's large branch, x = 2a, a = |x'| in [0, inf] or
 * NaN, with x clamped to 18.5 (tanh is 1 in f32 from 2|x'| = 18.02 on; a
 * NaN becomes 18.5 too, as the integer steps below would not keep it a
 * NaN: gf__tanh8 takes NaN lanes from the polynomial instead). e^x =
 * 2^n e^r: n is rounded by adding 1.5 * 2^23 in the same FMA as the scaling
 * by 1/ln 2, whose low bits are then n itself, shifted into exponent fields
 * (n <= 27: no overflow; no multiplication, conversion or round
 * instruction). One FMA with ln 2 rounded to f32 reduces: its error,
 * n * 1.9e-9 relative in e, reaches tanh scaled by 2e/(e+1)^2 < 2^(1-n),
 * n >= 2: under 0.03 ulp. e^r = 1 + r + r^2 G(r) (vmath_loops.h) in
 * Horner's form, with the + 1 of e^x + 1 = 2^n (e^r + 2^-n) taken into the
 * last FMA (one rounding for both: 0.25 ulp less than rounding e^x and then
 * e^x + 1), and 2^-n put on the quotient by subtracting n from its exponent
 * (it stays normal). The doubling x = a + a is folded into the steps
 * instead of computed: the reduction gives r/2 (ln 2 / 2 and 2 / ln 2 are
 * the f32 constants scaled by 2, so every product and rounding is the same
 * up to the power of 2), Horner's k-th partial result comes out divided by
 * 2^k (its constant divided by 2^k), d divided by 64 and the numerator 2 by
 * 64 with it: exactly the bits of the unfolded steps (checked over all 2^32
 * inputs), one addition fewer per 8 lanes. */
static inline __m256 gf__tanh8_q(__m256 a) {
    const __m256 magic = _mm256_set1_ps(12582912.0f), c64 = _mm256_set1_ps(0x1p-6f);
    a = _mm256_min_ps(a, _mm256_set1_ps(9.25f)); /* 2|x| <= 18.5; 9.25 for a NaN */
    __m256 nm = _mm256_fmadd_ps(a, _mm256_set1_ps(2 * 1.44269504088896341f), magic);
    __m256 r = _mm256_fnmadd_ps(_mm256_sub_ps(nm, magic),
                                _mm256_set1_ps(0.5f * 0.693147180559945309f), a); /* r/2 */
    __m256i sc = _mm256_slli_epi32(_mm256_castps_si256(nm), 23); /* n in the exponent field */
    __m256 c = _mm256_add_ps(c64, _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(c64), sc)));
#define GF__E(i) _mm256_set1_ps(GF__TANH_EF[i] * (1.0f / (1 << (i))))
    __m256 g = _mm256_fmadd_ps(GF__E(0), r, GF__E(1));
    g = _mm256_fmadd_ps(g, r, GF__E(2));
    g = _mm256_fmadd_ps(g, r, GF__E(3));
    g = _mm256_fmadd_ps(g, r, GF__E(4));
#undef GF__E
    __m256 d = _mm256_fmadd_ps(_mm256_fmadd_ps(g, r, _mm256_set1_ps(0x1p-5f)), r, c); /* (e^r + 2^-n) / 64 */
    __m256 q = _mm256_div_ps(_mm256_set1_ps(0x1p-5f), d);
    return _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(q), sc));
}

/* tanh(x) for 8 lanes (see the file comment). */
static inline __m256 gf__tanh8(__m256 x) {
    const __m256 sgn = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 a = _mm256_andnot_ps(sgn, x);
    /* a + a^3 P(a^2), P in Horner's form */
    __m256 t = _mm256_mul_ps(a, a);
#define GF__C(i) _mm256_set1_ps(GF__TANH_PF[i])
    __m256 p = _mm256_fmadd_ps(GF__C(0), t, GF__C(1));
    p = _mm256_fmadd_ps(p, t, GF__C(2));
    p = _mm256_fmadd_ps(p, t, GF__C(3));
    p = _mm256_fmadd_ps(p, t, GF__C(4));
#undef GF__C
    __m256 ps = _mm256_fmadd_ps(p, _mm256_mul_ps(t, a), a);
    /* 1 - 2/(e^2a + 1) */
    __m256 r = _mm256_sub_ps(one, gf__tanh8_q(a));
    /* the polynomial where a < GF__TANH_SMALL_F or a is NaN (it gives NaN) */
    __m256 small = _mm256_cmp_ps(a, _mm256_set1_ps(GF__TANH_SMALL_F), _CMP_NGE_UQ);
    r = _mm256_blendv_ps(r, ps, small);
    return _mm256_or_ps(r, _mm256_and_ps(x, sgn));
}

GF__MAP8(gf__avx2_tanh_f32, gf__tanh8)

/* The logistic of 8 lanes (kernels.h): e = exp(-|x|), r = 1/(1 + e), then
 * r where x >= 0 and e*r elsewhere (NaN included: e is NaN there). */
static inline __m256 gf__sigmoid8(__m256 x) {
    __m256 e = gf__exp8_(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)), true);
    __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    __m256 ge = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    return _mm256_blendv_ps(_mm256_mul_ps(e, r), r, ge);
}

GF__MAP8(gf__avx2_sigmoid_f32, gf__sigmoid8)

/* Sum of 8 f32 lanes into two f64 accumulators (lanes 0-3, 4-7). */
static inline void gf__acc8(__m256 e, __m256d *a0, __m256d *a1) {
    *a0 = _mm256_add_pd(*a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    *a1 = _mm256_add_pd(*a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}

static inline double gf__hsum4(__m256d a) {
    double t[4];
    _mm256_storeu_pd(t, a);
    return (t[0] + t[1]) + (t[2] + t[3]);
}

static double gf__avx2_expsum_f32(const float *x, float m, float *y, int64_t n) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = gf__exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (y) _mm256_storeu_ps(y + i, e);
        gf__acc8(e, &a0, &a1);
    }
    if (i < n) {
        __m256i k = gf__mask8(n - i);
        __m256 e = gf__exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vm));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(k)); /* lanes past n add nothing */
        if (y) gf__store_tail8(y + i, e, n - i);
        gf__acc8(e, &a0, &a1);
    }
    return gf__hsum4(_mm256_add_pd(a0, a1));
}

/* ------------------------------------------------------------------ f64 */

static inline __m256d gf__exp4(__m256d x) {
    const __m256d hi = _mm256_set1_pd(710.0), lo = _mm256_set1_pd(-746.0);
    x = _mm256_max_pd(lo, _mm256_min_pd(hi, x));
    __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634074)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180559945286227e-01), x);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(2.319046813846299558e-17), r);
    /* e^r - 1 - r = r^2 (1/2! + r/3! + ... + r^11/13!) */
    static const double c[12] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                 1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                 1.0 / 24.0,         1.0 / 6.0,         0.5};
    __m256d p = _mm256_set1_pd(c[0]);
    for (int i = 1; i < 12; i++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c[i]));
    p = _mm256_fmadd_pd(p, _mm256_mul_pd(r, r), r);
    p = _mm256_add_pd(p, _mm256_set1_pd(1.0));
    /* n (integral, |n| <= 1077) to int64 lanes via int32. */
    __m128i ni = _mm256_cvtpd_epi32(n);
    __m128i n1 = _mm_srai_epi32(ni, 1), n2 = _mm_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi64x(1023);
    __m256d s1 = _mm256_castsi256_pd(
        _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n1), bias), 52));
    __m256d s2 = _mm256_castsi256_pd(
        _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n2), bias), 52));
    return _mm256_mul_pd(_mm256_mul_pd(p, s1), s2);
}

/* Lanes [0, k) of a mask, k in 0..4. */
static inline __m256i gf__mask4(int64_t k) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(k), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* Lanes [0, rem) of v to p, rem in 1..3 (see gf__store_tail8). */
static inline void gf__store_tail4(double *p, __m256d v, int64_t rem) {
    __m128d h = _mm256_castpd256_pd128(v);
    if (rem & 2) {
        _mm_storeu_pd(p, h);
        h = _mm256_extractf128_pd(v, 1);
        p += 2;
    }
    if (rem & 1) _mm_store_sd(p, h);
}

/* GF__MAP8 for 4 f64 lanes. */
#define GF__MAP4(NAME, F)                                                                  \
    static void NAME(const double *x, double *y, int64_t n) {                              \
        int64_t i = 0;                                                                     \
        for (; i + 8 <= n; i += 8) {                                                       \
            _mm_prefetch((const char *)(x + i + 128), _MM_HINT_T0);                        \
            __m256d v0 = F(_mm256_loadu_pd(x + i)), v1 = F(_mm256_loadu_pd(x + i + 4));    \
            _mm256_storeu_pd(y + i, v0);                                                   \
            _mm256_storeu_pd(y + i + 4, v1);                                               \
        }                                                                                  \
        for (; i + 4 <= n; i += 4) _mm256_storeu_pd(y + i, F(_mm256_loadu_pd(x + i)));     \
        if (i < n) gf__store_tail4(y + i, F(_mm256_maskload_pd(x + i, gf__mask4(n - i))), n - i); \
    }

GF__MAP4(gf__avx2_exp_f64, gf__exp4)

/* tanh(a) = 1 - 2/(e^2a + 1) for a >= GF__TANH_SMALL_D, 4 lanes, carried in
 * two doubles (hi + lo) from the reduction to the last step so that only
 * the final addition rounds at full weight (see the file comment). */
static inline __m256d gf__tanh4_large(__m256d a) {
    const __m256d one = _mm256_set1_pd(1.0), two = _mm256_set1_pd(2.0);
    /* tanh rounds to 1 from 19.1 on; the clamp keeps 2^n normal (n <= 58) */
    __m256d x = _mm256_min_pd(_mm256_set1_pd(GF__TANH_CLAMP2_D), _mm256_add_pd(a, a));
    __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634074)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d l2 = _mm256_set1_pd(GF__LN2_LO_D);
    __m256d r1 = _mm256_fnmadd_pd(n, _mm256_set1_pd(GF__LN2_HI_D), x); /* exact */
    __m256d r = _mm256_fnmadd_pd(n, l2, r1);
    __m256d rl = _mm256_fnmadd_pd(n, l2, _mm256_sub_pd(r1, r)); /* r + rl = r1 - n ln2_lo */
    static const double c[12] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                 1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                 1.0 / 24.0,         1.0 / 6.0,         0.5};
    __m256d q = _mm256_set1_pd(c[0]);
    for (int i = 1; i < 12; i++) q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(c[i]));
    __m256d sr = _mm256_fmadd_pd(q, _mm256_mul_pd(r, r), r); /* e^r - 1 */
    __m256d ph = _mm256_add_pd(one, sr);
    __m256d pl = _mm256_add_pd(_mm256_add_pd(_mm256_sub_pd(one, ph), sr), _mm256_mul_pd(ph, rl));
    __m128i ni = _mm256_cvtpd_epi32(n);
    __m256d sc = _mm256_castsi256_pd(_mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(ni), _mm256_set1_epi64x(1023)), 52));
    __m256d eh = _mm256_mul_pd(ph, sc), el = _mm256_mul_pd(pl, sc); /* e^x, exact scaling */
    __m256d dh = _mm256_add_pd(eh, one);                                /* e^x + 1 */
    __m256d dl = _mm256_add_pd(_mm256_add_pd(_mm256_sub_pd(eh, dh), one), el);
    __m256d qh = _mm256_div_pd(two, dh);                                /* 2/(e^x + 1) */
    __m256d rem = _mm256_fnmadd_pd(qh, dh, two);                        /* exact */
    __m256d ql = _mm256_mul_pd(_mm256_fnmadd_pd(qh, dl, rem),
                               _mm256_mul_pd(qh, _mm256_set1_pd(0.5))); /* 2/(dh+dl) - qh */
    __m256d h = _mm256_sub_pd(one, qh);
    __m256d hl = _mm256_sub_pd(_mm256_sub_pd(one, h), qh); /* exact: 1 - qh = h + hl */
    return _mm256_add_pd(h, _mm256_sub_pd(hl, ql));
}

/* tanh(x) for 4 lanes (see the file comment). */
static inline __m256d gf__tanh4(__m256d x) {
    const __m256d sgn = _mm256_set1_pd(-0.0);
    __m256d a = _mm256_andnot_pd(sgn, x);
    __m256d small = _mm256_cmp_pd(a, _mm256_set1_pd(GF__TANH_SMALL_D), _CMP_LT_OQ);
    __m256d t = _mm256_mul_pd(a, a);
    __m256d p = _mm256_set1_pd(GF__TANH_PD[0]);
    for (int i = 1; i < GF__TANH_NPD; i++)
        p = _mm256_fmadd_pd(p, t, _mm256_set1_pd(GF__TANH_PD[i]));
    __m256d ps = _mm256_fmadd_pd(p, _mm256_mul_pd(t, a), a);
    __m256d r = _mm256_blendv_pd(gf__tanh4_large(a), ps, small);
    return _mm256_or_pd(r, _mm256_and_pd(x, sgn));
}

GF__MAP4(gf__avx2_tanh_f64, gf__tanh4)

static inline __m256d gf__sigmoid4(__m256d x) {
    __m256d e = gf__exp4(_mm256_or_pd(x, _mm256_set1_pd(-0.0)));
    __m256d r = _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_add_pd(_mm256_set1_pd(1.0), e));
    __m256d ge = _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ);
    return _mm256_blendv_pd(_mm256_mul_pd(e, r), r, ge);
}

GF__MAP4(gf__avx2_sigmoid_f64, gf__sigmoid4)

static double gf__avx2_expsum_f64(const double *x, double m, double *y, int64_t n) {
    const __m256d vm = _mm256_set1_pd(m);
    __m256d a = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d e = gf__exp4(_mm256_sub_pd(_mm256_loadu_pd(x + i), vm));
        if (y) _mm256_storeu_pd(y + i, e);
        a = _mm256_add_pd(a, e);
    }
    if (i < n) {
        __m256i k = gf__mask4(n - i);
        __m256d e = gf__exp4(_mm256_sub_pd(_mm256_maskload_pd(x + i, k), vm));
        e = _mm256_and_pd(e, _mm256_castsi256_pd(k));
        if (y) gf__store_tail4(y + i, e, n - i);
        a = _mm256_add_pd(a, e);
    }
    return gf__hsum4(a);
}

/* ------------------------------------------------- log and softmax rows */

/* log of 4 lanes, fdlibm's method (see generic/vmath_generic.c, constants
 * in vmath_loops.h): lanes below 2^-1022 are scaled by 2^54 first; k is
 * converted to double by the 1.5 * 2^52 trick; x <= 0, inf and NaN lanes are
 * replaced at the end (0 -> -inf, < 0 -> NaN, inf and NaN -> x). */
static inline __m256d gf__log4(__m256d x) {
    const __m256d one = _mm256_set1_pd(1.0), big = _mm256_set1_pd(0x1.8p52);
    __m256d sub = _mm256_cmp_pd(x, _mm256_set1_pd(0x1p-1022), _CMP_LT_OQ);
    __m256d xs = _mm256_blendv_pd(x, _mm256_mul_pd(x, _mm256_set1_pd(0x1p54)), sub);
    __m256i u = _mm256_add_epi64(_mm256_castpd_si256(xs), _mm256_set1_epi64x((long long)GF__LOG_KSHIFT));
    __m256i k = _mm256_sub_epi64(_mm256_srli_epi64(u, 52),
                                 _mm256_set1_epi64x(1023)); /* x > 0: the shift is exact */
    k = _mm256_sub_epi64(k, _mm256_and_si256(_mm256_castpd_si256(sub), _mm256_set1_epi64x(54)));
    u = _mm256_add_epi64(_mm256_and_si256(u, _mm256_set1_epi64x(0x000fffffffffffffll)),
                         _mm256_set1_epi64x((long long)GF__LOG_MBASE));
    __m256d f = _mm256_sub_pd(_mm256_castsi256_pd(u), one);
    __m256d hfsq = _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), f), f);
    __m256d s = _mm256_div_pd(f, _mm256_add_pd(_mm256_set1_pd(2.0), f));
    __m256d z = _mm256_mul_pd(s, s), w = _mm256_mul_pd(z, z);
#define GF__L(i) _mm256_set1_pd(GF__LOG_LG[i])
    __m256d t1 = _mm256_fmadd_pd(w, GF__L(5), GF__L(3));
    t1 = _mm256_mul_pd(w, _mm256_fmadd_pd(w, t1, GF__L(1)));
    __m256d t2 = _mm256_fmadd_pd(w, GF__L(6), GF__L(4));
    t2 = _mm256_fmadd_pd(w, t2, GF__L(2));
    t2 = _mm256_mul_pd(z, _mm256_fmadd_pd(w, t2, GF__L(0)));
#undef GF__L
    __m256d dk = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(k, _mm256_castpd_si256(big))), big);
    __m256d r = _mm256_fmadd_pd(s, _mm256_add_pd(hfsq, _mm256_add_pd(t2, t1)),
                                _mm256_mul_pd(dk, _mm256_set1_pd(GF__LN2_LO_D)));
    r = _mm256_fmadd_pd(dk, _mm256_set1_pd(GF__LN2_HI_D), _mm256_add_pd(_mm256_sub_pd(r, hfsq), f));
    /* x <= 0 (or NaN) and inf: 0 -> -inf, x < 0 -> NaN, NaN and inf stay */
    __m256d ok = _mm256_and_pd(_mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GT_OQ),
                               _mm256_cmp_pd(x, _mm256_set1_pd(INFINITY), _CMP_LT_OQ));
    __m256d sp = _mm256_blendv_pd(x, _mm256_set1_pd(NAN), _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_LT_OQ));
    sp = _mm256_blendv_pd(sp, _mm256_set1_pd(-INFINITY), _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_EQ_OQ));
    return _mm256_blendv_pd(sp, r, ok);
}

GF__MAP4(gf__avx2_log_f64, gf__log4)

/* Softmax statistics of short rows (kernels.h) in passes over the block,
 * each a loop of short independent steps (one row at a time in registers,
 * max then exp then sum, was a chain of ~100 cycles per row, and a
 * 10-element row filled 10 of 16 exp lanes): the row maxima (8-lane chunks,
 * -inf past n; NaNs skipped, as max_ps(v, m) returns m when v is NaN;
 * folded across lanes), then t = x - m row by row, exp over the whole
 * block of t at once, then the sums row by row: a chunk's halves go to one
 * 4-double accumulator, lane j gets elements k + j, then k + 4 + j, which is
 * the k % 4 order of the definition (lanes past n masked to 0). A row's
 * last chunk is stored whole when the block has room: the next rows
 * overwrite what lies past the row. */
static void gf__avx2_rowstats_f32(const float *x, int64_t ld, int64_t n, int64_t nr, float *m,
                                  double *s, float *t) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const int64_t nf = n & ~(int64_t)7, tot = nr * n;
    const __m256i tm = gf__mask8(n - nf);
    for (int64_t i = 0; i < nr; i++) {
        const float *xi = x + i * ld;
        __m256 mx = ninf;
        for (int64_t k = 0; k < nf; k += 8) mx = _mm256_max_ps(_mm256_loadu_ps(xi + k), mx);
        if (nf < n)
            mx = _mm256_max_ps(_mm256_blendv_ps(ninf, _mm256_maskload_ps(xi + nf, tm),
                                                _mm256_castsi256_ps(tm)), mx);
        mx = _mm256_max_ps(mx, _mm256_permute2f128_ps(mx, mx, 1));
        mx = _mm256_max_ps(mx, _mm256_shuffle_ps(mx, mx, 0x4e));
        mx = _mm256_max_ps(mx, _mm256_shuffle_ps(mx, mx, 0xb1));
        m[i] = _mm256_cvtss_f32(mx);
    }
    for (int64_t i = 0; i < nr; i++) {
        const float *xi = x + i * ld;
        float *ti = t + i * n;
        const __m256 mv = _mm256_set1_ps(m[i]);
        for (int64_t k = 0; k < nf; k += 8)
            _mm256_storeu_ps(ti + k, _mm256_sub_ps(_mm256_loadu_ps(xi + k), mv));
        if (nf < n) {
            __m256 v = _mm256_sub_ps(_mm256_maskload_ps(xi + nf, tm), mv);
            if (i * n + nf + 8 <= tot) _mm256_storeu_ps(ti + nf, v);
            else gf__store_tail8(ti + nf, v, n - nf);
        }
    }
    gf__avx2_exp_le0_f32(t, t, tot);
    for (int64_t i = 0; i < nr; i++) {
        const float *ti = t + i * n;
        __m256d a = _mm256_setzero_pd();
        for (int64_t k = 0; k < nf; k += 8) {
            __m256 e = _mm256_loadu_ps(ti + k);
            a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        if (nf < n) {
            __m256 e = i * n + nf + 8 <= tot ? _mm256_loadu_ps(ti + nf)
                                             : _mm256_maskload_ps(ti + nf, tm);
            e = _mm256_and_ps(e, _mm256_castsi256_ps(tm));
            a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            a = _mm256_add_pd(a, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        __m128d h = _mm_hadd_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
        s[i] = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    }
}

static void gf__avx2_rowstats_f64(const double *x, int64_t ld, int64_t n, int64_t nr, double *m,
                                  double *s, double *t) {
    const __m256d ninf = _mm256_set1_pd(-INFINITY);
    const int64_t nf = n & ~(int64_t)3, tot = nr * n;
    const __m256i tm = gf__mask4(n - nf);
    for (int64_t i = 0; i < nr; i++) {
        const double *xi = x + i * ld;
        __m256d mx = ninf;
        for (int64_t k = 0; k < nf; k += 4) mx = _mm256_max_pd(_mm256_loadu_pd(xi + k), mx);
        if (nf < n)
            mx = _mm256_max_pd(_mm256_blendv_pd(ninf, _mm256_maskload_pd(xi + nf, tm),
                                                _mm256_castsi256_pd(tm)), mx);
        mx = _mm256_max_pd(mx, _mm256_permute2f128_pd(mx, mx, 1));
        mx = _mm256_max_pd(mx, _mm256_shuffle_pd(mx, mx, 0x5));
        m[i] = _mm256_cvtsd_f64(mx);
    }
    for (int64_t i = 0; i < nr; i++) {
        const double *xi = x + i * ld;
        double *ti = t + i * n;
        const __m256d mv = _mm256_set1_pd(m[i]);
        for (int64_t k = 0; k < nf; k += 4)
            _mm256_storeu_pd(ti + k, _mm256_sub_pd(_mm256_loadu_pd(xi + k), mv));
        if (nf < n) {
            __m256d v = _mm256_sub_pd(_mm256_maskload_pd(xi + nf, tm), mv);
            if (i * n + nf + 4 <= tot) _mm256_storeu_pd(ti + nf, v);
            else gf__store_tail4(ti + nf, v, n - nf);
        }
    }
    gf__avx2_exp_f64(t, t, tot);
    for (int64_t i = 0; i < nr; i++) {
        const double *ti = t + i * n;
        __m256d a = _mm256_setzero_pd();
        for (int64_t k = 0; k < nf; k += 4) a = _mm256_add_pd(a, _mm256_loadu_pd(ti + k));
        if (nf < n) {
            __m256d e = i * n + nf + 4 <= tot ? _mm256_loadu_pd(ti + nf)
                                              : _mm256_maskload_pd(ti + nf, tm);
            a = _mm256_add_pd(a, _mm256_and_pd(e, _mm256_castsi256_pd(tm)));
        }
        __m128d h = _mm_hadd_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
        s[i] = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    }
}

/* Cross-entropy gradient rows (kernels.h). Every element but the label's
 * is (e * inv) * gs, the same bits as (e * inv - 0) * gs; the label's,
 * (e * inv - 1) * gs, is written after its row with the same lane
 * operations on one value. Long rows go in one pass each (x - m, exp and
 * the scaling per chunk); short ones (under GF__CE_LONG) in passes over the
 * block like rowstats, so that the exp lanes stay full: y = x - m row by
 * row (in place, a row's last chunk is stored exactly: past it lies the
 * next row's x), exp over the whole block, the scaling row by row. */
#define GF__CE_LONG 64
static void gf__avx2_ce_grad_rows_f32(const float *x, int64_t ldx, int64_t n, int64_t nr,
                                      const float *m, const float *inv, const int64_t *l,
                                      float gs, float *y) {
    const __m256 g = _mm256_set1_ps(gs);
    const int64_t nf = n & ~(int64_t)7, tot = nr * n;
    const __m256i tm = gf__mask8(n - nf);
    if (n >= GF__CE_LONG) {
        for (int64_t i = 0; i < nr; i++) {
            const float *xi = x + i * ldx;
            float *yi = y + i * n;
            const __m256 mv = _mm256_set1_ps(m[i]), iv = _mm256_set1_ps(inv[i]);
            __m256 el = gf__exp8_le0(_mm256_set1_ps(xi[l[i]] - m[i])); /* before y overwrites x */
            for (int64_t k = 0; k < nf; k += 8) {
                __m256 e = gf__exp8_le0(_mm256_sub_ps(_mm256_loadu_ps(xi + k), mv));
                _mm256_storeu_ps(yi + k, _mm256_mul_ps(_mm256_mul_ps(e, iv), g));
            }
            if (nf < n) {
                __m256 e = gf__exp8_le0(_mm256_sub_ps(_mm256_maskload_ps(xi + nf, tm), mv));
                gf__store_tail8(yi + nf, _mm256_mul_ps(_mm256_mul_ps(e, iv), g), n - nf);
            }
            __m256 rl = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(el, iv), _mm256_set1_ps(1.0f)), g);
            yi[l[i]] = _mm256_cvtss_f32(rl);
        }
        return;
    }
    for (int64_t i = 0; i < nr; i++) {
        const float *xi = x + i * ldx;
        float *yi = y + i * n;
        const __m256 mv = _mm256_set1_ps(m[i]);
        for (int64_t k = 0; k < nf; k += 8)
            _mm256_storeu_ps(yi + k, _mm256_sub_ps(_mm256_loadu_ps(xi + k), mv));
        if (nf < n) {
            __m256 v = _mm256_sub_ps(_mm256_maskload_ps(xi + nf, tm), mv);
            if (y != x && i * n + nf + 8 <= tot) _mm256_storeu_ps(yi + nf, v);
            else gf__store_tail8(yi + nf, v, n - nf);
        }
    }
    gf__avx2_exp_le0_f32(y, y, tot);
    for (int64_t i = 0; i < nr; i++) {
        float *yi = y + i * n;
        const __m256 iv = _mm256_set1_ps(inv[i]);
        __m256 el = _mm256_set1_ps(yi[l[i]]);
        for (int64_t k = 0; k < nf; k += 8)
            _mm256_storeu_ps(yi + k, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(yi + k), iv), g));
        if (nf < n) {
            __m256 e = i * n + nf + 8 <= tot ? _mm256_loadu_ps(yi + nf)
                                             : _mm256_maskload_ps(yi + nf, tm);
            gf__store_tail8(yi + nf, _mm256_mul_ps(_mm256_mul_ps(e, iv), g), n - nf);
        }
        __m256 rl = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(el, iv), _mm256_set1_ps(1.0f)), g);
        yi[l[i]] = _mm256_cvtss_f32(rl);
    }
}

static void gf__avx2_ce_grad_rows_f64(const double *x, int64_t ldx, int64_t n, int64_t nr,
                                      const double *m, const double *inv, const int64_t *l,
                                      double gs, double *y) {
    const __m256d g = _mm256_set1_pd(gs);
    const int64_t nf = n & ~(int64_t)3, tot = nr * n;
    const __m256i tm = gf__mask4(n - nf);
    if (n >= GF__CE_LONG) {
        for (int64_t i = 0; i < nr; i++) {
            const double *xi = x + i * ldx;
            double *yi = y + i * n;
            const __m256d mv = _mm256_set1_pd(m[i]), iv = _mm256_set1_pd(inv[i]);
            __m256d el = gf__exp4(_mm256_set1_pd(xi[l[i]] - m[i]));
            for (int64_t k = 0; k < nf; k += 4) {
                __m256d e = gf__exp4(_mm256_sub_pd(_mm256_loadu_pd(xi + k), mv));
                _mm256_storeu_pd(yi + k, _mm256_mul_pd(_mm256_mul_pd(e, iv), g));
            }
            if (nf < n) {
                __m256d e = gf__exp4(_mm256_sub_pd(_mm256_maskload_pd(xi + nf, tm), mv));
                gf__store_tail4(yi + nf, _mm256_mul_pd(_mm256_mul_pd(e, iv), g), n - nf);
            }
            __m256d rl = _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(el, iv), _mm256_set1_pd(1.0)), g);
            yi[l[i]] = _mm256_cvtsd_f64(rl);
        }
        return;
    }
    for (int64_t i = 0; i < nr; i++) {
        const double *xi = x + i * ldx;
        double *yi = y + i * n;
        const __m256d mv = _mm256_set1_pd(m[i]);
        for (int64_t k = 0; k < nf; k += 4)
            _mm256_storeu_pd(yi + k, _mm256_sub_pd(_mm256_loadu_pd(xi + k), mv));
        if (nf < n) {
            __m256d v = _mm256_sub_pd(_mm256_maskload_pd(xi + nf, tm), mv);
            if (y != x && i * n + nf + 4 <= tot) _mm256_storeu_pd(yi + nf, v);
            else gf__store_tail4(yi + nf, v, n - nf);
        }
    }
    gf__avx2_exp_f64(y, y, tot);
    for (int64_t i = 0; i < nr; i++) {
        double *yi = y + i * n;
        const __m256d iv = _mm256_set1_pd(inv[i]);
        __m256d el = _mm256_set1_pd(yi[l[i]]);
        for (int64_t k = 0; k < nf; k += 4)
            _mm256_storeu_pd(yi + k, _mm256_mul_pd(_mm256_mul_pd(_mm256_loadu_pd(yi + k), iv), g));
        if (nf < n) {
            __m256d e = i * n + nf + 4 <= tot ? _mm256_loadu_pd(yi + nf)
                                              : _mm256_maskload_pd(yi + nf, tm);
            gf__store_tail4(yi + nf, _mm256_mul_pd(_mm256_mul_pd(e, iv), g), n - nf);
        }
        __m256d rl = _mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(el, iv), _mm256_set1_pd(1.0)), g);
        yi[l[i]] = _mm256_cvtsd_f64(rl);
    }
}

const gf__vmath gf__vmath_avx2 = {
    .name = "avx2",
    .exp_f32 = gf__avx2_exp_f32,
    .exp_f64 = gf__avx2_exp_f64,
    .tanh_f32 = gf__avx2_tanh_f32,
    .tanh_f64 = gf__avx2_tanh_f64,
    .sigmoid_f32 = gf__avx2_sigmoid_f32,
    .sigmoid_f64 = gf__avx2_sigmoid_f64,
    .expsum_f32 = gf__avx2_expsum_f32,
    .expsum_f64 = gf__avx2_expsum_f64,
    .max_f32 = gf__vl_max_f32,
    .max_f64 = gf__vl_max_f64,
    .colmax_f32 = gf__vl_colmax_f32,
    .colmax_f64 = gf__vl_colmax_f64,
    .colsum_f32 = gf__vl_colsum_f32,
    .colsum_f64 = gf__vl_colsum_f64,
    .rowsum4_f32 = gf__vl_rowsum4_f32,
    .rowmax4_f32 = gf__vl_rowmax4_f32,
    .log_f64 = gf__avx2_log_f64,
    .rowstats_f32 = gf__avx2_rowstats_f32,
    .rowstats_f64 = gf__avx2_rowstats_f64,
    .ce_grad_rows_f32 = gf__avx2_ce_grad_rows_f32,
    .ce_grad_rows_f64 = gf__avx2_ce_grad_rows_f64,
};
