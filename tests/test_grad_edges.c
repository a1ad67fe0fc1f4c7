/*
 * test_grad_edges.c - gradients at edge values (0^0, +-0, +-inf, NaN, an
 * infinite or NaN upstream gradient) against PyTorch 1.13: pow (both
 * inputs), pow_scalar at the exponents torch special-cases, relu, sqrt,
 * abs, gelu, sigmoid, tanh, and linear_act's fused relu. First derivatives
 * by a plain backward (the fused kernels) and with create_graph (the
 * composed rules), second derivatives of the composed rules (with respect
 * to the inputs and to the upstream gradient); f32 and f64, lazy and eager;
 * strided and broadcast operands; pow_scalar's forward at the exponents
 * torch computes without pow; the errors of zero_where, the internal op
 * the fixed rules are built from. The expected values are literals printed by torch 1.13 for the
 * expression named above each case, with x, y and g as given (float64 and
 * float32 printed the same values at every point here).
 */
#include "common.h"

#include <stdbool.h>

#include "../ops/ops.h" /* gf__zero_where (internal) */
#include "gradflow/nn.h"

#define MAXN 12
typedef struct {
    const char *op;
    double p;    /* pow_scalar's exponent */
    int n;
    bool second; /* torch's gradient has a graph: second derivatives checked */
    double x[MAXN], y[MAXN], g[MAXN];
    double gx[MAXN], gy[MAXN];                /* d out/dx, d out/dy, weighted by g */
    double gxx[MAXN], gxy[MAXN], gxg[MAXN];   /* d gx/dx, d gx/dy, d gx/dg */
    double gyx[MAXN], gyy[MAXN], gyg[MAXN];   /* d gy/dx, d gy/dy, d gy/dg */
} edge_case;

