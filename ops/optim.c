/*
 * optim.c - fused in-place optimizer updates: gf_adam_step_ (Adam / AdamW)
 * and gf_sgd_step_ (SGD with momentum, dampening, Nesterov, L2 weight
 * decay). One pass over the parameter: each element of p, g and the state
 * is read once and p and the state written once, where the op-sequence form
 * (mul_scalar_, axpy_, sqrt, div, ... one pass each) reads them many times.
 *
 * Every element is computed on its own, in the dtype of p (f32 in f32 with
 * sqrtf, f64 in f64), with the floating operations in the order of the
 * op-sequence form, which is PyTorch 1.13's single-tensor path:
 *
 *   Adam:  g = g + p*wd             (L2, if wd != 0 and not decoupled)
 *          p = p * (1 - lr*wd)      (AdamW, if wd != 0 and decoupled)
 *          m = m*b1;  m = m + (1-b1)*g
 *          v = v*b2;  v = v + (1-b2)*(g*g)
 *          p = p + (-lr/bc1) * (m / (sqrt(v)*(1/sqrt(bc2)) + eps))
 *   SGD:   d = g + p*wd             (if wd != 0)
 *          buf = d (first) or buf = buf*mom; buf = buf + (1-damp)*d
 *          d = d + buf*mom (Nesterov) or d = buf          (if mom != 0)
 *          p = p + (-lr)*d
 *
 * with the scalars computed in double and rounded to p's dtype, so the
 * results are bit for bit those of the op sequence, for any thread count.
 * The ops run at once through gf__run_inplace_w: p, m, v, buf are all
 * written, so every pending reader or writer of any of them runs first.
 */
#include "ops.h"

/* Loops over more elements than this are split into tiles for the node's
 * threads. */
#define GF__OPTIM_PAR 65536

/* ----------------------------------------------------------------- Adam */

/* Adam modes: no weight decay, AdamW (decoupled), Adam with L2. */
enum { GF__ADAM_PLAIN = 0, GF__ADAM_DECOUPLED = 1, GF__ADAM_L2 = 2 };

/* One element at pointers pp, gp, mp, vp; the scalars (of type T) are
 * locals of the kernel. MODE is a constant in the fast path. */
#define GF__ADAM_ELEM(T, SQRT, MODE, pp, gp, mp, vp)                                       \
    do {                                                                                   \
        T p_ = *(pp), g_ = *(gp);                                                          \
        if ((MODE) == GF__ADAM_L2) g_ = g_ + p_ * wd_;                                     \
        if ((MODE) == GF__ADAM_DECOUPLED) p_ = p_ * decay_;                                \
        T m_ = *(mp) * b1_;                                                                \
        m_ = m_ + omb1_ * g_;                                                              \
        T v_ = *(vp) * b2_;                                                                \
        v_ = v_ + omb2_ * (g_ * g_);                                                       \
        T d_ = SQRT(v_) * rbc2_ + eps_;                                                    \
        *(mp) = m_;                                                                        \
        *(vp) = v_;                                                                        \
        *(pp) = p_ + step_ * (m_ / d_);                                                    \
    } while (0)

/* Elements [lo, hi) of contiguous tensors, in the tile function's locals. */
#define GF__ADAM_LOOP(T, SQRT, MODE)                                                       \
    do {                                                                                   \
        _Pragma("omp simd")                                                                \
        for (int64_t i = lo; i < hi; i++)                                                  \
            GF__ADAM_ELEM(T, SQRT, MODE, &pp[i], &pg[i], &pm[i], &pv[i]);                  \
    } while (0)

