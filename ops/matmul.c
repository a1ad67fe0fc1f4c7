/*
 * matmul.c - gf_matmul with torch.matmul's rules, as one recorded op.
 *
 * The node (op matmul) always sees inputs of at least 2 dims,
 *   a [ba..., M, K] and b [bb..., K, N] with ba, bb broadcastable,
 * and produces out [batch..., M, N] (batch = broadcast(ba, bb)). The 1-D
 * cases of torch.matmul are views around that node: a 1-D a becomes [1, K]
 * and a 1-D b becomes [K, 1] (views that keep the input's stride, so a
 * strided vector is not copied), and the added dim is squeezed out of the
 * result afterwards. Backward therefore only has to handle the >= 2-D node,
 * and the views' own backward rules undo the reshaping.
 *
 * Kernel: one GEMM (ops/kernels) per batch index, reading each operand
 * through its real strides (a transposed or sliced view is never copied;
 * a broadcast batch dim has stride 0). Many small batches run in parallel,
 * tiles of whole batches, one thread per GEMM; the GEMM result does not
 * depend on how its tiles are spread, so the output is bitwise the same for
 * any thread count.
 * i64 x i64 uses a plain loop (wrapping arithmetic, as torch on CPU).
 */
#include "ops.h"

/* Batches whose GEMM has fewer multiply-adds than this are spread over the
 * threads one batch per thread instead of giving each GEMM all threads. */
#define GF__MM_SMALL_GEMM (64 * 64 * 64)

/* Offsets (in elements) of batch `bi` of a and b: bi is unravelled over the
 * output's batch shape bs[0..nb) and dotted with the operands' broadcast
 * batch strides (0 along broadcast dims). */
static inline void gf__mm_batch_off(int64_t bi, int nb, const int64_t *bs, const int64_t *sa,
                                    const int64_t *sb, int64_t *oa, int64_t *ob) {
    int64_t x = 0, y = 0;
    for (int d = nb - 1; d >= 0; d--) {
        int64_t k = bi % bs[d];
        bi /= bs[d];
        x += k * sa[d];
        y += k * sb[d];
    }
    *oa = x;
    *ob = y;
}

/* A batched product's operands, for batches as tiles. */
typedef struct {
    int nb;
    const int64_t *bs, *sa, *sb;
    int64_t M, N, K, rsa, csa, rsb, csb;
    const void *pa, *pb;
    void *po;
} gf__mm_args;

/* out [batch..., M, N] (contiguous) = a [ba..., M, K] @ b [bb..., K, N],
 * a and b read through their strides, batch dims broadcast by strides. */
