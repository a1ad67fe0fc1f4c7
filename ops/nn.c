/*
 * nn.c - fused nn functions: softmax, log_softmax, mse_loss, cross_entropy
 * (with its per-row statistics, cross_entropy_rows, and its fused gradient,
 * cross_entropy_grad), and one_hot.
 *
 * The forward kernels are fused and numerically stable: each softmax row is
 * the row max, then exp(x - max) stored and summed (in double) in one pass
 * through the vector exp of ops/kernels (gf__vmath), then the scaling, so
 * large logits (1000, -1000) never overflow. Rows shorter than
 * GF__NN_SMALL_C go in blocks of rows through vm->rowstats instead (one exp
 * call per block). A row is always reduced in the same order on one thread,
 * and losses over many rows are summed from per-row partials in a fixed
 * order, so results are bitwise identical for any thread count.
 *
 * Backward rules are compositions of public ops (softmax, one_hot, sum_dim,
 * ...) so that create_graph gives higher-order gradients; a plain backward
 * of cross_entropy records the one-kernel cross_entropy_grad instead, on the
 * forward's row statistics, with the same bits, and a plain backward of
 * softmax / log_softmax the one-kernel softmax_backward /
 * log_softmax_backward of ops/softmax_grad.c (within a few ulp of the
 * composed rules: only their row sum's order differs).
 */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>

/* Below this many elements a kernel runs on one thread (the fork costs more). */
#define GF__NN_PAR 32768
/* The least elements of one tile of a split loop: half the cut-off above, so
 * a loop just past it still splits in two. */
#define GF__NN_TILE 16384
/* The fixed block size of mse_loss's partial sums over contiguous inputs. */
#define GF__NN_BLOCK 4096

/* ------------------------------------------------------------- helpers */

/* Offset (in elements, from gf__ptr(t)) of the element at row-major linear
 * index i of t: for i64 labels of any strides. */
static int64_t gf__nn_off(const gf_tensor *t, int64_t i) {
    if (t->ndim <= 1) return t->ndim ? i * t->strides[0] : 0; /* labels: no division */
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->strides[d];
        i /= t->shape[d];
    }
    return off;
}

/* Index of the first label outside [0, C) of labels (i64, any strides), or -1.
 * Labels must be computed. Each label in memory is read once (expanded
 * labels repeat them: gf__distinct_at). */
static int64_t gf__nn_bad_label(const gf_tensor *labels, int64_t C) {
    const int64_t *p = gf__ptr(labels);
    if (labels->ndim <= 1) { /* [N] or 0-dim (cross_entropy's): no index arithmetic */
        int64_t st = labels->ndim ? labels->strides[0] : 0;
        int64_t n = st || !labels->numel ? labels->numel : 1; /* stride 0: one label */
        bool bad = false;
        for (int64_t i = 0; i < n; i++) bad |= (uint64_t)p[i * st] >= (uint64_t)C;
        if (!bad) return -1;
    }
    for (int64_t j = 0, n = gf__distinct_count(labels), off; j < n; j++) {
        int64_t i = gf__distinct_at(labels, j, &off);
        if ((uint64_t)p[off] >= (uint64_t)C) return i;
    }
    return -1;
}

static int64_t gf__nn_label_at(const gf_tensor *labels, int64_t i) {
    return ((const int64_t *)gf__ptr(labels))[gf__nn_off(labels, i)];
}

/* True if t's values can be read now: no pending producer, data present. */
static bool gf__nn_computed(const gf_tensor *t) {
    return (t->node == NULL || !gf__node_pending(t->node)) && t->storage->data != NULL;
}

/* Checks labels at record time when they are already computed, so that the
 * error points at the call that caused it (pending labels are checked by the
 * kernel). Returns false with an error on the ctx. */
static bool gf__nn_check_labels_now(const char *op, gf_tensor *labels, int64_t C) {
    if (!gf__nn_computed(labels) || labels->numel == 0) return true;
    int64_t i = gf__nn_bad_label(labels, C);
    if (i < 0) return true;
    gf__error(labels->ctx, GF_EINVAL,
              "%s: label %lld at index %lld is out of range for %lld classes (expected 0..%lld)",
              op, (long long)gf__nn_label_at(labels, i), (long long)i, (long long)C,
              (long long)(C - 1));
    return false;
}

/* The same check from inside a kernel (labels computed by then). */
static bool gf__nn_check_labels_kernel(gf__node *n, const char *op, const gf_tensor *labels,
                                       int64_t C) {
    int64_t i = gf__nn_bad_label(labels, C);
    if (i < 0) return true;
    gf__kernel_error(n, GF_EINVAL,
                     "%s: label %lld at index %lld is out of range for %lld classes "
                     "(expected 0..%lld)",
                     op, (long long)gf__nn_label_at(labels, i), (long long)i, (long long)C,
                     (long long)(C - 1));
    return false;
}

/* ------------------------------------------------- softmax row kernels */
/* One row x[0..C) (contiguous) into y[0..C) (contiguous; y may equal x),
 * with the vector math table vm: the max (NaNs skipped: a NaN then makes
 * the sum, hence the row, NaN), then exp(x - max) stored and summed in
 * double in one pass, then the scaling (or, for log_softmax, the sum alone
 * and one subtracting pass). The row is in L1 for the passes after the
 * first. For rows of GF__NN_SMALL_C or more. */
