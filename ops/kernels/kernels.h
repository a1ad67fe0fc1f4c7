/*
 * kernels.h - the hot loops behind the ops. No graph code here: kernels see
 * raw pointers, sizes and strides (in elements), and the thread budget the
 * engine hands them.
 */
#ifndef GF_KERNELS_H
#define GF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* GEMM: C(i,j) = beta*C(i,j) + sum_p A(i,p) * B(p,j) for i<m, j<n, p<k, where
 *   A(i,p) = A[i*rsa + p*csa], B(p,j) = B[p*rsb + j*csb], C(i,j) = C[i*rsc + j*csc].
 * beta is 0 or 1; with beta 0 the old contents of C are never read (NaN-safe).
 * Any strides are accepted (transposed operands are read by the packing
 * routines, never copied first). nthreads >= 1 is the thread budget; the
 * result is bitwise identical for every nthreads (K is never split across
 * threads, and the summation order over p is fixed). */
void gf__sgemm(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa, int64_t csa,
               const float *B, int64_t rsb, int64_t csb, float beta, float *C, int64_t rsc,
               int64_t csc, int nthreads);
void gf__dgemm(int64_t m, int64_t n, int64_t k, const double *A, int64_t rsa, int64_t csa,
               const double *B, int64_t rsb, int64_t csb, double beta, double *C, int64_t rsc,
               int64_t csc, int nthreads);

/* The GEMM micro-kernel variant in use ("avx512", "avx2" or "generic"). It is
 * chosen once, on first use: the best the CPU supports, unless the
 * environment variable GF_ISA names another (an unsupported or unknown name
 * falls back to the best supported). */
const char *gf__gemm_isa(void);
/* Forces the variant `name` for later calls (tests run every variant this
 * way); an unsupported or unknown name selects the best supported one, NULL
 * returns to the choice made at start-up (GF_ISA or the best). Not meant to be
 * called while GEMMs run on other threads. */
void gf__gemm_force_isa(const char *name);

/* Per-thread scratch buffer `slot` (0 .. GF__KSCRATCH_SLOTS-1) of at least
 * `bytes`, 64-byte aligned, valid until this thread asks for the same slot
 * again. NULL on OOM. Slots 0-1 belong to GEMM, 2-3 to the other kernels. */
#define GF__KSCRATCH_SLOTS 4
void *gf__kscratch(int slot, size_t bytes);

#endif /* GF_KERNELS_H */