#define GF__ADAM_KERNEL(NAME, T, SQRT)                                                     \
    typedef struct {                                                                       \
        T *pp, *pm, *pv;                                                                   \
        const T *pg;                                                                       \
        T wd_, decay_, b1_, omb1_, b2_, omb2_, rbc2_, eps_, step_;                         \
        int mode;                                                                          \
    } NAME##_args;                                                                         \
    /* Elements [lo, hi) of contiguous p, m, v and g. */                                   \
    static void NAME##_tile(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *a_ = arg;                                                       \
        T *restrict pp = a_->pp;                                                           \
        const T *restrict pg = a_->pg;                                                     \
        T *restrict pm = a_->pm;                                                           \
        T *restrict pv = a_->pv;                                                           \
        const T wd_ = a_->wd_, decay_ = a_->decay_, b1_ = a_->b1_, omb1_ = a_->omb1_;      \
        const T b2_ = a_->b2_, omb2_ = a_->omb2_, rbc2_ = a_->rbc2_;                       \
        const T eps_ = a_->eps_, step_ = a_->step_;                                        \
        (void)wd_, (void)decay_;                                                           \
        switch (a_->mode) {                                                                \
        case GF__ADAM_PLAIN: GF__ADAM_LOOP(T, SQRT, GF__ADAM_PLAIN); break;                \
        case GF__ADAM_DECOUPLED: GF__ADAM_LOOP(T, SQRT, GF__ADAM_DECOUPLED); break;        \
        default: GF__ADAM_LOOP(T, SQRT, GF__ADAM_L2); break;                               \
        }                                                                                  \
    }                                                                                      \
    static void NAME(gf__node *n) {                                                        \
        gf_tensor *P = n->in[0], *M = n->in[1], *V = n->in[2], *G = n->in[3];              \
        const double lr = n->a.s, b1 = n->a.f[0], b2 = n->a.f[1], eps = n->a.f[2];         \
        const double wd = n->a.f[3];                                                       \
        const int64_t t = n->a.i[0];                                                       \
        const int mode = wd == 0 ? GF__ADAM_PLAIN                                          \
                         : n->a.i[1] ? GF__ADAM_DECOUPLED                                  \
                                     : GF__ADAM_L2;                                        \
        const double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);          \
        const T wd_ = (T)wd, decay_ = (T)(1 - lr * wd), b1_ = (T)b1, omb1_ = (T)(1 - b1);  \
        const T b2_ = (T)b2, omb2_ = (T)(1 - b2), rbc2_ = (T)(1 / sqrt(bc2));              \
        const T eps_ = (T)eps, step_ = (T)(-lr / bc1);                                     \
        (void)wd_, (void)decay_;                                                           \
        const int64_t total = P->numel;                                                    \
        if (total == 0) return;                                                            \
        T *restrict pp = gf__ptr(P);                                                       \
        const T *restrict pg = gf__ptr(G);                                                 \
        T *restrict pm = gf__ptr(M);                                                       \
        T *restrict pv = gf__ptr(V);                                                       \
        if (P->ndim == 0 || (gf__is_contig(P) && gf__is_contig(G) && gf__is_contig(M) &&   \
                             gf__is_contig(V))) {                                          \
            NAME##_args args = {pp, pm, pv, pg, wd_, decay_, b1_, omb1_, b2_, omb2_,       \
                                rbc2_, eps_, step_, mode};                                 \
            if (GF__PAR_WORTH(&n->par, total > GF__OPTIM_PAR))                             \
                gf__par_for(&n->par, total, gf__par_grain(total, 1, 16384), NAME##_tile,   \
                            &args);                                                        \
            else                                                                           \
                NAME##_tile(&args, 0, total);                                              \
            return;                                                                        \
        }                                                                                  \
        /* Strided views (not what optimizers hand in): row by row, serial. */             \
        int nd = P->ndim;                                                                  \
        const int64_t *st[4] = {P->strides, G->strides, M->strides, V->strides};           \
        int64_t idx[GF_MAX_DIMS] = {0}, off[4] = {0, 0, 0, 0};                             \
        int64_t inner = P->shape[nd - 1];                                                  \
        do {                                                                               \
            for (int64_t i = 0; i < inner; i++)                                            \
                GF__ADAM_ELEM(T, SQRT, mode, pp + off[0] + i * st[0][nd - 1],              \
                              pg + off[1] + i * st[1][nd - 1],                             \
                              pm + off[2] + i * st[2][nd - 1],                             \
                              pv + off[3] + i * st[3][nd - 1]);                            \
        } while (gf__next_row(nd, P->shape, idx, 4, off, st));                             \
    }

