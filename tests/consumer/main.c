/*
 * main.c - a program built against an installed gradflow by
 * tests/consumer/run.sh (through CMake and pkg-config, shared and static):
 * fits y = 3x - 1 with a Linear layer and SGD from gradflow/nn.h, and
 * checks the fitted weight and bias, that bad input is reported on the ctx
 * and, when the build passes GF_EXPECT_VERSION, that the header is the
 * package's version.
 */
#include <gradflow.h>
#include <gradflow/nn.h>

#include <stdio.h>
#include <string.h>

static int fail(gf_ctx *ctx, const char *what) {
    fprintf(stderr, "consumer: %s (ctx error: %s)\n", what,
            ctx && gf_ctx_error(ctx) ? gf_ctx_error(ctx) : "none");
    return 1;
}

int main(void) {
#ifdef GF_EXPECT_VERSION
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", GF_VERSION_MAJOR, GF_VERSION_MINOR,
             GF_VERSION_PATCH);
    if (strcmp(version, GF_EXPECT_VERSION) != 0) {
        fprintf(stderr, "consumer: gradflow.h is %s, the package %s\n", version, GF_EXPECT_VERSION);
        return 1;
    }
#endif
    gf_ctx *ctx = gf_ctx_create(NULL);
    if (!ctx) return fail(NULL, "gf_ctx_create failed");
    gf_manual_seed(ctx, 1);
    gf_module *model = gf_linear(ctx, 1, 1, true, GF_F32);
    gf_optimizer *opt = gf_module_sgd(model, &(gf_sgd_opts){.lr = 0.1});
    gf_tensor *x = gf_tensor_f32(ctx, 2, (int64_t[]){5, 1}, (float[]){-1, -0.5f, 0, 0.5f, 1});
    gf_tensor *y = gf_tensor_f32(ctx, 2, (int64_t[]){5, 1}, (float[]){-4, -2.5f, -1, 0.5f, 2});
    if (!model || !opt || !x || !y) return fail(ctx, "setup failed");
    /* The exact fit is unique and SGD at lr 0.1 contracts the error by at
     * least 0.9 a step: after 300 steps w and b are 3 and -1 to float
     * rounding. */
    double loss = -1;
    for (int step = 0; step < 300; step++) {
        gf_scope_begin(ctx);
        gf_tensor *l = gf_mse_loss(gf_module_forward(model, x), y);
        gf_backward(l);
        gf_optimizer_step(opt);
        gf_optimizer_zero_grad(opt);
        loss = gf_item(l);
        gf_scope_end(ctx);
    }
    if (gf_ctx_error(ctx)) return fail(ctx, "training reported an error");
    const float w = gf_data_f32(gf_module_parameter(model, 0))[0];
    const float b = gf_data_f32(gf_module_parameter(model, 1))[0];
    printf("consumer: w = %.6f, b = %.6f, loss = %.3g after %lld steps\n", w, b, loss,
           (long long)gf_optimizer_steps(opt));
    if (!(w > 3 - 1e-4 && w < 3 + 1e-4 && b > -1 - 1e-4 && b < -1 + 1e-4 && loss < 1e-8 &&
          gf_optimizer_steps(opt) == 300))
        return fail(ctx, "the fit is not y = 3x - 1");

    /* A [2, 2] input does not fit a Linear layer of 1 input feature: NULL
     * and an error on the ctx, through the installed library too. */
    gf_tensor *bad = gf_module_forward(model, gf_zeros(ctx, GF_F32, 2, (int64_t[]){2, 2}));
    if (bad || gf_ctx_status(ctx) == GF_OK || !gf_ctx_error(ctx) || !*gf_ctx_error(ctx))
        return fail(ctx, "a [2, 2] input to Linear(1, 1) was not an error");
    gf_optimizer_free(opt);
    gf_module_free(model);
    gf_ctx_destroy(ctx);
    return 0;
}
