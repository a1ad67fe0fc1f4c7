/*
 * optim.c - SGD (momentum, dampening, Nesterov, L2 weight decay), Adam and
 * AdamW, with the update rules of torch.optim (1.13, single-tensor path),
 * the checks of their options (shared with gf_load), and the step and
 * cosine learning-rate schedules.
 *
 * Each parameter's update is one fused in-place op under no_grad
 * (gf_sgd_step_, gf_adam_step_: one pass over the parameter, its gradient
 * and its state, no temporaries), with the floating operations in the order
 * of the former op sequence (mul_scalar_, axpy_, sqrt, div, ...) and of
 * PyTorch, so the results are the same bits.
 */
#include "nn_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The ctx to report to: the first parameter's. */
static gf_ctx *gf__params_ctx(int n, gf_tensor *const *params) {
    for (int i = 0; params && i < n; i++)
        if (params[i]) return gf_ctx_of(params[i]);
    return NULL;
}

/* gf_ctx_destroy of the parameters' ctx: the state tensors go with it, and
 * gf_optimizer_free then frees only the optimizer's own memory. */
static void gf__opt_detach(gf_ctx *ctx, void *arg) {
    (void)ctx;
    gf_optimizer *o = arg;
    o->ctx = NULL;
    for (int i = 0; i < o->n; i++) o->params[i] = o->s1[i] = o->s2[i] = NULL;
}

