/*
 * test_linear_act.c - the GEMM epilogue (gf__sgemm_ep / gf__dgemm_ep,
 * ops/kernels) and the fused op gf_linear_act (ops/linear.c) that nn's
 * Sequential records for a Linear followed by ReLU, Tanh or Sigmoid.
 *
 * GEMM: every variant the CPU runs, f32 and f64, edge shapes (m, n, k over
 * 1..33 and k = 0, the tiny, gemv and blocked paths, several kc blocks),
 * transposed and padded A, B and C, column-major C, beta 1, strided bias,
 * each activation, thread budgets 1-4: bitwise the plain GEMM followed by
 * the bias addition and the activation (relu's expression, the vector math
 * table on the whole output), padding of C untouched; relu's NaN and -0;
 * the vector math functions give the same bits on short segments as on a
 * whole array (what lets the epilogue run them tile by tile).
 * The op: forward against a naive loop (f32 close to f64), bitwise the
 * unfused ops for every variant and 1-4 engine threads (strided x and w,
 * sliced bias, no bias), plain-backward gradients bitwise the unfused
 * graph's (both weight-gradient forms), create_graph's too; float64
 * gradchecks, first and second order; eager == lazy; errors and NULL;
 * the inputs it leaves to the unfused ops; and an MLP trained with Adam
 * whose losses, gradients and parameters are the same bits with fusion on
 * and off.
 */
#include "common.h"
#include "splitmix.h"
#include "par.h"

#include "../ops/ops.h"
#include "gradflow/nn.h"

static const char *const isas[] = {"generic", "avx2", "avx512"};
#define NISAS 3

/* Forces variant i; false when this CPU cannot run it. */
static bool use_isa(int i) {
    gf__gemm_force_isa(isas[i]);
    if (strcmp(gf__gemm_isa(), isas[i]) == 0) return true;
    cr_log_info("variant %s not supported here; skipped", isas[i]);
    return false;
}

static void restore(void) {
    gf__gemm_force_isa(NULL);
    gf__linear_act_set_fused(true);
}

static uint64_t rng = 7;
static double urand(void) { /* splitmix64 in [-1, 1) */
    return gf_test_u01(&rng) * 2 - 1;
}

/* ------------------------------------------------------- GEMM epilogue */

/* C (m x n) = beta*C + op(A) op(B); ta/tb: operand stored transposed; tc:
 * C column-major; pad: extra elements per stored row or column; incb: the
 * bias stride; nan: A(0,0) is NaN (row 0 of C is NaN). */
typedef struct {
    int64_t m, n, k;
    int ta, tb, tc, beta1, nan;
    int64_t pad, incb;
} prob;

/* One problem, one activation, with or without bias: the plain GEMM (one
 * thread), then bias and activation on the logical C gathered contiguous
 * (the vector function called once on all of it), must equal the epilogue
 * GEMM bit for bit for 1-4 threads, padding included. */
