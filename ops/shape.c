/*
 * shape.c - shape ops. reshape, permute/transpose, slice, expand,
 * unsqueeze/squeeze and detach are views (they share the input's storage and
 * run no kernel); cat and slice_scatter (slice's backward) move data.
 */
#include "ops.h"

/* ---------------------------------------------------------------- reshape */

gf_tensor *gf_reshape(gf_tensor *a, int ndim, const int64_t *shape) {
    if (!a) return NULL;
    gf_ctx *ctx = a->ctx;
    if (ndim < 0 || ndim > GF_MAX_DIMS || (ndim && !shape)) {
        gf__error(ctx, GF_EINVAL, "gf_reshape: %d dims requested (expected 0..%d and a shape)",
                  ndim, GF_MAX_DIMS);
        return NULL;
    }
    int64_t sh[GF_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                gf__error(ctx, GF_ESHAPE, "gf_reshape: more than one -1 in shape %s",
                          gf__shape_str((char[96]){0}, 96, ndim, shape));
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0) {
            gf__error(ctx, GF_ESHAPE, "gf_reshape: negative size in shape %s",
                      gf__shape_str((char[96]){0}, 96, ndim, shape));
            return NULL;
        } else if (__builtin_mul_overflow(known, shape[i], &known)) {
            gf__error(ctx, GF_ENOMEM,
                      "gf_reshape: shape %s is too large (expected sizes whose product fits "
                      "in int64)",
                      gf__shape_str((char[96]){0}, 96, ndim, shape));
            return NULL;
        }
    }
    if (infer >= 0) {
        if (known == 0 || a->numel % known) {
            gf__error(ctx, GF_ESHAPE, "gf_reshape: cannot reshape %s (%lld elements) into %s",
                      GF__SHAPE(a), (long long)a->numel,
                      gf__shape_str((char[96]){0}, 96, ndim, shape));
            return NULL;
        }
        sh[infer] = a->numel / known;
    }
    if (gf__shape_check(ctx, "", "gf_reshape", a->dtype, ndim, sh) != GF_OK) return NULL;
    if (gf__numel(ndim, sh) != a->numel) {
        gf__error(ctx, GF_ESHAPE, "gf_reshape: cannot reshape %s (%lld elements) into %s",
                  GF__SHAPE(a), (long long)a->numel, gf__shape_str((char[96]){0}, 96, ndim, sh));
        return NULL;
    }
    int64_t st[GF_MAX_DIMS];
    gf__contig_strides(ndim, sh, st);
    if (gf__is_contig(a)) return gf__record_view(GF__OP_reshape, a, ndim, sh, st, a->offset, NULL);
    gf_scope_begin(ctx);
    gf_tensor *c = gf_clone(a);
    gf_tensor *out = c ? gf_keep(gf__record_view(GF__OP_reshape, c, ndim, sh, st, 0, NULL)) : NULL;
    gf_scope_end(ctx);
    return out;
}

void gf__fwd_reshape(gf__node *n) { (void)n; }

gf_status gf__bwd_reshape(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf_reshape(g, GF__DIMS(n->in[0]));
    return GF_OK;
}

gf_tensor *gf_unsqueeze(gf_tensor *a, int dim) {
    if (!a) return NULL;
    if (a->ndim >= GF_MAX_DIMS) {
        gf__error(a->ctx, GF_EINVAL, "gf_unsqueeze: tensor %s already has %d dims", GF__SHAPE(a),
                  GF_MAX_DIMS);
        return NULL;
    }
    int d = gf__norm_dim(a->ctx, "gf_unsqueeze", dim, a->ndim + 1);
    if (d < 0) return NULL;
    int64_t sh[GF_MAX_DIMS];
    for (int i = 0, k = 0; i <= a->ndim; i++) sh[i] = i == d ? 1 : a->shape[k++];
    return gf_reshape(a, a->ndim + 1, sh);
}