#define GF__SOFTMAX_ROWS(T, SFX)                                                           \
    static void gf__softmax_row_##T(const gf__vmath *vm, const T *x, T *y, int64_t C,      \
                                    bool log_out) {                                        \
        int nan = 0;                                                                       \
        T m = vm->max_##SFX(x, C, &nan);                                                   \
        if (log_out) {                                                                     \
            T ls = (T)log(vm->expsum_##SFX(x, m, NULL, C));                                \
            for (int64_t k = 0; k < C; k++) y[k] = (x[k] - m) - ls;                        \
        } else {                                                                           \
            T inv = (T)(1.0 / vm->expsum_##SFX(x, m, y, C));                               \
            for (int64_t k = 0; k < C; k++) y[k] *= inv;                                   \
        }                                                                                  \
    }

GF__SOFTMAX_ROWS(float, f32)
GF__SOFTMAX_ROWS(double, f64)

/* Rows shorter than GF__NN_SMALL_C are done in blocks of rows instead, the
 * whole block through one call of vm->rowstats (one call per row costs
 * more than the data at 10 classes). Its sums are in the k % 4 lane order,
 * vm->expsum's for longer rows: the choice depends on C only, and softmax
 * and cross_entropy (forward and fused gradient) make it the same way, so
 * their bits agree. A block holds about GF__NN_SMALL_ELEMS elements
 * (per-thread scratch: within gf__kscratch's first 64 KiB for f64). */
#define GF__NN_SMALL_C 128
#define GF__NN_SMALL_ELEMS 2048

/* Rows per block (one row from GF__NN_SMALL_ELEMS classes on), and the
 * block's scratch: s (double), m (T), a gathered copy and the exponentials
 * (T) of cr rows. */
static int64_t gf__nn_small_cr(int64_t C) {
    return C >= GF__NN_SMALL_ELEMS ? 1 : GF__NN_SMALL_ELEMS / C;
}
static size_t gf__nn_small_bytes(int64_t cr, int64_t C, size_t tsize) {
    return (size_t)cr * (sizeof(double) + tsize + 2 * (size_t)C * tsize);
}


/* out [outer, C, inner] (contiguous) = (log_)softmax of in along d, any
 * strides. Short rows go by blocks (see above): read in place when uniform,
 * else gathered; softmax's exponentials land in the output rows (inner 1)
 * or in scratch, then get scaled; log_softmax takes the log of the block's
 * sums in one vm->log_f64 call. Long rows whose elements are
 * contiguous in both are done in place; others are gathered into a
 * per-thread buffer, computed, and scattered. */
#define GF__SOFTMAX_KERNEL(T, SFX)                                                         \
    /* What a tile reads: the geometry, and for short rows the block's. */                 \
    typedef struct {                                                                       \
        const gf_tensor *X;                                                                \
        int d;                                                                             \
        bool log_out, direct, uni;                                                         \
        gf__nn_rows g;                                                                     \
        int64_t rows, C, inner, cr, ld;                                                    \
        const T *px;                                                                       \
        T *py;                                                                             \
        const gf__vmath *vm;                                                               \
        atomic_bool oom; /* a tile had no scratch (reported after the join) */             \
    } gf__softmax_args_##T;                                                                \
    /* Blocks [c0, c1) of cr short rows (the scratch: one block's). */                     \
    static void gf__softmax_short_##T(void *arg, int64_t c0, int64_t c1) {                 \
        gf__softmax_args_##T *a = arg;                                                     \
        const gf_tensor *X = a->X;                                                         \
        const int d = a->d;                                                                \
        const bool log_out = a->log_out, uni = a->uni;                                     \
        const gf__nn_rows g = a->g;                                                        \
        const int64_t rows = a->rows, C = a->C, inner = a->inner, cr = a->cr, ld = a->ld;  \
        const T *px = a->px;                                                               \
        T *py = a->py;                                                                     \
        const gf__vmath *vm = a->vm;                                                       \
        double *s = gf__kscratch(3, gf__nn_small_bytes(cr, C, sizeof(T)));                 \
        if (!s) {                                                                          \
            atomic_store(&a->oom, true);                                                   \
            return;                                                                        \
        }                                                                                  \
        T *m = (T *)(s + cr), *xg = m + cr, *tb = xg + cr * C;                             \
        for (int64_t c = c0; c < c1; c++) {                                                \
            int64_t r0 = c * cr, nr = rows - r0 < cr ? rows - r0 : cr, xl = C;             \
            const T *xb = xg;                                                              \
            if (uni) xb = px + r0 * ld, xl = ld;                                           \
            else gf__nn_gather_##T(X, d, g.stride, r0, nr, C, xg);                         \
            /* softmax: exp(x - m) into the output rows when they are adjacent */          \
            T *t = !log_out && inner == 1 ? py + r0 * C : tb;                              \
            vm->rowstats_##SFX(xb, xl, C, nr, m, s, t);                                    \
            if (log_out) vm->log_f64(s, s, nr);                                            \
            for (int64_t i = 0; i < nr; i++) {                                             \
                int64_t r = r0 + i;                                                        \
                T *y = py + (r / inner) * C * inner + r % inner;                           \
                if (log_out) {                                                             \
                    const T *x = xb + i * xl;                                              \
                    T ls = (T)s[i];                                                        \
                    for (int64_t k = 0; k < C; k++)                                        \
                        y[k * inner] = (x[k] - m[i]) - ls;                                 \
                } else {                                                                   \
                    const T *ti = t + i * C;                                               \
                    T inv = (T)(1.0 / s[i]);                                               \
                    for (int64_t k = 0; k < C; k++) y[k * inner] = ti[k] * inv;            \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* Long rows [r0, r1) (the scratch: one row, unless direct). */                        \
    static void gf__softmax_long_##T(void *arg, int64_t r0, int64_t r1) {                  \
        gf__softmax_args_##T *a = arg;                                                     \
        const gf_tensor *X = a->X;                                                         \
        const int d = a->d;                                                                \
        const bool log_out = a->log_out, direct = a->direct;                               \
        const gf__nn_rows g = a->g;                                                        \
        const int64_t C = a->C, inner = a->inner;                                          \
        const T *px = a->px;                                                               \
        T *py = a->py;                                                                     \
        const gf__vmath *vm = a->vm;                                                       \
        T *buf = direct ? NULL : gf__kscratch(3, (size_t)C * sizeof(T));                   \
        if (!direct && !buf) {                                                             \
            atomic_store(&a->oom, true);                                                   \
            return;                                                                        \
        }                                                                                  \
        for (int64_t r = r0; r < r1; r++) {                                                \
            const T *x = px + gf__nn_row_off(X, d, r);                                     \
            T *y = py + (r / inner) * C * inner + r % inner;                               \
            if (direct) {                                                                  \
                gf__softmax_row_##T(vm, x, y, C, log_out);                                 \
            } else {                                                                       \
                for (int64_t k = 0; k < C; k++) buf[k] = x[k * g.stride];                  \
                gf__softmax_row_##T(vm, buf, buf, C, log_out);                             \
                for (int64_t k = 0; k < C; k++) y[k * inner] = buf[k];                     \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    static void gf__softmax_##T(gf__node *n, bool log_out) {                               \
        gf_tensor *X = n->in[0], *Y = n->out;                                              \
        int d = n->a.dim;                                                                  \
        gf__nn_rows g = gf__nn_rows_of(X, d);                                              \
        if (Y->numel == 0) return;                                                         \
        int64_t rows = g.rows, C = g.C, inner = g.inner;                                   \
        gf__softmax_args_##T a = {.X = X, .d = d, .log_out = log_out, .g = g,              \
                                  .rows = rows, .C = C, .inner = inner, .px = gf__ptr(X),  \
                                  .py = gf__ptr(Y), .vm = gf__vmath_now()};                \
        bool par = GF__PAR_WORTH(&n->par, rows * C > GF__NN_PAR);                          \
        if (C < GF__NN_SMALL_C) {                                                          \
            int64_t cr = gf__nn_small_cr(C), nch = (rows + cr - 1) / cr;                   \
            a.cr = cr;                                                                     \
            a.uni = gf__nn_uniform_rows(X, d, g, &a.ld);                                   \
            if (par)                                                                       \
                gf__par_for(&n->par, nch, gf__par_grain(nch, cr * C, GF__NN_TILE),         \
                            gf__softmax_short_##T, &a);                                    \
            else                                                                           \
                gf__softmax_short_##T(&a, 0, nch);                                         \
            if (atomic_load(&a.oom))                                                       \
                gf__kernel_error(n, GF_ENOMEM, "gf_%s: out of memory for a row block of "  \
                                 "%lld", gf__op_names[n->op], (long long)(cr * C));        \
            return;                                                                        \
        }                                                                                  \
        a.direct = inner == 1 && (g.stride == 1 || C == 1);                                \
        if (par)                                                                           \
            gf__par_for(&n->par, rows, gf__par_grain(rows, C, GF__NN_TILE),                \
                        gf__softmax_long_##T, &a);                                         \
        else                                                                               \
            gf__softmax_long_##T(&a, 0, rows);                                             \
        if (atomic_load(&a.oom))                                                           \
            gf__kernel_error(n, GF_ENOMEM, "gf_%s: out of memory for a row buffer of %lld", \
                             gf__op_names[n->op], (long long)C);                           \
    }

GF__SOFTMAX_KERNEL(float, f32)
GF__SOFTMAX_KERNEL(double, f64)

static void gf__softmax_any(gf__node *n, bool log_out) {
    if (n->out->dtype == GF_F32) gf__softmax_float(n, log_out);
    else gf__softmax_double(n, log_out);
}

void gf__fwd_softmax(gf__node *n) { gf__softmax_any(n, false); }
void gf__fwd_log_softmax(gf__node *n) { gf__softmax_any(n, true); }

/* Checks, promotes (i64 -> f32) and records softmax or log_softmax of a
 * along dim (negative counts from the end). */
static gf_tensor *gf__softmax_op(gf__op op, gf_tensor *a, int dim) {
    if (!a) return NULL;
    gf_ctx *ctx = a->ctx;
    const char *name = op == GF__OP_softmax ? "gf_softmax" : "gf_log_softmax";
    int d = gf__norm_dim(ctx, name, dim, a->ndim);
    if (d < 0) return NULL;
    gf__attrs at = {0};
    at.dim = d;
    gf_scope_begin(ctx);
    gf_tensor *x = a->dtype == GF_I64 ? gf_to_dtype(a, GF_F32) : a;
    gf_tensor *out = x ? gf_keep(gf__record(op, x->dtype, x->ndim, x->shape, 1, &x, &at)) : NULL;
    gf_scope_end(ctx);
    return out;
}

gf_tensor *gf_softmax(gf_tensor *a, int dim) { return gf__softmax_op(GF__OP_softmax, a, dim); }
gf_tensor *gf_log_softmax(gf_tensor *a, int dim) {
    return gf__softmax_op(GF__OP_log_softmax, a, dim);
}

/* dx = y * (g - sum_d(g * y)), y = softmax(x). */
/* Whether a softmax-family rule records its one-kernel backward
 * (ops/softmax_grad.c): in a plain backward (grad mode off) with g of out's
 * dtype and shape. With create_graph the composed rules below stay, so that
 * higher derivatives exist. */
static bool gf__sm_fuse(const gf_tensor *g, const gf_tensor *out) {
    if (gf_is_grad_enabled(out->ctx) || g->dtype != out->dtype || g->ndim != out->ndim)
        return false;
    for (int k = 0; k < g->ndim; k++)
        if (g->shape[k] != out->shape[k]) return false;
    return true;
}

gf_status gf__bwd_softmax(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    if (!gf__needs_grad(n, 0)) return GF_OK;
    if (gf__sm_fuse(g, out)) {
        gin[0] = gf__softmax_backward(g, out, n->a.dim);
        return GF_OK;
    }
    gf_tensor *gy = gf_mul(g, out);
    /* A 0-dim softmax has a one-element "row": the sum is gy itself. */
    gf_tensor *s = out->ndim ? gf_sum_dim(gy, n->a.dim, true) : gy;
    gin[0] = gf_mul(out, gf_sub(g, s));
    return GF_OK;
}

/* dx = g - exp(y) * sum_d(g), y = log_softmax(x). */
gf_status gf__bwd_log_softmax(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    if (!gf__needs_grad(n, 0)) return GF_OK;
    if (gf__sm_fuse(g, out)) {
        gin[0] = gf__log_softmax_backward(g, out, n->a.dim);
        return GF_OK;
    }
    gf_tensor *s = out->ndim ? gf_sum_dim(g, n->a.dim, true) : g;
    gin[0] = gf_sub(g, gf_mul(gf_exp(out), s));
    return GF_OK;
}

/* ------------------------------------------------------------ mse_loss */

/* out (0-dim) = mean over the broadcast shape S of (p - t)^2. Partial sums
 * (double) per fixed block: GF__NN_BLOCK elements when both inputs are
 * contiguous of shape S, else one row of S's last dim; then summed in order. */
#define GF__MSE_KERNEL(T)                                                                  \
    /* What a tile of blocks reads. */                                                     \
    typedef struct {                                                                       \
        const T *pp, *pq;                                                                  \
        bool flat;                                                                         \
        int nd;                                                                            \
        const int64_t *S, *sp, *sq;                                                        \
        int64_t total, inner;                                                              \
        double *part;                                                                      \
    } gf__mse_args_##T;                                                                    \
    /* Partial sums of blocks [b0, b1) into part. */                                       \
    static void gf__mse_blocks_##T(void *arg, int64_t b0, int64_t b1) {                    \
        const gf__mse_args_##T *a = arg;                                                   \
        const T *pp = a->pp, *pq = a->pq;                                                  \
        const bool flat = a->flat;                                                         \
        const int nd = a->nd;                                                              \
        const int64_t *S = a->S, *sp = a->sp, *sq = a->sq;                                 \
        const int64_t total = a->total, inner = a->inner;                                  \
        double *part = a->part;                                                            \
        for (int64_t b = b0; b < b1; b++) {                                                \
            double acc = 0;                                                                \
            if (flat) {                                                                    \
                int64_t lo = b * inner, hi = lo + inner < total ? lo + inner : total;      \
                for (int64_t i = lo; i < hi; i++) {                                        \
                    T e = pp[i] - pq[i];                                                   \
                    acc += e * e;                                                          \
                }                                                                          \
            } else {                                                                       \
                /* row b of S's leading dims: its offsets in P and Q */                    \
                int64_t op_ = 0, oq = 0, r = b;                                            \
                for (int k = nd - 2; k >= 0; k--) {                                        \
                    op_ += (r % S[k]) * sp[k];                                             \
                    oq += (r % S[k]) * sq[k];                                              \
                    r /= S[k];                                                             \
                }                                                                          \
                int64_t ip = nd ? sp[nd - 1] : 0, iq = nd ? sq[nd - 1] : 0;                \
                for (int64_t i = 0; i < inner; i++) {                                      \
                    T e = pp[op_ + i * ip] - pq[oq + i * iq];                              \
                    acc += e * e;                                                          \
                }                                                                          \
            }                                                                              \
            part[b] = acc;                                                                 \
        }                                                                                  \
    }                                                                                      \
    static void gf__mse_##T(gf__node *n) {                                                 \
        gf_tensor *P = n->in[0], *Q = n->in[1];                                            \
        int nd;                                                                            \
        int64_t S[GF_MAX_DIMS];                                                            \
        gf__bcast_shape(P->ndim, P->shape, Q->ndim, Q->shape, &nd, S);                     \
        int64_t total = gf__numel(nd, S);                                                  \
        T *out = gf__ptr(n->out);                                                          \
        if (total == 0) {                                                                  \
            out[0] = (T)NAN; /* the mean of nothing, as torch */                           \
            return;                                                                        \
        }                                                                                  \
        bool flat = gf__is_contig(P) && gf__is_contig(Q) && P->numel == total &&           \
                    Q->numel == total;                                                     \
        int64_t sp[GF_MAX_DIMS] = {0}, sq[GF_MAX_DIMS] = {0};                              \
        if (nd) {                                                                          \
            gf__bcast_strides(P, nd, S, sp);                                               \
            gf__bcast_strides(Q, nd, S, sq);                                               \
        }                                                                                  \
        int64_t inner = flat ? GF__NN_BLOCK : (nd ? S[nd - 1] : 1);                        \
        int64_t nblk = flat ? (total + inner - 1) / inner : total / inner;                 \
        double *part = gf__kscratch(2, (size_t)nblk * sizeof *part);                       \
        if (!part) {                                                                       \
            gf__kernel_error(n, GF_ENOMEM, "gf_mse_loss: out of memory for %lld partial "  \
                             "sums", (long long)nblk);                                     \
            return;                                                                        \
        }                                                                                  \
        gf__mse_args_##T a = {gf__ptr(P), gf__ptr(Q), flat, nd, S, sp, sq, total, inner,   \
                              part};                                                       \
        if (GF__PAR_WORTH(&n->par, total > GF__NN_PAR))                                    \
            gf__par_for(&n->par, nblk, gf__par_grain(nblk, inner, GF__NN_TILE),            \
                        gf__mse_blocks_##T, &a);                                           \
        else                                                                               \
            gf__mse_blocks_##T(&a, 0, nblk);                                               \
        double s = 0;                                                                      \
        for (int64_t b = 0; b < nblk; b++) s += part[b];                                   \
        out[0] = (T)(s / (double)total);                                                   \
    }

GF__MSE_KERNEL(float)
GF__MSE_KERNEL(double)

void gf__fwd_mse_loss(gf__node *n) {
    if (n->out->dtype == GF_F32) gf__mse_float(n);
    else gf__mse_double(n);
}

gf_tensor *gf_mse_loss(gf_tensor *pred, gf_tensor *target) {
    gf_tensor *in[2] = {pred, target};
    gf_ctx *ctx = gf__check_inputs("gf_mse_loss", 2, in);
    if (!ctx) return NULL;
    int nd;
    int64_t shape[GF_MAX_DIMS];
    if (!gf__bcast_shape(pred->ndim, pred->shape, target->ndim, target->shape, &nd, shape)) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_mse_loss: pred %s and target %s cannot be broadcast together (expected "
                  "equal or broadcastable shapes)",
                  GF__SHAPE(pred), GF__SHAPE(target));
        return NULL;
    }
    gf_dtype dt = gf__promote(pred->dtype, target->dtype);
    if (dt == GF_I64) dt = GF_F32; /* a float-only op */
    /* The kernel walks the broadcast shape: it must be countable too. */
    if (gf__shape_check(ctx, "", "gf_mse_loss", dt, nd, shape) != GF_OK) return NULL;
    gf_scope_begin(ctx);
    gf_tensor *p = pred->dtype == dt ? pred : gf_to_dtype(pred, dt);
    gf_tensor *t = target->dtype == dt ? target : gf_to_dtype(target, dt);
    gf_tensor *out = NULL;
    if (p && t) out = gf_keep(gf__record(GF__OP_mse_loss, dt, 0, NULL, 2, (gf_tensor *[]){p, t}, NULL));
    gf_scope_end(ctx);
    return out;
}

/* d/dp = g * 2 (p - t) / numel, summed back to each input's shape;
 * d/dt is its negative. */
gf_status gf__bwd_mse_loss(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gf_tensor *p = n->in[0], *t = n->in[1];
    gf_tensor *d = gf_sub(p, t);
    if (!d) return GF_OK; /* the error is on the ctx */
    double total = (double)d->numel;
    gf_tensor *gd = gf_mul(g, gf_mul_scalar(d, total ? 2.0 / total : 0.0));
    if (gf__needs_grad(n, 0)) gin[0] = gf__sum_to(gd, GF__DIMS(p));
    if (gf__needs_grad(n, 1)) gin[1] = gf__sum_to(gf_neg(gd), GF__DIMS(t));
    return GF_OK;
}

/* ------------------------------------------------------- cross_entropy */

/* gf_cross_entropy records two nodes: cross_entropy_rows (NODIFF) makes
 * the per-row statistics, one pass over the logits, and cross_entropy
 * averages the rows' losses from them. A plain backward's fused
 * cross_entropy_grad reads the same statistics, so it needs neither the
 * row max nor the exp sum again: one exp pass. The statistics tensor is
 * f64 [4, N], used as four blocks of N 8-byte slots: the row max m (as T),
 * inv = 1/s rounded to T (softmax's scale, s the exp sum), the label (i64),
 * and the row's loss -log_softmax(x)[l] = log(s) - (x[l] - m) (double). */
typedef struct {
    void *m, *inv;
    int64_t *l;
    double *loss;
} gf__ce_stats;

static gf__ce_stats gf__ce_stats_of(gf_tensor *st) {
    int64_t N = st->shape[1];
    char *p = gf__ptr(st);
    return (gf__ce_stats){p, p + 8 * N, (int64_t *)(p + 16 * N), (double *)(p + 24 * N)};
}

/* Logits x [N, C] or [C] (N = 1): N, and whether row r starts at r * *ld
 * with adjacent elements. */
static int64_t gf__ce_n(const gf_tensor *x) { return x->ndim == 2 ? x->shape[0] : 1; }
static bool gf__ce_uniform(const gf_tensor *x, int64_t *ld) {
    return gf__nn_uniform_rows(x, x->ndim - 1, gf__nn_rows_of(x, x->ndim - 1), ld);
}

/* stats (see above) of logits X (any strides) and labels L (i64 [N] or
 * 0-dim, any strides), in blocks of rows as softmax does them (the same
 * sums, so inv is softmax's): the block's maxima and sums from
 * vm->rowstats (short rows) or vm->max and vm->expsum, their logs in one
 * vm->log_f64 call. Bad labels: error, and the statistics are NaN with
 * label -1 (consumers check). */
#define GF__CE_ROWS_KERNEL(T, SFX)                                                         \
    /* What a tile of row blocks reads. */                                                 \
    typedef struct {                                                                       \
        const gf_tensor *X;                                                                \
        int d;                                                                             \
        bool uni;                                                                          \
        gf__nn_rows g;                                                                     \
        int64_t N, C, cr, ld, nsc;                                                         \
        const T *px;                                                                       \
        gf__ce_stats st;                                                                   \
        const gf__vmath *vm;                                                               \
        atomic_bool oom; /* a tile had no scratch (reported after the join) */             \
    } gf__ce_rows_args_##T;                                                                \
    /* The statistics of blocks [c0, c1) of cr rows. */                                    \
    static void gf__ce_rows_blocks_##T(void *arg, int64_t c0, int64_t c1) {                \
        gf__ce_rows_args_##T *a = arg;                                                     \
        const gf_tensor *X = a->X;                                                         \
        const int d = a->d;                                                                \
        const bool uni = a->uni;                                                           \
        const gf__nn_rows g = a->g;                                                        \
        const int64_t N = a->N, C = a->C, cr = a->cr, ld = a->ld, nsc = a->nsc;            \
        const T *px = a->px;                                                               \
        const gf__ce_stats st = a->st;                                                     \
        T *m = st.m, *inv = st.inv;                                                        \
        const gf__vmath *vm = a->vm;                                                       \
        T *xg = nsc ? gf__kscratch(3, (size_t)nsc * sizeof(T)) : NULL;                     \
        T *tb = xg && C < GF__NN_SMALL_C ? (uni ? xg : xg + cr * C) : NULL;                \
        if (nsc && !xg) {                                                                  \
            atomic_store(&a->oom, true);                                                   \
            return;                                                                        \
        }                                                                                  \
        for (int64_t c = c0; c < c1; c++) {                                                \
            int64_t r0 = c * cr, nr = N - r0 < cr ? N - r0 : cr, xl = C;                   \
            const T *xb = xg;                                                              \
            if (uni) xb = px + r0 * ld, xl = ld;                                           \
            else gf__nn_gather_##T(X, d, g.stride, r0, nr, C, xg);                         \
            double *s = st.loss + r0;                                                      \
            if (C < GF__NN_SMALL_C) {                                                      \
                vm->rowstats_##SFX(xb, xl, C, nr, m + r0, s, tb);                          \
            } else {                                                                       \
                for (int64_t i = 0; i < nr; i++) {                                         \
                    int nan = 0;                                                           \
                    m[r0 + i] = vm->max_##SFX(xb + i * xl, C, &nan);                       \
                    s[i] = vm->expsum_##SFX(xb + i * xl, m[r0 + i], NULL, C);              \
                }                                                                          \
            }                                                                              \
            for (int64_t i = 0; i < nr; i++) inv[r0 + i] = (T)(1.0 / s[i]);                \
            vm->log_f64(s, s, nr);                                                         \
            for (int64_t i = 0; i < nr; i++)                                               \
                s[i] -= (double)(xb[i * xl + st.l[r0 + i]] - m[r0 + i]);                   \
        }                                                                                  \
    }                                                                                      \
    static void gf__ce_rows_##T(gf__node *n) {                                             \
        gf_tensor *X = n->in[0], *L = n->in[1];                                            \
        int d = X->ndim - 1;                                                               \
        gf__nn_rows g = gf__nn_rows_of(X, d);                                              \
        int64_t N = gf__ce_n(X), C = g.C, ld = C;                                          \
        gf__ce_stats st = gf__ce_stats_of(n->out);                                         \
        T *m = st.m, *inv = st.inv;                                                        \
        if (N == 0) return;                                                                \
        if (!gf__nn_check_labels_kernel(n, "gf_cross_entropy", L, C)) {                    \
            for (int64_t r = 0; r < N; r++)                                                \
                m[r] = inv[r] = (T)NAN, st.l[r] = -1, st.loss[r] = NAN;                    \
            return;                                                                        \
        }                                                                                  \
        const int64_t *pl = gf__ptr(L), ls = L->ndim ? L->strides[0] : 0;                  \
        for (int64_t r = 0; r < N; r++) st.l[r] = pl[r * ls];                              \
        bool uni = gf__ce_uniform(X, &ld);                                                 \
        int64_t cr = gf__nn_small_cr(C), nch = (N + cr - 1) / cr;                          \
        /* scratch: the gathered rows unless uniform, rowstats' t for short rows */        \
        int64_t nsc = (uni ? 0 : cr * C) + (C < GF__NN_SMALL_C ? cr * C : 0);              \
        gf__ce_rows_args_##T a = {.X = X, .d = d, .uni = uni, .g = g, .N = N, .C = C,      \
                                  .cr = cr, .ld = ld, .nsc = nsc, .px = gf__ptr(X),        \
                                  .st = st, .vm = gf__vmath_now()};                        \
        if (GF__PAR_WORTH(&n->par, N * C > GF__NN_PAR))                                    \
            gf__par_for(&n->par, nch, gf__par_grain(nch, cr * C, GF__NN_TILE),             \
                        gf__ce_rows_blocks_##T, &a);                                       \
        else                                                                               \
            gf__ce_rows_blocks_##T(&a, 0, nch);                                            \
        if (atomic_load(&a.oom))                                                           \
            gf__kernel_error(n, GF_ENOMEM, "gf_cross_entropy: out of memory for a row "    \
                             "block of %lld", (long long)(cr * C));                        \
    }

GF__CE_ROWS_KERNEL(float, f32)
GF__CE_ROWS_KERNEL(double, f64)

void gf__fwd_cross_entropy_rows(gf__node *n) {
    if (n->in[0]->dtype == GF_F32) gf__ce_rows_float(n);
    else gf__ce_rows_double(n);
}

gf_status gf__bwd_cross_entropy_rows(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK; /* NODIFF: never called */
}

/* out (0-dim) = mean over rows r of -log_softmax(logits[r])[labels[r]]:
 * inputs logits, labels (kept for the backward rules) and the statistics,
 * whose row losses are summed in row order (bitwise the same for any
 * thread count). */
void gf__fwd_cross_entropy(gf__node *n) {
    gf_tensor *S = n->in[2];
    int64_t N = S->shape[1];
    double s = 0;
    if (N == 0) {
        s = NAN; /* the mean of nothing, as torch */
    } else {
        const double *loss = gf__ce_stats_of(S).loss;
        for (int64_t r = 0; r < N; r++) s += loss[r];
        s /= (double)N;
    }
    if (n->out->dtype == GF_F32) *(float *)gf__ptr(n->out) = (float)s;
    else *(double *)gf__ptr(n->out) = s;
}

gf_tensor *gf_cross_entropy(gf_tensor *logits, gf_tensor *labels) {
    gf_tensor *in[2] = {logits, labels};
    gf_ctx *ctx = gf__check_inputs("gf_cross_entropy", 2, in);
    if (!ctx) return NULL;
    if (labels->dtype != GF_I64) {
        gf__error(ctx, GF_EINVAL,
                  "gf_cross_entropy: labels %s are %s (expected i64 class indices)",
                  GF__SHAPE(labels), gf_dtype_name(labels->dtype));
        return NULL;
    }
    if (logits->ndim != 1 && logits->ndim != 2) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_cross_entropy: logits %s (expected [N, C], or [C] with a 0-dim label)",
                  GF__SHAPE(logits));
        return NULL;
    }
    int64_t N = gf__ce_n(logits), C = logits->shape[logits->ndim - 1];
    bool ok = logits->ndim == 2 ? labels->ndim == 1 && labels->shape[0] == N : labels->ndim == 0;
    if (!ok) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_cross_entropy: logits %s and labels %s do not match (expected labels %s)",
                  GF__SHAPE(logits), GF__SHAPE(labels),
                  logits->ndim == 2 ? gf__shape_str((char[32]){0}, 32, 1, &N) : "[] (0-dim)");
        return NULL;
    }
    if (C == 0 && N > 0) {
        gf__error(ctx, GF_ESHAPE, "gf_cross_entropy: logits %s have no classes",
                  GF__SHAPE(logits));
        return NULL;
    }
    if (!gf__nn_check_labels_now("gf_cross_entropy", labels, C)) return NULL;
    gf_scope_begin(ctx);
    gf_tensor *x = logits->dtype == GF_I64 ? gf_to_dtype(logits, GF_F32) : logits;
    gf_tensor *st = NULL, *out = NULL;
    if (x)
        st = gf__record(GF__OP_cross_entropy_rows, GF_F64, 2, (int64_t[]){4, N}, 2,
                        (gf_tensor *[]){x, labels}, NULL);
    if (st)
        out = gf_keep(gf__record(GF__OP_cross_entropy, x->dtype, 0, NULL, 3,
                                 (gf_tensor *[]){x, labels, st}, NULL));
    gf_scope_end(ctx);
    return out;
}

