/*
 * data.c - datasets: the IDX reader (MNIST / Fashion-MNIST files, gzip or
 * raw), per-epoch shuffling from a counter-based generator, and batching.
 *
 * A dataset holds its images in one realized f32 tensor [n, features] and its
 * labels in one i64 tensor [n]. Both live in a private ctx on the caller's
 * engine: that ctx never opens a scope, so the data stays alive until
 * gf_dataset_free whatever scopes the caller has open when loading. Batches
 * are new tensors in the caller's ctx and current scope. Errors go to the
 * caller's ctx. Written only against the public headers.
 */
#include "gradflow/nn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define GF_IDX_IMAGES_MAGIC 0x00000803u /* unsigned byte, 3 dimensions */
#define GF_IDX_LABELS_MAGIC 0x00000801u /* unsigned byte, 1 dimension */
/* No real IDX file comes near these; they keep sizes inside int64 and
 * reject a garbage header before it turns into a huge allocation. */
#define GF_IDX_MAX_ITEMS (INT64_C(1) << 31)
#define GF_IDX_MAX_FEATURES (INT64_C(1) << 24)

struct gf_dataset {
    gf_ctx *ctx;       /* the caller's: errors and batch tensors */
    gf_ctx *store;     /* private, scope-free: owns images and labels */
    gf_tensor *images; /* f32 [n, features], realized */
    gf_tensor *labels; /* i64 [n], realized */
    const float *x;    /* images' storage */
    const int64_t *y;  /* labels' storage */
    int64_t n, features;
    int64_t *order;    /* the current epoch's order: a permutation of 0..n-1 */
    float *xbuf;       /* gather buffers for one batch, grown on demand */
    int64_t *ybuf;
    int64_t buf_rows;
};

/* ------------------------------------------------------------ IDX files */

/* An open IDX file: path and zlib handle (gzread reads raw files too). */
typedef struct {
    const char *path;
    gzFile f;
} gf__idx_file;

/* Opens path; GF_EIO naming the path and errno's reason on failure. */
static gf_status gf__idx_open(gf_ctx *ctx, gf__idx_file *h, const char *path) {
    h->path = path;
    errno = 0;
    h->f = gzopen(path, "rb");
    if (!h->f)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: cannot open %s: %s", path,
                                errno ? strerror(errno) : "out of memory");
    gzbuffer(h->f, 1 << 18);
    return GF_OK;
}

/* Reads exactly n bytes of `what`: a short read is a truncated file, a zlib
 * failure a corrupt one; both GF_EIO naming the path. */
static gf_status gf__idx_read(gf_ctx *ctx, gf__idx_file *h, void *dst, int64_t n,
                              const char *what) {
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got;
        if (want > (INT64_C(1) << 30)) want = INT64_C(1) << 30;
        int r = gzread(h->f, (unsigned char *)dst + got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *msg = gzerror(h->f, &zerr);
            return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: corrupt or unreadable "
                                    "while reading %s: %s", h->path, what,
                                    zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (r == 0) break;
        got += r;
    }
    if (got < n)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: truncated file: %s needs %lld "
                                "bytes, only %lld present", h->path, what, (long long)n,
                                (long long)got);
    return GF_OK;
}

static uint32_t gf__be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads the header: magic (must be `magic`), then ndim big-endian u32 sizes. */
static gf_status gf__idx_header(gf_ctx *ctx, gf__idx_file *h, uint32_t magic, int ndim,
                                int64_t *dims) {
    unsigned char b[16];
    gf_status s = gf__idx_read(ctx, h, b, 4 + 4 * (int64_t)ndim, "the header");
    if (s) return s;
    uint32_t m = gf__be32(b);
    if (m != magic)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: bad magic number 0x%08x, "
                                "expected 0x%08x (an IDX %s file of unsigned bytes)",
                                h->path, (unsigned)m, (unsigned)magic,
                                ndim == 3 ? "image" : "label");
    for (int i = 0; i < ndim; i++) dims[i] = gf__be32(b + 4 + 4 * i);
    return GF_OK;
}

