/*
 * test_engine.c - the parallel engine through the public API: random graphs
 * give bitwise-identical outputs and gradients for every thread count and in
 * eager mode; degenerate and huge graphs (empty, one node, a 100,000-node
 * chain, a 10,000-wide fan); many user threads on one engine; concurrent
 * backward into a shared parameter; independent big matmul branches.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#if defined(__SANITIZE_THREAD__)
/* Criterion's sandbox (BoxFort) maps a shared arena at base 0x200000000000 +
 * (rand_r() & 0x3fffff) << 24 and gives up after a few tries; under
 * ThreadSanitizer nearly all of that range is TSan's shadow or protected, so
 * the runner fails ("Could not initialize inheritable arena") or crashes.
 * This rand_r (it interposes on libc's for libcriterion) keeps the pick in
 * TSan's application range 0x558000000000..0x568000000000. Test harness only. */
int rand_r(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return (int)(0x358000u + ((*seed >> 8) & 0xffffu));
}
#endif

/* ThreadSanitizer builds run the big loops smaller (5-50x slower). */
#if defined(__SANITIZE_THREAD__)
#define GF_TEST_SLOW 1
#else
#define GF_TEST_SLOW 0
#endif

/* The engines of these tests hand every run to the pool, however small
 * (GF_MIN_PARALLEL_WORK=0): the graphs here are tiny, and what they test is
 * the parallel schedule, not the serial shortcut for tiny runs. */
static gf_engine *make_engine(int threads, bool deterministic) {
    setenv("GF_MIN_PARALLEL_WORK", "0", 1);
    gf_engine *e =
        gf_engine_create(&(gf_engine_opts){.num_threads = threads, .deterministic = deterministic});
    cr_assert_not_null(e, "gf_engine_create(%d threads)", threads);
    cr_assert_eq(gf_engine_num_threads(e), threads);
    return e;
}

/* ------------------------------------------------------------ the rng */

static uint64_t xs_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
static int xs_int(uint64_t *s, int n) { return (int)(xs_next(s) % (uint64_t)n); }
static double xs_real(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * (double)(xs_next(s) >> 11) * 0x1.0p-53;
}

/* ------------------------------------------------------ random graphs */
/*
 * A random program is generated while it runs: every decision comes from
 * the test's xorshift and depends only on shapes, so the same seed builds
 * the same program on any ctx. Every op keeps |values| <= e (the inputs of
 * mul and matmul's right operand go through tanh, sums are averaged, exp only
 * sees tanh's output), so nothing overflows and every bit is meaningful.
 */

#define G_MAXV 96
#define G_MAXLEAF 24

typedef struct {
    gf_ctx *ctx;
    gf_dtype dt;
    uint64_t rng;
    gf_tensor *v[G_MAXV];
    bool used[G_MAXV]; /* consumed by a later op (not a sink) */
    int nv;
    gf_tensor *leaf[G_MAXLEAF];
    int nleaf;
    char log[2048]; /* the op sequence, for failure messages */
    size_t loglen;
} gbuild;

static void glog(gbuild *g, const char *s) {
    size_t n = strlen(s);
    if (g->loglen + n + 2 >= sizeof g->log) return;
    memcpy(g->log + g->loglen, s, n);
    g->loglen += n;
    g->log[g->loglen++] = ' ';
    g->log[g->loglen] = 0;
}

static const int64_t G_DIMS[] = {1, 2, 3, 5, 8, 16};

static gf_tensor *gleaf(gbuild *g, int ndim, const int64_t *shape, bool rg) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) d[i] = xs_real(&g->rng, -2, 2);
    gf_tensor *t;
    if (g->dt == GF_F64) {
        t = gf_tensor_f64(g->ctx, ndim, shape, d);
    } else {
        float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
        for (int64_t i = 0; i < n; i++) f[i] = (float)d[i];
        t = gf_tensor_f32(g->ctx, ndim, shape, f);
        free(f);
    }
    free(d);
    cr_assert_not_null(t, "leaf: %s", gf_ctx_error(g->ctx));
    if (rg) gf_requires_grad(t, true);
    if (g->nleaf < G_MAXLEAF) g->leaf[g->nleaf++] = t;
    glog(g, rg ? "leaf*" : "leaf");
    return t;
}

static gf_tensor *gleaf_random(gbuild *g) {
    int ndim = xs_int(&g->rng, 4); /* 0..2, 2-D twice as likely */
    if (ndim == 3) ndim = 2;
    int64_t sh[2];
    for (int i = 0; i < ndim; i++) sh[i] = G_DIMS[xs_int(&g->rng, 6)];
    return gleaf(g, ndim, sh, xs_int(&g->rng, 3) != 0);
}

static void gpush(gbuild *g, gf_tensor *t, const char *what) {
    cr_assert_not_null(t, "%s failed: %s (program: %s)", what, gf_ctx_error(g->ctx), g->log);
    glog(g, what);
    int at = g->nv < G_MAXV ? g->nv++ : xs_int(&g->rng, G_MAXV);
    g->v[at] = t;
    g->used[at] = false;
}

static void guse(gbuild *g, const gf_tensor *t) {
    for (int i = 0; i < g->nv; i++)
        if (g->v[i] == t) g->used[i] = true;
}

static bool same_shape(const gf_tensor *a, const gf_tensor *b) {
    return gf_ndim(a) == gf_ndim(b) &&
           !memcmp(gf_shape(a), gf_shape(b), sizeof(int64_t) * (size_t)gf_ndim(a));
}