#define GF__MM_FLOAT_KERNEL(NAME, T, GEMM)                                                    \
    /* Batches [b0, b1), each GEMM on this thread alone. */                                  \
    static void NAME##_batches(void *arg, int64_t b0, int64_t b1) {                          \
        const gf__mm_args *g = arg;                                                          \
        const T *pa = g->pa, *pb = g->pb;                                                    \
        T *po = g->po;                                                                       \
        for (int64_t bi = b0; bi < b1; bi++) {                                               \
            int64_t oa, ob;                                                                  \
            gf__mm_batch_off(bi, g->nb, g->bs, g->sa, g->sb, &oa, &ob);                      \
            GEMM(g->M, g->N, g->K, pa + oa, g->rsa, g->csa, pb + ob, g->rsb, g->csb, 0,      \
                 po + bi * g->M * g->N, g->N, 1, NULL);                                      \
        }                                                                                    \
    }                                                                                        \
    static void NAME(gf__node *n) {                                                          \
        const gf_tensor *A = n->in[0], *B = n->in[1];                                        \
        gf_tensor *O = n->out;                                                               \
        int nd = O->ndim, nb = nd - 2;                                                       \
        int64_t M = O->shape[nd - 2], N = O->shape[nd - 1], K = A->shape[A->ndim - 1];       \
        int64_t rsa = A->strides[A->ndim - 2], csa = A->strides[A->ndim - 1];                \
        int64_t rsb = B->strides[B->ndim - 2], csb = B->strides[B->ndim - 1];                \
        if (O->numel == 0) return;                                                           \
        /* batch strides of each operand over the output's batch shape */                   \
        int64_t sa[GF_MAX_DIMS] = {0}, sb[GF_MAX_DIMS] = {0};                                \
        gf_tensor Ab = gf__meta(A), Bb = gf__meta(B);                                        \
        Ab.ndim -= 2;                                                                        \
        Bb.ndim -= 2;                                                                        \
        gf__bcast_strides(&Ab, nb, O->shape, sa);                                            \
        gf__bcast_strides(&Bb, nb, O->shape, sb);                                            \
        int64_t nbatch = gf__numel(nb, O->shape);                                            \
        const T *pa = gf__ptr(A), *pb = gf__ptr(B);                                          \
        T *po = gf__ptr(O);                                                                  \
        const int64_t mnk = gf__mul_sat(M * N, K); /* M * N <= numel; K need not be */      \
        if (nbatch > 1 && GF__PAR_WORTH(&n->par, mnk < GF__MM_SMALL_GEMM)) {                 \
            gf__mm_args g = {nb, O->shape, sa, sb, M, N, K, rsa, csa, rsb, csb, pa, pb, po};  \
            gf__par_for(&n->par, nbatch, gf__par_grain(nbatch, mnk, GF__MM_SMALL_GEMM),       \
                        NAME##_batches, &g);                                                 \
            return;                                                                          \
        }                                                                                    \
        for (int64_t bi = 0; bi < nbatch; bi++) {                                            \
            int64_t oa, ob;                                                                  \
            gf__mm_batch_off(bi, nb, O->shape, sa, sb, &oa, &ob);                            \
            GEMM(M, N, K, pa + oa, rsa, csa, pb + ob, rsb, csb, 0, po + bi * M * N, N, 1,    \
                 &n->par);                                                                   \
        }                                                                                    \
    }

GF__MM_FLOAT_KERNEL(gf__mm_f32, float, gf__sgemm)
GF__MM_FLOAT_KERNEL(gf__mm_f64, double, gf__dgemm)

/* i64 rows [r0, r1) of the output (row r: batch r / M, row r % M). */
static void gf__mm_i64_rows(void *arg, int64_t r0, int64_t r1) {
    const gf__mm_args *g = arg;
    const int64_t *pa = g->pa, *pb = g->pb;
    uint64_t *po = g->po;
    const int64_t M = g->M, N = g->N, K = g->K;
    for (int64_t r = r0; r < r1; r++) {
        int64_t bi = r / M, i = r % M, oa, ob;
        gf__mm_batch_off(bi, g->nb, g->bs, g->sa, g->sb, &oa, &ob);
        const int64_t *ra = pa + oa + i * g->rsa;
        uint64_t *ro = po + r * N;
        for (int64_t j = 0; j < N; j++) ro[j] = 0;
        for (int64_t p = 0; p < K; p++) {
            uint64_t x = (uint64_t)ra[p * g->csa];
            const int64_t *rb = pb + ob + p * g->rsb;
            for (int64_t j = 0; j < N; j++) ro[j] += x * (uint64_t)rb[j * g->csb];
        }
    }
}

/* i64: the same batching around a plain i-p-j loop. Sums wrap modulo 2^64
 * (computed in uint64_t, where overflow is defined). */
static void gf__mm_i64(gf__node *n) {
    const gf_tensor *A = n->in[0], *B = n->in[1];
    gf_tensor *O = n->out;
    int nd = O->ndim, nb = nd - 2;
    int64_t M = O->shape[nd - 2], N = O->shape[nd - 1], K = A->shape[A->ndim - 1];
    int64_t rsa = A->strides[A->ndim - 2], csa = A->strides[A->ndim - 1];
    int64_t rsb = B->strides[B->ndim - 2], csb = B->strides[B->ndim - 1];
    if (O->numel == 0) return;
    int64_t sa[GF_MAX_DIMS] = {0}, sb[GF_MAX_DIMS] = {0};
    gf_tensor Ab = gf__meta(A), Bb = gf__meta(B);
    Ab.ndim -= 2;
    Bb.ndim -= 2;
    gf__bcast_strides(&Ab, nb, O->shape, sa);
    gf__bcast_strides(&Bb, nb, O->shape, sb);
    int64_t nbatch = gf__numel(nb, O->shape);
    int64_t rows = nbatch * M;
    gf__mm_args g = {nb, O->shape, sa, sb, M, N, K, rsa, csa, rsb, csb,
                     gf__ptr(A), gf__ptr(B), gf__ptr(O)};
    /* each (batch, row) of the output is independent: tiles of rows */
    /* rows * N is the output's numel; times K it may not fit (a cost only). */
    if (GF__PAR_WORTH(&n->par, gf__mul_sat(rows * N, K) > 32768))
        gf__par_for(&n->par, rows, gf__par_grain(rows, gf__mul_sat(N, K), 32768),
                    gf__mm_i64_rows, &g);
    else
        gf__mm_i64_rows(&g, 0, rows);
}

void gf__fwd_matmul(gf__node *n) {
    switch (n->out->dtype) {
    case GF_F32: gf__mm_f32(n); break;
    case GF_F64: gf__mm_f64(n); break;
    case GF_I64: gf__mm_i64(n); break;
    }
}

/* ----------------------------------------------------------- constructor */

/* A 1-D tensor [K] as a 2-D view: [1, K] (row) or [K, 1] (col), keeping its
 * stride so that a strided vector is not copied (gf_unsqueeze would clone a
 * non-contiguous input). Recorded as a reshape view, whose backward reshapes
 * the gradient back to [K]. */
static gf_tensor *gf__mm_vec_view(gf_tensor *v, bool row) {
    int64_t K = v->shape[0], s = v->strides[0];
    int64_t sh[2] = {row ? 1 : K, row ? K : 1};
    int64_t st[2] = {row ? K * s : s, row ? s : 1};
    return gf__record_view(GF__OP_reshape, v, 2, sh, st, v->offset, NULL);
}

gf_tensor *gf_matmul(gf_tensor *a, gf_tensor *b) {
    gf_tensor *in[2] = {a, b};
    gf_ctx *ctx = gf__check_inputs("gf_matmul", 2, in);
    if (!ctx) return NULL;
    if (a->ndim == 0 || b->ndim == 0) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_matmul: both arguments need at least 1 dim, got %s x %s (use gf_mul for "
                  "scalars)",
                  GF__SHAPE(a), GF__SHAPE(b));
        return NULL;
    }
    int64_t K = a->shape[a->ndim - 1];
    int64_t Kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
    if (K != Kb) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_matmul: inner dimensions differ: %s x %s (expected a's last dim %lld to "
                  "equal b's %s dim)",
                  GF__SHAPE(a), GF__SHAPE(b), (long long)K,
                  b->ndim == 1 ? "only" : "second-to-last");
        return NULL;
    }
    /* batch shape: broadcast of everything before the matrix dims */
    int na = a->ndim >= 2 ? a->ndim - 2 : 0, nbb = b->ndim >= 2 ? b->ndim - 2 : 0, nb;
    int64_t shape[GF_MAX_DIMS];
    if (!gf__bcast_shape(na, a->shape, nbb, b->shape, &nb, shape)) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_matmul: batch dimensions of %s x %s cannot be broadcast together "
                  "(expected equal sizes or 1 in the dims before the last two)",
                  GF__SHAPE(a), GF__SHAPE(b));
        return NULL;
    }
    int64_t M = a->ndim >= 2 ? a->shape[a->ndim - 2] : 1;
    int64_t N = b->ndim >= 2 ? b->shape[b->ndim - 1] : 1;
    shape[nb] = M;
    shape[nb + 1] = N;

    gf_dtype dt = gf__promote(a->dtype, b->dtype);
    gf_scope_begin(ctx);
    gf_tensor *ca = a->dtype == dt ? a : gf_to_dtype(a, dt);
    gf_tensor *cb = b->dtype == dt ? b : gf_to_dtype(b, dt);
    if (ca && ca->ndim == 1) ca = gf__mm_vec_view(ca, true);
    if (cb && cb->ndim == 1) cb = gf__mm_vec_view(cb, false);
    gf_tensor *out = NULL;
    if (ca && cb) out = gf__record(GF__OP_matmul, dt, nb + 2, shape, 2, (gf_tensor *[]){ca, cb}, NULL);
    /* drop the dims that the 1-D operands gained (torch.matmul's rule) */
    if (out && a->ndim == 1 && b->ndim == 1)
        out = gf_reshape(out, 0, NULL);
    else if (out && a->ndim == 1)
        out = gf_squeeze(out, -2);
    else if (out && b->ndim == 1)
        out = gf_squeeze(out, -1);
    if (out) out = gf_keep(out);
    gf_scope_end(ctx);
    return out;
}

