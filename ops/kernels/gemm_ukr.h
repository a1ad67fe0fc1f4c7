/*
 * gemm_ukr.h - the one contract between the GEMM driver (gemm.c) and the
 * per-ISA micro-kernels (ops/kernels/<isa>/gemm_<isa>.c), after BLIS's
 * micro-kernel interface. Internal to ops/kernels.
 *
 * A micro-kernel computes one register tile
 *     C(i,j) := beta*C(i,j) + sum_{p<k} a[p*MR + i] * b[p*NR + j]
 * for i < m <= MR, j < n <= NR, where C(i,j) = c[i*rsc + j*csc]:
 *   a  is an MR-row micro-panel of packed A (k columns of MR values, rows
 *      >= m zero-padded), 64-byte aligned;
 *   b  is an NR-column micro-panel of packed B (k rows of NR values, columns
 *      >= n zero-padded), 64-byte aligned;
 *   beta is 0 or 1; with beta 0, C is never read.
 * Edge tiles (m < MR or n < NR) and any C strides are handled inside the
 * kernel. For a given (k, a, b, beta, C) the bits written to C(i,j) do not
 * depend on m, n or the strides: the driver relies on this to make results
 * independent of how tiles are shared among threads.
 */
#ifndef GF_GEMM_UKR_H
#define GF_GEMM_UKR_H

#include <stdint.h>

typedef void (*gf__sgemm_ukr_fn)(int64_t m, int64_t n, int64_t k, const float *restrict a,
                                 const float *restrict b, float beta, float *restrict c,
                                 int64_t rsc, int64_t csc);
typedef void (*gf__dgemm_ukr_fn)(int64_t m, int64_t n, int64_t k, const double *restrict a,
                                 const double *restrict b, double beta, double *restrict c,
                                 int64_t rsc, int64_t csc);

/* Register tile (mr x nr) and cache blocking: an mc x kc block of packed A
 * is meant to stay in L2, a kc x nr micro-panel of packed B in L1, and the
 * kc x nc panel of packed B in L3. mc is a multiple of mr, nc of nr. */
typedef struct {
    int mr, nr, mc, kc, nc;
    gf__sgemm_ukr_fn ukr;
} gf__sgemm_blk;

typedef struct {
    int mr, nr, mc, kc, nc;
    gf__dgemm_ukr_fn ukr;
} gf__dgemm_blk;

/* One ISA variant: its name (what GF_ISA matches) and its kernels. */
typedef struct {
    const char *name;
    gf__sgemm_blk s;
    gf__dgemm_blk d;
} gf__gemm_variant;

/* Largest mr*nr of any variant: the driver's and kernels' edge buffers. */
#define GF__GEMM_MAX_TILE (14 * 32)

extern const gf__gemm_variant gf__gemm_generic;
#ifdef GF_HAVE_AVX2
extern const gf__gemm_variant gf__gemm_avx2;
#endif
#ifdef GF_HAVE_AVX512
extern const gf__gemm_variant gf__gemm_avx512;
#endif

#endif /* GF_GEMM_UKR_H */
