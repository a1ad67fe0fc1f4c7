/*
 * autograd.c - reverse-mode differentiation over the recorded graph.
 *
 * gf_backward walks the nodes that require grad from the output back to the
 * leaves, in reverse topological order. Each node's backward rule emits
 * ordinary ops (so the gradient graph runs on the same executor, and with
 * create_graph it is itself differentiable). Contributions to one tensor are
 * summed in graph order (the order of the walk, never arrival), which makes
 * the result independent of scheduling. The gradient graph is realized in
 * one go, in lazy mode even for an eager ctx (the backward call is one unit:
 * its nodes run in parallel). A plain backward's accumulation of each leaf's
 * gradient into .grad is a node of that graph too (accum_grad_): it runs on
 * the pool as soon as its gradient is ready, under the leaf's lock, so
 * concurrent backward calls into shared parameters never lose an update.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- requires_grad */

gf_tensor *gf_requires_grad(gf_tensor *t, bool on) {
    if (!t || gf__stale(t, "gf_requires_grad")) return NULL;
    gf_ctx *ctx = t->ctx;
    if (!gf_is_leaf(t)) {
        if (on) return t; /* already requires grad through its graph */
        gf__error(ctx, GF_ESTATE,
                  "gf_requires_grad: tensor %s is the output of gf_%s; only leaf tensors can "
                  "stop requiring grad (use gf_detach)",
                  GF__SHAPE(t), gf__op_names[t->node->op]);
        return t;
    }
    if (on && t->dtype == GF_I64) {
        gf__error(ctx, GF_EINVAL,
                  "gf_requires_grad: tensor %s is i64; only floating tensors (f32, f64) can "
                  "require grad",
                  GF__SHAPE(t));
        return t;
    }
    if (on && !t->leaf) {
        gf__leafinfo *l = calloc(1, sizeof *l);
        if (!l) {
            gf__error(ctx, GF_ENOMEM, "gf_requires_grad: out of memory");
            return t;
        }
        atomic_init(&l->refcount, 1);
        pthread_mutex_init(&l->mu, NULL);
        l->numel = t->numel;
        l->dtype = t->dtype;
        t->leaf = l;
    }
    if (t->leaf) t->leaf->requires_grad = on;
    t->requires_grad = on;
    return t;
}

bool gf_get_requires_grad(const gf_tensor *t) {
    return t && !gf__stale(t, "gf_get_requires_grad") && t->requires_grad;
}

/* The handle of the leaf's shared .grad storage in t's ctx. */
static gf_tensor *gf__grad_handle(gf_tensor *t) {
    gf__leafinfo *l = t->leaf;
    if (t->grad || !l || !l->grad) return t->grad;
    gf_tensor *g = gf__tensor_new(t->ctx, t->dtype, t->ndim, t->shape);
    if (!g) return NULL;
    gf__storage_release(g->storage);
    g->storage = l->grad;
    gf__storage_retain(l->grad);
    gf__disown(g);
    g->is_grad = true;
    t->grad = g;
    return g;
}

gf_tensor *gf_grad(gf_tensor *t) {
    if (!t || gf__stale(t, "gf_grad")) return NULL;
    return gf__grad_handle(t);
}

void gf_zero_grad(gf_tensor *t) {
    if (!t || gf__stale(t, "gf_zero_grad")) return;
    gf_tensor *g = gf__grad_handle(t);
    if (!g) return;
    gf_ctx *ctx = t->ctx;
    gf_no_grad_begin(ctx);
    if (g->node) {
        /* A .grad with a graph (create_graph): replace it by plain zeros. */
        gf_tensor *z = gf_zeros_like(g);
        if (z) {
            gf__disown(z);
            z->is_grad = true;
            t->grad = z;
            gf__unref(g);
        }
    } else {
        pthread_mutex_lock(&t->leaf->mu);
        gf_fill_(g, 0.0);
        pthread_mutex_unlock(&t->leaf->mu);
    }
    gf_no_grad_end(ctx);
}

