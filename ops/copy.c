/*
 * copy.c - data movement between tensors: the strided, broadcasting,
 * converting copy that cat, slice_scatter, contiguous, clone, cast and copy_
 * share; the check that floats fit in i64 before they are converted, and the
 * walk over a view's distinct elements that such checks use; and the cast
 * and copy ops.
 */
#include "ops.h"

#define GF__COPY_LOOP(TD, TS)                                                              \
    do {                                                                                   \
        TD *pd = gf__ptr(dst);                                                             \
        const TS *ps = gf__ptr(src);                                                       \
        if (nd == 0) {                                                                     \
            pd[0] = GF__CVT(TD, ps[0]);                                                    \
            break;                                                                         \
        }                                                                                  \
        int64_t idx[GF_MAX_DIMS] = {0}, off[2] = {0, 0};                                   \
        const int64_t *st[2] = {sd, ss};                                                   \
        int64_t inner = dst->shape[nd - 1], id = sd[nd - 1], is = ss[nd - 1];              \
        do {                                                                               \
            TD *rd = pd + off[0];                                                          \
            const TS *rs = ps + off[1];                                                    \
            if (id == 1 && is == 1)                                                        \
                for (int64_t i = 0; i < inner; i++) rd[i] = GF__CVT(TD, rs[i]);            \
            else                                                                           \
                for (int64_t i = 0; i < inner; i++) rd[i * id] = GF__CVT(TD, rs[i * is]);  \
        } while (gf__next_row(nd, dst->shape, idx, 2, off, st));                           \
    } while (0)

#define GF__COPY_FROM(TD)                                                                  \
    switch (src->dtype) {                                                                  \
    case GF_F32: GF__COPY_LOOP(TD, float); break;                                          \
    case GF_F64: GF__COPY_LOOP(TD, double); break;                                         \
    case GF_I64: GF__COPY_LOOP(TD, int64_t); break;                                        \
    }

void gf__copy_into(gf_tensor *dst, const gf_tensor *src) {
    int nd = dst->ndim;
    if (dst->numel == 0) return;
    int64_t sd[GF_MAX_DIMS], ss[GF_MAX_DIMS];
    memcpy(sd, dst->strides, sizeof sd);
    gf__bcast_strides(src, nd, dst->shape, ss);
    switch (dst->dtype) {
    case GF_F32: GF__COPY_FROM(float); break;
    case GF_F64: GF__COPY_FROM(double); break;
    case GF_I64: GF__COPY_FROM(int64_t); break;
    }
}

#define GF__FIRST_NOT_I64(T)                                                               \
    do {                                                                                   \
        const T *p = gf__ptr(t);                                                           \
        for (int64_t i = 0; i < t->numel; i++)                                             \
            if (!gf__fits_i64(p[i])) {                                                     \
                *v = p[i];                                                                 \
                return i;                                                                  \
            }                                                                              \
    } while (0)

int64_t gf__first_not_i64(const gf_tensor *t, double *v) {
    if (t->dtype == GF_I64 || t->numel == 0) return -1;
    /* A contiguous tensor is one flat pass; a strided view (rare on this
     * path: float to i64 conversions) goes element by element. */
    if (gf__is_contig(t)) {
        if (t->dtype == GF_F32) GF__FIRST_NOT_I64(float);
        else GF__FIRST_NOT_I64(double);
        return -1;
    }
    /* Each element in memory once: a view expanded far past its storage
     * costs what the storage does. */
    const char *p = gf__ptr(t);
    for (int64_t j = 0, n = gf__distinct_count(t), off; j < n; j++) {
        int64_t i = gf__distinct_at(t, j, &off);
        double x = t->dtype == GF_F32 ? ((const float *)p)[off] : ((const double *)p)[off];
        if (!gf__fits_i64(x)) {
            *v = x;
            return i;
        }
    }
    return -1;
}

