/*
 * checkpoint.c - gf_save / gf_load: a model's parameters and an optimizer's
 * state in the versioned, checksummed binary format of docs/checkpoint.md.
 *
 * Saving writes "<path>.tmp" (one name per target, locked while in use),
 * fsyncs it and renames it over path, so a reader sees the old file or the
 * new one, never half of one, and a crashed save leaves at most one temp
 * file, which the next save reuses. Loading reads the whole file, checks
 * magic, version, reserved field, length, CRC-32, every count, dtype and
 * shape against the model (and optimizer), the optimizer's hyperparameters
 * and step counts as its constructor would, and that nothing follows the
 * last section, before it touches any tensor: a bad file changes nothing.
 */
#include "nn_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define GF__CK_MAGIC "GFCKPT\0\1"
/* Version 2 puts the header under the CRC; version 1 files (CRC over the
 * payload only) still load. */
#define GF__CK_VERSION 2u
#define GF__CK_HEADER 24 /* magic[8], u32 version, u32 reserved, u64 payload bytes */

/* ------------------------------------------------------------------ CRC-32 */

/* zlib's crc32 (the same values as the table-driven loop it replaces, about
 * six times faster), fed in pieces its uInt length can hold. */
uint32_t gf__crc32(uint32_t crc, const void *p, size_t n) {
    const Bytef *b = p;
    uLong c = crc;
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* ------------------------------------------------------ little-endian I/O */

static bool gf__host_le(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Reverses the byte order of n elements of size es in place (big-endian
 * hosts only: the file is little-endian). */
static void gf__swap(void *p, size_t n, size_t es) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++, b += es)
        for (size_t j = 0; j < es / 2; j++) {
            uint8_t t = b[j];
            b[j] = b[es - 1 - j];
            b[es - 1 - j] = t;
        }
}

/* File dtype codes are fixed by the format, not by gf_dtype's values. */
static uint32_t gf__dt_code(gf_dtype dt) { return dt == GF_F32 ? 0 : dt == GF_F64 ? 1 : 2; }
static size_t gf__dt_size(uint32_t code) { return code == 0 ? 4 : 8; }
static const char *gf__code_name(uint32_t code) {
    return code == 0 ? "f32" : code == 1 ? "f64" : code == 2 ? "i64" : "unknown dtype";
}

static uint64_t gf__pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* --------------------------------------------------------------- writing */

typedef struct {
    FILE *f;
    uint32_t crc;
    bool ok;
} gf__writer;

static void gf__put(gf__writer *w, const void *p, size_t n) {
    if (!w->ok || n == 0) return;
    w->crc = gf__crc32(w->crc, p, n);
    w->ok = fwrite(p, 1, n, w->f) == n;
}

static void gf__put_u32(gf__writer *w, uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    gf__put(w, b, 4);
}

static void gf__put_u64(gf__writer *w, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    gf__put(w, b, 8);
}

static void gf__put_f64(gf__writer *w, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    gf__put_u64(w, v);
}

/* Bytes of one tensor record: dtype, ndim, shape, nbytes, data padded to 8. */
static uint64_t gf__record_size(gf_tensor *t) {
    uint64_t nbytes = (uint64_t)gf_numel(t) * gf__dt_size(gf__dt_code(gf_dtype_of(t)));
    return 8 + 8 * (uint64_t)gf_ndim(t) + 8 + gf__pad8(nbytes);
}