GF__ADAM_KERNEL(gf__adam_step_f32, float, sqrtf)
GF__ADAM_KERNEL(gf__adam_step_f64, double, sqrt)

void gf__fwd_adam_step_(gf__node *n) {
    if (n->out->dtype == GF_F32) gf__adam_step_f32(n);
    else gf__adam_step_f64(n);
}

/* ------------------------------------------------------------------ SGD */

/* SGD mode bits. Without GF__SGD_MOM the others are off (buf unused). */
enum { GF__SGD_WD = 1, GF__SGD_MOM = 2, GF__SGD_FIRST = 4, GF__SGD_NEST = 8 };

#define GF__SGD_ELEM(T, MODE, pp, gp, bp)                                                  \
    do {                                                                                   \
        T p_ = *(pp), d_ = *(gp);                                                          \
        if ((MODE) & GF__SGD_WD) d_ = d_ + p_ * wd_;                                       \
        if ((MODE) & GF__SGD_MOM) {                                                        \
            T b_;                                                                          \
            if ((MODE) & GF__SGD_FIRST) b_ = d_;                                           \
            else {                                                                         \
                b_ = *(bp) * mom_;                                                         \
                b_ = b_ + omd_ * d_;                                                       \
            }                                                                              \
            *(bp) = b_;                                                                    \
            d_ = ((MODE) & GF__SGD_NEST) ? d_ + b_ * mom_ : b_;                            \
        }                                                                                  \
        *(pp) = p_ + nlr_ * d_;                                                            \
    } while (0)

/* Elements [lo, hi) of contiguous tensors, in the tile function's locals. */
#define GF__SGD_LOOP(T, MODE)                                                              \
    do {                                                                                   \
        _Pragma("omp simd")                                                                \
        for (int64_t i = lo; i < hi; i++)                                                  \
            GF__SGD_ELEM(T, MODE, &pp[i], &pg[i], &pb[i]);                                 \
    } while (0)

#define GF__SGD_CASE(T, MODE)                                                              \
    case MODE: GF__SGD_LOOP(T, MODE); break;

#define GF__SGD_KERNEL(NAME, T)                                                            \
    typedef struct {                                                                       \
        T *pp, *pb;                                                                        \
        const T *pg;                                                                       \
        T wd_, mom_, omd_, nlr_;                                                           \
        int mode;                                                                          \
    } NAME##_args;                                                                         \
    /* Elements [lo, hi) of contiguous p, g and (with momentum) buf. */                    \
    static void NAME##_tile(void *arg, int64_t lo, int64_t hi) {                           \
        const NAME##_args *a_ = arg;                                                       \
        T *restrict pp = a_->pp;                                                           \
        const T *restrict pg = a_->pg;                                                     \
        T *restrict pb = a_->pb;                                                           \
        const T wd_ = a_->wd_, mom_ = a_->mom_, omd_ = a_->omd_, nlr_ = a_->nlr_;          \
        (void)wd_, (void)mom_, (void)omd_;                                                 \
        switch (a_->mode) {                                                                \
            GF__SGD_CASE(T, 0)                                                             \
            GF__SGD_CASE(T, GF__SGD_WD)                                                    \
            GF__SGD_CASE(T, GF__SGD_MOM)                                                   \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_WD)                                      \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_FIRST)                                   \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_FIRST | GF__SGD_WD)                      \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_NEST)                                    \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_NEST | GF__SGD_WD)                       \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_FIRST | GF__SGD_NEST)                    \
            GF__SGD_CASE(T, GF__SGD_MOM | GF__SGD_FIRST | GF__SGD_NEST | GF__SGD_WD)       \
        }                                                                                  \
    }                                                                                      \
    static void NAME(gf__node *n) {                                                        \
        gf_tensor *P = n->in[0], *G = n->in[n->n_in - 1];                                  \
        gf_tensor *B = n->n_in == 3 ? n->in[1] : NULL;                                     \
        const double lr = n->a.s, mom = n->a.f[0], damp = n->a.f[1], wd = n->a.f[2];       \
        int mode = (wd != 0 ? GF__SGD_WD : 0);                                             \
        if (mom != 0 && B)                                                                 \
            mode |= GF__SGD_MOM | (n->a.i[1] ? GF__SGD_FIRST : 0) |                        \
                    (n->a.i[0] ? GF__SGD_NEST : 0);                                        \
        const T wd_ = (T)wd, mom_ = (T)mom, omd_ = (T)(1 - damp), nlr_ = (T)(-lr);         \
        (void)wd_, (void)mom_, (void)omd_;                                                 \
        const int64_t total = P->numel;                                                    \
        if (total == 0) return;                                                            \
        T *restrict pp = gf__ptr(P);                                                       \
        const T *restrict pg = gf__ptr(G);                                                 \
        T *restrict pb = B ? (T *)gf__ptr(B) : NULL;                                       \
        if (P->ndim == 0 ||                                                                \
            (gf__is_contig(P) && gf__is_contig(G) && (!B || gf__is_contig(B)))) {          \
            NAME##_args args = {pp, pb, pg, wd_, mom_, omd_, nlr_, mode};                  \
            if (GF__PAR_WORTH(&n->par, total > GF__OPTIM_PAR))                             \
                gf__par_for(&n->par, total, gf__par_grain(total, 1, 16384), NAME##_tile,   \
                            &args);                                                        \
            else                                                                           \
                NAME##_tile(&args, 0, total);                                              \
            return;                                                                        \
        }                                                                                  \
        /* Strided views: row by row, serial (buf's strides only with momentum). */        \
        int nd = P->ndim;                                                                  \
        const int64_t *st[3] = {P->strides, G->strides, B ? B->strides : P->strides};      \
        int64_t idx[GF_MAX_DIMS] = {0}, off[3] = {0, 0, 0};                                \
        int64_t inner = P->shape[nd - 1];                                                  \
        do {                                                                               \
            for (int64_t i = 0; i < inner; i++)                                            \
                GF__SGD_ELEM(T, mode, pp + off[0] + i * st[0][nd - 1],                     \
                             pg + off[1] + i * st[1][nd - 1],                              \
                             pb + off[2] + i * st[2][nd - 1]);                             \
        } while (gf__next_row(nd, P->shape, idx, 3, off, st));                             \
    }

