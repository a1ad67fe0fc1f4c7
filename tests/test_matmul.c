/*
 * test_matmul.c - gf_matmul: forward against a naive reference that applies
 * torch.matmul's rules on its own (1-D promotion, batch broadcasting, long
 * double sums), for every shape rule, transposed / sliced / expanded
 * operands (checked not to be copied), sizes 1, primes and 0, f32 / f64 /
 * i64 and mixed dtypes; float64 gradchecks of every case and a second-order
 * check; error messages; eager vs lazy and 1 vs many threads bit for bit.
 */
#include "common.h"

#include "../engine/internal.h"

#include <stdint.h>

/* ----------------------------------------------------------- reference */

/* torch.matmul(a, b) in long double from the logical (row-major) values of
 * a and b. Writes the result's ndim/shape and returns its values (malloc). */
static double *ref_matmul(gf_tensor *a, gf_tensor *b, int *ond, int64_t *osh) {
    int na = gf_ndim(a), nb = gf_ndim(b);
    int64_t an = gf_numel(a), bn = gf_numel(b);
    double *av = malloc(sizeof(double) * (size_t)(an ? an : 1));
    double *bv = malloc(sizeof(double) * (size_t)(bn ? bn : 1));
    cr_assert(av && bv);
    cr_assert_eq(gf_copy_to_f64(a, av, an), GF_OK);
    cr_assert_eq(gf_copy_to_f64(b, bv, bn), GF_OK);
    /* a as [ba..., M, K], b as [bb..., K, N] */
    int64_t as[GF_MAX_DIMS + 1], bs[GF_MAX_DIMS + 1];
    int ma = na, mb = nb;
    if (na == 1) as[0] = 1, as[1] = gf_shape(a)[0], ma = 2;
    else memcpy(as, gf_shape(a), sizeof(int64_t) * (size_t)na);
    if (nb == 1) bs[0] = gf_shape(b)[0], bs[1] = 1, mb = 2;
    else memcpy(bs, gf_shape(b), sizeof(int64_t) * (size_t)nb);
    int64_t M = as[ma - 2], K = as[ma - 1], N = bs[mb - 1];
    cr_assert_eq(K, bs[mb - 2]);
    int nbat = (ma > mb ? ma : mb) - 2;
    int64_t bat[GF_MAX_DIMS], nbatch = 1;
    for (int d = 0; d < nbat; d++) {
        int da = d - (nbat - (ma - 2)), db = d - (nbat - (mb - 2));
        int64_t x = da >= 0 ? as[da] : 1, y = db >= 0 ? bs[db] : 1;
        cr_assert(x == y || x == 1 || y == 1);
        bat[d] = x == 1 ? y : x;
        nbatch *= bat[d];
    }
    int64_t on = nbatch * M * N;
    double *o = malloc(sizeof(double) * (size_t)(on > 0 ? on : 1));
    cr_assert(o);
    for (int64_t bi = 0; bi < nbatch; bi++) {
        /* row-major batch offsets of a and b, size-1 dims broadcast */
        int64_t ia = 0, ib = 0, ra = 1, rb = 1, rest = bi;
        for (int d = nbat - 1; d >= 0; d--) {
            int64_t k = rest % bat[d];
            rest /= bat[d];
            int da = d - (nbat - (ma - 2)), db = d - (nbat - (mb - 2));
            if (da >= 0) ia += (as[da] == 1 ? 0 : k) * ra, ra *= as[da];
            if (db >= 0) ib += (bs[db] == 1 ? 0 : k) * rb, rb *= bs[db];
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                long double s = 0;
                for (int64_t p = 0; p < K; p++)
                    s += (long double)av[ia * M * K + i * K + p] * bv[ib * K * N + p * N + j];
                o[bi * M * N + i * N + j] = (double)s;
            }
    }
    int nd = 0;
    for (int d = 0; d < nbat; d++) osh[nd++] = bat[d];
    if (na > 1) osh[nd++] = M;
    if (nb > 1) osh[nd++] = N;
    *ond = nd;
    free(av);
    free(bv);
    return o;
}

/* gf_matmul(a, b) equals the reference in shape and values, to within tol
 * per unit of K (rounding grows with the length of each sum). */
