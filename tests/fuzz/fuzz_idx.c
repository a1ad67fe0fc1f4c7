/*
 * fuzz_idx.c - fuzz target: IDX image and label files, gzip-compressed or
 * raw. Input: a flags byte, the image file's length (u32, little-endian),
 * the image file, then the label file. The flags pick gf_idx_load or
 * gf_fashion_mnist (on a directory holding the two files), the
 * normalization (valid or not) and the batch size the loaded dataset is
 * read back with.
 *
 * Checked: the error convention (common.c); a loaded dataset has n items of
 * f features; shuffled, its batches cover n rows, each [rows, f] f32 of
 * finite values and [rows] i64 labels of bytes; past the last batch
 * gf_dataset_batch gives GF_EINVAL. Headers may announce any size: one
 * that overflows, or more data than the file holds, must be a clean error
 * (the buffers the loader allocates for it first fail above 1 GiB under the
 * sanitizers, or stay untouched in the driver's limited address space).
 */
#include "fuzz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gradflow/nn.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    uint8_t flags = data[0];
    uint32_t li = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                  (uint32_t)data[4] << 24;
    size_t rest = size - 5, ni = li < rest ? li : rest;
    bool dir_mode = flags & 1, gz_names = flags & 2;
    static const char *const names[2][2] = {
        {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"},
        {"train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"}};
    char img[512], lab[512], dir[512], other[512];
    gf_fuzz_path(dir, sizeof dir, "");
    gf_fuzz_path(img, sizeof img, names[0][gz_names]);
    gf_fuzz_path(lab, sizeof lab, names[1][gz_names]);
    /* Only this input's two files: gf_fashion_mnist prefers a .gz name. */
    for (int k = 0; k < 2; k++) {
        gf_fuzz_path(other, sizeof other, names[k][!gz_names]);
        remove(other);
    }
    gf_fuzz_write(img, data + 5, ni);
    gf_fuzz_write(lab, data + 5 + ni, rest - ni);

    static const double means[] = {0.2860, 0.5, NAN, INFINITY, -1e300, 0};
    static const double stds[] = {0.3530, 1, 0, -1, NAN, 1e-3};
    static const int64_t batch[] = {1, 2, 3, 7, 1000, 0, -1, INT64_C(1) << 40};
    double mean = means[((flags >> 2) & 7) % 6], sd = stds[((flags >> 2) & 7) % 6];
    int64_t bs = batch[flags >> 5];

    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_ctx *c = gf_ctx_create(eng);
    GF_FUZZ_CHECK(c, "gf_ctx_create failed");
    gf_dataset *d = dir_mode ? gf_fashion_mnist(c, dir, true) : gf_idx_load(c, img, lab, mean, sd);
    gf_fuzz_settle(c, !d, dir_mode ? "gf_fashion_mnist" : "gf_idx_load");
    if (d) {
        int64_t n = gf_dataset_size(d), f = gf_dataset_features(d);
        GF_FUZZ_CHECK(n >= 0 && f > 0, "dataset of %lld items of %lld features", (long long)n,
                      (long long)f);
        gf_dataset_shuffle(d, flags, 1);
        int64_t rows_seen = 0, b = 0;
        for (;; b++) {
            gf_scope_begin(c);
            gf_tensor *x = NULL, *y = NULL;
            gf_status s = gf_dataset_batch(d, b, bs, &x, &y);
            if (s == GF_EINVAL && bs > 0 && rows_seen == n) {
                /* Past the end: how a loop over the batches stops. */
                GF_FUZZ_CHECK(!x && !y, "past the end, gf_dataset_batch gave tensors");
                gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_dataset_batch past the end");
                gf_scope_end(c);
                break;
            }
            gf_fuzz_settle(c, s < 0, "gf_dataset_batch");
            if (s < 0) {
                GF_FUZZ_CHECK(bs <= 0, "gf_dataset_batch %lld of size %lld failed: %d",
                              (long long)b, (long long)bs, (int)s);
                gf_scope_end(c);
                break;
            }
            int64_t rows = gf_shape(y)[0];
            GF_FUZZ_CHECK(rows >= 1 && rows <= bs && gf_ndim(x) == 2 && gf_shape(x)[0] == rows &&
                              gf_shape(x)[1] == f,
                          "batch %lld has the wrong shape", (long long)b);
            const float *xv = gf_data_f32(x);
            const int64_t *yv = gf_data_i64(y);
            GF_FUZZ_CHECK(xv && yv, "batch data: %s", gf_ctx_error(c));
            for (int64_t i = 0; i < rows * f; i++)
                GF_FUZZ_CHECK(isfinite(xv[i]), "pixel %lld of batch %lld is %g", (long long)i,
                              (long long)b, xv[i]);
            for (int64_t i = 0; i < rows; i++)
                GF_FUZZ_CHECK(yv[i] >= 0 && yv[i] <= 255, "label %lld", (long long)yv[i]);
            rows_seen += rows;
            gf_scope_end(c);
        }
        GF_FUZZ_CHECK(bs <= 0 || rows_seen == n, "the batches hold %lld rows of %lld",
                      (long long)rows_seen, (long long)n);
        gf_dataset_free(d);
    }
    GF_FUZZ_CHECK(gf_ctx_live_tensors(c) == 0, "%lld tensors left",
                  (long long)gf_ctx_live_tensors(c));
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
    return 0;
}

/* gzip of n bytes into out (a gzip member, as gzip(1) writes), its length. */
static size_t gzip_bytes(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    z_stream z = {0};
    GF_FUZZ_CHECK(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK, "zlib");
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    GF_FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "zlib");
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

/* Tiny valid files: 3 images of 2x2 pixels and their labels, raw and gzip,
 * for both loaders. */
void gf_fuzz_seeds(gf_fuzz_emit emit, void *arg) {
    static const uint8_t images[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2,
                                     0, 128, 255, 7, 1, 2, 3, 4, 250, 0, 9, 90};
    static const uint8_t labels[] = {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4};
    for (int gz = 0; gz < 2; gz++)
        for (int mode = 0; mode < 4; mode++) {
            uint8_t buf[512], zi[256], zl[256];
            const uint8_t *pi = images, *pl = labels;
            size_t ni = sizeof images, nl = sizeof labels;
            if (gz) {
                ni = gzip_bytes(images, sizeof images, zi, sizeof zi), pi = zi;
                nl = gzip_bytes(labels, sizeof labels, zl, sizeof zl), pl = zl;
            }
            /* gf_idx_load or the directory, gzip names with gzip data, the
             * first normalization, batches of 1, 2, 3 or 7. */
            buf[0] = (uint8_t)((mode & 1) | (gz << 1) | (mode << 5));
            for (int i = 0; i < 4; i++) buf[1 + i] = (uint8_t)(ni >> (8 * i));
            memcpy(buf + 5, pi, ni);
            memcpy(buf + 5 + ni, pl, nl);
            emit(arg, buf, 5 + ni + nl);
        }
}
