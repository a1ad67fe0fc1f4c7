/*
 * fuzz_ops.c - fuzz target: the input bytes are a small program over the
 * public API (gradflow.h and the layers of gradflow/nn.h). Sixteen tensor
 * slots in two ctxs on one engine; each instruction creates tensors of any
 * dtype and shape (bad ones included: negative, huge, too many dims), runs
 * an op on slots (any of them may be empty, i.e. NULL) with arguments that
 * may be wrong, writes in place, runs backward, opens and ends scopes,
 * toggles no_grad and eager mode, or reads data back.
 *
 * Checked after every call (common.c): it failed (NULL or a negative
 * status) exactly when its ctx holds an error, the error has a message, and
 * after gf_ctx_clear_error the ctx still computes. After the program every
 * scope is ended and every slot released: no tensor may be left in either
 * ctx. The sanitizers check the rest (memory errors, undefined behaviour,
 * leaks).
 *
 * What the program may not do, so that a finding is a bug and not a known
 * limit of the driver:
 *  - shapes and size arguments stay within GF_FUZZ_MAX_NUMEL (fuzz.h);
 *  - a tensor holds at most SMALL elements, or at least HUGE (then nothing
 *    can allocate it and every op that would compute on it must fail to):
 *    ops that would compute over a huge input for a small output are not
 *    called (they would only be slow);
 *  - i64 values stay below I64_LIM and floats are never cast to i64: the
 *    i64 kernels do not wrap yet and float -> i64 is not checked yet (issue
 *    16, findings C and D, fixed elsewhere).
 */
#include "fuzz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradflow/nn.h"

#define SLOTS 16
#define SMALL (INT64_C(1) << 12)
#define HUGE (INT64_C(1) << 39)
#define I64_LIM 0x1p52
/* Raise with GF_FUZZ_MAX_NUMEL once float -> i64 conversion is checked. */
#define GF_FUZZ_FLOAT_TO_I64 0

typedef struct {
    gf_tensor *t; /* NULL: empty */
    int c;        /* which ctx */
    int depth;    /* the scope depth its handle lives in */
    double bound; /* i64: the largest |value| it may hold */
} slot;

/* GF_FUZZ_TRACE=1 prints each call and its outcome (to read a failing
 * input with the driver). */
static bool tracing;
#define TRACE(...) (tracing ? (void)fprintf(stderr, __VA_ARGS__) : (void)0)

/* Milestones a program reached (for the seed search, gf_fuzz_seeds). */
enum { M_BACKWARD, M_CREATE_GRAPH, M_GRAD_OF, M_STEP, M_INPLACE, M_GRADCHECK, M_EAGER,
       M_MATMUL, M_SHARE, M_MODULE, M_COUNT };
static unsigned reached;

typedef struct {
    gf_fuzz_in in;
    gf_ctx *c[2];
    int depth[2];
    slot s[SLOTS];
    double floor; /* the largest |value| written in place into any i64 tensor */
    bool cycle;   /* a create_graph backward made .grad hold its own graph */
} prog;

static const double vals[] = {0,    1,     -1,     0.5,    -2.5,      3,        1e-8, -1e-300,
                              1e300, -1e300, NAN,  INFINITY, -INFINITY, 0x1p63, 65504, 7};
static const double ivals[] = {0, 1, -1, 2, 3, -7, 100, 0x1p31, -0x1p40, 0x1p52};
static const int64_t sizes[] = {0,  1,    2,  3,    -1,   -2, 5, -5, 17, INT64_C(1) << 39,
                                INT64_C(1) << 40, -(INT64_C(1) << 40), (INT64_C(1) << 40) - 1,
                                4096, 4097, INT64_C(1) << 20};

#define PICK(p, table) ((table)[gf_fuzz_u8(&(p)->in) % (sizeof(table) / sizeof *(table))])

static uint8_t u8(prog *p) { return gf_fuzz_u8(&p->in); }
static bool flag(prog *p) { return u8(p) & 1; }
static int small_int(prog *p, int lo, int hi) { return lo + u8(p) % (hi - lo + 1); }

/* A dtype: mostly valid, sometimes not a gf_dtype at all. */
static gf_dtype pick_dtype(prog *p) {
    uint8_t b = u8(p);
    return b < 240 ? (gf_dtype)(b % 3) : (gf_dtype)(b % 2 ? -1 : 3 + b % 5);
}

/* ----------------------------------------------------------------- sizes */

static int64_t pick_dim(prog *p) {
    static const int64_t neg[] = {-1, -2, INT64_MIN, -(INT64_C(1) << 40)};
    static const int64_t huge[] = {INT64_C(1) << 39, INT64_C(1) << 40, (INT64_C(1) << 40) - 1,
                                   (INT64_C(1) << 39) + 3, INT64_C(1) << 20};
    uint8_t b = u8(p);
    if (b < 160) return b % 5;
    if (b < 200) return 1;
    if (b < 215) return 5 + b % 4;
    if (b < 230) return neg[b % 4];
    return huge[b % 5];
}

