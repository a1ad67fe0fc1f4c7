/*
 * fuzz_ops.c - fuzz target: the input bytes are a small program over the
 * public API (gradflow.h and the layers of gradflow/nn.h). Sixteen tensor
 * slots in two ctxs on one engine; each instruction creates tensors of any
 * dtype and shape (bad ones included: negative, huge, too many dims), runs
 * an op on slots (any of them may be empty, i.e. NULL) with arguments that
 * may be wrong, writes in place, runs backward, opens and ends scopes,
 * toggles no_grad and eager mode, or reads data back.
 *
 * Checked after every call (common.c): it failed (NULL or a negative
 * status) exactly when its ctx holds an error, the error has a message, and
 * after gf_ctx_clear_error the ctx still computes. After the program every
 * scope is ended and every slot released: no tensor may be left in either
 * ctx. The sanitizers check the rest (memory errors, undefined behaviour,
 * leaks).
 *
 * Sizes go up to INT64_MAX and past it in products (the library must
 * refuse a shape whose numel, strides or bytes overflow int64), i64 values
 * to their extremes (the kernels wrap), and floats of any value, NaN and
 * infinities included, are cast and written to i64 (an error where i64
 * cannot hold them). What the program may not do, so that a finding is a
 * bug and not a known limit of the driver: a tensor holds at most
 * SMALL_NUMEL elements, or at least HUGE_NUMEL (then nothing can allocate
 * it and every op that would compute on it must fail to); ops that would
 * compute over a huge input for a small output are not called (they would
 * only be slow).
 */
#include "fuzz_ops.h"

#include <stdlib.h>
#include <string.h>

bool tracing;
unsigned reached;

const double vals[16] = {0,     1,      -1,  0.5,      -2.5,      3,      1e-8,  -1e-300,
                         1e300, -1e300, NAN, INFINITY, -INFINITY, 0x1p63, 65504, 7};
const double ivals[14] = {0, 1, -1, 2, 3, -7, 100, 0x1p31, -0x1p40, 0x1p52,
                          0x1p62, -0x1p63, 0x1p32, 65536};
const int64_t sizes[16] = {0,    1,    2, 3, -1, -2, 5, -5, 17, INT64_C(1) << 39,
                           INT64_MAX, INT64_MIN, (INT64_C(1) << 62) + 1,
                           4096, 4097, INT64_C(1) << 32};

/* A dtype: mostly valid, sometimes not a gf_dtype at all. */
gf_dtype pick_dtype(prog *p) {
    uint8_t b = u8(p);
    return b < 240 ? (gf_dtype)(b % 3) : (gf_dtype)(b % 2 ? -1 : 3 + b % 5);
}

/* ----------------------------------------------------------------- sizes */

int64_t pick_dim(prog *p) {
    static const int64_t neg[] = {-1, -2, INT64_MIN, -(INT64_C(1) << 40)};
    static const int64_t huge[] = {INT64_C(1) << 39, INT64_C(1) << 40, INT64_MAX,
                                   (INT64_C(1) << 39) + 3, INT64_C(1) << 20, INT64_C(1) << 31,
                                   INT64_C(1) << 32, (INT64_C(1) << 61) + 1};
    uint8_t b = u8(p);
    if (b < 160) return b % 5;
    if (b < 200) return 1;
    if (b < 215) return 5 + b % 4;
    if (b < 230) return neg[b % 4];
    return huge[b % 8];
}

/* Shrinks a shape until its size is small or huge (a product past int64
 * stays: the library must refuse it). */
void fit_shape(int ndim, int64_t *shape) {
    int nd = ndim < 0 ? 0 : ndim > GF_MAX_DIMS + 2 ? GF_MAX_DIMS + 2 : ndim;
    int64_t n = numel_of_shape(nd, shape);
    if (n > 0 && !allowed(n))
        for (int i = 0; i < nd; i++)
            if (shape[i] > 2) shape[i] = 2;
}

/* A shape of *ndim dims (sometimes an invalid count) into shape[10]. */
void pick_shape(prog *p, int *ndim, int64_t *shape) {
    static const int nds[] = {0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 8, 1, 2, 9, -1};
    *ndim = nds[u8(p) % 16];
    for (int i = 0; i < GF_MAX_DIMS + 2; i++) shape[i] = i < *ndim ? pick_dim(p) : 1;
    fit_shape(*ndim, shape);
}

