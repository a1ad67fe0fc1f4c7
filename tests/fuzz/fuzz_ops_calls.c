/*
 * fuzz_ops_calls.c - the instructions of the fuzz_ops target that call ops:
 * creation, elementwise, matmul, reductions, shape ops, nn functions,
 * in-place updates, autograd, modules with their optimizers, and the tools
 * (index_select, randperm, printing, allclose). Each picks
 * its arguments from the program's bytes and slots, skips a call that would
 * break the target's limits (fuzz_ops.c), makes the call and hands the
 * result to done() or status_done().
 */
#include "fuzz_ops.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- creation */

/* n values of dtype dt, malloc'd; when n is not small, a static 32 bytes
 * instead (the creation must fail before it reads them: a read past them is
 * a finding). */
static void *make_data(prog *p, gf_dtype dt, int64_t n) {
    static const int64_t extremes[] = {INT64_MAX, INT64_MIN, INT64_MIN + 1, INT64_C(1) << 32};
    static int64_t few[4];
    if (n < 0 || n > SMALL_NUMEL) return few;
    void *d = malloc((size_t)(n ? n : 1) * 8);
    GF_FUZZ_CHECK(d, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        uint8_t b = u8(p);
        if (dt == GF_F32) ((float *)d)[i] = (float)vals[b % 16];
        else if (dt == GF_F64) ((double *)d)[i] = vals[b % 16];
        else ((int64_t *)d)[i] = b >= 252 ? extremes[b % 4] : (int64_t)(b % 101) - 50;
    }
    return d;
}

void op_create(prog *p) {
    gf_ctx *c = pick_ctx(p);
    int nd;
    int64_t sh[GF_MAX_DIMS + 2];
    pick_shape(p, &nd, sh);
    const int64_t *shape = u8(p) == 0 ? NULL : sh;
    gf_dtype dt = pick_dtype(p);
    int64_t n = numel_of_shape(nd < 0 ? 0 : nd, sh);
    gf_tensor *t = NULL;
    const char *what = "creation";
    TRACE("create: ndim %d:", nd);
    for (int i = 0; i < nd && i < GF_MAX_DIMS + 2; i++) TRACE(" %lld", (long long)sh[i]);
    TRACE("\n");
    switch (u8(p) % 10) {
    case 0: case 1: {
        gf_dtype d = (gf_dtype)(u8(p) % 3);
        void *data = u8(p) == 0 ? NULL : make_data(p, d, n);
        what = d == GF_F32 ? "gf_tensor_f32" : d == GF_F64 ? "gf_tensor_f64" : "gf_tensor_i64";
        t = d == GF_F32 ? gf_tensor_f32(c, nd, shape, data)
            : d == GF_F64 ? gf_tensor_f64(c, nd, shape, data)
                          : gf_tensor_i64(c, nd, shape, data);
        if (data && n >= 0 && n <= SMALL_NUMEL) free(data);
        break;
    }
    case 2: t = gf_zeros(c, dt, nd, shape), what = "gf_zeros"; break;
    case 3: t = gf_ones(c, dt, nd, shape), what = "gf_ones"; break;
    case 4: {
        double v = dt == GF_I64 && flag(p) ? PICK(p, ivals) : PICK(p, vals);
        t = gf_full(c, dt, nd, shape, v), what = "gf_full";
        break;
    }
    case 5: t = gf_rand(c, dt, nd, shape), what = "gf_rand"; break;
    case 6: t = gf_randn(c, dt, nd, shape), what = "gf_randn"; break;
    case 7: {
        double v = dt == GF_I64 && flag(p) ? PICK(p, ivals) : PICK(p, vals);
        t = gf_scalar(c, dt, v), what = "gf_scalar";
        break;
    }
    case 8: {
        int64_t k = PICK(p, sizes);
        if (k > 0 && !allowed((unsigned __int128)k)) return;
        t = gf_arange(c, dt, k), what = "gf_arange";
        break;
    }
    case 9: {
        slot *a = pick(p);
        bool ones = flag(p);
        t = ones ? gf_ones_like(T(a)) : gf_zeros_like(T(a));
        done(p, ones ? "gf_ones_like" : "gf_zeros_like", t, 1, (gf_tensor *[]){T(a)});
        return;
    }
    }
    TRACE("%s -> %s\n", what, t ? "ok" : gf_ctx_error(c));
    gf_fuzz_settle(c, !t, what);
    put(p, t);
}

