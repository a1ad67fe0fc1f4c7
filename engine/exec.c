/*
 * exec.c - the executor: runs a topologically sorted list of pending nodes
 * on the engine's work-stealing pool.
 *
 * Partitioning: maximal single-producer/single-consumer chains of nodes
 * become one task (a chain has no parallelism to offer, and running it on one
 * thread keeps its data in that core's cache). Each task counts its
 * unfinished predecessor tasks; finishing a task releases its successors: one
 * ready successor runs next on the same thread (no queue round trip), the
 * others are pushed on the worker's deque where idle workers steal them.
 * A run with a single chain, a run whose summed work estimate is below the
 * engine's min_par_work (tiny nodes: a hand-off would cost more than they
 * compute), or any run on an engine with one thread runs on the calling
 * thread with no pool traffic at all.
 *
 * A run can also be started without waiting (gf__exec_start): the pool's
 * workers run it while the calling thread goes on (gf_backward records the
 * gradient graph meanwhile), and gf__exec_finish waits for it, running tasks
 * too. One run per ctx is in flight at a time (ctx->inflight); graph.c
 * finishes it before anything else realizes or writes in place.
 *
 * Every kernel is handed the engine's intra-op parallelism (gf__engine_par):
 * on the pool backend its tiles become tasks of this same pool, led by the
 * thread that runs the node; on the OpenMP backend it gets a team of the
 * engine's threads divided among the running tasks (gf__pool_budget).
 * Kernels produce the same bits either way, so the schedule never changes
 * results.
 */
#include "internal.h"
#include "pool.h"

#include <stdlib.h>
#include <string.h>

typedef struct gf__run gf__run;

typedef struct {
    gf__task base;
    gf__run *run;
    int64_t first, count; /* the chain: run->order[first .. first+count) */
    int64_t succ_first, nsucc;
} gf__xtask;

struct gf__run {
    gf_ctx *ctx;
    gf__pool *pool;
    gf__node **order;
    gf__xtask *tasks;
    int64_t *succ;
    /* Unfinished predecessors per task, dense and apart from the tasks: the
     * counters that random fan-in decrements stay in few cache lines (4
     * bytes a task, a 100,000-task run's fit in L2). */
    atomic_int *pending;
    atomic_long remaining;
    int errs0;
};

gf__par gf__engine_par(gf_engine *eng) {
    gf__pool *p = eng->exec;
    if (!p) return (gf__par){.nthreads = 1};
    if (eng->intraop == GF_INTRAOP_OPENMP)
        return (gf__par){.nthreads = gf__pool_budget(p), .omp = true};
    return (gf__par){.pool = p, .nthreads = eng->num_threads};
}

/* Runs one node's kernel. False if the run must stop (an error). */
static bool gf__run_node(gf_ctx *ctx, gf__node *nd, int errs0) {
    if (atomic_load_explicit(&ctx->errors, memory_order_relaxed) != errs0) return false;
    gf__op op = (gf__op)nd->op;
    if (!(gf__op_flags[op] & GF__OPF_VIEW)) {
        if (gf__storage_materialize(nd->out->storage) != GF_OK) {
            gf__kernel_error(nd, GF_ENOMEM, "gf_%s: out of memory for output %s",
                             gf__op_names[op], GF__SHAPE(nd->out));
            return false;
        }
        nd->par = gf__engine_par(ctx->eng);
        gf__op_fwd[op](nd);
        if (atomic_load_explicit(&ctx->errors, memory_order_relaxed) != errs0) {
            gf__node_set_done(nd); /* its output is defined (the kernel says what) */
            return false;
        }
    }
    gf__node_set_done(nd);
    return true;
}

/* Whether finishing one predecessor makes s ready. When the count already
 * reads 1 the caller is the last predecessor left and no other thread
 * touches the counter again, so an acquire load (pairing with the other
 * predecessors' release decrements) replaces a locked decrement. */
static inline bool gf__release(atomic_int *pending) {
    if (atomic_load_explicit(pending, memory_order_acquire) == 1) return true;
    return atomic_fetch_sub_explicit(pending, 1, memory_order_acq_rel) == 1;
}

