/*
 * nn_internal.h - what the files of nn/ share and users do not see: the
 * optimizer's layout (the checkpoint writer saves its state), the
 * validation of optimizer options (constructors and checkpoints share it)
 * and the CRC-32 the checkpoint format uses. Built on include/gradflow.h only.
 */
#ifndef GF_NN_INTERNAL_H
#define GF_NN_INTERNAL_H

#include "../include/gradflow/nn.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { GF__OPT_SGD = 1, GF__OPT_ADAM = 2 } gf__opt_kind;

/* An optimizer over n parameters it does not own. Per parameter it keeps up
 * to two state tensors (SGD: the momentum buffer in s1; Adam: exp_avg in s1
 * and exp_avg_sq in s2), created outside any scope in the parameter's ctx at
 * the parameter's first step, and (Adam) that parameter's own step count,
 * which, as in PyTorch, does not advance while its .grad is NULL. */
struct gf_optimizer {
    gf__opt_kind kind;
    int n;
    gf_tensor **params;
    gf_tensor **s1, **s2;
    int64_t *pstep;
    int64_t steps; /* gf_optimizer_step calls that succeeded */
    gf_sgd_opts sgd;
    gf_adam_opts adam;
    gf_ctx *ctx; /* the parameters' ctx; NULL once gf_ctx_destroy detached the optimizer */
};

/* The ctx a module was created in (errors of a module without parameters
 * go there). */
gf_ctx *gf__module_ctx(const gf_module *m);

/* Why the options are invalid (a phrase for an error message), or NULL if
 * they are valid: the one rule set of the constructors and of gf_load. */
const char *gf__sgd_opts_invalid(const gf_sgd_opts *o);
const char *gf__adam_opts_invalid(const gf_adam_opts *o);

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): zlib's crc32 for
 * any length. crc = gf__crc32(0, p, n) starts; feeding the previous value
 * continues. */
uint32_t gf__crc32(uint32_t crc, const void *p, size_t n);

#endif /* GF_NN_INTERNAL_H */
