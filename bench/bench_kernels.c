/*
 * bench_kernels.c - memory-bound kernels through the public API, next to
 * what the machine can do; one JSON line per case.
 *
 *  - triad: STREAM-style a[i] = b[i] + s*c[i] on 16M f32 (OpenMP, 1 and 2
 *    threads, static schedule), the reference bandwidth; 12 bytes/element.
 *    gbps is the faster of the loop as the baseline flags compile it (SSE2)
 *    and compiled for AVX2 (when the CPU has it; 6-20% faster here);
 *    nontemporal_gbps, a version with streaming stores (no read for
 *    ownership of the output), is printed for reference, with frac_triad_nt
 *    against it: the library's kernels keep their outputs in the cache
 *    hierarchy, since the next op reads them.
 *  - elementwise and reductions on 16M-element f32 tensors ([4096,4096]):
 *    gf_add, gf_mul (12 B/elem: two reads, one write), gf_relu, gf_exp,
 *    gf_tanh, gf_sigmoid, gf_add_scalar (8 B/elem), gf_sum, gf_sum_dim and
 *    gf_max_dim over dim 0
 *    and dim 1 (4 B/elem read; the 16 KiB output is ignored), on engines of
 *    1 and 2 threads. Each repetition realizes a freshly recorded op (inside
 *    a scope, so the output buffer comes back to the engine's cache); the
 *    recording is microseconds against milliseconds of data. frac_triad is
 *    the op's GB/s over the triad's at the same thread count (target 0.7).
 *  - softmax + cross-entropy forward and backward (d loss / d logits via
 *    gf_grad_of) for 256x10 and 4096x1000 logits, against a naive C version
 *    (per row: max pass, exp-sum pass, normalize pass writing the gradient
 *    softmax - onehot, scaled by 1/N), single-threaded.
 *  - softmax / log_softmax backward along dim 1 (256x10, 4096x1000, 1
 *    thread): a plain backward (the fused kernel) against the composed rule
 *    written with public ops.
 *  - fma_peak: one core's f32 FMA peak (fma_peak.h), and gf_matmul
 *    1024x1024x1024 as a percentage of it (of 2x it on 2 threads).
 *
 * Best of BENCH_REPS (default 9) repetitions, configurations interleaved
 * round by round (the machine is shared and noisy).
 */
#define _POSIX_C_SOURCE 199309L
#include "include/gradflow.h"
#include "fma_peak.h"

#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R 4096
#define CC 4096
#define NEL ((int64_t)R * CC)

static int reps = 9;

/* ------------------------------------------------------------- triad */
static float *ta, *tb, *tc;

/* One timed triad on nt threads; the functions below compile it for
 * different instruction sets. */
#define TRIAD_BODY(nt)                                                                     \
    const float s = 1.5f;                                                                  \
    float *restrict a = ta;                                                                \
    const float *restrict b = tb, *restrict c = tc;                                        \
    double t0 = gf_bench_now();                                                            \
    _Pragma("omp parallel for simd num_threads(nt) schedule(static)")                      \
    for (int64_t i = 0; i < NEL; i++) a[i] = b[i] + s * c[i];                              \
    return gf_bench_now() - t0;

/* The triad as the baseline flags compile it (SSE2 on x86-64). */
static double triad_plain(int nt) { TRIAD_BODY(nt) }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_TRIAD_X86 1
/* The same loop compiled for AVX2 (what -march=native gives on this CPU):
 * 6-20% faster than SSE2 here, so the reference is the better of the two. */
__attribute__((target("avx2,fma"))) static double triad_avx2(int nt) { TRIAD_BODY(nt) }

/* With non-temporal stores (no read-for-ownership of a): shown for
 * reference only; no kernel of the library streams its output past the
 * cache, since the next op usually reads it. */
__attribute__((target("avx2,fma"))) static double triad_nt(int nt) {
    const __m256 s = _mm256_set1_ps(1.5f);
    double t0 = gf_bench_now();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < NEL; i += 8)
        _mm256_stream_ps(ta + i, _mm256_fmadd_ps(s, _mm256_load_ps(tc + i), _mm256_load_ps(tb + i)));
    _mm_sfence();
    return gf_bench_now() - t0;
}
#endif