/* Product of the positive entries (-1 counts as 1), saturated. */
static unsigned __int128 pos_product(int ndim, const int64_t *shape) {
    const unsigned __int128 cap = (unsigned __int128)1 << 100;
    unsigned __int128 n = 1;
    for (int i = 0; i < ndim && i < GF_MAX_DIMS + 2; i++)
        if (shape[i] > 0) n = n > cap / (unsigned __int128)shape[i] ? cap : n * (unsigned __int128)shape[i];
    return n;
}

static bool has_zero(int ndim, const int64_t *shape) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return true;
    return false;
}

/* The element count shape describes (0 with a zero dim), or -1 with a
 * negative dim. */
static int64_t numel_of_shape(int ndim, const int64_t *shape) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return -1;
    return has_zero(ndim, shape) ? 0 : (int64_t)pos_product(ndim, shape);
}

/* Whether a result of n elements may exist: computed (small) or never
 * allocatable (huge). */
static bool allowed(int64_t n) { return n <= SMALL || n >= HUGE; }

/* Shrinks a shape until it keeps the limits: its positive dims multiply to
 * at most GF_FUZZ_MAX_NUMEL, and its size is small or huge. */
static void fit_shape(int ndim, int64_t *shape) {
    int nd = ndim < 0 ? 0 : ndim > GF_MAX_DIMS + 2 ? GF_MAX_DIMS + 2 : ndim;
    while (pos_product(nd, shape) > (unsigned __int128)GF_FUZZ_MAX_NUMEL) {
        int big = 0;
        for (int i = 1; i < nd; i++)
            if (shape[i] > shape[big]) big = i;
        shape[big] = 1;
    }
    int64_t n = numel_of_shape(nd, shape);
    if (n > 0 && !allowed(n))
        for (int i = 0; i < nd; i++)
            if (shape[i] > 2) shape[i] = 2;
}

/* A shape of *ndim dims (sometimes an invalid count) into shape[10]. */
static void pick_shape(prog *p, int *ndim, int64_t *shape) {
    static const int nds[] = {0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 8, 1, 2, 9, -1};
    *ndim = nds[u8(p) % 16];
    for (int i = 0; i < GF_MAX_DIMS + 2; i++) shape[i] = i < *ndim ? pick_dim(p) : 1;
    fit_shape(*ndim, shape);
}

/* --------------------------------------------------------------- slots */

static gf_tensor *T(slot *s) { return s ? s->t : NULL; }

/* A slot: usually a filled one, sometimes NULL (an op's NULL input). */
static slot *pick(prog *p) {
    uint8_t b = u8(p);
    int k = 0;
    for (int i = 0; i < SLOTS; i++) k += p->s[i].t != NULL;
    if (b >= 240 || !k) return NULL;
    k = b % k;
    for (int i = 0; i < SLOTS; i++)
        if (p->s[i].t && k-- == 0) return &p->s[i];
    return NULL;
}

static gf_ctx *pick_ctx(prog *p) { return p->c[u8(p) % 8 == 0]; }
static int ctx_index(prog *p, gf_ctx *c) { return c == p->c[1]; }

static int64_t N(slot *s) { return s && s->t ? gf_numel(s->t) : 0; }
/* Small: few elements, and no huge dim hidden behind a zero one (ops that
 * combine dims could otherwise make shapes past the limit). */
static bool small(slot *s) {
    return !s || !s->t || pos_product(gf_ndim(s->t), gf_shape(s->t)) <= (unsigned __int128)SMALL;
}
static bool is_i64(slot *s) { return s && s->t && gf_dtype_of(s->t) == GF_I64; }
static bool is_float(slot *s) { return s && s->t && gf_dtype_of(s->t) != GF_I64; }

/* The largest |value| an i64 slot may hold (0 for others). */
static double B(prog *p, slot *s) { return is_i64(s) ? fmax(s->bound, p->floor) : 0; }

/* Stores t (a new handle) in a slot, or releases it when it does not fit
 * the limits. A full table releases a slot's tensor to make room. */
static void put(prog *p, gf_tensor *t, double bound) {
    if (!t) return;
    int64_t n = gf_numel(t);
    if (!allowed(n) || (gf_dtype_of(t) == GF_I64 && !(bound <= I64_LIM))) {
        gf_release(t);
        return;
    }
    int k = 0;
    while (k < SLOTS && p->s[k].t) k++;
    if (k == SLOTS) {
        k = u8(p) % SLOTS;
        gf_release(p->s[k].t);
    }
    int c = ctx_index(p, gf_ctx_of(t));
    p->s[k] = (slot){.t = t, .c = c, .depth = p->depth[c], .bound = bound};
}

