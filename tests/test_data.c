/*
 * test_data.c - data loading (nn/data.c): the IDX reader on small files the
 * test writes itself (raw and gzip), its errors (missing file, truncated
 * file, bad magic, trailing bytes, image/label count mismatch, missing
 * Fashion-MNIST), per-epoch shuffling (a permutation, reproducible per
 * (seed, epoch), different across epochs and seeds), batching (covers the
 * epoch exactly once, rows and labels stay paired, tensors live in the
 * current scope), and the real Fashion-MNIST files when installed.
 */
#include "common.h"

#include "gradflow/nn.h"

#include <unistd.h>
#include <zlib.h>

static gf_ctx *ctx;
static char dir[64];

static void setup(void) {
    ctx = gf_ctx_create(NULL);
    snprintf(dir, sizeof dir, "/tmp/gf_test_data_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    gf_ctx_destroy(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(data, .init = setup, .fini = teardown);

/* ------------------------------------------------------------- writers */

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes bytes to dir/name, gzip-compressed or raw; returns the path (static
 * storage per slot). */
static const char *write_file(int slot, const char *name, const unsigned char *b, size_t n,
                              bool gz) {
    static char paths[4][128];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    if (gz) {
        gzFile f = gzopen(paths[slot], "wb");
        cr_assert_not_null(f);
        cr_assert_eq(gzwrite(f, b, (unsigned)n), (int)n);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(paths[slot], "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(b, 1, n, f), n);
        cr_assert_eq(fclose(f), 0);
    }
    return paths[slot];
}

/* An IDX image file of n images rows x cols whose pixel p of image i is
 * (i * 7 + p * 3) % 256, cut to `keep` bytes (or whole, keep < 0). */
static const char *write_images(int slot, const char *name, uint32_t magic, int n, int rows,
                                int cols, long keep, bool gz) {
    size_t len = 16 + (size_t)n * rows * cols;
    unsigned char *b = malloc(len);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)rows);
    put_be32(b + 12, (uint32_t)cols);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < rows * cols; p++)
            b[16 + (size_t)i * rows * cols + p] = (unsigned char)((i * 7 + p * 3) % 256);
    const char *path = write_file(slot, name, b, keep < 0 ? len : (size_t)keep, gz);
    free(b);
    return path;
}

/* An IDX label file of n labels (i * 5) % 256. */
static const char *write_labels(int slot, const char *name, int n, bool gz) {
    size_t len = 8 + (size_t)n;
    unsigned char *b = malloc(len);
    put_be32(b, 0x00000801u);
    put_be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) b[8 + i] = (unsigned char)((i * 5) % 256);
    const char *path = write_file(slot, name, b, len, gz);
    free(b);
    return path;
}

/* Loads the given files and checks every pixel and label against the
 * writers' formulas under normalization (mean, std). */
static void check_loaded(const char *img, const char *lab, int n, int rows, int cols,
                         double mean, double std) {
    gf_dataset *d = gf_idx_load(ctx, img, lab, mean, std);
    cr_assert_not_null(d, "gf_idx_load: %s", gf_ctx_error(ctx));
    cr_assert_eq(gf_dataset_size(d), n);
    cr_assert_eq(gf_dataset_features(d), rows * cols);
    gf_tensor *x, *y;
    gf_scope_begin(ctx);
    GF_OK_OR_FAIL(ctx, gf_dataset_batch(d, 0, n, &x, &y));
    gf_test_expect_shape(x, 2, (int64_t[]){n, rows * cols});
    gf_test_expect_shape(y, 1, (int64_t[]){n});
    cr_assert_eq(gf_dtype_of(x), GF_F32);
    cr_assert_eq(gf_dtype_of(y), GF_I64);
    const float *xv = gf_data_f32(x);
    const int64_t *yv = gf_data_i64(y);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(yv[i], (i * 5) % 256, "label %d", i);
        for (int p = 0; p < rows * cols; p++) {
            double want = (((i * 7 + p * 3) % 256) / 255.0 - mean) / std;
            cr_assert(fabs(xv[(size_t)i * rows * cols + p] - want) < 1e-6,
                      "image %d pixel %d: got %g, expected %g", i, p,
                      xv[(size_t)i * rows * cols + p], want);
        }
    }
    gf_scope_end(ctx);
    gf_dataset_free(d);
    cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
}

/* ---------------------------------------------------------- the reader */

Test(data, idx_raw_values) {
    const char *img = write_images(0, "img", 0x803, 5, 3, 4, -1, false);
    const char *lab = write_labels(1, "lab", 5, false);
    check_loaded(img, lab, 5, 3, 4, 0.0, 1.0);
    check_loaded(img, lab, 5, 3, 4, 0.2860, 0.3530);
}

