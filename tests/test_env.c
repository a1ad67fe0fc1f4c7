/*
 * test_env.c - the GF_* environment variables: a bad value falls back to the
 * documented default with exactly one warning line on stderr per process
 * (however many engines read it), a good value takes effect, and
 * gf_engine_isa names the kernel variant (GF_ISA=generic forces it).
 *
 * The library reads some variables once per process (GF_ISA, the default
 * engine's GF_DETERMINISTIC) and warns once per process, so every case runs
 * in a forked child with a clean GF_* environment, its stderr redirected to
 * a file; the child reports what it saw through a pipe. This process never
 * calls the library itself, so each child starts from a fresh library.
 */
#include "common.h"

#include "engine/internal.h"
#include "ops/kernels/kernels.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const gf_vars[] = {"GF_NUM_THREADS", "GF_INTRAOP",  "GF_MIN_PARALLEL_WORK",
                                      "GF_DETERMINISTIC", "GF_ISA", "GF_GEMM_MC", "GF_GEMM_NC"};

/* What a child saw: an engine created with default options, and the
 * process default engine. */
typedef struct {
    int threads;
    int64_t min_par_work;
    gf_intraop intraop;
    bool deterministic; /* of the default engine */
    char isa[16];
    int mc;             /* the f32 GEMM's mc block */
} probe;

typedef struct {
    probe p;
    char err[4096]; /* the child's stderr */
    int lines;
} result;

/* In the child: n_engines engines with default options (each reads the
 * variables again), the default engine, and the GEMM's blocks. */
static void child_probe(probe *p, int n_engines) {
    for (int i = 0; i < n_engines; i++) {
        gf_engine *e = gf_engine_create(NULL);
        if (!e) _exit(3);
        if (i == 0) {
            p->threads = gf_engine_num_threads(e);
            p->min_par_work = e->min_par_work;
            p->intraop = gf_engine_intraop(e);
            snprintf(p->isa, sizeof p->isa, "%s", gf_engine_isa(e));
        }
        gf_engine_destroy(e);
    }
    gf_ctx *c = gf_ctx_create(NULL);
    if (!c) _exit(4);
    p->deterministic = gf_engine_deterministic(gf_ctx_engine(c));
    gf_ctx_destroy(c);
    int blk[5];
    gf__gemm_blocks(4, blk);
    p->mc = blk[2];
}

/* Runs child_probe in a child process with only name=value (name NULL:
 * none) of the GF_* variables set. */
static result run(const char *name, const char *value, int n_engines) {
    result r = {0};
    char path[] = "/tmp/gf_test_env_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp failed");
    unlink(path);
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) {
        for (size_t i = 0; i < sizeof gf_vars / sizeof gf_vars[0]; i++) unsetenv(gf_vars[i]);
        if (name) setenv(name, value, 1);
        if (dup2(fd, 2) < 0) _exit(2);
        probe p = {0};
        child_probe(&p, n_engines);
        _exit(write(pfd[1], &p, sizeof p) == (ssize_t)sizeof p ? 0 : 5);
    }
    close(pfd[1]);
    ssize_t got = read(pfd[0], &r.p, sizeof r.p);
    close(pfd[0]);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child with %s=%s failed (status %#x)",
              name ? name : "-", name ? value : "-", st);
    cr_assert_eq(got, (ssize_t)sizeof r.p);
    ssize_t n = pread(fd, r.err, sizeof r.err - 1, 0);
    close(fd);
    r.err[n > 0 ? n : 0] = 0;
    for (const char *s = r.err; *s; s++) r.lines += *s == '\n';
    return r;
}

/* The child printed nothing. */
static void expect_quiet(const result *r, const char *what) {
    cr_assert_eq(r->lines, 0, "%s: expected no warning, got \"%s\"", what, r->err);
}

/* The child printed exactly one line, which mentions every needle. */
static void expect_one_warning(const result *r, const char *n1, const char *n2) {
    cr_assert_eq(r->lines, 1, "expected one warning line mentioning \"%s\", got %d: \"%s\"", n1,
                 r->lines, r->err);
    cr_assert(strncmp(r->err, "gradflow: ", 10) == 0, "warning \"%s\"", r->err);
    cr_assert(strstr(r->err, n1), "warning \"%s\" does not mention \"%s\"", r->err, n1);
    cr_assert(!n2 || strstr(r->err, n2), "warning \"%s\" does not mention \"%s\"", r->err, n2);
}

static bool is_isa_name(const char *s) {
    return !strcmp(s, "avx512") || !strcmp(s, "avx2") || !strcmp(s, "generic");
}

Test(env, defaults_print_nothing) {
    result r = run(NULL, NULL, 2);
    expect_quiet(&r, "no GF_* variable");
    cr_assert_geq(r.p.threads, 1);
    cr_assert_eq(r.p.min_par_work, GF__MIN_PAR_WORK);
    cr_assert_eq(r.p.intraop, GF_INTRAOP_POOL);
    cr_assert_not(r.p.deterministic);
    cr_assert(is_isa_name(r.p.isa), "gf_engine_isa gave \"%s\"", r.p.isa);
    cr_assert_null(gf_engine_isa(NULL));
}

