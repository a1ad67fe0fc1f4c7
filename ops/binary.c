/*
 * binary.c - broadcasting elementwise binary ops: add, sub, mul, div, pow.
 *
 * Inputs of different dtypes are promoted as PyTorch does (i64 < f32 < f64;
 * i64 / i64 gives f32), by a cast node in front of the op, so kernels see one
 * dtype. Broadcasting is done by strides (0 along broadcast dims): no input
 * is expanded in memory.
 */
#include "ops.h"

#include <stdio.h>

/* out (contiguous, shape of out) = f(a, b) with a, b read through broadcast
 * strides; a and b contiguous and of out's size are read flat, in tiles of
 * elements. One instance per dtype and op. */
#define GF__BIN_KERNEL(NAME, T, EXPR)                                                        \
    typedef struct {                                                                        \
        const T *pa, *pb;                                                                   \
        T *po;                                                                              \
    } NAME##_args;                                                                          \
    /* Elements [lo, hi) of contiguous a, b and out. */                                     \
    static void NAME##_tile(void *arg, int64_t lo, int64_t hi) {                            \
        const NAME##_args *a_ = arg;                                                        \
        const T *pa = a_->pa, *pb = a_->pb;                                                 \
        T *po = a_->po;                                                                     \
        _Pragma("omp simd")                                                                 \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            T x = pa[i], y = pb[i];                                                         \
            po[i] = (EXPR);                                                                 \
        }                                                                                   \
    }                                                                                       \
    static void NAME(gf__node *n) {                                                         \
        gf_tensor *A = n->in[0], *B = n->in[1], *O = n->out;                                \
        const T *pa = gf__ptr(A), *pb = gf__ptr(B);                                         \
        T *po = gf__ptr(O);                                                                 \
        int nd = O->ndim;                                                                   \
        if (O->numel == 0) return;                                                          \
        if (nd == 0) {                                                                      \
            T x = pa[0], y = pb[0];                                                         \
            po[0] = (EXPR);                                                                 \
            return;                                                                         \
        }                                                                                   \
        int64_t sa[GF_MAX_DIMS], sb[GF_MAX_DIMS], so[GF_MAX_DIMS];                          \
        gf__bcast_strides(A, nd, O->shape, sa);                                             \
        gf__bcast_strides(B, nd, O->shape, sb);                                             \
        memcpy(so, O->strides, sizeof so);                                                  \
        int64_t inner = O->shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];                 \
        if (gf__is_contig(A) && gf__is_contig(B) && A->numel == O->numel &&                 \
            B->numel == O->numel) {                                                         \
            int64_t total = O->numel;                                                       \
            NAME##_args args = {pa, pb, po};                                                \
            if (GF__PAR_WORTH(&n->par, total > 65536))                                      \
                gf__par_for(&n->par, total, gf__par_grain(total, 1, 16384), NAME##_tile,    \
                            &args);                                                         \
            else                                                                            \
                NAME##_tile(&args, 0, total);                                               \
            return;                                                                         \
        }                                                                                   \
        int64_t idx[GF_MAX_DIMS] = {0}, off[3] = {0, 0, 0};                                 \
        const int64_t *st[3] = {sa, sb, so};                                                \
        do {                                                                                \
            const T *ra = pa + off[0], *rb = pb + off[1];                                   \
            T *ro = po + off[2];                                                            \
            for (int64_t i = 0; i < inner; i++) {                                           \
                T x = ra[i * ia], y = rb[i * ib];                                           \
                ro[i] = (EXPR);                                                             \
            }                                                                               \
        } while (gf__next_row(nd, O->shape, idx, 3, off, st));                              \
    }

