/*
 * bench_gemm_ab.c - A/B of gf__sgemm between builds of gradflow, in one
 * process, call by call: the tool for deciding whether a GEMM change is
 * faster on a shared, noisy machine.
 *
 *   bench_gemm_ab LIB0.so LIB1.so [LIB2.so ...]
 *
 * Each LIB is a libgradflow.so (e.g. build/libgradflow.so of two
 * checkouts; copy a file first to load the same build twice, which is the
 * control: two copies of one build should agree to ~1%), configured with
 * -DGF_EXPORT_INTERNALS=ON so that it exports gf__sgemm. Every shape runs
 * BENCH_CALLS rounds (default 60); a round times OpenBLAS once (when built
 * with it) and then each library once, in an order that alternates between
 * rounds, so a slow phase of the machine lands on all of them. Reported per
 * library: GFLOP/s of its median call, the median over rounds of its
 * paired speed-up over LIB0 (LIB0's time / its time in the same round) and
 * over OpenBLAS. bench_gemm's bursts a few tenths of a second apart drift
 * by +-3% here (memory bandwidth changes by phase); paired calls a few
 * milliseconds apart resolve ~1%.
 *
 * BENCH_SHAPES="m,n,k,ta,tb;..." (default: the MLP forward shapes and their
 * dX products), BENCH_THREADS (default 1) for the thread budget of both
 * gradflow and OpenBLAS. OPENBLAS_CORETYPE as for bench_gemm (Zen here).
 * One JSON line per shape.
 */
#define _POSIX_C_SOURCE 199309L
#include <dlfcn.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gradflow.h"
#include "../engine/par.h"
#ifdef GF_BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int);
#endif

typedef void (*sgemm_fn)(int64_t, int64_t, int64_t, const float *, int64_t, int64_t,
                         const float *, int64_t, int64_t, float, float *, int64_t, int64_t,
                         const gf__par *);
typedef gf_engine *(*engine_create_fn)(const gf_engine_opts *);
typedef gf__par (*engine_par_fn)(gf_engine *);

#define MAX_LIBS 8
/* Each library's par: a pool of BENCH_THREADS from its own engine. */
static gf__par pars[MAX_LIBS];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (v is left unchanged). */
static double median(const double *v, int n) {
    double *w = malloc((size_t)n * sizeof *w);
    if (!w) return 0;
    memcpy(w, v, (size_t)n * sizeof *w);
    qsort(w, (size_t)n, sizeof *w, cmp_double);
    const double r = n % 2 ? w[n / 2] : (w[n / 2 - 1] + w[n / 2]) / 2;
    free(w);
    return r;
}

static float *falloc(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench_gemm_ab: out of memory\n");
        exit(1);
    }
    return p;
}

static void run(int m, int n, int k, int ta, int tb, int calls, int nt, int nlib,
                sgemm_fn *f, char **names) {
    float *A = falloc((size_t)m * k), *B = falloc((size_t)k * n), *C = falloc((size_t)m * n);
    for (size_t i = 0; i < (size_t)m * k; i++) A[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)k * n; i++) B[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    const int64_t rsa = ta ? 1 : k, csa = ta ? m : 1, rsb = tb ? 1 : n, csb = tb ? k : 1;
    double *t[MAX_LIBS], *to = malloc((size_t)calls * sizeof *to), *r = malloc((size_t)calls * sizeof *r);
    for (int i = 0; i < nlib; i++) t[i] = malloc((size_t)calls * sizeof *t[i]);
#ifdef GF_BENCH_OPENBLAS
#define OB()                                                                                    \
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, \
                n, k, 1.0f, A, ta ? m : k, B, tb ? k : n, 0.0f, C, n)
    openblas_set_num_threads(nt);
#else
#define OB() ((void)0)
#endif
    for (int w = 0; w < 3; w++) { /* warm-up: page faults, thread pools, packing buffers */
        OB();
        for (int i = 0; i < nlib; i++) f[i](m, n, k, A, rsa, csa, B, rsb, csb, 0.0f, C, n, 1, &pars[i]);
    }
    for (int c = 0; c < calls; c++) {
        double t0 = now();
        OB();
        to[c] = now() - t0;
        for (int q = 0; q < nlib; q++) {
            const int i = c % 2 ? nlib - 1 - q : q;
            t0 = now();
            f[i](m, n, k, A, rsa, csa, B, rsb, csb, 0.0f, C, n, 1, &pars[i]);
            t[i][c] = now() - t0;
        }
    }
    const double gf = 2.0 * m * n * k * 1e-9;
    printf("{\"bench\":\"gemm_ab\",\"m\":%d,\"n\":%d,\"k\":%d,\"ta\":%d,\"tb\":%d,\"threads\":%d,"
           "\"calls\":%d",
           m, n, k, ta, tb, nt, calls);