/* Nothing may follow the data: trailing bytes mean the header lies. */
static gf_status gf__idx_expect_end(gf_ctx *ctx, gf__idx_file *h, int64_t data_bytes) {
    unsigned char c;
    int r = gzread(h->f, &c, 1);
    if (r > 0)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: trailing bytes after the %lld "
                                "bytes of data the header announces", h->path,
                                (long long)data_bytes);
    if (r < 0) {
        int zerr = 0;
        const char *msg = gzerror(h->f, &zerr);
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: corrupt or unreadable at the "
                                "end of the data: %s", h->path,
                                zerr == Z_ERRNO ? strerror(errno) : msg);
    }
    return GF_OK;
}

static void gf__idx_close(gf__idx_file *h) {
    if (h->f) gzclose(h->f);
    h->f = NULL;
}

/* Reads the label file into a new malloc'd byte array of *n entries. */
static gf_status gf__read_labels(gf_ctx *ctx, const char *path, unsigned char **out,
                                 int64_t *n) {
    gf__idx_file h = {0};
    gf_status s = gf__idx_open(ctx, &h, path);
    if (s) return s;
    int64_t dims[1] = {0};
    s = gf__idx_header(ctx, &h, GF_IDX_LABELS_MAGIC, 1, dims);
    if (!s && dims[0] > GF_IDX_MAX_ITEMS)
        s = gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: implausible label count %lld",
                             path, (long long)dims[0]);
    unsigned char *buf = NULL;
    if (!s) {
        buf = malloc((size_t)dims[0] + 1);
        if (!buf) s = gf_ctx_set_error(ctx, GF_ENOMEM, "gf_idx_load: %s: out of memory for "
                                       "%lld labels", path, (long long)dims[0]);
    }
    if (!s) s = gf__idx_read(ctx, &h, buf, dims[0], "the labels");
    if (!s) s = gf__idx_expect_end(ctx, &h, dims[0]);
    gf__idx_close(&h);
    if (s) {
        free(buf);
        return s;
    }
    *out = buf;
    *n = dims[0];
    return GF_OK;
}

/* The dataset shell: private ctx, identity order. */
static gf_dataset *gf__dataset_new(gf_ctx *ctx, int64_t n, int64_t features) {
    gf_dataset *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->ctx = ctx;
    d->n = n;
    d->features = features;
    d->store = gf_ctx_create(gf_ctx_engine(ctx));
    d->order = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!d->store || !d->order) {
        gf_dataset_free(d);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) d->order[i] = i;
    return d;
}