#define GF__CHECK_EP(NAME, T, GEMM, GEMM_EP, EP, VT, VS)                                      \
    static void NAME(prob p, gf__act act, int bias) {                                         \
        const int64_t m = p.m, n = p.n, k = p.k, pd = p.pad;                                  \
        const int64_t rsa = p.ta ? 1 : k + pd, csa = p.ta ? m + pd : 1;                       \
        const int64_t rsb = p.tb ? 1 : n + pd, csb = p.tb ? k + pd : 1;                       \
        const int64_t rsc = p.tc ? 1 : n + pd, csc = p.tc ? m + pd : 1;                       \
        const int64_t na = (p.ta ? k : m) * (k + m + pd) + 1;                                 \
        const int64_t nb = (p.tb ? n : k) * (n + k + pd) + 1;                                 \
        const int64_t nc = (p.tc ? n * (m + pd) : m * (n + pd)) + 1;                          \
        T *A = malloc(sizeof(T) * na), *B = malloc(sizeof(T) * nb);                           \
        T *C0 = malloc(sizeof(T) * nc), *R = malloc(sizeof(T) * nc), *F = malloc(sizeof(T) * nc); \
        T *bv = malloc(sizeof(T) * (n * p.incb + 1)), *L = malloc(sizeof(T) * (m * n + 1));   \
        for (int64_t i = 0; i < na; i++) A[i] = (T)urand();                                   \
        for (int64_t i = 0; i < nb; i++) B[i] = (T)(2 * urand());                             \
        for (int64_t i = 0; i < nc; i++) C0[i] = (T)urand();                                  \
        for (int64_t i = 0; i < n * p.incb + 1; i++) bv[i] = (T)urand();                      \
        if (p.nan && m * k > 0) A[0] = NAN;                                                   \
        const T beta = p.beta1 ? 1 : 0;                                                       \
        memcpy(R, C0, sizeof(T) * nc);                                                        \
        GEMM(m, n, k, A, rsa, csa, B, rsb, csb, beta, R, rsc, csc, NULL);                     \
        for (int64_t i = 0; i < m; i++)                                                       \
            for (int64_t j = 0; j < n; j++) {                                                 \
                T v = R[i * rsc + j * csc];                                                   \
                if (bias) v = v + bv[j * p.incb];                                             \
                if (act == GF__ACT_RELU) v = v < 0 ? 0 : v;                                   \
                L[i * n + j] = v;                                                             \
            }                                                                                 \
        const gf__vmath *vm = gf__vmath_now();                                                \
        if (act == GF__ACT_TANH) vm->VT(L, L, m * n);                                         \
        if (act == GF__ACT_SIGMOID) vm->VS(L, L, m * n);                                      \
        for (int64_t i = 0; i < m; i++)                                                       \
            for (int64_t j = 0; j < n; j++) R[i * rsc + j * csc] = L[i * n + j];              \
        const EP ep = {.bias = bias ? bv : NULL, .incb = p.incb, .act = act};                 \
        for (int nt = 1; nt <= 4; nt++) {                                                     \
            memcpy(F, C0, sizeof(T) * nc);                                                    \
            GEMM_EP(m, n, k, A, rsa, csa, B, rsb, csb, beta, F, rsc, csc, tpar(nt), &ep);     \
            cr_assert(memcmp(F, R, sizeof(T) * nc) == 0,                                      \
                      "%s %s: %lldx%lldx%lld ta%d tb%d tc%d pad%lld beta%d incb%lld act %d "  \
                      "bias %d nan %d, %d threads: not the unfused bits",                      \
                      gf__gemm_isa(), #T, (long long)m, (long long)n, (long long)k, p.ta,      \
                      p.tb, p.tc, (long long)pd, p.beta1, (long long)p.incb, (int)act, bias,   \
                      p.nan, nt);                                                             \
        }                                                                                     \
        free(A), free(B), free(C0), free(R), free(F), free(bv), free(L);                      \
    }

GF__CHECK_EP(check_ep_f32, float, gf__sgemm, gf__sgemm_ep, gf__sepilogue, tanh_f32, sigmoid_f32)
GF__CHECK_EP(check_ep_f64, double, gf__dgemm, gf__dgemm_ep, gf__depilogue, tanh_f64, sigmoid_f64)

static void check_ep(prob p) {
    for (int a = 0; a < 4; a++)
        for (int bias = 0; bias < 2; bias++) {
            check_ep_f32(p, (gf__act)a, bias);
            check_ep_f64(p, (gf__act)a, bias);
        }
}

Test(gemm_ep, edge_shapes_every_isa_bitwise_unfused, .fini = restore, .timeout = 600) {
    static const int64_t ms[] = {1, 2, 5, 6, 7, 16, 17, 33};
    static const int64_t ks[] = {0, 1, 7, 33, 300};
    for (int v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        int c = 0;
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
                for (int q = 0; q < 5; q++, c++) {
                    /* the layouts rotate with the shape (every one meets
                     * every path over the run) */
                    prob p = {.m = ms[i], .n = ms[j], .k = ks[q], .ta = c & 1, .tb = (c >> 1) & 1,
                              .tc = c % 5 == 0, .beta1 = c % 7 == 0, .nan = c % 11 == 0,
                              .pad = c % 3, .incb = c % 4 == 0 ? 3 : 1};
                    check_ep(p);
                }
    }
}

/* Shapes over several kc blocks, nc column chunks and thread tasks, and the
 * forward shapes of the MLPs (row-major B takes the fused B packing). */