gf_tensor *gf_squeeze(gf_tensor *a, int dim) {
    if (!a) return NULL;
    int d = gf__norm_dim(a->ctx, "gf_squeeze", dim, a->ndim);
    if (d < 0) return NULL;
    if (a->ndim == 0 || a->shape[d] != 1) return gf_reshape(a, a->ndim, a->shape);
    int64_t sh[GF_MAX_DIMS];
    for (int i = 0, k = 0; i < a->ndim; i++)
        if (i != d) sh[k++] = a->shape[i];
    return gf_reshape(a, a->ndim - 1, sh);
}

/* ---------------------------------------------------------------- permute */

gf_tensor *gf_permute(gf_tensor *a, const int *dims) {
    if (!a) return NULL;
    gf_ctx *ctx = a->ctx;
    if (!dims && a->ndim) {
        gf__error(ctx, GF_EINVAL, "gf_permute: dims is NULL");
        return NULL;
    }
    int64_t sh[GF_MAX_DIMS], st[GF_MAX_DIMS];
    gf__attrs at = {0};
    bool seen[GF_MAX_DIMS] = {0};
    for (int i = 0; i < a->ndim; i++) {
        int d = gf__norm_dim(ctx, "gf_permute", dims[i], a->ndim);
        if (d < 0) return NULL;
        if (seen[d]) {
            gf__error(ctx, GF_EINVAL,
                      "gf_permute: dim %d appears twice (expected a permutation of 0..%d)", d,
                      a->ndim - 1);
            return NULL;
        }
        seen[d] = true;
        sh[i] = a->shape[d];
        st[i] = a->strides[d];
        at.i[i] = d;
    }
    at.n = a->ndim;
    return gf__record_view(GF__OP_permute, a, a->ndim, sh, st, a->offset, &at);
}

gf_tensor *gf_transpose(gf_tensor *a, int d0, int d1) {
    if (!a) return NULL;
    int x = gf__norm_dim(a->ctx, "gf_transpose", d0, a->ndim);
    int y = x < 0 ? -1 : gf__norm_dim(a->ctx, "gf_transpose", d1, a->ndim);
    if (x < 0 || y < 0) return NULL;
    int dims[GF_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) dims[i] = i;
    if (a->ndim) {
        dims[x] = y;
        dims[y] = x;
    }
    return gf_permute(a, dims);
}

void gf__fwd_permute(gf__node *n) { (void)n; }

gf_status gf__bwd_permute(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    int inv[GF_MAX_DIMS];
    for (int i = 0; i < n->a.n; i++) inv[n->a.i[i]] = i;
    gin[0] = gf_permute(g, inv);
    return GF_OK;
}

/* ------------------------------------------------------------------ slice */