/* d/dlogits = (softmax(logits) - one_hot(labels)) * g / N. A plain backward
 * (grad mode off: nothing will differentiate this gradient) records the
 * fused cross_entropy_grad on the forward's statistics; with create_graph
 * the rule is composed of differentiable ops so that second derivatives
 * exist. Both give the same bits. */
gf_status gf__bwd_cross_entropy(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    if (!gf__needs_grad(n, 0)) return GF_OK;
    gf_tensor *x = n->in[0], *labels = n->in[1];
    if (!gf_is_grad_enabled(x->ctx) && g->dtype == x->dtype && g->ndim == 0) {
        gin[0] = gf__record(GF__OP_cross_entropy_grad, x->dtype, x->ndim, x->shape, 3,
                            (gf_tensor *[]){x, n->in[2], g}, NULL);
        return GF_OK;
    }
    int64_t N = gf__ce_n(x), C = x->shape[x->ndim - 1];
    gf_tensor *diff = gf_sub(gf_softmax(x, -1), gf_one_hot(labels, C, x->dtype));
    gin[0] = gf_mul(diff, gf_mul_scalar(g, N ? 1.0 / (double)N : 0.0));
    return GF_OK;
}

/* dx [N, C] (contiguous) = (softmax(x) - onehot(labels)) * (g * (1/N)) for
 * logits x [N, C] or [C] (any strides), the statistics of
 * cross_entropy_rows (m, inv, labels) and g 0-dim: vm->ce_grad_rows, one
 * exp pass, in blocks of rows. The scale is rounded as mul_scalar rounds
 * it and softmax is exp(x - m) * inv as the softmax kernel has it, so the
 * result is the composed rule's bits. Rows that are not uniform are first
 * copied into their output rows and computed there. */
