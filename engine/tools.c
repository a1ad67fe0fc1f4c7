/*
 * tools.c - everyday tools over tensors: gf_randperm (a random permutation
 * from the ctx's counter-based generator), gf_fprint / gf_print (PyTorch's
 * tensor repr) and gf_allclose (torch.allclose).
 *
 * The repr follows torch/_tensor_str.py (threshold 1000, edgeitems 3,
 * precision 4, linewidth 80): one formatter for the whole tensor chooses
 * integer form ("1."), fixed ("0.1000") or scientific ("1.0000e+08") from
 * the nonzero finite values shown, and pads every value to the widest; rows
 * wrap at 80 columns; dtype and autograd suffixes come last. Only the dtype
 * names are gradflow's ("dtype=f64").
 */
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- randperm */

gf_tensor *gf_randperm(gf_ctx *ctx, int64_t n) {
    if (!ctx) return NULL;
    if (n < 0) {
        gf__error(ctx, GF_ESHAPE, "gf_randperm: n = %lld (expected n >= 0)", (long long)n);
        return NULL;
    }
    gf_tensor *t = gf__tensor_new(ctx, GF_I64, 1, &n);
    if (!t) return NULL;
    if (gf__storage_materialize(t->storage) != GF_OK) {
        gf__error(ctx, GF_ENOMEM, "gf_randperm: out of memory for %lld elements", (long long)n);
        gf_release(t);
        return NULL;
    }
    int64_t *p = t->storage->data;
    for (int64_t i = 0; i < n; i++) p[i] = i;
    /* Fisher-Yates from the top: step i swaps p[i] with p[j], j uniform in
     * [0, i] from the Philox block at counter + i (64 random bits; the
     * modulo's bias is below (i+1) / 2^64). */
    uint64_t base = ctx->rng_counter;
    ctx->rng_counter += (uint64_t)n;
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t w[4];
        gf__philox(ctx->seed, base + (uint64_t)i, w);
        uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t v = p[i];
        p[i] = p[j];
        p[j] = v;
    }
    return t;
}

/* ---------------------------------------------------------------- print */

#define GF__PR_THRESHOLD 1000
#define GF__PR_EDGE 3
#define GF__PR_LINEWIDTH 80

/* A growing string; `failed` once an allocation failed. */
typedef struct {
    char *s;
    size_t len, cap;
    bool failed;
} gf__sbuf;