gf_tensor *gf_slice(gf_tensor *a, int dim, int64_t start, int64_t end, int64_t step) {
    if (!a) return NULL;
    gf_ctx *ctx = a->ctx;
    if (a->ndim == 0) {
        gf__error(ctx, GF_EINVAL, "gf_slice: cannot slice a 0-dim tensor");
        return NULL;
    }
    int d = gf__norm_dim(ctx, "gf_slice", dim, a->ndim);
    if (d < 0) return NULL;
    if (step <= 0) {
        gf__error(ctx, GF_EINVAL, "gf_slice: step %lld (expected a positive step)",
                  (long long)step);
        return NULL;
    }
    int64_t size = a->shape[d];
    /* Python slice semantics: negative bounds count from the end, then clamp. */
    if (start < 0) start += size;
    if (end < 0) end += size;
    if (start < 0) start = 0;
    if (start > size) start = size;
    if (end > size) end = size;
    if (end < start) end = start;
    /* ceil((end - start) / step) without end - start + step - 1, which
     * overflows for a step near INT64_MAX (Python gives 1 element there). */
    int64_t len = end > start ? (end - start - 1) / step + 1 : 0;
    int64_t sh[GF_MAX_DIMS], st[GF_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    memcpy(st, a->strides, sizeof st);
    sh[d] = len;
    /* With two or more elements step < size, so stride * step stays inside
     * the input's span; with one or none the stride is never stepped and
     * the product could overflow, so it is left as it is. Likewise an
     * empty slice keeps the offset (start may be one past the end). */
    st[d] = len > 1 ? a->strides[d] * step : a->strides[d];
    int64_t off = len ? a->offset + start * a->strides[d] : a->offset;
    gf__attrs at = {.dim = d, .j = {start, step}};
    return gf__record_view(GF__OP_slice, a, a->ndim, sh, st, off, &at);
}

void gf__fwd_slice(gf__node *n) { (void)n; }

/* zeros of the input's shape with g written into the slice. */
static gf_tensor *gf__slice_scatter(gf_tensor *g, int ndim, const int64_t *shape, int dim,
                                    int64_t start, int64_t step) {
    if (!g) return NULL;
    gf__attrs at = {.dim = dim, .n = ndim, .j = {start, step}};
    memcpy(at.i, shape, (size_t)ndim * sizeof *shape);
    return gf__record(GF__OP_slice_scatter, g->dtype, ndim, shape, 1, &g, &at);
}

gf_status gf__bwd_slice(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf__slice_scatter(g, GF__DIMS(n->in[0]), n->a.dim, n->a.j[0], n->a.j[1]);
    return GF_OK;
}

void gf__fwd_slice_scatter(gf__node *n) {
    gf_tensor *o = n->out, *g = n->in[0];
    memset(gf__ptr(o), 0, (size_t)o->numel * gf__dtype_size(o->dtype));
    if (g->numel == 0) return;
    /* A strided window of out shaped like g. */
    gf_tensor win = gf__meta(o);
    int d = n->a.dim;
    win.shape[d] = g->shape[d];
    win.offset = o->offset + n->a.j[0] * o->strides[d];
    /* As in gf_slice: one element is never stepped (stride * step could overflow). */
    win.strides[d] = g->shape[d] > 1 ? o->strides[d] * n->a.j[1] : o->strides[d];
    win.numel = g->numel;
    gf__copy_into(&win, g);
}

gf_status gf__bwd_slice_scatter(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    int d = n->a.dim;
    int64_t start = n->a.j[0], step = n->a.j[1];
    int64_t len = n->in[0]->shape[d];
    /* end just past the last element: start + len * step could overflow. */
    int64_t end = len ? start + (len - 1) * step + 1 : start;
    gin[0] = gf_slice(g, d, start, end, step);
    if (gin[0] && gin[0]->shape[d] != len) /* end past the size: slice clamps, lengths agree */
        return gf__error(g->ctx, GF_ESTATE, "gf_backward: slice_scatter length mismatch");
    return GF_OK;
}

/* ----------------------------------------------------------------- expand */

gf_tensor *gf_expand(gf_tensor *a, int ndim, const int64_t *shape) {
    if (!a) return NULL;
    gf_ctx *ctx = a->ctx;
    if (ndim < a->ndim || ndim > GF_MAX_DIMS || (ndim && !shape)) {
        gf__error(ctx, GF_ESHAPE, "gf_expand: cannot expand %s to %d dims (expected %d..%d)",
                  GF__SHAPE(a), ndim, a->ndim, GF_MAX_DIMS);
        return NULL;
    }
    int64_t sh[GF_MAX_DIMS], st[GF_MAX_DIMS];
    int lead = ndim - a->ndim;
    for (int i = 0; i < ndim; i++) {
        int ai = i - lead;
        int64_t want = shape[i];
        if (ai < 0) {
            if (want < 0) goto bad;
            sh[i] = want;
            st[i] = 0;
            continue;
        }
        int64_t have = a->shape[ai];
        if (want == -1 || want == have) {
            sh[i] = have;
            st[i] = a->strides[ai];
        } else if (have == 1 && want >= 0) {
            sh[i] = want;
            st[i] = 0;
        } else {
            goto bad;
        }
    }
    return gf__record_view(GF__OP_expand, a, ndim, sh, st, a->offset, NULL);
bad:
    gf__error(ctx, GF_ESHAPE,
              "gf_expand: cannot expand %s to %s (only size-1 dims can grow)", GF__SHAPE(a),
              gf__shape_str((char[96]){0}, 96, ndim, shape));
    return NULL;
}

void gf__fwd_expand(gf__node *n) { (void)n; }

gf_status gf__bwd_expand(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    gin[0] = gf__sum_to(g, GF__DIMS(n->in[0]));
    return GF_OK;
}

/* ------------------------------------------------------------------ alias */

gf_tensor *gf_detach(gf_tensor *a) {
    if (!a) return NULL;
    return gf__record_view(GF__OP_alias, a, a->ndim, a->shape, a->strides, a->offset, NULL);
}

void gf__fwd_alias(gf__node *n) { (void)n; }

gf_status gf__bwd_alias(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)n, (void)out, (void)g, (void)gin;
    return GF_OK;
}