static gf_tensor *check_mm(gf_ctx *ctx, gf_tensor *a, gf_tensor *b, double tol) {
    gf_tensor *out = GF_T(ctx, gf_matmul(a, b));
    int nd;
    int64_t sh[GF_MAX_DIMS];
    double *want = ref_matmul(a, b, &nd, sh);
    gf_test_expect_shape(out, nd, sh);
    int64_t K = gf_shape(a)[gf_ndim(a) - 1];
    gf_test_expect_close(out, want, gf_numel(out), tol * (double)(K + 1), tol);
    free(want);
    return out;
}

static gf_ctx *ctx;
static void setup(void) {
    ctx = gf_ctx_create(NULL);
    gf_manual_seed(ctx, 1234);
}
static void teardown(void) { gf_ctx_destroy(ctx); }
TestSuite(matmul, .init = setup, .fini = teardown);

/* Random tensor of dtype dt with values in [-1, 1). */
static gf_tensor *rnd(gf_dtype dt, int nd, const int64_t *sh) {
    gf_tensor *t = gf_test_uniform(ctx, nd, sh, -1, 1);
    return dt == GF_F64 ? t : gf_to_dtype(t, dt);
}
#define SH(...) (int64_t[]){__VA_ARGS__}
#define ND(...) (int)(sizeof(int64_t[]){__VA_ARGS__} / sizeof(int64_t))
/* check_mm on fresh random operands of the given shapes, f64 and f32. */
#define CHECK_SHAPES(A, B)                                                                  \
    do {                                                                                   \
        check_mm(ctx, rnd(GF_F64, ND A, SH A), rnd(GF_F64, ND B, SH B), 1e-14);            \
        check_mm(ctx, rnd(GF_F32, ND A, SH A), rnd(GF_F32, ND B, SH B), 1e-6);             \
    } while (0)

/* ------------------------------------------------------------- forward */