static const edge_case CASES[] = {
    /* torch.autograd.grad(torch.pow(x, y), x, y, g, create_graph=True) */
    {"pow", 0.0, 12, true,
     .x = {0.0, -0.0, 0.0, 0.0, 0.0, 0.0, -2.0, -2.0, 1.0, NAN, INFINITY, 0.0},
     .y = {0.0, 0.0, 2.0, 0.5, -1.0, -0.5, 0.5, 2.0, 0.0, 0.0, 0.0, 0.0},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, NAN},
     .gx = {0.0, 0.0, 0.0, INFINITY, -INFINITY, -INFINITY, NAN, -4.0, 0.0, 0.0, 0.0, 0.0},
     .gy = {0.0, 0.0, 0.0, 0.0, -INFINITY, -INFINITY, NAN, NAN, 0.0, NAN, INFINITY, NAN},
     .gxx = {NAN, NAN, 2.0, -INFINITY, INFINITY, INFINITY, NAN, 2.0, -0.0, NAN, -0.0, NAN},
     .gxy = {NAN, NAN, 0.0, NAN, INFINITY, INFINITY, NAN, NAN, 0.0, NAN, NAN, NAN},
     .gxg = {NAN, NAN, 0.0, INFINITY, -INFINITY, -INFINITY, NAN, -4.0, 0.0, NAN, 0.0, NAN},
     .gyx = {NAN, NAN, NAN, NAN, INFINITY, INFINITY, NAN, NAN, 1.0, NAN, 0.0, NAN},
     .gyy = {NAN, NAN, NAN, NAN, INFINITY, INFINITY, NAN, NAN, 0.0, NAN, INFINITY, NAN},
     .gyg = {0.0, 0.0, 0.0, 0.0, -INFINITY, -INFINITY, NAN, NAN, 0.0, NAN, INFINITY, 0.0},
    },
    /* torch.autograd.grad(torch.pow(x, 0.5), x, g, create_graph=True) */
    {"pow_scalar", 0.5, 6, true,
     .x = {-INFINITY, -0.0, 0.0, INFINITY, NAN, 4.0},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0},
     .gx = {NAN, -INFINITY, INFINITY, 0.0, NAN, 0.25},
     .gxx = {-0.0, -INFINITY, -INFINITY, -0.0, NAN, -0.03125},
     .gxg = {NAN, -INFINITY, INFINITY, 0.0, NAN, 0.25},
    },
    /* torch.autograd.grad(torch.pow(x, 0.0), x, g) */
    {"pow_scalar", 0.0, 5, false,
     .x = {-INFINITY, -0.0, 0.0, NAN, 3.0},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0},
     .gx = {0.0, 0.0, 0.0, 0.0, 0.0},
    },
    /* torch.autograd.grad(torch.pow(x, 1.0), x, g, create_graph=True) */
    {"pow_scalar", 1.0, 5, true,
     .x = {-INFINITY, -0.0, 0.0, NAN, 3.0},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0},
     .gx = {1.0, 1.0, 1.0, 1.0, 1.0},
     .gxx = {0.0, 0.0, 0.0, 0.0, 0.0},
     .gxg = {1.0, 1.0, 1.0, 1.0, 1.0},
    },
    /* torch.autograd.grad(torch.pow(x, 2.0), x, g, create_graph=True) */
    {"pow_scalar", 2.0, 4, true,
     .x = {-0.0, 0.0, -INFINITY, NAN},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {-0.0, 0.0, -INFINITY, NAN},
     .gxx = {2.0, 2.0, 2.0, 2.0},
     .gxg = {-0.0, 0.0, -INFINITY, NAN},
    },
    /* torch.autograd.grad(torch.pow(x, -1.0), x, g, create_graph=True) */
    {"pow_scalar", -1.0, 4, true,
     .x = {-0.0, 0.0, -INFINITY, INFINITY},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {-INFINITY, -INFINITY, -0.0, -0.0},
     .gxx = {-INFINITY, INFINITY, -0.0, 0.0},
     .gxg = {-INFINITY, -INFINITY, -0.0, -0.0},
    },
    /* torch.autograd.grad(torch.pow(x, -0.5), x, g, create_graph=True) */
    {"pow_scalar", -0.5, 5, true,
     .x = {-0.0, 0.0, -INFINITY, INFINITY, 4.0},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0},
     .gx = {-INFINITY, -INFINITY, -0.0, -0.0, -0.0625},
     .gxx = {INFINITY, INFINITY, 0.0, 0.0, 0.0234375},
     .gxg = {-INFINITY, -INFINITY, -0.0, -0.0, -0.0625},
    },
    /* torch.autograd.grad(torch.pow(x, -2.0), x, g, create_graph=True) */
    {"pow_scalar", -2.0, 4, true,
     .x = {-0.0, 0.0, -INFINITY, 2.0},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {INFINITY, -INFINITY, 0.0, -0.25},
     .gxx = {INFINITY, INFINITY, 0.0, 0.375},
     .gxg = {INFINITY, -INFINITY, 0.0, -0.25},
    },
    /* torch.autograd.grad(torch.relu(x), x, g, create_graph=True) */
    {"relu", 0.0, 8, true,
     .x = {NAN, -0.0, 0.0, -INFINITY, INFINITY, -1.0, 2.0, -1.0},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0, INFINITY, 1.0, NAN},
     .gx = {1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0},
     .gxx = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
     .gxg = {1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0},
    },
    /* torch.autograd.grad(torch.sqrt(x), x, g, create_graph=True) */
    {"sqrt", 0.0, 4, true,
     .x = {-0.0, 0.0, INFINITY, -INFINITY},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {-INFINITY, INFINITY, 0.0, NAN},
     .gxx = {INFINITY, -INFINITY, -0.0, NAN},
     .gxg = {-INFINITY, INFINITY, 0.0, NAN},
    },
    /* torch.autograd.grad(torch.abs(x), x, g, create_graph=True) */
    {"abs", 0.0, 5, true,
     .x = {-0.0, 0.0, NAN, -INFINITY, INFINITY},
     .g = {1.0, 1.0, 1.0, 1.0, 1.0},
     .gx = {0.0, 0.0, 0.0, -1.0, 1.0},
     .gxx = {0.0, 0.0, 0.0, 0.0, 0.0},
     .gxg = {0.0, 0.0, 0.0, -1.0, 1.0},
    },
    /* torch.autograd.grad(torch.nn.functional.gelu(x), x, g) */
    {"gelu", 0.0, 4, false,
     .x = {-INFINITY, INFINITY, -0.0, 0.0},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {NAN, NAN, 0.5, 0.5},
    },
    /* torch.autograd.grad(torch.sigmoid(x), x, g, create_graph=True) */
    {"sigmoid", 0.0, 4, true,
     .x = {-INFINITY, INFINITY, -0.0, 0.0},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {0.0, 0.0, 0.25, 0.25},
     .gxx = {0.0, -0.0, 0.0, 0.0},
     .gxg = {0.0, 0.0, 0.25, 0.25},
    },
    /* torch.autograd.grad(torch.tanh(x), x, g, create_graph=True) */
    {"tanh", 0.0, 4, true,
     .x = {-INFINITY, INFINITY, -0.0, 0.0},
     .g = {1.0, 1.0, 1.0, 1.0},
     .gx = {0.0, 0.0, 1.0, 1.0},
     .gxx = {0.0, -0.0, 0.0, -0.0},
     .gxg = {0.0, 0.0, 1.0, 1.0},
    },
};
#define NCASES (int)(sizeof CASES / sizeof *CASES)

