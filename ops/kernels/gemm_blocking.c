/*
 * gemm_blocking.c - the GEMM's cache blocking, sized to this machine's
 * caches (hwloc) once per process.
 *
 * The BLIS layering keeps an mc x kc block of packed A in L2, a kc x nr
 * micro-panel of packed B in L1 and a thread's kc x nc panel of packed B in
 * its share of L3 (gemm_ukr.h). Of the three, only kc changes results: kc
 * blocks are summed in order, so kc sets where the partial sums round. It
 * stays each variant's constant (sized for a 32 KiB L1d, which every x86
 * core of the last decade has or exceeds), so one variant gives the same
 * bits on every machine. mc and nc only cut M and N into blocks (every C
 * element is the same sequence of multiply-adds whatever the cut, which
 * tests/test_gemm.c checks), so they follow the caches:
 *
 *   mc = tuned mc * (L2 here / L2 the variant was tuned on)
 *   nc = tuned nc * (L3 per core here / L3 per core it was tuned on)
 *
 * rounded down to a multiple of mr / nr, the factor clamped to [1/2, 2]
 * (a topology that reports something odd, e.g. a VM's host L3 that other
 * guests share, moves a block by at most 2x from a measured value). Each
 * cache counts per core (its size over the cores it serves) and the
 * smallest such share on the machine (hybrid CPUs: a block must fit every
 * core's).
 * Without hwloc (a build without it, or no cache objects reported) the
 * tuned values stay. GF_GEMM_MC / GF_GEMM_NC
 * (positive integers, read once) replace the sized values for every
 * variant, for tuning on a new machine; they cannot change results.
 */
#include "kernels.h"
#include "gemm_ukr.h"
#include "../../engine/env.h"
#include <stdlib.h>
#include <threads.h>
#ifdef GF_HAVE_HWLOC
#include <hwloc.h>
#endif

static gf__gemm_caches gf__caches;
static once_flag gf__caches_once = ONCE_FLAG_INIT;

#ifdef GF_HAVE_HWLOC
/* The cache of this type with the smallest share per core: its size and
 * the cores it serves (0, 0 when hwloc reports none). */
static void gf__cache_of(hwloc_topology_t topo, hwloc_obj_type_t type, size_t *size,
                         int *cores) {
    *size = 0, *cores = 0;
    const int n = hwloc_get_nbobjs_by_type(topo, type);
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, (unsigned)i);
        if (!o || !o->attr || o->attr->cache.size == 0) continue;
        int c = hwloc_get_nbobjs_inside_cpuset_by_type(topo, o->cpuset, HWLOC_OBJ_CORE);
        if (c < 1) c = 1;
        const size_t sz = (size_t)o->attr->cache.size;
        if (*size == 0 || sz / (size_t)c < *size / (size_t)*cores) *size = sz, *cores = c;
    }
}
#endif

static void gf__caches_probe(void) {
#ifdef GF_HAVE_HWLOC
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0) return;
    if (hwloc_topology_load(topo) == 0) {
        size_t l1, l2, l3;
        int c1, c2, c3;
        gf__cache_of(topo, HWLOC_OBJ_L1CACHE, &l1, &c1);
        gf__cache_of(topo, HWLOC_OBJ_L2CACHE, &l2, &c2);
        gf__cache_of(topo, HWLOC_OBJ_L3CACHE, &l3, &c3);
        gf__caches.l1d = c1 > 0 ? l1 / (size_t)c1 : 0;
        gf__caches.l2 = c2 > 0 ? l2 / (size_t)c2 : 0;
        gf__caches.l3 = l3;
        gf__caches.l3_cores = c3;
        gf__caches.l3_per_core = c3 > 0 ? l3 / (size_t)c3 : 0;
    }
    hwloc_topology_destroy(topo);
#endif
}

const gf__gemm_caches *gf__gemm_machine_caches(void) {
    call_once(&gf__caches_once, gf__caches_probe);
    return &gf__caches;
}

/* A positive integer from the environment variable `name`, or 0 (sized to
 * the caches; a bad value says so once). */
static long gf__env_blocks(const char *name) {
    long long v;
    gf__env_result r = gf__env_int(name, 1, 1L << 20, &v);
    if (r == GF__ENV_BAD)
        gf__env_warn(name, "%s=%s is not an integer in 1..%ld; sizing it to the caches", name,
                     getenv(name), 1L << 20);
    return r == GF__ENV_OK ? (long)v : 0;
}

/* tuned * here / ref, the factor clamped to [1/2, 2], rounded down to a
 * multiple of unit (at least unit); tuned when either size is unknown. */
static int gf__scale_block(int tuned, int unit, size_t here, size_t ref) {
    double f = here > 0 && ref > 0 ? (double)here / (double)ref : 1.0;
    if (f < 0.5) f = 0.5;
    if (f > 2.0) f = 2.0;
    long v = (long)((double)tuned * f) / unit * unit;
    return v < unit ? unit : (int)v;
}

/* A block size forced by the environment: v rounded down to a multiple of
 * unit, at least unit. */
static int gf__round_block(long v, int unit) {
    v = v / unit * unit;
    return v < unit ? unit : (int)v;
}

void gf__gemm_size_variant(gf__gemm_variant *v, int mc, int nc) {
    const gf__gemm_caches *c = gf__gemm_machine_caches();
    const long fmc = mc > 0 ? mc : gf__env_blocks("GF_GEMM_MC");
    const long fnc = nc > 0 ? nc : gf__env_blocks("GF_GEMM_NC");
    v->s.mc = fmc ? gf__round_block(fmc, v->s.mr) : gf__scale_block(v->s.mc, v->s.mr, c->l2, v->l2_ref);
    v->d.mc = fmc ? gf__round_block(fmc, v->d.mr) : gf__scale_block(v->d.mc, v->d.mr, c->l2, v->l2_ref);
    v->s.nc = fnc ? gf__round_block(fnc, v->s.nr)
                  : gf__scale_block(v->s.nc, v->s.nr, c->l3_per_core, v->l3_ref);
    v->d.nc = fnc ? gf__round_block(fnc, v->d.nr)
                  : gf__scale_block(v->d.nc, v->d.nr, c->l3_per_core, v->l3_ref);
}
