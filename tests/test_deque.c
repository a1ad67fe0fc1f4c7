/*
 * test_deque.c - the engine's low-level concurrency pieces: the Chase-Lev
 * work-stealing deque (engine/deque.h) and the work-stealing pool
 * (engine/pool.c). Every item and task is counted: none lost, none twice.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/deque.h"
#include "engine/pool.h"

#if defined(__SANITIZE_THREAD__)
/* Criterion's sandbox (BoxFort) maps a shared arena at base 0x200000000000 +
 * (rand_r() & 0x3fffff) << 24 and gives up after a few tries; under
 * ThreadSanitizer nearly all of that range is TSan's shadow or protected, so
 * the runner fails ("Could not initialize inheritable arena") or crashes.
 * This rand_r (it interposes on libc's for libcriterion) keeps the pick in
 * TSan's application range 0x558000000000..0x568000000000. Test harness only. */
int rand_r(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return (int)(0x358000u + ((*seed >> 8) & 0xffffu));
}
#endif

/* Items are the integers 1..n disguised as pointers (NULL means empty). */
#define ITEM(i) ((void *)(uintptr_t)(i))
#define INDEX(p) ((int64_t)(uintptr_t)(p))

/* ------------------------------------------------------------ the deque */

Test(deque, lifo_push_pop_grows_past_initial_size) {
    gf__deque q;
    cr_assert_eq(gf__deque_init(&q, 4), 0);
    cr_assert_null(gf__deque_pop(&q), "a new deque is empty");
    const int64_t n = 1000; /* 4 -> 1024: eight doublings */
    for (int64_t i = 1; i <= n; i++) {
        cr_assert_eq(gf__deque_push(&q, ITEM(i)), 0);
        cr_assert_eq(gf__deque_size(&q), i);
    }
    cr_assert_geq(atomic_load(&q.array)->size, n, "the array grew to hold every item");
    for (int64_t i = n; i >= 1; i--) {
        void *x = gf__deque_pop(&q);
        cr_assert_eq(INDEX(x), i, "pop %lld gave %lld (expected LIFO)", (long long)(n - i),
                     (long long)INDEX(x));
    }
    cr_assert_null(gf__deque_pop(&q));
    cr_assert_null(gf__deque_steal(&q));
    cr_assert_eq(gf__deque_size(&q), 0);
    /* Still usable after emptying: interleaved pushes and pops. */
    cr_assert_eq(gf__deque_push(&q, ITEM(7)), 0);
    cr_assert_eq(gf__deque_push(&q, ITEM(8)), 0);
    cr_assert_eq(INDEX(gf__deque_pop(&q)), 8);
    cr_assert_eq(gf__deque_push(&q, ITEM(9)), 0);
    cr_assert_eq(INDEX(gf__deque_pop(&q)), 9);
    cr_assert_eq(INDEX(gf__deque_pop(&q)), 7);
    cr_assert_null(gf__deque_pop(&q));
    gf__deque_destroy(&q);
}

Test(deque, steal_is_fifo_and_meets_pop_in_the_middle) {
    gf__deque q;
    cr_assert_eq(gf__deque_init(&q, 2), 0);
    for (int64_t i = 1; i <= 100; i++) cr_assert_eq(gf__deque_push(&q, ITEM(i)), 0);
    /* Steal the oldest half in order, pop the newest half in reverse. */
    for (int64_t i = 1; i <= 50; i++) cr_assert_eq(INDEX(gf__deque_steal(&q)), i);
    for (int64_t i = 100; i > 50; i--) cr_assert_eq(INDEX(gf__deque_pop(&q)), i);
    cr_assert_null(gf__deque_steal(&q));
    cr_assert_null(gf__deque_pop(&q));
    /* Wrap-around: the ring indices keep growing past the array size. */
    for (int round = 0; round < 10; round++) {
        for (int64_t i = 1; i <= 3; i++) cr_assert_eq(gf__deque_push(&q, ITEM(i)), 0);
        cr_assert_eq(INDEX(gf__deque_steal(&q)), 1);
        cr_assert_eq(INDEX(gf__deque_pop(&q)), 3);
        cr_assert_eq(INDEX(gf__deque_steal(&q)), 2);
        cr_assert_null(gf__deque_steal(&q));
    }
    gf__deque_destroy(&q);
}