static gf_optimizer *gf__opt_new(const char *fn, gf__opt_kind kind, int n,
                                 gf_tensor *const *params) {
    gf_ctx *ctx = gf__params_ctx(n, params);
    if (n <= 0 || !params || !ctx) {
        if (ctx) gf_ctx_set_error(ctx, GF_EINVAL, "%s: %d parameters (expected >= 1)", fn, n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            gf_ctx_set_error(ctx, GF_EINVAL, "%s: parameter %d is NULL", fn, i);
            return NULL;
        }
        gf_dtype dt = gf_dtype_of(params[i]);
        if (dt != GF_F32 && dt != GF_F64) {
            gf_ctx_set_error(ctx, GF_EINVAL, "%s: parameter %d is %s (expected f32 or f64)", fn,
                             i, gf_dtype_name(dt));
            return NULL;
        }
        if (!gf_is_leaf(params[i])) {
            gf_ctx_set_error(ctx, GF_EINVAL, "%s: parameter %d is not a leaf tensor", fn, i);
            return NULL;
        }
    }
    gf_optimizer *o = calloc(1, sizeof *o);
    if (o) {
        o->params = calloc((size_t)n, sizeof *o->params);
        o->s1 = calloc((size_t)n, sizeof *o->s1);
        o->s2 = calloc((size_t)n, sizeof *o->s2);
        o->pstep = calloc((size_t)n, sizeof *o->pstep);
    }
    if (!o || !o->params || !o->s1 || !o->s2 || !o->pstep ||
        gf_ctx_on_destroy(ctx, gf__opt_detach, o) != GF_OK) {
        if (o) free(o->params), free(o->s1), free(o->s2), free(o->pstep);
        free(o);
        gf_ctx_set_error(ctx, GF_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    o->kind = kind;
    o->n = n;
    o->ctx = ctx;
    memcpy(o->params, params, (size_t)n * sizeof *params);
    return o;
}

/* The one rule set for SGD's options, shared by the constructors and
 * gf_load: PyTorch's ranges, and every number finite. */
const char *gf__sgd_opts_invalid(const gf_sgd_opts *o) {
    if (isnan(o->lr))
        return "lr is not set (NaN; SGD has no default learning rate, as in PyTorch: set lr "
               "after GF_SGD_DEFAULTS)";
    if (!(o->lr >= 0 && isfinite(o->lr))) return "lr must be >= 0 and finite";
    if (!(o->momentum >= 0 && isfinite(o->momentum))) return "momentum must be >= 0 and finite";
    if (!isfinite(o->dampening)) return "dampening must be finite";
    if (!(o->weight_decay >= 0 && isfinite(o->weight_decay)))
        return "weight_decay must be >= 0 and finite";
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return "Nesterov momentum requires a momentum and zero dampening";
    return NULL;
}

/* Adam's: PyTorch's ranges, except that eps must be > 0 (PyTorch allows 0,
 * which divides 0 by 0 on a zero gradient). A zero eps is what a designated
 * initializer that names only some fields leaves, so the message says so. */
const char *gf__adam_opts_invalid(const gf_adam_opts *o) {
    if (!(o->lr >= 0 && isfinite(o->lr))) return "lr must be >= 0 and finite";
    if (!(o->beta1 >= 0 && o->beta1 < 1)) return "beta1 must be in [0, 1)";
    if (!(o->beta2 >= 0 && o->beta2 < 1)) return "beta2 must be in [0, 1)";
    if (o->eps == 0)
        return "eps must be > 0; it is 0, which is what a designated initializer leaves in "
               "the fields it does not name: start from GF_ADAM_DEFAULTS (or pass NULL) and "
               "change the fields you need";
    if (!(o->eps > 0 && isfinite(o->eps))) return "eps must be > 0 and finite";
    if (!(o->weight_decay >= 0 && isfinite(o->weight_decay)))
        return "weight_decay must be >= 0 and finite";
    return NULL;
}

/* gf_sgd under the name fn (errors name the function the user called). */
static gf_optimizer *gf__sgd_new(const char *fn, int n, gf_tensor *const *params,
                                 const gf_sgd_opts *opts) {
    gf_ctx *ctx = gf__params_ctx(n, params);
    if (!opts) {
        if (ctx)
            gf_ctx_set_error(ctx, GF_EINVAL,
                             "%s: options are NULL (lr is required: SGD has no default learning "
                             "rate, as in PyTorch; start from GF_SGD_DEFAULTS and set lr)", fn);
        return NULL;
    }
    const gf_sgd_opts o = *opts;
    const char *bad = gf__sgd_opts_invalid(&o);
    if (bad) {
        if (ctx)
            gf_ctx_set_error(ctx, GF_EINVAL,
                             "%s: %s (lr %g, momentum %g, dampening %g, weight_decay %g, "
                             "nesterov %d)", fn, bad, o.lr, o.momentum, o.dampening,
                             o.weight_decay, (int)o.nesterov);
        return NULL;
    }
    gf_optimizer *opt = gf__opt_new(fn, GF__OPT_SGD, n, params);
    if (opt) opt->sgd = o;
    return opt;
}

/* gf_adam under the name fn. */
static gf_optimizer *gf__adam_new(const char *fn, int n, gf_tensor *const *params,
                                  const gf_adam_opts *opts) {
    gf_ctx *ctx = gf__params_ctx(n, params);
    const gf_adam_opts o = opts ? *opts : (gf_adam_opts)GF_ADAM_DEFAULTS;
    const char *bad = gf__adam_opts_invalid(&o);
    if (bad) {
        if (ctx)
            gf_ctx_set_error(ctx, GF_EINVAL,
                             "%s: %s (lr %g, betas (%g, %g), eps %g, weight_decay %g%s)", fn, bad,
                             o.lr, o.beta1, o.beta2, o.eps, o.weight_decay,
                             o.decoupled ? ", decoupled (AdamW)" : "");
        return NULL;
    }
    gf_optimizer *opt = gf__opt_new(fn, GF__OPT_ADAM, n, params);
    if (opt) opt->adam = o;
    return opt;
}

gf_optimizer *gf_sgd(int n, gf_tensor *const *params, const gf_sgd_opts *o) {
    return gf__sgd_new("gf_sgd", n, params, o);
}

gf_optimizer *gf_adam(int n, gf_tensor *const *params, const gf_adam_opts *o) {
    return gf__adam_new("gf_adam", n, params, o);
}

/* The module's parameters, in gf_module_parameter order, or NULL with the
 * error (no parameters, out of memory) on the module's ctx. */
static gf_tensor **gf__module_params(const char *fn, gf_module *m, int *n) {
    *n = gf_module_num_parameters(m);
    if (!m) return NULL;
    if (*n <= 0) {
        gf_ctx_set_error(gf__module_ctx(m), GF_EINVAL,
                         "%s: the module has no parameters (expected >= 1)", fn);
        return NULL;
    }
    gf_tensor **p = malloc((size_t)*n * sizeof *p);
    if (!p) {
        gf_ctx_set_error(gf__module_ctx(m), GF_ENOMEM,
                         "%s: out of memory for a list of %d parameters", fn, *n);
        return NULL;
    }
    for (int i = 0; i < *n; i++) p[i] = gf_module_parameter(m, i);
    return p;
}

gf_optimizer *gf_module_sgd(gf_module *m, const gf_sgd_opts *o) {
    int n;
    gf_tensor **p = gf__module_params("gf_module_sgd", m, &n);
    if (!p) return NULL;
    gf_optimizer *opt = gf__sgd_new("gf_module_sgd", n, p, o);
    free(p);
    return opt;
}

gf_optimizer *gf_module_adam(gf_module *m, const gf_adam_opts *o) {
    int n;
    gf_tensor **p = gf__module_params("gf_module_adam", m, &n);
    if (!p) return NULL;
    gf_optimizer *opt = gf__adam_new("gf_module_adam", n, p, o);
    free(p);
    return opt;
}

/* A zero tensor shaped like p, outside every scope (optimizer state). */
static gf_tensor *gf__state_like(gf_tensor *p) {
    return gf_persist(gf_zeros(gf_ctx_of(p), gf_dtype_of(p), gf_ndim(p), gf_shape(p)));
}

/* torch.optim.SGD for one parameter with gradient g (gf_sgd_step_):
 *   d = g + wd*p                        (if weight_decay)
 *   buf = d                              (first step, if momentum)
 *   buf = momentum*buf + (1-dampening)*d (later steps)
 *   d = d + momentum*buf (Nesterov) or d = buf
 *   p -= lr*d
 * Runs under the caller's no_grad. */
static gf_status gf__sgd_param(gf_optimizer *opt, int i, gf_tensor *p, gf_tensor *g) {
    const gf_sgd_opts *o = &opt->sgd;
    gf_tensor *buf = NULL;
    bool first = false;
    if (o->momentum != 0) {
        if (!opt->s1[i]) {
            opt->s1[i] = gf__state_like(p);
            if (!opt->s1[i]) return gf_ctx_status(gf_ctx_of(p));
            first = true;
        }
        buf = opt->s1[i];
    }
    gf_status s = gf_sgd_step_(p, g, buf, o->lr, o->momentum, o->dampening, o->weight_decay,
                               o->nesterov, first);
    if (s != GF_OK && first) { /* as before: no state unless the first step succeeded */
        gf_release(opt->s1[i]);
        opt->s1[i] = NULL;
    }
    return s;
}

/* torch.optim.Adam / AdamW for one parameter with gradient g at its step t
 * (gf_adam_step_):
 *   p *= 1 - lr*wd                      (AdamW)   or   g = g + wd*p (Adam)
 *   m = beta1*m + (1-beta1)*g
 *   v = beta2*v + (1-beta2)*g*g
 *   p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 * Runs under the caller's no_grad. */
static gf_status gf__adam_param(gf_optimizer *opt, int i, gf_tensor *p, gf_tensor *g) {
    const gf_adam_opts *o = &opt->adam;
    if (!opt->s1[i]) {
        gf_tensor *m = gf__state_like(p), *v = gf__state_like(p);
        if (!m || !v) {
            gf_release(m);
            gf_release(v);
            return gf_ctx_status(gf_ctx_of(p));
        }
        opt->s1[i] = m;
        opt->s2[i] = v;
    }
    int64_t t = opt->pstep[i] + 1;
    gf_status s = gf_adam_step_(p, g, opt->s1[i], opt->s2[i], o->lr, o->beta1, o->beta2, o->eps,
                                o->weight_decay, o->decoupled, t);
    if (s == GF_OK) opt->pstep[i] = t;
    return s;
}

gf_status gf_optimizer_step(gf_optimizer *opt) {
    if (!opt) return GF_EINVAL;
    if (!opt->ctx) return GF_ESTATE; /* detached by gf_ctx_destroy: no ctx for a message */
    /* Only a loaded checkpoint can bring a count this close to the limit;
     * counting past it would overflow. */
    bool full = opt->steps == INT64_MAX;
    for (int i = 0; !full && i < opt->n; i++) full = opt->pstep[i] == INT64_MAX;
    if (full)
        return gf_ctx_set_error(gf_ctx_of(opt->params[0]), GF_ESTATE,
                                "gf_optimizer_step: a step count is %lld, the largest an "
                                "int64_t holds (expected fewer steps)", (long long)INT64_MAX);
    gf_status first = GF_OK;
    for (int i = 0; i < opt->n; i++) {
        gf_tensor *p = opt->params[i];
        gf_tensor *g = gf_grad(p);
        if (!g) continue; /* as PyTorch: no gradient, no update, no state */
        gf_ctx *ctx = gf_ctx_of(p);
        gf_no_grad_begin(ctx);
        gf_status s = opt->kind == GF__OPT_SGD ? gf__sgd_param(opt, i, p, g)
                                               : gf__adam_param(opt, i, p, g);
        gf_no_grad_end(ctx);
        if (s != GF_OK && first == GF_OK) first = s;
    }
    if (first == GF_OK) opt->steps++;
    return first;
}

void gf_optimizer_zero_grad(gf_optimizer *opt) {
    for (int i = 0; opt && i < opt->n; i++) gf_zero_grad(opt->params[i]);
}

double gf_optimizer_lr(const gf_optimizer *opt) {
    if (!opt) return NAN;
    return opt->kind == GF__OPT_SGD ? opt->sgd.lr : opt->adam.lr;
}

void gf_optimizer_set_lr(gf_optimizer *opt, double lr) {
    if (!opt) return;
    if (!(lr >= 0 && isfinite(lr))) {
        gf_ctx_set_error(gf_ctx_of(opt->params[0]), GF_EINVAL,
                         "gf_optimizer_set_lr: lr %g (expected >= 0 and finite)", lr);
        return;
    }
    if (opt->kind == GF__OPT_SGD) opt->sgd.lr = lr;
    else opt->adam.lr = lr;
}

int64_t gf_optimizer_steps(const gf_optimizer *opt) { return opt ? opt->steps : 0; }

void gf_optimizer_free(gf_optimizer *opt) {
    if (!opt) return;
    gf_ctx_remove_on_destroy(opt->ctx, gf__opt_detach, opt);
    for (int i = 0; i < opt->n; i++) {
        gf_release(opt->s1[i]);
        gf_release(opt->s2[i]);
    }
    free(opt->params);
    free(opt->s1);
    free(opt->s2);
    free(opt->pstep);
    free(opt);
}

/* torch.optim.lr_scheduler.StepLR: base_lr * gamma^floor(t / step_size). */
double gf_lr_step(double base_lr, int64_t t, int64_t step_size, double gamma) {
    if (step_size <= 0 || t < 0) return NAN;
    return base_lr * pow(gamma, (double)(t / step_size));
}

/* CosineAnnealingLR's closed form:
 * eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2. */
double gf_lr_cosine(double base_lr, int64_t t, int64_t t_max, double eta_min) {
    if (t_max <= 0 || t < 0) return NAN;
    return eta_min + (base_lr - eta_min) * (1 + cos(M_PI * (double)t / (double)t_max)) / 2;
}
