/*
 * fuzz_ckpt.c - fuzz target: checkpoint bytes. The first byte picks the
 * model's dtype and the optimizer (none, SGD, SGD with momentum, Adam,
 * AdamW; fresh or after one step), whether gf_load gets the optimizer, and
 * whether the file's length field and CRC-32 are first made to match its
 * bytes (so that mutations reach the parser behind the checksum); the rest
 * is written to a file and loaded with gf_load into that model.
 *
 * Checked: the error convention (common.c); a load that fails leaves every
 * parameter and the optimizer's learning rate and step count as they were
 * (bit for bit); a load that succeeds gives a model that runs forward, an
 * optimizer that takes a training step (or refuses it with an error, its
 * step count unchanged), and saving both and loading the file into a fresh
 * model of the same kind gives the same parameters, bit for bit, and the
 * same learning rate and step count.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "gradflow/nn.h"

enum { IN = 3, HID = 4, OUT = 2 };

/* A model and optimizer of the kind cfg names, in c (which is seeded). */
static gf_module *make_model(gf_ctx *c, uint8_t cfg, gf_optimizer **opt) {
    gf_dtype dt = cfg & 1 ? GF_F64 : GF_F32;
    gf_module *m = gf_mlp(c, 3, (int64_t[]){IN, HID, OUT}, GF_ACT_TANH, dt);
    GF_FUZZ_CHECK(m, "gf_mlp: %s", gf_ctx_error(c));
    *opt = NULL;
    switch (((cfg >> 1) & 7) % 5) {
    case 1: *opt = gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1}); break;
    case 2: *opt = gf_module_sgd(m, &(gf_sgd_opts){.lr = 0.1, .momentum = 0.9}); break;
    case 3: *opt = gf_module_adam(m, NULL); break;
    case 4: *opt = gf_module_adam(m, &(gf_adam_opts){.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999,
                                                      .eps = 1e-8, .decoupled = true});
        break;
    }
    GF_FUZZ_CHECK(((cfg >> 1) & 7) % 5 == 0 || *opt, "optimizer: %s", gf_ctx_error(c));
    if (*opt && cfg & 16) { /* one step, so that the optimizer has state */
        gf_scope_begin(c);
        gf_tensor *x = gf_full(c, dt, 2, (int64_t[]){2, IN}, 0.5);
        GF_FUZZ_CHECK(gf_backward(gf_sum(gf_module_forward(m, x))) == GF_OK &&
                          gf_optimizer_step(*opt) == GF_OK,
                      "training step: %s", gf_ctx_error(c));
        gf_scope_end(c);
    }
    return m;
}

/* The parameters' bytes, concatenated (malloc'd). */
static uint8_t *param_bytes(gf_module *m, size_t *n) {
    size_t total = 0;
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        total += (size_t)gf_numel(p) * (gf_dtype_of(p) == GF_F32 ? 4 : 8);
    }
    uint8_t *b = malloc(total ? total : 1), *at = b;
    GF_FUZZ_CHECK(b, "out of memory");
    for (int i = 0; i < gf_module_num_parameters(m); i++) {
        gf_tensor *p = gf_module_parameter(m, i);
        size_t k = (size_t)gf_numel(p) * (gf_dtype_of(p) == GF_F32 ? 4 : 8);
        const void *d = gf_dtype_of(p) == GF_F32 ? (const void *)gf_data_f32(p)
                                                 : (const void *)gf_data_f64(p);
        GF_FUZZ_CHECK(d, "parameter %d: %s", i, gf_ctx_error(gf_ctx_of(p)));
        memcpy(at, d, k);
        at += k;
    }
    *n = total;
    return b;
}

static bool same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Sets the payload length (u64 at byte 16) and the trailing CRC-32 of the
 * version-1 layout (docs/checkpoint.md) to match the n bytes of f: the CRC
 * over the payload alone, or (whole_header) over the header too, in case
 * the format comes to cover it. */
