/*
 * gemm_generic.c - portable C GEMM micro-kernels (the contract is in
 * ../gemm_ukr.h). Correct on any target; written so that gcc vectorizes the
 * fixed-size NR loop with whatever baseline vector unit the build targets
 * (SSE2 on x86-64: the 4x8 f32 / 4x4 f64 accumulator tiles are 8 registers).
 * Compiled with the project's default flags only.
 */
#include "../gemm_ukr.h"

#define S_MR 4
#define S_NR 8
#define D_MR 4
#define D_NR 4

/* The accumulator tile starts at zero and takes one multiply-add per p in
 * increasing p, whatever m and n are, so an element's bits do not depend on
 * where its tile lies (see the contract). Padding rows/columns are computed
 * and thrown away: cheaper than branches in the inner loop. */
static void gf__sgemm_ukr_generic(int64_t m, int64_t n, int64_t k, const float *restrict a,
                                  const float *restrict b, float beta, float *restrict c,
                                  int64_t rsc, int64_t csc) {
    float acc[S_MR][S_NR] = {{0}};
    for (int64_t p = 0; p < k; p++) {
#pragma GCC unroll 16
        for (int i = 0; i < S_MR; i++)
#pragma GCC unroll 16
            for (int j = 0; j < S_NR; j++) acc[i][j] += a[i] * b[j];
        a += S_MR;
        b += S_NR;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float *cij = c + i * rsc + j * csc;
            *cij = beta == 0 ? acc[i][j] : beta * *cij + acc[i][j];
        }
}

static void gf__dgemm_ukr_generic(int64_t m, int64_t n, int64_t k, const double *restrict a,
                                  const double *restrict b, double beta, double *restrict c,
                                  int64_t rsc, int64_t csc) {
    double acc[D_MR][D_NR] = {{0}};
    for (int64_t p = 0; p < k; p++) {
#pragma GCC unroll 16
        for (int i = 0; i < D_MR; i++)
#pragma GCC unroll 16
            for (int j = 0; j < D_NR; j++) acc[i][j] += a[i] * b[j];
        a += D_MR;
        b += D_NR;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double *cij = c + i * rsc + j * csc;
            *cij = beta == 0 ? acc[i][j] : beta * *cij + acc[i][j];
        }
}

/* Blocking: A block 128x256 f32 = 128 KiB (L2), B micro-panel 256x8 f32 =
 * 8 KiB (L1), B panel 256x4096 f32 = 4 MiB (L3). */
const gf__gemm_variant gf__gemm_generic = {
    .name = "generic",
    .s = {.mr = S_MR, .nr = S_NR, .mc = 128, .kc = 256, .nc = 4096, .ukr = gf__sgemm_ukr_generic},
    .d = {.mr = D_MR, .nr = D_NR, .mc = 64, .kc = 256, .nc = 4096, .ukr = gf__dgemm_ukr_generic},
    .l2_ref = 512 << 10, /* the avx2 variant's machine */
    .l3_ref = 16 << 20,
};
