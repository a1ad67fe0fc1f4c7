/*
 * tensor.c - tensor objects: lifetime (refcounts, scopes, handles), storage,
 * creation, metadata and data access.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- storage */

gf__storage *gf__storage_new(gf_engine *eng, size_t nbytes) {
    /* Storage headers come from the engine's allocator (a cached size
     * class), since a storage may be released by another ctx's thread. */
    gf__storage *s = gf__alloc_get(eng->alloc, sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    atomic_init(&s->refcount, 1);
    atomic_init(&s->version, 0);
    s->nbytes = nbytes;
    s->eng = eng;
    return s;
}

gf_status gf__storage_materialize(gf__storage *s) {
    if (s->data) return GF_OK;
    s->data = gf__alloc_get(s->eng->alloc, s->nbytes ? s->nbytes : 1);
    return s->data ? GF_OK : GF_ENOMEM;
}

void gf__storage_retain(gf__storage *s) { atomic_fetch_add(&s->refcount, 1); }

void gf__storage_release(gf__storage *s) {
    if (!s || atomic_fetch_sub(&s->refcount, 1) != 1) return;
    if (s->data && !s->external) gf__alloc_put(s->eng->alloc, s->data, s->nbytes ? s->nbytes : 1);
    gf__alloc_put(s->eng->alloc, s, sizeof *s);
}

/* ---------------------------------------------------------------- shapes */

size_t gf__dtype_size(gf_dtype dt) { return dt == GF_F32 ? 4 : 8; }

const char *gf_dtype_name(gf_dtype dt) {
    switch (dt) {
    case GF_F32: return "f32";
    case GF_F64: return "f64";
    case GF_I64: return "i64";
    }
    return "?";
}

int64_t gf__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, shape[i], &n)) return -1;
    return n;
}

/* The failing case of gf__shape_check (internal.h): which rule the shape
 * breaks, recorded on the ctx. */
__attribute__((noinline, cold)) gf_status gf__shape_error(gf_ctx *ctx, const char *pre,
                                                          const char *op, gf_dtype dt, int ndim,
                                                          const int64_t *shape) {
    if (ndim < 0 || ndim > GF_MAX_DIMS)
        return gf__error(ctx, GF_EINVAL, "%s%s: %d dims requested (expected 0..%d)", pre, op,
                         ndim, GF_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return gf__error(ctx, GF_ESHAPE,
                             "%s%s: negative size %lld in shape %s (expected sizes >= 0)", pre,
                             op, (long long)shape[i],
                             gf__shape_str((char[96]){0}, 96, ndim, shape));
    /* The largest stride of a contiguous layout is the product of the other
     * sizes, a 0 counted as 1: bounding it bounds numel and the bytes too. */
    int64_t esize = (int64_t)gf__dtype_size(dt), span = esize;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(span, shape[i] > 1 ? shape[i] : 1, &span))
            return gf__error(ctx, GF_ENOMEM,
                             "%s%s: shape %s of %s is too large (expected at most %lld elements, "
                             "sizes multiplied as if 0 were 1: numel, strides and bytes must fit "
                             "in int64)",
                             pre, op, gf__shape_str((char[96]){0}, 96, ndim, shape),
                             gf_dtype_name(dt), (long long)(INT64_MAX / esize));
    return GF_OK;
}

void gf__contig_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

bool gf__is_contig(const gf_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

gf_dtype gf__promote(gf_dtype a, gf_dtype b) {
    if (a == GF_F64 || b == GF_F64) return GF_F64;
    if (a == GF_F32 || b == GF_F32) return GF_F32;
    return GF_I64;
}

void gf__bcast_strides(const gf_tensor *t, int ndim, const int64_t *shape, int64_t *st) {
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int td = d - lead;
        st[d] = (td < 0 || (t->shape[td] == 1 && shape[d] != 1)) ? 0 : t->strides[td];
    }
}

bool gf__bcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                     int64_t *out) {
    int n = na > nb ? na : nb;
    for (int d = 0; d < n; d++) {
        int64_t x = d - (n - na) >= 0 ? sa[d - (n - na)] : 1;
        int64_t y = d - (n - nb) >= 0 ? sb[d - (n - nb)] : 1;
        if (x != y && x != 1 && y != 1) return false;
        out[d] = x == 1 ? y : x;
    }
    *nout = n;
    return true;
}

