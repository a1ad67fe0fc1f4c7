/*
 * gemm_driver.h - the dtype-generic GEMM driver, included by gemm.c once per
 * dtype with these defined:
 *   GF_T       element type (float, double)
 *   GF_FN(x)   the name of function x for this dtype (gf__sgemm_x, ...)
 *   GF_BLK     the blocking/kernel record (gf__sgemm_blk, gf__dgemm_blk)
 * It defines GF_FN(driver), with gf__sgemm's contract (kernels.h) plus the
 * variant's blocking record to use. Everything else here is static.
 *
 * The blocked path is Goto/BLIS's five loops around the micro-kernel:
 *   jc (nc columns of C) > pc (kc of K; pack B panel) > ic (mc rows; pack A
 *   block) > jr (nr columns) > ir (mr rows) > micro-kernel.
 * Threads share the packed B panel (they pack it together) and split the
 * (ic, jr) space; K is never split, and each element's sum over p is the
 * micro-kernel's fixed order within a kc block, kc blocks added in order. With
 * the micro-kernel contract (an element's bits do not depend on its tile)
 * this makes C the same bits for any number of threads.
 */

/* Work at or below this many multiply-adds runs without a parallel region:
 * forking would cost more than it saves. */
#define GF__GEMM_PAR_MIN ((int64_t)64 * 64 * 64)
/* Up to this many multiply-adds the direct triple loop beats packing. */
#define GF__GEMM_TINY ((int64_t)512)
/* Rows per chunk in the axpy form of the matrix-vector product. */
#define GF__GEMV_CHUNK 256

