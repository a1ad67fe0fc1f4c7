/*
 * fashion_mnist.c - trains a 784-256-256-10 ReLU MLP with Adam on
 * Fashion-MNIST (the Debian package dataset-fashion-mnist) and reports the
 * test accuracy after every epoch:
 *
 *   epoch 1: train loss 0.4913, test accuracy 84.12%, 12.3 s (4878 samples/s)
 *
 * Progress goes to stderr: a bar redrawn in place on a terminal, plain
 * periodic lines otherwise. Each training step runs inside its own scope, so
 * memory stays flat however long it trains. --log-json FILE also writes
 * each epoch as a JSON line (bench/plot.py turns it into a plot); --save
 * FILE writes a checkpoint after every epoch, --load FILE resumes from one.
 * Run with --help for the options.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gradflow.h"
#include "gradflow/nn.h"

typedef struct {
    int epochs;
    int64_t batch_size;
    int threads; /* 0: the engine's default (one per physical core) */
    uint64_t seed;
    bool deterministic;
    double lr;
    const char *data;     /* NULL: the Debian package's directory */
    int64_t limit;        /* samples per epoch; 0: all */
    const char *log_json; /* NULL: no JSON log */
    const char *save;     /* NULL: no checkpoint; else written after every epoch */
    const char *load;     /* NULL: fresh weights; else resumed from this checkpoint */
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: fashion_mnist [options]   (--opt VALUE or --opt=VALUE)\n"
            "  --epochs N        epochs to train (default 2)\n"
            "  --batch-size B    training batch size (default 64)\n"
            "  --threads T       engine threads (default: one per physical core)\n"
            "  --seed S          seed for initialization and shuffling (default 0)\n"
            "  --deterministic   accepted for old scripts; changes nothing (every run\n"
            "                    is bitwise the same for any thread count)\n"
            "  --lr X            Adam learning rate (default 1e-3)\n"
            "  --data DIR        directory of the *-ubyte(.gz) files\n"
            "                    (default /usr/share/datasets/fashion-mnist)\n"
            "  --limit N         train on N samples per epoch (the first N of each\n"
            "                    epoch's shuffled order), for quick runs\n"
            "  --log-json FILE   write one JSON object per epoch to FILE, a line each\n"
            "                    (epoch, loss, train_accuracy, test_accuracy, seconds,\n"
            "                    samples_per_s, threads, batch_size); bench/plot.py\n"
            "                    draws it\n"
            "  --save FILE       write a checkpoint (model and Adam state) to FILE after\n"
            "                    every epoch (atomically: a crash keeps the last one)\n"
            "  --load FILE       start from the checkpoint in FILE instead of fresh weights\n"
            "  -h, --help        this text\n");
}

/* A whole-string integer >= min, or exits with a message. */
static int64_t parse_int(const char *opt, const char *s, int64_t min) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "fashion_mnist: --%s needs an integer >= %lld, got \"%s\"\n", opt,
                (long long)min, s);
        exit(2);
    }
    return v;
}