static bool is_pow(const edge_case *c) { return strcmp(c->op, "pow") == 0; }

static gf_tensor *apply(const edge_case *c, gf_tensor *x, gf_tensor *y) {
    const char *op = c->op;
    if (is_pow(c)) return gf_pow(x, y);
    if (!strcmp(op, "pow_scalar")) return gf_pow_scalar(x, c->p);
    if (!strcmp(op, "relu")) return gf_relu(x);
    if (!strcmp(op, "sqrt")) return gf_sqrt(x);
    if (!strcmp(op, "abs")) return gf_abs(x);
    if (!strcmp(op, "gelu")) return gf_gelu(x);
    if (!strcmp(op, "sigmoid")) return gf_sigmoid(x);
    if (!strcmp(op, "tanh")) return gf_tanh(x);
    cr_assert_fail("unknown op %s", op);
    return NULL;
}

/* A 1-D tensor of dtype dt with the n values (a leaf). */
static gf_tensor *vec(gf_ctx *ctx, gf_dtype dt, const double *v, int n, bool rg) {
    int64_t sh[1] = {n};
    gf_tensor *t;
    if (dt == GF_F64) {
        t = gf_tensor_f64(ctx, 1, sh, v);
    } else {
        float f[MAXN];
        for (int i = 0; i < n; i++) f[i] = (float)v[i];
        t = gf_tensor_f32(ctx, 1, sh, f);
    }
    return GF_T(ctx, gf_requires_grad(t, rg));
}

/* As torch prints them: both NaN, or the same value with the same sign. */
static bool same(double got, double want) {
    if (isnan(want)) return isnan(got);
    return got == want && signbit(got) == signbit(want);
}

typedef struct {
    const edge_case *c;
    gf_dtype dt;
    bool eager;
    const char *how; /* "plain", "create_graph" */
} where_t;

static void expect(gf_tensor *t, const double *want, const char *what, where_t w) {
    gf_ctx *ctx = gf_ctx_of(GF_T(gf_ctx_of(t), t));
    const edge_case *c = w.c;
    double got[MAXN];
    GF_OK_OR_FAIL(ctx, gf_copy_to_f64(t, got, c->n));
    for (int i = 0; i < c->n; i++)
        cr_assert(same(got[i], want[i]),
                  "%s (p %g) %s %s %s, %s at element %d (x %g, y %g, g %g): got %g, torch %g",
                  c->op, c->p, gf_dtype_name(w.dt), w.eager ? "eager" : "lazy", w.how, what, i,
                  c->x[i], c->y[i], c->g[i], got[i], want[i]);
}