gf_tensor *gf_share(gf_ctx *ctx, gf_tensor *leaf) {
    if (!ctx || !leaf) return NULL;
    if (leaf->dead) {
        gf__stale_error(ctx, leaf, "gf_share");
        return NULL;
    }
    if (!gf_is_leaf(leaf)) {
        gf__error(ctx, GF_EINVAL, "gf_share: tensor %s is the output of gf_%s (expected a leaf)",
                  GF__SHAPE(leaf), gf__op_names[leaf->node->op]);
        return NULL;
    }
    if (leaf->ctx->eng != ctx->eng) {
        gf__error(ctx, GF_EINVAL, "gf_share: the tensor's ctx runs on another engine "
                  "(expected both ctxs on one engine)");
        return NULL;
    }
    if (gf_realize(leaf) != GF_OK) {
        gf__error(ctx, GF_ESTATE, "gf_share: the tensor could not be computed");
        return NULL;
    }
    /* Made in ctx directly: leaf's ctx (its tensor list, scopes, free
     * lists) is not touched, so request threads may share parameters while
     * the parameters' own thread keeps working. */
    gf_tensor *t =
        gf__tensor_view_in(ctx, leaf, leaf->ndim, leaf->shape, leaf->strides, leaf->offset);
    if (!t) return NULL;
    if (leaf->leaf) {
        t->leaf = leaf->leaf;
        atomic_fetch_add(&t->leaf->refcount, 1);
    }
    t->requires_grad = leaf->requires_grad;
    return t;
}

/* --------------------------------------------------------------- backward */

/* A growable array of tensors living in one of the ctx's backward scratch
 * buffers (reused from step to step). */
typedef struct {
    gf_tensor **v;
    int64_t n, cap;
    void **buf;
    size_t *bcap;
} gf__tvec;

static gf__tvec gf__tvec_of(gf_ctx *ctx, int slot) {
    return (gf__tvec){.v = ctx->bw_buf[slot], .cap = (int64_t)(ctx->bw_cap[slot] / sizeof(gf_tensor *)),
                      .buf = &ctx->bw_buf[slot], .bcap = &ctx->bw_cap[slot]};
}

static bool gf__tvec_push(gf__tvec *v, gf_tensor *t) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        void *p = gf__scratch(v->buf, v->bcap, (size_t)cap * sizeof *v->v);
        if (!p) return false;
        v->v = p;
        v->cap = (int64_t)(*v->bcap / sizeof *v->v);
    }
    v->v[v->n++] = t;
    return true;
}

/* Tensors that backward flows through, reachable from out: non-leaf tensors
 * in topological order (inputs first) into nodes, leaves into leaves. */
static gf_status gf__collect(gf_ctx *ctx, gf_tensor *out, gf__tvec *nodes, gf__tvec *leaves,
                             int64_t epoch) {
    struct frame { gf_tensor *t; int next; };
    struct frame *st = NULL;
    int64_t sp = 0, cap = 0;
    gf_status s = GF_OK;
#define GF__PUSH(T)                                                                  \
    do {                                                                             \
        if (sp == cap) {                                                             \
            cap = cap ? cap * 2 : 64;                                                \
            void *p_ = gf__scratch(&ctx->bw_buf[2], &ctx->bw_cap[2],                 \
                                   (size_t)cap * sizeof *st);                        \
            if (!p_) { s = GF_ENOMEM; goto done; }                                   \
            st = p_;                                                                 \
        }                                                                            \
        st[sp++] = (struct frame){(T), 0};                                           \
    } while (0)
    out->bw_mark = epoch;
    GF__PUSH(out);
    while (sp) {
        struct frame *f = &st[sp - 1];
        gf_tensor *t = f->t;
        bool is_node = t->node && t->node->requires_grad;
        if (is_node && f->next == 0) {
            gf__node *n = t->node;
            if (n->freed) {
                s = gf__error(ctx, GF_ESTATE,
                              "gf_backward: trying to backward through the graph a second time "
                              "(gf_%s's saved tensors were freed after the first backward; "
                              "pass retain_graph = true the first time)",
                              gf__op_names[n->op]);
                goto done;
            }
            for (int i = 0; i < n->n_in; i++) {
                uint64_t v = atomic_load(&n->in[i]->storage->version);
                if (v != n->in_version[i]) {
                    s = gf__error(ctx, GF_ESTATE,
                                  "gf_backward: input %d %s of gf_%s, saved for backward, was "
                                  "modified by an in-place operation (version %llu, expected "
                                  "%llu)",
                                  i, GF__SHAPE(n->in[i]), gf__op_names[n->op],
                                  (unsigned long long)v, (unsigned long long)n->in_version[i]);
                    goto done;
                }
            }
        }
        if (is_node && f->next < t->node->n_in) {
            gf_tensor *c = t->node->in[f->next++];
            if (c->requires_grad && c->bw_mark != epoch) {
                c->bw_mark = epoch;
                GF__PUSH(c);
            }
            continue;
        }
        sp--;
        if (!(is_node ? gf__tvec_push(nodes, t) : gf__tvec_push(leaves, t))) {
            s = GF_ENOMEM;
            goto done;
        }
    }
done:
#undef GF__PUSH
    if (s == GF_ENOMEM) gf__error(ctx, s, "gf_backward: out of memory walking the graph");
    return s;
}

