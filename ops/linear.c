/*
 * linear.c - gf_linear_act(x, w, b, act) = act(x w^T + b) (include/gradflow/
 * nn.h): a Linear layer and the activation after it, recorded as one op
 * (linear_act) when it can be, else as the ops nn's Linear records.
 *
 * The node: x [M, K] (any strides), w [N, K] (nn's layout; any strides),
 * optionally b [N]; out [M, N] contiguous; attrs.n the activation
 * (gf__act: none, relu, tanh, sigmoid). Its kernel is one GEMM whose
 * epilogue adds b and applies the activation to each C tile while it is
 * still in cache (gf__sgemm_ep, ops/kernels): one pass over the output
 * instead of three (matmul, add, activation) and one node instead of three.
 * The GEMM is called exactly as matmul.c calls it for x @ w^T (w^T read by
 * strides), and the epilogue uses the add and activation ops' own
 * operations, so the output is bitwise the unfused ops' output, for any
 * thread count.
 *
 * Backward: a plain backward (grad mode off, g of out's dtype: the rule
 * unary.c's activations use) takes the one-pass activation backward op on
 * g and out (relu's mask out > 0 equals x w^T + b > 0), then the products
 * the unfused graph records, in the same form (matmul.c's rule, including
 * its choice of (G^T X)^T for the weight so that its gradient comes out
 * contiguous), and the bias gradient as gf_add's rule sums it: the same
 * bits as the unfused graph's gradients. With create_graph the activation's
 * derivative is composed of public ops from `out`, so higher derivatives
 * exist.
 *
 * Recorded as the unfused ops instead (same values): x not 2-D, dtypes that
 * differ or are not float, act GELU, or fusion turned off
 * (gf__linear_act_set_fused, for tests that compare both).
 */
#include "ops.h"

#include "../include/gradflow/nn.h"

#include <stdatomic.h>

static atomic_bool gf__la_unfused; /* false: fuse (the default) */

void gf__linear_act_set_fused(bool on) { atomic_store(&gf__la_unfused, !on); }
bool gf__linear_act_fused(void) { return !atomic_load(&gf__la_unfused); }

/* out [M, N] = act(x [M, K] @ w[N, K]^T + b [N]) by one GEMM with an
 * epilogue: B(p, j) = w(j, p), i.e. B's row stride is w's column stride. */
#define GF__LA_KERNEL(NAME, T, GEMM_EP, EP)                                                  \
    static void NAME(gf__node *n) {                                                          \
        const gf_tensor *X = n->in[0], *W = n->in[1], *Bv = n->n_in > 2 ? n->in[2] : NULL;  \
        gf_tensor *O = n->out;                                                               \
        if (O->numel == 0) return;                                                           \
        const int64_t M = O->shape[0], N = O->shape[1], K = X->shape[1];                     \
        const EP ep = {.bias = Bv ? (const T *)gf__ptr(Bv) : NULL,                           \
                       .incb = Bv ? Bv->strides[0] : 0,                                      \
                       .act = (gf__act)n->a.n};                                              \
        GEMM_EP(M, N, K, gf__ptr(X), X->strides[0], X->strides[1], gf__ptr(W), W->strides[1], \
                W->strides[0], 0, gf__ptr(O), N, 1, &n->par, &ep);                      \
    }

GF__LA_KERNEL(gf__la_f32, float, gf__sgemm_ep, gf__sepilogue)
GF__LA_KERNEL(gf__la_f64, double, gf__dgemm_ep, gf__depilogue)

void gf__fwd_linear_act(gf__node *n) {
    if (n->out->dtype == GF_F32) gf__la_f32(n);
    else gf__la_f64(n); /* the constructor records f32 and f64 only */
}

/* ----------------------------------------------------------- constructor */

/* What nn's Linear and activation layers record: x @ w^T (+ b), then act. */
static gf_tensor *gf__la_unfused_ops(gf_tensor *x, gf_tensor *w, gf_tensor *b,
                                     gf_activation act) {
    gf_tensor *y = gf_matmul(x, gf_transpose(w, 0, 1));
    if (b) y = gf_add(y, b);
    switch (act) {
    case GF_ACT_RELU: return gf_relu(y);
    case GF_ACT_GELU: return gf_gelu(y);
    case GF_ACT_TANH: return gf_tanh(y);
    case GF_ACT_SIGMOID: return gf_sigmoid(y);
    case GF_ACT_NONE: break;
    }
    return y;
}