/* First derivatives the plain way: the fused backward kernels where the
 * rule has one (g does not require grad, grad mode is off). */
static void check_plain(gf_ctx *ctx, where_t w) {
    const edge_case *c = w.c;
    int k = is_pow(c) ? 2 : 1;
    gf_tensor *in[2] = {vec(ctx, w.dt, c->x, c->n, true), NULL}, *gr[2] = {NULL, NULL};
    if (k == 2) in[1] = vec(ctx, w.dt, c->y, c->n, true);
    gf_tensor *z = GF_T(ctx, apply(c, in[0], in[1]));
    gf_tensor *g = vec(ctx, w.dt, c->g, c->n, false);
    GF_OK_OR_FAIL(ctx, gf_grad_of(z, k, in, gr, &(gf_backward_opts){.grad_output = g}));
    expect(gr[0], c->gx, "d/dx", w);
    if (k == 2) expect(gr[1], c->gy, "d/dy", w);
}

/* First derivatives with create_graph (the composed rules; g requires
 * grad), then each first derivative differentiated again with respect to
 * x, y and g, as torch.autograd.grad(first, (x, y, g), ones). */
static void check_create_graph(gf_ctx *ctx, where_t w) {
    const edge_case *c = w.c;
    int k = is_pow(c) ? 2 : 1;
    gf_tensor *all[3] = {vec(ctx, w.dt, c->x, c->n, true), NULL, NULL};
    if (k == 2) all[1] = vec(ctx, w.dt, c->y, c->n, true);
    gf_tensor *g = vec(ctx, w.dt, c->g, c->n, true);
    all[k] = g;
    gf_tensor *z = GF_T(ctx, apply(c, all[0], all[1])), *gr[2] = {NULL, NULL};
    gf_backward_opts o = {.grad_output = g, .create_graph = true};
    GF_OK_OR_FAIL(ctx, gf_grad_of(z, k, all, gr, &o));
    expect(gr[0], c->gx, "d/dx", w);
    if (k == 2) expect(gr[1], c->gy, "d/dy", w);
    if (!c->second) return;
    const double *want[2][3] = {{c->gxx, k == 2 ? c->gxy : c->gxg, c->gxg},
                                {c->gyx, c->gyy, c->gyg}};
    static const char *const names[2][3] = {{"d2/dx2", "d2/dxdy", "d(d/dx)/dg"},
                                            {"d2/dydx", "d2/dy2", "d(d/dy)/dg"}};
    for (int j = 0; j < k; j++) {
        gf_tensor *g2[3] = {NULL, NULL, NULL};
        gf_backward_opts o2 = {.grad_output = gf_ones_like(gr[j]), .retain_graph = true};
        GF_OK_OR_FAIL(ctx, gf_grad_of(gr[j], k + 1, all, g2, &o2));
        for (int i = 0; i <= k; i++)
            expect(g2[i], want[j][i], k == 2 ? names[j][i] : (i ? "d(d/dx)/dg" : "d2/dx2"), w);
    }
}

Test(grad_edges, every_case_matches_torch_plain_and_create_graph) {
    for (int e = 0; e < 2; e++) {
        gf_ctx *ctx = gf_ctx_create(NULL);
        gf_ctx_set_eager(ctx, e);
        for (int i = 0; i < NCASES; i++)
            for (int d = 0; d < 2; d++) {
                gf_scope_begin(ctx);
                where_t w = {&CASES[i], d ? GF_F32 : GF_F64, e, "plain"};
                check_plain(ctx, w);
                w.how = "create_graph";
                check_create_graph(ctx, w);
                gf_scope_end(ctx);
            }
        cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
        gf_ctx_destroy(ctx);
    }
}

/* The same values through a strided (transposed) and a broadcast operand,
 * which take the kernels' row-by-row paths: relu's fused and zero_where's
 * kernels, and pow's exponent broadcast over the base. */