/* Adds contribution g into t's running gradient (graph order). */
static gf_status gf__accum(gf_tensor *t, gf_tensor *g) {
    if (!t->bw_grad) {
        gf__retain(g);
        t->bw_grad = g;
        return GF_OK;
    }
    gf_tensor *sum = gf_add(t->bw_grad, g);
    if (!sum) return gf_ctx_status(t->ctx) ? gf_ctx_status(t->ctx) : GF_ENOMEM;
    gf__retain(sum);
    gf_release(sum);
    gf__unref(t->bw_grad);
    t->bw_grad = sum;
    return GF_OK;
}

/* Runs the backward rule of t's node with gradient g and accumulates into
 * its inputs. The rule's temporaries live in a scope of their own. */
static gf_status gf__apply_rule(gf_tensor *t, gf_tensor *g) {
    gf__node *n = t->node;
    gf_ctx *ctx = t->ctx;
    gf_tensor *small[GF__MAX_IN_SMALL] = {0};
    gf_tensor **gin = n->n_in <= GF__MAX_IN_SMALL ? small : calloc((size_t)n->n_in, sizeof *gin);
    if (!gin) return gf__error(ctx, GF_ENOMEM, "gf_backward: out of memory");
    gf_scope_begin(ctx);
    int errs = atomic_load(&ctx->errors);
    gf_status s = gf__op_bwd[n->op](n, t, g, gin);
    if (s == GF_OK && atomic_load(&ctx->errors) != errs) s = gf_ctx_status(ctx);
    for (int i = 0; s == GF_OK && i < n->n_in; i++) {
        gf_tensor *x = n->in[i];
        if (!gin[i] || !x->requires_grad) continue;
        if (gin[i]->ndim != x->ndim || memcmp(gin[i]->shape, x->shape, (size_t)x->ndim * 8)) {
            s = gf__error(ctx, GF_ESTATE,
                          "gf_backward: internal error: gf_%s's backward produced a gradient "
                          "%s for input %d of shape %s",
                          gf__op_names[n->op], GF__SHAPE(gin[i]), i, GF__SHAPE(x));
            break;
        }
        s = gf__accum(x, gin[i]);
    }
    gf_scope_end(ctx);
    if (gin != small) free(gin);
    return s;
}

/* create_graph: .grad becomes a differentiable tensor, old + g, out of place
 * (leaves shared by several ctxs are not differentiated this way). */
static gf_status gf__accum_leaf_graph(gf_tensor *t, gf_tensor *g) {
    gf_ctx *ctx = t->ctx;
    if (!t->leaf) return GF_OK;
    gf_tensor *old = gf__grad_handle(t);
    gf_tensor *ng = old ? gf_add(old, g) : gf_reshape(g, t->ndim, t->shape);
    if (!ng) return gf_ctx_status(ctx);
    gf__disown(ng);
    ng->is_grad = true;
    if (old) gf__unref(old);
    t->grad = ng;
    if (gf_realize(ng) != GF_OK) return gf_ctx_status(ctx);
    return GF_OK;
}

/* *dst: storage st seen as a contiguous tensor of leaf t's shape (a
 * transient object for the kernels; nothing to free). */
static void gf__grad_view(const gf_tensor *t, gf__storage *st, gf_tensor *dst) {
    *dst = (gf_tensor){.ctx = t->ctx, .dtype = t->dtype, .ndim = t->ndim, .numel = t->numel,
                       .storage = st};
    memcpy(dst->shape, t->shape, sizeof dst->shape);
    int64_t stride = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        dst->strides[d] = stride;
        stride *= t->shape[d];
    }
}