static inline int64_t GF_FN(min)(int64_t a, int64_t b) { return a < b ? a : b; }

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
static void GF_FN(gemv_rows)(int64_t i0, int64_t i1, int64_t k, const GF_T *M, int64_t rsm,
                             int64_t csm, const GF_T *x, int64_t incx, GF_T beta, GF_T *y,
                             int64_t incy) {
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

/* y = beta*y + M x for m rows, over up to nt threads in whole chunks. */
static void GF_FN(gemv)(int64_t m, int64_t k, const GF_T *M, int64_t rsm, int64_t csm,
                        const GF_T *x, int64_t incx, GF_T beta, GF_T *y, int64_t incy, int nt) {
    if (nt <= 1 || m * k < GF__GEMM_PAR_MIN || m < 2 * GF__GEMV_CHUNK) {
        GF_FN(gemv_rows)(0, m, k, M, rsm, csm, x, incx, beta, y, incy);
        return;
    }
    int64_t nchunks = (m + GF__GEMV_CHUNK - 1) / GF__GEMV_CHUNK;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        int64_t i0 = ch * GF__GEMV_CHUNK;
        GF_FN(gemv_rows)(i0, GF_FN(min)(m, i0 + GF__GEMV_CHUNK), k, M, rsm, csm, x, incx, beta,
                         y, incy);
    }
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

/* Everything the threads of one blocked GEMM share. */
typedef struct {
    const GF_BLK *bk;
    int64_t m, n, k;
    const GF_T *A, *B;
    int64_t rsa, csa, rsb, csb;
    GF_T beta;
    GF_T *C;
    int64_t rsc, csc;
    int64_t mc;      /* rows per ic block (a multiple of mr, <= bk->mc) */
    int64_t mblocks; /* ic blocks: ceil(m / mc) */
    int64_t nsplit;  /* parts each nc panel's columns are cut into */
    GF_T *bp;        /* packed B panel, shared */
    GF_T *ap;        /* packed A blocks, one of ap_size per thread */
    int64_t ap_size;
} GF_FN(job);

/* The five loops, run by every thread of the team (or by the caller alone):
 * the worksharing loops below are orphaned, so they split among the team
 * when there is one and run whole when there is not. */
static void GF_FN(loops)(const GF_FN(job) *x) {
    const GF_BLK *bk = x->bk;
    const int mr = bk->mr, nr = bk->nr;
    int tid = 0, nthr = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nthr = omp_get_num_threads();
#endif
    GF_T *ap = x->ap + tid * x->ap_size;
    for (int64_t jc = 0; jc < x->n; jc += bk->nc) {
        const int64_t nc = GF_FN(min)(bk->nc, x->n - jc);
        const int64_t npan = (nc + nr - 1) / nr;
        const int64_t pan_per = (npan + x->nsplit - 1) / x->nsplit;
        for (int64_t pc = 0; pc < x->k; pc += bk->kc) {
            const int64_t kc = GF_FN(min)(bk->kc, x->k - pc);
            /* Later kc blocks add to what the earlier ones wrote. */
            const GF_T beta = pc == 0 ? x->beta : 1;
            const GF_T *B = x->B + pc * x->rsb + jc * x->csb;
            /* Each thread packs a contiguous range of the panels; the barrier
             * publishes the B panel, the one ending the loop below keeps it
             * until every thread is done with it. */
            GF_FN(pack_b)(kc, nc, npan * tid / nthr, npan * (tid + 1) / nthr, B, x->rsb, x->csb,
                          nr, x->bp);
#pragma omp barrier
            int64_t packed = -1;
#pragma omp for collapse(2) schedule(static)
            for (int64_t ib = 0; ib < x->mblocks; ib++)
                for (int64_t js = 0; js < x->nsplit; js++) {
                    const int64_t ic = ib * x->mc, mc = GF_FN(min)(x->mc, x->m - ic);
                    if (packed != ib) {
                        GF_FN(pack_a)(mc, kc, x->A + ic * x->rsa + pc * x->csa, x->rsa, x->csa,
                                      mr, ap);
                        packed = ib;
                    }
                    const int64_t jp1 = GF_FN(min)(npan, (js + 1) * pan_per);
                    for (int64_t jp = js * pan_per; jp < jp1; jp++) {
                        const int64_t jr = jp * nr, nb = GF_FN(min)(nr, nc - jr);
                        const GF_T *b = x->bp + jp * nr * kc;
                        GF_T *c = x->C + ic * x->rsc + (jc + jr) * x->csc;
                        for (int64_t ir = 0; ir < mc; ir += mr)
                            bk->ukr(GF_FN(min)(mr, mc - ir), nb, kc, ap + ir * kc, b, beta,
                                    c + ir * x->rsc, x->rsc, x->csc);
                    }
                }
        }
    }
}

/* Packing buffers are the calling thread's scratch slots (reused across
 * calls: no allocation per GEMM once warm). */
static void *GF_FN(alloc)(int slot, int64_t elems) {
    return gf__kscratch(slot, (size_t)elems * sizeof(GF_T));
}

/* The blocked path: plans the thread split and buffers, then runs the loops.
 * Needs m, n, k >= 1. */
static void GF_FN(blocked)(const GF_BLK *bk, int64_t m, int64_t n, int64_t k, const GF_T *A,
                           int64_t rsa, int64_t csa, const GF_T *B, int64_t rsb, int64_t csb,
                           GF_T beta, GF_T *C, int64_t rsc, int64_t csc, int nt) {
    const int mr = bk->mr, nr = bk->nr;
    GF_FN(job) x = {.bk = bk, .m = m, .n = n, .k = k, .A = A, .B = B, .rsa = rsa, .csa = csa,
                    .rsb = rsb, .csb = csb, .beta = beta, .C = C, .rsc = rsc, .csc = csc};
    /* Rows: as few ic blocks as fit mc, rounded up to a multiple of nt, then
     * evened out so no thread gets a much larger share. Columns: cut each
     * panel when there are fewer row blocks than threads (m small, n big). */
    int64_t mblocks = (m + bk->mc - 1) / bk->mc;
    if (nt > 1) mblocks = (mblocks + nt - 1) / nt * nt;
    int64_t mc = (m + mblocks - 1) / mblocks;
    mc = (mc + mr - 1) / mr * mr;
    x.mc = mc;
    x.mblocks = (m + mc - 1) / mc;
    x.nsplit = x.mblocks < nt ? (nt + x.mblocks - 1) / x.mblocks : 1;

    const int64_t kc_max = GF_FN(min)(bk->kc, k);
    const int64_t nc_max = GF_FN(min)(bk->nc, (n + nr - 1) / nr * nr);
    x.ap_size = (mc * kc_max + 15) & ~(int64_t)15; /* keeps each thread's block aligned */
    x.bp = GF_FN(alloc)(0, kc_max * nc_max);
    x.ap = GF_FN(alloc)(1, x.ap_size * nt);
    if (!x.bp || !x.ap) {
        /* Out of memory: still give the right answer, the slow way. */
        GF_FN(direct)(m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
        return;
    }
    /* Always a region of our own (a team of one when nt == 1): loops()'s
     * barriers and worksharing must never bind to a caller's team. */
#pragma omp parallel num_threads(nt) if (nt > 1)
    GF_FN(loops)(&x);
}

/* gf__sgemm / gf__dgemm's contract (kernels.h), with the variant's kernels.
 * Picks the path from the shape and strides alone (never from nt), so the
 * bits of C do not depend on nt. */
static void GF_FN(driver)(const GF_BLK *bk, int64_t m, int64_t n, int64_t k, const GF_T *A,
                          int64_t rsa, int64_t csa, const GF_T *B, int64_t rsb, int64_t csb,
                          GF_T beta, GF_T *C, int64_t rsc, int64_t csc, int nt) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (beta != 1)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    GF_T *c = C + i * rsc + j * csc;
                    *c = beta == 0 ? 0 : beta * *c;
                }
        return;
    }
    if (nt < 1) nt = 1;
    const int64_t work = m * n * k;
    if (work <= GF__GEMM_TINY) {
        GF_FN(direct)(m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc);
    } else if (n == 1) {
        /* C(:,0) = A B(:,0): a matrix-vector product; packing B would pad
         * one column out to nr. */
        GF_FN(gemv)(m, k, A, rsa, csa, B, rsb, beta, C, rsc, nt);
    } else if (m == 1) {
        /* C(0,:) = A(0,:) B, i.e. C(0,:)^T = B^T A(0,:)^T. */
        GF_FN(gemv)(n, k, B, csb, rsb, A, csa, beta, C, csc, nt);
    } else {
        GF_FN(blocked)(bk, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc,
                       work < GF__GEMM_PAR_MIN ? 1 : nt);
    }
}
