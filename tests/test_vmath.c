/*
 * test_vmath.c - the vector math table (ops/kernels/vmath.c, kernels.h) for
 * every variant this CPU runs, chosen through gf__gemm_force_isa: exp (f32
 * within 2 ulp of libm's expf, f64 within 1 ulp of exp) over a dense sweep
 * of the whole range, the overflow and underflow edges, subnormal results,
 * infinities, NaN and signed zeros; tanh (f32 within 1 ulp of the rounded
 * double tanh, f64 within 1 ulp of the rounded long double tanhl) over a
 * sweep dense around the polynomial/exp switch, odd symmetry bit for bit,
 * tiny and subnormal x, +-inf, NaN, -0; sigmoid bit for bit the stable
 * formula on the table's exp; every length 0..40 (the masked tails) with
 * the elements past n untouched; exp-and-sum, row max, column max and
 * column sums against naive loops, with NaNs.
 */
#include <criterion/criterion.h>

#include "splitmix.h"

#include "../ops/kernels/kernels.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const isas[] = {"generic", "avx2", "avx512"};
#define NISAS (sizeof isas / sizeof isas[0])

/* The table of variant i, or NULL (and a note) when this CPU cannot run it.
 * avx512 runs avx2's table. */
static const gf__vmath *use_isa(size_t i) {
    gf__gemm_force_isa(isas[i]);
    if (strcmp(gf__gemm_isa(), isas[i]) != 0) {
        cr_log_info("variant %s not supported here (got %s); skipped", isas[i], gf__gemm_isa());
        return NULL;
    }
    const gf__vmath *vm = gf__vmath_now();
    cr_assert_str_eq(vm->name, i == 0 ? "generic" : "avx2");
    return vm;
}

static void restore_isa(void) { gf__gemm_force_isa(NULL); }

TestSuite(vmath, .fini = restore_isa);

/* Distance in units in the last place: floats mapped to a monotone integer
 * line (so +-0 are 0 apart, and the gap from the largest finite to inf is 1). */
static int64_t ulps_f(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4), memcpy(&ib, &b, 4);
    int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia, lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return llabs(la - lb);
}

static int64_t ulps_d(double a, double b) {
    int64_t ia, ib;
    memcpy(&ia, &a, 8), memcpy(&ib, &b, 8);
    __int128 la = ia < 0 ? (__int128)INT64_MIN - ia : ia, lb = ib < 0 ? (__int128)INT64_MIN - ib : ib;
    __int128 d = la - lb;
    return (int64_t)(d < 0 ? -d : d);
}

static uint64_t rng = 99;
static double urand(void) {
    return gf_test_u01(&rng);
}

/* Inputs: special values and edges, then n - count uniform points in [lo, hi). */
static const float SPEC_F[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1e-45f, -1e-45f, 1e-30f, -1e-30f, 1.0f, -1.0f,
    88.72283935546875f,       /* the largest x with a finite expf */
    88.72284698486328f,       /* the next float: inf */
    -87.33654022216797f,      /* about the smallest normal result */
    -103.2789306640625f,      /* the last subnormal results */
    -103.97207641601562f, -103.97208404541016f, -104.0f, -150.0f, 89.0f, 100.0f, 1e30f, -1e30f,
    FLT_MAX, -FLT_MAX, 0.34657359f, -0.34657359f, 0.6931472f, -0.6931472f};
#define NSPEC_F (sizeof SPEC_F / sizeof SPEC_F[0])

static const double SPEC_D[] = {
    0.0, -0.0, INFINITY, -INFINITY, NAN, 5e-324, -5e-324, 1e-300, 1.0, -1.0,
    709.782712893384, 709.7827128933841, 709.79, -708.3964185322641, -708.4, -745.1332191019411,
    -745.1332191019412, -745.2, -746.0, -800.0, 710.0, 1e300, -1e300, DBL_MAX, -DBL_MAX,
    0.34657359027997264, -0.34657359027997264};
#define NSPEC_D (sizeof SPEC_D / sizeof SPEC_D[0])