Test(gemm_ep, large_shapes_every_isa_bitwise_unfused, .fini = restore, .timeout = 600) {
    static const prob ps[] = {
        {.m = 64, .n = 256, .k = 784, .tb = 1},
        {.m = 130, .n = 70, .k = 1100},
        {.m = 97, .n = 300, .k = 520, .ta = 1, .tc = 1, .pad = 3, .incb = 2},
        {.m = 200, .n = 33, .k = 257, .tb = 1, .beta1 = 1, .nan = 1},
        {.m = 1, .n = 500, .k = 700},
        {.m = 500, .n = 1, .k = 700, .ta = 1},
    };
    for (int v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) check_ep(ps[i]);
    }
}

/* relu of NaN is NaN, of -0 is -0 (x < 0 ? 0 : x, not a max instruction):
 * k = 0 with beta 1 leaves C as it was, so the epilogue sees the values. */
Test(gemm_ep, relu_passes_nan_and_negative_zero, .fini = restore) {
    for (int v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        float c[6] = {-0.0f, NAN, -1.0f, 2.0f, -INFINITY, INFINITY};
        float b[6] = {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f};
        gf__sgemm_ep(2, 3, 0, NULL, 0, 0, NULL, 0, 0, 1.0f, c, 3, 1, NULL,
                     &(gf__sepilogue){.bias = b, .incb = 1, .act = GF__ACT_RELU});
        cr_assert(signbit(c[0]) && c[0] == 0, "relu(-0 + -0) is -0");
        cr_assert(isnan(c[1]));
        cr_assert(c[2] == 0 && !signbit(c[2]));
        cr_assert(c[3] == 2 && c[4] == 0 && c[5] == INFINITY);
        double d[2] = {-0.0, NAN};
        gf__dgemm_ep(1, 2, 0, NULL, 0, 0, NULL, 0, 0, 1.0, d, 2, 1, NULL,
                     &(gf__depilogue){.act = GF__ACT_RELU});
        cr_assert(signbit(d[0]) && d[0] == 0 && isnan(d[1]));
    }
}

/* Each vector math function computes every element on its own: on short
 * segments (1..17 elements: tails and one or two vectors) the same bits as
 * on the whole array, specials included. */
#define GF__SEG_CHECK(T, FN, LABEL)                                                          \
    do {                                                                                     \
        enum { NV = 1000 };                                                                  \
        T x[NV], whole[NV], seg[NV];                                                         \
        for (int i = 0; i < NV; i++) x[i] = (T)(urand() * (i % 3 == 0 ? 40 : 3));          \
        x[5] = 0, x[6] = -(T)0, x[7] = NAN, x[8] = INFINITY, x[9] = -INFINITY, x[10] = (T)1e-30; \
        vm->FN(x, whole, NV);                                                                \
        for (int i = 0, len = 1; i < NV; i += len, len = len % 17 + 1)                       \
            vm->FN(x + i, seg + i, i + len <= NV ? len : NV - i);                            \
        cr_assert(memcmp(whole, seg, sizeof whole) == 0, "%s %s: segments differ", vm->name, \
                  LABEL);                                                                     \
    } while (0)

Test(gemm_ep, vmath_segments_same_bits_as_whole, .fini = restore) {
    for (int v = 0; v < NISAS; v++) {
        if (!use_isa(v)) continue;
        const gf__vmath *vm = gf__vmath_now();
        GF__SEG_CHECK(float, tanh_f32, "tanh_f32");
        GF__SEG_CHECK(double, tanh_f64, "tanh_f64");
        GF__SEG_CHECK(float, sigmoid_f32, "sigmoid_f32");
        GF__SEG_CHECK(double, sigmoid_f64, "sigmoid_f64");
    }
}

/* ----------------------------------------------------------------- op */

static const gf_activation ACTS[] = {GF_ACT_NONE, GF_ACT_RELU, GF_ACT_TANH, GF_ACT_SIGMOID,
                                     GF_ACT_GELU};
#define NACT 5

/* A contiguous [r, c] tensor of dtype dt with values in [lo, hi). */
static gf_tensor *uni(gf_ctx *c, gf_dtype dt, int64_t r, int64_t cols, double lo, double hi) {
    gf_tensor *t = gf_test_uniform(c, 2, (int64_t[]){r, cols}, lo, hi);
    return gf_contiguous(gf_to_dtype(t, dt));
}

/* Operands for case v of an M x K x N layer: x plain or a transposed view,
 * w plain or a transposed view, bias contiguous, a strided slice, or none. */