int gf__norm_dim(gf_ctx *ctx, const char *op, int dim, int ndim) {
    int lim = ndim ? ndim : 1;
    if (dim < -lim || dim >= lim) {
        gf__error(ctx, GF_EINVAL, "%s: dim %d out of range for a %d-dim tensor (expected %d..%d)",
                  op, dim, ndim, -lim, lim - 1);
        return -1;
    }
    return dim < 0 ? dim + lim : dim;
}

/* -------------------------------------------------------------- lifetime */

static void gf__link(gf_ctx *ctx, gf_tensor *t) {
    t->next = ctx->tensors;
    t->prev = NULL;
    if (ctx->tensors) ctx->tensors->prev = t;
    ctx->tensors = t;
}

static void gf__unlink(gf_ctx *ctx, gf_tensor *t) {
    if (t->prev) t->prev->next = t->next;
    else ctx->tensors = t->next;
    if (t->next) t->next->prev = t->prev;
}

/* Dead objects are reused first in, first out, and only once the
 * quarantine is full (or the system is out of memory), so that a stale
 * handle keeps pointing at a dead object for as long as possible. The
 * queue's length is n_free: the last object's next field is left as it is. */
static void gf__quarantine_push(gf_ctx *ctx, gf_tensor *t) {
    *ctx->free_tailp = t;
    ctx->free_tailp = &t->next;
    ctx->n_free++;
}

/* The oldest dead object of the quarantine, cleared; NULL if it is empty. */
static gf_tensor *gf__quarantine_pop(gf_ctx *ctx) {
    if (!ctx->n_free) return NULL;
    gf_tensor *t = ctx->free_tensors;
    if (--ctx->n_free) {
        ctx->free_tensors = t->next;
    } else {
        ctx->free_tensors = NULL;
        ctx->free_tailp = &ctx->free_tensors;
    }
    return memset(t, 0, sizeof *t);
}

static gf_tensor *gf__tensor_alloc(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape) {
    /* The callers that know the op's name check first; this is the backstop
     * that no tensor escapes. */
    if (gf__shape_check(ctx, "", "gradflow", dt, ndim, shape) != GF_OK) return NULL;
    gf_tensor *t;
    if (ctx->n_free > GF__TENSOR_QUARANTINE) {
        t = ctx->free_tensors; /* more than one wait: the next one follows */
        ctx->free_tensors = t->next;
        ctx->n_free--;
        memset(t, 0, sizeof *t);
    } else if (!(t = calloc(1, sizeof *t))) {
        t = gf__quarantine_pop(ctx);
    }
    if (!t) {
        gf__error(ctx, GF_ENOMEM, "gradflow: out of memory allocating a tensor");
        return NULL;
    }
    t->ctx = ctx;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = gf__numel(ndim, shape);
    t->refcount = 1;
    gf__link(ctx, t);
    gf__own(t);
    return t;
}

gf_tensor *gf__tensor_new(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape) {
    gf_tensor *t = gf__tensor_alloc(ctx, dt, ndim, shape);
    if (!t) return NULL;
    gf__contig_strides(ndim, shape, t->strides);
    t->storage = gf__storage_new(ctx->eng, (size_t)t->numel * gf__dtype_size(dt));
    if (!t->storage) {
        gf__error(ctx, GF_ENOMEM, "gradflow: out of memory allocating a tensor");
        gf__disown(t);
        gf__unref(t);
        return NULL;
    }
    return t;
}

gf_tensor *gf__tensor_view(gf_tensor *base, int ndim, const int64_t *shape,
                           const int64_t *strides, int64_t offset) {
    return gf__tensor_view_in(base->ctx, base, ndim, shape, strides, offset);
}

gf_tensor *gf__tensor_view_in(gf_ctx *ctx, gf_tensor *base, int ndim, const int64_t *shape,
                              const int64_t *strides, int64_t offset) {
    gf_tensor *t = gf__tensor_alloc(ctx, base->dtype, ndim, shape);
    if (!t) return NULL;
    if (ndim) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    t->offset = offset;
    t->storage = base->storage;
    gf__storage_retain(t->storage);
    return t;
}

void gf__retain(gf_tensor *t) {
    if (t) t->refcount++;
}


/* What a dead object's storage points at: no data, so that a path that
 * missed the stale check sees an uncomputed tensor, not a recycled buffer. */
static gf__storage gf__dead_storage;