/* The ctx of the first non-NULL of n tensors, or NULL. */
static gf_ctx *ctx_of(int n, gf_tensor *const *ts) {
    for (int i = 0; i < n; i++)
        if (ts[i]) return gf_ctx_of(ts[i]);
    return NULL;
}

/* After an op: checks the error convention on the inputs' ctx and keeps the
 * result. A NULL input (the result of an earlier failed call) gives NULL,
 * passed on without a new error (tests/test_linear_act.c checks that). */
static void done(prog *p, const char *what, gf_tensor *y, int n, gf_tensor *const *in,
                 double bound) {
    gf_ctx *c = ctx_of(n, in);
    bool any_null = false;
    for (int i = 0; i < n; i++) any_null |= !in[i];
    if (any_null) GF_FUZZ_CHECK(!y, "%s returned a tensor for a NULL input", what);
    if (!c) return;
    char desc[160];
    int at = snprintf(desc, sizeof desc, "%s(", what);
    for (int i = 0; i < n && at < (int)sizeof desc - 40; i++)
        at += snprintf(desc + at, sizeof desc - (size_t)at, "%s%s", i ? ", " : "",
                       in[i] ? gf_dtype_name(gf_dtype_of(in[i])) : "NULL");
    snprintf(desc + at, sizeof desc - (size_t)at, ")");
    TRACE("ctx %d%s: %s -> %s%s\n", ctx_index(p, c), gf_ctx_eager(c) ? " (eager)" : "", desc,
          y ? "" : "NULL ", gf_ctx_error(c) ? gf_ctx_error(c) : "");
    gf_fuzz_settle(c, any_null ? gf_ctx_status(c) != GF_OK : !y, desc);
    if (y && gf_ctx_eager(c)) reached |= 1u << M_EAGER;
    put(p, y, bound);
}

static void status_done(gf_ctx *c, const char *what, gf_status s) {
    TRACE("%s -> %d %s\n", what, (int)s, gf_ctx_error(c) ? gf_ctx_error(c) : "");
    GF_FUZZ_CHECK(s <= 0, "%s returned status %d", what, (int)s);
    gf_fuzz_settle(c, s < 0, what);
}

/* ------------------------------------------------------------- creation */

/* n values of dtype dt (NULL when n is not small: the creation must fail
 * before reading them; the few bytes given are then all it may read). */
static void *make_data(prog *p, gf_dtype dt, int64_t n, double *bound) {
    static int64_t few[4];
    *bound = 0;
    if (n < 0 || n > SMALL) return few;
    void *d = malloc((size_t)(n ? n : 1) * 8);
    GF_FUZZ_CHECK(d, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        uint8_t b = u8(p);
        if (dt == GF_F32) ((float *)d)[i] = (float)vals[b % 16];
        else if (dt == GF_F64) ((double *)d)[i] = vals[b % 16];
        else {
            ((int64_t *)d)[i] = (int64_t)(b % 101) - 50;
            *bound = fmax(*bound, fabs((double)(b % 101) - 50));
        }
    }
    return d;
}

static void op_create(prog *p) {
    gf_ctx *c = pick_ctx(p);
    int nd;
    int64_t sh[GF_MAX_DIMS + 2];
    pick_shape(p, &nd, sh);
    const int64_t *shape = u8(p) == 0 ? NULL : sh;
    gf_dtype dt = pick_dtype(p);
    int64_t n = numel_of_shape(nd < 0 ? 0 : nd, sh);
    gf_tensor *t = NULL;
    double bound = 0;
    const char *what = "creation";
    TRACE("create: ndim %d:", nd);
    for (int i = 0; i < nd && i < GF_MAX_DIMS + 2; i++) TRACE(" %lld", (long long)sh[i]);
    TRACE("\n");
    switch (u8(p) % 10) {
    case 0: case 1: {
        gf_dtype d = (gf_dtype)(u8(p) % 3);
        void *data = u8(p) == 0 ? NULL : make_data(p, d, n, &bound);
        what = d == GF_F32 ? "gf_tensor_f32" : d == GF_F64 ? "gf_tensor_f64" : "gf_tensor_i64";
        t = d == GF_F32 ? gf_tensor_f32(c, nd, shape, data)
            : d == GF_F64 ? gf_tensor_f64(c, nd, shape, data)
                          : gf_tensor_i64(c, nd, shape, data);
        if (data && n >= 0 && n <= SMALL) free(data);
        break;
    }
    case 2: t = gf_zeros(c, dt, nd, shape), what = "gf_zeros"; break;
    case 3: t = gf_ones(c, dt, nd, shape), what = "gf_ones", bound = 1; break;
    case 4: {
        double v = dt == GF_F32 || dt == GF_F64 ? PICK(p, vals) : PICK(p, ivals);
        t = gf_full(c, dt, nd, shape, v), what = "gf_full", bound = fabs(v);
        break;
    }
    case 5: t = gf_rand(c, dt, nd, shape), what = "gf_rand"; break;
    case 6: t = gf_randn(c, dt, nd, shape), what = "gf_randn"; break;
    case 7: {
        double v = dt == GF_F32 || dt == GF_F64 ? PICK(p, vals) : PICK(p, ivals);
        t = gf_scalar(c, dt, v), what = "gf_scalar", bound = fabs(v);
        break;
    }
    case 8: {
        int64_t k = PICK(p, sizes);
        if (!allowed(k)) return;
        t = gf_arange(c, dt, k), what = "gf_arange", bound = (double)k;
        break;
    }
    case 9: {
        slot *a = pick(p);
        bool ones = flag(p);
        t = ones ? gf_ones_like(T(a)) : gf_zeros_like(T(a));
        done(p, ones ? "gf_ones_like" : "gf_zeros_like", t, 1, (gf_tensor *[]){T(a)}, 1);
        return;
    }
    }
    TRACE("%s -> %s\n", what, t ? "ok" : gf_ctx_error(c));
    gf_fuzz_settle(c, !t, what);
    put(p, t, bound);
}