#define STRESS_N 2000000
#define STRESS_THIEVES 3

typedef struct {
    gf__deque *q;
    atomic_uchar *seen;
    const int64_t *payload; /* written by the owner just before each push */
    atomic_bool *done;
    int64_t taken, bad_payload;
} stress_thief;

/* What the owner writes (plainly, not atomically) for item i before pushing
 * it: a thief that steals i must see it (the deque publishes the item). */
static int64_t payload_of(int64_t i) { return i * 3 + 1; }

static void *thief_main(void *arg) {
    stress_thief *th = arg;
    for (;;) {
        bool done = atomic_load_explicit(th->done, memory_order_acquire);
        void *x = gf__deque_steal(th->q);
        if (x) {
            atomic_fetch_add_explicit(&th->seen[INDEX(x)], 1, memory_order_relaxed);
            if (th->payload[INDEX(x)] != payload_of(INDEX(x))) th->bad_payload++;
            th->taken++;
        } else if (done && gf__deque_size(th->q) == 0) {
            break;
        }
    }
    return NULL;
}

Test(deque, stress_owner_push_pop_against_three_thieves, .timeout = 120) {
    gf__deque q;
    cr_assert_eq(gf__deque_init(&q, 16), 0); /* small: the stress grows it too */
    atomic_uchar *seen = calloc(STRESS_N + 1, sizeof *seen);
    cr_assert_not_null(seen);
    int64_t *payload = calloc(STRESS_N + 1, sizeof *payload);
    cr_assert_not_null(payload);
    atomic_bool done = false;
    stress_thief th[STRESS_THIEVES];
    pthread_t tid[STRESS_THIEVES];
    for (int i = 0; i < STRESS_THIEVES; i++) {
        th[i] = (stress_thief){.q = &q, .seen = seen, .payload = payload, .done = &done};
        cr_assert_eq(pthread_create(&tid[i], NULL, thief_main, &th[i]), 0);
    }
    /* The owner: bursts of pushes, each followed by some pops, so the deque
     * fills, empties (the last-item race) and grows while being robbed. */
    uint64_t rng = 0x243F6A8885A308D3ull;
    int64_t next = 1, popped = 0;
    while (next <= STRESS_N) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int64_t burst = (int64_t)(rng % 64) + 1;
        for (int64_t k = 0; k < burst && next <= STRESS_N; k++, next++) {
            payload[next] = payload_of(next);
            cr_assert_eq(gf__deque_push(&q, ITEM(next)), 0);
        }
        int64_t pops = (int64_t)((rng >> 8) % 64);
        for (int64_t k = 0; k < pops; k++) {
            void *x = gf__deque_pop(&q);
            if (!x) break;
            atomic_fetch_add_explicit(&seen[INDEX(x)], 1, memory_order_relaxed);
            popped++;
        }
    }
    /* Drain what is left, racing the thieves to the end. */
    for (void *x; (x = gf__deque_pop(&q));) {
        atomic_fetch_add_explicit(&seen[INDEX(x)], 1, memory_order_relaxed);
        popped++;
    }
    atomic_store_explicit(&done, true, memory_order_release);
    int64_t stolen = 0, bad_payload = 0;
    for (int i = 0; i < STRESS_THIEVES; i++) {
        pthread_join(tid[i], NULL);
        stolen += th[i].taken;
        bad_payload += th[i].bad_payload;
    }
    cr_assert_eq(bad_payload, 0, "%lld stolen items without their payload",
                 (long long)bad_payload);
    int64_t lost = 0, dup = 0, first_bad = 0;
    for (int64_t i = 1; i <= STRESS_N; i++) {
        unsigned c = atomic_load_explicit(&seen[i], memory_order_relaxed);
        if (c != 1 && !first_bad) first_bad = i;
        lost += c == 0;
        dup += c > 1;
    }
    cr_assert_eq(lost + dup, 0, "%lld items lost, %lld taken twice (first: %lld)",
                 (long long)lost, (long long)dup, (long long)first_bad);
    cr_assert_eq(popped + stolen, STRESS_N, "popped %lld + stolen %lld", (long long)popped,
                 (long long)stolen);
    cr_assert_null(gf__deque_pop(&q));
    cr_assert_null(gf__deque_steal(&q));
    cr_log_info("deque stress: %lld popped by the owner, %lld stolen", (long long)popped,
                (long long)stolen);
    free(seen);
    free(payload);
    gf__deque_destroy(&q);
}

