/*
 * exec_serial.c - the reference executor: runs a topologically sorted list
 * of nodes one after another on the calling thread, each kernel with the
 * engine's full thread budget. The parallel executor implements the same
 * gf__exec_run contract.
 */
#include "internal.h"

gf_status gf__exec_run(gf_ctx *ctx, gf__node **nodes, int64_t n) {
    int errs = atomic_load(&ctx->errors);
    for (int64_t i = 0; i < n; i++) {
        /* A kernel that reported bad data stops the run: its consumers stay
         * pending rather than compute from its output. */
        if (atomic_load(&ctx->errors) != errs) return GF_EINVAL;
        gf__node *nd = nodes[i];
        gf__op op = (gf__op)nd->op;
        if (!(gf__op_flags[op] & GF__OPF_VIEW)) {
            if (gf__storage_materialize(nd->out->storage) != GF_OK)
                return gf__error(ctx, GF_ENOMEM, "gf_%s: out of memory for output %s",
                                 gf__op_names[op], GF__SHAPE(nd->out));
            nd->nthreads = ctx->eng->num_threads;
            gf__op_fwd[op](nd);
        }
        nd->state = GF__DONE;
    }
    return GF_OK;
}
