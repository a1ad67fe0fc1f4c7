/*
 * alloc.c - the caching allocator behind tensor storage.
 *
 * Buffers are rounded up to size classes (powers of two split in four steps:
 * 2^k, 1.25*2^k, 1.5*2^k, 1.75*2^k; 64-byte aligned) and returned to a free
 * list per class instead of to the system, so after the first training step
 * a loop reuses the same buffers and calls malloc no more. Each class has its
 * own lock, so threads freeing different sizes do not contend. Buffers above
 * 1 GiB bypass the cache.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define GF__NCLASS 128
#define GF__MAX_CACHED ((size_t)1 << 30)

typedef struct gf__free {
    struct gf__free *next;
} gf__free;

typedef struct {
    pthread_mutex_t mu;
    gf__free *head;
    char pad[64 - sizeof(pthread_mutex_t) % 64 - sizeof(gf__free *) % 64];
} gf__class;

struct gf__alloc {
    gf__class cls[GF__NCLASS];
    atomic_llong in_use, cached, sys_allocs;
};

static atomic_long gf__fail_after = -1;
static atomic_size_t gf__mallocs;

void gf__alloc_fail_after(long n) { atomic_store(&gf__fail_after, n); }
size_t gf__alloc_mallocs(void) { return atomic_load(&gf__mallocs); }

/* Size class of n bytes and its rounded size. */
static int gf__class_of(size_t n, size_t *rounded) {
    if (n < 64) n = 64;
    int k = 63 - __builtin_clzll((unsigned long long)n); /* 2^k <= n */
    size_t base = (size_t)1 << k;
    size_t step = base >> 2;
    size_t q = (n - base + step - 1) / step; /* 0..4 */
    size_t r = base + q * step;
    if (q == 4) { k++; q = 0; r = (size_t)1 << k; }
    *rounded = r;
    return (k - 6) * 4 + (int)q;
}

gf__alloc *gf__alloc_create(void) {
    gf__alloc *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    for (int i = 0; i < GF__NCLASS; i++) pthread_mutex_init(&a->cls[i].mu, NULL);
    return a;
}

void gf__alloc_destroy(gf__alloc *a) {
    if (!a) return;
    for (int i = 0; i < GF__NCLASS; i++) {
        for (gf__free *f = a->cls[i].head, *nx; f; f = nx) {
            nx = f->next;
            free(f);
        }
        pthread_mutex_destroy(&a->cls[i].mu);
    }
    free(a);
}

static void *gf__sys_alloc(size_t n) {
    long left = atomic_load(&gf__fail_after);
    if (left >= 0) {
        if (left == 0) return NULL;
        atomic_fetch_sub(&gf__fail_after, 1);
    }
    atomic_fetch_add(&gf__mallocs, 1);
    void *p = NULL;
    if (posix_memalign(&p, GF__ALIGN, n) != 0) return NULL;
    return p;
}

void *gf__alloc_get(gf__alloc *a, size_t nbytes) {
    size_t r;
    /* Larger than any tensor can be (gf__shape_check): refused before the
     * signed byte counters see it. */
    if (nbytes > (size_t)PTRDIFF_MAX) return NULL;
    if (nbytes > GF__MAX_CACHED) {
        void *p = gf__sys_alloc(nbytes);
        if (p) {
            atomic_fetch_add(&a->sys_allocs, 1);
            atomic_fetch_add(&a->in_use, (long long)nbytes);
        }
        return p;
    }
    int c = gf__class_of(nbytes, &r);
    gf__class *cl = &a->cls[c];
    pthread_mutex_lock(&cl->mu);
    gf__free *f = cl->head;
    if (f) cl->head = f->next;
    pthread_mutex_unlock(&cl->mu);
    if (f) {
        atomic_fetch_sub(&a->cached, (long long)r);
        atomic_fetch_add(&a->in_use, (long long)r);
        return f;
    }
    void *p = gf__sys_alloc(r);
    if (p) {
        atomic_fetch_add(&a->sys_allocs, 1);
        atomic_fetch_add(&a->in_use, (long long)r);
    }
    return p;
}

void gf__alloc_put(gf__alloc *a, void *p, size_t nbytes) {
    if (!p) return;
    size_t r;
    if (nbytes > GF__MAX_CACHED) {
        atomic_fetch_sub(&a->in_use, (long long)nbytes);
        free(p);
        return;
    }
    int c = gf__class_of(nbytes, &r);
    atomic_fetch_sub(&a->in_use, (long long)r);
    atomic_fetch_add(&a->cached, (long long)r);
    gf__class *cl = &a->cls[c];
    gf__free *f = p;
    pthread_mutex_lock(&cl->mu);
    f->next = cl->head;
    cl->head = f;
    pthread_mutex_unlock(&cl->mu);
}

void gf__alloc_stats(gf__alloc *a, gf_memory_stats *st) {
    st->bytes_in_use = atomic_load(&a->in_use);
    st->bytes_cached = atomic_load(&a->cached);
    st->system_allocs = atomic_load(&a->sys_allocs);
}