#define GF__CE_GRAD_KERNEL(T, SFX)                                                         \
    /* What a tile of row blocks reads. */                                                 \
    typedef struct {                                                                       \
        const gf_tensor *X;                                                                \
        int d;                                                                             \
        bool uni;                                                                          \
        gf__nn_rows g;                                                                     \
        int64_t N, C, cr, ld;                                                              \
        const T *px, *m, *inv;                                                             \
        const int64_t *l;                                                                  \
        T gs, *py;                                                                         \
        const gf__vmath *vm;                                                               \
    } gf__ce_grad_args_##T;                                                                \
    /* The gradient's blocks [c0, c1) of cr rows. */                                       \
    static void gf__ce_grad_blocks_##T(void *arg, int64_t c0, int64_t c1) {                \
        const gf__ce_grad_args_##T *a = arg;                                               \
        const gf_tensor *X = a->X;                                                         \
        const int d = a->d;                                                                \
        const bool uni = a->uni;                                                           \
        const gf__nn_rows g = a->g;                                                        \
        const int64_t N = a->N, C = a->C, cr = a->cr, ld = a->ld;                          \
        const T *px = a->px, *m = a->m, *inv = a->inv, gs = a->gs;                         \
        const int64_t *l = a->l;                                                           \
        T *py = a->py;                                                                     \
        const gf__vmath *vm = a->vm;                                                       \
        for (int64_t c = c0; c < c1; c++) {                                                \
            int64_t r0 = c * cr, nr = N - r0 < cr ? N - r0 : cr, xl = ld;                  \
            T *y = py + r0 * C;                                                            \
            const T *xb = px + r0 * ld;                                                    \
            if (!uni) {                                                                    \
                gf__nn_gather_##T(X, d, g.stride, r0, nr, C, y);                           \
                xb = y, xl = C;                                                            \
            }                                                                              \
            vm->ce_grad_rows_##SFX(xb, xl, C, nr, m + r0, inv + r0, l + r0, gs, y);        \
        }                                                                                  \
    }                                                                                      \
    static void gf__ce_grad_##T(gf__node *n) {                                             \
        gf_tensor *X = n->in[0];                                                           \
        int d = X->ndim - 1;                                                               \
        gf__nn_rows g = gf__nn_rows_of(X, d);                                              \
        int64_t N = gf__ce_n(X), C = g.C, ld = C;                                          \
        T *py = gf__ptr(n->out);                                                           \
        if (n->out->numel == 0) return;                                                    \
        gf__ce_stats st = gf__ce_stats_of(n->in[1]);                                       \
        for (int64_t r = 0; r < N; r++)                                                    \
            if (st.l[r] < 0 || st.l[r] >= C) { /* the forward failed on its labels */      \
                gf__kernel_error(n, GF_EINVAL, "gf_cross_entropy: the forward's labels "   \
                                 "were out of range (no gradient)");                       \
                for (int64_t i = 0; i < N * C; i++) py[i] = (T)NAN;                        \
                return;                                                                    \
            }                                                                              \
        const T gs = (T)(*(const T *)gf__ptr(n->in[2]) * (T)(1.0 / (double)N));            \
        bool uni = gf__ce_uniform(X, &ld);                                                 \
        int64_t cr = gf__nn_small_cr(C), nch = (N + cr - 1) / cr;                          \
        gf__ce_grad_args_##T a = {X, d, uni, g, N, C, cr, ld, gf__ptr(X), st.m, st.inv,    \
                                  st.l, gs, py, gf__vmath_now()};                          \
        if (GF__PAR_WORTH(&n->par, N * C > GF__NN_PAR))                                    \
            gf__par_for(&n->par, nch, gf__par_grain(nch, cr * C, GF__NN_TILE),             \
                        gf__ce_grad_blocks_##T, &a);                                       \
        else                                                                               \
            gf__ce_grad_blocks_##T(&a, 0, nch);                                            \
    }