/* ------------------------------------------------------------ elementwise */

void op_unary(prog *p) {
    static const char *const names[] = {"gf_neg",  "gf_exp",     "gf_log",      "gf_sqrt",
                                        "gf_abs",  "gf_relu",    "gf_sigmoid",  "gf_tanh",
                                        "gf_gelu", "gf_sign",    "gf_contiguous", "gf_clone",
                                        "gf_detach", "gf_to_dtype"};
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    int k = u8(p) % 14;
    switch (k) {
    case 0: y = gf_neg(x); break;
    case 1: y = gf_exp(x); break;
    case 2: y = gf_log(x); break;
    case 3: y = gf_sqrt(x); break;
    case 4: y = gf_abs(x); break;
    case 5: y = gf_relu(x); break;
    case 6: y = gf_sigmoid(x); break;
    case 7: y = gf_tanh(x); break;
    case 8: y = gf_gelu(x); break;
    case 9: y = gf_sign(x); break;
    case 10: y = gf_contiguous(x); break;
    case 11: y = gf_clone(x); break;
    case 12: y = gf_detach(x); break;
    case 13: {
        y = gf_to_dtype(x, pick_dtype(p));
        break;
    }
    }
    done(p, names[k], y, 1, &x);
}

/* A scalar for an op on a: for i64 mostly an integral one. */
static double pick_scalar(prog *p, slot *a) {
    return is_i64(a) && u8(p) % 4 ? PICK(p, ivals) : PICK(p, vals);
}

void op_scalar(prog *p) {
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    double s = pick_scalar(p, a);
    const char *what;
    switch (u8(p) % 3) {
    case 0: y = gf_add_scalar(x, s), what = "gf_add_scalar"; break;
    case 1: y = gf_mul_scalar(x, s), what = "gf_mul_scalar"; break;
    default:
        what = "gf_pow_scalar";
        if (u8(p) % 4) s = (double)small_int(p, -3, 64) / (u8(p) % 4 ? 1 : 2);
        y = gf_pow_scalar(x, s);
        break;
    }
    done(p, what, y, 1, &x);
}

/* The broadcast shape of a and b into out; false if they do not broadcast. */
static bool bcast(gf_tensor *a, gf_tensor *b, int *nd, int64_t *out) {
    int na = gf_ndim(a), nb = gf_ndim(b);
    *nd = na > nb ? na : nb;
    for (int d = 0; d < *nd; d++) {
        int64_t x = d - (*nd - na) >= 0 ? gf_shape(a)[d - (*nd - na)] : 1;
        int64_t y = d - (*nd - nb) >= 0 ? gf_shape(b)[d - (*nd - nb)] : 1;
        if (x != y && x != 1 && y != 1) return false;
        out[d] = x == 1 ? y : x;
    }
    return true;
}

/* Whether an op whose result has the shape (nd, sh) may run on inputs a, b:
 * a huge result, or a small one computed only from small inputs. */
static bool may_compute(int nd, const int64_t *sh, slot *a, slot *b) {
    int64_t n = numel_of_shape(nd, sh);
    if (n >= HUGE_NUMEL) return true; /* its allocation fails first */
    return n <= SMALL_NUMEL && small(a) && small(b);
}

void op_binary(prog *p) {
    static const char *const names[] = {"gf_add", "gf_sub", "gf_mul", "gf_div", "gf_pow"};
    slot *a = pick(p), *b = pick(p);
    int k = u8(p) % 5, nd;
    int64_t sh[GF_MAX_DIMS];
    if (T(a) && T(b) && bcast(T(a), T(b), &nd, sh) && !may_compute(nd, sh, a, b)) return;
    gf_tensor *x = T(a), *y = T(b), *r = NULL;
    switch (k) {
    case 0: r = gf_add(x, y); break;
    case 1: r = gf_sub(x, y); break;
    case 2: r = gf_mul(x, y); break;
    case 3: r = gf_div(x, y); break;
    case 4: r = gf_pow(x, y); break;
    }
    done(p, names[k], r, 2, (gf_tensor *[]){x, y});
}