static gf_status gf__put_record(gf__writer *w, gf_tensor *t) {
    uint32_t code = gf__dt_code(gf_dtype_of(t));
    size_t es = gf__dt_size(code);
    uint64_t nbytes = (uint64_t)gf_numel(t) * es;
    const void *data = code == 0   ? (const void *)gf_data_f32(t)
                       : code == 1 ? (const void *)gf_data_f64(t)
                                   : (const void *)gf_data_i64(t);
    if (!data) return gf_ctx_status(gf_ctx_of(t)) ? gf_ctx_status(gf_ctx_of(t)) : GF_EIO;
    gf__put_u32(w, code);
    gf__put_u32(w, (uint32_t)gf_ndim(t));
    for (int d = 0; d < gf_ndim(t); d++) gf__put_u64(w, (uint64_t)gf_shape(t)[d]);
    gf__put_u64(w, nbytes);
    if (gf__host_le()) {
        gf__put(w, data, (size_t)nbytes);
    } else {
        uint8_t tmp[4096];
        for (size_t at = 0; at < nbytes; at += sizeof tmp) {
            size_t k = nbytes - at < sizeof tmp ? (size_t)(nbytes - at) : sizeof tmp;
            memcpy(tmp, (const uint8_t *)data + at, k);
            gf__swap(tmp, k / es, es);
            gf__put(w, tmp, k);
        }
    }
    static const uint8_t zeros[8] = {0};
    gf__put(w, zeros, (size_t)(gf__pad8(nbytes) - nbytes));
    return GF_OK;
}

/* Payload bytes (everything between the header and the CRC). */
static uint64_t gf__payload_size(gf_module *m, gf_optimizer *opt) {
    uint64_t n = 8;
    for (int i = 0; i < gf_module_num_parameters(m); i++)
        n += gf__record_size(gf_module_parameter(m, i));
    if (opt) {
        n += 64;
        for (int i = 0; i < opt->n; i++) {
            n += 16;
            if (opt->s1[i]) n += gf__record_size(opt->s1[i]);
            if (opt->s2[i]) n += gf__record_size(opt->s2[i]);
        }
    }
    return n;
}

/* The optimizer section: kind, parameter count, steps, hyperparameters,
 * then per parameter its step count and its state tensors. */
static gf_status gf__put_optimizer(gf__writer *w, gf_optimizer *opt) {
    bool sgd = opt->kind == GF__OPT_SGD;
    gf__put_u32(w, (uint32_t)opt->kind);
    gf__put_u32(w, (uint32_t)opt->n);
    gf__put_u64(w, (uint64_t)opt->steps);
    gf__put_f64(w, sgd ? opt->sgd.lr : opt->adam.lr);
    gf__put_f64(w, sgd ? opt->sgd.momentum : opt->adam.beta1);
    gf__put_f64(w, sgd ? opt->sgd.dampening : opt->adam.beta2);
    gf__put_f64(w, sgd ? 0.0 : opt->adam.eps);
    gf__put_f64(w, sgd ? opt->sgd.weight_decay : opt->adam.weight_decay);
    gf__put_u32(w, (sgd ? opt->sgd.nesterov : opt->adam.decoupled) ? 1u : 0u);
    gf__put_u32(w, 0);
    for (int i = 0; i < opt->n; i++) {
        uint32_t ns = (opt->s1[i] ? 1u : 0u) + (opt->s2[i] ? 1u : 0u);
        gf__put_u64(w, (uint64_t)opt->pstep[i]);
        gf__put_u32(w, ns);
        gf__put_u32(w, 0);
        gf_status s = GF_OK;
        if (opt->s1[i]) s = gf__put_record(w, opt->s1[i]);
        if (s == GF_OK && opt->s2[i]) s = gf__put_record(w, opt->s2[i]);
        if (s != GF_OK) return s;
    }
    return GF_OK;
}

/* fsyncs the directory holding path so that the rename itself is durable. */
static void gf__sync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* Opens tmp for writing under an exclusive flock and returns the locked
 * descriptor (-1 with errno on failure). The name is fixed per target, so
 * a crashed save leaves at most one temp file and the next save truncates
 * and reuses it; the lock makes concurrent saves of one path take turns.
 * A lock won on a file that the previous holder has renamed away in the
 * meantime is dropped and taken again on the file now at tmp. */
