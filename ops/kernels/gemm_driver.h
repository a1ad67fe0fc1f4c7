/*
 * gemm_driver.h - the dtype-generic GEMM driver, included by gemm.c once per
 * dtype with these defined:
 *   GF_T       element type (float, double)
 *   GF_FN(x)   the name of function x for this dtype (gf__sgemm_x, ...)
 *   GF_BLK     the blocking/kernel record (gf__sgemm_blk, gf__dgemm_blk)
 * It defines GF_FN(driver), with gf__sgemm_ep's contract (kernels.h) plus
 * the variant's blocking record to use, and GF_FN(epi), the epilogue as the
 * driver runs it. Everything else here is static.
 *
 * The blocked path is Goto/BLIS's five loops around the micro-kernel:
 *   jc (nc columns of C) > pc (kc of K; pack B panel) > ic (mc rows; pack A
 *   block) > jr (nr columns) > ir (mr rows) > micro-kernel.
 * Threads split C into a grid of tasks (row chunks x column chunks, see
 * GF_FN(blocked)); each task runs the pc > ic > jr > ir loops over its own
 * block and packs its own operands. K is never split, kc depends on k
 * alone, and each element's sum over p is the micro-kernel's fixed order
 * within a kc block, kc blocks added in order. With the micro-kernel
 * contract (an element's bits do not depend on its tile) this makes C the
 * same bits for any number of threads. Packing uses the variant's routines
 * (pack_a / pack_b in gemm_ukr.h) where it has them for the strides at
 * hand, else the portable ones here; row-major B is packed by the variant's
 * fused tile (ukr_pb) where it has one. Operands that will be packed next
 * and C rows about to be updated are prefetched while the micro-kernel
 * runs (see GF_FN(task)). An epilogue (bias row and activation, see
 * GF_FN(ep_apply)) is applied to each C tile right after its last kc block
 * by the thread that computed it, while the tile is still in L1.
 */

/* Work at or below this many multiply-adds runs without a parallel region:
 * forking would cost more than it saves. */
#define GF__GEMM_PAR_MIN ((int64_t)64 * 64 * 64)
/* Up to this many multiply-adds the direct triple loop beats packing. */
#define GF__GEMM_TINY ((int64_t)512)
/* Rows per chunk in the axpy form of the matrix-vector product. */
#define GF__GEMV_CHUNK 256

static inline int64_t GF_FN(min)(int64_t a, int64_t b) { return a < b ? a : b; }

/* The epilogue (kernels.h, gf__sgemm_ep) as the driver runs it: C(i,j) =
 * act(C(i,j) + bias[j*incb]), the bias addition skipped when bias is NULL,
 * act relu (unary.c's expression) or vf, a gf__vmath function applied in
 * place (or neither). */
typedef struct {
    const GF_T *bias;
    int64_t incb;
    int relu;
    void (*vf)(const GF_T *x, GF_T *y, int64_t n);
} GF_FN(epi);

/* Elements per gathered run of a strided line. */
#define GF__EP_BUF 256

/* The epilogue on one line of C: len elements at c[i*inc], bias b[i*binc]
 * (binc 0: one bias value for the whole line; b NULL: none), for the
 * layouts ep_apply's fast path does not take. A strided line is gathered
 * into a stack buffer and scattered back. Every element is
 * computed on its own (vf's contract), so how C is cut into lines never
 * changes a bit. */
static void GF_FN(ep_line)(const GF_FN(epi) *e, GF_T *c, int64_t inc, int64_t len,
                           const GF_T *b, int64_t binc) {
    if (inc != 1) {
        GF_T buf[GF__EP_BUF];
        for (int64_t i0 = 0; i0 < len; i0 += GF__EP_BUF) {
            const int64_t l = GF_FN(min)(GF__EP_BUF, len - i0);
            for (int64_t i = 0; i < l; i++) buf[i] = c[(i0 + i) * inc];
            GF_FN(ep_line)(e, buf, 1, l, b ? b + i0 * binc : NULL, binc);
            for (int64_t i = 0; i < l; i++) c[(i0 + i) * inc] = buf[i];
        }
        return;
    }
    /* relu as `v < 0 ? 0 : v` (not a max instruction): NaN and -0 pass. */
    if (b)
        for (int64_t i = 0; i < len; i++) c[i] = c[i] + b[i * binc];
    if (e->relu)
        for (int64_t i = 0; i < len; i++) c[i] = c[i] < 0 ? 0 : c[i];
    if (e->vf) e->vf(c, c, len);
}

/* ep_rows works in generic vectors of 16 bytes (GCC vector extensions: the
 * target's baseline vector unit, SSE2 on x86-64; no ISA code). relu is
 * `v < 0 ? 0 : v` as a mask: the bits of v cleared where v < 0, so NaN and
 * -0 pass and the result is the scalar expression's, lane by lane. Written
 * as a plain loop, GCC unrolled the 16-element rows into scalar code with a
 * branch per element (a 30% slower GEMM on random signs). */
