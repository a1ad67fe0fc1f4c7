/*
 * internal.h - structures shared by engine/ and ops/ (never installed).
 *
 * Object model
 *  - gf__storage: a refcounted buffer (atomic refcount, shared by views, by
 *    gf_share handles across ctxs, and by the engine's workers). Its data is
 *    allocated when the node that produces it runs, not when it is recorded.
 *    `version` counts in-place writes (autograd's saved-tensor check).
 *  - gf_tensor: shape/strides/offset over a storage, owned by one ctx. A
 *    tensor is refcounted: one reference for the user handle (dropped by
 *    gf_release or the end of its scope), one per node that reads it.
 *  - gf__node: the recorded op that produces a tensor. A tensor owns its
 *    producing node; a node owns references to its inputs; a node points
 *    back to its output weakly (the node never outlives it). So the graph has
 *    no cycles and freeing a handle frees whatever nobody else needs.
 *  - gf__leafinfo: what gf_share'd handles of one leaf have in common: the
 *    .grad storage and the lock that makes accumulation into it atomic.
 *
 * Naming: gf_ public, gf__ internal non-static (see STYLE.md).
 */
#ifndef GF_INTERNAL_H
#define GF_INTERNAL_H

#include "gradflow.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "par.h"

#define GF__ALIGN 64
#define GF__MAX_IN_SMALL 3

/* ------------------------------------------------------------- op table */
typedef enum {
#define GF_OP(name, flags) GF__OP_##name,
#include "../ops/ops.def"
#undef GF_OP
    GF__OP_COUNT
} gf__op;

/* Op flags (ops.def). */
enum {
    GF__OPF_VIEW = 1,    /* output aliases input 0's storage: no kernel runs */
    GF__OPF_INPLACE = 2, /* writes input 0's storage (out aliases it) */
    GF__OPF_NODIFF = 4,  /* output never requires grad */
};

/* Attributes of a recorded node. Each op uses what it needs. */
typedef struct {
    double s;                     /* scalar operand (add_scalar, pow_scalar, axpy alpha) */
    double f[6];                  /* more floating parameters (optimizer steps' hyperparameters) */
    int64_t i[GF_MAX_DIMS];       /* dims, shapes, slice bounds */
    int64_t j[4];                 /* more integer parameters (slice_scatter's start, step) */
    int dim;                      /* the dim of a reduction, cat, softmax, ... */
    int n;                        /* a count (ndim of a shape attr, classes) */
    bool keepdim;
    gf_dtype dt;                  /* target dtype */
} gf__attrs;

typedef struct gf__storage {
    atomic_int refcount;
    atomic_uint_least64_t version; /* bumped by every in-place write */
    void *data;                    /* NULL until the producer ran */
    size_t nbytes;
    struct gf_engine *eng;         /* allocator the data came from */
    bool external;                 /* data not owned by the allocator */
    bool is_grad;                  /* a leaf's .grad: backward writes it (see autograd.c) */
} gf__storage;

typedef struct gf__leafinfo {
    atomic_int refcount;
    pthread_mutex_t mu;            /* serializes accumulation into grad */
    gf__storage *grad;             /* NULL until the first backward */
    int64_t numel;
    gf_dtype dtype;
    bool requires_grad;
} gf__leafinfo;

typedef enum { GF__PENDING = 0, GF__DONE = 1 } gf__node_state;

/* A node's state as other threads see it: the executor marks a node done
 * with a release store after its kernel ran, so a thread that reads DONE
 * with an acquire load also sees the output's data. */
#define gf__node_set_done(nd) __atomic_store_n(&(nd)->state, (uint8_t)GF__DONE, __ATOMIC_RELEASE)
#define gf__node_pending(nd) (__atomic_load_n(&(nd)->state, __ATOMIC_ACQUIRE) == GF__PENDING)