Test(grad_edges, strided_and_broadcast_operands) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    /* relu at [NaN, -0; 0, -inf] seen transposed, g = [1, inf; 2, NaN]:
     * torch.autograd.grad(torch.relu(x.t()), x, g) = [[1, 0], [0, 0]] */
    for (int d = 0; d < 2; d++)
        for (int cg = 0; cg < 2; cg++) {
            gf_scope_begin(ctx);
            gf_dtype dt = d ? GF_F32 : GF_F64;
            gf_tensor *x = vec(ctx, dt, (double[]){NAN, -0.0, 0, -INFINITY}, 4, true);
            gf_tensor *x2 = GF_T(ctx, gf_reshape(x, 2, (int64_t[]){2, 2}));
            gf_tensor *g = GF_T(ctx, gf_reshape(vec(ctx, dt, (double[]){1, INFINITY, 2, NAN}, 4,
                                                    cg), 2, (int64_t[]){2, 2}));
            gf_tensor *z = GF_T(ctx, gf_relu(gf_transpose(x2, 0, 1))), *gx = NULL;
            gf_backward_opts o = {.grad_output = g, .create_graph = cg};
            GF_OK_OR_FAIL(ctx, gf_grad_of(z, 1, &x, &gx, &o));
            where_t w = {&(edge_case){"relu (transposed)", 0, 4, false,
                                      .x = {NAN, -0.0, 0, -INFINITY}, .g = {1, 2, INFINITY, NAN}},
                         dt, false, cg ? "create_graph" : "plain"};
            expect(gx, (double[]){1, 0, 0, 0}, "d/dx", w);
            gf_scope_end(ctx);
        }
    /* pow with x = [0, 0, -0] and one exponent 0 broadcast:
     * torch.autograd.grad(torch.pow(x, y), (x, y), g) with g = [1, inf, 2]:
     * d/dx = [0, 0, 0] (masked after the product with g), d/dy = nan (masked
     * before it: inf * 0 in the sum) */
    for (int d = 0; d < 2; d++) {
        gf_scope_begin(ctx);
        gf_dtype dt = d ? GF_F32 : GF_F64;
        gf_tensor *in[2] = {vec(ctx, dt, (double[]){0, 0, -0.0}, 3, true),
                            GF_T(ctx, gf_requires_grad(gf_scalar(ctx, dt, 0), true))};
        gf_tensor *g = vec(ctx, dt, (double[]){1, INFINITY, 2}, 3, false), *gr[2] = {NULL, NULL};
        gf_tensor *z = GF_T(ctx, gf_pow(in[0], in[1]));
        GF_OK_OR_FAIL(ctx, gf_grad_of(z, 2, in, gr, &(gf_backward_opts){.grad_output = g}));
        where_t w = {&(edge_case){"pow (broadcast exponent)", 0, 3, false, .x = {0, 0, -0.0},
                                  .g = {1, INFINITY, 2}},
                     dt, false, "plain"};
        expect(gr[0], (double[]){0, 0, 0}, "d/dx", w);
        gf_test_expect_shape(gr[1], 0, NULL);
        cr_assert(isnan(gf_item(gr[1])), "pow d/dy summed over the broadcast: %g", gf_item(gr[1]));
        gf_scope_end(ctx);
    }
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    gf_ctx_destroy(ctx);
}

/* gf_linear_act's relu (the fused op and, with fusion off, the unfused
 * ops): x = [[1]], w = [[nan], [-1], [2], [0]], b = 0, g = [[1, inf, 3, inf]]:
 * torch.autograd.grad(torch.relu(F.linear(x, w, b)), b, g) = [1, 0, 3, 0]
 * (NaN passes its gradient; an inf gradient on a masked element gives 0). */
