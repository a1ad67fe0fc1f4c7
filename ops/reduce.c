/*
 * reduce.c - reductions along one dim: sum_dim, mean_dim, max_dim, argmax,
 * argmax_mask (max_dim's backward); the public gf_sum/gf_mean over every
 * element; and gf__sum_to, which every broadcasting backward rule uses.
 *
 * Geometry. The input (any strides) is seen as a set of kept dims (every dim
 * but the reduced one, size-1 dims dropped, neighbours merged where their
 * strides allow) and the reduced dim (length n, stride sd). The output is
 * contiguous and row-major over the kept dims. Two kernels:
 *  - row mode: one output element per unit, reading x[base + k*sd]
 *    (sd == 1 is the contiguous last-dim case: a row reduction);
 *  - column mode (sd != 1 and the innermost kept dim has stride 1, e.g.
 *    reducing the first or a middle dim of a contiguous tensor): a unit is up
 *    to GF__RC adjacent output elements whose inputs are adjacent in memory,
 *    accumulated row by row (vectorizable over the columns).
 *
 * Determinism. The reduced dim is cut into blocks of GF__RB elements. Each
 * block gives a partial per output element in a fixed order (row mode: 8
 * interleaved lanes, then the lanes pairwise, then the tail; column mode:
 * rows in groups of four, ((x0 + x1) + (x2 + x3)) added to the partial, then
 * the leftover rows), and the partials are added in block order from 0.
 * Threads only ever divide units, or (when there are few units and a long
 * reduced dim) (unit, block) pairs whose partials are then combined in block
 * order: the same operations either way, so the bits do not depend on the
 * thread count, nor on which of the two schedules ran. The order depends
 * only on the input's shape and strides.
 * Reading: one core streaming one block at a time reads ~10-11 GB/s here,
 * so long contiguous f32 sums read four blocks far apart side by side (rows
 * G apart, or (unit, block) pairs G apart on the split path; gf__vmath's
 * rowsum4, each block in the one-block order): ~19-20 GB/s, same bits.
 * max_dim over long contiguous f32 rows likewise takes four rows at a time
 * (rowmax4; max is exact in any order).
 * Accumulation: f32 and f64 in double (f32 results are rounded once, at the
 * end); i64 in uint64 (wrapping, as PyTorch's int64 sum does, without UB).
 *
 * max/argmax: the first maximum along the dim; NaN counts as larger than any
 * number (the first NaN wins), as in PyTorch.
 */
#include "ops.h"

#include <stdlib.h>

#define GF__RB 1024     /* block length along the reduced dim: fixes the summation order */
#define GF__RC 1024     /* output elements per unit in column mode (stack buffers: <= 32 KiB) */
#define GF__SPLIT 64    /* below this many units, long reductions split over blocks too */
#define GF__PAR 32768   /* elements read below which a kernel stays on one thread */
#define GF__TILE 16384  /* least elements read by one tile of a split loop */

typedef struct {
    int nk;                                /* kept dims (>= 1) */
    int64_t ksh[GF_MAX_DIMS], kst[GF_MAX_DIMS];
    int64_t n, sd;                         /* reduced length and stride */
    int64_t nout;                          /* output elements */
    int64_t nblk;                          /* blocks of GF__RB along the reduced dim */
    bool col;                              /* column mode */
    int64_t L, ncc;                        /* column mode: row length, units per row */
    int64_t nunits, width;                 /* units; most output elements in one unit */
} gf__rgeom;

static void gf__rgeom_init(gf__rgeom *g, const gf_tensor *x, int d) {
    g->nk = 0;
    g->nout = 1;
    g->n = x->ndim ? x->shape[d] : 1;
    g->sd = g->n > 1 ? x->strides[d] : 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i == d) continue;
        g->nout *= x->shape[i];
        if (x->shape[i] == 1) continue;
        if (g->nk && g->kst[g->nk - 1] == x->strides[i] * x->shape[i]) {
            g->ksh[g->nk - 1] *= x->shape[i];
            g->kst[g->nk - 1] = x->strides[i];
        } else {
            g->ksh[g->nk] = x->shape[i];
            g->kst[g->nk] = x->strides[i];
            g->nk++;
        }
    }
    if (g->nk == 0) {
        g->nk = 1;
        g->ksh[0] = 1;
        g->kst[0] = 0;
    }
    g->nblk = (g->n + GF__RB - 1) / GF__RB;
    g->col = g->sd != 1 && g->kst[g->nk - 1] == 1 && g->ksh[g->nk - 1] > 1;
    if (g->col) {
        g->L = g->ksh[g->nk - 1];
        g->ncc = (g->L + GF__RC - 1) / GF__RC;
        g->nunits = g->nout / g->L * g->ncc;
        g->width = g->L < GF__RC ? g->L : GF__RC;
    } else {
        g->L = g->ncc = 1;
        g->nunits = g->nout;
        g->width = 1;
    }
}

/* Input offset of index o, row-major over the first nk kept dims. */
static inline int64_t gf__koff(const gf__rgeom *g, int nk, int64_t o) {
    if (nk == 1) return o * g->kst[0]; /* the common case, without divisions */
    int64_t off = 0;
    for (int i = nk - 1; i >= 0; i--) {
        off += (o % g->ksh[i]) * g->kst[i];
        o /= g->ksh[i];
    }
    return off;
}

/* Unit u's first output element, its element count and its first input
 * element (block 0). */
static inline int64_t gf__unit(const gf__rgeom *g, int64_t u, int64_t *w, int64_t *xoff) {
    if (!g->col) {
        *w = 1;
        *xoff = gf__koff(g, g->nk, u);
        return u;
    }
    int64_t r = u / g->ncc, j0 = (u % g->ncc) * GF__RC;
    *w = g->L - j0 < GF__RC ? g->L - j0 : GF__RC;
    *xoff = gf__koff(g, g->nk - 1, r) + j0;
    return r * g->L + j0;
}

static inline int64_t gf__blen(const gf__rgeom *g, int64_t b) {
    int64_t len = g->n - b * GF__RB;
    return len < GF__RB ? len : GF__RB;
}

/* Whether (unit, block) pairs are worth spreading over threads: few units,
 * a long reduced dim. A function of the shape only. */
