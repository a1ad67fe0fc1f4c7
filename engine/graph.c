/*
 * graph.c - recording nodes, realizing pending subgraphs, and ordering
 * in-place writes against pending readers.
 *
 * A recorded node sits on its ctx's pending list until it runs. Realizing a
 * set of tensors walks their pending ancestors (iteratively: graphs can be
 * 100,000 nodes deep), orders them topologically and hands them to the
 * executor. Afterwards nodes that autograd does not need are dropped at once,
 * which releases their inputs (and so the intermediate buffers nobody else
 * holds).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gf__pending_push(gf_ctx *ctx, gf__node *n) {
    n->pprev = NULL;
    n->pnext = ctx->pending;
    if (ctx->pending) ctx->pending->pprev = n;
    ctx->pending = n;
}

static void gf__pending_remove(gf_ctx *ctx, gf__node *n) {
    if (n->pprev) n->pprev->pnext = n->pnext;
    else if (ctx->pending == n) ctx->pending = n->pnext;
    if (n->pnext) n->pnext->pprev = n->pprev;
    n->pprev = n->pnext = NULL;
}

/* Drops the node's references to its inputs (graph freed after backward, or
 * a node autograd does not need once it ran). */
static void gf__node_release_inputs(gf__node *n) {
    for (int i = 0; i < n->n_in; i++) {
        gf_tensor *t = n->in[i];
        n->in[i] = NULL;
        gf__unref(t);
    }
    n->n_in = 0;
}

void gf__node_free(gf__node *n) {
    gf_ctx *ctx = n->out->ctx;
    if (n->state == GF__PENDING) gf__pending_remove(ctx, n);
    gf_tensor **in = n->in;
    gf__node_release_inputs(n);
    if (in != n->in_small) free(in);
    if (n->in_version != n->in_version_small) free(n->in_version);
    n->pnext = ctx->free_nodes;
    ctx->free_nodes = n;
}

gf_ctx *gf__ctx_of_inputs(int n, gf_tensor *const *ts) {
    for (int i = 0; i < n; i++)
        if (!ts[i]) return NULL;
    return n ? ts[0]->ctx : NULL;
}

/* The error of input i of op (stale, or of another ctx than ctx), named
 * gf_<op> whether the caller passed the public name or the op table's
 * ("add"). Out of line, so that the checks on the hot path stay compares. */
static __attribute__((noinline, cold)) void gf__input_error(gf_ctx *ctx, const char *op, int i,
                                                           const gf_tensor *t) {
    char fn[64];
    snprintf(fn, sizeof fn, "%s%s", strncmp(op, "gf_", 3) ? "gf_" : "", op);
    if (t->dead) gf__stale_error(NULL, t, fn);
    else
        gf__error(ctx, GF_EINVAL,
                  "%s: input %d belongs to another ctx (expected all inputs in one ctx; "
                  "use gf_share for parameters)",
                  fn, i);
}

gf_ctx *gf__check_inputs(const char *op, int n, gf_tensor *const *ts) {
    gf_ctx *ctx = NULL;
    for (int i = 0; i < n; i++)
        if (ts && ts[i]) {
            ctx = ts[i]->ctx;
            break;
        }
    if (!ctx) return NULL;
    for (int i = 0; i < n; i++) {
        /* A NULL input is the result of an earlier failed call, whose error
         * is already on the ctx: pass the NULL on quietly. */
        if (!ts[i]) return NULL;
        if (ts[i]->dead || ts[i]->ctx != ctx) {
            gf__input_error(ctx, op, i, ts[i]);
            return NULL;
        }
    }
    return ctx;
}

