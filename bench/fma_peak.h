/*
 * fma_peak.h - the core's f32 FMA peak, measured: 10 independent chains of
 * _mm256_fmadd_ps (enough to cover the FMA latency on two pipes), each step
 * 16 flops per chain. Included by bench_gemm.c and bench_kernels.c; the
 * function is compiled for AVX2+FMA alone (the benches themselves are not),
 * so call it only where the CPU has them. Returns GFLOP/s of one thread,
 * best of `reps` runs of ~20 ms; 0 when the CPU lacks AVX2/FMA.
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

static double gf_fma_peak_gflops(int reps) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    const long iters = 2000000; /* 2e6 * 10 chains * 16 flops = 0.32 GFLOP */
    volatile float sink = gf_fma_loop(iters / 10, 1.0f); /* warm-up, clocks up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = gf_bench_now();
        sink = gf_fma_loop(iters, (float)r);
        double dt = gf_bench_now() - t0;
        if (dt < best) best = dt;
    }
    (void)sink;
    return (double)iters * GF_FMA_CHAINS * 16 / best * 1e-9;
}

#endif