/* Triad variants: 0 plain, 1 AVX2 (when the CPU has it), 2 non-temporal. */
#define NTRIAD 3
static double triad_once(int v, int nt) {
#ifdef HAVE_TRIAD_X86
    if (v > 0 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 1e30;
    if (v == 1) return triad_avx2(nt);
    if (v == 2) return triad_nt(nt);
#else
    if (v > 0) return 1e30;
#endif
    return triad_plain(nt);
}

/* ------------------------------------------------------ API elementwise */
typedef enum {
    K_ADD, K_MUL, K_RELU, K_EXP, K_TANH, K_SIGMOID, K_ADDS, K_SUM, K_SUM0, K_SUM1, K_MAX0, K_MAX1,
    NK
} kop;
static const char *kname[NK] = {"add", "mul", "relu", "exp", "tanh", "sigmoid", "add_scalar",
                                "sum", "sum_dim0", "sum_dim1", "max_dim0", "max_dim1"};
static const double kbytes[NK] = {12, 12, 8, 8, 8, 8, 8, 4, 4, 4, 4, 4}; /* per element */

typedef struct {
    gf_engine *eng;
    gf_ctx *ctx;
    gf_tensor *a, *b;
    int nt;
} eng_t;

static double op_once(eng_t *e, kop k) {
    gf_scope_begin(e->ctx);
    gf_tensor *a = e->a, *b = e->b, *o = NULL;
    switch (k) {
    case K_ADD: o = gf_add(a, b); break;
    case K_MUL: o = gf_mul(a, b); break;
    case K_RELU: o = gf_relu(a); break;
    case K_EXP: o = gf_exp(a); break;
    case K_TANH: o = gf_tanh(a); break;
    case K_SIGMOID: o = gf_sigmoid(a); break;
    case K_ADDS: o = gf_add_scalar(a, 0.5); break;
    case K_SUM: o = gf_sum(a); break;
    case K_SUM0: o = gf_sum_dim(a, 0, false); break;
    case K_SUM1: o = gf_sum_dim(a, 1, false); break;
    case K_MAX0: o = gf_max_dim(a, 0, false); break;
    case K_MAX1: o = gf_max_dim(a, 1, false); break;
    default: break;
    }
    double t0 = gf_bench_now();
    gf_status st = gf_realize(o);
    double dt = gf_bench_now() - t0;
    if (st != GF_OK) {
        fprintf(stderr, "bench_kernels: %s: %s\n", kname[k], gf_ctx_error(e->ctx));
        exit(1);
    }
    gf_scope_end(e->ctx);
    return dt;
}

/* --------------------------------------------------- softmax + CE */
/* Naive fwd+bwd: loss and grad = (softmax - onehot) / N. */
static double naive_ce(const float *x, const int64_t *lab, float *g, int64_t N, int64_t C) {
    double loss = 0;
    const float invn = 1.0f / (float)N;
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * C;
        float *gr = g + r * C;
        float mx = xr[0];
        for (int64_t j = 1; j < C; j++) mx = xr[j] > mx ? xr[j] : mx;
        float s = 0;
        for (int64_t j = 0; j < C; j++) s += (gr[j] = expf(xr[j] - mx));
        loss += logf(s) - (xr[lab[r]] - mx);
        const float inv = invn / s;
        for (int64_t j = 0; j < C; j++) gr[j] *= inv;
        gr[lab[r]] -= invn;
    }
    return loss / (double)N;
}

static double api_ce(gf_ctx *ctx, gf_tensor *x, gf_tensor *lab, double *loss_out) {
    gf_scope_begin(ctx);
    double t0 = gf_bench_now();
    gf_tensor *loss = gf_cross_entropy(x, lab), *g = NULL;
    gf_status st = gf_grad_of(loss, 1, &x, &g, NULL);
    if (st == GF_OK) st = gf_realize(g);
    double dt = gf_bench_now() - t0;
    if (st != GF_OK) {
        fprintf(stderr, "bench_kernels: ce: %s\n", gf_ctx_error(ctx));
        exit(1);
    }
    *loss_out = gf_item(loss);
    gf_scope_end(ctx);
    return dt;
}

/* ------------------------------------------- softmax / log_softmax backward */
/* d/dx of softmax (log_softmax) along dim 1 with upstream g, 1 thread: a
 * plain backward (gf_grad_of, which records the one-kernel softmax_backward)
 * against the composed rule written with public ops (mul, sum_dim, sub,
 * exp: what create_graph records), each recorded and realized per call. */