Test(matmul, forward_2d) {
    CHECK_SHAPES((3, 2), (2, 4));
    CHECK_SHAPES((5, 7), (7, 3));
    /* exact small case, by hand */
    gf_tensor *a = gf_tensor_f64(ctx, 2, SH(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    gf_tensor *b = gf_tensor_f64(ctx, 2, SH(3, 2), (double[]){7, 8, 9, 10, 11, 12});
    gf_test_expect_close(gf_matmul(a, b), (double[]){58, 64, 139, 154}, 4, 0, 0);
}

Test(matmul, dot_1d) {
    gf_tensor *a = gf_tensor_f64(ctx, 1, SH(3), (double[]){1, 2, 3});
    gf_tensor *b = gf_tensor_f64(ctx, 1, SH(3), (double[]){4, -5, 6});
    gf_tensor *d = GF_T(ctx, gf_matmul(a, b));
    cr_assert_eq(gf_ndim(d), 0);
    cr_assert_eq(gf_item(d), 12.0);
    CHECK_SHAPES((17), (17));
    CHECK_SHAPES((1), (1));
}

Test(matmul, vector_times_matrix) {
    CHECK_SHAPES((3), (3, 4));
    CHECK_SHAPES((3), (2, 3, 4));
    CHECK_SHAPES((5), (2, 1, 5, 3));
    gf_test_expect_shape(gf_matmul(rnd(GF_F64, 1, SH(3)), rnd(GF_F64, 2, SH(3, 4))), 1, SH(4));
}

Test(matmul, matrix_times_vector) {
    CHECK_SHAPES((4, 3), (3));
    CHECK_SHAPES((2, 4, 3), (3));
    CHECK_SHAPES((3, 1, 2, 5), (5));
    gf_test_expect_shape(gf_matmul(rnd(GF_F64, 3, SH(2, 4, 3)), rnd(GF_F64, 1, SH(3))), 2,
                         SH(2, 4));
}

Test(matmul, batched) {
    CHECK_SHAPES((3, 4, 5), (3, 5, 2));
    CHECK_SHAPES((2, 3, 4, 5), (2, 3, 5, 6));
    /* many small batches (the batch-parallel path) and a few large ones */
    CHECK_SHAPES((300, 4, 5), (300, 5, 3));
    CHECK_SHAPES((3, 70, 65), (3, 65, 90));
}

Test(matmul, batched_broadcast) {
    gf_tensor *o = check_mm(ctx, rnd(GF_F64, 4, SH(2, 1, 3, 4)), rnd(GF_F64, 3, SH(5, 4, 2)), 1e-14);
    gf_test_expect_shape(o, 4, SH(2, 5, 3, 2));
    CHECK_SHAPES((2, 1, 3, 4), (5, 4, 2));
    CHECK_SHAPES((7, 3, 4), (4, 2));     /* b a plain matrix */
    CHECK_SHAPES((3, 4), (6, 4, 2));     /* a a plain matrix */
    CHECK_SHAPES((1, 3, 4), (6, 4, 2));  /* size-1 batch dim */
    CHECK_SHAPES((4, 1, 3, 4), (1, 5, 4, 2));
}

Test(matmul, transposed_operands) {
    gf_tensor *w = rnd(GF_F64, 2, SH(4, 3)), *x = rnd(GF_F64, 2, SH(5, 3));
    check_mm(ctx, x, gf_transpose(w, 0, 1), 1e-14);                     /* [5,3] x [3,4] */
    check_mm(ctx, gf_transpose(w, 0, 1), w, 1e-14);                     /* [3,4] x [4,3] */
    gf_tensor *v = rnd(GF_F64, 2, SH(2, 4));
    check_mm(ctx, gf_transpose(w, 0, 1), gf_transpose(v, 1, 0), 1e-14); /* both transposed */
    check_mm(ctx, gf_transpose(x, 0, 1), x, 1e-14);
    /* batched, transposed in the matrix dims and across batch/matrix dims */
    gf_tensor *a = rnd(GF_F32, 3, SH(3, 4, 5)), *b = rnd(GF_F32, 3, SH(3, 2, 5));
    check_mm(ctx, a, gf_transpose(b, -1, -2), 1e-6);
    gf_tensor *p = rnd(GF_F32, 3, SH(4, 3, 5)); /* [3,4,5] with the batch dim inside */
    check_mm(ctx, gf_transpose(p, 0, 1), gf_transpose(b, -1, -2), 1e-6);
    /* large enough to go through the packed GEMM path */
    gf_tensor *big = rnd(GF_F64, 2, SH(131, 97));
    check_mm(ctx, gf_transpose(big, 0, 1), big, 1e-14);
}

Test(matmul, sliced_operands) {
    gf_tensor *A = rnd(GF_F64, 2, SH(9, 8)), *B = rnd(GF_F64, 2, SH(10, 5));
    gf_tensor *a = gf_slice(A, 1, 1, 8, 2);  /* [9,4], column stride 2 */
    gf_tensor *b = gf_slice(B, 0, 1, 9, 2);  /* [4,5], row stride 10 */
    check_mm(ctx, a, b, 1e-14);
    check_mm(ctx, gf_slice(a, 0, 2, 7, 1), gf_slice(b, 1, 0, 5, 3), 1e-14);
    /* a strided vector on either side, and a batch dim taken with a step */
    gf_tensor *v = gf_slice(rnd(GF_F64, 1, SH(12)), 0, 0, 12, 3); /* [4], stride 3 */
    check_mm(ctx, v, b, 1e-14);
    check_mm(ctx, gf_transpose(b, 0, 1), v, 1e-14);
    check_mm(ctx, v, v, 1e-14);
    gf_tensor *C = rnd(GF_F32, 3, SH(6, 3, 4));
    check_mm(ctx, gf_slice(C, 0, 1, 6, 2), gf_transpose(gf_slice(C, 0, 0, 6, 2), -1, -2), 1e-6);
    /* a batch dim broadcast by gf_expand (stride 0) */
    gf_tensor *e = gf_expand(rnd(GF_F64, 3, SH(1, 3, 4)), 3, SH(5, 3, 4));
    check_mm(ctx, e, rnd(GF_F64, 3, SH(5, 4, 2)), 1e-14);
}

/* Views reach the kernel as views: the matmul node reads the caller's
 * storage through its strides, with no copy node in between. */
Test(matmul, views_are_not_copied) {
    gf_tensor *w = rnd(GF_F64, 2, SH(4, 3)), *x = rnd(GF_F64, 2, SH(5, 3));
    GF_OK_OR_FAIL(ctx, gf_realize(w));
    GF_OK_OR_FAIL(ctx, gf_realize(x));
    gf_tensor *o = GF_T(ctx, gf_matmul(x, gf_transpose(w, 0, 1)));
    cr_assert_not_null(o->node);
    cr_assert_eq(o->node->op, GF__OP_matmul);
    cr_assert_eq(o->node->in[1]->storage, w->storage);
    cr_assert_eq(o->node->in[1]->strides[0], 1);
    cr_assert_eq(o->node->in[1]->strides[1], 3);
    /* a strided vector: [4] with stride 3 becomes [4,1] with stride 3 */
    gf_tensor *V = rnd(GF_F64, 1, SH(12));
    GF_OK_OR_FAIL(ctx, gf_realize(V));
    gf_tensor *v = gf_slice(V, 0, 0, 12, 3);
    gf_tensor *y = GF_T(ctx, gf_matmul(gf_transpose(w, 0, 1), v));
    gf__node *mm = y->node->op == GF__OP_matmul ? y->node : y->node->in[0]->node;
    cr_assert_eq(mm->op, GF__OP_matmul);
    cr_assert_eq(mm->in[1]->storage, V->storage);
    cr_assert_eq(mm->in[1]->strides[0], 3);
    cr_assert_eq(mm->in[0]->storage, w->storage);
}

Test(matmul, sizes_one_and_primes) {
    static const int64_t sz[] = {1, 2, 3, 7, 13, 31, 67};
    int ns = (int)(sizeof sz / sizeof sz[0]);
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < ns; j++) {
            int64_t M = sz[i], N = sz[j], K = sz[(i + j) % ns];
            gf_scope_begin(ctx);
            check_mm(ctx, rnd(GF_F64, 2, SH(M, K)), rnd(GF_F64, 2, SH(K, N)), 1e-14);
            check_mm(ctx, rnd(GF_F32, 2, SH(M, K)), rnd(GF_F32, 2, SH(K, N)), 1e-6);
            gf_scope_end(ctx);
        }
    CHECK_SHAPES((97, 101), (101, 89));
    CHECK_SHAPES((1, 1, 1), (1, 1, 1));
}

Test(matmul, zero_size_dims) {
    /* K = 0: every output element is an empty sum */
    gf_tensor *o = GF_T(ctx, gf_matmul(rnd(GF_F64, 2, SH(3, 0)), rnd(GF_F64, 2, SH(0, 4))));
    gf_test_expect_shape(o, 2, SH(3, 4));
    gf_test_expect_close(o, (double[12]){0}, 12, 0, 0);
    o = GF_T(ctx, gf_matmul(rnd(GF_F32, 3, SH(2, 3, 0)), rnd(GF_F32, 2, SH(0, 2))));
    gf_test_expect_shape(o, 3, SH(2, 3, 2));
    gf_test_expect_close(o, (double[12]){0}, 12, 0, 0);
    o = GF_T(ctx, gf_matmul(rnd(GF_F64, 1, SH(0)), rnd(GF_F64, 1, SH(0))));
    cr_assert_eq(gf_ndim(o), 0);
    cr_assert_eq(gf_item(o), 0.0);
    /* empty M, N and batch */
    CHECK_SHAPES((0, 4), (4, 3));
    CHECK_SHAPES((3, 4), (4, 0));
    CHECK_SHAPES((0, 3, 4), (4, 2));
    CHECK_SHAPES((2, 0, 3, 4), (1, 4, 2));
}

Test(matmul, dtypes) {
    gf_tensor *a = rnd(GF_F64, 2, SH(6, 5)), *b = rnd(GF_F64, 2, SH(5, 4));
    gf_tensor *a32 = gf_to_dtype(a, GF_F32), *b32 = gf_to_dtype(b, GF_F32);
    /* f32 x f64 -> f64, computed on the f32 values promoted exactly */
    gf_tensor *m = check_mm(ctx, a32, b, 1e-14);
    cr_assert_eq(gf_dtype_of(m), GF_F64);
    /* f32 close to f64 */
    gf_tensor *o32 = check_mm(ctx, a32, b32, 1e-6), *o64 = gf_matmul(a, b);
    cr_assert_eq(gf_dtype_of(o32), GF_F32);
    double want[24];
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(o64, want, 24));
    gf_test_expect_close(o32, want, 24, 1e-5, 1e-5);
    /* i64 x i64 -> i64, exact */
    gf_tensor *ia = gf_tensor_i64(ctx, 2, SH(2, 3), (int64_t[]){1, -2, 3, 4, 5, -6});
    gf_tensor *ib = gf_tensor_i64(ctx, 2, SH(3, 2), (int64_t[]){7, 8, 9, 10, -11, 12});
    gf_tensor *io = GF_T(ctx, gf_matmul(ia, ib));
    cr_assert_eq(gf_dtype_of(io), GF_I64);
    gf_test_expect_close(io, (double[]){-44, 24, 139, 10}, 4, 0, 0);
    /* i64 beyond 2^53 stays exact (no float detour) */
    gf_tensor *big = gf_tensor_i64(ctx, 1, SH(2), (int64_t[]){(int64_t)1 << 40, 3});
    gf_tensor *one = gf_tensor_i64(ctx, 1, SH(2), (int64_t[]){(int64_t)1 << 20, 1});
    gf_tensor *d = GF_T(ctx, gf_matmul(big, one));
    GF_OK_OR_FAIL(ctx, gf_realize(d));
    cr_assert_eq(*(const int64_t *)gf__ptr(d), ((int64_t)1 << 60) + 3);
    /* batched, broadcast, transposed i64 against the reference */
    gf_tensor *ja = gf_to_dtype(gf_mul_scalar(rnd(GF_F64, 3, SH(3, 4, 5)), 50), GF_I64);
    gf_tensor *jb = gf_to_dtype(gf_mul_scalar(rnd(GF_F64, 3, SH(1, 2, 5)), 50), GF_I64);
    check_mm(ctx, ja, gf_transpose(jb, -1, -2), 0);
    /* i64 x f32 -> f32 */
    cr_assert_eq(gf_dtype_of(check_mm(ctx, ia, gf_to_dtype(ib, GF_F32), 1e-6)), GF_F32);
}