/* accum_grad_ (a node of the backward run): in[0] the leaf, in[1] its
 * gradient (the leaf's shape, any strides). Under the leaf's lock, copies
 * the gradient into a new .grad storage on the first backward, else adds it
 * (axpy_ with alpha 1: the same kernels and bits as gf_copy_/gf_axpy_). The
 * lock is held for one pass over the gradient; other leaves' nodes run
 * meanwhile. Only raw storage is touched here (workers never touch a ctx's
 * tensor lists): the .grad handle is made lazily by gf_grad. */
void gf__fwd_accum_grad_(gf__node *n) {
    gf_tensor *t = n->in[0], *g = n->in[1];
    gf__leafinfo *l = t->leaf;
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    bool fresh = !l->grad;
    if (fresh) {
        gf__storage *st = gf__storage_new(t->ctx->eng, (size_t)t->numel * gf__dtype_size(t->dtype));
        if (!st || gf__storage_materialize(st) != GF_OK) {
            gf__storage_release(st);
            pthread_mutex_unlock(&l->mu);
            gf__kernel_error(n, GF_ENOMEM, "gf_backward: out of memory for .grad %s",
                             GF__SHAPE(t));
            return;
        }
        st->is_grad = true;
        l->grad = st;
    }
    gf_tensor dst;
    gf__grad_view(t, l->grad, &dst);
    gf_tensor *ins[2] = {&dst, g};
    gf__node k = {.op = fresh ? GF__OP_copy_ : GF__OP_axpy_, .n_in = 2, .in = ins, .out = &dst,
                  .par = n->par, .a = {.s = 1.0}};
    gf__op_fwd[k.op](&k);
    atomic_fetch_add(&l->grad->version, 1);
    pthread_mutex_unlock(&l->mu);
}

gf_status gf__bwd_accum_grad_(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}

/* Before a plain backward writes .grad storages: a .grad handle left by a
 * create_graph backward (a graph tensor) is dropped so that a plain one
 * starts, and pending nodes that read a .grad storage (write-after-read)
 * run first. */
static gf_status gf__prepare_leaves(gf_ctx *ctx, const gf__tvec *leaves) {
    for (int64_t k = 0; k < leaves->n; k++) {
        gf_tensor *t = leaves->v[k];
        gf__leafinfo *l = t->leaf;
        if (!t->bw_grad || !l) continue;
        gf_tensor *h = t->grad;
        if (!h || h->storage == l->grad) continue;
        /* A .grad of its own: a create_graph result (old + g with a graph)
         * or the zeros gf_zero_grad put in place of one. Its values move to
         * a new shared storage, which this backward adds into (as PyTorch
         * accumulates into such a .grad); the handle, and with it the graph
         * and its reference cycle, is dropped, and gf_grad remakes it on the
         * new storage. */
        if (gf_realize(h) != GF_OK) return gf_ctx_status(ctx);
        gf__storage *st = gf__storage_new(ctx->eng, (size_t)t->numel * gf__dtype_size(t->dtype));
        if (!st || gf__storage_materialize(st) != GF_OK) {
            gf__storage_release(st);
            return gf__error(ctx, GF_ENOMEM, "gf_backward: out of memory for .grad %s",
                             GF__SHAPE(t));
        }
        st->is_grad = true;
        gf_tensor dst;
        gf__grad_view(t, st, &dst);
        gf_tensor *ins[2] = {&dst, h};
        gf__node cp = {.op = GF__OP_copy_, .n_in = 2, .in = ins, .out = &dst,
                       .par = {.nthreads = 1}};
        gf__op_fwd[GF__OP_copy_](&cp);
        t->grad = NULL;
        gf__unref(h);
        pthread_mutex_lock(&l->mu);
        gf__storage_release(l->grad);
        l->grad = st;
        pthread_mutex_unlock(&l->mu);
    }
    gf__tvec rd = gf__tvec_of(ctx, 2); /* the walk stack's buffer: free again */
    for (gf__node *n = ctx->pending; n; n = n->pnext)
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->storage->is_grad) {
                if (!gf__tvec_push(&rd, n->out))
                    return gf__error(ctx, GF_ENOMEM, "gf_backward: out of memory");
                break;
            }
    return rd.n ? gf__realize_many(ctx, (int)rd.n, rd.v) : GF_OK;
}

