/*
 * softmax_grad.c - the fused backward of softmax and log_softmax along a
 * dim, as one kernel each (the composed rules in nn.c record four ops: four
 * passes over the tensor and three temporaries):
 *
 *   softmax_backward(g, y, d):      dx = y * (g - s),      s = sum_d (g * y)
 *   log_softmax_backward(g, y, d):  dx = g - exp(y) * s,   s = sum_d g
 *
 * where y is the forward's output and every sum runs along dim d. A plain
 * backward records these (nn.c's rules, as unary.c does for tanh); with
 * create_graph the composed rules stay, so second derivatives exist.
 *
 * Rounding. Each step rounds to the dtype as the composed ops do: g * y is
 * rounded before it is summed, s is summed in double and rounded once, and
 * exp is the gf__vmath exp that gf_exp uses. Only the order of the double
 * additions differs from gf_sum_dim's (4 lanes k % 4 here, fixed): after
 * rounding s to f32 that order almost never shows, so fused and composed
 * agree to the last bit in practice for f32 and to an ulp of s for f64
 * (tests/test_softmax_grad.c measures both). A row is always summed on one
 * thread in one order, so results are bitwise identical for any thread
 * count.
 *
 * Geometry: g and y (same shape, any strides: g is often an expanded
 * scalar) are seen as [outer, C, inner] rows along d (ops.h's gf__nn_rows,
 * shared with nn.c); dx is contiguous. Uniform rows (d the last dim, the
 * common case) are done in place, in blocks of rows so that log_softmax's
 * exp is one call per block even for 10 classes; other rows are gathered
 * into per-thread scratch, computed and scattered.
 */
#include "ops.h"

#include <stdio.h>

/* Below this many elements the kernel stays on one thread. */
#define GF__SG_PAR 32768
/* The least elements of one tile of a split loop: half the cut-off above, so
 * a loop just past it still splits in two. */
#define GF__SG_TILE 16384
/* Elements per block of rows (scratch of the gather path, exp calls). */
#define GF__SG_BLOCK 4096

/* One row block: rows [0, nr) of C elements, row i of g at g + i*rg with
 * element stride sg (likewise y), dx rows dense (dx + i*C). For
 * log_softmax, e holds exp(y) in dense rows of C. Sums: four double lanes
 * k % 4, combined as (l0 + l1) + (l2 + l3). Inlined with the dense path's
 * strides of 1, the loops vectorize. */
#define GF__SG_SUM4(T, TERM)                                                               \
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                                 \
    int64_t k = 0;                                                                         \
    for (; k + 4 <= C; k += 4) {                                                           \
        a0 += (double)(T)(TERM(k)), a1 += (double)(T)(TERM(k + 1));                        \
        a2 += (double)(T)(TERM(k + 2)), a3 += (double)(T)(TERM(k + 3));                    \
    }                                                                                      \
    if (k < C) a0 += (double)(T)(TERM(k));                                                 \
    if (k + 1 < C) a1 += (double)(T)(TERM(k + 1));                                         \
    if (k + 2 < C) a2 += (double)(T)(TERM(k + 2));                                         \
    const T s = (T)((a0 + a1) + (a2 + a3));
#define GF__SG_GY(k) gi[(k) * sg] * yi[(k) * sy]
#define GF__SG_G(k) gi[(k) * sg]
#define GF__SG_ROWS(T)                                                                     \
    static inline void gf__sg_softmax_rows_##T(const T *g, int64_t rg, int64_t sg,         \
                                               const T *y, int64_t ry, int64_t sy, T *dx,  \
                                               int64_t nr, int64_t C) {                    \
        for (int64_t i = 0; i < nr; i++) {                                                 \
            const T *gi = g + i * rg, *yi = y + i * ry;                                    \
            T *di = dx + i * C;                                                            \
            GF__SG_SUM4(T, GF__SG_GY)                                                      \
            for (int64_t k = 0; k < C; k++) di[k] = yi[k * sy] * (gi[k * sg] - s);         \
        }                                                                                  \
    }                                                                                      \
    static inline void gf__sg_log_softmax_rows_##T(const T *g, int64_t rg, int64_t sg,     \
                                                   const T *e, T *dx, int64_t nr,          \
                                                   int64_t C) {                            \
        for (int64_t i = 0; i < nr; i++) {                                                 \
            const T *gi = g + i * rg, *ei = e + i * C;                                     \
            T *di = dx + i * C;                                                            \
            GF__SG_SUM4(T, GF__SG_G)                                                       \
            for (int64_t k = 0; k < C; k++) di[k] = gi[k * sg] - ei[k] * s;                \
        }                                                                                  \
    }

