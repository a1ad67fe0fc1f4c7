/* PLACEHOLDER being replaced by a helper right now. */
#include "ops.h"
void gf__fwd_softmax(gf__node *n) { (void)n; }
gf_status gf__bwd_softmax(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_log_softmax(gf__node *n) { (void)n; }
gf_status gf__bwd_log_softmax(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_mse_loss(gf__node *n) { (void)n; }
gf_status gf__bwd_mse_loss(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_cross_entropy(gf__node *n) { (void)n; }
gf_status gf__bwd_cross_entropy(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_one_hot(gf__node *n) { (void)n; }
gf_status gf__bwd_one_hot(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
gf_tensor *gf_softmax(gf_tensor *a, int dim) { (void)dim; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_log_softmax(gf_tensor *a, int dim) { (void)dim; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_mse_loss(gf_tensor *a, gf_tensor *b) { (void)b; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_cross_entropy(gf_tensor *a, gf_tensor *b) { (void)b; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_one_hot(gf_tensor *a, int64_t k, gf_dtype dt) { (void)k,(void)dt; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
