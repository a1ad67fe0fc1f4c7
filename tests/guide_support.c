/*
 * guide_support.c - functions that docs/guide.md's code blocks call.
 */
#include "gradflow.h"

/* log(1 + exp(x)) */
gf_tensor *my_softplus(gf_ctx *ctx, int n, gf_tensor *const *in, void *user) {
    (void)ctx, (void)n, (void)user;
    return gf_log(gf_add_scalar(gf_exp(in[0]), 1.0));
}
