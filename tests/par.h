/*
 * par.h - intra-op parallelism for tests that call kernels directly:
 * tpar(nt) leads teams on the pool of an engine of nt threads (the default
 * backend), tpar_omp(nt) on OpenMP teams of nt. NULL-free: nt <= 1 gives a
 * serial par. The engines live until the test process exits.
 */
#ifndef GF_TEST_PAR_H
#define GF_TEST_PAR_H

#include <stdlib.h>

#include "../engine/internal.h"

#define GF_TEST_MAX_NT 9

static gf_engine *gf_test_engines[GF_TEST_MAX_NT];

static void gf_test_engines_free(void) {
    for (int i = 0; i < GF_TEST_MAX_NT; i++) {
        gf_engine_destroy(gf_test_engines[i]);
        gf_test_engines[i] = NULL;
    }
}

static inline const gf__par *tpar(int nt) {
    static gf__par pars[GF_TEST_MAX_NT];
    if (nt < 1) nt = 1;
    if (nt >= GF_TEST_MAX_NT) nt = GF_TEST_MAX_NT - 1;
    if (nt == 1) {
        pars[1] = (gf__par){.nthreads = 1};
        return &pars[1];
    }
    if (!gf_test_engines[nt]) {
        static int registered;
        if (!registered) registered = 1, atexit(gf_test_engines_free);
        gf_test_engines[nt] = gf_engine_create(
            &(gf_engine_opts){.num_threads = nt, .intraop = GF_INTRAOP_POOL});
        if (!gf_test_engines[nt]) abort();
    }
    pars[nt] = gf__engine_par(gf_test_engines[nt]);
    return &pars[nt];
}

static inline const gf__par *tpar_omp(int nt) {
    static gf__par pars[GF_TEST_MAX_NT];
    if (nt < 1) nt = 1;
    if (nt >= GF_TEST_MAX_NT) nt = GF_TEST_MAX_NT - 1;
    pars[nt] = (gf__par){.nthreads = nt, .omp = nt > 1};
    return &pars[nt];
}

#endif /* GF_TEST_PAR_H */
