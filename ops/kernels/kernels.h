/*
 * kernels.h - the hot loops behind the ops. No graph code here: kernels see
 * raw pointers, sizes and strides (in elements), and the thread budget the
 * engine hands them.
 */
#ifndef GF_KERNELS_H
#define GF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../../engine/par.h"

/* GEMM: C(i,j) = beta*C(i,j) + sum_p A(i,p) * B(p,j) for i<m, j<n, p<k, where
 *   A(i,p) = A[i*rsa + p*csa], B(p,j) = B[p*rsb + j*csb], C(i,j) = C[i*rsc + j*csc].
 * beta is 0 or 1; with beta 0 the old contents of C are never read (NaN-safe).
 * Any strides are accepted (transposed operands are read by the packing
 * routines, never copied first). par (NULL: one thread) says how the tiles
 * may be split over threads; the result is bitwise identical for any par
 * and any number of threads joining (K is never split across
 * threads, and the summation order over p is fixed). */
void gf__sgemm(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa, int64_t csa,
               const float *B, int64_t rsb, int64_t csb, float beta, float *C, int64_t rsc,
               int64_t csc, const gf__par *par);
void gf__dgemm(int64_t m, int64_t n, int64_t k, const double *A, int64_t rsa, int64_t csa,
               const double *B, int64_t rsb, int64_t csb, double beta, double *C, int64_t rsc,
               int64_t csc, const gf__par *par);

/* GEMM with an epilogue: the same C as gf__sgemm / gf__dgemm, then
 *   C(i,j) = act(C(i,j) + bias[j*incb])
 * (no addition when bias is NULL), each step rounded to the dtype as the
 * separate ops round it: the addition is gf_add's, relu is unary.c's
 * `x < 0 ? 0 : x` (NaN and -0 pass through), tanh and sigmoid are the
 * gf__vmath_now() table's functions, which compute each element on its own
 * (the same bits on a segment of any length). So the result is bitwise
 * the matmul, then gf_add of the bias row, then the activation op. The
 * epilogue runs on each C tile right after its last kc block, by the
 * thread that computed it (the tile is still in cache); the tiny, gemv and
 * k = 0 paths apply it to their output. ep NULL: plain GEMM. */
typedef enum { GF__ACT_NONE, GF__ACT_RELU, GF__ACT_TANH, GF__ACT_SIGMOID } gf__act;
typedef struct {
    const float *bias; /* length n, or NULL */
    int64_t incb;      /* bias stride in elements */
    gf__act act;
} gf__sepilogue;
typedef struct {
    const double *bias;
    int64_t incb;
    gf__act act;
} gf__depilogue;
void gf__sgemm_ep(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa, int64_t csa,
                  const float *B, int64_t rsb, int64_t csb, float beta, float *C, int64_t rsc,
                  int64_t csc, const gf__par *par, const gf__sepilogue *ep);
void gf__dgemm_ep(int64_t m, int64_t n, int64_t k, const double *A, int64_t rsa, int64_t csa,
                  const double *B, int64_t rsb, int64_t csb, double beta, double *C,
                  int64_t rsc, int64_t csc, const gf__par *par, const gf__depilogue *ep);

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

/* Cache blocking (ops/kernels/gemm_blocking.c). kc is each variant's
 * constant (it sets where partial sums round); mc and nc, which never change
 * a result bit, are sized once to this machine's caches (hwloc), or set by
 * GF_GEMM_MC / GF_GEMM_NC. gf__gemm_blocks gives the variant in use's
 * mr, nr, mc, kc, nc for elements of dsize bytes (4: f32, 8: f64).
 * gf__gemm_set_blocks forces mc and nc for every variant (rounded down to
 * multiples of mr and nr; 0, 0 sizes them again): for tests, which check
 * that the bits never depend on them. Not meant to be called while GEMMs run
 * on other threads. */
void gf__gemm_blocks(int dsize, int out[5]);
void gf__gemm_set_blocks(int mc, int nc);

/* The caches the blocking was sized to (0 where hwloc reported none): l1d
 * and l2 in bytes per core (a cache's size over the cores it serves, the
 * smallest such share on the machine); l3 the L3 with the smallest share,
 * serving l3_cores cores, l3_per_core = l3 / l3_cores. */
typedef struct {
    size_t l1d, l2, l3, l3_per_core;
    int l3_cores;
} gf__gemm_caches;
const gf__gemm_caches *gf__gemm_machine_caches(void);

/* Per-thread scratch buffer `slot` (0 .. GF__KSCRATCH_SLOTS-1) of at least
 * `bytes`, 64-byte aligned, valid until this thread asks for the same slot
 * again. NULL on OOM. Slots 0-1 belong to GEMM, 2-3 to the other kernels. */
#define GF__KSCRATCH_SLOTS 4
void *gf__kscratch(int slot, size_t bytes);

/* Vector math and reduction loops behind the elementwise, reduction and
 * softmax ops (vmath.c), one table per ISA variant (generic/, avx2/). The
 * variant follows GEMM's choice (gf__gemm_isa, so GF_ISA and
 * gf__gemm_force_isa pick it too; avx512 uses the avx2 table). Every
 * function is sequential: callers split work over threads in fixed blocks,
 * so no result depends on the thread count. The elementwise functions (exp,
 * tanh, sigmoid, log) compute each element on its own: an element gets the
 * same bits whatever the length of the array it is in and its place there
 * (the vector variants' masked tails run the same math). */
