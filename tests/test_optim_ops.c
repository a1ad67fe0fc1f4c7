/*
 * test_optim_ops.c - the fused optimizer updates gf_adam_step_ and
 * gf_sgd_step_: against naive loops in double over several steps (f32 and
 * f64; plain, L2 and decoupled weight decay; momentum, dampening,
 * Nesterov), bit for bit against the op sequence they replace (nn/optim.c's
 * former form), the same bits for 1 and 2 threads, strided views, ordering
 * against pending readers of the state, and the errors.
 */
#include "common.h"

static gf_ctx *ctx;
static void setup(void) { ctx = gf_ctx_create(NULL); }
static void teardown(void) { gf_ctx_destroy(ctx); }
TestSuite(optim_ops, .init = setup, .fini = teardown);

/* Deterministic values in about [-1, 1]: element i of series k. */
static double val(int k, int64_t i) {
    return sin(0.37 * (double)i + 1.3 * k) * (0.5 + 0.5 * cos(0.011 * (double)i * (k + 1)));
}

static gf_tensor *series(gf_ctx *c, gf_dtype dt, int64_t n, int k) {
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) d[i] = val(k, i);
    gf_tensor *t = gf_to_dtype(gf_tensor_f64(c, 1, (int64_t[]){n}, d), dt);
    free(d);
    cr_assert_eq(gf_realize(t), GF_OK, "%s", gf_ctx_error(c));
    return gf_persist(gf_contiguous(t));
}

static double *values(gf_tensor *t) {
    int64_t n = gf_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert_eq(gf_copy_to_f64(t, v, n), GF_OK, "%s", gf_ctx_error(gf_ctx_of(t)));
    return v;
}

static void expect_close(gf_tensor *t, const double *want, double atol, double rtol,
                         const char *what) {
    double *got = values(t);
    for (int64_t i = 0; i < gf_numel(t); i++)
        cr_assert(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]),
                  "%s: element %lld: got %.17g, expected %.17g", what, (long long)i, got[i],
                  want[i]);
    free(got);
}

/* The raw bytes of t equal those of u. */
static void expect_same_bits(gf_tensor *t, gf_tensor *u, const char *what) {
    cr_assert_eq(gf_dtype_of(t), gf_dtype_of(u));
    cr_assert_eq(gf_numel(t), gf_numel(u));
    size_t n = (size_t)gf_numel(t) * (gf_dtype_of(t) == GF_F32 ? 4 : 8);
    const void *a = gf_dtype_of(t) == GF_F32 ? (const void *)gf_data_f32(t)
                                             : (const void *)gf_data_f64(t);
    const void *b = gf_dtype_of(u) == GF_F32 ? (const void *)gf_data_f32(u)
                                             : (const void *)gf_data_f64(u);
    cr_assert(a && b);
    cr_assert(memcmp(a, b, n) == 0, "%s: the bits differ", what);
}

/* ----------------------------------------------------------------- Adam */

typedef struct {
    double lr, b1, b2, eps, wd;
    bool decoupled;
} adam_cfg;

/* PyTorch 1.13's rule, in double, for `steps` steps with gradient series
 * 10+t at step t. */
static void adam_ref(adam_cfg c, int64_t n, int steps, double *p) {
    double *m = calloc((size_t)n, sizeof *m), *v = calloc((size_t)n, sizeof *v);
    for (int64_t i = 0; i < n; i++) p[i] = val(0, i);
    for (int t = 1; t <= steps; t++) {
        double bc1 = 1 - pow(c.b1, t), bc2 = 1 - pow(c.b2, t);
        for (int64_t i = 0; i < n; i++) {
            double g = val(10 + t, i);
            if (c.wd != 0) {
                if (c.decoupled) p[i] *= 1 - c.lr * c.wd;
                else g += c.wd * p[i];
            }
            m[i] = c.b1 * m[i] + (1 - c.b1) * g;
            v[i] = c.b2 * v[i] + (1 - c.b2) * g * g;
            p[i] -= c.lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c.eps);
        }
    }
    free(m);
    free(v);
}