Test(data, idx_gzip_values) {
    const char *img = write_images(0, "img.gz", 0x803, 7, 2, 5, -1, true);
    const char *lab = write_labels(1, "lab.gz", 7, true);
    check_loaded(img, lab, 7, 2, 5, 0.5, 0.25);
}

Test(data, idx_all_byte_values) {
    /* 256 images of one pixel each cover every byte value, including 0 and 255. */
    const char *img = write_images(0, "img", 0x803, 256, 1, 1, -1, true);
    const char *lab = write_labels(1, "lab", 256, false);
    check_loaded(img, lab, 256, 1, 1, 0.0, 1.0);
}

Test(data, idx_missing_file) {
    const char *lab = write_labels(1, "lab", 3, false);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-file", dir);
    cr_assert_null(gf_idx_load(ctx, missing, lab, 0, 1));
    cr_assert_eq(gf_ctx_status(ctx), GF_EIO);
    gf_test_expect_error(ctx, missing);
    gf_test_expect_error(ctx, "No such file");
}

static void expect_eio(const char *img, const char *lab, const char *path, const char *why) {
    gf_ctx_clear_error(ctx);
    int64_t live = gf_ctx_live_tensors(ctx);
    cr_assert_null(gf_idx_load(ctx, img, lab, 0, 1));
    cr_assert_eq(gf_ctx_status(ctx), GF_EIO, "status %d: %s", gf_ctx_status(ctx),
                 gf_ctx_error(ctx));
    gf_test_expect_error(ctx, path);
    gf_test_expect_error(ctx, why);
    cr_assert_eq(gf_ctx_live_tensors(ctx), live);
}

Test(data, idx_truncated) {
    const char *lab = write_labels(1, "lab", 4, false);
    /* Header for 4 images of 3x3, data for 2.5 of them. */
    const char *img = write_images(0, "img", 0x803, 4, 3, 3, 16 + 22, false);
    expect_eio(img, lab, img, "truncated");
    expect_eio(img, lab, img, "36 bytes, only 22");
    img = write_images(0, "img.gz", 0x803, 4, 3, 3, 16 + 22, true);
    expect_eio(img, lab, img, "truncated");
    /* A header cut short. */
    img = write_images(0, "img", 0x803, 4, 3, 3, 10, false);
    expect_eio(img, lab, img, "truncated");
    /* A label file cut short. */
    unsigned char b[8 + 2];
    put_be32(b, 0x801);
    put_be32(b + 4, 4);
    b[8] = b[9] = 1;
    const char *badlab = write_file(2, "lab.short", b, sizeof b, false);
    img = write_images(0, "img", 0x803, 4, 3, 3, -1, false);
    expect_eio(img, badlab, badlab, "truncated");
}

Test(data, idx_bad_magic) {
    const char *lab = write_labels(1, "lab", 3, false);
    const char *img = write_images(0, "img", 0x802, 3, 2, 2, -1, false);
    expect_eio(img, lab, img, "bad magic number 0x00000802, expected 0x00000803");
    /* The two files swapped. */
    img = write_images(0, "img", 0x803, 3, 2, 2, -1, false);
    expect_eio(lab, img, img, "bad magic");
    /* Garbage that is not IDX at all, compressed. */
    const char *junk = write_file(2, "junk.gz", (const unsigned char *)"hello, world!!!!!!!!", 20, true);
    expect_eio(junk, lab, junk, "bad magic");
}

Test(data, idx_count_mismatch) {
    const char *img = write_images(0, "img", 0x803, 3, 2, 2, -1, false);
    const char *lab = write_labels(1, "lab", 2, false);
    expect_eio(img, lab, img, "3 images");
    expect_eio(img, lab, lab, "2 labels");
}

Test(data, idx_trailing_bytes) {
    /* The header says 2 images of 2x2, the file holds 3. */
    unsigned char b[16 + 3 * 4] = {0};
    put_be32(b, 0x803);
    put_be32(b + 4, 2);
    put_be32(b + 8, 2);
    put_be32(b + 12, 2);
    const char *img = write_file(0, "img", b, sizeof b, false);
    const char *lab = write_labels(1, "lab", 2, false);
    expect_eio(img, lab, img, "trailing bytes");
}

Test(data, idx_bad_arguments) {
    const char *img = write_images(0, "img", 0x803, 3, 2, 2, -1, false);
    const char *lab = write_labels(1, "lab", 3, false);
    cr_assert_null(gf_idx_load(ctx, img, lab, 0, 0));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    gf_test_expect_error(ctx, "std > 0");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_idx_load(ctx, NULL, lab, 0, 1));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    cr_assert_null(gf_idx_load(NULL, img, lab, 0, 1));
}