static void gf__sb_put(gf__sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void gf__sb_str(gf__sbuf *b, const char *s) { gf__sb_put(b, s, strlen(s)); }

static void gf__sb_chars(gf__sbuf *b, char c, int n) {
    for (int i = 0; i < n; i++) gf__sb_put(b, &c, 1);
}

/* The tensor's data as the printer walks it. */
typedef struct {
    gf_dtype dt;
    int ndim;
    const int64_t *shape, *strides;
    const char *base; /* element 0 */
    bool summarize;
} gf__pview;

/* The formatter of torch's _Formatter: one mode and width for the tensor. */
typedef struct {
    bool floating, int_mode, sci_mode;
    int width;
    /* while scanning floats: */
    bool any;
    double amin, amax;
} gf__pfmt;

static double gf__pv_f(const gf__pview *v, int64_t off) {
    return v->dt == GF_F32 ? (double)((const float *)v->base)[off]
                           : ((const double *)v->base)[off];
}
static int64_t gf__pv_i(const gf__pview *v, int64_t off) {
    return ((const int64_t *)v->base)[off];
}

/* Whether position i of a dim of size n is shown (the others make "..."). */
static bool gf__pr_shown(const gf__pview *v, int64_t n, int64_t i) {
    return !v->summarize || n <= 2 * GF__PR_EDGE || i < GF__PR_EDGE || i >= n - GF__PR_EDGE;
}

/* fn(v, off, arg) for every element shown, in row-major order. */
static void gf__pr_each(const gf__pview *v, int d, int64_t off,
                        void (*fn)(const gf__pview *, int64_t, void *), void *arg) {
    if (d == v->ndim) {
        fn(v, off, arg);
        return;
    }
    for (int64_t i = 0; i < v->shape[d]; i++) {
        if (!gf__pr_shown(v, v->shape[d], i)) {
            i = v->shape[d] - GF__PR_EDGE - 1;
            continue;
        }
        gf__pr_each(v, d + 1, off + i * v->strides[d], fn, arg);
    }
}

/* Pass 1 over floats: int mode and the range of |nonzero finite|. */
static void gf__pr_scan_f(const gf__pview *v, int64_t off, void *arg) {
    gf__pfmt *f = arg;
    double x = gf__pv_f(v, off);
    if (!isfinite(x) || x == 0) return;
    if (x != ceil(x)) f->int_mode = false;
    double a = fabs(x);
    if (!f->any || a < f->amin) f->amin = a;
    if (!f->any || a > f->amax) f->amax = a;
    f->any = true;
}

/* Pass 2 over floats: the widest nonzero finite value in the chosen mode. */
static void gf__pr_width_f(const gf__pview *v, int64_t off, void *arg) {
    gf__pfmt *f = arg;
    double x = gf__pv_f(v, off);
    if (!isfinite(x) || x == 0) return;
    char s[512];
    int w = f->sci_mode   ? snprintf(s, sizeof s, "%.4e", x)
          : f->int_mode ? snprintf(s, sizeof s, "%.0f", x) + 1
                        : snprintf(s, sizeof s, "%.4f", x);
    if (w > f->width) f->width = w;
}

static void gf__pr_width_i(const gf__pview *v, int64_t off, void *arg) {
    gf__pfmt *f = arg;
    char s[32];
    int w = snprintf(s, sizeof s, "%lld", (long long)gf__pv_i(v, off));
    if (w > f->width) f->width = w;
}

static gf__pfmt gf__pr_formatter(const gf__pview *v) {
    gf__pfmt f = {.floating = v->dt != GF_I64, .int_mode = true, .width = 1};
    if (!f.floating) {
        gf__pr_each(v, 0, 0, gf__pr_width_i, &f);
        return f;
    }
    gf__pr_each(v, 0, 0, gf__pr_scan_f, &f);
    if (!f.any) return f;
    f.sci_mode = f.amax / f.amin > 1000.0 || f.amax > 1.0e8 || (!f.int_mode && f.amin < 1.0e-4);
    gf__pr_each(v, 0, 0, gf__pr_width_f, &f);
    return f;
}

/* One value, padded on the left to the formatter's width. */
static void gf__pr_value(gf__sbuf *b, const gf__pview *v, const gf__pfmt *f, int64_t off) {
    char s[512];
    if (!f->floating) {
        snprintf(s, sizeof s, "%lld", (long long)gf__pv_i(v, off));
    } else {
        double x = gf__pv_f(v, off);
        if (isnan(x)) snprintf(s, sizeof s, "nan"); /* never "-nan" */
        else if (isinf(x)) snprintf(s, sizeof s, x < 0 ? "-inf" : "inf");
        else if (f->sci_mode) snprintf(s, sizeof s, "%.4e", x);
        else if (f->int_mode) snprintf(s, sizeof s, "%.0f.", x);
        else snprintf(s, sizeof s, "%.4f", x);
    }
    int n = (int)strlen(s);
    gf__sb_chars(b, ' ', f->width - n);
    gf__sb_put(b, s, (size_t)n);
}

/* The last dim at offset off: elements (and " ...") joined by ", ", as many
 * per line as fit in the line width after indent. */
static void gf__pr_vector(gf__sbuf *b, const gf__pview *v, const gf__pfmt *f, int64_t off,
                          int indent) {
    int64_t n = v->shape[v->ndim - 1], st = v->strides[v->ndim - 1];
    int per_line = (GF__PR_LINEWIDTH - indent) / (f->width + 2);
    if (per_line < 1) per_line = 1;
    gf__sb_str(b, "[");
    int k = 0; /* items written, " ..." included */
    for (int64_t i = 0; i < n; i++) {
        bool dots = !gf__pr_shown(v, n, i);
        if (k) {
            if (k % per_line) {
                gf__sb_str(b, ", ");
            } else {
                gf__sb_str(b, ",\n");
                gf__sb_chars(b, ' ', indent + 1);
            }
        }
        k++;
        if (dots) {
            gf__sb_str(b, " ...");
            i = n - GF__PR_EDGE - 1;
            continue;
        }
        gf__pr_value(b, v, f, off + i * st);
    }
    gf__sb_str(b, "]");
}

/* Dims d.. at offset off; slices separated by ",", one newline per
 * remaining dim beyond the next, and the indent. */
static void gf__pr_dims(gf__sbuf *b, const gf__pview *v, const gf__pfmt *f, int d, int64_t off,
                        int indent) {
    if (d == v->ndim - 1) {
        gf__pr_vector(b, v, f, off, indent);
        return;
    }
    int64_t n = v->shape[d];
    gf__sb_str(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i) {
            gf__sb_str(b, ",");
            gf__sb_chars(b, '\n', v->ndim - d - 1);
            gf__sb_chars(b, ' ', indent + 1);
        }
        if (!gf__pr_shown(v, n, i)) {
            gf__sb_str(b, "...");
            gf__sb_str(b, ",");
            gf__sb_chars(b, '\n', v->ndim - d - 1);
            gf__sb_chars(b, ' ', indent + 1);
            i = n - GF__PR_EDGE;
        }
        gf__pr_dims(b, v, f, d + 1, off + i * v->strides[d], indent + 1);
    }
    gf__sb_str(b, "]");
}