Test(vmath, exp_f32_within_2_ulp_of_expf_every_variant) {
    enum { N = 1 << 21 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    memcpy(x, SPEC_F, sizeof SPEC_F);
    for (int64_t i = NSPEC_F; i < N; i++) /* the whole range and past both ends */
        x[i] = (float)(-110.0 + 205.0 * urand());
    for (int64_t i = 0; i < 4096; i++) x[NSPEC_F + i] = (float)(-1e-3 + 2e-3 * urand());
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        vm->exp_f32(x, y, N);
        for (int64_t i = 0; i < N; i++) {
            float want = expf(x[i]);
            if (isnan(want)) {
                cr_assert(isnan(y[i]), "%s: exp(%a) = %a, expected NaN", vm->name, x[i], y[i]);
                continue;
            }
            cr_assert(ulps_f(y[i], want) <= 2, "%s: exp(%a) = %a, expf gives %a (%lld ulp)",
                      vm->name, x[i], y[i], want, (long long)ulps_f(y[i], want));
        }
        /* exact where it must be */
        cr_assert_eq(y[0], 1.0f);
        cr_assert_eq(y[1], 1.0f);
        cr_assert(isinf(y[2]) && y[2] > 0);
        cr_assert(y[3] == 0 && !signbit(y[3]));
    }
    free(x), free(y);
}

Test(vmath, exp_f64_within_1_ulp_of_exp_every_variant) {
    enum { N = 1 << 19 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    memcpy(x, SPEC_D, sizeof SPEC_D);
    for (int64_t i = NSPEC_D; i < N; i++) x[i] = -760.0 + 1480.0 * urand();
    for (int64_t i = 0; i < 4096; i++) x[NSPEC_D + i] = -1.0 + 2.0 * urand();
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        vm->exp_f64(x, y, N);
        for (int64_t i = 0; i < N; i++) {
            double want = exp(x[i]);
            if (isnan(want)) {
                cr_assert(isnan(y[i]), "%s: exp(%a) = %a, expected NaN", vm->name, x[i], y[i]);
                continue;
            }
            cr_assert(ulps_d(y[i], want) <= 1, "%s: exp(%.17g) = %a, exp gives %a", vm->name,
                      x[i], y[i], want);
        }
        cr_assert(isinf(y[2]) && y[2] > 0);
        cr_assert(y[3] == 0 && !signbit(y[3]));
    }
    free(x), free(y);
}

/* tanh inputs: specials (x at index i, -x right after for the symmetry
 * check), then random points; the exhaustive check over all 2^32 floats
 * was done once outside the suite (docs/measurements/2026-11-performance-history.md). */
static const double SPEC_T[] = {
    0.0, INFINITY, NAN, 1e-45, 1e-40, 1e-30, 1e-8, 3e-4, 0.1, 0.5, 0.5624999, 0.5625,
    0.5625001, 0.6, 0.9, 1.0, 2.0, 5.0, 9.0, 9.1, 19.0, 19.1, 20.0, 44.0, 45.0, 89.0, 1e30,
    5e-324, 1e-310, 1e-300, 1e-160};
#define NSPEC_T (sizeof SPEC_T / sizeof SPEC_T[0])

/* Fills x[0..n) (n even): +-pairs, specials first, then |x| log-uniform in
 * [1e-9, 30) and, for a quarter of them, uniform around the switch at 0.5625. */
static void tanh_inputs(double *x, int64_t n) {
    for (int64_t i = 0; i < n / 2; i++) {
        double u = urand(), a;
        if (i < (int64_t)NSPEC_T) a = SPEC_T[i];
        else if (i % 4 == 0) a = 0.4 + 0.4 * u;
        else a = exp(log(1e-9) + (log(30.0) - log(1e-9)) * u);
        x[2 * i] = a, x[2 * i + 1] = -a;
    }
}