Test(data, fashion_mnist_missing_names_the_package) {
    cr_assert_null(gf_fashion_mnist(ctx, dir, true));
    cr_assert_eq(gf_ctx_status(ctx), GF_EIO);
    gf_test_expect_error(ctx, "train-images-idx3-ubyte.gz");
    gf_test_expect_error(ctx, "apt-get install dataset-fashion-mnist");
}

Test(data, fashion_mnist_reads_uncompressed_files) {
    /* torchvision leaves the files uncompressed: those are found too. Two
     * items, so that the labels (0 and 5) are within the 10 classes. */
    write_images(0, "t10k-images-idx3-ubyte", 0x803, 2, 28, 28, -1, false);
    write_labels(1, "t10k-labels-idx1-ubyte", 2, false);
    gf_dataset *d = gf_fashion_mnist(ctx, dir, false);
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    cr_assert_eq(gf_dataset_size(d), 2);
    cr_assert_eq(gf_dataset_features(d), 784);
    gf_dataset_free(d);
}

/* ------------------------------------------------------- shuffle, batch */

/* A dataset of n one-pixel images whose label is the index (n <= 256). */
static gf_dataset *indexed(int n) {
    unsigned char *b = malloc(16 + (size_t)n), *l = malloc(8 + (size_t)n);
    put_be32(b, 0x803);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, 1);
    put_be32(b + 12, 1);
    put_be32(l, 0x801);
    put_be32(l + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) b[16 + i] = l[8 + i] = (unsigned char)i;
    const char *img = write_file(0, "idx-img", b, 16 + (size_t)n, false);
    const char *lab = write_file(1, "idx-lab", l, 8 + (size_t)n, false);
    free(b);
    free(l);
    gf_dataset *d = gf_idx_load(ctx, img, lab, 0.0, 1.0 / 255.0); /* pixel value == index */
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    return d;
}

/* The labels of one whole epoch in order, via batches of bs. */
static void epoch_labels(gf_dataset *d, int64_t bs, int64_t *out) {
    int64_t n = gf_dataset_size(d), at = 0, nb = (n + bs - 1) / bs;
    for (int64_t b = 0;; b++) {
        gf_tensor *x, *y;
        gf_scope_begin(ctx);
        gf_status s = gf_dataset_batch(d, b, bs, &x, &y);
        if (b == nb) {
            cr_assert_eq(s, GF_EINVAL, "batch %lld of %lld", (long long)b, (long long)nb);
            cr_assert_null(x);
            cr_assert_null(y);
            cr_assert_null(gf_ctx_error(ctx), "past the end records no error: %s",
                           gf_ctx_error(ctx));
            gf_scope_end(ctx);
            break;
        }
        GF_OK_OR_FAIL(ctx, s);
        int64_t rows = b == nb - 1 ? n - b * bs : bs;
        gf_test_expect_shape(x, 2, (int64_t[]){rows, 1});
        gf_test_expect_shape(y, 1, (int64_t[]){rows});
        const float *xv = gf_data_f32(x);
        const int64_t *yv = gf_data_i64(y);
        for (int64_t r = 0; r < rows; r++) {
            cr_assert_eq((int64_t)lrintf(xv[r]), yv[r], "row and label stay paired");
            out[at++] = yv[r];
        }
        gf_scope_end(ctx);
    }
    cr_assert_eq(at, n);
}

static bool is_permutation(const int64_t *v, int64_t n) {
    bool seen[256] = {0};
    for (int64_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] >= n || seen[v[i]]) return false;
        seen[v[i]] = true;
    }
    return true;
}

Test(data, unshuffled_order_is_identity) {
    gf_dataset *d = indexed(10);
    int64_t v[10];
    epoch_labels(d, 3, v);
    for (int i = 0; i < 10; i++) cr_assert_eq(v[i], i);
    gf_dataset_free(d);
}

