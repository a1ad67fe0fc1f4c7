/*
 * par.h - intra-op parallelism as the engine hands it to kernels.
 *
 * A kernel receives a gf__par (the node's `par`) and splits its own loops
 * with gf__par_for (independent tiles) or gf__par_team (participants that
 * share out work themselves). Kernels never create threads: on the pool
 * backend the calling thread runs tiles itself and idle workers of the
 * engine's pool join; on the OpenMP backend an `omp parallel` team of at most
 * `nthreads` runs them. Which thread runs which tile never changes a result
 * bit: tiles are cut from the data alone and write disjoint outputs.
 */
#ifndef GF_PAR_H
#define GF_PAR_H

#include <stdbool.h>
#include <stdint.h>

struct gf__pool;

typedef struct gf__par {
    struct gf__pool *pool; /* pool backend: the engine's pool (NULL: no pool) */
    int nthreads;          /* the most threads a kernel may use; <= 1: serial */
    bool omp;              /* OpenMP backend: teams are `omp parallel` regions */
} gf__par;

/* The most threads a kernel handed par may use (1 for NULL). */
static inline int gf__par_threads(const gf__par *par) {
    return par && par->nthreads > 1 ? par->nthreads : 1;
}

/* How many threads a kernel starting now should plan its tiles for: on the
 * pool, the threads not busy with other tasks (at least 1, at most
 * nthreads: a racy hint, read once); on OpenMP, nthreads. Planning only
 * sizes the tiles (fewer, larger ones when the others are busy, so less
 * repacking); it never changes a result bit. */
int gf__par_plan_threads(const gf__par *par);

/* Whether a loop of this much work should be split at all: several threads
 * and `cond` (the kernel's own work cut-off). Otherwise a kernel runs its
 * plain loop with no call into the scheduler. */
#define GF__PAR_WORTH(par, cond) (gf__par_threads(par) > 1 && (cond))

/* fn(arg, slot) on up to `team` participants (capped at gf__par_threads):
 * the calling thread is slot 0, each other one that joins gets the next slot
 * (so slots are distinct and < team); some slots may never run. Returns when
 * every participant has returned. fn shares out the work itself (an atomic
 * counter over tiles fixed by the data), so the result never depends on how
 * many join. Pool backend: the caller waits only for participants already
 * running (those not started are taken back), so a join never waits for a
 * busy worker. */
typedef void (*gf__team_fn)(void *arg, int slot);
void gf__par_team(const gf__par *par, int team, gf__team_fn fn, void *arg);

/* fn(arg, lo, hi) over [0, n) cut into tiles of `grain` (the last one
 * shorter), every index exactly once. Tiles go to participants dynamically;
 * with one thread or one tile, a single call fn(arg, 0, n). Iterations must
 * be independent (each writes its own outputs). */
typedef void (*gf__range_fn)(void *arg, int64_t lo, int64_t hi);
void gf__par_for(const gf__par *par, int64_t n, int64_t grain, gf__range_fn fn, void *arg);

/* A tile size for n iterations of about `cost` work each: tiles of at least
 * `min_work` work, at most 256 of them, from the sizes alone (never the
 * thread count). */
static inline int64_t gf__par_grain(int64_t n, int64_t cost, int64_t min_work) {
    if (cost < 1) cost = 1;
    /* cost may be a saturated estimate (INT64_MAX): no min_work + cost. */
    int64_t g = cost >= min_work ? 1 : (min_work + cost - 1) / cost;
    int64_t cap = (n + 255) / 256;
    if (g < cap) g = cap;
    return g < 1 ? 1 : g;
}

#endif /* GF_PAR_H */
