/* PLACEHOLDER being replaced by a helper right now. */
#include "ops.h"
void gf__fwd_add_scalar(gf__node *n) { (void)n; }
gf_status gf__bwd_add_scalar(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_mul_scalar(gf__node *n) { (void)n; }
gf_status gf__bwd_mul_scalar(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_pow_scalar(gf__node *n) { (void)n; }
gf_status gf__bwd_pow_scalar(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_neg(gf__node *n) { (void)n; }
gf_status gf__bwd_neg(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_exp(gf__node *n) { (void)n; }
gf_status gf__bwd_exp(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_log(gf__node *n) { (void)n; }
gf_status gf__bwd_log(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_sqrt(gf__node *n) { (void)n; }
gf_status gf__bwd_sqrt(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_abs(gf__node *n) { (void)n; }
gf_status gf__bwd_abs(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_relu(gf__node *n) { (void)n; }
gf_status gf__bwd_relu(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_sigmoid(gf__node *n) { (void)n; }
gf_status gf__bwd_sigmoid(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_tanh(gf__node *n) { (void)n; }
gf_status gf__bwd_tanh(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_gelu(gf__node *n) { (void)n; }
gf_status gf__bwd_gelu(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_gelu_grad(gf__node *n) { (void)n; }
gf_status gf__bwd_gelu_grad(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_sign(gf__node *n) { (void)n; }
gf_status gf__bwd_sign(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
void gf__fwd_step(gf__node *n) { (void)n; }
gf_status gf__bwd_step(gf__node *n, gf_tensor *out, gf_tensor *g, gf_tensor **gin) { (void)n,(void)out,(void)g,(void)gin; return GF_ESTATE; }
gf_tensor *gf_add_scalar(gf_tensor *a, double s) { (void)s; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_mul_scalar(gf_tensor *a, double s) { (void)s; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_pow_scalar(gf_tensor *a, double s) { (void)s; if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_neg(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_exp(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_log(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_sqrt(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_abs(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_relu(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_sigmoid(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_tanh(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_gelu(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
gf_tensor *gf_sign(gf_tensor *a) { if (a) gf__error(a->ctx, GF_ESTATE, "not yet"); return NULL; }
