/*
 * gradflow/nn.h - layers, losses, optimizers, checkpoints and data loading,
 * written only against gradflow.h (as torch.nn sits on autograd).
 *
 * Ownership: a gf_module owns its parameters (leaf tensors created outside
 * any scope in the module's ctx); gf_module_free releases them. Forward
 * results are ordinary op results: handles in the current scope.
 */
#ifndef GRADFLOW_NN_H
#define GRADFLOW_NN_H

#include "../gradflow.h"

#include <math.h> /* NAN, in GF_SGD_DEFAULTS */
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
/* libgradflow.so is compiled with hidden visibility: what these headers
 * declare is its whole exported interface. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* ---------------------------------------------------------------- modules */
typedef struct gf_module gf_module;

/* y = x W^T + b with W [out, in], b [out]; PyTorch's default init:
 * kaiming_uniform(a=sqrt(5)) for W, i.e. U(-1/sqrt(in), 1/sqrt(in)), same
 * bound for b. Random numbers from the ctx's generator (gf_manual_seed). */
gf_module *gf_linear(gf_ctx *ctx, int64_t in_features, int64_t out_features, bool bias,
                     gf_dtype dt);
typedef enum { GF_ACT_NONE, GF_ACT_RELU, GF_ACT_GELU, GF_ACT_TANH, GF_ACT_SIGMOID } gf_activation;
gf_module *gf_activation_layer(gf_ctx *ctx, gf_activation act);
/* Dropout with probability p; active only in train mode; its masks come from
 * the ctx's counter-based generator, so they are the same for any thread
 * count. */
gf_module *gf_dropout(gf_ctx *ctx, double p);
/* A container: runs its children in order. Takes ownership of them. */
gf_module *gf_sequential(gf_ctx *ctx, int n, gf_module *const *children);
/* sizes[0] -> sizes[1] -> ... -> sizes[n-1] with act between layers (not after the last). */
gf_module *gf_mlp(gf_ctx *ctx, int n, const int64_t *sizes, gf_activation act, gf_dtype dt);

gf_tensor *gf_module_forward(gf_module *m, gf_tensor *x);
/* act(x w^T + b): a Linear layer's product with w [out, in] (x [..., in]),
 * the bias b [out] added (b NULL: none), then the activation; the result
 * [..., out] equals gf_matmul(x, gf_transpose(w, 0, 1)), gf_add of b, then
 * gf_relu / gf_gelu / gf_tanh / gf_sigmoid bit for bit, and so do its
 * gradients. A 2-D x with w and b of its float dtype and an activation
 * other than GELU is one op: one GEMM that adds b and applies the
 * activation to each tile of the output while it is in cache (Sequential
 * and gf_mlp record it for a Linear followed by a ReLU, Tanh or Sigmoid
 * layer); anything else records those separate ops. Errors (named
 * gf_linear_act): w not 2-D, x's last dim not w's second, b not [out]. */
gf_tensor *gf_linear_act(gf_tensor *x, gf_tensor *w, gf_tensor *b, gf_activation act);
void gf_module_train(gf_module *m, bool train); /* train (default) or eval mode, recursively */
/* Parameters in a fixed order (registration order, depth first). */
int gf_module_num_parameters(const gf_module *m);  /* tensors */
int64_t gf_module_num_elements(const gf_module *m); /* scalars */
gf_tensor *gf_module_parameter(const gf_module *m, int i);
void gf_module_zero_grad(gf_module *m);
/* Safe before or after gf_ctx_destroy of m's ctx (which detaches m and frees
 * its parameters; afterwards only gf_module_free may be called on m). */
void gf_module_free(gf_module *m);
/* A module of ctx with m's structure, mode and options whose parameters are
 * gf_share handles of m's (ctx and m's ctx on one engine): nothing is
 * copied, so m's updates are seen by every share and backward from a share
 * accumulates into m's .grad. Any number of shares, from any threads, each
 * on its own ctx, while m's ctx keeps working (creating a share touches
 * nothing of m's ctx). A share holds its own references to the parameters'
 * storage and gradient: freeing it (gf_module_free: its handles only)
 * leaves m intact, and it keeps working after m is freed. Train/eval of a
 * share is its own. NULL with the error on ctx: NULL m, m's ctx destroyed, another
 * engine, out of memory. PyTorch: the same nn.Module used from many
 * threads. */
gf_module *gf_module_share(gf_ctx *ctx, const gf_module *m);

/* ----------------------------------------------------------------- losses */
gf_tensor *gf_nll_loss(gf_tensor *log_probs, gf_tensor *labels); /* mean; labels i64 */
/* (gf_mse_loss and gf_cross_entropy are in gradflow.h) */

/* ------------------------------------------------------------- optimizers */
typedef struct gf_optimizer gf_optimizer;
typedef struct {
    double lr, momentum, dampening, weight_decay;
    bool nesterov;
} gf_sgd_opts;
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled; /* true: AdamW (decoupled weight decay) */
} gf_adam_opts;
/* Initializers with PyTorch's defaults, for changing a few fields:
 *   gf_adam_opts o = GF_ADAM_DEFAULTS; o.lr = 1e-2;
 * A designated initializer such as (gf_adam_opts){.lr = 1e-2} sets the
 * fields it does not name to 0, and eps 0 is refused. SGD has no default
 * learning rate (as in PyTorch): GF_SGD_DEFAULTS leaves lr NaN, which
 * gf_sgd refuses until it is set. */