Test(grad_edges, linear_act_relu_at_nan_and_masked_inf) {
    for (int fused = 1; fused >= 0; fused--)
        for (int e = 0; e < 2; e++) {
            gf_ctx *ctx = gf_ctx_create(NULL);
            gf_ctx_set_eager(ctx, e);
            for (int d = 0; d < 2; d++)
                for (int cg = 0; cg < 2; cg++) {
                    gf_scope_begin(ctx);
                    gf_dtype dt = d ? GF_F32 : GF_F64;
                    gf_tensor *x = GF_T(ctx, gf_reshape(vec(ctx, dt, (double[]){1}, 1, false), 2,
                                                        (int64_t[]){1, 1}));
                    gf_tensor *w = GF_T(
                        ctx, gf_reshape(vec(ctx, dt, (double[]){NAN, -1, 2, 0}, 4, false), 2,
                                        (int64_t[]){4, 1}));
                    gf_tensor *b = vec(ctx, dt, (double[]){0, 0, 0, 0}, 4, true);
                    gf_tensor *g = GF_T(
                        ctx, gf_reshape(vec(ctx, dt, (double[]){1, INFINITY, 3, INFINITY}, 4, cg),
                                        2, (int64_t[]){1, 4}));
                    gf_tensor *z = NULL, *gb = NULL;
                    if (fused) {
                        z = GF_T(ctx, gf_linear_act(x, w, b, GF_ACT_RELU));
                    } else {
                        z = GF_T(ctx, gf_relu(gf_add(gf_matmul(x, gf_transpose(w, 0, 1)), b)));
                    }
                    GF_OK_OR_FAIL(ctx, gf_grad_of(z, 1, &b, &gb,
                                                  &(gf_backward_opts){.grad_output = g,
                                                                      .create_graph = cg}));
                    where_t wh = {&(edge_case){fused ? "linear_act relu" : "matmul+add+relu", 0,
                                               4, false, .x = {NAN, -1, 2, 0},
                                               .g = {1, INFINITY, 3, INFINITY}},
                                  dt, e, cg ? "create_graph" : "plain"};
                    expect(gb, (double[]){1, 0, 3, 0}, "d/db", wh);
                    gf_scope_end(ctx);
                }
            cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
            gf_ctx_destroy(ctx);
        }
}

/* pow_scalar's forward at the exponents torch 1.13 computes without pow
 * (its gradients above use them: x^0.5's is 0.5 x^-0.5): x^-0.5 is
 * 1/sqrt(x), x^-1 is 1/x, x^-2 is 1/(x*x). torch.pow(x, p) for
 * x = [-inf, -0, 0, inf, 0.3, 1.7, 2] in float64, then float32: */
Test(grad_edges, pow_scalar_forward_at_torch_special_exponents) {
    static const struct {
        double p, want[2][7];
    } P[] = {
        {-0.5, {{NAN, -INFINITY, INFINITY, 0.0, 1.8257418583505538, 0.7669649888473704,
                 0.7071067811865475},
                {NAN, -INFINITY, INFINITY, 0.0, 1.8257417678833008, 0.7669649720191956,
                 0.7071067690849304}}},
        {-1.0, {{-0.0, -INFINITY, INFINITY, 0.0, 3.3333333333333335, 0.5882352941176471, 0.5},
                {-0.0, -INFINITY, INFINITY, 0.0, 3.3333332538604736, 0.5882352590560913, 0.5}}},
        {-2.0, {{0.0, INFINITY, INFINITY, 0.0, 11.11111111111111, 0.34602076124567477, 0.25},
                {0.0, INFINITY, INFINITY, 0.0, 11.11111068725586, 0.34602075815200806, 0.25}}},
    };
    static const double xs[7] = {-INFINITY, -0.0, 0.0, INFINITY, 0.3, 1.7, 2};
    for (int e = 0; e < 2; e++) {
        gf_ctx *ctx = gf_ctx_create(NULL);
        gf_ctx_set_eager(ctx, e);
        for (int i = 0; i < 3; i++)
            for (int d = 0; d < 2; d++) {
                gf_scope_begin(ctx);
                gf_dtype dt = d ? GF_F32 : GF_F64;
                double got[7];
                gf_tensor *y = GF_T(ctx, gf_pow_scalar(vec(ctx, dt, xs, 7, false), P[i].p));
                GF_OK_OR_FAIL(ctx, gf_copy_to_f64(y, got, 7));
                for (int j = 0; j < 7; j++)
                    cr_assert(same(got[j], P[i].want[d][j]), "%s pow(%g, %g): %.17g, torch %.17g",
                              gf_dtype_name(dt), xs[j], P[i].p, got[j], P[i].want[d][j]);
                gf_scope_end(ctx);
            }
        gf_ctx_destroy(ctx);
    }
}

