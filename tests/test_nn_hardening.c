/*
 * test_nn_hardening.c - regression tests for the nn layer's input
 * validation (issue 16, part E; the IDX loader and batching are in
 * test_data_hardening.c): checkpoints whose header is under the CRC
 * (zlib's crc32), whose reserved fields and payload length are exact,
 * whose optimizer state is checked as the constructors check their
 * options, whose version 1 still loads, and whose temp file is one per
 * target, also under concurrent saves; the optimizer constructors' errors,
 * NULL options (PyTorch's defaults), half-filled and out-of-range options,
 * and a step count at its limit. Every file is written here, into a
 * mkdtemp directory, and damaged by flipping, cutting or appending bytes.
 */
#include "common.h"

#include <glob.h>
#include <pthread.h>
#include <unistd.h>
#include <zlib.h>

#include "gradflow/nn.h"
#include "nn/nn_internal.h"

static gf_ctx *ctx;
static char dir[64];

static void setup(void) {
    ctx = gf_ctx_create(NULL);
    snprintf(dir, sizeof dir, "/tmp/gf_test_hard_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    gf_ctx_destroy(ctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(hardening, .init = setup, .fini = teardown);

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

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ------------------------------------------------------------ checkpoints */

/* A Linear(2, 3) with an optimizer that has stepped twice (state exists). */
typedef struct {
    gf_module *m;
    gf_optimizer *opt;
} rig;

static rig make_rig(uint64_t seed, bool sgd) {
    rig r;
    gf_manual_seed(ctx, seed);
    r.m = gf_linear(ctx, 2, 3, true, GF_F32);
    cr_assert_not_null(r.m, "%s", gf_ctx_error(ctx));
    gf_adam_opts ao = GF_ADAM_DEFAULTS;
    ao.lr = 0.01;
    gf_sgd_opts so = GF_SGD_DEFAULTS;
    so.lr = 0.1;
    so.momentum = 0.9;
    r.opt = sgd ? gf_module_sgd(r.m, &so) : gf_module_adam(r.m, &ao);
    cr_assert_not_null(r.opt, "%s", gf_ctx_error(ctx));
    gf_tensor *x = gf_randn(ctx, GF_F32, 2, (int64_t[]){4, 2});
    for (int s = 0; s < 2; s++) {
        gf_scope_begin(ctx);
        gf_optimizer_zero_grad(r.opt);
        GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(gf_module_forward(r.m, x),
                                                     gf_module_forward(r.m, x)))));
        GF_OK_OR_FAIL(ctx, gf_optimizer_step(r.opt));
        gf_scope_end(ctx);
    }
    gf_release(x);
    return r;
}

static void free_rig(rig *r) {
    gf_optimizer_free(r->opt);
    gf_module_free(r->m);
}

/* All parameter values of m, as doubles (9 for a Linear(2, 3)). */
static void params_of(gf_module *m, double *out) {
    int at = 0;
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        cr_assert_eq(gf_copy_to_f64(p, out + at, gf_numel(p)), GF_OK);
        at += (int)gf_numel(p);
    }
}

/* Stores the CRC of a version-2 file: zlib's crc32 of everything before it. */
static void fix_crc(uint8_t *b, size_t n) {
    put_le32(b + n - 4, (uint32_t)crc32(0, b, (uInt)(n - 4)));
}

/* Byte offset of the optimizer section: after the header, the two counts
 * and the parameter records. */
static size_t opt_section(const uint8_t *b) {
    uint32_t np = get_le32(b + 24);
    cr_assert_eq(get_le32(b + 28), 1u, "the file has optimizer state");
    size_t at = 32;
    for (uint32_t i = 0; i < np; i++) {
        uint32_t nd = get_le32(b + at + 4);
        at += 8 + 8 * (size_t)nd;
        uint64_t nbytes = get_le64(b + at);
        at += 8 + (size_t)((nbytes + 7) & ~(uint64_t)7);
    }
    return at;
}

/* Loading path into r fails with GF_EIO and the message, and changes
 * neither the parameters nor the optimizer; the same without optimizer. */
