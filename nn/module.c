/*
 * module.c - layers and containers: Linear, activation layers, Dropout,
 * Sequential and the MLP helper; parameter listing, train/eval mode and
 * zero_grad. Written only against gradflow.h, as torch.nn sits on autograd.
 *
 * A module's parameters are leaf tensors that live outside every scope
 * (gf_persist), so a model may be built inside a training loop's scope and
 * still outlive it. Forward results are ordinary op results: handles in the
 * caller's current scope.
 *
 * A module may outlive its ctx: gf_ctx_destroy detaches it (the ctx frees
 * the parameters with its other tensors), and gf_module_free then frees
 * only the module's own memory.
 */
#include "nn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { GF__MOD_LINEAR, GF__MOD_ACT, GF__MOD_DROPOUT, GF__MOD_SEQ } gf__mod_kind;

struct gf_module {
    gf__mod_kind kind;
    gf_ctx *ctx;
    bool train;
    /* Parameters in registration order, depth first. A Linear owns its own
     * (W, then b); a Sequential lists its children's without owning them. */
    int n_params;
    gf_tensor **params;
    /* Sequential: owned children, run in order. */
    int n_children;
    gf_module **children;
    gf_activation act; /* activation layer */
    double p;          /* dropout probability */
};

/* gf_ctx_destroy of the module's ctx: its tensors go with the ctx. */
static void gf__mod_detach(gf_ctx *ctx, void *arg) {
    (void)ctx;
    gf_module *m = arg;
    m->ctx = NULL;
    for (int i = 0; i < m->n_params; i++) m->params[i] = NULL;
}

static gf_module *gf__mod_new(gf_ctx *ctx, gf__mod_kind kind) {
    gf_module *m = calloc(1, sizeof *m);
    if (!m || gf_ctx_on_destroy(ctx, gf__mod_detach, m) != GF_OK) {
        free(m);
        gf_ctx_set_error(ctx, GF_ENOMEM, "gf_module: out of memory");
        return NULL;
    }
    m->kind = kind;
    m->ctx = ctx;
    m->train = true;
    return m;
}

/* A [shape] tensor of dtype dt drawn from U(-bound, bound) with the ctx's
 * generator, as a leaf that requires grad and lives outside every scope.
 * NULL (error on the ctx) on failure. */
static gf_tensor *gf__uniform_param(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape,
                                    double bound) {
    gf_scope_begin(ctx);
    gf_tensor *p = gf_zeros(ctx, dt, ndim, shape);
    gf_tensor *u = gf_add_scalar(gf_mul_scalar(gf_rand(ctx, dt, ndim, shape), 2 * bound), -bound);
    gf_no_grad_begin(ctx);
    gf_status s = p && u ? gf_copy_(p, u) : GF_ENOMEM;
    gf_no_grad_end(ctx);
    /* gf_requires_grad reports running out of memory on the ctx only. */
    if (s == GF_OK && !gf_get_requires_grad(gf_requires_grad(p, true))) s = gf_ctx_status(ctx);
    if (s == GF_OK) gf_persist(p);
    gf_scope_end(ctx);
    return s == GF_OK ? p : NULL;
}