static void check_adam(gf_dtype dt, adam_cfg c, int64_t n) {
    const int steps = 5;
    gf_tensor *p = series(ctx, dt, n, 0);
    gf_tensor *m = gf_persist(gf_zeros(ctx, dt, 1, (int64_t[]){n}));
    gf_tensor *v = gf_persist(gf_zeros(ctx, dt, 1, (int64_t[]){n}));
    for (int t = 1; t <= steps; t++) {
        gf_scope_begin(ctx);
        gf_tensor *g = series(ctx, dt, n, 10 + t);
        GF_OK_OR_FAIL(ctx, gf_adam_step_(p, g, m, v, c.lr, c.b1, c.b2, c.eps, c.wd,
                                         c.decoupled, t));
        gf_release(g);
        gf_scope_end(ctx);
    }
    double *want = malloc(sizeof(double) * (size_t)n);
    adam_ref(c, n, steps, want);
    if (dt == GF_F64) expect_close(p, want, 1e-13, 1e-12, "adam f64");
    else expect_close(p, want, 2e-6, 1e-5, "adam f32");
    free(want);
    gf_release(p);
    gf_release(m);
    gf_release(v);
}

static const adam_cfg ADAM = {.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8};

Test(optim_ops, adam_matches_reference) {
    for (int d = 0; d < 2; d++) {
        gf_dtype dt = d ? GF_F64 : GF_F32;
        check_adam(dt, ADAM, 37);
        check_adam(dt, (adam_cfg){.lr = 0.05, .b1 = 0.5, .b2 = 0.6, .eps = 1e-3}, 37);
        check_adam(dt, (adam_cfg){.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8, .wd = 0.1},
                   37);
        check_adam(dt, (adam_cfg){.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8, .wd = 0.1,
                                  .decoupled = true},
                   37);
        /* Large enough for the parallel loop. */
        check_adam(dt, (adam_cfg){.lr = 0.01, .b1 = 0.9, .b2 = 0.99, .eps = 1e-8, .wd = 0.01},
                   100003);
    }
}

/* nn/optim.c's former op sequence for one Adam step (the bits the fused op
 * must reproduce). */
static void adam_ops(adam_cfg c, gf_tensor *p, gf_tensor *g, gf_tensor *m, gf_tensor *v,
                     int64_t t) {
    gf_scope_begin(ctx);
    if (c.wd != 0) {
        if (c.decoupled) GF_OK_OR_FAIL(ctx, gf_mul_scalar_(p, 1 - c.lr * c.wd));
        else g = gf_add(g, gf_mul_scalar(p, c.wd));
    }
    GF_OK_OR_FAIL(ctx, gf_mul_scalar_(m, c.b1));
    GF_OK_OR_FAIL(ctx, gf_axpy_(m, 1 - c.b1, g));
    GF_OK_OR_FAIL(ctx, gf_mul_scalar_(v, c.b2));
    GF_OK_OR_FAIL(ctx, gf_axpy_(v, 1 - c.b2, gf_mul(g, g)));
    double bc1 = 1 - pow(c.b1, (double)t), bc2 = 1 - pow(c.b2, (double)t);
    gf_tensor *denom = gf_add_scalar(gf_mul_scalar(gf_sqrt(v), 1 / sqrt(bc2)), c.eps);
    GF_OK_OR_FAIL(ctx, gf_axpy_(p, -c.lr / bc1, gf_div(m, denom)));
    gf_scope_end(ctx);
}