#ifdef GF_BENCH_OPENBLAS
    printf(",\"openblas_gflops\":%.1f", gf / median(to, calls));
#endif
    printf(",\"libs\":[");
    for (int i = 0; i < nlib; i++) {
        for (int c = 0; c < calls; c++) r[c] = t[0][c] / t[i][c];
        printf("%s{\"lib\":\"%s\",\"gflops\":%.1f,\"speedup_vs_lib0_med\":%.3f", i ? "," : "",
               names[i], gf / median(t[i], calls), median(r, calls));
#ifdef GF_BENCH_OPENBLAS
        for (int c = 0; c < calls; c++) r[c] = to[c] / t[i][c];
        printf(",\"ratio_openblas_med\":%.3f", median(r, calls));
#endif
        printf("}");
    }
    printf("]}\n");
    fflush(stdout);
    for (int i = 0; i < nlib; i++) free(t[i]);
    free(to), free(r), free(A), free(B), free(C);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_gemm_ab LIB0.so [LIB1.so ...]   (1 to %d libraries)\n"
            "  -h, --help    this text\n"
            "Environment: BENCH_CALLS (rounds per shape, default 60), BENCH_THREADS\n"
            "(default 1), BENCH_SHAPES=\"m,n,k,ta,tb;...\", OPENBLAS_CORETYPE. One JSON\n"
            "line per shape on stdout.\n",
            MAX_LIBS);
}

int main(int argc, char **argv) {
    static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        usage(ch == 'h' ? stdout : stderr);
        return ch == 'h' ? 0 : 2;
    }
    argv += optind - 1; /* the libraries from argv[1] on, as before */
    const int nlib = argc - optind;
    if (nlib < 1 || nlib > MAX_LIBS) {
        usage(stderr);
        return 2;
    }
    sgemm_fn f[MAX_LIBS];
    for (int i = 0; i < nlib; i++) {
        /* A path with a slash, so dlopen does not search the library path. */
        char path[4096];
        snprintf(path, sizeof path, "%s%s", strchr(argv[1 + i], '/') ? "" : "./", argv[1 + i]);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "bench_gemm_ab: %s\n", dlerror());
            return 1;
        }
        *(void **)&f[i] = dlsym(h, "gf__sgemm");
        engine_create_fn ec;
        engine_par_fn ep;
        *(void **)&ec = dlsym(h, "gf_engine_create");
        *(void **)&ep = dlsym(h, "gf__engine_par");
        if (!f[i] || !ec || !ep) {
            fprintf(stderr,
                    "bench_gemm_ab: %s has no gf__sgemm taking a gf__par (build it with "
                    "-DGF_EXPORT_INTERNALS=ON)\n",
                    path);
            return 1;
        }
        const char *te = getenv("BENCH_THREADS");
        gf_engine *eng = ec(&(gf_engine_opts){.num_threads = te && atoi(te) > 0 ? atoi(te) : 1});
        if (!eng) {
            fprintf(stderr, "bench_gemm_ab: %s: no engine\n", path);
            return 1;
        }
        pars[i] = ep(eng); /* the engine lives until the process exits */
    }
    const char *e = getenv("BENCH_CALLS");
    const int calls = e && atoi(e) > 0 ? atoi(e) : 60;
    e = getenv("BENCH_THREADS");
    const int nt = e && atoi(e) > 0 ? atoi(e) : 1;
    const char *shapes = getenv("BENCH_SHAPES");
    if (!shapes)
        shapes = "256,1024,784,0,0;256,1024,1024,0,0;256,784,1024,0,1;256,1024,1024,0,1";
    for (const char *p = shapes; *p;) {
        int m, n, k, ta, tb, used = 0;
        if (sscanf(p, "%d,%d,%d,%d,%d%n", &m, &n, &k, &ta, &tb, &used) != 5 || m < 1 || n < 1 ||
            k < 1) {
            fprintf(stderr, "bench_gemm_ab: BENCH_SHAPES wants m,n,k,ta,tb;... at \"%s\"\n", p);
            return 2;
        }
        run(m, n, k, ta != 0, tb != 0, calls, nt, nlib, f, argv + 1);
        p += used;
        while (*p == ';' || *p == ' ') p++;
    }
    return 0;
}