gf_module *gf_linear(gf_ctx *ctx, int64_t in_features, int64_t out_features, bool bias,
                     gf_dtype dt) {
    if (!ctx) return NULL;
    if (in_features <= 0 || out_features <= 0) {
        gf_ctx_set_error(ctx, GF_EINVAL,
                         "gf_linear: in_features %lld and out_features %lld (expected both >= 1)",
                         (long long)in_features, (long long)out_features);
        return NULL;
    }
    if (dt != GF_F32 && dt != GF_F64) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_linear: dtype %s (expected GF_F32 or GF_F64)",
                         gf_dtype_name(dt));
        return NULL;
    }
    gf_module *m = gf__mod_new(ctx, GF__MOD_LINEAR);
    if (!m) return NULL;
    m->params = calloc(2, sizeof *m->params);
    if (!m->params) {
        gf_module_free(m);
        gf_ctx_set_error(ctx, GF_ENOMEM, "gf_linear: out of memory");
        return NULL;
    }
    /* kaiming_uniform_(W, a=sqrt(5)) has gain sqrt(2/(1+5)) and bound
     * gain*sqrt(3/fan_in) = 1/sqrt(fan_in); PyTorch gives b the same bound. */
    double bound = 1.0 / sqrt((double)in_features);
    m->params[m->n_params] =
        gf__uniform_param(ctx, dt, 2, (int64_t[]){out_features, in_features}, bound);
    if (m->params[m->n_params]) m->n_params++;
    if (m->n_params == 1 && bias) {
        m->params[m->n_params] = gf__uniform_param(ctx, dt, 1, (int64_t[]){out_features}, bound);
        if (m->params[m->n_params]) m->n_params++;
    }
    if (m->n_params != (bias ? 2 : 1)) {
        gf_module_free(m);
        return NULL;
    }
    return m;
}

gf_module *gf_activation_layer(gf_ctx *ctx, gf_activation act) {
    if (!ctx) return NULL;
    if (act < GF_ACT_NONE || act > GF_ACT_SIGMOID) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_activation_layer: unknown activation %d", (int)act);
        return NULL;
    }
    gf_module *m = gf__mod_new(ctx, GF__MOD_ACT);
    if (m) m->act = act;
    return m;
}

gf_module *gf_dropout(gf_ctx *ctx, double p) {
    if (!ctx) return NULL;
    if (!(p >= 0 && p <= 1)) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_dropout: probability %g (expected 0 <= p <= 1)", p);
        return NULL;
    }
    gf_module *m = gf__mod_new(ctx, GF__MOD_DROPOUT);
    if (m) m->p = p;
    return m;
}

gf_module *gf_sequential(gf_ctx *ctx, int n, gf_module *const *children) {
    if (!ctx) goto fail_children;
    if (n < 0 || (n > 0 && !children)) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_sequential: %d children at %p (expected n >= 0)", n,
                         (const void *)children);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!children[i]) {
            gf_ctx_set_error(ctx, GF_EINVAL, "gf_sequential: child %d is NULL", i);
            goto fail_children;
        }
    gf_module *m = gf__mod_new(ctx, GF__MOD_SEQ);
    if (!m) goto fail_children;
    int np = 0;
    for (int i = 0; i < n; i++) np += children[i]->n_params;
    m->children = calloc((size_t)(n ? n : 1), sizeof *m->children);
    m->params = calloc((size_t)(np ? np : 1), sizeof *m->params);
    if (!m->children || !m->params) {
        gf_module_free(m);
        gf_ctx_set_error(ctx, GF_ENOMEM, "gf_sequential: out of memory");
        goto fail_children;
    }
    for (int i = 0; i < n; i++) {
        m->children[m->n_children++] = children[i];
        for (int j = 0; j < children[i]->n_params; j++)
            m->params[m->n_params++] = children[i]->params[j];
    }
    return m;
fail_children:
    /* Ownership passed to us: a failed container frees what it was given,
     * so calls can be chained without leaks. */
    for (int i = 0; children && i < n; i++) gf_module_free(children[i]);
    return NULL;
}

gf_module *gf_mlp(gf_ctx *ctx, int n, const int64_t *sizes, gf_activation act, gf_dtype dt) {
    if (!ctx) return NULL;
    if (n < 2 || !sizes) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_mlp: %d sizes (expected at least 2: in and out)", n);
        return NULL;
    }
    gf_module **ch = calloc((size_t)(2 * n), sizeof *ch);
    if (!ch) {
        gf_ctx_set_error(ctx, GF_ENOMEM, "gf_mlp: out of memory");
        return NULL;
    }
    int k = 0;
    bool ok = true;
    for (int i = 0; i + 1 < n && ok; i++) {
        ok = (ch[k++] = gf_linear(ctx, sizes[i], sizes[i + 1], true, dt)) != NULL;
        if (ok && act != GF_ACT_NONE && i + 2 < n)
            ok = (ch[k++] = gf_activation_layer(ctx, act)) != NULL;
    }
    gf_module *m = NULL;
    if (ok) m = gf_sequential(ctx, k, ch);
    else
        for (int i = 0; i < k; i++) gf_module_free(ch[i]);
    free(ch);
    return m;
}

