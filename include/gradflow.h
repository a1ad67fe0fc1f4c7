/*
 * gradflow.h - the public API of gradflow: PyTorch-style automatic
 * differentiation in C11 on a dataflow execution engine.
 *
 * Conventions (see docs/api.md for the full reference):
 *  - Shapes are int64_t; at most GF_MAX_DIMS dimensions; 0-dim tensors are scalars.
 *  - An op takes its ctx from its first tensor input. Every op accepts NULL
 *    inputs and returns NULL; the first error (op name, shapes, what was
 *    expected) is kept on the ctx and read with gf_ctx_error().
 *  - Functions that are not ops return gf_status (GF_OK == 0, errors < 0).
 *  - Tensors are handles owned by their ctx: released by gf_release(), by the
 *    end of the scope that created them, or by gf_ctx_destroy(). Passing a
 *    handle whose tensor was freed (a stale handle) to a call is an error
 *    ("stale tensor handle", GF_ESTATE) as long as fewer than 512 tensor
 *    objects of the ctx were freed since; later its memory may hold a new
 *    tensor and the use goes undetected (docs/api.md, Lifetime).
 *  - Teardown order: modules, optimizers and datasets, then their ctxs, then
 *    the engine. Freeing a module or optimizer after its ctx is safe (the
 *    ctx detaches it; only its own memory is left to free), and so is
 *    destroying an engine before its ctxs (it is freed with the last one).
 *  - Ops record a node and compute nothing; data access, gf_realize() and
 *    gf_backward() compute what they need. gf_ctx_set_eager() computes each op
 *    as it is called. Both give identical results.
 */
#ifndef GRADFLOW_H
#define GRADFLOW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h> /* FILE, for gf_fprint */

