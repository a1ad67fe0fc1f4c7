/*
 * unary.c - elementwise unary ops and the scalar forms of the arithmetic
 * ops: add_scalar, mul_scalar, pow_scalar, neg, exp, log, sqrt, abs, relu,
 * sigmoid, tanh, gelu (exact erf form), and the helpers their backward rules
 * are built from: gelu_grad (d gelu/dx) and sign (zero gradient); and the
 * one-pass backward kernels of tanh, sigmoid and relu (tanh_backward,
 * sigmoid_backward, relu_backward, NODIFF) that a plain backward records
 * instead of the composed rules. Gradients at 0, +-inf and NaN are
 * PyTorch 1.13's (tests/test_grad_edges.c).
 *
 * Dtypes follow PyTorch: i64 inputs to the transcendental ops (exp, log,
 * sqrt, sigmoid, tanh, gelu) are cast to f32 first; add/mul/pow with a
 * scalar keep i64 when the scalar is integral (pow: and >= 0) and go to f32
 * otherwise (an integral scalar i64 cannot hold is an error); neg, abs,
 * relu, sign keep i64. i64 arithmetic wraps modulo 2^64. A cast node in front of the op
 * does the promotion, so every kernel reads and writes one dtype.
 *
 * Kernels: out (contiguous, x's shape) = f(x). A contiguous x is one flat
 * loop with f inlined (f32 math in f32: logf, erff); a strided view is
 * walked row by row. exp, sigmoid and tanh go through the gf__vmath table
 * (ops/kernels: AVX2 or portable, as GEMM's variant), in fixed blocks.
 * Each element is independent, so the result is the same bits for any
 * thread count.
 */
#include "ops.h"

/* f32 math in f32: GF__M(exp, x) is expf(x) for float x, exp(x) for double. */
#define GF__M(fn, x) _Generic((x), float: fn##f, default: fn)(x)
/* GF__M2(fn, x, y): the same for a two-argument function. */
#define GF__M2(fn, x, y) _Generic((x), float: fn##f, default: fn)(x, y)

#define GF__INV_SQRT2 0.70710678118654752440     /* 1/sqrt(2) */
#define GF__INV_SQRT2PI 0.39894228040143267794   /* 1/sqrt(2*pi) */

/* gelu(x) = x Phi(x) = x/2 (1 + erf(x/sqrt 2)) */
static inline float gf__s_geluf(float x) {
    return 0.5f * x * (1.0f + erff(x * (float)GF__INV_SQRT2));
}
static inline double gf__s_gelu(double x) { return 0.5 * x * (1.0 + erf(x * GF__INV_SQRT2)); }

/* gelu'(x) = Phi(x) + x phi(x), phi the standard normal density */
static inline float gf__s_gelu_gradf(float x) {
    return 0.5f * (1.0f + erff(x * (float)GF__INV_SQRT2)) +
           x * (float)GF__INV_SQRT2PI * expf(-0.5f * x * x);
}
static inline double gf__s_gelu_grad(double x) {
    return 0.5 * (1.0 + erf(x * GF__INV_SQRT2)) + x * GF__INV_SQRT2PI * exp(-0.5 * x * x);
}

/* x^p with the exponents PyTorch 1.13 special-cases computed as it does
 * (vectorizable, and with its values at the edges: x^-0.5 is 1/sqrt(x), so
 * -inf gives NaN and -0 gives -inf, where pow gives 0 and +inf). */
static inline float gf__s_powsf(float x, float p) {
    return p == 2.0f ? x * x : p == 1.0f ? x : p == 3.0f ? x * x * x
         : p == 0.5f ? sqrtf(x) : p == -0.5f ? 1.0f / sqrtf(x) : p == -1.0f ? 1.0f / x
         : p == -2.0f ? 1.0f / (x * x) : powf(x, p);
}
static inline double gf__s_pows(double x, double p) {
    return p == 2.0 ? x * x : p == 1.0 ? x : p == 3.0 ? x * x * x
         : p == 0.5 ? sqrt(x) : p == -0.5 ? 1.0 / sqrt(x) : p == -1.0 ? 1.0 / x
         : p == -2.0 ? 1.0 / (x * x) : pow(x, p);
}