/* torch's _add_suffixes: ", suffix" on the same line while it fits in the
 * line width, else on a new line at the indent. */
static void gf__pr_suffix(gf__sbuf *b, size_t *line_len, const char *suffix) {
    size_t n = strlen(suffix);
    if (*line_len + n + 2 > GF__PR_LINEWIDTH) {
        gf__sb_str(b, ",\n       ");
        *line_len = 7 + n;
    } else {
        gf__sb_str(b, ", ");
        *line_len += n + 2;
    }
    gf__sb_str(b, suffix);
}

/* "index_select" -> "IndexSelectBackward", torch's grad_fn style. */
static void gf__pr_grad_fn(char *s, size_t cap, const char *op) {
    size_t k = 0;
    k += (size_t)snprintf(s, cap, "grad_fn=<");
    bool up = true;
    for (const char *c = op; *c && k + 1 < cap; c++) {
        if (*c == '_') {
            up = true;
            continue;
        }
        s[k++] = up && *c >= 'a' && *c <= 'z' ? (char)(*c - 'a' + 'A') : *c;
        up = false;
    }
    if (k < cap) snprintf(s + k, cap - k, "Backward>");
}

static void gf__pr_repr(gf__sbuf *b, gf_tensor *t) {
    gf__pview v = {.dt = t->dtype, .ndim = t->ndim, .shape = t->shape, .strides = t->strides,
                   .base = t->numel ? gf__ptr(t) : NULL,
                   .summarize = t->numel > GF__PR_THRESHOLD};
    gf__sb_str(b, "tensor(");
    char suf[4][160];
    int ns = 0;
    if (t->numel == 0) {
        gf__sb_str(b, "[]");
        if (t->ndim != 1) {
            size_t k = (size_t)snprintf(suf[ns], sizeof suf[ns], "size=(");
            for (int i = 0; i < t->ndim; i++)
                k += (size_t)snprintf(suf[ns] + k, sizeof suf[ns] - k, i ? ", %lld" : "%lld",
                                      (long long)t->shape[i]);
            snprintf(suf[ns] + k, sizeof suf[ns] - k, ")");
            ns++;
        }
        if (t->dtype != GF_F32)
            snprintf(suf[ns++], sizeof suf[0], "dtype=%s", gf_dtype_name(t->dtype));
    } else {
        gf__pfmt f = gf__pr_formatter(&v);
        if (t->ndim == 0) gf__pr_value(b, &v, &f, 0);
        else gf__pr_dims(b, &v, &f, 0, 0, 7);
        if (t->dtype == GF_F64)
            snprintf(suf[ns++], sizeof suf[0], "dtype=%s", gf_dtype_name(t->dtype));
    }
    if (t->node && t->node->requires_grad)
        gf__pr_grad_fn(suf[ns++], sizeof suf[0], gf__op_names[t->node->op]);
    else if (t->requires_grad)
        snprintf(suf[ns++], sizeof suf[0], "requires_grad=True");
    /* torch counts the last line as len - rfind("\n") + 1: two more than
     * its length without a newline, one more with. */
    const char *nl = b->s && !b->failed ? strrchr(b->s, '\n') : NULL;
    size_t line_len = nl ? (size_t)(b->s + b->len - nl) + 1 : b->len + 2;
    for (int i = 0; i < ns; i++) gf__pr_suffix(b, &line_len, suf[i]);
    gf__sb_str(b, ")\n");
}