static int gf__lock_tmp(const char *tmp) {
    for (;;) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) return -1;
        int rc;
        while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) continue;
        struct stat a, b;
        if (rc != 0 || fstat(fd, &a) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (stat(tmp, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            if (ftruncate(fd, 0) == 0) return fd;
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        close(fd);
    }
}

gf_status gf_save(const char *path, gf_module *m, gf_optimizer *opt) {
    if (!m) return GF_EINVAL;
    gf_ctx *ctx = gf__module_ctx(m);
    if (!ctx) return GF_EINVAL;
    if (!path) return gf_ctx_set_error(ctx, GF_EINVAL, "gf_save: path is NULL");
    size_t len = strlen(path) + 8;
    char *tmp = malloc(len);
    if (!tmp) return gf_ctx_set_error(ctx, GF_ENOMEM, "gf_save: out of memory");
    snprintf(tmp, len, "%s.tmp", path);
    /* The FILE gets a duplicate of the locked descriptor, so that closing
     * it (and seeing its errors) keeps the lock until after the rename. */
    int lock = gf__lock_tmp(tmp);
    int fd = lock >= 0 ? dup(lock) : -1;
    gf__writer w = {.f = fd >= 0 ? fdopen(fd, "wb") : NULL, .ok = true};
    if (!w.f) {
        gf_status s = gf_ctx_set_error(ctx, GF_EIO, "gf_save: %s: cannot create %s: %s", path,
                                       tmp, strerror(errno));
        if (fd >= 0) close(fd);
        if (lock >= 0) close(lock);
        free(tmp);
        return s;
    }
    /* The CRC covers the header too (format version 2); the header's
     * payload length lets a reader tell a truncated file from a corrupted
     * one before it computes the CRC. */
    uint64_t payload = gf__payload_size(m, opt);
    gf__put(&w, GF__CK_MAGIC, 8);
    gf__put_u32(&w, GF__CK_VERSION);
    gf__put_u32(&w, 0);
    gf__put_u64(&w, payload);
    gf_status s = GF_OK;
    gf__put_u32(&w, (uint32_t)gf_module_num_parameters(m));
    gf__put_u32(&w, opt ? 1u : 0u);
    for (int i = 0; s == GF_OK && i < gf_module_num_parameters(m); i++)
        s = gf__put_record(&w, gf_module_parameter(m, i));
    if (s == GF_OK && opt) s = gf__put_optimizer(&w, opt);
    uint32_t crc = w.crc;
    gf__put_u32(&w, crc);
    int err = 0;
    if (s == GF_OK && (!w.ok || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0))
        err = errno ? errno : EIO;
    if (fclose(w.f) != 0 && s == GF_OK && !err) err = errno ? errno : EIO;
    if (s == GF_OK && !err && rename(tmp, path) != 0) err = errno;
    if (s == GF_OK && err)
        s = gf_ctx_set_error(ctx, GF_EIO, "gf_save: %s: writing %s failed: %s", path, tmp,
                             strerror(err));
    if (s != GF_OK) remove(tmp);
    else gf__sync_dir(path);
    close(lock);
    free(tmp);
    return s;
}

/* --------------------------------------------------------------- loading */

/* A cursor over the payload; the first problem is reported once, with the
 * file's path and the byte offset. */
typedef struct {
    uint8_t *buf;
    size_t size, at;
    const char *path;
    gf_ctx *ctx;
    gf_status s;
} gf__reader;

static bool gf__fail(gf__reader *r, const char *what) {
    if (r->s == GF_OK)
        r->s = gf_ctx_set_error(r->ctx, GF_EIO, "gf_load: %s: malformed file: %s at byte %zu",
                                r->path, what, r->at);
    return false;
}

static bool gf__get(gf__reader *r, void *dst, size_t n, const char *what) {
    if (r->s != GF_OK) return false;
    if (r->size - r->at < n) return gf__fail(r, what);
    memcpy(dst, r->buf + r->at, n);
    r->at += n;
    return true;
}

static uint32_t gf__get_u32(gf__reader *r, const char *what) {
    uint8_t b[4] = {0};
    gf__get(r, b, 4, what);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t gf__get_u64(gf__reader *r, const char *what) {
    uint8_t b[8] = {0};
    gf__get(r, b, 8, what);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static double gf__get_f64(gf__reader *r, const char *what) {
    uint64_t v = gf__get_u64(r, what);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* One tensor record, parsed in place (data points into the buffer, which
 * the format keeps 8-byte aligned). */
typedef struct {
    uint32_t code;
    int ndim;
    int64_t shape[GF_MAX_DIMS];
    uint64_t nbytes;
    void *data;
} gf__record;

static bool gf__get_record(gf__reader *r, gf__record *rec) {
    rec->code = gf__get_u32(r, "tensor dtype");
    uint32_t nd = gf__get_u32(r, "tensor ndim");
    if (r->s != GF_OK) return false;
    if (rec->code > 2) return gf__fail(r, "unknown dtype code");
    if (nd > GF_MAX_DIMS) return gf__fail(r, "too many dimensions");
    rec->ndim = (int)nd;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t e = gf__get_u64(r, "tensor shape");
        if (r->s != GF_OK) return false;
        if (e > (uint64_t)INT64_MAX || (e && numel > UINT64_MAX / 8 / e))
            return gf__fail(r, "dimension too large");
        rec->shape[d] = (int64_t)e;
        numel *= e;
    }
    rec->nbytes = gf__get_u64(r, "tensor byte count");
    if (r->s != GF_OK) return false;
    if (rec->nbytes != numel * gf__dt_size(rec->code))
        return gf__fail(r, "byte count does not match the shape");
    if (gf__pad8(rec->nbytes) > r->size - r->at) return gf__fail(r, "tensor data past the end");
    rec->data = r->buf + r->at;
    for (size_t k = (size_t)rec->nbytes; k < gf__pad8(rec->nbytes); k++)
        if (r->buf[r->at + k] != 0) return gf__fail(r, "nonzero padding after tensor data");
    r->at += (size_t)gf__pad8(rec->nbytes);
    return true;
}

static void gf__shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* The record matches tensor t's dtype and shape, or an error names both. */
static bool gf__check_record(gf__reader *r, const gf__record *rec, gf_tensor *t,
                             const char *what, int i) {
    if (r->s != GF_OK) return false;
    if (rec->code != gf__dt_code(gf_dtype_of(t))) {
        r->s = gf_ctx_set_error(r->ctx, GF_EIO, "gf_load: %s: %s %d is %s in the file, the %s %s",
                                r->path, what, i, gf__code_name(rec->code),
                                strncmp(what, "parameter", 9) ? "optimizer has" : "model has",
                                gf_dtype_name(gf_dtype_of(t)));
        return false;
    }
    if (rec->ndim != gf_ndim(t) ||
        memcmp(rec->shape, gf_shape(t), (size_t)rec->ndim * sizeof(int64_t)) != 0) {
        char a[200], b[200];
        gf__shape_str(a, sizeof a, rec->ndim, rec->shape);
        gf__shape_str(b, sizeof b, gf_ndim(t), gf_shape(t));
        r->s = gf_ctx_set_error(r->ctx, GF_EIO,
                                "gf_load: %s: %s %d has shape %s in the file, the %s %s", r->path,
                                what, i, a,
                                strncmp(what, "parameter", 9) ? "optimizer's parameter has"
                                                              : "model has",
                                b);
        return false;
    }
    return true;
}

/* Reads the whole file into a malloc'd (so 8-byte aligned) buffer. */
static gf_status gf__read_file(gf_ctx *ctx, const char *path, uint8_t **buf, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return gf_ctx_set_error(ctx, GF_EIO, "gf_load: %s: cannot open: %s", path,
                                strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *nb = realloc(b, cap * 2);
        if (!nb) free(b);
        b = nb;
        cap *= 2;
    }
    bool bad = b && ferror(f);
    fclose(f);
    if (!b) return gf_ctx_set_error(ctx, GF_ENOMEM, "gf_load: %s: out of memory", path);
    if (bad) {
        free(b);
        return gf_ctx_set_error(ctx, GF_EIO, "gf_load: %s: read error", path);
    }
    *buf = b;
    *size = n;
    return GF_OK;
}

/* The parsed optimizer section; state records reference the buffer. */
typedef struct {
    uint32_t kind, n;
    int64_t steps;
    gf_sgd_opts sgd;
    gf_adam_opts adam;
    int64_t *pstep;
    uint32_t *nstate;
    gf__record *st; /* 2 per parameter */
} gf__opt_file;

static const char *gf__kind_name(uint32_t k) {
    return k == GF__OPT_SGD ? "SGD" : k == GF__OPT_ADAM ? "Adam" : "an unknown optimizer";
}

/* A step count of the file as an int64_t, or an error naming it. */
static bool gf__get_steps(gf__reader *r, int64_t *out, const char *what, int64_t i) {
    uint64_t v = gf__get_u64(r, what);
    if (r->s != GF_OK) return false;
    if (v > (uint64_t)INT64_MAX) {
        char which[48] = "";
        if (i >= 0) snprintf(which, sizeof which, " of parameter %lld", (long long)i);
        r->s = gf_ctx_set_error(r->ctx, GF_EIO,
                                "gf_load: %s: invalid optimizer state: %s%s %llu (expected "
                                "0..%lld)", r->path, what, which, (unsigned long long)v,
                                (long long)INT64_MAX);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* Parses the optimizer section and checks it on its own, as the
 * constructors check their options: a known kind, valid hyperparameters
 * (gf__sgd_opts_invalid / gf__adam_opts_invalid), step counts that fit an
 * int64_t, zero reserved fields, and the state count the hyperparameters
 * imply. Matching it against an optimizer is gf__match_optimizer's job. */
static bool gf__get_optimizer(gf__reader *r, gf__opt_file *of) {
    of->kind = gf__get_u32(r, "optimizer kind");
    of->n = gf__get_u32(r, "optimizer parameter count");
    if (!gf__get_steps(r, &of->steps, "step count", -1)) return false;
    double h[5];
    for (int k = 0; k < 5; k++) h[k] = gf__get_f64(r, "optimizer hyperparameters");
    uint32_t flags = gf__get_u32(r, "optimizer flags");
    uint32_t reserved = gf__get_u32(r, "optimizer reserved field");
    if (r->s != GF_OK) return false;
    if (of->kind != GF__OPT_SGD && of->kind != GF__OPT_ADAM)
        return gf__fail(r, "unknown optimizer kind");
    if (flags > 1 || reserved != 0) return gf__fail(r, "nonzero reserved optimizer bits");
    const char *bad;
    char vals[160];
    if (of->kind == GF__OPT_SGD) {
        of->sgd = (gf_sgd_opts){.lr = h[0], .momentum = h[1], .dampening = h[2],
                                .weight_decay = h[4], .nesterov = flags & 1};
        bad = h[3] != 0 ? "the unused fourth hyperparameter of SGD is not 0"
                        : gf__sgd_opts_invalid(&of->sgd);
        snprintf(vals, sizeof vals, "SGD: lr %g, momentum %g, dampening %g, weight_decay %g",
                 h[0], h[1], h[2], h[4]);
    } else {
        of->adam = (gf_adam_opts){.lr = h[0], .beta1 = h[1], .beta2 = h[2], .eps = h[3],
                                  .weight_decay = h[4], .decoupled = flags & 1};
        bad = gf__adam_opts_invalid(&of->adam);
        snprintf(vals, sizeof vals, "Adam: lr %g, betas (%g, %g), eps %g, weight_decay %g",
                 h[0], h[1], h[2], h[3], h[4]);
    }
    if (bad) {
        r->s = gf_ctx_set_error(r->ctx, GF_EIO, "gf_load: %s: invalid optimizer state: %s (%s)",
                                r->path, bad, vals);
        return false;
    }
    /* Each parameter takes at least 16 bytes: a count the rest of the file
     * cannot hold is refused before it sizes an allocation. */
    if (of->n > (r->size - r->at) / 16) return gf__fail(r, "optimizer parameter count too large");
    of->pstep = calloc((size_t)of->n + 1, sizeof *of->pstep);
    of->nstate = calloc((size_t)of->n + 1, sizeof *of->nstate);
    of->st = calloc(2 * (size_t)of->n + 1, sizeof *of->st);
    if (!of->pstep || !of->nstate || !of->st) {
        r->s = gf_ctx_set_error(r->ctx, GF_ENOMEM, "gf_load: %s: out of memory", r->path);
        return false;
    }
    const uint32_t want = of->kind == GF__OPT_ADAM ? 2 : of->sgd.momentum != 0 ? 1 : 0;
    for (uint32_t i = 0; i < of->n; i++) {
        if (!gf__get_steps(r, &of->pstep[i], "step count", i)) return false;
        of->nstate[i] = gf__get_u32(r, "state count");
        uint32_t pad = gf__get_u32(r, "state reserved field");
        if (r->s != GF_OK) return false;
        if (pad != 0) return gf__fail(r, "nonzero reserved field of a parameter's state");
        if (of->nstate[i] != 0 && of->nstate[i] != want)
            return gf__fail(r, "state count does not match the optimizer's hyperparameters");
        for (uint32_t k = 0; k < of->nstate[i]; k++)
            if (!gf__get_record(r, &of->st[2 * i + k])) return false;
    }
    return true;
}

/* The parsed section fits opt: same kind, parameter count, and state
 * tensors of its parameters' dtypes and shapes. */
static bool gf__match_optimizer(gf__reader *r, const gf__opt_file *of, gf_optimizer *opt) {
    if (of->kind != (uint32_t)opt->kind) {
        r->s = gf_ctx_set_error(r->ctx, GF_EIO,
                                "gf_load: %s: the file holds %s state, the optimizer is %s",
                                r->path, gf__kind_name(of->kind), gf__kind_name(opt->kind));
        return false;
    }
    if (of->n != (uint32_t)opt->n) {
        r->s = gf_ctx_set_error(
            r->ctx, GF_EIO, "gf_load: %s: the file's optimizer has %u parameters, this one has %d",
            r->path, of->n, opt->n);
        return false;
    }
    /* The state count was checked against the file's hyperparameters, which
     * the optimizer takes (as torch.optim's load_state_dict): a momentum
     * buffer may come to an SGD made without momentum. */
    for (uint32_t i = 0; i < of->n; i++)
        for (uint32_t k = 0; k < of->nstate[i]; k++)
            if (!gf__check_record(r, &of->st[2 * i + k], opt->params[i],
                                  "optimizer state of parameter", (int)i))
                return false;
    return true;
}

/* A temporary tensor (current scope) holding a record's values. */
static gf_tensor *gf__record_tensor(gf_ctx *ctx, gf__record *rec) {
    if (!gf__host_le()) gf__swap(rec->data, (size_t)(rec->nbytes / gf__dt_size(rec->code)),
                                 gf__dt_size(rec->code));
    switch (rec->code) {
    case 0: return gf_tensor_f32(ctx, rec->ndim, rec->shape, rec->data);
    case 1: return gf_tensor_f64(ctx, rec->ndim, rec->shape, rec->data);
    default: return gf_tensor_i64(ctx, rec->ndim, rec->shape, rec->data);
    }
}

/* Checks the header (magic, a known version, reserved field 0), the length
 * and the checksum; on success r covers header and payload. */
static bool gf__check_envelope(gf__reader *r) {
    char msg[160];
    msg[0] = 0;
    uint32_t version = 0;
    uint64_t payload = 0;
    if (r->size >= 8 && memcmp(r->buf, GF__CK_MAGIC, 8) != 0)
        snprintf(msg, sizeof msg, "not a gradflow checkpoint (bad magic bytes)");
    else if (r->size < GF__CK_HEADER)
        snprintf(msg, sizeof msg, "truncated at byte %zu (expected at least %d, the header)",
                 r->size, GF__CK_HEADER);
    if (!msg[0]) {
        r->at = 8;
        version = gf__get_u32(r, "version");
        uint32_t reserved = gf__get_u32(r, "reserved");
        payload = gf__get_u64(r, "payload length");
        uint64_t total = GF__CK_HEADER + payload + 4;
        if (version < 1 || version > GF__CK_VERSION)
            snprintf(msg, sizeof msg,
                     "unsupported format version %u (this build reads versions 1 to %u)", version,
                     GF__CK_VERSION);
        else if (reserved != 0)
            snprintf(msg, sizeof msg, "reserved header field is %u (expected 0)", reserved);
        else if (payload > SIZE_MAX - GF__CK_HEADER - 4 || r->size < total)
            snprintf(msg, sizeof msg, "truncated at byte %zu (expected %llu)", r->size,
                     (unsigned long long)total);
        else if (r->size > total)
            snprintf(msg, sizeof msg, "%zu trailing bytes after the checksum (expected %llu bytes)",
                     r->size - (size_t)total, (unsigned long long)total);
    }
    if (!msg[0]) {
        /* Version 1 left the header outside the checksum. */
        const size_t from = version == 1 ? GF__CK_HEADER : 0;
        const uint8_t *p = r->buf + GF__CK_HEADER + payload;
        uint32_t stored = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                          (uint32_t)p[3] << 24;
        if (gf__crc32(0, r->buf + from, GF__CK_HEADER + (size_t)payload - from) != stored)
            snprintf(msg, sizeof msg, "checksum mismatch (file corrupted)");
    }
    if (msg[0]) {
        r->s = gf_ctx_set_error(r->ctx, GF_EIO, "gf_load: %s: %s", r->path, msg);
        return false;
    }
    /* From here on offsets count from the start of the file, and the CRC
     * is no longer readable as payload. */
    r->size = GF__CK_HEADER + (size_t)payload;
    return true;
}

gf_status gf_load(const char *path, gf_module *m, gf_optimizer *opt) {
    if (!m) return GF_EINVAL;
    int np = gf_module_num_parameters(m);
    gf_ctx *ctx = gf__module_ctx(m);
    if (!ctx) return GF_EINVAL;
    if (!path) return gf_ctx_set_error(ctx, GF_EINVAL, "gf_load: path is NULL");
    gf__reader r = {.path = path, .ctx = ctx};
    gf_status s = gf__read_file(ctx, path, &r.buf, &r.size);
    if (s != GF_OK) return s;
    gf__record *recs = calloc((size_t)(np ? np : 1), sizeof *recs);
    gf__opt_file of = {0};
    if (!recs) {
        r.s = gf_ctx_set_error(ctx, GF_ENOMEM, "gf_load: %s: out of memory", path);
        goto done;
    }
    /* 1. Validate everything. */
    if (!gf__check_envelope(&r)) goto done;
    uint32_t fn = gf__get_u32(&r, "parameter count");
    uint32_t has_opt = gf__get_u32(&r, "optimizer flag");
    if (r.s != GF_OK) goto done;
    if (fn != (uint32_t)np) {
        r.s = gf_ctx_set_error(ctx, GF_EIO, "gf_load: %s: the file has %u parameters, the model has %d",
                               path, fn, np);
        goto done;
    }
    for (int i = 0; i < np; i++)
        if (!gf__get_record(&r, &recs[i]) ||
            !gf__check_record(&r, &recs[i], gf_module_parameter(m, i), "parameter", i))
            goto done;
    if (has_opt > 1) {
        gf__fail(&r, "bad optimizer flag");
        goto done;
    }
    /* The optimizer section is parsed and checked even when opt is NULL,
     * so that the payload's end is known and a bad section is not ignored. */
    if (has_opt && !gf__get_optimizer(&r, &of)) goto done;
    if (r.at != r.size) {
        r.s = gf_ctx_set_error(ctx, GF_EIO,
                               "gf_load: %s: %zu trailing bytes in the payload after its last "
                               "section (it ends at byte %zu, the header says %zu)",
                               path, r.size - r.at, r.at, r.size);
        goto done;
    }
    if (opt && !has_opt) {
        r.s = gf_ctx_set_error(ctx, GF_EIO,
                               "gf_load: %s: the file has no optimizer state (saved with opt NULL)",
                               path);
        goto done;
    }
    if (opt && !gf__match_optimizer(&r, &of, opt)) goto done;
    const uint32_t nopt = opt ? of.n : 0; /* state to adopt */

    /* 2. Build every temporary and every new state tensor before changing
     * anything, so that running out of memory also leaves all as it was. */
    gf_scope_begin(ctx);
    gf_tensor **tmp = calloc((size_t)np + 2 * (size_t)nopt + 1, sizeof *tmp);
    gf_tensor **fresh = calloc(2 * (size_t)nopt + 1, sizeof *fresh);
    bool ok = tmp && fresh;
    for (int i = 0; ok && i < np; i++) ok = (tmp[i] = gf__record_tensor(ctx, &recs[i])) != NULL;
    for (uint32_t i = 0; ok && i < nopt; i++)
        for (uint32_t k = 0; ok && k < of.nstate[i]; k++) {
            gf_tensor *p = opt->params[i];
            gf_ctx *pc = gf_ctx_of(p);
            ok = (tmp[np + 2 * i + k] = gf__record_tensor(pc, &of.st[2 * i + k])) != NULL;
            gf_tensor **have = k == 0 ? &opt->s1[i] : &opt->s2[i];
            if (ok && !*have)
                ok = (fresh[2 * i + k] = gf_persist(
                          gf_zeros(pc, gf_dtype_of(p), gf_ndim(p), gf_shape(p)))) != NULL;
        }
    /* 3. Copy (in place, under no_grad: parameters are leaves that require
     * grad) and adopt the optimizer's state. */
    gf_no_grad_begin(ctx);
    for (int i = 0; ok && i < np; i++) ok = gf_copy_(gf_module_parameter(m, i), tmp[i]) == GF_OK;
    gf_no_grad_end(ctx);
    for (uint32_t i = 0; ok && i < nopt; i++) {
        gf_ctx *pc = gf_ctx_of(opt->params[i]);
        gf_no_grad_begin(pc);
        for (uint32_t k = 0; ok && k < 2; k++) {
            gf_tensor **have = k == 0 ? &opt->s1[i] : &opt->s2[i];
            if (k < of.nstate[i]) {
                if (!*have) *have = fresh[2 * i + k], fresh[2 * i + k] = NULL;
                ok = gf_copy_(*have, tmp[np + 2 * i + k]) == GF_OK;
            } else {
                gf_release(*have); /* the file's parameter had not stepped yet */
                *have = NULL;
            }
        }
        gf_no_grad_end(pc);
        opt->pstep[i] = of.pstep[i];
    }
    if (ok && opt) {
        opt->steps = of.steps;
        if (opt->kind == GF__OPT_SGD) opt->sgd = of.sgd;
        else opt->adam = of.adam;
    }
    for (uint32_t i = 0; fresh && i < 2 * nopt; i++) gf_release(fresh[i]);
    for (size_t i = 0; tmp && i < (size_t)np + 2 * (size_t)nopt; i++) gf_release(tmp[i]);
    free(tmp);
    free(fresh);
    gf_scope_end(ctx);
    if (!ok) {
        r.s = gf_ctx_status(ctx) ? gf_ctx_status(ctx) : GF_ENOMEM;
        if (!gf_ctx_error(ctx)) gf_ctx_set_error(ctx, r.s, "gf_load: %s: out of memory", path);
    }
done:
    free(recs);
    free(of.pstep);
    free(of.nstate);
    free(of.st);
    free(r.buf);
    return r.s;
}