static gf__node *gf__node_new(gf_ctx *ctx, gf__op op, int n_in, gf_tensor *const *in,
                              const gf__attrs *a) {
    gf__node *n = ctx->free_nodes;
    if (n) {
        ctx->free_nodes = n->pnext;
        memset(n, 0, sizeof *n);
    } else {
        n = calloc(1, sizeof *n);
    }
    if (!n) return NULL;
    n->op = (uint16_t)op;
    n->in = n->in_small;
    n->in_version = n->in_version_small;
    if (n_in > GF__MAX_IN_SMALL) {
        n->in = calloc((size_t)n_in, sizeof *n->in);
        n->in_version = calloc((size_t)n_in, sizeof *n->in_version);
        if (!n->in || !n->in_version) {
            if (n->in != n->in_small) free(n->in);
            if (n->in_version != n->in_version_small) free(n->in_version);
            n->pnext = ctx->free_nodes;
            ctx->free_nodes = n;
            return NULL;
        }
    }
    bool rg = false;
    bool grad_on = ctx->no_grad == 0 && !(gf__op_flags[op] & GF__OPF_NODIFF);
    for (int i = 0; i < n_in; i++) {
        n->in[i] = in[i];
        gf__retain(in[i]);
        if (grad_on && in[i]->requires_grad) rg = true;
    }
    n->n_in = n_in;
    n->requires_grad = rg;
    if (rg)
        for (int i = 0; i < n_in; i++)
            n->in_version[i] = atomic_load(&in[i]->storage->version);
    if (a) n->a = *a;
    return n;
}

/* True, with the error on the ctx naming the op, if one of the n inputs is
 * a stale handle (the ops that take one tensor reach no other check). */
static bool gf__stale_input(gf__op op, int n, gf_tensor *const *in) {
    for (int i = 0; i < n; i++)
        if (__builtin_expect(in[i]->dead, 0)) {
            gf__input_error(in[i]->ctx, gf__op_names[op], i, in[i]);
            return true;
        }
    return false;
}

/* Attaches a new node to out, puts it on the pending list, runs it in eager
 * mode. Inlined into both recorders: it is on the path of every op. */
static inline __attribute__((always_inline)) gf_tensor *
gf__attach(gf_ctx *ctx, gf_tensor *out, gf__op op, int n_in, gf_tensor *const *in,
           const gf__attrs *a) {
    gf__node *n = gf__node_new(ctx, op, n_in, in, a);
    if (!n) {
        gf__error(ctx, GF_ENOMEM, "gf_%s: out of memory recording the op", gf__op_names[op]);
        gf_release(out);
        return NULL;
    }
    n->out = out;
    out->node = n;
    out->requires_grad = n->requires_grad;
    gf__pending_push(ctx, n);
    /* In eager mode the op is its computation: if that fails, so does the op. */
    if (ctx->eager && gf_realize(out) != GF_OK) {
        gf_release(out);
        return NULL;
    }
    return out;
}

gf_tensor *gf__record(gf__op op, gf_dtype dt, int ndim, const int64_t *shape, int n_in,
                      gf_tensor *const *in, const gf__attrs *a) {
    gf_ctx *ctx = in[0]->ctx;
    /* in[0] only: ops with more tensor inputs pass them all through
     * gf__check_inputs first (internal.h). */
    if (gf__stale_input(op, 1, in)) return NULL;
    if (gf__shape_check(ctx, "gf_", gf__op_names[op], dt, ndim, shape) != GF_OK) return NULL;
    gf_tensor *out = gf__tensor_new(ctx, dt, ndim, shape);
    if (!out) return NULL;
    return gf__attach(ctx, out, op, n_in, in, a);
}

gf_tensor *gf__record_view(gf__op op, gf_tensor *in, int ndim, const int64_t *shape,
                           const int64_t *strides, int64_t offset, const gf__attrs *a) {
    gf_ctx *ctx = in->ctx;
    if (gf__stale_input(op, 1, &in)) return NULL;
    if (gf__shape_check(ctx, "gf_", gf__op_names[op], in->dtype, ndim, shape) != GF_OK)
        return NULL;
    gf_tensor *out = gf__tensor_view(in, ndim, shape, strides, offset);
    if (!out) return NULL;
    bool pending = in->node && gf__node_pending(in->node);
    bool grad = ctx->no_grad == 0 && !(gf__op_flags[op] & GF__OPF_NODIFF) && in->requires_grad;
    if (!pending && !grad) return out; /* a view of computed data needs no node */
    return gf__attach(ctx, out, op, 1, &in, a);
}

/* ------------------------------------------------------------ realizing */