Test(matmul, linear_regression_shapes) {
    gf_tensor *x = gf_tensor_f32(ctx, 2, SH(3, 2), (float[]){1, 2, 3, 4, 5, 6});
    gf_tensor *w = gf_requires_grad(gf_tensor_f32(ctx, 2, SH(2, 1), (float[]){0.5f, -1}), true);
    gf_tensor *b = gf_requires_grad(gf_tensor_f32(ctx, 1, SH(1), (float[]){0.25f}), true);
    gf_tensor *xw = GF_T(ctx, gf_matmul(x, w));
    gf_test_expect_shape(xw, 2, SH(3, 1));
    gf_tensor *pred = GF_T(ctx, gf_add(xw, b));
    gf_test_expect_shape(pred, 2, SH(3, 1));
    cr_assert_eq(gf_dtype_of(pred), GF_F32);
    gf_test_expect_close(pred, (double[]){-1.25, -2.25, -3.25}, 3, 0, 0);
    /* d sum(pred) / dw = column sums of x */
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(pred)));
    gf_test_expect_shape(gf_grad(w), 2, SH(2, 1));
    gf_test_expect_close(gf_grad(w), (double[]){9, 12}, 2, 0, 0);
    gf_test_expect_close(gf_grad(b), (double[]){3}, 1, 0, 0);
}

