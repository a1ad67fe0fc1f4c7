/*
 * engine.c - engines (thread budget, allocator, executor) and the lazily
 * created process default engine, the only global state of the library.
 */
#include "internal.h"
#include "pool.h"


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

gf_engine *gf_engine_create(const gf_engine_opts *opts) {
    gf_engine_opts o = {0};
    if (opts) o = *opts;
    if (o.num_threads < 0 || o.num_threads > 256) return NULL;
    if (o.num_threads == 0) {
        const char *env = getenv("GF_NUM_THREADS");
        int v = env ? atoi(env) : 0;
        o.num_threads = v > 0 && v <= 256 ? v : gf__physical_cores();
    }
    gf_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->num_threads = o.num_threads;
    e->intraop = o.intraop;
    if (e->intraop != GF_INTRAOP_POOL && e->intraop != GF_INTRAOP_OPENMP) {
        const char *io = getenv("GF_INTRAOP");
        e->intraop = GF_INTRAOP_POOL;
        if (io && strcmp(io, "openmp") == 0) e->intraop = GF_INTRAOP_OPENMP;
        else if (io && *io && strcmp(io, "pool") != 0)
            fprintf(stderr, "gradflow: GF_INTRAOP=%s is not pool or openmp; using pool\n", io);
    }
    e->deterministic = o.deterministic;
    e->pin_threads = o.pin_threads;
    e->min_par_work = GF__MIN_PAR_WORK;
    const char *mpw = getenv("GF_MIN_PARALLEL_WORK");
    if (mpw && *mpw) {
        char *end;
        long long v = strtoll(mpw, &end, 10);
        if (*end == '\0' && v >= 0) e->min_par_work = v;
    }
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

void gf_engine_destroy(gf_engine *eng) {
    if (!eng) return;
    gf__pool_destroy(eng->exec);
    gf__alloc_destroy(eng->alloc);
    free(eng);
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

static gf_engine *gf__default;
static pthread_once_t gf__default_once = PTHREAD_ONCE_INIT;

static void gf__default_destroy(void) { gf_engine_destroy(gf__default); }

static void gf__default_init(void) {
    const char *det = getenv("GF_DETERMINISTIC");
    gf_engine_opts o = {.deterministic = det && strcmp(det, "0") != 0};
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
    pthread_mutex_init(&c->err_mu, NULL);
    atomic_init(&c->errors, 0);
    return c;
}

void gf_ctx_destroy(gf_ctx *ctx) {
    if (!ctx) return;
    gf__finish_inflight(ctx); /* (none outside gf_backward; defensive) */
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
    for (gf_tensor *t = ctx->free_tensors, *nx; t; t = nx) {
        nx = t->next;
        free(t);
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
    free(ctx);
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