static void operands(gf_ctx *c, gf_dtype dt, int64_t M, int64_t K, int64_t N, int v,
                     gf_tensor **x, gf_tensor **w, gf_tensor **b) {
    *x = v & 1 ? gf_transpose(uni(c, dt, K, M, -1, 1), 0, 1) : uni(c, dt, M, K, -1, 1);
    *w = v & 2 ? gf_transpose(uni(c, dt, K, N, -1, 1), 0, 1) : uni(c, dt, N, K, -1, 1);
    gf_tensor *bb = uni(c, dt, 1, 2 * N, -1, 1);
    *b = v % 3 == 0   ? NULL
         : v % 3 == 1 ? gf_reshape(gf_slice(bb, 1, 0, N, 1), 1, (int64_t[]){N})
                      : gf_reshape(gf_slice(bb, 1, 0, 2 * N, 2), 1, (int64_t[]){N});
}

static bool same_bytes(gf_tensor *a, gf_tensor *b) {
    gf_ctx *c = gf_ctx_of(a);
    int64_t n = gf_numel(a);
    if (gf_numel(b) != n || gf_dtype_of(a) != gf_dtype_of(b)) return false;
    if (gf_dtype_of(a) == GF_F32) {
        const float *p = gf_data_f32(a), *q = gf_data_f32(b);
        cr_assert(p && q, "%s", gf_ctx_error(c));
        return memcmp(p, q, sizeof(float) * (size_t)n) == 0;
    }
    const double *p = gf_data_f64(a), *q = gf_data_f64(b);
    cr_assert(p && q, "%s", gf_ctx_error(c));
    return memcmp(p, q, sizeof(double) * (size_t)n) == 0;
}

/* gf_linear_act with fusion on or off. */
static gf_tensor *la(bool fused, gf_tensor *x, gf_tensor *w, gf_tensor *b, gf_activation a) {
    gf__linear_act_set_fused(fused);
    gf_tensor *y = gf_linear_act(x, w, b, a);
    gf__linear_act_set_fused(true);
    return y;
}

static double naive_act(gf_activation a, double z) {
    switch (a) {
    case GF_ACT_RELU: return z < 0 ? 0 : z;
    case GF_ACT_TANH: return tanh(z);
    case GF_ACT_SIGMOID: return 1 / (1 + exp(-z));
    case GF_ACT_GELU: return 0.5 * z * (1 + erf(z / sqrt(2)));
    case GF_ACT_NONE: break;
    }
    return z;
}

Test(linear_act, forward_matches_naive_f32_f64, .fini = restore) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_manual_seed(c, 3);
    const int64_t M = 9, K = 13, N = 7;
    for (int v = 0; v < 6; v++)
        for (int a = 0; a < NACT; a++) {
            gf_scope_begin(c);
            gf_tensor *x, *w, *b;
            operands(c, GF_F64, M, K, N, v, &x, &w, &b);
            double want[M * N], xv[M * K], wv[N * K], bv[N];
            GF_OK_OR_FAIL(c, gf_copy_to_f64(x, xv, M * K));
            GF_OK_OR_FAIL(c, gf_copy_to_f64(w, wv, N * K));
            if (b) GF_OK_OR_FAIL(c, gf_copy_to_f64(b, bv, N));
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = b ? bv[j] : 0;
                    for (int64_t p = 0; p < K; p++) s += xv[i * K + p] * wv[j * K + p];
                    want[i * N + j] = naive_act(ACTS[a], s);
                }
            gf_tensor *y = GF_T(c, gf_linear_act(x, w, b, ACTS[a]));
            gf_test_expect_shape(y, 2, (int64_t[]){M, N});
            cr_assert_eq(gf_dtype_of(y), GF_F64);
            gf_test_expect_close(y, want, M * N, 1e-12, 1e-12);
            gf_tensor *y32 = GF_T(c, gf_linear_act(gf_to_dtype(x, GF_F32), gf_to_dtype(w, GF_F32),
                                                   b ? gf_to_dtype(b, GF_F32) : NULL, ACTS[a]));
            cr_assert_eq(gf_dtype_of(y32), GF_F32);
            gf_test_expect_close(y32, want, M * N, 1e-5, 1e-5);
            gf_scope_end(c);
        }
    gf_ctx_destroy(c);
}

/* The fused node is recorded (but for GELU) and gives the unfused ops'
 * bits, for every variant and engine thread count. */