static void expect_rejected(rig *r, const char *path, const char *needle, bool also_without_opt) {
    double before[9], after[9];
    params_of(r->m, before);
    int64_t steps = gf_optimizer_steps(r->opt);
    double lr = gf_optimizer_lr(r->opt);
    gf_ctx_clear_error(ctx);
    cr_assert_eq(gf_load(path, r->m, r->opt), GF_EIO, "expected GF_EIO for \"%s\"", needle);
    gf_test_expect_error(ctx, needle);
    gf_test_expect_error(ctx, path);
    if (also_without_opt) {
        gf_ctx_clear_error(ctx);
        cr_assert_eq(gf_load(path, r->m, NULL), GF_EIO, "opt NULL: \"%s\"", needle);
        gf_test_expect_error(ctx, needle);
    }
    gf_ctx_clear_error(ctx);
    params_of(r->m, after);
    cr_assert(memcmp(before, after, sizeof before) == 0, "%s: parameters changed", needle);
    cr_assert_eq(gf_optimizer_steps(r->opt), steps);
    cr_assert_eq(gf_optimizer_lr(r->opt), lr);
}

Test(hardening, crc32_is_zlibs_and_covers_the_header) {
    cr_assert_eq(gf__crc32(0, "123456789", 9), 0xCBF43926u);
    cr_assert_eq(gf__crc32(gf__crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    uint8_t big[4096];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 131 + 7);
    cr_assert_eq(gf__crc32(0, big, sizeof big), (uint32_t)crc32(0, big, sizeof big));

    char good[128], bad[128];
    path_in_dir(good, sizeof good, "good.ckpt");
    path_in_dir(bad, sizeof bad, "bad.ckpt");
    rig a = make_rig(1, false);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    size_t n;
    uint8_t *f = read_all(good, &n);
    cr_assert_eq(get_le32(f + 8), 2u, "format version 2");
    cr_assert_eq(get_le32(f + n - 4), (uint32_t)crc32(0, f, (uInt)(n - 4)),
                 "the CRC covers the header and the payload");
    /* Claiming version 1 (whose CRC covers the payload only) is caught. */
    rig r = make_rig(2, false);
    f[8] = 1;
    write_all(bad, f, n);
    expect_rejected(&r, bad, "checksum mismatch", true);
    free(f);
    free_rig(&a);
    free_rig(&r);
}

Test(hardening, checkpoint_version_1_still_loads) {
    char good[128], old[128];
    path_in_dir(good, sizeof good, "good.ckpt");
    path_in_dir(old, sizeof old, "v1.ckpt");
    rig a = make_rig(1, false), b = make_rig(2, false);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    size_t n;
    uint8_t *f = read_all(good, &n);
    /* What the version-1 writer wrote: the same bytes, its CRC over the
     * payload only. */
    f[8] = 1;
    put_le32(f + n - 4, (uint32_t)crc32(0, f + 24, (uInt)(n - 28)));
    write_all(old, f, n);
    GF_OK_OR_FAIL(ctx, gf_load(old, b.m, b.opt));
    double pa[9], pb[9];
    params_of(a.m, pa);
    params_of(b.m, pb);
    cr_assert(memcmp(pa, pb, sizeof pa) == 0);
    cr_assert_eq(gf_optimizer_steps(b.opt), 2);
    free(f);
    free_rig(&a);
    free_rig(&b);
}

Test(hardening, checkpoint_reserved_header_field_must_be_zero) {
    char good[128], bad[128];
    path_in_dir(good, sizeof good, "good.ckpt");
    path_in_dir(bad, sizeof bad, "bad.ckpt");
    rig a = make_rig(1, false), r = make_rig(2, false);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    size_t n;
    uint8_t *f = read_all(good, &n);
    cr_assert_eq(get_le32(f + 12), 0u);
    f[12] = 1;
    write_all(bad, f, n);
    expect_rejected(&r, bad, "reserved header field is 1 (expected 0)", true);
    fix_crc(f, n); /* refused for what it is, not only for the CRC */
    write_all(bad, f, n);
    expect_rejected(&r, bad, "reserved header field is 1 (expected 0)", true);
    f[8] = 1; /* in version 1 too */
    put_le32(f + n - 4, (uint32_t)crc32(0, f + 24, (uInt)(n - 28)));
    write_all(bad, f, n);
    expect_rejected(&r, bad, "reserved header field is 1 (expected 0)", true);
    free(f);
    free_rig(&a);
    free_rig(&r);
}

/* good's bytes with 8 zero bytes inserted at the end of the payload, the
 * length field and the CRC updated. */
static void write_with_payload_tail(const char *good, const char *bad) {
    size_t n;
    uint8_t *f = read_all(good, &n);
    uint8_t *g = malloc(n + 8);
    memcpy(g, f, n - 4);
    memset(g + n - 4, 0, 8);
    put_le64(g + 16, get_le64(f + 16) + 8);
    fix_crc(g, n + 8);
    write_all(bad, g, n + 8);
    free(f);
    free(g);
}

Test(hardening, checkpoint_payload_with_trailing_bytes_is_rejected) {
    char good[128], bad[128];
    path_in_dir(good, sizeof good, "good.ckpt");
    path_in_dir(bad, sizeof bad, "bad.ckpt");
    rig a = make_rig(1, false), r = make_rig(2, false);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    write_with_payload_tail(good, bad);
    expect_rejected(&r, bad, "8 trailing bytes in the payload after its last section", true);
    /* A model-only file too. */
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, NULL));
    write_with_payload_tail(good, bad);
    gf_ctx_clear_error(ctx);
    cr_assert_eq(gf_load(bad, r.m, NULL), GF_EIO);
    gf_test_expect_error(ctx, "8 trailing bytes in the payload");
    gf_ctx_clear_error(ctx);
    GF_OK_OR_FAIL(ctx, gf_load(good, r.m, NULL));
    free_rig(&a);
    free_rig(&r);
}