/* b broadcasts against a and the result has a's shape. */
static bool bcasts_into(const gf_tensor *b, const gf_tensor *a) {
    int na = gf_ndim(a), nb = gf_ndim(b);
    if (nb > na) return false;
    for (int i = 0; i < nb; i++) {
        int64_t x = gf_shape(a)[na - nb + i], y = gf_shape(b)[i];
        if (y != x && y != 1) return false;
    }
    return true;
}

typedef bool (*gpred)(const gf_tensor *cand, const gf_tensor *ref, int arg);

/* A value satisfying pred, searching from a random start; NULL if none. */
static gf_tensor *gfind(gbuild *g, gpred pred, const gf_tensor *ref, int arg) {
    if (!g->nv) return NULL;
    int start = xs_int(&g->rng, g->nv);
    for (int k = 0; k < g->nv; k++) {
        gf_tensor *c = g->v[(start + k) % g->nv];
        if (pred(c, ref, arg)) {
            guse(g, c);
            return c;
        }
    }
    return NULL;
}

static bool p_same(const gf_tensor *c, const gf_tensor *r, int arg) {
    (void)arg;
    return same_shape(c, r);
}
static bool p_bcast(const gf_tensor *c, const gf_tensor *r, int arg) {
    (void)arg;
    return !same_shape(c, r) && bcasts_into(c, r);
}
/* c can be the right operand of r @ c (r's last dim == c's contracting dim). */
static bool p_matmul_rhs(const gf_tensor *c, const gf_tensor *r, int arg) {
    (void)arg;
    if (gf_ndim(c) < 1 || gf_ndim(c) > 2) return false;
    int64_t k = gf_shape(r)[gf_ndim(r) - 1];
    return gf_shape(c)[0] == k;
}
/* c can be concatenated to r along dim arg (same shape elsewhere). */
static bool p_cat(const gf_tensor *c, const gf_tensor *r, int arg) {
    if (gf_ndim(c) != gf_ndim(r)) return false;
    for (int i = 0; i < gf_ndim(r); i++)
        if (i != arg && gf_shape(c)[i] != gf_shape(r)[i]) return false;
    return gf_shape(c)[arg] + gf_shape(r)[arg] <= 32;
}

/* A random earlier value (fan-out: values are reused freely). */
static gf_tensor *gpick(gbuild *g) {
    gf_tensor *t = NULL;
    for (int tries = 0; tries < 4; tries++) {
        /* Favour recent values so that graphs get deep, not only wide. */
        if (xs_int(&g->rng, 2)) t = g->v[g->nv - 1 - xs_int(&g->rng, g->nv < 4 ? g->nv : 4)];
        else t = g->v[xs_int(&g->rng, g->nv)];
        if (gf_ndim(t) > 0) break; /* scalars are a dead end for most ops */
    }
    guse(g, t);
    return t;
}

enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_TANH, OP_SIGMOID, OP_EXP, OP_RELU, OP_MATMUL,
    OP_SUM_DIM, OP_MEAN, OP_SOFTMAX, OP_RESHAPE, OP_TRANSPOSE, OP_CAT, OP_BCAST_ADD,
    OP_SELF, OP_LEAF, OP_REALIZE, OP_COUNT
};