/* Frees t's object and drops what it holds. Freeing can cascade through a
 * long chain (a 100,000-node graph), so dead tensors go on a list that one
 * loop drains instead of recursing. The object itself is marked dead and
 * kept (ctx, shape and dtype intact, for the stale-handle error). */
static void gf__destroy(gf_tensor *t) {
    gf_ctx *ctx = t->ctx;
    gf__unlink(ctx, t);
    if (t->node) gf__node_free(t->node);
    gf__storage_release(t->storage);
    if (t->leaf && atomic_fetch_sub(&t->leaf->refcount, 1) == 1) {
        gf__storage_release(t->leaf->grad);
        pthread_mutex_destroy(&t->leaf->mu);
        free(t->leaf);
    }
    if (t->grad) gf__unref(t->grad);
    if (t->contig) gf__unref(t->contig);
    if (t->bw_grad) gf__unref(t->bw_grad);
    /* Its other pointers now dangle and only checked paths could follow
     * them: what reads a tensor before the stale check (an op's own
     * validation) reads its metadata, its node (a ctx-owned object) and,
     * through storage, its data. */
    t->dead = GF__TENSOR_DEAD;
    t->storage = &gf__dead_storage;
    gf__quarantine_push(ctx, t);
}

void gf__unref(gf_tensor *t) {
    if (!t || --t->refcount > 0) return;
    gf_ctx *ctx = t->ctx;
    gf__unlink(ctx, t);
    t->next = ctx->dying; /* the list link is reused while dying */
    ctx->dying = t;
    if (ctx->freeing) return;
    ctx->freeing = true;
    while (ctx->dying) {
        gf_tensor *d = ctx->dying;
        ctx->dying = d->next;
        gf__link(ctx, d); /* gf__destroy unlinks it again */
        gf__destroy(d);
    }
    ctx->freeing = false;
}

/* Handles are kept on one list per open scope depth, so ending a scope
 * touches only what it created, never the whole ctx. */
static gf_tensor **gf__scope_head(gf_ctx *ctx, int depth) {
    if (depth >= ctx->scope_cap) {
        int cap = ctx->scope_cap ? ctx->scope_cap : 16;
        while (cap <= depth) cap *= 2;
        gf_tensor **h = realloc(ctx->scope_heads, (size_t)cap * sizeof *h);
        if (!h) return NULL;
        for (int i = ctx->scope_cap; i < cap; i++) h[i] = NULL;
        ctx->scope_heads = h;
        ctx->scope_cap = cap;
    }
    return &ctx->scope_heads[depth];
}

static void gf__hlink(gf_tensor *t, int depth) {
    gf_tensor **head = gf__scope_head(t->ctx, depth);
    /* Without room for a deeper list the handle joins the outermost one:
     * it then lives until released, never freed early. */
    if (!head) {
        depth = 0;
        head = &t->ctx->scope_heads[0];
    }
    t->scope = depth;
    t->hprev = NULL;
    t->hnext = *head;
    if (*head) (*head)->hprev = t;
    *head = t;
}

static void gf__hunlink(gf_tensor *t) {
    if (t->hprev) t->hprev->hnext = t->hnext;
    else if (t->ctx->scope_heads && t->ctx->scope_heads[t->scope] == t)
        t->ctx->scope_heads[t->scope] = t->hnext;
    if (t->hnext) t->hnext->hprev = t->hprev;
    t->hprev = t->hnext = NULL;
}

void gf__own(gf_tensor *t) {
    if (t->user) return;
    t->user = true;
    gf__hlink(t, t->ctx->scope);
}

void gf__disown(gf_tensor *t) {
    if (!t->user) return;
    gf__hunlink(t);
    t->user = false;
}

/* A dead object is never a user handle, so gf_release, gf_keep and
 * gf_persist test for a stale one only off their common path. */
void gf_release(gf_tensor *t) {
    if (!t || !t->user) {
        if (t) gf__stale(t, "gf_release");
        return;
    }
    gf__disown(t);
    gf__unref(t);
}

gf_tensor *gf_keep(gf_tensor *t) {
    if (!t || !t->user) return t && gf__stale(t, "gf_keep") ? NULL : t;
    int outer = t->ctx->scope - 1;
    if (outer < 0) outer = 0;
    if (t->scope > outer) {
        gf__hunlink(t);
        gf__hlink(t, outer);
    }
    return t;
}

gf_tensor *gf_persist(gf_tensor *t) {
    if (!t || !t->user) return t && gf__stale(t, "gf_persist") ? NULL : t;
    if (t->scope == 0) return t;
    gf__hunlink(t);
    gf__hlink(t, 0);
    return t;
}