#define GF__BIN_OP(name, EXPR_F, EXPR_I)                                                     \
    GF__BIN_KERNEL(gf__##name##_f32, float, EXPR_F)                                         \
    GF__BIN_KERNEL(gf__##name##_f64, double, EXPR_F)                                        \
    GF__BIN_KERNEL(gf__##name##_i64, int64_t, EXPR_I)                                       \
    void gf__fwd_##name(gf__node *n) {                                                      \
        switch (n->out->dtype) {                                                            \
        case GF_F32: gf__##name##_f32(n); break;                                            \
        case GF_F64: gf__##name##_f64(n); break;                                            \
        case GF_I64: gf__##name##_i64(n); break;                                            \
        }                                                                                   \
    }

/* Integer division and power follow PyTorch on i64 only where defined:
 * div of two i64 is promoted to f32 before it gets here. i64 add, sub, mul
 * and pow wrap modulo 2^64 (ops.h). */
static inline int64_t gf__ipow(int64_t x, int64_t y) {
    if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
    return gf__wpow(x, y);
}

GF__BIN_OP(add, x + y, gf__wadd(x, y))
GF__BIN_OP(sub, x - y, gf__wsub(x, y))
GF__BIN_OP(mul, x * y, gf__wmul(x, y))
GF__BIN_OP(div, x / y, y ? x / y : 0)
GF__BIN_OP(pow, _Generic(x, float: powf, default: pow)(x, y), gf__ipow(x, y))

/* Checks, promotes and records a binary op. */
static gf_tensor *gf__binary(gf__op op, gf_tensor *a, gf_tensor *b) {
    gf_tensor *in[2] = {a, b};
    const char *name = gf__op_names[op];
    /* The inputs' errors name the public function: gf__check_inputs adds
     * the gf_ prefix itself (no formatting here on the hot path). */
    gf_ctx *ctx = gf__check_inputs(name, 2, in);
    if (!ctx) return NULL;
    int nd;
    int64_t shape[GF_MAX_DIMS];
    if (!gf__bcast_shape(a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) {
        gf__error(ctx, GF_ESHAPE, "gf_%s: shapes %s and %s cannot be broadcast together", name,
                  GF__SHAPE(a), GF__SHAPE(b));
        return NULL;
    }
    gf_dtype dt = gf__promote(a->dtype, b->dtype);
    if (dt == GF_I64 && (op == GF__OP_div)) dt = GF_F32;
    gf_scope_begin(ctx);
    gf_tensor *ca = a->dtype == dt ? a : gf_to_dtype(a, dt);
    gf_tensor *cb = b->dtype == dt ? b : gf_to_dtype(b, dt);
    gf_tensor *out = NULL;
    if (ca && cb) out = gf_keep(gf__record(op, dt, nd, shape, 2, (gf_tensor *[]){ca, cb}, NULL));
    gf_scope_end(ctx);
    return out;
}

gf_tensor *gf_add(gf_tensor *a, gf_tensor *b) { return gf__binary(GF__OP_add, a, b); }
gf_tensor *gf_sub(gf_tensor *a, gf_tensor *b) { return gf__binary(GF__OP_sub, a, b); }
gf_tensor *gf_mul(gf_tensor *a, gf_tensor *b) { return gf__binary(GF__OP_mul, a, b); }
gf_tensor *gf_div(gf_tensor *a, gf_tensor *b) { return gf__binary(GF__OP_div, a, b); }
gf_tensor *gf_pow(gf_tensor *a, gf_tensor *b) { return gf__binary(GF__OP_pow, a, b); }

/* ------------------------------------------------------------- backward */
/* Each rule reduces a broadcast gradient back to its input's shape. */

gf_status gf__bwd_add(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    for (int i = 0; i < 2; i++)
        if (gf__needs_grad(n, i)) gin[i] = gf__sum_to(g, GF__DIMS(n->in[i]));
    return GF_OK;
}

gf_status gf__bwd_sub(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    if (gf__needs_grad(n, 0)) gin[0] = gf__sum_to(g, GF__DIMS(n->in[0]));
    if (gf__needs_grad(n, 1)) gin[1] = gf__sum_to(gf_neg(g), GF__DIMS(n->in[1]));
    return GF_OK;
}

gf_status gf__bwd_mul(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gf_tensor *a = n->in[0], *b = n->in[1];
    if (gf__needs_grad(n, 0)) gin[0] = gf__sum_to(gf_mul(g, b), GF__DIMS(a));
    if (gf__needs_grad(n, 1)) gin[1] = gf__sum_to(gf_mul(g, a), GF__DIMS(b));
    return GF_OK;
}

gf_status gf__bwd_div(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    gf_tensor *a = n->in[0], *b = n->in[1];
    if (gf__needs_grad(n, 0)) gin[0] = gf__sum_to(gf_div(g, b), GF__DIMS(a));
    /* d(a/b)/db = -(a/b)/b */
    if (gf__needs_grad(n, 1)) gin[1] = gf__sum_to(gf_neg(gf_div(gf_mul(g, out), b)), GF__DIMS(b));
    return GF_OK;
}

/* PyTorch 1.13's pow_backward_self and pow_backward_exponent, operation by
 * operation: d/da a^b = b a^(b-1), but 0 where b == 0 (0^0 included, where
 * the formula gives 0 * inf); d/db a^b = a^b log a, but 0 where a == 0 and
 * b >= 0 (log 0 = -inf times 0^b). */
gf_status gf__bwd_pow(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    gf_tensor *a = n->in[0], *b = n->in[1];
    if (gf__needs_grad(n, 0)) {
        gf_tensor *d = gf_mul(g, gf_mul(b, gf_pow(a, gf_add_scalar(b, -1.0))));
        gin[0] = gf__sum_to(gf__zero_where(d, b, NULL, GF__ZW_EQ0), GF__DIMS(a));
    }
    if (gf__needs_grad(n, 1)) {
        gf_tensor *d = gf__zero_where(gf_mul(out, gf_log(a)), a, b, GF__ZW_EQ0_GE0);
        gin[1] = gf__sum_to(gf_mul(g, d), GF__DIMS(b));
    }
    return GF_OK;
}