/* --------------------------------------------------------------- slots */

/* A slot: usually a filled one, sometimes NULL (an op's NULL input). */
slot *pick(prog *p) {
    uint8_t b = u8(p);
    int k = 0;
    for (int i = 0; i < SLOTS; i++) k += p->s[i].t != NULL;
    if (b >= 240 || !k) return NULL;
    k = b % k;
    for (int i = 0; i < SLOTS; i++)
        if (p->s[i].t && k-- == 0) return &p->s[i];
    return NULL;
}

gf_ctx *pick_ctx(prog *p) { return p->c[u8(p) % 8 == 0]; }

/* Stores t (a new handle) in a slot, or releases it when it does not fit
 * the limits. A full table releases a slot's tensor to make room. */
void put(prog *p, gf_tensor *t) {
    if (!t) return;
    int64_t n = gf_numel(t);
    if (!allowed((unsigned __int128)n)) {
        gf_release(t);
        return;
    }
    int k = 0;
    while (k < SLOTS && p->s[k].t) k++;
    if (k == SLOTS) {
        k = u8(p) % SLOTS;
        gf_release(p->s[k].t);
    }
    int c = ctx_index(p, gf_ctx_of(t));
    p->s[k] = (slot){.t = t, .c = c, .depth = p->depth[c]};
    TRACE("  slot %d: %s, %lld elements\n", k, gf_dtype_name(gf_dtype_of(t)), (long long)n);
}

/* After an op: checks the error convention on the inputs' ctx and keeps the
 * result. A NULL input (the result of an earlier failed call) gives NULL,
 * passed on without a new error (tests/test_linear_act.c checks that). */
void done(prog *p, const char *what, gf_tensor *y, int n, gf_tensor *const *in) {
    gf_ctx *c = ctx_of(n, in);
    bool any_null = false;
    for (int i = 0; i < n; i++) any_null |= !in[i];
    if (any_null) GF_FUZZ_CHECK(!y, "%s returned a tensor for a NULL input", what);
    if (!c) return;
    char desc[160];
    int at = snprintf(desc, sizeof desc, "%s(", what);
    for (int i = 0; i < n && at < (int)sizeof desc - 40; i++)
        at += snprintf(desc + at, sizeof desc - (size_t)at, "%s%s", i ? ", " : "",
                       in[i] ? gf_dtype_name(gf_dtype_of(in[i])) : "NULL");
    snprintf(desc + at, sizeof desc - (size_t)at, ")");
    TRACE("ctx %d%s: %s -> %s%s\n", ctx_index(p, c), gf_ctx_eager(c) ? " (eager)" : "", desc,
          y ? "" : "NULL ", gf_ctx_error(c) ? gf_ctx_error(c) : "");
    gf_fuzz_settle(c, any_null ? gf_ctx_status(c) != GF_OK : !y, desc);
    if (y && gf_ctx_eager(c)) reached |= 1u << M_EAGER;
    put(p, y);
}

void status_done(gf_ctx *c, const char *what, gf_status s) {
    TRACE("%s -> %d %s\n", what, (int)s, gf_ctx_error(c) ? gf_ctx_error(c) : "");
    GF_FUZZ_CHECK(s <= 0, "%s returned status %d", what, (int)s);
    gf_fuzz_settle(c, s < 0, what);
}

/* ------------------------------------------------- scopes, modes, sharing */

/* Ends the innermost scope of ctx i: its handles are gone. */
static void end_scope(prog *p, int i) {
    gf_scope_end(p->c[i]);
    if (p->depth[i] == 0) {
        gf_fuzz_settle(p->c[i], true, "gf_scope_end outside a scope");
        return;
    }
    gf_fuzz_settle(p->c[i], false, "gf_scope_end");
    for (int k = 0; k < SLOTS; k++)
        if (p->s[k].t && p->s[k].c == i && p->s[k].depth >= p->depth[i]) p->s[k].t = NULL;
    p->depth[i]--;
}

