/* PLACEHOLDER being replaced by a helper right now. */
#include "ops.h"
void gf__fwd_sum_dim(gf__node *n) { (void)n; }
gf_status gf__bwd_sum_dim(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_mean_dim(gf__node *n) { (void)n; }
gf_status gf__bwd_mean_dim(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_max_dim(gf__node *n) { (void)n; }
gf_status gf__bwd_max_dim(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_argmax(gf__node *n) { (void)n; }
gf_status gf__bwd_argmax(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_argmax_mask(gf__node *n) { (void)n; }
gf_status gf__bwd_argmax_mask(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
gf_tensor *gf_sum(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_mean(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_sum_dim(gf_tensor *a, int dim, bool keepdim) { (void)dim,(void)keepdim; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_mean_dim(gf_tensor *a, int dim, bool keepdim) { (void)dim,(void)keepdim; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_max_dim(gf_tensor *a, int dim, bool keepdim) { (void)dim,(void)keepdim; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_argmax(gf_tensor *a, int dim) { (void)dim; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf__sum_to(gf_tensor *a, int ndim, const int64_t *shape) { (void)ndim,(void)shape; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
