/*
 * rng.c - Philox 4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy
 * as 1, 2, 3", SC 2011). A counter-based generator: the value at a position
 * is a pure function of (key, counter), so random tensors never depend on
 * which thread fills which element.
 */
#include "internal.h"

#define GF__PHILOX_M0 0xD2511F53u
#define GF__PHILOX_M1 0xCD9E8D57u
#define GF__PHILOX_W0 0x9E3779B9u
#define GF__PHILOX_W1 0xBB67AE85u

void gf__philox(uint64_t key, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)GF__PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)GF__PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += GF__PHILOX_W0;
        k1 += GF__PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}