/* ------------------------------------------------------------ elementwise */

static void op_unary(prog *p) {
    static const char *const names[] = {"gf_neg",  "gf_exp",     "gf_log",      "gf_sqrt",
                                        "gf_abs",  "gf_relu",    "gf_sigmoid",  "gf_tanh",
                                        "gf_gelu", "gf_sign",    "gf_contiguous", "gf_clone",
                                        "gf_detach", "gf_to_dtype"};
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    int k = u8(p) % 14;
    double b = B(p, a);
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
    case 9: y = gf_sign(x), b = 1; break;
    case 10: y = gf_contiguous(x); break;
    case 11: y = gf_clone(x); break;
    case 12: y = gf_detach(x); break;
    case 13: {
        gf_dtype dt = pick_dtype(p);
        if (dt == GF_I64 && is_float(a) && !GF_FUZZ_FLOAT_TO_I64) return;
        y = gf_to_dtype(x, dt);
        break;
    }
    }
    done(p, names[k], y, 1, &x, b);
}

static void op_scalar(prog *p) {
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    double s = is_i64(a) ? PICK(p, ivals) : PICK(p, vals), b = B(p, a);
    const char *what;
    switch (u8(p) % 3) {
    case 0:
        what = "gf_add_scalar", b += fabs(s);
        if (is_i64(a) && !(b <= I64_LIM)) return;
        y = gf_add_scalar(x, s);
        break;
    case 1:
        what = "gf_mul_scalar", b *= fabs(s);
        if (is_i64(a) && !(b <= I64_LIM)) return;
        y = gf_mul_scalar(x, s);
        break;
    default:
        what = "gf_pow_scalar";
        s = (double)small_int(p, -3, 12) / (u8(p) % 4 ? 1 : 2);
        /* Square-and-multiply squares past the result: b^(2s) must fit. */
        if (is_i64(a) && b > 1 && !(pow(b, 2 * fabs(s) + 2) <= I64_LIM)) return;
        b = b > 1 ? pow(b, fabs(s)) : 1;
        y = gf_pow_scalar(x, s);
        break;
    }
    done(p, what, y, 1, &x, b);
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
 * within the size limit, and computing only on small data. */
static bool may_compute(int nd, const int64_t *sh, slot *a, slot *b) {
    if (pos_product(nd, sh) > (unsigned __int128)GF_FUZZ_MAX_NUMEL) return false;
    int64_t n = numel_of_shape(nd, sh);
    if (n >= HUGE) return true; /* its allocation fails first */
    return n <= SMALL && small(a) && small(b);
}

static void op_binary(prog *p) {
    static const char *const names[] = {"gf_add", "gf_sub", "gf_mul", "gf_div", "gf_pow"};
    slot *a = pick(p), *b = pick(p);
    int k = u8(p) % 5, nd;
    int64_t sh[GF_MAX_DIMS];
    if (T(a) && T(b) && bcast(T(a), T(b), &nd, sh) && !may_compute(nd, sh, a, b)) return;
    double ba = B(p, a), bb = B(p, b), bound = 0;
    if (is_i64(a) && is_i64(b)) {
        bound = k < 2 ? ba + bb : k == 2 ? ba * bb : k == 3 ? 0 : ba <= 1 ? 1 : pow(ba, bb);
        if (k == 4 && ba > 1 && !(pow(ba, 2 * bb + 2) <= I64_LIM)) return;
        if (!(bound <= I64_LIM)) return;
    }
    gf_tensor *x = T(a), *y = T(b), *r = NULL;
    switch (k) {
    case 0: r = gf_add(x, y); break;
    case 1: r = gf_sub(x, y); break;
    case 2: r = gf_mul(x, y); break;
    case 3: r = gf_div(x, y); break;
    case 4: r = gf_pow(x, y); break;
    }
    done(p, names[k], r, 2, (gf_tensor *[]){x, y}, bound);
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

static void op_matmul(prog *p) {
    slot *a = pick(p), *b = pick(p);
    int nd;
    int64_t sh[GF_MAX_DIMS + 2], k = 0;
    if (T(a) && T(b) && matmul_shape(T(a), T(b), &nd, sh, &k) && !may_compute(nd, sh, a, b))
        return;
    double bound = (double)k * B(p, a) * B(p, b);
    if (is_i64(a) && is_i64(b) && !(bound <= I64_LIM)) return;
    gf_tensor *r = gf_matmul(T(a), T(b));
    if (r) reached |= 1u << M_MATMUL;
    done(p, "gf_matmul", r, 2, (gf_tensor *[]){T(a), T(b)}, bound);
}

/* ------------------------------------------------------------ reductions */

static void op_reduce(prog *p) {
    static const char *const names[] = {"gf_sum", "gf_mean", "gf_sum_dim", "gf_mean_dim",
                                        "gf_max_dim", "gf_argmax"};
    slot *a = pick(p);
    if (!small(a)) return; /* a small result of a huge input: only slow */
    gf_tensor *x = T(a), *y = NULL;
    int k = u8(p) % 6, dim = small_int(p, -9, 9);
    bool keep = flag(p);
    double b = (double)N(a) * B(p, a);
    switch (k) {
    case 0: y = gf_sum(x); break;
    case 1: y = gf_mean(x); break;
    case 2: y = gf_sum_dim(x, dim, keep); break;
    case 3: y = gf_mean_dim(x, dim, keep); break;
    case 4: y = gf_max_dim(x, dim, keep), b = B(p, a); break;
    case 5: y = gf_argmax(x, dim), b = (double)SMALL; break;
    }
    done(p, names[k], y, 1, &x, b);
}

/* ----------------------------------------------------------------- shape */

static void op_shape(prog *p) {
    slot *a = pick(p);
    gf_tensor *x = T(a), *y = NULL;
    double b = B(p, a);
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
        if (k == 1 && x && nd >= gf_ndim(x) && nd <= GF_MAX_DIMS) {
            /* expand keeps the input's size where the shape says -1. */
            int64_t out[GF_MAX_DIMS];
            for (int i = 0; i < nd; i++) {
                int ai = i - (nd - gf_ndim(x));
                out[i] = ai >= 0 && sh[i] == -1 ? gf_shape(x)[ai] : sh[i];
            }
            if (pos_product(nd, out) > (unsigned __int128)GF_FUZZ_MAX_NUMEL) {
                free(arr);
                return;
            }
        }
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
    case 4: { /* slice: its new stride and offset must stay within the limit */
        int dim = small_int(p, -4, 4);
        int64_t start = PICK(p, sizes), end = PICK(p, sizes), step = PICK(p, sizes);
        if (x && gf_ndim(x)) {
            int d = dim < 0 ? dim + gf_ndim(x) : dim;
            if (d >= 0 && d < gf_ndim(x) && step > 0) {
                __int128 st = (__int128)gf_strides(x)[d] * step;
                __int128 off = (__int128)gf_strides(x)[d] * gf_shape(x)[d];
                if (st > GF_FUZZ_MAX_NUMEL || st < -GF_FUZZ_MAX_NUMEL || off > GF_FUZZ_MAX_NUMEL)
                    return;
            }
        }
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
            b = fmax(b, B(p, ss[i]));
            if (ts[i] && gf_ndim(ts[i])) {
                int d = ((dim % gf_ndim(ts[i])) + gf_ndim(ts[i])) % gf_ndim(ts[i]);
                total += (unsigned __int128)gf_shape(ts[i])[d];
                int64_t len = gf_shape(ts[i])[d];
                other = pos_product(gf_ndim(ts[i]), gf_shape(ts[i])) /
                        (unsigned __int128)(len > 0 ? len : 1);
            }
        }
        unsigned __int128 out = total * other;
        if (out > (unsigned __int128)GF_FUZZ_MAX_NUMEL) return;
        if (any_huge ? out < (unsigned __int128)HUGE : out > (unsigned __int128)SMALL) return;
        bool no_array = u8(p) == 0;
        y = gf_cat(n, no_array ? NULL : ts, dim);
        if (n > 0 && !no_array) done(p, "gf_cat", y, n, ts, b);
        else GF_FUZZ_CHECK(!y, "gf_cat of nothing returned a tensor");
        return;
    }
    }
    done(p, what, y, 1, &x, b);
}

