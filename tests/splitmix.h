/*
 * splitmix.h - the tests' random numbers: splitmix64 from a fixed seed, so
 * every run sees the same data. Each test file keeps its own state (and
 * seed) and maps the result to the range it needs.
 */
#ifndef GF_TEST_SPLITMIX_H
#define GF_TEST_SPLITMIX_H

#include <stdint.h>

/* The next value of *state's sequence, uniform in [0, 1) (53 bits). */
static inline double gf_test_u01(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

#endif /* GF_TEST_SPLITMIX_H */