/* Lists the pending ancestors of roots (roots included) in *order, inputs
 * before consumers. Iterative DFS with an explicit stack (graphs can be
 * 100,000 deep). The list lives in the ctx's topo scratch buffer and the
 * stack in its exec buffer (free again before the executor runs). Returns
 * the count, or -1 on OOM. */
static int64_t gf__topo(gf_ctx *ctx, int nroots, gf__node *const *roots, gf__node ***order) {
    struct frame { gf__node *node; int next; };
    int64_t n = 0, sp = 0;
    int64_t cap = (int64_t)(ctx->topo_cap / sizeof(gf__node *));
    int64_t scap = (int64_t)(ctx->exec_cap / sizeof(struct frame));
    gf__node **out = gf__scratch(&ctx->topo_buf, &ctx->topo_cap, 64 * sizeof *out);
    struct frame *st = gf__scratch(&ctx->exec_buf, &ctx->exec_cap, 64 * sizeof *st);
    if (!out || !st) return -1;
    cap = (int64_t)(ctx->topo_cap / sizeof *out);
    scap = (int64_t)(ctx->exec_cap / sizeof *st);
    int64_t epoch = ++ctx->walk_epoch;
    for (int r = 0; r < nroots; r++) {
        gf__node *root = roots[r];
        if (!root || root->state != GF__PENDING || root->mark == epoch) continue;
        root->mark = epoch;
        st[sp++] = (struct frame){root, 0};
        while (sp) {
            struct frame *f = &st[sp - 1];
            if (f->next < f->node->n_in) {
                gf_tensor *t = f->node->in[f->next++];
                gf__node *c = t->node;
                if (c && c->state == GF__PENDING && c->mark != epoch) {
                    c->mark = epoch;
                    if (sp == scap) {
                        st = gf__scratch(&ctx->exec_buf, &ctx->exec_cap, (size_t)(2 * scap) * sizeof *st);
                        if (!st) return -1;
                        scap = (int64_t)(ctx->exec_cap / sizeof *st);
                    }
                    st[sp++] = (struct frame){c, 0};
                }
                continue;
            }
            if (n == cap) {
                out = gf__scratch(&ctx->topo_buf, &ctx->topo_cap, (size_t)(2 * cap) * sizeof *out);
                if (!out) return -1;
                cap = (int64_t)(ctx->topo_cap / sizeof *out);
            }
            out[n++] = f->node;
            sp--;
        }
    }
    *order = out;
    return n;
}

/* After nodes ran: off the pending list; nodes autograd will not need are
 * dropped, releasing their inputs. */
static void gf__retire(gf_ctx *ctx, gf__node **order, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        gf__node *nd = order[i];
        if (nd->state != GF__DONE) continue;
        gf__pending_remove(ctx, nd);
    }
    for (int64_t i = 0; i < n; i++) {
        gf__node *nd = order[i];
        if (nd->state != GF__DONE || nd->requires_grad) continue;
        nd->out->node = NULL;
        gf__node_free(nd);
    }
}

gf_status gf__finish_inflight(gf_ctx *ctx) {
    if (!ctx->inflight) return GF_OK;
    gf_status s = gf__exec_finish(ctx);
    gf__retire(ctx, ctx->inflight_order, ctx->inflight_n);
    if (s == GF_OK && atomic_load(&ctx->errors) != ctx->inflight_errs) s = GF_EINVAL;
    ctx->inflight_order = NULL;
    ctx->inflight_n = 0;
    return s;
}

/* Realizes the pending ancestors of roots; with async, a run that goes to
 * the pool is left in flight (gf__finish_inflight ends it). A run already in
 * flight is finished first: it owns the topo and exec buffers. */
static gf_status gf__realize_nodes_ex(gf_ctx *ctx, int nroots, gf__node *const *roots,
                                      bool async) {
    gf_status s0 = gf__finish_inflight(ctx);
    if (s0 != GF_OK) return s0;
    gf__node **order = NULL;
    int64_t n = gf__topo(ctx, nroots, roots, &order);
    if (n < 0) return gf__error(ctx, GF_ENOMEM, "gf_realize: out of memory sorting the graph");
    int errs = atomic_load(&ctx->errors);
    bool started = false;
    gf_status s = n ? gf__exec_start(ctx, order, n, &started) : GF_OK;
    if (started) {
        ctx->inflight_order = order;
        ctx->inflight_n = n;
        ctx->inflight_errs = errs;
        return async ? GF_OK : gf__finish_inflight(ctx);
    }
    gf__retire(ctx, order, n);
    if (s == GF_OK && atomic_load(&ctx->errors) != errs) s = GF_EINVAL;
    return s;
}

