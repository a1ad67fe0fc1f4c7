/*
 * pool.c - the work-stealing pool: pthread workers with Chase-Lev deques, a
 * shared injection queue for tasks submitted from outside, spin-then-sleep
 * idling, helping waits, and optional pinning of workers to cores (hwloc).
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef GF_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "deque.h"
#include "par.h"

#define GF__SPINS 2000
/* Deques lent to threads that are not workers (request threads realizing
 * their own graphs) while they wait or lead a kernel's team. */
#define GF__EXT 64

typedef struct {
    gf__deque q;
    pthread_t thread;
    struct gf__pool *pool;
    int id;
    uint64_t rng; /* victim selection (xorshift) */
} gf__worker;

struct gf__pool {
    int nworkers, nthreads;
    int nstarted; /* worker threads running (joined by destroy); creator only */
    gf__worker *w;
    /* A thread waiting in gf__pool_wait borrows one of these deques for the
     * wait, so the tasks it readies skip the injector's lock. ext_hi is how
     * many slots were ever lent (thieves look at those only). */
    gf__worker ext[GF__EXT];
    atomic_bool ext_used[GF__EXT];
    atomic_int ext_hi;
    /* The injection queue: a growable ring under a mutex. Only tasks from
     * threads that are not workers of this pool pass through it. */
    pthread_mutex_t inj_mu;
    gf__task **inj;
    int64_t inj_head, inj_tail, inj_cap;
    _Alignas(64) atomic_int_fast64_t inj_count;
    /* Sleeping. */
    _Alignas(64) atomic_uint_fast64_t epoch; /* bumped by every submit */
    atomic_int sleepers;
    pthread_mutex_t sleep_mu;
    pthread_cond_t sleep_cv;
    atomic_bool stop;
    _Alignas(64) atomic_int active; /* tasks running now */
#ifdef GF_HAVE_HWLOC
    hwloc_topology_t topo;
    bool have_topo;
#endif
    bool pin;
};

/* The worker this thread is, if any (per pool: checked against p). */
static _Thread_local gf__worker *gf__self;

/* Zeroed memory aligned to a cache line: the pool and the workers hold
 * _Alignas(64) deques, which plain calloc does not align. */
static void *gf__zalloc64(size_t n) {
    n = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

static inline void gf__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static gf__task *gf__inj_pop(gf__pool *p) {
    if (atomic_load_explicit(&p->inj_count, memory_order_acquire) == 0) return NULL;
    gf__task *t = NULL;
    pthread_mutex_lock(&p->inj_mu);
    if (p->inj_head != p->inj_tail) {
        t = p->inj[p->inj_head % p->inj_cap];
        p->inj_head++;
        atomic_fetch_sub(&p->inj_count, 1);
    }
    pthread_mutex_unlock(&p->inj_mu);
    return t;
}

static bool gf__inj_push(gf__pool *p, gf__task *t) {
    pthread_mutex_lock(&p->inj_mu);
    if (p->inj_tail - p->inj_head == p->inj_cap) {
        int64_t cap = p->inj_cap ? p->inj_cap * 2 : 256;
        gf__task **n = malloc((size_t)cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&p->inj_mu);
            return false;
        }
        for (int64_t i = p->inj_head; i < p->inj_tail; i++)
            n[i - p->inj_head] = p->inj[i % p->inj_cap];
        p->inj_tail -= p->inj_head;
        p->inj_head = 0;
        free(p->inj);
        p->inj = n;
        p->inj_cap = cap;
    }
    p->inj[p->inj_tail % p->inj_cap] = t;
    p->inj_tail++;
    atomic_fetch_add(&p->inj_count, 1);
    pthread_mutex_unlock(&p->inj_mu);
    return true;
}

/* Makes n new tasks known: sleeping workers are woken, one per task at most. */
static void gf__wake_n(gf__pool *p, int n) {
    if (p->nworkers == 0) return; /* nobody sleeps: waiting threads never do */
    atomic_fetch_add(&p->epoch, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->sleep_mu);
        if (n > 1) pthread_cond_broadcast(&p->sleep_cv);
        else pthread_cond_signal(&p->sleep_cv);
        pthread_mutex_unlock(&p->sleep_mu);
    }
}

static void gf__wake(gf__pool *p) { gf__wake_n(p, 1); }

