/*
 * where.c - zero_where: v with zeros where a condition on one or two other
 * tensors holds (torch.where(cond, 0, v)), from which the backward rules
 * build their gradients at edge values as PyTorch 1.13 does: relu's
 * (x <= 0, so that a NaN input passes its gradient and an infinite
 * gradient gives 0, not inf * 0), pow's d/dbase (exponent == 0, 0 even at
 * 0^0) and pow's d/dexponent (base == 0 and exponent >= 0).
 *
 * v is differentiable (its gradient is zero_where of the incoming gradient
 * with the same condition); the condition tensors get no gradient. The
 * kernel only selects, so the result is the same bits for any schedule.
 */
#include "ops.h"

/* One kernel per dtype: out (contiguous, the broadcast shape) = P(c, c2) ?
 * 0 : v, every operand read through broadcast strides, row by row. */
#define GF__ZW_KERNEL(NAME, T)                                                              \
    static void NAME(gf__node *n) {                                                        \
        gf_tensor *O = n->out;                                                             \
        const int k = n->n_in, nd = O->ndim;                                               \
        const T *p[3] = {gf__ptr(n->in[0]), gf__ptr(n->in[1]),                             \
                         k > 2 ? gf__ptr(n->in[2]) : NULL};                                \
        T *po = gf__ptr(O);                                                                \
        const int pred = n->a.n;                                                           \
        if (O->numel == 0) return;                                                         \
        int64_t st[4][GF_MAX_DIMS] = {{0}};                                                \
        for (int j = 0; j < k; j++) gf__bcast_strides(n->in[j], nd, O->shape, st[j]);      \
        memcpy(st[3], O->strides, sizeof st[3]);                                           \
        const int64_t *sts[4] = {st[0], st[1], st[2], st[3]};                              \
        int64_t inner = nd ? O->shape[nd - 1] : 1, idx[GF_MAX_DIMS] = {0}, off[4] = {0};    \
        int64_t iv = nd ? st[0][nd - 1] : 0, ic = nd ? st[1][nd - 1] : 0;                  \
        int64_t ic2 = nd ? st[2][nd - 1] : 0;                                              \
        do {                                                                               \
            const T *v = p[0] + off[0], *c = p[1] + off[1];                                \
            const T *c2 = p[2] ? p[2] + off[2] : c;                                        \
            T *o = po + off[3];                                                            \
            for (int64_t i = 0; i < inner; i++) {                                          \
                T vi = v[i * iv], ci = c[i * ic], c2i = c2[i * ic2];                       \
                bool z = pred == GF__ZW_LE0 ? ci <= 0                                      \
                       : pred == GF__ZW_EQ0 ? ci == 0                                      \
                                            : ci == 0 && c2i >= 0;                         \
                o[i] = z ? (T)0 : vi;                                                      \
            }                                                                              \
        } while (nd && gf__next_row(nd, O->shape, idx, 4, off, sts));                      \
    }

GF__ZW_KERNEL(gf__zero_where_f32, float)
GF__ZW_KERNEL(gf__zero_where_f64, double)

void gf__fwd_zero_where(gf__node *n) {
    if (n->out->dtype == GF_F32) gf__zero_where_f32(n);
    else gf__zero_where_f64(n); /* the constructor admits f32 and f64 only */
}

gf_tensor *gf__zero_where(gf_tensor *v, gf_tensor *c, gf_tensor *c2, int pred) {
    const int k = pred == GF__ZW_EQ0_GE0 ? 3 : 2;
    gf_tensor *in[3] = {v, c, c2};
    gf_ctx *ctx = gf__check_inputs("zero_where", k, in);
    if (!ctx) return NULL;
    gf_dtype dt = GF_F32;
    int nd = 0;
    int64_t shape[GF_MAX_DIMS] = {0}, prev[GF_MAX_DIMS];
    for (int j = 0; j < k; j++) {
        if (in[j]->dtype == GF_I64) {
            gf__error(ctx, GF_EINVAL,
                      "zero_where: operand %d %s is i64 (expected f32 or f64 operands)", j,
                      GF__SHAPE(in[j]));
            return NULL;
        }
        dt = gf__promote(dt, in[j]->dtype);
        memcpy(prev, shape, sizeof prev);
        if (!gf__bcast_shape(nd, prev, in[j]->ndim, in[j]->shape, &nd, shape)) {
            gf__error(ctx, GF_ESHAPE,
                      "zero_where: operand %d %s cannot be broadcast with the shape %s of the "
                      "operands before it",
                      j, GF__SHAPE(in[j]), gf__shape_str((char[96]){0}, 96, nd, prev));
            return NULL;
        }
    }
    /* Casting up to the common dtype is exact, so the condition keeps its
     * truth; the casts are temporaries of an inner scope. */
    gf_scope_begin(ctx);
    gf_tensor *ci[3] = {NULL, NULL, NULL};
    bool ok = true;
    for (int j = 0; j < k; j++) {
        ci[j] = in[j]->dtype == dt ? in[j] : gf_to_dtype(in[j], dt);
        ok = ok && ci[j];
    }
    gf__attrs at = {0};
    at.n = pred;
    gf_tensor *out = ok ? gf_keep(gf__record(GF__OP_zero_where, dt, nd, shape, k, ci, &at)) : NULL;
    gf_scope_end(ctx);
    return out;
}

/* torch.where's gradient for its second branch: the incoming gradient with
 * the same zeros, reduced to v's shape. */
gf_status gf__bwd_zero_where(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    if (gf__needs_grad(n, 0))
        gin[0] = gf__sum_to(gf__zero_where(g, n->in[1], n->n_in > 2 ? n->in[2] : NULL, n->a.n),
                            GF__DIMS(n->in[0]));
    return GF_OK;
}