/* torch.matmul's result shape; false where the shapes do not fit. */
static bool matmul_shape(gf_tensor *a, gf_tensor *b, int *nd, int64_t *sh, int64_t *k) {
    int na = gf_ndim(a), nb = gf_ndim(b);
    if (!na || !nb) return false;
    const int64_t *x = gf_shape(a), *y = gf_shape(b);
    *k = x[na - 1];
    if (*k != (nb == 1 ? y[0] : y[nb - 2])) return false;
    int ba = na >= 2 ? na - 2 : 0, bb = nb >= 2 ? nb - 2 : 0;
    *nd = ba > bb ? ba : bb;
    for (int d = 0; d < *nd; d++) {
        int64_t u = d - (*nd - ba) >= 0 ? x[d - (*nd - ba)] : 1;
        int64_t v = d - (*nd - bb) >= 0 ? y[d - (*nd - bb)] : 1;
        if (u != v && u != 1 && v != 1) return false;
        sh[d] = u == 1 ? v : u;
    }
    if (na >= 2) sh[(*nd)++] = x[na - 2];
    if (nb >= 2) sh[(*nd)++] = y[nb - 1];
    return true;
}

void op_matmul(prog *p) {
    slot *a = pick(p), *b = pick(p);
    int nd;
    int64_t sh[GF_MAX_DIMS + 2], k = 0;
    if (T(a) && T(b) && matmul_shape(T(a), T(b), &nd, sh, &k) && !may_compute(nd, sh, a, b))
        return;
    gf_tensor *r = gf_matmul(T(a), T(b));
    if (r) reached |= 1u << M_MATMUL;
    done(p, "gf_matmul", r, 2, (gf_tensor *[]){T(a), T(b)});
}

/* ------------------------------------------------------------ reductions */

void op_reduce(prog *p) {
    static const char *const names[] = {"gf_sum", "gf_mean", "gf_sum_dim", "gf_mean_dim",
                                        "gf_max_dim", "gf_argmax"};
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    int k = u8(p) % 6, dim = small_int(p, -9, 9);
    bool keep = flag(p);
    if (!small(a)) { /* only for a huge result: x without dim (or with it as 1) */
        int nd = gf_ndim(x), d = dim < 0 ? dim + nd : dim;
        int64_t sh[GF_MAX_DIMS];
        memcpy(sh, gf_shape(x), sizeof(int64_t) * (size_t)nd);
        if (k < 2 || d < 0 || d >= nd) return;
        sh[d] = 1;
        if (!may_compute(nd, sh, a, NULL)) return;
    }
    switch (k) {
    case 0: y = gf_sum(x); break;
    case 1: y = gf_mean(x); break;
    case 2: y = gf_sum_dim(x, dim, keep); break;
    case 3: y = gf_mean_dim(x, dim, keep); break;
    case 4: y = gf_max_dim(x, dim, keep); break;
    case 5: y = gf_argmax(x, dim); break;
    }
    done(p, names[k], y, 1, &x);
}

/* ----------------------------------------------------------------- shape */