static void op_lifetime(prog *p) {
    int i = u8(p) % 8 == 0;
    gf_ctx *c = p->c[i];
    slot *a = pick(p);
    int k = u8(p) % 10;
    static const char *const names[] = {"scope_begin", "scope_end", "keep", "persist",
                                        "release", "no_grad_begin", "no_grad_end",
                                        "set_eager", "manual_seed", "share"};
    TRACE("ctx %d: %s (slot %d)\n", i, names[k], a ? (int)(a - p->s) : -1);
    switch (k) {
    case 0:
        if (p->depth[i] < 6) gf_scope_begin(c), p->depth[i]++;
        break;
    case 1: end_scope(p, i); break;
    case 2: /* to the scope outside the current one */
        if (a) {
            int outer = p->depth[a->c] > 0 ? p->depth[a->c] - 1 : 0;
            GF_FUZZ_CHECK(gf_keep(a->t) == a->t, "gf_keep returned another handle");
            if (a->depth > outer) a->depth = outer;
        }
        break;
    case 3:
        if (a) GF_FUZZ_CHECK(gf_persist(a->t) == a->t, "gf_persist returned another handle");
        if (a) a->depth = 0;
        break;
    case 4:
        if (a) gf_release(a->t), a->t = NULL;
        break;
    case 5: gf_no_grad_begin(c); break;
    case 6:
        gf_no_grad_end(c);
        gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_no_grad_end");
        break;
    case 7: gf_ctx_set_eager(c, flag(p)); break;
    case 8: gf_manual_seed(c, u8(p)); break;
    default: { /* a handle of a's tensor in the other ctx */
        if (!a) return;
        gf_ctx *to = p->c[!a->c];
        gf_tensor *t = gf_share(to, a->t);
        gf_fuzz_settle(to, !t, "gf_share");
        if (t) reached |= 1u << M_SHARE;
        /* Computing the tensor may fail in its own ctx too. */
        gf_fuzz_settle(p->c[a->c], t ? false : gf_ctx_status(p->c[a->c]) != GF_OK, "gf_share");
        put(p, t);
        break;
    }
    }
}

/* ------------------------------------------------------------ reading */

