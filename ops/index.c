/*
 * index.c - index_select (torch.index_select: the slices of a picked along
 * one dim by a 1-D i64 index, in index order, repeats allowed) and
 * index_add, its backward: zeros of the input's shape with the gradient's
 * slices added at the indexed positions (torch's index_add_ into zeros).
 * Each is the other's backward, so create_graph gives every order.
 *
 * Geometry: around the dim d a tensor is [outer, size, inner]; the output of
 * index_select is contiguous [outer, L, inner] (L the index length).
 *
 * Determinism: index_select only moves data. index_add adds the slices of
 * repeated indices in index order: threads divide (outer row, inner chunk)
 * units, and each unit walks the whole index in order, so every output
 * element receives the same additions in the same order for any thread
 * count.
 *
 * Indices outside [0, size) are an error naming the op, the position, the
 * value and the size: at the call when the index is already computed, else
 * when the kernel runs (the output is then zeros, never a wild read).
 */
#include "ops.h"

#include <stdio.h>

/* Below this many elements touched a kernel runs on one thread. */
#define GF__IX_PAR 32768
/* The least elements of one tile of a split loop. */
#define GF__IX_TILE 16384
/* Inner elements per index_add unit: the output columns a unit owns. */
#define GF__IX_CHUNK 1024

/* ------------------------------------------------------------- helpers */

/* The i-th index (index 0-dim or 1-D, any stride; computed). */
static inline int64_t gf__ix_at(const gf_tensor *ix, int64_t i) {
    const int64_t *p = gf__ptr(ix);
    return p[ix->ndim ? i * ix->strides[0] : 0];
}

/* Position of the first index outside [0, size), or -1. An expanded index
 * (stride 0) repeats one value: it is read once, however long the index. */
static int64_t gf__ix_bad(const gf_tensor *ix, int64_t size) {
    int64_t n = ix->ndim && ix->strides[0] == 0 && ix->numel > 1 ? 1 : ix->numel;
    for (int64_t i = 0; i < n; i++)
        if ((uint64_t)gf__ix_at(ix, i) >= (uint64_t)size) return i;
    return -1;
}

static void gf__ix_bad_msg(char *buf, size_t n, const char *op, const gf_tensor *ix, int64_t i,
                           int d, int64_t size) {
    snprintf(buf, n,
             "%s: index[%lld] = %lld is out of range for dim %d of size %lld (expected "
             "0 <= index < %lld)",
             op, (long long)i, (long long)gf__ix_at(ix, i), d, (long long)size, (long long)size);
}

/* Dims [lo, hi) of t with size-1 dims dropped and neighbours merged where
 * their strides allow; returns the count (0: a single element). */
static int gf__ix_merge(const gf_tensor *t, int lo, int hi, int64_t *sh, int64_t *st) {
    int n = 0;
    for (int i = lo; i < hi; i++) {
        if (t->shape[i] == 1) continue;
        if (n && st[n - 1] == t->strides[i] * t->shape[i]) {
            sh[n - 1] *= t->shape[i];
            st[n - 1] = t->strides[i];
        } else {
            sh[n] = t->shape[i];
            st[n] = t->strides[i];
            n++;
        }
    }
    return n;
}

/* Offset of row-major index o over n merged dims. */
static inline int64_t gf__ix_off(int n, const int64_t *sh, const int64_t *st, int64_t o) {
    if (n == 1) return o * st[0];
    int64_t off = 0;
    for (int k = n - 1; k >= 0; k--) {
        off += (o % sh[k]) * st[k];
        o /= sh[k];
    }
    return off;
}

/* ------------------------------------------------------- index_select */

/* What a tile of output rows reads. */
typedef struct {
    const gf_tensor *ix;
    const char *pa;
    char *po;
    int64_t L, inner, sd;
    int no, ni; /* merged outer and inner dims of a */
    int64_t osh[GF_MAX_DIMS], ost[GF_MAX_DIMS], ish[GF_MAX_DIMS], ist[GF_MAX_DIMS];
} gf__ixs_args;