static void check_adam_bits(gf_dtype dt, adam_cfg c, int64_t n) {
    gf_tensor *p[2], *m[2], *v[2];
    for (int k = 0; k < 2; k++) {
        p[k] = series(ctx, dt, n, 0);
        m[k] = gf_persist(gf_zeros(ctx, dt, 1, (int64_t[]){n}));
        v[k] = gf_persist(gf_zeros(ctx, dt, 1, (int64_t[]){n}));
    }
    for (int t = 1; t <= 4; t++) {
        gf_tensor *g = series(ctx, dt, n, 20 + t);
        GF_OK_OR_FAIL(ctx, gf_adam_step_(p[0], g, m[0], v[0], c.lr, c.b1, c.b2, c.eps, c.wd,
                                         c.decoupled, t));
        adam_ops(c, p[1], g, m[1], v[1], t);
        gf_release(g);
    }
    expect_same_bits(p[0], p[1], "adam p");
    expect_same_bits(m[0], m[1], "adam m");
    expect_same_bits(v[0], v[1], "adam v");
    for (int k = 0; k < 2; k++) gf_release(p[k]), gf_release(m[k]), gf_release(v[k]);
}

Test(optim_ops, adam_same_bits_as_the_op_sequence) {
    for (int d = 0; d < 2; d++) {
        gf_dtype dt = d ? GF_F64 : GF_F32;
        check_adam_bits(dt, ADAM, 1000);
        check_adam_bits(dt, (adam_cfg){.lr = 0.1, .b1 = 0.8, .b2 = 0.9, .eps = 1e-6, .wd = 0.3},
                        1000);
        check_adam_bits(dt, (adam_cfg){.lr = 0.1, .b1 = 0.8, .b2 = 0.9, .eps = 1e-6, .wd = 0.3,
                                       .decoupled = true},
                        70001);
    }
}

/* ------------------------------------------------------------------ SGD */

typedef struct {
    double lr, mom, damp, wd;
    bool nesterov;
} sgd_cfg;

static void sgd_ref(sgd_cfg c, int64_t n, int steps, double *p) {
    double *buf = calloc((size_t)n, sizeof *buf);
    for (int64_t i = 0; i < n; i++) p[i] = val(0, i);
    for (int t = 1; t <= steps; t++)
        for (int64_t i = 0; i < n; i++) {
            double d = val(10 + t, i);
            if (c.wd != 0) d += c.wd * p[i];
            if (c.mom != 0) {
                buf[i] = t == 1 ? d : c.mom * buf[i] + (1 - c.damp) * d;
                d = c.nesterov ? d + c.mom * buf[i] : buf[i];
            }
            p[i] -= c.lr * d;
        }
    free(buf);
}

static void check_sgd(gf_dtype dt, sgd_cfg c, int64_t n) {
    const int steps = 5;
    gf_tensor *p = series(ctx, dt, n, 0);
    /* Garbage in the buffer: the first step must overwrite it. */
    gf_tensor *buf = c.mom != 0 ? gf_persist(gf_full(ctx, dt, 1, (int64_t[]){n}, 123.0)) : NULL;
    for (int t = 1; t <= steps; t++) {
        gf_tensor *g = series(ctx, dt, n, 10 + t);
        GF_OK_OR_FAIL(ctx, gf_sgd_step_(p, g, buf, c.lr, c.mom, c.damp, c.wd, c.nesterov,
                                        t == 1));
        gf_release(g);
    }
    double *want = malloc(sizeof(double) * (size_t)n);
    sgd_ref(c, n, steps, want);
    if (dt == GF_F64) expect_close(p, want, 1e-13, 1e-12, "sgd f64");
    else expect_close(p, want, 2e-6, 1e-5, "sgd f32");
    free(want);
    gf_release(p);
    gf_release(buf);
}

Test(optim_ops, sgd_matches_reference) {
    const sgd_cfg cfgs[] = {
        {.lr = 0.1},
        {.lr = 0.1, .wd = 0.01},
        {.lr = 0.1, .mom = 0.9},
        {.lr = 0.05, .mom = 0.8, .damp = 0.3},
        {.lr = 0.05, .mom = 0.8, .damp = 0.3, .wd = 0.05},
        {.lr = 0.1, .mom = 0.9, .nesterov = true},
        {.lr = 0.1, .mom = 0.5, .wd = 0.1, .nesterov = true},
    };
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof cfgs / sizeof *cfgs; k++) {
            check_sgd(d ? GF_F64 : GF_F32, cfgs[k], 41);
            check_sgd(d ? GF_F64 : GF_F32, cfgs[k], 70001);
        }
}