gf_dataset *gf_idx_load(gf_ctx *ctx, const char *images_path, const char *labels_path,
                        double mean, double std) {
    if (!ctx) return NULL;
    if (!images_path || !labels_path) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_idx_load: %s path is NULL",
                         images_path ? "labels" : "images");
        return NULL;
    }
    if (!(std > 0) || mean != mean) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_idx_load: normalization needs std > 0 and a "
                         "finite mean, got mean %g std %g", mean, std);
        return NULL;
    }

    unsigned char *lab = NULL;
    int64_t nlab = 0;
    if (gf__read_labels(ctx, labels_path, &lab, &nlab)) return NULL;

    gf__idx_file h = {0};
    unsigned char *raw = NULL;
    float *img = NULL;
    int64_t *labels = NULL;
    gf_dataset *d = NULL;
    int64_t dims[3] = {0, 0, 0}, features = 0;
    gf_status s = gf__idx_open(ctx, &h, images_path);
    if (!s) s = gf__idx_header(ctx, &h, GF_IDX_IMAGES_MAGIC, 3, dims);
    if (!s) {
        features = dims[1] * dims[2];
        if (dims[0] > GF_IDX_MAX_ITEMS || features <= 0 || features > GF_IDX_MAX_FEATURES)
            s = gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: implausible image header "
                                 "[%lld, %lld, %lld]", images_path, (long long)dims[0],
                                 (long long)dims[1], (long long)dims[2]);
        else if (dims[0] != nlab)
            s = gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s has %lld images but %s has "
                                 "%lld labels; the counts must match", images_path,
                                 (long long)dims[0], labels_path, (long long)nlab);
    }
    const int64_t n = dims[0], bytes = n * features;
    if (!s) {
        raw = malloc((size_t)(bytes ? bytes : 1));
        img = malloc(sizeof(float) * (size_t)(bytes ? bytes : 1));
        labels = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        if (!raw || !img || !labels)
            s = gf_ctx_set_error(ctx, GF_ENOMEM, "gf_idx_load: %s: out of memory for %lld "
                                 "images of %lld pixels", images_path, (long long)n,
                                 (long long)features);
    }
    if (!s) s = gf__idx_read(ctx, &h, raw, bytes, "the pixel data");
    if (!s) s = gf__idx_expect_end(ctx, &h, bytes);
    gf__idx_close(&h);

    if (!s) {
        /* x / 255, then (x - mean) / std: one table for the 256 byte values,
         * so every pixel of a value gets the identical float. */
        float lut[256];
        for (int v = 0; v < 256; v++) lut[v] = (float)(((double)v / 255.0 - mean) / std);
        for (int64_t i = 0; i < bytes; i++) img[i] = lut[raw[i]];
        for (int64_t i = 0; i < n; i++) labels[i] = lab[i];
        d = gf__dataset_new(ctx, n, features);
        if (!d) s = gf_ctx_set_error(ctx, GF_ENOMEM, "gf_idx_load: out of memory for the "
                                     "dataset of %lld items", (long long)n);
    }
    if (!s) {
        int64_t xs[2] = {n, features}, ys[1] = {n};
        d->images = gf_tensor_f32(d->store, 2, xs, img);
        d->labels = gf_tensor_i64(d->store, 1, ys, labels);
        d->x = d->images ? gf_data_f32(d->images) : NULL;
        d->y = d->labels ? gf_data_i64(d->labels) : NULL;
        if (!d->x || !d->y) {
            const char *e = gf_ctx_error(d->store);
            s = gf_ctx_set_error(ctx, gf_ctx_status(d->store) ? gf_ctx_status(d->store)
                                                              : GF_ENOMEM,
                                 "gf_idx_load: cannot store %lld images: %s", (long long)n,
                                 e ? e : "out of memory");
        }
    }
    free(raw);
    free(img);
    free(labels);
    free(lab);
    if (s) {
        gf_dataset_free(d);
        return NULL;
    }
    return d;
}

/* dir/name if it exists, else dir/name without ".gz" (torchvision leaves
 * the files uncompressed) if that exists, else dir/name (for the error). */
static void gf__find_file(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
    if (access(out, R_OK) == 0) return;
    char raw[4096];
    snprintf(raw, sizeof raw, "%s/%.*s", dir, (int)(strlen(name) - 3), name);
    if (access(raw, R_OK) == 0) snprintf(out, cap, "%s", raw);
}

gf_dataset *gf_fashion_mnist(gf_ctx *ctx, const char *dir, bool train) {
    if (!ctx) return NULL;
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    const char *split = train ? "train" : "t10k";
    char names[2][64], paths[2][4096];
    snprintf(names[0], sizeof names[0], "%s-images-idx3-ubyte.gz", split);
    snprintf(names[1], sizeof names[1], "%s-labels-idx1-ubyte.gz", split);
    for (int i = 0; i < 2; i++) {
        gf__find_file(paths[i], sizeof paths[i], dir, names[i]);
        if (access(paths[i], R_OK) != 0) {
            gf_ctx_set_error(ctx, GF_EIO, "gf_fashion_mnist: %s: %s; install the Debian "
                             "package dataset-fashion-mnist (apt-get install "
                             "dataset-fashion-mnist), or pass the directory that holds "
                             "%s", paths[i], strerror(errno), names[i]);
            return NULL;
        }
    }
    /* Fashion-MNIST's training-set pixel mean and standard deviation. */
    return gf_idx_load(ctx, paths[0], paths[1], 0.2860, 0.3530);
}