typedef GF_T GF_FN(vec) __attribute__((vector_size(16)));
#define GF__EP_W ((int64_t)(16 / sizeof(GF_T)))

static inline GF_FN(vec) GF_FN(vrelu)(GF_FN(vec) x) {
    const GF_FN(vec) z = {0};
    const __typeof__(x < z) neg = x < z;
    return (GF_FN(vec))((__typeof__(neg))x & ~neg);
}

/* The epilogue on `rows` rows of len contiguous elements, row i at c +
 * i*rsc, bias b[j] (contiguous, or NULL): vectors over each row, the
 * leftover elements one by one, then vf row by row. Inlined with len a
 * constant (the micro-panel widths), a tile's rows become straight vector
 * code. */
static inline __attribute__((always_inline)) void GF_FN(ep_rows)(const GF_FN(epi) *e, GF_T *c,
                                                                int64_t rsc, int64_t rows,
                                                                int64_t len, const GF_T *b) {
    const int relu = e->relu;
    if (b || relu)
        for (int64_t i = 0; i < rows; i++) {
            GF_T *r = c + i * rsc;
            int64_t j = 0;
            for (; j + GF__EP_W <= len; j += GF__EP_W) {
                GF_FN(vec) v, w;
                memcpy(&v, r + j, sizeof v);
                if (b) {
                    memcpy(&w, b + j, sizeof w);
                    v = v + w;
                }
                if (relu) v = GF_FN(vrelu)(v);
                memcpy(r + j, &v, sizeof v);
            }
            for (; j < len; j++) {
                GF_T v = b ? r[j] + b[j] : r[j];
                r[j] = relu && v < 0 ? 0 : v;
            }
        }
    if (e->vf)
        for (int64_t i = 0; i < rows; i++) e->vf(c + i * rsc, c + i * rsc, len);
}
#undef GF__EP_W

/* The epilogue on the rows x cols block of C at C (C(i,j) = C[i*rsc +
 * j*csc]) whose first column is column j0 of the whole C: contiguous rows
 * with a contiguous bias (a tile of a row-major C) by ep_rows, with the
 * micro-panel widths as constants; else along rows when they are
 * contiguous (or nothing is), along columns otherwise (one bias value per
 * column). */
static void GF_FN(ep_apply)(const GF_FN(epi) *e, GF_T *C, int64_t rsc, int64_t csc, int64_t rows,
                            int64_t cols, int64_t j0) {
    const GF_T *b = e->bias ? e->bias + j0 * e->incb : NULL;
    if (csc == 1 && cols > 1 && (!b || e->incb == 1)) {
        switch (cols) {
        case 16: GF_FN(ep_rows)(e, C, rsc, rows, 16, b); break;
        case 8: GF_FN(ep_rows)(e, C, rsc, rows, 8, b); break;
        case 4: GF_FN(ep_rows)(e, C, rsc, rows, 4, b); break;
        default: GF_FN(ep_rows)(e, C, rsc, rows, cols, b); break;
        }
    } else if (cols == 1 || (rsc == 1 && csc != 1)) {
        for (int64_t j = 0; j < cols; j++)
            GF_FN(ep_line)(e, C + j * csc, rsc, rows, b ? b + j * e->incb : NULL, 0);
    } else {
        for (int64_t i = 0; i < rows; i++) GF_FN(ep_line)(e, C + i * rsc, csc, cols, b, e->incb);
    }
}

/* C(i,j) = beta*C(i,j) + sum_p A(i,p) B(p,j) by the definition, summing over
 * p in order. For tiny shapes, and the fallback when buffers cannot be had. */
static void GF_FN(direct)(int64_t m, int64_t n, int64_t k, const GF_T *A, int64_t rsa,
                          int64_t csa, const GF_T *B, int64_t rsb, int64_t csb, GF_T beta,
                          GF_T *C, int64_t rsc, int64_t csc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            GF_T s = 0;
            for (int64_t p = 0; p < k; p++) s += A[i * rsa + p * csa] * B[p * rsb + j * csb];
            GF_T *c = C + i * rsc + j * csc;
            *c = beta == 0 ? s : beta * *c + s;
        }
}

/* sum_p a[p*inca] * x[p*incx], with 8 running sums so the adds do not wait on
 * each other; the combination order is fixed, so the bits depend on k only. */
static GF_T GF_FN(dot)(int64_t k, const GF_T *a, int64_t inca, const GF_T *x, int64_t incx) {
    GF_T s[8] = {0};
    int64_t p = 0;
    if (inca == 1 && incx == 1)
        for (; p + 8 <= k; p += 8)
            for (int u = 0; u < 8; u++) s[u] += a[p + u] * x[p + u];
    else
        for (; p + 8 <= k; p += 8)
            for (int u = 0; u < 8; u++) s[u] += a[(p + u) * inca] * x[(p + u) * incx];
    GF_T t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; p < k; p++) t += a[p * inca] * x[p * incx];
    return t;
}