static void parse(int argc, char **argv, options *o) {
    *o = (options){.epochs = 2, .batch_size = 64, .lr = 1e-3};
    static const struct option longs[] = {
        {"epochs", required_argument, NULL, 'e'},  {"batch-size", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'}, {"seed", required_argument, NULL, 's'},
        {"lr", required_argument, NULL, 'r'},      {"data", required_argument, NULL, 'd'},
        {"limit", required_argument, NULL, 'l'},   {"log-json", required_argument, NULL, 'j'},
        {"save", required_argument, NULL, 'S'},    {"load", required_argument, NULL, 'L'},
        {"deterministic", no_argument, NULL, 'D'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c, at;
    while ((c = getopt_long(argc, argv, "h", longs, &at)) != -1) {
        const char *name = c != '?' && c != 'h' ? longs[at].name : "";
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case 'D': o->deterministic = true; break;
        case 'e': o->epochs = (int)parse_int(name, optarg, 1); break;
        case 'b': o->batch_size = parse_int(name, optarg, 1); break;
        case 't': o->threads = (int)parse_int(name, optarg, 1); break;
        case 's': o->seed = (uint64_t)parse_int(name, optarg, 0); break;
        case 'l': o->limit = parse_int(name, optarg, 1); break;
        case 'd': o->data = optarg; break;
        case 'j': o->log_json = optarg; break;
        case 'S': o->save = optarg; break;
        case 'L': o->load = optarg; break;
        case 'r': {
            char *end;
            o->lr = strtod(optarg, &end);
            if (*end || end == optarg || !(o->lr > 0)) {
                fprintf(stderr, "fashion_mnist: --lr needs a number > 0, got \"%s\"\n", optarg);
                exit(2);
            }
            break;
        }
        default: usage(stderr); exit(2); /* getopt_long said what was wrong */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fashion_mnist: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        exit(2);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Training progress on stderr: redrawn in place on a terminal (at most ten
 * times a second), a plain line every ~10% of the epoch otherwise. */
typedef struct {
    bool tty;
    int epoch;
    int64_t total;
    double start, last_draw;
    int64_t next_line;
} progress;

static void progress_show(progress *p, int64_t done, double loss, bool final) {
    double t = now(), rate = done / (t - p->start + 1e-12);
    if (p->tty) {
        if (!final && t - p->last_draw < 0.1) return;
        p->last_draw = t;
        enum { W = 30 };
        int fill = (int)(W * done / (p->total ? p->total : 1));
        char bar[W + 1];
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[W] = 0;
        fprintf(stderr, "\repoch %d [%s] %6" PRId64 "/%" PRId64 "  %7.0f samples/s  loss %.4f\033[K",
                p->epoch, bar, done, p->total, rate, loss);
        if (final) fputc('\n', stderr);
    } else {
        if (!final && done < p->next_line) return;
        p->next_line += (p->total + 9) / 10;
        fprintf(stderr, "epoch %d: %" PRId64 "/%" PRId64 " samples, %.0f samples/s, loss %.4f\n",
                p->epoch, done, p->total, rate, loss);
    }
    fflush(stderr);
}

/* Fraction of test images classified correctly, in eval mode, batches of 1000. */
static double evaluate(gf_ctx *ctx, gf_module *model, gf_dataset *test) {
    int64_t correct = 0, seen = 0;
    gf_module_train(model, false);
    gf_no_grad_begin(ctx);
    for (int64_t b = 0;; b++) {
        gf_tensor *x, *y;
        gf_scope_begin(ctx);
        if (gf_dataset_batch(test, b, 1000, &x, &y) != GF_OK) {
            gf_scope_end(ctx);
            break;
        }
        const int64_t *pred = gf_data_i64(gf_argmax(gf_module_forward(model, x), 1));
        const int64_t *lab = gf_data_i64(y);
        if (pred && lab)
            for (int64_t i = 0; i < gf_numel(y); i++) correct += pred[i] == lab[i];
        seen += gf_numel(y);
        gf_scope_end(ctx);
        if (!pred) break;
    }
    gf_no_grad_end(ctx);
    gf_module_train(model, true);
    return seen ? (double)correct / (double)seen : 0.0;
}

int main(int argc, char **argv) {
    options o;
    parse(argc, argv, &o);
    FILE *log = NULL;
    if (o.log_json && !(log = fopen(o.log_json, "w"))) {
        fprintf(stderr, "fashion_mnist: cannot write %s: %s\n", o.log_json, strerror(errno));
        return 1;
    }

    gf_engine_opts eo = {.num_threads = o.threads, .deterministic = o.deterministic};
    gf_engine *eng = gf_engine_create(&eo);
    if (!eng) {
        fprintf(stderr, "fashion_mnist: cannot create the engine (%d threads)\n", o.threads);
        if (log) fclose(log);
        return 1;
    }
    gf_ctx *ctx = gf_ctx_create(eng);
    if (!ctx) {
        fprintf(stderr, "fashion_mnist: cannot create a ctx\n");
        gf_engine_destroy(eng);
        if (log) fclose(log);
        return 1;
    }
    gf_manual_seed(ctx, o.seed);

    gf_dataset *train = NULL, *test = NULL;
    gf_module *model = NULL;
    gf_optimizer *opt = NULL;
    int rc = 1;

    double t0 = now();
    train = gf_fashion_mnist(ctx, o.data, true);
    test = train ? gf_fashion_mnist(ctx, o.data, false) : NULL;
    if (!test) goto done;
    const int64_t n = o.limit && o.limit < gf_dataset_size(train) ? o.limit
                                                                    : gf_dataset_size(train);
    fprintf(stderr, "fashion_mnist: %" PRId64 " training and %" PRId64 " test images loaded in "
            "%.1f s; %d threads, %s kernels, batch %" PRId64 ", Adam lr %g\n",
            gf_dataset_size(train), gf_dataset_size(test), now() - t0,
            gf_engine_num_threads(eng), gf_engine_isa(eng),
            o.batch_size, o.lr);

    const int64_t sizes[] = {gf_dataset_features(train), 256, 256, 10};
    model = gf_mlp(ctx, 4, sizes, GF_ACT_RELU, GF_F32);
    gf_adam_opts ao = GF_ADAM_DEFAULTS;
    ao.lr = o.lr;
    opt = model ? gf_module_adam(model, &ao) : NULL;
    if (!opt) goto done;
    if (o.load) {
        if (gf_load(o.load, model, opt) != GF_OK) goto done;
        fprintf(stderr, "fashion_mnist: resumed from %s\n", o.load);
    }

    const int64_t nbatches = (n + o.batch_size - 1) / o.batch_size;
    const bool tty = isatty(STDERR_FILENO);
    for (int epoch = 1; epoch <= o.epochs; epoch++) {
        gf_dataset_shuffle(train, o.seed, (uint64_t)epoch);
        progress p = {.tty = tty, .epoch = epoch, .total = n, .start = now()};
        p.next_line = (n + 9) / 10;
        double loss_sum = 0;
        int64_t done_samples = 0, train_correct = 0;
        for (int64_t b = 0; b < nbatches; b++) {
            gf_tensor *x, *y;
            gf_scope_begin(ctx);
            if (gf_dataset_batch(train, b, o.batch_size, &x, &y) != GF_OK) {
                gf_scope_end(ctx);
                goto done;
            }
            if (b == nbatches - 1 && n < gf_dataset_size(train)) {
                /* --limit: the last batch stops at n samples. */
                int64_t rows = n - b * o.batch_size;
                x = gf_slice(x, 0, 0, rows, 1);
                y = gf_slice(y, 0, 0, rows, 1);
            }
            gf_tensor *logits = gf_module_forward(model, x);
            gf_tensor *loss = gf_cross_entropy(logits, y);
            /* The JSON log's training accuracy: the batch's predictions
             * before this step's update, as training loops usually count. */
            gf_tensor *pred = log ? gf_argmax(logits, 1) : NULL;
            gf_optimizer_zero_grad(opt);
            gf_backward(loss);
            gf_optimizer_step(opt);
            double l = gf_item(loss);
            int64_t rows = y ? gf_numel(y) : 0;
            const int64_t *pv = pred ? gf_data_i64(pred) : NULL, *yv = pv ? gf_data_i64(y) : NULL;
            for (int64_t i = 0; yv && i < rows; i++) train_correct += pv[i] == yv[i];
            gf_scope_end(ctx);
            if (gf_ctx_error(ctx)) goto done;
            loss_sum += l * (double)rows;
            done_samples += rows;
            progress_show(&p, done_samples, loss_sum / (double)done_samples, b == nbatches - 1);
        }
        double secs = now() - p.start;
        double acc = evaluate(ctx, model, test);
        if (gf_ctx_error(ctx)) goto done;
        printf("epoch %d: train loss %.4f, test accuracy %.2f%%, %.1f s (%.0f samples/s)\n", epoch,
               loss_sum / (double)done_samples, 100.0 * acc, secs, (double)done_samples / secs);
        fflush(stdout);
        if (o.save && gf_save(o.save, model, opt) != GF_OK) goto done;
        if (log) {
            fprintf(log,
                    "{\"epoch\":%d,\"loss\":%.6f,\"train_accuracy\":%.6f,\"test_accuracy\":%.6f,"
                    "\"seconds\":%.3f,\"samples_per_s\":%.1f,\"threads\":%d,\"batch_size\":%" PRId64
                    "}\n",
                    epoch, loss_sum / (double)done_samples,
                    (double)train_correct / (double)done_samples, acc, secs,
                    (double)done_samples / secs, gf_engine_num_threads(eng), o.batch_size);
            if (fflush(log)) {
                fprintf(stderr, "fashion_mnist: cannot write %s: %s\n", o.log_json,
                        strerror(errno));
                goto done;
            }
        }
    }
    rc = 0;

done:
    if (rc) fprintf(stderr, "fashion_mnist: %s\n", gf_ctx_error(ctx) ? gf_ctx_error(ctx) : "failed");
    gf_optimizer_free(opt);
    gf_module_free(model);
    gf_dataset_free(test);
    gf_dataset_free(train);
    gf_ctx_destroy(ctx);
    gf_engine_destroy(eng);
    if (log && fclose(log) && !rc) {
        fprintf(stderr, "fashion_mnist: cannot write %s\n", o.log_json);
        rc = 1;
    }
    return rc;
}