/* ------------------------------------------------------------ nn functions */

static void op_nn(prog *p) {
    slot *a = pick(p), *b = pick(p);
    gf_tensor *x = T(a), *y = T(b), *r = NULL;
    int k = u8(p) % 7, dim = small_int(p, -4, 4);
    double bound = B(p, a);
    if (k != 0 && k != 1 && (!small(a) || !small(b))) return;
    const char *what = "nn function";
    switch (k) {
    case 0: r = gf_softmax(x, dim), what = "gf_softmax"; break;
    case 1: r = gf_log_softmax(x, dim), what = "gf_log_softmax"; break;
    case 2: r = gf_mse_loss(x, y), what = "gf_mse_loss"; break;
    case 3: r = gf_cross_entropy(x, y), what = "gf_cross_entropy"; break;
    case 4: r = gf_nll_loss(x, y), what = "gf_nll_loss"; break;
    case 5: { /* one_hot: labels [..] x classes */
        int64_t classes = PICK(p, sizes);
        if (!small(a)) return;
        /* Strides multiply every dim above 1, the labels' zero dims aside. */
        unsigned __int128 out = (x ? pos_product(gf_ndim(x), gf_shape(x)) : 1) *
                                (unsigned __int128)(classes > 1 ? classes : 1);
        if (out > (unsigned __int128)GF_FUZZ_MAX_NUMEL) return;
        if (classes > 0 && !allowed(N(a) * classes)) return;
        r = gf_one_hot(x, classes, pick_dtype(p));
        done(p, "gf_one_hot", r, 1, &x, 1);
        return;
    }
    case 6: {
        slot *c = pick(p);
        if (!small(c)) return;
        gf_activation act = (gf_activation)(u8(p) % 7);
        gf_tensor *bias = u8(p) < 64 ? NULL : T(c);
        /* On i64: x w^T + b, K products per element. */
        int64_t k = x && gf_ndim(x) ? gf_shape(x)[gf_ndim(x) - 1] : 0;
        bound = (double)k * B(p, a) * B(p, b) + (bias ? B(p, c) : 0);
        if ((is_i64(a) || is_i64(b)) && !(bound <= I64_LIM)) return;
        r = gf_linear_act(x, y, bias, act), what = "gf_linear_act";
        break; /* b is optional: not one of the inputs that must be there */
    }
    }
    gf_tensor *in[2] = {x, y};
    done(p, what, r, k < 2 ? 1 : 2, in, bound);
}