/* zero_where, the internal op behind those gradients: NULL operands pass
 * quietly; i64 operands, shapes that do not broadcast and another ctx's
 * tensor are errors naming the op and the shapes; mixed float dtypes
 * promote to f64 (an exact cast, so the condition keeps its truth). */
Test(grad_edges, zero_where_errors_and_promotion) {
    gf_ctx *ctx = gf_ctx_create(NULL), *other = gf_ctx_create(NULL);
    gf_tensor *v = vec(ctx, GF_F32, (double[]){1, 2, 3}, 3, false);
    gf_tensor *c = vec(ctx, GF_F64, (double[]){1e-300, 0, -1}, 3, false);
    cr_assert_null(gf__zero_where(NULL, c, NULL, GF__ZW_LE0));
    cr_assert_null(gf__zero_where(v, NULL, NULL, GF__ZW_LE0));
    cr_assert_null(gf__zero_where(v, c, NULL, GF__ZW_EQ0_GE0)); /* needs c2 */
    cr_assert_null(gf_ctx_error(ctx), "a NULL operand is passed on quietly");
    gf_tensor *i = gf_tensor_i64(ctx, 1, (int64_t[]){3}, (int64_t[]){1, 0, 2});
    cr_assert_null(gf__zero_where(v, i, NULL, GF__ZW_EQ0));
    gf_test_expect_error(ctx, "zero_where: operand 1 [3] is i64");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf__zero_where(v, c, vec(ctx, GF_F64, (double[]){1, 2}, 2, false),
                                  GF__ZW_EQ0_GE0));
    gf_test_expect_error(ctx, "zero_where: operand 2 [2] cannot be broadcast with the shape [3]");
    cr_assert_eq(gf_ctx_status(ctx), GF_ESHAPE);
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf__zero_where(v, gf_zeros(other, GF_F32, 1, (int64_t[]){3}), NULL,
                                  GF__ZW_LE0));
    gf_test_expect_error(ctx, "another ctx");
    gf_ctx_clear_error(ctx);
    /* 1e-300 is not <= 0 in f64 (it would be 0 in f32) */
    gf_tensor *z = GF_T(ctx, gf__zero_where(v, c, NULL, GF__ZW_LE0));
    cr_assert_eq(gf_dtype_of(z), GF_F64);
    gf_test_expect_close(z, (double[]){1, 0, 0}, 3, 0, 0);
    gf_tensor *col = vec(ctx, GF_F64, (double[]){0, 5}, 2, false);
    gf_tensor *col2 = GF_T(ctx, gf_reshape(col, 2, (int64_t[]){2, 1}));
    /* [2,1] (base) and [3] (exponent) against v [3]: zero where base == 0
     * and exponent >= 0 */
    gf_tensor *e = vec(ctx, GF_F64, (double[]){-1, 0, 2}, 3, false);
    z = GF_T(ctx, gf__zero_where(v, col2, e, GF__ZW_EQ0_GE0));
    gf_test_expect_shape(z, 2, (int64_t[]){2, 3});
    gf_test_expect_close(z, (double[]){1, 0, 0, 1, 2, 3}, 6, 0, 0);
    gf_ctx_destroy(ctx), gf_ctx_destroy(other);
}
