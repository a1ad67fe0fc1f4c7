/*
 * linear_regression.c - the second example of the PyTorch autograd
 * tutorial: fit y = x w + b by gradient descent on a tiny data set, with the
 * training loop written exactly as in API.md (a scope per step, backward,
 * in-place updates under no_grad, zero_grad). Each step is one epoch over
 * the three samples; --log-json FILE writes every step as a JSON line
 * (bench/plot.py draws the loss curve).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gradflow.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: linear_regression [options]   (--opt VALUE or --opt=VALUE)\n"
            "  --log-json FILE   write one JSON object per step (an epoch over the 3\n"
            "                    samples) to FILE, a line each (epoch, loss, seconds,\n"
            "                    samples_per_s, threads, batch_size)\n"
            "  -h, --help        this text\n");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    static const struct option longs[] = {{"log-json", required_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *log_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c != 'j') {
            usage(stderr);
            return 2;
        }
        log_path = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "linear_regression: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    FILE *log = NULL;
    if (log_path && !(log = fopen(log_path, "w"))) {
        fprintf(stderr, "linear_regression: cannot write %s: %s\n", log_path, strerror(errno));
        return 1;
    }

    gf_ctx *ctx = gf_ctx_create(NULL);
    if (!ctx) return 1;
    gf_manual_seed(ctx, 42);
    gf_tensor *inputs = gf_tensor_f32(ctx, 2, (int64_t[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
    gf_tensor *targets = gf_tensor_f32(ctx, 2, (int64_t[]){3, 1}, (float[]){2, 4, 6});
    gf_tensor *w = gf_requires_grad(gf_randn(ctx, GF_F32, 2, (int64_t[]){2, 1}), true);
    gf_tensor *b = gf_requires_grad(gf_randn(ctx, GF_F32, 1, (int64_t[]){1}), true);
    for (int i = 0; i < 100; i++) {
        double t0 = now();
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
        if (log) {
            double l = gf_item(loss), secs = now() - t0;
            fprintf(log,
                    "{\"epoch\":%d,\"loss\":%.9g,\"seconds\":%.6f,\"samples_per_s\":%.1f,"
                    "\"threads\":%d,\"batch_size\":3}\n",
                    i + 1, l, secs, 3 / secs, gf_engine_num_threads(gf_ctx_engine(ctx)));
        }
        gf_scope_end(ctx);
    }
    if (log && fclose(log)) {
        fprintf(stderr, "linear_regression: cannot write %s\n", log_path);
        gf_ctx_destroy(ctx);
        return 1;
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