/* Rows [i0, i1) of y = beta*y + M x, where M(i,p) = M[i*rsm + p*csm]: dot
 * form when M's rows are contiguous (or nothing is), otherwise axpy form
 * down M's contiguous columns into a stack chunk of y. Each y(i) is computed
 * by one thread in an order fixed by the shape and strides. */
static void GF_FN(gemv_rows)(const GF_BLK *bk, int64_t i0, int64_t i1, int64_t k,
                             const GF_T *M, int64_t rsm, int64_t csm, const GF_T *x,
                             int64_t incx, GF_T beta, GF_T *y, int64_t incy) {
    if (bk->gemv && csm == 1 && incx == 1) {
        bk->gemv(i0, i1, k, M, rsm, x, beta, y, incy); /* the variant's vector rows */
        return;
    }
    if (csm == 1 || rsm != 1) {
        for (int64_t i = i0; i < i1; i++) {
            GF_T s = GF_FN(dot)(k, M + i * rsm, csm, x, incx);
            y[i * incy] = beta == 0 ? s : beta * y[i * incy] + s;
        }
        return;
    }
    GF_T acc[GF__GEMV_CHUNK];
    for (int64_t c0 = i0; c0 < i1; c0 += GF__GEMV_CHUNK) {
        int64_t len = GF_FN(min)(GF__GEMV_CHUNK, i1 - c0);
        for (int64_t i = 0; i < len; i++) acc[i] = 0;
        for (int64_t p = 0; p < k; p++) {
            const GF_T *col = M + c0 + p * csm; /* rsm == 1 */
            GF_T xp = x[p * incx];
            for (int64_t i = 0; i < len; i++) acc[i] += col[i] * xp;
        }
        for (int64_t i = 0; i < len; i++) {
            GF_T *yi = y + (c0 + i) * incy;
            *yi = beta == 0 ? acc[i] : beta * *yi + acc[i];
        }
    }
}

/* gemv's operands, for its row chunks as tiles. */
typedef struct {
    const GF_BLK *bk;
    int64_t k;
    const GF_T *M;
    int64_t rsm, csm;
    const GF_T *x;
    int64_t incx;
    GF_T beta;
    GF_T *y;
    int64_t incy;
} GF_FN(gemv_args);

static void GF_FN(gemv_tile)(void *arg, int64_t i0, int64_t i1) {
    const GF_FN(gemv_args) *g = arg;
    GF_FN(gemv_rows)(g->bk, i0, i1, g->k, g->M, g->rsm, g->csm, g->x, g->incx, g->beta, g->y,
                     g->incy);
}

/* y = beta*y + M x for m rows, in tiles of whole chunks over par's threads. */
static void GF_FN(gemv)(const GF_BLK *bk, int64_t m, int64_t k, const GF_T *M, int64_t rsm,
                        int64_t csm,
                        const GF_T *x, int64_t incx, GF_T beta, GF_T *y, int64_t incy,
                        const gf__par *par) {
    if (!GF__PAR_WORTH(par, m * k >= GF__GEMM_PAR_MIN && m >= 2 * GF__GEMV_CHUNK)) {
        GF_FN(gemv_rows)(bk, 0, m, k, M, rsm, csm, x, incx, beta, y, incy);
        return;
    }
    GF_FN(gemv_args) g = {bk, k, M, rsm, csm, x, incx, beta, y, incy};
    gf__par_for(par, m, GF__GEMV_CHUNK, GF_FN(gemv_tile), &g);
}

/* Packs rows [0, mc) x columns [0, kc) of A into mr-row micro-panels: panel
 * q holds ap[q*mr*kc + p*mr + i] = A(q*mr + i, p), rows past mc zero. Reads
 * along whichever of A's dimensions is contiguous. A's rows are far apart
 * and short (kc values), too short for the hardware prefetcher to ramp up,
 * so the next panel's rows are prefetched while this one is packed. */
static void GF_FN(pack_a)(int64_t mc, int64_t kc, const GF_T *A, int64_t rsa, int64_t csa,
                          int mr, GF_T *restrict ap) {
    const int line = 64 / (int)sizeof(GF_T);
    for (int64_t ir = 0; ir < mc; ir += mr, ap += (int64_t)mr * kc) {
        const GF_T *a = A + ir * rsa;
        int64_t mb = GF_FN(min)(mr, mc - ir);
        if (csa == 1) {
            const int64_t next = GF_FN(min)(mr, mc - ir - mb);
            for (int64_t i = 0; i < next; i++)
                for (int64_t p = 0; p < kc; p += line) __builtin_prefetch(a + (mb + i) * rsa + p);
            for (int64_t i = 0; i < mb; i++) {
                const GF_T *row = a + i * rsa;
                for (int64_t p = 0; p < kc; p++) ap[p * mr + i] = row[p];
            }
        } else {
            for (int64_t p = 0; p < kc; p++) {
                const GF_T *col = a + p * csa;
                for (int64_t i = 0; i < mb; i++) ap[p * mr + i] = col[i * rsa];
            }
        }
        if (mb < mr)
            for (int64_t p = 0; p < kc; p++)
                for (int64_t i = mb; i < mr; i++) ap[p * mr + i] = 0;
    }
}