/* ------------------------------------------------------------- access */

int64_t gf_dataset_size(const gf_dataset *d) {
    return d ? d->n : 0;
}

int64_t gf_dataset_features(const gf_dataset *d) {
    return d ? d->features : 0;
}

/* splitmix64's finalizer: a bijective 64-bit mix. */
static uint64_t gf__mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Fisher-Yates from the identity, where the swap partner of position i is
 * drawn from a hash of (seed, epoch, i): the order depends on (seed, epoch)
 * alone, not on earlier calls, and no generator state exists anywhere. The
 * draw j = floor(r * (i+1) / 2^64) is biased by at most (i+1) / 2^64. */
void gf_dataset_shuffle(gf_dataset *d, uint64_t seed, uint64_t epoch) {
    if (!d) return;
    const uint64_t key =
        gf__mix64(gf__mix64(seed ^ UINT64_C(0x6a09e667f3bcc908)) + epoch * UINT64_C(0x9e3779b97f4a7c15));
    for (int64_t i = 0; i < d->n; i++) d->order[i] = i;
    for (int64_t i = d->n - 1; i > 0; i--) {
        uint64_t r = gf__mix64(key ^ gf__mix64((uint64_t)i + UINT64_C(0xbb67ae8584caa73b)));
        int64_t j = (int64_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
        int64_t t = d->order[i];
        d->order[i] = d->order[j];
        d->order[j] = t;
    }
}

/* Past the end is how a loop over the batches stops, so it returns GF_EINVAL
 * without recording an error on the ctx; bad arguments do record one. */
gf_status gf_dataset_batch(gf_dataset *d, int64_t b, int64_t batch_size, gf_tensor **x,
                           gf_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!d) return GF_EINVAL;
    if (!x || !y || batch_size <= 0 || b < 0)
        return gf_ctx_set_error(d->ctx, GF_EINVAL, "gf_dataset_batch: needs x and y outputs, "
                                "batch_size > 0 and b >= 0, got batch_size %lld, b %lld",
                                (long long)batch_size, (long long)b);
    if (b >= (d->n + batch_size - 1) / batch_size) return GF_EINVAL;
    const int64_t start = b * batch_size;
    const int64_t rows = d->n - start < batch_size ? d->n - start : batch_size;
    if (rows > d->buf_rows) {
        float *xb = realloc(d->xbuf, sizeof(float) * (size_t)(rows * d->features));
        if (xb) d->xbuf = xb;
        int64_t *yb = realloc(d->ybuf, sizeof(int64_t) * (size_t)rows);
        if (yb) d->ybuf = yb;
        if (!xb || !yb)
            return gf_ctx_set_error(d->ctx, GF_ENOMEM, "gf_dataset_batch: out of memory for "
                                    "a batch of %lld rows", (long long)rows);
        d->buf_rows = rows;
    }
    const size_t row_bytes = sizeof(float) * (size_t)d->features;
    for (int64_t r = 0; r < rows; r++) {
        int64_t k = d->order[start + r];
        memcpy(d->xbuf + r * d->features, d->x + k * d->features, row_bytes);
        d->ybuf[r] = d->y[k];
    }
    int64_t xs[2] = {rows, d->features}, ys[1] = {rows};
    gf_tensor *tx = gf_tensor_f32(d->ctx, 2, xs, d->xbuf);
    gf_tensor *ty = gf_tensor_i64(d->ctx, 1, ys, d->ybuf);
    if (!tx || !ty) {
        gf_release(tx);
        gf_release(ty);
        gf_status s = gf_ctx_status(d->ctx);
        return s ? s : gf_ctx_set_error(d->ctx, GF_ENOMEM, "gf_dataset_batch: cannot create "
                                        "the batch tensors");
    }
    *x = tx;
    *y = ty;
    return GF_OK;
}

void gf_dataset_free(gf_dataset *d) {
    if (!d) return;
    if (d->store) gf_ctx_destroy(d->store);
    free(d->order);
    free(d->xbuf);
    free(d->ybuf);
    free(d);
}