Test(env, num_threads) {
    result base = run(NULL, NULL, 1);
    const char *bad[] = {"abc", "0", "-1", "999999", "257", "4x", "2.5", "99999999999999999999"};
    char using[64];
    snprintf(using, sizeof using, "using %d threads", base.p.threads);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* Three engines read it: still one line. */
        result r = run("GF_NUM_THREADS", bad[i], 3);
        char var[64];
        snprintf(var, sizeof var, "GF_NUM_THREADS=%s ", bad[i]);
        expect_one_warning(&r, var, using);
        cr_assert_eq(r.p.threads, base.p.threads, "GF_NUM_THREADS=%s gave %d threads", bad[i],
                     r.p.threads);
    }
    result r = run("GF_NUM_THREADS", "3", 2);
    expect_quiet(&r, "GF_NUM_THREADS=3");
    cr_assert_eq(r.p.threads, 3);
    r = run("GF_NUM_THREADS", " 2 ", 1);
    expect_quiet(&r, "GF_NUM_THREADS=' 2 '");
    cr_assert_eq(r.p.threads, 2);
    r = run("GF_NUM_THREADS", "", 1); /* empty: unset */
    expect_quiet(&r, "GF_NUM_THREADS=''");
    cr_assert_eq(r.p.threads, base.p.threads);
}

Test(env, min_parallel_work) {
    const char *bad[] = {"abc", "-5", "1e3", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        result r = run("GF_MIN_PARALLEL_WORK", bad[i], 3);
        char var[64];
        snprintf(var, sizeof var, "GF_MIN_PARALLEL_WORK=%s ", bad[i]);
        expect_one_warning(&r, var, "using 65536");
        cr_assert_eq(r.p.min_par_work, GF__MIN_PAR_WORK);
    }
    result r = run("GF_MIN_PARALLEL_WORK", "0", 1);
    expect_quiet(&r, "GF_MIN_PARALLEL_WORK=0");
    cr_assert_eq(r.p.min_par_work, 0);
    r = run("GF_MIN_PARALLEL_WORK", "1000", 1);
    expect_quiet(&r, "GF_MIN_PARALLEL_WORK=1000");
    cr_assert_eq(r.p.min_par_work, 1000);
}

Test(env, intraop) {
    result r = run("GF_INTRAOP", "omp", 3);
    expect_one_warning(&r, "GF_INTRAOP=omp ", "using pool");
    cr_assert_eq(r.p.intraop, GF_INTRAOP_POOL);
    r = run("GF_INTRAOP", "openmp", 1);
    expect_quiet(&r, "GF_INTRAOP=openmp");
    cr_assert_eq(r.p.intraop, GF_INTRAOP_OPENMP);
    r = run("GF_INTRAOP", "pool", 1);
    expect_quiet(&r, "GF_INTRAOP=pool");
    cr_assert_eq(r.p.intraop, GF_INTRAOP_POOL);
}

Test(env, deterministic) {
    result r = run("GF_DETERMINISTIC", "maybe", 1);
    expect_one_warning(&r, "GF_DETERMINISTIC=maybe ", "using 0 (off)");
    cr_assert_not(r.p.deterministic);
    const char *on[] = {"1", "true", "ON", "yes"};
    for (size_t i = 0; i < 4; i++) {
        r = run("GF_DETERMINISTIC", on[i], 1);
        expect_quiet(&r, on[i]);
        cr_assert(r.p.deterministic, "GF_DETERMINISTIC=%s", on[i]);
    }
    const char *off[] = {"0", "off", "False"};
    for (size_t i = 0; i < 3; i++) {
        r = run("GF_DETERMINISTIC", off[i], 1);
        expect_quiet(&r, off[i]);
        cr_assert_not(r.p.deterministic, "GF_DETERMINISTIC=%s", off[i]);
    }
}

Test(env, isa) {
    result base = run(NULL, NULL, 1);
    cr_assert(is_isa_name(base.p.isa), "gf_engine_isa gave \"%s\"", base.p.isa);
    result r = run("GF_ISA", "generic", 2);
    expect_quiet(&r, "GF_ISA=generic");
    cr_assert_str_eq(r.p.isa, "generic");
    char using[64];
    snprintf(using, sizeof using, "using %s", base.p.isa);
    r = run("GF_ISA", "bogus", 2);
    expect_one_warning(&r, "GF_ISA=bogus is not avx512, avx2 or generic", using);
    cr_assert_str_eq(r.p.isa, base.p.isa);
    r = run("GF_ISA", base.p.isa, 1);
    expect_quiet(&r, base.p.isa);
    cr_assert_str_eq(r.p.isa, base.p.isa);
    if (strcmp(base.p.isa, "avx512") != 0) {
        /* The best variant here is not avx512: asking for it is a warning. */
        r = run("GF_ISA", "avx512", 1);
        expect_one_warning(&r, "GF_ISA=avx512: this ", using);
        cr_assert_str_eq(r.p.isa, base.p.isa);
    }
}

Test(env, gemm_blocks) {
    result base = run(NULL, NULL, 1);
    const char *bad[] = {"abc", "0", "-8", "2000000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        result r = run("GF_GEMM_MC", bad[i], 2);
        char var[64];
        snprintf(var, sizeof var, "GF_GEMM_MC=%s ", bad[i]);
        expect_one_warning(&r, var, "sizing it to the caches");
        cr_assert_eq(r.p.mc, base.p.mc, "GF_GEMM_MC=%s gave mc %d", bad[i], r.p.mc);
    }
    result r = run("GF_GEMM_NC", "x", 1);
    expect_one_warning(&r, "GF_GEMM_NC=x ", "sizing it to the caches");
    /* A good value takes effect, rounded down to a multiple of mr (< 64). */
    int want = 2 * base.p.mc + 100;
    char v[32];
    snprintf(v, sizeof v, "%d", want);
    r = run("GF_GEMM_MC", v, 1);
    expect_quiet(&r, v);
    cr_assert(r.p.mc <= want && r.p.mc > want - 64, "GF_GEMM_MC=%d gave mc %d", want, r.p.mc);
}