/* ------------------------------------------------------------ gradients */

/* How a gradcheck case feeds its leaves to gf_matmul. */
typedef struct {
    int ta, tb;   /* transpose the leaf's last two dims (it is stored transposed) */
    int sa;       /* take every other row of a's second-to-last dim */
} mm_case;

static gf_tensor *mm_fn(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)n;
    const mm_case *k = user;
    gf_tensor *a = in[0], *b = in[1];
    if (k && k->ta) a = gf_transpose(a, -1, -2);
    if (k && k->tb) b = gf_transpose(b, -1, -2);
    if (k && k->sa) a = gf_slice(a, -2, 0, gf_shape(a)[gf_ndim(a) - 2], 2);
    return gf_matmul(a, b);
}

static void gradcheck_mm(int na, const int64_t *sa, int nb, const int64_t *sb, mm_case *k) {
    gf_tensor *in[2] = {gf_requires_grad(rnd(GF_F64, na, sa), true),
                        gf_requires_grad(rnd(GF_F64, nb, sb), true)};
    gf_status s = gf_gradcheck(ctx, mm_fn, 2, in, k, 1e-6, 1e-6, 1e-4);
    cr_assert_eq(s, GF_OK, "gradcheck %s x %s: %s", GF__SHAPE(in[0]), GF__SHAPE(in[1]),
                 gf_ctx_error(ctx) ? gf_ctx_error(ctx) : "?");
}
#define GRADCHECK(A, B, K) gradcheck_mm(ND A, SH A, ND B, SH B, K)

