/*
 * pool.h - the engine's work-stealing thread pool (engine/pool.c).
 *
 * Workers each own a Chase-Lev deque (engine/deque.h). A task pushed by a
 * worker goes on its own deque (LIFO: the most recently readied work runs
 * next, which keeps memory low); tasks from other threads go to a shared
 * injection queue. Idle workers steal from random victims, then take from the
 * injector, spin briefly and sleep. A thread waiting for a job runs tasks
 * instead of blocking, so waiting from inside a worker cannot deadlock.
 */
#ifndef GF_POOL_H
#define GF_POOL_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct gf__task gf__task;
typedef void (*gf__task_fn)(gf__task *t);
struct gf__task {
    gf__task_fn run;
};

typedef struct gf__pool gf__pool;

/* nworkers >= 0 background workers (the engine's thread count minus the
 * calling thread). NULL on failure. */
gf__pool *gf__pool_create(int nworkers, int nthreads, bool pin);
void gf__pool_destroy(gf__pool *p);
/* Makes t runnable. Any thread. */
void gf__pool_submit(gf__pool *p, gf__task *t);
/* Runs tasks until *remaining reaches 0. Any thread. */
void gf__pool_wait(gf__pool *p, atomic_long *remaining);
/* gf__par_team's pool backend (par.h): the calling thread leads a team of
 * at most `team` participants (capped at the pool's threads). */
void gf__pool_team(gf__pool *p, int team, void (*fn)(void *arg, int slot), void *arg);
/* The thread budget for a kernel that starts now: the engine's threads
 * divided among the tasks running, so that runnable threads never exceed
 * the cores: a lone big node gets them all. */
int gf__pool_budget(gf__pool *p);
/* Bookkeeping around a task's run (for the budget). */
void gf__pool_task_begin(gf__pool *p);
void gf__pool_task_end(gf__pool *p);

#endif /* GF_POOL_H */
