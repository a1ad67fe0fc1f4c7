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
#include <math.h>
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
#define GF_FASHION_MNIST_CLASSES 10

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

/* An open IDX file, raw or gzip (told apart by gzip's magic bytes 1f 8b).
 * gzip is inflated here rather than by gzread, which takes a stream cut
 * inside its trailer, or one followed by garbage, for a whole one: here a
 * stream must reach Z_STREAM_END, whose trailer (CRC-32 and length) zlib
 * checks, and only further gzip members may follow it. `in` buffers the
 * file; for a raw file it holds the first chunk, read to look for the
 * magic. */
typedef struct {
    const char *path;
    FILE *f;
    unsigned char *in;
    bool gz, zinit;
    bool ended; /* gzip: the last member ended and nothing follows */
    z_stream z;
} gf__idx_file;

#define GF__IDX_CHUNK (1u << 18)

/* Refills the input buffer when it is empty; false with errno on a read
 * error. At the end of the file avail_in stays 0. */
static bool gf__idx_refill(gf__idx_file *h) {
    if (h->z.avail_in > 0) return true;
    h->z.next_in = h->in;
    h->z.avail_in = (uInt)fread(h->in, 1, GF__IDX_CHUNK, h->f);
    return !ferror(h->f);
}

/* Makes at least 2 unread bytes available if the file has them (to look
 * for gzip's magic); false with errno on a read error. */
static bool gf__idx_fill2(gf__idx_file *h) {
    if (h->z.avail_in >= 2) return true;
    memmove(h->in, h->z.next_in, h->z.avail_in);
    h->z.next_in = h->in;
    h->z.avail_in += (uInt)fread(h->in + h->z.avail_in, 1, GF__IDX_CHUNK - h->z.avail_in, h->f);
    return !ferror(h->f);
}

/* Opens path and looks for gzip's magic; GF_EIO naming the path and
 * errno's reason on failure. */
static gf_status gf__idx_open_(gf_ctx *ctx, gf__idx_file *h, const char *path) {
    h->path = path;
    h->f = fopen(path, "rb");
    if (!h->f)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: cannot open %s: %s", path,
                                strerror(errno));
    h->in = malloc(GF__IDX_CHUNK);
    if (!h->in)
        return gf_ctx_set_error(ctx, GF_ENOMEM, "gf_idx_load: %s: out of memory for the read "
                                "buffer", path);
    h->z.next_in = h->in;
    if (!gf__idx_fill2(h))
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: read error: %s", path,
                                strerror(errno));
    h->gz = h->z.avail_in >= 2 && h->in[0] == 0x1f && h->in[1] == 0x8b;
    if (h->gz) {
        int r = inflateInit2(&h->z, 16 + MAX_WBITS); /* gzip wrapper only */
        if (r != Z_OK)
            return gf_ctx_set_error(ctx, r == Z_MEM_ERROR ? GF_ENOMEM : GF_EIO,
                                    "gf_idx_load: %s: cannot start zlib: %s", path,
                                    h->z.msg ? h->z.msg : zError(r));
        h->zinit = true;
    }
    return GF_OK;
}

static void gf__idx_close(gf__idx_file *h) {
    if (h->zinit) inflateEnd(&h->z);
    if (h->f) fclose(h->f);
    free(h->in);
    h->zinit = false;
    h->f = NULL;
    h->in = NULL;
}

/* gf__idx_open_, closing what it opened when it fails. */
static gf_status gf__idx_open(gf_ctx *ctx, gf__idx_file *h, const char *path) {
    gf_status s = gf__idx_open_(ctx, h, path);
    if (s) gf__idx_close(h);
    return s;
}

/* Reads up to n bytes into dst and sets *got; fewer only at the end of the
 * data. A read error, corrupt gzip data, a gzip stream cut before its
 * trailer, or garbage after it: GF_EIO naming the path and `what`. */
static gf_status gf__idx_pull(gf_ctx *ctx, gf__idx_file *h, unsigned char *dst, int64_t n,
                              int64_t *got, const char *what) {
    *got = 0;
    while (*got < n && !(h->gz && h->ended)) {
        if (!gf__idx_refill(h))
            return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: read error while reading "
                                    "%s: %s", h->path, what, strerror(errno));
        uInt want = n - *got > (INT64_C(1) << 30) ? 1u << 30 : (uInt)(n - *got);
        if (!h->gz) {
            if (h->z.avail_in == 0) return GF_OK; /* end of the file */
            uInt k = want < h->z.avail_in ? want : h->z.avail_in;
            memcpy(dst + *got, h->z.next_in, k);
            h->z.next_in += k;
            h->z.avail_in -= k;
            *got += k;
            continue;
        }
        if (h->z.avail_in == 0)
            return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: truncated gzip stream: it "
                                    "ends while reading %s, before the end of its compressed "
                                    "data and its trailer (CRC-32 and length)", h->path, what);
        h->z.next_out = dst + *got;
        h->z.avail_out = want;
        int r = inflate(&h->z, Z_NO_FLUSH);
        *got += want - h->z.avail_out;
        if (r == Z_STREAM_END) {
            /* zlib has checked this member's trailer. Another member may
             * follow (gzip allows concatenation), or nothing. */
            if (!gf__idx_fill2(h))
                return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: read error while "
                                        "reading %s: %s", h->path, what, strerror(errno));
            if (h->z.avail_in == 0) h->ended = true;
            else if (h->z.avail_in < 2 || h->z.next_in[0] != 0x1f || h->z.next_in[1] != 0x8b)
                return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: trailing garbage after "
                                        "the gzip stream (bytes that do not start another "
                                        "gzip member)", h->path);
            else inflateReset(&h->z);
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            return gf_ctx_set_error(ctx, r == Z_MEM_ERROR ? GF_ENOMEM : GF_EIO,
                                    "gf_idx_load: %s: corrupt gzip data while reading %s: %s",
                                    h->path, what, h->z.msg ? h->z.msg : zError(r));
        }
    }
    return GF_OK;
}