Test(matmul, gradcheck_shapes) {
    GRADCHECK((3, 4), (4, 2), NULL);
    GRADCHECK((5), (5), NULL);
    GRADCHECK((4), (4, 3), NULL);
    GRADCHECK((4), (2, 4, 3), NULL);
    GRADCHECK((3, 4), (4), NULL);
    GRADCHECK((2, 3, 4), (4), NULL);
    GRADCHECK((1, 1), (1, 1), NULL);
}

Test(matmul, gradcheck_batched) {
    GRADCHECK((2, 3, 4), (2, 4, 5), NULL);
    GRADCHECK((2, 1, 3, 4), (5, 4, 2), NULL); /* both sides broadcast */
    GRADCHECK((2, 3, 4), (4, 5), NULL);       /* linear layer: b a plain matrix */
    GRADCHECK((3, 4), (2, 4, 5), NULL);
    GRADCHECK((1, 3, 4), (3, 4, 2), NULL);
    GRADCHECK((2, 2, 3, 4), (2, 1, 4, 3), NULL);
}

Test(matmul, gradcheck_views) {
    mm_case t = {.ta = 1, .tb = 1}, ta = {.ta = 1}, sl = {.sa = 1}, all = {1, 1, 1};
    GRADCHECK((4, 3), (2, 4), &t);
    GRADCHECK((2, 4, 3), (4, 2), &ta);
    GRADCHECK((5, 4), (4, 3), &sl);
    GRADCHECK((2, 4, 5), (1, 3, 4), &all); /* [2,3,4] x [1,4,3] after the views */
    mm_case tb = {.tb = 1};
    GRADCHECK((3, 4), (5, 4), &tb);    /* Linear: x W^T, grad of W as (G^T x)^T */
    GRADCHECK((2, 3, 4), (5, 4), &tb); /* batched x against W^T */
    GRADCHECK((3, 1), (5, 1), &tb);    /* K = 1: W^T is also contiguous */
}

/* Linear's weight gradient, computed as (G^T x)^T, against naive sums:
 * dW[n][k] = sum_m G[m][n] x[m][k]. */
Test(matmul, transposed_weight_grad) {
    gf_tensor *x = rnd(GF_F64, 2, SH(6, 4));
    gf_tensor *w = gf_requires_grad(rnd(GF_F64, 2, SH(3, 4)), true);
    gf_tensor *gy = rnd(GF_F64, 2, SH(6, 3));
    gf_tensor *y = gf_matmul(x, gf_transpose(w, 0, 1));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(y, gy))));
    gf_tensor *gw = gf_grad(w);
    gf_test_expect_shape(gw, 2, SH(3, 4));
    const double *px = gf_data_f64(x), *pg = gf_data_f64(gy);
    double want[12];
    for (int n = 0; n < 3; n++)
        for (int k = 0; k < 4; k++) {
            double acc = 0;
            for (int m = 0; m < 6; m++) acc += pg[m * 3 + n] * px[m * 4 + k];
            want[n * 4 + k] = acc;
        }
    gf_test_expect_close(gw, want, 12, 1e-12, 1e-12);
}

/* Backward of a K = 0 product: zero-size gradients of the inputs' shapes,
 * and zeros for the other input where M, N > 0 but K = 0. */
Test(matmul, zero_size_backward) {
    gf_tensor *a = gf_requires_grad(rnd(GF_F64, 2, SH(3, 0)), true);
    gf_tensor *b = gf_requires_grad(rnd(GF_F64, 2, SH(0, 4)), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_matmul(a, b))));
    gf_test_expect_shape(gf_grad(a), 2, SH(3, 0));
    gf_test_expect_shape(gf_grad(b), 2, SH(0, 4));
    gf_tensor *c = gf_requires_grad(rnd(GF_F64, 2, SH(0, 3)), true);
    gf_tensor *d = gf_requires_grad(rnd(GF_F64, 2, SH(3, 2)), true);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_matmul(c, d))));
    gf_test_expect_shape(gf_grad(d), 2, SH(3, 2));
    gf_test_expect_close(gf_grad(d), (double[6]){0}, 6, 0, 0);
}

/* Second order: h(a, b) = sum(v * d/da sum((a @ b)^2)). Its gradient by
 * backward through the create_graph gradient is compared with central
 * differences of h, where h itself uses a first-order gradient. */
