/*
 * engine.c - engines (thread budget, allocator, executor, the environment
 * variables that configure them) and the lazily created process default
 * engine, the only global state of the library; ctxs and their teardown.
 */
#include "internal.h"
#include "env.h"
#include "pool.h"
#include "../ops/kernels/kernels.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifdef GF_HAVE_HWLOC
#include <hwloc.h>
#endif

/* Physical cores (hwloc), or online CPUs when hwloc is missing. */
static int gf__physical_cores(void) {
    int n = 0;
#ifdef GF_HAVE_HWLOC
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) == 0) {
        if (hwloc_topology_load(topo) == 0) {
            int depth = hwloc_get_type_depth(topo, HWLOC_OBJ_CORE);
            if (depth != HWLOC_TYPE_DEPTH_UNKNOWN) n = (int)hwloc_get_nbobjs_by_depth(topo, (unsigned)depth);
        }
        hwloc_topology_destroy(topo);
    }
#endif
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* The most threads an engine takes (gf_engine_opts and GF_NUM_THREADS). */
#define GF__MAX_THREADS 256

/* GF_NUM_THREADS, else one thread per physical core. A count above the
 * cores is taken as given (oversubscription is the user's choice). */
static int gf__env_threads(void) {
    long long v;
    gf__env_result r = gf__env_int("GF_NUM_THREADS", 1, GF__MAX_THREADS, &v);
    if (r == GF__ENV_OK) return (int)v;
    int cores = gf__physical_cores();
    if (r == GF__ENV_BAD)
        gf__env_warn("GF_NUM_THREADS",
                     "GF_NUM_THREADS=%s is not an integer in 1..%d; using %d threads (one per "
                     "physical core)",
                     getenv("GF_NUM_THREADS"), GF__MAX_THREADS, cores);
    return cores;
}

/* GF_INTRAOP=pool|openmp, else the pool. */
static gf_intraop gf__env_intraop(void) {
    const char *io = gf__env("GF_INTRAOP");
    if (io && strcmp(io, "openmp") == 0) return GF_INTRAOP_OPENMP;
    if (io && strcmp(io, "pool") != 0)
        gf__env_warn("GF_INTRAOP", "GF_INTRAOP=%s is not pool or openmp; using pool", io);
    return GF_INTRAOP_POOL;
}

/* GF_MIN_PARALLEL_WORK (elements touched, >= 0), else GF__MIN_PAR_WORK. */
static int64_t gf__env_min_par_work(void) {
    long long v;
    gf__env_result r = gf__env_int("GF_MIN_PARALLEL_WORK", 0, INT64_MAX, &v);
    if (r == GF__ENV_OK) return v;
    if (r == GF__ENV_BAD)
        gf__env_warn("GF_MIN_PARALLEL_WORK",
                     "GF_MIN_PARALLEL_WORK=%s is not an integer >= 0; using %d",
                     getenv("GF_MIN_PARALLEL_WORK"), GF__MIN_PAR_WORK);
    return GF__MIN_PAR_WORK;
}

/* GF_DETERMINISTIC for the default engine: 1|true|yes|on or 0|false|no|off
 * (any case), else off. */
static bool gf__env_deterministic(void) {
    const char *v = gf__env("GF_DETERMINISTIC");
    if (!v) return false;
    static const char *const on[] = {"1", "true", "yes", "on"};
    static const char *const off[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, on[i]) == 0) return true;
        if (strcasecmp(v, off[i]) == 0) return false;
    }
    gf__env_warn("GF_DETERMINISTIC",
                 "GF_DETERMINISTIC=%s is not 1|true|yes|on or 0|false|no|off; using 0 (off)", v);
    return false;
}