GF__CE_GRAD_KERNEL(float, f32)
GF__CE_GRAD_KERNEL(double, f64)

void gf__fwd_cross_entropy_grad(gf__node *n) {
    if (n->out->dtype == GF_F32) gf__ce_grad_float(n);
    else gf__ce_grad_double(n);
}

gf_status gf__bwd_cross_entropy_grad(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK; /* NODIFF: never called (create_graph uses the composed rule) */
}

/* ------------------------------------------------------------- one_hot */

/* out [labels..., C] (contiguous) = 1 at each label's class, 0 elsewhere. */
#define GF__ONE_HOT_KERNEL(T)                                                              \
    /* What a tile of rows reads. */                                                       \
    typedef struct {                                                                       \
        const gf_tensor *L;                                                                \
        int64_t C;                                                                         \
        T *po;                                                                             \
    } gf__one_hot_args_##T;                                                                \
    /* Rows [r0, r1) of the output. */                                                     \
    static void gf__one_hot_rows_##T(void *arg, int64_t r0, int64_t r1) {                  \
        const gf__one_hot_args_##T *a = arg;                                               \
        const gf_tensor *L = a->L;                                                         \
        const int64_t C = a->C;                                                            \
        T *po = a->po;                                                                     \
        for (int64_t r = r0; r < r1; r++) {                                                \
            T *o = po + r * C;                                                             \
            for (int64_t k = 0; k < C; k++) o[k] = 0;                                      \
            o[gf__nn_label_at(L, r)] = 1;                                                  \
        }                                                                                  \
    }                                                                                      \
    static void gf__one_hot_##T(gf__node *n) {                                             \
        gf_tensor *L = n->in[0];                                                           \
        int64_t C = n->a.i[0], rows = L->numel;                                            \
        T *po = gf__ptr(n->out);                                                           \
        if (n->out->numel == 0) return;                                                    \
        if (!gf__nn_check_labels_kernel(n, "gf_one_hot", L, C)) {                          \
            memset(po, 0, (size_t)n->out->numel * sizeof(T)); /* defined for consumers */  \
            return;                                                                        \
        }                                                                                  \
        gf__one_hot_args_##T a = {L, C, po};                                               \
        if (GF__PAR_WORTH(&n->par, rows * C > GF__NN_PAR))                                 \
            gf__par_for(&n->par, rows, gf__par_grain(rows, C, GF__NN_TILE),                \
                        gf__one_hot_rows_##T, &a);                                         \
        else                                                                               \
            gf__one_hot_rows_##T(&a, 0, rows);                                             \
    }

