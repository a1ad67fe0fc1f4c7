/*
 * inplace.c - in-place updates for optimizers and .grad bookkeeping: sub_,
 * axpy_, fill_, copy_, mul_scalar_. They run at once (after every pending
 * reader and writer of the destination, see gf__run_inplace), bump the
 * storage's version counter, and are never recorded for autograd.
 */
#include "ops.h"

/* y OP x in the type of y: wrapping for i64 (ops.h), the plain operator for
 * floats. */
#define GF__ADDW(y, x) \
    _Generic((y), int64_t: gf__wadd((int64_t)(y), (int64_t)(x)), default: (y) + (x))
#define GF__SUBW(y, x) \
    _Generic((y), int64_t: gf__wsub((int64_t)(y), (int64_t)(x)), default: (y) - (x))
#define GF__MULW(y, x) \
    _Generic((y), int64_t: gf__wmul((int64_t)(y), (int64_t)(x)), default: (y) * (x))

/* dst(i) = f(dst(i), src(i)) with src broadcast to dst's shape; both strided.
 * src and alpha converted to dst's dtype on the fly (GF__CVT). */
#define GF__UPD_KERNEL(NAME, TD, TS, EXPR)                                                  \
    static void NAME(gf_tensor *D, const gf_tensor *S, double alpha) {                     \
        TD *pd = gf__ptr(D);                                                               \
        const TS *ps = S ? (const TS *)gf__ptr(S) : NULL;                                  \
        TD al = GF__CVT(TD, alpha);                                                        \
        (void)al;                                                                          \
        int nd = D->ndim;                                                                  \
        if (D->numel == 0) return;                                                         \
        if (nd == 0) {                                                                     \
            TD y = pd[0];                                                                  \
            TD x = ps ? GF__CVT(TD, ps[0]) : 0;                                            \
            (void)x, (void)y;                                                              \
            pd[0] = (EXPR);                                                                \
            return;                                                                        \
        }                                                                                  \
        int64_t sd[GF_MAX_DIMS], ss[GF_MAX_DIMS] = {0};                                    \
        memcpy(sd, D->strides, sizeof sd);                                                 \
        if (S) gf__bcast_strides(S, nd, D->shape, ss);                                     \
        if (gf__is_contig(D) && (!S || (gf__is_contig(S) && S->numel == D->numel))) {      \
            int64_t total = D->numel;                                                      \
            for (int64_t i = 0; i < total; i++) {                                          \
                TD y = pd[i];                                                              \
                TD x = ps ? GF__CVT(TD, ps[i]) : 0;                                        \
                (void)x, (void)y;                                                          \
                pd[i] = (EXPR);                                                            \
            }                                                                              \
            return;                                                                        \
        }                                                                                  \
        int64_t idx[GF_MAX_DIMS] = {0}, off[2] = {0, 0};                                   \
        const int64_t *st[2] = {sd, ss};                                                   \
        int64_t inner = D->shape[nd - 1], id = sd[nd - 1], is = ss[nd - 1];                \
        do {                                                                               \
            TD *rd = pd + off[0];                                                          \
            const TS *rs = ps ? ps + off[1] : NULL;                                        \
            for (int64_t i = 0; i < inner; i++) {                                          \
                TD y = rd[i * id];                                                         \
                TD x = rs ? GF__CVT(TD, rs[i * is]) : 0;                                   \
                (void)x, (void)y;                                                          \
                rd[i * id] = (EXPR);                                                       \
            }                                                                              \
        } while (gf__next_row(nd, D->shape, idx, 2, off, st));                             \
    }