/* Packs micro-panels [jp0, jp1) of the kc x nc panel B: panel q holds
 * bp[q*nr*kc + p*nr + j] = B(p, q*nr + j), columns past nc zero. Row-major B
 * is read row by row across all the panels (one sequential stream: reading a
 * panel at a time would touch a new page for every 64 bytes); transposed B
 * is read down its contiguous columns. */
static void GF_FN(pack_b)(int64_t kc, int64_t nc, int64_t jp0, int64_t jp1, const GF_T *B,
                          int64_t rsb, int64_t csb, int nr, GF_T *restrict bp) {
    if (csb == 1) {
        const int64_t full1 = GF_FN(min)(jp1, nc / nr); /* panels without padding */
        for (int64_t p = 0; p < kc; p++) {
            const GF_T *row = B + p * rsb;
            /* Constant sizes let the compiler inline the copies (a call per
             * 64 bytes would cost more than the copy). */
#define GF__PACK_B_ROWS(NR)                                                             \
    for (int64_t jp = jp0; jp < full1; jp++)                                            \
        memcpy(bp + jp * (NR) * kc + p * (NR), row + jp * (NR), (NR) * sizeof(GF_T))
            if (nr == 8)
                GF__PACK_B_ROWS(8);
            else if (nr == 16)
                GF__PACK_B_ROWS(16);
            else if (nr == 32)
                GF__PACK_B_ROWS(32);
            else
                GF__PACK_B_ROWS(nr);
#undef GF__PACK_B_ROWS
            if (full1 < jp1) { /* the last, partial panel */
                GF_T *dst = bp + full1 * nr * kc + p * nr;
                const int64_t nb = nc - full1 * nr;
                for (int64_t j = 0; j < nr; j++) dst[j] = j < nb ? row[full1 * nr + j] : 0;
            }
        }
        return;
    }
    for (int64_t jp = jp0; jp < jp1; jp++) {
        GF_T *dst = bp + jp * nr * kc;
        const int64_t nb = GF_FN(min)(nr, nc - jp * nr);
        for (int64_t j = 0; j < nb; j++) {
            const GF_T *col = B + (jp * nr + j) * csb;
            for (int64_t p = 0; p < kc; p++) dst[p * nr + j] = col[p * rsb];
        }
        for (int64_t p = 0; p < kc; p++)
            for (int64_t j = nb; j < nr; j++) dst[p * nr + j] = 0;
    }
}

/* Everything the threads of one blocked GEMM share. The m x n output is cut
 * into a grid of tasks (nrch row chunks x ncch column chunks); a task runs
 * the pc > ic > jr > ir loops over its own rows and columns with buffers of
 * its thread's own (it packs its B columns and its A rows itself), so the
 * threads never wait for each other: a thread takes the next task from a
 * shared counter until none is left, and one that the OS descheduled costs
 * at most the task it holds, not a barrier per kc block. */
typedef struct {
    const GF_BLK *bk;
    int64_t m, n, k;
    const GF_T *A, *B;
    int64_t rsa, csa, rsb, csb;
    GF_T beta;
    GF_T *C;
    int64_t rsc, csc;
    const GF_FN(epi) *ep; /* applied after the last kc block, or NULL */
    int64_t kc;         /* depth of a pc block (<= bk->kc; from k alone) */
    int64_t mc;         /* rows per ic block (a multiple of mr, <= bk->mc) */
    int64_t rch, nrch;  /* rows per row chunk (a multiple of mc), row chunks */
    int64_t cpan, ncch; /* nr-panels per column chunk (cpan*nr <= bk->nc), column chunks */
    GF_T *bp, *ap;      /* packed B chunks (bp_size each), packed A blocks (ap_size each) */
    int64_t bp_size, ap_size;
    int64_t ntask;
    _Atomic int64_t next; /* the next task to take (threaded runs only) */
} GF_FN(job);

#ifndef GF__GEMM_PFS
#define GF__GEMM_PFS
/* A block of B bigger than this is prefetched ahead of its packing (see
 * GF_FN(task)); a smaller one is still in L2 or L3 when it is packed, and
 * prefetching it would only evict the block in use (64x256x784 ran 2-3%
 * slower with it). */
