/*
 * driver.c - runs a fuzz target without libFuzzer (gcc builds, and the
 * ctest of each target): a seeded stream of inputs, each either random
 * bytes or a mutation of the target's seed inputs (bit flips, interesting
 * bytes, truncation, insertion, splicing). The same seed gives the same
 * inputs, so a failure reproduces with the command line it printed.
 *
 *   fuzz_<t>_driver [-runs=N] [-seed=S] [-max_len=L]   N inputs (default 1000)
 *   fuzz_<t>_driver FILE...                            replays files
 *   fuzz_<t>_driver -write_seeds=DIR                   writes the seed corpus
 */
#include "fuzz.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define GF_FUZZ_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GF_FUZZ_SANITIZED 1
#endif

typedef struct {
    uint8_t **data;
    size_t *len;
    int n, cap;
} gf__seeds;

static void gf__keep_seed(void *arg, const uint8_t *data, size_t n) {
    gf__seeds *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->data = realloc(s->data, (size_t)s->cap * sizeof *s->data);
        s->len = realloc(s->len, (size_t)s->cap * sizeof *s->len);
        GF_FUZZ_CHECK(s->data && s->len, "out of memory");
    }
    s->data[s->n] = malloc(n ? n : 1);
    GF_FUZZ_CHECK(s->data[s->n], "out of memory");
    memcpy(s->data[s->n], data, n);
    s->len[s->n++] = n;
}

static void gf__write_seed(void *arg, const uint8_t *data, size_t n) {
    static int k;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%03d", (const char *)arg, k++);
    gf_fuzz_write(path, data, n);
}

/* splitmix64 */
static uint64_t gf__rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One input into buf (capacity max_len), returns its length. */
static size_t gf__make_input(const gf__seeds *s, uint64_t *r, uint8_t *buf, size_t max_len) {
    size_t n;
    if (!s->n || gf__rng(r) % 4 == 0) { /* random bytes */
        n = (size_t)(gf__rng(r) % (max_len + 1));
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)gf__rng(r);
        return n;
    }
    int k = (int)(gf__rng(r) % (uint64_t)s->n);
    n = s->len[k] < max_len ? s->len[k] : max_len;
    memcpy(buf, s->data[k], n);
    static const uint8_t interesting[] = {0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 8, 16, 64};
    int edits = 1 + (int)(gf__rng(r) % 8);
    for (int e = 0; e < edits; e++) {
        uint64_t x = gf__rng(r);
        size_t at = n ? (size_t)(gf__rng(r) % n) : 0;
        switch (x % 6) {
        case 0: if (n) buf[at] ^= (uint8_t)(1u << (x >> 8) % 8); break;
        case 1: if (n) buf[at] = interesting[(x >> 8) % sizeof interesting]; break;
        case 2: if (n) buf[at] = (uint8_t)(x >> 16); break;
        case 3: n = at; break; /* truncate */
        case 4: { /* insert a few random bytes */
            size_t k2 = 1 + (x >> 8) % 8;
            if (n + k2 > max_len) break;
            memmove(buf + at + k2, buf + at, n - at);
            for (size_t i = 0; i < k2; i++) buf[at + i] = (uint8_t)gf__rng(r);
            n += k2;
            break;
        }
        case 5: { /* splice: the tail of another seed from here on */
            int o = (int)((x >> 8) % (uint64_t)s->n);
            size_t from = s->len[o] ? (size_t)(gf__rng(r) % s->len[o]) : 0;
            size_t k2 = s->len[o] - from;
            if (at + k2 > max_len) k2 = max_len - at;
            memcpy(buf + at, s->data[o] + from, k2);
            n = at + k2;
            break;
        }
        }
    }
    return n;
}

/* The input being run, written out when the process dies on it: the file
 * replays the failure (fuzz_<t>_driver FILE). */
static const uint8_t *gf__cur;
static size_t gf__cur_n;
static const char *gf__crash_file = "fuzz-crash-input";

static void gf__dump_input(void) {
    if (!gf__cur) return;
    int fd = open(gf__crash_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    for (size_t at = 0; at < gf__cur_n;) {
        ssize_t w = write(fd, gf__cur + at, gf__cur_n - at);
        if (w <= 0) break;
        at += (size_t)w;
    }
    close(fd);
    static const char msg[] = "fuzz driver: the failing input is in ./fuzz-crash-input\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    gf__cur = NULL;
}

static void gf__on_signal(int sig) {
    gf__dump_input();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Called by the sanitizers before they end the process. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static void gf__replay(const char *path) {
    FILE *f = fopen(path, "rb");
    GF_FUZZ_CHECK(f, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (size_t got; b && (got = fread(b + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    GF_FUZZ_CHECK(b, "out of memory");
    fprintf(stderr, "replaying %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(b, n);
    free(b);
}

int main(int argc, char **argv) {
#ifndef GF_FUZZ_SANITIZED
    /* Without a sanitizer's allocator limit, an address-space limit makes
     * the huge allocations the targets attempt fail at once, as they must,
     * whatever the machine's overcommit policy. */
    struct rlimit rl = {.rlim_cur = (rlim_t)16 << 30, .rlim_max = (rlim_t)16 << 30};
    setrlimit(RLIMIT_AS, &rl);
#endif
    signal(SIGABRT, gf__on_signal);
    signal(SIGSEGV, gf__on_signal);
    signal(SIGBUS, gf__on_signal);
    signal(SIGFPE, gf__on_signal);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(gf__dump_input);
    LLVMFuzzerInitialize(&argc, &argv);
    long runs = 1000;
    uint64_t seed = 1;
    size_t max_len = 4096;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) runs = atol(argv[i] + 6);
        else if (strncmp(argv[i], "-seed=", 6) == 0) seed = strtoull(argv[i] + 6, NULL, 10);
        else if (strncmp(argv[i], "-max_len=", 9) == 0) max_len = strtoull(argv[i] + 9, NULL, 10);
        else if (strncmp(argv[i], "-write_seeds=", 13) == 0) {
            gf_fuzz_seeds(gf__write_seed, argv[i] + 13);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [-runs=N] [-seed=S] [-max_len=L] [-write_seeds=DIR] "
                    "[FILE...]\n", argv[0]);
            return 2;
        } else {
            gf__replay(argv[i]);
            files++;
        }
    }
    if (files) return 0;
    gf__seeds s = {0};
    gf_fuzz_seeds(gf__keep_seed, &s);
    if (max_len < 64) max_len = 64;
    for (int k = 0; k < s.n; k++)
        if (s.len[k] > max_len) max_len = s.len[k];
    uint8_t *buf = malloc(max_len);
    GF_FUZZ_CHECK(buf, "out of memory");
    uint64_t r = seed;
    for (long i = 0; i < runs; i++) {
        size_t n = gf__make_input(&s, &r, buf, max_len);
        /* A copy of exactly n bytes: reads past the input are caught. */
        uint8_t *in = malloc(n ? n : 1);
        GF_FUZZ_CHECK(in, "out of memory");
        memcpy(in, buf, n);
        gf__cur = in, gf__cur_n = n;
        LLVMFuzzerTestOneInput(in, n);
        gf__cur = NULL;
        free(in);
    }
    printf("%s: %ld inputs from seed %llu, %d seed inputs\n", argv[0], runs,
           (unsigned long long)seed, s.n);
    for (int k = 0; k < s.n; k++) free(s.data[k]);
    free(s.data);
    free(s.len);
    free(buf);
    return 0;
}