/* Writes good with the f64 at offset `at` replaced by v (CRC updated) to
 * bad and expects it rejected with the message. */
static void expect_bad_f64(rig *r, const uint8_t *f, size_t n, const char *bad, size_t at,
                           double v, const char *needle) {
    uint8_t *c = malloc(n);
    memcpy(c, f, n);
    uint64_t u;
    memcpy(&u, &v, 8);
    put_le64(c + at, u);
    fix_crc(c, n);
    write_all(bad, c, n);
    expect_rejected(r, bad, needle, true);
    free(c);
}

static void expect_bad_u64(rig *r, const uint8_t *f, size_t n, const char *bad, size_t at,
                           uint64_t v, const char *needle) {
    uint8_t *c = malloc(n);
    memcpy(c, f, n);
    put_le64(c + at, v);
    fix_crc(c, n);
    write_all(bad, c, n);
    expect_rejected(r, bad, needle, true);
    free(c);
}

Test(hardening, checkpoint_invalid_adam_state_is_rejected) {
    char good[128], bad[128];
    path_in_dir(good, sizeof good, "good.ckpt");
    path_in_dir(bad, sizeof bad, "bad.ckpt");
    rig a = make_rig(1, false), r = make_rig(2, false);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    size_t n;
    uint8_t *f = read_all(good, &n);
    /* kind, count, steps, then lr, beta1, beta2, eps, weight_decay. */
    const size_t o = opt_section(f), lr = o + 16, b1 = o + 24, b2 = o + 32, eps = o + 40,
                 wd = o + 48;
    cr_assert_eq(get_le32(f + o), 2u, "Adam");
    cr_assert_eq(get_le64(f + o + 8), 2u, "two steps");
    expect_bad_f64(&r, f, n, bad, lr, -1, "invalid optimizer state: lr must be >= 0 and finite");
    expect_bad_f64(&r, f, n, bad, lr, NAN, "lr must be >= 0 and finite (Adam: lr nan");
    expect_bad_f64(&r, f, n, bad, lr, INFINITY, "lr must be >= 0 and finite");
    expect_bad_f64(&r, f, n, bad, b1, 1.5, "beta1 must be in [0, 1) (Adam: lr 0.01, betas (1.5,");
    expect_bad_f64(&r, f, n, bad, b1, -0.1, "beta1 must be in [0, 1)");
    expect_bad_f64(&r, f, n, bad, b2, 1.0, "beta2 must be in [0, 1)");
    expect_bad_f64(&r, f, n, bad, eps, -1, "eps must be > 0 and finite");
    expect_bad_f64(&r, f, n, bad, eps, 0, "eps must be > 0");
    expect_bad_f64(&r, f, n, bad, eps, NAN, "eps must be > 0 and finite");
    expect_bad_f64(&r, f, n, bad, wd, -0.5, "weight_decay must be >= 0 and finite");
    expect_bad_u64(&r, f, n, bad, o + 8, UINT64_MAX,
                   "invalid optimizer state: step count 18446744073709551615 (expected "
                   "0..9223372036854775807)");
    /* The first parameter's own step count follows the 64-byte header of
     * the section. */
    cr_assert_eq(get_le64(f + o + 64), 2u);
    expect_bad_u64(&r, f, n, bad, o + 64, UINT64_MAX,
                   "step count of parameter 0 18446744073709551615");
    /* Flags other than bit 0 and the reserved word. */
    expect_bad_u64(&r, f, n, bad, o + 56, 2, "nonzero reserved optimizer bits");
    expect_bad_u64(&r, f, n, bad, o + 56, (uint64_t)1 << 32, "nonzero reserved optimizer bits");
    /* An unknown optimizer kind. */
    expect_bad_u64(&r, f, n, bad, o, 3 | (uint64_t)get_le32(f + o + 4) << 32,
                   "unknown optimizer kind");
    /* The good file still loads, and gives a's hyperparameters. */
    GF_OK_OR_FAIL(ctx, gf_load(good, r.m, r.opt));
    cr_assert_eq(gf_optimizer_lr(r.opt), 0.01);
    cr_assert_eq(r.opt->adam.eps, 1e-8);
    free(f);
    free_rig(&a);
    free_rig(&r);
}