static void gstep(gbuild *g) {
    int op = xs_int(&g->rng, OP_COUNT);
    gf_tensor *a = gpick(g);
    int nd = gf_ndim(a);
    switch (op) {
    case OP_ADD:
    case OP_SUB: {
        gf_tensor *b = gfind(g, p_same, a, 0);
        if (!b) b = gfind(g, p_bcast, a, 0);
        if (!b) b = a;
        gf_tensor *s = op == OP_ADD ? gf_add(a, b) : gf_sub(b, a);
        gpush(g, gf_mul_scalar(s, 0.5), op == OP_ADD ? "add" : "sub");
        break;
    }
    case OP_MUL: {
        gf_tensor *b = gfind(g, p_same, a, 0);
        if (!b) b = gfind(g, p_bcast, a, 0);
        if (!b) b = a;
        gpush(g, xs_int(&g->rng, 2) ? gf_mul(a, gf_tanh(b)) : gf_mul(gf_tanh(b), a), "mul");
        break;
    }
    case OP_DIV: {
        gf_tensor *b = gfind(g, p_bcast, a, 0);
        if (!b) b = gfind(g, p_same, a, 0);
        if (!b) b = a;
        gpush(g, gf_div(a, gf_add_scalar(gf_mul(b, b), 1.0)), "div");
        break;
    }
    case OP_TANH: gpush(g, gf_tanh(a), "tanh"); break;
    case OP_SIGMOID: gpush(g, gf_sigmoid(a), "sigmoid"); break;
    case OP_EXP: gpush(g, gf_exp(gf_tanh(a)), "exp"); break;
    case OP_RELU: gpush(g, gf_relu(a), "relu"); break;
    case OP_MATMUL: {
        if (nd == 0) {
            gpush(g, gf_tanh(a), "tanh");
            break;
        }
        gf_tensor *b = xs_int(&g->rng, 4) ? gfind(g, p_matmul_rhs, a, 0) : NULL;
        if (!b) {
            int64_t k = gf_shape(a)[nd - 1];
            int64_t sh[2] = {k, G_DIMS[xs_int(&g->rng, 6)]};
            b = gleaf(g, xs_int(&g->rng, 4) ? 2 : 1, sh, xs_int(&g->rng, 2));
        }
        int64_t k = gf_shape(a)[nd - 1];
        gpush(g, gf_mul_scalar(gf_matmul(a, gf_tanh(b)), 1.0 / (double)k), "matmul");
        break;
    }
    case OP_SUM_DIM: {
        if (nd == 0) {
            gpush(g, gf_sigmoid(a), "sigmoid");
            break;
        }
        int d = xs_int(&g->rng, nd) - (xs_int(&g->rng, 2) ? nd : 0); /* negative dims too */
        bool keep = xs_int(&g->rng, 2);
        int64_t size = gf_shape(a)[d < 0 ? d + nd : d];
        gpush(g, gf_mul_scalar(gf_sum_dim(a, d, keep), 1.0 / (double)size), "sum_dim");
        break;
    }
    case OP_MEAN: gpush(g, gf_mean(a), "mean"); break;
    case OP_SOFTMAX:
        if (nd == 0) gpush(g, gf_relu(a), "relu");
        else gpush(g, gf_softmax(a, xs_int(&g->rng, nd)), "softmax");
        break;
    case OP_RESHAPE: {
        int64_t n = gf_numel(a);
        int64_t sh[2];
        int ndim;
        if (nd == 2 && xs_int(&g->rng, 2)) {
            sh[0] = gf_shape(a)[1], sh[1] = gf_shape(a)[0], ndim = 2;
        } else if (nd == 2) {
            sh[0] = -1, ndim = 1;
        } else if (nd == 1) {
            bool row = xs_int(&g->rng, 2);
            sh[0] = row ? 1 : n, sh[1] = row ? n : 1, ndim = 2;
        } else {
            sh[0] = 1, ndim = 1;
        }
        gpush(g, gf_reshape(a, ndim, sh), "reshape");
        break;
    }
    case OP_TRANSPOSE:
        if (nd == 2) gpush(g, gf_transpose(a, 0, 1), "transpose");
        else gpush(g, gf_sigmoid(a), "sigmoid");
        break;
    case OP_CAT: {
        if (nd == 0) {
            gpush(g, gf_exp(gf_tanh(a)), "exp");
            break;
        }
        int d = xs_int(&g->rng, nd);
        gf_tensor *parts[3] = {a, NULL, NULL};
        int n = 1;
        int64_t len = gf_shape(a)[d];
        for (int k = 0; k < 2; k++) {
            gf_tensor *b = gfind(g, p_cat, a, d);
            if (!b || len + gf_shape(b)[d] > 32) break;
            parts[n++] = b;
            len += gf_shape(b)[d];
        }
        if (n == 1) parts[n++] = gf_tanh(a); /* fan-out of a into both halves */
        if (xs_int(&g->rng, 2)) { /* shuffle the order */
            gf_tensor *t = parts[0];
            parts[0] = parts[n - 1];
            parts[n - 1] = t;
        }
        gpush(g, gf_cat(n, parts, d), "cat");
        break;
    }
    case OP_BCAST_ADD: {
        if (nd == 0) {
            gpush(g, gf_mul_scalar(gf_add(a, a), 0.5), "add");
            break;
        }
        gf_tensor *b = gfind(g, p_bcast, a, 0);
        if (!b) { /* a broadcastable leaf: [1,c], [c], [r,1] or a scalar */
            int64_t sh[2];
            int kind = xs_int(&g->rng, 4), bnd;
            if (kind == 0 && nd == 2) sh[0] = 1, sh[1] = gf_shape(a)[1], bnd = 2;
            else if (kind == 1) sh[0] = gf_shape(a)[nd - 1], bnd = 1;
            else if (kind == 2 && nd == 2) sh[0] = gf_shape(a)[0], sh[1] = 1, bnd = 2;
            else bnd = 0;
            b = gleaf(g, bnd, sh, xs_int(&g->rng, 2));
        }
        gpush(g, gf_mul_scalar(xs_int(&g->rng, 2) ? gf_add(a, b) : gf_add(b, a), 0.5), "badd");
        break;
    }
    case OP_SELF: /* x op x: one producer feeding both inputs */
        gpush(g, gf_mul(gf_tanh(a), gf_tanh(a)), "selfmul");
        guse(g, g->v[g->nv - 1]);
        gpush(g, gf_mul(a, g->v[g->nv - 1]), "mul");
        break;
    case OP_LEAF: gpush(g, gleaf_random(g), "newleaf"); break;
    case OP_REALIZE: /* realize part of the graph now; the rest stays lazy */
        GF_OK_OR_FAIL(g->ctx, gf_realize(a));
        glog(g, "realize");
        break;
    }
}

/* What a run produced: output bytes, then gradient bytes of each leaf. */
typedef struct {
    unsigned char *b;
    size_t n, cap;
    int ngrads, nnull; /* leaves with / without a .grad */
    int nout;
    bool finite;
    char log[2048];
} gresult;

static void gres_put(gresult *r, gf_tensor *t, gf_dtype dt) {
    size_t es = dt == GF_F64 ? 8 : 4;
    int64_t n = gf_numel(t);
    const void *p = dt == GF_F64 ? (const void *)gf_data_f64(t) : (const void *)gf_data_f32(t);
    cr_assert_not_null(p, "data: %s", gf_ctx_error(gf_ctx_of(t)));
    size_t need = r->n + (size_t)n * es;
    if (need > r->cap) {
        r->cap = need * 2 + 64;
        r->b = realloc(r->b, r->cap);
    }
    memcpy(r->b + r->n, p, (size_t)n * es);
    r->n = need;
    for (int64_t i = 0; i < n; i++) {
        double v = dt == GF_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
        if (!isfinite(v)) r->finite = false;
    }
}