GF__SGD_KERNEL(gf__sgd_step_f32, float)
GF__SGD_KERNEL(gf__sgd_step_f64, double)

void gf__fwd_sgd_step_(gf__node *n) {
    if (n->out->dtype == GF_F32) gf__sgd_step_f32(n);
    else gf__sgd_step_f64(n);
}

/* Never part of a graph. */
gf_status gf__bwd_adam_step_(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}
gf_status gf__bwd_sgd_step_(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}

/* ------------------------------------------------------------ validation */

/* Checks the k operands of a fused step (names[i] for messages; t[0] is p,
 * t[1] g, the rest state; NULL entries beyond `required` are skipped):
 * non-NULL, one ctx, floating, the shape of p, state of p's dtype, no two
 * sharing a storage. Returns the ctx to report to, or NULL (status in *s). */
static gf_ctx *gf__check_step(const char *fn, int k, gf_tensor *const *t,
                              const char *const *names, int required, gf_status *s) {
    gf_ctx *ctx = NULL;
    for (int i = 0; i < k && !ctx; i++)
        if (t[i]) ctx = t[i]->ctx;
    *s = GF_EINVAL;
    if (!ctx) return NULL;
    for (int i = 0; i < required; i++)
        if (!t[i]) {
            *s = gf__error(ctx, GF_EINVAL, "%s: %s is NULL", fn, names[i]);
            return NULL;
        }
    for (int i = 0; i < k; i++) {
        if (!t[i]) continue;
        if (t[i]->ctx != ctx) {
            *s = gf__error(ctx, GF_EINVAL, "%s: %s belongs to another ctx than %s", fn,
                           names[i], names[0]);
            return NULL;
        }
        if (t[i]->dtype != GF_F32 && t[i]->dtype != GF_F64) {
            *s = gf__error(ctx, GF_EINVAL, "%s: %s is %s (expected f32 or f64)", fn, names[i],
                           gf_dtype_name(t[i]->dtype));
            return NULL;
        }
    }
    const gf_tensor *p = t[0];
    for (int i = 1; i < k; i++) {
        if (!t[i]) continue;
        if (t[i]->ndim != p->ndim ||
            memcmp(t[i]->shape, p->shape, (size_t)p->ndim * sizeof *p->shape)) {
            *s = gf__error(ctx, GF_ESHAPE, "%s: %s has shape %s but %s has shape %s", fn,
                           names[i], GF__SHAPE(t[i]), names[0], GF__SHAPE(p));
            return NULL;
        }
        if (i >= 2 && t[i]->dtype != p->dtype) {
            *s = gf__error(ctx, GF_EINVAL, "%s: %s is %s but %s is %s (state must have the "
                           "parameter's dtype)", fn, names[i], gf_dtype_name(t[i]->dtype),
                           names[0], gf_dtype_name(p->dtype));
            return NULL;
        }
    }
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (t[i] && t[j] && t[i]->storage == t[j]->storage) {
                *s = gf__error(ctx, GF_EINVAL, "%s: %s and %s share storage (%s and %s)", fn,
                               names[i], names[j], GF__SHAPE(t[i]), GF__SHAPE(t[j]));
                return NULL;
            }
    *s = GF_OK;
    return ctx;
}