static void sgd_ops(sgd_cfg c, gf_tensor *p, gf_tensor *g, gf_tensor *buf, bool first) {
    gf_scope_begin(ctx);
    gf_tensor *d = g;
    if (c.wd != 0) d = gf_add(g, gf_mul_scalar(p, c.wd));
    if (c.mom != 0) {
        if (first) GF_OK_OR_FAIL(ctx, gf_copy_(buf, d));
        else {
            GF_OK_OR_FAIL(ctx, gf_mul_scalar_(buf, c.mom));
            GF_OK_OR_FAIL(ctx, gf_axpy_(buf, 1 - c.damp, d));
        }
        d = c.nesterov ? gf_add(d, gf_mul_scalar(buf, c.mom)) : buf;
    }
    GF_OK_OR_FAIL(ctx, gf_axpy_(p, -c.lr, d));
    gf_scope_end(ctx);
}

Test(optim_ops, sgd_same_bits_as_the_op_sequence) {
    const sgd_cfg cfgs[] = {
        {.lr = 0.1, .wd = 0.01},
        {.lr = 0.05, .mom = 0.8, .damp = 0.3, .wd = 0.05},
        {.lr = 0.1, .mom = 0.5, .wd = 0.1, .nesterov = true},
    };
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof cfgs / sizeof *cfgs; k++) {
            gf_dtype dt = d ? GF_F64 : GF_F32;
            const int64_t n = 1001;
            gf_tensor *p[2], *b[2];
            for (int j = 0; j < 2; j++) {
                p[j] = series(ctx, dt, n, 0);
                b[j] = gf_persist(gf_zeros(ctx, dt, 1, (int64_t[]){n}));
            }
            for (int t = 1; t <= 4; t++) {
                gf_tensor *g = series(ctx, dt, n, 30 + t);
                sgd_cfg c = cfgs[k];
                GF_OK_OR_FAIL(ctx, gf_sgd_step_(p[0], g, b[0], c.lr, c.mom, c.damp, c.wd,
                                                c.nesterov, t == 1));
                sgd_ops(c, p[1], g, b[1], t == 1);
                gf_release(g);
            }
            expect_same_bits(p[0], p[1], "sgd p");
            if (cfgs[k].mom != 0) expect_same_bits(b[0], b[1], "sgd buf");
            for (int j = 0; j < 2; j++) gf_release(p[j]), gf_release(b[j]);
        }
}

/* --------------------------------------------------------------- threads */

Test(optim_ops, same_bits_for_one_and_two_threads) {
    const int64_t n = 300007;
    gf_tensor *res[2][3];
    gf_engine *engs[2];
    gf_ctx *ctxs[2];
    for (int k = 0; k < 2; k++) {
        engs[k] = gf_engine_create(&(gf_engine_opts){.num_threads = k + 1});
        cr_assert_not_null(engs[k]);
        ctxs[k] = gf_ctx_create(engs[k]);
        gf_ctx *c = ctxs[k];
        gf_tensor *p = series(c, GF_F32, n, 0), *q = series(c, GF_F64, n, 0);
        gf_tensor *m = gf_persist(gf_zeros(c, GF_F32, 1, (int64_t[]){n}));
        gf_tensor *v = gf_persist(gf_zeros(c, GF_F32, 1, (int64_t[]){n}));
        gf_tensor *b = gf_persist(gf_zeros(c, GF_F64, 1, (int64_t[]){n}));
        for (int t = 1; t <= 3; t++) {
            gf_tensor *g = series(c, GF_F32, n, t), *h = series(c, GF_F64, n, t);
            GF_OK_OR_FAIL(c, gf_adam_step_(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0.1, false, t));
            GF_OK_OR_FAIL(c, gf_sgd_step_(q, h, b, 0.1, 0.9, 0.1, 0.01, false, t == 1));
            gf_release(g);
            gf_release(h);
        }
        res[k][0] = p, res[k][1] = m, res[k][2] = q;
    }
    for (int j = 0; j < 3; j++) {
        int64_t nb = n * (gf_dtype_of(res[0][j]) == GF_F32 ? 4 : 8);
        const void *a = gf_dtype_of(res[0][j]) == GF_F32 ? (const void *)gf_data_f32(res[0][j])
                                                         : (const void *)gf_data_f64(res[0][j]);
        const void *b = gf_dtype_of(res[1][j]) == GF_F32 ? (const void *)gf_data_f32(res[1][j])
                                                         : (const void *)gf_data_f64(res[1][j]);
        cr_assert(memcmp(a, b, (size_t)nb) == 0, "tensor %d differs between 1 and 2 threads", j);
    }
    for (int k = 0; k < 2; k++) {
        gf_ctx_destroy(ctxs[k]);
        gf_engine_destroy(engs[k]);
    }
}