Test(data, shuffle_is_a_reproducible_permutation) {
    enum { N = 200 };
    gf_dataset *d = indexed(N);
    int64_t a[N], b[N], c[N], e[N];
    gf_dataset_shuffle(d, 42, 0);
    epoch_labels(d, 32, a);
    cr_assert(is_permutation(a, N));
    gf_dataset_shuffle(d, 42, 1);
    epoch_labels(d, 7, b);
    cr_assert(is_permutation(b, N));
    cr_assert(memcmp(a, b, sizeof a) != 0, "epochs 0 and 1 give different orders");
    gf_dataset_shuffle(d, 43, 0);
    epoch_labels(d, N, e);
    cr_assert(is_permutation(e, N));
    cr_assert(memcmp(a, e, sizeof a) != 0, "seeds 42 and 43 give different orders");
    /* Back to (42, 0) after other epochs: the same order, whatever the batch size. */
    gf_dataset_shuffle(d, 42, 0);
    epoch_labels(d, 1, c);
    cr_assert(memcmp(a, c, sizeof a) == 0, "(seed, epoch) alone fixes the order");
    /* A shuffle actually moves things: few fixed points. */
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    cr_assert_lt(fixed, 10);
    /* A second dataset with the same (seed, epoch) gets the same order. */
    gf_dataset *d2 = indexed(N);
    gf_dataset_shuffle(d2, 42, 1);
    epoch_labels(d2, 50, c);
    cr_assert(memcmp(b, c, sizeof b) == 0);
    gf_dataset_free(d2);
    gf_dataset_free(d);
}

Test(data, shuffle_is_roughly_uniform) {
    /* Over 2000 epochs of 8 items, item 0 lands in each position ~250 times. */
    gf_dataset *d = indexed(8);
    int count[8] = {0};
    int64_t v[8];
    for (uint64_t ep = 0; ep < 2000; ep++) {
        gf_dataset_shuffle(d, 7, ep);
        epoch_labels(d, 8, v);
        for (int i = 0; i < 8; i++)
            if (v[i] == 0) count[i]++;
    }
    for (int i = 0; i < 8; i++) cr_assert(count[i] > 180 && count[i] < 320, "position %d: %d", i, count[i]);
    gf_dataset_free(d);
}

Test(data, batches_live_in_the_current_scope) {
    gf_dataset *d = indexed(100);
    int64_t live = gf_ctx_live_tensors(ctx);
    for (int rep = 0; rep < 3; rep++) {
        gf_scope_begin(ctx);
        for (int64_t b = 0; b < 4; b++) {
            gf_tensor *x, *y;
            GF_OK_OR_FAIL(ctx, gf_dataset_batch(d, b, 25, &x, &y));
        }
        gf_scope_end(ctx);
        cr_assert_eq(gf_ctx_live_tensors(ctx), live);
    }
    gf_tensor *x, *y;
    cr_assert_eq(gf_dataset_batch(d, 0, 0, &x, &y), GF_EINVAL);
    gf_test_expect_error(ctx, "batch_size > 0");
    gf_dataset_free(d);
}

Test(data, dataset_outlives_the_scope_it_was_loaded_in) {
    gf_scope_begin(ctx);
    gf_dataset *d = indexed(10);
    gf_scope_end(ctx);
    int64_t v[10];
    epoch_labels(d, 4, v);
    for (int i = 0; i < 10; i++) cr_assert_eq(v[i], i);
    gf_dataset_free(d);
}

/* ----------------------------------------------------- the real files */

static bool have_fashion_mnist(void) {
    return access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) == 0 &&
           access("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", R_OK) == 0;
}

static void check_real(bool train, int64_t n) {
    if (!have_fashion_mnist()) {
        cr_skip_test("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    gf_dataset *d = gf_fashion_mnist(ctx, NULL, train);
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    cr_assert_eq(gf_dataset_size(d), n);
    cr_assert_eq(gf_dataset_features(d), 784);
    gf_tensor *x, *y;
    int64_t per_class[10] = {0};
    double sum = 0, sumsq = 0;
    gf_scope_begin(ctx);
    GF_OK_OR_FAIL(ctx, gf_dataset_batch(d, 0, n, &x, &y));
    const int64_t *yv = gf_data_i64(y);
    const float *xv = gf_data_f32(x);
    for (int64_t i = 0; i < n; i++) {
        cr_assert(yv[i] >= 0 && yv[i] <= 9, "label %lld is %lld", (long long)i, (long long)yv[i]);
        per_class[yv[i]]++;
    }
    for (int64_t i = 0; i < n * 784; i++) {
        sum += xv[i];
        sumsq += (double)xv[i] * xv[i];
    }
    gf_scope_end(ctx);
    for (int k = 0; k < 10; k++) cr_assert_eq(per_class[k], n / 10, "class %d", k);
    /* Normalized with the training set's own statistics: mean ~0, std ~1. */
    double mean = sum / (n * 784.0), sd = sqrt(sumsq / (n * 784.0) - mean * mean);
    cr_assert(fabs(mean) < 0.01, "mean %g", mean);
    cr_assert(fabs(sd - 1) < 0.02, "std %g", sd);
    gf_dataset_free(d);
}

Test(data, fashion_mnist_train) { check_real(true, 60000); }
Test(data, fashion_mnist_test) { check_real(false, 10000); }