Test(linear_act, forward_bitwise_unfused_every_isa_and_threads, .fini = restore, .timeout = 600) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {2, 5, 7}, {6, 17, 16}, {33, 5, 17},
                                        {64, 300, 33}, {130, 520, 70}};
    for (int iv = 0; iv < NISAS; iv++) {
        if (!use_isa(iv)) continue;
        for (int nt = 1; nt <= 4; nt++) {
            gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = nt});
            gf_ctx *c = gf_ctx_create(e);
            gf_manual_seed(c, 5);
            for (int s = 0; s < 6; s++)
                for (int d = 0; d < 2; d++)
                    for (int a = 0; a < NACT; a++) {
                        gf_scope_begin(c);
                        gf_tensor *x, *w, *b;
                        int v = (s + a + nt) % 6;
                        operands(c, d ? GF_F32 : GF_F64, shapes[s][0], shapes[s][1], shapes[s][2],
                                 v, &x, &w, &b);
                        gf_tensor *f = GF_T(c, la(true, x, w, b, ACTS[a]));
                        gf_tensor *u = GF_T(c, la(false, x, w, b, ACTS[a]));
                        cr_assert_eq(f->node->op == GF__OP_linear_act, ACTS[a] != GF_ACT_GELU);
                        cr_assert_neq(u->node->op, GF__OP_linear_act);
                        cr_assert(same_bytes(f, u), "%s %d threads, shape %d case %d act %d dt %d",
                                  isas[iv], nt, s, v, a, d);
                        gf_scope_end(c);
                    }
            cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
            gf_ctx_destroy(c);
            gf_engine_destroy(e);
        }
    }
}

/* Leaves for case v (x, w or its storage [K, N] when transposed, b), the
 * layer act(x w^T + b) fused or not, sum(y * r), plain backward (or
 * create_graph); the gradients of the leaves (x, the weight leaf, b). */
static void grads(gf_ctx *c, bool fused, bool cg, gf_dtype dt, int64_t M, int64_t K, int64_t N,
                  int v, gf_activation a, gf_tensor **out) {
    gf_manual_seed(c, 100 + (uint64_t)v);
    gf_tensor *x = gf_requires_grad(uni(c, dt, M, K, -1, 1), true);
    gf_tensor *wl = v & 2 ? uni(c, dt, K, N, -1, 1) : uni(c, dt, N, K, -1, 1);
    gf_requires_grad(wl, true);
    gf_tensor *b = NULL;
    if (!(v & 1))
        b = gf_requires_grad(gf_reshape(uni(c, dt, 1, N, -1, 1), 1, (int64_t[]){N}), true);
    gf_tensor *r = uni(c, dt, M, N, -1, 1);
    gf_tensor *w = v & 2 ? gf_transpose(wl, 0, 1) : wl;
    gf_tensor *y = la(fused, x, w, b, a);
    gf_tensor *leaves[3] = {x, wl, b};
    gf_backward_opts o = {.grad_output = r, .create_graph = cg};
    GF_OK_OR_FAIL(c, gf_grad_of(y, b ? 3 : 2, leaves, out, &o));
    if (!b) out[2] = NULL;
    out[3] = y;
}

/* Plain backward: the gradients are the unfused graph's bits (x, weight
 * contiguous and transposed (the two forms of its gradient), K or N of 1,
 * with and without bias); with create_graph too. */
Test(linear_act, gradients_bitwise_unfused, .fini = restore) {
    static const int64_t shapes[][3] = {{5, 7, 6}, {33, 17, 40}, {4, 1, 9}, {8, 12, 1},
                                        {70, 300, 130}};
    gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
    gf_ctx *c = gf_ctx_create(e);
    for (int s = 0; s < 5; s++)
        for (int v = 0; v < 4; v++)
            for (int d = 0; d < 2; d++)
                for (int a = 0; a < NACT; a++)
                    for (int cg = 0; cg < 2; cg++) {
                        gf_scope_begin(c);
                        gf_tensor *gf[4], *gu[4];
                        gf_dtype dt = d ? GF_F32 : GF_F64;
                        grads(c, true, cg, dt, shapes[s][0], shapes[s][1], shapes[s][2], v,
                              ACTS[a], gf);
                        grads(c, false, cg, dt, shapes[s][0], shapes[s][1], shapes[s][2], v,
                              ACTS[a], gu);
                        for (int i = 0; i < 4; i++) {
                            cr_assert_eq(gf[i] == NULL, gu[i] == NULL);
                            if (gf[i])
                                cr_assert(same_bytes(gf[i], gu[i]),
                                          "gradient %d: shape %d case %d dt %d act %d cg %d", i, s,
                                          v, d, a, cg);
                        }
                        gf_scope_end(c);
                    }
    cr_assert_null(gf_ctx_error(c), "%s", gf_ctx_error(c));
    gf_ctx_destroy(c);
    gf_engine_destroy(e);
}