void gf_scope_begin(gf_ctx *ctx) {
    if (ctx) ctx->scope++;
}

void gf_scope_end(gf_ctx *ctx) {
    if (!ctx) return;
    if (ctx->scope == 0) {
        gf__error(ctx, GF_ESTATE, "gf_scope_end: no scope is open");
        return;
    }
    int depth = ctx->scope--;
    if (depth >= ctx->scope_cap) return;
    gf_tensor *t = ctx->scope_heads[depth];
    ctx->scope_heads[depth] = NULL;
    /* Every handle on the list holds a reference until its turn, so
     * releasing one can never free the next. */
    while (t) {
        gf_tensor *next = t->hnext;
        t->hprev = t->hnext = NULL;
        t->user = false;
        gf__unref(t);
        t = next;
    }
}

/* -------------------------------------------------------------- creation */

static gf_tensor *gf__make(gf_ctx *ctx, const char *op, gf_dtype dt, int ndim,
                           const int64_t *shape) {
    if (!ctx) return NULL;
    if (dt != GF_F32 && dt != GF_F64 && dt != GF_I64) {
        gf__error(ctx, GF_EINVAL, "%s: unknown dtype %d", op, (int)dt);
        return NULL;
    }
    if (ndim > 0 && !shape) {
        gf__error(ctx, GF_EINVAL, "%s: shape is NULL for ndim %d", op, ndim);
        return NULL;
    }
    if (gf__shape_check(ctx, "", op, dt, ndim, shape) != GF_OK) return NULL;
    gf_tensor *t = gf__tensor_new(ctx, dt, ndim, shape);
    if (!t) return NULL;
    if (gf__storage_materialize(t->storage) != GF_OK) {
        gf__error(ctx, GF_ENOMEM, "%s: out of memory for %lld elements", op,
                  (long long)t->numel);
        gf_release(t);
        return NULL;
    }
    return t;
}

#define GF__FROM_DATA(fname, ctype, DT)                                                   \
    gf_tensor *fname(gf_ctx *ctx, int ndim, const int64_t *shape, const ctype *data) {   \
        gf_tensor *t = gf__make(ctx, #fname, DT, ndim, shape);                            \
        if (!t) return NULL;                                                              \
        if (!data && t->numel) {                                                          \
            gf__error(ctx, GF_EINVAL, #fname ": data is NULL");                           \
            gf_release(t);                                                                \
            return NULL;                                                                  \
        }                                                                                 \
        if (t->numel) memcpy(t->storage->data, data, (size_t)t->numel * sizeof(ctype));  \
        return t;                                                                         \
    }
GF__FROM_DATA(gf_tensor_f32, float, GF_F32)
GF__FROM_DATA(gf_tensor_f64, double, GF_F64)
GF__FROM_DATA(gf_tensor_i64, int64_t, GF_I64)

/* i64 takes v truncated toward zero, as a C cast (the caller checked that
 * v fits). */
static void gf__fill_raw(gf_tensor *t, double v) {
    void *p = t->storage->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case GF_F32: for (int64_t i = 0; i < n; i++) ((float *)p)[i] = (float)v; break;
    case GF_F64: for (int64_t i = 0; i < n; i++) ((double *)p)[i] = v; break;
    case GF_I64: for (int64_t i = 0; i < n; i++) ((int64_t *)p)[i] = (int64_t)v; break;
    }
}

/* gf_full under the name of the function the user called. An i64 tensor
 * cannot hold NaN, an infinity or |v| >= 2^63: an error, not INT64_MIN. */
static gf_tensor *gf__full(gf_ctx *ctx, const char *op, gf_dtype dt, int ndim,
                           const int64_t *shape, double v) {
    if (ctx && dt == GF_I64 && !gf__fits_i64(v)) {
        gf__error(ctx, GF_EINVAL,
                  "%s: value %g is not representable in i64 (expected a finite value in "
                  "[-2^63, 2^63))",
                  op, v);
        return NULL;
    }
    gf_tensor *t = gf__make(ctx, op, dt, ndim, shape);
    if (t) gf__fill_raw(t, v);
    return t;
}

gf_tensor *gf_full(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape, double v) {
    return gf__full(ctx, "gf_full", dt, ndim, shape, v);
}
gf_tensor *gf_zeros(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape) {
    return gf__full(ctx, "gf_zeros", dt, ndim, shape, 0.0);
}
gf_tensor *gf_ones(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape) {
    return gf__full(ctx, "gf_ones", dt, ndim, shape, 1.0);
}
gf_tensor *gf_scalar(gf_ctx *ctx, gf_dtype dt, double v) {
    return gf__full(ctx, "gf_scalar", dt, 0, NULL, v);
}
gf_tensor *gf_zeros_like(gf_tensor *a) {
    return a && !gf__stale(a, "gf_zeros_like")
               ? gf__full(a->ctx, "gf_zeros_like", a->dtype, a->ndim, a->shape, 0.0)
               : NULL;
}
gf_tensor *gf_ones_like(gf_tensor *a) {
    return a && !gf__stale(a, "gf_ones_like")
               ? gf__full(a->ctx, "gf_ones_like", a->dtype, a->ndim, a->shape, 1.0)
               : NULL;
}

gf_tensor *gf_arange(gf_ctx *ctx, gf_dtype dt, int64_t n) {
    gf_tensor *t = gf__make(ctx, "gf_arange", dt, 1, (int64_t[]){n});
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) {
        if (dt == GF_F32) ((float *)t->storage->data)[i] = (float)i;
        else if (dt == GF_F64) ((double *)t->storage->data)[i] = (double)i;
        else ((int64_t *)t->storage->data)[i] = i;
    }
    return t;
}