Test(hardening, checkpoint_invalid_sgd_state_is_rejected) {
    char good[128], bad[128];
    path_in_dir(good, sizeof good, "good.ckpt");
    path_in_dir(bad, sizeof bad, "bad.ckpt");
    rig a = make_rig(1, true), r = make_rig(2, true);
    GF_OK_OR_FAIL(ctx, gf_save(good, a.m, a.opt));
    size_t n;
    uint8_t *f = read_all(good, &n);
    const size_t o = opt_section(f), mom = o + 24, damp = o + 32, unused = o + 40;
    cr_assert_eq(get_le32(f + o), 1u, "SGD");
    expect_bad_f64(&r, f, n, bad, o + 16, -0.1, "lr must be >= 0 and finite (SGD: lr -0.1");
    expect_bad_f64(&r, f, n, bad, mom, -0.9, "momentum must be >= 0 and finite");
    expect_bad_f64(&r, f, n, bad, damp, INFINITY, "dampening must be finite");
    expect_bad_f64(&r, f, n, bad, unused, 1, "the unused fourth hyperparameter of SGD is not 0");
    expect_bad_f64(&r, f, n, bad, o + 48, NAN, "weight_decay must be >= 0 and finite");
    /* Nesterov (flag bit 0) with the file's dampening 0 is fine; with a
     * dampening it is not. */
    uint8_t *c = malloc(n);
    memcpy(c, f, n);
    c[o + 56] = 1;
    uint64_t u;
    double d = 0.5;
    memcpy(&u, &d, 8);
    put_le64(c + damp, u);
    fix_crc(c, n);
    write_all(bad, c, n);
    expect_rejected(&r, bad, "Nesterov momentum requires a momentum and zero dampening", true);
    /* State tensors that momentum 0 would not have. */
    memcpy(c, f, n);
    put_le64(c + mom, 0);
    fix_crc(c, n);
    write_all(bad, c, n);
    expect_rejected(&r, bad, "state count does not match the optimizer's hyperparameters", true);
    free(c);
    free(f);
    free_rig(&a);
    free_rig(&r);
}

/* Every file in dir whose name starts with prefix (a count). */
static size_t count_files(const char *prefix) {
    char pat[192];
    snprintf(pat, sizeof pat, "%s/%s*", dir, prefix);
    glob_t g;
    int rc = glob(pat, 0, NULL, &g);
    size_t k = rc == 0 ? g.gl_pathc : 0;
    if (rc == 0) globfree(&g);
    return k;
}

