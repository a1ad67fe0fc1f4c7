/*
 * fma_peak.h - the core's f32 FMA peak, measured with the widest FMA the
 * CPU runs: 10 independent chains of _mm512_fmadd_ps (32 flops a step) where
 * the CPU has AVX-512F, else of _mm256_fmadd_ps (16 flops a step); 10 chains
 * cover the FMA latency on two pipes. Included by bench_gemm.c and
 * bench_kernels.c; each loop is compiled for its ISA alone (the benches
 * themselves are not) and chosen by a run-time CPU check. Returns GFLOP/s of
 * one thread, best of `reps` runs of ~20 ms; 0 when the CPU lacks AVX2/FMA.
 * (Before the AVX-512 loop, a 16-core Xeon measured its AVX2 peak here and
 * the avx512 GEMM showed 160% of "peak".)
 */
#ifndef GF_BENCH_FMA_PEAK_H
#define GF_BENCH_FMA_PEAK_H

#include <immintrin.h>
#include <time.h>

static double gf_bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define GF_FMA_CHAINS 10

__attribute__((target("avx2,fma"), noinline)) static float gf_fma_loop(long iters, float seed) {
    __m256 acc[GF_FMA_CHAINS];
    for (int c = 0; c < GF_FMA_CHAINS; c++) acc[c] = _mm256_set1_ps(seed + (float)c);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 10
        for (int c = 0; c < GF_FMA_CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < GF_FMA_CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

__attribute__((target("avx512f"), noinline)) static float gf_fma_loop512(long iters, float seed) {
    __m512 acc[GF_FMA_CHAINS];
    for (int c = 0; c < GF_FMA_CHAINS; c++) acc[c] = _mm512_set1_ps(seed + (float)c);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 10
        for (int c = 0; c < GF_FMA_CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < GF_FMA_CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    return _mm512_reduce_add_ps(s);
}

static double gf_fma_peak_gflops(int reps) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    int wide = __builtin_cpu_supports("avx512f");
    float (*loop)(long, float) = wide ? gf_fma_loop512 : gf_fma_loop;
    const long iters = 2000000; /* 2e6 * 10 chains * 16 (32) flops = 0.32 (0.64) GFLOP */
    volatile float sink = loop(iters / 10, 1.0f); /* warm-up, clocks up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = gf_bench_now();
        sink = loop(iters, (float)r);
        double dt = gf_bench_now() - t0;
        if (dt < best) best = dt;
    }
    (void)sink;
    return (double)iters * GF_FMA_CHAINS * (wide ? 32 : 16) / best * 1e-9;
}

#endif