Test(vmath, tanh_f32_within_1_ulp_every_variant) {
    enum { N = 1 << 20 };
    double *xd = malloc(N * sizeof *xd);
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    tanh_inputs(xd, N);
    for (int64_t i = 0; i < N; i++) x[i] = (float)xd[i];
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        vm->tanh_f32(x, y, N);
        for (int64_t i = 0; i < N; i++) {
            if (isnan(x[i])) {
                cr_assert(isnan(y[i]), "%s: tanh(NaN) = %a", vm->name, y[i]);
                continue;
            }
            float want = (float)tanh((double)x[i]);
            cr_assert(ulps_f(y[i], want) <= 1, "%s: tanh(%a) = %a, expected %a (%lld ulp)",
                      vm->name, x[i], y[i], want, (long long)ulps_f(y[i], want));
            if (i & 1) cr_assert(y[i] == -y[i - 1] && signbit(y[i]) != signbit(y[i - 1]),
                                 "%s: tanh(-x) != -tanh(x) at %a", vm->name, x[i - 1]);
            if (fabsf(x[i]) < 1e-4f) cr_assert_eq(y[i], x[i], "%s: tiny %a", vm->name, x[i]);
        }
        cr_assert(y[0] == 0 && !signbit(y[0]) && y[1] == 0 && signbit(y[1]), "+-0");
        cr_assert(y[2] == 1.0f && y[3] == -1.0f, "%s: tanh(+-inf) = %a %a", vm->name, y[2], y[3]);
        cr_assert(isnan(y[4]) && isnan(y[5]));
    }
    free(xd), free(x), free(y);
}

Test(vmath, tanh_f64_within_1_ulp_every_variant) {
    enum { N = 1 << 19 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    tanh_inputs(x, N);
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        vm->tanh_f64(x, y, N);
        for (int64_t i = 0; i < N; i++) {
            if (isnan(x[i])) {
                cr_assert(isnan(y[i]), "%s: tanh(NaN) = %a", vm->name, y[i]);
                continue;
            }
            double want = (double)tanhl((long double)x[i]);
            cr_assert(ulps_d(y[i], want) <= 1, "%s: tanh(%.17g) = %a, expected %a (%lld ulp)",
                      vm->name, x[i], y[i], want, (long long)ulps_d(y[i], want));
            if (i & 1) cr_assert(y[i] == -y[i - 1] && signbit(y[i]) != signbit(y[i - 1]),
                                 "%s: tanh(-x) != -tanh(x) at %a", vm->name, x[i - 1]);
            if (fabs(x[i]) < 1e-9) cr_assert_eq(y[i], x[i], "%s: tiny %a", vm->name, x[i]);
        }
        cr_assert(y[0] == 0 && !signbit(y[0]) && y[1] == 0 && signbit(y[1]), "+-0");
        cr_assert(y[2] == 1.0 && y[3] == -1.0, "%s: tanh(+-inf) = %a %a", vm->name, y[2], y[3]);
        cr_assert(isnan(y[4]) && isnan(y[5]));
    }
    free(x), free(y);
}

/* sigmoid is the documented formula on the table's own exp, bit for bit:
 * e = exp(-|x|), r = 1/(1 + e), x >= 0 ? r : e*r (the test is compiled
 * without FMA contraction, so these are the same roundings), over the
 * whole range, both tails, +-inf, +-0 and NaN. */
