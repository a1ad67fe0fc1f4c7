/*
 * gemm.c - gf__sgemm / gf__dgemm and their epilogue forms gf__sgemm_ep /
 * gf__dgemm_ep (kernels.h): picks the micro-kernel variant once per process
 * and runs the BLIS-style driver (gemm_driver.h) with it.
 *
 * Variants, best first: avx512 (AVX-512F), avx2 (AVX2+FMA), generic (C).
 * The CPU is probed once (call_once); GF_ISA=avx512|avx2|generic asks for a
 * variant, and one the CPU lacks falls back to the best it has. The per-ISA
 * kernels live in ops/kernels/<isa>/, each compiled with its own flags; this
 * file has no intrinsics and needs no ISA flags. The build defines
 * GF_HAVE_AVX2 / GF_HAVE_AVX512 when it compiles those kernels (x86 only).
 */
#include "kernels.h"

#include "gemm_ukr.h"
#include "../../engine/env.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GF_T float
#define GF_FN(x) gf__sgemm_##x
#define GF_BLK gf__sgemm_blk
#include "gemm_driver.h"
#undef GF_T
#undef GF_FN
#undef GF_BLK

#define GF_T double
#define GF_FN(x) gf__dgemm_##x
#define GF_BLK gf__dgemm_blk
#include "gemm_driver.h"
#undef GF_T
#undef GF_FN
#undef GF_BLK

/* Best first: the first supported one is the default. */
static const gf__gemm_variant *const gf__gemm_variants[] = {
#ifdef GF_HAVE_AVX512
    &gf__gemm_avx512,
#endif
#ifdef GF_HAVE_AVX2
    &gf__gemm_avx2,
#endif
    &gf__gemm_generic,
};
#define GF__NVARIANTS (sizeof gf__gemm_variants / sizeof gf__gemm_variants[0])

static once_flag gf__gemm_once = ONCE_FLAG_INIT;
/* Each variant with its mc and nc sized to this machine's caches
 * (gemm_blocking.c), in gf__gemm_variants' order: what the driver runs.
 * Written under gf__gemm_once (and by gf__gemm_set_blocks, tests only). */
static gf__gemm_variant gf__gemm_sized[GF__NVARIANTS];
static size_t gf__gemm_startup; /* written once, under gf__gemm_once */
static _Atomic(const gf__gemm_variant *) gf__gemm_active;

/* Whether this CPU (and OS: libgcc checks that it saves the wider
 * registers) can run variant v. */