GF__ONE_HOT_KERNEL(float)
GF__ONE_HOT_KERNEL(double)
GF__ONE_HOT_KERNEL(int64_t)

void gf__fwd_one_hot(gf__node *n) {
    switch (n->out->dtype) {
    case GF_F32: gf__one_hot_float(n); break;
    case GF_F64: gf__one_hot_double(n); break;
    case GF_I64: gf__one_hot_int64_t(n); break;
    }
}

gf_status gf__bwd_one_hot(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK; /* NODIFF: never called */
}

gf_tensor *gf_one_hot(gf_tensor *labels, int64_t num_classes, gf_dtype dt) {
    if (!labels) return NULL;
    gf_ctx *ctx = labels->ctx;
    if (labels->dtype != GF_I64) {
        gf__error(ctx, GF_EINVAL, "gf_one_hot: labels %s are %s (expected i64 class indices)",
                  GF__SHAPE(labels), gf_dtype_name(labels->dtype));
        return NULL;
    }
    if (num_classes < 1) {
        gf__error(ctx, GF_EINVAL, "gf_one_hot: num_classes %lld (expected >= 1)",
                  (long long)num_classes);
        return NULL;
    }
    if (dt != GF_F32 && dt != GF_F64 && dt != GF_I64) {
        gf__error(ctx, GF_EINVAL, "gf_one_hot: unknown dtype %d (expected GF_F32, GF_F64 or "
                  "GF_I64)", (int)dt);
        return NULL;
    }
    if (labels->ndim + 1 > GF_MAX_DIMS) {
        gf__error(ctx, GF_ESHAPE, "gf_one_hot: labels %s have %d dims (expected at most %d, "
                  "the result adds one)", GF__SHAPE(labels), labels->ndim, GF_MAX_DIMS - 1);
        return NULL;
    }
    if (!gf__nn_check_labels_now("gf_one_hot", labels, num_classes)) return NULL;
    int64_t shape[GF_MAX_DIMS];
    memcpy(shape, labels->shape, (size_t)labels->ndim * sizeof *shape);
    shape[labels->ndim] = num_classes;
    gf__attrs at = {0};
    at.i[0] = num_classes;
    return gf__record(GF__OP_one_hot, dt, labels->ndim + 1, shape, 1, &labels, &at);
}