static inline bool gf__split(const gf__rgeom *g) {
    return g->nout * g->n > GF__PAR && g->nblk > 1 && g->nunits < GF__SPLIT;
}

/* fn(arg, lo, hi) over [0, n), an iteration reading about `cost` elements:
 * tiles cut from the sizes alone on the kernel's threads when `cond` makes
 * splitting worth it, else one call on this thread. Iterations write their
 * own outputs, so the bits are the same either way. */
static void gf__rfor(const gf__par *par, bool cond, int64_t n, int64_t cost, gf__range_fn fn,
                     void *arg) {
    if (GF__PAR_WORTH(par, cond))
        gf__par_for(par, n, gf__par_grain(n, cost, GF__TILE), fn, arg);
    else
        fn(arg, 0, n);
}

/* ------------------------------------------------------------ sum / mean */

/* Column-mode partials through the vector table (f32, f64: AVX2 or SSE2 code
 * with the same order, so the same bits); false for i64 (the loop below). */
static inline bool gf__colsum_f32(const float *p, int64_t sd, int64_t len, int64_t w,
                                  double *part) {
    gf__vmath_now()->colsum_f32(p, sd, len, w, part);
    return true;
}
static inline bool gf__colsum_f64(const double *p, int64_t sd, int64_t len, int64_t w,
                                  double *part) {
    gf__vmath_now()->colsum_f64(p, sd, len, w, part);
    return true;
}
static inline bool gf__colsum_i64(const int64_t *p, int64_t sd, int64_t len, int64_t w,
                                  uint64_t *part) {
    (void)p, (void)sd, (void)len, (void)w, (void)part;
    return false;
}

/* Partials of block b for unit u: part[0..w). T input, A accumulator;
 * COLSUM(p, sd, len, w, part) may do the column mode (see above). */
#define GF__SUM_PART(NAME, T, A, COLSUM)                                                    \
    static inline void NAME(const gf__rgeom *g, const T *x, int64_t u, int64_t b, A *part) {        \
        int64_t w, off, len = gf__blen(g, b), sd = g->sd;                                   \
        gf__unit(g, u, &w, &off);                                                           \
        const T *p = x + off + b * GF__RB * sd;                                             \
        if (!g->col) {                                                                      \
            A l[8] = {0};                                                                   \
            int64_t k = 0;                                                                  \
            if (sd == 1)                                                                    \
                for (; k + 8 <= len; k += 8)                                                \
                    for (int q = 0; q < 8; q++) l[q] += (A)p[k + q];                        \
            else                                                                            \
                for (; k + 8 <= len; k += 8)                                                \
                    for (int q = 0; q < 8; q++) l[q] += (A)p[(k + q) * sd];                 \
            A s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));        \
            for (; k < len; k++) s += (A)p[k * sd];                                         \
            part[0] = s;                                                                    \
            return;                                                                         \
        }                                                                                   \
        if (COLSUM(p, sd, len, w, part)) return;                                            \
        for (int64_t j = 0; j < w; j++) part[j] = 0;                                        \
        int64_t k = 0;                                                                      \
        for (; k + 4 <= len; k += 4) { /* 4 rows per pass over part[] */                    \
            const T *q0 = p + k * sd, *q1 = q0 + sd, *q2 = q1 + sd, *q3 = q2 + sd;          \
            for (int64_t j = 0; j < w; j++)                                                 \
                part[j] += ((A)q0[j] + (A)q1[j]) + ((A)q2[j] + (A)q3[j]);                   \
        }                                                                                   \
        for (; k < len; k++) {                                                              \
            const T *q = p + k * sd;                                                        \
            for (int64_t j = 0; j < w; j++) part[j] += (A)q[j];                             \
        }                                                                                   \
    }

/* Four row-mode partials at once (f32: gf__vmath's rowsum4, see kernels.h):
 * q[i] = the partial NAME##_part gives for the full block (GF__RB contiguous
 * elements) at p[i], the same operations in the same order, the four
 * blocks read side by side. One core reading one stream gets ~10-11 GB/s
 * here, four streams ~15-16 (more lines in flight), so long sums read four
 * blocks at once; each block's partial, hence the bits, stay the same.
 * false: no such kernel for this type (the blocks go one at a time). */
static inline bool gf__sum_f32_part4(const float *const p[4], double q[4]) {
    gf__vmath_now()->rowsum4_f32(p, GF__RB, q);
    return true;
}
static inline bool gf__sum_f64_part4(const double *const p[4], double q[4]) {
    (void)p, (void)q;
    return false;
}
static inline bool gf__sum_i64_part4(const int64_t *const p[4], uint64_t q[4]) {
    (void)p, (void)q;
    return false;
}

/* Whether pair t = (unit, block) is a full contiguous row-mode block (the
 * shape NAME##_part4 takes); its first element at *p. */
#define GF__SUM_FULL(NAME, T)                                                               \
    static inline bool NAME(const gf__rgeom *g, const T *x, int64_t t, const T **p) {       \
        const int64_t u = t / g->nblk, b = t % g->nblk;                                     \
        if (g->col || g->sd != 1 || gf__blen(g, b) != GF__RB) return false;                 \
        int64_t w, off;                                                                     \
        gf__unit(g, u, &w, &off);                                                           \
        *p = x + off + b * GF__RB;                                                          \
        return true;                                                                        \
    }