/* ------------------------------------------------------- views, ordering */

Test(optim_ops, strided_views_match_contiguous) {
    /* p is the transpose of a [5,4] tensor; the state is contiguous [4,5]. */
    double base[20];
    for (int i = 0; i < 20; i++) base[i] = val(0, i);
    for (int d = 0; d < 2; d++) {
        gf_tensor *pb = gf_to_dtype(gf_tensor_f64(ctx, 2, (int64_t[]){5, 4}, base),
                                    d ? GF_F64 : GF_F32);
        gf_tensor *pt = gf_transpose(pb, 0, 1);
        gf_tensor *pc = gf_contiguous(gf_transpose(pb, 0, 1));
        gf_tensor *pc2 = gf_clone(pc);
        cr_assert(!gf_is_contiguous(pt));
        gf_dtype dt = gf_dtype_of(pt);
        const int64_t sh[2] = {4, 5};
        gf_tensor *m1 = gf_zeros(ctx, dt, 2, sh), *v1 = gf_zeros(ctx, dt, 2, sh);
        gf_tensor *m2 = gf_zeros(ctx, dt, 2, sh), *v2 = gf_zeros(ctx, dt, 2, sh);
        gf_tensor *b1 = gf_zeros(ctx, dt, 2, sh), *b2 = gf_zeros(ctx, dt, 2, sh);
        gf_tensor *q1 = gf_clone(pc);
        gf_tensor *qt = gf_transpose(gf_clone(pb), 0, 1);
        for (int t = 1; t <= 3; t++) {
            gf_tensor *g = gf_full(ctx, dt, 2, sh, 0.1 * t);
            g = gf_add(g, gf_mul_scalar(pc2, 0.5)); /* varies by element */
            GF_OK_OR_FAIL(ctx, gf_adam_step_(pt, g, m1, v1, 0.01, 0.9, 0.999, 1e-8, 0.1, true, t));
            GF_OK_OR_FAIL(ctx, gf_adam_step_(pc, g, m2, v2, 0.01, 0.9, 0.999, 1e-8, 0.1, true, t));
            GF_OK_OR_FAIL(ctx, gf_sgd_step_(qt, g, b1, 0.1, 0.9, 0, 0.1, true, t == 1));
            GF_OK_OR_FAIL(ctx, gf_sgd_step_(q1, g, b2, 0.1, 0.9, 0, 0.1, true, t == 1));
        }
        expect_same_bits(gf_contiguous(pt), pc, "strided adam p");
        expect_same_bits(m1, m2, "strided adam m");
        expect_same_bits(gf_contiguous(qt), q1, "strided sgd p");
        /* The base tensor saw the writes through the view. */
        expect_same_bits(gf_contiguous(gf_transpose(pb, 0, 1)), pc, "base of the view");
    }
}