gf_engine *gf_engine_create(const gf_engine_opts *opts) {
    gf_engine_opts o = {0};
    if (opts) o = *opts;
    if (o.num_threads < 0 || o.num_threads > GF__MAX_THREADS) return NULL;
    if (o.num_threads == 0) o.num_threads = gf__env_threads();
    /* The kernel variant is chosen now (GF_ISA's warning, if any, comes at
     * start-up rather than at the first kernel). */
    (void)gf__gemm_isa();
    gf_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    atomic_init(&e->refs, 1);
    e->num_threads = o.num_threads;
    e->intraop = o.intraop;
    if (e->intraop != GF_INTRAOP_POOL && e->intraop != GF_INTRAOP_OPENMP)
        e->intraop = gf__env_intraop();
    e->deterministic = o.deterministic;
    e->pin_threads = o.pin_threads;
    e->min_par_work = gf__env_min_par_work();
    e->alloc = gf__alloc_create();
    if (!e->alloc) {
        free(e);
        return NULL;
    }
    /* num_threads - 1 workers: the thread that realizes a graph is the last. */
    if (o.num_threads > 1) {
        e->exec = gf__pool_create(o.num_threads - 1, o.num_threads, o.pin_threads);
        if (!e->exec) {
            gf__alloc_destroy(e->alloc);
            free(e);
            return NULL;
        }
    }
    return e;
}

/* Drops one reference (the creator's or a ctx's); the last frees eng. */
static void gf__engine_unref(gf_engine *eng) {
    if (atomic_fetch_sub(&eng->refs, 1) != 1) return;
    gf__pool_destroy(eng->exec);
    gf__alloc_destroy(eng->alloc);
    free(eng);
}

void gf_engine_destroy(gf_engine *eng) {
    if (eng) gf__engine_unref(eng);
}

gf_status gf_engine_memory_stats(const gf_engine *eng, gf_memory_stats *st) {
    if (!eng || !st) return GF_EINVAL;
    gf__alloc_stats(eng->alloc, st);
    return GF_OK;
}

int gf_engine_num_threads(const gf_engine *eng) { return eng ? eng->num_threads : 0; }
bool gf_engine_deterministic(const gf_engine *eng) { return eng && eng->deterministic; }
gf_intraop gf_engine_intraop(const gf_engine *eng) {
    return eng ? eng->intraop : GF_INTRAOP_DEFAULT;
}
/* The GEMM variant's name: the vector-math table follows the same choice
 * (kernels.h), so it names what every kernel runs. */
const char *gf_engine_isa(const gf_engine *eng) { return eng ? gf__gemm_isa() : NULL; }

static gf_engine *gf__default;
static pthread_once_t gf__default_once = PTHREAD_ONCE_INIT;

static void gf__default_destroy(void) { gf_engine_destroy(gf__default); }

static void gf__default_init(void) {
    gf_engine_opts o = {.deterministic = gf__env_deterministic()};
    gf__default = gf_engine_create(&o);
    if (gf__default) atexit(gf__default_destroy);
}

/* The process default engine, created on first use. */
static gf_engine *gf__default_engine(void) {
    pthread_once(&gf__default_once, gf__default_init);
    return gf__default;
}

/* ------------------------------------------------------------------- ctx */

gf_ctx *gf_ctx_create(gf_engine *eng) {
    if (!eng) eng = gf__default_engine();
    if (!eng) return NULL;
    gf_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->eng = eng;
    c->scope_heads = calloc(16, sizeof *c->scope_heads);
    if (!c->scope_heads) {
        free(c);
        return NULL;
    }
    c->scope_cap = 16;
    c->free_tailp = &c->free_tensors;
    pthread_mutex_init(&c->err_mu, NULL);
    atomic_init(&c->errors, 0);
    atomic_fetch_add(&eng->refs, 1);
    return c;
}

gf_status gf_ctx_on_destroy(gf_ctx *ctx, gf_ctx_destroy_fn fn, void *arg) {
    if (!ctx) return GF_EINVAL;
    if (!fn) return gf__error(ctx, GF_EINVAL, "gf_ctx_on_destroy: fn is NULL");
    if (ctx->n_hooks == ctx->hooks_cap) {
        int cap = ctx->hooks_cap ? 2 * ctx->hooks_cap : 8;
        gf__ctx_hook *h = realloc(ctx->hooks, (size_t)cap * sizeof *h);
        if (!h)
            return gf__error(ctx, GF_ENOMEM, "gf_ctx_on_destroy: out of memory for %d functions",
                             cap);
        ctx->hooks = h;
        ctx->hooks_cap = cap;
    }
    ctx->hooks[ctx->n_hooks++] = (gf__ctx_hook){fn, arg};
    return GF_OK;
}