static void repair(uint8_t *f, size_t n, bool whole_header) {
    if (n < 28) return;
    uint64_t payload = n - 28;
    for (int i = 0; i < 8; i++) f[16 + i] = (uint8_t)(payload >> (8 * i));
    size_t from = whole_header ? 0 : 24;
    uint32_t crc = (uint32_t)crc32(0, f + from, (uInt)(n - 4 - from));
    for (int i = 0; i < 4; i++) f[n - 4 + i] = (uint8_t)(crc >> (8 * i));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t cfg = data[0];
    char path[512], again[512];
    gf_fuzz_path(path, sizeof path, "ckpt");
    gf_fuzz_path(again, sizeof again, "ckpt-again");
    uint8_t *file = malloc(size);
    GF_FUZZ_CHECK(file, "out of memory");
    memcpy(file, data + 1, size - 1);
    if (cfg & 64) repair(file, size - 1, cfg & 128);
    gf_fuzz_write(path, file, size - 1);
    free(file);

    gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
    gf_ctx *c = gf_ctx_create(eng);
    GF_FUZZ_CHECK(c, "gf_ctx_create failed");
    gf_manual_seed(c, 5);
    gf_optimizer *opt;
    gf_module *m = make_model(c, cfg, &opt);
    size_t nb;
    uint8_t *before = param_bytes(m, &nb);
    double lr = opt ? gf_optimizer_lr(opt) : 0;
    int64_t steps = opt ? gf_optimizer_steps(opt) : 0;

    gf_status s = gf_load(path, m, (cfg & 32) ? NULL : opt);
    GF_FUZZ_CHECK(s <= 0, "gf_load returned %d", (int)s);
    gf_fuzz_settle(c, s < 0, "gf_load");
    size_t na;
    uint8_t *after = param_bytes(m, &na);
    gf_optimizer *o = (cfg & 32) ? NULL : opt;
    if (s == GF_OK && o) {
        /* The loaded state steps; only a step count at its limit (the
         * optimizer's or a parameter's) may refuse, changing nothing. */
        int64_t t = gf_optimizer_steps(o);
        gf_scope_begin(c);
        gf_tensor *x = gf_full(c, cfg & 1 ? GF_F64 : GF_F32, 2, (int64_t[]){2, IN}, 0.5);
        gf_status sb = gf_backward(gf_sum(gf_module_forward(m, x)));
        GF_FUZZ_CHECK(sb == GF_OK, "backward after gf_load failed: %s", gf_ctx_error(c));
        gf_fuzz_settle(c, sb < 0, "backward after gf_load");
        gf_status st = gf_optimizer_step(o);
        GF_FUZZ_CHECK(st == GF_OK || st == GF_ESTATE, "gf_optimizer_step after gf_load: %d",
                      (int)st);
        gf_fuzz_settle(c, st < 0, "gf_optimizer_step after gf_load");
        GF_FUZZ_CHECK(gf_optimizer_steps(o) == (st == GF_OK ? t + 1 : t),
                      "a step %s took the step count from %lld to %lld",
                      st == GF_OK ? "that succeeded" : "that failed", (long long)t,
                      (long long)gf_optimizer_steps(o));
        gf_optimizer_zero_grad(o);
        gf_scope_end(c);
        size_t ns;
        uint8_t *stepped = param_bytes(m, &ns);
        GF_FUZZ_CHECK(st == GF_OK || (ns == na && memcmp(stepped, after, na) == 0),
                      "a refused step changed the parameters");
        free(after);
        after = stepped, na = ns;
    }
    if (s < 0) {
        GF_FUZZ_CHECK(na == nb && memcmp(before, after, nb) == 0,
                      "a failed gf_load changed the parameters");
        GF_FUZZ_CHECK(!opt || (same_double(gf_optimizer_lr(opt), lr) &&
                               gf_optimizer_steps(opt) == steps),
                      "a failed gf_load changed the optimizer");
    } else {
        /* The loaded model runs, and what it saves loads back the same. */
        gf_scope_begin(c);
        gf_tensor *x = gf_full(c, cfg & 1 ? GF_F64 : GF_F32, 2, (int64_t[]){2, IN}, 0.25);
        gf_tensor *y = gf_module_forward(m, x);
        gf_fuzz_settle(c, !y || gf_realize(y) != GF_OK, "forward after gf_load");
        gf_scope_end(c);
        gf_status s2 = gf_save(again, m, o);
        GF_FUZZ_CHECK(s2 == GF_OK, "saving a loaded model failed: %s", gf_ctx_error(c));
        gf_fuzz_settle(c, s2 < 0, "gf_save after gf_load");
        gf_optimizer *opt2;
        gf_module *m2 = make_model(c, cfg, &opt2);
        gf_status s3 = gf_load(again, m2, o ? opt2 : NULL);
        GF_FUZZ_CHECK(s3 == GF_OK, "a file gf_save wrote does not load: %s", gf_ctx_error(c));
        gf_fuzz_settle(c, s3 < 0, "gf_load of a saved file");
        size_t n2;
        uint8_t *b2 = param_bytes(m2, &n2);
        GF_FUZZ_CHECK(n2 == na && memcmp(b2, after, na) == 0,
                      "save and load changed the parameters");
        GF_FUZZ_CHECK(!o || (same_double(gf_optimizer_lr(opt2), gf_optimizer_lr(o)) &&
                             gf_optimizer_steps(opt2) == gf_optimizer_steps(o)),
                      "save and load changed the optimizer");
        free(b2);
        gf_optimizer_free(opt2);
        gf_module_free(m2);
    }
    free(before);
    free(after);
    gf_optimizer_free(opt);
    gf_module_free(m);
    GF_FUZZ_CHECK(gf_ctx_live_tensors(c) == 0, "%lld tensors left",
                  (long long)gf_ctx_live_tensors(c));
    gf_ctx_destroy(c);
    gf_engine_destroy(eng);
    return 0;
}

