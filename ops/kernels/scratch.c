/*
 * scratch.c - per-thread scratch buffers for kernels (packing buffers,
 * partial sums, row copies). Each thread keeps a few slots that grow on
 * demand and are reused by every later kernel on that thread, so steady-state
 * training makes no system allocations; they are freed when the thread exits.
 */
#include <pthread.h>
#include <stdlib.h>

#include "kernels.h"

typedef struct {
    void *p[GF__KSCRATCH_SLOTS];
    size_t cap[GF__KSCRATCH_SLOTS];
} gf__kscr;

/* Initial size of every slot (see gf__kscratch). */
#define GF__KSCR_MIN ((size_t)64 * 1024)

static pthread_key_t gf__kscr_key;
static pthread_once_t gf__kscr_once = PTHREAD_ONCE_INIT;
static _Thread_local gf__kscr *gf__kscr_self;

static void gf__kscr_free(void *v) {
    gf__kscr *s = v;
    for (int i = 0; i < GF__KSCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void gf__kscr_init(void) { pthread_key_create(&gf__kscr_key, gf__kscr_free); }

void *gf__kscratch(int slot, size_t bytes) {
    gf__kscr *s = gf__kscr_self;
    if (!s) {
        pthread_once(&gf__kscr_once, gf__kscr_init);
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        pthread_setspecific(gf__kscr_key, s);
        gf__kscr_self = s;
        /* Every slot gets GF__KSCR_MIN at once: a thread's first kernel then
         * sizes the buffers of every other small kernel too. Lazily per slot,
         * a thread that first ran, say, cross_entropy after many steps of
         * matmuls made a system allocation in the middle of training (which
         * thread runs which node varies from run to run). */
        for (int i = 0; i < GF__KSCRATCH_SLOTS; i++) {
            void *q = NULL;
            if (posix_memalign(&q, 64, GF__KSCR_MIN) != 0) break;
            s->p[i] = q;
            s->cap[i] = GF__KSCR_MIN;
        }
    }
    if (bytes <= s->cap[slot]) return s->p[slot];
    size_t cap = s->cap[slot] ? s->cap[slot] : GF__KSCR_MIN;
    while (cap < bytes) cap *= 2;
    void *p = NULL;
    if (posix_memalign(&p, 64, cap) != 0) return NULL;
    free(s->p[slot]);
    s->p[slot] = p;
    s->cap[slot] = cap;
    return p;
}