/* Output rows [r0, r1): row r = o*L + i is a's slice idx[i] of outer row o. */
#define GF__IXS_ROWS(T)                                                                    \
    static void gf__ixs_rows_##T(void *arg, int64_t r0, int64_t r1) {                      \
        const gf__ixs_args *g = arg;                                                       \
        const T *pa = (const T *)g->pa;                                                    \
        T *po = (T *)g->po + r0 * g->inner;                                                \
        for (int64_t r = r0; r < r1; r++) {                                                \
            int64_t o = r / g->L, i = r % g->L;                                            \
            const T *s = pa + gf__ix_off(g->no, g->osh, g->ost, o) + gf__ix_at(g->ix, i) * g->sd; \
            if (g->ni == 0) {                                                              \
                *po++ = s[0];                                                              \
            } else if (g->ni == 1) {                                                       \
                int64_t n = g->ish[0], st = g->ist[0];                                     \
                if (st == 1)                                                               \
                    for (int64_t k = 0; k < n; k++) po[k] = s[k];                          \
                else                                                                       \
                    for (int64_t k = 0; k < n; k++) po[k] = s[k * st];                     \
                po += n;                                                                   \
            } else {                                                                       \
                int64_t idx[GF_MAX_DIMS] = {0}, off[1] = {0};                              \
                const int64_t *st[1] = {g->ist};                                           \
                int64_t n = g->ish[g->ni - 1], sl = g->ist[g->ni - 1];                     \
                do {                                                                       \
                    for (int64_t k = 0; k < n; k++) po[k] = s[off[0] + k * sl];            \
                    po += n;                                                               \
                } while (gf__next_row(g->ni, g->ish, idx, 1, off, st));                    \
            }                                                                              \
        }                                                                                  \
    }

GF__IXS_ROWS(float)
GF__IXS_ROWS(double)
GF__IXS_ROWS(int64_t)

void gf__fwd_index_select(gf__node *n) {
    gf_tensor *a = n->in[0], *ix = n->in[1], *o = n->out;
    int d = n->a.dim;
    int64_t bad = gf__ix_bad(ix, a->shape[d]);
    if (bad >= 0) {
        char msg[256];
        gf__ix_bad_msg(msg, sizeof msg, "gf_index_select", ix, bad, d, a->shape[d]);
        gf__kernel_error(n, GF_EINVAL, "%s", msg);
        memset(gf__ptr(o), 0, (size_t)o->numel * gf__dtype_size(o->dtype)); /* defined */
        return;
    }
    if (o->numel == 0) return;
    gf__ixs_args g = {.ix = ix, .pa = gf__ptr(a), .po = gf__ptr(o), .L = ix->numel,
                      .sd = a->strides[d]};
    g.no = gf__ix_merge(a, 0, d, g.osh, g.ost);
    g.ni = gf__ix_merge(a, d + 1, a->ndim, g.ish, g.ist);
    g.inner = gf__numel(g.ni, g.ish);
    int64_t rows = o->numel / g.inner;
    gf__range_fn fn = o->dtype == GF_F32   ? gf__ixs_rows_float
                      : o->dtype == GF_F64 ? gf__ixs_rows_double
                                           : gf__ixs_rows_int64_t;
    if (GF__PAR_WORTH(&n->par, o->numel > GF__IX_PAR))
        gf__par_for(&n->par, rows, gf__par_grain(rows, g.inner, GF__IX_TILE), fn, &g);
    else
        fn(&g, 0, rows);
}

/* index_add of g (the output's gradient) into zeros of a's shape. */
static gf_tensor *gf__index_add(gf_tensor *g, gf_tensor *ix, int d, int ndim,
                                const int64_t *shape) {
    /* The kernel reads g as contiguous [outer, L, inner]: gradients are often
     * expanded or permuted views. */
    gf_tensor *gc = gf_contiguous(g);
    if (!gc) return NULL;
    gf__attrs at = {.dim = d, .n = ndim};
    memcpy(at.i, shape, (size_t)ndim * sizeof *shape);
    return gf__record(GF__OP_index_add, gc->dtype, ndim, shape, 2, (gf_tensor *[]){gc, ix}, &at);
}

gf_status gf__bwd_index_select(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    if (gf__needs_grad(n, 0))
        gin[0] = gf__index_add(g, n->in[1], n->a.dim, GF__DIMS(n->in[0]));
    return GF_OK;
}