void op_shape(prog *p) {
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    int nd, k = u8(p) % 8;
    int64_t sh[GF_MAX_DIMS + 2];
    const char *what = "shape op";
    switch (k) {
    case 0: case 1: { /* reshape / expand: a shape with -1s in it */
        pick_shape(p, &nd, sh);
        for (int i = 0; i < nd && i < GF_MAX_DIMS; i++)
            if (u8(p) < 40) sh[i] = -1;
        /* The array is exactly nd long, so a read past it is caught. */
        int64_t *arr = malloc(sizeof(int64_t) * (size_t)(nd > 0 ? nd : 1));
        GF_FUZZ_CHECK(arr, "out of memory");
        memcpy(arr, sh, sizeof(int64_t) * (size_t)(nd > 0 ? nd : 0));
        if (k == 0) y = gf_reshape(x, nd, nd ? arr : NULL), what = "gf_reshape";
        else y = gf_expand(x, nd, nd ? arr : NULL), what = "gf_expand";
        free(arr);
        break;
    }
    case 2: y = gf_transpose(x, small_int(p, -4, 4), small_int(p, -4, 4)), what = "gf_transpose";
        break;
    case 3: {
        int n = x ? gf_ndim(x) : 0;
        int *dims = malloc(sizeof(int) * (size_t)(n ? n : 1));
        GF_FUZZ_CHECK(dims, "out of memory");
        for (int i = 0; i < n; i++) dims[i] = u8(p) < 200 ? (i + small_int(p, 0, 3)) % n : -1 - i;
        y = gf_permute(x, u8(p) == 0 ? NULL : dims), what = "gf_permute";
        free(dims);
        break;
    }
    case 4: {
        int dim = small_int(p, -4, 4);
        int64_t start = PICK(p, sizes), end = PICK(p, sizes), step = PICK(p, sizes);
        y = gf_slice(x, dim, start, end, step), what = "gf_slice";
        break;
    }
    case 5: y = gf_unsqueeze(x, small_int(p, -10, 10)), what = "gf_unsqueeze"; break;
    case 6: y = gf_squeeze(x, small_int(p, -10, 10)), what = "gf_squeeze"; break;
    case 7: { /* cat of up to four slots */
        int n = small_int(p, 0, 4), dim = small_int(p, -4, 4);
        gf_tensor *ts[4] = {0};
        slot *ss[4] = {0};
        unsigned __int128 total = 0, other = 1;
        bool any_huge = false;
        for (int i = 0; i < n; i++) {
            ss[i] = pick(p);
            ts[i] = T(ss[i]);
            any_huge |= !small(ss[i]);
            if (ts[i] && gf_ndim(ts[i])) {
                int d = ((dim % gf_ndim(ts[i])) + gf_ndim(ts[i])) % gf_ndim(ts[i]);
                total += (unsigned __int128)gf_shape(ts[i])[d];
                int64_t len = gf_shape(ts[i])[d];
                other = pos_product(gf_ndim(ts[i]), gf_shape(ts[i])) /
                        (unsigned __int128)(len > 0 ? len : 1);
            }
        }
        unsigned __int128 out = sat_mul(total, other);
        if (any_huge ? out < (unsigned __int128)HUGE_NUMEL
                     : out > (unsigned __int128)SMALL_NUMEL)
            return;
        bool no_array = u8(p) == 0;
        y = gf_cat(n, no_array ? NULL : ts, dim);
        if (n > 0 && !no_array) done(p, "gf_cat", y, n, ts);
        else GF_FUZZ_CHECK(!y, "gf_cat of nothing returned a tensor");
        return;
    }
    }
    done(p, what, y, 1, &x);
}

/* ------------------------------------------------------------ nn functions */

void op_nn(prog *p) {
    slot *a = pick(p), *b = pick(p);
    gf_tensor *x = T(a), *y = T(b), *r = NULL;
    int k = u8(p) % 7, dim = small_int(p, -4, 4);
    if (k >= 2 && k < 5 && (!small(a) || !small(b))) return;
    const char *what = "nn function";
    switch (k) {
    case 0: r = gf_softmax(x, dim), what = "gf_softmax"; break;
    case 1: r = gf_log_softmax(x, dim), what = "gf_log_softmax"; break;
    case 2: r = gf_mse_loss(x, y), what = "gf_mse_loss"; break;
    case 3: r = gf_cross_entropy(x, y), what = "gf_cross_entropy"; break;
    case 4: r = gf_nll_loss(x, y), what = "gf_nll_loss"; break;
    case 5: { /* one_hot: labels [..] x classes */
        int64_t classes = PICK(p, sizes), sh[GF_MAX_DIMS + 1];
        int nd = x ? gf_ndim(x) : 0;
        if (x) memcpy(sh, gf_shape(x), sizeof(int64_t) * (size_t)nd);
        sh[nd++] = classes > 0 ? classes : 0;
        if (!may_compute(nd, sh, a, NULL)) return;
        r = gf_one_hot(x, classes, pick_dtype(p));
        done(p, "gf_one_hot", r, 1, &x);
        return;
    }
    case 6: {
        slot *c = pick(p);
        /* x [.., in] and weight [out, in] give [.., out]. */
        int64_t sh[GF_MAX_DIMS];
        int nd = x ? gf_ndim(x) : 0;
        bool fits = nd >= 1 && y && gf_ndim(y) == 2;
        if (fits) {
            memcpy(sh, gf_shape(x), sizeof(int64_t) * (size_t)nd);
            sh[nd - 1] = gf_shape(y)[0];
        }
        if (!small(c) || (fits ? !may_compute(nd, sh, a, b) : !small(a) || !small(b))) return;
        gf_activation act = (gf_activation)(u8(p) % 7);
        gf_tensor *bias = u8(p) < 64 ? NULL : T(c);
        r = gf_linear_act(x, y, bias, act), what = "gf_linear_act";
        break; /* b is optional: not one of the inputs that must be there */
    }
    }
    gf_tensor *in[2] = {x, y};
    done(p, what, r, k < 2 ? 1 : 2, in);
}

