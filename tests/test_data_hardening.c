/*
 * test_data_hardening.c - regression tests for the IDX loader's and the
 * batcher's input validation (issue 16, part E; the checkpoint and
 * optimizer part is test_nn_hardening.c): a batch size or index whose
 * product overflows, IDX sizes that overflow, gzip streams cut in their
 * trailer, with a wrong CRC-32 or length, or followed by garbage (and a
 * stream in two members, which is valid), non-finite normalization, and
 * Fashion-MNIST labels past its 10 classes. Every file is written here,
 * into a mkdtemp directory, and damaged by flipping, cutting or appending
 * bytes.
 */
#include "common.h"

#include <unistd.h>
#include <zlib.h>

#include "gradflow/nn.h"

static gf_ctx *ctx;
static char dir[64];

static void setup(void) {
    ctx = gf_ctx_create(NULL);
    snprintf(dir, sizeof dir, "/tmp/gf_test_datah_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    gf_ctx_destroy(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(data_hardening, .init = setup, .fini = teardown);

/* ------------------------------------------------------------- file bytes */

static char *path_in_dir(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 64);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static void put_be32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* ------------------------------------------------------------ IDX files */

/* Writes a raw IDX image file of n images of rows x cols pixels (byte i
 * of the file is i * 7 mod 256) and its label file with the given labels. */
static void write_idx(const char *img, const char *lab, int n, int rows, int cols,
                      const uint8_t *labels) {
    size_t len = 16 + (size_t)n * rows * cols;
    uint8_t *b = malloc(len), *l = malloc(8 + (size_t)n);
    put_be32(b, 0x803);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)rows);
    put_be32(b + 12, (uint32_t)cols);
    for (size_t i = 16; i < len; i++) b[i] = (uint8_t)(i * 7);
    put_be32(l, 0x801);
    put_be32(l + 4, (uint32_t)n);
    memcpy(l + 8, labels, (size_t)n);
    write_all(img, b, len);
    write_all(lab, l, 8 + (size_t)n);
    free(b);
    free(l);
}

/* gzip-compresses the file at src into dst (one member) and returns the
 * compressed bytes (caller frees). */
static uint8_t *gzip_file(const char *src, const char *dst, size_t *n) {
    size_t rn;
    uint8_t *raw = read_all(src, &rn);
    gzFile f = gzopen(dst, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(gzwrite(f, raw, (unsigned)rn), (int)rn);
    cr_assert_eq(gzclose(f), Z_OK);
    free(raw);
    return read_all(dst, n);
}

/* gf_idx_load fails with status s and an error naming path (unless NULL)
 * and why. */
static void expect_idx_error(const char *img, const char *lab, double mean, double std,
                             gf_status s, const char *path, const char *why) {
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_idx_load(ctx, img, lab, mean, std), "expected an error: %s", why);
    cr_assert_eq(gf_ctx_status(ctx), s, "status %d: %s", gf_ctx_status(ctx), gf_ctx_error(ctx));
    if (path) gf_test_expect_error(ctx, path);
    gf_test_expect_error(ctx, why);
}

static const uint8_t LABELS6[6] = {3, 1, 4, 1, 5, 9};

Test(data_hardening, batch_of_int64_max_rows_is_the_whole_dataset) {
    char img[128], lab[128];
    write_idx(path_in_dir(img, sizeof img, "img"), path_in_dir(lab, sizeof lab, "lab"), 6, 2, 3,
              LABELS6);
    gf_dataset *d = gf_idx_load(ctx, img, lab, 0, 1);
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    gf_tensor *x, *y;
    /* b * batch_size and the end index used to overflow here: GF_EINVAL
     * with no message instead of the one batch that holds everything. */
    GF_OK_OR_FAIL(ctx, gf_dataset_batch(d, 0, INT64_MAX, &x, &y));
    gf_test_expect_shape(x, 2, (int64_t[]){6, 6});
    const int64_t *yv = gf_data_i64(y);
    for (int i = 0; i < 6; i++) cr_assert_eq(yv[i], LABELS6[i], "label %d", i);
    /* Past the end, however far: GF_EINVAL, NULL outputs, nothing on the ctx. */
    const int64_t past[][2] = {{1, INT64_MAX}, {INT64_MAX, INT64_MAX}, {INT64_MAX / 2 + 1, 2},
                               {3, 2}, {INT64_MAX, 1}, {2, INT64_MAX / 2}};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        cr_assert_eq(gf_dataset_batch(d, past[i][0], past[i][1], &x, &y), GF_EINVAL,
                     "b %lld, batch_size %lld", (long long)past[i][0], (long long)past[i][1]);
        cr_assert_null(x);
        cr_assert_null(y);
        cr_assert_null(gf_ctx_error(ctx), "%s", gf_ctx_error(ctx));
    }
    /* The last, short batch is still there. */
    GF_OK_OR_FAIL(ctx, gf_dataset_batch(d, 1, 4, &x, &y));
    gf_test_expect_shape(y, 1, (int64_t[]){2});
    cr_assert_eq(gf_data_i64(y)[1], 9);
    gf_dataset_free(d);
}