static void op_read(prog *p) {
    slot *a = pick(p);
    if (!a) return;
    gf_tensor *x = a->t;
    gf_ctx *c = gf_ctx_of(x);
    int nd = gf_ndim(x);
    GF_FUZZ_CHECK(nd >= 0 && nd <= GF_MAX_DIMS, "gf_ndim %d", nd);
    GF_FUZZ_CHECK(gf_numel(x) == numel_of_shape(nd, gf_shape(x)),
                  "gf_numel %lld does not match the shape", (long long)gf_numel(x));
    GF_FUZZ_CHECK((int)gf_dtype_of(x) >= 0 && (int)gf_dtype_of(x) <= 2, "dtype %d",
                  (int)gf_dtype_of(x));
    GF_FUZZ_CHECK(gf_ctx_of(x) == p->c[a->c], "gf_ctx_of is not the slot's ctx");
    (void)gf_is_contiguous(x), (void)gf_is_leaf(x), (void)gf_strides(x);
    int64_t n = gf_numel(x);
    switch (u8(p) % 5) {
    case 0: status_done(c, "gf_realize", gf_realize(x)); break;
    case 1: status_done(c, "gf_realize_all", gf_realize_all(c)); break;
    case 2: {
        gf_dtype dt = (gf_dtype)(u8(p) % 3);
        const void *d = dt == GF_F32 ? (const void *)gf_data_f32(x)
                        : dt == GF_F64 ? (const void *)gf_data_f64(x)
                                       : (const void *)gf_data_i64(x);
        gf_fuzz_settle(c, !d, "gf_data_*");
        GF_FUZZ_CHECK(!d || dt == gf_dtype_of(x), "gf_data_* of the wrong dtype succeeded");
        /* Every element is readable (the sanitizer checks the bounds). */
        volatile uint8_t sink = 0;
        for (int64_t i = 0; d && i < n * (dt == GF_F32 ? 4 : 8); i++)
            sink ^= ((const uint8_t *)d)[i];
        (void)sink;
        break;
    }
    case 3: {
        static const int64_t extra[] = {0, -1, 3, -1000};
        int64_t want = n + PICK(p, extra);
        if (want > SMALL_NUMEL + 3) want = SMALL_NUMEL + 3;
        if (want < 0) want = 0;
        bool f64 = flag(p), null = u8(p) == 0;
        void *buf = malloc((size_t)(want ? want : 1) * (f64 ? 8 : 4));
        GF_FUZZ_CHECK(buf, "out of memory");
        gf_status s = f64 ? gf_copy_to_f64(x, null ? NULL : buf, want)
                          : gf_copy_to_f32(x, null ? NULL : buf, want);
        status_done(c, "gf_copy_to_*", s);
        GF_FUZZ_CHECK(s < 0 || want >= n, "gf_copy_to_* of %lld elements into %lld succeeded",
                      (long long)n, (long long)want);
        free(buf);
        break;
    }
    default: {
        double v = gf_item(x);
        gf_fuzz_settle(c, gf_ctx_status(c) != GF_OK, "gf_item");
        (void)v;
        break;
    }
    }
}
/* ---------------------------------------------------------------- program */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* A 2-thread engine hands every node to its pool, however small. */
    setenv("GF_MIN_PARALLEL_WORK", "0", 1);
    tracing = getenv("GF_FUZZ_TRACE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    prog p = {.in = {data, size, 0}};
    uint8_t cfg = u8(&p);
    gf_engine_opts eo = {.num_threads = cfg % 8 == 7 ? 2 : 1, .deterministic = cfg & 8,
                         .intraop = cfg & 16 ? GF_INTRAOP_OPENMP : GF_INTRAOP_POOL};
    gf_engine *eng = gf_engine_create(&eo);
    GF_FUZZ_CHECK(eng, "gf_engine_create failed");
    p.c[0] = gf_ctx_create(eng);
    p.c[1] = gf_ctx_create(eng);
    GF_FUZZ_CHECK(p.c[0] && p.c[1], "gf_ctx_create failed");
    gf_ctx_set_eager(p.c[0], cfg & 32);
    for (int steps = 0; steps < 64 && gf_fuzz_more(&p.in); steps++) {
        switch (u8(&p) % 15) {
        case 0: case 1: op_create(&p); break;
        case 2: op_unary(&p); break;
        case 3: op_scalar(&p); break;
        case 4: op_binary(&p); break;
        case 5: op_matmul(&p); break;
        case 6: op_reduce(&p); break;
        case 7: op_shape(&p); break;
        case 8: op_nn(&p); break;
        case 9: op_inplace(&p); break;
        case 10: op_autograd(&p); break;
        case 11: op_lifetime(&p); break;
        case 12: op_read(&p); break;
        case 13: op_tools(&p); break;
        default: op_module(&p); break;
        }
    }
    /* Nothing may be left once every scope has ended and every handle is
     * released (a create_graph .grad holds a cycle through its leaf, as in
     * PyTorch: freed with the ctx). */
    for (int i = 0; i < 2; i++)
        while (p.depth[i]) end_scope(&p, i);
    for (int k = 0; k < SLOTS; k++) gf_release(p.s[k].t);
    for (int i = 0; i < 2 && tracing; i++)
        for (gf_tensor *t = NULL; !t;) {
            TRACE("ctx %d: %lld tensors left\n", i, (long long)gf_ctx_live_tensors(p.c[i]));
            t = (gf_tensor *)1;
        }
    for (int i = 0; i < 2 && !p.cycle; i++)
        GF_FUZZ_CHECK(gf_ctx_live_tensors(p.c[i]) == 0, "%lld tensors left in ctx %d",
                      (long long)gf_ctx_live_tensors(p.c[i]), i);
    gf_ctx_destroy(p.c[1]);
    gf_ctx_destroy(p.c[0]);
    gf_engine_destroy(eng);
    return 0;
}

/* The seeds are programs found by a small search at start-up rather than
 * bytes written by hand, so that they keep matching the interpreter: random
 * programs from a fixed generator, each kept if it reaches a milestone (a
 * successful backward, optimizer step, ...) that no kept one reached. */
void gf_fuzz_seeds(gf_fuzz_emit emit, void *arg) {
    uint8_t buf[512];
    uint64_t r = 0x5eed;
    unsigned have = 0;
    for (int k = 0; k < 4000 && have != (1u << M_COUNT) - 1; k++) {
        size_t n = 64 + k % 448;
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (uint8_t)(r >> 56);
        }
        buf[0] &= ~7u; /* one thread: the same milestones every run */
        reached = 0;
        LLVMFuzzerTestOneInput(buf, n);
        if (reached & ~have) {
            have |= reached;
            emit(arg, buf, n);
        }
    }
}