gf_tensor *gf_linear_act(gf_tensor *x, gf_tensor *w, gf_tensor *b, gf_activation act) {
    gf_tensor *in[3] = {x, w, b};
    gf_ctx *ctx = gf__check_inputs("gf_linear_act", 2, in);
    if (!ctx) return NULL;
    if (b && b->ctx != ctx) {
        gf__error(ctx, GF_EINVAL, "gf_linear_act: bias %s belongs to another ctx", GF__SHAPE(b));
        return NULL;
    }
    if (act < GF_ACT_NONE || act > GF_ACT_SIGMOID) {
        gf__error(ctx, GF_EINVAL,
                  "gf_linear_act: unknown activation %d (expected a gf_activation: GF_ACT_NONE, "
                  "RELU, GELU, TANH or SIGMOID)",
                  (int)act);
        return NULL;
    }
    if (w->ndim != 2) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_linear_act: weight %s (expected 2 dims, [out_features, in_features])",
                  GF__SHAPE(w));
        return NULL;
    }
    const int64_t N = w->shape[0], K = w->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != K) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_linear_act: input %s and weight %s (expected the input's last dim to "
                  "equal in_features %lld, the weight's second dim)",
                  GF__SHAPE(x), GF__SHAPE(w), (long long)K);
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != N)) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_linear_act: bias %s with weight %s (expected a bias of shape [%lld], "
                  "out_features)",
                  GF__SHAPE(b), GF__SHAPE(w), (long long)N);
        return NULL;
    }
    const gf_dtype dt = x->dtype;
    const bool fuse = gf__linear_act_fused() && x->ndim == 2 && act != GF_ACT_GELU &&
                      dt != GF_I64 && w->dtype == dt && (!b || b->dtype == dt);
    if (!fuse) {
        gf_scope_begin(ctx);
        gf_tensor *out = gf__la_unfused_ops(x, w, b, act);
        if (out) out = gf_keep(out);
        gf_scope_end(ctx);
        return out;
    }
    gf__attrs at = {0};
    at.n = act == GF_ACT_RELU      ? GF__ACT_RELU
           : act == GF_ACT_TANH    ? GF__ACT_TANH
           : act == GF_ACT_SIGMOID ? GF__ACT_SIGMOID
                                   : GF__ACT_NONE;
    return gf__record(GF__OP_linear_act, dt, 2, (int64_t[]){x->shape[0], N}, b ? 3 : 2, in, &at);
}

/* ------------------------------------------------------------- backward */

/* gz = g * act'(pre-activation), from out. Plain backward: the one-pass
 * ops of unary.c (what the unfused activation's rule records; relu's
 * condition x <= 0 is out <= 0, NaN included). create_graph: unary.c's
 * composed rules (relu's zero_where gives out no gradient). */
static gf_tensor *gf__la_act_grad(gf__act act, gf_tensor *out, gf_tensor *g) {
    const bool plain = !gf_is_grad_enabled(out->ctx) && g->dtype == out->dtype;
    switch (act) {
    case GF__ACT_RELU:
        return plain ? gf__relu_backward(g, out) : gf__zero_where(g, out, NULL, GF__ZW_LE0);
    case GF__ACT_TANH:
        return plain ? gf__tanh_backward(g, out)
                     : gf_mul(g, gf_add_scalar(gf_neg(gf_mul(out, out)), 1.0));
    case GF__ACT_SIGMOID:
        return plain ? gf__sigmoid_backward(g, out)
                     : gf_mul(g, gf_mul(out, gf_add_scalar(gf_neg(out), 1.0)));
    case GF__ACT_NONE: break;
    }
    return g;
}

/* With z = x w^T + b and gz = dL/dz: dx = gz w, dw = gz^T x, db = gz summed
 * over rows, each formed as the unfused graph forms it (gf__bwd_matmul for
 * x @ w^T with w^T a transposed view: (gz^T x) when w is a contiguous
 * [N, K] matrix with K, N > 1, else (x^T gz)^T; gf__bwd_add's sum). */
gf_status gf__bwd_linear_act(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    gf_tensor *x = n->in[0], *w = n->in[1];
    gf_tensor *gz = gf__la_act_grad((gf__act)n->a.n, out, g);
    if (!gz) return gf_ctx_status(out->ctx);
    if (gf__needs_grad(n, 0)) gin[0] = gf_matmul(gz, w);
    if (gf__needs_grad(n, 1)) {
        const int64_t N = w->shape[0], K = w->shape[1];
        if (w->strides[1] == 1 && w->strides[0] == K && K > 1 && N > 1)
            gin[1] = gf_matmul(gf_transpose(gz, 0, 1), x);
        else
            gin[1] = gf_transpose(gf_matmul(gf_transpose(x, 0, 1), gz), 0, 1);
    }
    if (n->n_in > 2 && gf__needs_grad(n, 2)) gin[2] = gf__sum_to(gz, GF__DIMS(n->in[2]));
    return GF_OK;
}