/* -------------------------------------------------------------- the pool */

/* A task that counts its runs in its own slot and in a shared counter. */
typedef struct {
    gf__task base;
    atomic_int runs;
    atomic_long *remaining;
} count_task;

static void count_run(gf__task *t) {
    count_task *c = (count_task *)t;
    atomic_fetch_add_explicit(&c->runs, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(c->remaining, 1, memory_order_acq_rel);
}

#define POOL_TASKS 1000000

Test(pool, million_tiny_tasks_from_outside_run_once_for_1_to_8_workers, .timeout = 300) {
    count_task *tasks = malloc(POOL_TASKS * sizeof *tasks);
    cr_assert_not_null(tasks);
    for (int nw = 1; nw <= 8; nw++) {
        gf__pool *p = gf__pool_create(nw, nw + 1, false);
        cr_assert_not_null(p, "pool of %d workers", nw);
        atomic_long remaining = POOL_TASKS;
        for (int64_t i = 0; i < POOL_TASKS; i++) {
            tasks[i].base.run = count_run;
            atomic_init(&tasks[i].runs, 0);
            tasks[i].remaining = &remaining;
        }
        for (int64_t i = 0; i < POOL_TASKS; i++) gf__pool_submit(p, &tasks[i].base);
        gf__pool_wait(p, &remaining);
        cr_assert_eq(atomic_load(&remaining), 0);
        int64_t bad = -1;
        for (int64_t i = 0; i < POOL_TASKS && bad < 0; i++)
            if (atomic_load_explicit(&tasks[i].runs, memory_order_relaxed) != 1) bad = i;
        cr_assert_eq(bad, -1, "%d workers: task %lld ran %d times", nw, (long long)bad,
                     bad >= 0 ? atomic_load(&tasks[bad].runs) : 1);
        gf__pool_destroy(p);
    }
    free(tasks);
}

Test(pool, create_and_destroy_100_times, .timeout = 120) {
    count_task tasks[64];
    for (int round = 0; round < 100; round++) {
        int nw = round % 8 + 1;
        gf__pool *p = gf__pool_create(nw, nw + 1, false);
        cr_assert_not_null(p, "round %d", round);
        /* Half the pools do a little work, half are destroyed idle (some of
         * them before their workers even started). */
        if (round % 2) {
            atomic_long remaining = 64;
            for (int i = 0; i < 64; i++) {
                tasks[i].base.run = count_run;
                atomic_init(&tasks[i].runs, 0);
                tasks[i].remaining = &remaining;
                gf__pool_submit(p, &tasks[i].base);
            }
            gf__pool_wait(p, &remaining);
            for (int i = 0; i < 64; i++) cr_assert_eq(atomic_load(&tasks[i].runs), 1);
        }
        gf__pool_destroy(p);
    }
    /* Zero background workers: the waiting thread runs everything. */
    gf__pool *p = gf__pool_create(0, 1, false);
    cr_assert_not_null(p);
    atomic_long remaining = 64;
    for (int i = 0; i < 64; i++) {
        tasks[i].base.run = count_run;
        atomic_init(&tasks[i].runs, 0);
        tasks[i].remaining = &remaining;
        gf__pool_submit(p, &tasks[i].base);
    }
    gf__pool_wait(p, &remaining);
    for (int i = 0; i < 64; i++) cr_assert_eq(atomic_load(&tasks[i].runs), 1);
    gf__pool_destroy(p);
}

/* Recursive fan-out: a node of a tree of depth d submits `fan` children
 * (from inside a worker, so onto its own deque) and waits for them with
 * gf__pool_wait from inside the task: the wait must help, not block. */
typedef struct fan_task {
    gf__task base;
    gf__pool *pool;
    int depth, fan;
    atomic_long *leaves;      /* leaves run, total */
    atomic_long *parent_left; /* the parent's counter of unfinished children */
    int64_t subtree;          /* leaves under this node, computed by the node */
} fan_task;

static void fan_run(gf__task *t) {
    fan_task *f = (fan_task *)t;
    if (f->depth == 0) {
        atomic_fetch_add(f->leaves, 1);
        f->subtree = 1;
    } else {
        fan_task *kids = calloc((size_t)f->fan, sizeof *kids);
        atomic_long left = f->fan;
        for (int i = 0; i < f->fan; i++) {
            kids[i] = (fan_task){.base.run = fan_run, .pool = f->pool, .depth = f->depth - 1,
                                 .fan = f->fan, .leaves = f->leaves, .parent_left = &left};
            gf__pool_submit(f->pool, &kids[i].base);
        }
        gf__pool_wait(f->pool, &left);
        f->subtree = 0;
        for (int i = 0; i < f->fan; i++) f->subtree += kids[i].subtree;
        free(kids);
    }
    if (f->parent_left) atomic_fetch_sub_explicit(f->parent_left, 1, memory_order_acq_rel);
}

Test(pool, recursive_fan_out_with_waits_inside_workers, .timeout = 120) {
    for (int nw = 1; nw <= 4; nw++) {
        gf__pool *p = gf__pool_create(nw, nw + 1, false);
        cr_assert_not_null(p);
        atomic_long leaves = 0;
        /* 6^6 = 46,656 leaves, 9,331 inner nodes each waiting in a task. */
        atomic_long left = 1;
        fan_task root = {.base.run = fan_run, .pool = p, .depth = 6, .fan = 6,
                         .leaves = &leaves, .parent_left = &left};
        gf__pool_submit(p, &root.base);
        gf__pool_wait(p, &left);
        cr_assert_eq(atomic_load(&leaves), 46656, "%d workers: %ld leaves", nw,
                     atomic_load(&leaves));
        cr_assert_eq(root.subtree, 46656);
        gf__pool_destroy(p);
    }
}

/* Several outside threads submitting and waiting on one pool at once (the
 * many-users pattern of the engine). */
typedef struct {
    gf__pool *pool;
    count_task *tasks;
    int n;
    int bad;
} submitter;

static void *submitter_main(void *arg) {
    submitter *s = arg;
    for (int round = 0; round < 20; round++) {
        atomic_long remaining = s->n;
        for (int i = 0; i < s->n; i++) {
            s->tasks[i].base.run = count_run;
            atomic_init(&s->tasks[i].runs, 0);
            s->tasks[i].remaining = &remaining;
            gf__pool_submit(s->pool, &s->tasks[i].base);
        }
        gf__pool_wait(s->pool, &remaining);
        for (int i = 0; i < s->n; i++)
            if (atomic_load(&s->tasks[i].runs) != 1) s->bad++;
    }
    return NULL;
}

Test(pool, many_outside_threads_share_one_pool, .timeout = 120) {
    gf__pool *p = gf__pool_create(3, 4, false);
    cr_assert_not_null(p);
    enum { NT = 6, N = 5000 };
    submitter s[NT];
    pthread_t tid[NT];
    for (int i = 0; i < NT; i++) {
        s[i] = (submitter){.pool = p, .tasks = calloc(N, sizeof(count_task)), .n = N};
        cr_assert_eq(pthread_create(&tid[i], NULL, submitter_main, &s[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(tid[i], NULL);
        cr_assert_eq(s[i].bad, 0, "submitter %d: %d tasks not run exactly once", i, s[i].bad);
        free(s[i].tasks);
    }
    gf__pool_destroy(p);
}

Test(pool, budget_divides_threads_among_running_tasks) {
    gf__pool *p = gf__pool_create(1, 8, false);
    cr_assert_not_null(p);
    cr_assert_eq(gf__pool_budget(p), 8, "an idle pool gives a lone kernel every thread");
    gf__pool_task_begin(p);
    cr_assert_eq(gf__pool_budget(p), 8);
    gf__pool_task_begin(p);
    cr_assert_eq(gf__pool_budget(p), 4);
    for (int i = 0; i < 14; i++) gf__pool_task_begin(p);
    cr_assert_eq(gf__pool_budget(p), 1, "never below one thread");
    for (int i = 0; i < 16; i++) gf__pool_task_end(p);
    cr_assert_eq(gf__pool_budget(p), 8);
    gf__pool_destroy(p);
}