/* g in p's dtype: g itself, or a conversion (*tmp, released by the caller). */
static gf_tensor *gf__grad_as(gf_tensor *g, gf_dtype dt, gf_tensor **tmp) {
    *tmp = NULL;
    if (g->dtype == dt) return g;
    return *tmp = gf_to_dtype(g, dt);
}

gf_status gf_adam_step_(gf_tensor *p, gf_tensor *g, gf_tensor *m, gf_tensor *v, double lr,
                        double beta1, double beta2, double eps, double weight_decay,
                        bool decoupled, int64_t step) {
    static const char *const names[4] = {"p", "g", "m", "v"};
    const char *fn = "gf_adam_step_";
    gf_status s;
    gf_ctx *ctx = gf__check_step(fn, 4, (gf_tensor *[]){p, g, m, v}, names, 4, &s);
    if (!ctx) return s;
    if (step < 1)
        return gf__error(ctx, GF_EINVAL, "%s: step %lld (expected >= 1: the count of updates "
                         "including this one)", fn, (long long)step);
    gf_tensor *tmp, *gg = gf__grad_as(g, p->dtype, &tmp);
    if (!gg) return gf_ctx_status(ctx);
    gf__attrs a = {.s = lr, .f = {beta1, beta2, eps, weight_decay}, .i = {step, decoupled}};
    s = gf__run_inplace_w(GF__OP_adam_step_, p, 3, (gf_tensor *[]){m, v, gg}, 2, &a);
    gf_release(tmp);
    return s;
}

gf_status gf_sgd_step_(gf_tensor *p, gf_tensor *g, gf_tensor *buf, double lr, double momentum,
                       double dampening, double weight_decay, bool nesterov, bool first) {
    static const char *const names[3] = {"p", "g", "buf"};
    const char *fn = "gf_sgd_step_";
    gf_status s;
    if (momentum == 0) buf = NULL; /* as torch: no momentum, no buffer */
    gf_ctx *ctx = gf__check_step(fn, 3, (gf_tensor *[]){p, g, buf}, names, 2, &s);
    if (!ctx) return s;
    if (momentum != 0 && !buf)
        return gf__error(ctx, GF_EINVAL, "%s: buf is NULL with momentum %g (expected the "
                         "momentum buffer, shaped like p %s)", fn, momentum, GF__SHAPE(p));
    gf_tensor *tmp, *gg = gf__grad_as(g, p->dtype, &tmp);
    if (!gg) return gf_ctx_status(ctx);
    gf__attrs a = {.s = lr, .f = {momentum, dampening, weight_decay}, .i = {nesterov, first}};
    s = buf ? gf__run_inplace_w(GF__OP_sgd_step_, p, 2, (gf_tensor *[]){buf, gg}, 1, &a)
            : gf__run_inplace_w(GF__OP_sgd_step_, p, 1, (gf_tensor *[]){gg}, 0, &a);
    gf_release(tmp);
    return s;
}