/* -------------------------------------------------------------------- cat */

gf_tensor *gf_cat(int n, gf_tensor *const *ts, int dim) {
    if (n <= 0 || !ts) return NULL;
    gf_ctx *ctx = gf__check_inputs("gf_cat", n, ts);
    if (!ctx) return NULL;
    gf_tensor *a = ts[0];
    if (a->ndim == 0) {
        gf__error(ctx, GF_EINVAL, "gf_cat: input 0 is 0-dim (expected at least 1 dim)");
        return NULL;
    }
    int d = gf__norm_dim(ctx, "gf_cat", dim, a->ndim);
    if (d < 0) return NULL;
    int64_t sh[GF_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    sh[d] = 0;
    gf_dtype dt = a->dtype;
    for (int i = 0; i < n; i++) {
        gf_tensor *t = ts[i];
        bool ok = t->ndim == a->ndim;
        for (int k = 0; ok && k < a->ndim; k++) ok = k == d || t->shape[k] == a->shape[k];
        if (!ok) {
            gf__error(ctx, GF_ESHAPE,
                      "gf_cat: input %d has shape %s, input 0 has %s (expected equal sizes "
                      "except in dim %d)",
                      i, GF__SHAPE(t), GF__SHAPE(a), d);
            return NULL;
        }
        if (__builtin_add_overflow(sh[d], t->shape[d], &sh[d])) {
            gf__error(ctx, GF_ENOMEM,
                      "gf_cat: the sizes in dim %d add up past int64 at input %d of shape %s "
                      "(expected a total size that fits in int64)",
                      d, i, GF__SHAPE(t));
            return NULL;
        }
        dt = gf__promote(dt, t->dtype);
    }
    gf__attrs at = {.dim = d};
    return gf__record(GF__OP_cat, dt, a->ndim, sh, n, ts, &at);
}

void gf__fwd_cat(gf__node *n) {
    gf_tensor *o = n->out;
    int d = n->a.dim;
    int64_t at = 0;
    for (int i = 0; i < n->n_in; i++) {
        gf_tensor *t = n->in[i];
        gf_tensor win = gf__meta(o);
        win.shape[d] = t->shape[d];
        win.offset = o->offset + at * o->strides[d];
        win.numel = t->numel;
        gf__copy_into(&win, t);
        at += t->shape[d];
    }
}

gf_status gf__bwd_cat(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) {
    (void)out;
    int d = n->a.dim;
    int64_t at = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = n->in[i]->shape[d];
        if (gf__needs_grad(n, i)) {
            gin[i] = gf_slice(g, d, at, at + len, 1);
            if (gin[i] && gin[i]->dtype != n->in[i]->dtype)
                gin[i] = gf_to_dtype(gin[i], n->in[i]->dtype);
        }
        at += len;
    }
    return GF_OK;
}
