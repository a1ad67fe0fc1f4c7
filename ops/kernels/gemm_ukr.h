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

#include <stddef.h>
#include <stdint.h>

typedef void (*gf__sgemm_ukr_fn)(int64_t m, int64_t n, int64_t k, const float *restrict a,
                                 const float *restrict b, float beta, float *restrict c,
                                 int64_t rsc, int64_t csc);
typedef void (*gf__dgemm_ukr_fn)(int64_t m, int64_t n, int64_t k, const double *restrict a,
                                 const double *restrict b, double beta, double *restrict c,
                                 int64_t rsc, int64_t csc);

/* Optional fused micro-kernel for row-major B (B(p,j) = B[p*rsb + j]): one
 * full mr x nr tile, exactly as the micro-kernel computes it from packed B
 * (same operations in the same order, so the same bits), but reading B's
 * kc x nr block from B itself and storing it packed into bp (bp[p*nr + j],
 * 64-byte aligned) as it goes. The driver calls it for the first tile of
 * each B micro-panel, so packing B costs a few stores in a loop bound by
 * multiply-adds instead of a pass of its own over B; the other tiles read
 * bp as usual. */
typedef void (*gf__sgemm_ukr_pb_fn)(int64_t k, const float *restrict a, const float *B,
                                    int64_t rsb, float *restrict bp, float beta,
                                    float *restrict c, int64_t rsc, int64_t csc);
typedef void (*gf__dgemm_ukr_pb_fn)(int64_t k, const double *restrict a, const double *B,
                                    int64_t rsb, double *restrict bp, double beta,
                                    double *restrict c, int64_t rsc, int64_t csc);

/* Optional ISA packing routines, with the driver's packing contract
 * (gemm_driver.h, pack_a / pack_b) for the variant's own mr / nr:
 *   pack_a: rows [0, mc) x columns [0, kc) of A(i,p) = A[i*rsa + p*csa] into
 *     mr-row micro-panels, ap[q*mr*kc + p*mr + i] = A(q*mr + i, p), rows past
 *     mc zero;
 *   pack_b: columns [0, nc) x rows [0, kc) of B(p,j) = B[p*rsb + j*csb] into
 *     nr-column micro-panels, bp[q*nr*kc + p*nr + j] = B(p, q*nr + j),
 *     columns past nc zero.
 * Each returns 1 when it packed, 0 when it does not handle these strides
 * (the driver's portable packing runs instead). They write nothing outside
 * the packed panels and only copy values, so which routine packs never
 * changes a result bit. */
typedef int (*gf__spack_fn)(int64_t mn, int64_t kc, const float *X, int64_t rs, int64_t cs,
                            float *restrict xp);
typedef int (*gf__dpack_fn)(int64_t mn, int64_t kc, const double *X, int64_t rs, int64_t cs,
                            double *restrict xp);

/* Register tile (mr x nr) and cache blocking: an mc x kc block of packed A
 * is meant to stay in L2, a kc x nr micro-panel of packed B in L1, and the
 * kc x nc panel of packed B in L3. mc is a multiple of mr, nc of nr.
 * pack_a / pack_b may be NULL (portable packing only), ukr_pb NULL (B
 * packed in a pass of its own). */
/* Matrix-vector rows [i0, i1): y(i*incy) = beta*y(i*incy) + sum_p M[i*ldm + p] x[p]
 * (beta 0 or 1; 0 never reads y), M's rows and x contiguous. A row's bits
 * depend on k alone (not on i0, i1 or its neighbours). Optional per variant
 * (NULL: the driver's portable dot). */
typedef void (*gf__sgemv_rows_fn)(int64_t i0, int64_t i1, int64_t k, const float *M, int64_t ldm,
                                  const float *x, float beta, float *y, int64_t incy);
typedef void (*gf__dgemv_rows_fn)(int64_t i0, int64_t i1, int64_t k, const double *M,
                                  int64_t ldm, const double *x, double beta, double *y,
                                  int64_t incy);

typedef struct {
    int mr, nr, mc, kc, nc;
    gf__sgemm_ukr_fn ukr;
    gf__spack_fn pack_a, pack_b;
    gf__sgemm_ukr_pb_fn ukr_pb;
    gf__sgemv_rows_fn gemv;
} gf__sgemm_blk;

typedef struct {
    int mr, nr, mc, kc, nc;
    gf__dgemm_ukr_fn ukr;
    gf__dpack_fn pack_a, pack_b;
    gf__dgemm_ukr_pb_fn ukr_pb;
    gf__dgemv_rows_fn gemv;
} gf__dgemm_blk;

/* One ISA variant: its name (what GF_ISA matches), its kernels, and the
 * caches its mc and nc were tuned for (bytes per core: L2, and L3 over the
 * cores it serves), from which gemm_blocking.c scales them to this
 * machine's. */
typedef struct {
    const char *name;
    gf__sgemm_blk s;
    gf__dgemm_blk d;
    size_t l2_ref, l3_ref;
} gf__gemm_variant;

/* Sets v's mc and nc (s and d) for this machine's caches; mc, nc > 0
 * force those instead (rounded to multiples of mr, nr), as GF_GEMM_MC /
 * GF_GEMM_NC do. (gemm_blocking.c) */
void gf__gemm_size_variant(gf__gemm_variant *v, int mc, int nc);

/* Largest mr*nr of any variant: the driver's and kernels' edge buffers. */
#define GF__GEMM_MAX_TILE (14 * 32)

extern const gf__gemm_variant gf__gemm_generic;
#ifdef GF_HAVE_AVX2
extern const gf__gemm_variant gf__gemm_avx2;
/* avx2/gemm_pack_avx2.c: packing for the 6x16 f32 and 6x8 f64 tiles. */
int gf__spack_a_avx2(int64_t mc, int64_t kc, const float *A, int64_t rsa, int64_t csa,
                     float *restrict ap);
int gf__spack_b_avx2(int64_t nc, int64_t kc, const float *B, int64_t rsb, int64_t csb,
                     float *restrict bp);
int gf__dpack_a_avx2(int64_t mc, int64_t kc, const double *A, int64_t rsa, int64_t csa,
                     double *restrict ap);
int gf__dpack_b_avx2(int64_t nc, int64_t kc, const double *B, int64_t rsb, int64_t csb,
                     double *restrict bp);
#endif
/* avx2/gemv_avx2.c; the avx512 variant uses them too */
void gf__sgemv_rows_avx2(int64_t i0, int64_t i1, int64_t k, const float *M, int64_t ldm,
                         const float *x, float beta, float *y, int64_t incy);
void gf__dgemv_rows_avx2(int64_t i0, int64_t i1, int64_t k, const double *M, int64_t ldm,
                         const double *x, double beta, double *y, int64_t incy);
#ifdef GF_HAVE_AVX512
extern const gf__gemm_variant gf__gemm_avx512;
#endif

#endif /* GF_GEMM_UKR_H */