#define GF_ADAM_DEFAULTS \
    {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0, .decoupled = false}
#define GF_SGD_DEFAULTS \
    {.lr = NAN, .momentum = 0, .dampening = 0, .weight_decay = 0, .nesterov = false}
/* The optimizer updates the n parameters (not owned) in place, one fused
 * kernel per parameter per step, under no_grad. Update rules are
 * torch.optim's; a parameter whose .grad is NULL is skipped. gf_sgd needs
 * opts (lr has no default); gf_adam with opts NULL uses PyTorch's defaults
 * (GF_ADAM_DEFAULTS: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight
 * decay). Options are checked as torch.optim checks them (lr >= 0, momentum
 * >= 0, weight_decay >= 0, 0 <= beta < 1, Nesterov needs momentum > 0 and
 * dampening 0), every value finite, and eps > 0 (stricter than PyTorch:
 * eps 0 divides 0 by 0 on a zero gradient). Every NULL return leaves an
 * error on the parameters' ctx naming the function: GF_EINVAL for bad
 * options or parameters (a module without parameters included), GF_ENOMEM
 * when out of memory. State tensors live outside every scope, created at a
 * parameter's first step. */
gf_optimizer *gf_sgd(int n, gf_tensor *const *params, const gf_sgd_opts *o);
gf_optimizer *gf_adam(int n, gf_tensor *const *params, const gf_adam_opts *o);
gf_optimizer *gf_module_sgd(gf_module *m, const gf_sgd_opts *o);
gf_optimizer *gf_module_adam(gf_module *m, const gf_adam_opts *o);
gf_status gf_optimizer_step(gf_optimizer *opt);
void gf_optimizer_zero_grad(gf_optimizer *opt);
double gf_optimizer_lr(const gf_optimizer *opt);
void gf_optimizer_set_lr(gf_optimizer *opt, double lr);
int64_t gf_optimizer_steps(const gf_optimizer *opt);
/* Safe before or after gf_ctx_destroy of the parameters' ctx (afterwards
 * gf_optimizer_step returns GF_ESTATE). */
void gf_optimizer_free(gf_optimizer *opt);
/* Learning-rate schedules: the lr for epoch/step t. */
double gf_lr_step(double base_lr, int64_t t, int64_t step_size, double gamma);
double gf_lr_cosine(double base_lr, int64_t t, int64_t t_max, double eta_min);

/* ------------------------------------------------------------- checkpoints */
/* Versioned binary format with a checksum (docs/checkpoint.md). Writes are
 * atomic: "<path>.tmp" (one per target, locked while written, reused after
 * a crash) renamed over path. A truncated, corrupted or mismatched file, or
 * optimizer state its constructor would refuse, gives GF_EIO with a clear
 * message on the ctx and leaves model and optimizer as they were. opt may
 * be NULL. */
gf_status gf_save(const char *path, gf_module *m, gf_optimizer *opt);
gf_status gf_load(const char *path, gf_module *m, gf_optimizer *opt);

/* -------------------------------------------------------------------- data */
typedef struct gf_dataset gf_dataset;
/* Reads an IDX image file and its label file (gzip or raw). Images become
 * f32 [n, rows*cols] scaled to [0,1] then normalized (x - mean) / std;
 * labels i64 [n], any byte value (IDX does not give a class count). GF_EIO
 * with the path and the reason on a bad file (a gzip stream must be whole,
 * trailer included); GF_EINVAL unless mean is finite and std finite > 0. */
gf_dataset *gf_idx_load(gf_ctx *ctx, const char *images_path, const char *labels_path,
                        double mean, double std);
/* Fashion-MNIST from dir (NULL: /usr/share/datasets/fashion-mnist, from the
 * Debian package dataset-fashion-mnist); train or test split. A missing file
 * is an error naming the package that provides it; a label outside its 10
 * classes (0..9) is GF_EIO. */
gf_dataset *gf_fashion_mnist(gf_ctx *ctx, const char *dir, bool train);
int64_t gf_dataset_size(const gf_dataset *d);
int64_t gf_dataset_features(const gf_dataset *d);
/* Shuffles the order for an epoch with a counter-based generator (seed, epoch). */
void gf_dataset_shuffle(gf_dataset *d, uint64_t seed, uint64_t epoch);
/* Batch b of the current order: new tensors x [bs, features] f32 and
 * y [bs] i64 in the current scope (the last batch may be short). Returns
 * GF_OK, or GF_EINVAL past the end (b * batch_size >= size, overflow
 * included; no error recorded), or GF_EINVAL with an error for b < 0,
 * batch_size < 1 or NULL outputs. */
gf_status gf_dataset_batch(gf_dataset *d, int64_t b, int64_t batch_size, gf_tensor **x,
                           gf_tensor **y);
void gf_dataset_free(gf_dataset *d);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* GRADFLOW_NN_H */