Test(hardening, save_after_a_crash_reuses_the_one_temp_file) {
    char path[128], tmp[160];
    path_in_dir(path, sizeof path, "model.ckpt");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* A save killed half way left its temp file behind. */
    write_all(tmp, "half a checkpoint, then the process was killed", 47);
    rig a = make_rig(1, false), b = make_rig(2, false);
    GF_OK_OR_FAIL(ctx, gf_save(path, a.m, a.opt));
    cr_assert_eq(access(tmp, F_OK), -1, "the stale temp file is gone");
    cr_assert_eq(count_files("model.ckpt"), 1, "only the checkpoint itself");
    GF_OK_OR_FAIL(ctx, gf_load(path, b.m, b.opt));
    double pa[9], pb[9];
    params_of(a.m, pa);
    params_of(b.m, pb);
    cr_assert(memcmp(pa, pb, sizeof pa) == 0);
    /* Many saves leave nothing else either. */
    for (int i = 0; i < 20; i++) GF_OK_OR_FAIL(ctx, gf_save(path, a.m, a.opt));
    cr_assert_eq(count_files("model.ckpt"), 1);
    cr_assert_eq(count_files(""), 1);
    free_rig(&a);
    free_rig(&b);
}

/* One thread's saves of its own model to a shared path. */
typedef struct {
    const char *path;
    uint64_t seed;
    gf_status s;
    double params[9];
} saver;

static void *save_loop(void *arg) {
    saver *sv = arg;
    gf_ctx *c = gf_ctx_create(NULL);
    gf_manual_seed(c, sv->seed);
    gf_module *m = gf_linear(c, 2, 3, true, GF_F32);
    sv->s = m ? GF_OK : GF_ENOMEM;
    int at = 0;
    for (int i = 0; m && i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        gf_copy_to_f64(p, sv->params + at, gf_numel(p));
        at += (int)gf_numel(p);
    }
    for (int i = 0; m && sv->s == GF_OK && i < 30; i++) sv->s = gf_save(sv->path, m, NULL);
    gf_module_free(m);
    gf_ctx_destroy(c);
    return NULL;
}

Test(hardening, concurrent_saves_to_one_path_take_turns) {
    /* One temp name per target: the lock on it keeps two savers from
     * writing into the same file. */
    char path[128];
    path_in_dir(path, sizeof path, "shared.ckpt");
    saver sv[3] = {{.path = path, .seed = 1}, {.path = path, .seed = 2}, {.path = path, .seed = 3}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) cr_assert_eq(pthread_create(&th[i], NULL, save_loop, &sv[i]), 0);
    for (int i = 0; i < 3; i++) cr_assert_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 3; i++) cr_assert_eq(sv[i].s, GF_OK, "saver %d", i);
    gf_module *m = gf_linear(ctx, 2, 3, true, GF_F32);
    GF_OK_OR_FAIL(ctx, gf_load(path, m, NULL));
    double got[9];
    params_of(m, got);
    int same = 0;
    for (int i = 0; i < 3; i++) same += memcmp(got, sv[i].params, sizeof got) == 0;
    cr_assert_eq(same, 1, "the file holds exactly one saver's model");
    cr_assert_eq(count_files("shared.ckpt"), 1, "no temp file left");
    gf_module_free(m);
}

/* ------------------------------------------------------------- optimizers */

static gf_tensor *param3(void) {
    return gf_requires_grad(gf_tensor_f64(ctx, 1, (int64_t[]){3}, (double[]){1, -2, 0.5}), true);
}

Test(hardening, module_optimizers_report_a_module_without_parameters) {
    gf_module *act = gf_activation_layer(ctx, GF_ACT_RELU);
    gf_module *empty = gf_sequential(ctx, 0, NULL);
    gf_module *ms[] = {act, empty};
    for (int i = 0; i < 2; i++) {
        gf_ctx_clear_error(ctx);
        cr_assert_null(gf_module_adam(ms[i], NULL));
        cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
        gf_test_expect_error(ctx, "gf_module_adam: the module has no parameters (expected >= 1)");
        gf_ctx_clear_error(ctx);
        cr_assert_null(gf_module_sgd(ms[i], &(gf_sgd_opts){.lr = 0.1}));
        cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
        gf_test_expect_error(ctx, "gf_module_sgd: the module has no parameters (expected >= 1)");
    }
    /* Bad options through the module constructors name them. */
    gf_module *lin = gf_linear(ctx, 2, 2, false, GF_F64);
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_module_sgd(lin, NULL));
    gf_test_expect_error(ctx, "gf_module_sgd: options are NULL (lr is required");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_module_adam(lin, &(gf_adam_opts){.lr = 0.1, .beta1 = 2}));
    gf_test_expect_error(ctx, "gf_module_adam: beta1 must be in [0, 1)");
    /* And the plain constructors' own errors. */
    gf_tensor *p = param3();
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_adam(1, (gf_tensor *[]){gf_mul_scalar(p, 2)}, NULL));
    gf_test_expect_error(ctx, "gf_adam: parameter 0 is not a leaf tensor");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_sgd(2, (gf_tensor *[]){p, NULL}, &(gf_sgd_opts){.lr = 0.1}));
    gf_test_expect_error(ctx, "gf_sgd: parameter 1 is NULL");
    gf_ctx_clear_error(ctx);
    cr_assert_null(gf_module_adam(NULL, NULL)); /* no ctx to report to */
    cr_assert_null(gf_ctx_error(ctx));
    gf_module_free(act);
    gf_module_free(empty);
    gf_module_free(lin);
}