/* Runs a task, counted as running for the budget meanwhile. */
static void gf__run(gf__pool *p, gf__task *t) {
    gf__pool_task_begin(p);
    t->run(t);
    gf__pool_task_end(p);
}

void gf__pool_submit(gf__pool *p, gf__task *t) {
    gf__worker *me = gf__self;
    if (me && me->pool == p && gf__deque_push(&me->q, t) == 0) {
        gf__wake(p);
        return;
    }
    if (!gf__inj_push(p, t)) {
        /* No memory to queue it: run it here, which is always correct. */
        gf__run(p, t);
        return;
    }
    gf__wake(p);
}

static uint64_t gf__xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* One attempt to find work: own deque, random victims, the injector. */
static gf__task *gf__find(gf__pool *p, gf__worker *me, uint64_t *rng) {
    gf__task *t = NULL;
    if (me && (t = gf__deque_pop(&me->q))) return t;
    int n = p->nworkers;
    int ne = atomic_load_explicit(&p->ext_hi, memory_order_acquire);
    int all = n + ne;
    if (all) {
        int start = (int)(gf__xorshift(rng) % (uint64_t)all);
        for (int k = 0; k < all; k++) {
            int i = (start + k) % all;
            gf__worker *v = i < n ? &p->w[i] : &p->ext[i - n];
            if (v == me) continue;
            if ((t = gf__deque_steal(&v->q))) return t;
        }
    }
    return gf__inj_pop(p);
}

static void gf__pin(gf__pool *p, int id) {
#ifdef GF_HAVE_HWLOC
    if (!p->pin || !p->have_topo) return;
    int ncores = hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_CORE);
    if (ncores <= 0) return;
    hwloc_obj_t core = hwloc_get_obj_by_type(p->topo, HWLOC_OBJ_CORE, (unsigned)(id % ncores));
    if (core && core->cpuset) {
        hwloc_bitmap_t set = hwloc_bitmap_dup(core->cpuset);
        hwloc_bitmap_singlify(set);
        hwloc_set_cpubind(p->topo, set, HWLOC_CPUBIND_THREAD);
        hwloc_bitmap_free(set);
    }
#else
    (void)p, (void)id;
#endif
}

static void *gf__worker_main(void *arg) {
    gf__worker *me = arg;
    gf__pool *p = me->pool;
    gf__self = me;
    /* Worker i takes core i+1: core 0 is left to the thread that submits. */
    gf__pin(p, me->id + 1);
    while (!atomic_load_explicit(&p->stop, memory_order_acquire)) {
        /* The epoch is read before looking for work: a task submitted after
         * the search failed then always changes it, so this worker cannot go
         * to sleep on a wake-up it missed (reading it after the search could). */
        uint64_t e = atomic_load(&p->epoch);
        gf__task *t = gf__find(p, me, &me->rng);
        if (t) {
            gf__run(p, t);
            continue;
        }
        /* Spin a little (work usually arrives in bursts), then sleep. */
        bool found = false;
        for (int i = 0; i < GF__SPINS && !found; i++) {
            gf__cpu_relax();
            if (atomic_load_explicit(&p->epoch, memory_order_relaxed) != e) found = true;
        }
        if (found) continue;
        pthread_mutex_lock(&p->sleep_mu);
        atomic_fetch_add(&p->sleepers, 1);
        if (atomic_load(&p->epoch) == e && !atomic_load(&p->stop))
            pthread_cond_wait(&p->sleep_cv, &p->sleep_mu);
        atomic_fetch_sub(&p->sleepers, 1);
        pthread_mutex_unlock(&p->sleep_mu);
    }
    gf__self = NULL;
    return NULL;
}

/* Lends a free external deque to the calling thread (NULL if none). */
static gf__worker *gf__ext_claim(gf__pool *p) {
    for (int i = 0; i < GF__EXT; i++) {
        bool f = false;
        if (atomic_compare_exchange_strong(&p->ext_used[i], &f, true)) {
            int hi = atomic_load(&p->ext_hi);
            while (hi < i + 1 && !atomic_compare_exchange_weak(&p->ext_hi, &hi, i + 1)) {
            }
            return &p->ext[i];
        }
    }
    return NULL;
}

/* Gives the deque back; tasks still on it (readied by this thread for other
 * jobs) move to the injector so they are not stranded. */