#define GF__UPD_ALL(name, EXPR)                                                             \
    GF__UPD_KERNEL(gf__##name##_ff, float, float, EXPR)                                    \
    GF__UPD_KERNEL(gf__##name##_fd, float, double, EXPR)                                   \
    GF__UPD_KERNEL(gf__##name##_fi, float, int64_t, EXPR)                                  \
    GF__UPD_KERNEL(gf__##name##_df, double, float, EXPR)                                   \
    GF__UPD_KERNEL(gf__##name##_dd, double, double, EXPR)                                  \
    GF__UPD_KERNEL(gf__##name##_di, double, int64_t, EXPR)                                 \
    GF__UPD_KERNEL(gf__##name##_if, int64_t, float, EXPR)                                  \
    GF__UPD_KERNEL(gf__##name##_id, int64_t, double, EXPR)                                 \
    GF__UPD_KERNEL(gf__##name##_ii, int64_t, int64_t, EXPR)                                \
    static void gf__##name(gf_tensor *D, const gf_tensor *S, double alpha) {               \
        static void (*const k[3][3])(gf_tensor *, const gf_tensor *, double) = {           \
            {gf__##name##_ff, gf__##name##_fd, gf__##name##_fi},                           \
            {gf__##name##_df, gf__##name##_dd, gf__##name##_di},                           \
            {gf__##name##_if, gf__##name##_id, gf__##name##_ii}};                          \
        k[D->dtype][S ? S->dtype : D->dtype](D, S, alpha);                                 \
    }

GF__UPD_ALL(upd_sub, GF__SUBW(y, x))
GF__UPD_ALL(upd_axpy, GF__ADDW(y, GF__MULW(al, x)))
GF__UPD_ALL(upd_copy, x)
GF__UPD_ALL(upd_fill, al)
GF__UPD_ALL(upd_scale, GF__MULW(y, al))

/* A floating source of an i64 destination converts as gf_to_dtype does: a
 * value i64 cannot hold is an error, found before anything is written. */
static bool gf__src_fits(gf__node *n) {
    const gf_tensor *D = n->out, *S = n->in[1];
    double v;
    int64_t i = D->dtype == GF_I64 ? gf__first_not_i64(S, &v) : -1;
    if (i < 0) return true;
    gf__kernel_error(n, GF_EINVAL,
                     "gf_%s: element %lld of the %s source %s is %g, which the i64 destination "
                     "%s cannot hold (expected finite values in [-2^63, 2^63))",
                     gf__op_names[n->op], (long long)i, gf_dtype_name(S->dtype), GF__SHAPE(S),
                     v, GF__SHAPE(D));
    return false;
}

void gf__fwd_sub_(gf__node *n) {
    if (gf__src_fits(n)) gf__upd_sub(n->out, n->in[1], 0);
}
void gf__fwd_axpy_(gf__node *n) {
    if (gf__src_fits(n)) gf__upd_axpy(n->out, n->in[1], n->a.s);
}
void gf__fwd_copy_(gf__node *n) {
    if (gf__src_fits(n)) gf__upd_copy(n->out, n->in[1], 0);
}
void gf__fwd_fill_(gf__node *n) { gf__upd_fill(n->out, NULL, n->a.s); }
void gf__fwd_mul_scalar_(gf__node *n) { gf__upd_scale(n->out, NULL, n->a.s); }

/* In-place updates are never part of a graph. */
#define GF__NO_BWD(name)                                                                    \
    gf_status gf__bwd_##name(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { \
        (void)n, (void)out, (void)g, (void)gin;                                            \
        return GF_OK;                                                                      \
    }
GF__NO_BWD(sub_)
GF__NO_BWD(axpy_)
GF__NO_BWD(copy_)
GF__NO_BWD(fill_)
GF__NO_BWD(mul_scalar_)

/* Checks that src broadcasts to dst's shape, then runs the update. The
 * scalar s of an i64 destination must fit in i64; fill_ truncates a
 * fraction toward zero (as gf_full), while mul_scalar_ and axpy_ need an
 * integer (a fraction would make a float result, which PyTorch refuses to
 * write into an integer tensor too). */
static gf_status gf__update(gf__op op, gf_tensor *dst, gf_tensor *src, double s) {
    if (!dst) return GF_EINVAL;
    gf_ctx *ctx = dst->ctx;
    const char *name = gf__op_names[op];
    bool integral = op == GF__OP_mul_scalar_ || op == GF__OP_axpy_;
    if (dst->dtype == GF_I64 && (!gf__fits_i64(s) || (integral && s != floor(s))))
        return gf__error(ctx, GF_EINVAL,
                         "gf_%s: scalar %g for the i64 destination %s (expected %s in "
                         "[-2^63, 2^63))",
                         name, s, GF__SHAPE(dst), integral ? "an integer" : "a finite value");
    if (src) {
        if (src->ctx != ctx)
            return gf__error(ctx, GF_EINVAL, "gf_%s: the source belongs to another ctx", name);
        int nd;
        int64_t sh[GF_MAX_DIMS];
        if (!gf__bcast_shape(dst->ndim, dst->shape, src->ndim, src->shape, &nd, sh) ||
            nd != dst->ndim || memcmp(sh, dst->shape, (size_t)nd * 8))
            return gf__error(ctx, GF_ESHAPE,
                             "gf_%s: source %s does not broadcast to the destination %s", name,
                             GF__SHAPE(src), GF__SHAPE(dst));
    }
    gf__attrs a = {.s = s};
    return gf__run_inplace(op, dst, src ? 1 : 0, &src, &a);
}

gf_status gf_sub_(gf_tensor *a, gf_tensor *b) {
    if (a && !b) return gf__error(a->ctx, GF_EINVAL, "gf_sub_: source is NULL");
    return gf__update(GF__OP_sub_, a, b, 0);
}
gf_status gf_axpy_(gf_tensor *y, double alpha, gf_tensor *x) {
    if (y && !x) return gf__error(y->ctx, GF_EINVAL, "gf_axpy_: x is NULL");
    return gf__update(GF__OP_axpy_, y, x, alpha);
}
gf_status gf_copy_(gf_tensor *dst, gf_tensor *src) {
    if (dst && !src) return gf__error(dst->ctx, GF_EINVAL, "gf_copy_: source is NULL");
    return gf__update(GF__OP_copy_, dst, src, 0);
}
gf_status gf_fill_(gf_tensor *a, double v) { return gf__update(GF__OP_fill_, a, NULL, v); }
gf_status gf_mul_scalar_(gf_tensor *a, double s) {
    return gf__update(GF__OP_mul_scalar_, a, NULL, s);
}