/* ------------------------------------------------------------- backward */

/* With out = a @ b: ga = g @ b^T, gb = a^T @ g, built from gf_matmul and
 * gf_transpose views (no copy; the GEMM reads transposed operands by
 * strides), then summed over the batch dims each input was broadcast along.
 * When b is a plain matrix and a's batch dims are not broadcast (a linear
 * layer [B, T, K] x [K, N]), gb is one GEMM over the flattened batch,
 * [K, B*T] x [B*T, N], instead of B*T products summed afterwards. */
gf_status gf__bwd_matmul(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    gf_tensor *a = n->in[0], *b = n->in[1];
    if (gf__needs_grad(n, 0))
        gin[0] = gf__sum_to(gf_matmul(g, gf_transpose(b, -1, -2)), GF__DIMS(a));
    if (gf__needs_grad(n, 1)) {
        int64_t K = a->shape[a->ndim - 1], N = out->shape[out->ndim - 1];
        if (b->ndim == 2 && a->ndim == out->ndim && a->ndim >= 2 &&
            (a->ndim == 2 || gf__is_contig(a))) {
            int64_t rows = gf__numel(a->ndim - 1, a->shape);
            gf_tensor *a2 = a->ndim == 2 ? a : gf_reshape(a, 2, (int64_t[]){rows, K});
            gf_tensor *g2 = g->ndim == 2 ? g : gf_reshape(g, 2, (int64_t[]){rows, N});
            /* b (K x N) that is itself a transposed view of a contiguous
             * N x K tensor (Linear's W^T): compute its gradient as
             * (G^T A)^T so that the transpose's backward hands the weight a
             * contiguous N x K gradient; A^T G would reach it as a strided
             * view, and accumulating that into .grad walks memory with a
             * stride of K floats. */
            if (b->strides[0] == 1 && b->strides[1] == K && K > 1 && N > 1)
                gin[1] = gf_transpose(gf_matmul(gf_transpose(g2, 0, 1), a2), 0, 1);
            else
                gin[1] = gf_matmul(gf_transpose(a2, 0, 1), g2);
        } else {
            gin[1] = gf__sum_to(gf_matmul(gf_transpose(a, -1, -2), g), GF__DIMS(b));
        }
    }
    return GF_OK;
}