static void bench_smbwd(eng_t *e, int64_t N, int64_t C) {
    gf_ctx *ctx = e->ctx;
    const int inner = N * C < 100000 ? 200 : 2;
    for (int lg = 0; lg < 2; lg++) {
        gf_scope_begin(ctx);
        gf_tensor *x = gf_requires_grad(gf_randn(ctx, GF_F32, 2, (int64_t[]){N, C}), true);
        gf_tensor *g = gf_randn(ctx, GF_F32, 2, (int64_t[]){N, C});
        gf_tensor *y = lg ? gf_log_softmax(x, 1) : gf_softmax(x, 1);
        gf_realize(y), gf_realize(g);
        double tf = 1e30, tc = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            double s[2] = {0, 0};
            for (int i = 0; i < inner; i++)
                for (int f = 0; f < 2; f++) {
                    gf_scope_begin(ctx);
                    double t0 = gf_bench_now();
                    gf_tensor *gx = NULL;
                    if (f == 0) {
                        gf_backward_opts o = {.grad_output = g, .retain_graph = true};
                        if (gf_grad_of(y, 1, &x, &gx, &o) != GF_OK) gx = NULL;
                    } else {
                        gx = lg ? gf_sub(g, gf_mul(gf_exp(y), gf_sum_dim(g, 1, true)))
                                : gf_mul(y, gf_sub(g, gf_sum_dim(gf_mul(g, y), 1, true)));
                    }
                    if (!gx || gf_realize(gx) != GF_OK) {
                        fprintf(stderr, "bench_kernels: softmax bwd: %s\n", gf_ctx_error(ctx));
                        exit(1);
                    }
                    s[f] += gf_bench_now() - t0;
                    gf_scope_end(ctx);
                }
            if (r && s[0] / inner < tf) tf = s[0] / inner;
            if (r && s[1] / inner < tc) tc = s[1] / inner;
        }
        printf("{\"bench\":\"%s_bwd\",\"n\":%lld,\"c\":%lld,\"threads\":1,\"fused_us\":%.1f,"
               "\"composed_us\":%.1f,\"composed_over_fused\":%.2f}\n",
               lg ? "log_softmax" : "softmax", (long long)N, (long long)C, tf * 1e6, tc * 1e6,
               tc / tf);
        fflush(stdout);
        gf_scope_end(ctx);
    }
}

static void bench_ce(eng_t *es, int64_t N, int64_t C) {
    float *x = malloc(sizeof(float) * N * C), *g = malloc(sizeof(float) * N * C);
    int64_t *lab = malloc(sizeof(int64_t) * N);
    srand(1);
    for (int64_t i = 0; i < N * C; i++) x[i] = 4.0f * ((float)rand() / RAND_MAX - 0.5f);
    for (int64_t r = 0; r < N; r++) lab[r] = rand() % C;
    gf_tensor *xt[2], *lt[2];
    for (int e = 0; e < 2; e++) {
        xt[e] = gf_requires_grad(gf_tensor_f32(es[e].ctx, 2, (int64_t[]){N, C}, x), true);
        lt[e] = gf_tensor_i64(es[e].ctx, 1, (int64_t[]){N}, lab);
    }
    /* Enough calls per repetition to be above timer noise on small shapes. */
    const int inner = N * C < 100000 ? 200 : 1;
    double tn = 1e30, ta_[2] = {1e30, 1e30}, ln = 0, la = 0;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = gf_bench_now();
        for (int i = 0; i < inner; i++) ln = naive_ce(x, lab, g, N, C);
        double dt = (gf_bench_now() - t0) / inner;
        if (r && dt < tn) tn = dt;
        for (int e = 0; e < 2; e++) {
            double s = 0;
            for (int i = 0; i < inner; i++) s += api_ce(es[e].ctx, xt[e], lt[e], &la);
            if (r && s / inner < ta_[e]) ta_[e] = s / inner;
        }
    }
    printf("{\"bench\":\"softmax_ce_fwd_bwd\",\"n\":%lld,\"c\":%lld,\"naive_us\":%.1f,"
           "\"gf_1t_us\":%.1f,\"gf_2t_us\":%.1f,\"naive_over_gf_1t\":%.2f,"
           "\"naive_over_gf_2t\":%.2f,\"loss_naive\":%.6f,\"loss_gf\":%.6f}\n",
           (long long)N, (long long)C, tn * 1e6, ta_[0] * 1e6, ta_[1] * 1e6, tn / ta_[0],
           tn / ta_[1], ln, la);
    fflush(stdout);
    free(x), free(g), free(lab);
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_kernels   (no options)\n"
               "  -h, --help    this text\n"
               "Environment: BENCH_REPS (repetitions, best kept; default 9). One JSON line\n"
               "per case on stdout.\n");
}