/* Reads exactly n bytes of `what`: a short read is a truncated file, a zlib
 * failure a corrupt one; both GF_EIO naming the path. */
static gf_status gf__idx_read(gf_ctx *ctx, gf__idx_file *h, void *dst, int64_t n,
                              const char *what) {
    int64_t got = 0;
    gf_status s = gf__idx_pull(ctx, h, dst, n, &got, what);
    if (s) return s;
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

/* Nothing may follow the data: trailing bytes mean the header lies. For
 * gzip this also reads the stream to its end, so that its trailer is
 * checked. */
static gf_status gf__idx_expect_end(gf_ctx *ctx, gf__idx_file *h, int64_t data_bytes) {
    unsigned char c;
    int64_t got = 0;
    gf_status s = gf__idx_pull(ctx, h, &c, 1, &got, "the end of the data");
    if (s) return s;
    if (got > 0)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: trailing bytes after the %lld "
                                "bytes of data the header announces", h->path,
                                (long long)data_bytes);
    return GF_OK;
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
    if (!isfinite(mean) || !(std > 0) || !isfinite(std)) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_idx_load: normalization needs a finite mean and "
                         "a finite std > 0, got mean %g std %g", mean, std);
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
        /* Sizes come from the file: every product is checked, so that a
         * garbage header is an error rather than an overflow. */
        if (__builtin_mul_overflow(dims[1], dims[2], &features))
            s = gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: implausible image header "
                                 "[%lld, %lld, %lld]: rows*cols overflows int64",
                                 images_path, (long long)dims[0], (long long)dims[1],
                                 (long long)dims[2]);
        else if (dims[0] > GF_IDX_MAX_ITEMS || features <= 0 || features > GF_IDX_MAX_FEATURES)
            s = gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s: implausible image header "
                                 "[%lld, %lld, %lld] (expected at most %lld images of 1 to "
                                 "%lld pixels)", images_path, (long long)dims[0],
                                 (long long)dims[1], (long long)dims[2],
                                 (long long)GF_IDX_MAX_ITEMS, (long long)GF_IDX_MAX_FEATURES);
        else if (dims[0] != nlab)
            s = gf_ctx_set_error(ctx, GF_EIO, "gf_idx_load: %s has %lld images but %s has "
                                 "%lld labels; the counts must match", images_path,
                                 (long long)dims[0], labels_path, (long long)nlab);
    }
    const int64_t n = dims[0];
    int64_t bytes = 0;
    size_t img_bytes = 0, lab_bytes = 0;
    if (!s && (__builtin_mul_overflow(n, features, &bytes) ||
               __builtin_mul_overflow((size_t)(bytes ? bytes : 1), sizeof(float), &img_bytes) ||
               __builtin_mul_overflow((size_t)(n ? n : 1), sizeof(int64_t), &lab_bytes)))
        s = gf_ctx_set_error(ctx, GF_ENOMEM, "gf_idx_load: %s: %lld images of %lld pixels do "
                             "not fit in this machine's address space", images_path,
                             (long long)n, (long long)features);
    if (!s) {
        raw = malloc((size_t)(bytes ? bytes : 1));
        img = malloc(img_bytes);
        labels = malloc(lab_bytes);
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
    gf_dataset *d = gf_idx_load(ctx, paths[0], paths[1], 0.2860, 0.3530);
    /* gf_idx_load takes any byte as a label (IDX does not say how many
     * classes there are); Fashion-MNIST has 10, and a label past them would
     * only fail later, inside the loss. */
    for (int64_t i = 0; d && i < d->n; i++)
        if (d->y[i] >= GF_FASHION_MNIST_CLASSES) {
            gf_ctx_set_error(ctx, GF_EIO, "gf_fashion_mnist: %s: label %lld of item %lld is out "
                             "of range for Fashion-MNIST's %d classes (expected 0..%d)",
                             paths[1], (long long)d->y[i], (long long)i,
                             GF_FASHION_MNIST_CLASSES, GF_FASHION_MNIST_CLASSES - 1);
            gf_dataset_free(d);
            return NULL;
        }
    return d;
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
 * without recording an error on the ctx; bad arguments do record one. A
 * batch starts past the end when b * batch_size is >= n or overflows: no
 * arithmetic here can overflow, whatever the arguments. */
gf_status gf_dataset_batch(gf_dataset *d, int64_t b, int64_t batch_size, gf_tensor **x,
                           gf_tensor **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!d) return GF_EINVAL;
    if (!x || !y || batch_size <= 0 || b < 0)
        return gf_ctx_set_error(d->ctx, GF_EINVAL, "gf_dataset_batch: needs x and y outputs, "
                                "batch_size > 0 and b >= 0, got batch_size %lld, b %lld",
                                (long long)batch_size, (long long)b);
    int64_t start;
    if (__builtin_mul_overflow(b, batch_size, &start) || start >= d->n) return GF_EINVAL;
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
