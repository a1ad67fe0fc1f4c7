/*
 * tests/tsan/criterion/criterion.h - the part of Criterion's test API that
 * the tests use, run in one process, for ThreadSanitizer builds only.
 *
 * Criterion's runner maps a shared arena at a random fixed address before
 * any test runs; under ThreadSanitizer most of the address space it picks
 * from is TSan's shadow, so the runner dies at start-up ("Could not
 * initialize inheritable arena: Resource temporarily unavailable", or a
 * SEGV inside libcriterion; Snaipe/Criterion#274), deterministically for
 * some binaries (test_autograd) and not others (test_engine). With
 * -DGF_TSAN=ON the tests that CI runs under TSan are compiled against this
 * header instead (tests/tsan comes first on their include path), so the
 * same test files run under TSan with no change.
 *
 * What it provides: Test(suite, name, .init/.fini/.timeout/.disabled/
 * .description), TestSuite(suite, ...) (its .init/.fini/.disabled are the
 * defaults of its tests), the cr_assert family the tests use, cr_log_info
 * and cr_skip_test, and main(). Tests run one after another in
 * registration order, in this process (no fork: a crash ends the run,
 * which under TSan is what a report does anyway); a failed assertion prints
 * file:line and its message and ends that test (longjmp to the runner,
 * which then runs the fini). The exit status is 1 if any test failed.
 * Command-line arguments (e.g. --jobs 1) are accepted and ignored;
 * .timeout is accepted and not enforced. One translation unit per binary
 * (main is defined here).
 */
#ifndef GF_TESTS_CRITERION_SHIM_H
#define GF_TESTS_CRITERION_SHIM_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h> /* Criterion's header brings these in; tests rely on it */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field names as Criterion's, so designated initializers carry over. */
struct criterion_test_extra_data {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    int disabled;
    const char *description;
    int signal;
    int exit_code;
};

typedef struct gf_shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct criterion_test_extra_data extra;
    struct gf_shim_test *next;
} gf_shim_test;

typedef struct gf_shim_suite {
    const char *name;
    struct criterion_test_extra_data extra;
    struct gf_shim_suite *next;
} gf_shim_suite;

static gf_shim_test *gf_shim_tests, **gf_shim_tail = &gf_shim_tests;
static gf_shim_suite *gf_shim_suites;
static jmp_buf gf_shim_jmp;
static volatile int gf_shim_how; /* how the running test ended: 0 passed, 1 failed, 2 skipped */

static inline void gf_shim_add_test(gf_shim_test *t) {
    *gf_shim_tail = t;
    gf_shim_tail = &t->next;
}

static inline void gf_shim_add_suite(gf_shim_suite *s) {
    s->next = gf_shim_suites;
    gf_shim_suites = s;
}

/* Ends the running test as failed (1) or skipped (2), with fmt's message
 * (or `what` when fmt is empty). */
static inline void __attribute__((noreturn, format(printf, 5, 6)))
gf_shim_end(int how, const char *file, int line, const char *what, const char *fmt, ...) {
    fprintf(stderr, "%s:%d: %s: ", file, line, how == 2 ? "skipped" : "Assertion failed");
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    } else {
        fputs(what, stderr);
    }
    fputc('\n', stderr);
    gf_shim_how = how;
    longjmp(gf_shim_jmp, 1);
}

/* `"" __VA_ARGS__`: the message's format string literal, or "" when the
 * assertion has no message (the empty format is meant: its warning is off
 * in the files that include this). */
#pragma GCC diagnostic ignored "-Wformat-zero-length"
#define GF__SHIM_CHECK(cond, what, ...)                                                  \
    do {                                                                                 \
        if (!(cond)) gf_shim_end(1, __FILE__, __LINE__, what, "" __VA_ARGS__);           \
    } while (0)

#define cr_assert(cond, ...) GF__SHIM_CHECK(cond, #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...) GF__SHIM_CHECK(!(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) GF__SHIM_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) GF__SHIM_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) GF__SHIM_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) GF__SHIM_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) GF__SHIM_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) GF__SHIM_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) GF__SHIM_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) GF__SHIM_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                                      \
    GF__SHIM_CHECK(strcmp((a), (b)) == 0, #a " equals " #b, __VA_ARGS__)
#define cr_assert_fail(...) gf_shim_end(1, __FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_skip_test(...) gf_shim_end(2, __FILE__, __LINE__, "cr_skip_test", "" __VA_ARGS__)
#define cr_log_info(...)                                                                 \
    do {                                                                                 \
        fprintf(stderr, "[info] " __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                             \
    } while (0)

#define Test(suite, name, ...)                                                           \
    static void suite##_##name##_fn(void);                                               \
    static gf_shim_test suite##_##name##_test = {#suite, #name, suite##_##name##_fn,     \
                                                 {__VA_ARGS__}, NULL};                   \
    __attribute__((constructor)) static void suite##_##name##_reg(void) {                \
        gf_shim_add_test(&suite##_##name##_test);                                        \
    }                                                                                    \
    static void suite##_##name##_fn(void)

#define TestSuite(suite, ...)                                                            \
    static gf_shim_suite suite##_shim_suite = {#suite, {__VA_ARGS__}, NULL};             \
    __attribute__((constructor)) static void suite##_shim_suite_reg(void) {              \
        gf_shim_add_suite(&suite##_shim_suite);                                          \
    }

/* Runs one test with its init and fini; how it ended (0 passed, 1 failed,
 * 2 skipped). setjmp lives here, away from main's loop variables. */
static int __attribute__((noinline))
gf_shim_run(const gf_shim_test *t, const struct criterion_test_extra_data *d) {
    gf_shim_how = 0;
    if (setjmp(gf_shim_jmp) == 0) {
        if (d->init) d->init();
        t->fn();
    }
    const int how = gf_shim_how;
    gf_shim_how = 0;
    if (d->fini && setjmp(gf_shim_jmp) == 0) d->fini(); /* runs after a failure too */
    return how ? how : gf_shim_how;                     /* else a failure in the fini */
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    int ran = 0, failed = 0, skipped = 0;
    for (gf_shim_test *t = gf_shim_tests; t; t = t->next) {
        struct criterion_test_extra_data d = {0};
        for (gf_shim_suite *s = gf_shim_suites; s; s = s->next)
            if (strcmp(s->name, t->suite) == 0) d = s->extra;
        if (t->extra.init) d.init = t->extra.init;
        if (t->extra.fini) d.fini = t->extra.fini;
        if (t->extra.disabled || d.disabled) continue;
        ran++;
        const int how = gf_shim_run(t, &d);
        if (how == 1) failed++;
        if (how == 2) skipped++;
        fprintf(stderr, "[%s] %s::%s\n", how == 1 ? "FAIL" : how == 2 ? "SKIP" : "PASS", t->suite,
                t->name);
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n",
            ran, ran - failed - skipped, failed, skipped);
    return failed ? 1 : 0;
}

#endif /* GF_TESTS_CRITERION_SHIM_H */