/* Builds and runs graph `seed` on a new ctx of eng. */
static void run_graph(gf_engine *eng, bool eager, uint64_t seed, gresult *r) {
    memset(r, 0, sizeof *r);
    r->finite = true;
    gbuild *g = calloc(1, sizeof *g);
    g->ctx = gf_ctx_create(eng);
    cr_assert_not_null(g->ctx);
    gf_ctx_set_eager(g->ctx, eager);
    g->rng = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    for (int i = 0; i < 4; i++) xs_next(&g->rng);
    g->dt = xs_int(&g->rng, 4) == 0 ? GF_F32 : GF_F64;

    int nleaves = 2 + xs_int(&g->rng, 3);
    for (int i = 0; i < nleaves; i++) {
        gf_tensor *l = gleaf_random(g);
        if (i == 0) gf_requires_grad(l, true);
        gpush(g, l, "");
    }
    int nops = 10 + xs_int(&g->rng, 51);
    for (int i = 0; i < nops; i++) gstep(g);

    /* Outputs: every sink (a value no op consumed), at most 12, the last
     * value first; the loss weighs each by a constant so that every element's
     * gradient differs. */
    gf_tensor *outs[12];
    int nout = 0;
    for (int i = g->nv - 1; i >= 0 && nout < 12; i--)
        if (!g->used[i] || i == g->nv - 1) outs[nout++] = g->v[i];
    gf_tensor *loss = NULL;
    for (int i = 0; i < nout; i++) {
        gf_tensor *w = gleaf(g, gf_ndim(outs[i]), gf_shape(outs[i]), false);
        gf_tensor *term = gf_sum(gf_mul(outs[i], w));
        loss = loss ? gf_add(loss, term) : term;
    }
    cr_assert_not_null(loss, "loss: %s (program: %s)", gf_ctx_error(g->ctx), g->log);
    int mode = xs_int(&g->rng, 3);
    if (mode == 0)
        for (int i = 0; i < nout; i++) GF_OK_OR_FAIL(g->ctx, gf_realize(outs[i]));
    else if (mode == 1)
        GF_OK_OR_FAIL(g->ctx, gf_realize_all(g->ctx));
    /* mode 2: backward realizes the forward graph and the gradients together */
    if (gf_get_requires_grad(loss)) GF_OK_OR_FAIL(g->ctx, gf_backward(loss));
    for (int i = 0; i < nout; i++) gres_put(r, outs[i], g->dt);
    r->nout = nout;
    for (int i = 0; i < g->nleaf; i++) {
        if (!gf_get_requires_grad(g->leaf[i])) continue;
        gf_tensor *gr = gf_grad(g->leaf[i]);
        if (!gr) {
            r->nnull++;
            continue;
        }
        gf_test_expect_shape(gr, gf_ndim(g->leaf[i]), gf_shape(g->leaf[i]));
        gres_put(r, gr, g->dt);
        r->ngrads++;
    }
    cr_assert_null(gf_ctx_error(g->ctx), "error: %s", gf_ctx_error(g->ctx));
    memcpy(r->log, g->log, sizeof r->log);
    gf_ctx_destroy(g->ctx);
    free(g);
}

static void expect_same(const gresult *ref, const gresult *got, uint64_t seed, const char *what) {
    cr_assert_eq(got->n, ref->n, "graph %llu on %s: %zu result bytes, reference %zu (%s)",
                 (unsigned long long)seed, what, got->n, ref->n, ref->log);
    cr_assert_eq(got->ngrads, ref->ngrads, "graph %llu on %s: %d grads, reference %d",
                 (unsigned long long)seed, what, got->ngrads, ref->ngrads);
    cr_assert_eq(got->nnull, ref->nnull);
    if (memcmp(got->b, ref->b, ref->n)) {
        size_t at = 0;
        while (got->b[at] == ref->b[at]) at++;
        cr_assert_fail("graph %llu on %s: results differ from the reference at byte %zu of %zu "
                       "(program: %s)",
                       (unsigned long long)seed, what, at, ref->n, ref->log);
    }
}

static int graph_count(void) { return GF_TEST_SLOW ? 300 : 1000; }

Test(engine, random_graphs_bitwise_identical_for_any_thread_count_and_eager, .timeout = 600) {
    const int threads[] = {1, 2, 3, 4, 8};
    gf_engine *eng[5];
    for (int i = 0; i < 5; i++) eng[i] = make_engine(threads[i], true);
    unsetenv("GF_MIN_PARALLEL_WORK");
    gf_engine *dflt = gf_engine_create(&(gf_engine_opts){.num_threads = 4, .deterministic = true});
    cr_assert_not_null(dflt);
    int ngraphs = graph_count();
    int64_t bytes = 0, grads = 0;
    for (int s = 1; s <= ngraphs; s++) {
        gresult ref, got;
        run_graph(eng[0], true, (uint64_t)s, &ref); /* eager on one thread */
        cr_assert(ref.finite, "graph %d: a value is not finite (%s)", s, ref.log);
        cr_assert_gt(ref.nout, 0);
        for (int i = 0; i < 5; i++) {
            run_graph(eng[i], false, (uint64_t)s, &got);
            char what[64];
            snprintf(what, sizeof what, "%d thread(s), lazy", threads[i]);
            expect_same(&ref, &got, (uint64_t)s, what);
            free(got.b);
        }
        /* Eager on many threads too. */
        if (s % 4 == 0) {
            run_graph(eng[4], true, (uint64_t)s, &got);
            expect_same(&ref, &got, (uint64_t)s, "8 threads, eager");
            free(got.b);
        }
        /* And with the default threshold, where tiny runs stay serial. */
        run_graph(dflt, false, (uint64_t)s, &got);
        expect_same(&ref, &got, (uint64_t)s, "4 threads, default min_par_work");
        free(got.b);
        bytes += (int64_t)ref.n;
        grads += ref.ngrads;
        free(ref.b);
    }
    cr_log_info("%d random graphs: %lld result bytes, %lld leaf gradients compared bitwise",
                ngraphs, (long long)bytes, (long long)grads);
    cr_assert_gt(grads, ngraphs, "the graphs do produce gradients");
    for (int i = 0; i < 5; i++) gf_engine_destroy(eng[i]);
    gf_engine_destroy(dflt);
}