int main(int argc, char **argv) {
    static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        usage(ch == 'h' ? stdout : stderr);
        return ch == 'h' ? 0 : 2;
    }
    if (optind < argc) {
        fprintf(stderr, "bench_kernels: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    const char *e = getenv("BENCH_REPS");
    if (e && atoi(e) > 0) reps = atoi(e);

    ta = aligned_alloc(64, NEL * 4), tb = aligned_alloc(64, NEL * 4), tc = aligned_alloc(64, NEL * 4);
#pragma omp parallel for num_threads(2) schedule(static)
    for (int64_t i = 0; i < NEL; i++) ta[i] = 0, tb[i] = (float)(i & 1023), tc[i] = 1.0f;

    eng_t es[2];
    for (int i = 0; i < 2; i++) {
        es[i].nt = i + 1;
        es[i].eng = gf_engine_create(&(gf_engine_opts){.num_threads = i + 1});
        es[i].ctx = gf_ctx_create(es[i].eng);
        gf_manual_seed(es[i].ctx, 7);
        es[i].a = gf_randn(es[i].ctx, GF_F32, 2, (int64_t[]){R, CC});
        es[i].b = gf_randn(es[i].ctx, GF_F32, 2, (int64_t[]){R, CC});
        gf_realize(es[i].a), gf_realize(es[i].b);
    }

    /* Rounds: triad 1t/2t, then every op on both engines. */
    double triad[NTRIAD][2], best[NK][2];
    for (int v = 0; v < NTRIAD; v++) triad[v][0] = triad[v][1] = 1e30;
    for (int k = 0; k < NK; k++) best[k][0] = best[k][1] = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* round 0 warms up (page faults, caches) */
        for (int v = 0; v < NTRIAD; v++)
            for (int t = 0; t < 2; t++) {
                double dt = triad_once(v, t + 1);
                if (r && dt < triad[v][t]) triad[v][t] = dt;
            }
        for (int k = 0; k < NK; k++)
            for (int t = 0; t < 2; t++) {
                double dt = op_once(&es[t], (kop)k);
                if (r && dt < best[k][t]) best[k][t] = dt;
            }
    }
    /* The reference: the faster of the plain and AVX2 triads. */
    double tgb[2], ntgb[2];
    for (int t = 0; t < 2; t++) {
        const double plain = 12.0 * NEL / triad[0][t] * 1e-9, avx2 = 12.0 * NEL / triad[1][t] * 1e-9;
        tgb[t] = plain > avx2 ? plain : avx2;
        ntgb[t] = 12.0 * NEL / triad[2][t] * 1e-9;
        printf("{\"bench\":\"triad\",\"threads\":%d,\"n\":%lld,\"gbps\":%.2f,"
               "\"plain_gbps\":%.2f,\"avx2_gbps\":%.2f,\"nontemporal_gbps\":%.2f}\n",
               t + 1, (long long)NEL, tgb[t], plain, avx2, ntgb[t]);
    }
    for (int k = 0; k < NK; k++)
        for (int t = 0; t < 2; t++) {
            double gb = kbytes[k] * NEL / best[k][t] * 1e-9;
            printf("{\"bench\":\"%s\",\"threads\":%d,\"n\":%lld,\"bytes_per_elem\":%.0f,"
                   "\"gbps\":%.2f,\"ms\":%.3f,\"frac_triad\":%.2f,\"frac_triad_nt\":%.2f,"
                   "\"ok\":%s}\n",
                   kname[k], t + 1, (long long)NEL, kbytes[k], gb, best[k][t] * 1e3,
                   gb / tgb[t], gb / ntgb[t], gb / tgb[t] >= 0.7 ? "true" : "false");
        }
    fflush(stdout);

    bench_ce(es, 256, 10);
    bench_ce(es, 4096, 1000);
    bench_smbwd(&es[0], 256, 10);
    bench_smbwd(&es[0], 4096, 1000);

    /* FMA peak and GEMM's share of it, through gf_matmul. */
    double peak = gf_fma_peak_gflops(5);
    printf("{\"bench\":\"fma_peak\",\"chains\":%d,\"gflops_per_core\":%.1f}\n", GF_FMA_CHAINS, peak);
    for (int t = 0; t < 2; t++) {
        gf_ctx *ctx = es[t].ctx;
        gf_tensor *x = gf_randn(ctx, GF_F32, 2, (int64_t[]){1024, 1024});
        gf_tensor *w = gf_randn(ctx, GF_F32, 2, (int64_t[]){1024, 1024});
        gf_realize(x), gf_realize(w);
        double bt = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            gf_scope_begin(ctx);
            gf_tensor *y = gf_matmul(x, w);
            double t0 = gf_bench_now();
            gf_realize(y);
            double dt = gf_bench_now() - t0;
            gf_scope_end(ctx);
            if (r && dt < bt) bt = dt;
        }
        double gfl = 2.0 * 1024 * 1024 * 1024 / bt * 1e-9;
        printf("{\"bench\":\"matmul_1024\",\"threads\":%d,\"gflops\":%.1f,\"pct_peak\":%.1f}\n",
               t + 1, gfl, peak > 0 ? 100 * gfl / (peak * (t + 1)) : 0);
        gf_release(x), gf_release(w);
    }
    for (int i = 0; i < 2; i++) gf_ctx_destroy(es[i].ctx), gf_engine_destroy(es[i].eng);
    free(ta), free(tb), free(tc);
    return 0;
}
