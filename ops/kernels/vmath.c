/*
 * vmath.c - gf__vmath_now (kernels.h): the vector math table that goes with
 * GEMM's variant choice. There is one choice per process (GF_ISA, or
 * gf__gemm_force_isa in tests), so the elementwise kernels and the GEMM run
 * the same ISA; avx512 has no table of its own and uses avx2's (every
 * AVX-512F CPU has AVX2 and FMA). The tables live in ops/kernels/<isa>/;
 * this file has no ISA code.
 */
#include "kernels.h"

#include <string.h>

extern const gf__vmath gf__vmath_generic;
#ifdef GF_HAVE_AVX2
extern const gf__vmath gf__vmath_avx2;
#endif

const gf__vmath *gf__vmath_now(void) {
#ifdef GF_HAVE_AVX2
    /* gemm.c only picks avx2 or avx512 when the CPU runs AVX2 and FMA. */
    if (strcmp(gf__gemm_isa(), "generic") != 0) return &gf__vmath_avx2;
#endif
    return &gf__vmath_generic;
}