static bool same_adam(const gf_adam_opts *a, const gf_adam_opts *b) {
    return a->lr == b->lr && a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps &&
           a->weight_decay == b->weight_decay && a->decoupled == b->decoupled;
}

Test(hardening, null_options_are_pytorchs_defaults) {
    gf_tensor *p = param3();
    gf_optimizer *opt = gf_adam(1, &p, NULL);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    /* torch.optim.Adam: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0. */
    cr_assert_eq(opt->adam.lr, 1e-3);
    cr_assert_eq(opt->adam.beta1, 0.9);
    cr_assert_eq(opt->adam.beta2, 0.999);
    cr_assert_eq(opt->adam.eps, 1e-8);
    cr_assert_eq(opt->adam.weight_decay, 0);
    cr_assert_eq(opt->adam.decoupled, false);
    gf_adam_opts d = GF_ADAM_DEFAULTS;
    cr_assert(same_adam(&d, &opt->adam), "GF_ADAM_DEFAULTS is what NULL means");
    gf_optimizer_free(opt);
    gf_module *m = gf_linear(ctx, 2, 2, true, GF_F64);
    opt = gf_module_adam(m, NULL);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    cr_assert(same_adam(&d, &opt->adam));
    gf_optimizer_free(opt);
    /* SGD has no default lr (torch.optim.SGD requires it). */
    cr_assert_null(gf_sgd(1, &p, NULL));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_sgd: options are NULL (lr is required");
    gf_ctx_clear_error(ctx);
    gf_sgd_opts s = GF_SGD_DEFAULTS;
    cr_assert_null(gf_sgd(1, &p, &s));
    gf_test_expect_error(ctx, "gf_sgd: lr is not set (NaN; SGD has no default learning rate");
    gf_ctx_clear_error(ctx);
    s.lr = 0.05;
    opt = gf_module_sgd(m, &s);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    cr_assert_eq(opt->sgd.lr, 0.05);
    cr_assert_eq(opt->sgd.momentum, 0);
    cr_assert_eq(opt->sgd.dampening, 0);
    cr_assert_eq(opt->sgd.weight_decay, 0);
    cr_assert_eq(opt->sgd.nesterov, false);
    gf_optimizer_free(opt);
    gf_module_free(m);
}

Test(hardening, half_filled_adam_options_are_an_error) {
    gf_tensor *p = param3();
    /* beta1, beta2 and eps left at 0: training went to NaN. */
    cr_assert_null(gf_adam(1, &p, &(gf_adam_opts){.lr = 1e-2}));
    cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
    gf_test_expect_error(ctx, "gf_adam: eps must be > 0; it is 0, which is what a designated "
                              "initializer leaves in the fields it does not name: start from "
                              "GF_ADAM_DEFAULTS");
    gf_test_expect_error(ctx, "eps 0");
    gf_ctx_clear_error(ctx);
    /* The fix the message suggests works, and steps like torch's Adam. */
    gf_adam_opts o = GF_ADAM_DEFAULTS;
    o.lr = 1e-2;
    gf_optimizer *opt = gf_adam(1, &p, &o);
    cr_assert_not_null(opt, "%s", gf_ctx_error(ctx));
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(p, p))));
    GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt));
    double g[3] = {2, -4, 1}, want[3] = {1, -2, 0.5};
    for (int i = 0; i < 3; i++) want[i] -= 1e-2 * g[i] / (fabs(g[i]) + 1e-8);
    gf_test_expect_close(p, want, 3, 1e-15, 0);
    gf_optimizer_free(opt);
}