static void gf__xtask_run(gf__task *base) {
    gf__xtask *t = (gf__xtask *)base;
    gf__run *r = t->run;
    long done = 0;
    while (t) {
        for (int64_t i = 0; i < t->count; i++)
            if (!gf__run_node(r->ctx, r->order[t->first + i], r->errs0))
                break;
        /* Release successors; keep one to run next on this thread. */
        gf__xtask *next = NULL;
        for (int64_t k = 0; k < t->nsucc; k++) {
            int64_t c = r->succ[t->succ_first + k];
            gf__xtask *s = &r->tasks[c];
            if (gf__release(&r->pending[c])) {
                if (!next) next = s;
                else gf__pool_submit(r->pool, &s->base);
            }
        }
        done++;
        t = next;
    }
    /* Last touch of the run: the waiter may return once remaining reaches 0.
     * One decrement for the whole sequence of continuations, not one per
     * task: every thread writes this counter's cache line. */
    atomic_fetch_sub_explicit(&r->remaining, done, memory_order_acq_rel);
}

/* A node's work estimate in elements touched: inputs read plus output
 * written; an output element of a matmul or linear_act (x w^T + b) costs K
 * multiply-adds, K the last dim of its first input. */
static int64_t gf__node_work(const gf__node *nd) {
    int64_t w = nd->out->numel;
    if ((nd->op == GF__OP_matmul || nd->op == GF__OP_linear_act) && nd->n_in >= 2) {
        const gf_tensor *a = nd->in[0];
        w = gf__mul_sat(w, a->ndim ? a->shape[a->ndim - 1] : 1);
    }
    /* Saturating: an estimate past int64 only has to compare as large. */
    for (int k = 0; k < nd->n_in; k++)
        if (__builtin_add_overflow(w, nd->in[k]->numel, &w)) return INT64_MAX;
    return w;
}

static gf_status gf__exec_serial(gf_ctx *ctx, gf__node **nodes, int64_t n) {
    int errs0 = atomic_load(&ctx->errors);
    for (int64_t i = 0; i < n; i++)
        if (!gf__run_node(ctx, nodes[i], errs0)) break;
    return atomic_load(&ctx->errors) != errs0 ? gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_EINVAL
                                              : GF_OK;
}

/* The producer of input k of node v if it is part of this run and not the
 * same as an earlier input's (x*x has one edge), else -1. */
static int64_t gf__pred(gf__node *v, int k, int64_t epoch) {
    gf__node *p = v->in[k]->node;
    if (!p || p->mark != epoch) return -1;
    for (int j = 0; j < k; j++)
        if (v->in[j]->node == p) return -1;
    return p->idx;
}

gf_status gf__exec_run(gf_ctx *ctx, gf__node **nodes, int64_t n) {
    bool started = false;
    gf_status s = gf__exec_start(ctx, nodes, n, &started);
    return started ? gf__exec_finish(ctx) : s;
}

gf_status gf__exec_finish(gf_ctx *ctx) {
    gf__run *r = ctx->inflight;
    if (!r) return GF_OK;
    gf__pool_wait(r->pool, &r->remaining);
    ctx->inflight = NULL;
    int errs = atomic_load(&ctx->errors);
    return errs != r->errs0 ? (gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_EINVAL) : GF_OK;
}

