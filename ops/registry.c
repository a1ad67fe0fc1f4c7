/*
 * registry.c - the dispatch tables, generated from ops/ops.def.
 */
#include "ops.h"

#define GF_OP(name, flags)                                                          \
    void gf__fwd_##name(gf__node *n);                                               \
    gf_status gf__bwd_##name(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin);
#include "ops.def"
#undef GF_OP

const char *const gf__op_names[GF__OP_COUNT] = {
#define GF_OP(name, flags) #name,
#include "ops.def"
#undef GF_OP
};

const gf__fwd_fn gf__op_fwd[GF__OP_COUNT] = {
#define GF_OP(name, flags) gf__fwd_##name,
#include "ops.def"
#undef GF_OP
};

const gf__bwd_fn gf__op_bwd[GF__OP_COUNT] = {
#define GF_OP(name, flags) gf__bwd_##name,
#include "ops.def"
#undef GF_OP
};

const int gf__op_flags[GF__OP_COUNT] = {
#define GF_OP(name, flags) flags,
#include "ops.def"
#undef GF_OP
};