static gf_tensor *apply_la(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx;
    return gf_linear_act(in[0], in[1], n > 2 ? in[2] : NULL, *(const gf_activation *)user);
}

/* sum of the squared first derivatives of sum(y), from create_graph: its
 * gradient is second order in x, w and b. */
static gf_tensor *apply_d1(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx;
    gf_tensor *y = apply_la(ctx, n, in, user), *g[3] = {NULL, NULL, NULL};
    gf_backward_opts o = {.grad_output = gf_ones_like(y), .create_graph = true};
    if (gf_grad_of(y, n, in, g, &o) != GF_OK) return NULL;
    gf_tensor *s = gf_sum(gf_mul(g[0], g[0]));
    for (int i = 1; i < n; i++) s = gf_add(s, gf_sum(gf_mul(g[i], g[i])));
    return s;
}

Test(linear_act, gradcheck_f64_first_and_second_order, .fini = restore) {
    gf_ctx *c = gf_ctx_create(NULL);
    for (int a = 0; a < NACT; a++)
        for (int nb = 2; nb <= 3; nb++) {
            gf_scope_begin(c);
            gf_manual_seed(c, 40 + (uint64_t)a);
            gf_tensor *in[3] = {gf_requires_grad(uni(c, GF_F64, 3, 4, -1, 1), true),
                                gf_requires_grad(uni(c, GF_F64, 5, 4, -1, 1), true),
                                gf_requires_grad(gf_reshape(uni(c, GF_F64, 1, 5, -1, 1), 1,
                                                            (int64_t[]){5}), true)};
            gf_tensor *y = apply_la(c, nb, in, (void *)&ACTS[a]);
            cr_assert_eq(y->node->op == GF__OP_linear_act, ACTS[a] != GF_ACT_GELU);
            gf_status s = gf_gradcheck(c, apply_la, nb, in, (void *)&ACTS[a], 1e-6, 1e-6, 1e-4);
            cr_assert_eq(s, GF_OK, "act %d: %s", a, gf_ctx_error(c));
            s = gf_gradcheck(c, apply_d1, nb, in, (void *)&ACTS[a], 1e-6, 1e-6, 1e-4);
            cr_assert_eq(s, GF_OK, "act %d second order: %s", a, gf_ctx_error(c));
            gf_scope_end(c);
        }
    gf_ctx_destroy(c);
}

static size_t dump(gf_tensor *t, unsigned char *out, size_t len) {
    size_t nb = (size_t)gf_numel(t) * (gf_dtype_of(t) == GF_F32 ? 4 : 8);
    if (out) memcpy(out + len, gf_dtype_of(t) == GF_F32 ? (const void *)gf_data_f32(t)
                                                      : (const void *)gf_data_f64(t), nb);
    return len + nb;
}

static size_t run_all(gf_ctx *c, unsigned char *out) {
    size_t len = 0;
    for (int a = 0; a < NACT; a++)
        for (int d = 0; d < 2; d++) {
            gf_scope_begin(c);
            gf_tensor *g[4];
            grads(c, true, false, d ? GF_F32 : GF_F64, 17, 33, 20, a % 4, ACTS[a], g);
            for (int i = 0; i < 4; i++)
                if (g[i]) len = dump(g[i], out, len);
            gf_scope_end(c);
        }
    return len;
}

Test(linear_act, eager_equals_lazy) { gf_test_expect_eager_equals_lazy(run_all); }