static double h_eval(int na, const int64_t *sa, const double *a, int nb, const int64_t *sb,
                     const double *b, gf_tensor *v, gf_tensor **ga_out, gf_tensor **gb_out) {
    gf_tensor *A = gf_requires_grad(gf_tensor_f64(ctx, na, sa, a), true);
    gf_tensor *B = gf_requires_grad(gf_tensor_f64(ctx, nb, sb, b), true);
    gf_tensor *y = gf_matmul(A, B);
    gf_tensor *g[1] = {NULL};
    gf_backward_opts o = {.create_graph = ga_out != NULL, .retain_graph = ga_out != NULL};
    GF_OK_OR_FAIL(ctx, gf_grad_of(gf_sum(gf_mul(y, y)), 1, (gf_tensor *[]){A}, g, &o));
    gf_tensor *h = GF_T(ctx, gf_sum(gf_mul(g[0], v)));
    if (ga_out) {
        gf_tensor *gg[2] = {NULL, NULL};
        GF_OK_OR_FAIL(ctx, gf_grad_of(h, 2, (gf_tensor *[]){A, B}, gg, NULL));
        *ga_out = gg[0], *gb_out = gg[1];
    }
    return gf_item(h);
}

static void second_order(int na, const int64_t *sa, int nb, const int64_t *sb) {
    gf_scope_begin(ctx);
    int64_t an = 1, bn = 1;
    for (int i = 0; i < na; i++) an *= sa[i];
    for (int i = 0; i < nb; i++) bn *= sb[i];
    double *a = malloc(sizeof(double) * (size_t)an), *b = malloc(sizeof(double) * (size_t)bn);
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(rnd(GF_F64, na, sa), a, an));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(rnd(GF_F64, nb, sb), b, bn));
    gf_tensor *v = rnd(GF_F64, na, sa);
    gf_tensor *ga, *gb;
    h_eval(na, sa, a, nb, sb, b, v, &ga, &gb);
    double *an_a = malloc(sizeof(double) * (size_t)an), *an_b = malloc(sizeof(double) * (size_t)bn);
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(GF_T(ctx, ga), an_a, an));
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(GF_T(ctx, gb), an_b, bn));
    const double eps = 1e-6;
    for (int which = 0; which < 2; which++) {
        double *x = which ? b : a, *ana = which ? an_b : an_a;
        int64_t nx = which ? bn : an;
        for (int64_t e = 0; e < nx; e++) {
            double orig = x[e], f[2];
            for (int side = 0; side < 2; side++) {
                x[e] = orig + (side ? -eps : eps);
                gf_scope_begin(ctx);
                f[side] = h_eval(na, sa, a, nb, sb, b, v, NULL, NULL);
                gf_scope_end(ctx);
            }
            x[e] = orig;
            double num = (f[0] - f[1]) / (2 * eps);
            cr_assert(fabs(num - ana[e]) <= 1e-6 + 1e-4 * fabs(num),
                      "second order, input %d element %lld: analytic %.10g numeric %.10g", which,
                      (long long)e, ana[e], num);
        }
    }
    free(a), free(b), free(an_a), free(an_b);
    gf_scope_end(ctx);
}

Test(matmul, second_order) {
    second_order(2, SH(3, 4), 2, SH(4, 2));
    second_order(4, SH(2, 1, 3, 4), 3, SH(2, 4, 2));
    second_order(1, SH(4), 3, SH(2, 4, 3));
    second_order(3, SH(2, 3, 4), 2, SH(4, 2));
}

/* --------------------------------------------------------------- errors */

Test(matmul, errors) {
    gf_tensor *a = rnd(GF_F64, 2, SH(3, 2)), *b = rnd(GF_F64, 2, SH(3, 1));
    cr_assert_null(gf_matmul(a, b));
    gf_test_expect_error(ctx, "gf_matmul");
    gf_test_expect_error(ctx, "inner dimensions differ: [3,2] x [3,1]");
    gf_ctx_clear_error(ctx);

    cr_assert_null(gf_matmul(rnd(GF_F64, 1, SH(3)), rnd(GF_F64, 1, SH(4))));
    gf_test_expect_error(ctx, "inner dimensions differ: [3] x [4]");
    gf_ctx_clear_error(ctx);

    cr_assert_null(gf_matmul(rnd(GF_F64, 3, SH(2, 3, 4)), rnd(GF_F64, 3, SH(3, 4, 5))));
    gf_test_expect_error(ctx, "gf_matmul");
    gf_test_expect_error(ctx, "[2,3,4] x [3,4,5]");
    gf_test_expect_error(ctx, "batch");
    gf_ctx_clear_error(ctx);

    cr_assert_null(gf_matmul(gf_scalar(ctx, GF_F64, 2), rnd(GF_F64, 1, SH(3))));
    gf_test_expect_error(ctx, "gf_matmul");
    gf_test_expect_error(ctx, "[] x [3]");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_matmul(rnd(GF_F64, 2, SH(2, 3)), gf_scalar(ctx, GF_F64, 2)));
    gf_test_expect_error(ctx, "gf_matmul");
    gf_ctx_clear_error(ctx);

    /* NULL in, NULL out, and no crash */
    cr_assert_null(gf_matmul(NULL, a));
    cr_assert_null(gf_matmul(a, NULL));
    cr_assert_null(gf_matmul(NULL, NULL));
    gf_ctx_clear_error(ctx);
    /* a tensor in error chains through */
    cr_assert_null(gf_matmul(gf_matmul(a, b), a));
    gf_test_expect_error(ctx, "inner dimensions differ");
}