static void gf__ext_release(gf__pool *p, gf__worker *w) {
    gf__task *t;
    bool moved = false;
    while ((t = gf__deque_pop(&w->q))) {
        if (!gf__inj_push(p, t)) {
            gf__run(p, t); /* no memory to queue it: run it here */
            continue;
        }
        moved = true;
    }
    atomic_store(&p->ext_used[w - p->ext], false);
    if (moved) gf__wake(p);
}

void gf__pool_wait(gf__pool *p, atomic_long *remaining) {
    gf__worker *me = gf__self && gf__self->pool == p ? gf__self : NULL;
    gf__worker *saved = gf__self, *lent = NULL;
    if (!me && (lent = gf__ext_claim(p))) gf__self = me = lent;
    uint64_t rng = (uint64_t)(uintptr_t)remaining | 1;
    int idle = 0;
    while (atomic_load_explicit(remaining, memory_order_acquire) > 0) {
        gf__task *t = gf__find(p, me, me ? &me->rng : &rng);
        if (t) {
            gf__run(p, t);
            idle = 0;
            continue;
        }
        /* Nothing to steal: the rest is running elsewhere. */
        if (++idle < GF__SPINS) gf__cpu_relax();
        else sched_yield();
    }
    if (lent) {
        gf__ext_release(p, lent);
        gf__self = saved;
    }
}

/* ------------------------------------------------------------ teams */

/* A kernel's team: the leader (the thread that started the kernel) pushes
 * helper tasks on its own deque; idle threads steal them and join. */
typedef struct gf__team gf__team;
typedef struct {
    gf__task base;
    gf__team *team;
} gf__helper;

struct gf__team {
    gf__team_fn fn;
    void *arg;
    atomic_int next_slot; /* the next participant's slot (the leader is 0) */
    _Alignas(64) atomic_int live; /* helpers pushed and not finished or taken back */
};

static void gf__helper_run(gf__task *t) {
    gf__team *tm = ((gf__helper *)t)->team;
    tm->fn(tm->arg, atomic_fetch_add_explicit(&tm->next_slot, 1, memory_order_relaxed));
    /* The last touch of the team: the leader's stack frame may go at 0. */
    atomic_fetch_sub_explicit(&tm->live, 1, memory_order_release);
}

void gf__pool_team(gf__pool *p, int team, gf__team_fn fn, void *arg) {
    if (team > p->nthreads) team = p->nthreads;
    gf__worker *me = gf__self && gf__self->pool == p ? gf__self : NULL;
    gf__worker *saved = gf__self, *lent = NULL;
    if (!me && (lent = gf__ext_claim(p))) gf__self = me = lent;
    if (team <= 1 || !me) {
        /* No deque to lead from (every one lent): the kernel runs here. */
        if (lent) {
            gf__ext_release(p, lent);
            gf__self = saved;
        }
        fn(arg, 0);
        return;
    }
    gf__team tm = {.fn = fn, .arg = arg};
    atomic_init(&tm.next_slot, 1);
    atomic_init(&tm.live, 0);
    gf__helper h[team - 1];
    int pushed = 0;
    for (; pushed < team - 1; pushed++) {
        h[pushed] = (gf__helper){.base.run = gf__helper_run, .team = &tm};
        atomic_fetch_add_explicit(&tm.live, 1, memory_order_relaxed);
        if (gf__deque_push(&me->q, &h[pushed].base) != 0) {
            atomic_fetch_sub_explicit(&tm.live, 1, memory_order_relaxed);
            break; /* no memory to grow the deque: a smaller team */
        }
    }
    if (pushed) gf__wake_n(p, pushed);
    fn(arg, 0);
    /* Join. Helpers nobody took are popped back (they are on top of this
     * deque: pushed last); the leader then waits only for helpers that are
     * running, each on its last tile at most. It runs no other task
     * meanwhile: a kernel's scratch buffers belong to its thread until it
     * returns, and another kernel run here would reuse them. */
    bool popping = true;
    int idle = 0;
    while (atomic_load_explicit(&tm.live, memory_order_acquire) > 0) {
        if (popping) {
            gf__task *t = gf__deque_pop(&me->q);
            if (t && t >= &h[0].base && t <= &h[pushed - 1].base) {
                atomic_fetch_sub_explicit(&tm.live, 1, memory_order_relaxed);
                continue;
            }
            if (t) gf__deque_push(&me->q, t); /* another's: back where it was */
            popping = false;
            continue;
        }
        if (++idle < GF__SPINS) gf__cpu_relax();
        else sched_yield(); /* a helper lost its core: let it have ours */
    }
    if (lent) {
        gf__ext_release(p, lent);
        gf__self = saved;
    }
}