void gf_ctx_remove_on_destroy(gf_ctx *ctx, gf_ctx_destroy_fn fn, void *arg) {
    if (!ctx) return;
    /* Newest first: objects are usually freed in the reverse order of
     * their creation, so the search is short. */
    for (int i = ctx->n_hooks - 1; i >= 0; i--)
        if (ctx->hooks[i].fn == fn && ctx->hooks[i].arg == arg) {
            memmove(&ctx->hooks[i], &ctx->hooks[i + 1],
                    (size_t)(ctx->n_hooks - i - 1) * sizeof *ctx->hooks);
            ctx->n_hooks--;
            return;
        }
}

void gf_ctx_destroy(gf_ctx *ctx) {
    if (!ctx) return;
    gf__finish_inflight(ctx); /* (none outside gf_backward; defensive) */
    /* Objects layered on the ctx detach themselves while it is intact; a
     * function may unregister others, so each is taken off before it runs. */
    while (ctx->n_hooks > 0) {
        gf__ctx_hook h = ctx->hooks[--ctx->n_hooks];
        h.fn(ctx, h.arg);
    }
    free(ctx->hooks);
    /* Drop every handle, then free whatever is left (objects only kept
     * alive by each other's references), without touching refcounts. */
    for (gf_tensor *t = ctx->tensors; t; t = t->next) {
        t->user = false;
        t->hprev = t->hnext = NULL;
        if (t->node) {
            t->node->n_in = 0; /* the inputs are on this list too */
            gf__node_free(t->node);
            t->node = NULL;
        }
        t->grad = t->contig = t->bw_grad = NULL;
    }
    while (ctx->tensors) {
        gf_tensor *t = ctx->tensors;
        t->refcount = 1;
        gf__unref(t);
    }
    free(ctx->scope_heads);
    gf_tensor *t = ctx->free_tensors;
    for (int64_t i = 0; i < ctx->n_free; i++) { /* the quarantine ends by its count */
        gf_tensor *nx = t->next;
        free(t);
        t = nx;
    }
    for (gf__node *n = ctx->free_nodes, *nx; n; n = nx) {
        nx = n->pnext;
        free(n);
    }
    free(ctx->topo_buf);
    free(ctx->exec_buf);
    free(ctx->roots_buf);
    for (int i = 0; i < 4; i++) free(ctx->bw_buf[i]);
    pthread_mutex_destroy(&ctx->err_mu);
    gf_engine *eng = ctx->eng;
    free(ctx);
    gf__engine_unref(eng);
}

gf_engine *gf_ctx_engine(const gf_ctx *ctx) { return ctx ? ctx->eng : NULL; }

void gf_ctx_set_eager(gf_ctx *ctx, bool eager) {
    if (ctx) ctx->eager = eager;
}
bool gf_ctx_eager(const gf_ctx *ctx) { return ctx && ctx->eager; }

int64_t gf_ctx_live_tensors(const gf_ctx *ctx) {
    int64_t n = 0;
    if (ctx)
        for (const gf_tensor *t = ctx->tensors; t; t = t->next) n++;
    return n;
}

void gf_manual_seed(gf_ctx *ctx, uint64_t seed) {
    if (!ctx) return;
    ctx->seed = seed;
    ctx->rng_counter = 0;
}

void gf_no_grad_begin(gf_ctx *ctx) {
    if (ctx) ctx->no_grad++;
}

void gf_no_grad_end(gf_ctx *ctx) {
    if (!ctx) return;
    if (ctx->no_grad == 0) {
        gf__error(ctx, GF_ESTATE, "gf_no_grad_end: no gf_no_grad_begin is open");
        return;
    }
    ctx->no_grad--;
}

bool gf_is_grad_enabled(const gf_ctx *ctx) { return ctx && ctx->no_grad == 0; }