/* One kernel: out (contiguous, shape of x) = EXPR(x, s), s = attrs.s in T.
 * x (shape S, any strides) is read flat when contiguous, in tiles of
 * elements, else row by row. */
#define GF__UN_KERNEL(NAME, T, EXPR)                                                       \
    typedef struct {                                                                      \
        const T *px;                                                                      \
        T *po;                                                                            \
        T s;                                                                              \
    } NAME##_args;                                                                        \
    /* Elements [lo, hi) of a contiguous x. */                                            \
    static void NAME##_tile(void *arg, int64_t lo, int64_t hi) {                          \
        const NAME##_args *a_ = arg;                                                      \
        const T *px = a_->px;                                                             \
        T *po = a_->po;                                                                   \
        const T s = a_->s;                                                                \
        (void)s;                                                                          \
        _Pragma("omp simd")                                                               \
        for (int64_t i = lo; i < hi; i++) {                                               \
            T x = px[i];                                                                  \
            po[i] = (EXPR);                                                               \
        }                                                                                 \
    }                                                                                     \
    static void NAME(gf__node *n) {                                                       \
        const gf_tensor *X = n->in[0];                                                    \
        gf_tensor *O = n->out;                                                            \
        const T *px = gf__ptr(X);                                                         \
        T *po = gf__ptr(O);                                                               \
        const T s = GF__CVT(T, n->a.s);                                                   \
        (void)s;                                                                          \
        int64_t total = O->numel;                                                         \
        int nd = O->ndim;                                                                 \
        if (total == 0) return;                                                           \
        if (nd == 0 || gf__is_contig(X)) {                                                \
            NAME##_args args = {px, po, s};                                               \
            if (GF__PAR_WORTH(&n->par, total > 32768))                                    \
                gf__par_for(&n->par, total, gf__par_grain(total, 1, 16384), NAME##_tile,  \
                            &args);                                                       \
            else                                                                          \
                NAME##_tile(&args, 0, total);                                             \
            return;                                                                       \
        }                                                                                 \
        int64_t sx[GF_MAX_DIMS], so[GF_MAX_DIMS];                                         \
        memcpy(sx, X->strides, sizeof sx);                                                \
        memcpy(so, O->strides, sizeof so);                                                \
        int64_t inner = O->shape[nd - 1], ix = sx[nd - 1];                                \
        int64_t idx[GF_MAX_DIMS] = {0}, off[2] = {0, 0};                                  \
        const int64_t *st[2] = {sx, so};                                                  \
        do {                                                                              \
            const T *rx = px + off[0];                                                    \
            T *ro = po + off[1];                                                          \
            for (int64_t i = 0; i < inner; i++) {                                         \
                T x = rx[i * ix];                                                         \
                ro[i] = (EXPR);                                                           \
            }                                                                             \
        } while (gf__next_row(nd, O->shape, idx, 2, off, st));                            \
    }

/* A kernel over contiguous runs: VF(vm, x, y, len) computes y = f(x) on len
 * contiguous elements with the vector math table vm. A contiguous x is cut
 * into fixed blocks of GF__UN_VBLK * 16 elements (tiles of whole blocks); a
 * strided view is walked row by row, rows with unit stride in place and
 * others gathered GF__UN_VBLK elements at a time into a stack buffer. */