gf_tensor *gf_index_select(gf_tensor *a, int dim, gf_tensor *index) {
    gf_ctx *ctx = gf__check_inputs("gf_index_select", 2, (gf_tensor *[]){a, index});
    if (!ctx) {
        /* One of them NULL: if the other is a tensor, make sure its ctx
         * says why nothing came back. */
        gf_tensor *t = a ? a : index;
        if (t && !a != !index)
            gf__error(t->ctx, GF_EINVAL, "gf_index_select: %s is NULL",
                      a ? "index" : "the input");
        return NULL;
    }
    if (index->dtype != GF_I64 || index->ndim > 1) {
        gf__error(ctx, GF_EINVAL,
                  "gf_index_select: index %s is %s (expected a 1-D i64 tensor of indices)",
                  GF__SHAPE(index), gf_dtype_name(index->dtype));
        return NULL;
    }
    if (a->ndim == 0) {
        gf__error(ctx, GF_EINVAL,
                  "gf_index_select: input is 0-dim (expected a tensor of at least 1 dim)");
        return NULL;
    }
    int d = gf__norm_dim(ctx, "gf_index_select", dim, a->ndim);
    if (d < 0) return NULL;
    bool computed = (!index->node || !gf__node_pending(index->node)) && index->storage->data;
    int64_t bad = computed ? gf__ix_bad(index, a->shape[d]) : -1;
    if (bad >= 0) {
        char msg[256];
        gf__ix_bad_msg(msg, sizeof msg, "gf_index_select", index, bad, d, a->shape[d]);
        gf__error(ctx, GF_EINVAL, "%s (input %s)", msg, GF__SHAPE(a));
        return NULL;
    }
    int64_t sh[GF_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    sh[d] = index->numel;
    gf__attrs at = {.dim = d};
    return gf__record(GF__OP_index_select, a->dtype, a->ndim, sh, 2, (gf_tensor *[]){a, index},
                      &at);
}

/* ---------------------------------------------------------- index_add */

/* What a tile of units reads: g contiguous [outer, L, inner] into out
 * contiguous [outer, S, inner]. */
typedef struct {
    const gf_tensor *ix;
    const char *pg;
    char *po;
    int64_t L, S, inner, nch;
} gf__ixa_args;

/* Units [u0, u1): unit u = o*nch + c owns columns [c*CHUNK, ...) of every
 * row of outer row o; it zeroes them, then adds g's rows in index order. */
#define GF__IXA_UNITS(T)                                                                   \
    static void gf__ixa_units_##T(void *arg, int64_t u0, int64_t u1) {                     \
        const gf__ixa_args *a = arg;                                                       \
        const T *pg = (const T *)a->pg;                                                    \
        T *po = (T *)a->po;                                                                \
        for (int64_t u = u0; u < u1; u++) {                                                \
            int64_t o = u / a->nch, k0 = (u % a->nch) * GF__IX_CHUNK;                      \
            int64_t w = a->inner - k0 < GF__IX_CHUNK ? a->inner - k0 : GF__IX_CHUNK;       \
            T *ob = po + o * a->S * a->inner + k0;                                         \
            const T *gb = pg + o * a->L * a->inner + k0;                                   \
            for (int64_t j = 0; j < a->S; j++)                                             \
                for (int64_t k = 0; k < w; k++) ob[j * a->inner + k] = 0;                  \
            for (int64_t i = 0; i < a->L; i++) {                                           \
                T *dst = ob + gf__ix_at(a->ix, i) * a->inner;                              \
                const T *src = gb + i * a->inner;                                          \
                for (int64_t k = 0; k < w; k++) dst[k] += src[k];                          \
            }                                                                              \
        }                                                                                  \
    }

GF__IXA_UNITS(float)
GF__IXA_UNITS(double)
GF__IXA_UNITS(int64_t)

void gf__fwd_index_add(gf__node *n) {
    gf_tensor *g = n->in[0], *ix = n->in[1], *o = n->out;
    int d = n->a.dim;
    int64_t S = o->shape[d];
    int64_t bad = gf__ix_bad(ix, S);
    if (bad >= 0) { /* the index changed since the forward: never write outside out */
        char msg[256];
        gf__ix_bad_msg(msg, sizeof msg, "gf_index_select (backward)", ix, bad, d, S);
        gf__kernel_error(n, GF_EINVAL, "%s", msg);
        memset(gf__ptr(o), 0, (size_t)o->numel * gf__dtype_size(o->dtype));
        return;
    }
    if (o->numel == 0) return;
    int64_t inner = gf__numel(o->ndim - d - 1, o->shape + d + 1);
    gf__ixa_args a = {.ix = ix, .pg = gf__ptr(g), .po = gf__ptr(o), .L = ix->numel, .S = S,
                      .inner = inner, .nch = (inner + GF__IX_CHUNK - 1) / GF__IX_CHUNK};
    int64_t units = o->numel / (S * inner) * a.nch;
    gf__range_fn fn = o->dtype == GF_F32   ? gf__ixa_units_float
                      : o->dtype == GF_F64 ? gf__ixa_units_double
                                           : gf__ixa_units_int64_t;
    int64_t w = inner < GF__IX_CHUNK ? inner : GF__IX_CHUNK;
    if (GF__PAR_WORTH(&n->par, o->numel + g->numel > GF__IX_PAR))
        gf__par_for(&n->par, units, gf__par_grain(units, (S + a.L) * w, GF__IX_TILE), fn, &a);
    else
        fn(&a, 0, units);
}

gf_status gf__bwd_index_add(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    if (gf__needs_grad(n, 0)) gin[0] = gf_index_select(g, n->a.dim, n->in[1]);
    return GF_OK;
}
