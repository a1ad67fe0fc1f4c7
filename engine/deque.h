/*
 * deque.h - the Chase-Lev work-stealing deque, in the C11-atomics form of
 * Lê, Pop, Cohen and Zappa Nardelli, "Correct and Efficient Work-Stealing for
 * Weak Memory Models" (PPoPP 2013), itself after Chase and Lev, "Dynamic
 * Circular Work-Stealing Deque" (SPAA 2005).
 *
 * The owner pushes and pops at the bottom (LIFO); thieves steal from the top
 * (FIFO). top and bottom sit on cache lines of their own so the owner and
 * thieves do not false-share. A full array is replaced by one twice the size;
 * old arrays are kept until the deque is destroyed, because a thief may still
 * be reading one (no reclamation scheme is needed that way).
 */
#ifndef GF_DEQUE_H
#define GF_DEQUE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct gf__darray {
    int64_t size; /* power of two */
    struct gf__darray *older;
    _Atomic(void *) buf[];
} gf__darray;

typedef struct {
    _Alignas(64) atomic_int_fast64_t top;
    _Alignas(64) atomic_int_fast64_t bottom;
    _Alignas(64) _Atomic(gf__darray *) array;
    char pad[64 - sizeof(void *)];
} gf__deque;

static inline gf__darray *gf__darray_new(int64_t size, gf__darray *older) {
    gf__darray *a = malloc(sizeof *a + (size_t)size * sizeof(void *));
    if (!a) return NULL;
    a->size = size;
    a->older = older;
    return a;
}

static inline int gf__deque_init(gf__deque *q, int64_t size) {
    atomic_init(&q->top, 0);
    atomic_init(&q->bottom, 0);
    gf__darray *a = gf__darray_new(size, NULL);
    atomic_init(&q->array, a);
    return a ? 0 : -1;
}

static inline void gf__deque_destroy(gf__deque *q) {
    gf__darray *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    while (a) {
        gf__darray *o = a->older;
        free(a);
        a = o;
    }
}

/* Owner only. Returns -1 if the array could not grow (the item is not pushed). */
static inline int gf__deque_push(gf__deque *q, void *x) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    gf__darray *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    if (b - t > a->size - 1) {
        gf__darray *na = gf__darray_new(a->size * 2, a);
        if (!na) return -1;
        for (int64_t i = t; i < b; i++)
            atomic_store_explicit(&na->buf[i & (na->size - 1)],
                                  atomic_load_explicit(&a->buf[i & (a->size - 1)],
                                                       memory_order_relaxed),
                                  memory_order_relaxed);
        atomic_store_explicit(&q->array, na, memory_order_release);
        a = na;
    }
    atomic_store_explicit(&a->buf[b & (a->size - 1)], x, memory_order_relaxed);
    /* A release store, not the paper's release fence + relaxed store: the
     * same ordering (a plain mov on x86), and ThreadSanitizer, which does not
     * model fences, then sees that a thief's acquire load of bottom makes
     * what the owner wrote before the push (the task) visible to it. */
    atomic_store_explicit(&q->bottom, b + 1, memory_order_release);
    return 0;
}

/* Owner only. NULL when empty. */
static inline void *gf__deque_pop(gf__deque *q) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
    gf__darray *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    atomic_store_explicit(&q->bottom, b, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    void *x = NULL;
    if (t <= b) {
        x = atomic_load_explicit(&a->buf[b & (a->size - 1)], memory_order_relaxed);
        if (t == b) {
            /* The last item: race the thieves for it. */
            if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1,
                                                         memory_order_seq_cst,
                                                         memory_order_relaxed))
                x = NULL;
            atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

/* Any thread. NULL when empty or when it lost a race (try elsewhere). */
static inline void *gf__deque_steal(gf__deque *q) {
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
    if (t >= b) return NULL;
    gf__darray *a = atomic_load_explicit(&q->array, memory_order_consume);
    void *x = atomic_load_explicit(&a->buf[t & (a->size - 1)], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return NULL;
    return x;
}

/* Approximate size (any thread). */
static inline int64_t gf__deque_size(gf__deque *q) {
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    return b > t ? b - t : 0;
}

#endif /* GF_DEQUE_H */
