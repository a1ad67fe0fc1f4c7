/*
 * ops.h - what every op file includes: the internal structures, the
 * forward/backward prototypes generated from ops.def, and small helpers for
 * walking strided tensors.
 */
#ifndef GF_OPS_H
#define GF_OPS_H

#include "../engine/internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

#define GF_OP(name, flags)                                                          \
    void gf__fwd_##name(gf__node *n);                                               \
    gf_status gf__bwd_##name(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin);
#include "ops.def"
#undef GF_OP

/* A transient view of t for a kernel: only the fields that describe the data
 * (dtype, shape, strides, offset, numel, storage, ctx). A kernel must not
 * copy a whole tensor (`*t`): the calling thread may be writing t's
 * bookkeeping fields (autograd's marks) while a run is in flight. */
static inline gf_tensor gf__meta(const gf_tensor *t) {
    gf_tensor m = {.ctx = t->ctx, .dtype = t->dtype, .ndim = t->ndim, .offset = t->offset,
                   .numel = t->numel, .storage = t->storage};
    memcpy(m.shape, t->shape, sizeof m.shape);
    memcpy(m.strides, t->strides, sizeof m.strides);
    return m;
}

/* Row walker over a shape: the last dim is the caller's inner loop; this
 * advances the multi-index over dims [0, ndim-1) and k operand offsets.
 *   int64_t idx[GF_MAX_DIMS] = {0}, off[k] = {start offsets};
 *   do { inner loop over shape[ndim-1] at off[] } while (gf__next_row(...));
 * st[j] are operand j's strides (in elements) over the same shape. */
static inline bool gf__next_row(int ndim, const int64_t *shape, int64_t *idx, int k,
                                int64_t *off, const int64_t *const *st) {
    for (int d = ndim - 2; d >= 0; d--) {
        if (++idx[d] < shape[d]) {
            for (int j = 0; j < k; j++) off[j] += st[j][d];
            return true;
        }
        for (int j = 0; j < k; j++) off[j] -= st[j][d] * (shape[d] - 1);
        idx[d] = 0;
    }
    return false;
}

/* i64 arithmetic wraps modulo 2^64 (docs/api.md, as PyTorch's CPU kernels
 * do): computed in uint64_t, where overflow is defined, and converted back
 * (GCC defines that conversion as modulo 2^64). */
static inline int64_t gf__wadd(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a + (uint64_t)b);
}
static inline int64_t gf__wsub(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a - (uint64_t)b);
}
static inline int64_t gf__wmul(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a * (uint64_t)b);
}
static inline int64_t gf__wneg(int64_t a) { return (int64_t)(0 - (uint64_t)a); }
/* x^p for p >= 0 by square-and-multiply, modulo 2^64: the same bits as p
 * wrapping multiplications, with no squaring past the last bit of p. */
static inline int64_t gf__wpow(int64_t x, int64_t p) {
    uint64_t r = 1, b = (uint64_t)x;
    while (p) {
        if (p & 1) r *= b;
        p >>= 1;
        if (p) b *= b;
    }
    return (int64_t)r;
}

/* v as i64 where gf__fits_i64, else 0: a conversion without undefined
 * behaviour. The ops that convert floats to i64 check the values first
 * (gf__first_not_i64) and report those that do not fit. */
static inline int64_t gf__to_i64(double v) { return gf__fits_i64(v) ? (int64_t)v : 0; }
/* v converted to type TD: through gf__to_i64 from a floating v to i64, a C
 * cast otherwise. */
#define GF__CVT(TD, v)                                                                      \
    _Generic((TD)0, int64_t: _Generic((v), int64_t: (v), default: gf__to_i64(v)),          \
             default: (TD)(v))

/* dst = src elementwise, with src broadcast (by strides) to dst's shape and
 * converted to dst's dtype (GF__CVT). Both may be strided. (ops/copy.c) */
void gf__copy_into(gf_tensor *dst, const gf_tensor *src);
/* Row-major index of the first element of t that i64 cannot hold (NaN,
 * +-inf, |v| >= 2^63), its value in *v; -1 if none (always for i64 t). t
 * must be computed. (ops/copy.c) */
int64_t gf__first_not_i64(const gf_tensor *t, double *v);
/* A walk over the elements t's memory holds, each once: a dim of stride 0
 * (expanded) repeats them, so the walk keeps its index at 0 and costs what
 * the storage does, not t's numel. Step j in [0, gf__distinct_count(t)) is
 * the element at *off (elements from gf__ptr(t)); gf__distinct_at returns
 * its row-major index in t. The steps go in row-major order: the first one
 * whose element meets a condition gives the first such index in t. Checks
 * of values at a call use it, so that an expanded view costs nothing.
 * (ops/copy.c) */
int64_t gf__distinct_count(const gf_tensor *t);
int64_t gf__distinct_at(const gf_tensor *t, int64_t j, int64_t *off);