/* out (kept shape, contiguous) = sum (or mean) over the reduced dim of x. */
#define GF__SUM_KERNEL(NAME, T, A)                                                          \
    GF__SUM_PART(NAME##_part, T, A, NAME##_colsum)                                                         \
    GF__SUM_FULL(NAME##_full, T)                                                            \
    /* The partials of pairs t, t + G, t + 2G, t + 3G (those below nt) into sc: four      \
     * streams when all four are full row-mode blocks. */                                  \
    static inline void NAME##_group(const gf__rgeom *g, const T *x, int64_t t, int64_t G,   \
                                    int64_t nt, A *sc) {                                    \
        const T *p[4];                                                                      \
        bool full = t + 3 * G < nt;                                                         \
        for (int i = 0; full && i < 4; i++) full = NAME##_full(g, x, t + i * G, &p[i]);     \
        A q[4];                                                                             \
        if (full && NAME##_part4(p, q)) {                                                   \
            for (int i = 0; i < 4; i++) sc[(t + i * G) * g->width] = q[i];                  \
            return;                                                                         \
        }                                                                                   \
        for (int64_t v = t; v < nt; v += G)                                                 \
            NAME##_part(g, x, v / g->nblk, v % g->nblk, sc + v * g->width);                 \
    }                                                                                       \
    static void NAME##_fin(const gf__rgeom *g, int64_t o, int64_t w, const A *tot, T *out,  \
                           bool mean) {                                                     \
        for (int64_t j = 0; j < w; j++)                                                     \
            out[o + j] = mean ? (T)((double)tot[j] / (double)g->n) : (T)tot[j];             \
    }                                                                                       \
    /* What the tiles below read (the kernel waits for them: &g may be taken). */           \
    typedef struct {                                                                        \
        const gf__rgeom *g;                                                                 \
        const T *x;                                                                         \
        T *out;                                                                             \
        A *sc;         /* split path: the partials of every (unit, block) pair */           \
        int64_t nt, G; /* pairs (split path); groups of four G apart */                     \
        bool mean;                                                                          \
    } NAME##_args;                                                                          \
    /* Split path: groups [lo, hi) of four pairs G apart, partials into sc. */              \
    static void NAME##_pairs(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        for (int64_t t = lo; t < hi; t++) NAME##_group(c->g, c->x, t, c->G, c->nt, c->sc);  \
    }                                                                                       \
    /* Short rows [lo, hi): one partial is the result. */                                   \
    static void NAME##_short(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__rgeom *g = c->g;                                                          \
        const T *x = c->x;                                                                  \
        T *out = c->out;                                                                    \
        const bool mean = c->mean;                                                          \
        for (int64_t u = lo; u < hi; u++) {                                                 \
            A tot = 0, part = 0;                                                            \
            NAME##_part(g, x, u, 0, &part);                                                 \
            tot += part; /* as below: 0 + partial */                                        \
            out[u] = mean ? (T)((double)tot / (double)g->n) : (T)tot;                       \
        }                                                                                   \
    }                                                                                       \
    /* Long rows: groups [lo, hi) of four rows G apart, read side by side. */               \
    static void NAME##_rows4(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__rgeom *g = c->g;                                                          \
        const T *x = c->x;                                                                  \
        T *out = c->out;                                                                    \
        const int64_t G = c->G;                                                             \
        const bool mean = c->mean;                                                          \
        for (int64_t j = lo; j < hi; j++) {                                                 \
            int64_t us[4], n4 = 0;                                                          \
            for (int i = 0; i < 4; i++)                                                     \
                if (j + i * G < g->nunits) us[n4++] = j + i * G;                            \
            A tot[4] = {0, 0, 0, 0}, q[4];                                                  \
            for (int64_t b = 0; b < g->nblk; b++) {                                         \
                const T *p[4];                                                              \
                bool full = n4 == 4;                                                        \
                for (int i = 0; full && i < 4; i++)                                         \
                    full = NAME##_full(g, x, us[i] * g->nblk + b, &p[i]);                   \
                if (full && NAME##_part4(p, q)) {                                           \
                    for (int i = 0; i < 4; i++) tot[i] += q[i];                             \
                    continue;                                                               \
                }                                                                           \
                for (int64_t i = 0; i < n4; i++) {                                          \
                    NAME##_part(g, x, us[i], b, &q[0]);                                     \
                    tot[i] += q[0];                                                         \
                }                                                                           \
            }                                                                               \
            for (int64_t i = 0; i < n4; i++) NAME##_fin(g, us[i], 1, &tot[i], out, mean);   \
        }                                                                                   \
    }                                                                                       \
    /* Units [lo, hi), block by block. */                                                   \
    static void NAME##_units(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__rgeom *g = c->g;                                                          \
        const T *x = c->x;                                                                  \
        T *out = c->out;                                                                    \
        const bool mean = c->mean;                                                          \
        for (int64_t u = lo; u < hi; u++) {                                                 \
            A tot[GF__RC], part[GF__RC];                                                    \
            int64_t w, off, o = gf__unit(g, u, &w, &off);                                   \
            for (int64_t j = 0; j < w; j++) tot[j] = 0;                                     \
            for (int64_t b = 0; b < g->nblk; b++) {                                         \
                NAME##_part(g, x, u, b, part);                                              \
                for (int64_t j = 0; j < w; j++) tot[j] += part[j];                          \
            }                                                                               \
            NAME##_fin(g, o, w, tot, out, mean);                                            \
        }                                                                                   \
    }                                                                                       \
    static void NAME(gf__node *nd, bool mean) {                                             \
        const gf_tensor *X = nd->in[0];                                                     \
        gf__rgeom g;                                                                        \
        gf__rgeom_init(&g, X, nd->a.dim);                                                   \
        T *out = gf__ptr(nd->out);                                                          \
        if (g.nout == 0) return;                                                            \
        if (g.n == 0) { /* an empty sum is 0, an empty mean 0/0 */                          \
            for (int64_t o = 0; o < g.nout; o++) out[o] = mean ? (T)NAN : (T)0;             \
            return;                                                                         \
        }                                                                                   \
        const T *x = gf__ptr(X);                                                            \
        A *sc = gf__split(&g)                                                               \
                    ? gf__kscratch(2, (size_t)(g.nunits * g.nblk * g.width) * sizeof *sc)            \
                    : NULL;                                                                 \
        if (sc) { /* partials of every (unit, block) in parallel, then in order */          \
            const int64_t nt = g.nunits * g.nblk, G = (nt + 3) / 4;                         \
            NAME##_args c = {&g, x, out, sc, nt, G, mean};                                  \
            gf__rfor(&nd->par, true, G, 4 * g.width * GF__RB, NAME##_pairs, &c);            \
            for (int64_t u = 0; u < g.nunits; u++) {                                        \
                A tot[GF__RC];                                                              \
                int64_t w, off, o = gf__unit(&g, u, &w, &off);                              \
                for (int64_t j = 0; j < w; j++) tot[j] = 0;                                 \
                for (int64_t b = 0; b < g.nblk; b++) {                                      \
                    const A *part = sc + (u * g.nblk + b) * g.width;                        \
                    for (int64_t j = 0; j < w; j++) tot[j] += part[j];                      \
                }                                                                           \
                NAME##_fin(&g, o, w, tot, out, mean);                                       \
            }                                                                               \
            return;                                                                         \
        }                                                                                   \
        bool par = g.nout * g.n > GF__PAR;                                                  \
        NAME##_args c = {&g, x, out, NULL, 0, 0, mean};                                     \
        if (!g.col && g.nblk == 1) { /* short rows: one partial is the result */            \
            gf__rfor(&nd->par, par, g.nunits, g.n, NAME##_short, &c);                       \
            return;                                                                         \
        }                                                                                   \
        if (!g.col && g.nunits >= 4) { /* long rows: four rows G apart side by side */      \
            c.G = (g.nunits + 3) / 4;                                                       \
            gf__rfor(&nd->par, par, c.G, 4 * g.n, NAME##_rows4, &c);                        \
            return;                                                                         \
        }                                                                                   \
        gf__rfor(&nd->par, par, g.nunits, g.width * g.n, NAME##_units, &c);                 \
    }

#define gf__sum_f32_colsum gf__colsum_f32
#define gf__sum_f64_colsum gf__colsum_f64
#define gf__sum_i64_colsum gf__colsum_i64
GF__SUM_KERNEL(gf__sum_f32, float, double)
GF__SUM_KERNEL(gf__sum_f64, double, double)
GF__SUM_KERNEL(gf__sum_i64, int64_t, uint64_t)

static void gf__sum_any(gf__node *n, bool mean) {
    switch (n->out->dtype) {
    case GF_F32: gf__sum_f32(n, mean); break;
    case GF_F64: gf__sum_f64(n, mean); break;
    case GF_I64: gf__sum_i64(n, mean); break;
    }
}

void gf__fwd_sum_dim(gf__node *n) { gf__sum_any(n, false); }
void gf__fwd_mean_dim(gf__node *n) { gf__sum_any(n, true); }

/* --------------------------------------------------------- max / argmax */

/* v beats the best so far: strictly larger, or the first NaN. */
#define GF__GT_F(v, best) ((v) > (best) || (isnan(v) && !isnan(best)))
#define GF__GT_I(v, best) ((v) > (best))
/* The same as branch-free bit operations (vectorizable): v != v is isnan. */
#define GF__GTV_F(v, best) (((v) > (best)) | (((v) != (v)) & ((best) == (best))))
#define GF__GTV_I(v, best) ((v) > (best))
/* Whether a row block is scanned by value first: floats only (a NaN ends
 * the search at once), where the max pass vectorizes. */
#define GF__ISNAN_F(v) ((v) != (v))
#define GF__ISNAN_I(v) 0

/* Best value and its index (along the whole dim) of block b for unit u. */
#define GF__MAX_PART(NAME, T, GT, GTV, ISNAN)                                                           \
    static inline void NAME(const gf__rgeom *g, const T *x, int64_t u, int64_t b, T *pv,           \
                     int64_t *pi) {                                                         \
        int64_t w, off, len = gf__blen(g, b), sd = g->sd, k0 = b * GF__RB;                  \
        gf__unit(g, u, &w, &off);                                                           \
        const T *p = x + off + k0 * sd;                                                     \
        if (!g->col) {                                                                      \
            T best = p[0];                                                                  \
            int64_t bi = 0, k = 1;                                                          \
            if (sd == 1 && len >= 16) {                                                     \
                /* Two passes over the block (in L1 for the second): the max \
                 * value, 8 lanes with no index, and whether a NaN occurs;    \
                 * then the first element equal to it (or the first NaN).     \
                 * That is the first maximum, as the one-pass scan finds. */  \
                T lv[8];                                                                    \
                int nan = 0;                                                                \
                for (int q = 0; q < 8; q++) lv[q] = p[q], nan |= ISNAN(p[q]);               \
                for (k = 8; k + 8 <= len; k += 8)                                           \
                    for (int q = 0; q < 8; q++) {                                           \
                        T v = p[k + q];                                                     \
                        nan |= ISNAN(v);                                                    \
                        lv[q] = v > lv[q] ? v : lv[q];                                      \
                    }                                                                       \
                const int64_t kend = k;                                                     \
                T mv = lv[0];                                                               \
                for (int q = 1; q < 8; q++) mv = lv[q] > mv ? lv[q] : mv;                   \
                /* mv (or, with nan, a NaN) is in [0, kend): this ends. Chunks of   \
                 * 8 are tested whole (vectorizable), then the hit is located. */  \
                for (bi = 0; bi + 8 <= kend; bi += 8) {                                     \
                    int hit = 0;                                                            \
                    for (int q = 0; q < 8; q++)                                             \
                        hit |= nan ? ISNAN(p[bi + q]) : p[bi + q] == mv;                    \
                    if (hit) break;                                                         \
                }                                                                           \
                while (nan ? !ISNAN(p[bi]) : p[bi] != mv) bi++;                             \
                best = p[bi];                                                               \
                k = kend;                                                                   \
            }                                                                               \
            for (; k < len; k++) {                                                          \
                T v = p[k * sd];                                                            \
                if (GT(v, best)) best = v, bi = k;                                          \
            }                                                                               \
            pv[0] = best;                                                                   \
            pi[0] = k0 + bi;                                                                \
            return;                                                                         \
        }                                                                                   \
        /* Indices within the block as int32 (the values' width for f32), \
         * compared without branches: the row loop vectorizes. */            \
        int32_t li[GF__RC];                                                                 \
        for (int64_t j = 0; j < w; j++) pv[j] = p[j], li[j] = 0;                            \
        for (int64_t k = 1; k < len; k++) {                                                 \
            const T *q = p + k * sd;                                                        \
            const int32_t kk = (int32_t)k;                                                  \
            for (int64_t j = 0; j < w; j++) {                                               \
                T v = q[j], bv = pv[j];                                                     \
                int gt = GTV(v, bv);                                                        \
                pv[j] = gt ? v : bv;                                                        \
                li[j] = gt ? kk : li[j];                                                    \
            }                                                                               \
        }                                                                                   \
        for (int64_t j = 0; j < w; j++) pi[j] = k0 + li[j];                                 \
    }

/* Where a max kernel writes: values (vout), indices (iout), and/or 1 at the
 * max of a zeroed mask shaped like the input (mask, minner = the product of
 * the input dims after the reduced one). Any may be NULL. */
#define GF__MAX_KERNEL(NAME, T, GT, GTV, ISNAN)                                                         \
    GF__MAX_PART(NAME##_part, T, GT, GTV, ISNAN)                                                        \
    static void NAME##_fin(const gf__rgeom *g, int64_t o, int64_t w, const T *bv,           \
                           const int64_t *bi, T *vout, int64_t *iout, T *mask,              \
                           int64_t minner) {                                                \
        for (int64_t j = 0; j < w; j++) {                                                   \
            if (vout) vout[o + j] = bv[j];                                                  \
            if (iout) iout[o + j] = bi[j];                                                  \
            if (mask) {                                                                     \
                int64_t e = o + j;                                                          \
                mask[(e / minner * g->n + bi[j]) * minner + e % minner] = (T)1;             \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    /* What the tiles below read (the kernel waits for them: &g may be taken). */           \
    typedef struct {                                                                        \
        const gf__rgeom *g;                                                                 \
        const T *x;                                                                         \
        T *sv, *vout, *mask; /* sv, si: split path, the best of each (unit, block) */       \
        int64_t *si, *iout, minner;                                                         \
    } NAME##_args;                                                                          \
    /* Split path: the bests of (unit, block) pairs [lo, hi) into sv, si. */                \
    static void NAME##_pairs(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__rgeom *g = c->g;                                                          \
        for (int64_t t = lo; t < hi; t++)                                                   \
            NAME##_part(g, c->x, t / g->nblk, t % g->nblk, c->sv + t * g->width,            \
                        c->si + t * g->width);                                              \
    }                                                                                       \
    /* Units [lo, hi), block by block. */                                                   \
    static void NAME##_units(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__rgeom *g = c->g;                                                          \
        const T *x = c->x;                                                                  \
        T *vout = c->vout, *mask = c->mask;                                                 \
        int64_t *iout = c->iout, minner = c->minner;                                        \
        for (int64_t u = lo; u < hi; u++) {                                                 \
            T bv[GF__RC], pv[GF__RC];                                                       \
            int64_t bi[GF__RC], pi[GF__RC], w, off, o = gf__unit(g, u, &w, &off);           \
            for (int64_t b = 0; b < g->nblk; b++) {                                         \
                NAME##_part(g, x, u, b, pv, pi);                                            \
                for (int64_t j = 0; j < w; j++)                                             \
                    if (b == 0 || GT(pv[j], bv[j])) bv[j] = pv[j], bi[j] = pi[j];           \
            }                                                                               \
            NAME##_fin(g, o, w, bv, bi, vout, iout, mask, minner);                          \
        }                                                                                   \
    }                                                                                       \
    static void NAME(gf__node *nd, T *vout, int64_t *iout, T *mask, int64_t minner) {       \
        const gf_tensor *X = nd->in[0];                                                     \
        gf__rgeom g;                                                                        \
        gf__rgeom_init(&g, X, nd->a.dim);                                                   \
        if (g.nout == 0) return;                                                            \
        if (g.n == 0) { /* refused at record time; kept safe here */                        \
            gf__kernel_error(nd, GF_EINVAL, "gf_%s: reduction over an empty dim",           \
                             gf__op_names[nd->op]);                                         \
            return;                                                                         \
        }                                                                                   \
        const T *x = gf__ptr(X);                                                            \
        size_t per = (size_t)(g.nunits * g.nblk * g.width);                                 \
        T *sv = gf__split(&g) ? gf__kscratch(2, per * sizeof *sv) : NULL;                            \
        int64_t *si = sv ? gf__kscratch(3, per * sizeof *si) : NULL;                                 \
        if (si) { /* per-block bests in parallel, then in block order */                    \
            int64_t nt = g.nunits * g.nblk;                                                 \
            NAME##_args c = {&g, x, sv, vout, mask, si, iout, minner};                      \
            gf__rfor(&nd->par, true, nt, g.width * GF__RB, NAME##_pairs, &c);               \
            for (int64_t u = 0; u < g.nunits; u++) {                                        \
                T bv[GF__RC];                                                               \
                int64_t bi[GF__RC], w, off, o = gf__unit(&g, u, &w, &off);                  \
                for (int64_t b = 0; b < g.nblk; b++) {                                      \
                    const T *pv = sv + (u * g.nblk + b) * g.width;                          \
                    const int64_t *pi = si + (u * g.nblk + b) * g.width;                    \
                    for (int64_t j = 0; j < w; j++)                                         \
                        if (b == 0 || GT(pv[j], bv[j])) bv[j] = pv[j], bi[j] = pi[j];       \
                }                                                                           \
                NAME##_fin(&g, o, w, bv, bi, vout, iout, mask, minner);                     \
            }                                                                               \
            return;                                                                         \
        }                                                                                   \
        bool par = g.nout * g.n > GF__PAR;                                                  \
        NAME##_args c = {&g, x, NULL, vout, mask, NULL, iout, minner};                      \
        gf__rfor(&nd->par, par, g.nunits, g.width * g.n, NAME##_units, &c);                 \
    }

GF__MAX_KERNEL(gf__max_f32, float, GF__GT_F, GF__GTV_F, GF__ISNAN_F)
GF__MAX_KERNEL(gf__max_f64, double, GF__GT_F, GF__GTV_F, GF__ISNAN_F)
GF__MAX_KERNEL(gf__max_i64, int64_t, GF__GT_I, GF__GTV_I, GF__ISNAN_I)

/* Max values only (max_dim's forward, f32/f64): no index is tracked, so the
 * passes are the vector table's row max and column max with NaNs skipped
 * and flagged (order-free: max is exact in any order). The first maximum's
 * own bits are then restored where the order could show: a flagged line
 * gets its first NaN, and a zero maximum the first zero's sign (the first
 * of -0 and +0). Blocks and threads as the max kernel above. */
#define GF__MAXV_KERNEL(NAME, T, U, SFX)                                                    \
    static void NAME##_part(const gf__vmath *vm, const gf__rgeom *g, const T *x, int64_t u, \
                            int64_t b, T *mv, U *nf) {                                      \
        int64_t w, off, len = gf__blen(g, b), sd = g->sd;                                   \
        gf__unit(g, u, &w, &off);                                                           \
        const T *p = x + off + b * GF__RB * sd;                                             \
        if (!g->col) {                                                                      \
            int nan = 0;                                                                    \
            T m = -INFINITY;                                                                \
            if (sd == 1) {                                                                  \
                m = vm->max_##SFX(p, len, &nan);                                            \
            } else {                                                                        \
                for (int64_t k = 0; k < len; k++) {                                         \
                    T v = p[k * sd];                                                        \
                    m = v > m ? v : m;                                                      \
                    nan |= v != v;                                                          \
                }                                                                           \
            }                                                                               \
            mv[0] = m;                                                                      \
            nf[0] = (U)nan;                                                                 \
            return;                                                                         \
        }                                                                                   \
        for (int64_t j = 0; j < w; j++) mv[j] = -INFINITY, nf[j] = 0;                       \
        vm->colmax_##SFX(p, sd, len, w, mv, nf);                                            \
    }                                                                                       \
    /* Unit u's results from the running mv/nf: the first NaN or first zero         \
     * where needed (rare: a scan of that line). */                                 \
    static void NAME##_fin(const gf__rgeom *g, const T *x, int64_t u, const T *mv,          \
                           const U *nf, T *out) {                                           \
        int64_t w, off, o = gf__unit(g, u, &w, &off);                                       \
        for (int64_t j = 0; j < w; j++) {                                                   \
            T v = mv[j];                                                                    \
            if (nf[j] || v == 0) {                                                  \
                const T *line = x + off + j;                                                \
                int64_t k = 0;                                                              \
                while (nf[j] ? line[k * g->sd] == line[k * g->sd] : line[k * g->sd] != 0) k++; \
                v = line[k * g->sd];                                                        \
            }                                                                               \
            out[o + j] = v;                                                                 \
        }                                                                                   \
    }                                                                                       \
    /* What the tiles below read (the kernel waits for them: &g may be taken). */           \
    typedef struct {                                                                        \
        const gf__vmath *vm;                                                                \
        const gf__rgeom *g;                                                                 \
        const T *x;                                                                         \
        T *out, *sv; /* sv, sn: split path, the maxima of each (unit, block) */             \
        U *sn;                                                                              \
        int64_t G; /* groups of four rows G apart */                                        \
    } NAME##_args;                                                                          \
    /* Split path: the maxima of (unit, block) pairs [lo, hi) into sv, sn. */               \
    static void NAME##_pairs(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__rgeom *g = c->g;                                                          \
        for (int64_t t = lo; t < hi; t++)                                                   \
            NAME##_part(c->vm, g, c->x, t / g->nblk, t % g->nblk, c->sv + t * g->width,     \
                        c->sn + t * g->width);                                              \
    }                                                                                       \
    /* Long contiguous rows: groups [lo, hi) of four rows G apart (rowmax4). */             \
    static void NAME##_rows4(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__vmath *vm = c->vm;                                                        \
        const gf__rgeom *g = c->g;                                                          \
        const T *x = c->x;                                                                  \
        T *out = c->out;                                                                    \
        const int64_t G = c->G;                                                             \
        for (int64_t j = lo; j < hi; j++) {                                                 \
            int64_t us[4], n4 = 0;                                                          \
            for (int i = 0; i < 4; i++)                                                     \
                if (j + i * G < g->nunits) us[n4++] = j + i * G;                            \
            T bv[4];                                                                        \
            U bn[4];                                                                        \
            if (n4 == 4) {                                                                  \
                const T *p[4];                                                              \
                int nan[4] = {0, 0, 0, 0};                                                  \
                for (int i = 0; i < 4; i++) {                                               \
                    int64_t w, off;                                                         \
                    gf__unit(g, us[i], &w, &off);                                           \
                    p[i] = x + off;                                                         \
                }                                                                           \
                NAME##_max4(vm, p, g->n, bv, nan);                                          \
                for (int i = 0; i < 4; i++) bn[i] = (U)nan[i];                              \
            } else {                                                                        \
                for (int64_t i = 0; i < n4; i++) {                                          \
                    T pv;                                                                   \
                    U pn;                                                                   \
                    NAME##_part(vm, g, x, us[i], 0, &bv[i], &bn[i]);                        \
                    for (int64_t b = 1; b < g->nblk; b++) {                                 \
                        NAME##_part(vm, g, x, us[i], b, &pv, &pn);                          \
                        bv[i] = pv > bv[i] ? pv : bv[i];                                    \
                        bn[i] |= pn;                                                        \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
            for (int64_t i = 0; i < n4; i++) NAME##_fin(g, x, us[i], &bv[i], &bn[i], out);  \
        }                                                                                   \
    }                                                                                       \
    /* Units [lo, hi), block by block. */                                                   \
    static void NAME##_units(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *c = arg;                                                         \
        const gf__vmath *vm = c->vm;                                                        \
        const gf__rgeom *g = c->g;                                                          \
        const T *x = c->x;                                                                  \
        T *out = c->out;                                                                    \
        for (int64_t u = lo; u < hi; u++) {                                                 \
            T bv[GF__RC], pv[GF__RC];                                                       \
            U bn[GF__RC], pn[GF__RC];                                                       \
            int64_t w, off;                                                                 \
            gf__unit(g, u, &w, &off);                                                       \
            NAME##_part(vm, g, x, u, 0, bv, bn);                                            \
            for (int64_t b = 1; b < g->nblk; b++) {                                         \
                NAME##_part(vm, g, x, u, b, pv, pn);                                        \
                for (int64_t j = 0; j < w; j++) {                                           \
                    bv[j] = pv[j] > bv[j] ? pv[j] : bv[j];                                  \
                    bn[j] |= pn[j];                                                         \
                }                                                                           \
            }                                                                               \
            NAME##_fin(g, x, u, bv, bn, out);                                               \
        }                                                                                   \
    }                                                                                       \
    static void NAME(gf__node *nd, T *out) {                                                \
        const gf_tensor *X = nd->in[0];                                                     \
        gf__rgeom g;                                                                        \
        gf__rgeom_init(&g, X, nd->a.dim);                                                   \
        if (g.nout == 0 || g.n == 0) return; /* an empty dim is refused at record time */   \
        const T *x = gf__ptr(X);                                                            \
        const gf__vmath *vm = gf__vmath_now();                                              \
        size_t per = (size_t)(g.nunits * g.nblk * g.width);                                 \
        T *sv = gf__split(&g) ? gf__kscratch(2, per * sizeof *sv) : NULL;                   \
        U *sn = sv ? gf__kscratch(3, per * sizeof *sn) : NULL;                              \
        if (sn) { /* per-block maxima in parallel, then combined per unit */                \
            int64_t nt = g.nunits * g.nblk;                                                 \
            NAME##_args c = {vm, &g, x, out, sv, sn, 0};                                    \
            gf__rfor(&nd->par, true, nt, g.width * GF__RB, NAME##_pairs, &c);               \
            for (int64_t u = 0; u < g.nunits; u++) {                                        \
                T *bv = sv + u * g.nblk * g.width;                                          \
                U *bn = sn + u * g.nblk * g.width;                                          \
                int64_t w, off;                                                             \
                gf__unit(&g, u, &w, &off);                                                  \
                for (int64_t b = 1; b < g.nblk; b++)                                        \
                    for (int64_t j = 0; j < w; j++) {                                       \
                        T v = bv[b * g.width + j];                                          \
                        bv[j] = v > bv[j] ? v : bv[j];                                      \
                        bn[j] |= bn[b * g.width + j];                                       \
                    }                                                                       \
                NAME##_fin(&g, x, u, bv, bn, out);                                          \
            }                                                                               \
            return;                                                                         \
        }                                                                                   \
        bool par = g.nout * g.n > GF__PAR;                                                  \
        NAME##_args c = {vm, &g, x, out, NULL, NULL, (g.nunits + 3) / 4};                   \
        if (!g.col && g.sd == 1 && g.nunits >= 4 && NAME##_has4()) {                        \
            /* long contiguous rows: four rows G apart side by side (rowmax4) */            \
            gf__rfor(&nd->par, par, c.G, 4 * g.n, NAME##_rows4, &c);                        \
            return;                                                                         \
        }                                                                                   \
        gf__rfor(&nd->par, par, g.nunits, g.width * g.n, NAME##_units, &c);                 \
    }

/* The four-row max (f32 only: gf__vmath's rowmax4; max is exact in any
 * order, so it gives the values the row kernel gives). */
static inline bool gf__maxv_f32_has4(void) { return true; }
static inline void gf__maxv_f32_max4(const gf__vmath *vm, const float *const p[4], int64_t n,
                                     float m[4], int nan[4]) {
    vm->rowmax4_f32(p, n, m, nan);
}
static inline bool gf__maxv_f64_has4(void) { return false; }
static inline void gf__maxv_f64_max4(const gf__vmath *vm, const double *const p[4], int64_t n,
                                     double m[4], int nan[4]) {
    (void)vm, (void)p, (void)n, (void)m, (void)nan;
}

GF__MAXV_KERNEL(gf__maxv_f32, float, uint32_t, f32)
GF__MAXV_KERNEL(gf__maxv_f64, double, uint64_t, f64)

/* Runs the max kernel of x's dtype: values into vals (x's dtype), indices
 * into idx, or a mask (x's dtype, x's shape) into mask. */
static void gf__max_any(gf__node *n, void *vals, int64_t *idx, void *mask) {
    const gf_tensor *x = n->in[0];
    int64_t minner = 1;
    for (int i = n->a.dim + 1; i < x->ndim; i++) minner *= x->shape[i];
    if (minner == 0) return; /* then the mask is empty */
    switch (x->dtype) {
    case GF_F32: gf__max_f32(n, vals, idx, mask, minner); break;
    case GF_F64: gf__max_f64(n, vals, idx, mask, minner); break;
    case GF_I64: gf__max_i64(n, vals, idx, mask, minner); break;
    }
}

void gf__fwd_max_dim(gf__node *n) {
    switch (n->out->dtype) {
    case GF_F32: gf__maxv_f32(n, gf__ptr(n->out)); break;
    case GF_F64: gf__maxv_f64(n, gf__ptr(n->out)); break;
    case GF_I64: gf__max_any(n, gf__ptr(n->out), NULL, NULL); break;
    }
}
void gf__fwd_argmax(gf__node *n) { gf__max_any(n, NULL, gf__ptr(n->out), NULL); }

/* out: x's shape and dtype, 1 at the first max along dim, 0 elsewhere. */
void gf__fwd_argmax_mask(gf__node *n) {
    gf_tensor *o = n->out;
    if (o->numel == 0) return;
    memset(gf__ptr(o), 0, (size_t)o->numel * gf__dtype_size(o->dtype));
    gf__max_any(n, NULL, NULL, gf__ptr(o));
}

/* ------------------------------------------------------------ recording */

/* Validates dim (and, for max/argmax, a non-empty dim) and records op over a
 * with output dtype dt. 0-dim inputs accept dim 0 / -1 and give a 0-dim. */
static gf_tensor *gf__reduce(gf__op op, const char *name, gf_tensor *a, int dim, bool keepdim,
                             gf_dtype dt) {
    if (!a) return NULL;
    int d = gf__norm_dim(a->ctx, name, dim, a->ndim);
    if (d < 0) return NULL;
    if ((op == GF__OP_max_dim || op == GF__OP_argmax) && a->ndim && a->shape[d] == 0) {
        gf__error(a->ctx, GF_ESHAPE,
                  "%s: cannot reduce dim %d of size 0 in %s (expected a non-empty dim: "
                  "the max of nothing is undefined)",
                  name, d, GF__SHAPE(a));
        return NULL;
    }
    int ond = 0;
    int64_t osh[GF_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        if (i != d) osh[ond++] = a->shape[i];
        else if (keepdim) osh[ond++] = 1;
    }
    gf__attrs at = {.dim = d, .keepdim = keepdim};
    return gf__record(op, dt, ond, osh, 1, &a, &at);
}

static bool gf__floating_or_error(gf_tensor *a, const char *name) {
    if (a->dtype != GF_I64) return true;
    gf__error(a->ctx, GF_EINVAL, "%s: input %s has dtype i64 (expected a floating tensor)",
              name, GF__SHAPE(a));
    return false;
}

gf_tensor *gf_sum_dim(gf_tensor *a, int dim, bool keepdim) {
    return a ? gf__reduce(GF__OP_sum_dim, "gf_sum_dim", a, dim, keepdim, a->dtype) : NULL;
}

gf_tensor *gf_mean_dim(gf_tensor *a, int dim, bool keepdim) {
    if (!a || !gf__floating_or_error(a, "gf_mean_dim")) return NULL;
    return gf__reduce(GF__OP_mean_dim, "gf_mean_dim", a, dim, keepdim, a->dtype);
}

gf_tensor *gf_max_dim(gf_tensor *a, int dim, bool keepdim) {
    return a ? gf__reduce(GF__OP_max_dim, "gf_max_dim", a, dim, keepdim, a->dtype) : NULL;
}

gf_tensor *gf_argmax(gf_tensor *a, int dim) {
    return a ? gf__reduce(GF__OP_argmax, "gf_argmax", a, dim, false, GF_I64) : NULL;
}

static gf_tensor *gf__argmax_mask(gf_tensor *a, int d) {
    if (!a) return NULL;
    gf__attrs at = {.dim = d};
    return gf__record(GF__OP_argmax_mask, a->dtype, a->ndim, a->shape, 1, &a, &at);
}

/* Every element, as a 1-D view (a copy if a is strided), reduced over dim 0. */
static gf_tensor *gf__reduce_all(gf_tensor *a, bool mean) {
    gf_tensor *flat = gf_reshape(a, 1, (int64_t[]){-1});
    gf_tensor *r = mean ? gf_mean_dim(flat, 0, false) : gf_sum_dim(flat, 0, false);
    gf_release(flat); /* the node keeps what it reads */
    return r;
}

gf_tensor *gf_sum(gf_tensor *a) { return a ? gf__reduce_all(a, false) : NULL; }

gf_tensor *gf_mean(gf_tensor *a) {
    if (!a || !gf__floating_or_error(a, "gf_mean")) return NULL;
    return gf__reduce_all(a, true);
}

/* ------------------------------------------------------------- backward */

/* g (the reduction's output shape) broadcast back to the input's shape: the
 * reduced dim re-inserted as size 1 (a view with a placeholder stride), then
 * expanded. */
static gf_tensor *gf__grad_expand(gf__node *n, gf_tensor *g) {
    gf_tensor *x = n->in[0];
    if (!g) return NULL;
    gf_tensor *u = g, *e;
    if (x->ndim && !n->a.keepdim) {
        int64_t sh[GF_MAX_DIMS], st[GF_MAX_DIMS];
        for (int i = 0, k = 0; i < x->ndim; i++) {
            bool ins = i == n->a.dim;
            sh[i] = ins ? 1 : g->shape[k];
            st[i] = ins ? 0 : g->strides[k];
            k += !ins;
        }
        u = gf__record_view(GF__OP_reshape, g, x->ndim, sh, st, g->offset, NULL);
    }
    e = gf_expand(u, x->ndim, x->shape);
    if (u != g) gf_release(u);
    return e;
}

gf_status gf__bwd_sum_dim(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf__grad_expand(n, g);
    return GF_OK;
}

gf_status gf__bwd_mean_dim(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gf_tensor *x = n->in[0];
    int64_t len = x->ndim ? x->shape[n->a.dim] : 1;
    gin[0] = gf_mul_scalar(gf__grad_expand(n, g), 1.0 / (double)len);
    return GF_OK;
}

/* The gradient goes to the first max only: expand(g) * mask. The mask is
 * not differentiable (piecewise constant), so second order stays exact. */
gf_status gf__bwd_max_dim(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_mul(gf__grad_expand(n, g), gf__argmax_mask(n->in[0], n->a.dim));
    return GF_OK;
}

gf_status gf__bwd_argmax(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}

gf_status gf__bwd_argmax_mask(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}

/* ---------------------------------------------------------------- sum_to */

/* g summed over its extra leading dims and over the dims where shape has 1
 * and g does not; exactly `shape`. g itself when it already has that shape.
 * Built of gf_reshape/gf_sum_dim, so it is differentiable; intermediates
 * are released at once (no scope: ending one walks every tensor of the ctx). */
gf_tensor *gf__sum_to(gf_tensor *g, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    int lead = g->ndim - ndim;
    bool ok = lead >= 0, same = lead == 0;
    for (int i = 0; ok && i < ndim; i++) {
        int64_t have = g->shape[lead + i];
        ok = have == shape[i] || shape[i] == 1;
        same = same && have == shape[i];
    }
    if (!ok) {
        gf__error(g->ctx, GF_ESHAPE,
                  "gf__sum_to: cannot sum a gradient of shape %s to %s (expected trailing dims "
                  "equal or 1)",
                  GF__SHAPE(g), gf__shape_str((char[96]){0}, 96, ndim, shape));
        return NULL;
    }
    if (same) return g;
    gf_tensor *t = g;
    if (lead > 1 && gf__is_contig(g)) { /* one pass over the merged leading dims */
        int64_t sh[GF_MAX_DIMS];
        sh[0] = -1;
        memcpy(sh + 1, g->shape + lead, (size_t)ndim * sizeof *sh);
        t = gf_reshape(g, ndim + 1, sh);
        lead = 1;
    }
    for (; lead > 0 && t; lead--) {
        gf_tensor *s = gf_sum_dim(t, 0, false);
        if (t != g) gf_release(t);
        t = s;
    }
    for (int i = 0; i < ndim && t; i++) {
        if (shape[i] != 1 || t->shape[i] == 1) continue;
        gf_tensor *s = gf_sum_dim(t, i, true);
        if (t != g) gf_release(t);
        t = s;
    }
    return t;
}