/* y = x W^T + b: the transpose is a view that GEMM reads by strides. (A
 * Sequential runs a Linear followed by an activation as gf_linear_act.) */
static gf_tensor *gf__linear_forward(gf_module *m, gf_tensor *x) {
    gf_tensor *y = gf_matmul(x, gf_transpose(m->params[0], 0, 1));
    return m->n_params > 1 ? gf_add(y, m->params[1]) : y;
}

/* In train mode y = x * mask / (1 - p) with mask = [u < 1 - p], u ~ U[0,1)
 * from the ctx's counter-based generator; built from public ops as
 * relu(sign((1 - p) - u)), which is 1 where u < 1 - p and 0 elsewhere. */
static gf_tensor *gf__dropout_forward(gf_module *m, gf_tensor *x) {
    if (!m->train || m->p == 0) return gf_contiguous(x);
    if (m->p == 1) return gf_mul_scalar(x, 0.0);
    double keep = 1 - m->p;
    gf_tensor *u = gf_rand(m->ctx, gf_dtype_of(x), gf_ndim(x), gf_shape(x));
    gf_tensor *mask = gf_mul_scalar(gf_relu(gf_sign(gf_add_scalar(gf_neg(u), keep))), 1 / keep);
    return gf_mul(x, mask);
}

gf_tensor *gf_module_forward(gf_module *m, gf_tensor *x) {
    if (!m || !x) return NULL;
    if (!m->ctx) {
        gf_ctx_set_error(gf_ctx_of(x), GF_ESTATE,
                         "gf_module_forward: the module's ctx was destroyed (expected a module "
                         "of a live ctx; only gf_module_free may follow gf_ctx_destroy)");
        return NULL;
    }
    switch (m->kind) {
    case GF__MOD_LINEAR:
        return gf__linear_forward(m, x);
    case GF__MOD_DROPOUT:
        return gf__dropout_forward(m, x);
    case GF__MOD_ACT:
        switch (m->act) {
        case GF_ACT_RELU: return gf_relu(x);
        case GF_ACT_GELU: return gf_gelu(x);
        case GF_ACT_TANH: return gf_tanh(x);
        case GF_ACT_SIGMOID: return gf_sigmoid(x);
        case GF_ACT_NONE: return gf_contiguous(x);
        }
        return NULL;
    case GF__MOD_SEQ: {
        if (m->n_children == 0) return gf_contiguous(x);
        /* Intermediates are ordinary handles in the caller's scope, released
         * with it (the graph keeps what backward needs either way). */
        gf_tensor *h = x;
        for (int i = 0; i < m->n_children && h; i++) {
            gf_module *c = m->children[i];
            gf_module *next = i + 1 < m->n_children ? m->children[i + 1] : NULL;
            /* A Linear directly followed by a ReLU, Tanh or Sigmoid layer:
             * one fused op (gf_linear_act; the same bits as running the two
             * layers). GELU and a Linear without activation take the
             * layers one by one. */
            if (c->kind == GF__MOD_LINEAR && next && next->kind == GF__MOD_ACT &&
                (next->act == GF_ACT_RELU || next->act == GF_ACT_TANH ||
                 next->act == GF_ACT_SIGMOID)) {
                h = gf_linear_act(h, c->params[0], c->n_params > 1 ? c->params[1] : NULL,
                                  next->act);
                i++;
                continue;
            }
            h = gf_module_forward(c, h);
        }
        return h;
    }
    }
    return NULL;
}