Test(optim_ops, pending_readers_of_the_state_run_first) {
    /* Lazy reads of p, m and v recorded before the step see the old values. */
    gf_tensor *p = series(ctx, GF_F64, 8, 0), *g = series(ctx, GF_F64, 8, 1);
    gf_tensor *m = gf_full(ctx, GF_F64, 1, (int64_t[]){8}, 0.5);
    gf_tensor *v = gf_full(ctx, GF_F64, 1, (int64_t[]){8}, 0.25);
    gf_tensor *b = gf_full(ctx, GF_F64, 1, (int64_t[]){8}, 2.0);
    gf_tensor *rp = gf_mul_scalar(p, 1.0), *rm = gf_mul_scalar(m, 1.0);
    gf_tensor *rv = gf_mul_scalar(v, 1.0), *rb = gf_mul_scalar(b, 1.0);
    double *p0 = values(p);
    GF_OK_OR_FAIL(ctx, gf_adam_step_(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0, false, 3));
    expect_close(rp, p0, 0, 0, "reader of p");
    double w[8];
    for (int i = 0; i < 8; i++) w[i] = 0.5;
    expect_close(rm, w, 0, 0, "reader of m");
    for (int i = 0; i < 8; i++) w[i] = 0.25;
    expect_close(rv, w, 0, 0, "reader of v");
    GF_OK_OR_FAIL(ctx, gf_sgd_step_(p, g, b, 0.1, 0.9, 0, 0, false, false));
    for (int i = 0; i < 8; i++) w[i] = 2.0;
    expect_close(rb, w, 0, 0, "reader of buf");
    /* And the step itself used the state's values (m written as computed). */
    double *gv = values(g), *mv = values(m);
    for (int i = 0; i < 8; i++)
        cr_assert(fabs(mv[i] - (0.9 * 0.5 + 0.1 * gv[i])) < 1e-15, "m[%d] = %g", i, mv[i]);
    free(gv), free(mv), free(p0);
}

Test(optim_ops, leaf_parameters_need_no_grad) {
    gf_tensor *p = gf_requires_grad(series(ctx, GF_F32, 6, 0), true);
    gf_tensor *g = series(ctx, GF_F32, 6, 1);
    gf_tensor *m = gf_zeros(ctx, GF_F32, 1, (int64_t[]){6});
    gf_tensor *v = gf_zeros(ctx, GF_F32, 1, (int64_t[]){6});
    cr_assert_eq(gf_adam_step_(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0, false, 1), GF_ESTATE);
    gf_test_expect_error(ctx, "gf_adam_step_: a leaf tensor [6] that requires grad");
    gf_ctx_clear_error(ctx);
    cr_assert_eq(gf_sgd_step_(p, g, NULL, 0.1, 0, 0, 0, false, false), GF_ESTATE);
    gf_test_expect_error(ctx, "gf_sgd_step_");
    gf_ctx_clear_error(ctx);
    gf_no_grad_begin(ctx);
    GF_OK_OR_FAIL(ctx, gf_adam_step_(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0, false, 1));
    GF_OK_OR_FAIL(ctx, gf_sgd_step_(p, g, NULL, 0.1, 0, 0, 0, false, false));
    gf_no_grad_end(ctx);
}

Test(optim_ops, gradient_of_another_dtype_is_converted) {
    gf_tensor *p1 = series(ctx, GF_F32, 9, 0), *p2 = series(ctx, GF_F32, 9, 0);
    gf_tensor *g32 = series(ctx, GF_F32, 9, 1), *g64 = gf_to_dtype(g32, GF_F64);
    gf_tensor *m1 = gf_zeros(ctx, GF_F32, 1, (int64_t[]){9}), *v1 = gf_zeros_like(m1);
    gf_tensor *m2 = gf_zeros_like(m1), *v2 = gf_zeros_like(m1);
    GF_OK_OR_FAIL(ctx, gf_adam_step_(p1, g32, m1, v1, 0.01, 0.9, 0.999, 1e-8, 0.1, false, 1));
    GF_OK_OR_FAIL(ctx, gf_adam_step_(p2, g64, m2, v2, 0.01, 0.9, 0.999, 1e-8, 0.1, false, 1));
    expect_same_bits(p1, p2, "p");
    GF_OK_OR_FAIL(ctx, gf_sgd_step_(p1, g32, NULL, 0.1, 0, 0, 0, false, false));
    GF_OK_OR_FAIL(ctx, gf_sgd_step_(p2, g64, NULL, 0.1, 0, 0, 0, false, false));
    expect_same_bits(p1, p2, "p after sgd");
}