Test(vmath, sigmoid_is_the_stable_formula_on_the_tables_exp) {
    enum { N = 1 << 16 };
    static float x[N], y[N];
    static double xd[N], yd[N];
    const double spec[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-30, -1e-30, 88.8, -88.8,
                           103.9, -103.9, 745.2, -745.2, 17.0, -17.0, 40.0, -40.0};
    for (int i = 0; i < N; i++) xd[i] = i < 17 ? spec[i] : -120 + 240 * urand();
    for (int i = 0; i < N; i++) x[i] = (float)xd[i];
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        vm->sigmoid_f32(x, y, N);
        vm->sigmoid_f64(xd, yd, N);
        for (int i = 0; i < N; i++) {
            float a = -fabsf(x[i]), e, r, want;
            double ad = -fabs(xd[i]), ed, rd, wantd;
            vm->exp_f32(&a, &e, 1);
            vm->exp_f64(&ad, &ed, 1);
            r = 1.0f / (1.0f + e), rd = 1.0 / (1.0 + ed);
            want = x[i] >= 0 ? r : e * r, wantd = xd[i] >= 0 ? rd : ed * rd;
            cr_assert(isnan(want) ? isnan(y[i]) : memcmp(&y[i], &want, 4) == 0,
                      "%s: sigmoid(%a) = %a, expected %a", vm->name, x[i], y[i], want);
            cr_assert(isnan(wantd) ? isnan(yd[i]) : memcmp(&yd[i], &wantd, 8) == 0,
                      "%s: sigmoid(%a) = %a, expected %a", vm->name, xd[i], yd[i], wantd);
        }
        cr_assert(y[0] == 0.5f && y[2] == 1.0f && y[3] == 0.0f && isnan(y[4]));
        cr_assert(yd[0] == 0.5 && yd[2] == 1.0 && yd[3] == 0.0 && isnan(yd[4]));
    }
}

/* Every length through the 8- and 4-lane tails, exp, tanh and sigmoid: the
 * result matches the element-at-a-time call, nothing past n is written, in
 * place works. */
Test(vmath, every_length_and_in_place) {
    float xf[48], yf[48], zf[48];
    double xd[48], yd[48], zd[48];
    /* around tanh's switch too: lanes of one vector take both branches */
    for (int i = 0; i < 48; i++)
        xf[i] = (float)(xd[i] = i % 3 ? -5 + 10 * urand() : -1 + 2 * urand());
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        for (int f = 0; f < 3; f++) { /* exp, tanh, sigmoid */
            void (*ff)(const float *, float *, int64_t) =
                f == 0 ? vm->exp_f32 : f == 1 ? vm->tanh_f32 : vm->sigmoid_f32;
            void (*fd)(const double *, double *, int64_t) =
                f == 0 ? vm->exp_f64 : f == 1 ? vm->tanh_f64 : vm->sigmoid_f64;
            for (int n = 0; n <= 40; n++) {
                for (int i = 0; i < 48; i++) yf[i] = -7.0f, yd[i] = -7.0;
                ff(xf, yf, n);
                fd(xd, yd, n);
                for (int i = 0; i < 48; i++) {
                    float one;
                    double oned;
                    ff(xf + i, &one, 1);
                    fd(xd + i, &oned, 1);
                    cr_assert_eq(yf[i], i < n ? one : -7.0f, "%s %d n=%d i=%d", vm->name, f, n, i);
                    cr_assert_eq(yd[i], i < n ? oned : -7.0, "%s %d n=%d i=%d", vm->name, f, n, i);
                }
                memcpy(zf, xf, sizeof zf), memcpy(zd, xd, sizeof zd);
                ff(zf, zf, n);
                fd(zd, zd, n);
                cr_assert(memcmp(zf, yf, (size_t)n * sizeof *zf) == 0);
                cr_assert(memcmp(zd, yd, (size_t)n * sizeof *zd) == 0);
            }
        }
    }
}

Test(vmath, expsum_matches_exp_and_a_naive_sum) {
    enum { N = 1037 };
    float xf[N], yf[N + 8];
    double xd[N], yd[N + 8];
    for (int i = 0; i < N; i++) xf[i] = (float)(xd[i] = -20 + 30 * urand());
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        for (int n = 0; n <= N; n += n < 40 ? 1 : 331) {
            yf[n] = -7.0f, yd[n] = -7.0;
            double sf = vm->expsum_f32(xf, 3.5f, yf, n), sd = vm->expsum_f64(xd, 3.5, yd, n);
            double rf = 0, rd = 0;
            for (int i = 0; i < n; i++) {
                float e;
                double ed;
                float a = xf[i] - 3.5f;
                double b = xd[i] - 3.5;
                vm->exp_f32(&a, &e, 1);
                vm->exp_f64(&b, &ed, 1);
                cr_assert_eq(yf[i], e, "%s n=%d i=%d", vm->name, n, i);
                cr_assert_eq(yd[i], ed);
                rf += e, rd += ed;
            }
            cr_assert_eq(yf[n], -7.0f, "written past n");
            cr_assert_eq(yd[n], -7.0);
            cr_assert(fabs(sf - rf) <= 1e-14 * rf, "%s n=%d: %.17g vs %.17g", vm->name, n, sf, rf);
            cr_assert(fabs(sd - rd) <= 1e-14 * rd);
            /* without storing: the same sum */
            cr_assert_eq(vm->expsum_f32(xf, 3.5f, NULL, n), sf);
            cr_assert_eq(vm->expsum_f64(xd, 3.5, NULL, n), sd);
        }
    }
}

