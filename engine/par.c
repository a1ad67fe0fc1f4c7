/*
 * par.c - gf__par_team and gf__par_for (par.h) on the two backends: the
 * engine's own pool (pool.c leads the team) or OpenMP `parallel` regions.
 */
#include "par.h"

#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "pool.h"

void gf__par_team(const gf__par *par, int team, gf__team_fn fn, void *arg) {
    const int nt = gf__par_threads(par);
    if (team > nt) team = nt;
    if (team <= 1) {
        fn(arg, 0);
        return;
    }
    if (par->omp || !par->pool) {
#pragma omp parallel num_threads(team)
        {
            int slot = 0;
#ifdef _OPENMP
            slot = omp_get_thread_num();
#endif
            fn(arg, slot);
        }
        return;
    }
    gf__pool_team(par->pool, team, fn, arg);
}

int gf__par_plan_threads(const gf__par *par) {
    const int nt = gf__par_threads(par);
    if (nt <= 1 || par->omp || !par->pool) return nt;
    const int b = gf__pool_budget(par->pool);
    return b < nt ? b : nt;
}

typedef struct {
    gf__range_fn fn;
    void *arg;
    int64_t n, grain, ntiles;
    _Alignas(64) atomic_int_fast64_t next;
} gf__pfor;

static void gf__pfor_run(void *a, int slot) {
    (void)slot;
    gf__pfor *j = a;
    for (int64_t t; (t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->ntiles;) {
        const int64_t lo = t * j->grain, hi = lo + j->grain < j->n ? lo + j->grain : j->n;
        j->fn(j->arg, lo, hi);
    }
}

void gf__par_for(const gf__par *par, int64_t n, int64_t grain, gf__range_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t ntiles = (n + grain - 1) / grain;
    const int nt = gf__par_threads(par);
    if (nt <= 1 || ntiles <= 1) {
        fn(arg, 0, n);
        return;
    }
    gf__pfor j = {.fn = fn, .arg = arg, .n = n, .grain = grain, .ntiles = ntiles};
    atomic_init(&j.next, 0);
    gf__par_team(par, ntiles < nt ? (int)ntiles : nt, gf__pfor_run, &j);
}
