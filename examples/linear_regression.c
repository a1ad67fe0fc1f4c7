/*
 * linear_regression.c - the second example of the PyTorch autograd
 * tutorial: fit y = x w + b by gradient descent on a tiny data set, with the
 * training loop written exactly as in API.md (a scope per step, backward,
 * in-place updates under no_grad, zero_grad).
 */
#include <stdio.h>

#include "gradflow.h"

int main(void) {
    gf_ctx *ctx = gf_ctx_create(NULL);
    if (!ctx) return 1;
    gf_manual_seed(ctx, 42);
    gf_tensor *inputs = gf_tensor_f32(ctx, 2, (int64_t[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
    gf_tensor *targets = gf_tensor_f32(ctx, 2, (int64_t[]){3, 1}, (float[]){2, 4, 6});
    gf_tensor *w = gf_requires_grad(gf_randn(ctx, GF_F32, 2, (int64_t[]){2, 1}), true);
    gf_tensor *b = gf_requires_grad(gf_randn(ctx, GF_F32, 1, (int64_t[]){1}), true);
    for (int i = 0; i < 100; i++) {
        gf_scope_begin(ctx);
        gf_tensor *pred = gf_add(gf_matmul(inputs, w), b);
        gf_tensor *loss = gf_mean(gf_pow_scalar(gf_sub(pred, targets), 2));
        gf_backward(loss);
        gf_no_grad_begin(ctx);
        gf_axpy_(w, -0.01, gf_grad(w));
        gf_axpy_(b, -0.01, gf_grad(b));
        gf_zero_grad(w);
        gf_zero_grad(b);
        gf_no_grad_end(ctx);
        if ((i + 1) % 10 == 0) printf("Iteration %d, Loss: %g\n", i + 1, gf_item(loss));
        gf_scope_end(ctx);
    }
    if (gf_ctx_error(ctx)) {
        fprintf(stderr, "error: %s\n", gf_ctx_error(ctx));
        gf_ctx_destroy(ctx);
        return 1;
    }
    const float *wv = gf_data_f32(w), *bv = gf_data_f32(b);
    printf("Weights: [%g, %g]\n", wv[0], wv[1]);
    printf("Bias: %g\n", bv[0]);
    gf_ctx_destroy(ctx);
    return 0;
}