/* Elementwise |a - b| <= 1e-5 * (largest magnitude of the array). */
static void expect_close(const gresult *ref, const gresult *got, bool f64, uint64_t seed) {
    cr_assert_eq(got->n, ref->n);
    size_t es = f64 ? 8 : 4, n = ref->n / es;
    double scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double v = f64 ? ((const double *)ref->b)[i] : ((const float *)ref->b)[i];
        if (fabs(v) > scale) scale = fabs(v);
    }
    for (size_t i = 0; i < n; i++) {
        double a = f64 ? ((const double *)ref->b)[i] : ((const float *)ref->b)[i];
        double b = f64 ? ((const double *)got->b)[i] : ((const float *)got->b)[i];
        cr_assert(fabs(a - b) <= 1e-5 * scale, "graph %llu element %zu: %.17g vs %.17g",
                  (unsigned long long)seed, i, a, b);
    }
}

Test(engine, random_graphs_nondeterministic_engine_agrees_closely, .timeout = 300) {
    gf_engine *e1 = make_engine(1, true);
    gf_engine *en = make_engine(4, false);
    cr_assert(gf_engine_deterministic(e1));
    cr_assert_not(gf_engine_deterministic(en));
    int ngraphs = graph_count() / 4;
    for (int s = 1; s <= ngraphs; s++) {
        gresult ref, got;
        run_graph(e1, false, (uint64_t)s, &ref);
        run_graph(en, false, (uint64_t)s, &got);
        /* The dtype of the graph is its first rng decision: rebuild it. */
        uint64_t rng = (uint64_t)s * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
        for (int i = 0; i < 4; i++) xs_next(&rng);
        bool f64 = xs_int(&rng, 4) != 0;
        expect_close(&ref, &got, f64, (uint64_t)s);
        free(ref.b);
        free(got.b);
    }
    gf_engine_destroy(e1);
    gf_engine_destroy(en);
}

/* --------------------------------------------------------------- stress */

static const int STRESS_THREADS[] = {1, 2, 8};

Test(engine, empty_realize_and_one_node_graphs) {
    for (int ti = 0; ti < 3; ti++) {
        gf_engine *eng = make_engine(STRESS_THREADS[ti], true);
        gf_ctx *ctx = gf_ctx_create(eng);
        /* Nothing pending at all. */
        GF_OK_OR_FAIL(ctx, gf_realize_all(ctx));
        gf_tensor *x = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, 2, 3}));
        GF_OK_OR_FAIL(ctx, gf_realize_all(ctx)); /* a leaf is no pending node */
        GF_OK_OR_FAIL(ctx, gf_realize(x));
        /* One node. */
        gf_tensor *y = GF_T(ctx, gf_add_scalar(x, 1.5));
        GF_OK_OR_FAIL(ctx, gf_realize_all(ctx));
        gf_test_expect_close(y, (double[]){2.5, 3.5, 4.5}, 3, 0, 0);
        GF_OK_OR_FAIL(ctx, gf_realize_all(ctx)); /* nothing left */
        GF_OK_OR_FAIL(ctx, gf_realize(y));       /* already computed */
        /* A 0-dim one-node graph, and an empty tensor. */
        gf_tensor *s = GF_T(ctx, gf_mul_scalar(gf_scalar(ctx, GF_F64, 3), 2));
        cr_assert_eq(gf_item(s), 6.0);
        gf_tensor *e = GF_T(ctx, gf_zeros(ctx, GF_F64, 2, (int64_t[]){0, 4}));
        gf_tensor *e2 = GF_T(ctx, gf_tanh(e));
        GF_OK_OR_FAIL(ctx, gf_realize(e2));
        cr_assert_eq(gf_numel(e2), 0);
        /* One-node backward: d sum(w) / dw = 1. */
        gf_tensor *w = gf_requires_grad(
            GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){2}, (double[]){4, 5})), true);
        GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(w)));
        gf_test_expect_close(gf_grad(w), (double[]){1, 1}, 2, 0, 0);
        /* Realizing one of two independent pending nodes leaves the other. */
        gf_tensor *p = GF_T(ctx, gf_mul_scalar(x, 2));
        gf_tensor *q = GF_T(ctx, gf_mul_scalar(x, 3));
        GF_OK_OR_FAIL(ctx, gf_realize(p));
        gf_test_expect_close(q, (double[]){3, 6, 9}, 3, 0, 0);
        gf_test_expect_close(p, (double[]){2, 4, 6}, 3, 0, 0);
        GF_OK_OR_FAIL(ctx, gf_realize_all(ctx));
        cr_assert_null(gf_ctx_error(ctx));
        gf_ctx_destroy(ctx);
        gf_engine_destroy(eng);
    }
}