Test(vmath, row_max_column_max_and_column_sums) {
    enum { R = 37, W = 45, SD = 53 };
    float pf[R * SD];
    double pd[R * SD];
    for (int i = 0; i < R * SD; i++) pf[i] = (float)(pd[i] = -100 + 200 * urand());
    pf[5 * SD + 7] = NAN, pd[5 * SD + 7] = NAN;   /* column 7 has a NaN */
    pf[9 * SD + 3] = INFINITY, pd[9 * SD + 3] = INFINITY;
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        /* row max of row 5 (a NaN at 7) and row 0 for every prefix length */
        for (int n = 1; n <= W; n++) {
            for (int row = 0; row <= 5; row += 5) {
                const float *x = pf + row * SD;
                const double *xd = pd + row * SD;
                float want = -INFINITY;
                double wantd = -INFINITY;
                int wnan = 0, gnan = 0, gnand = 0;
                for (int k = 0; k < n; k++) {
                    if (isnan(x[k])) wnan = 1;
                    else if (x[k] > want) want = x[k], wantd = xd[k];
                }
                cr_assert_eq(vm->max_f32(x, n, &gnan), want, "%s n=%d", vm->name, n);
                cr_assert_eq(vm->max_f64(xd, n, &gnand), wantd);
                cr_assert_eq(gnan, wnan);
                cr_assert_eq(gnand, wnan);
            }
        }
        float mv[W];
        double mvd[W], part[W];
        uint32_t nf[W] = {0};
        uint64_t nfd[W] = {0};
        for (int j = 0; j < W; j++) mv[j] = -INFINITY, mvd[j] = -INFINITY;
        vm->colmax_f32(pf, SD, R, W, mv, nf);
        vm->colmax_f64(pd, SD, R, W, mvd, nfd);
        for (int j = 0; j < W; j++) {
            float want = -INFINITY;
            double wantd = -INFINITY;
            for (int k = 0; k < R; k++)
                if (pf[k * SD + j] > want) want = pf[k * SD + j], wantd = pd[k * SD + j];
            cr_assert_eq(mv[j], want, "%s column %d", vm->name, j);
            cr_assert_eq(mvd[j], wantd);
            cr_assert_eq(nf[j] != 0, j == 7);
            cr_assert_eq(nfd[j] != 0, j == 7);
        }
        cr_assert(isinf(mv[3]));
        /* column sums in the documented order, the same bits in every variant */
        for (int len = 0; len <= R; len += 3) {
            vm->colsum_f32(pf + 10 * SD, SD, len < R - 10 ? len : R - 10, W, part);
            int rows = len < R - 10 ? len : R - 10;
            for (int j = 0; j < W; j++) {
                double s = 0;
                int k = 0;
                const float *p = pf + 10 * SD + j;
                for (; k + 4 <= rows; k += 4)
                    s += ((double)p[k * SD] + (double)p[(k + 1) * SD]) +
                         ((double)p[(k + 2) * SD] + (double)p[(k + 3) * SD]);
                for (; k < rows; k++) s += (double)p[k * SD];
                cr_assert_eq(part[j], s, "%s len=%d column %d", vm->name, rows, j);
            }
            vm->colsum_f64(pd + 10 * SD, SD, rows, W, part);
            for (int j = 0; j < W; j++) {
                double s = 0;
                int k = 0;
                const double *p = pd + 10 * SD + j;
                for (; k + 4 <= rows; k += 4)
                    s += (p[k * SD] + p[(k + 1) * SD]) + (p[(k + 2) * SD] + p[(k + 3) * SD]);
                for (; k < rows; k++) s += p[k * SD];
                cr_assert_eq(part[j], s);
            }
        }
    }
}