static gf_status gf__realize_nodes(gf_ctx *ctx, int nroots, gf__node *const *roots) {
    return gf__realize_nodes_ex(ctx, nroots, roots, false);
}

gf_status gf__realize_start(gf_tensor *t) {
    if (!t->node || !gf__node_pending(t->node)) return GF_OK;
    gf__node *root = t->node;
    return gf__realize_nodes_ex(t->ctx, 1, &root, true);
}

gf_status gf__realize_many(gf_ctx *ctx, int n, gf_tensor *const *ts) {
    gf__node *small[8];
    gf__node **roots =
        n <= 8 ? small : gf__scratch(&ctx->roots_buf, &ctx->roots_cap, (size_t)n * sizeof *roots);
    if (!roots) return gf__error(ctx, GF_ENOMEM, "gf_realize: out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->node && ts[i]->node->state == GF__PENDING) roots[k++] = ts[i]->node;
    gf_status s = k ? gf__realize_nodes(ctx, k, roots) : GF_OK;

    /* A tensor that was already computed is fine, unless an earlier failure
     * left it without data. */
    for (int i = 0; s == GF_OK && i < n; i++)
        if (ts[i] && !ts[i]->storage->data && ts[i]->numel)
            s = gf__error(ctx, GF_ESTATE, "gf_realize: tensor %s has no data (an earlier "
                          "computation failed: see the first error)", GF__SHAPE(ts[i]));
    return s;
}

gf_status gf_realize(gf_tensor *t) {
    if (!t) return GF_EINVAL;
    if (gf__stale(t, "gf_realize")) return GF_ESTATE;
    if (t->node && t->node->state == GF__PENDING) return gf__realize_many(t->ctx, 1, &t);
    if (!t->storage->data && t->numel)
        return gf__error(t->ctx, GF_ESTATE, "gf_realize: tensor %s has no data (an earlier "
                         "computation failed: see the first error)", GF__SHAPE(t));
    return GF_OK;
}

gf_status gf_realize_all(gf_ctx *ctx) {
    if (!ctx) return GF_EINVAL;
    int64_t k = 0;
    for (gf__node *n = ctx->pending; n; n = n->pnext) k++;
    if (!k) return GF_OK;
    gf__node **roots = gf__scratch(&ctx->roots_buf, &ctx->roots_cap, (size_t)k * sizeof *roots);
    if (!roots) return gf__error(ctx, GF_ENOMEM, "gf_realize_all: out of memory");
    k = 0;
    for (gf__node *n = ctx->pending; n; n = n->pnext) roots[k++] = n;
    return gf__realize_nodes(ctx, (int)k, roots);
}

/* ------------------------------------------------------------- in-place */

static bool gf__touches(const gf__node *n, const gf__storage *s) {
    if (n->out->storage == s) return true;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->storage == s) return true;
    return false;
}

/* The in-place rules for one written tensor t: its elements are distinct
 * memory (not a broadcast view, whose stride-0 elements would each be
 * updated in turn: PyTorch refuses it too), and outside no_grad a tensor
 * that requires grad may not be written. */
static gf_status gf__check_writable(gf_ctx *ctx, const char *name, const gf_tensor *t) {
    for (int d = 0; d < t->ndim; d++)
        if (t->strides[d] == 0 && t->shape[d] > 1)
            return gf__error(ctx, GF_EINVAL,
                             "gf_%s: tensor %s is written in place but its elements share "
                             "memory (an expanded view: stride 0 in dim %d); expected distinct "
                             "elements (gf_clone it first)",
                             name, GF__SHAPE(t), d);
    if (t->requires_grad && !gf_is_leaf((gf_tensor *)t) && ctx->no_grad == 0)
        return gf__error(ctx, GF_ESTATE,
                         "gf_%s: tensor %s is part of a graph that requires grad; in-place "
                         "updates must run under gf_no_grad_begin",
                         name, GF__SHAPE(t));
    if (t->requires_grad && ctx->no_grad == 0)
        return gf__error(ctx, GF_ESTATE,
                         "gf_%s: a leaf tensor %s that requires grad is used in an in-place "
                         "operation (expected it under gf_no_grad_begin)",
                         name, GF__SHAPE(t));
    return GF_OK;
}