Test(data_hardening, idx_header_whose_sizes_overflow_is_an_error) {
    char img[128], lab[128];
    write_idx(path_in_dir(img, sizeof img, "img"), path_in_dir(lab, sizeof lab, "lab"), 1, 1, 1,
              LABELS6);
    /* rows * cols = (2^32 - 1)^2 does not fit an int64_t. */
    uint8_t h[16 + 4] = {0};
    put_be32(h, 0x803);
    put_be32(h + 4, 1);
    put_be32(h + 8, 0xFFFFFFFFu);
    put_be32(h + 12, 0xFFFFFFFFu);
    write_all(img, h, sizeof h);
    expect_idx_error(img, lab, 0, 1, GF_EIO, img, "rows*cols overflows int64");
    gf_test_expect_error(ctx, "[1, 4294967295, 4294967295]");
    /* Sizes that fit but are implausible say what is expected. */
    put_be32(h + 8, 0x10000);
    put_be32(h + 12, 0x10000);
    write_all(img, h, sizeof h);
    expect_idx_error(img, lab, 0, 1, GF_EIO, img, "[1, 65536, 65536] (expected at most");
}

Test(data_hardening, idx_gzip_cut_in_its_trailer_or_followed_by_garbage_is_an_error) {
    char img[128], lab[128], gz[128], bad[128];
    write_idx(path_in_dir(img, sizeof img, "img"), path_in_dir(lab, sizeof lab, "lab"), 6, 4, 4,
              LABELS6);
    size_t n;
    uint8_t *z = gzip_file(img, path_in_dir(gz, sizeof gz, "img.gz"), &n);
    gf_dataset *d = gf_idx_load(ctx, gz, lab, 0, 1);
    cr_assert_not_null(d, "the whole gzip file loads: %s", gf_ctx_error(ctx));
    gf_dataset_free(d);
    path_in_dir(bad, sizeof bad, "bad.gz");
    /* Cut anywhere in the last 9 bytes (the 8-byte trailer, CRC-32 and
     * length, and the last byte of compressed data): the data may all be
     * there, but the stream is not whole. */
    for (size_t cut = 1; cut <= 9; cut++) {
        write_all(bad, z, n - cut);
        expect_idx_error(bad, lab, 0, 1, GF_EIO, bad, "truncated gzip stream");
    }
    /* A wrong CRC-32 or length in the trailer. */
    uint8_t *c = malloc(n + 16);
    for (size_t at = n - 8; at < n; at += 4) {
        memcpy(c, z, n);
        c[at] ^= 0x01;
        write_all(bad, c, n);
        expect_idx_error(bad, lab, 0, 1, GF_EIO, bad, "corrupt gzip data");
        gf_ctx_clear_error(ctx);
        cr_assert_null(gf_idx_load(ctx, bad, lab, 0, 1));
        gf_test_expect_error(ctx, at == n - 8 ? "incorrect data check" : "incorrect length check");
    }
    /* Garbage after the stream (gzread ignores it). */
    memcpy(c, z, n);
    memcpy(c + n, "garbage!", 8);
    write_all(bad, c, n + 8);
    expect_idx_error(bad, lab, 0, 1, GF_EIO, bad, "trailing garbage after the gzip stream");
    c[n] = 0;
    write_all(bad, c, n + 1);
    expect_idx_error(bad, lab, 0, 1, GF_EIO, bad, "trailing garbage");
    /* A second gzip member is part of the stream (gzip allows it): here it
     * holds bytes past the header's data. */
    memcpy(c, z, n);
    size_t n2;
    uint8_t *one = gzip_file(lab, path_in_dir(bad, sizeof bad, "one.gz"), &n2);
    uint8_t *cat = malloc(n + n2);
    memcpy(cat, z, n);
    memcpy(cat + n, one, n2);
    path_in_dir(bad, sizeof bad, "bad.gz");
    write_all(bad, cat, n + n2);
    expect_idx_error(bad, lab, 0, 1, GF_EIO, bad, "trailing bytes after the 96 bytes of data");
    /* A label file cut in its trailer fails the same way. */
    uint8_t *lz = gzip_file(lab, path_in_dir(bad, sizeof bad, "lab.gz"), &n2);
    write_all(bad, lz, n2 - 4);
    expect_idx_error(gz, bad, 0, 1, GF_EIO, bad, "truncated gzip stream");
    free(lz);
    free(one);
    free(cat);
    free(c);
    free(z);
}