Test(optim_ops, empty_and_scalar_tensors) {
    gf_tensor *e = gf_zeros(ctx, GF_F64, 1, (int64_t[]){0});
    GF_OK_OR_FAIL(ctx, gf_adam_step_(e, gf_zeros_like(e), gf_zeros_like(e), gf_zeros_like(e),
                                     0.1, 0.9, 0.999, 1e-8, 0, false, 1));
    gf_tensor *s = gf_scalar(ctx, GF_F64, 1.0), *g = gf_scalar(ctx, GF_F64, 2.0);
    gf_tensor *b = gf_scalar(ctx, GF_F64, 0.0);
    GF_OK_OR_FAIL(ctx, gf_sgd_step_(s, g, b, 0.1, 0.5, 0, 0, false, true));
    expect_close(s, (double[]){1.0 - 0.1 * 2.0}, 1e-15, 0, "scalar p");
    expect_close(b, (double[]){2.0}, 0, 0, "scalar buf");
}

/* ---------------------------------------------------------------- errors */

Test(optim_ops, errors) {
    gf_tensor *p = series(ctx, GF_F32, 4, 0), *g = series(ctx, GF_F32, 4, 1);
    gf_tensor *m = gf_zeros_like(p), *v = gf_zeros_like(p);
    gf_tensor *g3 = series(ctx, GF_F32, 3, 1);
    gf_tensor *m64 = gf_zeros(ctx, GF_F64, 1, (int64_t[]){4});
    gf_tensor *pi = gf_arange(ctx, GF_I64, 4);

    cr_assert_eq(gf_adam_step_(NULL, NULL, NULL, NULL, 0.1, 0.9, 0.999, 1e-8, 0, false, 1),
                 GF_EINVAL);
    cr_assert_eq(gf_adam_step_(p, g, NULL, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 1), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam_step_: m is NULL");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_adam_step_(p, g3, m, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 1), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_adam_step_: g has shape [3] but p has shape [4]");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_adam_step_(p, g, m64, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 1), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam_step_: m is f64 but p is f32");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_adam_step_(pi, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 1), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam_step_: p is i64 (expected f32 or f64)");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_adam_step_(p, g, m, m, 0.1, 0.9, 0.999, 1e-8, 0, false, 1), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam_step_: m and v share storage");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_adam_step_(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 0), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam_step_: step 0");
    gf_ctx_clear_error(ctx);

    gf_ctx *other = gf_ctx_create(NULL);
    gf_tensor *go = series(other, GF_F32, 4, 1);
    cr_assert_eq(gf_adam_step_(p, go, m, v, 0.1, 0.9, 0.999, 1e-8, 0, false, 1), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam_step_: g belongs to another ctx");
    gf_ctx_clear_error(ctx);
    gf_ctx_destroy(other);

    cr_assert_eq(gf_sgd_step_(p, g, NULL, 0.1, 0.9, 0, 0, false, true), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_sgd_step_: buf is NULL with momentum 0.9");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_sgd_step_(p, g3, NULL, 0.1, 0, 0, 0, false, false), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_sgd_step_: g has shape [3] but p has shape [4]");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_sgd_step_(p, g, g3, 0.1, 0.9, 0, 0, false, false), GF_ESHAPE);
    gf_test_expect_error(ctx, "gf_sgd_step_: buf has shape [3]");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_sgd_step_(p, g, p, 0.1, 0.9, 0, 0, false, false), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_sgd_step_: p and buf share storage");
    gf_ctx_clear_error(ctx);

    cr_assert_eq(gf_sgd_step_(NULL, g, NULL, 0.1, 0, 0, 0, false, false), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_sgd_step_: p is NULL");
    gf_ctx_clear_error(ctx);

    /* Nothing was written by the failed calls. */
    double *pv = values(p);
    for (int i = 0; i < 4; i++) cr_assert_eq(pv[i], (double)(float)val(0, i));
    free(pv);
}