/* True if pending node n touches dst's storage or one of the n_w written
 * sources' storages. */
static bool gf__touches_any(const gf__node *n, const gf_tensor *dst, int n_w,
                            gf_tensor *const *w) {
    if (gf__touches(n, dst->storage)) return true;
    for (int i = 0; i < n_w; i++)
        if (w[i]->storage != dst->storage && gf__touches(n, w[i]->storage)) return true;
    return false;
}

gf_status gf__run_inplace(gf__op op, gf_tensor *dst, int n_in, gf_tensor *const *in,
                          const gf__attrs *a) {
    return gf__run_inplace_w(op, dst, n_in, in, 0, a);
}

gf_status gf__run_inplace_w(gf__op op, gf_tensor *dst, int n_in, gf_tensor *const *in,
                            int n_written, const gf__attrs *a) {
    gf_ctx *ctx = dst->ctx;
    const char *name = gf__op_names[op];
    if (n_in < 0 || n_in > 3 || n_written < 0 || n_written > n_in)
        return gf__error(ctx, GF_EINVAL, "gf_%s: internal error: %d sources, %d written", name,
                         n_in, n_written);
    if (gf__stale_input(op, 1, &dst) || gf__stale_input(op, n_in, in)) return GF_ESTATE;
    gf_status s = gf__check_writable(ctx, name, dst);
    for (int i = 0; s == GF_OK && i < n_written; i++) s = gf__check_writable(ctx, name, in[i]);
    if (s == GF_OK) s = gf__finish_inflight(ctx); /* it may read what is written */
    if (s != GF_OK) return s;
    /* Every pending reader or writer of a written storage runs first (RAW,
     * WAR, WAW), and so do the sources. */
    int64_t k = 0;
    for (gf__node *n = ctx->pending; n; n = n->pnext)
        if (gf__touches_any(n, dst, n_written, in)) k++;
    gf__node **roots =
        gf__scratch(&ctx->roots_buf, &ctx->roots_cap, (size_t)(k + n_in + 1) * sizeof *roots);
    if (!roots) return gf__error(ctx, GF_ENOMEM, "gf_%s: out of memory", name);
    k = 0;
    for (gf__node *n = ctx->pending; n; n = n->pnext)
        if (gf__touches_any(n, dst, n_written, in)) roots[k++] = n;
    for (int i = 0; i < n_in; i++)
        if (in[i]->node && in[i]->node->state == GF__PENDING) roots[k++] = in[i]->node;
    s = k ? gf__realize_nodes(ctx, (int)k, roots) : GF_OK;
    if (s != GF_OK) return s;
    if (gf__storage_materialize(dst->storage) != GF_OK)
        return gf__error(ctx, GF_ENOMEM, "gf_%s: out of memory", name);
    for (int i = 0; i < n_written; i++)
        if (gf__storage_materialize(in[i]->storage) != GF_OK)
            return gf__error(ctx, GF_ENOMEM, "gf_%s: out of memory", name);
    /* The kernel sees a transient node: in[0] is dst, then the sources. */
    gf__node n = {0};
    gf_tensor *ins[4];
    ins[0] = dst;
    for (int i = 0; i < n_in; i++) ins[i + 1] = in[i];
    n.op = (uint16_t)op;
    n.n_in = n_in + 1;
    n.in = ins;
    n.out = dst;
    n.par = gf__engine_par(ctx->eng);
    if (a) n.a = *a;
    int errs = atomic_load(&ctx->errors);
    gf__op_fwd[op](&n);
    atomic_fetch_add(&dst->storage->version, 1);
    for (int i = 0; i < n_written; i++)
        if (in[i]->storage != dst->storage) atomic_fetch_add(&in[i]->storage->version, 1);
    return atomic_load(&ctx->errors) != errs ? GF_EINVAL : GF_OK;
}