#define GF__UN_VBLK 256
#define GF__UN_VKERNEL(NAME, T, VF)                                                        \
    typedef struct {                                                                      \
        const gf__vmath *vm;                                                              \
        const T *px;                                                                      \
        T *po;                                                                            \
        int64_t total;                                                                    \
    } NAME##_args;                                                                        \
    /* Blocks [b0, b1) of a contiguous x. */                                              \
    static void NAME##_blocks(void *arg, int64_t b0, int64_t b1) {                        \
        const NAME##_args *a_ = arg;                                                      \
        const gf__vmath *vm = a_->vm;                                                     \
        const T *px = a_->px;                                                             \
        T *po = a_->po;                                                                   \
        int64_t total = a_->total;                                                        \
        for (int64_t b = b0; b < b1; b++) {                                               \
            int64_t lo = b * GF__UN_VBLK * 16, len = total - lo;                          \
            VF(vm, px + lo, po + lo, len < GF__UN_VBLK * 16 ? len : GF__UN_VBLK * 16);    \
        }                                                                                 \
    }                                                                                     \
    static void NAME(gf__node *n) {                                                       \
        const gf_tensor *X = n->in[0];                                                    \
        gf_tensor *O = n->out;                                                            \
        const T *px = gf__ptr(X);                                                         \
        T *po = gf__ptr(O);                                                               \
        const gf__vmath *vm = gf__vmath_now();                                            \
        int64_t total = O->numel;                                                         \
        int nd = O->ndim;                                                                 \
        if (total == 0) return;                                                           \
        if (nd == 0 || gf__is_contig(X)) {                                                \
            int64_t nb = (total + GF__UN_VBLK * 16 - 1) / (GF__UN_VBLK * 16);              \
            NAME##_args args = {vm, px, po, total};                                       \
            if (GF__PAR_WORTH(&n->par, total > 32768))                                    \
                gf__par_for(&n->par, nb, gf__par_grain(nb, GF__UN_VBLK * 16, 16384),      \
                            NAME##_blocks, &args);                                        \
            else                                                                          \
                NAME##_blocks(&args, 0, nb);                                              \
            return;                                                                       \
        }                                                                                 \
        int64_t sx[GF_MAX_DIMS], so[GF_MAX_DIMS];                                         \
        memcpy(sx, X->strides, sizeof sx);                                                \
        memcpy(so, O->strides, sizeof so);                                                \
        int64_t inner = O->shape[nd - 1], ix = sx[nd - 1];                                \
        int64_t idx[GF_MAX_DIMS] = {0}, off[2] = {0, 0};                                  \
        const int64_t *st[2] = {sx, so};                                                  \
        T buf[GF__UN_VBLK];                                                               \
        do {                                                                              \
            const T *rx = px + off[0];                                                    \
            T *ro = po + off[1];                                                          \
            if (ix == 1) {                                                                \
                VF(vm, rx, ro, inner);                                                    \
                continue;                                                                 \
            }                                                                             \
            for (int64_t i = 0; i < inner; i += GF__UN_VBLK) {                            \
                int64_t len = inner - i < GF__UN_VBLK ? inner - i : GF__UN_VBLK;          \
                for (int64_t j = 0; j < len; j++) buf[j] = rx[(i + j) * ix];              \
                VF(vm, buf, ro + i, len);                                                 \
            }                                                                             \
        } while (gf__next_row(nd, O->shape, idx, 2, off, st));                            \
    }

/* exp, the logistic and tanh on contiguous runs, through the table. */
#define GF__VEXP(vm, x, y, len) _Generic((y), float *: (vm)->exp_f32,                 \
                                        default: (vm)->exp_f64)((x), (y), (len))
#define GF__VSIGMOID(vm, x, y, len) _Generic((y), float *: (vm)->sigmoid_f32,         \
                                            default: (vm)->sigmoid_f64)((x), (y), (len))
#define GF__VTANH(vm, x, y, len) _Generic((y), float *: (vm)->tanh_f32,               \
                                         default: (vm)->tanh_f64)((x), (y), (len))