/* -------------------------------------------------------------- in place */

void op_inplace(prog *p) {
    slot *a = pick(p), *b = pick(p);
    if (!small(a) || !small(b)) return;
    gf_tensor *x = T(a), *y = T(b);
    gf_tensor *others[4] = {y, NULL, NULL, NULL}; /* the sources, for a NULL destination */
    double s = pick_scalar(p, a);
    gf_status st;
    const char *what;
    switch (u8(p) % 7) {
    case 0: st = gf_sub_(x, y), what = "gf_sub_"; break;
    case 1: st = gf_axpy_(x, s, y), what = "gf_axpy_"; break;
    case 2: st = gf_fill_(x, s), what = "gf_fill_"; break;
    case 3: st = gf_copy_(x, y), what = "gf_copy_"; break;
    case 4: st = gf_mul_scalar_(x, s), what = "gf_mul_scalar_"; break;
    case 5: {
        slot *m = pick(p), *v = pick(p);
        if (!small(m) || !small(v)) return;
        static const int64_t steps[] = {-1, 0, 1, 2, 1000, INT64_MAX, INT64_MIN, 1};
        others[1] = T(m), others[2] = T(v);
        st = gf_adam_step_(x, y, T(m), T(v), PICK(p, vals), PICK(p, vals), PICK(p, vals),
                           PICK(p, vals), PICK(p, vals), flag(p), PICK(p, steps));
        what = "gf_adam_step_";
        break;
    }
    default: {
        slot *m = pick(p);
        if (!small(m)) return;
        others[1] = T(m);
        st = gf_sgd_step_(x, y, T(m), PICK(p, vals), PICK(p, vals), PICK(p, vals),
                          PICK(p, vals), flag(p), flag(p));
        what = "gf_sgd_step_";
        break;
    }
    }
    if (!x) {
        /* No destination: an error, recorded on a source's ctx if any. */
        GF_FUZZ_CHECK(st < 0, "%s on NULL returned %d", what, (int)st);
        gf_ctx *c = ctx_of(4, others);
        gf_fuzz_settle(c, c && gf_ctx_status(c) != GF_OK, what);
        return;
    }
    if (st == GF_OK) reached |= 1u << M_INPLACE;
    status_done(gf_ctx_of(x), what, st);
}

/* -------------------------------------------------------------- autograd */

static gf_tensor *grad_fn(gf_ctx *c, int n, gf_tensor *const *in, void *user) {
    (void)c, (void)user;
    gf_tensor *y = gf_tanh(in[0]);
    for (int i = 1; i < n; i++) y = gf_mul(y, gf_sum(in[i]));
    return y;
}

