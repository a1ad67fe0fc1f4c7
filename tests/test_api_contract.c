/*
 * test_api_contract.c - the function declarations of shared/API.md, copied
 * verbatim: redeclaring them after including gradflow.h fails to compile if
 * any signature in the header drifts from the contract. The tests then call
 * the API.md examples.
 */
#include "common.h"

/* ---- verbatim from API.md ---- */
gf_engine *gf_engine_create(const gf_engine_opts *opts);
void       gf_engine_destroy(gf_engine *eng);
int        gf_engine_num_threads(const gf_engine *eng);
gf_ctx     *gf_ctx_create(gf_engine *eng);
void        gf_ctx_destroy(gf_ctx *ctx);
const char *gf_ctx_error(const gf_ctx *ctx);
void        gf_ctx_clear_error(gf_ctx *ctx);
void        gf_ctx_set_eager(gf_ctx *ctx, bool eager);
void        gf_manual_seed(gf_ctx *ctx, uint64_t seed);
void gf_scope_begin(gf_ctx *ctx);
void gf_scope_end(gf_ctx *ctx);
gf_tensor *gf_keep(gf_tensor *t);
void gf_release(gf_tensor *t);
void gf_no_grad_begin(gf_ctx *ctx);
void gf_no_grad_end(gf_ctx *ctx);
gf_tensor *gf_share(gf_ctx *ctx, gf_tensor *leaf);
gf_tensor *gf_tensor_f32(gf_ctx *ctx, int ndim, const int64_t *shape, const float *data);
gf_tensor *gf_tensor_f64(gf_ctx *ctx, int ndim, const int64_t *shape, const double *data);
gf_tensor *gf_tensor_i64(gf_ctx *ctx, int ndim, const int64_t *shape, const int64_t *data);
gf_tensor *gf_zeros(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
gf_tensor *gf_ones (gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
gf_tensor *gf_full (gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape, double v);
gf_tensor *gf_rand (gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
gf_tensor *gf_randn(gf_ctx *ctx, gf_dtype dt, int ndim, const int64_t *shape);
gf_tensor *gf_scalar(gf_ctx *ctx, gf_dtype dt, double v);
int            gf_ndim (const gf_tensor *t);
const int64_t *gf_shape(const gf_tensor *t);
int64_t        gf_numel(const gf_tensor *t);
gf_dtype       gf_dtype_of(const gf_tensor *t);
gf_ctx        *gf_ctx_of(const gf_tensor *t);
gf_status     gf_realize(gf_tensor *t);
const float  *gf_data_f32(gf_tensor *t);
const double *gf_data_f64(gf_tensor *t);
gf_status     gf_copy_to_f64(gf_tensor *t, double *dst, int64_t n);
double        gf_item(gf_tensor *t);
gf_tensor *gf_requires_grad(gf_tensor *t, bool on);
bool       gf_get_requires_grad(const gf_tensor *t);
gf_tensor *gf_grad(gf_tensor *t);
void       gf_zero_grad(gf_tensor *t);
gf_tensor *gf_detach(gf_tensor *t);
gf_status  gf_backward(gf_tensor *loss);
gf_status  gf_backward_ex(gf_tensor *out, const gf_backward_opts *opts);
gf_status  gf_grad_of(gf_tensor *out, int n, gf_tensor *const *inputs, gf_tensor **grads, const gf_backward_opts *opts);
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
gf_tensor *gf_gelu(gf_tensor *a);
gf_tensor *gf_matmul(gf_tensor *a, gf_tensor *b);
gf_tensor *gf_sum(gf_tensor *a);
gf_tensor *gf_mean(gf_tensor *a);
gf_tensor *gf_sum_dim (gf_tensor *a, int dim, bool keepdim);
gf_tensor *gf_mean_dim(gf_tensor *a, int dim, bool keepdim);
gf_tensor *gf_max_dim (gf_tensor *a, int dim, bool keepdim);
gf_tensor *gf_argmax  (gf_tensor *a, int dim);
gf_tensor *gf_reshape(gf_tensor *a, int ndim, const int64_t *shape);
gf_tensor *gf_transpose(gf_tensor *a, int d0, int d1);
gf_tensor *gf_permute(gf_tensor *a, const int *dims);
gf_tensor *gf_slice(gf_tensor *a, int dim, int64_t start, int64_t end, int64_t step);
gf_tensor *gf_cat(int n, gf_tensor *const *ts, int dim);
gf_tensor *gf_expand(gf_tensor *a, int ndim, const int64_t *shape);
gf_tensor *gf_softmax(gf_tensor *a, int dim);
gf_tensor *gf_log_softmax(gf_tensor *a, int dim);
gf_tensor *gf_mse_loss(gf_tensor *pred, gf_tensor *target);
gf_tensor *gf_cross_entropy(gf_tensor *logits, gf_tensor *labels);
gf_status gf_sub_(gf_tensor *a, gf_tensor *b);
gf_status gf_axpy_(gf_tensor *y, double alpha, gf_tensor *x);
gf_status gf_fill_(gf_tensor *a, double v);
gf_status gf_gradcheck(gf_ctx *ctx, gf_fn fn, int n, gf_tensor *const *inputs, void *user, double eps, double atol, double rtol);
/* ---- end ---- */

Test(api_contract, every_declaration_links) {
    /* Taking each function's address makes the linker resolve all of them. */
    void (*fns[])(void) = {
        (void (*)(void))gf_engine_create,
        (void (*)(void))gf_engine_destroy,
        (void (*)(void))gf_engine_num_threads,
        (void (*)(void))gf_ctx_create,
        (void (*)(void))gf_ctx_destroy,
        (void (*)(void))gf_ctx_error,
        (void (*)(void))gf_ctx_clear_error,
        (void (*)(void))gf_ctx_set_eager,
        (void (*)(void))gf_manual_seed,
        (void (*)(void))gf_scope_begin,
        (void (*)(void))gf_scope_end,
        (void (*)(void))gf_keep,
        (void (*)(void))gf_release,
        (void (*)(void))gf_no_grad_begin,
        (void (*)(void))gf_no_grad_end,
        (void (*)(void))gf_share,
        (void (*)(void))gf_tensor_f32,
        (void (*)(void))gf_tensor_f64,
        (void (*)(void))gf_tensor_i64,
        (void (*)(void))gf_zeros,
        (void (*)(void))gf_ones,
        (void (*)(void))gf_full,
        (void (*)(void))gf_rand,
        (void (*)(void))gf_randn,
        (void (*)(void))gf_scalar,
        (void (*)(void))gf_ndim,
        (void (*)(void))gf_shape,
        (void (*)(void))gf_numel,
        (void (*)(void))gf_dtype_of,
        (void (*)(void))gf_ctx_of,
        (void (*)(void))gf_realize,
        (void (*)(void))gf_data_f32,
        (void (*)(void))gf_data_f64,
        (void (*)(void))gf_copy_to_f64,
        (void (*)(void))gf_item,
        (void (*)(void))gf_requires_grad,
        (void (*)(void))gf_get_requires_grad,
        (void (*)(void))gf_grad,
        (void (*)(void))gf_zero_grad,
        (void (*)(void))gf_detach,
        (void (*)(void))gf_backward,
        (void (*)(void))gf_backward_ex,
        (void (*)(void))gf_grad_of,
        (void (*)(void))gf_add,
        (void (*)(void))gf_sub,
        (void (*)(void))gf_mul,
        (void (*)(void))gf_div,
        (void (*)(void))gf_pow,
        (void (*)(void))gf_add_scalar,
        (void (*)(void))gf_mul_scalar,
        (void (*)(void))gf_pow_scalar,
        (void (*)(void))gf_neg,
        (void (*)(void))gf_exp,
        (void (*)(void))gf_log,
        (void (*)(void))gf_sqrt,
        (void (*)(void))gf_abs,
        (void (*)(void))gf_relu,
        (void (*)(void))gf_sigmoid,
        (void (*)(void))gf_tanh,
        (void (*)(void))gf_gelu,
        (void (*)(void))gf_matmul,
        (void (*)(void))gf_sum,
        (void (*)(void))gf_mean,
        (void (*)(void))gf_sum_dim,
        (void (*)(void))gf_mean_dim,
        (void (*)(void))gf_max_dim,
        (void (*)(void))gf_argmax,
        (void (*)(void))gf_reshape,
        (void (*)(void))gf_transpose,
        (void (*)(void))gf_permute,
        (void (*)(void))gf_slice,
        (void (*)(void))gf_cat,
        (void (*)(void))gf_expand,
        (void (*)(void))gf_softmax,
        (void (*)(void))gf_log_softmax,
        (void (*)(void))gf_mse_loss,
        (void (*)(void))gf_cross_entropy,
        (void (*)(void))gf_sub_,
        (void (*)(void))gf_axpy_,
        (void (*)(void))gf_fill_,
        (void (*)(void))gf_gradcheck,
    };
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) cr_assert_not_null(fns[i]);
}

Test(api_contract, types_and_enums) {
    cr_assert_eq(GF_OK, 0);
    cr_assert_eq(GF_EINVAL, -1);
    cr_assert_eq(GF_ESHAPE, -2);
    cr_assert_eq(GF_ENOMEM, -3);
    cr_assert_eq(GF_ESTATE, -4);
    cr_assert_eq(GF_EIO, -5);
    gf_engine_opts o = {.num_threads = 2, .deterministic = true, .pin_threads = false};
    gf_backward_opts b = {.grad_output = NULL, .retain_graph = true, .create_graph = false};
    gf_dtype d[] = {GF_F32, GF_F64, GF_I64};
    cr_assert_eq(o.num_threads + b.retain_graph + (int)d[2], 5);
}