static uint64_t get_le(const uint8_t *f, size_t n, size_t at, int bytes) {
    GF_FUZZ_CHECK(at + (size_t)bytes <= n, "seed checkpoint: field at %zu past its end", at);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)f[at + (size_t)i] << (8 * i);
    return v;
}

static void put_le64(uint8_t *f, size_t n, size_t at, uint64_t v) {
    GF_FUZZ_CHECK(at + 8 <= n, "seed checkpoint: field at %zu past its end", at);
    for (int i = 0; i < 8; i++) f[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* The offset after the tensor record at `at` (docs/checkpoint.md). */
static size_t skip_record(const uint8_t *f, size_t n, size_t at) {
    at += 8 + 8 * get_le(f, n, at + 4, 4);
    return at + 8 + (get_le(f, n, at, 8) + 7) / 8 * 8;
}

/* Sets the step counts of the optimizer section of a gf_save file: the
 * optimizer's to `total`, each parameter's to `each`, except parameter 0's
 * to `first`. False if the file has no optimizer section. */
static bool set_steps(uint8_t *f, size_t n, uint64_t total, uint64_t first, uint64_t each) {
    uint64_t params = get_le(f, n, 24, 4);
    if (!get_le(f, n, 28, 4)) return false;
    size_t at = 32;
    for (uint64_t i = 0; i < params; i++) at = skip_record(f, n, at);
    uint64_t updated = get_le(f, n, at + 4, 4);
    put_le64(f, n, at + 8, total);
    at += 16 + 5 * 8 + 8; /* kind, count, steps; hyperparameters; flags */
    for (uint64_t i = 0; i < updated; i++) {
        put_le64(f, n, at, i ? each : first);
        uint64_t states = get_le(f, n, at + 8, 4);
        at += 16;
        for (uint64_t k = 0; k < states; k++) at = skip_record(f, n, at);
    }
    return true;
}

/* Real checkpoints of every configuration, with its byte in front (half of
 * them with the repair bits set for gf_save's format, whose CRC covers the
 * header: a repair of the payload's alone could only fail); and, where the optimizer is loaded, the
 * same with step counts at the limit (a step must refuse) and one below it
 * (one step reaches it), their length and CRC repaired. */
void gf_fuzz_seeds(gf_fuzz_emit emit, void *arg) {
    char path[512];
    gf_fuzz_path(path, sizeof path, "seed-ckpt");
    for (int cfg = 0; cfg < 128; cfg++) {
        if (((cfg >> 1) & 7) % 5 == 0 && (cfg & 16)) continue; /* no optimizer to step */
        gf_engine *eng = gf_engine_create(&(gf_engine_opts){.num_threads = 1});
        gf_ctx *c = gf_ctx_create(eng);
        gf_manual_seed(c, 7);
        gf_optimizer *opt;
        gf_module *m = make_model(c, (uint8_t)cfg, &opt);
        GF_FUZZ_CHECK(gf_save(path, m, (cfg & 32) ? NULL : opt) == GF_OK, "gf_save: %s",
                      gf_ctx_error(c));
        FILE *f = fopen(path, "rb");
        GF_FUZZ_CHECK(f, "cannot read %s", path);
        uint8_t buf[1 << 14];
        buf[0] = (uint8_t)(cfg & 64 ? cfg | 128 : cfg);
        size_t n = 1 + fread(buf + 1, 1, sizeof buf - 1, f);
        fclose(f);
        emit(arg, buf, n);
        if (!(cfg & 32) && !(cfg & 64) && opt) {
            buf[0] = (uint8_t)(cfg | 64 | 128);
            const uint64_t max = INT64_MAX;
            /* Below the limit everywhere; parameter 0 at it; the total at it. */
            static const int below[3][3] = {{1, 1, 1}, {1, 0, 1}, {0, 1, 1}};
            for (int v = 0; v < 3; v++) {
                GF_FUZZ_CHECK(set_steps(buf + 1, n - 1, max - (uint64_t)below[v][0],
                                        max - (uint64_t)below[v][1], max - (uint64_t)below[v][2]),
                              "seed checkpoint %d has no optimizer section", cfg);
                repair(buf + 1, n - 1, true);
                emit(arg, buf, n);
            }
        }
        gf_optimizer_free(opt);
        gf_module_free(m);
        gf_ctx_destroy(c);
        gf_engine_destroy(eng);
    }
}