#define GF__GEMM_PF_MIN ((int64_t)256 * 1024)

/* Memory to prefetch a few lines at a time, spread over a block's
 * micro-kernel calls: nrun runs of len bytes, run r at base + r*stride. */
typedef struct {
    const char *base;
    int64_t stride, len, nrun;
    int64_t r;        /* the run being prefetched */
    const char *at;   /* its next line */
    int64_t per_call; /* lines per call */
} gf__gemm_pfs;

/* Sets s up to cover its runs in `calls` calls of gf__gemm_pfs_step: the
 * lines evenly over the calls (counted exactly when every run starts at the
 * same offset in its line, e.g. one line per row of a panel of B with
 * 64-byte rows; else one more per run, and the last calls have less). */
static inline void gf__gemm_pfs_init(gf__gemm_pfs *s, const void *base, int64_t stride,
                                     int64_t len, int64_t nrun, int64_t calls) {
    s->base = base, s->stride = stride, s->len = len, s->nrun = nrun, s->r = 0;
    s->at = (const char *)((uintptr_t)base & ~(uintptr_t)63);
    const int64_t per_run = stride % 64 == 0 ? ((int64_t)((uintptr_t)base & 63) + len + 63) / 64
                                             : (len + 63) / 64 + 1;
    const int64_t lines = nrun * per_run;
    s->per_call = calls > 0 ? (lines + calls - 1) / calls : 0;
}

/* Prefetches the next per_call lines (locality 2, prefetcht1: L2 on most
 * cores; Zen 3 fills L1 for every hint). */
static inline void gf__gemm_pfs_step(gf__gemm_pfs *s) {
    for (int64_t i = 0; i < s->per_call && s->r < s->nrun; i++) {
        __builtin_prefetch(s->at, 0, 2);
        s->at += 64;
        const char *run = s->base + s->r * s->stride;
        if (s->at >= run + s->len && ++s->r < s->nrun)
            s->at = (const char *)((uintptr_t)(run + s->stride) & ~(uintptr_t)63);
    }
}
#endif

/* Bytes at the head of each contiguous run of a B panel that are
 * prefetched (see GF_FN(task)); the hardware prefetcher follows a run once
 * it has started. */
#define GF__GEMM_PF_HEAD ((int64_t)256)

/* Sets s to prefetch the rows x cols block X(i,j) = X[i*rs + j*cs] in
 * `calls` steps, along its contiguous dimension (nothing if it has none):
 * the first GF__GEMM_PF_HEAD bytes of each run. */
static void GF_FN(pf_block)(gf__gemm_pfs *s, const GF_T *X, int64_t rs, int64_t cs, int64_t rows,
                            int64_t cols, int64_t calls) {
    const int64_t z = (int64_t)sizeof(GF_T);
    if (cs == 1)
        gf__gemm_pfs_init(s, X, rs * z, GF_FN(min)(cols * z, GF__GEMM_PF_HEAD), rows, calls);
    else if (rs == 1)
        gf__gemm_pfs_init(s, X, cs * z, GF_FN(min)(rows * z, GF__GEMM_PF_HEAD), cols, calls);
    else
        *s = (gf__gemm_pfs){0};
}

/* Task t: rows and columns of chunk (t / ncch, t % ncch), every kc block in
 * order (later kc blocks add to what the earlier ones wrote).
 *
 * How B is packed:
 * - Row-major B with a fused tile (ukr_pb): a full panel of B is packed by
 *   its first tile in the first ic block (a full mr-row tile whenever the
 *   task has mr rows), so packing B is a few stores inside the
 *   multiply-adds instead of a pass of its own; only a partial last panel
 *   is packed first.
 * - Otherwise, a B block too big to stay in cache (GF__GEMM_PF_MIN): panel
 *   by panel, each right before its column of the first ic block.
 * - Otherwise the whole block at the start of its kc block.
 * A big block's panels come from memory, and their rows (or columns, B
 * transposed) are pages apart, too far for the hardware prefetcher: read
 * straight from memory they held each fused tile up for about five
 * ordinary tiles' time (rdtsc, 256x1024x1024 on Zen 3: 10-11% of the
 * GEMM). So each panel is prefetched one panel ahead, a few lines per
 * micro-kernel call of the column before: panel jp+1 during column jp of
 * the first ic block, panel 0 of the next kc block during the last column
 * of the last ic block, panel 0 of the first kc block at the start (there
 * is nothing to overlap it with). Of a transposed panel (nr runs of kc
 * values) only the first GF__GEMM_PF_HEAD bytes of each run: the hardware
 * prefetcher follows a run once started, and prefetching all of it (17
 * lines per run) cost 5-8% at m = 64, where a column has 11 calls to
 * spread it over (on Zen 3 every prefetch hint fills L1, so a whole panel
 * evicts the one in use). Measured against prefetching the whole next kc
 * block over the current one (what this did before; its first lines were
 * evicted again before their turn came): the two MLP forward shapes
 * (fused) 5-7% faster, B transposed 2-7% faster (64x784x256 and
 * 256x{784,1024}x1024).
 * Packing the next panel a few rows per call instead, every tile then
 * reading packed B, measured 1-2% slower than before: its stores evict the
 * panel in use from L1. (A panel's 256 lines 4 KiB apart fall into 16 sets
 * of L2, which hold 128 of them: part of a prefetched panel still comes
 * from L3, under ukr_pb's own prefetch a few rows ahead.) A smaller block
 * is read from L2 or L3 and is not prefetched. */