void op_autograd(prog *p) {
    slot *a = pick(p), *b = pick(p);
    if (!small(a) || !small(b)) return;
    gf_tensor *x = T(a);
    gf_ctx *c = x ? gf_ctx_of(x) : NULL;
    switch (u8(p) % 7) {
    case 0:
        gf_requires_grad(x, flag(p));
        gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_requires_grad");
        break;
    case 1: { /* a copy of .grad: the handle itself belongs to x */
        gf_tensor *g = gf_grad(x);
        gf_fuzz_settle(c, false, "gf_grad");
        if (g) done(p, "gf_clone of a .grad", gf_clone(g), 1, &g);
        break;
    }
    case 2:
        gf_zero_grad(x);
        gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_zero_grad");
        break;
    case 3: {
        gf_status s = gf_backward(x);
        if (s == GF_OK) reached |= 1u << M_BACKWARD;
        if (x) status_done(c, "gf_backward", s);
        else GF_FUZZ_CHECK(s < 0, "gf_backward(NULL) succeeded");
        break;
    }
    case 4: {
        gf_backward_opts o = {.grad_output = u8(p) < 128 ? T(b) : NULL,
                              .retain_graph = flag(p), .create_graph = flag(p)};
        gf_status s = gf_backward_ex(x, &o);
        if (s == GF_OK && o.create_graph) p->cycle = true, reached |= 1u << M_CREATE_GRAPH;
        if (x) status_done(c, "gf_backward_ex", s);
        else if (o.grad_output) status_done(gf_ctx_of(o.grad_output), "gf_backward_ex", s);
        break;
    }
    case 5: {
        int n = small_int(p, 0, 3);
        gf_tensor *in[3], *grads[3] = {0};
        for (int i = 0; i < n; i++) {
            slot *s = pick(p);
            in[i] = small(s) ? T(s) : NULL;
        }
        gf_backward_opts o = {.retain_graph = flag(p), .create_graph = flag(p)};
        gf_status s = gf_grad_of(x, n, in, grads, u8(p) < 64 ? NULL : &o);
        if (!x) break;
        status_done(c, "gf_grad_of", s);
        if (s == GF_OK) reached |= 1u << M_GRAD_OF;
        for (int i = 0; i < n && s == GF_OK; i++) {
            GF_FUZZ_CHECK(grads[i], "gf_grad_of succeeded without gradient %d", i);
            put(p, grads[i]);
        }
        break;
    }
    default: { /* gf_gradcheck of a fixed function on one or two tiny inputs */
        if (!x || N(a) > 16 || (b && N(b) > 16)) return;
        static const double eps[] = {1e-6, 0, -1, NAN, 1e-3};
        gf_tensor *in[2] = {x, T(b)};
        gf_status s = gf_gradcheck(c, grad_fn, in[1] ? 2 : 1, in, NULL, PICK(p, eps), 1e-5, 1e-3);
        status_done(c, "gf_gradcheck", s);
        if (s == GF_OK) reached |= 1u << M_GRADCHECK;
        break;
    }
    }
}

/* ---------------------------------------------------------------- modules */

/* A layer or two on a's last dim, an optimizer, one step. */
void op_module(prog *p) {
    slot *a = pick(p);
    if (!a || !small(a)) return;
    gf_tensor *x = a->t;
    gf_ctx *c = gf_ctx_of(x);
    int64_t in = gf_ndim(x) ? gf_shape(x)[gf_ndim(x) - 1] : 1;
    if (u8(p) < 32) in = PICK(p, sizes);
    int64_t out = PICK(p, sizes);
    /* Every weight the constructors below make: [out, in], [3, in], [out, 3]. */
    unsigned __int128 i = (unsigned __int128)(in > 0 ? in : 0), o = out > 0 ? out : 0;
    unsigned __int128 ws[3] = {i * o, 3 * i, 3 * o};
    for (int k = 0; k < 3; k++)
        if (!allowed(ws[k])) return;
    gf_dtype dt = pick_dtype(p);
    gf_module *m = NULL;
    switch (u8(p) % 4) {
    case 0: m = gf_linear(c, in, out, flag(p), dt); break;
    case 1: m = gf_mlp(c, 3, (int64_t[]){in, 3, out}, (gf_activation)(u8(p) % 6), dt); break;
    case 2: {
        static const double probs[] = {0, 0.5, 1, -0.5, NAN};
        bool null_child = u8(p) < 16;
        gf_module *ch[3] = {gf_linear(c, in, out, true, dt),
                            null_child ? NULL : gf_dropout(c, PICK(p, probs)),
                            gf_activation_layer(c, (gf_activation)(u8(p) % 6))};
        gf_fuzz_settle(c, !ch[0] || (!ch[1] && !null_child) || !ch[2],
                       "gf_linear/gf_dropout/gf_activation_layer");
        m = gf_sequential(c, 3, ch);
        break;
    }
    default: m = gf_sequential(c, 0, NULL); break;
    }
    gf_fuzz_settle(c, !m, "module constructor");
    if (!m) return;
    gf_module_train(m, flag(p));
    gf_scope_begin(c);
    gf_tensor *y = gf_module_forward(m, x);
    gf_fuzz_settle(c, !y, "gf_module_forward");
    if (y) reached |= 1u << M_MODULE;
    gf_optimizer *opt = NULL;
    if (y && gf_module_num_parameters(m) > 0) {
        opt = flag(p) ? gf_module_adam(m, u8(p) < 64 ? NULL : &(gf_adam_opts){
                                              .lr = 0.01, .beta1 = 0.9, .beta2 = 0.99,
                                              .eps = 1e-8, .decoupled = flag(p)})
                      : gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1, .momentum = u8(p) % 2 * 0.9});
        gf_fuzz_settle(c, !opt, "optimizer constructor");
        gf_tensor *loss = gf_sum(y);
        gf_fuzz_settle(c, !loss, "gf_sum");
        if (loss && opt && gf_get_requires_grad(loss)) {
            status_done(c, "gf_backward", gf_backward(loss));
            gf_status s = gf_optimizer_step(opt);
            if (s == GF_OK) reached |= 1u << M_STEP;
            status_done(c, "gf_optimizer_step", s);
            gf_optimizer_zero_grad(opt);
            gf_fuzz_settle(c, false, "gf_optimizer_zero_grad");
        }
    }
    gf_scope_end(c);
    gf_optimizer_free(opt);
    gf_module_free(m);
}