/* The common walk of gf_backward_ex and gf_grad_of. With inputs (grad_of),
 * their gradients go to grads[] instead of .grad. */
static gf_status gf__backward(gf_tensor *out, const gf_backward_opts *opts, int n_inputs,
                              gf_tensor *const *inputs, gf_tensor **grads) {
    gf_ctx *ctx = out->ctx;
    const char *op = n_inputs ? "gf_grad_of" : "gf_backward";
    gf_backward_opts o = {0};
    if (opts) o = *opts;
    /* As torch: retain_graph defaults to create_graph (a graph that produced
     * a differentiable gradient is still needed by that gradient). */
    if (o.create_graph) o.retain_graph = true;
    if (gf__stale(out, op)) return GF_ESTATE;
    if (!out->requires_grad)
        return gf__error(ctx, GF_ESTATE,
                         "%s: the output %s does not require grad (no input of its graph "
                         "requires grad, or it was computed under no_grad)",
                         op, GF__SHAPE(out));
    gf_tensor *seed = o.grad_output;
    if (seed) {
        if (gf__stale(seed, op)) return GF_ESTATE;
        if (seed->ctx != ctx)
            return gf__error(ctx, GF_EINVAL, "%s: grad_output belongs to another ctx", op);
        if (seed->ndim != out->ndim || memcmp(seed->shape, out->shape, (size_t)out->ndim * 8))
            return gf__error(ctx, GF_ESHAPE,
                             "%s: grad_output has shape %s (expected the output's shape %s)", op,
                             GF__SHAPE(seed), GF__SHAPE(out));
    } else if (out->numel != 1) {
        return gf__error(ctx, GF_ESHAPE,
                         "%s: the output %s is not a scalar (expected one element, or pass "
                         "grad_output)",
                         op, GF__SHAPE(out));
    }
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]) return gf__error(ctx, GF_EINVAL, "%s: input %d is NULL", op, i);
        if (gf__stale(inputs[i], op)) return GF_ESTATE;
        if (inputs[i]->ctx != ctx)
            return gf__error(ctx, GF_EINVAL, "%s: input %d belongs to another ctx", op, i);
        if (!inputs[i]->requires_grad)
            return gf__error(ctx, GF_ESTATE, "%s: input %d %s does not require grad", op, i,
                             GF__SHAPE(inputs[i]));
    }

    /* The gradient graph is recorded lazily and realized in one parallel run
     * even in an eager ctx (restored below). */
    bool eager = ctx->eager;
    ctx->eager = false;
    /* The pending forward graph starts on the pool's workers while this
     * thread walks the graph and records the gradient graph (the walk only
     * reads what the kernels do not write; every realization or in-place
     * write finishes the run first, graph.c). */
    gf_status s = gf__realize_start(out);
    gf__tvec nodes = gf__tvec_of(ctx, 0), leaves = gf__tvec_of(ctx, 1);
    int64_t epoch = ++ctx->walk_epoch;
    if (s == GF_OK) s = gf__collect(ctx, out, &nodes, &leaves, epoch);
    if (!o.create_graph) gf_no_grad_begin(ctx);
    gf_scope_begin(ctx);
    if (s == GF_OK) {
        gf_tensor *g = seed ? seed : gf_ones_like(out);
        if (g && g->dtype != out->dtype) g = gf_to_dtype(g, out->dtype);
        if (!g) s = gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_ENOMEM;
        else s = gf__accum(out, g);
    }
    /* Reverse topological order: every contribution to t is in before t's
     * own rule runs. */
    for (int64_t i = nodes.n - 1; s == GF_OK && i >= 0; i--) {
        gf_tensor *t = nodes.v[i];
        if (!t->bw_grad) continue;
        s = gf__apply_rule(t, t->bw_grad);
        bool wanted = false;
        for (int k = 0; k < n_inputs; k++) wanted |= inputs[k] == t;
        if (!wanted) {
            gf__unref(t->bw_grad);
            t->bw_grad = NULL;
        }
    }
    gf_scope_end(ctx);
    if (!o.create_graph) gf_no_grad_end(ctx);
    gf_status sf = gf__finish_inflight(ctx);
    if (s == GF_OK) s = sf;

    /* Realize every gradient (and the output, so the forward graph is
     * complete before it may be freed) in one batch. A plain backward's
     * accumulation into .grad is part of the batch: one accum_grad_ node per
     * leaf, in a scope that drops them afterwards. */
    bool plain = !n_inputs && !o.create_graph;
    if (s == GF_OK && plain) s = gf__prepare_leaves(ctx, &leaves);
    if (s == GF_OK) {
        gf_scope_begin(ctx);
        gf__tvec want = gf__tvec_of(ctx, 3);
        bool ok = gf__tvec_push(&want, out);
        static const int64_t none[1] = {0};
        if (n_inputs)
            for (int k = 0; ok && k < n_inputs; k++) {
                if (inputs[k]->bw_grad) ok = gf__tvec_push(&want, inputs[k]->bw_grad);
            }
        else
            for (int64_t k = 0; ok && k < leaves.n; k++) {
                gf_tensor *t = leaves.v[k], *a = t->bw_grad;
                if (!a) continue;
                if (plain && t->leaf) {
                    gf_tensor *in2[2] = {t, t->bw_grad};
                    a = gf__record(GF__OP_accum_grad_, t->dtype, 1, none, 2, in2, NULL);
                }
                ok = a && gf__tvec_push(&want, a);
            }
        s = ok ? gf__realize_many(ctx, (int)want.n, want.v)
               : gf__error(ctx, GF_ENOMEM, "%s: out of memory", op);
        gf_scope_end(ctx);
    }
    if (s == GF_OK && !n_inputs && o.create_graph)
        for (int64_t k = 0; s == GF_OK && k < leaves.n; k++)
            if (leaves.v[k]->bw_grad) s = gf__accum_leaf_graph(leaves.v[k], leaves.v[k]->bw_grad);
    ctx->eager = eager;
    if (s == GF_OK && n_inputs) {
        for (int k = 0; k < n_inputs; k++) {
            gf_tensor *x = inputs[k];
            gf_tensor *g = x->bw_grad ? gf_reshape(x->bw_grad, x->ndim, x->shape)
                                      : gf_zeros_like(x);
            grads[k] = g;
            if (!g) s = gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_ENOMEM;
        }
    }
    /* Clear the scratch gradients of every tensor of the walk. */
    for (int64_t k = 0; k < nodes.n; k++)
        if (nodes.v[k]->bw_grad) { gf__unref(nodes.v[k]->bw_grad); nodes.v[k]->bw_grad = NULL; }
    for (int64_t k = 0; k < leaves.n; k++)
        if (leaves.v[k]->bw_grad) { gf__unref(leaves.v[k]->bw_grad); leaves.v[k]->bw_grad = NULL; }
    /* Free the graph: saved inputs are released; the nodes stay as markers
     * so that a second backward through them is a clear error. */
    if (s == GF_OK && !o.retain_graph) {
        for (int64_t k = 0; k < nodes.n; k++) {
            gf__node *n = nodes.v[k]->node;
            if (n->state != GF__DONE || n->freed) continue;
            n->freed = true;
            for (int i = 0; i < n->n_in; i++) {
                gf_tensor *x = n->in[i];
                n->in[i] = NULL;
                gf__unref(x);
            }
            n->n_in = 0;
        }
    }
    return s;
}

gf_status gf_backward_ex(gf_tensor *out, const gf_backward_opts *opts) {
    if (!out) {
        if (opts && opts->grad_output)
            return gf__error(opts->grad_output->ctx, GF_EINVAL, "gf_backward: output is NULL");
        return GF_EINVAL;
    }
    return gf__backward(out, opts, 0, NULL, NULL);
}

gf_status gf_backward(gf_tensor *loss) { return gf_backward_ex(loss, NULL); }

gf_status gf_grad_of(gf_tensor *out, int n, gf_tensor *const *inputs, gf_tensor **grads,
                     const gf_backward_opts *opts) {
    if (!out) return GF_EINVAL;
    if (gf__stale(out, "gf_grad_of")) return GF_ESTATE;
    if (n <= 0 || !inputs || !grads)
        return gf__error(out->ctx, GF_EINVAL,
                         "gf_grad_of: expected n > 0 inputs and an array for their grads");
    for (int i = 0; i < n; i++) grads[i] = NULL;
    return gf__backward(out, opts, n, inputs, grads);
}