/* log f64 against libm's log (within 1 ulp; fdlibm's method is under 1 ulp
 * from the exact value, glibc's within about half): every binade from the
 * subnormals to DBL_MAX, dense around 1 (where log is small and the
 * reduction's boundaries sqrt(2)/2 and sqrt(2) lie), the special values
 * exactly, and every length 0..40 against one element at a time. */
Test(vmath, log_f64_within_1_ulp_of_log_every_variant) {
    enum { N = 1 << 19 };
    static const double spec[] = {1.0, 2.0, 0.5, 0.0, -0.0, INFINITY, -INFINITY, NAN, -1.0,
                                  -DBL_MIN, DBL_MIN, DBL_TRUE_MIN, 3 * DBL_TRUE_MIN, 0x1p-1023,
                                  DBL_MAX, 0x1.6a09e667f3bccp-1, 0x1.6a09e667f3bcdp-1,
                                  0x1.6a09e667f3bcdp+0, 0x1.fffffffffffffp-1, 0x1.0000000000001p+0,
                                  M_E, 10.0};
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    int ns = (int)(sizeof spec / sizeof spec[0]);
    memcpy(x, spec, sizeof spec);
    for (int64_t i = ns; i < N; i++) {
        if (i % 4 == 0) x[i] = 0.6 + 0.9 * urand();              /* around 1 */
        else if (i % 4 == 1) x[i] = 1 + (urand() - 0.5) * 1e-6; /* very close to 1 */
        else x[i] = ldexp(1 + urand(), -1074 + (int)(2098 * urand())); /* any binade */
    }
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        vm->log_f64(x, y, N);
        for (int64_t i = 0; i < N; i++) {
            double want = log(x[i]);
            if (isnan(want)) {
                cr_assert(isnan(y[i]), "%s: log(%a) = %a, expected NaN", vm->name, x[i], y[i]);
                continue;
            }
            cr_assert(ulps_d(y[i], want) <= 1, "%s: log(%a) = %a, libm gives %a (%lld ulp)",
                      vm->name, x[i], y[i], want, (long long)ulps_d(y[i], want));
        }
        cr_assert(y[0] == 0 && !signbit(y[0]), "log(1) is +0");
        cr_assert(isinf(y[3]) && y[3] < 0 && isinf(y[4]) && y[4] < 0, "log(+-0) is -inf");
        cr_assert(isinf(y[5]) && y[5] > 0);
        cr_assert(isnan(y[6]) && isnan(y[7]) && isnan(y[8]) && isnan(y[9]));
        double z[48], one;
        for (int n = 0; n <= 40; n++) {
            for (int i = 0; i < 48; i++) z[i] = -7.0;
            vm->log_f64(x + 100, z, n);
            for (int i = 0; i < 48; i++) {
                vm->log_f64(x + 100 + i, &one, 1);
                cr_assert_eq(z[i], i < n ? one : -7.0, "%s n=%d i=%d", vm->name, n, i);
            }
        }
    }
    free(x), free(y);
}

/* rowstats and ce_grad_rows against naive loops on the table's own exp, bit
 * for bit: row lengths 1..40 and 127 (every 8- and 4-lane tail), rows
 * apart (ld > n) and adjacent, rows with NaN and inf, nothing written past
 * the block; ce_grad_rows also in place and with the label at every
 * position. */