/* -------------------------------------------------------------- in place */

/* i64 destinations: only i64 sources and bounded results (no float -> i64,
 * no signed overflow). */
static bool i64_write_ok(prog *p, slot *dst, slot *src, double result) {
    if (!is_i64(dst)) return true;
    if (src && is_float(src) && !GF_FUZZ_FLOAT_TO_I64) return false;
    if (!(result <= I64_LIM)) return false;
    p->floor = fmax(p->floor, result);
    return true;
}

static void op_inplace(prog *p) {
    slot *a = pick(p), *b = pick(p);
    if (!small(a) || !small(b)) return;
    gf_tensor *x = T(a), *y = T(b);
    gf_tensor *others[4] = {y, NULL, NULL, NULL}; /* the sources, for a NULL destination */
    double s = is_i64(a) ? PICK(p, ivals) : PICK(p, vals);
    gf_status st;
    const char *what;
    switch (u8(p) % 7) {
    case 0:
        if (!i64_write_ok(p, a, b, B(p, a) + B(p, b))) return;
        st = gf_sub_(x, y), what = "gf_sub_";
        break;
    case 1:
        if (!i64_write_ok(p, a, b, B(p, a) + fabs(s) * B(p, b))) return;
        st = gf_axpy_(x, s, y), what = "gf_axpy_";
        break;
    case 2:
        if (!i64_write_ok(p, a, NULL, fmax(B(p, a), fabs(s)))) return;
        st = gf_fill_(x, s), what = "gf_fill_";
        break;
    case 3:
        if (!i64_write_ok(p, a, b, fmax(B(p, a), B(p, b)))) return;
        st = gf_copy_(x, y), what = "gf_copy_";
        break;
    case 4:
        if (!i64_write_ok(p, a, NULL, B(p, a) * fabs(s))) return;
        st = gf_mul_scalar_(x, s), what = "gf_mul_scalar_";
        break;
    case 5: {
        slot *m = pick(p), *v = pick(p);
        if (!small(m) || !small(v) || is_i64(a) || is_i64(m) || is_i64(v)) return;
        static const int64_t steps[] = {-1, 0, 1, 2, 1000};
        others[1] = T(m), others[2] = T(v);
        st = gf_adam_step_(x, y, T(m), T(v), PICK(p, vals), PICK(p, vals), PICK(p, vals),
                           PICK(p, vals), PICK(p, vals), flag(p), PICK(p, steps));
        what = "gf_adam_step_";
        break;
    }
    default: {
        slot *m = pick(p);
        if (!small(m) || is_i64(a) || is_i64(m)) return;
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

static void op_autograd(prog *p) {
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
        if (g) done(p, "gf_clone of a .grad", gf_clone(g), 1, &g, 0);
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
            put(p, grads[i], 0);
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

/* ------------------------------------------------- scopes, modes, sharing */

/* Ends the innermost scope of ctx i: its handles are gone. */
static void end_scope(prog *p, int i) {
    gf_scope_end(p->c[i]);
    if (p->depth[i] == 0) {
        gf_fuzz_settle(p->c[i], true, "gf_scope_end outside a scope");
        return;
    }
    gf_fuzz_settle(p->c[i], false, "gf_scope_end");
    for (int k = 0; k < SLOTS; k++)
        if (p->s[k].t && p->s[k].c == i && p->s[k].depth >= p->depth[i]) p->s[k].t = NULL;
    p->depth[i]--;
}

static void op_lifetime(prog *p) {
    int i = u8(p) % 8 == 0;
    gf_ctx *c = p->c[i];
    slot *a = pick(p);
    int k = u8(p) % 10;
    static const char *const names[] = {"scope_begin", "scope_end", "keep", "persist",
                                        "release", "no_grad_begin", "no_grad_end",
                                        "set_eager", "manual_seed", "share"};
    TRACE("ctx %d: %s (slot %d)\n", i, names[k], a ? (int)(a - p->s) : -1);
    switch (k) {
    case 0:
        if (p->depth[i] < 6) gf_scope_begin(c), p->depth[i]++;
        break;
    case 1: end_scope(p, i); break;
    case 2: /* to the scope outside the current one */
        if (a) {
            int outer = p->depth[a->c] > 0 ? p->depth[a->c] - 1 : 0;
            GF_FUZZ_CHECK(gf_keep(a->t) == a->t, "gf_keep returned another handle");
            if (a->depth > outer) a->depth = outer;
        }
        break;
    case 3:
        if (a) GF_FUZZ_CHECK(gf_persist(a->t) == a->t, "gf_persist returned another handle");
        if (a) a->depth = 0;
        break;
    case 4:
        if (a) gf_release(a->t), a->t = NULL;
        break;
    case 5: gf_no_grad_begin(c); break;
    case 6:
        gf_no_grad_end(c);
        gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_no_grad_end");
        break;
    case 7: gf_ctx_set_eager(c, flag(p)); break;
    case 8: gf_manual_seed(c, u8(p)); break;
    default: { /* a handle of a's tensor in the other ctx */
        if (!a) return;
        gf_ctx *to = p->c[!a->c];
        gf_tensor *t = gf_share(to, a->t);
        gf_fuzz_settle(to, !t, "gf_share");
        if (t) reached |= 1u << M_SHARE;
        /* Computing the tensor may fail in its own ctx too. */
        gf_fuzz_settle(p->c[a->c], t ? false : gf_ctx_status(p->c[a->c]) != GF_OK, "gf_share");
        put(p, t, a->bound);
        break;
    }
    }
}

/* ------------------------------------------------------------ reading */

static void op_read(prog *p) {
    slot *a = pick(p);
    if (!a) return;
    gf_tensor *x = a->t;
    gf_ctx *c = gf_ctx_of(x);
    int nd = gf_ndim(x);
    GF_FUZZ_CHECK(nd >= 0 && nd <= GF_MAX_DIMS, "gf_ndim %d", nd);
    GF_FUZZ_CHECK(gf_numel(x) == numel_of_shape(nd, gf_shape(x)),
                  "gf_numel %lld does not match the shape", (long long)gf_numel(x));
    GF_FUZZ_CHECK((int)gf_dtype_of(x) >= 0 && (int)gf_dtype_of(x) <= 2, "dtype %d",
                  (int)gf_dtype_of(x));
    GF_FUZZ_CHECK(gf_ctx_of(x) == p->c[a->c], "gf_ctx_of is not the slot's ctx");
    (void)gf_is_contiguous(x), (void)gf_is_leaf(x), (void)gf_strides(x);
    int64_t n = gf_numel(x);
    switch (u8(p) % 5) {
    case 0: status_done(c, "gf_realize", gf_realize(x)); break;
    case 1: status_done(c, "gf_realize_all", gf_realize_all(c)); break;
    case 2: {
        gf_dtype dt = (gf_dtype)(u8(p) % 3);
        const void *d = dt == GF_F32 ? (const void *)gf_data_f32(x)
                        : dt == GF_F64 ? (const void *)gf_data_f64(x)
                                       : (const void *)gf_data_i64(x);
        gf_fuzz_settle(c, !d, "gf_data_*");
        GF_FUZZ_CHECK(!d || dt == gf_dtype_of(x), "gf_data_* of the wrong dtype succeeded");
        /* Every element is readable (the sanitizer checks the bounds). */
        volatile uint8_t sink = 0;
        for (int64_t i = 0; d && i < n * (dt == GF_F32 ? 4 : 8); i++) sink ^= ((const uint8_t *)d)[i];
        (void)sink;
        break;
    }
    case 3: {
        static const int64_t extra[] = {0, -1, 3, -1000};
        int64_t want = n + PICK(p, extra);
        if (want > SMALL + 3) want = SMALL + 3;
        if (want < 0) want = 0;
        bool f64 = flag(p), null = u8(p) == 0;
        void *buf = malloc((size_t)(want ? want : 1) * (f64 ? 8 : 4));
        GF_FUZZ_CHECK(buf, "out of memory");
        gf_status s = f64 ? gf_copy_to_f64(x, null ? NULL : buf, want)
                          : gf_copy_to_f32(x, null ? NULL : buf, want);
        status_done(c, "gf_copy_to_*", s);
        GF_FUZZ_CHECK(s < 0 || want >= n, "gf_copy_to_* of %lld elements into %lld succeeded",
                      (long long)n, (long long)want);
        free(buf);
        break;
    }
    default: {
        double v = gf_item(x);
        gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_item");
        (void)v;
        break;
    }
    }
}

/* ---------------------------------------------------------------- modules */

/* A layer or two on a's last dim, an optimizer, one step. */
static void op_module(prog *p) {
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
        if (ws[k] > (unsigned __int128)GF_FUZZ_MAX_NUMEL || !allowed((int64_t)ws[k])) return;
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

/* ---------------------------------------------------------------- program */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* A 2-thread engine hands every node to its pool, however small. */
    setenv("GF_MIN_PARALLEL_WORK", "0", 1);
    tracing = getenv("GF_FUZZ_TRACE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    prog p = {.in = {data, size, 0}};
    uint8_t cfg = u8(&p);
    gf_engine_opts eo = {.num_threads = cfg % 8 == 7 ? 2 : 1, .deterministic = cfg & 8,
                         .intraop = cfg & 16 ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL};
    gf_engine *eng = gf_engine_create(&eo);
    GF_FUZZ_CHECK(eng, "gf_engine_create failed");
    p.c[0] = gf_ctx_create(eng);
    p.c[1] = gf_ctx_create(eng);
    GF_FUZZ_CHECK(p.c[0] && p.c[1], "gf_ctx_create failed");
    gf_ctx_set_eager(p.c[0], cfg & 32);
    for (int steps = 0; steps < 64 && gf_fuzz_more(&p.in); steps++) {
        switch (u8(&p) % 14) {
        case 0: case 1: op_create(&p); break;
        case 2: op_unary(&p); break;
        case 3: op_scalar(&p); break;
        case 4: op_binary(&p); break;
        case 5: op_matmul(&p); break;
        case 6: op_reduce(&p); break;
        case 7: op_shape(&p); break;
        case 8: op_nn(&p); break;
        case 9: op_inplace(&p); break;
        case 10: op_autograd(&p); break;
        case 11: op_lifetime(&p); break;
        case 12: op_read(&p); break;
        default: op_module(&p); break;
        }
    }
    /* Nothing may be left once every scope has ended and every handle is
     * released (a create_graph .grad holds a cycle through its leaf, as in
     * PyTorch: freed with the ctx). */
    for (int i = 0; i < 2; i++)
        while (p.depth[i]) end_scope(&p, i);
    for (int k = 0; k < SLOTS; k++) gf_release(p.s[k].t);
    for (int i = 0; i < 2 && tracing; i++)
        for (gf_tensor *t = NULL; !t;) {
            TRACE("ctx %d: %lld tensors left\n", i, (long long)gf_ctx_live_tensors(p.c[i]));
            t = (gf_tensor *)1;
        }
    for (int i = 0; i < 2 && !p.cycle; i++)
        GF_FUZZ_CHECK(gf_ctx_live_tensors(p.c[i]) == 0, "%lld tensors left in ctx %d",
                      (long long)gf_ctx_live_tensors(p.c[i]), i);
    gf_ctx_destroy(p.c[1]);
    gf_ctx_destroy(p.c[0]);
    gf_engine_destroy(eng);
    return 0;
}

/* The seeds are programs found by a small search at start-up rather than
 * bytes written by hand, so that they keep matching the interpreter: random
 * programs from a fixed generator, each kept if it reaches a milestone (a
 * successful backward, optimizer step, ...) that no kept one reached. */
void gf_fuzz_seeds(gf_fuzz_emit emit, void *arg) {
    uint8_t buf[512];
    uint64_t r = 0x5eed;
    unsigned have = 0;
    for (int k = 0; k < 4000 && have != (1u << M_COUNT) - 1; k++) {
        size_t n = 64 + k % 448;
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (uint8_t)(r >> 56);
        }
        buf[0] &= ~7u; /* one thread: the same milestones every run */
        reached = 0;
        LLVMFuzzerTestOneInput(buf, n);
        if (reached & ~have) {
            have |= reached;
            emit(arg, buf, n);
        }
    }
}