Test(engine, chain_of_100000_add_scalar_forward_and_backward, .timeout = 300) {
    const int64_t N = 100000;
    for (int ti = 0; ti < 3; ti++) {
        gf_engine *eng = make_engine(STRESS_THREADS[ti], true);
        gf_ctx *ctx = gf_ctx_create(eng);
        gf_tensor *x = gf_requires_grad(
            GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){4}, (double[]){0, 1, -2, 0.5})), true);
        gf_scope_begin(ctx);
        gf_tensor *y = x;
        for (int64_t i = 0; i < N; i++) y = gf_add_scalar(y, (i % 2) ? 1.0 : 2.0);
        cr_assert_not_null(y, "%s", gf_ctx_error(ctx));
        /* Every step is exact in f64: x + 150,000. */
        gf_test_expect_close(y, (double[]){150000, 150001, 149998, 150000.5}, 4, 0, 0);
        gf_tensor *w = GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4}));
        GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(y, w))));
        gf_scope_end(ctx);
        gf_test_expect_close(gf_grad(x), (double[]){1, 2, 3, 4}, 4, 0, 0);
        /* A second chain, realized only by backward (forward and gradient
         * graphs in one run). */
        gf_scope_begin(ctx);
        y = x;
        for (int64_t i = 0; i < N; i++) y = gf_add_scalar(y, 1.0);
        GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(y)));
        gf_test_expect_close(y, (double[]){100000, 100001, 99998, 100000.5}, 4, 0, 0);
        gf_scope_end(ctx);
        gf_test_expect_close(gf_grad(x), (double[]){2, 3, 4, 5}, 4, 0, 0);
        cr_assert_lt(gf_ctx_live_tensors(ctx), 10, "the chains were freed (%lld live)",
                     (long long)gf_ctx_live_tensors(ctx));
        gf_ctx_destroy(ctx);
        gf_engine_destroy(eng);
    }
}

Test(engine, fan_of_10000_independent_ops_cat_and_sum, .timeout = 300) {
    const int N = 10000;
    gf_tensor **ys = malloc(sizeof(gf_tensor *) * (size_t)N);
    for (int ti = 0; ti < 3; ti++) {
        gf_engine *eng = make_engine(STRESS_THREADS[ti], true);
        gf_ctx *ctx = gf_ctx_create(eng);
        gf_tensor *x = gf_requires_grad(
            GF_T(ctx, gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, -2, 4})), true);
        /* y_i = x * (i % 7) + i: exact in f64. */
        gf_scope_begin(ctx);
        for (int i = 0; i < N; i++) ys[i] = gf_add_scalar(gf_mul_scalar(x, i % 7), i);
        gf_tensor *c = GF_T(ctx, gf_cat(N, ys, 0));
        GF_OK_OR_FAIL(ctx, gf_realize(c));
        const double *cd = gf_data_f64(c);
        cr_assert_not_null(cd);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < 3; j++) {
                double want = (j == 0 ? 1 : j == 1 ? -2 : 4) * (double)(i % 7) + i;
                cr_assert_eq(cd[3 * i + j], want, "cat element %d,%d: %g, expected %g", i, j,
                             cd[3 * i + j], want);
            }
        GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(c)));
        gf_scope_end(ctx);
        /* d/dx sum_i (x*(i%7) + i) = sum_i i%7 */
        double s7 = 0;
        for (int i = 0; i < N; i++) s7 += i % 7;
        gf_test_expect_close(gf_grad(x), (double[]){s7, s7, s7}, 3, 0, 0);

        /* The same fan reduced by a chain of adds, forward and backward
         * realized together. */
        gf_zero_grad(x);
        gf_scope_begin(ctx);
        gf_tensor *acc = NULL;
        for (int i = 0; i < N; i++) {
            gf_tensor *yi = gf_add_scalar(gf_mul_scalar(x, i % 7), i);
            acc = acc ? gf_add(acc, yi) : yi;
        }
        cr_assert_not_null(acc, "%s", gf_ctx_error(ctx));
        GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(acc)));
        double base = (double)N * (N - 1) / 2;
        gf_test_expect_close(acc, (double[]){s7 + base, -2 * s7 + base, 4 * s7 + base}, 3, 0, 0);
        gf_scope_end(ctx);
        gf_test_expect_close(gf_grad(x), (double[]){s7, s7, s7}, 3, 0, 0);
        cr_assert_null(gf_ctx_error(ctx));
        gf_ctx_destroy(ctx);
        gf_engine_destroy(eng);
    }
    free(ys);
}

/* ---------------------------------------------- many users, one engine */

#define MLP_IN 4
#define MLP_HID 16
#define MLP_N 32
#define MLP_STEPS 200
#define MLP_NPARAM (MLP_IN * MLP_HID + MLP_HID + MLP_HID + 1)

typedef struct {
    gf_engine *eng;
    int id;
    double final[MLP_NPARAM]; /* w1, b1, w2, b2 after training */
    double loss0, loss1;
    char err[512];
} mlp_job;

/* Trains a 2-layer tanh MLP on synthetic data of its own (seeded by id)
 * with plain SGD; everything through the public API. */