/* ---------------------------------------------------------- determinism */

/* Forward and both gradients of sum(tanh-free) products, as raw bytes. */
static void run_bits(gf_ctx *c, bool eager, double *out, int64_t nout) {
    gf_ctx_set_eager(c, eager);
    gf_manual_seed(c, 99);
    gf_tensor *a = gf_requires_grad(gf_randn(c, GF_F64, 4, SH(2, 1, 37, 41)), true);
    gf_tensor *b = gf_requires_grad(gf_randn(c, GF_F64, 3, SH(3, 41, 29)), true);
    gf_tensor *w = gf_requires_grad(gf_randn(c, GF_F32, 2, SH(29, 300)), true);
    gf_tensor *x = gf_requires_grad(gf_randn(c, GF_F32, 2, SH(300, 200)), true);
    gf_tensor *y = gf_matmul(a, b);                       /* [2,3,37,29] */
    gf_tensor *z = gf_matmul(gf_to_dtype(y, GF_F32), w);  /* [2,3,37,300] */
    gf_tensor *u = gf_matmul(z, x);                       /* [2,3,37,200] */
    gf_tensor *s = gf_sum(gf_mul(u, u));
    cr_assert_eq(gf_backward(s), GF_OK, "%s", gf_ctx_error(c) ? gf_ctx_error(c) : "?");
    int64_t k = 0;
    gf_tensor *parts[] = {u, gf_grad(a), gf_grad(b), gf_grad(w), gf_grad(x)};
    for (int i = 0; i < 5; i++) {
        int64_t m = gf_numel(parts[i]);
        cr_assert(k + m <= nout);
        cr_assert_eq(gf_copy_to_f64(parts[i], out + k, m), GF_OK);
        k += m;
    }
    cr_assert_eq(k, nout);
}
#define NBITS (2 * 3 * 37 * 200 + 2 * 37 * 41 + 3 * 41 * 29 + 29 * 300 + 300 * 200)

Test(matmul, eager_vs_lazy_bitwise) {
    double *x = malloc(sizeof(double) * NBITS), *y = malloc(sizeof(double) * NBITS);
    gf_ctx *c1 = gf_ctx_create(NULL), *c2 = gf_ctx_create(NULL);
    run_bits(c1, false, x, NBITS);
    run_bits(c2, true, y, NBITS);
    cr_assert(memcmp(x, y, sizeof(double) * NBITS) == 0, "eager and lazy results differ");
    gf_ctx_destroy(c1);
    gf_ctx_destroy(c2);
    free(x), free(y);
}

Test(matmul, thread_count_bitwise) {
    double *x = malloc(sizeof(double) * NBITS), *y = malloc(sizeof(double) * NBITS);
    gf_engine *e1 = gf_engine_create(&(gf_engine_opts){.num_threads = 1, .deterministic = true});
    gf_engine *e4 = gf_engine_create(&(gf_engine_opts){.num_threads = 4, .deterministic = true});
    cr_assert(e1 && e4);
    gf_ctx *c1 = gf_ctx_create(e1), *c4 = gf_ctx_create(e4);
    run_bits(c1, false, x, NBITS);
    run_bits(c4, false, y, NBITS);
    cr_assert(memcmp(x, y, sizeof(double) * NBITS) == 0, "1 and 4 threads differ");
    gf_ctx_destroy(c1);
    gf_ctx_destroy(c4);
    gf_engine_destroy(e1);
    gf_engine_destroy(e4);
    free(x), free(y);
}