/* ---------------------------------------------------- distinct elements */

int64_t gf__distinct_count(const gf_tensor *t) {
    if (t->numel == 0) return 0;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->strides[d] != 0) n *= t->shape[d];
    return n;
}

int64_t gf__distinct_at(const gf_tensor *t, int64_t j, int64_t *off) {
    int64_t i = 0, unit = 1;
    *off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->strides[d] != 0) {
            int64_t k = j % t->shape[d];
            j /= t->shape[d];
            *off += k * t->strides[d];
            i += k * unit;
        }
        unit *= t->shape[d];
    }
    return i;
}

/* ------------------------------------------------------------------ cast */

/* The error of a float to i64 cast whose element i (value v) does not fit. */
#define GF__CAST_ERR_FMT                                                                   \
    "gf_to_dtype: element %lld of %s tensor %s is %g (expected finite values in "         \
    "[-2^63, 2^63) to convert to i64)"

/* A value i64 cannot hold is reported as the cast runs (its input was not
 * computed when the cast was recorded) and written as 0. */
void gf__fwd_cast(gf__node *n) {
    double v;
    int64_t i = n->out->dtype == GF_I64 ? gf__first_not_i64(n->in[0], &v) : -1;
    if (i >= 0)
        gf__kernel_error(n, GF_EINVAL, GF__CAST_ERR_FMT, (long long)i,
                         gf_dtype_name(n->in[0]->dtype), GF__SHAPE(n->in[0]), v);
    gf__copy_into(n->out, n->in[0]);
}

gf_status gf__bwd_cast(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_to_dtype(g, n->in[0]->dtype);
    return GF_OK;
}

gf_tensor *gf_to_dtype(gf_tensor *a, gf_dtype dt) {
    if (!a) return NULL;
    if (dt != GF_F32 && dt != GF_F64 && dt != GF_I64) {
        gf__error(a->ctx, GF_EINVAL, "gf_to_dtype: unknown dtype %d", (int)dt);
        return NULL;
    }
    if (a->dtype == dt) return gf__record_view(GF__OP_reshape, a, a->ndim, a->shape, a->strides,
                                               a->offset, &(gf__attrs){0});
    /* Casting to i64 ends the graph: integers carry no gradient. Values
     * already computed are checked now, so that the error points at this
     * call; pending ones when the cast runs. */
    if (dt == GF_I64) {
        double v;
        bool computed = (!a->node || !gf__node_pending(a->node)) && a->storage->data;
        int64_t i = computed ? gf__first_not_i64(a, &v) : -1;
        if (i >= 0) {
            gf__error(a->ctx, GF_EINVAL, GF__CAST_ERR_FMT, (long long)i,
                      gf_dtype_name(a->dtype), GF__SHAPE(a), v);
            return NULL;
        }
        gf_no_grad_begin(a->ctx);
        gf_tensor *t = gf__record(GF__OP_cast, dt, a->ndim, a->shape, 1, &a, NULL);
        gf_no_grad_end(a->ctx);
        return t;
    }
    return gf__record(GF__OP_cast, dt, a->ndim, a->shape, 1, &a, NULL);
}

/* ------------------------------------------------------------------ copy */

void gf__fwd_copy(gf__node *n) { gf__copy_into(n->out, n->in[0]); }

gf_status gf__bwd_copy(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n;
    (void)out;
    gin[0] = g;
    return GF_OK;
}

gf_tensor *gf_clone(gf_tensor *a) {
    if (!a) return NULL;
    return gf__record(GF__OP_copy, a->dtype, a->ndim, a->shape, 1, &a, NULL);
}

gf_tensor *gf_contiguous(gf_tensor *a) {
    if (!a) return NULL;
    if (gf__is_contig(a))
        return gf__record_view(GF__OP_reshape, a, a->ndim, a->shape, a->strides, a->offset,
                               &(gf__attrs){0});
    return gf_clone(a);
}