gf_status gf__exec_start(gf_ctx *ctx, gf__node **nodes, int64_t n, bool *started) {
    gf_engine *eng = ctx->eng;
    gf__pool *pool = eng->exec;
    *started = false;
    if (!pool || n == 1) return gf__exec_serial(ctx, nodes, n);
    /* Tiny runs stay on this thread (the "tiny nodes are merged"):
     * all of a run's nodes together are one task when their summed work
     * would not pay for a hand-off. */
    if (eng->min_par_work > 0) {
        int64_t work = 0;
        for (int64_t i = 0; i < n && work < eng->min_par_work; i++)
            if (!(gf__op_flags[nodes[i]->op] & GF__OPF_VIEW) &&
                __builtin_add_overflow(work, gf__node_work(nodes[i]), &work))
                work = INT64_MAX;
        if (work < eng->min_par_work) return gf__exec_serial(ctx, nodes, n);
    }

    int64_t epoch = ++ctx->walk_epoch;
    for (int64_t i = 0; i < n; i++) {
        nodes[i]->mark = epoch;
        nodes[i]->idx = i;
    }
    /* One scratch block of the ctx (no allocation after warm-up): per node
     * in-run predecessor count, successor count, sole predecessor and chain
     * id; then the tasks, the chain-ordered node list and the successor
     * lists, sized by upper bounds (chains <= nodes, edges <= inputs). */
    int64_t max_edges = 0;
    for (int64_t i = 0; i < n; i++) max_edges += nodes[i]->n_in;
    size_t head = (sizeof(gf__run) + 63) & ~(size_t)63; /* the run itself, first */
    size_t bytes = head + (size_t)n * 4 * sizeof(int64_t) + (size_t)n * sizeof(gf__xtask) +
                   (size_t)n * sizeof(gf__node *) + (size_t)(max_edges + 1) * sizeof(int64_t) +
                   (size_t)n * sizeof(atomic_int);
    char *mem = gf__scratch(&ctx->exec_buf, &ctx->exec_cap, bytes);
    if (!mem) return gf__exec_serial(ctx, nodes, n);
    gf__run *run = (gf__run *)mem;
    mem += head;
    int64_t *buf = (int64_t *)mem;
    gf__xtask *tasks = (gf__xtask *)(mem + (size_t)n * 4 * sizeof(int64_t));
    gf__node **order = (gf__node **)(tasks + n);
    int64_t *succ = (int64_t *)(order + n);
    atomic_int *pending = (atomic_int *)(succ + max_edges + 1);
    int64_t *npred = buf, *nsucc = buf + n, *one = buf + 2 * n, *chain = buf + 3 * n;
    memset(buf, 0, (size_t)n * 2 * sizeof *buf);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < nodes[i]->n_in; k++) {
            int64_t p = gf__pred(nodes[i], k, epoch);
            if (p < 0) continue;
            npred[i]++;
            nsucc[p]++;
            one[i] = p;
        }
    int64_t nchains = 0;
    for (int64_t i = 0; i < n; i++)
        chain[i] = (npred[i] == 1 && nsucc[one[i]] == 1) ? chain[one[i]] : nchains++;
    if (nchains == 1) return gf__exec_serial(ctx, nodes, n);

    /* Tasks: chain lengths -> ranges of `order`; successor lists (CSR). */
    memset(tasks, 0, (size_t)nchains * sizeof *tasks);
    for (int64_t c = 0; c < nchains; c++) atomic_init(&pending[c], 0);
    for (int64_t i = 0; i < n; i++) tasks[chain[i]].count++;
    for (int64_t c = 0, at = 0; c < nchains; c++) {
        tasks[c].first = at;
        at += tasks[c].count;
        tasks[c].count = 0;
    }
    for (int64_t i = 0; i < n; i++) {
        gf__xtask *t = &tasks[chain[i]];
        order[t->first + t->count++] = nodes[i];
    }
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < nodes[i]->n_in; k++) {
            int64_t p = gf__pred(nodes[i], k, epoch);
            if (p >= 0 && chain[p] != chain[i]) tasks[chain[p]].nsucc++;
        }
    for (int64_t c = 0, at = 0; c < nchains; c++) {
        tasks[c].succ_first = at;
        at += tasks[c].nsucc;
        tasks[c].nsucc = 0;
    }
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < nodes[i]->n_in; k++) {
            int64_t p = gf__pred(nodes[i], k, epoch);
            if (p < 0 || chain[p] == chain[i]) continue;
            gf__xtask *src = &tasks[chain[p]];
            succ[src->succ_first + src->nsucc++] = chain[i];
            atomic_fetch_add_explicit(&pending[chain[i]], 1, memory_order_relaxed);
        }

    *run = (gf__run){.ctx = ctx, .pool = pool, .order = order, .tasks = tasks, .succ = succ,
                     .pending = pending};
    run->errs0 = atomic_load(&ctx->errors);
    atomic_init(&run->remaining, nchains);
    for (int64_t c = 0; c < nchains; c++) {
        tasks[c].base.run = gf__xtask_run;
        tasks[c].run = run;
    }
    /* The initially ready chains are listed before any is submitted: once
     * one runs, others reach pending 0 and are submitted by their producer.
     * (npred is free now; it holds the list.) */
    int64_t nready = 0;
    for (int64_t c = 0; c < nchains; c++)
        if (atomic_load_explicit(&pending[c], memory_order_relaxed) == 0) npred[nready++] = c;
    ctx->inflight = run;
    *started = true;
    for (int64_t k = 0; k < nready; k++) gf__pool_submit(pool, &tasks[npred[k]].base);
    return GF_OK;
}