gf_status gf_fprint(FILE *f, gf_tensor *t) {
    if (!t) return GF_EINVAL;
    gf_ctx *ctx = t->ctx;
    if (!f) return gf__error(ctx, GF_EINVAL, "gf_fprint: FILE is NULL (tensor %s)", GF__SHAPE(t));
    gf_status s = gf_realize(t);
    if (s != GF_OK) return s;
    gf__sbuf b = {0};
    gf__pr_repr(&b, t);
    if (b.failed) {
        free(b.s);
        return gf__error(ctx, GF_ENOMEM, "gf_print: out of memory formatting tensor %s",
                         GF__SHAPE(t));
    }
    bool ok = fwrite(b.s, 1, b.len, f) == b.len && fflush(f) == 0;
    free(b.s);
    if (!ok)
        return gf__error(ctx, GF_EIO, "gf_print: could not write tensor %s to the stream",
                         GF__SHAPE(t));
    return GF_OK;
}

gf_status gf_print(gf_tensor *t) { return gf_fprint(stdout, t); }

/* ------------------------------------------------------------- allclose */

/* Element at offset off of t's data as a double, or exactly as an i64. */
static inline double gf__ac_f(const gf_tensor *t, const char *p, int64_t off) {
    switch (t->dtype) {
    case GF_F32: return ((const float *)p)[off];
    case GF_F64: return ((const double *)p)[off];
    case GF_I64: return (double)((const int64_t *)p)[off];
    }
    return NAN;
}

static bool gf__ac_close(const gf_tensor *a, const char *pa, int64_t oa, const gf_tensor *b,
                         const char *pb, int64_t ob, double rtol, double atol) {
    if (a->dtype == GF_I64 && b->dtype == GF_I64) {
        int64_t x = ((const int64_t *)pa)[oa], y = ((const int64_t *)pb)[ob];
        if (x == y) return true;
        /* |x - y| without overflow: the difference as an unsigned magnitude. */
        uint64_t d = x > y ? (uint64_t)x - (uint64_t)y : (uint64_t)y - (uint64_t)x;
        return (double)d <= atol + rtol * fabs((double)y);
    }
    double x = gf__ac_f(a, pa, oa), y = gf__ac_f(b, pb, ob);
    if (x == y) return true; /* equal infinities too */
    double d = fabs(x - y);
    return isfinite(d) && d <= atol + rtol * fabs(y);
}

bool gf_allclose(gf_tensor *a, gf_tensor *b, double rtol, double atol) {
    if (!a || !b) {
        gf_tensor *t = a ? a : b;
        if (t)
            gf__error(t->ctx, GF_EINVAL, "gf_allclose: %s is NULL (expected two tensors)",
                      a ? "b" : "a");
        return false;
    }
    gf_ctx *ctx = gf__check_inputs("gf_allclose", 2, (gf_tensor *[]){a, b});
    if (!ctx) return false;
    if (!(rtol >= 0) || !(atol >= 0)) {
        gf__error(ctx, GF_EINVAL, "gf_allclose: rtol %g, atol %g (expected both >= 0)", rtol,
                  atol);
        return false;
    }
    int nd;
    int64_t sh[GF_MAX_DIMS];
    if (!gf__bcast_shape(a->ndim, a->shape, b->ndim, b->shape, &nd, sh)) {
        gf__error(ctx, GF_ESHAPE,
                  "gf_allclose: shapes %s and %s do not broadcast (expected equal sizes or 1 "
                  "in each trailing dim)",
                  GF__SHAPE(a), GF__SHAPE(b));
        return false;
    }
    if (gf__realize_many(ctx, 2, (gf_tensor *[]){a, b}) != GF_OK) return false;
    int64_t total = gf__numel(nd, sh);
    if (total == 0) return true;
    int64_t sa[GF_MAX_DIMS], sb[GF_MAX_DIMS], idx[GF_MAX_DIMS] = {0};
    gf__bcast_strides(a, nd, sh, sa);
    gf__bcast_strides(b, nd, sh, sb);
    const char *pa = gf__ptr(a), *pb = gf__ptr(b);
    int64_t oa = 0, ob = 0;
    for (int64_t e = 0; e < total; e++) {
        if (!gf__ac_close(a, pa, oa, b, pb, ob, rtol, atol)) return false;
        /* Odometer over the broadcast shape, offsets following. */
        for (int d = nd - 1; d >= 0; d--) {
            oa += sa[d];
            ob += sb[d];
            if (++idx[d] < sh[d]) break;
            oa -= sa[d] * sh[d];
            ob -= sb[d] * sh[d];
            idx[d] = 0;
        }
    }
    return true;
}