GF__SG_ROWS(float)
GF__SG_ROWS(double)

/* dx [outer, C, inner] (contiguous) from g, y of that shape (any strides),
 * along d = n->a.dim, in blocks of cr rows. A block is read in place when
 * the rows of g and y are uniform (gf__nn_uniform_rows; y's rows C apart, so
 * that one exp call covers the block), else gathered into scratch (y, g,
 * then dx's rows, scattered after). log_softmax's exp(y) goes to scratch (in
 * place: a block of its own; gathered: over the gathered y). */
#define GF__SG_KERNEL(T, SFX)                                                              \
    /* What a tile of row blocks reads. */                                                 \
    typedef struct {                                                                       \
        const gf_tensor *G, *Y;                                                            \
        int d;                                                                             \
        bool log_sm, dense, scratch;                                                       \
        gf__nn_rows gg, gy;                                                                \
        int64_t C, inner, rows, ldg, ldy, cr;                                              \
        const T *pg, *py;                                                                  \
        T *pdx;                                                                            \
        const gf__vmath *vm;                                                               \
        atomic_bool oom; /* a tile had no scratch (reported after the join) */             \
    } gf__sg_args_##T;                                                                     \
    /* Blocks [c0, c1) of cr rows (the scratch: one block's). */                           \
    static void gf__sg_blocks_##T(void *arg, int64_t c0, int64_t c1) {                     \
        gf__sg_args_##T *a = arg;                                                          \
        const gf_tensor *G = a->G, *Y = a->Y;                                              \
        const int d = a->d;                                                                \
        const bool log_sm = a->log_sm, dense = a->dense, scratch = a->scratch;             \
        const gf__nn_rows gg = a->gg, gy = a->gy;                                          \
        const int64_t C = a->C, inner = a->inner, rows = a->rows, cr = a->cr;              \
        const int64_t ldg = a->ldg, ldy = a->ldy;                                          \
        const T *pg = a->pg, *py = a->py;                                                  \
        T *pdx = a->pdx;                                                                   \
        const gf__vmath *vm = a->vm;                                                       \
        const size_t need = (size_t)cr * C * sizeof(T) * (dense ? 1 : 3);                  \
        T *buf = scratch ? gf__kscratch(3, need) : NULL;                                   \
        if (scratch && !buf) {                                                             \
            atomic_store(&a->oom, true);                                                   \
            return;                                                                        \
        }                                                                                  \
        for (int64_t c = c0; c < c1; c++) {                                                \
            const int64_t r0 = c * cr, nr = rows - r0 < cr ? rows - r0 : cr;               \
            const T *g = pg + r0 * ldg, *y = py + r0 * ldy;                                \
            T *dx = pdx + r0 * C, *e = buf;                                                \
            int64_t rg = ldg;                                                              \
            if (!dense) {                                                                  \
                T *by = buf, *bg = buf + cr * C;                                           \
                gf__nn_gather_##T(Y, d, gy.stride, r0, nr, C, by);                         \
                gf__nn_gather_##T(G, d, gg.stride, r0, nr, C, bg);                         \
                g = bg, y = by, rg = C, dx = buf + 2 * cr * C, e = by;                     \
            }                                                                              \
            if (log_sm) {                                                                  \
                vm->exp_##SFX(y, e, nr * C);                                               \
                gf__sg_log_softmax_rows_##T(g, rg, 1, e, dx, nr, C);                       \
            } else {                                                                       \
                gf__sg_softmax_rows_##T(g, rg, 1, y, C, 1, dx, nr, C);                     \
            }                                                                              \
            if (!dense)                                                                    \
                for (int64_t i = 0; i < nr; i++) {                                         \
                    const int64_t r = r0 + i;                                              \
                    T *o = pdx + (r / inner) * C * inner + r % inner;                      \
                    for (int64_t k = 0; k < C; k++) o[k * inner] = dx[i * C + k];          \
                }                                                                          \
        }                                                                                  \
    }                                                                                      \
    static void gf__sg_##T(gf__node *n, bool log_sm) {                                     \
        const gf_tensor Gm = gf__meta(n->in[0]), Ym = gf__meta(n->in[1]);                  \
        const gf_tensor *G = &Gm, *Y = &Ym, *DX = n->out;                                  \
        if (DX->numel == 0) return;                                                        \
        const int d = n->a.dim;                                                            \
        const gf__nn_rows gg = gf__nn_rows_of(G, d), gy = gf__nn_rows_of(Y, d);            \
        const int64_t C = gy.C, inner = gy.inner, rows = gy.rows;                          \
        int64_t ldg = 0, ldy = 0;                                                          \
        const bool dense = gf__nn_uniform_rows(G, d, gg, &ldg) &&                          \
                           gf__nn_uniform_rows(Y, d, gy, &ldy) && ldy == C;                \
        const int64_t cr = C >= GF__SG_BLOCK ? 1 : GF__SG_BLOCK / C;                       \
        const int64_t nch = (rows + cr - 1) / cr;                                          \
        gf__sg_args_##T a = {.G = G, .Y = Y, .d = d, .log_sm = log_sm, .dense = dense,     \
                             .scratch = log_sm || !dense, .gg = gg, .gy = gy, .C = C,      \
                             .inner = inner, .rows = rows, .ldg = ldg, .ldy = ldy,         \
                             .cr = cr, .pg = gf__ptr(G), .py = gf__ptr(Y),                 \
                             .pdx = gf__ptr(DX), .vm = gf__vmath_now()};                   \
        if (GF__PAR_WORTH(&n->par, rows * C > GF__SG_PAR))                                 \
            gf__par_for(&n->par, nch, gf__par_grain(nch, cr * C, GF__SG_TILE),             \
                        gf__sg_blocks_##T, &a);                                            \
        else                                                                               \
            gf__sg_blocks_##T(&a, 0, nch);                                                 \
        if (atomic_load(&a.oom))                                                           \
            gf__kernel_error(n, GF_ENOMEM, "%s: out of memory for a block of %lld rows x " \
                             "%lld", gf__op_names[n->op], (long long)cr, (long long)C);    \
    }