Test(linear_act, errors_and_null) {
    gf_ctx *c = gf_ctx_create(NULL), *o = gf_ctx_create(NULL);
    gf_tensor *x = gf_randn(c, GF_F32, 2, (int64_t[]){3, 4});
    gf_tensor *w = gf_randn(c, GF_F32, 2, (int64_t[]){5, 4});
    gf_tensor *b = gf_randn(c, GF_F32, 1, (int64_t[]){5});
    cr_assert_null(gf_linear_act(NULL, w, b, GF_ACT_RELU));
    cr_assert_null(gf_linear_act(x, NULL, b, GF_ACT_RELU));
    cr_assert_null(gf_ctx_error(c), "a NULL input is passed on quietly");
    static const struct {
        int64_t xs[2], ws[2], bs;
        int wnd;
        const char *need[3];
    } bad[] = {
        {{3, 4}, {5, 4}, 0, 1, {"weight [5]", "2 dims", NULL}},
        {{3, 4}, {5, 6}, 5, 2, {"input [3,4]", "weight [5,6]", "in_features 6"}},
        {{3, 4}, {5, 4}, 4, 2, {"bias [4]", "weight [5,4]", "[5]"}},
    };
    for (int i = 0; i < 3; i++) {
        gf_scope_begin(c);
        gf_tensor *xx = gf_randn(c, GF_F32, 2, bad[i].xs);
        gf_tensor *ww = gf_randn(c, GF_F32, bad[i].wnd, bad[i].ws);
        gf_tensor *bb = bad[i].bs ? gf_randn(c, GF_F32, 1, &bad[i].bs) : NULL;
        cr_assert_null(gf_linear_act(xx, ww, bb, GF_ACT_TANH));
        gf_test_expect_error(c, "gf_linear_act");
        for (int k = 0; k < 3 && bad[i].need[k]; k++) gf_test_expect_error(c, bad[i].need[k]);
        cr_assert_eq(gf_ctx_status(c), GF_ESHAPE);
        gf_ctx_clear_error(c);
        gf_scope_end(c);
    }
    cr_assert_null(gf_linear_act(x, w, b, (gf_activation)17));
    gf_test_expect_error(c, "unknown activation 17");
    gf_ctx_clear_error(c);
    cr_assert_null(gf_linear_act(x, w, gf_randn(o, GF_F32, 1, (int64_t[]){5}), GF_ACT_RELU));
    gf_test_expect_error(c, "another ctx");
    gf_ctx_clear_error(c);
    cr_assert_null(gf_linear_act(x, gf_randn(o, GF_F32, 2, (int64_t[]){5, 4}), b, GF_ACT_RELU));
    gf_test_expect_error(c, "gf_linear_act");
    gf_ctx_destroy(c), gf_ctx_destroy(o);
}

/* What the fused op does not take is recorded as the unfused ops: a 3-D x,
 * mixed dtypes (promoted), i64; the values are those ops'. */
Test(linear_act, other_inputs_take_the_unfused_ops, .fini = restore) {
    gf_ctx *c = gf_ctx_create(NULL);
    gf_manual_seed(c, 9);
    gf_tensor *x3 = gf_randn(c, GF_F32, 3, (int64_t[]){2, 3, 4});
    gf_tensor *w = gf_randn(c, GF_F32, 2, (int64_t[]){5, 4});
    gf_tensor *b = gf_randn(c, GF_F32, 1, (int64_t[]){5});
    gf_tensor *y = GF_T(c, gf_linear_act(x3, w, b, GF_ACT_SIGMOID));
    gf_test_expect_shape(y, 3, (int64_t[]){2, 3, 5});
    cr_assert_neq(y->node->op, GF__OP_linear_act);
    cr_assert(same_bytes(y, GF_T(c, la(false, x3, w, b, GF_ACT_SIGMOID))));
    gf_tensor *x2 = gf_randn(c, GF_F64, 2, (int64_t[]){3, 4});
    y = GF_T(c, gf_linear_act(x2, w, b, GF_ACT_RELU));
    cr_assert_eq(gf_dtype_of(y), GF_F64);
    cr_assert_neq(y->node->op, GF__OP_linear_act);
    cr_assert(same_bytes(y, GF_T(c, la(false, x2, w, b, GF_ACT_RELU))));
    gf_tensor *xi = gf_tensor_i64(c, 2, (int64_t[]){1, 2}, (int64_t[]){3, -4});
    gf_tensor *wi = gf_tensor_i64(c, 2, (int64_t[]){2, 2}, (int64_t[]){1, 2, 3, 4});
    gf_tensor *bi = gf_tensor_i64(c, 1, (int64_t[]){2}, (int64_t[]){1, 1});
    y = GF_T(c, gf_linear_act(xi, wi, bi, GF_ACT_RELU));
    cr_assert_eq(gf_dtype_of(y), GF_I64);
    cr_assert(gf_data_i64(y)[0] == 0 && gf_data_i64(y)[1] == 0); /* -5+1, -7+1 */
    gf_ctx_destroy(c);
}