void gf_module_train(gf_module *m, bool train) {
    if (!m) return;
    m->train = train;
    for (int i = 0; i < m->n_children; i++) gf_module_train(m->children[i], train);
}

/* The share of m in ctx (see gf_module_share), recursively; NULL with the
 * error on ctx. */
static gf_module *gf__mod_share(gf_ctx *ctx, const gf_module *m) {
    gf_module *s = gf__mod_new(ctx, m->kind);
    if (!s) return NULL;
    s->train = m->train;
    s->act = m->act;
    s->p = m->p;
    s->params = calloc((size_t)(m->n_params ? m->n_params : 1), sizeof *s->params);
    s->children = calloc((size_t)(m->n_children ? m->n_children : 1), sizeof *s->children);
    if (!s->params || !s->children) {
        gf_module_free(s);
        gf_ctx_set_error(ctx, GF_ENOMEM, "gf_module_share: out of memory");
        return NULL;
    }
    if (m->kind == GF__MOD_SEQ) {
        /* A Sequential lists its children's parameters: the shares' ones. */
        for (int i = 0; i < m->n_children; i++) {
            gf_module *c = gf__mod_share(ctx, m->children[i]);
            if (!c) {
                gf_module_free(s);
                return NULL;
            }
            s->children[s->n_children++] = c;
            for (int j = 0; j < c->n_params; j++) s->params[s->n_params++] = c->params[j];
        }
        return s;
    }
    for (int i = 0; i < m->n_params; i++) {
        gf_tensor *p = gf_share(ctx, m->params[i]);
        if (!p) {
            gf_module_free(s);
            return NULL;
        }
        s->params[s->n_params++] = gf_persist(p);
    }
    return s;
}

gf_module *gf_module_share(gf_ctx *ctx, const gf_module *m) {
    if (!ctx) return NULL;
    if (!m) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_module_share: the module is NULL");
        return NULL;
    }
    if (!m->ctx) {
        gf_ctx_set_error(ctx, GF_ESTATE,
                         "gf_module_share: the module's ctx was destroyed (expected a module of "
                         "a live ctx)");
        return NULL;
    }
    if (gf_ctx_engine(m->ctx) != gf_ctx_engine(ctx)) {
        gf_ctx_set_error(ctx, GF_EINVAL,
                         "gf_module_share: the module's ctx runs on another engine (expected "
                         "both ctxs on one engine: parameters are shared, not copied)");
        return NULL;
    }
    return gf__mod_share(ctx, m);
}

gf_ctx *gf__module_ctx(const gf_module *m) { return m ? m->ctx : NULL; }

int gf_module_num_parameters(const gf_module *m) { return m ? m->n_params : 0; }

int64_t gf_module_num_elements(const gf_module *m) {
    int64_t n = 0;
    for (int i = 0; m && i < m->n_params; i++) n += gf_numel(m->params[i]);
    return n;
}

gf_tensor *gf_module_parameter(const gf_module *m, int i) {
    if (!m) return NULL;
    if (i < 0 || i >= m->n_params) {
        gf_ctx_set_error(m->ctx, GF_EINVAL,
                         "gf_module_parameter: index %d (the module has %d parameters)", i,
                         m->n_params);
        return NULL;
    }
    return m->params[i];
}

void gf_module_zero_grad(gf_module *m) {
    for (int i = 0; m && i < m->n_params; i++) gf_zero_grad(m->params[i]);
}

void gf_module_free(gf_module *m) {
    if (!m) return;
    gf_ctx_remove_on_destroy(m->ctx, gf__mod_detach, m);
    if (m->kind == GF__MOD_SEQ)
        for (int i = 0; i < m->n_children; i++) gf_module_free(m->children[i]);
    else
        for (int i = 0; i < m->n_params; i++) gf_release(m->params[i]);
    free(m->children);
    free(m->params);
    free(m);
}