/* ----------------------------------------------------------------- tools */

/* A file that gf_fprint may write to (kept open for the process). */
static FILE *scratch_file(void) {
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    GF_FUZZ_CHECK(f, "cannot open /dev/null");
    return f;
}

/* index_select (with a slot or a fresh index of edge values), randperm of
 * any size, printing and allclose. */
void op_tools(prog *p) {
    slot *a = pick(p), *b = pick(p);
    gf_tensor *x = T(a), *y = T(b);
    switch (u8(p) % 4) {
    case 0: {
        static const int64_t at[] = {0, 1, -1, 2, INT64_MAX, INT64_MIN, 3, 4096};
        int dim = small_int(p, -3, 3), k = small_int(p, 0, 4);
        gf_tensor *idx = y, *fresh = NULL;
        if (flag(p) && x) {
            int64_t v[4] = {0}, len = k % 4; /* k == 4: a 0-dim index */
            for (int i = 0; i < 4; i++) v[i] = PICK(p, at);
            fresh = idx = gf_tensor_i64(gf_ctx_of(x), k == 4 ? 0 : 1, &len, v);
            gf_fuzz_settle(gf_ctx_of(x), !fresh, "index for gf_index_select");
        }
        if (x && idx) {
            int nd = gf_ndim(x), d = dim < 0 ? dim + nd : dim;
            int64_t sh[GF_MAX_DIMS];
            memcpy(sh, gf_shape(x), sizeof(int64_t) * (size_t)nd);
            if (d >= 0 && d < nd) sh[d] = gf_numel(idx);
            if (!may_compute(nd, sh, a, fresh ? NULL : b)) {
                gf_release(fresh);
                return;
            }
        }
        gf_tensor *r = gf_index_select(x, dim, idx);
        done(p, "gf_index_select", r, 2, (gf_tensor *[]){x, idx});
        gf_release(fresh);
        break;
    }
    case 1: {
        gf_ctx *c = pick_ctx(p);
        int64_t n = PICK(p, sizes);
        if (n > 0 && !allowed((unsigned __int128)n)) return;
        gf_tensor *t = gf_randperm(c, n);
        TRACE("gf_randperm(%lld) -> %s\n", (long long)n, t ? "ok" : gf_ctx_error(c));
        gf_fuzz_settle(c, !t, "gf_randperm");
        put(p, t);
        break;
    }
    case 2: { /* a huge view too: only edge items are shown */
        gf_status s = gf_fprint(u8(p) < 16 ? NULL : scratch_file(), x);
        if (x) status_done(gf_ctx_of(x), "gf_fprint", s);
        else GF_FUZZ_CHECK(s < 0, "gf_fprint of NULL succeeded");
        break;
    }
    default: {
        int nd;
        int64_t sh[GF_MAX_DIMS];
        if (!small(a) || !small(b) || (x && y && bcast(x, y, &nd, sh) &&
                                       !may_compute(nd, sh, a, b)))
            return;
        bool close = gf_allclose(x, y, PICK(p, vals), PICK(p, vals));
        gf_ctx *c = ctx_of(2, (gf_tensor *[]){x, y});
        TRACE("gf_allclose -> %d %s\n", close, c && gf_ctx_error(c) ? gf_ctx_error(c) : "");
        GF_FUZZ_CHECK(!close || (c && gf_ctx_status(c) == GF_OK),
                      "gf_allclose true with an error");
        gf_fuzz_settle(c, c && gf_ctx_status(c) != GF_OK, "gf_allclose");
        break;
    }
    }
}
