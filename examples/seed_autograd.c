/*
 * seed_autograd.c - the first example of the PyTorch autograd tutorial:
 * y = sum(x^2), dy/dx = 2x.
 *
 *   x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
 *   y = x ** 2
 *   y.sum().backward()
 *   print(x.grad)   # tensor([2., 4., 6.])
 */
#include <getopt.h>
#include <stdio.h>

#include "gradflow.h"

static void usage(FILE *f) {
    fprintf(f, "usage: seed_autograd   (prints x, y = sum(x^2) and x.grad; no options)\n"
               "  -h, --help   this text\n");
}

int main(int argc, char **argv) {
    static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        usage(c == 'h' ? stdout : stderr);
        return c == 'h' ? 0 : 2;
    }
    if (optind < argc) {
        fprintf(stderr, "seed_autograd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    gf_ctx *ctx = gf_ctx_create(NULL);
    if (!ctx) return 1;
    gf_tensor *x =
        gf_requires_grad(gf_tensor_f32(ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3}), true);
    gf_tensor *y = gf_pow_scalar(x, 2);
    if (gf_backward(gf_sum(y)) != GF_OK) {
        fprintf(stderr, "backward failed: %s\n", gf_ctx_error(ctx));
        gf_ctx_destroy(ctx);
        return 1;
    }
    const float *g = gf_data_f32(gf_grad(x));
    printf("x      = [1, 2, 3]\n");
    printf("y      = x^2, summed\n");
    printf("x.grad = [%g, %g, %g]\n", g[0], g[1], g[2]);
    gf_ctx_destroy(ctx);
    return 0;
}
