/*
 * loss.c - losses not provided as fused ops by gradflow.h: nll_loss.
 * (mse_loss and cross_entropy are fused ops in ops/nn.c.)
 */
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* -mean_i log_probs[i, labels[i]] for log_probs [N, C] and i64 labels [N],
 * as torch.nn.functional.nll_loss(reduction='mean') without weights.
 * Composed from public ops as -sum(log_probs * one_hot(labels)) / N, so it
 * is differentiable to any order; a label outside [0, C) is reported by
 * gf_one_hot. */
gf_tensor *gf_nll_loss(gf_tensor *log_probs, gf_tensor *labels) {
    if (!log_probs || !labels) return NULL;
    gf_ctx *ctx = gf_ctx_of(log_probs);
    if (gf_ndim(log_probs) != 2 || gf_ndim(labels) != 1 ||
        gf_shape(labels)[0] != gf_shape(log_probs)[0]) {
        char a[64] = "[", b[64] = "[";
        for (int i = 0; i < gf_ndim(log_probs); i++)
            snprintf(a + strlen(a), sizeof a - strlen(a), i ? ",%lld" : "%lld",
                     (long long)gf_shape(log_probs)[i]);
        for (int i = 0; i < gf_ndim(labels); i++)
            snprintf(b + strlen(b), sizeof b - strlen(b), i ? ",%lld" : "%lld",
                     (long long)gf_shape(labels)[i]);
        gf_ctx_set_error(ctx, GF_ESHAPE,
                         "gf_nll_loss: log_probs %s] and labels %s] (expected [N,C] and [N])", a,
                         b);
        return NULL;
    }
    /* Checked here: the composed ops would make labels' one_hot in their
     * own ctx before an op noticed the two ctxs. */
    if (gf_ctx_of(labels) != ctx) {
        gf_ctx_set_error(ctx, GF_EINVAL,
                         "gf_nll_loss: labels belong to another ctx (expected both inputs in "
                         "one ctx)");
        return NULL;
    }
    if (gf_dtype_of(labels) != GF_I64) {
        gf_ctx_set_error(ctx, GF_EINVAL, "gf_nll_loss: labels are %s (expected i64 class indices)",
                         gf_dtype_name(gf_dtype_of(labels)));
        return NULL;
    }
    int64_t n = gf_shape(log_probs)[0], c = gf_shape(log_probs)[1];
    /* The intermediates go with a scope of their own; the graph keeps what
     * backward needs. */
    gf_scope_begin(ctx);
    gf_tensor *picked = gf_mul(log_probs, gf_one_hot(labels, c, gf_dtype_of(log_probs)));
    gf_tensor *loss = gf_keep(gf_mul_scalar(gf_sum(picked), n ? -1.0 / (double)n : NAN));
    gf_scope_end(ctx);
    return loss;
}