static int gf__gemm_supported(const gf__gemm_variant *v) {
#ifdef GF_HAVE_AVX512
    if (v == &gf__gemm_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
#ifdef GF_HAVE_AVX2
    if (v == &gf__gemm_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return v == &gf__gemm_generic;
}

/* The index of the variant called name if the CPU runs it, else of the
 * best it runs (generic is last and always runs). */
static size_t gf__gemm_choose(const char *name) {
    for (size_t i = 0; name && i < GF__NVARIANTS; i++)
        if (strcmp(name, gf__gemm_variants[i]->name) == 0 && gf__gemm_supported(gf__gemm_variants[i]))
            return i;
    for (size_t i = 0; i < GF__NVARIANTS; i++)
        if (gf__gemm_supported(gf__gemm_variants[i])) return i;
    return GF__NVARIANTS - 1;
}

/* Sizes every variant's blocks (mc, nc > 0: those, for tests). */
static void gf__gemm_size_all(int mc, int nc) {
    for (size_t i = 0; i < GF__NVARIANTS; i++) {
        gf__gemm_sized[i] = *gf__gemm_variants[i];
        gf__gemm_size_variant(&gf__gemm_sized[i], mc, nc);
    }
}

/* GF_ISA's variant: one warning line (once: this runs under gf__gemm_once)
 * when it names no variant, or one this build or CPU cannot run. */
static size_t gf__gemm_env_choice(void) {
    const char *want = gf__env("GF_ISA");
    size_t i = gf__gemm_choose(want);
    if (!want || strcmp(want, gf__gemm_variants[i]->name) == 0) return i;
    const char *got = gf__gemm_variants[i]->name;
    bool built = false;
    for (size_t k = 0; k < GF__NVARIANTS; k++) built |= strcmp(want, gf__gemm_variants[k]->name) == 0;
    if (strcmp(want, "avx512") && strcmp(want, "avx2") && strcmp(want, "generic"))
        gf__env_warn("GF_ISA", "GF_ISA=%s is not avx512, avx2 or generic; using %s", want, got);
    else
        gf__env_warn("GF_ISA", "GF_ISA=%s: %s cannot run it; using %s", want,
                     built ? "this CPU" : "this build of gradflow", got);
    return i;
}

static void gf__gemm_detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#endif
    gf__gemm_size_all(0, 0);
    gf__gemm_startup = gf__gemm_env_choice();
    atomic_store(&gf__gemm_active, &gf__gemm_sized[gf__gemm_startup]);
}

static const gf__gemm_variant *gf__gemm_variant_now(void) {
    call_once(&gf__gemm_once, gf__gemm_detect);
    return atomic_load_explicit(&gf__gemm_active, memory_order_acquire);
}

const char *gf__gemm_isa(void) { return gf__gemm_variant_now()->name; }

void gf__gemm_force_isa(const char *name) {
    call_once(&gf__gemm_once, gf__gemm_detect);
    atomic_store(&gf__gemm_active,
                 &gf__gemm_sized[name ? gf__gemm_choose(name) : gf__gemm_startup]);
}

void gf__gemm_set_blocks(int mc, int nc) {
    call_once(&gf__gemm_once, gf__gemm_detect);
    gf__gemm_size_all(mc, nc);
}

void gf__gemm_blocks(int dsize, int out[5]) {
    const gf__gemm_variant *v = gf__gemm_variant_now();
    if (dsize == (int)sizeof(double)) {
        out[0] = v->d.mr, out[1] = v->d.nr, out[2] = v->d.mc, out[3] = v->d.kc, out[4] = v->d.nc;
    } else {
        out[0] = v->s.mr, out[1] = v->s.nr, out[2] = v->s.mc, out[3] = v->s.kc, out[4] = v->s.nc;
    }
}

/* The driver's form of ep (NULL when it does nothing); vf from the vector
 * math table that goes with the variant in use, as the activation ops
 * take it. */
#define GF__EPI(E, out, ep, VF_TANH, VF_SIGMOID)                                           \
    do {                                                                                   \
        out = NULL;                                                                        \
        if ((ep) && ((ep)->bias || (ep)->act != GF__ACT_NONE)) {                           \
            const gf__vmath *vm_ = gf__vmath_now();                                        \
            E.bias = (ep)->bias;                                                           \
            E.incb = (ep)->incb;                                                           \
            E.relu = (ep)->act == GF__ACT_RELU;                                            \
            E.vf = (ep)->act == GF__ACT_TANH      ? vm_->VF_TANH                           \
                   : (ep)->act == GF__ACT_SIGMOID ? vm_->VF_SIGMOID                        \
                                                  : NULL;                                  \
            out = &E;                                                                      \
        }                                                                                  \
    } while (0)

void gf__sgemm_ep(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa, int64_t csa,
                  const float *B, int64_t rsb, int64_t csb, float beta, float *C, int64_t rsc,
                  int64_t csc, const gf__par *par, const gf__sepilogue *ep) {
    gf__sgemm_epi e, *pe;
    GF__EPI(e, pe, ep, tanh_f32, sigmoid_f32);
    gf__sgemm_driver(&gf__gemm_variant_now()->s, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc,
                     csc, par, pe);
}

void gf__dgemm_ep(int64_t m, int64_t n, int64_t k, const double *A, int64_t rsa, int64_t csa,
                  const double *B, int64_t rsb, int64_t csb, double beta, double *C,
                  int64_t rsc, int64_t csc, const gf__par *par, const gf__depilogue *ep) {
    gf__dgemm_epi e, *pe;
    GF__EPI(e, pe, ep, tanh_f64, sigmoid_f64);
    gf__dgemm_driver(&gf__gemm_variant_now()->d, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc,
                     csc, par, pe);
}

void gf__sgemm(int64_t m, int64_t n, int64_t k, const float *A, int64_t rsa, int64_t csa,
               const float *B, int64_t rsb, int64_t csb, float beta, float *C, int64_t rsc,
               int64_t csc, const gf__par *par) {
    gf__sgemm_driver(&gf__gemm_variant_now()->s, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc,
                     csc, par, NULL);
}

void gf__dgemm(int64_t m, int64_t n, int64_t k, const double *A, int64_t rsa, int64_t csa,
               const double *B, int64_t rsb, int64_t csb, double beta, double *C, int64_t rsc,
               int64_t csc, const gf__par *par) {
    gf__dgemm_driver(&gf__gemm_variant_now()->d, m, n, k, A, rsa, csa, B, rsb, csb, beta, C, rsc,
                     csc, par, NULL);
}