/* Uniform [0,1) with 53 random bits from two Philox words. */
static double gf__u01(uint32_t hi, uint32_t lo) {
    return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1.0p-53;
}

/* Element i of a random tensor is a pure function of (seed, counter + i), so
 * a tensor's values never depend on how its fill is split across threads. */
static gf_tensor *gf__random(gf_ctx *ctx, const char *op, gf_dtype dt, int ndim,
                             const int64_t *shape, bool normal) {
    if (ctx && dt == GF_I64) {
        gf__error(ctx, GF_EINVAL, "%s: dtype i64 is not supported (expected f32 or f64)", op);
        return NULL;
    }
    gf_tensor *t = gf__make(ctx, op, dt, ndim, shape);
    if (!t) return NULL;
    uint64_t base = ctx->rng_counter;
    ctx->rng_counter += (uint64_t)t->numel;
    for (int64_t i = 0; i < t->numel; i++) {
        uint32_t w[4];
        gf__philox(ctx->seed, base + (uint64_t)i, w);
        double v;
        if (normal) {
            double u1 = 1.0 - gf__u01(w[0], w[1]); /* (0,1] keeps log finite */
            double u2 = gf__u01(w[2], w[3]);
            v = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        } else {
            v = dt == GF_F32 ? (double)(w[0] >> 8) * 0x1.0p-24 : gf__u01(w[0], w[1]);
        }
        if (dt == GF_F32) ((float *)t->storage->data)[i] = (float)v;
        else ((double *)t->storage->data)[i] = v;
    }
    return t;
}

gf_tensor *gf_rand(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape) {
    return gf__random(ctx, "gf_rand", dt, ndim, shape, false);
}
gf_tensor *gf_randn(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape) {
    return gf__random(ctx, "gf_randn", dt, ndim, shape, true);
}

/* -------------------------------------------------------------- metadata */

/* On a stale handle these give what they give for NULL (gf_ctx_of: the
 * ctx, which a dead object still names) and record the error. */
int gf_ndim(const gf_tensor *t) { return t && !gf__stale(t, "gf_ndim") ? t->ndim : -1; }
const int64_t *gf_shape(const gf_tensor *t) {
    return t && !gf__stale(t, "gf_shape") ? t->shape : NULL;
}
const int64_t *gf_strides(const gf_tensor *t) {
    return t && !gf__stale(t, "gf_strides") ? t->strides : NULL;
}
int64_t gf_numel(const gf_tensor *t) { return t && !gf__stale(t, "gf_numel") ? t->numel : -1; }
gf_dtype gf_dtype_of(const gf_tensor *t) {
    return t && !gf__stale(t, "gf_dtype_of") ? t->dtype : GF_F32;
}
gf_ctx *gf_ctx_of(const gf_tensor *t) {
    if (t) gf__stale(t, "gf_ctx_of");
    return t ? t->ctx : NULL;
}
bool gf_is_contiguous(const gf_tensor *t) {
    return t && !gf__stale(t, "gf_is_contiguous") && gf__is_contig(t);
}
bool gf_is_leaf(const gf_tensor *t) {
    return t && !gf__stale(t, "gf_is_leaf") && (!t->node || !t->node->requires_grad);
}