static void GF_FN(task)(const GF_FN(job) *x, int64_t t, GF_T *ap, GF_T *bp) {
    const GF_BLK *bk = x->bk;
    const int mr = bk->mr, nr = bk->nr;
    const int64_t i0 = t / x->ncch * x->rch, i1 = GF_FN(min)(x->m, i0 + x->rch);
    const int64_t jc = t % x->ncch * x->cpan * nr, nc = GF_FN(min)(x->cpan * nr, x->n - jc);
    const int64_t npan = (nc + nr - 1) / nr, nfull = nc / nr;
    const int fuse = bk->ukr_pb && x->csb == 1 && i1 - i0 >= mr;
    const int64_t z = (int64_t)sizeof(GF_T);
    for (int64_t pc = 0; pc < x->k; pc += x->kc) {
        const int64_t kc = GF_FN(min)(x->kc, x->k - pc);
        const GF_T beta = pc == 0 ? x->beta : 1;
        const GF_FN(epi) *ep = pc + kc >= x->k ? x->ep : NULL; /* the last kc block */
        const GF_T *B = x->B + pc * x->rsb + jc * x->csb;
        const int big = kc * nc * z > GF__GEMM_PF_MIN;
        const int lazy = !fuse && big; /* panel by panel */
        if (big && pc == 0) {
            gf__gemm_pfs p0;
            GF_FN(pf_block)(&p0, B, x->rsb, x->csb, kc, GF_FN(min)(nr, nc), 1);
            gf__gemm_pfs_step(&p0);
        }
        if (fuse) {
            if (nfull < npan) GF_FN(pack_b)(kc, nc, nfull, npan, B, x->rsb, x->csb, nr, bp);
        } else if (!lazy && (!bk->pack_b || !bk->pack_b(nc, kc, B, x->rsb, x->csb, bp))) {
            GF_FN(pack_b)(kc, nc, 0, npan, B, x->rsb, x->csb, nr, bp);
        }
        for (int64_t ic = i0; ic < i1; ic += x->mc) {
            const int64_t mc = GF_FN(min)(x->mc, i1 - ic);
            const GF_T *A = x->A + ic * x->rsa + pc * x->csa;
            if (!bk->pack_a || !bk->pack_a(mc, kc, A, x->rsa, x->csa, ap))
                GF_FN(pack_a)(mc, kc, A, x->rsa, x->csa, mr, ap);
            for (int64_t jp = 0; jp < npan; jp++) {
                const int64_t jr = jp * nr, nb = GF_FN(min)(nr, nc - jr);
                GF_T *b = bp + jp * nr * kc;
                GF_T *c = x->C + ic * x->rsc + (jc + jr) * x->csc;
                const GF_T *Bj = B + jr * x->csb; /* this panel's B */
                int64_t ir = 0;
                if (fuse && ic == i0 && jp < nfull) {
                    bk->ukr_pb(kc, ap, Bj, x->rsb, b, beta, c, x->rsc, x->csc);
                    if (ep) GF_FN(ep_apply)(ep, c, x->rsc, x->csc, mr, nr, jc + jr);
                    ir = mr;
                } else if (lazy && ic == i0 &&
                           (!bk->pack_b || !bk->pack_b(nb, kc, Bj, x->rsb, x->csb, b))) {
                    GF_FN(pack_b)(kc, nb, 0, 1, Bj, x->rsb, x->csb, nr, b);
                }
                /* The panel packed next, prefetched over this column's
                 * calls (the head of each of its rows or columns). */
                gf__gemm_pfs pb = {0};
                if (big) {
                    const int64_t left = (mc - ir + mr - 1) / mr; /* calls below */
                    const GF_T *nx = NULL; /* the next panel's B, kn x nn */
                    int64_t kn = kc, nn = 0;
                    if (ic == i0 && jp + 1 < (fuse ? nfull : npan)) {
                        nx = Bj + nr * x->csb, nn = GF_FN(min)(nr, nc - jr - nr);
                    } else if (ic + x->mc >= i1 && jp == npan - 1 && pc + kc < x->k &&
                               (!fuse || nfull > 0)) {
                        nx = B + kc * x->rsb, nn = GF_FN(min)(nr, nc);
                        kn = GF_FN(min)(x->kc, x->k - pc - kc);
                    }
                    if (nx) GF_FN(pf_block)(&pb, nx, x->rsb, x->csb, kn, nn, left);
                }
                for (; ir < mc; ir += mr) {
                    gf__gemm_pfs_step(&pb);
                    /* The C rows of the tile two below: read back (beta 1)
                     * or written whole at the end of that tile, and out of
                     * cache by then (C is reloaded once per kc block). */
                    for (int64_t i = ir + 2 * mr; i < ir + 3 * mr && i < mc; i++)
                        __builtin_prefetch(c + i * x->rsc + (nb - 1) * x->csc, 1, 3);
                    bk->ukr(GF_FN(min)(mr, mc - ir), nb, kc, ap + ir * kc, b, beta,
                            c + ir * x->rsc, x->rsc, x->csc);
                    if (ep)
                        GF_FN(ep_apply)(ep, c + ir * x->rsc, x->rsc, x->csc,
                                        GF_FN(min)(mr, mc - ir), nb, jc + jr);
                }
            }
        }
    }
}