#ifdef __cplusplus
extern "C" {
#endif
/* libgradflow.so is compiled with hidden visibility: what these headers
 * declare is its whole exported interface. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define GF_VERSION_MAJOR 0
#define GF_VERSION_MINOR 1
#define GF_VERSION_PATCH 0
#define GF_MAX_DIMS 8

typedef struct gf_engine gf_engine; /* worker pool + topology + allocator, shareable */
typedef struct gf_ctx gf_ctx;       /* one user thread's graph and tensors */
typedef struct gf_tensor gf_tensor; /* handle, owned by its ctx */

typedef enum { GF_F32, GF_F64, GF_I64 } gf_dtype;

/* The status codes, generated from one list (gf_strerror names them). */
#define GF_STATUS_LIST(X)                                   \
    X(GF_OK, 0, "success")                                  \
    X(GF_EINVAL, -1, "invalid argument")                    \
    X(GF_ESHAPE, -2, "shape mismatch")                      \
    X(GF_ENOMEM, -3, "out of memory")                       \
    X(GF_ESTATE, -4, "operation not valid in this state")   \
    X(GF_EIO, -5, "input/output error")
typedef enum {
#define GF__STATUS_ENUM(name, val, msg) name = val,
    GF_STATUS_LIST(GF__STATUS_ENUM)
#undef GF__STATUS_ENUM
} gf_status;

/* A static English description of a status code; never NULL. */
const char *gf_strerror(gf_status s);

/* ---------------------------------------------------------------- engine */
/* How a kernel splits its loops over threads (intra-op parallelism). Both
 * give the same bits: tiles are cut from the data, never the thread count. */
typedef enum {
    GF_INTRAOP_DEFAULT = 0, /* GF_INTRAOP=pool|openmp, else the pool */
    GF_INTRAOP_POOL,        /* tiles run as tasks on the engine's own workers */
    GF_INTRAOP_OPENMP       /* tiles run by OpenMP teams (for programs already
                               running an OpenMP runtime of their own) */
} gf_intraop;

typedef struct {
    int num_threads;    /* 0: one per physical core (hwloc), or GF_NUM_THREADS */
    bool deterministic; /* kept for source compatibility; changes nothing: every
                           engine is bitwise reproducible for any thread count */
    bool pin_threads;   /* bind workers to cores */
    gf_intraop intraop; /* intra-op backend */
} gf_engine_opts;

/* Creates an engine; opts NULL means defaults. Returns NULL on failure.
 * The caller destroys it after every ctx using it has been destroyed; if
 * ctxs are still open, gf_engine_destroy leaves the engine to the last of
 * their gf_ctx_destroy calls. */
gf_engine *gf_engine_create(const gf_engine_opts *opts);
void gf_engine_destroy(gf_engine *eng);
int gf_engine_num_threads(const gf_engine *eng);
/* Tensor memory of an engine's caching allocator. After warm-up a training
 * loop's system_allocs stays constant: buffers are reused, not allocated. */
typedef struct {
    int64_t bytes_in_use;  /* held by live tensors */
    int64_t bytes_cached;  /* freed by tensors, kept for reuse */
    int64_t system_allocs; /* buffers obtained from the system so far */
} gf_memory_stats;
gf_status gf_engine_memory_stats(const gf_engine *eng, gf_memory_stats *st);
bool gf_engine_deterministic(const gf_engine *eng);
/* The intra-op backend the engine runs (never GF_INTRAOP_DEFAULT). */
gf_intraop gf_engine_intraop(const gf_engine *eng);
/* The kernel variant the engine's kernels run: "avx512", "avx2" or
 * "generic" (the best the CPU runs, or GF_ISA's choice; one per process). A
 * static string; NULL for a NULL engine. */
const char *gf_engine_isa(const gf_engine *eng);

/* ------------------------------------------------------------------- ctx */
/* eng NULL: the process default engine (created on first use). */
gf_ctx *gf_ctx_create(gf_engine *eng);
/* Runs the ctx's gf_ctx_on_destroy functions, then frees every tensor of
 * the ctx. */
void gf_ctx_destroy(gf_ctx *ctx);
/* Registers fn(ctx, arg) to run at the start of gf_ctx_destroy (newest
 * first; the ctx and its tensors are still intact then, and fn may release
 * them). For objects layered on a ctx that may outlive it (nn's modules and
 * optimizers detach themselves this way). GF_ENOMEM (on the ctx) if the
 * registration fails; GF_EINVAL for a NULL ctx or fn. */
typedef void (*gf_ctx_destroy_fn)(gf_ctx *ctx, void *arg);
gf_status gf_ctx_on_destroy(gf_ctx *ctx, gf_ctx_destroy_fn fn, void *arg);
/* Unregisters the newest registration of (fn, arg); nothing if none. */
void gf_ctx_remove_on_destroy(gf_ctx *ctx, gf_ctx_destroy_fn fn, void *arg);
gf_engine *gf_ctx_engine(const gf_ctx *ctx);
/* First error since the last clear, or NULL if none. The string lives in the
 * ctx. (A NULL ctx gives a static message saying so.) */
const char *gf_ctx_error(const gf_ctx *ctx);
/* Status code of the first error since the last clear (GF_OK if none). */
gf_status gf_ctx_status(const gf_ctx *ctx);
void gf_ctx_clear_error(gf_ctx *ctx);
/* Records an error on ctx exactly as the library's own calls do (the first
 * error since the last clear wins; later ones are dropped) and returns s.
 * For code layered on gradflow (nn/, user modules, data loaders) that must
 * report failures through the ctx. fmt is printf-style. */
gf_status gf_ctx_set_error(gf_ctx *ctx, gf_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void gf_ctx_set_eager(gf_ctx *ctx, bool eager);
/* Number of tensor objects the ctx holds (handles and internal
 * intermediates): a training loop with scopes keeps it flat. */
int64_t gf_ctx_live_tensors(const gf_ctx *ctx);
bool gf_ctx_eager(const gf_ctx *ctx);
/* Seeds the ctx's counter-based generator (Philox 4x32-10). The n-th random
 * tensor after a seed is the same for any thread count. */
void gf_manual_seed(gf_ctx *ctx, uint64_t seed);

/* ---------------------------------------------------------------- scopes */
void gf_scope_begin(gf_ctx *ctx);  /* nested scopes allowed */
void gf_scope_end(gf_ctx *ctx);    /* releases tensors created inside */
gf_tensor *gf_keep(gf_tensor *t);  /* survive the innermost scope's end; returns t */
/* Moves the handle out of every open scope: it lives until gf_release or
 * gf_ctx_destroy, as if created outside any scope (parameters and optimizer
 * state made inside a training loop's scope). Returns t. */
gf_tensor *gf_persist(gf_tensor *t);
void gf_release(gf_tensor *t);     /* the handle is invalid afterwards (a stale one: error) */

void gf_no_grad_begin(gf_ctx *ctx); /* nested */
void gf_no_grad_end(gf_ctx *ctx);
bool gf_is_grad_enabled(const gf_ctx *ctx);

/* A handle in ctx for a leaf tensor of another ctx on the same engine (a
 * model's parameter shared by many request threads): same storage and the
 * same .grad; backward from any ctx accumulates into that .grad atomically. */
gf_tensor *gf_share(gf_ctx *ctx, gf_tensor *leaf);

/* -------------------------------------------------------------- creation */
/* Data is copied; shape may be NULL when ndim == 0. */
gf_tensor *gf_tensor_f32(gf_ctx *ctx, int ndim, const int64_t *shape, const float *data);
gf_tensor *gf_tensor_f64(gf_ctx *ctx, int ndim, const int64_t *shape, const double *data);
gf_tensor *gf_tensor_i64(gf_ctx *ctx, int ndim, const int64_t *shape, const int64_t *data);
gf_tensor *gf_zeros(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
gf_tensor *gf_ones(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
gf_tensor *gf_full(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape, double v);
gf_tensor *gf_rand(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);  /* U[0,1) */
gf_tensor *gf_randn(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape); /* N(0,1) */
gf_tensor *gf_scalar(gf_ctx *ctx, gf_dtype dt, double v);                      /* 0-dim */
gf_tensor *gf_arange(gf_ctx *ctx, gf_dtype dt, int64_t n);                     /* 0..n-1 */
gf_tensor *gf_zeros_like(gf_tensor *a);
gf_tensor *gf_ones_like(gf_tensor *a);

/* -------------------------------------------------------------- metadata */
int gf_ndim(const gf_tensor *t);
const int64_t *gf_shape(const gf_tensor *t);
const int64_t *gf_strides(const gf_tensor *t); /* in elements */
int64_t gf_numel(const gf_tensor *t);
gf_dtype gf_dtype_of(const gf_tensor *t);
gf_ctx *gf_ctx_of(const gf_tensor *t);
bool gf_is_contiguous(const gf_tensor *t);
bool gf_is_leaf(const gf_tensor *t);
const char *gf_dtype_name(gf_dtype dt);

/* ----------------------------------------------------------- data access */
/* Realizes the tensor (and what it needs) first. For a contiguous tensor
 * the pointer is into its storage (valid until the tensor is released; it
 * shows later in-place writes). For a strided view it points into a
 * contiguous copy that the next gf_data_* call on the same tensor replaces. */
gf_status gf_realize(gf_tensor *t);
gf_status gf_realize_all(gf_ctx *ctx); /* every pending node of the ctx */
const float *gf_data_f32(gf_tensor *t); /* contiguous row-major view, NULL on error */
const double *gf_data_f64(gf_tensor *t);
const int64_t *gf_data_i64(gf_tensor *t);
gf_status gf_copy_to_f64(gf_tensor *t, double *dst, int64_t n); /* any dtype */
gf_status gf_copy_to_f32(gf_tensor *t, float *dst, int64_t n);  /* any dtype */
double gf_item(gf_tensor *t); /* one-element tensor; NAN on error */

/* -------------------------------------------------------------- autograd */
gf_tensor *gf_requires_grad(gf_tensor *t, bool on); /* returns t */
bool gf_get_requires_grad(const gf_tensor *t);
gf_tensor *gf_grad(gf_tensor *t); /* accumulated .grad or NULL; owned by t */
void gf_zero_grad(gf_tensor *t);  /* sets .grad to zeros (if any) */
gf_tensor *gf_detach(gf_tensor *t); /* shares storage, no graph */
gf_status gf_backward(gf_tensor *loss); /* scalar loss */
typedef struct {
    gf_tensor *grad_output; /* NULL: ones (only for one-element outputs) */
    bool retain_graph;      /* keep the graph for another backward */
    bool create_graph;      /* record the gradient's graph (higher order); implies retain_graph */
} gf_backward_opts;
gf_status gf_backward_ex(gf_tensor *out, const gf_backward_opts *opts);
/* torch.autograd.grad: d(out)/d(inputs[i]) into grads[i] (new handles in the
 * current scope; zeros where out does not depend on inputs[i]), no .grad
 * side effects. */
gf_status gf_grad_of(gf_tensor *out, int n, gf_tensor *const *inputs, gf_tensor **grads,
                     const gf_backward_opts *opts);

/* ------------------------------------------- ops: elementwise (broadcasting) */
gf_tensor *gf_add(gf_tensor *a, gf_tensor *b);
gf_tensor *gf_sub(gf_tensor *a, gf_tensor *b);
gf_tensor *gf_mul(gf_tensor *a, gf_tensor *b);
gf_tensor *gf_div(gf_tensor *a, gf_tensor *b);
gf_tensor *gf_pow(gf_tensor *a, gf_tensor *b);
gf_tensor *gf_add_scalar(gf_tensor *a, double s);
gf_tensor *gf_mul_scalar(gf_tensor *a, double s);
gf_tensor *gf_pow_scalar(gf_tensor *a, double p);
gf_tensor *gf_neg(gf_tensor *a);
gf_tensor *gf_exp(gf_tensor *a);
gf_tensor *gf_log(gf_tensor *a);
gf_tensor *gf_sqrt(gf_tensor *a);
gf_tensor *gf_abs(gf_tensor *a);
gf_tensor *gf_relu(gf_tensor *a);
gf_tensor *gf_sigmoid(gf_tensor *a);
gf_tensor *gf_tanh(gf_tensor *a);
gf_tensor *gf_gelu(gf_tensor *a); /* exact erf form, as torch's default */
gf_tensor *gf_sign(gf_tensor *a); /* -1, 0, 1; zero gradient */
gf_tensor *gf_to_dtype(gf_tensor *a, gf_dtype dt); /* cast; differentiable between floats */
gf_tensor *gf_contiguous(gf_tensor *a); /* a itself if already contiguous (new handle) */
gf_tensor *gf_clone(gf_tensor *a);      /* always a fresh contiguous copy */
/* ------------------------------------------------------- linear algebra */
gf_tensor *gf_matmul(gf_tensor *a, gf_tensor *b); /* torch.matmul rules: 1-D, 2-D, batched */
/* ----------------------------------------------- reductions (dim may be < 0) */
gf_tensor *gf_sum(gf_tensor *a);
gf_tensor *gf_mean(gf_tensor *a);
gf_tensor *gf_sum_dim(gf_tensor *a, int dim, bool keepdim);
gf_tensor *gf_mean_dim(gf_tensor *a, int dim, bool keepdim);
gf_tensor *gf_max_dim(gf_tensor *a, int dim, bool keepdim); /* values; grad to the first max */
gf_tensor *gf_argmax(gf_tensor *a, int dim);                /* GF_I64, no grad */
/* ------------------------------------------------- shape (views where possible) */
gf_tensor *gf_reshape(gf_tensor *a, int ndim, const int64_t *shape); /* one -1 allowed */
gf_tensor *gf_transpose(gf_tensor *a, int d0, int d1);
gf_tensor *gf_permute(gf_tensor *a, const int *dims);
gf_tensor *gf_slice(gf_tensor *a, int dim, int64_t start, int64_t end, int64_t step);
gf_tensor *gf_cat(int n, gf_tensor *const *ts, int dim);
gf_tensor *gf_expand(gf_tensor *a, int ndim, const int64_t *shape);
gf_tensor *gf_unsqueeze(gf_tensor *a, int dim);
gf_tensor *gf_squeeze(gf_tensor *a, int dim);
/* ------------------------------------------------------------- nn functions */
gf_tensor *gf_softmax(gf_tensor *a, int dim);
gf_tensor *gf_log_softmax(gf_tensor *a, int dim);
gf_tensor *gf_mse_loss(gf_tensor *pred, gf_tensor *target);        /* mean */
gf_tensor *gf_cross_entropy(gf_tensor *logits, gf_tensor *labels); /* labels GF_I64, mean */
gf_tensor *gf_one_hot(gf_tensor *labels, int64_t num_classes, gf_dtype dt); /* no grad */
/* ------------------------------------ indexing, printing, comparing (tools) */
/* torch.index_select: the slices of a at positions index[0], index[1], ...
 * along dim (negative allowed), in index order (repeats allowed); index is
 * a 1-D (or 0-dim) i64 tensor of values in [0, size of dim). The result is
 * contiguous, a's dtype, a's shape with that dim's size the index length.
 * Differentiable in a: the backward adds the gradient's slices into the
 * selected positions in index order (bitwise the same for any thread count). */
gf_tensor *gf_index_select(gf_tensor *a, int dim, gf_tensor *index);
/* torch.randperm: a GF_I64 [n] random permutation of 0..n-1 from the ctx's
 * generator (gf_manual_seed); advances its counter by n. The same values for
 * any thread count. A new leaf in the current scope, computed at once. */
gf_tensor *gf_randperm(gf_ctx *ctx, int64_t n);
/* Writes t as PyTorch's repr does, then a newline: "tensor([[1., 2.]])",
 * values with 4 decimals or in scientific form, more than 1000 elements
 * summarised with "..." (3 edge items per dim), dtype shown unless f32 or
 * i64 ("dtype=f64"), then "requires_grad=True" or "grad_fn=<AddBackward>".
 * Realizes t; f stays the caller's (flushed, not closed). Returns GF_OK, or
 * an error status (recorded on t's ctx for a failed realization, a NULL f,
 * a write error: GF_EIO). */
gf_status gf_fprint(FILE *f, gf_tensor *t);
gf_status gf_print(gf_tensor *t); /* gf_fprint(stdout, t) */
/* torch.allclose: true when |a - b| <= atol + rtol * |b| for every element
 * of the broadcast shape (values compared as doubles, i64 pairs exactly
 * first; NaN is never close, equal infinities are). Any dtypes. Realizes a
 * and b. False with an error on the ctx for a NULL tensor (when the other
 * is not), another ctx, rtol or atol negative or NaN (GF_EINVAL), shapes
 * that do not broadcast (GF_ESHAPE), a failed realization. */
bool gf_allclose(gf_tensor *a, gf_tensor *b, double rtol, double atol);
/* --------------------------------- in-place (for optimizers; normally under no_grad) */
gf_status gf_sub_(gf_tensor *a, gf_tensor *b);                /* a -= b */
gf_status gf_axpy_(gf_tensor *y, double alpha, gf_tensor *x); /* y += alpha*x */
gf_status gf_fill_(gf_tensor *a, double v);
gf_status gf_copy_(gf_tensor *dst, gf_tensor *src);           /* dst = src (broadcast) */
gf_status gf_mul_scalar_(gf_tensor *a, double s);             /* a *= s */
/* Fused optimizer updates: one pass over the parameter, every element on
 * its own in p's dtype (same bits for any thread count), with the floating
 * operations in the order of PyTorch 1.13's single-tensor path. Run at once
 * like the ops above (after every pending reader or writer of p and of the
 * state written); p must be under gf_no_grad_begin if it requires grad. p,
 * g and the state have one shape; p and the state one floating dtype (g is
 * converted if it differs); no two share a storage. Strided views work
 * (slower path).
 *
 * Adam / AdamW at step `step` (>= 1, counting this one; bias correction
 * bc1 = 1 - beta1^step, bc2 = 1 - beta2^step), writes p, m (exp_avg), v
 * (exp_avg_sq), reads g:
 *   weight_decay != 0:  decoupled: p *= 1 - lr*weight_decay  else g += weight_decay*p
 *   m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g
 *   p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
gf_status gf_adam_step_(gf_tensor *p, gf_tensor *g, gf_tensor *m, gf_tensor *v, double lr,
                        double beta1, double beta2, double eps, double weight_decay,
                        bool decoupled, int64_t step);
/* torch.optim.SGD, writes p and buf (the momentum buffer), reads g:
 *   d = g + weight_decay*p
 *   momentum != 0:  buf = d (first)  or  buf = momentum*buf + (1-dampening)*d
 *                   d = nesterov ? d + momentum*buf : buf
 *   p -= lr*d
 * With momentum == 0, buf, dampening, nesterov and first are ignored (buf
 * may be NULL); otherwise buf is required (any values when first). */
gf_status gf_sgd_step_(gf_tensor *p, gf_tensor *g, gf_tensor *buf, double lr, double momentum,
                       double dampening, double weight_decay, bool nesterov, bool first);

/* ---------------------------------------------------------- gradient check */
/* torch.autograd.gradcheck: the analytic derivatives of fn's output with
 * respect to every floating input that requires grad, against central
 * differences with step eps, computed in float64 on copies of the inputs.
 * A compared value passes when |analytic - numeric| <= atol + rtol*|numeric|
 * (a NaN fails). Returns GF_OK, or GF_EINVAL with the count of failing
 * values and the WORST one (largest difference relative to its allowed
 * difference: input index, element index and multi-index, output element or
 * product, both values, the allowed difference) on the ctx; errors of fn or
 * of backward are returned as they are. fn is called 1 + 2 * (checked input
 * elements) times and must build its result from the inputs it is given. */
typedef gf_tensor *(*gf_fn)(gf_ctx *ctx, int n, gf_tensor *const *inputs, void *user);
typedef enum {
    GF_GRADCHECK_AUTO = 0, /* FULL up to 65536 Jacobian entries and 4096 output elements,
                              else VJP */
    GF_GRADCHECK_FULL,     /* every Jacobian entry, one backward per output element
                              (torch's default, fast_mode=False) */
    GF_GRADCHECK_VJP       /* n_vjp products w^T J per input element, w random in [0.5, 1.5) */
} gf_gradcheck_mode;
/* A zero field (or NULL opts) takes its default: torch.autograd.gradcheck's
 * eps 1e-6, atol 1e-5, rtol 1e-3; mode AUTO; n_vjp 4; a fixed seed. The VJP
 * weights are gf_rand(out's shape) + 0.5 after gf_manual_seed(seed) (the
 * ctx's generator state is restored). Negative or non-finite values:
 * GF_EINVAL. */
typedef struct {
    double eps, atol, rtol;
    gf_gradcheck_mode mode;
    int n_vjp;
    uint64_t seed;
} gf_gradcheck_opts;
gf_status gf_gradcheck_ex(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *inputs, void *user,
                          const gf_gradcheck_opts *opts);
/* gf_gradcheck_ex in AUTO mode with atol and rtol as given (0 is 0); eps <= 0
 * takes the default 1e-6. */
gf_status gf_gradcheck(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *inputs, void *user,
                       double eps, double atol, double rtol);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* GRADFLOW_H */