typedef struct gf__node {
    uint16_t op;                  /* gf__op */
    uint8_t state;                /* gf__node_state */
    bool requires_grad;           /* backward passes through this node */
    bool freed;                   /* inputs released after backward */
    int n_in;
    gf_tensor **in;               /* in_small or heap (n_in > GF__MAX_IN_SMALL) */
    gf_tensor *in_small[GF__MAX_IN_SMALL];
    uint64_t *in_version;         /* storage versions at record time (requires_grad) */
    uint64_t in_version_small[GF__MAX_IN_SMALL];
    gf_tensor *out;               /* weak: the node lives inside its output */
    gf__par par;                  /* how the kernel may split its loops (par.h) */
    gf__attrs a;
    /* pending list of the ctx */
    struct gf__node *pprev, *pnext;
    /* scratch for graph walks (topological sort, backward) */
    int64_t mark;
    int64_t idx;
} gf__node;

struct gf_tensor {
    gf_ctx *ctx;
    gf_dtype dtype;
    int ndim;
    int64_t shape[GF_MAX_DIMS];
    int64_t strides[GF_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements */
    int64_t numel;
    gf__storage *storage;
    gf__node *node;               /* producer; NULL for leaves and computed constants */
    gf__leafinfo *leaf;           /* leaves that require grad */
    gf_tensor *grad;              /* handle of leaf->grad in this ctx (owned) */
    gf_tensor *contig;            /* cached contiguous copy for gf_data_* of a strided view */
    int refcount;                 /* user handle + consumers */
    uint32_t dead;                /* 0 while live; GF__TENSOR_DEAD once freed */
    bool requires_grad;
    bool user;                    /* the user's handle is alive */
    bool is_grad;                 /* the .grad handle of a leaf (owned by the leaf) */
    int scope;                    /* scope depth of the user handle */
    struct gf_tensor *hprev, *hnext; /* the handle list of that scope */
    struct gf_tensor *prev, *next; /* the ctx's list of all tensor objects */
    /* scratch for backward */
    gf_tensor *bw_grad;
    int64_t bw_mark;
};

/* A tensor object is live from creation (its dead word is 0, as the
 * object is cleared) until its refcount reaches 0, dead afterwards (a
 * recognizable value, for debuggers). A dead object stays owned by its ctx
 * (the quarantine below), so a stale handle reads this word, never freed
 * memory. */
#define GF__TENSOR_DEAD 0x67665444u /* "gfTD" */
/* Freed tensor objects wait in a FIFO until this many more have been freed
 * before they are reused, so a just-released handle still points at a dead
 * object and not at the next tensor created. */
#define GF__TENSOR_QUARANTINE 512

/* --------------------------------------------------------------- engine */
typedef struct gf__alloc gf__alloc;

/* Default of gf_engine.min_par_work: ~30-60 µs of elementwise work, the
 * order of waking a sleeping worker. */
#define GF__MIN_PAR_WORK 65536

struct gf_engine {
    int num_threads;
    bool deterministic;
    bool pin_threads;
    gf__alloc *alloc;
    struct gf__pool *exec; /* the work-stealing pool (NULL with one thread) */
    gf_intraop intraop;    /* GF_INTRAOP_POOL or GF_INTRAOP_OPENMP */
    /* A run whose estimated work (elements touched, see exec.c) is below
     * this runs on the calling thread: handing tiny nodes to other threads
     * costs more than they compute. GF_MIN_PARALLEL_WORK overrides it. */
    int64_t min_par_work;
    /* The creator's reference plus one per ctx: gf_engine_destroy with ctxs
     * still open leaves the engine to the last gf_ctx_destroy. */
    atomic_int refs;
};

/* A function gf_ctx_on_destroy registered. */
typedef struct {
    gf_ctx_destroy_fn fn;
    void *arg;
} gf__ctx_hook;

struct gf_ctx {
    gf_engine *eng;
    gf_status status;
    char err[512];
    bool eager;
    int no_grad;                  /* nesting depth */
    int scope;                    /* current scope depth (0: outside any) */
    uint64_t seed;
    uint64_t rng_counter;         /* advances by the numel of every random tensor */
    gf_tensor *tensors;           /* every tensor object of the ctx */
    gf__node *pending;            /* nodes recorded and not yet run */
    int64_t walk_epoch;           /* for node/tensor marks in graph walks */
    pthread_mutex_t err_mu;       /* kernels may report errors from workers */
    atomic_int errors;     /* errors reported so far, first or not */
    gf_tensor **scope_heads;      /* user handles of each open scope depth (0: none open) */
    int scope_cap;
    gf_tensor *dying;             /* tensors whose refcount reached 0, being freed */
    /* Recycled objects and scratch arrays: after warm-up a training step
     * allocates nothing from the system. */
    gf_tensor *free_tensors;      /* the quarantine: oldest first (see GF__TENSOR_QUARANTINE) */
    gf_tensor **free_tailp;       /* the last one's next field, or &free_tensors */
    int64_t n_free;
    gf__node *free_nodes;
    void *topo_buf, *exec_buf, *roots_buf;
    size_t topo_cap, exec_cap, roots_cap;
    void *bw_buf[4];              /* backward: nodes, leaves, walk stack, wanted grads */
    size_t bw_cap[4];
    bool freeing;
    /* A run started by gf__exec_start and not yet finished (its order in
     * topo_buf, its tasks in exec_buf): see graph.c gf__finish_inflight. */
    struct gf__run *inflight;
    gf__node **inflight_order;
    int64_t inflight_n;
    int inflight_errs;
    gf__ctx_hook *hooks;          /* gf_ctx_on_destroy, run newest first */
    int n_hooks, hooks_cap;
};

/* What a kernel run now on eng is handed (exec.c): the pool and every
 * thread on the pool backend; the racy share of the threads on OpenMP. */
gf__par gf__engine_par(gf_engine *eng);

/* A reusable scratch buffer of at least n bytes (grown with realloc). */
void *gf__scratch(void **buf, size_t *cap, size_t n);

/* ------------------------------------------------------------- integers */
/* Whether a double converts to i64 with defined behaviour: finite and in
 * [-2^63, 2^63) (C leaves the conversion of anything else undefined). NaN
 * fails both comparisons. */
static inline bool gf__fits_i64(double v) { return v >= -0x1p63 && v < 0x1p63; }
/* a * b for work estimates (a, b >= 0): INT64_MAX when the product does not
 * fit, so that a cost comparison stays defined for any shape. */
static inline int64_t gf__mul_sat(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

/* --------------------------------------------------------------- errors */
/* Records the first error on ctx (later ones are dropped) and returns s.
 * Every error of the library passes through here: a good breakpoint. */
gf_status gf__error(gf_ctx *ctx, gf_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error found while a kernel runs (e.g. a label out of range): thread-safe. */
void gf__kernel_error(gf__node *n, gf_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records "fn: stale tensor handle ..." on ctx (NULL: t's own ctx, which a
 * dead object still names) for t, a dead object, and returns GF_ESTATE. */
gf_status gf__stale_error(gf_ctx *ctx, const gf_tensor *t, const char *fn)
    __attribute__((cold));
/* True, with that error naming fn, if t is a stale handle: one load and a
 * compare on the path of every public call that takes a tensor. */
static inline bool gf__stale(const gf_tensor *t, const char *fn) {
    if (__builtin_expect(!t->dead, 1)) return false;
    gf__stale_error(NULL, t, fn);
    return true;
}
/* "[2,3]" into buf (returns buf). */
const char *gf__shape_str(char *buf, size_t n, int ndim, const int64_t *shape);
#define GF__SHAPE(t) gf__shape_str((char[96]){0}, 96, (t)->ndim, (t)->shape)

/* ------------------------------------------------------------ allocator */
gf__alloc *gf__alloc_create(void);
void gf__alloc_destroy(gf__alloc *a);
void *gf__alloc_get(gf__alloc *a, size_t nbytes); /* GF__ALIGN aligned; NULL on OOM */
void gf__alloc_put(gf__alloc *a, void *p, size_t nbytes);
/* Test hook: the allocator fails after `n` more successful allocations
 * (n < 0: never). Process-wide; for the OOM loop test. */
void gf__alloc_fail_after(long n);
size_t gf__alloc_mallocs(void); /* malloc calls so far (process-wide) */
void gf__alloc_stats(gf__alloc *a, gf_memory_stats *st);

/* -------------------------------------------------------------- storage */
gf__storage *gf__storage_new(gf_engine *eng, size_t nbytes); /* data not yet allocated */
gf_status gf__storage_materialize(gf__storage *s);           /* allocates data */
void gf__storage_retain(gf__storage *s);
void gf__storage_release(gf__storage *s);

/* --------------------------------------------------------------- tensor */
size_t gf__dtype_size(gf_dtype dt);
/* The product of the sizes, or -1 when it does not fit in int64. */
int64_t gf__numel(int ndim, const int64_t *shape);
/* Validates a shape for a tensor of dtype dt: ndim in 0..GF_MAX_DIMS
 * (GF_EINVAL), no negative size (GF_ESHAPE), and the product of the sizes
 * (a 0 counted as 1, as the strides count it) times the element size at
 * most INT64_MAX, so that numel, every stride, offset and byte count of the
 * tensor are representable (GF_ENOMEM otherwise). Every tensor passes it.
 * Records the error as "<pre><op>: ..." and returns its status. */
gf_status gf__shape_error(gf_ctx *ctx, const char *pre, const char *op, gf_dtype dt, int ndim,
                          const int64_t *shape);
/* Inline: every recorded op runs it (twice: the recorder, then the tensor
 * allocator's backstop), so the passing case is a few compares and
 * multiplies; the diagnosis and message are gf__shape_error's, out of line. */
static inline gf_status gf__shape_check(gf_ctx *ctx, const char *pre, const char *op,
                                        gf_dtype dt, int ndim, const int64_t *shape) {
    if ((unsigned)ndim > GF_MAX_DIMS) return gf__shape_error(ctx, pre, op, dt, ndim, shape);
    int64_t span = dt == GF_F32 ? 4 : 8;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(span, shape[i] > 1 ? shape[i] : 1, &span))
            return gf__shape_error(ctx, pre, op, dt, ndim, shape);
    return GF_OK;
}
/* Row-major strides of a shape that passed gf__shape_check. */
void gf__contig_strides(int ndim, const int64_t *shape, int64_t *strides);
bool gf__is_contig(const gf_tensor *t);
/* New tensor object in ctx with a fresh (unallocated) storage, registered as
 * a user handle in the current scope. NULL (and error) on OOM. */
gf_tensor *gf__tensor_new(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
/* New tensor object aliasing base's storage with the given geometry. */
gf_tensor *gf__tensor_view(gf_tensor *base, int ndim, const int64_t *shape,
                           const int64_t *strides, int64_t offset);
/* The same view as an object of ctx (ctx and base's ctx on one engine):
 * touches nothing of base's ctx, so gf_share may run while another thread
 * uses that ctx. */
gf_tensor *gf__tensor_view_in(gf_ctx *ctx, gf_tensor *base, int ndim, const int64_t *shape,
                              const int64_t *strides, int64_t offset);
/* The user handle of t ends (t stays alive while internally referenced). */
void gf__disown(gf_tensor *t);
/* t becomes a user handle in the current scope of its ctx. */
void gf__own(gf_tensor *t);
void gf__retain(gf_tensor *t);
void gf__unref(gf_tensor *t);
/* Pointer to element 0 of t (storage must be materialized). */
static inline void *gf__ptr(const gf_tensor *t) {
    return (char *)t->storage->data + (size_t)t->offset * gf__dtype_size(t->dtype);
}
/* Value of element at linear (row-major) index i, as double. */
double gf__get(const gf_tensor *t, int64_t i);
/* Broadcast strides of t against out shape (ndim >= t->ndim): 0 where t is
 * broadcast. */
void gf__bcast_strides(const gf_tensor *t, int ndim, const int64_t *shape, int64_t *st);
/* Broadcast shape of a and b into out; false if incompatible. */
bool gf__bcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                     int64_t *out);
/* Normalizes a possibly negative dim against ndim (ndim 0 accepts 0 and -1);
 * -1 with an error on ctx naming op if out of range. */
int gf__norm_dim(gf_ctx *ctx, const char *op, int dim, int ndim);
gf_dtype gf__promote(gf_dtype a, gf_dtype b);

/* ---------------------------------------------------------------- graph */
extern const char *const gf__op_names[GF__OP_COUNT];
typedef void (*gf__fwd_fn)(gf__node *n);
/* A backward rule: given the node, its output and the gradient g of the
 * output, writes into gin[i] the gradient for input i (a new tensor made of
 * ordinary ops, or NULL for none). Only inputs with requires_grad matter. */
typedef gf_status (*gf__bwd_fn)(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin);
extern const gf__fwd_fn gf__op_fwd[GF__OP_COUNT];
extern const gf__bwd_fn gf__op_bwd[GF__OP_COUNT];
extern const int gf__op_flags[GF__OP_COUNT];

/* Records a node producing a new tensor of the given dtype/shape from n_in
 * inputs (all non-NULL, same ctx). Decides requires_grad, saves input
 * versions, runs at once in eager mode. Returns the output (user handle in
 * the current scope) or NULL with an error on the ctx. It checks that in[0]
 * is live (one-input ops reach no other check); ops with several tensor
 * inputs check them all with gf__check_inputs first. */
gf_tensor *gf__record(gf__op op, gf_dtype dt, int ndim, const int64_t *shape, int n_in,
                      gf_tensor *const *in, const gf__attrs *a);
/* Records a view node: output aliases in[0]'s storage with the geometry given. */
gf_tensor *gf__record_view(gf__op op, gf_tensor *in, int ndim, const int64_t *shape,
                           const int64_t *strides, int64_t offset, const gf__attrs *a);
/* Runs an in-place op now: realizes src inputs and every pending node that
 * touches dst's storage, then runs the kernel of op on (dst, in...) and bumps
 * dst's storage version. */
gf_status gf__run_inplace(gf__op op, gf_tensor *dst, int n_in, gf_tensor *const *in,
                          const gf__attrs *a);
/* gf__run_inplace where the first n_written sources (in[0..n_written-1]) are
 * written too (fused optimizer steps: exp_avg, exp_avg_sq, momentum): their
 * pending readers and writers run first as well, the no_grad rule applies to
 * them, and their storage versions are bumped. At most 3 sources. */
gf_status gf__run_inplace_w(gf__op op, gf_tensor *dst, int n_in, gf_tensor *const *in,
                            int n_written, const gf__attrs *a);
/* Frees a node: off the pending list, its input references dropped. */
void gf__node_free(gf__node *n);
/* Realizes the pending ancestors of the n tensors. */
gf_status gf__realize_many(gf_ctx *ctx, int n, gf_tensor *const *ts);
/* Starts realizing t's pending ancestors without waiting when the run goes
 * to the pool (gf_backward records the gradient graph meanwhile; only graph
 * recording that neither realizes nor writes may happen until
 * gf__finish_inflight); else realizes them at once. */
gf_status gf__realize_start(gf_tensor *t);
/* Waits for the ctx's run in flight, if any, and retires its nodes. */
gf_status gf__finish_inflight(gf_ctx *ctx);
/* Ctx of the first non-NULL tensor; NULL if any is NULL. */
gf_ctx *gf__ctx_of_inputs(int n, gf_tensor *const *ts);
/* Checks that every tensor is non-NULL, live (not a stale handle) and of the
 * same ctx; records an error naming op otherwise. Returns the ctx or NULL. */
gf_ctx *gf__check_inputs(const char *op, int n, gf_tensor *const *ts);

/* ------------------------------------------------------------- executor */
/* Runs nodes (already topologically sorted, all inputs available once the
 * earlier ones ran) on the engine. Allocates each output's storage first. */
gf_status gf__exec_run(gf_ctx *ctx, gf__node **nodes, int64_t n);
/* The same, split: start sets *started and returns at once when the run went
 * to the pool (ctx->inflight; nodes must stay valid), else it ran the nodes
 * on this thread and returns their status. finish waits for ctx->inflight
 * (running tasks meanwhile) and returns its status; GF_OK if none. */
gf_status gf__exec_start(gf_ctx *ctx, gf__node **nodes, int64_t n, bool *started);
gf_status gf__exec_finish(gf_ctx *ctx);

/* ------------------------------------------------------------------ rng */
/* Philox 4x32-10: four 32-bit words for (key, counter). */
void gf__philox(uint64_t key, uint64_t ctr, uint32_t out[4]);

/* ------------------------------------------------------------- autograd */
/* Sums g over broadcast dimensions so that it has the given shape. */
gf_tensor *gf__sum_to(gf_tensor *g, int ndim, const int64_t *shape);
/* True if input i of n needs a gradient. */
static inline bool gf__needs_grad(const gf__node *n, int i) {
    return n->in[i]->requires_grad;
}

#endif /* GF_INTERNAL_H */