/* Packing buffers are the calling thread's scratch slots (reused across
 * calls: no allocation per GEMM once warm); slot 0 holds every thread's B
 * chunk, slot 1 every thread's A block. */
static void *GF_FN(alloc)(int slot, int64_t elems) {
    return gf__kscratch(slot, (size_t)elems * sizeof(GF_T));
}

/* Packing one element costs about as much as this many multiply-adds in the
 * micro-kernel (measured on Zen 3 with the avx2 packing: ~0.15-0.2 ns per
 * element against ~40 G multiply-adds/s); the grid planner weighs the
 * packing a grid repeats with it. */
#define GF__GEMM_PACK_COST 8
/* The most tasks per thread the planner considers. */
#define GF__GEMM_TASKS_PER_THREAD 4

/* Estimated time (in multiply-adds) of the busiest thread when nt threads
 * run the grid of r row chunks x c column chunks of mpan x npan panels: the
 * rounds of tasks it runs, each its product plus packing its A rows and B
 * columns (every chunk packs both, so finer grids repack more). */
static double GF_FN(grid_cost)(int64_t m, int64_t n, int64_t k, int mr, int nr, int64_t mpan,
                               int64_t npan, int64_t r, int64_t c, int nt) {
    const int64_t rp = (mpan + r - 1) / r, cp = (npan + c - 1) / c;
    const int64_t ntask = (mpan + rp - 1) / rp * ((npan + cp - 1) / cp);
    const double rows = (double)GF_FN(min)(m, rp * mr), cols = (double)GF_FN(min)(n, cp * nr);
    const double task = rows * cols * (double)k + GF__GEMM_PACK_COST * (rows + cols) * (double)k;
    return (double)((ntask + nt - 1) / nt) * task;
}

/* One member of a threaded GEMM's team: its own packing buffers (by
 * slot), tasks taken in turn until none is left. */
static void GF_FN(member)(void *arg, int slot) {
    GF_FN(job) *x = arg;
    GF_T *ap = x->ap + slot * x->ap_size, *bp = x->bp + slot * x->bp_size;
    for (int64_t t; (t = atomic_fetch_add_explicit(&x->next, 1, memory_order_relaxed)) < x->ntask;)
        GF_FN(task)(x, t, ap, bp);
}

/* The blocked path: plans the task grid and buffers, then runs the tasks.
 * Needs m, n, k >= 1. */