Test(hardening, invalid_optimizer_options_are_refused) {
    gf_tensor *p = param3();
    struct {
        gf_adam_opts o;
        const char *why;
    } adam[] = {
        {{.lr = -1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}, "lr must be >= 0 and finite"},
        {{.lr = NAN, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}, "lr must be >= 0 and finite"},
        {{.lr = INFINITY, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}, "lr must be >= 0"},
        {{.lr = 1e-3, .beta1 = 1, .beta2 = 0.999, .eps = 1e-8}, "beta1 must be in [0, 1)"},
        {{.lr = 1e-3, .beta1 = -0.5, .beta2 = 0.999, .eps = 1e-8}, "beta1 must be in [0, 1)"},
        {{.lr = 1e-3, .beta1 = 0.9, .beta2 = NAN, .eps = 1e-8}, "beta2 must be in [0, 1)"},
        {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = -1}, "eps must be > 0 and finite"},
        {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = INFINITY}, "eps must be > 0"},
        {{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = -1},
         "weight_decay must be >= 0 and finite"},
    };
    for (size_t i = 0; i < sizeof adam / sizeof adam[0]; i++) {
        gf_ctx_clear_error(ctx);
        cr_assert_null(gf_adam(1, &p, &adam[i].o), "%s", adam[i].why);
        cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
        gf_test_expect_error(ctx, adam[i].why);
    }
    struct {
        gf_sgd_opts o;
        const char *why;
    } sgd[] = {
        {{.lr = INFINITY}, "lr must be >= 0 and finite"},
        {{.lr = 0.1, .momentum = -0.9}, "momentum must be >= 0 and finite"},
        {{.lr = 0.1, .momentum = NAN}, "momentum must be >= 0 and finite"},
        {{.lr = 0.1, .dampening = NAN}, "dampening must be finite"},
        {{.lr = 0.1, .weight_decay = -0.1}, "weight_decay must be >= 0 and finite"},
        {{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true},
         "Nesterov momentum requires a momentum and zero dampening"},
    };
    for (size_t i = 0; i < sizeof sgd / sizeof sgd[0]; i++) {
        gf_ctx_clear_error(ctx);
        cr_assert_null(gf_sgd(1, &p, &sgd[i].o), "%s", sgd[i].why);
        cr_assert_eq(gf_ctx_status(ctx), GF_EINVAL);
        gf_test_expect_error(ctx, sgd[i].why);
    }
    /* The edges PyTorch allows are allowed: lr 0, beta 0, momentum 0. */
    gf_ctx_clear_error(ctx);
    gf_optimizer *o1 =
        gf_adam(1, &p, &(gf_adam_opts){.lr = 0, .beta1 = 0, .beta2 = 0, .eps = 1e-8});
    gf_optimizer *o2 = gf_sgd(1, &p, &(gf_sgd_opts){.lr = 0});
    cr_assert_not_null(o1, "%s", gf_ctx_error(ctx));
    cr_assert_not_null(o2, "%s", gf_ctx_error(ctx));
    /* set_lr follows the same rule. */
    gf_optimizer_set_lr(o2, INFINITY);
    gf_test_expect_error(ctx, "gf_optimizer_set_lr: lr inf (expected >= 0 and finite)");
    cr_assert_eq(gf_optimizer_lr(o2), 0);
    gf_optimizer_free(o1);
    gf_optimizer_free(o2);
}

Test(hardening, optimizer_step_refuses_to_overflow_its_count) {
    gf_tensor *p = param3();
    gf_optimizer *opt = gf_adam(1, &p, NULL);
    GF_OK_OR_FAIL(ctx, gf_backward(gf_sum(gf_mul(p, p))));
    opt->steps = INT64_MAX; /* what a checkpoint may hold */
    cr_assert_eq(gf_optimizer_step(opt), GF_ESTATE);
    gf_test_expect_error(ctx, "gf_optimizer_step: a step count is 9223372036854775807");
    gf_test_expect_close(p, (double[]){1, -2, 0.5}, 3, 0, 0);
    gf_ctx_clear_error(ctx);
    opt->steps = 0;
    opt->pstep[0] = INT64_MAX;
    cr_assert_eq(gf_optimizer_step(opt), GF_ESTATE);
    gf_ctx_clear_error(ctx);
    opt->pstep[0] = 0;
    GF_OK_OR_FAIL(ctx, gf_optimizer_step(opt));
    cr_assert_eq(gf_optimizer_steps(opt), 1);
    gf_optimizer_free(opt);
}