int gf__pool_budget(gf__pool *p) {
    if (p->nthreads <= 1) return 1;
    int a = atomic_load_explicit(&p->active, memory_order_relaxed);
    int b = a > 0 ? p->nthreads / a : p->nthreads;
    return b > 0 ? b : 1;
}

/* The count is of tasks running, not queued ones: counting queued tasks
 * too (so that a kernel leaves threads to tasks about to start) was
 * measured slower for MLP training on 2 threads (7.9k vs 9.7k samples/s at
 * batch 256): a big GEMM that gets 1 thread because a small task is queued
 * finishes late while the other thread idles. With one thread the budget is
 * always 1: no shared counter to bump. */
void gf__pool_task_begin(gf__pool *p) {
    if (p->nthreads > 1) atomic_fetch_add_explicit(&p->active, 1, memory_order_relaxed);
}
void gf__pool_task_end(gf__pool *p) {
    if (p->nthreads > 1) atomic_fetch_sub_explicit(&p->active, 1, memory_order_relaxed);
}

gf__pool *gf__pool_create(int nworkers, int nthreads, bool pin) {
    gf__pool *p = gf__zalloc64(sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads;
    p->pin = pin;
    pthread_mutex_init(&p->inj_mu, NULL);
    pthread_mutex_init(&p->sleep_mu, NULL);
    pthread_cond_init(&p->sleep_cv, NULL);
    atomic_init(&p->inj_count, 0);
    atomic_init(&p->epoch, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->active, 0);
    atomic_init(&p->ext_hi, 0);
    for (int i = 0; i < GF__EXT; i++) {
        atomic_init(&p->ext_used[i], false);
        p->ext[i].pool = p;
        p->ext[i].id = -1 - i;
        p->ext[i].rng = 0xD1B54A32D192ED03ull * (uint64_t)(i + 1);
        if (gf__deque_init(&p->ext[i].q, 256) != 0) {
            for (int k = i; k < GF__EXT; k++) atomic_init(&p->ext[k].q.array, NULL);
            gf__pool_destroy(p);
            return NULL;
        }
    }
#ifdef GF_HAVE_HWLOC
    if (pin && hwloc_topology_init(&p->topo) == 0) {
        if (hwloc_topology_load(p->topo) == 0) p->have_topo = true;
        else hwloc_topology_destroy(p->topo);
    }
#endif
    p->w = gf__zalloc64((size_t)(nworkers ? nworkers : 1) * sizeof *p->w);
    if (!p->w) {
        gf__pool_destroy(p);
        return NULL;
    }
    /* Every worker and deque is set up, and nworkers written, before the
     * first thread starts: workers read nworkers and steal from every deque
     * from their first loop on (writing them later was a data race). */
    for (int i = 0; i < nworkers; i++) {
        gf__worker *w = &p->w[i];
        w->pool = p;
        w->id = i;
        w->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        p->nworkers = i + 1; /* deques to free, the failed one included */
        if (gf__deque_init(&w->q, 256) != 0) {
            gf__pool_destroy(p);
            return NULL;
        }
    }
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&p->w[i].thread, NULL, gf__worker_main, &p->w[i]) != 0) {
            gf__pool_destroy(p);
            return NULL;
        }
        p->nstarted = i + 1;
    }
    return p;
}

void gf__pool_destroy(gf__pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->sleep_mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->sleep_cv);
    pthread_mutex_unlock(&p->sleep_mu);
    for (int i = 0; i < p->nstarted; i++) pthread_join(p->w[i].thread, NULL);
    for (int i = 0; i < p->nworkers; i++) gf__deque_destroy(&p->w[i].q);
    for (int i = 0; i < GF__EXT; i++) gf__deque_destroy(&p->ext[i].q);
    free(p->w);
    free(p->inj);
#ifdef GF_HAVE_HWLOC
    if (p->have_topo) hwloc_topology_destroy(p->topo);
#endif
    pthread_mutex_destroy(&p->inj_mu);
    pthread_mutex_destroy(&p->sleep_mu);
    pthread_cond_destroy(&p->sleep_cv);
    free(p);
}