typedef struct {
    const char *name;
    /* y[i] = exp(x[i]) for i < n; y may equal x. f32 within 2 ulp of expf,
     * f64 within 1 ulp of exp; overflow gives inf, underflow 0 (subnormals
     * on the way), exp(-inf) = 0, NaN stays NaN. */
    void (*exp_f32)(const float *x, float *y, int64_t n);
    void (*exp_f64)(const double *x, double *y, int64_t n);
    /* y[i] = tanh(x[i]) for i < n; y may equal x. Within 1 ulp of the
     * correctly rounded tanh (f32: checked over every float; f64: sampled,
     * under 0.85 ulp from the exact value); tanh(-x) = -tanh(x) bit for
     * bit, tanh(+-inf) = +-1, -0 stays -0, tiny x gives x, NaN stays NaN. */
    void (*tanh_f32)(const float *x, float *y, int64_t n);
    void (*tanh_f64)(const double *x, double *y, int64_t n);
    /* y[i] = 1/(1 + exp(-x[i])) for i < n, y may equal x, computed stably:
     * e = exp(-|x|) with this table's exp, r = 1/(1 + e), and r for x >= 0,
     * e*r otherwise (no overflow, tiny outputs keep their relative
     * precision); those operations and roundings in every variant, so the
     * bits differ between variants only where exp's do. NaN stays NaN. */
    void (*sigmoid_f32)(const float *x, float *y, int64_t n);
    void (*sigmoid_f64)(const double *x, double *y, int64_t n);
    /* e_i = exp(x[i] - m) for i < n, stored to y[i] unless y is NULL (y may
     * equal x); returns sum_i e_i accumulated in double in a fixed order. */
    double (*expsum_f32)(const float *x, float m, float *y, int64_t n);
    double (*expsum_f64)(const double *x, double m, double *y, int64_t n);
    /* max of x[0..n), n >= 1, NaNs skipped (-inf if all are NaN); *nan is
     * set to 1 when a NaN occurs (else left alone). */
    float (*max_f32)(const float *x, int64_t n, int *nan);
    double (*max_f64)(const double *x, int64_t n, int *nan);
    /* Column maxima over len rows of w adjacent columns, row k at p + k*sd:
     * mv[j] = max(mv[j], p[k*sd + j]) with NaNs skipped, nf[j] |= (a NaN
     * occurred in column j). mv and nf hold the running values. */
    void (*colmax_f32)(const float *p, int64_t sd, int64_t len, int64_t w, float *mv,
                       uint32_t *nf);
    void (*colmax_f64)(const double *p, int64_t sd, int64_t len, int64_t w, double *mv,
                       uint64_t *nf);
    /* Column sums in double: part[j] = sum over len rows of p[k*sd + j] in
     * the order (rows in groups of four, ((r0 + r1) + (r2 + r3)) added to
     * the running sum, then the leftover rows one by one), starting from 0.
     * The same bits in every variant. */
    void (*colsum_f32)(const float *p, int64_t sd, int64_t len, int64_t w, double *part);
    void (*colsum_f64)(const double *p, int64_t sd, int64_t len, int64_t w, double *part);
    /* Four row partials side by side: q[i] = the sum of the len floats at p[i]
     * (len a multiple of 8) in double, element k into lane k % 8, then
     * ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). The same bits in
     * every variant. */
    void (*rowsum4_f32)(const float *const p[4], int64_t len, double q[4]);
    /* Four row maxima side by side: m[i] = the max of the n floats at p[i],
     * NaNs skipped, nan[i] |= 1 where one occurs (exact: the values of max_f32). */
    void (*rowmax4_f32)(const float *const p[4], int64_t n, float m[4], int nan[4]);
    /* y[i] = log(x[i]) for i < n; y may equal x. Within 1 ulp of log (fdlibm's
     * method); log(+-0) = -inf, log(x < 0) = NaN, log(inf) = inf, subnormal x
     * exact, NaN stays NaN. */
    void (*log_f64)(const double *x, double *y, int64_t n);
    /* Softmax statistics of nr short rows of n >= 1 elements, row i at
     * x + i*ld (its elements adjacent): m[i] = the row max, NaNs skipped
     * (-inf if all are NaN); t [nr, n] = exp(x - m[i]) with this table's exp
     * (t must not overlap x); s[i] = the sum of row i of t in double, element
     * k added to lane k % 4 in k order and the lanes folded as
     * (l0 + l1) + (l2 + l3). The same sums in every variant (given the
     * variant's exp). */
    void (*rowstats_f32)(const float *x, int64_t ld, int64_t n, int64_t nr, float *m,
                         double *s, float *t);
    void (*rowstats_f64)(const double *x, int64_t ld, int64_t n, int64_t nr, double *m,
                         double *s, double *t);
    /* The gradient of cross_entropy for nr rows of n, into y [nr, n]:
     * y[i*n + k] = (exp(x[i*ldx + k] - m[i]) * inv[i] - (k == l[i])) * gs,
     * every step rounded to the dtype: the bits of softmax (exp(x - m) * inv,
     * as rowstats has them), minus one_hot, times the scale, as the composed
     * ops give them. l[i] in [0, n). y may equal x (ldx == n). */
    void (*ce_grad_rows_f32)(const float *x, int64_t ldx, int64_t n, int64_t nr,
                             const float *m, const float *inv, const int64_t *l, float gs,
                             float *y);
    void (*ce_grad_rows_f64)(const double *x, int64_t ldx, int64_t n, int64_t nr,
                             const double *m, const double *inv, const int64_t *l, double gs,
                             double *y);
} gf__vmath;

/* The table of the variant in use (cheap: call it once per kernel). */
const gf__vmath *gf__vmath_now(void);

#endif /* GF_KERNELS_H */
