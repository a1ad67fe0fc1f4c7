/*
 * fuzz.h - what the fuzz targets of tests/fuzz share: the libFuzzer entry
 * points every target defines, the seed inputs it provides, and the checks
 * of the library's error convention that they run after every call
 * (common.c).
 *
 * Each target is built two ways (CMakeLists.txt): with clang's libFuzzer
 * (-DGF_FUZZ=ON, fuzz_<target>) and with a small seeded driver of our own
 * (driver.c, fuzz_<target>_driver), which is also a ctest.
 */
#ifndef GF_FUZZ_H
#define GF_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gradflow.h"

/* libFuzzer's entry points. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The target's seed inputs, handed to emit one by one: the corpus CI starts
 * libFuzzer from (driver -write_seeds=DIR) and what the driver mutates. */
typedef void (*gf_fuzz_emit)(void *arg, const uint8_t *data, size_t n);
void gf_fuzz_seeds(gf_fuzz_emit emit, void *arg);

/* An invariant that does not hold: prints where and why, then aborts (a
 * crash to libFuzzer and to ctest). */
#define GF_FUZZ_CHECK(cond, ...)                                  \
    do {                                                          \
        if (!(cond)) gf_fuzz_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
void gf_fuzz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Checks the call `what` against the error convention: failed (a NULL
 * result or a negative status) exactly when c holds an error, and that
 * error has a non-empty message. Then clears the error and checks that c
 * still computes a small op correctly. */
void gf_fuzz_settle(gf_ctx *c, bool failed, const char *what);
/* c computes (2 + 1) * 3 elementwise, right, in a scope of its own. */
void gf_fuzz_check_usable(gf_ctx *c);

/* out = name in a private temporary directory (made on first use, removed
 * at exit); and writing n bytes to a path (aborts if it cannot). */
void gf_fuzz_path(char *out, size_t cap, const char *name);
void gf_fuzz_write(const char *path, const uint8_t *data, size_t n);

/* A cursor over the fuzzer's bytes; reads past the end give zeros. */
typedef struct {
    const uint8_t *p;
    size_t n, at;
} gf_fuzz_in;
static inline uint8_t gf_fuzz_u8(gf_fuzz_in *in) { return in->at < in->n ? in->p[in->at++] : 0; }
static inline uint32_t gf_fuzz_u32(gf_fuzz_in *in) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)gf_fuzz_u8(in) << (8 * i);
    return v;
}
static inline bool gf_fuzz_more(const gf_fuzz_in *in) { return in->at < in->n; }

#endif /* GF_FUZZ_H */