static void GF_FN(blocked)(const GF_BLK *bk, int64_t m, int64_t n, int64_t k, const GF_T *A,
                           int64_t rsa, int64_t csa, const GF_T *B, int64_t rsb, int64_t csb,
                           GF_T beta, GF_T *C, int64_t rsc, int64_t csc, const gf__par *par,
                           const GF_FN(epi) *ep) {
    const int mr = bk->mr, nr = bk->nr;
    /* The grid is planned for the threads free now: with every other
     * thread busy on its own node (independent branches), one task per nc
     * block packs each operand once instead of repacking it per chunk. */
    int nt = gf__par_plan_threads(par);
    GF_FN(job) x = {.bk = bk, .m = m, .n = n, .k = k, .A = A, .B = B, .rsa = rsa, .csa = csa,
                    .rsb = rsb, .csb = csb, .beta = beta, .C = C, .rsc = rsc, .csc = csc,
                    .ep = ep};
    const int64_t mpan = (m + mr - 1) / mr, npan = (n + nr - 1) / nr;
    const int64_t cmax = bk->nc / nr; /* panels per column chunk at most */
    /* Grid: R row chunks x Cc column chunks. One thread: one task per nc
     * columns (the classic jc loop). Threads: the grid of at most
     * GF__GEMM_TASKS_PER_THREAD tasks per thread that grid_cost says ends
     * soonest (the fewer tasks on a tie: a thread is less likely to wait
     * for one that lost its core). Tasks of unequal size or more tasks than
     * threads only pay where they save repacking. */
    const int64_t cmin = (npan + cmax - 1) / cmax;
    int64_t R = 1, Cc = cmin;
    if (nt > 1) {
        double best = -1;
        const int64_t tmax = (int64_t)nt * GF__GEMM_TASKS_PER_THREAD;
        for (int64_t r = 1; r <= mpan && r <= tmax; r++)
            for (int64_t c = cmin; c <= npan && r * c <= tmax; c++) {
                const double cost = GF_FN(grid_cost)(m, n, k, mr, nr, mpan, npan, r, c, nt);
                if (best < 0 || cost < best * 0.999) best = cost, R = r, Cc = c;
            }
    }
    x.cpan = (npan + Cc - 1) / Cc;
    x.ncch = (npan + x.cpan - 1) / x.cpan;
    /* Rows: chunks of whole mr panels, cut into as few ic blocks as fit mc,
     * evened out. */
    const int64_t rpan = (mpan + R - 1) / R;
    const int64_t rows = rpan * mr;
    const int64_t nblk = (rows + bk->mc - 1) / bk->mc;
    x.mc = ((rows + nblk - 1) / nblk + mr - 1) / mr * mr;
    x.rch = x.mc * nblk;
    x.nrch = (m + x.rch - 1) / x.rch;
    const int64_t ntask = x.ntask = x.nrch * x.ncch;
    if (nt > ntask) nt = (int)ntask;

    /* K in as few pc blocks as fit bk->kc, evened out (a multiple of 8 but
     * the last), so that no block is left short: every pc block reloads
     * and stores C. From k alone, so the summation order is too. */
    const int64_t nkb = (k + bk->kc - 1) / bk->kc;
    x.kc = GF_FN(min)(((k + nkb - 1) / nkb + 7) & ~(int64_t)7, bk->kc);
    const int64_t kc_max = GF_FN(min)(x.kc, k);
    x.bp_size = (kc_max * x.cpan * nr + 15) & ~(int64_t)15; /* keeps each block aligned */
    x.ap_size = (x.mc * kc_max + 15) & ~(int64_t)15;
    x.bp = GF_FN(alloc)(0, x.bp_size * nt);
    x.ap = GF_FN(alloc)(1, x.ap_size * nt);
    if (!x.bp || !x.ap) {
        /* Out of memory: still give the right answer, the slow way. */
        GF_FN(direct)(m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
        if (ep) GF_FN(ep_apply)(ep, C, rsc, csc, m, n, 0);
        return;
    }
    if (nt <= 1) {
        for (int64_t t = 0; t < ntask; t++) GF_FN(task)(&x, t, x.ap, x.bp);
        return;
    }
    atomic_init(&x.next, 0);
    gf__par_team(par, nt, GF_FN(member), &x);
}

/* gf__sgemm_ep's contract (kernels.h), with the variant's kernels and ep
 * (NULL: none). Picks the path from the shape and strides alone (never from
 * nt), so the bits of C do not depend on nt. The blocked path applies the
 * epilogue tile by tile; the others apply it to their whole output after
 * computing it (their work is small or bound by reading A). */
static void GF_FN(driver)(const GF_BLK *bk, int64_t m, int64_t n, int64_t k, const GF_T *A,
                          int64_t rsa, int64_t csa, const GF_T *B, int64_t rsb, int64_t csb,
                          GF_T beta, GF_T *C, int64_t rsc, int64_t csc, const gf__par *par,
                          const GF_FN(epi) *ep) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (beta != 1)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    GF_T *c = C + i * rsc + j * csc;
                    *c = beta == 0 ? 0 : beta * *c;
                }
    } else {
        /* m * n is C's size; times k it may not fit (A and B may be
         * broadcast views): the cost saturates. */
        int64_t work;
        if (__builtin_mul_overflow(m * n, k, &work)) work = INT64_MAX;
        if (work <= GF__GEMM_TINY) {
            GF_FN(direct)(m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
        } else if (n == 1) {
            /* C(:,0) = A B(:,0): a matrix-vector product; packing B would
             * pad one column out to nr. */
            GF_FN(gemv)(bk, m, k, A, rsa, csa, B, rsb, beta, C, rsc, par);
        } else if (m == 1) {
            /* C(0,:) = A(0,:) B, i.e. C(0,:)^T = B^T A(0,:)^T. */
            GF_FN(gemv)(bk, n, k, B, csb, rsb, A, csa, beta, C, csc, par);
        } else {
            GF_FN(blocked)(bk, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc,
                           work < GF__GEMM_PAR_MIN ? NULL : par, ep);
            return;
        }
    }
    if (ep) GF_FN(ep_apply)(ep, C, rsc, csc, m, n, 0);
}