#define ROWS_CHECK(T, SFX)                                                                 \
    static void rows_check_##SFX(const gf__vmath *vm) {                                    \
        enum { NR = 5, LDX = 131, CAP = NR * LDX + 8 };                                    \
        T x[CAP], t[CAP], y[CAP], z[CAP], m[NR], inv[NR];                                  \
        double s[NR];                                                                      \
        int64_t l[NR];                                                                     \
        for (int i = 0; i < CAP; i++) x[i] = (T)(-20 + 40 * urand());                      \
        for (int n = 1; n <= 127; n += n < 40 ? 1 : 87) {                                  \
            for (int nr = 1; nr <= NR; nr += 2) {                                          \
                int64_t ld = nr == 3 ? n : LDX;                                            \
                T keep[2] = {x[2 * ld + n / 2], x[4 * ld]};                                \
                if (nr == 5) x[2 * ld + n / 2] = (T)NAN, x[4 * ld] = (T)INFINITY;          \
                for (int i = 0; i < CAP; i++) t[i] = (T)-7;                                \
                vm->rowstats_##SFX(x, ld, n, nr, m, s, t);                                 \
                for (int i = 0; i < nr; i++) {                                             \
                    const T *xi = x + i * ld;                                              \
                    T mm = -INFINITY;                                                      \
                    for (int k = 0; k < n; k++) mm = xi[k] > mm ? xi[k] : mm;              \
                    double a[4] = {0, 0, 0, 0};                                            \
                    for (int k = 0; k < n; k++) {                                          \
                        T d = xi[k] - mm, e;                                               \
                        vm->exp_##SFX(&d, &e, 1);                                          \
                        cr_assert(memcmp(&t[i * n + k], &e, sizeof e) == 0,                \
                                  "%s n=%d row %d k=%d", vm->name, n, i, k);               \
                        a[k & 3] += (double)e;                                             \
                    }                                                                      \
                    double ws = (a[0] + a[1]) + (a[2] + a[3]);                             \
                    cr_assert(m[i] == mm, "%s n=%d row %d: max", vm->name, n, i);          \
                    cr_assert(s[i] == ws || (isnan(s[i]) && isnan(ws)),                    \
                              "%s n=%d row %d: sum %a vs %a", vm->name, n, i, s[i], ws);   \
                    inv[i] = (T)(1.0 / s[i]);                                              \
                    l[i] = (i * 7 + n) % n;                                                \
                }                                                                          \
                for (int i = nr * n; i < CAP; i++) cr_assert_eq(t[i], (T)-7, "past the block"); \
                for (int i = 0; i < CAP; i++) y[i] = (T)-7;                                \
                const T gs = (T)0.37;                                                      \
                vm->ce_grad_rows_##SFX(x, ld, n, nr, m, inv, l, gs, y);                    \
                for (int i = 0; i < nr; i++)                                               \
                    for (int k = 0; k < n; k++) {                                          \
                        T d = x[i * ld + k] - m[i], e;                                     \
                        vm->exp_##SFX(&d, &e, 1);                                          \
                        T w = (e * inv[i] - (T)(k == l[i])) * gs;                          \
                        cr_assert(memcmp(&y[i * n + k], &w, sizeof w) == 0,                \
                                  "%s n=%d row %d k=%d: %a vs %a", vm->name, n, i, k,      \
                                  (double)y[i * n + k], (double)w);                        \
                    }                                                                      \
                for (int i = nr * n; i < CAP; i++) cr_assert_eq(y[i], (T)-7, "past the block"); \
                /* in place: rows adjacent in z, the result over them */                  \
                for (int i = 0; i < nr; i++) memcpy(z + i * n, x + i * ld, n * sizeof(T));  \
                vm->ce_grad_rows_##SFX(z, n, n, nr, m, inv, l, gs, z);                     \
                cr_assert(memcmp(z, y, (size_t)(nr * n) * sizeof(T)) == 0, "%s n=%d in place", \
                          vm->name, n);                                                    \
                x[2 * ld + n / 2] = keep[0], x[4 * ld] = keep[1];                          \
            }                                                                              \
        }                                                                                  \
    }

ROWS_CHECK(float, f32)
ROWS_CHECK(double, f64)

Test(vmath, rowstats_and_ce_grad_rows_match_naive_loops_bit_for_bit) {
    for (size_t v = 0; v < NISAS; v++) {
        const gf__vmath *vm = use_isa(v);
        if (!vm) continue;
        rows_check_f32(vm);
        rows_check_f64(vm);
    }
}