/* An op on f32 and f64 only (i64 inputs were cast to f32 by the constructor). */
#define GF__UN_OP_F(name, EXPR_F)                                                          \
    GF__UN_KERNEL(gf__##name##_f32, float, EXPR_F)                                        \
    GF__UN_KERNEL(gf__##name##_f64, double, EXPR_F)                                       \
    void gf__fwd_##name(gf__node *n) {                                                    \
        switch (n->out->dtype) {                                                          \
        case GF_F32: gf__##name##_f32(n); break;                                          \
        case GF_F64: gf__##name##_f64(n); break;                                          \
        case GF_I64:                                                                      \
            gf__kernel_error(n, GF_ESTATE, "gf_%s: internal error: i64 kernel reached",   \
                             #name);                                                      \
            break;                                                                        \
        }                                                                                 \
    }

/* The same with the vector kernels. */
#define GF__UN_VOP_F(name, VF)                                                             \
    GF__UN_VKERNEL(gf__##name##_f32, float, VF)                                           \
    GF__UN_VKERNEL(gf__##name##_f64, double, VF)                                          \
    void gf__fwd_##name(gf__node *n) {                                                    \
        switch (n->out->dtype) {                                                          \
        case GF_F32: gf__##name##_f32(n); break;                                          \
        case GF_F64: gf__##name##_f64(n); break;                                          \
        case GF_I64:                                                                      \
            gf__kernel_error(n, GF_ESTATE, "gf_%s: internal error: i64 kernel reached",   \
                             #name);                                                      \
            break;                                                                        \
        }                                                                                 \
    }

/* An op on f32, f64 and i64. */
#define GF__UN_OP_FI(name, EXPR_F, EXPR_I)                                                 \
    GF__UN_KERNEL(gf__##name##_f32, float, EXPR_F)                                        \
    GF__UN_KERNEL(gf__##name##_f64, double, EXPR_F)                                       \
    GF__UN_KERNEL(gf__##name##_i64, int64_t, EXPR_I)                                      \
    void gf__fwd_##name(gf__node *n) {                                                    \
        switch (n->out->dtype) {                                                          \
        case GF_F32: gf__##name##_f32(n); break;                                          \
        case GF_F64: gf__##name##_f64(n); break;                                          \
        case GF_I64: gf__##name##_i64(n); break;                                          \
        }                                                                                 \
    }

/* x: (S) -> out: (S), same dtype. i64 wraps modulo 2^64 (ops.h); pow's
 * p >= 0 (the constructor rejects p < 0). */
GF__UN_OP_FI(add_scalar, x + s, gf__wadd(x, s))
GF__UN_OP_FI(mul_scalar, x * s, gf__wmul(x, s))
GF__UN_OP_FI(pow_scalar, GF__M2(gf__s_pows, x, s), gf__wpow(x, s))
GF__UN_OP_FI(neg, -x, gf__wneg(x))
GF__UN_VOP_F(exp, GF__VEXP)
GF__UN_OP_F(log, GF__M(log, x))
GF__UN_OP_F(sqrt, GF__M(sqrt, x))
/* abs(INT64_MIN) wraps to INT64_MIN, as in PyTorch. */
GF__UN_OP_FI(abs, GF__M(fabs, x), x < 0 ? gf__wneg(x) : x)
/* x < 0 ? 0 : x (not x > 0 ? x : 0) so that NaN passes through, as in torch. */
GF__UN_OP_FI(relu, x < 0 ? 0 : x, x < 0 ? 0 : x)
GF__UN_VOP_F(sigmoid, GF__VSIGMOID)
GF__UN_VOP_F(tanh, GF__VTANH)
GF__UN_OP_F(gelu, GF__M(gf__s_gelu, x))
GF__UN_OP_F(gelu_grad, GF__M(gf__s_gelu_grad, x))
/* Comparisons give 0 for NaN, as torch.sign does. */
GF__UN_OP_FI(sign, (x > 0) - (x < 0), (x > 0) - (x < 0))

/* ------------------------------------------------ fused backward kernels */
/* out (contiguous, the broadcast shape of g and v) = g * D(v), or for relu
 * a selection of g, with g and v read through broadcast strides (a gradient
 * is often an expanded view). D and the product are the composed rules'
 * operations in their order, each rounded to T as the separate ops round
 * it, so a plain backward gives the same bits as create_graph's composed
 * rule (NaNs aside: the compiler may turn -(v*v) + 1 into 1 - v*v, the same
 * number, but a NaN's sign bit can then differ; IEEE 754 leaves it
 * unspecified):
 *   tanh:    D = -(v*v) + 1     (mul, neg, add_scalar; then mul), v = tanh's output
 *   sigmoid: D = v * (-v + 1)   (neg, add_scalar, mul; then mul), v = sigmoid's output
 *   relu:    v <= 0 ? 0 : g     (zero_where), v = relu's input: a NaN x passes g
 *                               and a masked inf or NaN g gives 0, as torch's
 *                               threshold_backward
 * A run of len elements is one loop. relu's has no arithmetic on either
 * side of its select, so it vectorizes as a compare and a mask (a product
 * g * mask would leave g * 0 on one branch, which GCC keeps scalar). */
#define GF__BWD_RUN1(NAME, T, D)                                                           \
    static inline void NAME(const T *g, int64_t ig, const T *pv, int64_t iv, T *o,         \
                            int64_t len) {                                                 \
        for (int64_t i = 0; i < len; i++) {                                                \
            T v = pv[i * iv];                                                              \
            o[i] = g[i * ig] * (D);                                                        \
        }                                                                                  \
    }
/* The same where D is the condition under which the result is 0, else g. */
#define GF__BWD_RUN_ZERO(NAME, T, D)                                                       \
    static inline void NAME(const T *g, int64_t ig, const T *pv, int64_t iv, T *o,         \
                            int64_t len) {                                                 \
        for (int64_t i = 0; i < len; i++) {                                                \
            T v = pv[i * iv], gi = g[i * ig];                                              \
            o[i] = (D) ? (T)0 : gi;                                                        \
        }                                                                                  \
    }

/* RUN (GF__BWD_RUN1 or _ZERO) over the output: unit strides in fixed
 * blocks (tiles of whole blocks) when g and v are contiguous and of the
 * output's size, else row by row with the broadcast strides. */
#define GF__BWD_BLK 4096
#define GF__BWD_KERNEL(NAME, T, RUN)                                                       \
    typedef struct {                                                                      \
        const T *pg, *pv;                                                                 \
        T *po;                                                                            \
        int64_t total;                                                                    \
    } NAME##_args;                                                                        \
    /* Blocks [b0, b1) of contiguous g, v and out. */                                     \
    static void NAME##_blocks(void *arg, int64_t b0, int64_t b1) {                        \
        const NAME##_args *a_ = arg;                                                      \
        const T *pg = a_->pg, *pv = a_->pv;                                               \
        T *po = a_->po;                                                                   \
        int64_t total = a_->total, blk = GF__BWD_BLK;                                     \
        for (int64_t b = b0; b < b1; b++) {                                               \
            int64_t lo = b * blk, len = total - lo < blk ? total - lo : blk;              \
            RUN(pg + lo, 1, pv + lo, 1, po + lo, len);                                    \
        }                                                                                 \
    }                                                                                     \
    static void NAME(gf__node *n) {                                                       \
        gf_tensor *G = n->in[0], *V = n->in[1], *O = n->out;                              \
        const T *pg = gf__ptr(G), *pv = gf__ptr(V);                                       \
        T *po = gf__ptr(O);                                                               \
        int nd = O->ndim;                                                                 \
        if (O->numel == 0) return;                                                        \
        if (nd == 0) {                                                                    \
            RUN(pg, 0, pv, 0, po, 1);                                                     \
            return;                                                                       \
        }                                                                                 \
        if (gf__is_contig(G) && gf__is_contig(V) && G->numel == O->numel &&               \
            V->numel == O->numel) {                                                       \
            int64_t total = O->numel, nb = (total + GF__BWD_BLK - 1) / GF__BWD_BLK;       \
            NAME##_args args = {pg, pv, po, total};                                       \
            if (GF__PAR_WORTH(&n->par, total > 65536))                                    \
                gf__par_for(&n->par, nb, gf__par_grain(nb, GF__BWD_BLK, 16384),           \
                            NAME##_blocks, &args);                                        \
            else                                                                          \
                NAME##_blocks(&args, 0, nb);                                              \
            return;                                                                       \
        }                                                                                 \
        int64_t sg[GF_MAX_DIMS], sv[GF_MAX_DIMS], so[GF_MAX_DIMS];                        \
        gf__bcast_strides(G, nd, O->shape, sg);                                           \
        gf__bcast_strides(V, nd, O->shape, sv);                                           \
        memcpy(so, O->strides, sizeof so);                                                \
        int64_t inner = O->shape[nd - 1], ig = sg[nd - 1], iv = sv[nd - 1];               \
        int64_t idx[GF_MAX_DIMS] = {0}, off[3] = {0, 0, 0};                               \
        const int64_t *st[3] = {sg, sv, so};                                              \
        do {                                                                              \
            RUN(pg + off[0], ig, pv + off[1], iv, po + off[2], inner);                    \
        } while (gf__next_row(nd, O->shape, idx, 3, off, st));                            \
    }

#define GF__BWD_OP(name, RUN, D)                                                           \
    RUN(gf__##name##_run_f32, float, D)                                                   \
    RUN(gf__##name##_run_f64, double, D)                                                  \
    GF__BWD_KERNEL(gf__##name##_f32, float, gf__##name##_run_f32)                         \
    GF__BWD_KERNEL(gf__##name##_f64, double, gf__##name##_run_f64)                        \
    void gf__fwd_##name(gf__node *n) {                                                    \
        if (n->out->dtype == GF_F32) gf__##name##_f32(n);                                 \
        else gf__##name##_f64(n); /* the constructor admits f32 and f64 only */           \
    }                                                                                     \
    gf_status gf__bwd_##name(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { \
        (void)n, (void)out, (void)g, (void)gin;                                           \
        return GF_OK; /* NODIFF: never called (create_graph uses the composed rule) */    \
    }

/* g: (S), v: (S) (or broadcastable to a common shape) -> out: that shape */
GF__BWD_OP(tanh_backward, GF__BWD_RUN1, -(v * v) + 1)
GF__BWD_OP(sigmoid_backward, GF__BWD_RUN1, v * (-v + 1))
GF__BWD_OP(relu_backward, GF__BWD_RUN_ZERO, v <= 0)

/* ---------------------------------------------------------- constructors */

/* Records op on a (already of dtype dt, or cast to it here) with the scalar s.
 * The cast node, if any, is a temporary of an inner scope. */
static gf_tensor *gf__unary(gf__op op, gf_tensor *a, gf_dtype dt, double s) {
    if (!a) return NULL;
    gf__attrs at = {0};
    at.s = s;
    if (a->dtype == dt) return gf__record(op, dt, a->ndim, a->shape, 1, &a, &at);
    gf_ctx *ctx = a->ctx;
    gf_scope_begin(ctx);
    gf_tensor *c = gf_to_dtype(a, dt);
    gf_tensor *out = c ? gf_keep(gf__record(op, dt, c->ndim, c->shape, 1, &c, &at)) : NULL;
    gf_scope_end(ctx);
    return out;
}

/* i64 to f32 for the ops that are only defined on floats. */
static gf_dtype gf__float_dt(const gf_tensor *a) { return a->dtype == GF_I64 ? GF_F32 : a->dtype; }

/* Whether an i64 tensor keeps its dtype with scalar s: s is integral. A
 * fraction, NaN or an infinity gives f32 (as a Python float scalar gives a
 * float tensor in PyTorch). */
static bool gf__is_integral(double s) { return isfinite(s) && s == floor(s); }

/* The dtype of op(a, s) into *dt: a's, or f32 for i64 a with a
 * non-integral s. An integral s that i64 cannot hold (|s| >= 2^63) is an
 * error: false. */
static bool gf__scalar_dt(gf_tensor *a, const char *op, double s, gf_dtype *dt) {
    *dt = a->dtype == GF_I64 && !gf__is_integral(s) ? GF_F32 : a->dtype;
    if (*dt != GF_I64 || gf__fits_i64(s)) return true;
    gf__error(a->ctx, GF_EINVAL,
              "%s: scalar %g is out of range for the i64 tensor %s (expected an integer in "
              "[-2^63, 2^63), or a non-integral scalar, which gives f32)",
              op, s, GF__SHAPE(a));
    return false;
}

gf_tensor *gf_add_scalar(gf_tensor *a, double s) {
    gf_dtype dt;
    if (!a || !gf__scalar_dt(a, "gf_add_scalar", s, &dt)) return NULL;
    return gf__unary(GF__OP_add_scalar, a, dt, s);
}

gf_tensor *gf_mul_scalar(gf_tensor *a, double s) {
    gf_dtype dt;
    if (!a || !gf__scalar_dt(a, "gf_mul_scalar", s, &dt)) return NULL;
    return gf__unary(GF__OP_mul_scalar, a, dt, s);
}

gf_tensor *gf_pow_scalar(gf_tensor *a, double p) {
    gf_dtype dt;
    if (!a || !gf__scalar_dt(a, "gf_pow_scalar", p, &dt)) return NULL;
    if (dt == GF_I64 && p < 0) {
        gf__error(a->ctx, GF_EINVAL,
                  "gf_pow_scalar: i64 tensor %s to the negative integer power %g (integers to "
                  "negative integer powers are not allowed; expected p >= 0, or convert to a "
                  "float dtype first)",
                  GF__SHAPE(a), p);
        return NULL;
    }
    return gf__unary(GF__OP_pow_scalar, a, dt, p);
}

gf_tensor *gf_neg(gf_tensor *a) { return a ? gf__unary(GF__OP_neg, a, a->dtype, 0) : NULL; }
gf_tensor *gf_abs(gf_tensor *a) { return a ? gf__unary(GF__OP_abs, a, a->dtype, 0) : NULL; }
gf_tensor *gf_relu(gf_tensor *a) { return a ? gf__unary(GF__OP_relu, a, a->dtype, 0) : NULL; }
gf_tensor *gf_sign(gf_tensor *a) { return a ? gf__unary(GF__OP_sign, a, a->dtype, 0) : NULL; }

#define GF__FLOAT_OP(name)                                                                 \
    gf_tensor *gf_##name(gf_tensor *a) {                                                   \
        return a ? gf__unary(GF__OP_##name, a, gf__float_dt(a), 0) : NULL;                 \
    }
GF__FLOAT_OP(exp)
GF__FLOAT_OP(log)
GF__FLOAT_OP(sqrt)
GF__FLOAT_OP(sigmoid)
GF__FLOAT_OP(tanh)
GF__FLOAT_OP(gelu)

/* The internal helpers of the backward rules (not in the public API). */
static gf_tensor *gf__gelu_grad(gf_tensor *a) {
    return gf__unary(GF__OP_gelu_grad, a, a->dtype, 0);
}

/* The fused backward ops (not in the public API: the backward rules below
 * record them; tests call them directly). g and v must be of one float
 * dtype with broadcastable shapes. */
static gf_tensor *gf__bwd_fused(gf__op op, gf_tensor *g, gf_tensor *v) {
    const char *name = gf__op_names[op];
    gf_ctx *ctx = gf__check_inputs(name, 2, (gf_tensor *[]){g, v});
    if (!ctx) return NULL;
    if (g->dtype != v->dtype || g->dtype == GF_I64) {
        gf__error(ctx, GF_EINVAL,
                  "%s: gradient %s of dtype %s and tensor %s of dtype %s (expected one float "
                  "dtype, f32 or f64, for both)",
                  name, GF__SHAPE(g), gf_dtype_name(g->dtype), GF__SHAPE(v),
                  gf_dtype_name(v->dtype));
        return NULL;
    }
    int nd;
    int64_t shape[GF_MAX_DIMS];
    if (!gf__bcast_shape(g->ndim, g->shape, v->ndim, v->shape, &nd, shape)) {
        gf__error(ctx, GF_ESHAPE, "%s: gradient %s and tensor %s cannot be broadcast together",
                  name, GF__SHAPE(g), GF__SHAPE(v));
        return NULL;
    }
    return gf__record(op, g->dtype, nd, shape, 2, (gf_tensor *[]){g, v}, NULL);
}

gf_tensor *gf__tanh_backward(gf_tensor *g, gf_tensor *out) {
    return gf__bwd_fused(GF__OP_tanh_backward, g, out);
}
gf_tensor *gf__sigmoid_backward(gf_tensor *g, gf_tensor *out) {
    return gf__bwd_fused(GF__OP_sigmoid_backward, g, out);
}
gf_tensor *gf__relu_backward(gf_tensor *g, gf_tensor *x) {
    return gf__bwd_fused(GF__OP_relu_backward, g, x);
}

/* -------------------------------------------------------------- backward */
/* Every rule is made of public differentiable ops (so create_graph gives
 * higher derivatives); gin[0] has x's shape because every op here keeps it. */

gf_status gf__bwd_add_scalar(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out;
    gin[0] = g;
    return GF_OK;
}

gf_status gf__bwd_mul_scalar(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_mul_scalar(g, n->a.s);
    return GF_OK;
}

/* d x^p = p x^(p-1), itself a pow_scalar so that it differentiates again;
 * p == 0 is a constant (and x^-1 at 0 would make 0*inf = NaN). */
gf_status gf__bwd_pow_scalar(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gf_tensor *x = n->in[0];
    double p = n->a.s;
    if (p == 0) gin[0] = gf_zeros_like(x);
    else gin[0] = gf_mul(g, gf_mul_scalar(gf_pow_scalar(x, p - 1), p));
    return GF_OK;
}

gf_status gf__bwd_neg(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out;
    gin[0] = gf_neg(g);
    return GF_OK;
}

gf_status gf__bwd_exp(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n;
    gin[0] = gf_mul(g, out);
    return GF_OK;
}

gf_status gf__bwd_log(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_div(g, n->in[0]);
    return GF_OK;
}

gf_status gf__bwd_sqrt(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n;
    gin[0] = gf_div(g, gf_mul_scalar(out, 2.0));
    return GF_OK;
}

gf_status gf__bwd_abs(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_mul(g, gf_sign(n->in[0]));
    return GF_OK;
}

/* relu, sigmoid and tanh: a plain backward (grad mode off: nothing will
 * differentiate this gradient) records one fused kernel (one pass, one
 * node) when g has the dtype of the tensor it is combined with; with
 * create_graph the rule is composed of differentiable ops so that second
 * derivatives exist. Both give the same bits (see GF__BWD_KERNEL). */
static bool gf__fuse_bwd(const gf_tensor *g, const gf_tensor *v) {
    return !gf_is_grad_enabled(v->ctx) && g->dtype == v->dtype;
}

/* relu' as torch's threshold_backward: where(x <= 0, 0, g), so a NaN x
 * passes g and a masked element is 0 even where g is inf or NaN. */
gf_status gf__bwd_relu(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gf_tensor *x = n->in[0];
    if (gf__fuse_bwd(g, x)) gin[0] = gf__relu_backward(g, x);
    else gin[0] = gf__zero_where(g, x, NULL, GF__ZW_LE0);
    return GF_OK;
}

/* sigmoid' = out (1 - out) */
gf_status gf__bwd_sigmoid(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n;
    if (gf__fuse_bwd(g, out)) gin[0] = gf__sigmoid_backward(g, out);
    else gin[0] = gf_mul(g, gf_mul(out, gf_add_scalar(gf_neg(out), 1.0)));
    return GF_OK;
}

/* tanh' = 1 - out^2 */
gf_status gf__bwd_tanh(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n;
    if (gf__fuse_bwd(g, out)) gin[0] = gf__tanh_backward(g, out);
    else gin[0] = gf_mul(g, gf_add_scalar(gf_neg(gf_mul(out, out)), 1.0));
    return GF_OK;
}

gf_status gf__bwd_gelu(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_mul(g, gf__gelu_grad(n->in[0]));
    return GF_OK;
}

/* gelu''(x) = d/dx (Phi + x phi) = 2 phi + x phi' = phi(x) (2 - x^2), with
 * phi(x) = exp(-x^2/2)/sqrt(2 pi), composed of public ops so that a third
 * derivative works too. */
gf_status gf__bwd_gelu_grad(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gf_tensor *x = n->in[0];
    gf_tensor *x2 = gf_mul(x, x);
    gf_tensor *phi = gf_mul_scalar(gf_exp(gf_mul_scalar(x2, -0.5)), GF__INV_SQRT2PI);
    gin[0] = gf_mul(g, gf_mul(phi, gf_add_scalar(gf_neg(x2), 2.0)));
    return GF_OK;
}

/* sign is flat almost everywhere: its gradient is zeros (as torch.sign),
 * not an error for graphs that pass through it. */
gf_status gf__bwd_sign(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out, (void)g;
    gin[0] = gf_zeros_like(n->in[0]);
    return GF_OK;
}