/* A model of Linear+act pairs (gf_mlp, or Sequential with a bias-free
 * Linear), built identically in two ctxs and trained with Adam, one with
 * fusion and one without: every loss, gradient and parameter the same bits. */
static gf_module *model(gf_ctx *c, int kind, gf_dtype dt) {
    gf_manual_seed(c, 77);
    if (kind < 3) {
        static const gf_activation acts[] = {GF_ACT_RELU, GF_ACT_TANH, GF_ACT_SIGMOID};
        return gf_mlp(c, 4, (int64_t[]){20, 48, 33, 7}, acts[kind], dt);
    }
    gf_module *ch[] = {gf_linear(c, 20, 16, false, dt), gf_activation_layer(c, GF_ACT_TANH),
                       gf_linear(c, 16, 7, true, dt), gf_activation_layer(c, GF_ACT_RELU)};
    return gf_sequential(c, 4, ch);
}

Test(linear_act, mlp_training_bitwise_with_and_without_fusion, .fini = restore) {
    for (int kind = 0; kind < 4; kind++)
        for (int d = 0; d < 2; d++) {
            gf_dtype dt = d ? GF_F32 : GF_F64;
            gf_engine *e = gf_engine_create(&(gf_engine_opts){.num_threads = 2});
            gf_ctx *c[2] = {gf_ctx_create(e), gf_ctx_create(e)};
            gf_module *m[2];
            gf_optimizer *opt[2];
            gf_tensor *x[2], *lab[2];
            int64_t l[24];
            for (int i = 0; i < 24; i++) l[i] = (i * 5 + 1) % 7;
            for (int f = 0; f < 2; f++) {
                m[f] = model(c[f], kind, dt);
                cr_assert_not_null(m[f], "%s", gf_ctx_error(c[f]));
                opt[f] = gf_module_adam(m[f], &(gf_adam_opts){.lr = 1e-2, .beta1 = 0.9,
                                                              .beta2 = 0.999, .eps = 1e-8});
                x[f] = gf_to_dtype(gf_randn(c[f], GF_F64, 2, (int64_t[]){24, 20}), dt);
                lab[f] = gf_tensor_i64(c[f], 1, (int64_t[]){24}, l);
            }
            /* the fused path is taken: a Linear+act pair is one node */
            gf_scope_begin(c[0]);
            gf_module *two[] = {gf_linear(c[0], 20, 3, true, dt),
                                gf_activation_layer(c[0], GF_ACT_RELU)};
            gf_module *pair = gf_sequential(c[0], 2, two);
            cr_assert_eq(gf_module_forward(pair, x[0])->node->op, GF__OP_linear_act);
            gf_module_free(pair);
            gf_scope_end(c[0]);
            for (int step = 0; step < 4; step++) {
                gf_tensor *loss[2];
                for (int f = 0; f < 2; f++) {
                    gf_scope_begin(c[f]);
                    gf__linear_act_set_fused(f == 0);
                    loss[f] = gf_cross_entropy(gf_module_forward(m[f], x[f]), lab[f]);
                    gf__linear_act_set_fused(true);
                    GF_OK_OR_FAIL(c[f], gf_backward(loss[f]));
                }
                cr_assert(same_bytes(loss[0], loss[1]), "kind %d dt %d step %d: losses differ",
                          kind, d, step);
                for (int p = 0; p < gf_module_num_parameters(m[0]); p++)
                    cr_assert(same_bytes(gf_grad(gf_module_parameter(m[0], p)),
                                         gf_grad(gf_module_parameter(m[1], p))),
                              "kind %d dt %d step %d: gradient of parameter %d differs", kind, d,
                              step, p);
                for (int f = 0; f < 2; f++) {
                    GF_OK_OR_FAIL(c[f], gf_optimizer_step(opt[f]));
                    gf_optimizer_zero_grad(opt[f]);
                    gf_scope_end(c[f]);
                }
            }
            for (int p = 0; p < gf_module_num_parameters(m[0]); p++)
                cr_assert(same_bytes(gf_module_parameter(m[0], p), gf_module_parameter(m[1], p)));
            for (int f = 0; f < 2; f++) {
                gf_optimizer_free(opt[f]);
                gf_module_free(m[f]);
                gf_ctx_destroy(c[f]);
            }
            gf_engine_destroy(e);
        }
}