static void *mlp_train(void *arg) {
    mlp_job *job = arg;
    job->err[0] = 0;
    gf_ctx *ctx = gf_ctx_create(job->eng);
    if (!ctx) {
        snprintf(job->err, sizeof job->err, "gf_ctx_create failed");
        return NULL;
    }
    uint64_t rng = 0xD1B54A32D192ED03ull * (uint64_t)(job->id + 1);
    double xb[MLP_N * MLP_IN], yb[MLP_N], w1[MLP_IN * MLP_HID], w2[MLP_HID];
    for (int i = 0; i < MLP_N * MLP_IN; i++) xb[i] = xs_real(&rng, -1, 1);
    for (int i = 0; i < MLP_N; i++)
        yb[i] = sin(2 * xb[i * MLP_IN]) + xb[i * MLP_IN + 1] * xb[i * MLP_IN + 2] -
                0.5 * xb[i * MLP_IN + 3];
    for (int i = 0; i < MLP_IN * MLP_HID; i++) w1[i] = xs_real(&rng, -0.5, 0.5);
    for (int i = 0; i < MLP_HID; i++) w2[i] = xs_real(&rng, -0.5, 0.5);
    gf_tensor *X = gf_tensor_f64(ctx, 2, (int64_t[]){MLP_N, MLP_IN}, xb);
    gf_tensor *Y = gf_tensor_f64(ctx, 2, (int64_t[]){MLP_N, 1}, yb);
    gf_tensor *p[4] = {
        gf_requires_grad(gf_tensor_f64(ctx, 2, (int64_t[]){MLP_IN, MLP_HID}, w1), true),
        gf_requires_grad(gf_zeros(ctx, GF_F64, 1, (int64_t[]){MLP_HID}), true),
        gf_requires_grad(gf_tensor_f64(ctx, 2, (int64_t[]){MLP_HID, 1}, w2), true),
        gf_requires_grad(gf_zeros(ctx, GF_F64, 1, (int64_t[]){1}), true),
    };
    for (int step = 0; step < MLP_STEPS; step++) {
        gf_scope_begin(ctx);
        gf_tensor *h = gf_tanh(gf_add(gf_matmul(X, p[0]), p[1]));
        gf_tensor *pred = gf_add(gf_matmul(h, p[2]), p[3]);
        gf_tensor *loss = gf_mse_loss(pred, Y);
        if (gf_backward(loss) != GF_OK) break;
        double l = gf_item(loss);
        if (step == 0) job->loss0 = l;
        job->loss1 = l;
        gf_no_grad_begin(ctx);
        for (int k = 0; k < 4; k++) {
            gf_axpy_(p[k], -0.1, gf_grad(p[k]));
            gf_zero_grad(p[k]);
        }
        gf_no_grad_end(ctx);
        gf_scope_end(ctx);
    }
    int at = 0;
    for (int k = 0; k < 4 && !gf_ctx_error(ctx); k++) {
        int64_t n = gf_numel(p[k]);
        if (gf_copy_to_f64(p[k], job->final + at, n) != GF_OK) break;
        at += (int)n;
    }
    if (gf_ctx_error(ctx)) snprintf(job->err, sizeof job->err, "%s", gf_ctx_error(ctx));
    else if (at != MLP_NPARAM) snprintf(job->err, sizeof job->err, "copied %d params", at);
    gf_ctx_destroy(ctx);
    return NULL;
}

Test(engine, eight_user_threads_train_on_one_shared_engine, .timeout = 300) {
    enum { NT = 8 };
    static mlp_job ref[NT], got[NT];
    /* The reference: each program alone, one at a time, on one thread. */
    gf_engine *e1 = make_engine(1, true);
    for (int i = 0; i < NT; i++) {
        ref[i] = (mlp_job){.eng = e1, .id = i};
        mlp_train(&ref[i]);
        cr_assert_eq(ref[i].err[0], 0, "reference %d: %s", i, ref[i].err);
        cr_assert_lt(ref[i].loss1, ref[i].loss0 * 0.5, "model %d learns: loss %g -> %g", i,
                     ref[i].loss0, ref[i].loss1);
    }
    gf_engine_destroy(e1);
    const int engine_threads[] = {2, 4};
    for (int e = 0; e < 2; e++) {
        gf_engine *eng = make_engine(engine_threads[e], true);
        pthread_t tid[NT];
        for (int i = 0; i < NT; i++) {
            got[i] = (mlp_job){.eng = eng, .id = i};
            cr_assert_eq(pthread_create(&tid[i], NULL, mlp_train, &got[i]), 0);
        }
        for (int i = 0; i < NT; i++) pthread_join(tid[i], NULL);
        for (int i = 0; i < NT; i++) {
            cr_assert_eq(got[i].err[0], 0, "user %d: %s", i, got[i].err);
            for (int k = 0; k < MLP_NPARAM; k++)
                cr_assert(!memcmp(&got[i].final[k], &ref[i].final[k], sizeof(double)),
                          "%d-thread engine, user %d, parameter %d: %.17g, alone %.17g",
                          engine_threads[e], i, k, got[i].final[k], ref[i].final[k]);
        }
        gf_engine_destroy(eng);
    }
}

/* ----------------------------------------------------- shared parameter */

#define SH_N 16
#define SH_ITERS 100

typedef struct {
    gf_ctx *ctx;
    gf_tensor *w; /* this ctx's handle of the shared leaf */
    int id;
    int fails;
    char err[512];
} share_job;

static double share_c(int id, int it, int j) { return (double)((id * 7 + it * 3 + j) % 11 - 5); }

static void *share_run(void *arg) {
    share_job *job = arg;
    for (int it = 0; it < SH_ITERS; it++) {
        gf_scope_begin(job->ctx);
        double c[SH_N];
        for (int j = 0; j < SH_N; j++) c[j] = share_c(job->id, it, j);
        gf_tensor *ct = gf_tensor_f64(job->ctx, 1, (int64_t[]){SH_N}, c);
        if (gf_backward(gf_sum(gf_mul(job->w, ct))) != GF_OK) job->fails++;
        gf_scope_end(job->ctx);
    }
    if (gf_ctx_error(job->ctx)) snprintf(job->err, sizeof job->err, "%s", gf_ctx_error(job->ctx));
    return NULL;
}