GF__SG_KERNEL(float, f32)
GF__SG_KERNEL(double, f64)

static void gf__sg_any(gf__node *n, bool log_sm) {
    if (n->out->dtype == GF_F32) gf__sg_float(n, log_sm);
    else gf__sg_double(n, log_sm);
}

void gf__fwd_softmax_backward(gf__node *n) { gf__sg_any(n, false); }
void gf__fwd_log_softmax_backward(gf__node *n) { gf__sg_any(n, true); }

/* NODIFF: never called (create_graph records the composed rules). */
gf_status gf__bwd_softmax_backward(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}
gf_status gf__bwd_log_softmax_backward(gf__node *n, gf_tensor *out, gf_tensor *g,
                                       gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}

/* Checks and records op(g, y) along dim (negative counts from the end): g
 * and y of one float dtype and one shape. */
static gf_tensor *gf__sg_op(gf__op op, gf_tensor *g, gf_tensor *y, int dim) {
    const char *name = gf__op_names[op];
    gf_ctx *ctx = gf__check_inputs(name, 2, (gf_tensor *[]){g, y});
    if (!ctx) return NULL;
    if (g->dtype != y->dtype || g->dtype == GF_I64) {
        gf__error(ctx, GF_EINVAL,
                  "%s: gradient %s of dtype %s and output %s of dtype %s (expected one float "
                  "dtype, f32 or f64, for both)",
                  name, GF__SHAPE(g), gf_dtype_name(g->dtype), GF__SHAPE(y),
                  gf_dtype_name(y->dtype));
        return NULL;
    }
    bool same = g->ndim == y->ndim;
    for (int k = 0; same && k < g->ndim; k++) same = g->shape[k] == y->shape[k];
    if (!same) {
        gf__error(ctx, GF_ESHAPE, "%s: gradient %s and output %s (expected the same shape)",
                  name, GF__SHAPE(g), GF__SHAPE(y));
        return NULL;
    }
    const int d = gf__norm_dim(ctx, name, dim, y->ndim);
    if (d < 0) return NULL;
    gf__attrs at = {0};
    at.dim = d;
    return gf__record(op, y->dtype, y->ndim, y->shape, 2, (gf_tensor *[]){g, y}, &at);
}

gf_tensor *gf__softmax_backward(gf_tensor *g, gf_tensor *y, int dim) {
    return gf__sg_op(GF__OP_softmax_backward, g, y, dim);
}
gf_tensor *gf__log_softmax_backward(gf_tensor *g, gf_tensor *y, int dim) {
    return gf__sg_op(GF__OP_log_softmax_backward, g, y, dim);
}