/* ----------------------------------------------------------- data access */

double gf__get(const gf_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t k = i % t->shape[d];
        i /= t->shape[d];
        off += k * t->strides[d];
    }
    const char *p = gf__ptr(t);
    switch (t->dtype) {
    case GF_F32: return ((const float *)p)[off];
    case GF_F64: return ((const double *)p)[off];
    case GF_I64: return (double)((const int64_t *)p)[off];
    }
    return NAN;
}

/* A contiguous tensor with t's values: t itself, or a cached copy. */
static gf_tensor *gf__contig_of(gf_tensor *t, const char *op) {
    if (gf_realize(t) != GF_OK) return NULL;
    if (gf__is_contig(t)) return t;
    if (t->contig) gf__unref(t->contig);
    t->contig = NULL;
    gf_ctx *ctx = t->ctx;
    gf_no_grad_begin(ctx);
    gf_tensor *c = gf_clone(t);
    gf_no_grad_end(ctx);
    if (!c || gf_realize(c) != GF_OK) {
        gf__error(ctx, GF_ENOMEM, "%s: could not make a contiguous copy", op);
        gf_release(c);
        return NULL;
    }
    gf__disown(c); /* owned by t from now on */
    t->contig = c;
    return c;
}

#define GF__DATA(fname, ctype, DT)                                                        \
    const ctype *fname(gf_tensor *t) {                                                    \
        if (!t || gf__stale(t, #fname)) return NULL;                                      \
        if (t->dtype != DT) {                                                             \
            gf__error(t->ctx, GF_EINVAL, #fname ": tensor %s is %s (expected %s)",        \
                      GF__SHAPE(t), gf_dtype_name(t->dtype), gf_dtype_name(DT));          \
            return NULL;                                                                  \
        }                                                                                 \
        gf_tensor *c = gf__contig_of(t, #fname);                                          \
        return c ? (const ctype *)gf__ptr(c) : NULL;                                      \
    }
GF__DATA(gf_data_f32, float, GF_F32)
GF__DATA(gf_data_f64, double, GF_F64)
GF__DATA(gf_data_i64, int64_t, GF_I64)

gf_status gf_copy_to_f64(gf_tensor *t, double *dst, int64_t n) {
    if (!t) return GF_EINVAL;
    if (gf__stale(t, "gf_copy_to_f64")) return GF_ESTATE;
    if (!dst || n < t->numel)
        return gf__error(t->ctx, GF_EINVAL,
                         "gf_copy_to_f64: destination holds %lld elements (expected >= %lld)",
                         (long long)n, (long long)t->numel);
    gf_status s = gf_realize(t);
    if (s != GF_OK) return s;
    for (int64_t i = 0; i < t->numel; i++) dst[i] = gf__get(t, i);
    return GF_OK;
}

gf_status gf_copy_to_f32(gf_tensor *t, float *dst, int64_t n) {
    if (!t) return GF_EINVAL;
    if (gf__stale(t, "gf_copy_to_f32")) return GF_ESTATE;
    if (!dst || n < t->numel)
        return gf__error(t->ctx, GF_EINVAL,
                         "gf_copy_to_f32: destination holds %lld elements (expected >= %lld)",
                         (long long)n, (long long)t->numel);
    gf_status s = gf_realize(t);
    if (s != GF_OK) return s;
    for (int64_t i = 0; i < t->numel; i++) dst[i] = (float)gf__get(t, i);
    return GF_OK;
}

double gf_item(gf_tensor *t) {
    if (!t || gf__stale(t, "gf_item")) return NAN;
    if (t->numel != 1) {
        gf__error(t->ctx, GF_ESHAPE, "gf_item: tensor %s has %lld elements (expected 1)",
                  GF__SHAPE(t), (long long)t->numel);
        return NAN;
    }
    if (gf_realize(t) != GF_OK) return NAN;
    return gf__get(t, 0);
}

void *gf__scratch(void **buf, size_t *cap, size_t n) {
    if (n <= *cap) return *buf;
    size_t c = *cap ? *cap : 4096;
    while (c < n) c *= 2;
    void *p = realloc(*buf, c);
    if (!p) return NULL;
    *buf = p;
    *cap = c;
    return p;
}