/* Fused one-pass activation backward (ops/unary.c; NODIFF, recorded by a
 * plain backward): g * (1 - out^2), g * out * (1 - out), x <= 0 ? 0 : g. */
gf_tensor *gf__tanh_backward(gf_tensor *g, gf_tensor *out);
gf_tensor *gf__sigmoid_backward(gf_tensor *g, gf_tensor *out);
gf_tensor *gf__relu_backward(gf_tensor *g, gf_tensor *x);

/* zero_where (ops/where.c): v with zeros where the condition pred holds on
 * c (and c2, for GF__ZW_EQ0_GE0; else c2 is ignored and may be NULL),
 * broadcasting all three; differentiable in v only. What the backward rules
 * use where PyTorch's formulas use torch.where(cond, 0, v). */
enum {
    GF__ZW_LE0,    /* c <= 0 (relu: NaN is not masked) */
    GF__ZW_EQ0,    /* c == 0 (pow's d/dbase at exponent 0) */
    GF__ZW_EQ0_GE0 /* c == 0 and c2 >= 0 (pow's d/dexponent at base 0) */
};
gf_tensor *gf__zero_where(gf_tensor *v, gf_tensor *c, gf_tensor *c2, int pred);

/* Whether gf_linear_act records its fused op (ops/linear.c; default on).
 * Off, it records the unfused ops nn's layers record (tests compare the
 * two). Not meant to be switched while another thread records. */
void gf__linear_act_set_fused(bool on);
bool gf__linear_act_fused(void);

/* For backward rules: a tensor's dims as an int64 array view (used with
 * gf__sum_to, gf_reshape, gf_expand). */
#define GF__DIMS(t) gf_ndim(t), gf_shape(t)

/* Kernels split their loops with gf__par_for / gf__par_team on the node's
 * `par` (engine/par.h), behind GF__PAR_WORTH(&n->par, cond): below their
 * cut-off, or on one thread, they run a plain loop with no scheduler call. */

/* Fused softmax / log_softmax backward along dim (ops/softmax_grad.c; NODIFF,
 * recorded by a plain backward): y * (g - sum_d(g * y)) and
 * g - exp(y) * sum_d(g), y the forward's output, g of y's shape and dtype. */
gf_tensor *gf__softmax_backward(gf_tensor *g, gf_tensor *y, int dim);
gf_tensor *gf__log_softmax_backward(gf_tensor *g, gf_tensor *y, int dim);

/* Row geometry along dim d of t (viewed as [outer, C, inner]), for the row
 * kernels of ops/nn.c and ops/softmax_grad.c: rows = outer*inner. gf__nn_row_off gives the input offset of row r's first
 * element (rows numbered like the contiguous output: r = o*inner + i). */
typedef struct {
    int64_t C, inner, rows, stride; /* stride: t's stride along d */
} gf__nn_rows;

static inline gf__nn_rows gf__nn_rows_of(const gf_tensor *t, int d) {
    gf__nn_rows g = {1, 1, 1, 1};
    if (t->ndim == 0) return g;
    g.C = t->shape[d];
    g.stride = t->strides[d];
    for (int k = d + 1; k < t->ndim; k++) g.inner *= t->shape[k];
    g.rows = g.C ? t->numel / g.C : 0;
    return g;
}

static inline int64_t gf__nn_row_off(const gf_tensor *t, int d, int64_t r) {
    if (t->ndim == 2) return r * t->strides[1 - d]; /* [N, C] logits: no division */
    int64_t off = 0;
    for (int k = t->ndim - 1; k >= 0; k--) {
        if (k == d) continue;
        off += (r % t->shape[k]) * t->strides[k];
        r /= t->shape[k];
    }
    return off;
}

/* Whether row r of t (rows along d as gf__nn_rows_of numbers them) starts
 * at r * *ld and has its C elements adjacent, for every r: the rows a
 * block kernel reads in place. */
static inline bool gf__nn_uniform_rows(const gf_tensor *t, int d, gf__nn_rows g, int64_t *ld) {
    if (g.inner != 1 || (g.stride != 1 && g.C != 1)) return false;
    if (t->ndim == 2) *ld = t->strides[1 - d];
    else if (t->ndim <= 1 || gf__is_contig(t)) *ld = g.C;
    else return false;
    return true;
}

/* Rows [r0, r0 + nr) of X along d, C elements each (stride st), gathered
 * into xg [nr, C]. */
#define GF__NN_GATHER(T)                                                                   \
    static inline void gf__nn_gather_##T(const gf_tensor *X, int d, int64_t st, int64_t r0,       \
                                  int64_t nr, int64_t C, T *xg) {                          \
        const T *px = gf__ptr(X);                                                          \
        for (int64_t i = 0; i < nr; i++) {                                                 \
            const T *x = px + gf__nn_row_off(X, d, r0 + i);                                \
            for (int64_t k = 0; k < C; k++) xg[i * C + k] = x[k * st];                     \
        }                                                                                  \
    }

GF__NN_GATHER(float)
GF__NN_GATHER(double)

#endif /* GF_OPS_H */