Test(engine, shared_parameter_concurrent_backward_sums_exactly, .timeout = 300) {
    enum { NT = 8 };
    const int engine_threads[] = {1, 4};
    for (int e = 0; e < 2; e++) {
        gf_engine *eng = make_engine(engine_threads[e], true);
        gf_ctx *owner = gf_ctx_create(eng);
        double wd[SH_N];
        for (int j = 0; j < SH_N; j++) wd[j] = j - 7;
        gf_tensor *w = gf_requires_grad(
            GF_T(owner, gf_tensor_f64(owner, 1, (int64_t[]){SH_N}, wd)), true);
        share_job jobs[NT];
        pthread_t tid[NT];
        for (int i = 0; i < NT; i++) {
            jobs[i] = (share_job){.ctx = gf_ctx_create(eng), .id = i};
            cr_assert_not_null(jobs[i].ctx);
            jobs[i].w = GF_T(jobs[i].ctx, gf_share(jobs[i].ctx, w));
            cr_assert(gf_get_requires_grad(jobs[i].w));
        }
        for (int i = 0; i < NT; i++)
            cr_assert_eq(pthread_create(&tid[i], NULL, share_run, &jobs[i]), 0);
        for (int i = 0; i < NT; i++) pthread_join(tid[i], NULL);
        double want[SH_N] = {0};
        for (int i = 0; i < NT; i++)
            for (int it = 0; it < SH_ITERS; it++)
                for (int j = 0; j < SH_N; j++) want[j] += share_c(i, it, j);
        for (int i = 0; i < NT; i++)
            cr_assert(jobs[i].fails == 0 && !jobs[i].err[0], "thread %d: %d failed backwards: %s",
                      i, jobs[i].fails, jobs[i].err);
        /* Exactly the integer total, seen from the owner and from a sharer. */
        gf_test_expect_close(gf_grad(w), want, SH_N, 0, 0);
        gf_test_expect_close(gf_grad(jobs[3].w), want, SH_N, 0, 0);
        gf_test_expect_close(w, wd, SH_N, 0, 0); /* the data itself untouched */
        for (int i = 0; i < NT; i++) gf_ctx_destroy(jobs[i].ctx);
        gf_ctx_destroy(owner);
        gf_engine_destroy(eng);
    }
}

/* ----------------------------------------- inter-op and intra-op together */

#define BR_N 16
#define BR_D (GF_TEST_SLOW ? 64 : 128) /* 128: 165 s under TSan on 2 cores */
#define BR_DEPTH 3

/* 16 independent branches h = tanh(h @ W_b) x3 from their own x_b; returns
 * the gradients of every x_b and W_b, concatenated. */
static double *branches_grads(int threads) {
    gf_engine *eng = make_engine(threads, true);
    gf_ctx *ctx = gf_ctx_create(eng);
    gf_manual_seed(ctx, 1234);
    gf_tensor *x[BR_N], *W[BR_N];
    const int64_t sh[2] = {BR_D, BR_D};
    for (int b = 0; b < BR_N; b++) {
        x[b] = gf_requires_grad(GF_T(ctx, gf_randn(ctx, GF_F64, 2, sh)), true);
        gf_tensor *w0 = GF_T(ctx, gf_mul_scalar(gf_randn(ctx, GF_F64, 2, sh), 1.0 / sqrt(BR_D)));
        GF_OK_OR_FAIL(ctx, gf_realize(w0));
        W[b] = gf_requires_grad(GF_T(ctx, gf_detach(w0)), true);
        cr_assert(gf_is_leaf(W[b]));
    }
    gf_tensor *loss = NULL;
    for (int b = 0; b < BR_N; b++) {
        gf_tensor *h = x[b];
        for (int d = 0; d < BR_DEPTH; d++) h = gf_tanh(gf_matmul(h, W[b]));
        gf_tensor *term = gf_mean(h);
        loss = loss ? gf_add(loss, term) : term;
    }
    GF_OK_OR_FAIL(ctx, gf_backward(loss));
    size_t per = BR_D * BR_D;
    double *out = malloc(sizeof(double) * per * 2 * BR_N + sizeof(double));
    for (int b = 0; b < BR_N; b++) {
        GF_OK_OR_FAIL(ctx, gf_copy_to_f64(gf_grad(x[b]), out + (2 * b) * per, (int64_t)per));
        GF_OK_OR_FAIL(ctx, gf_copy_to_f64(gf_grad(W[b]), out + (2 * b + 1) * per, (int64_t)per));
    }
    out[per * 2 * BR_N] = gf_item(loss);
    gf_ctx_destroy(ctx);
    gf_engine_destroy(eng);
    return out;
}

Test(engine, sixteen_matmul_branches_bitwise_identical_on_1_2_4_threads, .timeout = 300) {
    size_t n = BR_D * BR_D * 2 * BR_N + 1;
    double *ref = branches_grads(1);
    double nz = 0;
    for (size_t i = 0; i + 1 < n; i++) nz += fabs(ref[i]);
    cr_assert_gt(nz, 0, "the gradients are not all zero");
    cr_assert(isfinite(nz));
    const int threads[] = {2, 4};
    for (int t = 0; t < 2; t++) {
        double *got = branches_grads(threads[t]);
        if (memcmp(got, ref, n * sizeof(double))) {
            size_t at = 0;
            while (!memcmp(&got[at], &ref[at], sizeof(double))) at++;
            cr_assert_fail("%d threads: element %zu (branch %zu) differs: %.17g vs %.17g",
                           threads[t], at, at / (BR_D * BR_D * 2), got[at], ref[at]);
        }
        free(got);
    }
    free(ref);
}