Test(data_hardening, idx_gzip_split_in_two_members_loads) {
    char img[128], lab[128], gz[128];
    write_idx(path_in_dir(img, sizeof img, "img"), path_in_dir(lab, sizeof lab, "lab"), 6, 4, 4,
              LABELS6);
    size_t n;
    uint8_t *raw = read_all(img, &n);
    gzFile f = gzopen(path_in_dir(gz, sizeof gz, "img.gz"), "wb");
    cr_assert_eq(gzwrite(f, raw, 50), 50);
    cr_assert_eq(gzclose(f), Z_OK);
    f = gzopen(gz, "ab");
    cr_assert_eq(gzwrite(f, raw + 50, (unsigned)(n - 50)), (int)(n - 50));
    cr_assert_eq(gzclose(f), Z_OK);
    gf_dataset *d = gf_idx_load(ctx, gz, lab, 0, 1);
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    gf_tensor *x, *y;
    GF_OK_OR_FAIL(ctx, gf_dataset_batch(d, 0, 6, &x, &y));
    const float *xv = gf_data_f32(x);
    for (size_t i = 16; i < n; i++)
        cr_assert(fabsf(xv[i - 16] - (float)raw[i] / 255.0f) < 1e-6f, "pixel %zu", i - 16);
    gf_dataset_free(d);
    free(raw);
}

Test(data_hardening, idx_refuses_non_finite_normalization) {
    char img[128], lab[128];
    write_idx(path_in_dir(img, sizeof img, "img"), path_in_dir(lab, sizeof lab, "lab"), 6, 2, 2,
              LABELS6);
    const double bad[][2] = {{INFINITY, 1}, {-INFINITY, 1}, {NAN, 1}, {0, INFINITY},
                             {0, NAN}, {0, -1}, {0, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_idx_error(img, lab, bad[i][0], bad[i][1], GF_EINVAL, NULL,
                         "needs a finite mean and a finite std > 0");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_idx_load(ctx, img, lab, INFINITY, 1));
    gf_test_expect_error(ctx, "got mean inf std 1");
}

Test(data_hardening, fashion_mnist_refuses_labels_past_its_10_classes) {
    char img[128], lab[128];
    const uint8_t labels[6] = {0, 9, 3, 10, 2, 1};
    write_idx(path_in_dir(img, sizeof img, "train-images-idx3-ubyte"),
              path_in_dir(lab, sizeof lab, "train-labels-idx1-ubyte"), 6, 28, 28, labels);
    int64_t live = gf_ctx_live_tensors(ctx);
    cr_assert_null(gf_fashion_mnist(ctx, dir, true));
    cr_assert_eq(gf_ctx_status(ctx), GF_EIO);
    gf_test_expect_error(ctx, lab);
    gf_test_expect_error(ctx, "label 10 of item 3 is out of range for Fashion-MNIST's 10 classes "
                              "(expected 0..9)");
    cr_assert_eq(gf_ctx_live_tensors(ctx), live);
    /* Labels 0..9 load, and gf_idx_load, which knows no class count, takes
     * any byte. */
    gf_ctx_clear_error(ctx);
    gf_dataset *d = gf_idx_load(ctx, img, lab, 0, 1);
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    gf_dataset_free(d);
    const uint8_t ok[6] = {0, 9, 3, 8, 2, 1};
    write_idx(img, lab, 6, 28, 28, ok);
    d = gf_fashion_mnist(ctx, dir, true);
    cr_assert_not_null(d, "%s", gf_ctx_error(ctx));
    cr_assert_eq(gf_dataset_size(d), 6);
    gf_dataset_free(d);
}
